"""Human evaluation studies: create one from model answers, add annotators, export results.

A study is a directory: `study.json` (what was compared, how, with which criteria; human
readable), `secret.key` (the key that signs session cookies, 0600; or `$GPT4LLM_ANNOTATE_SECRET`)
and, by default, `study.db` (SQLite, 0600) next to it — or a PostgreSQL schema named in
study.json when created with `--db-url postgresql+psycopg://...`. The database holds the items,
the pairs (left/right randomised per pair with the recorded seed), annotators (token hashes
only), web sessions (id hashes only), assignments and votes; no secret that could sign a session.

Inputs, per source `NAME=FILE` (two or more, over the same instructions), lined up by the
package's one join rule (`gpt4llm.join`, `--join auto|id|text|position`); every model must
answer every instruction, and joined by id or position the instruction texts must agree:
- our response records `{id, instruction, input, output, model}` or Alpaca records
  `{instruction, input, output}`;
- prediction files `{prompt, completion}` (self-instruct's User-Oriented format also has
  `response`, `instruction`, `input`): joined by position with `--instructions FILE` (the
  User-Oriented `{id, instruction, instances:[{input}]}` file or Alpaca records), each
  prediction checked against its instruction.
Or `--from-judge DIR`: a pairwise `eval judge` output directory (its manifest holds the
judge's config, judgments.jsonl the judged ids and model names); the judge's own loader reads
its inputs, so the humans judge exactly what the LLM judge judged, under the same question ids.

Export writes, besides the tables and charts, `human_judgments.jsonl` in FastChat's MT-bench
human-judgment format (one row per vote and criterion: question_id, model_a, model_b, winner
model_a|model_b|tie, judge = annotator, turn 1, criterion), which `eval agreement` reads.
"""

from __future__ import annotations

import itertools
import json
import random
import re
import secrets
import time
from collections import Counter
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field

from gpt4llm.config import StageConfig
from gpt4llm.errors import DataError, UserError
from gpt4llm.join import JOIN_HELP, JoinOn
from gpt4llm.records import (
    check_fields,
    file_sha256,
    first_instance,
    load_instructions,
    read_json_records,
    write_json,
    write_jsonl,
)

STUDY_FILE = "study.json"
DB_FILE = "study.db"
DEFAULT_CRITERIA = "hhh_criteria.yaml"
DB_URL_ENV = "GPT4LLM_ANNOTATE_DB_URL"
SECRET_FILE = "secret.key"
SECRET_ENV = "GPT4LLM_ANNOTATE_SECRET"
HUMAN_JUDGMENTS = "human_judgments.jsonl"
STUDY_FORMAT = "gpt4llm-annotate-study"


# --- criteria --------------------------------------------------------------------------------


def load_criteria(path: str | Path | None = None) -> list[dict[str, str]]:
    """Criteria from a YAML file (default: the packaged HHH guidance,
    `prompts/hhh_criteria.yaml`)."""
    if path is None:
        from importlib import resources

        text = (
            resources.files("gpt4llm.prompts")
            .joinpath(DEFAULT_CRITERIA)
            .read_text(encoding="utf-8")
        )
        where = DEFAULT_CRITERIA
    else:
        p = Path(path)
        if not p.is_file():
            raise UserError(f"{p}: criteria file not found")
        text, where = p.read_text(encoding="utf-8"), str(p)
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise UserError(f"{where}: malformed YAML: {str(e).splitlines()[0]}") from None
    items = data.get("criteria") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items:
        raise UserError(f"{where}: expected a top-level 'criteria:' list")
    out, seen = [], set()
    for i, c in enumerate(items, start=1):
        if not isinstance(c, dict):
            raise UserError(f"{where}: criterion {i}: expected a mapping")
        key = str(c.get("key", "")).strip()
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,63}", key):
            raise UserError(
                f"{where}: criterion {i}: 'key' must be letters, digits or _ (got {key!r})"
            )
        if key in seen:
            raise UserError(f"{where}: criterion {i}: duplicate key {key!r}")
        seen.add(key)
        out.append(
            {
                "key": key,
                "name": str(c.get("name") or key.capitalize()),
                "question": str(c.get("question") or ""),
                "guidance": str(c.get("guidance") or "").strip(),
            }
        )
    return out


# --- loading answers -------------------------------------------------------------------------


def _norm(text: str) -> str:
    return " ".join((text or "").split())


def load_instruction_set(path: str | Path) -> list[dict[str, str]]:
    """User-Oriented `{id, instruction, instances:[{input, ...}]}` or Alpaca records."""
    path = Path(path)
    rows = read_json_records(path)
    if rows and isinstance(rows[0][1], dict) and "instances" in rows[0][1]:
        out = []
        for lineno, obj in rows:
            if not isinstance(obj, dict) or not isinstance(obj.get("instruction"), str):
                raise DataError(path, "missing or not a string", line=lineno, field="instruction")
            first = first_instance(path, lineno, obj)
            out.append(
                {
                    "id": str(obj.get("id", f"{path.stem}-{len(out):06d}")),
                    "instruction": obj["instruction"],
                    "input": str(first.get("input") or ""),
                }
            )
        return out
    return [
        {"id": r["id"], "instruction": r["instruction"], "input": r["input"]}
        for r in load_instructions(path)
    ]


