"""The bad-input matrix (issue 26 §3), generated from the stage table and each stage's config.

For every command in `gpt4llm.stages.STAGES` (and `pipeline`), starting from one valid
invocation of it (`BASES`; a test fails when a command has none), one case changes one thing:

* every option, by its type in the Config (nested model options such as `--teacher-timeout`
  included; a model's connection options in full in the first command that has them): numbers
  nan, -1, 0, 1e300; strings empty, NUL, not UTF-8 (surrogateescape, as Python hands such an
  argument over); paths missing, a directory, a read-only file, a name that is not UTF-8, the
  command's own input, the request cache, another output; NAME=FILE options an empty, NUL or
  non-UTF-8 name and a name given twice;
* every input file the valid invocation reads: empty, a malformed line, each field of the first
  record of the wrong type or missing, a byte that is not UTF-8, a 20 MB line;
* the pipeline YAML (empty, malformed, not UTF-8, huge, a wrong type, a missing key) and its
  valid run: audit, then analyze on audit's output with analyze's default verb cache existing
  (the pre-flight once refused both); a number of each stage's settings nan inside a pipeline.

Each case must end in exit 0 with its outputs there (JSONL outputs parse), or in exactly one
`error:` line on stderr with exit 2 (1 where the run legitimately fails), never a traceback,
and with every file that existed before byte-identical. nan and 1e300 must be refused (exit 2):
every number has finite bounds.

Which class of case lives where: that every number of every stage (nested models, list items)
has a minimum and a maximum, and refuses nan, inf, -inf and 1e300 in its schema is
tests/test_config_bounds.py, field by field, without the CLI; here one non-finite (nan) and one
huge value (1e300) per (command, option) prove the command line ends in that refusal, and -1 and
0 the minimums, where an accepted value runs the stage. Inside a pipeline, one number per stage
proves the pipeline refuses through the same schema. The pre-flight's rules (collisions between
stages, companions, symlinks, --from/--until) are tests/test_pipeline_preflight.py; the shipped
configs passing it is tests/test_configs_shipped.py.

No model is loaded: model-calling commands talk to the loopback fake OpenAI server, and the
first step that would load weights (transformers' `from_pretrained`, the embedded model, a
trainer's `load_model`) is replaced by a stop: a case that gets there has passed every check
(its outputs untouched so far) and stops there instead of running for minutes -- the cases
that would legitimately train or score with a real model are cut there, counted in `REACHED`.

Speed: cases run in-process through `cli.main` with the click command tree built once (typer
rebuilds it from every signature on each call: half a case's time), in a fresh copy of one
prepared directory per module (the model directories only for the commands that name them),
with one SSL context for every client. 1,761 cases (the first test prints the count); a 1-in-8
sample (239 cases) took 38 s on 2 busy cores, ~17 s of it the one-time setup: about 3 min for
all (before: 2,234 cases, ~10 min). Measured again with 2,562 cases over 22 commands: 75 s for
the file (~0.03 s a case; the costliest: analyze, which runs its plots, ~0.14 s a case, and the
pipeline's 20 MB YAML, 7.7 s alone), so the matrix is no longer the suite's big item.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal

import pytest

from gpt4llm.config import LLMConfig, _flatten, _unwrap_optional
from gpt4llm.stages import STAGES

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

# nan stands for every non-finite value and 1e300 for every value above a maximum: both are the
# schema's refusal, which tests/test_config_bounds.py proves for inf, -inf and each number of
# every stage; -1 and 0 sit at the minimums, where an accepted value runs the stage.
NUMBERS = ("nan", "-1", "0", "1e300")
REFUSED = ("nan", "1e300")  # every number has finite bounds
STRINGS = ("", "\x00", "bad-\udcff")
INPUT_PATHS = ("missing", "directory", "read-only", "non-utf8", "the-cache")
OUTPUT_PATHS = (
    "missing-parent",
    "directory",
    "read-only",
    "non-utf8",
    "the-input",
    "the-cache",
    "another-output",
)
HUGE = 20_000_000  # bytes of the one huge line (a JSON string, not a record)
URL = "{url}"  # the fake server's base URL, filled in when a case runs

ROWS = [{"id": f"q{i}", "instruction": f"Name {i + 2} colors.", "input": ""} for i in range(3)]
FILES: dict[str, Any] = {
    "instr.jsonl": ROWS,
    "sft.jsonl": [
        {**r, "output": f"Red, green and blue are {i} colors."} for i, r in enumerate(ROWS)
    ],
    "a.jsonl": [{**r, "output": f"red and blue {i}", "model": "A"} for i, r in enumerate(ROWS)],
    "b.jsonl": [{**r, "output": f"green {i}", "model": "B"} for i, r in enumerate(ROWS)],
    "cmp.jsonl": [
        {
            "id": r["id"],
            "user_input": r["instruction"],
            "responses": [
                {"model": "A", "text": f"red and blue {i}", "score": 8},
                {"model": "B", "text": f"green {i}", "score": 5},
            ],
        }
        for i, r in enumerate(ROWS)
    ],
    "votes.jsonl": [
        {"question_id": i, "model_a": "A", "model_b": "B", "winner": w, "judge": "human"}
        for i, w in enumerate(["model_a", "model_b", "tie", "model_a"])
    ],
    "votes2.jsonl": [
        {"question_id": i, "model_a": "A", "model_b": "B", "winner": w, "judge": "gpt-4"}
        for i, w in enumerate(["model_a", "model_a", "tie", "model_b"])
    ],
    "seeds.jsonl": [
        {
            "id": f"seed_task_{i}",
            "name": f"task{i}",
            "instruction": text,
            "instances": [{"input": "", "output": "An answer."}],
            "is_classification": False,
        }
        for i, text in enumerate(
            [
                "Suggest a breakfast without eggs that has plenty of protein.",
                "Give the antonym of the given word.",
                "Explain why the sky looks blue during the day.",
            ]
        )
    ],
}

# One valid invocation of each command: option (as typed, without --) -> value; a list for an
# argument or a repeatable option. Paths are relative to the case's directory. Model options
# (`--teacher gpt-4 --teacher-base-url URL ...`) are added for every model a Config has.
BASES: dict[str, dict[str, Any]] = {
    "instruct": {
        "seeds": ["seeds.jsonl"],
        "output": "new.jsonl",
        "num-instructions": "2",
        "max-requests": "2",
        "request-batch-size": "1",
    },
    "generate": {"input": ["instr.jsonl"], "output": "out.jsonl"},
    "translate": {"input": ["instr.jsonl"], "output": "out.jsonl"},
    "evolve": {"input": ["instr.jsonl"], "output": "evol.jsonl", "rounds": "1"},
    "magpie": {
        "output": "magpie.jsonl",
        "model": "tiny",
        "model-backend": "local",
        "num-samples": "1",
        "max-tokens": "4",
    },
    "audit": {"data": ["sft.jsonl"], "output": "clean.jsonl"},
    "train sft": {"data": ["sft.jsonl"], "model": "tiny", "output": "runs/sft"},
    "train distill": {
        "data": ["sft.jsonl"],
        "model": "tiny",
        "teacher": "tiny",
        "output": "runs/distill",
    },
    "respond": {"input": ["instr.jsonl"], "output": "out.jsonl"},
    "compare": {"source": ["A=a.jsonl", "B=b.jsonl"], "output": "out.jsonl"},
    "score": {
        "input": ["cmp.jsonl"],
        "output": "out.jsonl",
        "select": "best",
        "select-by": "score",
    },
    "train reward": {"data": ["cmp.jsonl"], "model": "tiny", "output": "runs/reward"},
    "train dpo": {"data": ["cmp.jsonl"], "model": "tiny", "output": "runs/dpo"},
    "eval rouge": {"predictions": ["a.jsonl"], "references": ["sft.jsonl"], "output": "rouge"},
    "eval judge": {"answers-a": ["a.jsonl"], "answers-b": ["b.jsonl"], "output": "judge"},
    "eval leaderboard": {"answers": ["a.jsonl", "b.jsonl"], "output": "leaderboard"},
    "eval agreement": {"a": ["votes.jsonl"], "b": ["votes2.jsonl"], "output": "agreement"},
    "eval reward": {"data": ["cmp.jsonl"], "model": "tiny_rm", "output": "reward_eval.json"},
    "report": {"inputs": ["rouge0"], "output": "report"},
    "analyze": {"inputs": ["sft.jsonl"], "output": "analysis"},  # its default verb cache exists
    "annotate init": {"source": ["A=a.jsonl", "B=b.jsonl"], "output": "study"},
}
PIPELINE_BASE = {
    "stages": {
        "audit": {"data": "sft.jsonl", "output": "clean.jsonl"},
        "analyze": {"inputs": ["clean.jsonl"], "output": "analysis"},
    }
}


# ------------------------------------------------------------------------- the schema's view


def _model_fields(cls: Any) -> list[str]:
    """The Config's fields that are a model to call (LLMConfig or a subclass, such as the
    judge's), not optional: the matrix points them at its fake server."""
    return [
        n
        for n, info in cls.model_fields.items()
        if (tp := _unwrap_optional(info.annotation))[1] is False
        and isinstance(tp[0], type)
        and issubclass(tp[0], LLMConfig)
    ]


