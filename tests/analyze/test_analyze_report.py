"""The `analyze` stage end to end on small made-up data: files, values, pictures, HTML,
cache, comparison, Chinese path, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpt4llm.analyze.stage import Config, run
from gpt4llm.errors import UserError

INSTRUCTIONS = [
    ("Write a poem about the sea.", ""),
    ("Write a poem about the sea.", ""),  # exact duplicate
    ("Write a poem about the blue sea.", ""),  # near duplicate of the first
    ("Name three rivers in Europe.", ""),
    ("Summarize the following article.", "The article text goes here."),
    ("Given a list of numbers, find the largest one.", "3, 9, 4"),
    ("What is the capital of France?", ""),
    ("Classify the following animals: dog, eagle, cat.", ""),
    ("Describe the process of photosynthesis.", ""),
    ("Translate this sentence into French.", "I like tea."),
]
OUT_A = [
    "Waves roll in.",
    "Waves roll in.",
    "Blue waves roll in softly.",
    "The Danube, the Rhine and the Seine.",
    "The article says things.",
    "The largest is 9.",
    "Paris.",
    "Dog and cat are mammals; the eagle is a bird.",
    "Plants turn light into sugar.",
    "J'aime le thé.",
]
OUT_B = [
    o + " " + " ".join(["more"] * (k + 1)) for k, o in enumerate(OUT_A)
]  # each answer k+1 words longer


def _write(path: Path, outputs: list[str] | None) -> Path:
    recs = []
    for k, (ins, inp) in enumerate(INSTRUCTIONS):
        rec = {"instruction": ins, "input": inp}
        if outputs is not None:
            rec["output"] = outputs[k]
        recs.append(rec)
    path.write_text(json.dumps(recs), encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def _verb_cache(tmp_path, monkeypatch):
    """A fresh verb cache per test (the model cache, with the embedded tokenizer, stays put)."""
    from gpt4llm.analyze import verbs as V

    monkeypatch.setattr(
        V, "default_cache_path", lambda: tmp_path / "cache" / "analyze" / "verbs.sqlite"
    )


def _png_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


def test_two_datasets_full_report(tmp_path):
    a = _write(tmp_path / "teacher_a.json", OUT_A)
    b = _write(tmp_path / "teacher_b.jsonl", None)
    b.write_text(
        "\n".join(
            json.dumps({"instruction": i, "input": x, "output": o})
            for (i, x), o in zip(INSTRUCTIONS, OUT_B)
        )
    )
    out = tmp_path / "out"
    summary = run(Config(inputs=[a, b], output=out, names=["A", "B"]))

    # numbers
    da, db = summary["datasets"]
    assert (
        da["records"] == 10
        and da["lang"] == "en"
        and da["unit"] == "words"
        and da["with_output"] == 10
    )
    iv = da["verbs"]["instruction"]
    assert (
        iv["texts"] == 10 and iv["none"] == 1 and iv["with_verb"] == 9
    )  # only the capital question has no root verb
    top = {t["verb"]: t for t in iv["top_verbs"]}
    assert top["write"]["count"] == 3 and top["write"]["nouns"] == [{"noun": "poem", "count": 3}]
    assert da["lengths"]["instruction"]["max"] == 9 and da["lengths"]["input"]["zero"] == 7
    out_a = [len(o.split()) for o in OUT_A]
    assert da["lengths"]["output"]["mean"] == round(sum(out_a) / 10, 2)
    assert db["lengths"]["output"]["mean"] == round(sum(out_a) / 10 + 5.5, 2)
    assert da["dedup"]["exact_duplicates"] == 1 and da["dedup"]["near_duplicates"] == 1
    comp = summary["comparison"]
    assert (
        comp["common"] == 9 and comp["field"] == "output"
    )  # 10 records, 9 distinct instruction+input
    assert comp["lengths"]["B"]["mean"] > comp["lengths"]["A"]["mean"]

    # files
    for name in ("summary.json", "records.jsonl", "index.html", "manifest.json"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0
    rows = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
    assert len(rows) == 20 and {r["dataset"] for r in rows} == {"A", "B"}
    first = rows[0]
    assert (
        first["instruction_verb"] == "write"
        and first["instruction_noun"] == "poem"
        and first["output_len"] == 3
    )
    assert (
        rows[1]["duplicate_of"] == rows[0]["id"] and rows[2]["near_duplicate_of"] == rows[0]["id"]
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stage"] == "analyze" and set(manifest["inputs"]) == {str(a), str(b)}

    # pictures: non-empty PNGs of sane size, all referenced by the page
    pngs = sorted(out.glob("*.png"))
    names = {p.name for p in pngs}
    assert "A_instruction_verbs_pie.png" in names and "B_output_pairs.png" in names
    assert any(n.startswith("compare_A_vs_B_output_pairs") for n in names)
    assert any(n.startswith("compare_A_vs_B_output_lengths") for n in names)
    html = (out / "index.html").read_text()
    for p in pngs:
        w, h = _png_size(p)
        assert 300 <= w <= 2500 and 200 <= h <= 2500, (p.name, w, h)
        assert p.stat().st_size > 5000
        assert f'src="{p.name}"' in html
    assert not list(out.glob("*.tmp*"))
    assert (
        "Comparison over the same instructions" in html
        and "poem (3)" in html
        and "turn · light" in html
    )


def test_rerun_hits_the_cache(tmp_path):
    a = _write(tmp_path / "a.json", OUT_A)
    s1 = run(Config(inputs=[a], output=tmp_path / "o1"))
    assert sum(p["parsed"] for p in s1["parse"]) > 0
    s2 = run(Config(inputs=[a], output=tmp_path / "o2"))
    assert all(p["parsed"] == 0 and p["cache_hits"] == p["unique"] for p in s2["parse"])
    assert s2["datasets"][0]["verbs"] == s1["datasets"][0]["verbs"]
    assert (tmp_path / "cache" / "analyze" / "verbs.sqlite").is_file()
    s3 = run(Config(inputs=[a], output=tmp_path / "o3", no_cache=True))
    assert all(p["cache_hits"] == 0 for p in s3["parse"])


def test_instructions_without_outputs(tmp_path):
    a = _write(tmp_path / "plain.json", None)
    s = run(Config(inputs=[a], output=tmp_path / "o", dedup=False))
    d = s["datasets"][0]
    assert d["with_output"] == 0 and "output" not in d["verbs"] and "output" not in d["lengths"]
    assert d["dedup"] is None and (tmp_path / "o" / "plain_instruction_lengths.png").is_file()


def test_chinese_without_zh_pipeline(tmp_path, monkeypatch):
    from gpt4llm.analyze import verbs as V

    real = V.available_model
    monkeypatch.setattr(
        V, "available_model", lambda lang="en": None if lang == "zh" else real(lang)
    )
    zh = tmp_path / "zh.json"
    zh.write_text(
        json.dumps(
            [
                {"instruction": "写一首关于秋天的诗", "input": "", "output": "秋风起，落叶黄。"},
                {"instruction": "写一首关于秋天的短诗", "input": "", "output": "秋 天 到 了"},
                {
                    "instruction": "介绍一下长城",
                    "input": "",
                    "output": "长城是中国古代的军事防御工程。",
                },
            ],
            ensure_ascii=False,
        ),
        encoding="utf-8",
    )
    s = run(Config(inputs=[zh], output=tmp_path / "o"))
    d = s["datasets"][0]
    assert d["lang"] == "zh" and d["unit"] == "chars" and d["verbs"] == {}
    assert (
        d["lengths"]["instruction"]["max"] == 10 and d["lengths"]["output"]["min"] == 4
    )  # whitespace not counted
    assert d["dedup"]["near_duplicates"] == 1
    assert any("zh_core_web_sm" in n for n in s["notes"]) and any(
        "skipped" in n for n in d["notes"]
    )
    html = (tmp_path / "o" / "index.html").read_text(encoding="utf-8")
    assert "zh_core_web_sm" in html and "chars" in html
    rows = [
        json.loads(x)
        for x in (tmp_path / "o" / "records.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    assert (
        rows[0]["unit"] == "chars"
        and rows[0]["instruction_len"] == 9
        and "instruction_verb" not in rows[0]
    )


def test_errors_are_one_line(tmp_path):
    with pytest.raises(UserError, match="at least one"):
        run(Config(inputs=[], output=tmp_path / "o"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "ok"}\n{"input": "no instruction"}\n')
    with pytest.raises(UserError, match=r"bad.jsonl:2: field 'instruction'"):
        run(Config(inputs=[bad], output=tmp_path / "o"))
    a = _write(tmp_path / "a.json", None)
    with pytest.raises(UserError, match="--names"):
        run(Config(inputs=[a], output=tmp_path / "o", names=["x", "y"]))


def test_cli_positional_files(tmp_path):
    from typer.testing import CliRunner

    from gpt4llm.cli import app

    a = _write(tmp_path / "a.json", OUT_A)
    b = _write(tmp_path / "b.json", OUT_B)
    res = CliRunner().invoke(
        app,
        [
            "analyze",
            str(a),
            str(b),
            "--output",
            str(tmp_path / "o"),
            "--top-verbs",
            "5",
            "--dedup-threshold",
            "0.8",
        ],
    )
    assert res.exit_code == 0, res.output
    s = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert [d["name"] for d in s["datasets"]] == ["a", "b"] and s["dedup_threshold"] == 0.8
    assert len(s["datasets"][0]["verbs"]["instruction"]["top_verbs"]) <= 5
    help_text = CliRunner().invoke(app, ["analyze", "--help"]).output
    assert "--tokenizer" in help_text and "--dedup-threshold" in help_text


@pytest.mark.e2e
def test_token_lengths_with_embedded_tokenizer(tmp_path):
    from gpt4llm.models import load_tokenizer

    a = _write(tmp_path / "a.json", OUT_A)
    s = run(Config(inputs=[a], output=tmp_path / "o", tokenizer="embedded", dedup=False))
    tok = load_tokenizer("embedded")
    want = [len(tok(o, add_special_tokens=False)["input_ids"]) for o in OUT_A]
    assert s["datasets"][0]["lengths"]["output_tokens"]["max"] == max(want)
    rows = [json.loads(x) for x in (tmp_path / "o" / "records.jsonl").read_text().splitlines()]
    assert [r["output_tokens"] for r in rows] == want
