"""`annotate init` (and the `annotate_init` pipeline stage): a study from model answers.

The answers are read by `inputs` (from --source files or an `eval judge` run); the pairs are
every item under every comparison (all pairs of models, or each against --reference), left/right
randomised per pair and served in a seeded random order; the database and study.json are written
by `store`'s rules, and the admin token is shown once (stored hashed).
"""

from __future__ import annotations

import itertools
import json
import random
import secrets
import time
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import Field

from gpt4llm.config import INPUT, MAX_COUNT, MAX_SEED, OUTPUT_DIR, RECORDS, ReadOptions
from gpt4llm.errors import UserError
from gpt4llm.evaluate.human.study.inputs import (
    join_sources,
    load_answers,
    load_criteria,
    load_instruction_set,
    load_judge_run,
)
from gpt4llm.evaluate.human.study.store import (
    DB_FILE,
    SECRET_FILE,
    STUDY_FILE,
    STUDY_FORMAT,
    private_files,
    session_secret,
)
from gpt4llm.join import JOIN_HELP, JoinOn
from gpt4llm.records import file_sha256, write_json


class InitConfig(ReadOptions):
    output: Path = Field(Path("study"), json_schema_extra=OUTPUT_DIR)
    """Study directory to create (study.json, and study.db unless --db-url)."""
    source: dict[str, Path] = Field(default_factory=dict, json_schema_extra=RECORDS)
    """NAME=FILE, repeated (two or more): each model's answers: response records, Alpaca records, or
    {prompt, completion} predictions (with --instructions)."""
    from_judge: Path | None = Field(None, json_schema_extra=INPUT)
    """Instead of --source: an `eval judge` output directory; its two answer files and judged
    questions become the study, so human votes can be compared with the judge's (question ids
    kept).
    """
    instructions: Path | None = Field(None, json_schema_extra=RECORDS)
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
    per_item: int = Field(3, ge=1, le=1000)
    """Annotators per pair."""
    seed: int = Field(0, ge=0, le=MAX_SEED)
    """Seed for the left/right order of each pair, the serving order and --limit sampling."""
    limit: int | None = Field(None, ge=1, le=MAX_COUNT)
    """Use a random sample of this many instructions (seeded)."""
    criteria: Path | None = Field(None, json_schema_extra=INPUT)
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


def _load_sources(config: InitConfig) -> dict[str, Any]:
    """Items and models from --source files (see the module docstring)."""
    for name in config.source:
        if not name or len(name) > 255:
            raise UserError(f"--source: bad model name {name!r}")
    instructions = load_instruction_set(config.instructions) if config.instructions else None
    loaded: dict[str, tuple[Path, list[dict[str, str]], bool]] = {}
    formats = {}
    for name, path in config.source.items():
        # predictions and FastChat answers carry the instruction file's ids; others their own
        fmt, recs, own_ids = load_answers(path, instructions, config.instructions)
        loaded[name] = (Path(path), recs, own_ids)
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


@private_files()
def init_study(config: InitConfig) -> dict:
    """Create the study: check → load → plan the pairs → write the database → write study.json
    and the manifest. Returns a summary with the one-time `admin_token` (not stored in clear)."""
    from gpt4llm.provenance import write_manifest

    t0 = time.time()
    _check_options(config)
    criteria = load_criteria(config.criteria)
    out = Path(config.output)
    sf = out / STUDY_FILE
    if sf.exists() and not config.force:
        raise UserError(f"{sf} exists: choose another --output or pass --force to replace it")
    loaded = _load_checked(config, out, sf)
    plan = _plan_pairs(config, loaded["items"], loaded["models"])
    study_id = secrets.token_hex(6)
    url, schema = _database_url(config, out, study_id)
    admin_token = _write_database(url, schema, study_id, config, criteria, plan)
    out.mkdir(parents=True, exist_ok=True)
    session_secret(out)  # the signing key, 0600, beside the database (unless given by env)
    write_json(sf, _study_json(config, study_id, schema, loaded, criteria, plan))
    n_pairs = len(plan.ranks)
    summary = {
        "study_id": study_id,
        "models": loaded["models"],
        "comparisons": len(plan.comparisons),
        "items": len(plan.items),
        "pairs": n_pairs,
        "per_item": config.per_item,
        "votes_needed": n_pairs * config.per_item,
        "criteria": [c["key"] for c in criteria],
    }
    write_manifest(
        out, "annotate init", config, inputs=loaded["inputs"], summary=summary, started=t0
    )
    return {**summary, "study": str(sf), "admin_token": admin_token}


def _check_options(config: InitConfig) -> None:
    """The options that contradict each other, before anything is read."""
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


