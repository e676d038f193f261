"""A toy stage for pipeline tests: upper-cases the `instruction` of each record."""

from __future__ import annotations

import time
from pathlib import Path

from pydantic import Field

from gpt4llm.config import StageConfig
from gpt4llm.provenance import write_manifest
from gpt4llm.records import load_instructions, write_jsonl

RUNS: list[str] = []


class Config(StageConfig):
    input: Path
    output: Path
    suffix: str = Field("", description="Appended to every instruction.")


def run(config: Config) -> dict:
    t0 = time.time()
    RUNS.append(str(config.output))
    recs = load_instructions(config.input)
    n = write_jsonl(config.output, ({**r, "instruction": r["instruction"].upper() + config.suffix} for r in recs))
    summary = {"records": n}
    write_manifest(config.output, "toy", config, inputs=[config.input], summary=summary, started=t0)
    return summary
