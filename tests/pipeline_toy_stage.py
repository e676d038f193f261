"""A toy stage for pipeline tests: upper-cases the `instruction` of each record."""

from __future__ import annotations

import time
from pathlib import Path

from pydantic import Field

from gpt4llm.config import CACHE, INPUT, OUTPUT, StageConfig
from gpt4llm.outputs import finish_stage
from gpt4llm.provenance import write_manifest
from gpt4llm.records import load_instructions, write_jsonl

RUNS: list[str] = []


class Config(StageConfig):
    input: Path = Field(json_schema_extra=INPUT)
    output: Path = Field(json_schema_extra=OUTPUT)
    cache: Path | None = Field(None, json_schema_extra=CACHE)
    """A database the stage would keep (declared only: the pre-flight protects it)."""
    suffix: str = Field("", description="Appended to every instruction.")
    fail_items: list[str] = Field(
        default_factory=list, description="Instructions whose item fails."
    )
    max_failed_fraction: float = 0.1


def run(config: Config) -> dict:
    t0 = time.time()
    RUNS.append(str(config.output))
    recs = load_instructions(config.input)
    if not config.fail_items:
        n = write_jsonl(
            config.output,
            ({**r, "instruction": r["instruction"].upper() + config.suffix} for r in recs),
        )
        summary = {"records": n}
        write_manifest(
            config.output, "toy", config, inputs=[config.input], summary=summary, started=t0
        )
        return summary
    failed = [
        {"id": r["id"], "error": "injected"} for r in recs if r["instruction"] in config.fail_items
    ]
    out = [
        {**r, "instruction": r["instruction"].upper()}
        for r in recs
        if r["instruction"] not in config.fail_items
    ]
    return finish_stage(
        stage="toy",
        config=config,
        output=config.output,
        inputs=[config.input],
        summary={},
        total=len(recs),
        failed=failed,
        write=lambda: write_jsonl(config.output, out),
        started=t0,
        print_table=False,
    )
