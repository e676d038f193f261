"""`gpt4llm data list | fetch NAME...`: the published data sets, from their canonical URLs.

Downloads resume (HTTP Range on a `.part` file), show a progress bar on stderr, and are checked
against a pinned sha256 where we know it; for files whose upstream has no pinned hash we record
the hash of the first download in `checksums.json` (trust on first use) and check every later
fetch against it. Pinned files come from fixed revisions (a commit in the URL), so upstream
edits cannot break the pin. Tests point `url` at a local server; nothing here runs at import.

Every failure is a `UserError` (one line, exit 2) and leaves the data directory as it was,
except a `.part` file that the next run resumes: a bad `--sha256` or `--url` is refused before
any request, a corrupt `checksums.json` is named, HTTP errors, refused connections, timeouts,
servers that close early and full disks each say what happened and whether to run again.

MT-bench files (for `gpt4llm eval agreement`, FastChat's agreement table)
---------------------------------------------------------------------------
`mt-bench-human` (human_judgments.json, 17,047,440 bytes) and `mt-bench-gpt4-pair`
(gpt4_pair_judgments.json, 34,418,704 bytes) are the two vote files that FastChat's
`fastchat/llm_judge/compute_agreement.py` reads (`--votefiles human_judgments.json
gpt4_pair_judgments.json`). They come from the Hugging Face dataset
`lmsys/mt_bench_human_judgments` at revision 6085f5b7, which still holds them (later revisions
keep only the Parquet form of the two splits, `human` with 3,355 votes and `gpt4_pair` with
2,400, whose `judge` column is a string); the pinned sha256 are the files' Git LFS object ids.
Each file is ONE JSON array (not JSONL) of vote objects with these keys:

- `question_id` (int): the MT-bench question, 81-160, as in `mt-bench` (mt_bench_question.jsonl).
- `model_a`, `model_b` (str): the two models whose answers were compared (six models: GPT-4,
  GPT-3.5, Claude-v1, Vicuna-13B, Alpaca-13B, LLaMA-13B, under FastChat's model names).
- `winner` (str): `"model_a"`, `"model_b"`, `"tie"`, or a tie with a reason in parentheses:
  `"tie (bothbad)"` (a human found both answers bad) and, for GPT-4, a tie for verdicts that
  changed when the two answers were swapped (seen as `"tie (inconsistent)"`). FastChat's rule:
  any value containing "tie" is a tie. A reader should refuse any other value.
- `judge`: in the human file a str, `"expert_<n>"` (the expert votes) or `"author_<n>"` (votes
  by the paper's authors, which compute_agreement.py leaves out of both comparisons); in the
  GPT-4 file a list `["gpt-4", "<judge prompt name>"]`, the name starting with "pair" (the
  `name` of a record in `mt-bench-judge-prompts`, e.g. "pair-v2", "pair-math-v1-multi-turn").
- `turn` (int): 1 or 2, the turn that was judged.
- `conversation_a`, `conversation_b`: lists of `{"role": "user"|"assistant", "content": str}`.

Other keys may be present (the GPT-4 file is twice the size of the human one); a reader uses
the keys above and ignores the rest. Where this comes from: sizes and hashes from the LFS
pointers, keys and rules from compute_agreement.py and the dataset card; the tie variants were
not checked against the files themselves, so a reader should name any winner it does not know
in a one-line error rather than guess. compute_agreement.py's rule: key each vote by
(question_id, the two models in sorted order, turn); when `model_a` sorts after `model_b`, swap
them and swap "model_a"/"model_b" in `winner` (ties stay). "With tie": two votes agree when
equal or both ties. "Without tie": drop every comparison where either vote is a tie. GPT-4 vs
human compares each expert vote with the one GPT-4 vote of its key; human vs human compares
every pair of expert votes on the same key. Both are reported per turn.

`mt-bench-reference` (30 JSONL records, the math, reasoning and coding questions):
`{"question_id": int, "answer_id": str, "model_id": "gpt-4", "choices": [{"index": 0,
"turns": [str, str]}], "tstamp": float}`; turn k's reference answer is `choices[0].turns[k-1]`.

`mt-bench-judge-prompts` (8 JSONL records): `{"name", "type": "pairwise"|"single",
"system_prompt", "prompt_template", "description", "category": "general"|"math",
"output_format": "[[A]]"|"[[rating]]"}`. Pairwise templates are filled with `{question}`,
`{answer_a}`, `{answer_b}` (`-multi-turn` ones with `{question_1}`, `{question_2}`,
`{answer_a_1}`, `{answer_a_2}`, `{answer_b_1}`, `{answer_b_2}`), math ones also with
`{ref_answer_1}` (and `{ref_answer_2}`); single ones with `{question}`, `{answer}` or the
`_1`/`_2` forms. A pairwise verdict is "[[A]]", "[[B]]" or "[[C]]" (a tie) in the judge's text.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from gpt4llm.errors import DataError, UserError

_GH = "https://raw.githubusercontent.com"
# FastChat at a fixed commit: the pinned MT-bench files below are byte-identical to it.
_FASTCHAT = f"{_GH}/lm-sys/FastChat/0e6d3e4beaab66f4d3f93db72541a4abab8af28d"
_MT_JUDGE = f"{_FASTCHAT}/fastchat/llm_judge/data"
# The last revision of the dataset that still holds the two JSON vote files.
_HF_VOTES = (
    "https://huggingface.co/datasets/lmsys/mt_bench_human_judgments/resolve/"
    "6085f5b73c2ea3dee52918d07ed6b399f6c51fea"
)
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Dataset:
    name: str
    url: str
    filename: str
    description: str
    sha256: str | None = None
    license: str = ""


_NC, _APACHE = "CC BY-NC 4.0", "Apache-2.0"
_GPT4LLM = f"{_GH}/Instruction-Tuning-with-GPT-4/GPT-4-LLM/main/data"
_SELF_INSTRUCT = f"{_GH}/yizhongw/self-instruct/main"

CATALOG: dict[str, Dataset] = {
    d.name: d
    for d in [
        Dataset(
            "alpaca",
            f"{_GH}/tatsu-lab/stanford_alpaca/main/alpaca_data.json",
            "alpaca_data.json",
            "Stanford Alpaca: 52K instructions with text-davinci-003 answers (JSON array).",
            license=_NC,
        ),
        Dataset(
            "alpaca-gpt4",
            f"{_GPT4LLM}/alpaca_gpt4_data.json",
            "alpaca_gpt4_data.json",
            "GPT-4-LLM: the 52K Alpaca instructions answered by GPT-4 (English).",
            license=_NC,
        ),
        Dataset(
            "alpaca-gpt4-zh",
            f"{_GPT4LLM}/alpaca_gpt4_data_zh.json",
            "alpaca_gpt4_data_zh.json",
            "GPT-4-LLM: the 52K instructions translated to Chinese and answered by GPT-4.",
            license=_NC,
        ),
        Dataset(
            "comparison-gpt4",
            f"{_GPT4LLM}/comparision_data.json",
            "comparision_data.json",
            "GPT-4-LLM comparison data: {user_input, completion_a (better), completion_b}.",
            license=_NC,
        ),
        Dataset(
            "unnatural-gpt4",
            f"{_GPT4LLM}/unnatural_instruction_gpt4_data.json",
            "unnatural_instruction_gpt4_data.json",
            "GPT-4-LLM: GPT-4 answers to 9K Unnatural Instructions (the ROUGE-L evaluation set).",
            license=_NC,
        ),
        Dataset(
            "unnatural-instructions",
            "https://github.com/orhonovich/unnatural-instructions/raw/main/data/core_data.zip",
            "unnatural_core_data.zip",
            "Unnatural Instructions core data (68K, zip), ground truth for the ROUGE evaluation.",
            license="MIT",
        ),
        Dataset(
            "vicuna80",
            f"{_GH}/lm-sys/FastChat/v0.2.1/fastchat/eval/table/question.jsonl",
            "vicuna80_question.jsonl",
            "The 80 Vicuna questions used for the paper's GPT-4-as-judge evaluation.",
            sha256="590c39157bc561eadd7f03cad4be18c2b597f93029780af65f86718f39eafa87",
            license=_APACHE,
        ),
        Dataset(
            "mt-bench",
            f"{_MT_JUDGE}/mt_bench/question.jsonl",
            "mt_bench_question.jsonl",
            "MT-bench: 80 two-turn questions (judge evaluation; first turns usable).",
            sha256="119565adbab82227089cefdb44c8d7e2cf04dc0a0ec233634c82e7d4e2a944f7",
            license=_APACHE,
        ),
        Dataset(
            "mt-bench-reference",
            f"{_MT_JUDGE}/mt_bench/reference_answer/gpt-4.jsonl",
            "mt_bench_reference_answer_gpt-4.jsonl",
            "MT-bench: GPT-4's reference answers to the 30 math, reasoning, coding questions.",
            sha256="f957a5bc977badb66885ec970e6cd08527845780313f0995764260e5777b9b3f",
            license=_APACHE,
        ),
        Dataset(
            "mt-bench-judge-prompts",
            f"{_MT_JUDGE}/judge_prompts.jsonl",
            "mt_bench_judge_prompts.jsonl",
            "MT-bench: FastChat's 8 judge prompts (pairwise and single, general and math).",
            sha256="fd283293406d024f44c174b094ef48031d0687a4682fd3a56b29b138f80281b6",
            license=_APACHE,
        ),
        Dataset(
            "mt-bench-human",
            f"{_HF_VOTES}/human_judgments.json",
            "mt_bench_human_judgments.json",
            "MT-bench: 3.3K expert pairwise votes on 6 models' answers (JSON array).",
            sha256="d15a3722cbd6a8d311081eda5475d2fdf679bcb8ce93506b1089ed254e9cc11c",
            license="CC BY 4.0",
        ),
        Dataset(
            "mt-bench-gpt4-pair",
            f"{_HF_VOTES}/gpt4_pair_judgments.json",
            "mt_bench_gpt4_pair_judgments.json",
            "MT-bench: GPT-4's pairwise verdicts on the same answers (2,400, JSON array).",
            sha256="a5148966e60c5b24fbced8d7910aedaf7a3bc6e56445c569ce6617d954998ea1",
            license="CC BY 4.0",
        ),
        Dataset(
            "user-oriented-252",
            f"{_SELF_INSTRUCT}/human_eval/user_oriented_instructions.jsonl",
            "user_oriented_instructions.jsonl",
            "The 252 User-Oriented Instructions of Self-Instruct (the paper's human "
            "evaluation set).",
            sha256="81d60a117db495cecedecd9193504fd07c5b5a42f6699ef6b0f9da10fc22f42e",
            license=_APACHE,
        ),
        Dataset(
            "self-instruct-seed",
            f"{_SELF_INSTRUCT}/data/seed_tasks.jsonl",
            "self_instruct_seed_tasks.jsonl",
            "Self-Instruct's 175 seed tasks.",
            sha256="7779004fa198fdf27cf70a159363879d8a26c53329e11b436af17b3941875f48",
            license=_APACHE,
        ),
    ]
}


def data_dir() -> Path:
    env = os.environ.get("GPT4LLM_DATA_DIR")
    if env:
        return Path(env)
    from platformdirs import user_data_dir

    return Path(user_data_dir("gpt4llm"))


def _shown(value: str, limit: int = 60) -> str:
    """A user-given value as it can appear in a one-line message."""
    value = value if value.isprintable() else ascii(value)[1:-1]
    return repr(value[:limit] + ("…" if len(value) > limit else ""))


def _display_url(url: str) -> str:
    """The URL without user:password and query: mirrors may carry a token there."""
    p = urllib.parse.urlsplit(url)
    host = p.hostname or ""
    return f"{p.scheme}://{host}{f':{p.port}' if p.port else ''}{p.path}"


def _check_sha256(value: str) -> str:
    digest = value.strip().lower()
    if not _SHA256.fullmatch(digest):
        raise UserError(
            f"--sha256 {_shown(value)}: expected 64 hexadecimal digits "
            "(the output of `sha256sum FILE`)"
        )
    return digest


def _check_url(url: str, target: Path) -> None:
    # What a message may show of it: no user:password, no query (mirrors put tokens there).
    shown = _shown(re.sub(r"//[^/@]*@", "//", re.split(r"[?#]", url)[0]))
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise UserError(f"--url {shown}: not a valid URL") from None
    if not parts.scheme or len(parts.scheme) == 1:  # a path (or a Windows drive letter)
        raise UserError(
            f"--url {shown}: not a URL; fetch downloads over http:// or "
            f"https:// (to use a copy you have, put it at {target})"
        )
    if parts.scheme.lower() not in ("http", "https"):
        raise UserError(
            f"--url {shown}: unsupported scheme '{parts.scheme}'; fetch "
            "downloads over http:// or https:// (to use a copy you have, put it "
            f"at {target})"
        )
    if not parts.hostname:
        raise UserError(f"--url {shown}: no host name")


def _recorded_checksums(dest: Path) -> dict[str, str]:
    p = dest / "checksums.json"
    if not p.exists():
        return {}
    hint = "delete it to trust the next download of each unpinned file again"
    try:
        sums = json.loads(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise DataError(p, f"cannot read: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise DataError(p, f"malformed JSON: {e.msg}; {hint}", line=e.lineno) from None
    except (ValueError, RecursionError):  # not UTF-8, absurd nesting
        raise DataError(p, f"not a checksums file; {hint}") from None
    if not isinstance(sums, dict) or not all(
        isinstance(v, str) and _SHA256.fullmatch(v) for v in sums.values()
    ):
        raise DataError(p, f"expected an object {{file name: sha256}}; {hint}")
    return sums


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


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, total size) of a Content-Range header such as "bytes 10-99/100" or "*/100"."""
    m = re.fullmatch(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*", value or "")
    if not m:
        return None, None
    first, total = m.groups()
    return (int(first) if first else None), (int(total) if total and total != "*" else None)


def fetch(
    name: str,
    dest: Path | None = None,
    url: str | None = None,
    sha256: str | None = None,
    timeout: float = 60.0,
    quiet: bool = False,
) -> Path:
    """Download data set `name` into `dest` (default: the user data dir); resume a partial file.

    Returns the file's path. Raises `UserError` (one line) on every failure.
    """
    if name not in CATALOG:
        known = ", ".join(sorted(CATALOG))
        raise UserError(f"unknown data set {_shown(name)}; known: {known}")
    ds = CATALOG[name]
    dest = Path(dest) if dest else data_dir()
    target = dest / ds.filename
    # Refuse bad arguments before touching the disk or the network.
    if sha256 is not None:
        sha256 = _check_sha256(sha256)
    if url is not None:
        _check_url(url, target)
    try:
        return _fetch(ds, dest, target, url or ds.url, sha256, timeout, quiet)
    except OSError as e:  # the data dir: not creatable, not readable or writable
        where = f": {e.filename}" if e.filename else ""
        raise UserError(f"{name}: {e.strerror or type(e).__name__}{where}") from None


@dataclass
class _Transfer:
    """How far a download got: its first byte, the bytes received, the size when known."""

    start: int
    got: int = 0
    total: int | None = None


def _fetch(
    ds: Dataset, dest: Path, target: Path, url: str, sha256: str | None, timeout: float, quiet: bool
) -> Path:
    import httpx

    name = ds.name
    expected = sha256 or ds.sha256
    if expected is None and dest.is_dir():
        expected = _recorded_checksums(dest).get(ds.filename)
    if target.exists() and (expected is None or _sha256(target) == expected):
        return target
    part = target.with_name(target.name + ".part")
    shown = _display_url(url)
    have = part.stat().st_size if part.exists() else 0
    # identity: byte ranges and sizes are those of the file, not of a compressed stream
    headers = {"Accept-Encoding": "identity", **({"Range": f"bytes={have}-"} if have else {})}
    t = _Transfer(start=have)
    try:
        with httpx.stream("GET", url, headers=headers, timeout=timeout, follow_redirects=True) as r:
            _receive(r, name, shown, dest, part, t, quiet)
    except httpx.UnsupportedProtocol:
        raise UserError(f"{name}: unsupported URL {shown}; fetch downloads over http(s)") from None
    except httpx.ConnectError as e:
        raise UserError(
            f"{name}: cannot connect to {shown} ({_reason(e)}); check the network "
            "or pass a mirror with --url"
        ) from None
    except httpx.TimeoutException:
        raise UserError(
            f"{name}: no answer from {shown} within {timeout:g} s"
            f"{_so_far(t.start, t.got, t.total)}; run the same command again to resume"
        ) from None
    except httpx.RemoteProtocolError:
        raise UserError(
            f"{name}: the server closed the connection{_so_far(t.start, t.got, t.total)}; "
            "run the same command again to resume"
        ) from None
    except httpx.HTTPError as e:
        raise UserError(
            f"{name}: download interrupted ({type(e).__name__}"
            f"{_so_far(t.start, t.got, t.total)}); run the same command again to resume"
        ) from None
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise UserError(
                f"{name}: no space left on the device holding {part}"
                f"{_so_far(t.start, t.got, t.total)}; free some space and run the same "
                "command again to resume"
            ) from None
        raise
    return _install(ds, dest, part, target, expected)


def _receive(
    r: Any, name: str, shown: str, dest: Path, part: Path, t: _Transfer, quiet: bool
) -> None:
    """Append a response's bytes to the partial file `part` (or start it over when the server
    ignored the range), with a progress bar; refuse a response that does not fit it."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    have = t.start
    if r.status_code == 416 and have:  # nothing after `have`: complete, or too long
        _, size = _content_range(r.headers.get("content-range"))
        if size is not None and size != have:
            part.unlink(missing_ok=True)
            raise UserError(
                f"{name}: the partial download ({have} bytes) does not fit "
                f"the file on the server ({size} bytes); it was removed, "
                "run the same command again"
            )
        return
    if r.status_code not in (200, 206):
        raise UserError(f"{name}: download failed: HTTP {r.status_code} from {shown}")
    if r.status_code == 206:
        first, _ = _content_range(r.headers.get("content-range"))
        if first is not None and first != have:  # not the range we asked for
            raise UserError(
                f"{name}: the server resumed at byte {first}, not "
                f"{have}; delete {part} and run the same command again"
            )
    else:
        t.start = 0  # the server ignored Range: start over
    length = r.headers.get("content-length", "")
    t.total = t.start + int(length) if length.isdigit() else None
    columns = (
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, disable=quiet, transient=True, console=Console(stderr=True)) as bar:
        task = bar.add_task(f"fetch {name}", total=t.total, completed=t.start)
        dest.mkdir(parents=True, exist_ok=True)  # only once there is data
        with open(part, "ab" if t.start else "wb") as f:
            for chunk in r.iter_bytes(1 << 16):
                f.write(chunk)
                t.got += len(chunk)
                bar.advance(task, len(chunk))


def _install(ds: Dataset, dest: Path, part: Path, target: Path, expected: str | None) -> Path:
    """The complete download checked against its checksum (or its checksum recorded, trust on
    first use) and renamed into place."""
    digest = _sha256(part)
    if expected and digest != expected:
        part.unlink(missing_ok=True)
        raise UserError(
            f"{ds.name}: checksum mismatch (got {digest[:12]}…, expected "
            f"{expected[:12]}…); the partial file was removed"
        )
    if not expected:
        _record_checksum(dest, ds.filename, digest)  # before the file appears: trust on first use
    os.replace(part, target)
    return target


def _reason(e: Exception) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text[:120]


def _so_far(start: int, got: int, total: int | None) -> str:
    if not (start + got):
        return ""
    return f" after {start + got} of {total} bytes" if total else f" after {start + got} bytes"


_DEST_HELP = "Data directory (default: $GPT4LLM_DATA_DIR or the user data dir)."
DestOption = Annotated[Path | None, typer.Option("--dest", help=_DEST_HELP)]


def register(data_app: typer.Typer) -> None:
    from rich.console import Console
    from rich.table import Table

    @data_app.command("list")
    def list_cmd(dest: DestOption = None) -> None:
        """Show the known data sets and which are present."""
        where = dest or data_dir()
        table = Table(title=f"data sets ({where})")
        for col in ("name", "present", "file", "license", "description"):
            table.add_column(col, overflow="fold")
        for ds in CATALOG.values():
            present = "yes" if (where / ds.filename).exists() else "no"
            if present == "no" and (where / (ds.filename + ".part")).exists():
                present = "partial"
            table.add_row(ds.name, present, ds.filename, ds.license, ds.description)
        Console().print(table)

    @data_app.command("fetch")
    def fetch_cmd(
        names: Annotated[
            list[str],
            typer.Argument(help=f"One or more of: {', '.join(CATALOG)}.", show_default=False),
        ],
        dest: DestOption = None,
        url: Annotated[
            str | None,
            typer.Option(
                "--url",
                help="Download from this http(s) URL instead of the canonical one (a "
                "mirror; one data set only).",
            ),
        ] = None,
        sha256: Annotated[
            str | None,
            typer.Option(
                "--sha256",
                help="Expected sha256 of the file, 64 hex digits (overrides the pinned "
                "or recorded one; one data set only).",
            ),
        ] = None,
    ) -> None:
        """Download published data sets (resumable, checksummed) into the data dir; print
        their paths."""
        if len(names) > 1 and (url is not None or sha256 is not None):
            raise UserError(f"--url and --sha256 apply to one data set; got {len(names)} names")
        for name in names:  # every name is checked before the first download
            if name not in CATALOG:
                known = ", ".join(sorted(CATALOG))
                raise UserError(f"unknown data set {_shown(name)}; known: {known}")
        for name in names:
            typer.echo(str(fetch(name, dest, url=url, sha256=sha256)))