def load_answers(
    path: str | Path, instructions: list[dict[str, str]] | None, instructions_path: Path | None
) -> tuple[str, list[dict[str, str]]]:
    """Return (format, [{id, instruction, input, output}]) for one source file."""
    path = Path(path)
    rows = read_json_records(path)
    if not rows:
        raise DataError(path, "no records")
    first = check_fields(path, *rows[0])  # (line, record): must be an object
    if (
        "prompt" in first
        and ("completion" in first or "response" in first)
        and "output" not in first
    ):
        if instructions is None:
            raise UserError(
                f"{path}: prediction records ({{prompt, completion}}) are joined by position with"
                " an instruction file: pass --instructions FILE"
            )
        if len(rows) != len(instructions):
            raise DataError(
                path,
                f"has {len(rows)} predictions but {instructions_path} has {len(instructions)}"
                " instructions (joined by position)",
            )
        out = []
        for (lineno, obj), ins in zip(rows, instructions):
            if not isinstance(obj, dict):
                raise DataError(path, "expected a JSON object", line=lineno)
            field = "completion" if "completion" in obj else "response"
            text = obj.get(field)
            if not isinstance(text, str):
                raise DataError(path, "missing or not a string", line=lineno, field=field)
            prompt = obj.get("prompt")
            if not isinstance(prompt, str):
                raise DataError(path, "missing or not a string", line=lineno, field="prompt")
            if "instruction" in obj:
                ok = _norm(obj["instruction"]) == _norm(ins["instruction"])
            else:
                ok = _norm(ins["instruction"]) in _norm(prompt)
            if not ok:
                raise DataError(
                    path,
                    f"does not match instruction {ins['id']!r} of {instructions_path} at the same"
                    " position",
                    line=lineno,
                    field="prompt",
                )
            out.append(
                {
                    "id": ins["id"],
                    "instruction": ins["instruction"],
                    "input": ins["input"],
                    "output": text.strip(),
                }
            )
        return "predictions", out
    if "output" in first and "instruction" in first:
        recs = load_instructions(path, need_output=True)
        fmt = "responses" if "model" in first else "alpaca"
        return fmt, [
            {
                "id": r["id"],
                "instruction": r["instruction"],
                "input": r["input"],
                "output": (r["output"] or "").strip(),
            }
            for r in recs
        ]
    raise DataError(
        path,
        "unrecognised record: expected {instruction, input, output} (Alpaca / response records) or"
        " {prompt, completion} (predictions)",
        line=rows[0][0],
    )


def join_sources(
    sources: dict[str, tuple[Path, list[dict[str, str]], bool]], on: str = "auto"
) -> list[dict[str, Any]]:
    """Items `{id, instruction, input, outputs: {model: text}}` in the first source's order,
    lined up by the package's one join rule (`gpt4llm.join`, `--join`); every model must
    answer every item. `sources`: name -> (path, records, whether the ids are the file's own).
    Joined by id or position, the instruction texts must agree too."""
    from gpt4llm.join import Source, join_answers

    joined = join_answers(
        [Source(name, recs, explicit, path) for name, (path, recs, explicit) in sources.items()],
        on=on,
    )
    joined.require_complete(hint="a study shows every model's answer to every instruction")
    first = next(iter(sources))
    items = []
    for pos, it in enumerate(joined.items, start=1):
        base = it.records[first]
        outputs = {}
        for name, (path, _, _) in sources.items():
            r = it.records[name]
            texts = (_norm(r["instruction"]), _norm(r["input"]))
            if texts != (_norm(base["instruction"]), _norm(base["input"])):
                raise DataError(
                    path,
                    f"record {pos} (id {r['id']!r}) has a different instruction or input than "
                    f"{sources[first][0]} (joined by {joined.method})",
                )
            outputs[name] = r["output"]
        items.append(
            {
                "id": base["id"],
                "instruction": base["instruction"],
                "input": base["input"],
                "outputs": outputs,
            }
        )
    return items


# --- study files -----------------------------------------------------------------------------


def study_file(path: str | Path) -> Path:
    p = Path(path)
    return p / STUDY_FILE if p.is_dir() or p.suffix != ".json" else p


def read_study(path: str | Path) -> dict:
    f = study_file(path)
    if not f.is_file():
        raise UserError(f"{f}: not a study (create one with `gpt4llm annotate init`)")
    try:
        data = json.loads(f.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f, f"malformed JSON: {e.msg}", line=e.lineno) from None
    if not isinstance(data, dict) or data.get("format") != STUDY_FORMAT:
        raise DataError(f, f"not a {STUDY_FORMAT} file")
    data["_dir"] = str(f.parent)
    return data


