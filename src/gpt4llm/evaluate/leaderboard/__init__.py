"""`gpt4llm eval leaderboard`: rank N models from pairwise verdicts, with intervals.

Input: the answers of N models on the same questions (any answers file `eval judge` reads) and
either `--baseline MODEL` (Arena-Hard / AlpacaEval style: every model against the baseline on
every question) or a round-robin of model pairs (`--pairs-per-question K` judges K pairs per
question, cycling through every pair). Each pair is judged by `eval judge`'s own run (both
orders, the request cache, resume, batch mode, fleets) into pairs/<a>__vs__<b>/; a killed run
resumes from the cache and pays nothing twice. The judge settings are eval judge's own
(`JudgeSettings`: the judge or a panel, prompt, references, --scoring, --samples, ...), passed to
each judge run unchanged; one battle per pair, question, turn and order, its samples pooled by
their median and a panel's judges by majority (`battles.order_verdicts`).

Output (summary.json, verdicts.jsonl, forest.png; `gpt4llm report` shows them):
  * Bradley-Terry ratings on the Elo scale (400, base 10, 1000; the baseline anchored at 1000,
    else the mean), with 95% bootstrap intervals (questions resampled) -- `fit` says how;
  * each model's wins/ties/losses and win rate (ties as half) against the baseline, and the
    win rate the ratings predict with its interval (Arena-Hard's score);
  * rank, Chatbot Arena's upper-bound rank, rank stability (the share of bootstrap rounds in
    which a model keeps its rank), separability (the share of model pairs whose intervals do
    not overlap);
  * the ratings with style control (length, headers, lists, bold as covariates);
  * with `--single`, each model's MT-bench score (single grading) and Spearman's and
    Kendall's rank correlation with the ratings.

`--from-judgments FILE...` reads FastChat MT-bench judgment files instead of calling a judge:
FastChat `show_result.py`'s tables (pairwise-baseline with --baseline, else pairwise-all; single
scores per turn and on average) and the ratings of the pair judgments, one battle per judgment
under show_result's rule (games that disagree are a tie). Judgment files hold no answers, so
there is no style control there.
"""

from gpt4llm.evaluate.leaderboard.config import STAGE, Config
from gpt4llm.evaluate.leaderboard.run import run

__all__ = ["STAGE", "Config", "run"]
