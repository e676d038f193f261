"""Typed configs for every stage, and the one place that turns a config class into a CLI command.

Each stage module defines a pydantic `Config` (fields with defaults that work and a
`description` that becomes `--help`) and a `run(config) -> dict` summary. `config_command`
builds the Typer command from the same class, so the function, its config and `--help` come
from one source (litgpt's habit). Nested configs (`teacher: LLMConfig`) become prefixed options:
`--teacher MODEL`, `--teacher-base-url URL`, `--teacher-concurrency N`. Every command also
takes `--config FILE.yaml`; options given on the command line override the file.
"""

from __future__ import annotations

import enum
import inspect
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticUndefined
from typer.core import TyperCommand

from gpt4llm.config_roles import (  # noqa: F401  (the path roles, re-exported from here)
    CACHE,
    INPUT,
    INPUT_OR_NAME,
    OUTPUT,
    OUTPUT_DIR,
    RECORDS,
    field_role,
    role,
)
from gpt4llm.config_text import not_utf8, refuse_empty_name
from gpt4llm.config_yaml import load_yaml, settings_yaml
from gpt4llm.errors import UserError
from gpt4llm.formats import READ_FIELDS

ADVANCED: dict[str, Any] = {"advanced": True}
"""`Field(..., json_schema_extra=ADVANCED)`: a rarely used knob, hidden from `--help` and shown
by `--help-all` (it still works as an option and a YAML key)."""


# Every number a stage takes is bounded in its config (finite, a sensible minimum and maximum),
# so the schema, not a code path, refuses nonsense; these are the ceilings many options share.
MAX_COUNT = 1_000_000_000
"""Items, requests, steps, samples."""
MAX_SEED = 2**32 - 1
"""Random seeds (numpy's range)."""
MAX_TOKENS = 1_048_576
"""Tokens of one reply or one sequence."""
MAX_SECONDS = 86_400.0
"""Timeouts and waits: one day."""
MAX_BATCH = 65_536
"""Items in one batch."""


class ConfigBase(BaseModel):
    """Base of every config, a stage's and a nested one's (`LLMConfig`): unknown keys are an
    error, not silently ignored; NaN and infinities are refused for every float."""

    # A field's description (its --help line) is the docstring under it, as litgpt writes them.
    model_config = ConfigDict(
        extra="forbid",
        protected_namespaces=(),
        use_attribute_docstrings=True,
        allow_inf_nan=False,
    )

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        for info in cls.model_fields.values():  # wrapped docstrings read as one line of help
            if info.description:
                info.description = " ".join(info.description.split())

    @field_validator("*", mode="after")
    @classmethod
    def _checked_text(cls, value: Any, info: ValidationInfo) -> Any:
        # Every text of every config, whatever the command (gpt4llm.config_text): valid UTF-8,
        # and a model or source name not empty.
        bad = not_utf8(value)
        if bad is not None:
            raise ValueError(f"{bad} is not valid UTF-8; rename the file or give the text as UTF-8")
        refuse_empty_name(info.field_name or "", value)
        return value

    @model_validator(mode="after")
    def _name_model_roles(self) -> Any:
        # A nested LLMConfig learns the option prefix it was given under (--rater-*, --judge-*),
        # so its errors speak of the options the user actually typed.
        for name in type(self).model_fields:
            value = getattr(self, name, None)
            if isinstance(value, LLMConfig):
                value._option_prefix = name.replace("_", "-")
        return self


Tracker = Literal["none", "trackio", "mlflow", "tensorboard", "wandb"]
TRACKING: dict[str, Any] = {"panel": "Tracking"}  # the tracking options' help panel


class StageConfig(ConfigBase):
    """Base of every stage config: a ConfigBase with the tracking options (gpt4llm.tracking),
    which the manifest's config hash leaves out: they never change what a stage computes."""

    report_to: list[Tracker] = Field(default_factory=list, max_length=5, json_schema_extra=TRACKING)
    """Report this run to an experiment tracker: trackio, mlflow, tensorboard, wandb (pip install
    'gpt4llm[track]'); trainers through transformers' own integrations. Default: none."""
    run_name: str | None = Field(None, max_length=256, json_schema_extra=TRACKING)
    """The run's name in the tracker (default: the command, or the pipeline's stage name)."""


