"""`gpt4llm audit` on constructed data whose flags are known: every rule, duplicates, the rater
score filter, n-gram contamination with planted 13-grams (and the published evaluation sets
from ../shared/data when present), actions, outputs and errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

LONG = (  # 23 words, stops mid-sentence
    "The committee reviewed every proposal in detail and then decided that the budget for the new "
    "library would be split between the"
)

VICUNA = [
    {
        "question_id": 1,
        "text": "How can I improve my time management skills?",
        "category": "generic",
    },
    {
        "question_id": 2,
        "text": (
            "What are the most effective ways to deal with stress at work and at home during "
            "a busy season?"
        ),
        "category": "generic",
    },
    {"question_id": 3, "text": "Hi there", "category": "generic"},  # too short to check
]
# 16 tokens of question 2
PLANTED = "What are the most effective ways to deal with stress at work and at home"

RECORDS = [
    {
        "id": "good",
        "instruction": "Give three tips for staying healthy.",
        "input": "",
        "output": "Eat well, sleep, and move.",
    },
    {"id": "empty", "instruction": "Name a primary color.", "input": "", "output": ""},
    {"id": "blank", "instruction": "Which ocean is the largest?", "input": "", "output": "  \n "},
    {
        "id": "na",
        "instruction": "Find the typo in the sentence.",
        "input": "All fine here.",
        "output": "N/A",
    },
    {
        "id": "noinput",
        "instruction": "Translate the word into German.",
        "input": "house",
        "output": "<noinput>",
    },
    {
        "id": "ai",
        "instruction": "What is the weather in Paris today?",
        "input": "",
        "output": "As an AI language model, I cannot browse the internet for live weather.",
    },
    {
        "id": "sorry",
        "instruction": "Write an insult about my neighbour.",
        "input": "",
        "output": "I'm sorry, but I cannot help with that request.",
    },
    {
        "id": "cut",
        "instruction": "Explain how photosynthesis works.",
        "input": "",
        "output": "The process begins when",
        "finish_reason": "length",
    },
    {
        "id": "midway",
        "instruction": "Summarize the meeting notes.",
        "input": "Notes ...",
        "output": LONG,
    },
    {
        "id": "colon",
        "instruction": "List the steps to boil an egg.",
        "input": "",
        "output": "Here are the steps:",
    },
    {
        "id": "image",
        "instruction": "Describe what is happening in the image below.",
        "input": "",
        "output": "A dog runs.",
    },
    {
        "id": "url",
        "instruction": "Summarize the article at the given URL.",
        "input": "",
        "output": "It is about cats.",
    },
    {
        "id": "dup",
        "instruction": "Give three tips for staying healthy.",
        "input": "",
        "output": "Drink water.",
    },
    {
        "id": "near",
        "instruction": "Give three tips for staying healthy today.",
        "input": "",
        "output": "Walk daily.",
    },
    {
        "id": "leak",
        "instruction": "Answer the question.",
        "input": "",
        "output": f"Someone asked: {PLANTED.lower()}? Here is my answer.",
    },
    {
        "id": "short_leak",
        "instruction": "how can i improve my time management skills",
        "input": "",
        "output": "Plan ahead.",
    },
    {
        "id": "list",
        "instruction": "Name some fruits and describe each briefly.",
        "input": "",
        "output": (
            "- apples are crisp and sweet\n- pears are soft and juicy\n"
            "- plums are small and tart\n- figs are rich and sugary with seeds"
        ),
    },
    {
        "id": "scored_low",
        "instruction": "Write a haiku about rain.",
        "input": "",
        "output": "Rain rain rain.",
    },
    {
        "id": "scored_high",
        "instruction": "Compose a short poem on snowfall.",
        "input": "",
        "output": "White hush on the hills.",
    },
    {
        "id": "almost",
        "instruction": "Reply to the user.",
        "input": "",  # 12 tokens of question 2: not a 13-gram
        "output": "the most effective ways to deal with stress at work and at",
    },
]

EXPECTED = {  # id -> reasons, with the default actions
    "empty": ["empty"],
    "blank": ["empty"],
    "na": ["no_output"],
    "noinput": ["no_output"],
    "ai": ["refusal"],
    "sorry": ["refusal"],
    "cut": ["truncated"],
    "midway": ["unfinished"],
    "colon": ["unfinished"],
    "image": ["needs_media"],
    "url": ["needs_media"],
    "dup": ["duplicate"],
    "near": ["near_duplicate"],
    "leak": ["contaminated"],
    "short_leak": ["contaminated"],
    "scored_low": ["low_score"],
}
DROPPED = {"empty", "blank", "na", "noinput", "ai", "sorry", "leak", "short_leak"}

SCORES = [
    {
        "id": "scored_low",
        "user_input": "Write a haiku about rain.",
        "instruction": "Write a haiku about rain.",
        "input": "",
        "responses": [
            {"model": "teacher", "text": "Rain rain rain.", "score": 2},
            {"model": "other", "text": "Soft rain.", "score": 9},
        ],
    },
    {
        "id": "scored_high",
        "user_input": "Compose a short poem on snowfall.",
        "instruction": "Compose a short poem on snowfall.",
        "input": "",
        "responses": [{"model": "teacher", "text": "White hush on the hills.", "score": 8}],
    },
    {
        "id": "good",
        "user_input": "Give three tips for staying healthy.",
        "instruction": "Give three tips for staying healthy.",
        "input": "",
        "responses": [{"model": "other", "text": "Something else.", "score": 1}],
    },  # not this answer
]


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def files(tmp_path):
    return {
        "data": write_jsonl(tmp_path / "sft.jsonl", RECORDS),
        "vicuna": write_jsonl(tmp_path / "vicuna.jsonl", VICUNA),
        "scores": write_jsonl(tmp_path / "cmp.jsonl", SCORES),
    }


def test_every_rule_flags_what_it_should(files, tmp_path):
    from gpt4llm.stages.audit import Config, run

    out = tmp_path / "clean.jsonl"
    s = run(
        Config(
            data=files["data"],
            output=out,
            eval_set={"vicuna": files["vicuna"]},
            scores=files["scores"],
            min_score=5,
        )
    )
    flagged = {r["id"]: r for r in read_jsonl(tmp_path / "clean.jsonl.flagged.jsonl")}
    assert {k: v["reasons"] for k, v in flagged.items()} == EXPECTED
    assert {k for k, v in flagged.items() if v["action"] == "drop"} == DROPPED
    clean = read_jsonl(out)
    assert [r["id"] for r in clean] == [r["id"] for r in RECORDS if r["id"] not in DROPPED]
    assert (
        clean[0] == RECORDS[0] and clean[1] == RECORDS[7] and clean[1]["finish_reason"] == "length"
    )  # unchanged
    assert s["records"] == 20 and s["dropped"] == 8 and s["kept"] == 12 and s["flagged"] == 8
    counts = {rule: r["records"] for rule, r in s["rules"].items()}
    assert counts == {
        "empty": 2,
        "no_output": 2,
        "refusal": 2,
        "contaminated": 2,
        "truncated": 1,
        "unfinished": 2,
        "needs_media": 2,
        "duplicate": 1,
        "near_duplicate": 1,
        "low_score": 1,
    }
    assert flagged["dup"]["details"]["duplicate"] == "same instruction and input as good"
    assert flagged["near"]["details"]["near_duplicate"].startswith("ROUGE-L 0.92 with good")
    assert flagged["scored_low"]["details"]["low_score"] == "rater score 2 < 5 (teacher)"
    assert flagged["ai"]["details"]["refusal"].lower().startswith("as an ai language model")
    assert flagged["image"]["details"]["needs_media"] == "in the image"
    assert flagged["midway"]["details"]["unfinished"] == "be split between the"

    # contamination: the pairs, with the shared n-gram
    leak = flagged["leak"]["details"]["contaminated"]
    assert leak[0]["set"] == "vicuna" and leak[0]["eval_id"] == "2" and leak[0]["field"] == "output"
    assert leak[0]["ngram"] in PLANTED.lower() and len(leak[0]["ngram"].split()) == 13
    short = flagged["short_leak"]["details"]["contaminated"][0]
    assert (
        short["eval_id"] == "1" and short["ngram"] == "how can i improve my time management skills"
    )
    c = s["contamination"]["sets"]["vicuna"]
    assert (
        c["items"],
        c["checked"],
        c["too_short"],
        c["contaminated_items"],
        c["train_records"],
    ) == (3, 2, 1, 2, 2)
    assert {(p["train_id"], p["eval_id"]) for p in c["pairs"]} == {
        ("leak", "2"),
        ("short_leak", "1"),
    }
    assert s["scores"]["scored"] == 2 and s["scores"]["below"] == 1 and s["scores"]["unscored"] == 1

    html = (tmp_path / "clean.jsonl.audit.html").read_text()
    assert (
        "Data audit" in html
        and "short_leak" in html
        and "how can i improve my time management skills" in html
    )
    assert "<script" not in html and "http" not in html.split("</style>")[0]  # self-contained
    assert "&lt;noinput&gt;" in html  # user text is escaped
    manifest = json.loads((tmp_path / "clean.jsonl.manifest.json").read_text())
    assert manifest["status"] == "ok" and manifest["summary"]["dropped"] == 8
    assert str(files["vicuna"]) in manifest["inputs"]


def test_ngram_length_and_fields(files, tmp_path):
    from gpt4llm.stages.audit import Config, run

    # 12 shared tokens ("almost") are not enough for 13-grams, but are for --ngram 12
    s = run(
        Config(
            data=files["data"],
            output=tmp_path / "a.jsonl",
            eval_set={"v": files["vicuna"]},
            ngram=12,
        )
    )
    flagged = {r["id"]: r for r in read_jsonl(tmp_path / "a.jsonl.flagged.jsonl")}
    assert "contaminated" in flagged["almost"]["reasons"]
    assert s["contamination"]["sets"]["v"]["train_records"] == 3
    # an n-gram split between two fields does not count
    split = [
        {
            "id": "x",
            "instruction": "What are the most effective ways to deal",
            "input": "with stress at work and at home",
            "output": "ok",
        }
    ]
    s = run(
        Config(
            data=write_jsonl(tmp_path / "split.jsonl", split),
            output=tmp_path / "b.jsonl",
            eval_set={"v": files["vicuna"]},
        )
    )
    assert s["rules"]["contaminated"]["records"] == 0 and s["dropped"] == 0


def test_actions(files, tmp_path):
    from gpt4llm.errors import UserError
    from gpt4llm.stages.audit import Config, resolve_actions, run

    s = run(Config(data=files["data"], output=tmp_path / "f.jsonl", action={"all": "flag"}))
    assert s["dropped"] == 0 and len(read_jsonl(tmp_path / "f.jsonl")) == 20
    s = run(
        Config(
            data=files["data"],
            output=tmp_path / "d.jsonl",
            action={
                "duplicate": "drop",
                "near_duplicate": "drop",
                "empty": "off",
                "unfinished": "off",
            },
        )
    )
    ids = {r["id"] for r in read_jsonl(tmp_path / "d.jsonl")}
    assert {"empty", "blank", "midway", "colon"} <= ids and not ({"dup", "near", "na"} & ids)
    assert s["rules"]["empty"]["records"] == 0 and s["rules"]["empty"]["action"] == "off"
    assert (
        s["rules"]["contaminated"]["records"] == 0 and s["contamination"] is None
    )  # no --eval-set
    assert resolve_actions({"all": "drop"})["unfinished"] == "flag"
    with pytest.raises(UserError, match="'unfinished' is a heuristic"):
        resolve_actions({"unfinished": "drop"})
    with pytest.raises(UserError, match="unknown rule class"):
        resolve_actions({"dupes": "drop"})
    s = run(
        Config(data=files["data"], output=tmp_path / "n.jsonl", action={"near_duplicate": "off"})
    )
    assert s["duplicates"]["near_duplicates"] == 0 and "not checked" in s["duplicates"]["note"]


def test_score_filter_by_model_name_and_drop(files, tmp_path):
    from gpt4llm.stages.audit import Config, run

    s = run(
        Config(
            data=files["data"],
            output=tmp_path / "s.jsonl",
            scores=files["scores"],
            min_score=9,
            score_model="teacher",
            action={"low_score": "drop"},
        )
    )
    ids = {r["id"] for r in read_jsonl(tmp_path / "s.jsonl")}
    # by source name: scored_low (2) and scored_high (8) are below 9; "good" has no 'teacher'
    # response
    assert "scored_low" not in ids and "scored_high" not in ids and "good" in ids
    assert s["scores"]["below"] == 2 and s["scores"]["without_comparison"] == 17


def test_rule_checks_do_not_fire_on_ordinary_text():
    from gpt4llm.analyze import quality

    for text in (
        "Unknown",
        "None of the above options is correct because the premise is false.",
        "0",
        "No.",
    ):
        assert quality.is_placeholder(text) is None, text
    for text in ("N/A", "n/a.", "None", "<nooutput>", "No output", "'Not applicable'", "-"):
        assert quality.is_placeholder(text), text
    for text in (
        "I cannot see why this would fail.",
        "As an AI researcher, she studies vision models.",
        "Sorry is a word people say too often.",
        "The model said it cannot fulfill the order.",
    ):
        assert quality.refusal(text) is None, text
    for text in (
        "I am sorry, but as an AI I can't do that.",
        "As a language model, I do not have opinions.",
        "I'm unable to provide medical advice.",
        "I don't have access to real-time data.",
        "Unfortunately, I cannot browse the web.",
    ):
        assert quality.refusal(text), text
    assert quality.needs_media("Describe the following table in one sentence.", "| a | b |") is None
    assert quality.needs_media("Summarize the given document.", "The document says ...") is None
    assert quality.needs_media("Summarize the given document.", "") == "the given document"
    assert quality.needs_media("Listen to the song and describe its mood.", "") is not None
    assert quality.needs_media("Write a story about a map maker.", "") is None
    assert quality.unfinished("def f(x):\n    return x +") is not None  # open operator
    assert quality.unfinished("```python\nprint(1)\n```") is None
    assert quality.unfinished(LONG + " library and the park") is not None
    assert quality.unfinished("Positive") is None and quality.unfinished(LONG + ".") is None
    assert quality.unfinished("| name | age |\n| Bob | " + " ".join(["x"] * 20) + " |") is None
    assert quality.truncated({"finish_reason": "length"}) and quality.truncated({"truncated": True})
    assert quality.truncated({"finish_reason": "stop"}) is None


def test_eval_set_formats(tmp_path):
    """Questions are read in each format; the parts of an item are separate texts."""
    from gpt4llm.analyze.contamination import eval_segments, load_eval_set

    mt = {
        "question_id": 81,
        "category": "writing",
        "turns": ["Compose a blog post.", "Rewrite it in verse."],
    }
    uo = {
        "id": "user_oriented_task_0",
        "motivation_app": "Grammarly",
        "instruction": "Rewrite the sentence.",
        "instances": [{"input": "If you have any questions", "output": "Ask me."}],
    }
    un = {
        "instruction": "Classify the review.",
        "instances": [
            {
                "instruction_with_input": "Classify: good film",
                "input": "good film",
                "constraints": "positive or negative",
                "output": "positive",
            }
        ],
        "reformulations": [
            {
                "instruction": "Is the review positive?",
                "instruction_with_input": "Is it? good film",
                "input": "good film",
                "output": "yes",
            }
        ],
    }
    alp = {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"}
    assert eval_segments(mt) == (
        "mt_bench",
        [("turns[0]", "Compose a blog post."), ("turns[1]", "Rewrite it in verse.")],
    )
    assert eval_segments(uo) == (
        "user_oriented",
        [
            ("instruction", "Rewrite the sentence."),
            ("instances[0].input", "If you have any questions"),
        ],
    )
    assert ("instances[0].output", "Ask me.") in eval_segments(uo, "all")[1]
    fmt, seg = eval_segments(un)
    assert (
        fmt == "unnatural"
        and ("reformulations[0].instruction_with_input", "Is it? good film") in seg
    )
    assert not any(w.endswith("output") for w, _ in seg)
    assert eval_segments(alp) == (
        "alpaca",
        [("instruction", "Add the numbers."), ("input", "2 and 3")],
    )
    assert eval_segments({"prompt": "Tell me a joke.", "completion": "No."})[0] == "generic"
    bad = write_jsonl(tmp_path / "bad.jsonl", [mt, {"foo": 1}])
    from gpt4llm.errors import DataError

    with pytest.raises(DataError, match=r"bad.jsonl:2: unknown evaluation format"):
        load_eval_set(bad)
    fmt, items = load_eval_set(write_jsonl(tmp_path / "mt.jsonl", [mt]))
    assert fmt == "mt_bench" and items[0].id == "81"


def test_errors_and_json_array_input(files, tmp_path, monkeypatch, capsys):
    from gpt4llm.cli import main

    def cli(*args) -> tuple[int, str]:
        monkeypatch.setattr(sys, "argv", ["gpt4llm", *map(str, args)])
        try:
            main()
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        got = capsys.readouterr()
        return code, got.err + got.out

    code, err = cli("audit", files["data"], "-o", tmp_path / "o.jsonl", "--scores", files["scores"])
    assert code == 2 and "--scores needs --min-score" in err
    bad = write_jsonl(
        tmp_path / "bad.jsonl", [RECORDS[0], {"id": "z", "instruction": "No answer here."}]
    )
    code, err = cli("audit", bad, "-o", tmp_path / "o.jsonl")
    assert code == 2 and f"{bad}:2: field 'output': missing" in err
    code, err = cli(
        "audit",
        files["data"],
        "-o",
        tmp_path / "o.jsonl",
        "--eval-set",
        f"v={tmp_path / 'missing.jsonl'}",
    )
    assert code == 2 and "missing.jsonl" in err and "Traceback" not in err
    code, err = cli(
        "audit", files["data"], "-o", files["vicuna"], "--eval-set", f"v={files['vicuna']}"
    )
    assert code == 2 and "would overwrite the input" in err
    code, err = cli(
        "audit", files["data"], "-o", tmp_path / "o.jsonl", "--action", "unfinished=drop"
    )
    assert code == 2 and "heuristic" in err
    assert not (tmp_path / "o.jsonl").exists()
    # a JSON array without ids: the clean file is a JSON array of the records exactly as read
    arr = tmp_path / "alpaca.json"
    arr.write_text(json.dumps([{k: v for k, v in r.items() if k != "id"} for r in RECORDS[:3]]))
    code, err = cli("audit", arr, "-o", tmp_path / "alpaca.clean.json")
    assert code == 0, err
    assert json.loads((tmp_path / "alpaca.clean.json").read_text()) == [
        {k: v for k, v in RECORDS[0].items() if k != "id"}
    ]
    assert "kept 1, dropped 2" in err
    flagged = read_jsonl(tmp_path / "alpaca.clean.json.flagged.jsonl")
    assert [f["id"] for f in flagged] == ["alpaca-000001", "alpaca-000002"]
    code, text = cli("audit", "--help")
    assert code == 0 and "--eval-set" in text and "--action" in text and "DATA" in text


def test_published_eval_sets(shared_data, tmp_path):
    """Vicuna-80, MT-bench and User-Oriented-252 as published: planted texts are found with the
    right evaluation ids; ordinary instruction data is clean."""
    from gpt4llm.stages.audit import Config, run

    vicuna = [
        json.loads(x)
        for x in (shared_data / "vicuna80" / "question.jsonl").read_text().splitlines()
    ]
    mt = [
        json.loads(x)
        for x in (shared_data / "mt_bench" / "question.jsonl").read_text().splitlines()
    ]
    uo = [
        json.loads(x)
        for x in (
            (shared_data / "user_oriented_252" / "user_oriented_instructions.jsonl")
            .read_text()
            .splitlines()
        )
    ]
    long_uo = next(t for t in uo if len(t["instances"][0]["input"].split()) > 20)
    data = [
        {"id": "v", "instruction": vicuna[10]["text"], "input": "", "output": "An answer."},
        {
            "id": "m",
            "instruction": "Do this.",
            "input": "",
            "output": "Sure. " + mt[5]["turns"][1] + " Done.",
        },
        {
            "id": "u",
            "instruction": "Proofread the text.",
            "input": long_uo["instances"][0]["input"],
            "output": "Fine.",
        },
        {
            "id": "ok1",
            "instruction": "Give three tips for staying healthy.",
            "input": "",
            "output": "Eat, sleep, move.",
        },
        {
            "id": "ok2",
            "instruction": "What is the capital of France?",
            "input": "",
            "output": "Paris is the capital of France.",
        },
    ]
    s = run(
        Config(
            data=write_jsonl(tmp_path / "d.jsonl", data),
            output=tmp_path / "c.jsonl",
            eval_set={
                "vicuna80": shared_data / "vicuna80" / "question.jsonl",
                "mt_bench": shared_data / "mt_bench" / "question.jsonl",
                "user_oriented": (
                    shared_data / "user_oriented_252" / "user_oriented_instructions.jsonl"
                ),
            },
        )
    )
    sets = s["contamination"]["sets"]
    assert (sets["vicuna80"]["format"], sets["vicuna80"]["items"]) == ("vicuna", 80)
    assert (sets["mt_bench"]["format"], sets["mt_bench"]["items"]) == ("mt_bench", 80)
    assert (sets["user_oriented"]["format"], sets["user_oriented"]["items"]) == (
        "user_oriented",
        252,
    )
    pairs = {(name, p["train_id"], p["eval_id"]) for name, st in sets.items() for p in st["pairs"]}
    assert ("vicuna80", "v", str(vicuna[10]["question_id"])) in pairs
    assert ("mt_bench", "m", str(mt[5]["question_id"])) in pairs
    assert ("user_oriented", "u", long_uo["id"]) in pairs
    assert [r["id"] for r in read_jsonl(tmp_path / "c.jsonl")] == ["ok1", "ok2"]
