"""eval rouge: identical to Google's rouge-score, buckets, joins, bad input, CJK, the CLI."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from gpt4llm.errors import DataError, UserError
from gpt4llm.evaluate import rouge
from gpt4llm.evaluate.rouge import Config
from gpt4llm.text import rouge as text_rouge
from gpt4llm.text import tokens

WORDS = [
    "the",
    "a",
    "of",
    "and",
    "to",
    "in",
    "is",
    "was",
    "running",
    "runs",
    "ran",
    "generalization",
    "generalize",
    "caresses",
    "ponies",
    "cats",
    "cat's",
    "hopping",
    "hoped",
    "university",
    "universal",
    "relational",
    "conditional",
    "2023",
    "42",
    "3.14",
    "don't",
    "U.S.A.",
    "e-mail",
    "naïve",
    "café",
    "résumé",
    "Straße",
    "über",
]


def _edge_cases(rng: random.Random) -> list[tuple[str, str]]:
    fixed = [
        ("", ""),
        ("", "something"),
        ("something", ""),
        ("!!! ... ???", "—– ,,,"),
        ("   ", "\n\t"),
        ("Yes", "yes."),
        ("No", "Yes"),
        ("42", "42"),
        ("A", "a a a a"),
        ("the the the", "the"),
        ("Café naïve résumé", "cafe naive resume"),
        ("日本語のテキスト", "日本語"),
        ("emoji 🎉 party", "party 🎉"),
        ("Ünïcödé straße", "unicode strasse"),
        ("x" * 5000, "x" * 5000),
        ("don't stop", "do n't stop"),
        ("generalization generalizations", "generalize general"),
        ("İstanbul", "istanbul"),
    ]
    long_a = " ".join(rng.choice(WORDS) for _ in range(3000))
    long_b = " ".join(rng.choice(WORDS) for _ in range(2500))
    fixed.append((long_a, long_b))
    for _ in range(600):
        n, m = rng.choice([0, 1, 2, 3, 5, 8, 15, 40]), rng.choice([0, 1, 2, 4, 9, 20, 60])
        a = " ".join(rng.choice(WORDS) for _ in range(n))
        b = " ".join(rng.choice(WORDS) for _ in range(m))
        if rng.random() < 0.2:
            b = a + " " + b
        fixed.append((a, b))
    return fixed


def _real_pairs(shared: Path) -> list[tuple[str, str]]:
    files = sorted((shared / "vicuna80" / "answers").glob("answer_*.jsonl"))
    answers = [
        [json.loads(x)["text"] for x in f.read_text().splitlines() if x.strip()] for f in files
    ]
    pairs = []
    for i in range(len(answers)):
        for j in range(i + 1, len(answers)):
            pairs += list(zip(answers[i], answers[j]))
    preds = sorted((shared / "user_oriented_252" / "predictions").glob("*.jsonl"))
    for f in preds:
        pairs += [(r["target"], r["response"]) for r in map(json.loads, f.read_text().splitlines())]
    return pairs


@pytest.mark.slow  # ~13 s: thousands of real pairs through rouge-score itself (runs in CI)
@pytest.mark.parametrize("stem", [False, True])
def test_identical_to_rouge_score(stem):
    from repo_paths import SHARED_DATA
    from rouge_score import rouge_scorer

    rng = random.Random(7)
    pairs = _edge_cases(rng)
    if SHARED_DATA.is_dir():
        pairs += _real_pairs(SHARED_DATA)
    if len(pairs) < 2000:  # without the shared data: more synthetic pairs, still >= 2000
        while len(pairs) < 2000:
            pairs.append(
                (
                    " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 30))),
                    " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 30))),
                )
            )
    assert len(pairs) >= 2000
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=stem)
    worst = 0.0
    for ref, pred in pairs:
        want = scorer.score(ref, pred)
        got = text_rouge.score(ref, pred, stem=stem)
        for t in ("rouge1", "rouge2", "rougeL"):
            worst = max(worst, abs(want[t].fmeasure - got[t]))
    assert worst <= 1e-9


def test_tokenizer_matches_rouge_score_and_char_mode():
    from rouge_score import tokenize as rs

    for text in ("Hello, World! Running 3.14 dogs' e-mails", "Ünïcödé İstanbul 日本", ""):
        assert tokens.tokenize(text, stem=False) == rs.tokenize(text, None)
        assert tokens.tokenize(text, stem=True) == rs.tokenize(text, tokens._stemmer())
    assert tokens.tokenize("我爱北京 GPT-4 模型!", tokenizer="char") == [
        "我",
        "爱",
        "北",
        "京",
        "gpt",
        "4",
        "模",
        "型",
    ]
    assert tokens.tokenize("我爱北京", tokenizer="rouge") == []  # why char mode exists
    assert text_rouge.score("我爱北京天安门", "我爱北京", tokenizer="char")[
        "rouge1"
    ] == pytest.approx(2 * 1 * (4 / 7) / (1 + 4 / 7))
    assert tokens.detect_tokenizer(["你好世界", "hello", "再见"]) == "char"
    assert tokens.detect_tokenizer(["hello", "world", "foo", "bar", "baz", "日本"]) == "rouge"


def test_buckets_and_paper_labels():
    assert rouge.bucket_labels([2, 5, 10]) == ["0-2", "3-5", "6-10", ">10"]
    assert [rouge.bucket_of(n, [2, 5, 10]) for n in (0, 2, 3, 5, 6, 10, 11, 500)] == [
        "0-2",
        "0-2",
        "3-5",
        "3-5",
        "6-10",
        "6-10",
        ">10",
        ">10",
    ]
    assert rouge.bucket_labels([1, 4]) == ["0-1", "2-4", ">4"]
    # the published table's labels map to ours (GPT-4-LLM's files: len6-10, len10-)
    assert (
        rouge.PAPER_BUCKETS["5-10"] == "6-10"
        and rouge.PAPER_BUCKETS["10-"] == ">10"
        and rouge.PAPER_BUCKETS["ALL"] == "all"
    )


def _jsonl(path: Path, rows) -> Path:
    path.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
    )
    return path


REFS = [
    {"id": "u1", "instruction": "i", "input": "", "output": "Paris"},  # 1 word
    {"id": "u2", "instruction": "i", "input": "", "output": "the quick brown fox"},  # 4 words
    {
        "id": "u3",
        "instruction": "i",
        "input": "",
        "output": "one two three four five six seven",
    },  # 7
    {"id": "u4", "instruction": "i", "input": "", "output": " ".join(["word"] * 12)},  # 12
]


def test_run_by_id_writes_examples_summary_manifest(tmp_path):
    refs = _jsonl(tmp_path / "refs.jsonl", REFS)
    preds = _jsonl(
        tmp_path / "preds.jsonl",
        [
            {"id": "u3", "output": "one two three", "model": "m1"},
            {"id": "u1", "output": "Paris.", "model": "m1"},
            {"id": "u2", "output": "", "model": "m1"},
            {"id": "u4", "output": "word word", "model": "m1"},
        ],
    )
    out = tmp_path / "out"
    s = rouge.run(Config(predictions=preds, references=refs, output=out, stem=False))
    rows = {r["id"]: r for r in map(json.loads, (out / "examples.jsonl").read_text().splitlines())}
    assert rows["u1"]["rouge1"] == 1.0 and rows["u1"]["bucket"] == "0-2"
    assert (
        rows["u2"]["rougeL"] == 0.0
        and rows["u2"]["empty_prediction"] is True
        and rows["u2"]["bucket"] == "3-5"
    )
    # u3: P = 1, R = 3/7 -> F = 2*(3/7)/(1+3/7) = 0.6
    assert rows["u3"]["rouge1"] == pytest.approx(0.6) and rows["u3"]["bucket"] == "6-10"
    assert rows["u4"]["bucket"] == ">10"
    assert (
        s["model"] == "m1" and s["n"] == 4 and s["n_empty_predictions"] == 1 and s["join"] == "id"
    )
    by = {b["bucket"]: b for b in s["buckets"]}
    assert [b["bucket"] for b in s["buckets"]] == ["0-2", "3-5", "6-10", ">10", "all"]
    assert by["all"]["rouge1"] == pytest.approx(sum(r["rouge1"] for r in rows.values()) / 4)
    assert by["3-5"]["n"] == 1 and by["3-5"]["rouge1"] == 0.0
    assert json.loads((out / "summary.json").read_text())["buckets"] == s["buckets"]
    man = json.loads((out / "manifest.json").read_text())
    assert (
        man["stage"] == "eval rouge"
        and str(preds) in man["inputs"]
        and man["config"]["stem"] is False
    )


def test_missing_duplicate_and_allow_missing(tmp_path):
    refs = _jsonl(tmp_path / "refs.jsonl", REFS)
    preds = _jsonl(
        tmp_path / "preds.jsonl", [{"id": "u1", "output": "Paris"}, {"id": "zz", "output": "x"}]
    )
    with pytest.raises(
        UserError,
        match=(
            r"3 references have no prediction: 'u2', 'u3', 'u4'.*1 predictions have no reference:"
            r" 'zz'"
        ),
    ):
        rouge.run(Config(predictions=preds, references=refs, output=tmp_path / "o"))
    assert not (tmp_path / "o").exists()
    s = rouge.run(
        Config(predictions=preds, references=refs, output=tmp_path / "o", allow_missing=True)
    )
    assert s["n"] == 1 and s["n_missing_predictions"] == 3 and s["n_unmatched_predictions"] == 1
    dup = _jsonl(tmp_path / "dup.jsonl", [{"id": "u1", "output": "a"}, {"id": "u1", "output": "b"}])
    with pytest.raises(DataError, match=r"duplicate ids: 'u1'"):
        rouge.run(Config(predictions=dup, references=refs, output=tmp_path / "o2"))
    bad = _jsonl(tmp_path / "bad.jsonl", [{"id": "u1", "text": "a"}])
    with pytest.raises(DataError, match=r"bad.jsonl:1: field 'output': missing"):
        rouge.run(Config(predictions=bad, references=refs, output=tmp_path / "o3"))
    with pytest.raises(UserError, match="--buckets"):
        rouge.run(
            Config(predictions=preds, references=refs, output=tmp_path / "o4", buckets=[5, 2])
        )


def test_position_join_and_instances_references(tmp_path):
    refs = _jsonl(
        tmp_path / "uo.jsonl",
        [
            {"id": "t0", "instruction": "x", "instances": [{"input": "", "output": "a cat sat"}]},
            {"id": "t1", "instruction": "y", "instances": [{"input": "", "output": "blue"}]},
        ],
    )
    preds = _jsonl(
        tmp_path / "p.jsonl",
        [{"prompt": "x", "response": "a cat sat"}, {"prompt": "y", "response": "red"}],
    )
    s = rouge.run(
        Config(
            predictions=preds, references=refs, output=tmp_path / "o", prediction_field="response"
        )
    )
    assert (
        s["join"] == "position" and s["all"]["rouge1"] == pytest.approx(0.5) and s["model"] == "p"
    )
    short = _jsonl(tmp_path / "short.jsonl", [{"response": "a"}])
    with pytest.raises(
        UserError, match="neither ids nor instructions.*different numbers of records"
    ):
        rouge.run(
            Config(
                predictions=short,
                references=refs,
                output=tmp_path / "o2",
                prediction_field="response",
            )
        )


def test_chinese_auto_char_tokens(tmp_path):
    refs = _jsonl(
        tmp_path / "zh.jsonl", [{"id": "1", "instruction": "i", "output": "北京是中国的首都"}]
    )
    preds = _jsonl(tmp_path / "p.jsonl", [{"id": "1", "output": "中国的首都是北京"}])
    s = rouge.run(Config(predictions=preds, references=refs, output=tmp_path / "o"))
    assert s["tokenizer"] == "char" and s["length_unit"] == "characters" and s["stem"] is False
    assert s["all"]["rouge1"] == 1.0 and 0 < s["all"]["rougeL"] < 1
    assert s["buckets"][2]["n"] == 1  # 8 characters -> 6-10


def test_cli(tmp_path):
    from typer.testing import CliRunner

    from gpt4llm.cli import app

    refs = _jsonl(tmp_path / "refs.jsonl", REFS)
    preds = _jsonl(tmp_path / "preds.jsonl", [{"id": r["id"], "output": r["output"]} for r in REFS])
    res = CliRunner().invoke(
        app,
        [
            "eval",
            "rouge",
            str(preds),
            str(refs),
            "--output",
            str(tmp_path / "o"),
            "--buckets",
            "1",
            "--buckets",
            "5",
            "--no-stem",
        ],
    )
    assert res.exit_code == 0, res.output
    s = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert [b["bucket"] for b in s["buckets"]] == ["0-1", "2-5", ">5", "all"]
    assert s["all"]["rougeL"] == 1.0 and s["stem"] is False


def test_references_without_ids_join_like_load_instructions(tmp_path):
    from gpt4llm.records import load_instructions

    refs = tmp_path / "alpaca.json"  # Alpaca JSON array, no ids
    refs.write_text(
        json.dumps(
            [
                {"instruction": "a", "input": "", "output": "red"},
                {"instruction": "b", "input": "", "output": "blue sky"},
            ]
        )
    )
    ids = [r["id"] for r in load_instructions(refs)]  # what `respond` carries over
    preds = _jsonl(
        tmp_path / "resp.jsonl",
        [{"id": ids[1], "output": "blue sky"}, {"id": ids[0], "output": "red"}],
    )
    s = rouge.run(Config(predictions=preds, references=refs, output=tmp_path / "o"))
    assert s["join"] == "id" and s["all"]["rougeL"] == 1.0
