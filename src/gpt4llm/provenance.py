"""Every output carries its provenance: a manifest with the resolved config, input hashes,
package version, counts and timings, written next to the output."""

from __future__ import annotations

import hashlib
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from gpt4llm import __version__
from gpt4llm.records import input_sha256, write_json


def config_dict(config: BaseModel) -> dict:
    return json.loads(config.model_dump_json())


TRACKING_FIELDS = ("report_to", "run_name")
"""Where a run is reported, not what it computes: left out of the config hash, so adding
`--report-to` never reruns a finished pipeline stage."""


def config_hash(config: BaseModel | dict) -> str:
    data = config_dict(config) if isinstance(config, BaseModel) else config
    data = {k: v for k, v in data.items() if k not in TRACKING_FIELDS}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def manifest_path(output: str | Path) -> Path:
    """`out/data.jsonl` -> `out/data.jsonl.manifest.json`; a directory output gets
    `manifest.json` inside (a `*.hf` datasets directory is one output: `out.hf.manifest.json`)."""
    from gpt4llm.formats import is_dataset_output_dir

    output = Path(output)
    if (output.is_dir() and not is_dataset_output_dir(output)) or output.suffix == "":
        return output / "manifest.json"
    return output.with_name(output.name + ".manifest.json")


def write_manifest(
    output: str | Path,
    stage: str,
    config: BaseModel,
    inputs: list[str | Path] = (),
    summary: dict[str, Any] | None = None,
    started: float | None = None,
    status: str = "ok",
    last_run: dict[str, Any] | None = None,
) -> Path:
    """Write the manifest beside/inside `output`. `status` is "ok" for a finished run; a failed
    run is recorded with "failed" (the pipeline never takes such a stage for finished). Every
    secret in it is blotted out (`gpt4llm.redact`); the config hash is of the config as given."""
    path = manifest_path(output)
    summary = summary or {}
    manifest = {
        "stage": stage,
        "status": status,
        "n_failed": summary.get("failed", summary.get("n_failed", 0)) or 0,
        "gpt4llm_version": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "command": " ".join(Path(sys.argv[0]).name.split() + sys.argv[1:]) if sys.argv else None,
        "config": config_dict(config),
        "config_hash": config_hash(config),
        "inputs": {str(p): h for p in inputs if (h := input_sha256(p)) is not None},
        "summary": summary,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": round(time.time() - started, 3) if started else None,
        "last_run": last_run or {"status": status},
    }
    # The config and command as given may hold a key (a gateway's in a base URL, URL
    # credentials): blotted out by the one scrubber (gpt4llm.redact), as trackers see it.
    from gpt4llm.redact import scrub_all, scrubber

    manifest = scrub_all(manifest, scrubber(config))
    write_json(path, manifest)
    if getattr(config, "report_to", None):  # the one place every stage's summary is written
        from gpt4llm.tracking import record

        record(stage, config, manifest, path)
    return path
