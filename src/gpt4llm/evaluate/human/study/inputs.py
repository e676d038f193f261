"""What a study is built from: the criteria, and the models' answers to the same instructions.

Inputs, per source `NAME=FILE` (two or more, over the same instructions), lined up by the
package's one join rule (`gpt4llm.join`, `--join auto|id|text|position`); every model must
answer every instruction, and joined by id or position the instruction texts must agree. Any
answers file `gpt4llm.answers.read_answers` reads (the one reader of eval judge and compare):
- our response records `{id, instruction, input, output, model}` or Alpaca records
  `{instruction, input, output}`;
- FastChat answers `{question_id, choices: [{turns}]}` (one turn), joined on id with
  `--instructions FILE`;
- prediction files `{prompt, completion}` (self-instruct's User-Oriented format also has
  `response`, `instruction`, `input`): joined by position with `--instructions FILE` (the
  User-Oriented `{id, instruction, instances:[{input}]}` file or Alpaca records), each
  prediction checked against its instruction.
Or `--from-judge DIR`: a pairwise `eval judge` output directory (its manifest holds the
judge's config, judgments.jsonl the judged ids and model names); the judge's own loader reads
its inputs, so the humans judge exactly what the LLM judge judged, under the same question ids.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from gpt4llm.errors import DataError, UserError
from gpt4llm.records import (
    file_sha256,
    first_instance,
    load_instructions,
    read_json_records,
)

DEFAULT_CRITERIA = "hhh_criteria.yaml"


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
) -> tuple[str, list[dict[str, str]], bool]:
    """(format, [{id, instruction, input, output}], whether the ids are the file's own) for one
    source file, in any format `gpt4llm.answers.read_answers` reads: answers without their
    instruction (FastChat's) are joined on id, predictions by position, with --instructions."""
    from gpt4llm.answers import read_answers

    got = read_answers(path)
    path = got.path
    two_turn = next((i for i, a in enumerate(got.answers) if len(a["turns"]) > 1), None)
    if two_turn is not None:
        raise DataError(
            path,
            "a two-turn answer: a study shows one answer per instruction",
            line=got.lines[two_turn],
            field="turns",
        )
    if "predictions" in got.formats:
        return "predictions", _predictions(got, instructions, instructions_path), True
    if any(a["instruction"] is None for a in got.answers):
        fmt = "/".join(sorted(got.formats))
        return fmt, _joined_on_id(got, instructions, instructions_path), True
    fmt = "responses" if got.answers[0].get("model") else "alpaca"
    return fmt, [_record(a, a) for a in got.answers], got.own_ids


def _record(answer: dict[str, Any], instruction: dict[str, Any]) -> dict[str, str]:
    return {
        "id": instruction["id"],
        "instruction": instruction["instruction"],
        "input": instruction["input"] or "",
        "output": answer["turns"][0].strip(),
    }


def _need_instructions(path: Path, what: str, instructions: list | None) -> list:
    if instructions is None:
        raise UserError(f"{path}: {what}: pass --instructions FILE")
    return instructions


def _joined_on_id(
    got: Any, instructions: list[dict[str, str]] | None, instructions_path: Path | None
) -> list[dict[str, str]]:
    """Answers that hold no instruction (FastChat's), each joined on its id with the
    instruction file's record of that id."""
    what = "answers without their instructions (FastChat's) are joined on id with a question file"
    by_id = {i["id"]: i for i in _need_instructions(got.path, what, instructions)}
    out = []
    for a, lineno in zip(got.answers, got.lines, strict=True):
        ins = by_id.get(a["id"])
        if ins is None:
            raise DataError(
                got.path, f"no instruction with id {a['id']!r} in {instructions_path}", line=lineno
            )
        out.append(_record(a, ins))
    return out


def _predictions(
    got: Any, instructions: list[dict[str, str]] | None, instructions_path: Path | None
) -> list[dict[str, str]]:
    """{prompt, completion|response} records joined by position with the instruction file,
    each checked against its instruction (its own `instruction`, else the prompt must hold it)."""
    path = got.path
    what = (
        "prediction records ({prompt, completion}) are joined by position with an instruction file"
    )
    instructions = _need_instructions(path, what, instructions)
    if len(got.answers) != len(instructions):
        raise DataError(
            path,
            f"has {len(got.answers)} predictions but {instructions_path} has {len(instructions)}"
            " instructions (joined by position)",
        )
    out = []
    for a, lineno, ins in zip(got.answers, got.lines, instructions, strict=True):
        if a["instruction"] is not None:
            ok = _norm(a["instruction"]) == _norm(ins["instruction"])
        else:
            ok = _norm(ins["instruction"]) in _norm(a["prompt"])
        if not ok:
            raise DataError(
                path,
                f"does not match instruction {ins['id']!r} of {instructions_path} at the same"
                " position",
                line=lineno,
                field="prompt",
            )
        out.append(_record(a, ins))
    return out


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


# --- an `eval judge` run ---------------------------------------------------------------------


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
    from gpt4llm.evaluate import judge as judge_stage

    d = Path(judge_dir)
    mf, jf = d / "manifest.json", d / "judgments.jsonl"
    if not mf.is_file() or not jf.is_file():
        raise UserError(
            f"{d}: not an `eval judge` output directory (needs manifest.json and judgments.jsonl)"
        )
    manifest = _judge_manifest(d, mf)
    ids, (model_a, model_b) = _judged(jf)
    judge_config, inputs = _judge_config(d, mf, manifest)
    # The judge's own loading (join rule, --limit, turns), not a second copy of it.
    questions, models, _ = judge_stage.load_inputs(judge_config)
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
    sources = {  # one entry if both models have one name, as `paths`
        m: {"path": str(p), "format": f"eval judge {k}", "sha256": file_sha256(p)}
        for (m, p), k in zip(paths.items(), ("answers_a", "answers_b"), strict=False)
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


def _judge_manifest(d: Path, mf: Path) -> dict[str, Any]:
    """The judge run's manifest, once it is known to be a pairwise `eval judge` run's."""
    from gpt4llm.evaluate import judge as judge_stage

    try:
        manifest = json.loads(mf.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(mf, f"malformed JSON: {e.msg}", line=e.lineno) from None
    cfg = manifest.get("config") if isinstance(manifest, dict) else None
    if not isinstance(cfg, dict) or manifest.get("stage") != judge_stage.STAGE:
        raise DataError(mf, f"not the manifest of an `{judge_stage.STAGE}` run")
    if cfg.get("mode", "pair") != "pair" or not cfg.get("answers_b"):
        raise UserError(f"{d}: a study compares two models: use a pairwise judge run (--mode pair)")
    return manifest


def _judged(jf: Path) -> tuple[list[str], tuple[str, str]]:
    """(the judged question ids in judgment order, (model_a, model_b)) from judgments.jsonl,
    which must judge one pair of models."""
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
    return ids, names.pop()


def _judge_config(d: Path, mf: Path, manifest: dict[str, Any]) -> tuple[Any, list[Path]]:
    """(the judge's config rebuilt here, the input files it read: found again, unchanged)."""
    from pydantic import ValidationError

    from gpt4llm.evaluate import judge as judge_stage

    cfg = manifest["config"]
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
    return judge_config, inputs