def _role(info: Any) -> str | None:
    extra = info.json_schema_extra
    if isinstance(extra, dict) and "role" in extra:
        return extra["role"]
    return None


def _kind(annotation: Any) -> str | None:
    """'number', 'string', 'path', 'choice', 'pairs' (NAME=VALUE) or None (a flag)."""
    base, _ = _unwrap_optional(annotation)
    origin = typing.get_origin(base)
    if origin in (typing.Union, types.UnionType):  # str | list[str]: several strings
        return "string"
    if origin is Literal:
        return "choice"
    if origin is dict:
        return "pairs"
    if origin in (list, tuple):
        return _kind(typing.get_args(base)[0]) if typing.get_args(base) else "string"
    return {int: "number", float: "number", str: "string", Path: "path"}.get(base)


def base_values(spec: Any) -> dict[str, Any]:
    values = {
        k: list(v) if isinstance(v, list) else v for k, v in BASES.get(spec.command, {}).items()
    }
    for name in _model_fields(spec.config_class()):
        opt = name.replace("_", "-")
        values.setdefault(opt, "gpt-4")
        values.setdefault(f"{opt}-base-url", URL)
        values.setdefault(f"{opt}-cache", "requests.sqlite")
        values.setdefault(f"{opt}-max-retries", "0")
    return values