class LLMConfig(ConfigBase):
    """How to reach a model: an OpenAI-compatible endpoint or a local transformers model."""

    _option_prefix: str = PrivateAttr("teacher")

    model: str = Field("embedded", json_schema_extra=INPUT_OR_NAME)
    """Model name: 'embedded' (Gemma-3-270M on CPU), a local HF path, or the endpoint's model name
    (gpt-4, ...)."""
    backend: Literal["auto", "openai", "local"] = Field("auto", json_schema_extra=ADVANCED)
    """'openai' (any OpenAI-compatible endpoint), 'local' (transformers), or 'auto': local for
    'embedded' and existing paths, else openai."""
    base_url: str | list[str] | None = None
    """Endpoint base URL, e.g. http://127.0.0.1:8000/v1 for vLLM / llama.cpp / Ollama. Default:
    OpenAI. Give several (repeat the option, or a YAML list) for replicas of one model: each
    request goes to the least busy one; a failing one rests while the others take its requests.
    """
    api_key_env: str = Field("OPENAI_API_KEY", json_schema_extra=ADVANCED)
    """Name of the environment variable holding the API key (the key itself is never written
    anywhere).
    """
    concurrency: int = Field(8, ge=1, le=4096)
    """Requests in flight at once."""
    rpm: float | None = Field(None, gt=0, le=1e7)
    """Requests-per-minute limit."""
    tpm: float | None = Field(None, gt=0, le=1e10)
    """Tokens-per-minute limit (prompt estimate + max_tokens)."""
    timeout: float = Field(120.0, gt=0, le=MAX_SECONDS)
    """Per-request timeout in seconds."""
    max_retries: int = Field(6, ge=0, le=100, json_schema_extra=ADVANCED)
    """Retries on 429/5xx/timeouts/empty replies, with exponential backoff and jitter (honours
    Retry-After)."""
    batch_size: int = Field(8, ge=1, le=MAX_BATCH)
    """Local backend: prompts per batched generate call."""
    dtype: Literal["auto", "float32", "bfloat16"] = Field("auto", json_schema_extra=ADVANCED)
    """Local backend: 'auto' runs fp32 weights with bf16 autocast where the CPU/GPU supports it."""
    ray_actors: int = Field(0, ge=0, le=4096, json_schema_extra=ADVANCED)
    """Local backend: 0 generates here; N runs the batches on N Ray actors, a model each (Ray
    Data, gpt4llm.llm.ray_executor; pip install 'gpt4llm[ray]'): the same outputs."""
    ray_address: str | None = Field(None, json_schema_extra=ADVANCED)
    """With --*-ray-actors: the Ray cluster to join (HOST:PORT); none starts a local one."""
    local_prompt: Literal["auto", "alpaca", "plain"] = Field("auto", json_schema_extra=ADVANCED)
    """Local backend: how chat messages become the prompt: 'auto' = the model's own chat template,
    else the Alpaca format; 'alpaca'; 'plain' = the messages' text joined as is (few-shot prompts
    a base model continues).
    """
    price_prompt: float | None = Field(None, ge=0, le=10_000.0, json_schema_extra=ADVANCED)
    """USD per 1M prompt tokens (overrides the built-in price table)."""
    price_completion: float | None = Field(None, ge=0, le=10_000.0, json_schema_extra=ADVANCED)
    """USD per 1M completion tokens (overrides the built-in price table)."""
    cache: Path | None = Field(None, json_schema_extra=CACHE)
    """SQLite request cache (default: the user cache dir). Makes runs resumable."""
    no_cache: bool = Field(False, json_schema_extra=ADVANCED)
    """Do not read or write the request cache."""
    # The provider's Batch API (gpt4llm.llm.batch): same request cache, half the price, slower.
    mode: Literal["online", "batch", "offline"] = "online"
    """'online': one call per request; 'batch': the provider's Batch API (OpenAI: half price,
    results within 24 h; resumable: a rerun picks up the submitted batches); 'offline': a local
    model's requests as batch files answered by `vllm run-batch`, here or on a scheduler's
    machines (gpt4llm.llm.offline; resumable: a rerun collects the finished shards).
    """
    fallback: Literal["none", "online"] = "none"
    """Batch mode: requests the batches could not finish (expired, cancelled, failed) after
    --*-batch-attempts: 'online' sends them one by one, 'none' reports them failed."""
    batch_attempts: int = Field(2, ge=1, le=100, json_schema_extra=ADVANCED)
    """Batch mode: batches a request may go through before the fallback."""
    batch_poll_seconds: float = Field(30.0, gt=0, le=MAX_SECONDS, json_schema_extra=ADVANCED)
    """Batch mode: seconds between status checks."""
    batch_max_wait_seconds: float = Field(300.0, gt=0, le=MAX_SECONDS, json_schema_extra=ADVANCED)
    """Batch mode: the longest the run keeps trying while calls to the Batch API fail (uploads,
    batch creation, status checks; the backoff between tries included) before it stops with an
    error saying what was submitted."""
    batch_max_requests: int = Field(50_000, ge=1, le=10_000_000, json_schema_extra=ADVANCED)
    """Batch mode: most requests per batch (OpenAI's limit: 50,000)."""
    batch_max_bytes: int = Field(200_000_000, ge=1, le=100_000_000_000, json_schema_extra=ADVANCED)
    """Batch mode: largest batch input file in bytes (OpenAI's limit: 200 MB)."""
    batch_price_factor: float | None = Field(None, gt=0, le=10.0, json_schema_extra=ADVANCED)
    """Batch mode: the batch price as a fraction of the online price (default: the price table's,
    0.5).
    """
    # Offline mode (gpt4llm.llm.offline): vLLM's batch runner over OpenAI batch files.
    offline_dir: Path | None = Field(None, json_schema_extra=ADVANCED | OUTPUT_DIR)
    """Offline mode: where the shards, their outputs and logs go (default: offline/<model hash>/
    beside the request cache)."""
    offline_shard_size: int = Field(1000, ge=1, le=10_000_000, json_schema_extra=ADVANCED)
    """Offline mode: requests per shard (one `vllm run-batch` each)."""
    offline_print_commands: bool = False
    """Offline mode: print one `vllm run-batch` command per shard still to run (for a Slurm array
    or any scheduler) and exit 75; rerun to collect their outputs."""
    offline_vllm: str | None = Field(None, json_schema_extra=ADVANCED)
    """Offline mode: the `vllm` command (default: beside $GPT4LLM_VLLM_PYTHON, else on PATH)."""
    offline_args: str = Field("", max_length=4096, json_schema_extra=ADVANCED)
    """Offline mode: more `vllm run-batch` options, e.g. '--dtype bfloat16 --max-model-len 4096'."""

    @field_validator("base_url", mode="before")
    @classmethod
    def _one_or_more_urls(cls, value: Any) -> Any:
        # One URL stays a plain string (configs, caches and code written for one endpoint).
        if isinstance(value, (list, tuple)):
            urls = [str(u).strip() for u in value if str(u).strip()]
            if len(set(urls)) < len(urls):
                raise ValueError("the same URL is given twice")
            return None if not urls else urls[0] if len(urls) == 1 else urls
        return value

    @property
    def base_urls(self) -> list[str]:
        """The endpoint URLs as a list: [] for OpenAI itself, several for a fleet of replicas."""
        if self.base_url is None:
            return []
        return [self.base_url] if isinstance(self.base_url, str) else list(self.base_url)

    def default_cache(self) -> Path | None:
        """The request cache used when `cache` is unset (None with `no_cache`)."""
        from gpt4llm.llm.runner import default_cache_path

        return None if self.no_cache else default_cache_path()

    @property
    def option_prefix(self) -> str:
        """`--teacher`, `--rater`, ...: how the user names this model's options."""
        return "--" + self._option_prefix