def study_db_url(study: dict, override: str | None = None) -> str:
    import os

    if override:
        return override
    url = study.get("db_url")
    if not url:
        return f"sqlite:///{Path(study['_dir']) / DB_FILE}"
    if "***" in url:
        env = os.environ.get(DB_URL_ENV)
        if not env:
            raise UserError(
                "study.json stores the database URL without its password: pass --db-url or set"
                f" {DB_URL_ENV}"
            )
        return env
    return url


def open_store(path: str | Path, db_url: str | None = None, timeout: float = 60.0):
    """(study dict, db.Store) for a study directory; upgrades an older database in place."""
    from sqlalchemy.exc import SQLAlchemyError

    from gpt4llm.evaluate.human.db import SCHEMA_VERSION, DatabaseGone, Store

    study = read_study(path)
    where = study_file(path)
    try:
        store = Store(study_db_url(study, db_url), schema=study.get("schema"), timeout=timeout)
    except DatabaseGone as e:
        raise UserError(
            f"{where}: the study database is missing ({e}); it is never re-created empty"
        ) from None
    try:
        meta = store.meta()
        if meta.get("study_id") != study["study_id"]:
            raise UserError(
                f"{where}: the database belongs to another study ({meta.get('study_id')!r})"
            )
        version = int(meta.get("schema_version", 0))
        if version > SCHEMA_VERSION:
            raise UserError(
                f"{where}: database schema version {version} is newer than this "
                f"gpt4llm's ({SCHEMA_VERSION})"
            )
        if version < SCHEMA_VERSION and store.migrate():
            meta = store.meta()
    except UserError:
        store.dispose()
        raise
    except (SQLAlchemyError, DatabaseGone, ValueError) as e:  # wrong URL, missing tables: one line
        store.dispose()
        raise UserError(
            f"{where}: cannot open the study database: {str(e).splitlines()[0]}"
        ) from None
    study["criteria"] = json.loads(meta["criteria"])
    study["per_item"] = int(meta["per_item"])
    return study, store


