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

Prompts
  Ours (prompts/judge_*.txt + judge_system.txt): pair prompts ask for the two scores alone on
  the first line ("8 6"), chosen by category (general, coding, math) or kind (reference,
  multi-turn); single prompts end with "Rating: [[7]]". `--judge-prompt` takes any .txt
  template instead (placeholders as FastChat's: {question} {answer_1} {answer_2} / {answer_a}
  {answer_b} / {answer} / {question_1} {question_2} {answer_a_1} ... / {ref_answer_1}), or a
  FastChat judge-prompt JSONL: MT-bench's (name, type, output_format "[[A]]" / "[[rating]]" /
  "[[rating_a,rating_b]]"; the line is picked by mode, turn and reference) or Vicuna-80's
  (prompt_id, category, defaults.prompt; picked by --judge-prompt-id or category). A "[[A]]"
  prompt gives verdicts (A, B or tie) rather than scores: wins/ties/losses and the win rate
  are then reported, the relative score is not. The prompts' exact texts are hashed into the
  summary (`prompt_sha256`), with the judge model id the endpoint reported (`judge_reported`),
  so `gpt4llm report` can refuse to compare runs silently across judges or prompts.

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

`--from-judgments FILE` summarises a FastChat judgment file instead of calling a judge (its
pair records become our two orders, g1 showing model_1 first); answers, when given, add the
length statistics and must answer every judged question.

Inputs
  questions   Vicuna-80 {question_id, text, category}, MT-bench {question_id, category, turns},
              or Alpaca-style {id, instruction, input, category?}. Optional when the answers
              are our response records (the question is then their instruction + input).
  answers     our response records {id, instruction, input, output, model} (two-turn ones with
              `turns`), FastChat llm_judge answers {question_id, model_id, choices: [{turns}]}
              or Vicuna-80's {question_id, text, model_id} -- detected per file.

Outputs (directory)
  judgments.jsonl     one judge record per question, turn, order and sample. Pair: {id, turn,
                      model_a, model_b, scores: [a, b] | null (always in (A, B) order whatever
                      the presentation order), winner: model_a | model_b | tie | null, order:
                      ab | ba, sample, raw, category, method, prompt, judge, judge_reported,
                      len_a, len_b}; single: {id, turn, model, score, ...}. Failed requests and
                      unreadable replies are kept with null scores and counted.
  per_question.jsonl  one aggregated row per question and turn (pair: mean over orders; single:
                      per model).
  summary.json        the numbers above; manifest.json the run's provenance.
  fastchat/           the same answers and judgments in FastChat's formats:
                      model_answer/<model>.jsonl and model_judgment/<judge>_pair.jsonl or
                      <judge>_single.jsonl (readable by FastChat's show_result.py).
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
