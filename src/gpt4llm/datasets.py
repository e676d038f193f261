"""`gpt4llm data list | fetch NAME`: the published data sets, from their canonical URLs.

Downloads resume (HTTP Range on a `.part` file), show a progress bar, and are checked against
a pinned sha256 where we know it; for files whose upstream has no pinned hash we record the hash
of the first download in `checksums.json` (trust on first use) and check every later fetch
against it. Tests point `url` at a local server; nothing here runs at import.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import typer

from gpt4llm.errors import UserError

_GH = "https://raw.githubusercontent.com"


@dataclass(frozen=True)
class Dataset:
    name: str
    url: str
    filename: str
    description: str
    sha256: str | None = None
    license: str = ""


CATALOG: dict[str, Dataset] = {
    d.name: d
    for d in [
        Dataset("alpaca", f"{_GH}/tatsu-lab/stanford_alpaca/main/alpaca_data.json", "alpaca_data.json",
                "Stanford Alpaca: 52K instructions with text-davinci-003 answers (JSON array).", license="CC BY-NC 4.0"),
        Dataset("alpaca-gpt4", f"{_GH}/Instruction-Tuning-with-GPT-4/GPT-4-LLM/main/data/alpaca_gpt4_data.json", "alpaca_gpt4_data.json",
                "GPT-4-LLM: the 52K Alpaca instructions answered by GPT-4 (English).", license="CC BY-NC 4.0"),
        Dataset("alpaca-gpt4-zh", f"{_GH}/Instruction-Tuning-with-GPT-4/GPT-4-LLM/main/data/alpaca_gpt4_data_zh.json", "alpaca_gpt4_data_zh.json",
                "GPT-4-LLM: the 52K instructions translated to Chinese and answered by GPT-4.", license="CC BY-NC 4.0"),
        Dataset("comparison-gpt4", f"{_GH}/Instruction-Tuning-with-GPT-4/GPT-4-LLM/main/data/comparision_data.json", "comparision_data.json",
                "GPT-4-LLM comparison data: {user_input, completion_a (better), completion_b}.", license="CC BY-NC 4.0"),
        Dataset("unnatural-gpt4", f"{_GH}/Instruction-Tuning-with-GPT-4/GPT-4-LLM/main/data/unnatural_instruction_gpt4_data.json", "unnatural_instruction_gpt4_data.json",
                "GPT-4-LLM: GPT-4 answers to 9K Unnatural Instructions (the ROUGE-L evaluation set).", license="CC BY-NC 4.0"),
        Dataset("unnatural-instructions", "https://github.com/orhonovich/unnatural-instructions/raw/main/data/core_data.zip", "unnatural_core_data.zip",
                "Unnatural Instructions core data (68K, zip), ground truth for the ROUGE evaluation.", license="MIT"),
        Dataset("vicuna80", f"{_GH}/lm-sys/FastChat/v0.2.1/fastchat/eval/table/question.jsonl", "vicuna80_question.jsonl",
                "The 80 Vicuna questions used for the paper's GPT-4-as-judge evaluation.",
                sha256="590c39157bc561eadd7f03cad4be18c2b597f93029780af65f86718f39eafa87", license="Apache-2.0"),
        Dataset("mt-bench", f"{_GH}/lm-sys/FastChat/main/fastchat/llm_judge/data/mt_bench/question.jsonl", "mt_bench_question.jsonl",
                "MT-bench: 80 two-turn questions (judge evaluation; first turns usable).",
                sha256="119565adbab82227089cefdb44c8d7e2cf04dc0a0ec233634c82e7d4e2a944f7", license="Apache-2.0"),
        Dataset("user-oriented-252", f"{_GH}/yizhongw/self-instruct/main/human_eval/user_oriented_instructions.jsonl", "user_oriented_instructions.jsonl",
                "The 252 User-Oriented Instructions of Self-Instruct (the paper's human evaluation set).",
                sha256="81d60a117db495cecedecd9193504fd07c5b5a42f6699ef6b0f9da10fc22f42e", license="Apache-2.0"),
        Dataset("self-instruct-seed", f"{_GH}/yizhongw/self-instruct/main/data/seed_tasks.jsonl", "self_instruct_seed_tasks.jsonl",
                "Self-Instruct's 175 seed tasks.",
                sha256="7779004fa198fdf27cf70a159363879d8a26c53329e11b436af17b3941875f48", license="Apache-2.0"),
    ]
}


def data_dir() -> Path:
    env = os.environ.get("GPT4LLM_DATA_DIR")
    if env:
        return Path(env)
    from platformdirs import user_data_dir

    return Path(user_data_dir("gpt4llm"))


def _recorded_checksums(dest: Path) -> dict[str, str]:
    p = dest / "checksums.json"
    return json.loads(p.read_text()) if p.exists() else {}


def _record_checksum(dest: Path, filename: str, digest: str) -> None:
    from gpt4llm.records import write_json

    sums = _recorded_checksums(dest)
    sums[filename] = digest
    write_json(dest / "checksums.json", sums)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch(name: str, dest: Path | None = None, url: str | None = None, sha256: str | None = None,
          timeout: float = 60.0, quiet: bool = False) -> Path:
    """Download data set `name` into `dest` (default: the user data dir); resume a partial file."""
    import httpx
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn, TimeRemainingColumn

    if name not in CATALOG:
        raise UserError(f"unknown data set {name!r}; known: {', '.join(sorted(CATALOG))}")
    ds = CATALOG[name]
    dest = Path(dest) if dest else data_dir()
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / ds.filename
    expected = sha256 or ds.sha256 or _recorded_checksums(dest).get(ds.filename)
    if target.exists() and (expected is None or _sha256(target) == expected):
        return target
    part = target.with_name(target.name + ".part")
    url = url or ds.url
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        with httpx.stream("GET", url, headers=headers, timeout=timeout, follow_redirects=True) as r:
            if r.status_code == 416:  # the part file is already complete
                pass
            elif r.status_code not in (200, 206):
                raise UserError(f"{name}: download failed: HTTP {r.status_code} from {url}")
            else:
                if r.status_code == 200:
                    have = 0  # server ignored Range: start over
                total = have + int(r.headers.get("content-length", 0) or 0) or None
                with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                              TransferSpeedColumn(), TimeRemainingColumn(), disable=quiet, transient=True) as bar:
                    task = bar.add_task(f"fetch {name}", total=total, completed=have)
                    with open(part, "ab" if have else "wb") as f:
                        for chunk in r.iter_bytes(1 << 16):
                            f.write(chunk)
                            bar.advance(task, len(chunk))
    except httpx.HTTPError as e:
        raise UserError(f"{name}: download interrupted ({type(e).__name__}); run the same command again to resume") from None
    digest = _sha256(part)
    if expected and digest != expected:
        part.unlink(missing_ok=True)
        raise UserError(f"{name}: checksum mismatch (got {digest[:12]}…, expected {expected[:12]}…); the partial file was removed")
    os.replace(part, target)
    if not ds.sha256 and not sha256:
        _record_checksum(dest, ds.filename, digest)
    return target


def register(data_app: typer.Typer) -> None:
    from rich.console import Console
    from rich.table import Table

    @data_app.command("list")
    def list_cmd(dest: Path = typer.Option(None, "--dest", help="Data directory (default: $GPT4LLM_DATA_DIR or the user data dir).")) -> None:
        """Show the known data sets and which are present."""
        where = dest or data_dir()
        table = Table(title=f"data sets ({where})")
        for col in ("name", "present", "file", "license", "description"):
            table.add_column(col, overflow="fold")
        for ds in CATALOG.values():
            present = "yes" if (where / ds.filename).exists() else ("partial" if (where / (ds.filename + ".part")).exists() else "no")
            table.add_row(ds.name, present, ds.filename, ds.license, ds.description)
        Console().print(table)

    @data_app.command("fetch")
    def fetch_cmd(
        name: str = typer.Argument(..., help=f"One of: {', '.join(CATALOG)}."),
        dest: Path = typer.Option(None, "--dest", help="Data directory (default: $GPT4LLM_DATA_DIR or the user data dir)."),
        url: str = typer.Option(None, "--url", help="Download from this URL instead of the canonical one (a mirror)."),
        sha256: str = typer.Option(None, "--sha256", help="Expected sha256 of the file (overrides the pinned or recorded one)."),
    ) -> None:
        """Download a published data set (resumable, checksummed) into the data dir."""
        path = fetch(name, dest, url=url, sha256=sha256)
        typer.echo(str(path))
