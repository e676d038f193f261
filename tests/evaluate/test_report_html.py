"""report: one self-contained HTML page whose charts are embedded and whose numbers are the
inputs'."""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path

import pytest

from gpt4llm.errors import DataError, UserError
from gpt4llm.evaluate import judge, report, rouge

PAPER = [
    {
        "Length": "0-2",
        "NumInstance": 5089,
        "Model": "GPT4",
        "rouge1": 0.36,
        "rouge2": 0.02,
        "rougeL": 0.3602531444671222,
    },
    {
        "Length": "5-10",
        "NumInstance": 936,
        "Model": "GPT4",
        "rouge1": 0.39,
        "rouge2": 0.27,
        "rougeL": 0.37702486219580666,
    },
    {
        "Length": "ALL",
        "NumInstance": 9000,
        "Model": "GPT4",
        "rouge1": 0.38,
        "rouge2": 0.13,
        "rougeL": 0.3697349140194752,
    },
]


def _jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def eval_outputs(tmp_path, fake_openai, fake_llm_config):
    refs = _jsonl(
        tmp_path / "refs.jsonl",
        [
            {"id": "1", "instruction": "i", "output": "Paris"},
            {"id": "2", "instruction": "i", "output": "one two three four five six seven"},
            {"id": "3", "instruction": "i", "output": "red green blue"},
        ],
    )
    preds = _jsonl(
        tmp_path / "preds.jsonl",
        [
            {"id": "1", "output": "Paris", "model": "student<script>alert(1)</script>"},
            {"id": "2", "output": "one two three", "model": "student<script>alert(1)</script>"},
            {"id": "3", "output": "green", "model": "student<script>alert(1)</script>"},
        ],
    )
    rouge_sum = rouge.run(
        rouge.Config(predictions=preds, references=refs, output=tmp_path / "rouge", stem=False)
    )

    q = _jsonl(
        tmp_path / "q.jsonl",
        [
            {"question_id": i, "text": f"question {i}", "category": c}
            for i, c in ((1, "generic"), (2, "math"))
        ],
    )
    a = _jsonl(
        tmp_path / "a.jsonl",
        [{"question_id": i, "model_id": "alpha", "text": f"ALPHA {i}"} for i in (1, 2)],
    )
    b = _jsonl(
        tmp_path / "b.jsonl",
        [{"question_id": i, "model_id": "gpt-4", "text": f"BETA {i}"} for i in (1, 2)],
    )

    def responder(messages, body):
        user = messages[-1]["content"]
        a_first = user.index("ALPHA") < user.index("BETA")
        return ("7 9" if a_first else "9 7") + "\nreasons"

    fake_openai.responder = responder
    judge_sum = judge.run(
        judge.Config(
            answers_a=a, answers_b=b, questions=q, output=tmp_path / "judge", judge=fake_llm_config
        )
    )

    reward = {
        "pairwise_accuracy": 0.8125,
        "n_pairs": 16,
        "spearman": 0.55,
        "n_scored": 10,
        "model": "runs/reward",
        "per_source": {
            "gpt4": {"pairwise_accuracy": 0.9, "n_pairs": 10, "spearman": 0.6},
            "davinci": {"pairwise_accuracy": 0.7, "n_pairs": 6, "spearman": None},
        },
    }
    (tmp_path / "reward_eval.json").write_text(json.dumps(reward))
    (tmp_path / "reward_eval.json.manifest.json").write_text(
        json.dumps(
            {
                "stage": "eval reward",
                "command": "gpt4llm eval reward heldout.jsonl --model runs/reward",
                "config": {"model": "runs/reward"},
                "inputs": {},
            }
        )
    )
    paper = tmp_path / "paper.json"
    paper.write_text(json.dumps(PAPER))
    analyze = tmp_path / "analyze"
    analyze.mkdir()
    (analyze / "index.html").write_text("<html>analysis</html>")
    return {
        "rouge": rouge_sum,
        "judge": judge_sum,
        "reward": reward,
        "dirs": tmp_path,
        "paper": paper,
        "analyze": analyze,
    }


