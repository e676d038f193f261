"""`gpt4llm eval judge`: LLM-as-judge evaluation, pairwise (the paper's GPT-4 evaluation on the
80 Vicuna questions) or single-answer grading (MT-bench), with numbers that say how sure they are.

Modes
  pair    (default) the judge sees the question and the answers of model A and model B. Each
          pair is judged in both orders (A shown first, then B shown first) because judges
          favour a position; a question's scores are the mean over the orders that gave one.
          Reported: totals, A's total as a percentage of B's (the paper's "relative score"),
          wins/ties/losses and the win rate ((wins + ties/2) / decided), per category and turn.
  single  the judge grades each answer alone on 1-10 ("Rating: [[7]]", MT-bench's single-answer
          grading) for model A (and B when given). Reported: the MT-bench score (the mean over
          every graded question and turn, as FastChat's show_result), per turn and per category.

Turns (MT-bench)
  Questions with two turns are judged per turn, as FastChat does: turn 1 on the first answer;
  turn 2 with the multi-turn prompts, where the judge reads the whole conversation and grades
  the answer to the follow-up. `--turns first|second|all` (all: every turn the questions have;
  answers must then carry both turns -- `gpt4llm respond` writes them from an MT-bench file).

References
  `--references FILE` (FastChat's reference-answer format) turns on reference-guided grading
  for the categories in `--reference-categories` (math, reasoning, coding, as FastChat's
  NEED_REF_CATS): those questions use the reference prompts, which show the reference answer.

Prompts, inputs and outputs: the README's "`eval judge` reference" (the prompts' placeholders
and FastChat/Vicuna-80 prompt files, the question and answer formats, every output file).

Replies are read by `gpt4llm.scoring` in the output format the prompt asks for (a prompt file's
`# output_format:` first line, a FastChat line's output_format, else `scoring.detect_format`),
with the text sent to the judge as `prompt=` so numbers the reply merely copies are never
scores. With `--scoring expected` the scores are probability-weighted at the verdict's tokens
(G-Eval style; `scoring.read_expected`; an endpoint that returns `top_logprobs`, or a local
model); when a reply holds no verdict, the judge is asked in the same conversation for each
score as a bare number (prompts/judge_probe.txt, judge_probe_single.txt). Numbers guessed from
prose without asking never decide a win. Replies without token probabilities are read from the
text and counted (`n_without_probabilities`).

Reliability (summary.json, the console table and `gpt4llm report`)
  * bootstrap 95% intervals of the relative score, the win rate and the MT-bench score,
    resampling questions (both turns of a question together); `--bootstrap N`, `--seed S`;
  * position consistency: the share of pairs whose verdict flips when the order is swapped,
    and how often the first-shown answer wins;
  * length bias: how often the longer answer wins, and a length-adjusted win rate (no
    difficulty term: `judge_stats.length_controlled_win_rate`, AlpacaEval 2's GLM in its
    minimal form, named so) next to the raw win rate of the same rows; AlpacaEval's own LC,
    with its difficulty term, is `gpt4llm.evaluate.alpaca_eval`;
  * how each number was read (`reading`): every prompt's output format, and how many replies
    were read by that format's exact rule, by a fallback, from probabilities or a probe;
  * `--samples K` (needs --temperature > 0): each judgment is sampled K times with distinct
    seeds; scores and verdicts are the median over the samples, and the overall numbers of
    each sample are reported with their median and spread.
  Verdicts from scores: the higher score wins, equal scores tie. A question's verdict: from
  its averaged scores, or, for verdict prompts, FastChat's rule (both orders agree, else tie).

A failed request and an unreadable reply are both a judgment without a verdict: kept with null
scores, listed in failed.jsonl with the reason, and when more than `--max-failed-fraction` of
the judgments have none the run fails (exit 1) and leaves an earlier output directory as it
was. Outputs are checked before the first call (`outputs.check_outputs`); answers are lined up
with the questions by the package's one join rule (`--join`; FastChat answers join on
question_id). The request cache makes a killed run resume without paying twice.

Panels and continuity
  `--judge` repeated (or `--judge-panel FILE`): every judge judges everything, the verdict is
  the panel's majority (pair) or mean grade (single), with per-judge numbers (judge/panel.py).
  Each judgment records the model id the endpoint reported; a judge that reports another id
  than before is refused unless `--allow-judge-change`; `--recalibrate N` re-judges N past the
  cache and reports agreement, Cohen's kappa and the score shift (judge/continuity.py).

`--from-judgments FILE` summarises a FastChat judgment file instead of calling a judge (its
pair records become our two orders, g1 showing model_1 first); answers, when given, add the
length statistics and must answer every judged question.
"""

from gpt4llm.evaluate.fastchat_io import load_answers, load_questions
from gpt4llm.evaluate.judge.config import STAGE, Config
from gpt4llm.evaluate.judge.plan import load_inputs
from gpt4llm.evaluate.judge.prompts import JudgePrompts
from gpt4llm.evaluate.judge.run import run
from gpt4llm.evaluate.judge.summary import average_orders, tally

__all__ = [
    "STAGE",
    "Config",
    "JudgePrompts",
    "average_orders",
    "load_answers",
    "load_inputs",
    "load_questions",
    "run",
    "tally",
]