class ReadOptions(StageConfig):
    """Options of every stage that reads records or answers (its `RECORDS` inputs; a test holds
    every such stage to them): which columns of other people's data hold our fields, which split
    to read; for all its records inputs, through one mechanism (`gpt4llm.formats.reading`)."""

    field: dict[str, str] = Field(default_factory=dict)
    """Take our fields from the data's columns: `--field instruction=question,output=answer`
    (repeatable); a record without the column that has our field keeps its own. Ours: instruction,
    input, output, id, messages (a chat list: `--field messages=conversations`), model,
    user_input, completion_a/b, prompt, chosen, rejected, question_id, ... (formats.READ_FIELDS)."""
    split: str | None = Field(None, min_length=1, max_length=200, json_schema_extra=ADVANCED)
    """The split to read of a DatasetDict directory or an hf://datasets/ORG/NAME input."""

    @field_validator("field", mode="before")
    @classmethod
    def _comma_items(cls, value: Any) -> Any:
        # `instruction=question,output=answer` arrives as {"instruction": "question,output=..."}
        if not isinstance(value, dict):
            return value
        out: dict[str, Any] = {}
        for ours, theirs in value.items():
            items = [f"{ours}={theirs}"]
            if isinstance(theirs, str) and "," in theirs:
                items = items[0].split(",")
            for item in items:
                name, _, column = item.partition("=")
                name, column = name.strip(), column.strip()
                if name and name not in READ_FIELDS:  # an empty one: StageConfig's rule
                    raise ValueError(f"{name!r} is not one of {', '.join(READ_FIELDS)}")
                if not column:
                    raise ValueError(f"{name}=: expected a column name after '='")
                if name in out:
                    raise ValueError(f"the name {name!r} is given twice")
                out[name] = column
        return out


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
    if typing.get_origin(base) in (typing.Union, types.UnionType):  # `str | list[str]`: repeatable
        base = next((a for a in typing.get_args(base) if typing.get_origin(a) is list), base)
    origin = typing.get_origin(base)
    if origin is Literal:
        return base, {}
    if origin in (list, tuple):
        inner = typing.get_args(base)[0] if typing.get_args(base) else str
        inner, _ = _unwrap_optional(inner)
        if typing.get_origin(inner) is Annotated:  # list[Annotated[float, Field(ge=0)]]
            inner = typing.get_args(inner)[0]
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
                dashed = name.replace("_", "-")  # `source_llm` -> --source-llm-base-url
                cli_name = dashed if path == ("model",) else f"{dashed}-{cli}"
                out.append(((name, *path), (prefix + cli_name), sub))
        else:
            out.append(((name,), prefix + name.replace("_", "-"), info))
    return out


