"""`gpt4llm magpie`: instructions drawn from an aligned chat model's own template (Magpie).

    gpt4llm magpie -o magpie.jsonl --model ./Llama-3-8B-Instruct --num-samples 1000
    gpt4llm magpie -o magpie.jsonl --num-samples 4 --max-tokens 24 --answer-max-tokens 32
    gpt4llm magpie -o magpie.jsonl --model ./chat-model --answer-with teacher --teacher gpt-4

An aligned model that is given only its chat template's pre-query prefix -- what comes before
a user's words, Gemma's `<bos><start_of_turn>user\\n`, Llama-3's
`<|begin_of_text|><|start_header_id|>user<|end_header_id|>\\n\\n` -- writes a user's turn
itself (Magpie, Xu et al. 2024; `magpie-align/magpie` `exp/gen_ins.py`). The turn ends at the
template's end-of-turn marker (`<end_of_turn>`, `<|eot_id|>`); then the same model answers it
through its chat template, or the teacher does (`--answer-with teacher`: any model of the
teacher engine, through the request cache).

Where the prefix comes from: the model's own chat template, rendered with one user message and
cut where the message begins (so no per-family table such as Magpie's
`configs/model_configs.json` or distilabel's `MAGPIE_PRE_QUERY_TEMPLATES` is needed; they give
the same strings for the families they list). What follows the message up to its end marker is
the end of turn: generation stops at it (its token id joins the end-of-sequence ids when it is
one token; it is also a stop string). `--pre-query-template` and `--end-of-turn` override both
(for a model without a template). Turn k > 1 (`--turns`): the conversation so far rendered by
the template, plus the same prefix for the next user message -- distilabel's
`MagpieChatTemplateMixin` does the same.

Sampling as Magpie's defaults: temperature 1, top_p 1, and its "early stopping" at the first
new line (`--no-stop-at-newline` turns it off). Sample i is drawn with seed `--seed` + i, so a
rerun gives the same instructions. As the local generator seeds every row of a batch alike,
each first user turn (one prompt, many seeds) is its own generate call; answers and later turns,
whose prompts differ, are batched (`--model-batch-size`).

Filters, in order, each counted and written to `<output>.rejected.jsonl` with its reason:
`empty`; `truncated` (the user turn did not end within `--max-tokens`); `too_short` /
`too_long` (fewer than `--min-words` or more than `--max-words` words); `repetitive` (more than
`--max-repeat` of the instruction's word 3-grams repeat an earlier one); `similar` (ROUGE-L
F1 >= `--threshold` with an instruction kept before it, `instruct`'s novelty pool) -- all
before the answer is asked for -- then `refusal` (the answer refuses, `audit`'s rule) and
`no_answer` (empty answer).

Engines: a local transformers model (the embedded Gemma by default), or an OpenAI-compatible
endpoint that takes raw completions (`--model NAME --model-base-url URL`: vLLM, llama.cpp, TGI,
`transformers serve` serve `/v1/completions`), given `--pre-query-template` and `--end-of-turn`
(its template is not known here; leave the BOS token out where the server adds one to the
prompt, as `transformers serve` and vLLM do: Gemma's is then `<start_of_turn>user\\n`) and one
turn; its user turns are plain requests (not cached: a rerun samples them again, the same where
the server honours seeds), its answers go through the request cache.
vLLM's offline engine is not wired yet.

Outputs: Alpaca records `{instruction, input: "", output, id, model, answered_by}` (with
`--turns` > 1 also `messages`, the whole conversation); the rejected file; the manifest,
whose summary gives the prefix and end of turn used and the counts by reason.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from gpt4llm.config import MAX_COUNT, MAX_SEED, MAX_TOKENS, LLMConfig, StageConfig, role
from gpt4llm.errors import UserError
from gpt4llm.llm.base import SamplingParams
from gpt4llm.outputs import max_failed_fraction_field

SENTINEL = "\x00MAGPIE-USER-MESSAGE\x00"
REASONS = (
    "empty",
    "truncated",
    "too_short",
    "too_long",
    "repetitive",
    "similar",
    "refusal",
    "no_answer",
)


class Config(StageConfig):
    """Instructions sampled from an aligned chat model's pre-query template (Magpie), answered."""

    output: Path = Field(json_schema_extra=role("output", beside=(".rejected.jsonl",)))
    """Kept conversations: JSONL of Alpaca records (a .json name writes one JSON array). Rejected
    ones go to OUTPUT.rejected.jsonl."""
    model: LLMConfig = Field(default_factory=LLMConfig)
    """The aligned chat model whose template is used (a local model; default: embedded)."""
    teacher: LLMConfig = Field(default_factory=LLMConfig)
    """With --answer-with teacher: the model that answers."""
    answer_with: Literal["model", "teacher", "none"] = "model"
    """Who answers: the same model through its template, the teacher, or nobody (instructions
    only, as Magpie's gen_ins.py)."""
    num_samples: int = Field(100, ge=1, le=MAX_COUNT)
    """User turns to sample (each filtered; the kept ones are answered)."""
    turns: int = Field(1, ge=1, le=20)
    """User turns per conversation (> 1: multi-turn, each answered before the next is drawn)."""
    pre_query_template: str | None = None
    """The text before a user's message (default: from the model's chat template)."""
    end_of_turn: str | None = None
    """The text that ends a user's message (default: from the model's chat template)."""
    stop_at_newline: bool = True
    """Magpie's early stopping: the user turn ends at its first new line too."""
    max_tokens: int = Field(128, ge=1, le=MAX_TOKENS)
    """Most tokens of a sampled user turn."""
    answer_max_tokens: int = Field(512, ge=1, le=MAX_TOKENS)
    """Most tokens of an answer."""
    temperature: float = Field(1.0, gt=0.0, le=2.0)
    """Sampling temperature of the user turns (Magpie: 1)."""
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    """Nucleus sampling of the user turns (Magpie: 1)."""
    answer_temperature: float = Field(0.0, ge=0.0, le=2.0)
    """Temperature of the answers (0: greedy)."""
    min_words: int = Field(3, ge=0, le=100_000)
    """Reject user turns of fewer words."""
    max_words: int = Field(300, ge=1, le=100_000)
    """Reject user turns of more words."""
    max_repeat: float = Field(0.3, ge=0.0, le=1.0)
    """Reject a user turn when more than this share of its word 3-grams repeat an earlier one."""
    threshold: float = Field(0.7, gt=0.0, le=1.0)
    """Keep a user turn only when its ROUGE-L F1 with every kept one is below this."""
    seed: int = Field(0, ge=0, le=MAX_SEED)
    """Sample i is drawn with seed + i."""
    id_prefix: str = "magpie"
    """Ids of the records: PREFIX-000000 ..."""
    max_failed_fraction: float = max_failed_fraction_field()