def _file_of(value: str) -> str:
    return value.split("=", 1)[1] if "=" in value else value


# A model's connection options (LLMConfig: one class, one schema) run in full in the first
# command that has them; every command keeps the model's name, URL, timeout and cache.
PER_COMMAND_MODEL_OPTIONS = ("model", "base_url", "timeout", "cache")


def _first_with(spec: Any, path: tuple[str, ...]) -> bool:
    if path[-1] in PER_COMMAND_MODEL_OPTIONS:
        return True
    for other in STAGES:
        if any(len(p) > 1 and p[1:] == path[1:] for p, _, _ in _flatten(other.config_class())):
            return other.command == spec.command
    return True


def option_cases(spec: Any) -> list[tuple[str, str, str]]:
    """(option, kind of value, value name) for every option of the command."""
    cls = spec.config_class()
    base = base_values(spec)
    outputs = [cli for _, cli, info in _flatten(cls) if _role(info) == "output" and cli in base]
    cases = []
    for path, cli, info in _flatten(cls):
        if len(path) > 1 and not _first_with(spec, path):
            continue  # a model's connection option, already in the matrix for another command
        kind = _kind(info.annotation)
        role = _role(info)
        if kind == "number":
            cases += [(cli, kind, v) for v in NUMBERS]
        elif kind == "choice":
            cases.append((cli, kind, ""))
        elif kind == "pairs":
            cases += [(cli, kind, v) for v in ("empty-name", "nul-name", "non-utf8-name", "twice")]
        elif kind == "string" and role is None:
            cases += [(cli, kind, v) for v in STRINGS]
        if kind == "path" or role is not None:
            if kind == "string":  # a model name or a path: the strings too
                cases += [(cli, "string", v) for v in STRINGS]
            values = OUTPUT_PATHS if role == "output" else INPUT_PATHS
            if role == "cache":
                values = (*INPUT_PATHS, "the-input")
            for v in values:
                if v == "another-output" and not [o for o in outputs if o != cli]:
                    continue
                cases.append((cli, "path", v))
    return cases