def _set_path(d: dict, path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        d = d.setdefault(key, {})
    d[path[-1]] = value


def _where(loc: tuple[str, ...], names: dict[tuple, str]) -> str:
    """A field as the user named it: `--teacher-timeout`, `INPUT`, `--buckets[1]` for a list's
    item, the YAML key path otherwise."""
    for n in range(len(loc), 0, -1):
        if loc[:n] in names:
            rest = "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in loc[n:])
            return names[loc[:n]] + rest
    return ".".join(loc)


def build_config(
    cls: type[BaseModel], data: dict, source: str = "config", names: dict[tuple, str] | None = None
) -> Any:
    """Validate `data` into `cls`, turning pydantic's report into one line that lists every
    problem, each named as the user wrote it (`INPUT`, `--output`, or the YAML key)."""
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            where = _where(tuple(str(p) for p in err["loc"]), names or {})
            msg = "required" if err["type"] == "missing" else err["msg"]
            msg = msg.removeprefix("Value error, ")
            problems.append(f"{where}: {msg}" if where else msg)  # a check across fields
        raise UserError(f"{source}: " + "; ".join(problems)) from None


def _panel(path: tuple[str, ...], cls: type[BaseModel]) -> str | None:
    """Options of a nested model (the teacher, the rater, ...) get a help panel of their own."""
    if len(path) < 2:
        extra = cls.model_fields[path[0]].json_schema_extra
        return extra.get("panel") if isinstance(extra, dict) else None
    info = cls.model_fields[path[0]]
    title = path[0].replace("_", " ").capitalize()
    what = (info.description or "").rstrip(".")
    return f"{title} (--{path[0].replace('_', '-')}-*): {what}" if what else title


def _is_advanced(info: Any) -> bool:
    extra = info.json_schema_extra
    return isinstance(extra, dict) and bool(extra.get("advanced"))


class _PanelledCommand(TyperCommand):
    """Plain help text, grouped into panels (the stage's own options first, then each model's
    connection options), wrapped to the terminal and never cutting an option name -- Rich's
    help tables cut long option names at 80 columns."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self.format_usage(ctx, formatter)
        self.format_help_text(ctx, formatter)
        panels: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            default = (
                "Arguments" if getattr(param, "param_type_name", "") == "argument" else "Options"
            )
            if param.name == "help":
                default = "Help"
            panels.setdefault(getattr(param, "rich_help_panel", None) or default, []).append(record)
        order = (
            ["Arguments", "Options"]
            + [p for p in panels if p not in ("Arguments", "Options", "Help")]
            + ["Help"]
        )
        for name in order:
            if panels.get(name):
                with formatter.section(name):
                    formatter.write_dl(panels[name])
        self.format_epilog(ctx, formatter)


def _help_all(ctx: Any, param: Any, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    for p in ctx.command.params:
        if p.name not in ("help_all",):
            p.hidden = False
    typer.echo(ctx.get_help())
    ctx.exit()


def _keyword(name: str, default: Any, annotation: Any) -> inspect.Parameter:
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
    )


# The options every command gets, after its own (in the "Help" panel).
def _option_config() -> Any:
    text = "YAML file with this command's settings; command-line options override it."
    return typer.Option(None, "--config", help=text, rich_help_panel="Help")


def _option_print_config() -> Any:
    text = "Print the resolved settings as YAML (ready for --config or a pipeline stage) and exit."
    return typer.Option(False, "--print-config", help=text, rich_help_panel="Help")


def calls_model(cls: type[BaseModel]) -> bool:
    """True for a stage whose Config holds a model connection (an LLMConfig field): it may pay
    for requests, so its command takes --dry-run and --max-cost (gpt4llm.llm.spend)."""
    return any(
        inspect.isclass(tp := _unwrap_optional(info.annotation)[0]) and issubclass(tp, LLMConfig)
        for info in cls.model_fields.values()
    )


def spending_parameters() -> list[inspect.Parameter]:
    """--dry-run and --max-cost, for the commands that call a model (the pipeline has its own)."""
    dry = (
        "Send nothing and write nothing: print how many requests the cache already holds and how"
        " many would be paid, their estimated tokens and cost, and exit."
    )
    cap = (
        "Stop before the spend (plus the most the requests in flight can cost) would pass this"
        " many USD: exit 1, every answer paid for kept in the request cache."
    )
    return [
        _keyword(
            "dry_run", typer.Option(False, "--dry-run", help=dry, rich_help_panel="Spending"), bool
        ),
        _keyword(
            "max_cost",
            typer.Option(None, "--max-cost", metavar="USD", help=cap, rich_help_panel="Spending"),
            typing.Optional[float],  # noqa: UP045
        ),
    ]


def _option_help_all() -> Any:
    text = "Show every option, the rarely used ones too, and exit."
    return typer.Option(
        False, "--help-all", help=text, is_eager=True, callback=_help_all, rich_help_panel="Help"
    )


def config_command(
    app: typer.Typer,
    name: str,
    cls: type[BaseModel],
    run: Callable[[Any], Any],
    help: str,
    arguments: tuple[str, ...] = (),
    short_help: str | None = None,
    command_line: str | None = None,
) -> None:
    """Register `name` on `app`: options from `cls`'s fields, then `run(cls(...))`.
    `command_line` is the command as typed ("train dpo"), for error messages (default: name).

    `arguments` names fields taken as positional arguments (a list or KEY=VALUE-dict field takes
    several); each keeps its old `--name` option as a hidden, deprecated alias. Every command
    also gets `--config FILE.yaml`, `--print-config` (the resolved settings as YAML, ready for
    `--config` or a pipeline stage) and `--help-all` (also the rarely used options); a command
    that calls a model also `--dry-run` and `--max-cost USD` (gpt4llm.llm.spend).
    """
    params, by_param, names, aliases = _parameters(cls, arguments)
    spends = calls_model(cls)
    if spends:
        params[-3:-3] = spending_parameters()

    def command(**kwargs: Any) -> Any:
        config_file = kwargs.pop("config_file", None)
        print_config = kwargs.pop("print_config", False)
        dry_run, max_cost = (kwargs.pop("dry_run"), kwargs.pop("max_cost")) if spends else (0, 0)
        kwargs.pop("help_all", None)
        data = load_yaml(config_file) if config_file else {}
        _take_aliases(kwargs, aliases, names, by_param)
        _set_options(data, kwargs, names, by_param)
        source = str(config_file) if config_file else f"gpt4llm {command_line or name}"
        config = build_config(cls, data, source=source, names=None if config_file else names)
        if print_config:
            typer.echo(settings_yaml(config.model_dump(mode="json")), nl=False)
            return None
        from gpt4llm.tracking import stage_run

        if not spends:
            with stage_run(command_line or name, config):  # --report-to: the command's run
                return run(config)
        from gpt4llm.llm.spend import spending

        tracked = None if dry_run else config  # a dry run is no run
        with spending(dry_run, max_cost), stage_run(command_line or name, tracked):
            return run(config)
        return None  # a dry run: its report is printed

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__doc__ = help
    command.__name__ = name.replace("-", "_")
    app.command(name, help=help, short_help=short_help, cls=_PanelledCommand)(command)


def _parameters(
    cls: type[BaseModel], arguments: tuple[str, ...]
) -> tuple[list[inspect.Parameter], dict[str, tuple[tuple[str, ...], Any]], dict, dict[str, str]]:
    """The command's parameters from `cls`'s fields (then --config, --print-config,
    --help-all); each parameter's field path and info; each field's name as typed (option or
    argument); the deprecated aliases of the arguments (alias parameter -> argument's)."""
    leaves = _flatten(cls)
    params: list[inspect.Parameter] = []
    by_param: dict[str, tuple[tuple[str, ...], Any]] = {}
    names: dict[tuple, str] = {}
    aliases: dict[str, str] = {}  # alias param -> argument param
    for path, cli_name, info in leaves:
        pname = cli_name.replace("-", "_")
        typ, extra = _option_type(info.annotation)
        by_param[pname] = (path, info)
        desc = info.description or ""
        panel = _panel(path, cls)
        hidden = _is_advanced(info)
        if len(path) == 1 and path[0] in arguments:
            default, metavar, alias_param = _argument(cli_name, pname, info, desc, typ, extra)
            names[path] = metavar
            aliases[alias_param.name] = pname
            by_param[alias_param.name] = (path, info)
            params.append(alias_param)
        elif typ is bool:
            default = _flag_option(cli_name, info, desc, panel, hidden)
            names[path] = f"--{cli_name}"
        else:
            default = _value_option(cli_name, info, desc, panel, hidden, typ, extra)
            names[path] = f"--{cli_name}"
        params.append(_keyword(pname, default, typing.Optional[typ]))  # noqa: UP045
    params += [
        _keyword("config_file", _option_config(), typing.Optional[Path]),  # noqa: UP045
        _keyword("print_config", _option_print_config(), bool),
        _keyword("help_all", _option_help_all(), bool),
    ]
    return params, by_param, names, aliases


def _argument(
    cli_name: str, pname: str, info: Any, desc: str, typ: Any, extra: dict
) -> tuple[Any, str, inspect.Parameter]:
    """A field taken as a positional argument: its typer.Argument, its metavar, and its old
    `--name` option kept as a hidden, deprecated alias."""
    metavar = cli_name.upper().replace("-", "_")
    is_many = typing.get_origin(_unwrap_optional(info.annotation)[0]) in (list, tuple, dict)
    if typing.get_origin(_unwrap_optional(info.annotation)[0]) is dict:
        metavar = "NAME=FILE"
    default = typer.Argument(
        None, help=desc, show_default=False, metavar=metavar + ("..." if is_many else "")
    )
    hint = f"Deprecated: give {metavar} as an argument."
    alias_option = typer.Option(None, f"--{cli_name}", hidden=True, help=hint, **extra)
    alias = _keyword(f"{pname}__alias", alias_option, typing.Optional[typ])  # noqa: UP045
    return default, metavar, alias


def _flag_option(cli_name: str, info: Any, desc: str, panel: Any, hidden: bool) -> Any:
    """A bool field: --name/--no-name."""
    desc += "  [default: on]" if info.default is True else ""
    return typer.Option(
        None,
        f"--{cli_name}/--no-{cli_name}",
        help=desc,
        show_default=False,
        rich_help_panel=panel,
        hidden=hidden,
    )


def _value_option(
    cli_name: str, info: Any, desc: str, panel: Any, hidden: bool, typ: Any, extra: dict
) -> Any:
    """Any other field: --name VALUE (repeatable for a list), its default shown in the help."""
    shown = (
        info.default
        if info.default is not PydanticUndefined
        and info.default not in (None, [], {})
        and not callable(info.default)
        else None
    )
    opts = (
        (f"--{cli_name}", "-o") if cli_name == "output" else (f"--{cli_name}",)
    )  # -o: the Unix habit
    if shown is not None:
        desc += f"  [default: {shown.value if isinstance(shown, enum.Enum) else shown}]"
    if typing.get_origin(typ) is list:
        extra.setdefault(
            "metavar", "<" + getattr(typing.get_args(typ)[0], "__name__", "str") + ">..."
        )
        desc += " (repeatable)" if "repeat" not in desc else ""
    return typer.Option(
        None,
        *opts,
        help=desc,
        show_default=False,
        rich_help_panel=panel,
        hidden=hidden,
        **extra,
    )


def _take_aliases(
    kwargs: dict[str, Any], aliases: dict[str, str], names: dict[tuple, str], by_param: dict
) -> None:
    """Move each deprecated `--name` alias's value to its argument, with a warning; both
    given is an error."""
    for alias, target in aliases.items():
        value = kwargs.pop(alias, None)
        if value is None or value == [] or value == ():
            continue
        cli = "--" + target.replace("_", "-")
        if kwargs.get(target) not in (None, [], ()):
            raise UserError(
                f"{cli} and the argument {names[by_param[target][0]]} both given: give it once,"
                " as the argument"
            )
        typer.echo(
            f"warning: {cli} is deprecated; give {names[by_param[target][0]]} as an argument",
            err=True,
        )
        kwargs[target] = value


def _set_options(
    data: dict, kwargs: dict[str, Any], names: dict[tuple, str], by_param: dict
) -> None:
    """The options given on the command line over the settings in `data` (from --config)."""
    for pname, value in kwargs.items():
        if value is None or value == [] or value == ():
            continue
        path, info = by_param[pname]
        base, _ = _unwrap_optional(info.annotation)
        if typing.get_origin(base) is dict:
            value = _name_values(value, names.get(path, pname))
        _set_path(data, path, value)


def _name_values(texts: list[str], option: str) -> dict[str, str]:
    """The one rule for every NAME=VALUE option (`--source a=x.jsonl`): a dict of the items, in
    the order given; a name given twice is refused (the second silently replaced the first)."""
    out: dict[str, str] = {}
    for text in texts:
        name, value = _split_kv(text, option)
        if name in out:
            raise UserError(
                f"{_shown(option)}: the name {name!r} is given twice ({name}={out[name]},"
                f" {text}): give each name once"
            )
        out[name] = value
    return out


def _shown(option: str) -> str:
    """An option as the user typed it: `--source`, `NAME=FILE` (an argument), `--option`."""
    if option.startswith("-") or option.isupper() or "=" in option:
        return option
    return "--" + option.replace("_", "-")


def _split_kv(text: str, option: str) -> tuple[str, str]:
    if "=" not in text:
        raise UserError(f"{_shown(option)}: expected NAME=VALUE, got {text!r}")
    k, v = text.split("=", 1)
    return k, v