def test_report_embeds_charts_and_numbers(eval_outputs, tmp_path):
    d = eval_outputs["dirs"]
    out = tmp_path / "report"
    s = report.run(
        report.Config(
            inputs=[d / "rouge", d / "judge" / "summary.json", d / "reward_eval.json"],
            output=out,
            paper_rouge=eval_outputs["paper"],
            analyze=eval_outputs["analyze"],
        )
    )
    page = (out / "index.html").read_text(encoding="utf-8")
    assert s["charts"] == [
        "judge_relative.png",
        "judge_categories.png",
        "rouge_by_length.png",
        "reward_accuracy.png",
    ]
    for name in s["charts"]:
        png = (out / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
        assert (
            f"data:image/png;base64,{base64.b64encode(png).decode()}" in page
        )  # embedded, self-contained
    assert not re.search(r'<img[^>]+src="(?!data:)', page)  # no external images

    # judge numbers: A=14, B=18 -> 77.78 %
    j = eval_outputs["judge"]["overall"]
    assert (j["total_a"], j["total_b"]) == (14, 18)
    assert f"{100 * 14 / 18:.2f}" in page and "14.00" in page and "18.00" in page
    # rouge numbers, every bucket of the summary, and the paper's row (label mapped 5-10 -> 6-10)
    for b in eval_outputs["rouge"]["buckets"]:
        if b["n"]:
            assert f"{b['rougeL']:.4f}" in page and f"{b['rouge1']:.4f}" in page
    assert "GPT4 (paper)" in page and "0.3770" in page
    # reward
    assert "0.8125" in page and "0.9000" in page and "0.7000" in page
    # escaped, never raw
    assert "<script>alert(1)</script>" not in page
    assert html.escape("student<script>alert(1)</script>") in page
    # provenance: the commands from the manifests
    assert "gpt4llm eval reward heldout.jsonl --model runs/reward" in page
    assert "eval judge" in page and "eval rouge" in page
    # analyze linked relatively
    assert 'href="../analyze/index.html"' in page
    man = json.loads((out / "manifest.json").read_text())
    assert man["stage"] == "report" and man["summary"]["n_judge"] == 1


def test_report_bad_inputs(tmp_path):
    with pytest.raises(UserError, match="nothing to report"):
        report.run(report.Config(output=tmp_path / "r"))
    bad = tmp_path / "x.json"
    bad.write_text(json.dumps({"hello": 1}))
    with pytest.raises(DataError, match="not an evaluation summary"):
        report.run(report.Config(inputs=[bad], output=tmp_path / "r"))
    with pytest.raises(DataError, match="without summary.json"):
        report.run(report.Config(inputs=[tmp_path], output=tmp_path / "r"))


def test_report_cli(eval_outputs, tmp_path):
    from typer.testing import CliRunner

    from gpt4llm.cli import app

    d = eval_outputs["dirs"]
    res = CliRunner().invoke(
        app,
        [
            "report",
            str(d / "rouge" / "summary.json"),
            str(d / "judge"),
            "--output",
            str(tmp_path / "rep"),
            "--title",
            "Run <42>",
            "--rouge-metric",
            "rouge1",
        ],
    )
    assert res.exit_code == 0, res.output
    page = (tmp_path / "rep" / "index.html").read_text()
    assert "<title>Run &lt;42&gt;</title>" in page
    assert sorted(p.name for p in (tmp_path / "rep").glob("*.png")) == [
        "judge_categories.png",
        "judge_relative.png",
        "rouge_by_length.png",
    ]


def test_report_shows_a_train_distill_run_from_its_manifest(tmp_path):
    """train distill writes no summary.json: its directory's manifest holds the summary, and the
    page's KD table shows its numbers; a directory of another stage is still refused."""
    from gpt4llm.provenance import write_manifest
    from gpt4llm.train import distill

    out = tmp_path / "distill"
    out.mkdir()
    summary = {
        "model": "runs/student",
        "teacher": "embedded",
        "loss": "jsd",
        "beta": 0.5,
        "top_k": None,
        "kd_weight": 1.0,
        "steps": 2,
        "train_examples": 36,
        "train_kd_per_token": 0.031234,
        "eval_kd_start": None,
        "eval_kd": 0.027891,
    }
    cfg = distill.Config(data=[tmp_path / "sft.jsonl"], output=out)
    write_manifest(out, "train distill", cfg, summary=summary)
    s = report.run(report.Config(inputs=[out], output=tmp_path / "report"))
    page = (tmp_path / "report" / "index.html").read_text(encoding="utf-8")
    assert s["n_distill"] == 1
    table = page[page.index('<table class="distill">') :]
    table = table[: table.index("</table>")]
    for text in ("runs/student", "embedded", "jsd", "0.50", "0.0312", "0.0279", "<td>36</td>"):
        assert text in table
    assert "gpt4llm" in page and "train distill" in page  # provenance from the manifest

    other = tmp_path / "sft"
    other.mkdir()
    write_manifest(other, "train sft", cfg, summary=summary)
    with pytest.raises(DataError, match="without summary.json"):
        report.run(report.Config(inputs=[other], output=tmp_path / "r2"))