def input_files(spec: Any) -> list[str]:
    """The files the valid invocation reads (as written in BASES)."""
    cls = spec.config_class()
    base = base_values(spec)
    out = []
    for _, cli, info in _flatten(cls):
        if _role(info) == "input" and cli in base:
            vals = base[cli] if isinstance(base[cli], list) else [base[cli]]
            out += [_file_of(v) for v in vals if _file_of(v) in FILES]
    return out


def file_cases(name: str) -> list[str]:
    rows = FILES[name]
    cases = ["empty", "malformed-line", "non-utf8", "huge"]
    for key in rows[0]:
        cases += [f"wrong-type:{key}", f"missing:{key}"]
    return cases


def all_cases() -> list[Any]:
    params = [pytest.param(s.command, ("valid",), id=f"{s.command}:valid") for s in STAGES]
    params.append(pytest.param("pipeline", ("yaml", "valid"), id="pipeline:valid"))
    for spec in STAGES:
        for opt, kind, value in option_cases(spec):
            cid = f"{spec.command}--{opt}={kind}:{ascii(value)[1:-1] or 'empty'}"
            params.append(pytest.param(spec.command, ("option", opt, kind, value), id=cid))
        for name in input_files(spec):
            for change in file_cases(name):
                cid = f"{spec.command}<{name}:{change}"
                params.append(pytest.param(spec.command, ("file", name, change), id=cid))
    for change in ("empty", "malformed-line", "non-utf8", "huge", "wrong-type", "missing"):
        params.append(pytest.param("pipeline", ("yaml", change), id=f"pipeline<yaml:{change}"))
    for spec in STAGES:  # a number in a pipeline's stage settings: the schema of the command,
        # field by field above; here one per stage proves the pipeline refuses through it
        numbers = [
            c for p, c, i in _flatten(spec.config_class()) if _kind(i.annotation) == "number"
        ]
        if numbers:
            cid = f"pipeline:{spec.key}.{numbers[0].replace('-', '_')}=nan"
            params.append(pytest.param("pipeline", ("stage", spec.key, numbers[0], "nan"), id=cid))
    return params


CASES = all_cases()


def test_every_command_has_a_valid_invocation():
    """A new command enters the matrix with one line in BASES (its valid invocation)."""
    assert sorted(BASES) == sorted(s.command for s in STAGES)
    print(f"bad-input matrix: {len(CASES)} cases over {len(STAGES)} commands and the pipeline")
    assert len(CASES) > 1000


# ------------------------------------------------------------------------------- running one


class _Reached(BaseException):  # a stop, not an error: cli.main does not catch it
    """The case got to loading a model (or training): every check before it passed."""


REACHED: list[str] = []


def _write_jsonl(path: Path, rows: list) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """The valid files every case starts from (copied for each case)."""
    from tiny_lm import make_tiny_lm, make_tiny_reward_model, tiny_tokenizer

    from gpt4llm.evaluate import rouge
    from gpt4llm.models import PROMPT_META_FILE
    from gpt4llm.reward_model import default_prompt_meta

    root = tmp_path_factory.mktemp("matrix") / "world"
    root.mkdir()
    for name, rows in FILES.items():
        _write_jsonl(root / name, rows)
    make_tiny_lm(root / "tiny")
    tok = tiny_tokenizer(padding_side="right")
    make_tiny_reward_model(root / "tiny_rm", tok)
    tok.save_pretrained(root / "tiny_rm")
    (root / "tiny_rm" / PROMPT_META_FILE).write_text(json.dumps(default_prompt_meta(128)))
    (root / "adir").mkdir()
    (root / "adir" / "keep.txt").write_text("keep")
    rouge.run(
        rouge.Config(
            predictions=root / "a.jsonl", references=root / "sft.jsonl", output=root / "rouge0"
        )
    )
    import yaml

    from gpt4llm.analyze.verbs import VerbCache

    VerbCache(root.parent / "verbs.sqlite").close()
    (root / "pipe.yaml").write_text(yaml.safe_dump(PIPELINE_BASE, sort_keys=False))
    return root