def _load_checked(config: InitConfig, out: Path, sf: Path) -> dict[str, Any]:
    """The items and models (from the judge run or the sources), once the study's own files
    are known not to clobber what it is made from."""
    from gpt4llm.outputs import check_outputs

    loaded = (
        load_judge_run(config.from_judge)
        if config.from_judge is not None
        else _load_sources(config)
    )
    check_outputs(  # the study directory must not clobber what it was made from
        inputs=[*loaded["inputs"], *([config.criteria] if config.criteria else [])],
        directories=[out],
        files=[sf, out / DB_FILE, out / SECRET_FILE],
        companions=False,
    )
    if not loaded["items"]:
        raise UserError("the sources have no instructions in common")
    models = loaded["models"]
    if config.reference is not None and config.reference not in models:
        raise UserError(
            f"--reference {config.reference!r} is not one of the models ({', '.join(models)})"
        )
    return loaded


class PairPlan(NamedTuple):
    """What the study shows: the items (sampled with --limit), the comparisons, and per pair
    (item-major, comparison-minor) its serving rank and whether its answers are swapped."""

    items: list[dict[str, Any]]
    comparisons: list[tuple[str, str]]
    ranks: list[int]
    swaps: list[bool]


def _plan_pairs(config: InitConfig, items: list[dict[str, Any]], models: list[str]) -> PairPlan:
    """Every item under every comparison, drawn from one random.Random(seed) in this order:
    the --limit sample, the serving order, the left/right swaps."""
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
    return PairPlan(items, comparisons, ranks, swaps)


def _database_url(config: InitConfig, out: Path, study_id: str) -> tuple[str, str | None]:
    """(URL, PostgreSQL schema or None): --db-url, else study.db in the study directory (with
    --force, an earlier study's database and signing key are removed first)."""
    schema = None
    if config.db_url:
        url = config.db_url
        if not url.startswith("sqlite"):
            schema = f"gpt4llm_{study_id}"
        return url, schema
    out.mkdir(parents=True, exist_ok=True)
    db_path = out / DB_FILE
    if config.force:
        for suffix in ("", "-wal", "-shm"):
            Path(str(db_path) + suffix).unlink(missing_ok=True)
        (out / SECRET_FILE).unlink(missing_ok=True)  # a new study: a new signing key
    return f"sqlite:///{db_path}", schema


def _write_database(
    url: str,
    schema: str | None,
    study_id: str,
    config: InitConfig,
    criteria: list[dict[str, str]],
    plan: PairPlan,
) -> str:
    """Create the tables and write the settings, items and pairs in one transaction; returns
    the admin token (only its hash is stored)."""
    from gpt4llm.evaluate.human.db import Store, hash_token, redact_url
    from gpt4llm.evaluate.human.tables import SCHEMA_VERSION, Meta

    try:
        store = Store(url, schema=schema, create=True)
        store.create()
    except UserError:  # not a study database, or locked: refused before anything was written
        raise
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
            _add_items_and_pairs(s, plan)
    finally:
        store.dispose()
    return admin_token


def _add_items_and_pairs(s: Any, plan: PairPlan) -> None:
    from gpt4llm.evaluate.human.tables import Item, Pair

    k = 0
    for n, it in enumerate(plan.items, start=1):
        s.add(Item(id=n, key=it["id"], instruction=it["instruction"], input=it["input"]))
        for a, b in plan.comparisons:
            s.add(
                Pair(
                    item_id=n,
                    model_a=a,
                    model_b=b,
                    output_a=it["outputs"][a],
                    output_b=it["outputs"][b],
                    swapped=plan.swaps[k],
                    rank=plan.ranks[k],
                    n_assigned=0,
                )
            )
            k += 1


def _study_json(
    config: InitConfig,
    study_id: str,
    schema: str | None,
    loaded: dict[str, Any],
    criteria: list[dict[str, str]],
    plan: PairPlan,
) -> dict[str, Any]:
    """study.json: what was compared, how, with which criteria (human readable)."""
    from gpt4llm.evaluate.human.db import redact_url
    from gpt4llm.evaluate.human.tables import SCHEMA_VERSION

    study = {
        "format": STUDY_FORMAT,
        "version": SCHEMA_VERSION,
        "study_id": study_id,
        "title": config.title,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "db_url": redact_url(config.db_url) if config.db_url else None,
        "schema": schema,
        "models": loaded["models"],
        "comparisons": [list(c) for c in plan.comparisons],
        "reference": config.reference,
        "per_item": config.per_item,
        "seed": config.seed,
        "left_right": (
            "randomised per pair with random.Random(seed); see pairs.swapped in the database"
        ),
        "criteria": criteria,
        "n_items": len(plan.items),
        "n_pairs": len(plan.ranks),
        "sources": loaded["sources"],
        "instructions": str(config.instructions) if config.instructions else None,
        "server": {"host": config.host, "port": config.port},
    }
    if loaded["judge"]:
        study["from_judge"] = loaded["judge"]
    return study


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