def session_secret(study_dir: str | Path) -> str:
    """The key that signs session cookies: `$GPT4LLM_ANNOTATE_SECRET` (deployments), else
    `secret.key` in the study directory, created (0600, atomically) on first use. Never in the
    database, so whoever can read study.db (a backup, a shared volume) cannot forge a session."""
    import os

    env = os.environ.get(SECRET_ENV)
    if env is not None:
        if len(env.strip()) < 32:
            raise UserError(
                f"{SECRET_ENV} must be at least 32 characters (e.g. `openssl rand -hex 32`)"
            )
        return env.strip()
    path = Path(study_dir) / SECRET_FILE
    if not path.exists():
        # Written in full under a private temporary name, then linked into place: a concurrent
        # reader never sees a half-written key, and of two racing creators one wins.
        tmp = path.with_name(f".{SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(secrets.token_hex(32) + "\n")
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass
        finally:
            tmp.unlink(missing_ok=True)
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise UserError(
            f"{path} is readable by others (mode {mode:o}): `chmod 600` it, or delete it to make "
            "a new one (signs everyone out)"
        )
    key = path.read_text(encoding="ascii", errors="replace").strip()
    if len(key) < 32:
        raise UserError(
            f"{path}: not a valid key; delete it to make a new one (signs everyone out)"
        )
    return key


# --- init ------------------------------------------------------------------------------------


class InitConfig(StageConfig):
    output: Path = Path("study")
    """Study directory to create (study.json, and study.db unless --db-url)."""
    source: dict[str, Path] = Field(default_factory=dict)
    """NAME=FILE, repeated (two or more): each model's answers: response records, Alpaca records, or
    {prompt, completion} predictions (with --instructions)."""
    from_judge: Path | None = None
    """Instead of --source: an `eval judge` output directory; its two answer files and judged
    questions become the study, so human votes can be compared with the judge's (question ids
    kept).
    """
    instructions: Path | None = None
    """Instruction file that prediction files are joined with by position (User-Oriented {id,
    instruction, instances} or Alpaca)."""
    join: JoinOn = Field(
        "auto",
        description=JOIN_HELP
        + " Prediction files are first lined up with --instructions by position.",
    )
    reference: str | None = None
    """With more than two sources: compare every model against this one (default: all pairs of
    models).
    """
    per_item: int = Field(3, ge=1)
    """Annotators per pair."""
    seed: int = 0
    """Seed for the left/right order of each pair, the serving order and --limit sampling."""
    limit: int | None = Field(None, ge=1)
    """Use a random sample of this many instructions (seeded)."""
    criteria: Path | None = None
    """YAML file of criteria and guidance text (default: the packaged prompts/hhh_criteria.yaml:
    helpfulness, honesty, harmlessness)."""
    db_url: str | None = None
    """Database URL, e.g. postgresql+psycopg://user:pass@host/db (a schema per study). Default:
    SQLite study.db in the study directory.
    """
    title: str = "Human evaluation"
    """Title shown to annotators."""
    host: str = "127.0.0.1"
    """Host that annotator links point to (serve's --host default)."""
    port: int = Field(8000, ge=1, le=65535)
    """Port that annotator links point to (serve's --port default)."""
    force: bool = False
    """Replace an existing study in the output directory."""


def _judge_input(judge_dir: Path, manifest: dict, value: Any, what: str) -> Path:
    """A file the judge run read: as recorded (relative to where it ran: tried from the
    current directory, then from the judge directory and its parent), unchanged since."""
    p = Path(str(value))
    tried = [p] if p.is_absolute() else [p, judge_dir / p, judge_dir.parent / p]
    found = next((c for c in tried if c.is_file()), None)
    if found is None:
        places = ", ".join(
            "the current directory" if str(c.parent) == "." else str(c.parent) for c in tried
        )
        raise UserError(
            f"{judge_dir}: the judge's {what} {p} is not found (looked in {places}); "
            "run from the directory the judge ran in"
        )
    recorded = (manifest.get("inputs") or {}).get(str(value))
    if recorded and recorded != file_sha256(found):
        raise UserError(
            f"{found}: changed since the judge read it "
            f"(sha256 differs from {judge_dir / 'manifest.json'})"
        )
    return found


def load_judge_run(judge_dir: str | Path) -> dict[str, Any]:
    """Items and models from a pairwise `eval judge` output directory.

    `manifest.json` holds the judge's resolved config; `judgments.jsonl` one row per question,
    turn and order with id, model_a, model_b. The judge's config is rebuilt (its input paths
    found again and checked unchanged) and its answers loaded by the judge's own loader, with
    its join rule and --limit, so humans see exactly what the judge saw. The items are the
    judged questions (first turn), in judgment order, under the judge's question ids.
    Returns {items, models, sources, inputs, judge}."""
    from pydantic import ValidationError

    from gpt4llm.evaluate import judge as judge_stage

    d = Path(judge_dir)
    mf, jf = d / "manifest.json", d / "judgments.jsonl"
    if not mf.is_file() or not jf.is_file():
        raise UserError(
            f"{d}: not an `eval judge` output directory (needs manifest.json and judgments.jsonl)"
        )
    try:
        manifest = json.loads(mf.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(mf, f"malformed JSON: {e.msg}", line=e.lineno) from None
    cfg = manifest.get("config") if isinstance(manifest, dict) else None
    if not isinstance(cfg, dict) or manifest.get("stage") != judge_stage.STAGE:
        raise DataError(mf, f"not the manifest of an `{judge_stage.STAGE}` run")
    if cfg.get("mode", "pair") != "pair" or not cfg.get("answers_b"):
        raise UserError(f"{d}: a study compares two models: use a pairwise judge run (--mode pair)")
    ids: list[str] = []
    names: set[tuple[str, str]] = set()
    for lineno, row in read_json_records(jf):
        if not isinstance(row, dict):
            raise DataError(jf, "expected a JSON object", line=lineno)
        for field in ("id", "model_a", "model_b"):
            if row.get(field) is None or str(row[field]) == "":
                raise DataError(jf, "missing", line=lineno, field=field)
        names.add((str(row["model_a"]), str(row["model_b"])))
        if str(row["id"]) not in ids:
            ids.append(str(row["id"]))
    if not ids:
        raise DataError(jf, "no judgments")
    if len(names) != 1:
        raise DataError(jf, f"judges more than one pair of models: {sorted(names)}")
    model_a, model_b = names.pop()
    inputs = []
    for key in ("answers_a", "answers_b", "questions", "references"):
        if cfg.get(key):
            found = _judge_input(d, manifest, cfg[key], key)
            cfg = {**cfg, key: str(found)}
            inputs.append(found)
    try:
        judge_config = judge_stage.Config.model_validate(cfg)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first.get("loc", ()))
        reason = f"{where}: {first.get('msg')}"
        raise DataError(mf, f"the judge's config does not load here: {reason}") from None
    # The judge's own loading (join rule, --limit, turns), not a second copy of it.
    questions, models, _ = judge_stage._load(judge_config)
    by_id = {q["id"]: q for q in questions}
    (_, ans_a), (_, ans_b) = models
    items = []
    for qid in ids:
        q = by_id.get(qid)
        if q is None or qid not in ans_a or qid not in ans_b:
            raise DataError(jf, f"judged question {qid!r} is not among the judge's inputs any more")
        outputs = {model_a: ans_a[qid]["text"].strip(), model_b: ans_b[qid]["text"].strip()}
        items.append({"id": qid, "instruction": q["text"], "input": "", "outputs": outputs})
    paths = {model_a: inputs[0], model_b: inputs[1]}
    sources = {
        m: {"path": str(p), "format": f"eval judge {k}", "sha256": file_sha256(p)}
        for (m, p), k in zip(paths.items(), ("answers_a", "answers_b"))
    }
    judge = {
        "dir": str(d),
        "judge": judge_config.judge.model,
        "judgments_sha256": file_sha256(jf),
    }
    return {
        "items": items,
        "models": [model_a, model_b],
        "sources": sources,
        "inputs": [*inputs, jf],
        "judge": judge,
    }


def _load_sources(config: InitConfig) -> dict[str, Any]:
    """Items and models from --source files (see the module docstring)."""
    from gpt4llm.join import has_own_ids

    for name in config.source:
        if not name or len(name) > 255:
            raise UserError(f"--source: bad model name {name!r}")
    instructions = load_instruction_set(config.instructions) if config.instructions else None
    loaded: dict[str, tuple[Path, list[dict[str, str]], bool]] = {}
    formats = {}
    for name, path in config.source.items():
        fmt, recs = load_answers(path, instructions, config.instructions)
        # predictions carry the instruction file's ids; other files their own, if they have them
        loaded[name] = (Path(path), recs, fmt == "predictions" or has_own_ids(path))
        formats[name] = fmt
    items = join_sources(loaded, on=config.join)
    sources = {
        n: {"path": str(p), "format": formats[n], "sha256": file_sha256(p)}
        for n, (p, _, _) in loaded.items()
    }
    inputs = [p for p, _, _ in loaded.values()] + (
        [config.instructions] if config.instructions else []
    )
    return {
        "items": items,
        "models": list(config.source),
        "sources": sources,
        "inputs": inputs,
        "judge": None,
    }


def init_study(config: InitConfig) -> dict:
    """Create the study; returns a summary with the one-time `admin_token` (not stored in clear)."""
    from gpt4llm.evaluate.human.db import (
        SCHEMA_VERSION,
        Item,
        Meta,
        Pair,
        Store,
        hash_token,
        redact_url,
    )
    from gpt4llm.provenance import write_manifest

    t0 = time.time()
    if config.from_judge is not None and (config.source or config.instructions):
        raise UserError(
            "--from-judge takes both models' answers from the judge run: "
            "drop --source/--instructions"
        )
    if config.from_judge is None and len(config.source) < 2:
        raise UserError(
            "give at least two sources: --source NAME=FILE --source NAME=FILE (or --from-judge DIR)"
        )
    if config.reference is not None and config.source and config.reference not in config.source:
        raise UserError(
            f"--reference {config.reference!r} is not one of the sources "
            f"({', '.join(config.source)})"
        )
    criteria = load_criteria(config.criteria)
    out = Path(config.output)
    sf = out / STUDY_FILE
    if sf.exists() and not config.force:
        raise UserError(f"{sf} exists: choose another --output or pass --force to replace it")

    loaded = (
        load_judge_run(config.from_judge)
        if config.from_judge is not None
        else _load_sources(config)
    )
    items, models = loaded["items"], loaded["models"]
    from gpt4llm.outputs import check_outputs

    check_outputs(  # the study directory must not clobber what it was made from
        inputs=[*loaded["inputs"], *([config.criteria] if config.criteria else [])],
        directories=[out],
        files=[sf, out / DB_FILE, out / SECRET_FILE],
        companions=False,
    )
    if not items:
        raise UserError("the sources have no instructions in common")
    if config.reference is not None and config.reference not in models:
        raise UserError(
            f"--reference {config.reference!r} is not one of the models ({', '.join(models)})"
        )

    rng = random.Random(config.seed)
    if config.limit and config.limit < len(items):
        keep = sorted(rng.sample(range(len(items)), config.limit))
        items = [items[i] for i in keep]
    if config.reference:
        comparisons = [(config.reference, m) for m in models if m != config.reference]
    else:
        comparisons = list(itertools.combinations(models, 2))
    n_pairs = len(items) * len(comparisons)
    ranks = list(range(n_pairs))
    rng.shuffle(ranks)
    swaps = [rng.random() < 0.5 for _ in range(n_pairs)]

    study_id = secrets.token_hex(6)
    schema = None
    if config.db_url:
        url = config.db_url
        if not url.startswith("sqlite"):
            schema = f"gpt4llm_{study_id}"
    else:
        out.mkdir(parents=True, exist_ok=True)
        db_path = out / DB_FILE
        if config.force:
            for suffix in ("", "-wal", "-shm"):
                Path(str(db_path) + suffix).unlink(missing_ok=True)
            (out / SECRET_FILE).unlink(missing_ok=True)  # a new study: a new signing key
        url = f"sqlite:///{db_path}"
    try:
        store = Store(url, schema=schema, create=True)
        store.create()
    except Exception as e:  # noqa: BLE001 - any driver error becomes one line
        raise UserError(
            f"cannot create the study database at {redact_url(url)}: {str(e).splitlines()[0]}"
        ) from None
    try:
        with store.write() as s, s.begin():
            if s.get(Meta, "study_id") is not None:
                raise UserError(
                    f"{redact_url(url)} already holds a study: use a fresh database "
                    "(or --force with the default SQLite file)"
                )
            admin_token = secrets.token_urlsafe(32)
            meta = {
                "study_id": study_id,
                "schema_version": str(SCHEMA_VERSION),
                "title": config.title,
                "admin_token_hash": hash_token(admin_token),
                "criteria": json.dumps(criteria),
                "per_item": str(config.per_item),
                "seed": str(config.seed),
            }
            s.add_all(Meta(key=k, value=v) for k, v in meta.items())
            k = 0
            for n, it in enumerate(items, start=1):
                s.add(Item(id=n, key=it["id"], instruction=it["instruction"], input=it["input"]))
                for a, b in comparisons:
                    s.add(
                        Pair(
                            item_id=n,
                            model_a=a,
                            model_b=b,
                            output_a=it["outputs"][a],
                            output_b=it["outputs"][b],
                            swapped=swaps[k],
                            rank=ranks[k],
                            n_assigned=0,
                        )
                    )
                    k += 1
    finally:
        store.dispose()
    out.mkdir(parents=True, exist_ok=True)
    session_secret(out)  # the signing key, 0600, beside the database (unless given by env)

    study = {
        "format": STUDY_FORMAT,
        "version": SCHEMA_VERSION,
        "study_id": study_id,
        "title": config.title,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "db_url": redact_url(config.db_url) if config.db_url else None,
        "schema": schema,
        "models": models,
        "comparisons": [list(c) for c in comparisons],
        "reference": config.reference,
        "per_item": config.per_item,
        "seed": config.seed,
        "left_right": (
            "randomised per pair with random.Random(seed); see pairs.swapped in the database"
        ),
        "criteria": criteria,
        "n_items": len(items),
        "n_pairs": n_pairs,
        "sources": loaded["sources"],
        "instructions": str(config.instructions) if config.instructions else None,
        "server": {"host": config.host, "port": config.port},
    }
    if loaded["judge"]:
        study["from_judge"] = loaded["judge"]
    write_json(sf, study)
    summary = {
        "study_id": study_id,
        "models": models,
        "comparisons": len(comparisons),
        "items": len(items),
        "pairs": n_pairs,
        "per_item": config.per_item,
        "votes_needed": n_pairs * config.per_item,
        "criteria": [c["key"] for c in criteria],
    }
    write_manifest(
        out, "annotate init", config, inputs=loaded["inputs"], summary=summary, started=t0
    )
    return {**summary, "study": str(sf), "admin_token": admin_token}


def run_init(config: InitConfig) -> dict:
    """`annotate init` and the `annotate_init` pipeline stage: create the study, print the admin
    token once on stdout (the only place it ever appears) and the rest on stderr."""
    import sys

    from rich.console import Console

    summary = init_study(config)
    token = summary.pop("admin_token")
    con = Console(stderr=True)
    con.print(
        f"[bold]Study created[/bold]: {summary['study']}  ({summary['items']} instructions, "
        f"{summary['comparisons']} comparison(s), {summary['pairs']} pairs, "
        f"{summary['per_item']} annotators per pair, {summary['votes_needed']} votes needed; "
        f"criteria: {', '.join(summary['criteria'])})"
    )
    con.print("Admin token (shown only now, stored hashed; sign in at /login with it):")
    sys.stdout.write(token + "\n")
    sys.stdout.flush()
    con.print(
        f"Next: gpt4llm annotate add-annotator {config.output} NAME   "
        f"then   gpt4llm annotate serve {config.output}"
    )
    return summary


def add_annotator(
    study_path: str | Path, name: str, quota: int | None = None, db_url: str | None = None
) -> str:
    """Create an annotator; returns the secret token (only its SHA-256 is stored)."""
    name = name.strip()
    if not name or len(name) > 255:
        raise UserError("annotator name must be 1-255 characters")
    if quota is not None and quota < 1:
        raise UserError("--quota must be at least 1")
    _, store = open_store(study_path, db_url)
    token = secrets.token_urlsafe(32)
    try:
        store.add_annotator(name, token, quota)
    except KeyError:
        raise UserError(f"annotator {name!r} already exists in this study") from None
    finally:
        store.dispose()
    return token


def annotator_link(study_path: str | Path, token: str, base_url: str | None = None) -> str:
    if base_url is None:
        srv = read_study(study_path).get("server", {})
        base_url = f"http://{srv.get('host', '127.0.0.1')}:{srv.get('port', 8000)}"
    return f"{base_url.rstrip('/')}/a/{token}"


# --- export ----------------------------------------------------------------------------------


class ExportConfig(StageConfig):
    study: Path = Path("study")
    """Study directory (with study.json)."""
    output: Path = Path("annotate_export")
    """Directory for votes.jsonl, human_judgments.jsonl (FastChat MT-bench format), summary.json,
    pie charts (PNG) and manifest.json.
    """
    db_url: str | None = None
    """Database URL overriding study.json's (e.g. when it was stored without a password)."""
    pie_basis: Literal["votes", "majority"] = "votes"
    """Pie charts from all annotators' votes, or from the per-pair majority."""


def _majority(values: list[str]) -> str:
    """The choice more than half the annotators made; 'none' without such a majority."""
    for v in ("a", "tie", "b"):
        if values.count(v) * 2 > len(values):
            return v
    return "none"


def agreement(units: dict[int, dict[int, str]], per_item: int) -> dict[str, Any]:
    """Inter-annotator agreement on one criterion. `units`: pair id -> {annotator id: a|tie|b}.

    Krippendorff's alpha over all pairs with two or more votes (ordinal: b < tie < a, and
    nominal); Fleiss' kappa over the pairs that have exactly `per_item` votes (it needs the same
    number of raters per unit). None where undefined (fewer than two units or one category)."""
    import math

    import numpy as np

    code = {"b": 0, "tie": 1, "a": 2}
    multi = {u: v for u, v in units.items() if len(v) >= 2}
    out: dict[str, Any] = {
        "units": len(multi),
        "krippendorff_alpha_ordinal": None,
        "krippendorff_alpha_nominal": None,
        "fleiss_kappa": None,
        "fleiss_units": 0,
    }
    if len(multi) >= 2:
        raters = sorted({r for v in multi.values() for r in v})
        mat = np.full((len(raters), len(multi)), np.nan)
        ridx = {r: i for i, r in enumerate(raters)}
        for j, v in enumerate(multi.values()):
            for r, c in v.items():
                mat[ridx[r], j] = code[c]
        if len({c for v in multi.values() for c in v.values()}) >= 2:
            import krippendorff

            for level in ("ordinal", "nominal"):
                a = float(
                    krippendorff.alpha(
                        reliability_data=mat, level_of_measurement=level, value_domain=[0, 1, 2]
                    )
                )
                out[f"krippendorff_alpha_{level}"] = None if math.isnan(a) else round(a, 4)
    full = [v for v in units.values() if len(v) == per_item]
    if per_item >= 2 and len(full) >= 2:
        from statsmodels.stats.inter_rater import fleiss_kappa

        table = np.array([[list(v.values()).count(c) for c in ("a", "tie", "b")] for v in full])
        with np.errstate(divide="ignore", invalid="ignore"):
            k = float(fleiss_kappa(table, method="fleiss"))
        out["fleiss_kappa"] = None if math.isnan(k) else round(k, 4)
        out["fleiss_units"] = len(full)
    return out


def _pct(counts: dict[str, int]) -> dict[str, float]:
    total = sum(counts.values())
    return {k: round(100.0 * v / total, 2) if total else 0.0 for k, v in counts.items()}


def draw_pies(
    path: Path,
    model_a: str,
    model_b: str,
    criteria: list[dict],
    per_crit: dict[str, dict[str, int]],
    title: str,
) -> None:
    """One pie per criterion, as the paper's Figure: '<A> wins' / 'Tie' / '<B> wins'."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = ["#4C72B0", "#BDBDBD", "#DD8452"]
    fig, axes = plt.subplots(1, len(criteria), figsize=(4.2 * len(criteria), 4.6), squeeze=False)
    for ax, c in zip(axes[0], criteria):
        counts = per_crit[c["key"]]
        vals = [counts["a"], counts["tie"], counts["b"]]
        total = sum(vals)
        ax.set_title(f"{c['name']}\n(n = {total})", fontsize=13)
        if not total:
            ax.text(
                0.5,
                0.5,
                "no votes yet",
                ha="center",
                va="center",
                fontsize=12,
                transform=ax.transAxes,
            )
            ax.axis("off")
            continue
        ax.pie(
            vals,
            colors=colors,
            startangle=90,
            counterclock=False,
            autopct=lambda p: f"{p:.1f}%" if p > 0 else "",
            pctdistance=0.7,
            textprops={"fontsize": 12},
            wedgeprops={"linewidth": 1.5, "edgecolor": "white"},
        )
        ax.axis("equal")
    fig.legend(
        [plt.Rectangle((0, 0), 1, 1, color=col) for col in colors],
        [f"{model_a} wins", "Tie", f"{model_b} wins"],
        loc="lower center",
        ncol=3,
        fontsize=12,
        frameon=False,
    )
    fig.suptitle(title, fontsize=14)
    fig.tight_layout(rect=(0, 0.08, 1, 0.95))
    from gpt4llm.records import atomic_path

    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "model"


def export_study(config: ExportConfig) -> dict:
    from sqlalchemy import select

    from gpt4llm.evaluate.fastchat_io import fastchat_id
    from gpt4llm.evaluate.human.db import Annotator, Item, Pair, Vote
    from gpt4llm.provenance import write_manifest

    t0 = time.time()
    study, store = open_store(config.study, config.db_url)
    criteria, per_item = study["criteria"], study["per_item"]
    keys = [c["key"] for c in criteria]
    try:
        with store.read() as s:
            pairs = {p.id: p for p in s.scalars(select(Pair))}
            items = {i.id: i for i in s.scalars(select(Item))}
            names = {a.id: a.name for a in s.scalars(select(Annotator))}
            votes = list(s.scalars(select(Vote).order_by(Vote.pair_id, Vote.annotator_id)))
    finally:
        store.dispose()

    out = Path(config.output)
    out.mkdir(parents=True, exist_ok=True)
    raw = []
    human = []  # FastChat's MT-bench human-judgment rows, one per vote and criterion
    # per comparison, per criterion: pair id -> {annotator: a|tie|b}
    comps = [tuple(c) for c in study["comparisons"]]
    units: dict[tuple, dict[str, dict[int, dict[int, str]]]] = {
        c: {k: {} for k in keys} for c in comps
    }
    for v in votes:
        p = pairs[v.pair_id]
        shown = json.loads(v.choices)
        (left, _), (right, _) = p.shown()
        winners = {k: p.winner(shown[k]) for k in keys}
        for k in keys:
            units[(p.model_a, p.model_b)][k].setdefault(p.id, {})[v.annotator_id] = winners[k]
        raw.append(
            {
                "pair_id": p.id,
                "item_id": items[p.item_id].key,
                "annotator": names.get(v.annotator_id, str(v.annotator_id)),
                "model_a": p.model_a,
                "model_b": p.model_b,
                "left": left,
                "right": right,
                "shown_choices": {k: shown[k] for k in keys},
                "winner": {
                    k: p.model_a if w == "a" else p.model_b if w == "b" else "tie"
                    for k, w in winners.items()
                },
                "comment": v.comment,
                "version": v.version,
                "created_at": v.created_at.isoformat() + "Z",
                "updated_at": v.updated_at.isoformat() + "Z",
            }
        )
        qid = fastchat_id(items[p.item_id].key)  # FastChat's type: 81, not "81"
        judge = names.get(v.annotator_id, str(v.annotator_id))
        for k in keys:
            winner = {"a": "model_a", "b": "model_b", "tie": "tie"}[winners[k]]
            human.append(
                {
                    "question_id": qid,
                    "model_a": p.model_a,
                    "model_b": p.model_b,
                    "winner": winner,
                    "judge": judge,
                    "turn": 1,
                    "criterion": k,
                }
            )
    write_jsonl(out / "votes.jsonl", raw)
    write_jsonl(out / HUMAN_JUDGMENTS, human)

    comparisons = []
    per_model: dict[str, dict[str, dict[str, int]]] = {
        m: {k: {"win": 0, "tie": 0, "loss": 0} for k in keys} for m in study["models"]
    }
    charts = []
    for a, b in comps:
        n_pairs = sum(1 for p in pairs.values() if (p.model_a, p.model_b) == (a, b))
        entry: dict[str, Any] = {"model_a": a, "model_b": b, "pairs": n_pairs, "criteria": {}}
        pie_counts = {}
        for k in keys:
            u = units[(a, b)][k]
            allv = [w for votes_ in u.values() for w in votes_.values()]
            counts = {"a": allv.count("a"), "tie": allv.count("tie"), "b": allv.count("b")}
            maj_list = [_majority(list(v.values())) for v in u.values()]
            maj = {x: maj_list.count(x) for x in ("a", "tie", "b", "none")}
            entry["criteria"][k] = {
                "votes": {a: counts["a"], "tie": counts["tie"], b: counts["b"]},
                "votes_percent": {
                    a: _pct(counts)["a"],
                    "tie": _pct(counts)["tie"],
                    b: _pct(counts)["b"],
                },
                "pairs_voted": len(u),
                "majority": {
                    a: maj["a"],
                    "tie": maj["tie"],
                    b: maj["b"],
                    "no_majority": maj["none"],
                },
                "agreement": agreement(u, per_item),
            }
            per_model[a][k]["win"] += counts["a"]
            per_model[a][k]["loss"] += counts["b"]
            per_model[a][k]["tie"] += counts["tie"]
            per_model[b][k]["win"] += counts["b"]
            per_model[b][k]["loss"] += counts["a"]
            per_model[b][k]["tie"] += counts["tie"]
            pie_counts[k] = (
                counts
                if config.pie_basis == "votes"
                else {"a": maj["a"], "tie": maj["tie"], "b": maj["b"]}
            )
        chart = out / f"pie_{_safe_name(a)}_vs_{_safe_name(b)}.png"
        basis = "all votes" if config.pie_basis == "votes" else "majority per pair"
        draw_pies(chart, a, b, criteria, pie_counts, f"{a} vs {b} ({basis})")
        entry["chart"] = chart.name
        charts.append(chart)
        comparisons.append(entry)

    per_pair = Counter(v.pair_id for v in votes)
    overall_agreement = {}
    for k in keys:
        merged: dict[int, dict[int, str]] = {}
        for c in comps:
            merged.update(units[c][k])
        overall_agreement[k] = agreement(merged, per_item)

    summary = {
        "study_id": study["study_id"],
        "title": study.get("title"),
        "criteria": keys,
        "per_item": per_item,
        "pairs": len(pairs),
        "votes": len(votes),
        "annotators_voting": len({v.annotator_id for v in votes}),
        "pairs_complete": sum(1 for pid in pairs if per_pair[pid] >= per_item),
        "comparisons": comparisons,
        "models": per_model,
        "agreement": overall_agreement,
        "human_judgments": len(human),
    }
    write_json(out / "summary.json", summary)
    write_manifest(
        out,
        "annotate export",
        config,
        inputs=[study_file(config.study)],
        summary={
            k: summary[k]
            for k in ("study_id", "pairs", "votes", "annotators_voting", "pairs_complete")
        },
        started=t0,
    )
    summary["charts"] = [str(c) for c in charts]
    return summary