@pytest.fixture(scope="module")
def click_app() -> Any:
    """The CLI's click command tree, built once: typer rebuilds it from every command's
    signature on each call of `app()` (half of a case's time)."""
    import typer.main

    from gpt4llm import cli

    return typer.main.get_command(cli.app)


@pytest.fixture
def world(template, click_app, request, tmp_path, monkeypatch, fake_openai) -> Path:
    import transformers

    import gpt4llm.models
    import gpt4llm.train.dpo
    import gpt4llm.train.reward
    import gpt4llm.train.sft
    from gpt4llm import cli

    w = tmp_path / "w"
    command = request.node.callspec.params["command"]
    named = json.dumps(BASES.get(command, {}))  # the model directories only where named
    shutil.copytree(
        template,
        w,
        symlinks=True,
        ignore=lambda d, ns: [n for n in MODELS if f'"{n}"' not in named],
    )
    _reuse_one_ssl_context(monkeypatch)
    monkeypatch.setattr(cli, "app", click_app)  # the same command tree, built once
    monkeypatch.chdir(w)
    monkeypatch.setenv("GPT4LLM_REQUEST_CACHE", str(w / "requests.sqlite"))
    # analyze's default verb cache exists, as on any machine that ran analyze once (outside the
    # hashed directory: analyze legitimately writes it)
    monkeypatch.setenv("GPT4LLM_CACHE_DIR", str(tmp_path / "cachedir"))
    (tmp_path / "cachedir" / "analyze").mkdir(parents=True)
    shutil.copy(template.parent / "verbs.sqlite", tmp_path / "cachedir" / "analyze")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")

    def stop(what: str) -> Any:
        def reached(*a: Any, **k: Any) -> None:
            raise _Reached(what)

        return reached

    for auto in ("AutoModelForCausalLM", "AutoModelForSequenceClassification"):
        monkeypatch.setattr(getattr(transformers, auto), "from_pretrained", stop("model"))
    monkeypatch.setattr(gpt4llm.models, "ensure_embedded", stop("embedded model"))
    for trainer in (gpt4llm.train.sft, gpt4llm.train.reward, gpt4llm.train.dpo):
        monkeypatch.setattr(trainer, "load_model", stop("training"))
    return w


MODELS = ("tiny", "tiny_rm")  # the template's model directories (1.1 of its 1.2 MB)


def _reuse_one_ssl_context(monkeypatch) -> None:
    """Every OpenAI client loads the CA bundle into a new SSL context (~10 ms); the fake server
    speaks plain HTTP, so one context serves every case."""
    import functools
    import ssl

    if not hasattr(ssl, "_matrix_context"):
        ssl._matrix_context = functools.lru_cache(maxsize=None)(ssl.create_default_context)  # type: ignore[attr-defined]
    monkeypatch.setattr(ssl, "create_default_context", ssl._matrix_context)  # type: ignore[attr-defined]


def _hashes(root: Path) -> dict[str, str]:
    out = {}
    for d, _, names in os.walk(root):
        for n in names:
            p = Path(d) / n
            if p.is_file() and not p.is_symlink():
                out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _argv(spec: Any, values: dict[str, Any], url: str) -> list[str]:
    words = spec.command.split()
    args = [a.replace("_", "-") for a in spec.arguments]
    for a in args:
        words += values.get(a, [])
    for k, v in values.items():
        if k in args:
            continue
        for x in v if isinstance(v, list) else [v]:
            words += [f"--{k}", x.replace(URL, url)]
    return words


