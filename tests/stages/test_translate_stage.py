"""`gpt4llm translate` against the fake server: JSON replies, per-field fallback, failures."""

from __future__ import annotations

import json
import re

import pytest
from cli_helpers import cli, read_jsonl, write_jsonl

from gpt4llm.stages.translate import language_name, parse_translation


@pytest.fixture
def teacher(fake_openai, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-translate")
    return ["--teacher", "gpt-4o-mini", "--teacher-base-url", fake_openai.base_url]


def json_translator(messages, body):
    """Answers the per-record prompt with a JSON object of 'translated' values (in a fence)."""
    prompt = messages[-1]["content"]
    src = json.loads(prompt[prompt.index("{") :])
    return (
        "```json\n"
        + json.dumps({k: f"中[{v}]" for k, v in src.items()}, ensure_ascii=False)
        + "\n```"
    )


RECORDS = [
    {"instruction": "Give three tips for staying healthy.", "output": "1. Eat well ..."},
    {
        "instruction": "Translate into French.",
        "input": "Good {morning}",
        "id": "x7",
        "category": "t",
    },
]


def test_translate_records(fake_openai, teacher, tmp_path, monkeypatch, capsys):
    src = write_jsonl(tmp_path / "en.jsonl", RECORDS)
    out = tmp_path / "zh.jsonl"
    fake_openai.responder = json_translator
    code, err = cli(
        ["translate", src, "--output", out, *teacher, "--lang", "zh"], monkeypatch, capsys
    )
    assert code == 0, err
    assert read_jsonl(out) == [
        {
            "instruction": "中[Give three tips for staying healthy.]",
            "input": "",
            "id": "en-000000",
            "lang": "zh",
        },
        {
            "instruction": "中[Translate into French.]",
            "input": "中[Good {morning}]",
            "id": "x7",
            "lang": "zh",
            "category": "t",
        },
    ]
    assert fake_openai.calls == 2
    # requests run concurrently: find the one for the record without an input
    body = next(b for b in fake_openai.bodies if "staying healthy" in b["messages"][-1]["content"])
    prompt = body["messages"][-1]["content"]
    assert "Simplified Chinese" in prompt and '"instruction"' in prompt and '"input"' not in prompt
    assert body["messages"][0]["role"] == "system"
    manifest = json.loads((tmp_path / "zh.jsonl.manifest.json").read_text())
    assert manifest["stage"] == "translate" and manifest["summary"]["per_field_fallbacks"] == 0


def test_translate_falls_back_to_one_request_per_field(
    fake_openai, teacher, tmp_path, monkeypatch, capsys
):
    src = write_jsonl(tmp_path / "en.jsonl", RECORDS)
    out = tmp_path / "ja.jsonl"

    def sloppy(messages, body):
        prompt = messages[-1]["content"]
        if "JSON" in prompt:
            return "Sure! Here is the translation: instruction = ..."  # not parseable
        text = prompt.rsplit("\n\n", 1)[-1]
        return f"  日<{text}>\n"

    fake_openai.responder = sloppy
    code, err = cli(
        ["translate", src, "--output", out, *teacher, "--lang", "ja"], monkeypatch, capsys
    )
    assert code == 0, err
    rows = read_jsonl(out)
    assert (
        rows[0]["instruction"] == "日<Give three tips for staying healthy.>"
        and rows[0]["lang"] == "ja"
    )
    assert rows[1]["input"] == "日<Good {morning}>"
    assert fake_openai.calls == 2 + 3  # two record requests, then three fields
    assert "Japanese" in fake_openai.bodies[-1]["messages"][-1]["content"]
    assert (
        json.loads((tmp_path / "ja.jsonl.manifest.json").read_text())["summary"][
            "per_field_fallbacks"
        ]
        == 2
    )


def test_translate_failures_and_output_feeds_generate(
    fake_openai, teacher, tmp_path, monkeypatch, capsys
):
    src = write_jsonl(tmp_path / "en.jsonl", RECORDS + [{"instruction": "Refuse me"}])
    out = tmp_path / "zh.jsonl"
    fake_openai.responder = json_translator
    fake_openai.fault_fn = lambda n, body: (
        "content_filter" if "Refuse me" in body["messages"][-1]["content"] else None
    )
    code, err = cli(["translate", src, "--output", out, *teacher], monkeypatch, capsys)
    assert code == 1 and "1 of 3 translations failed" in err and not out.exists()  # 33% > 10%
    code, err = cli(
        ["translate", src, "--output", out, *teacher, "--max-failed-fraction", "0.5"],
        monkeypatch,
        capsys,
    )
    assert code == 0, err
    assert [r["id"] for r in read_jsonl(out)] == ["en-000000", "x7"]
    assert [f["id"] for f in read_jsonl(tmp_path / "zh.jsonl.failed.jsonl")] == ["en-000002"]
    # the translation is valid generate input; ids and lang carry through
    fake_openai.fault_fn = None
    fake_openai.responder = lambda m, b: "回答"
    code, err = cli(
        ["generate", out, "--output", tmp_path / "sft_zh.jsonl", *teacher], monkeypatch, capsys
    )
    assert code == 0, err
    sft = read_jsonl(tmp_path / "sft_zh.jsonl")
    assert [(r["id"], r["lang"], r["output"]) for r in sft] == [
        ("en-000000", "zh", "回答"),
        ("x7", "zh", "回答"),
    ]


def test_unknown_language_code(teacher, tmp_path, monkeypatch, capsys):
    src = write_jsonl(tmp_path / "en.jsonl", RECORDS)
    code, err = cli(
        ["translate", src, "--output", tmp_path / "o.jsonl", *teacher, "--lang", "xx"],
        monkeypatch,
        capsys,
    )
    assert code == 2 and "unknown language code" in err


def test_language_names():
    assert language_name("zh") == "Simplified Chinese"
    assert language_name("ZH_TW") == "Traditional Chinese"
    assert language_name("Catalan") == "Catalan"


@pytest.mark.parametrize(
    "reply, expected",
    [
        ('{"instruction": "你好", "input": "世界"}', {"instruction": "你好", "input": "世界"}),
        (
            '```json\n{"instruction": "你好", "input": "世界"}\n```',
            {"instruction": "你好", "input": "世界"},
        ),
        (
            'Here you go:\n{"instruction": " 你好 ", "input": "世界"} hope it helps',
            {"instruction": "你好", "input": "世界"},
        ),
        ('{"instruction": "你好"}', None),  # a key missing
        ('{"instruction": "你好", "input": ""}', None),  # an empty value
        ('{"instruction": 1, "input": "x"}', None),
        ("你好\n世界", None),
        ('{"instruction": "a", "input": "b"', None),
    ],
)
def test_parse_translation(reply, expected):
    assert parse_translation(reply, ["instruction", "input"]) == expected


def test_packaged_prompts_have_their_placeholders():
    from gpt4llm.prompts import load_prompt

    assert set(re.findall(r"\{(\w+)\}", load_prompt("translate_record.txt"))) == {
        "language",
        "keys",
        "record",
    }
    assert set(re.findall(r"\{(\w+)\}", load_prompt("translate_field.txt"))) == {"language", "text"}
    assert set(re.findall(r"\{(\w+)\}", load_prompt("teacher_input.txt"))) == {
        "instruction",
        "input",
    }
    assert set(re.findall(r"\{(\w+)\}", load_prompt("teacher_no_input.txt"))) == {"instruction"}


@pytest.mark.parametrize(
    ("lang", "reply", "reason"),
    [
        ("zh", "Give three tips for staying healthy.", "repeats the source"),
        ("zh", "Donnez trois conseils pour rester en bonne santé.", "no CJK characters"),
        ("ru", "Give 3 tips, please", "no Cyrillic characters"),
    ],
)
def test_translate_refuses_what_is_not_a_translation(
    fake_openai, teacher, tmp_path, monkeypatch, capsys, lang, reply, reason
):
    src = write_jsonl(tmp_path / "en.jsonl", RECORDS[:1] + [{"instruction": "Name a color."}])
    out = tmp_path / "t.jsonl"
    good = {"zh": "说出一种颜色。", "ru": "Назовите цвет."}[lang]

    def translator(messages, body):
        text = messages[-1]["content"]
        return json.dumps({"instruction": reply if "healthy" in text else good}, ensure_ascii=False)

    fake_openai.responder = translator
    code, err = cli(
        ["translate", src, "-o", out, *teacher, "--lang", lang, "--max-failed-fraction", "0.5"],
        monkeypatch,
        capsys,
    )
    assert code == 0, err
    assert [r["instruction"] for r in read_jsonl(out)] == [good]
    failed = read_jsonl(tmp_path / "t.jsonl.failed.jsonl")
    assert [f["id"] for f in failed] == ["en-000000"] and reason in failed[0]["error"]


def test_field_mode_asks_one_request_per_field_with_stops(
    fake_openai, teacher, tmp_path, monkeypatch, capsys
):
    """--mode field: no JSON record request (a weak or few-shot-prompted model writes none)."""
    src = write_jsonl(tmp_path / "en.jsonl", RECORDS)
    template = tmp_path / "fewshot.txt"
    template.write_text(
        "English: Name a color.\nChinese: 说出一种颜色。\n\nEnglish: {text}\nChinese:"
    )
    fake_openai.responder = lambda m, b: " 译文" + str(len(m[-1]["content"])) + "\nEnglish: more"
    code, err = cli(
        [
            "translate",
            src,
            "-o",
            tmp_path / "zh.jsonl",
            *teacher,
            "--mode",
            "field",
            "--field-template",
            template,
            "--stop",
            "\n",
        ],
        monkeypatch,
        capsys,
    )
    assert code == 0, err
    assert fake_openai.calls == 3  # instruction, instruction, input
    assert all(b.get("stop") == ["\n"] for b in fake_openai.bodies)
    rows = read_jsonl(tmp_path / "zh.jsonl")
    assert all(
        r["instruction"].startswith("译文") and "English" not in r["instruction"] for r in rows
    )


def test_plain_local_prompt_joins_the_messages_as_is():
    from gpt4llm.llm.local import render_messages

    msgs = [{"role": "system", "content": ""}, {"role": "user", "content": "English: hi\nChinese:"}]
    assert render_messages(None, msgs, "plain") == ("English: hi\nChinese:", ())
    text, stops = render_messages(None, msgs[1:], "alpaca")
    assert text.endswith("### Response:\n") and stops