def rejected_path(output: Path) -> Path:
    return output.with_name(output.name + ".rejected.jsonl")


# ----------------------------------------------------------------------------- template
@dataclass(frozen=True)
class Template:
    """How the model's chat template marks a user's turn."""

    prefix: str  # before the first user message (BOS included when the template writes it)
    end: str  # what ends a user message: a stop string, and an end token when it is one


def derive_template(tokenizer: Any, config: Config) -> Template:
    """The pre-query prefix and end of turn from the chat template (or the options)."""
    prefix, end = config.pre_query_template, config.end_of_turn
    if prefix is None or end is None:
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            raise UserError(
                f"magpie: {config.model.model} has no chat template; give --pre-query-template"
                " and --end-of-turn"
            )
        text = render(tokenizer, [{"role": "user", "content": SENTINEL}], generation=False)
        before, _, after = text.partition(SENTINEL)
        prefix = before if prefix is None else prefix
        end = end if end is not None else (after.strip().splitlines() or [""])[0]
    if not prefix or not end:
        raise UserError("magpie: the pre-query template and the end of turn must not be empty")
    return Template(prefix, end)


def render(tokenizer: Any, messages: list[dict], generation: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)


def next_user_prefix(tokenizer: Any, t: Template, messages: list[dict]) -> str:
    """The prompt that makes the model write the next user turn of `messages`."""
    if not messages:
        return t.prefix
    text = render(tokenizer, [*messages, {"role": "user", "content": SENTINEL}], generation=False)
    return text.partition(SENTINEL)[0]


# ------------------------------------------------------------------------------ filters
def repeat_share(text: str) -> float:
    """The share of the word 3-grams of `text` that repeat an earlier one (0 for < 3 words)."""
    words = re.findall(r"\w+", text.lower())
    grams = [tuple(words[i : i + 3]) for i in range(len(words) - 2)]
    return 1 - len(set(grams)) / len(grams) if grams else 0.0


