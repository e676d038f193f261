"""`gpt4llm report` on `compare --aspects` comparisons: the per-aspect table (the mean rating of
each source per aspect and overall, ratings read / answers, the declared overall rule), from
comparison files constructed here and from a real compare run against the loopback server;
bad records are one line naming the file, line and field."""

from __future__ import annotations

import json
import re
from pathlib import Path
from statistics import mean

import pytest

from gpt4llm.errors import DataError
from gpt4llm.evaluate import report

KEYS = ["instruction_following", "helpfulness", "honesty", "truthfulness"]
# per source, per instruction: its four ratings (None: the rater's reply could not be read)
GIVEN = {
    "alpaca": [[3, 4, 5, 2], [1, 2, None, 4], [4, 4, 4, 4]],
    "gpt-4": [[5, 5, 4, 5], [4, 5, 5, 3], [5, 4, 5, 5]],
}


def comparisons(rule: str = "mean", pair_on: str = "overall") -> list[dict]:
    """Comparison records as compare --aspects writes them, GIVEN's ratings, `overall` by `rule`."""
    rows = []
    for i in range(3):
        responses = []
        for model, ratings in GIVEN.items():
            aspects = dict(zip(KEYS, ratings[i], strict=True))
            got = [v for v in ratings[i] if v is not None]
            overall = None if len(got) < 4 else (mean(got) if rule == "mean" else min(got))
            responses.append(
                {"model": model, "text": f"{model} {i}", "aspects": aspects, "overall": overall}
            )
        rule_rec = {"aspects": KEYS, "overall": rule, "score": pair_on, "scale": [1, 5]}
        rows.append(
            {"id": f"q{i}", "user_input": f"Q{i}", "responses": responses, "score_rule": rule_rec}
        )
    return rows


def write_comparisons(path: Path) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in comparisons()), encoding="utf-8")
    return path


def cell(html: str, model: str) -> list[str]:
    """The cells of a source's row of the aspects table."""
    table = html[html.index('<table class="aspects">') :]
    row = re.search(rf'<tr><td class="l">{re.escape(model)}</td>(.*?)</tr>', table).group(1)
    return re.findall(r"<td>(.*?)</td>", row)


def test_the_report_shows_the_mean_of_each_aspect_per_source(tmp_path):
    path = write_comparisons(tmp_path / "cmp.jsonl")
    got = report.run(report.Config(inputs=[path], output=tmp_path / "rep"))
    html = (tmp_path / "rep" / "index.html").read_text()
    assert "<h2>Ratings per aspect (compare --aspects)</h2>" in html
    assert "the mean of the 4 aspect ratings (UltraFeedback's rule)" in html
    assert "pairs are built on the overall score" in html and "on 1-5" in html
    assert "<th>instruction following</th>" in html
    for model, ratings in GIVEN.items():
        cells = cell(html, model)
        for k, key in enumerate(KEYS):
            read = [r[k] for r in ratings if r[k] is not None]
            assert cells[k] == f"{mean(read):.2f} ({len(read)} / 3)", (model, key)
        overall = [mean(r) for r in ratings if None not in r]
        assert cells[4] == f"{mean(overall):.2f} ({len(overall)} / 3)"
    assert cell(html, "alpaca")[2] == "4.50 (2 / 3)"  # one honesty rating unread
    assert got["charts"] == []


def test_the_lowest_rule_and_an_aspect_to_pair_on(tmp_path):
    # records without `overall`: the report applies the declared rule itself
    rows = comparisons(rule="min", pair_on="honesty")
    for r in rows:
        for resp in r["responses"]:
            del resp["overall"]
    path = tmp_path / "cmp.json"
    path.write_text(json.dumps(rows), encoding="utf-8")  # a JSON array this time
    report.run(report.Config(inputs=[path], output=tmp_path / "rep"))
    html = (tmp_path / "rep" / "index.html").read_text()
    assert "the lowest of the 4 aspect ratings" in html
    assert "pairs are built on the aspect <code>honesty</code>" in html
    lowest = [min(r) for r in GIVEN["gpt-4"]]
    assert cell(html, "gpt-4")[4] == f"{mean(lowest):.2f} (3 / 3)"
    assert cell(html, "alpaca")[4] == f"{mean([2, 4]):.2f} (2 / 3)"


@pytest.mark.parametrize(
    ("aspects", "message"),
    [
        ({"honesty": "high"}, r"cmp.jsonl:2: field 'responses\[1\].aspects.honesty': expected a n"),
        ({"honesty": True}, r"cmp.jsonl:2: field 'responses\[1\].aspects.honesty'"),
        ([4, 5], r"cmp.jsonl:2: field 'responses\[1\].aspects': expected \{aspect"),
    ],
)
def test_a_bad_rating_is_one_line(tmp_path, aspects, message):
    path = write_comparisons(tmp_path / "cmp.jsonl")
    lines = path.read_text().splitlines()
    rec = json.loads(lines[1])
    rec["responses"][1]["aspects"] = aspects
    lines[1] = json.dumps(rec)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=message):
        report.run(report.Config(inputs=[path], output=tmp_path / "rep"))
    assert not (tmp_path / "rep" / "index.html").exists()


def test_comparisons_without_aspects_are_refused(tmp_path, cli):
    path = tmp_path / "plain.jsonl"
    rec = {"id": "q0", "user_input": "Q", "responses": [{"model": "a", "text": "x", "score": 7}]}
    path.write_text(json.dumps(rec) + "\n")
    code, out = cli("report", path, "-o", tmp_path / "rep")
    assert code == 2 and "Traceback" not in out
    assert out.strip().splitlines()[-1].startswith(f"error: {path}: no answer carries aspects")


def test_a_compare_run_in_the_report(fake_openai, fake_llm_config, tmp_path):
    from gpt4llm.stages.compare import Config, run

    rating = {"terse": 4, "wordy": 2}  # every aspect alike; one "wordy" reply unreadable

    def rater(messages, body):
        text = messages[0]["content"]
        [word] = re.findall(r"A (\w+) answer\.", text)
        if word == "wordy" and "only: honesty." in text and "Add" in text:
            return "I would rather not say."
        return f"Score: {rating[word]}\nFine."

    fake_openai.responder = rater
    sources = {}
    for word in rating:
        p = tmp_path / f"{word}.jsonl"
        rows = [{"id": "a", "instruction": "Name a colour."}, {"id": "b", "instruction": "Add 2."}]
        p.write_text("".join(json.dumps(r | {"output": f"A {word} answer."}) + "\n" for r in rows))
        sources[word] = str(p)
    out = tmp_path / "cmp.jsonl"
    run(
        Config(
            source=sources, rater=fake_llm_config, aspects=True, output=out, max_failed_fraction=1
        )
    )
    report.run(report.Config(inputs=[out], output=tmp_path / "rep"))
    html = (tmp_path / "rep" / "index.html").read_text()
    assert "rated by <code>fake-model</code>" in html
    assert cell(html, "terse") == ["4.00 (2 / 2)"] * 5
    wordy = cell(html, "wordy")
    assert wordy[2] == "2.00 (1 / 2)" and wordy[4] == "2.00 (1 / 2)"  # honesty unread once
    assert re.search(r"replies read exactly / by a fallback</td>(<td>\d+ / 0</td>){4}", html)
