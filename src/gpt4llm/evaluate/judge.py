"""`gpt4llm eval judge`: pairwise LLM judging of model A against model B (the paper's GPT-4
evaluation on the 80 Vicuna questions).

For each question the judge sees the question and both answers and replies with two scores
(1-10) on its first line, then an explanation. Every pair is judged in both orders (A shown
first, then B shown first) because judges favour one position; a question's score for each
model is the mean over the orders that gave a verdict. Reported: each model's total, A's total
as a percentage of B's (the paper's "relative score"), wins/ties/losses, the same per category,
and how many replies could not be read.

Scores are read from the reply text (`scoring.parse_scores`), or with `--scoring expected` from
the judge's top token probabilities at the positions where it writes the two numbers
(`scoring.expected_scores`: the probability-weighted mean score, G-Eval style). Expected scoring
never depends on the judge following the format -- a weak judge still yields numbers -- and is
finer-grained than integers; it needs an endpoint that returns `top_logprobs` (OpenAI, vLLM,
llama.cpp) or a local model. When the reply offers no score position at all (a weak judge that
wrote only prose), the judge is asked in the same conversation for each score as a bare number
(prompts/judge_probe.txt, 2 tokens) and the probability-weighted score is read there
(`method: expected-probe`). When an endpoint returns no probabilities, the reply text is
parsed instead (`method: parsed`).

Inputs
  questions   Vicuna-80 format {question_id, text, category} (default), MT-bench
              {question_id, category, turns} (first turn; --question-format mt_bench), or
              Alpaca-style {id, instruction, input, category?}. Optional when both answer files
              are our response records (the question is then their instruction + input).
  answers     our response records {id, instruction, input, output, model}, FastChat's answer
              files {question_id, text, model_id} or FastChat llm_judge's
              {question_id, model_id, choices: [{turns: [...]}]} -- detected per file.
  prompts     ours (prompts/judge_{general,coding,math}.txt + judge_system.txt, chosen by the
              question's category) or any file: a .txt user template with {question},
              {answer_1}, {answer_2}; or a FastChat judge-prompt JSONL (system_prompt,
              prompt_template, defaults.prompt, category), one line picked by
              --judge-prompt-id or by category.

Outputs (directory)
  judgments.jsonl     one judge record per question and order: {id, model_a, model_b,
                      scores: [a, b] | null, order: "ab" | "ba", raw, category, method, ...};
                      scores are always in (A, B) order whatever the presentation order.
  per_question.jsonl  the averaged row per question: {id, category, model_a, model_b,
                      scores: [a, b] | null, order: "avg", n_orders}.
  summary.json        totals, relative score, wins/ties/losses, per category, counts.
  manifest.json
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from gpt4llm.config import LLMConfig, StageConfig, config_command
from gpt4llm.errors import DataError, UserError
from gpt4llm.records import read_json_records, write_json, write_jsonl

STAGE = "eval judge"


class Config(StageConfig):
    """Settings of `gpt4llm eval judge`."""

    answers_a: Path = Field(Path("answers_a.jsonl"), description="Answers of model A (response records, or FastChat answer JSONL).")
    answers_b: Path = Field(Path("answers_b.jsonl"), description="Answers of model B, the reference model of the relative score (the paper: ChatGPT or GPT-4).")
    questions: Path | None = Field(None, description="Question set (Vicuna-80 question.jsonl, MT-bench question.jsonl, or Alpaca-style records). Optional when both answer files are response records.")
    question_format: Literal["auto", "vicuna", "mt_bench", "alpaca"] = Field("auto", description="Format of --questions: 'vicuna' {question_id,text,category}, 'mt_bench' {question_id,category,turns} (first turn), 'alpaca' {id,instruction,input}; 'auto' detects it.")
    output: Path = Field(Path("eval/judge"), description="Output directory: judgments.jsonl, per_question.jsonl, summary.json, manifest.json.")
    model_a: str | None = Field(None, description="Name of model A (default: from its answers' model / model_id, else the file name).")
    model_b: str | None = Field(None, description="Name of model B (default: from its answers, else the file name).")
    judge: LLMConfig = Field(default_factory=LLMConfig, description="The judge model (the paper: gpt-4).")
    judge_prompt: str | None = Field(None, description="Judge prompt: a .txt template with {question}, {answer_1}, {answer_2}, or a FastChat judge-prompt JSONL. Default: ours, chosen by category.")
    judge_prompt_id: int | None = Field(None, description="With a FastChat JSONL: the prompt_id to use for every question (default: chosen by category).")
    judge_system: str | None = Field(None, description="System message file for a .txt judge prompt (default: ours; FastChat files carry their own).")
    orders: Literal["both", "ab"] = Field("both", description="'both': judge each pair with A first and with B first, and average (removes position bias); 'ab': A first only.")
    scoring: Literal["parse", "expected"] = Field("parse", description="'parse': read the two scores from the reply text; 'expected': probability-weighted scores from the judge's top_logprobs (never fails to parse).")
    top_logprobs: int = Field(20, ge=1, le=20, description="Alternatives per position requested with --scoring expected (OpenAI allows up to 20).")
    max_tokens: int = Field(512, ge=1, description="Most tokens the judge may write per reply.")
    temperature: float = Field(0.0, ge=0, description="Judge sampling temperature (0: greedy, reproducible).")
    score_min: float = Field(1, description="Lowest valid score.")
    score_max: float = Field(10, description="Highest valid score.")
    limit: int | None = Field(None, ge=1, description="Judge only the first N questions (a quick look).")


# ------------------------------------------------------------------------------ questions


def _detect_question_format(rec: dict) -> str:
    if "turns" in rec:
        return "mt_bench"
    if "text" in rec and "question_id" in rec:
        return "vicuna"
    if "instruction" in rec:
        return "alpaca"
    return "unknown"


def load_questions(path: Path, fmt: str = "auto") -> list[dict]:
    """[{id, text, category}] from a Vicuna, MT-bench or Alpaca-style question file."""
    out, seen = [], {}
    for index, (lineno, rec) in enumerate(read_json_records(path)):
        if not isinstance(rec, dict):
            raise DataError(path, f"expected a JSON object, got {type(rec).__name__}", line=lineno)
        f = fmt if fmt != "auto" else _detect_question_format(rec)
        if f == "mt_bench":
            turns = rec.get("turns")
            if not isinstance(turns, list) or not turns or not isinstance(turns[0], str):
                raise DataError(path, "expected a non-empty list of strings", line=lineno, field="turns")
            qid, text = rec.get("question_id"), turns[0]
        elif f == "vicuna":
            qid, text = rec.get("question_id"), rec.get("text")
            if not isinstance(text, str) or not text.strip():
                raise DataError(path, "missing or empty", line=lineno, field="text")
        elif f == "alpaca":
            instr = rec.get("instruction")
            if not isinstance(instr, str) or not instr.strip():
                raise DataError(path, "missing or empty", line=lineno, field="instruction")
            inp = rec.get("input") or ""
            qid, text = rec.get("id", f"{path.stem}-{index:06d}"), instr + ("\n\n" + inp if inp.strip() else "")
        else:
            raise DataError(path, "unknown question format (expected question_id+text, question_id+turns, or instruction)", line=lineno)
        if qid is None:
            raise DataError(path, "missing", line=lineno, field="question_id")
        qid = str(qid)
        if qid in seen:
            raise DataError(path, f"duplicate question id {qid!r} (first on line {seen[qid]})", line=lineno)
        seen[qid] = lineno
        out.append({"id": qid, "text": text, "category": str(rec.get("category") or "general")})
    if not out:
        raise DataError(path, "no questions")
    return out


# -------------------------------------------------------------------------------- answers


def load_answers(path: Path) -> tuple[dict[str, dict], str | None]:
    """{id: {text, question?}} and the model name found in the file (if one)."""
    answers: dict[str, dict] = {}
    models: set[str] = set()
    for lineno, rec in read_json_records(path):
        if not isinstance(rec, dict):
            raise DataError(path, f"expected a JSON object, got {type(rec).__name__}", line=lineno)
        if "question_id" in rec and ("text" in rec or "choices" in rec):  # FastChat
            qid = str(rec["question_id"])
            if "text" in rec:
                text = rec["text"]
            else:
                try:
                    text = rec["choices"][0]["turns"][0]
                except (KeyError, IndexError, TypeError):
                    raise DataError(path, "expected choices[0].turns[0]", line=lineno, field="choices") from None
            model = rec.get("model_id")
            question = None
        elif "output" in rec and "id" in rec:  # our response record
            qid, text, model = str(rec["id"]), rec["output"], rec.get("model")
            instr = rec.get("instruction")
            question = None
            if isinstance(instr, str) and instr.strip():
                inp = rec.get("input") or ""
                question = instr + ("\n\n" + inp if isinstance(inp, str) and inp.strip() else "")
        else:
            raise DataError(path, "unknown answer format (expected a response record {id, output, ...} or FastChat {question_id, text})", line=lineno)
        if text is None:
            text = ""
        if not isinstance(text, str):
            raise DataError(path, f"expected a string, got {type(text).__name__}", line=lineno, field="text" if "text" in rec else "output")
        if qid in answers:
            raise DataError(path, f"duplicate answer for question {qid!r}", line=lineno)
        answers[qid] = {"text": text, "question": question, "category": rec.get("category")}
        if model:
            models.add(str(model).split(":")[0])
    if not answers:
        raise DataError(path, "no answers")
    return answers, (models.pop() if len(models) == 1 else None)


# -------------------------------------------------------------------------------- prompts

_CODING = {"coding", "code", "programming"}
_MATH = {"math", "mathematics", "reasoning-math"}


def _kind(category: str) -> str:
    c = category.lower()
    return "coding" if c in _CODING else "math" if c in _MATH else "general"


_FIELD_RE = re.compile(r"\{(question|answer_1|answer_2|answer_a|answer_b|prompt)\}")


def fill_once(template: str, fields: dict[str, str]) -> str:
    """Replace known {fields} in one pass, so braces inside answers are never expanded."""
    return _FIELD_RE.sub(lambda m: fields.get(m.group(1), m.group(0)), template)


class JudgePrompts:
    """Resolves (system, user template, defaults.prompt) per question category."""

    def __init__(self, prompt: str | None, prompt_id: int | None, system: str | None):
        from gpt4llm.prompts import load_prompt

        self.fastchat: list[dict] | None = None
        self.prompt_id = prompt_id
        self.source = prompt or "gpt4llm:judge_{general,coding,math}.txt"
        if prompt and Path(prompt).suffix in (".jsonl", ".json") and Path(prompt).is_file():
            lines = [rec for _, rec in read_json_records(Path(prompt))]
            for i, rec in enumerate(lines):
                if not isinstance(rec, dict) or "prompt_template" not in rec:
                    raise DataError(prompt, "not a FastChat judge prompt (needs prompt_template)", line=i + 1)
            self.fastchat = lines
            if prompt_id is not None and not any(r.get("prompt_id") == prompt_id for r in lines):
                ids = [r.get("prompt_id") for r in lines]
                raise UserError(f"{prompt}: no prompt_id {prompt_id} (the file has {ids})")
        else:
            if prompt_id is not None:
                raise UserError("--judge-prompt-id needs a FastChat judge-prompt JSONL as --judge-prompt")
            self.system = load_prompt(system or "judge_system.txt").strip()
            self.user = {k: load_prompt(prompt) if prompt else load_prompt(f"judge_{k}.txt") for k in ("general", "coding", "math")}
            for k, t in self.user.items():
                missing = [f for f in ("{question}", "{answer_1}", "{answer_2}") if f not in t]
                if missing:
                    raise UserError(f"{prompt or f'judge_{k}.txt'}: judge prompt lacks {', '.join(missing)}")

    def messages(self, question: str, category: str, answer_1: str, answer_2: str) -> tuple[list[dict], str]:
        fields = {"question": question, "answer_1": answer_1, "answer_2": answer_2, "answer_a": answer_1, "answer_b": answer_2}
        if self.fastchat is not None:
            rec = self._pick(category)
            fields["prompt"] = str((rec.get("defaults") or {}).get("prompt", ""))
            msgs = []
            if rec.get("system_prompt"):
                msgs.append({"role": "system", "content": rec["system_prompt"]})
            msgs.append({"role": "user", "content": fill_once(rec["prompt_template"], fields)})
            return msgs, f"fastchat:{rec.get('prompt_id', rec.get('name'))}"
        kind = _kind(category)
        return [{"role": "system", "content": self.system}, {"role": "user", "content": fill_once(self.user[kind], fields)}], kind

    def _pick(self, category: str) -> dict:
        assert self.fastchat is not None
        if self.prompt_id is not None:
            return next(r for r in self.fastchat if r.get("prompt_id") == self.prompt_id)
        kind = _kind(category)
        for want in (category.lower(), kind, "general"):
            for r in self.fastchat:
                if str(r.get("category", "")).lower() == want:
                    return r
        return self.fastchat[0]


# ---------------------------------------------------------------------------- aggregation


def average_orders(rows: list[dict]) -> list[float] | None:
    """Mean (a, b) over the orders that gave a verdict; None if none did."""
    got = [r["scores"] for r in rows if r.get("scores") is not None]
    if not got:
        return None
    return [sum(s[0] for s in got) / len(got), sum(s[1] for s in got) / len(got)]


def tally(per_question: list[dict]) -> dict[str, Any]:
    """Totals, A as % of B, wins/ties/losses over questions with scores."""
    scored = [q for q in per_question if q["scores"] is not None]
    total_a = sum(q["scores"][0] for q in scored)
    total_b = sum(q["scores"][1] for q in scored)
    wins = sum(1 for q in scored if q["scores"][0] > q["scores"][1])
    losses = sum(1 for q in scored if q["scores"][0] < q["scores"][1])
    return {
        "n": len(per_question),
        "n_scored": len(scored),
        "total_a": total_a,
        "total_b": total_b,
        "mean_a": total_a / len(scored) if scored else None,
        "mean_b": total_b / len(scored) if scored else None,
        "relative_a_to_b": 100.0 * total_a / total_b if total_b else None,
        "wins": wins,
        "ties": len(scored) - wins - losses,
        "losses": losses,
    }


# ----------------------------------------------------------------------------------- run


def _read_scores(config: Config, completion) -> tuple[list[float] | None, str]:
    from gpt4llm.scoring import expected_scores, parse_scores

    lo, hi = config.score_min, config.score_max
    if completion is None:
        return None, "failed"
    if config.scoring == "expected":
        if completion.top_logprobs:
            got = expected_scores(completion.top_logprobs, n=2, lo=lo, hi=hi)
            if got is not None:
                return got, "expected"
        got = parse_scores(completion.text, 2, lo=lo, hi=hi)
        return got, "parsed" if got is not None else "unparseable"
    got = parse_scores(completion.text, 2, lo=lo, hi=hi)
    return got, "parsed" if got is not None else "unparseable"


def _probe_missing(config: Config, requests: list, results: list, read: list) -> dict[int, list[float]]:
    """Expected scoring when the judge's reply shows no score positions (a weak judge that wrote
    prose): ask, in the same conversation, for each assistant's score as a bare number, with
    max 2 tokens and top_logprobs, and take the probability-weighted score at that position.
    Returns {judgment index: [score 1, score 2]} (presentation order) for the probes that worked."""
    from gpt4llm.prompts import fill, load_prompt
    from gpt4llm.scoring import probe_scores

    todo = [i for i, (got, _) in enumerate(read) if got is None and results[i].completion is not None]
    if not todo:
        return {}
    template = load_prompt("judge_probe.txt")
    lo, hi = config.score_min, config.score_max
    asks = [fill(template, k=str(k), lo=f"{lo:g}", hi=f"{hi:g}").strip() for k in (1, 2)]
    got = probe_scores(
        config.judge,
        [requests[i].messages + [{"role": "assistant", "content": results[i].completion.text}] for i in todo],
        [asks] * len(todo),
        [requests[i].key for i in todo],
        lo=lo, hi=hi, top_logprobs=config.top_logprobs, description="asking the judge for the missing scores",
    )
    return {i: vals for i, vals in zip(todo, got) if vals is not None}


def _print_table(summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    a, b = summary["model_a"], summary["model_b"]
    table = Table(title=f"LLM judge ({summary['judge']}, {summary['scoring']} scoring, orders: {summary['orders']}): A = {a}, B = {b}")
    for col in ("category", "scored", "total A", "total B", "A as % of B", "A wins", "ties", "B wins"):
        table.add_column(col, justify="left" if col == "category" else "right")

    def row(name: str, t: dict) -> None:
        rel = "-" if t["relative_a_to_b"] is None else f"{t['relative_a_to_b']:.1f}%"
        table.add_row(name, f"{t['n_scored']}/{t['n']}", f"{t['total_a']:.1f}", f"{t['total_b']:.1f}", rel, str(t["wins"]), str(t["ties"]), str(t["losses"]))

    for cat, t in summary["per_category"].items():
        row(cat, t)
    row("[bold]all", summary["overall"])
    console = Console(stderr=True)
    console.print(table)
    if summary["n_unparseable"] or summary["n_failed"]:
        console.print(f"[yellow]{summary['n_unparseable']} unparseable judge replies, {summary['n_failed']} failed requests (kept in judgments.jsonl with scores null)")


def run(config: Config) -> dict:
    from gpt4llm.llm import Request, SamplingParams, complete_all
    from gpt4llm.llm.summary import usage_totals
    from gpt4llm.provenance import write_manifest

    t0 = time.time()
    if config.score_min >= config.score_max:
        raise UserError(f"--score-min ({config.score_min}) must be below --score-max ({config.score_max})")
    ans_a, found_a = load_answers(config.answers_a)
    ans_b, found_b = load_answers(config.answers_b)
    model_a = config.model_a or found_a or config.answers_a.stem
    model_b = config.model_b or found_b or config.answers_b.stem
    if model_a == model_b:
        model_a, model_b = f"{model_a} (A)", f"{model_b} (B)"
    if config.questions is not None:
        questions = load_questions(config.questions, config.question_format)
    else:
        questions = []
        for qid, a in ans_a.items():
            if a["question"] is None:
                raise UserError(f"{config.answers_a}: answers in FastChat format need --questions")
            questions.append({"id": qid, "text": a["question"], "category": str(a.get("category") or "general")})
    # Join on the question id; response records whose id differs but whose instruction is the
    # question's text are matched by that text.
    for answers in (ans_a, ans_b):
        by_text = {a["question"].strip(): qid for qid, a in answers.items() if a.get("question")}
        for q in questions:
            if q["id"] not in answers and q["text"].strip() in by_text:
                answers[q["id"]] = answers[by_text[q["text"].strip()]]
    missing_a = [q["id"] for q in questions if q["id"] not in ans_a]
    missing_b = [q["id"] for q in questions if q["id"] not in ans_b]
    for path, missing in ((config.answers_a, missing_a), (config.answers_b, missing_b)):
        if missing:
            shown = ", ".join(repr(m) for m in missing[:5]) + (f" ... ({len(missing)} in all)" if len(missing) > 5 else "")
            raise UserError(f"{path}: no answer for question ids {shown}")
    if config.limit:
        questions = questions[: config.limit]

    prompts = JudgePrompts(config.judge_prompt, config.judge_prompt_id, config.judge_system)
    params = SamplingParams(
        max_tokens=config.max_tokens,
        temperature=config.temperature,
        top_logprobs=config.top_logprobs if config.scoring == "expected" else None,
    )
    orders = ("ab", "ba") if config.orders == "both" else ("ab",)
    requests, meta = [], []
    for q in questions:
        a, b = ans_a[q["id"]]["text"], ans_b[q["id"]]["text"]
        for order in orders:
            first, second = (a, b) if order == "ab" else (b, a)
            msgs, prompt_name = prompts.messages(q["text"], q["category"], first, second)
            requests.append(Request(key=f"{q['id']}:{order}", messages=msgs, params=params))
            meta.append((q, order, prompt_name))
    results = complete_all(config.judge, requests, description=f"judging {model_a} vs {model_b}")
    read = [_read_scores(config, res.completion) for res in results]
    probed = _probe_missing(config, requests, results, read) if config.scoring == "expected" else {}

    judgments: list[dict] = []
    for i, ((q, order, prompt_name), res) in enumerate(zip(meta, results)):
        got, method = read[i]
        if i in probed:
            got, method = probed[i], "expected-probe"
        scores = None if got is None else ([got[0], got[1]] if order == "ab" else [got[1], got[0]])
        judgments.append({
            "id": q["id"],
            "model_a": model_a,
            "model_b": model_b,
            "scores": scores,
            "order": order,
            "raw": res.completion.text if res.completion else None,
            "category": q["category"],
            "method": method,
            "prompt": prompt_name,
            "judge": config.judge.model,
            **({"error": res.error} if res.error else {}),
        })
    per_question = []
    for i, q in enumerate(questions):
        rows = judgments[i * len(orders) : (i + 1) * len(orders)]
        per_question.append({
            "id": q["id"],
            "category": q["category"],
            "model_a": model_a,
            "model_b": model_b,
            "scores": average_orders(rows),
            "order": "avg",
            "n_orders": sum(1 for r in rows if r["scores"] is not None),
        })
    categories: dict[str, list[dict]] = {}
    for pq in per_question:
        categories.setdefault(pq["category"], []).append(pq)
    usage = usage_totals(results)
    summary = {
        "metric": "judge",
        "model_a": model_a,
        "model_b": model_b,
        "judge": config.judge.model,
        "scoring": config.scoring,
        "orders": config.orders,
        "prompt": prompts.source,
        "n_questions": len(questions),
        "n_judgments": len(judgments),
        "n_unparseable": sum(1 for j in judgments if j["method"] == "unparseable"),
        "n_failed": sum(1 for j in judgments if j["method"] == "failed"),
        "n_parsed_from_text": sum(1 for j in judgments if j["method"] == "parsed"),
        "n_probed": sum(1 for j in judgments if j["method"] == "expected-probe"),
        "n_questions_without_scores": sum(1 for pq in per_question if pq["scores"] is None),
        "overall": tally(per_question),
        "per_category": {c: tally(rows) for c, rows in sorted(categories.items())},
        "usage": usage,
    }
    out = Path(config.output)
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / "judgments.jsonl", judgments)
    write_jsonl(out / "per_question.jsonl", per_question)
    write_json(out / "summary.json", summary)
    inputs = [config.answers_a, config.answers_b] + ([config.questions] if config.questions else [])
    if config.judge_prompt and Path(config.judge_prompt).is_file():
        inputs.append(Path(config.judge_prompt))
    brief = {k: v for k, v in summary.items() if k != "per_category"}
    write_manifest(out, STAGE, config, inputs=inputs, summary=json.loads(json.dumps(brief)), started=t0)
    _print_table(summary)
    return summary


def register(app) -> None:
    config_command(
        app,
        "judge",
        Config,
        run,
        help="Pairwise LLM judging of model A vs model B in both orders: totals, A as % of B, wins/ties/losses, per category.",
        arguments=("answers_a", "answers_b"),
    )