def instruction_rule(config: Config, text: str, finish_reason: str) -> tuple[str, str] | None:
    """(reason, detail) when a sampled user turn is rejected before it is answered."""
    if not text:
        return "empty", "empty user turn"
    if finish_reason == "length":
        return "truncated", f"no end of turn within {config.max_tokens} tokens"
    n = len(text.split())
    if n < config.min_words:
        return "too_short", f"{n} words (< {config.min_words})"
    if n > config.max_words:
        return "too_long", f"{n} words (> {config.max_words})"
    share = repeat_share(text)
    if share > config.max_repeat:
        return "repetitive", f"{share:.2f} of its 3-grams repeat (> {config.max_repeat:g})"
    return None


def answer_rule(text: str) -> tuple[str, str] | None:
    from gpt4llm.analyze.quality import refusal

    if not text:
        return "no_answer", "empty answer"
    if hit := refusal(text):
        return "refusal", hit
    return None


# ------------------------------------------------------------------------------ engine
class TurnGenerator:
    """The local model, stopping at the template's end of turn as well as at end of sequence."""

    def __init__(self, config: LLMConfig):
        from gpt4llm.llm.local import LocalGenerator
        from gpt4llm.models import resolve_model_path

        class _Generator(LocalGenerator):
            extra_eos: frozenset[int] = frozenset()

            def _eos_ids(self) -> set[int]:
                return super()._eos_ids() | set(self.extra_eos)

        self.gen = _Generator.load(resolve_model_path(config.model), dtype=config.dtype)
        self.batch_size = config.batch_size
        self.tokenizer = self.gen.tokenizer

    def stop_at(self, t: Template) -> None:
        """The end-of-turn text, when it is one token, ends generation like end of sequence."""
        ids = self.tokenizer(t.end, add_special_tokens=False)["input_ids"]
        self.gen.extra_eos = frozenset(ids) if len(ids) == 1 else frozenset()

    def complete(self, prompts: list[str], params: list[SamplingParams]) -> list[Any]:
        """One completion per prompt; prompts sharing sampling params are batched together."""
        out: list[Any] = [None] * len(prompts)
        groups: dict[SamplingParams, list[int]] = {}
        for i, p in enumerate(params):
            groups.setdefault(p, []).append(i)
        for p, idx in groups.items():
            comps = self.gen.generate([prompts[i] for i in idx], p, batch_size=self.batch_size)
            for i, c in zip(idx, comps, strict=True):
                out[i] = c
        return out


