"""Real browser (Playwright driving Debian's Chromium) against a real uvicorn server: sign in
with a personal link, vote on three pairs with the mouse and with the keyboard, go back and
change a vote, check that no script from a model answer ran, and check the export numbers.

Needs `apt-get install -y chromium` (never `playwright install`); skips without /usr/bin/chromium.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_annotate_study import make_study, pairs_of

from gpt4llm.evaluate.human.app import serve_in_thread
from gpt4llm.evaluate.human.study.export import ExportConfig, export_study
from gpt4llm.evaluate.human.study.store import add_annotator

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
XSS = "<script>alert(1)</script>\n<img src=x onerror=alert(2)>\nThe answer, on two lines."

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="/usr/bin/chromium missing (apt-get install -y chromium)"
    ),
]


def _answers(model, i):
    if model == "evil":
        return XSS
    return f"A plain, helpful answer number {i}.\n- first point\n- second point\nThanks for asking."


def test_vote_with_mouse_and_keyboard_then_export(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    study, _ = make_study(
        tmp_path,
        n=3,
        per_item=1,
        models=("evil", "good"),
        answers=_answers,
        title="HHH study (browser test)",
    )
    token = add_annotator(study, "tester")
    pairs = {p.id: p for p in pairs_of(study)}
    shown: dict[int, dict[str, str]] = {}
    dialogs: list[str] = []

    with serve_in_thread(study) as base, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(f"{base}/a/{token}")
            page.wait_for_url("**/pair/*")

            def pid() -> int:
                return int(page.url.rsplit("/", 1)[1])

            # The untrusted answer is shown as text, newlines kept; nothing executed.
            evil_side = (
                "#answer-b"
                if pairs[pid()].swapped ^ (pairs[pid()].model_a == "good")
                else "#answer-a"
            )
            assert page.inner_text(evil_side) == XSS
            assert page.locator(f"{evil_side} img").count() == 0
            a_box, b_box = (
                page.locator("#answer-a").bounding_box(),
                page.locator("#answer-b").bounding_box(),
            )
            assert (
                abs(a_box["y"] - b_box["y"]) < 2 and b_box["x"] > a_box["x"] + a_box["width"] - 1
            )  # side by side
            # Pair 1: the mouse.
            first = pid()
            page.click("#crit-helpfulness label:has-text('A is better')")
            page.click("#crit-honesty label:has-text('Tie')")
            page.click("#crit-harmlessness label:has-text('B is better')")
            page.fill("#comment", "clicked <b>bold</b>")
            page.screenshot(path=str(tmp_path / "voting_page.png"), full_page=True)
            shutil.copyfile(tmp_path / "voting_page.png", "/tmp/annotate_screenshot.png")
            page.click("#submit-vote")
            page.wait_for_url(
                lambda u: u.endswith("/pair/" + str(first)) is False and "/pair/" in u
            )
            shown[first] = {"helpfulness": "left", "honesty": "tie", "harmlessness": "right"}

            # Pair 2: the keyboard only. Enter with nothing chosen is refused on the page.
            second = pid()
            page.keyboard.press("Enter")
            assert page.locator("#form-error").is_visible() and pid() == second
            page.keyboard.press("3")  # helpfulness: B, moves on to honesty
            page.keyboard.press("k")  # back to helpfulness
            page.keyboard.press("1")  # helpfulness: A -> honesty
            page.keyboard.press("2")  # honesty: tie -> harmlessness
            page.keyboard.press("j")  # stays on the last criterion
            page.keyboard.press("3")  # harmlessness: B
            assert page.locator("#crit-harmlessness").get_attribute("class").split() == [
                "criterion",
                "active",
            ]
            page.keyboard.press("Enter")
            page.wait_for_url(lambda u: not u.endswith(f"/pair/{second}") and "/pair/" in u)
            shown[second] = {"helpfulness": "left", "honesty": "tie", "harmlessness": "right"}

            # Pair 3: mouse to pick a criterion, keys for the rest.
            third = pid()
            page.click("#crit-helpfulness label:has-text('Tie')")
            page.keyboard.press("ArrowDown")
            page.keyboard.press("1")
            page.keyboard.press("1")
            page.keyboard.press("Enter")
            page.wait_for_url("**/done")
            shown[third] = {"helpfulness": "tie", "honesty": "left", "harmlessness": "left"}
            assert "nothing left for you" in page.content()

            # Go back to pair 1 and change helpfulness to B with the keyboard.
            page.goto(f"{base}/pair/{first}")
            assert page.locator("#crit-helpfulness input[value='left']").is_checked()
            assert page.input_value("#comment") == "clicked <b>bold</b>"
            page.locator("#crit-helpfulness").click(position={"x": 5, "y": 5})
            page.keyboard.press("3")
            page.keyboard.press("Enter")
            page.wait_for_url("**/done")
            shown[first]["helpfulness"] = "right"
            assert dialogs == []  # no alert() from the answers ever fired
        finally:
            browser.close()

    summary = export_study(ExportConfig(study=study, output=tmp_path / "export"))
    expected = {
        k: {"evil": 0, "tie": 0, "good": 0} for k in ("helpfulness", "honesty", "harmlessness")
    }
    for p_id, choices in shown.items():
        p = pairs[p_id]
        left, right = (p.model_b, p.model_a) if p.swapped else (p.model_a, p.model_b)
        for k, c in choices.items():
            expected[k][{"left": left, "right": right, "tie": "tie"}[c]] += 1
    comp = summary["comparisons"][0]
    for k, want in expected.items():
        assert comp["criteria"][k]["votes"] == want, k
    assert summary["votes"] == 3
    votes = [json.loads(x) for x in (tmp_path / "export" / "votes.jsonl").read_text().splitlines()]
    assert {v["pair_id"]: v["version"] for v in votes} == {first: 2, second: 1, third: 1}
    assert (tmp_path / "export" / "pie_evil_vs_good.png").stat().st_size > 10_000
