"""annotate init / add-annotator / export: input formats, pairing, seeds, hashing, numbers.

Also holds the small helpers the other test_annotate_* files import (make_sources, make_study)."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import typer
from repo_paths import SHARED_DATA
from typer.testing import CliRunner

from gpt4llm.errors import DataError, UserError
from gpt4llm.evaluate.human.db import hash_token
from gpt4llm.evaluate.human.study.export import ExportConfig, agreement, export_study
from gpt4llm.evaluate.human.study.init import InitConfig, init_study
from gpt4llm.evaluate.human.study.inputs import load_criteria
from gpt4llm.evaluate.human.study.store import add_annotator, open_store
from gpt4llm.evaluate.human.tables import Pair

DATA = SHARED_DATA / "user_oriented_252"
CRITERIA = ("helpfulness", "honesty", "harmlessness")


# --- helpers shared by the test_annotate_* files ----------------------------------------------


def make_sources(
    directory: Path, n: int, models=("alpha", "beta"), answers=None, fmt: str = "responses"
) -> dict[str, Path]:
    """Write one answer file per model over the same `n` instructions. `answers(model, i)`
    gives the text (default: '<model> answer i')."""
    directory.mkdir(parents=True, exist_ok=True)
    out = {}
    for m in models:
        recs = []
        for i in range(n):
            text = answers(m, i) if answers else f"{m} answer {i}\nsecond line"
            if fmt == "responses":
                recs.append(
                    {
                        "id": f"q{i}",
                        "instruction": f"Instruction {i}",
                        "input": f"input {i}" if i % 2 else "",
                        "output": text,
                        "model": m,
                    }
                )
            else:  # alpaca, no ids
                recs.append({"instruction": f"Instruction {i}", "input": "", "output": text})
        p = directory / f"{m}.jsonl"
        p.write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
        out[m] = p
    return out


def make_study(
    tmp_path: Path,
    n: int = 6,
    per_item: int = 2,
    models=("alpha", "beta"),
    answers=None,
    db_url=None,
    **kw,
) -> tuple[Path, str]:
    """Create a study; returns (study dir, admin token)."""
    sources = make_sources(tmp_path / "src", n, models, answers)
    out = tmp_path / "study"
    summary = init_study(
        InitConfig(output=out, source=sources, per_item=per_item, db_url=db_url, **kw)
    )
    return out, summary["admin_token"]


def cli_app() -> typer.Typer:
    """`gpt4llm annotate` exactly as the command line has it (init from the stage table)."""
    from gpt4llm.cli import annotate_app

    return annotate_app


def pairs_of(study: Path) -> list[Pair]:
    from sqlalchemy import select

    _, store = open_store(study)
    try:
        with store.read() as s:
            return list(s.scalars(select(Pair).order_by(Pair.id)))
    finally:
        store.dispose()


# --- init ----------------------------------------------------------------------------------


def test_init_response_records_joined_by_id_with_recorded_seed(tmp_path):
    src = make_sources(tmp_path / "src", 20)
    # Second file in another order: joined by id, not position.
    lines = src["beta"].read_text().splitlines()
    src["beta"].write_text("\n".join(reversed(lines)) + "\n")
    s = init_study(InitConfig(output=tmp_path / "s1", source=src, per_item=3, seed=7))
    assert s["items"] == 20 and s["pairs"] == 20 and s["votes_needed"] == 60
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", s["admin_token"])
    study = json.loads((tmp_path / "s1" / "study.json").read_text())
    assert study["seed"] == 7 and study["per_item"] == 3 and study["models"] == ["alpha", "beta"]
    assert study["comparisons"] == [["alpha", "beta"]]
    assert [c["key"] for c in study["criteria"]] == list(CRITERIA)
    assert all(c["guidance"] for c in study["criteria"])
    assert study["sources"]["alpha"]["format"] == "responses"
    assert (tmp_path / "s1" / "manifest.json").is_file()
    pairs = pairs_of(tmp_path / "s1")
    for p in pairs:  # texts joined by id
        i = int(p.output_a.split()[2])
        assert p.output_b == f"beta answer {i}\nsecond line"
    swaps = [p.swapped for p in pairs]
    assert 3 <= sum(swaps) <= 17  # randomised, not all one side
    # Same seed -> same order and sides; another seed -> different.
    init_study(InitConfig(output=tmp_path / "s2", source=src, per_item=3, seed=7))
    init_study(InitConfig(output=tmp_path / "s3", source=src, per_item=3, seed=8))
    same = pairs_of(tmp_path / "s2")
    other = pairs_of(tmp_path / "s3")
    assert [(p.swapped, p.rank) for p in same] == [(p.swapped, p.rank) for p in pairs]
    assert [(p.swapped, p.rank) for p in other] != [(p.swapped, p.rank) for p in pairs]


def test_init_three_models_all_pairs_or_reference(tmp_path):
    src = make_sources(tmp_path / "src", 5, models=("m1", "m2", "m3"))
    s = init_study(InitConfig(output=tmp_path / "all", source=src))
    assert s["comparisons"] == 3 and s["pairs"] == 15
    assert json.loads((tmp_path / "all" / "study.json").read_text())["comparisons"] == [
        ["m1", "m2"],
        ["m1", "m3"],
        ["m2", "m3"],
    ]
    s = init_study(InitConfig(output=tmp_path / "ref", source=src, reference="m3"))
    assert s["comparisons"] == 2 and s["pairs"] == 10
    assert json.loads((tmp_path / "ref" / "study.json").read_text())["comparisons"] == [
        ["m3", "m1"],
        ["m3", "m2"],
    ]
    s = init_study(InitConfig(output=tmp_path / "lim", source=src, limit=2))
    assert s["items"] == 2 and s["pairs"] == 6


def test_init_alpaca_files_joined_by_position(tmp_path):
    src = make_sources(tmp_path / "src", 4, fmt="alpaca")
    s = init_study(InitConfig(output=tmp_path / "s", source=src))
    assert s["pairs"] == 4
    study = json.loads((tmp_path / "s" / "study.json").read_text())
    assert study["sources"]["beta"]["format"] == "alpaca"
    assert {p.output_a for p in pairs_of(tmp_path / "s")} == {
        f"alpha answer {i}\nsecond line" for i in range(4)
    }


def test_init_predictions_joined_by_position_and_checked(tmp_path):
    ins = tmp_path / "ins.jsonl"
    ins.write_text(
        "".join(
            json.dumps(
                {
                    "id": f"t{i}",
                    "instruction": f"Do thing {i}.",
                    "instances": [{"input": f"x{i}", "output": "y"}],
                }
            )
            + "\n"
            for i in range(3)
        )
    )
    preds = {}
    for m in ("p", "q"):
        f = tmp_path / f"{m}.jsonl"
        f.write_text(
            "".join(
                json.dumps(
                    {
                        "prompt": f"Do thing {i}.\n\nInput: x{i}\nOutput:",
                        "completion": f"  {m}{i}\n",
                    }
                )
                + "\n"
                for i in range(3)
            )
        )
        preds[m] = f
    with pytest.raises(UserError, match="--instructions"):
        init_study(InitConfig(output=tmp_path / "s0", source=preds))
    s = init_study(InitConfig(output=tmp_path / "s", source=preds, instructions=ins))
    assert s["pairs"] == 3
    pairs = pairs_of(tmp_path / "s")
    assert sorted((p.output_a, p.output_b) for p in pairs) == [
        ("p0", "q0"),
        ("p1", "q1"),
        ("p2", "q2"),
    ]
    # A prediction out of place is caught, naming file and line.
    lines = preds["q"].read_text().splitlines()
    lines[1], lines[2] = lines[2], lines[1]
    preds["q"].write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as e:
        init_study(InitConfig(output=tmp_path / "s2", source=preds, instructions=ins))
    assert e.value.path == str(preds["q"]) and e.value.line == 2 and "t1" in str(e.value)
    # Different count.
    preds["q"].write_text("\n".join(lines[:2]) + "\n")
    with pytest.raises(DataError, match="has 2 predictions but"):
        init_study(InitConfig(output=tmp_path / "s3", source=preds, instructions=ins))


@pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data/user_oriented_252 not available")
def test_init_real_user_oriented_252(tmp_path):
    preds = DATA / "predictions"
    s = init_study(
        InitConfig(
            output=tmp_path / "s",
            instructions=DATA / "user_oriented_instructions.jsonl",
            source={
                "text-davinci-003": preds / "text-davinci-003.jsonl",
                "self-instruct": preds / "davinci-self-instruct.jsonl",
                "text-davinci-001": preds / "text-davinci-001.jsonl",
            },
            reference="text-davinci-003",
        )
    )
    assert s["items"] == 252 and s["pairs"] == 504 and s["votes_needed"] == 1512
    first = json.loads((DATA / "user_oriented_instructions.jsonl").read_text().splitlines()[0])
    first_pred = json.loads((preds / "text-davinci-003.jsonl").read_text().splitlines()[0])
    p = next(p for p in pairs_of(tmp_path / "s") if p.item_id == 1 and p.model_b == "self-instruct")
    assert p.output_a == first_pred["response"].strip()
    _, store = open_store(tmp_path / "s")
    from gpt4llm.evaluate.human.tables import Item

    with store.read() as sess:
        item = sess.get(Item, 1)
    store.dispose()
    assert item.key == first["id"] and item.input == first["instances"][0]["input"]


def test_init_errors_are_one_line(tmp_path):
    src = make_sources(tmp_path / "src", 3)
    with pytest.raises(UserError, match="at least two sources"):
        init_study(InitConfig(output=tmp_path / "a", source={"alpha": src["alpha"]}))
    with pytest.raises(UserError, match="--reference 'zeta'"):
        init_study(InitConfig(output=tmp_path / "a", source=src, reference="zeta"))
    init_study(InitConfig(output=tmp_path / "a", source=src))
    with pytest.raises(UserError, match="exists"):
        init_study(InitConfig(output=tmp_path / "a", source=src))
    init_study(InitConfig(output=tmp_path / "a", source=src, force=True))
    bad = make_sources(tmp_path / "bad", 3, models=("gamma",))["gamma"]
    lines = bad.read_text().splitlines()
    rec = json.loads(lines[1])
    rec["instruction"] = "something else"
    lines[1] = json.dumps(rec)
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="different instruction") as e:
        init_study(InitConfig(output=tmp_path / "b", source={"alpha": src["alpha"], "gamma": bad}))
    assert e.value.path == str(bad)
    weird = tmp_path / "weird.jsonl"
    weird.write_text('{"question": "x"}\n')
    with pytest.raises(DataError, match="unknown answer format"):
        init_study(InitConfig(output=tmp_path / "c", source={"alpha": src["alpha"], "w": weird}))
    assert (
        not (tmp_path / "b" / "study.json").exists()
        and not (tmp_path / "c" / "study.json").exists()
    )


def test_init_reads_every_answer_format_the_judge_reads(tmp_path):
    """FastChat answers (no instruction: joined on question_id with --instructions) beside our
    response records: the one reader (`gpt4llm.answers.read_answers`) that eval judge and compare
    use."""
    src = make_sources(tmp_path / "src", 3)
    fastchat = tmp_path / "fastchat.jsonl"
    fastchat.write_text(
        "".join(
            json.dumps(
                {"question_id": f"q{i}", "model_id": "fc", "choices": [{"turns": [f"fc {i}"]}]}
            )
            + "\n"
            for i in (2, 0, 1)
        )
    )
    sources = {"alpha": src["alpha"], "fc": fastchat}
    with pytest.raises(UserError, match="pass --instructions FILE"):
        init_study(InitConfig(output=tmp_path / "a", source=sources))
    init_study(InitConfig(output=tmp_path / "s", source=sources, instructions=src["beta"]))
    from sqlalchemy import select

    from gpt4llm.evaluate.human.tables import Item

    study, store = open_store(tmp_path / "s")
    with store.read() as sess:
        items = {it.id: (it.key, it.instruction, it.input) for it in sess.scalars(select(Item))}
    store.dispose()
    assert study["sources"]["fc"]["format"] == "fastchat"
    assert sorted(k for k, _, _ in items.values()) == ["q0", "q1", "q2"]
    assert ("q1", "Instruction 1", "input 1") in items.values()
    fc_answers = {
        items[p.item_id][0]: p.output_a if p.model_a == "fc" else p.output_b
        for p in pairs_of(tmp_path / "s")
    }
    assert fc_answers == {"q0": "fc 0", "q1": "fc 1", "q2": "fc 2"}
    two_turn = tmp_path / "two.jsonl"
    two_turn.write_text(
        json.dumps({"question_id": "q0", "choices": [{"turns": ["a", "b"]}]}) + "\n"
    )
    with pytest.raises(DataError, match="two-turn") as e:
        init_study(
            InitConfig(
                output=tmp_path / "t",
                source={"alpha": src["alpha"], "two": two_turn},
                instructions=src["beta"],
            )
        )
    assert e.value.line == 1 and e.value.field == "turns"


def test_criteria_file_is_ours_and_editable(tmp_path):
    default = load_criteria()
    assert [c["key"] for c in default] == list(CRITERIA)
    f = tmp_path / "crit.yaml"
    f.write_text(
        "criteria:\n  - key: accuracy\n    name: Accuracy\n    guidance: Is it right?\n  - key:"
        " style\n"
    )
    src = make_sources(tmp_path / "src", 2)
    init_study(InitConfig(output=tmp_path / "s", source=src, criteria=f))
    study, store = open_store(tmp_path / "s")
    store.dispose()
    assert [c["key"] for c in study["criteria"]] == ["accuracy", "style"]
    assert study["criteria"][0]["guidance"] == "Is it right?"
    f.write_text("criteria:\n  - key: 'bad key'\n")
    with pytest.raises(UserError, match="'key' must be"):
        load_criteria(f)


def test_tokens_are_stored_only_hashed(tmp_path):
    study, admin = make_study(tmp_path, n=3)
    token = add_annotator(study, "alice")
    assert len(token) >= 43
    with pytest.raises(UserError, match="already exists"):
        add_annotator(study, "alice")
    raw = b"".join(p.read_bytes() for p in study.iterdir() if p.is_file())
    assert token.encode() not in raw and admin.encode() not in raw
    con = sqlite3.connect(study / "study.db")
    hashes = [r[0] for r in con.execute("select token_hash from annotators")]
    meta = dict(con.execute("select key, value from meta"))
    con.close()
    assert hashes == [hash_token(token)]
    assert meta["admin_token_hash"] == hash_token(admin)


def test_cli_init_add_annotator_export(tmp_path):
    src = make_sources(tmp_path / "src", 3)
    runner = CliRunner()
    app = cli_app()
    out = str(tmp_path / "s")
    args = [
        f"alpha={src['alpha']}",
        f"beta={src['beta']}",
        "-o",
        out,
        "--per-item",
        "1",
        "--port",
        "8123",
    ]
    r = runner.invoke(app, ["init", *args])
    assert r.exit_code == 0, r.output
    token = r.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token)
    r = runner.invoke(app, ["add-annotator", str(tmp_path / "s"), "ann one"])
    assert r.exit_code == 0, r.output
    link = r.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"http://127\.0\.0\.1:8123/a/[A-Za-z0-9_-]{43}", link)
    r = runner.invoke(app, ["export", str(tmp_path / "s"), "--output", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["votes"] == 0
    assert (tmp_path / "out" / "pie_alpha_vs_beta.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_export_onto_a_file_refused_without_force_replaced_with_it(tmp_path, cli):
    # A file where the export directory goes: one line naming it and --force, the file as it
    # was; with --force the complete export takes its place and nothing stray is left beside it.
    study, _ = make_study(tmp_path, n=2, per_item=1)
    out = tmp_path / "report.out"
    out.write_text("someone's notes\n")
    code, text = cli("annotate", "export", study, "-o", out)
    assert code == 2 and text.count("\n") == 1, text
    assert text.startswith(f"error: {out} exists and is not a directory") and "--force" in text
    assert out.read_text() == "someone's notes\n"

    code, text = cli("annotate", "export", study, "-o", out, "--force")
    assert code == 0, text
    assert out.is_dir() and json.loads((out / "summary.json").read_text())["votes"] == 0
    assert json.loads((out / "manifest.json").read_text())["stage"] == "annotate export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.out", "src", "study"]

    # an existing export directory is written into again, --force or not (as before)
    code, text = cli("annotate", "export", study, "-o", out)
    assert code == 0, text


def test_export_failure_with_force_leaves_the_file_and_no_stray_directory(tmp_path, monkeypatch):
    from gpt4llm.evaluate.human.study import export

    study, _ = make_study(tmp_path, n=2, per_item=1)
    out = tmp_path / "report.out"
    out.write_text("kept\n")

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(export, "write_json", broken)
    with pytest.raises(OSError, match="disk full"):
        export_study(ExportConfig(study=study, output=out, force=True))
    assert out.read_text() == "kept\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.out", "src", "study"]


# --- export --------------------------------------------------------------------------------


def _vote_canonical(store, annotator_id, pair, winners, comment=""):
    """Record a vote given canonical winners {criterion: 'a'|'tie'|'b'}."""
    shown = {}
    for k, w in winners.items():
        if w == "tie":
            shown[k] = "tie"
        else:
            a_left = not pair.swapped
            shown[k] = "left" if (w == "a") == a_left else "right"
    return store.record_vote(annotator_id, pair.id, shown, comment, 0)


def test_export_numbers_agreement_charts(tmp_path):
    from gpt4llm.evaluate.human.tables import Assignment

    study, _ = make_study(tmp_path, n=4, per_item=3)
    for name in ("r1", "r2", "r3"):
        add_annotator(study, name)
    pairs = pairs_of(study)
    _, store = open_store(study)
    # Helpfulness votes per pair (canonical a=alpha, b=beta), by annotator r1, r2, r3.
    plan = {
        0: ["a", "a", "a"],
        1: ["a", "tie", "b"],
        2: ["b", "b", "tie"],
        3: ["a", "a", "b"],
    }
    with store.write() as s, s.begin():
        for i, p in enumerate(pairs):
            for r in (1, 2, 3):
                s.add(Assignment(annotator_id=r, pair_id=p.id, seq=i + 1))
    for i, p in enumerate(pairs):
        for r in (1, 2, 3):
            w = plan[i][r - 1]
            _vote_canonical(
                store,
                r,
                p,
                {"helpfulness": w, "honesty": "tie", "harmlessness": "a" if r == 1 else "tie"},
                comment=f"c{r}",
            )
    store.dispose()

    summary = export_study(ExportConfig(study=study, output=tmp_path / "out"))
    out = tmp_path / "out"
    comp = summary["comparisons"][0]
    h = comp["criteria"]["helpfulness"]
    assert h["votes"] == {"alpha": 6, "tie": 2, "beta": 4}
    assert h["votes_percent"]["alpha"] == 50.0
    assert h["majority"] == {"alpha": 2, "tie": 0, "beta": 1, "no_majority": 1}
    assert comp["criteria"]["honesty"]["votes"] == {"alpha": 0, "tie": 12, "beta": 0}
    assert summary["models"]["beta"]["helpfulness"] == {"win": 4, "tie": 2, "loss": 6}
    assert (
        summary["votes"] == 12
        and summary["pairs_complete"] == 4
        and summary["annotators_voting"] == 3
    )

    # Agreement equals the libraries on the same matrix (b=0, tie=1, a=2; raters x units).
    import krippendorff
    from statsmodels.stats.inter_rater import fleiss_kappa

    code = {"b": 0, "tie": 1, "a": 2}
    mat = np.array([[code[plan[i][r]] for i in range(4)] for r in range(3)], dtype=float)
    ag = h["agreement"]
    assert ag["krippendorff_alpha_ordinal"] == pytest.approx(
        krippendorff.alpha(
            reliability_data=mat, level_of_measurement="ordinal", value_domain=[0, 1, 2]
        ),
        abs=1e-4,
    )
    assert ag["krippendorff_alpha_nominal"] == pytest.approx(
        krippendorff.alpha(
            reliability_data=mat, level_of_measurement="nominal", value_domain=[0, 1, 2]
        ),
        abs=1e-4,
    )
    table = np.array([[plan[i].count(c) for c in ("a", "tie", "b")] for i in range(4)])
    assert (
        ag["fleiss_kappa"] == pytest.approx(fleiss_kappa(table), abs=1e-4)
        and ag["fleiss_units"] == 4
    )
    # All identical: alpha undefined (one category) -> None, not NaN.
    assert comp["criteria"]["honesty"]["agreement"]["krippendorff_alpha_ordinal"] is None

    votes = [json.loads(line) for line in (out / "votes.jsonl").read_text().splitlines()]
    assert len(votes) == 12
    v = next(x for x in votes if x["annotator"] == "r3" and x["pair_id"] == pairs[1].id)
    assert v["winner"]["helpfulness"] == "beta" and v["comment"] == "c3"
    assert {v["left"], v["right"]} == {"alpha", "beta"}
    png = out / "pie_alpha_vs_beta.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    img = matplotlib.image.imread(png)
    assert img.shape[1] > 3 * img.shape[0] / 2  # three pies side by side
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stage"] == "annotate export" and manifest["summary"]["votes"] == 12
    saved = json.loads((out / "summary.json").read_text())
    assert saved["comparisons"][0]["criteria"]["helpfulness"]["votes"]["alpha"] == 6

    # Majority-basis pies are drawn too.
    export_study(ExportConfig(study=study, output=tmp_path / "out2", pie_basis="majority"))
    assert (tmp_path / "out2" / "pie_alpha_vs_beta.png").is_file()


def test_agreement_edge_cases():
    assert agreement({}, 3)["krippendorff_alpha_ordinal"] is None
    one = {1: {1: "a", 2: "b"}}
    assert (
        agreement(one, 2)["units"] == 1 and agreement(one, 2)["krippendorff_alpha_ordinal"] is None
    )
    perfect = {1: {1: "a", 2: "a"}, 2: {1: "b", 2: "b"}, 3: {1: "tie", 2: "tie"}}
    assert agreement(perfect, 2)["krippendorff_alpha_ordinal"] == 1.0
    assert agreement(perfect, 2)["fleiss_kappa"] == 1.0


def test_export_writes_fastchat_human_judgments(tmp_path):
    from gpt4llm.evaluate.human.tables import Assignment

    study, _ = make_study(tmp_path, n=3, per_item=2)
    for name in ("ann", "bea"):
        add_annotator(study, name)
    pairs = pairs_of(study)
    _, store = open_store(study)
    with store.write() as s, s.begin():
        for i, p in enumerate(pairs):
            for r in (1, 2):
                s.add(Assignment(annotator_id=r, pair_id=p.id, seq=i + 1))
    plan = {
        1: ("a", "tie", "b"),
        2: ("b", "b", "tie"),
    }  # per annotator: helpfulness, honesty, harmlessness
    for p in pairs[:2]:
        for r, winners in plan.items():
            _vote_canonical(store, r, p, dict(zip(CRITERIA, winners)))
    store.dispose()
    summary = export_study(ExportConfig(study=study, output=tmp_path / "out"))
    rows = [
        json.loads(x) for x in (tmp_path / "out" / "human_judgments.jsonl").read_text().splitlines()
    ]
    assert len(rows) == summary["votes"] * 3 == summary["human_judgments"] == 12
    assert all(
        set(r) == {"question_id", "model_a", "model_b", "winner", "judge", "turn", "criterion"}
        for r in rows
    )
    assert {(r["model_a"], r["model_b"], r["turn"]) for r in rows} == {("alpha", "beta", 1)}
    by = {(r["question_id"], r["judge"], r["criterion"]): r["winner"] for r in rows}
    name = {"a": "model_a", "b": "model_b", "tie": "tie"}
    for p in pairs[:2]:
        qid = f"q{p.item_id - 1}"  # make_sources ids; canonical winners, whatever side was shown
        for r, who in ((1, "ann"), (2, "bea")):
            for crit, w in zip(CRITERIA, plan[r]):
                assert by[(qid, who, crit)] == name[w]
    assert sum(r["winner"] == "model_b" for r in rows) == 6  # per pair: 1 from ann, 2 from bea


def _judge_run(tmp_path, fake_openai, fake_llm_config, relative=False):
    """A real `eval judge` run (against the loopback server) on 3 of 4 questions; with
    `relative`, run from its directory with relative paths (as a user would)."""
    import os

    from gpt4llm.evaluate import judge

    d = tmp_path / "jrun"
    d.mkdir()
    questions = [
        {"question_id": i, "text": f"Question number {i}?", "category": "generic"}
        for i in (1, 2, 3, 4)
    ]
    (d / "question.jsonl").write_text("".join(json.dumps(q) + "\n" for q in questions))
    # A: FastChat answers; B: our response records (ids joined with the question ids).
    (d / "cheap.jsonl").write_text(
        "".join(
            json.dumps({"question_id": i, "model_id": "cheap", "text": f"cheap says {i}"}) + "\n"
            for i in (1, 2, 3, 4)
        )
    )
    (d / "ref.jsonl").write_text(
        "".join(
            json.dumps(
                {
                    "id": str(i),
                    "instruction": f"Question number {i}?",
                    "input": "",
                    "output": f" ref says {i} ",
                    "model": "ref",
                }
            )
            + "\n"
            for i in (1, 2, 3, 4)
        )
    )
    fake_openai.responder = lambda messages, body: "7 5\nfine"
    base = Path() if relative else d
    cfg = judge.Config(
        answers_a=base / "cheap.jsonl",
        answers_b=base / "ref.jsonl",
        questions=base / "question.jsonl",
        output=base / "judge",
        judge=fake_llm_config,
        limit=3,
    )
    cwd = os.getcwd()
    os.chdir(d)
    try:
        judge.run(cfg)
    finally:
        os.chdir(cwd)
    return d


def test_init_from_judge_with_relative_paths(tmp_path, fake_openai, fake_llm_config, monkeypatch):
    d = _judge_run(tmp_path, fake_openai, fake_llm_config, relative=True)
    manifest = json.loads((d / "judge" / "manifest.json").read_text())
    assert manifest["config"]["answers_a"] == "cheap.jsonl"
    monkeypatch.chdir(tmp_path)  # not where the judge ran: found beside the judge directory
    s = init_study(InitConfig(output=tmp_path / "s", from_judge=Path("jrun/judge")))
    assert s["items"] == 3 and s["models"] == ["cheap", "ref"]


def test_init_from_a_judge_run_keeps_its_questions_and_ids(
    tmp_path, fake_openai, fake_llm_config, capsys
):
    d = _judge_run(tmp_path, fake_openai, fake_llm_config)
    s = init_study(InitConfig(output=tmp_path / "s", from_judge=d / "judge", per_item=1))
    assert s["models"] == ["cheap", "ref"] and s["items"] == 3 and s["pairs"] == 3
    study = json.loads((tmp_path / "s" / "study.json").read_text())
    assert (
        study["from_judge"]["dir"] == str(d / "judge")
        and study["from_judge"]["judge"] == "fake-model"
    )
    assert study["comparisons"] == [["cheap", "ref"]]
    from sqlalchemy import select

    from gpt4llm.evaluate.human.tables import Item

    _, store = open_store(tmp_path / "s")
    with store.read() as sess:
        items = {i.id: (i.key, i.instruction, i.input) for i in sess.scalars(select(Item))}
    store.dispose()
    assert sorted(items.values()) == [(str(i), f"Question number {i}?", "") for i in (1, 2, 3)]
    pairs = {p.item_id: (p.output_a, p.output_b) for p in pairs_of(tmp_path / "s")}
    key_of = {n: k for n, (k, _, _) in items.items()}
    assert {key_of[n]: v for n, v in pairs.items()} == {
        str(i): (f"cheap says {i}", f"ref says {i}") for i in (1, 2, 3)
    }
    # Human votes come out under the judge's question ids (integers, as FastChat writes them).
    add_annotator(tmp_path / "s", "h")
    _, store = open_store(tmp_path / "s")
    by_id = {p.id: p for p in pairs_of(tmp_path / "s")}
    while (pid := store.next_pair(1, 1)) is not None:
        _vote_canonical(
            store, 1, by_id[pid], {"helpfulness": "a", "honesty": "tie", "harmlessness": "b"}
        )
    store.dispose()
    export_study(ExportConfig(study=tmp_path / "s", output=tmp_path / "out"))
    rows = [
        json.loads(x) for x in (tmp_path / "out" / "human_judgments.jsonl").read_text().splitlines()
    ]
    judged = {
        json.loads(x)["id"] for x in (d / "judge" / "judgments.jsonl").read_text().splitlines()
    }
    assert {str(r["question_id"]) for r in rows} == judged == {"1", "2", "3"}
    assert {r["question_id"] for r in rows} == {1, 2, 3}
    helpful = {r["question_id"]: r["winner"] for r in rows if r["criterion"] == "helpfulness"}
    assert helpful == {1: "model_a", 2: "model_a", 3: "model_a"}
    # The same through the command line.
    r = CliRunner().invoke(
        cli_app(), ["init", "--from-judge", str(d / "judge"), "--output", str(tmp_path / "s2")]
    )
    assert r.exit_code == 0, r.output
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", r.stdout.strip().splitlines()[-1])


def test_init_from_judge_errors(tmp_path, fake_openai, fake_llm_config):
    d = _judge_run(tmp_path, fake_openai, fake_llm_config)
    with pytest.raises(UserError, match="not an `eval judge` output directory"):
        init_study(InitConfig(output=tmp_path / "a", from_judge=tmp_path / "nowhere"))
    src = make_sources(tmp_path / "src", 2)
    with pytest.raises(UserError, match="drop --source"):
        init_study(InitConfig(output=tmp_path / "a", from_judge=d / "judge", source=src))
    # An answer file edited after the judge read it would show humans other answers.
    with (d / "ref.jsonl").open("a") as f:
        f.write(
            json.dumps(
                {"id": "r9", "instruction": "extra", "input": "", "output": "x", "model": "ref"}
            )
            + "\n"
        )
    with pytest.raises(UserError, match="changed since the judge read it"):
        init_study(InitConfig(output=tmp_path / "a", from_judge=d / "judge"))
    (d / "ref.jsonl").unlink()
    with pytest.raises(UserError, match="answers_b .* is not found"):
        init_study(InitConfig(output=tmp_path / "a", from_judge=d / "judge"))
    assert not (tmp_path / "a" / "study.json").exists()


def test_pipeline_stage_does_not_import_the_cli_and_prints_the_token_once(tmp_path, capsys):
    import subprocess
    import sys

    code = (
        "import sys, gpt4llm.evaluate.human.stage as st, gpt4llm.evaluate.human.study.init as sd\n"
        "assert st.run is sd.run_init and st.Config is sd.InitConfig\n"
        "bad = [m for m in sys.modules if m in ('gpt4llm.cli', 'gpt4llm.evaluate.human.cli')]\n"
        "assert not bad, bad\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert r.returncode == 0, r.stderr
    from gpt4llm.evaluate.human import stage

    src = make_sources(tmp_path / "src", 2)
    capsys.readouterr()
    summary = stage.run(stage.Config(output=tmp_path / "s", source=src))
    out = capsys.readouterr()
    assert "admin_token" not in summary and summary["pairs"] == 2
    token = out.out.strip()
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token) and token not in out.err
    con = sqlite3.connect(tmp_path / "s" / "study.db")
    assert dict(con.execute("select key, value from meta"))["admin_token_hash"] == hash_token(token)
    con.close()
    assert token not in (tmp_path / "s" / "manifest.json").read_text()


def test_init_joins_sources_by_the_package_join_rule(tmp_path):
    src = make_sources(tmp_path / "src", 4, fmt="alpaca")  # no ids of their own
    lines = src["beta"].read_text().splitlines()
    src["beta"].write_text("\n".join(reversed(lines)) + "\n")  # another order: joined by text
    s = init_study(InitConfig(output=tmp_path / "s", source=src))
    assert s["pairs"] == 4
    assert all(p.output_a.split()[2] == p.output_b.split()[2] for p in pairs_of(tmp_path / "s"))
    with pytest.raises(DataError, match="different instruction"):  # forced by position
        init_study(InitConfig(output=tmp_path / "p", source=src, join="position"))
    # A file missing an instruction: one line naming it.
    src["beta"].write_text("\n".join(lines[:3]) + "\n")
    with pytest.raises(UserError, match=r"beta\.jsonl: no answer for 1 of 4 items"):
        init_study(InitConfig(output=tmp_path / "m", source=src))


def test_init_refuses_an_output_that_is_an_input(tmp_path):
    src = make_sources(tmp_path / "src", 2)
    with pytest.raises(UserError, match="output directory is a file"):
        init_study(InitConfig(output=src["alpha"], source=src))
    crit = tmp_path / "crit" / "study.json"
    crit.parent.mkdir()
    crit.write_text("criteria:\n  - key: accuracy\n")
    with pytest.raises(UserError, match="would overwrite the input"):
        init_study(InitConfig(output=crit.parent, source=src, criteria=crit, force=True))
    assert crit.read_text().startswith("criteria:")
