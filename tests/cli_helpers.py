"""Helpers shared by test files in any folder: run `gpt4llm ARGS` in-process, read and write
JSONL. (A test file never imports another test file: they live in different folders.)"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def cli(args: list[str], monkeypatch, capsys) -> tuple[int, str]:
    """Run `gpt4llm ARGS` in-process through cli.main(); (exit code, stderr)."""
    from gpt4llm.cli import main

    monkeypatch.setattr(sys, "argv", ["gpt4llm", *map(str, args)])
    code = 0
    try:
        main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return code, capsys.readouterr().err


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def tiny_sft(cli, model: Path, tmp_path: Path, steps: int, *extra) -> Path:
    """`train sft` of the tiny model on four one-word answers for `steps` steps (full
    fine-tuning, fp32, batch 2, no eval split) through `cli`: the output directory."""
    data = write_jsonl(
        tmp_path / "sft.jsonl",
        [{"instruction": f"Say {w}.", "input": "", "output": w} for w in ("a", "b", "c", "d")],
    )
    out = tmp_path / "student"
    code, text = cli(
        "train", "sft", data, "--model", model, "-o", out, "--no-lora", "--max-steps", steps,
        "--per-device-batch-size", "2", "--eval-fraction", "0", "--precision", "fp32", *extra,
    )  # fmt: skip
    assert code == 0, text
    return out
