"""`gpt4llm publish PATH --repo ORG/NAME [--private] [--dry-run]`: a data set we made
(generate, translate, instruct, audit, compare, respond, score output) or a trained model,
adapter or reward model (train sft/dpo/reward output) to the Hugging Face Hub, with a card
written from our manifests (gpt4llm.publish.card).

What goes up is listed first and is exactly what `--dry-run` prints: a data file with its
manifest, or a model directory without its checkpoints, hidden files and journals, plus the
card as README.md. The upload is huggingface_hub's `create_repo` and one `create_commit` of those
files (what `upload_folder` does, with our list instead of a folder walk). The token is
huggingface_hub's own (HF_TOKEN or `hf auth login`); it is never read, printed or written here,
and any secret (HF_TOKEN, the API keys the configs name, credentials in a URL) is blotted out
of the card and the manifests that go up (`gpt4llm.redact`, which tracking uses too).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import Field, StringConstraints, field_validator

from gpt4llm.config import INPUT, ConfigBase, config_command
from gpt4llm.errors import UserError
from gpt4llm.redact import scrub  # the one scrubber, shared with tracking

MODEL_STAGES = ("train sft", "train dpo", "train reward")
SKIPPED = ("checkpoints", ".cache", ".git")  # never uploaded from a model directory
_LANGUAGE = r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{1,8})*$"  # a BCP 47 / ISO 639 code: en, zh-Hans
_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


class Config(ConfigBase):
    path: Path = Field(json_schema_extra=INPUT)
    """What to publish: a data file we wrote (its manifest beside it) or a trained model
    directory (its manifest.json inside)."""
    repo: str = Field(..., max_length=200)
    """The Hub repository, ORG/NAME (created if missing; a data set goes to a dataset repo)."""
    private: bool = False
    """Create the repository private."""
    dry_run: bool = False
    """Upload nothing: list exactly the files that would go up, and print the card."""
    license: str | None = Field(None, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9.+-]*$")
    """The Hub license id (cc-by-nc-4.0, apache-2.0, ...). Default: the most restrictive license
    of the published data it was made from, else 'other'."""
    language: list[Annotated[str, StringConstraints(pattern=_LANGUAGE)]] = Field(
        default_factory=list, max_length=50
    )
    """Language codes for the card (default: from translate's --lang, else en)."""
    eval: list[Path] = Field(default_factory=list, max_length=100, json_schema_extra=INPUT)
    """Evaluation outputs (eval rouge / judge / reward directories) whose results go into the
    model card's model-index (repeatable)."""
    message: str = Field(
        "Upload with gpt4llm publish", min_length=1, max_length=500, pattern=r"^[^\x00]*$"
    )
    """The commit message on the Hub."""

    @field_validator("repo")
    @classmethod
    def _org_name(cls, value: str) -> str:
        if not _REPO.match(value):
            raise ValueError(f"expected ORG/NAME (letters, digits, '.', '_', '-'), got {value!r}")
        return value


@dataclass
class Upload:
    """One file of the upload: its path in the repo and its bytes or local file."""

    path_in_repo: str
    local: Path | None = None
    data: bytes | None = None

    @property
    def size(self) -> int:
        return len(self.data) if self.data is not None else self.local.stat().st_size  # type: ignore[union-attr]


def run(config: Config) -> dict[str, Any]:
    from gpt4llm.publish.card import build_card

    manifest_file, manifest = _manifest(config.path)
    kind = "model" if manifest.get("stage") in MODEL_STAGES else "dataset"
    _check_eval(config.eval, kind)
    card = scrub(build_card(config, manifest, kind), manifest)  # + the keys its config names
    files = _files(config.path, manifest_file, kind, manifest)
    files.append(Upload("README.md", data=card.encode("utf-8")))
    prefix = "datasets/" if kind == "dataset" else ""
    summary = {
        "repo": f"{prefix}{config.repo}",
        "kind": kind,
        "stage": manifest.get("stage"),
        "files": len(files),
        "bytes": sum(f.size for f in files),
    }
    if config.dry_run:
        typer.echo(dry_run_listing(summary, files, config.private) + "\n" + card)
        return summary
    url = _upload(config, kind, files)
    typer.echo(f"published: {url}")
    return {**summary, "url": url}


def _manifest(path: Path) -> tuple[Path, dict[str, Any]]:
    from gpt4llm.provenance import manifest_path
    from gpt4llm.publish.card import read_manifest

    if not path.exists():
        raise UserError(f"{path}: no such file or directory")
    mpath = manifest_path(path)
    manifest = read_manifest(mpath) if mpath.is_file() else None
    if manifest is None:
        raise UserError(
            f"{path}: no manifest ({mpath}): publish takes an output a gpt4llm stage wrote"
        )
    if (
        manifest.get("status", "ok") != "ok"
        or (manifest.get("last_run") or {}).get("status", "ok") != "ok"
    ):
        raise UserError(f"{path}: its last run failed ({mpath}); publish a finished one")
    return mpath, manifest


def _check_eval(paths: list[Path], kind: str) -> None:
    """Every --eval is an evaluation output we wrote (its summary.json), given with a model."""
    if paths and kind != "model":
        raise UserError(
            f"--eval {paths[0]}: evaluation results go on a model's card, not a data set's"
        )
    for path in paths:
        summary = path / "summary.json" if path.is_dir() else path
        if not summary.is_file() or summary.suffix != ".json":
            raise UserError(
                f"--eval {path}: not an evaluation output (an eval rouge / judge / reward "
                "directory with its summary.json, or eval reward's JSON file)"
            )


def _files(path: Path, manifest_file: Path, kind: str, manifest: dict) -> list[Upload]:
    """What goes up besides the card: a data file and its manifest; a model directory's files
    but its checkpoints, hidden files, journals and an earlier README.md (ours replaces it)."""
    if kind == "dataset":
        if path.is_dir():
            raise UserError(f"{path}: a data set is a file; its stage wrote a directory")
        return [
            Upload(path.name, local=path),
            Upload(
                manifest_file.name, data=scrub(manifest_file.read_text("utf-8"), manifest).encode()
            ),
        ]
    out = []
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = f.relative_to(path)
        if rel.parts[0] in SKIPPED or any(part.startswith(".") for part in rel.parts):
            continue
        if f.name.endswith(".journal") or rel.as_posix() == "README.md":
            continue
        if rel.as_posix() == "manifest.json":
            out.append(Upload("manifest.json", data=scrub(f.read_text("utf-8"), manifest).encode()))
        else:
            out.append(Upload(rel.as_posix(), local=f))
    return out


def dry_run_listing(summary: dict[str, Any], files: list[Upload], private: bool) -> str:
    where = f"https://huggingface.co/{summary['repo']}"
    visibility = "private" if private else "public"
    size = f"{summary['bytes']:,} bytes"
    lines = [f"would upload {len(files)} files ({size}) to {where} ({visibility}):"]
    lines += [f"  {f.path_in_repo}  ({f.size:,} bytes)" for f in files]
    return "\n".join(lines) + "\n"


def _upload(config: Config, kind: str, files: list[Upload]) -> str:
    """create_repo (exist_ok) and one commit of exactly `files`; Hub errors are one line."""
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi()
    operations = [
        CommitOperationAdd(f.path_in_repo, f.data if f.data is not None else str(f.local))
        for f in files
    ]
    try:
        repo = api.create_repo(
            config.repo, repo_type=kind, private=config.private or None, exist_ok=True
        )
        api.create_commit(config.repo, operations, commit_message=config.message, repo_type=kind)
    except (HfHubHTTPError, OSError, ValueError) as e:
        raise UserError(f"publish {config.repo}: {scrub(str(e)).splitlines()[0]}") from None
    return str(repo)


def register(app: typer.Typer) -> None:
    config_command(
        app,
        "publish",
        Config,
        run,
        help=(
            "Publish a data set or a trained model to the Hugging Face Hub with a card written"
            " from its manifests (teacher, prompts, counts, cost, audit, training settings,"
            " evaluation results, license, the command that reproduces it)."
        ),
        arguments=("path",),
        short_help="Publish a data set or model to the Hugging Face Hub, with its card.",
    )
