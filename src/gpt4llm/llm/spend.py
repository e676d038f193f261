"""Know the bill before paying it: `--dry-run` and `--max-cost USD`, one mechanism for every
command that calls a model (every stage whose Config holds a model connection, and a pipeline).

The command (`config.config_command`) or the pipeline runs inside `spending(dry_run, max_cost)`,
which makes a `Budget` current; the places every stage goes through consult it, so a stage
needs no code of its own:

* `complete_all` (every request of every stage). Dry run: the requests the cache answers are
  served as usual (free), so a stage reaches its next requests; at the first request that would
  be sent, `DryRun` stops the command with the estimate. Cap: before each request is sent, the
  spend so far, plus the most the requests in flight can cost, plus the most this one can cost
  must stay within the cap; otherwise nothing more is sent, the requests in flight finish (their
  answers go into the request cache, like every answer) and `BudgetExceeded` fails the command
  (exit 1): a rerun with a higher cap pays only the rest. In batch mode the whole batch is in
  flight at once: it is submitted only when its upper bound fits.
* `outputs.finish_stage` / `record_failed_run` (before a stage writes anything): a dry run
  whose requests were all cached stops there (`before_writing`), so a dry run writes nothing.
* A local model answered outside `complete_all` (respond's batched engines): `local_work`.

Estimates: prompt tokens are the messages' characters / 4 (no tokenizer is loaded for a dry
run: tiktoken is not a dependency and fetches its tables from the network, and a local model's
tokenizer means loading the model); completion tokens are max_tokens, an upper bound. Cost at
the model's price (`--*-price-*` or the price table), the batch price in batch mode; a model
without a known price has an unknown cost, and `--max-cost` refuses it (exit 2).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from gpt4llm.errors import UserError
from gpt4llm.llm import prices

RULE = (
    "tokens estimated as characters / 4 (no tokenizer is loaded for a dry run); completion"
    " tokens counted at max_tokens, an upper bound"
)


class DryRun(Exception):
    """A dry run reached its first request to pay (or its first write): stop, nothing sent."""


class BudgetExceeded(UserError):
    """--max-cost would be passed: exit 1, what was paid is in the request cache."""

    exit_code = 1


@dataclass
class Estimate:
    what: str  # the stage's description of the requests
    model: str
    mode: str  # online | batch | local
    requests: int
    cached: int
    to_pay: int  # distinct requests to send (identical requests are sent once)
    prompt_tokens: int
    completion_tokens: int
    cost: float | None  # None: no known price
    expect: int | None = None  # the stage will send up to this many requests in all

    def line(self) -> str:
        cost = "cost unknown (no price)" if self.cost is None else f"~${self.cost:.4f}"
        out = (
            f"{self.what} ({self.model}, {self.mode}): {self.requests} requests, {self.cached}"
            f" cached, {self.to_pay} to pay; ~{self.prompt_tokens:,} prompt + <= "
            f"{self.completion_tokens:,} completion tokens; {cost}"
        )
        if self.expect and self.to_pay and self.expect > self.to_pay:
            scale = self.expect / self.to_pay
            more = "" if self.cost is None else f", ~${self.cost * scale:.4f}"
            out += f"; the run may send up to {self.expect} requests like these{more}"
        return out


@dataclass
class Budget:
    dry_run: bool = False
    max_cost: float | None = None
    spent: float = 0.0  # USD paid in this command (or pipeline)
    in_flight: float = 0.0  # the most the requests sent and not yet answered can cost
    estimates: list[Estimate] = field(default_factory=list)

    def reserve(self, amount: float) -> bool:
        """Room for a request that can cost up to `amount`: True (and it is in flight)."""
        if self.max_cost is not None and self.spent + self.in_flight + amount > self.max_cost:
            return False
        self.in_flight += amount
        return True

    def settle(self, reserved: float, cost: float) -> None:
        self.in_flight = max(0.0, self.in_flight - reserved)
        self.spent += cost

    def report(self, lines: list[str] | None = None) -> str:
        """The dry run's report; `lines`: one per stage (a pipeline), else one per estimate."""
        if lines is None:
            lines = [e.line() for e in self.estimates] or ["no model requests"]
        lines = ["dry run: nothing sent, nothing written", *(f"  {x}" for x in lines)]
        paid = [e for e in self.estimates if e.to_pay]
        costs = [e.cost for e in paid]
        total = "unknown" if None in costs else f"~${sum(c or 0.0 for c in costs):.4f}"
        n = sum(e.to_pay for e in paid)
        lines.append(f"total: {n} requests to pay, {total} ({RULE})")
        return "\n".join(lines)


