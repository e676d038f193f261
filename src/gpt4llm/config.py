"""Typed configs for every stage, and the one place that turns a config class into a CLI command.

Each stage module defines a pydantic `Config` (fields with defaults that work and a
`description` that becomes `--help`) and a `run(config) -> dict` summary. `config_command`
builds the Typer command from the same class, so the function, its config and `--help` come
from one source (litgpt's habit). Nested configs (`teacher: LLMConfig`) become prefixed options:
`--teacher MODEL`, `--teacher-base-url URL`, `--teacher-concurrency N`. Every command also
takes `--config FILE.yaml`; options given on the command line override the file.
"""

from __future__ import annotations

import inspect
import types
import typing
from pathlib import Path
from typing import Any, Callable, Literal

import typer
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import PydanticUndefined

from gpt4llm.errors import UserError


class StageConfig(BaseModel):
    """Base of every stage config: unknown keys are an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class LLMConfig(StageConfig):
    """How to reach a model: an OpenAI-compatible endpoint or a local transformers model."""

    model: str = Field("embedded", description="Model name: 'embedded' (Gemma-3-270M on CPU), a local HF path, or the endpoint's model name (gpt-4, ...).")
    backend: Literal["auto", "openai", "local"] = Field("auto", description="'openai' (any OpenAI-compatible endpoint), 'local' (transformers), or 'auto': local for 'embedded' and existing paths, else openai.")
    base_url: str | None = Field(None, description="Endpoint base URL, e.g. http://127.0.0.1:8000/v1 for vLLM / llama.cpp / Ollama. Default: OpenAI.")
    api_key_env: str = Field("OPENAI_API_KEY", description="Name of the environment variable holding the API key (the key itself is never written anywhere).")
    concurrency: int = Field(8, ge=1, description="Requests in flight at once.")
    rpm: float | None = Field(None, gt=0, description="Requests-per-minute limit.")
    tpm: float | None = Field(None, gt=0, description="Tokens-per-minute limit (prompt estimate + max_tokens).")
    timeout: float = Field(120.0, gt=0, description="Per-request timeout in seconds.")
    max_retries: int = Field(6, ge=0, description="Retries on 429/5xx/timeouts/empty replies, with exponential backoff and jitter (honours Retry-After).")
    batch_size: int = Field(8, ge=1, description="Local backend: prompts per batched generate call.")
    dtype: Literal["auto", "float32", "bfloat16"] = Field("auto", description="Local backend: 'auto' runs fp32 weights with bf16 autocast where the CPU/GPU supports it.")
    price_prompt: float | None = Field(None, ge=0, description="USD per 1M prompt tokens (overrides the built-in price table).")
    price_completion: float | None = Field(None, ge=0, description="USD per 1M completion tokens (overrides the built-in price table).")
    cache: Path | None = Field(None, description="SQLite request cache (default: the user cache dir). Makes runs resumable.")
    no_cache: bool = Field(False, description="Do not read or write the request cache.")


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _is_model(tp: Any) -> bool:
    return inspect.isclass(tp) and issubclass(tp, BaseModel)


def _option_type(tp: Any) -> tuple[Any, dict]:
    """Map a pydantic field type to (python type for Typer, extra typer.Option kwargs)."""
    base, _ = _unwrap_optional(tp)
    origin = typing.get_origin(base)
    if origin is Literal:
        return base, {}
    if origin in (list, tuple):
        inner = typing.get_args(base)[0] if typing.get_args(base) else str
        inner, _ = _unwrap_optional(inner)
        return list[inner if inner in (str, int, float, Path) else str], {}
    if origin is dict:
        return list[str], {"metavar": "KEY=VALUE"}
    if base in (str, int, float, bool, Path):
        return base, {}
    return str, {}


def _flatten(cls: type[BaseModel], prefix: str = "") -> list[tuple[tuple[str, ...], str, Any]]:
    """(path in config, cli name, FieldInfo) for every leaf field; nested models flattened."""
    out = []
    for name, info in cls.model_fields.items():
        tp, _ = _unwrap_optional(info.annotation)
        if _is_model(tp):
            for path, cli, sub in _flatten(tp, prefix=""):
                dashed = name.replace("_", "-")  # nested `source_llm` -> --source-llm, --source-llm-base-url
                cli_name = dashed if path == ("model",) else f"{dashed}-{cli}"
                out.append(((name, *path), (prefix + cli_name), sub))
        else:
            out.append(((name,), prefix + name.replace("_", "-"), info))
    return out


def _set_path(d: dict, path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        d = d.setdefault(key, {})
    d[path[-1]] = value


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise UserError(f"{path}{where}: malformed YAML: {problem}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping at the top level")
    return data


def build_config(cls: type[BaseModel], data: dict, source: str = "config") -> Any:
    """Validate `data` into `cls`, turning pydantic's report into one clear line."""
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        more = f" (and {len(e.errors()) - 1} more)" if len(e.errors()) > 1 else ""
        raise UserError(f"{source}: {loc}: {err['msg']}{more}") from None


def config_command(
    app: typer.Typer,
    name: str,
    cls: type[BaseModel],
    run: Callable[[Any], Any],
    help: str,
    arguments: tuple[str, ...] = (),
) -> None:
    """Register `name` on `app`: options from `cls`'s fields, then `run(cls(...))`.

    `arguments` names fields taken as positional arguments (list fields take several).
    """
    leaves = _flatten(cls)
    params = []
    by_param: dict[str, tuple[tuple[str, ...], Any]] = {}
    for path, cli_name, info in leaves:
        pname = cli_name.replace("-", "_")
        typ, extra = _option_type(info.annotation)
        by_param[pname] = (path, info)
        desc = info.description or ""
        if len(path) == 1 and path[0] in arguments:
            default = typer.Argument(None, help=desc, show_default=False)
        elif typ is bool:
            default = typer.Option(None, f"--{cli_name}/--no-{cli_name}", help=desc, show_default=str(info.default))
        else:
            shown = info.default if info.default is not PydanticUndefined and info.default not in (None, [], {}) and not callable(info.default) else None
            names = (f"--{cli_name}", "-o") if cli_name == "output" else (f"--{cli_name}",)  # -o: the Unix habit
            default = typer.Option(None, *names, help=desc, show_default=str(shown) if shown is not None else False, **extra)
        params.append(inspect.Parameter(pname, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=typing.Optional[typ]))
    params.append(
        inspect.Parameter(
            "config_file",
            inspect.Parameter.KEYWORD_ONLY,
            default=typer.Option(None, "--config", help="YAML file with this command's settings; command-line options override it."),
            annotation=typing.Optional[Path],
        )
    )

    def command(**kwargs: Any) -> Any:
        config_file = kwargs.pop("config_file", None)
        data = load_yaml(config_file) if config_file else {}
        for pname, value in kwargs.items():
            if value is None or value == [] or value == ():
                continue
            path, info = by_param[pname]
            base, _ = _unwrap_optional(info.annotation)
            if typing.get_origin(base) is dict:
                value = dict(_split_kv(v, pname) for v in value)
            _set_path(data, path, value)
        config = build_config(cls, data, source=str(config_file) if config_file else f"gpt4llm {name}")
        return run(config)

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__doc__ = help
    command.__name__ = name.replace("-", "_")
    app.command(name, help=help)(command)


def _split_kv(text: str, option: str) -> tuple[str, str]:
    if "=" not in text:
        raise UserError(f"--{option.replace('_', '-')}: expected KEY=VALUE, got {text!r}")
    k, v = text.split("=", 1)
    return k, v