def _path_value(w: Path, spec: Any, values: dict[str, Any], opt: str, what: str) -> str:
    """The path a path case puts in `opt` (creating what it needs in the case's directory)."""
    # the main input; a command that reads none (magpie samples from a model) gets a data file
    main = _file_of(values[spec.arguments[0].replace("_", "-")][0]) if spec.arguments else None
    main = main or "instr.jsonl"
    if what == "missing":
        return "missing/none.jsonl"
    if what == "missing-parent":
        return "new/dir/out.jsonl"
    if what == "directory":
        return "adir"
    if what == "read-only":
        if (w / main).is_dir():
            shutil.copytree(w / main, w / "readonly")
            (w / "readonly").chmod(0o555)
            return "readonly"
        shutil.copy(w / main, w / "readonly.jsonl")
        (w / "readonly.jsonl").chmod(0o444)
        return "readonly.jsonl"
    if what == "non-utf8":
        name = "n\udcff.jsonl"
        if not values.get(opt) or opt not in {"output"}:
            if (w / main).is_file():
                shutil.copy(w / main, w / name)
            else:
                shutil.copytree(w / main, w / name)
        return name
    if what == "the-input":
        return main
    if what == "the-cache":
        (w / "requests.sqlite").write_bytes(b"")
        return "requests.sqlite"
    assert what == "another-output"
    return "out-other.jsonl" if opt == "output" else values["output"]


def _option_case(w: Path, spec: Any, values: dict[str, Any], opt: str, kind: str, v: str) -> None:
    many = isinstance(values.get(opt), list) or _is_list(spec, opt)
    if kind == "pairs":
        first = (values.get(opt) or ["A=a.jsonl"])[0]
        name, file = first.split("=", 1) if "=" in first else ("A", first)
        bad = {"empty-name": "", "nul-name": "\x00", "non-utf8-name": "bad-\udcff", "twice": name}
        new = f"{bad[v]}={file}"
        values[opt] = [new, *values.get(opt, [])[1:]] if v != "twice" else [first, new]
        return
    if kind == "path":
        v = _path_value(w, spec, values, opt, v)
    values[opt] = [v] if many else v


def _is_list(spec: Any, opt: str) -> bool:
    for _, cli, info in _flatten(spec.config_class()):
        if cli == opt:
            base, _ = _unwrap_optional(info.annotation)
            return typing.get_origin(base) in (list, tuple)
    return False


def _change_file(path: Path, change: str) -> None:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    if change == "empty":
        path.write_bytes(b"")
    elif change == "malformed-line":
        path.write_text(path.read_text() + '{"id": "broken", \n', encoding="utf-8")
    elif change == "non-utf8":
        path.write_bytes(path.read_bytes().replace(b"a", b"\xff", 1))
    elif change == "huge":
        path.write_text(path.read_text() + json.dumps("x" * HUGE) + "\n", encoding="utf-8")
    else:
        what, key = change.split(":", 1)
        if what == "missing":
            rows[0].pop(key)
        else:
            value = rows[0][key]
            rows[0][key] = "7" if not isinstance(value, str) else 7
        _write_jsonl(path, rows)


def _pipeline_case(w: Path, case: tuple) -> list[str]:
    import yaml

    pipe = w / "pipe.yaml"
    if case[0] == "stage":
        _, key, cli, v = case
        spec = next(s for s in STAGES if s.key == key)
        path = next(p for p, c, _ in _flatten(spec.config_class()) if c == cli)
        stage: dict[str, Any] = {"stage": key, "output": "p-out"}
        node = stage
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = float(v)
        pipe.write_text(yaml.safe_dump({"stages": {"one": stage}}))
    else:
        change = case[1]
        if change in ("wrong-type", "missing"):
            data = json.loads(json.dumps(PIPELINE_BASE))
            if change == "missing":
                data["stages"]["audit"].pop("data")
            else:
                data["stages"]["audit"]["data"] = [1, 2]
            pipe.write_text(yaml.safe_dump(data, sort_keys=False))
        elif change == "malformed-line":
            pipe.write_text(pipe.read_text() + "  broken: [unclosed\n")
        elif change == "huge":
            pipe.write_text(pipe.read_text() + "# " + "x" * HUGE + "\n")
        elif change == "empty":
            pipe.write_bytes(b"")
        elif change == "non-utf8":
            pipe.write_bytes(pipe.read_bytes().replace(b"a", b"\xff", 1))
    return ["pipeline", "pipe.yaml"]