_current: ContextVar[Budget | None] = ContextVar("gpt4llm_budget", default=None)


def current() -> Budget | None:
    return _current.get()


@contextmanager
def spending(dry_run: bool = False, max_cost: float | None = None) -> Iterator[Budget | None]:
    """Run a command (or a pipeline) under --dry-run / --max-cost; a dry run ends with its report
    on stdout (exit 0)."""
    if max_cost is not None and not (math.isfinite(max_cost) and max_cost >= 0):
        raise UserError(f"--max-cost: expected a finite number of USD >= 0, got {max_cost}")
    if not dry_run and max_cost is None:
        yield None
        return
    budget = Budget(dry_run=dry_run, max_cost=max_cost)
    try:
        with under(budget):
            yield budget
    except DryRun:
        print(budget.report(), file=sys.stdout)


@contextmanager
def under(budget: Budget) -> Iterator[Budget]:
    """Make `budget` the current one (DryRun propagates: see `spending`)."""
    token = _current.set(budget)
    try:
        yield budget
    finally:
        _current.reset(token)


def before_writing() -> None:
    """A stage is about to write its outputs: a dry run stops here."""
    budget = current()
    if budget is not None and budget.dry_run:
        raise DryRun


def local_work(what: str, model: str, done: int, todo: int) -> None:
    """A local model is about to answer `todo` items outside complete_all (`done` are already
    answered): a dry run records them (no cost) and stops before the model is loaded."""
    budget = current()
    if budget is None or not budget.dry_run:
        return
    budget.estimates.append(Estimate(what, model, "local", done + todo, done, todo, 0, 0, 0.0))
    if todo:
        raise DryRun


def upper_bound(requests: list[Any]) -> tuple[int, int]:
    """(prompt tokens ~ characters / 4, completion tokens <= max_tokens) of `requests`."""
    prompt = sum(sum(len(m.get("content") or "") for m in r.messages) // 4 for r in requests)
    return prompt, sum(r.params.max_tokens for r in requests)


def price_of(config: Any, backend: Any) -> tuple[float, float] | None:
    """The price the requests will be paid at: the batch price in batch mode, 0 locally."""
    if backend.kind == "local":
        return (0.0, 0.0)
    if config.mode == "batch":
        return prices.batch_price(config.model, backend.price, config.batch_price_factor)
    return backend.price


def request_cost(price: tuple[float, float] | None, request: Any) -> float:
    """The most one request can cost (its prompt estimate, max_tokens of completion)."""
    return prices.cost(price, *upper_bound([request]))


def check_price(budget: Budget | None, config: Any, backend: Any) -> None:
    if budget is not None and budget.max_cost is not None and price_of(config, backend) is None:
        opt = config.option_prefix
        raise UserError(
            f"--max-cost needs the price of {config.model!r}: give {opt}-price-prompt and"
            f" {opt}-price-completion (USD per 1M tokens)"
        )


def dry_run_stop(
    budget: Budget,
    config: Any,
    backend: Any,
    requests: list[Any],
    todo: dict[str, list[int]],
    what: str,
    expect: int | None,
) -> None:
    """Record the estimate of one complete_all call; DryRun when any request would be paid."""
    price = price_of(config, backend)
    first = [requests[ix[0]] for ix in todo.values()]
    prompt, completion = upper_bound(first)
    mode = "local" if backend.kind == "local" else config.mode
    cached = len(requests) - sum(len(ix) for ix in todo.values())
    cost = None if price is None else prices.cost(price, prompt, completion)
    budget.estimates.append(
        Estimate(
            what or "requests", config.model, mode, len(requests), cached, len(todo),
            prompt, completion, cost, expect,
        )
    )  # fmt: skip
    if todo:
        raise DryRun


def over_cap(budget: Budget, next_cost: float, sent: int, unsent: int) -> BudgetExceeded:
    """The one-line failure when the next request would pass the cap."""
    return BudgetExceeded(
        f"--max-cost ${budget.max_cost:g} reached: ${budget.spent:.4f} spent, and the next"
        f" request could cost up to ${next_cost:.4f}; {sent} requests paid for are in the"
        f" request cache, {unsent} not sent: rerun with a higher --max-cost to pay only the rest"
    )