class EndpointTurns:
    """An OpenAI-compatible endpoint's raw completions (`POST /completions`, the prompt sent as
    it is): the pre-query prefix in, the user's turn out. Every sample is one request, sent
    `--model-concurrency` at a time; a request that fails is that sample's failure."""

    tokenizer = None  # the template comes from --pre-query-template / --end-of-turn

    def __init__(self, config: LLMConfig):
        import os

        import openai

        key = os.environ.get(config.api_key_env, "").strip() or "EMPTY"
        urls = config.base_urls
        self.config = config
        self.client = openai.OpenAI(
            api_key=key, base_url=urls[0] if urls else None, timeout=config.timeout,
            max_retries=config.max_retries,
        )  # fmt: skip

    def stop_at(self, t: Template) -> None:  # the end of turn is a stop string (params.stop)
        return None

    def _one(self, prompt: str, p: SamplingParams) -> Any:
        from gpt4llm.llm.base import Completion
        from gpt4llm.llm.client import one_line
        from gpt4llm.prompts import cut_at_stops

        try:
            r = self.client.completions.create(
                model=self.config.model, prompt=prompt, max_tokens=p.max_tokens,
                temperature=p.temperature, top_p=p.top_p, stop=list(p.stop) or None,
                seed=(p.seed or 0) + p.sample_index,
            )  # fmt: skip
        except Exception as e:  # noqa: BLE001 - one failed sample, said in one line
            return f"{type(e).__name__}: {one_line(str(e))}"
        choice, usage = r.choices[0], r.usage
        return Completion(
            text=cut_at_stops(choice.text or "", p.stop, strip=False),
            finish_reason=choice.finish_reason or "stop",
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
        )

    def complete(self, prompts: list[str], params: list[SamplingParams]) -> list[Any]:
        """A Completion per prompt, or the one-line error of its failed request."""
        from concurrent.futures import ThreadPoolExecutor

        self._dry_run_stop(prompts, params)
        with ThreadPoolExecutor(max_workers=self.config.concurrency) as pool:
            return list(pool.map(self._one, prompts, params))

    def _dry_run_stop(self, prompts: list[str], params: list[SamplingParams]) -> None:
        """A dry run counts these requests (never cached: each is a new sample) and stops."""
        from gpt4llm.llm import prices, spend

        budget = spend.current()
        if budget is None or not budget.dry_run:
            return
        c = self.config
        price = prices.resolve(c.model, c.price_prompt, c.price_completion)
        prompt = sum(len(p) // 4 for p in prompts)
        completion = sum(p.max_tokens for p in params)
        cost = None if price is None else prices.cost(price, prompt, completion)
        budget.estimates.append(
            spend.Estimate(
                "user turns (raw completions)", c.model, "online", len(prompts), 0, len(prompts),
                prompt, completion, cost,
            )
        )  # fmt: skip
        if prompts:
            raise spend.DryRun


# --------------------------------------------------------------------------------- run
@dataclass
class Progress:
    convs: list[dict] = field(default_factory=list)  # live conversations: id, messages
    kept: list[dict] = field(default_factory=list)
    rejected: list[dict] = field(default_factory=list)
    reasons: Counter = field(default_factory=Counter)
    failed: list[dict] = field(default_factory=list)
    results: list = field(default_factory=list)  # the teacher's Results (usage, cost)


def is_local(config: Config) -> bool:
    from gpt4llm.llm.client import resolve_backend

    return resolve_backend(config.model) == "local"


def check_paths(config: Config) -> None:
    """Refuse what an endpoint model cannot do, and bad output paths, before any call."""
    from gpt4llm.outputs import check_outputs, request_caches

    if config.turns > 1 and config.answer_with == "none":
        raise UserError("magpie: --turns > 1 needs answers (--answer-with model or teacher)")
    if not is_local(config) and not (config.pre_query_template and config.end_of_turn):
        raise UserError(
            f"magpie: --model {config.model.model} is an endpoint, whose chat template is not"
            " known here: give --pre-query-template and --end-of-turn (Magpie's"
            " configs/model_configs.json has them per model)"
        )
    if not is_local(config) and config.turns > 1:
        raise UserError("magpie: --turns > 1 needs a local model (its template renders the turns)")
    caches = request_caches(config.teacher) if config.answer_with == "teacher" else []
    if config.answer_with == "model" and not is_local(config):
        caches += request_caches(config.model)
    check_outputs(inputs=[], files=[config.output, rejected_path(config.output)], caches=caches)


def run(config: Config) -> dict:
    """load → for each turn: sample user turns → filter → answer → filter → finish."""
    from gpt4llm.text.novelty import NoveltyPool

    t0 = time.time()
    check_paths(config)
    engine = TurnGenerator(config.model) if is_local(config) else EndpointTurns(config.model)
    t = derive_template(engine.tokenizer, config)
    engine.stop_at(t)
    pool = NoveltyPool(threshold=config.threshold)
    p = Progress(
        convs=[
            {"id": f"{config.id_prefix}-{i:06d}", "n": i, "messages": []}
            for i in range(config.num_samples)
        ]
    )
    for turn in range(config.turns):
        users = sample_users(config, engine, t, p, turn)
        keep_novel(pool, users, p, turn)
        answer(config, engine, users, p, turn)
        p.convs = [c for c, _ in users]
    return finish(config, t, p, t0)


def sample_users(config: Config, engine: TurnGenerator, t: Template, p: Progress, turn: int):
    """Each live conversation's next user turn (sample i seeded with seed + i); the rule-rejected
    ones leave. Returns [(conversation, text)]."""
    stops = (t.end, "\n") if config.stop_at_newline else (t.end,)
    prompts, params = [], []
    for conv in p.convs:
        prompts.append(next_user_prefix(engine.tokenizer, t, conv["messages"]))
        index = conv["n"] * config.turns + turn  # sample n's turn: its own seed
        params.append(
            SamplingParams(
                max_tokens=config.max_tokens,
                temperature=config.temperature,
                top_p=config.top_p,
                stop=stops,
                seed=config.seed,
                sample_index=index,
            )
        )
    out = []
    for conv, comp in zip(p.convs, engine.complete(prompts, params), strict=True):
        if isinstance(comp, str):  # an endpoint's request failed
            p.failed.append({"id": conv["id"], "turn": turn + 1, "error": comp})
            continue
        text = comp.text.strip()
        if why := instruction_rule(config, text, comp.finish_reason):
            _reject(p, conv, turn, text, *why)
            continue
        out.append((conv, text))
    return out


def keep_novel(pool: Any, users: list, p: Progress, turn: int) -> None:
    """The first user turns against the pool of those kept before (later turns are not)."""
    if turn:
        return
    verdicts = pool.check([text for _, text in users])
    kept = []
    for (conv, text), v in zip(users, verdicts, strict=True):
        if v.keep:
            kept.append((conv, text))
            continue
        top_text, top = v.most_similar[0]
        _reject(p, conv, turn, text, "similar", f"ROUGE-L {top:.3f} with: {top_text}")
    users[:] = kept


def answer(config: Config, engine: TurnGenerator, users: list, p: Progress, turn: int) -> None:
    """Each kept user turn answered by the model (through its template) or the teacher."""
    for conv, text in users:
        conv["messages"].append({"role": "user", "content": text})
    if config.answer_with == "none":
        return
    if config.answer_with == "teacher" or not is_local(config):
        llm = config.teacher if config.answer_with == "teacher" else config.model
        texts = teacher_answers(config, llm, users, p)
    else:
        params = SamplingParams(
            max_tokens=config.answer_max_tokens,
            temperature=config.answer_temperature,
            seed=config.seed,
        )
        prompts = [render(engine.tokenizer, conv["messages"], generation=True) for conv, _ in users]
        texts = [c.text.strip() for c in engine.complete(prompts, [params] * len(prompts))]
    kept = []
    for (conv, text), reply in zip(users, texts, strict=True):
        if reply is None:
            continue  # the teacher's request failed: in p.failed
        if why := answer_rule(reply):
            _reject(p, conv, turn, text, *why, output=reply)
            continue
        conv["messages"].append({"role": "assistant", "content": reply})
        kept.append((conv, text))
    users[:] = kept


def teacher_answers(config: Config, llm: LLMConfig, users: list, p: Progress) -> list[str | None]:
    """The answers of `llm` (the teacher, or an endpoint model) through the engine's request
    cache; a failed request is recorded and gives None."""
    from gpt4llm.llm import complete_all
    from gpt4llm.llm.base import Request

    params = SamplingParams(
        max_tokens=config.answer_max_tokens, temperature=config.answer_temperature, seed=config.seed
    )
    requests = [Request(conv["id"], list(conv["messages"]), params) for conv, _ in users]
    results = complete_all(llm, requests, description="magpie answers")
    p.results.extend(results)
    out: list[str | None] = []
    for req, res in zip(requests, results, strict=True):
        if not res.ok:
            p.failed.append({"id": req.key, "error": res.error or "failed"})
            out.append(None)
        else:
            out.append(res.completion.text.strip())
    return out


def _reject(
    p: Progress, conv: dict, turn: int, text: str, reason: str, detail: str, output: str = ""
) -> None:
    p.reasons[reason] += 1
    rec = {"id": conv["id"], "turn": turn + 1, "reason": reason, "detail": detail}
    p.rejected.append({**rec, "instruction": text, "output": output})


def finish(config: Config, t: Template, p: Progress, t0: float) -> dict:
    """Records from the surviving conversations; summary; outputs and manifest."""
    from gpt4llm.llm.summary import usage_totals
    from gpt4llm.outputs import StageRun
    from gpt4llm.records import write_jsonl, write_records

    answered_by = {"model": config.model.model, "teacher": config.teacher.model}
    for conv in p.convs:
        msgs = conv["messages"]
        rec = {"instruction": msgs[0]["content"], "input": "", "output": ""}
        if len(msgs) > 1:
            rec["output"] = msgs[1]["content"]
        rec.update(id=conv["id"], model=config.model.model)
        rec["answered_by"] = answered_by.get(config.answer_with)
        if config.turns > 1:
            rec["messages"] = msgs
        p.kept.append(rec)
    totals = usage_totals(p.results)
    summary = {
        "samples": config.num_samples,
        "turns": config.turns,
        "kept": len(p.kept),
        "rejected": len(p.rejected),
        "rejected_by_reason": {r: p.reasons[r] for r in REASONS if p.reasons[r]},
        "pre_query_template": t.prefix,
        "end_of_turn": t.end,
        "answered_by": config.answer_with,
        "teacher_cached": totals["cached"],
        "prompt_tokens": totals["prompt_tokens"],
        "completion_tokens": totals["completion_tokens"],
        "cost_usd": totals["cost_usd"],
        "output": str(config.output),
        "rejected_file": str(rejected_path(config.output)),
    }

    def write() -> None:
        write_jsonl(rejected_path(config.output), p.rejected)
        write_records(config.output, p.kept)

    return StageRun("magpie", config, config.output, [], t0).finish(
        summary, config.num_samples, p.failed, write, what="samples"
    )