def _run(argv: list[str], monkeypatch, capsys) -> tuple[int | str, str]:
    from gpt4llm.cli import main

    monkeypatch.setattr(sys, "argv", ["gpt4llm", *argv])
    code: int | str = 0
    try:
        main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except _Reached as e:
        code = f"reached {e}"
    return code, capsys.readouterr().err


def _outputs_there(spec: Any, values: dict[str, Any], w: Path) -> list[str]:
    """The outputs of the valid invocation a successful run must have left, where the case put
    them (JSONL ones must parse); an output option it does not give may belong to a mode it does
    not run (`--teacher-offline-dir`), and a run may rightly leave nothing there."""
    missing = []
    for _, cli, info in _flatten(spec.config_class()):
        if _role(info) == "output" and cli in base_values(spec):
            p = w / values[cli]
            if not p.exists():
                missing.append(str(p))
            elif cli == "output" and p.is_file() and p.suffix == ".jsonl":
                for line in p.read_text(encoding="utf-8").splitlines():
                    json.loads(line)
    return missing


@pytest.mark.parametrize(("command", "case"), CASES)
def test_bad_input(command, case, world, fake_openai, monkeypatch, capsys):
    w = world
    fake_openai.responder = _responder
    if command == "pipeline":
        spec, values = None, {}
        argv = _pipeline_case(w, case)
    else:
        spec = next(s for s in STAGES if s.command == command)
        values = base_values(spec)
        if case[0] == "option":
            _option_case(w, spec, values, *case[1:])
        elif case[0] == "file":
            _change_file(w / case[1], case[2])
        argv = _argv(spec, values, fake_openai.base_url)
    before = _hashes(w)
    if case[0] == "option" and case[2:] == ("path", "the-cache"):
        # the (empty) request cache named here is still the command's request cache: written
        # as a cache, but never as an output (it stays empty or a SQLite database)
        before.pop("requests.sqlite", None)
    code, err = _run(argv, monkeypatch, capsys)
    after = _hashes(w)
    cache = w / "requests.sqlite"
    if cache.is_file() and cache.stat().st_size:
        assert cache.read_bytes()[:16] == b"SQLite format 3\x00", "an output over the cache"
    changed = sorted(k for k, h in before.items() if after.get(k) != h)
    assert "Traceback" not in err, err
    assert not changed, f"pre-existing files changed: {changed} (exit {code}; {err[-500:]})"
    if isinstance(code, str):  # got to loading a model: every check passed
        REACHED.append(command)
    else:
        errors = [ln for ln in err.splitlines() if ln.lower().startswith("error:")]
        if code == 0:
            assert spec is None or not _outputs_there(spec, values, w), err
        else:
            assert code in (1, 2), err
            assert len(errors) == 1, err
    if case[0] == "valid" or case[-1] == "valid":
        assert code == 0 or isinstance(code, str), err
    value = case[-1] if case[0] in ("option", "stage") else None
    if value in REFUSED and (case[0] == "stage" or case[2] == "number"):
        assert code == 2, f"{value} accepted (exit {code}): {err[-300:]}"


def _responder(messages: list, body: dict) -> str:
    """One reply every stage can read: new tasks (instruct), a rater's / judge's score, an
    answer or a translation."""
    k = int(body.get("seed") or 0)
    tasks = [
        f"Describe the {w} of lake number {k} and {j} in plain words."
        for j, w in enumerate(["colour", "depth", "history"])
    ]
    text = f" {tasks[0]}\n4. Input:\n<noinput>\n4. Output:\nSome text.\n"
    for n, t in enumerate(tasks[1:], 5):
        text += f"###\n{n}. Instruction: {t}\n{n}. Input:\n<noinput>\n{n}. Output:\nText.\n"
    prompt = json.dumps(messages)
    if "Instruction:" in prompt and "###" in prompt:
        return text
    if "Assistant A" in prompt or "Assistant 1" in prompt:  # a judge: two scores
        return "8 7\nBoth answer; the first is better."
    return "Score: 8\nA fine answer: 一个好答案。"
