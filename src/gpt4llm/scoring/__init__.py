"""Reading scores out of a judge's or rater's reply: from its text (the verdict it wrote), or
from the score tokens' probabilities at the positions where it wrote that verdict.

Shared by `compare` (one score per answer, or n in one reply) and `eval judge` (two scores per
pair, or a pairwise verdict). The one rule behind everything here: **a score is read from the
judge's own verdict, in the format the prompt asked for, or not at all.** Numbers the judge
merely repeats (the scale from the prompt, the question, the answers' arithmetic), list
markers and labels ("Assistant 2") are never scores, and when two verdicts in one reply
disagree the reply is unreadable (None) rather than guessed.

Output formats (`format=`; `detect_format(prompt)` recognises them in a prompt)
  first_line     the n scores alone on the first line: "8 7", "8, 7", "Scores: 8/10 7/10".
                 Vicuna-80's general and coding review prompts; our judge_*.txt.
  tuple_end      a tuple of the n scores after the judge's own working, usually at the end:
                 "Output: (1, 7)", "the scores are (1, 5) for Assistant 1 and Assistant 2".
                 Vicuna-80's math review prompt ("output a Python tuple"): the judge solves
                 the problem first, so the text before the verdict is full of numbers.
  rating         "[[x]]", as in "Rating: [[5]]" (MT-bench single-answer grading); FastChat's
                 backup "[x]" is read only when no "[[x]]" is present.
  pair_brackets  "[[x, y]]" (FastChat's "[[rating_a,rating_b]]"), backup "[x, y]".
  labelled       one labelled score per answer, "Answer 1: 8" (our rater_batched.txt), or
                 "Score: 8" for a single answer (our rater_single.txt).
  verdict        "[[A]]", "[[B]]" or "[[C]]" (tie) -- MT-bench pairwise; read with
                 `read_verdict`/`parse_verdict`, not as scores.
  auto           no declared format: every reading below is tried.

How a reply is read (`read_scores`)
  1. Text that is not a verdict is masked first: anything the reply copies from the prompt
     (pass `prompt=`, the text the judge was sent: a window of ~16 characters around a number
     that also occurs in the prompt is an echo), scale descriptions ("on a scale of 1 to 10",
     "from 1 (useless) to 10 (excellent)", "(1: no code; 10: perfect)"), denominators ("/10",
     "out of 10"), labels ("Assistant 2", "Answer B", "Step 3"), list markers ("1. ", "2) "),
     examples ('for example "7 5"'), and arithmetic ("f(2) = 5(8) - 4 + 3", "2^3", negative
     numbers, "80%", "5:30"). Counts ("3 tips", "2 examples") and ranges ("6 or 7") are no
     scores either.
  2. Every verdict the reply writes is collected: "[[x]]"/"[[x, y]]" brackets; a first line
     holding nothing but scores; another line holding nothing but scores ("Scores: 7 5", or a
     bare "9 4" as the last line); a tuple "(x, y)" introduced as the verdict ("Output:",
     "the scores are", "tuple", "... for Assistant 1 and Assistant 2"); one labelled score per
     answer ("Assistant 1: 8/10 ... Assistant 2: 7/10", "I would give Assistant 1 a score of
     1 and Assistant 2 a score of 10", a section "Assistant 1: ... Therefore, the score is 1.");
     for one score, "Score: 8" at a line start, or "I'd rate this answer a 6".
  3. The format the prompt asked for comes first; explicit verdicts (brackets, score lines, a
     verdict tuple, a labelled block introduced by "Scores"/"/10") count next; weaker ones
     (an unintroduced labelled block, a score phrase in prose) only when no explicit verdict
     exists (a bare "Assistant 1: 9 / Assistant 2: 5" block that contradicts an explicit
     verdict still makes the reply unreadable); a short reply holding exactly n plausible
     numbers ("I'd say 8 and 7") last. All readings of the winning strength must agree: two
     different verdicts (a first line "8 7" and a final "(6, 9)", "[[A]]" and "[[B]]") make
     the reply unreadable.
  4. A verdict with a number outside [lo, hi] ("0 9" on a 1-10 scale) or with the wrong count
     of scores (a first line "8" where two were asked) is unreadable -- never completed from
     other numbers of the reply.
  Numbers written as words ("eight seven") are read when digits give no verdict at all.

Where each score was read is returned (`ParsedScores.spans`, character offsets), and `source`
says how the numbers were obtained:
  verdict        read from the reply's own verdict text (above);
  probabilities  probability-weighted at the positions of that verdict (`read_expected`);
  probe          probability-weighted from the judge's answer to a follow-up "reply with the
                 number only" question (`probe_scores`), asked when the reply held no verdict;
  guess          probability-weighted at positions where a judge that wrote NO number could
                 have written one (G-Eval on a weak model's prose; opt-in, `guess_min_mass`);
  none           nothing read (`how` then says why: empty, no-score, conflict, out-of-range,
                 malformed).
`from_verdict(source, use_expected)` is the rule for what may rank answers (a preference pair,
a win): the reply's verdict, or with probability-weighted scoring its probabilities or a probe.

Probability-weighted scoring (`read_expected`, `expected_scores`, `score_positions`): the
top-k alternatives at each generated position (OpenAI `top_logprobs`, or the local
backend's). The generated token at each position is taken to be the most probable alternative
(judges run greedily); the tokens are aligned with the reply text, the text is read with the
same rules as above, and the score is the expectation over the score tokens' probabilities,
renormalised to sum to one, at the token where each verdict number starts (G-Eval). A list
marker or a repeated scale therefore never becomes a score position. `score_positions` and
`expected_score(s)` keep G-Eval's fallback for a judge that wrote no number at all (`min_mass`,
default 0.25: positions where score tokens hold that share of the probability); `read_expected`
guesses only when asked (`guess_min_mass`) and then says so (source "guess").

  "10" in tokenizers that split digits ("1" then "0", as Llama/Gemma do): when the generated
  token is "1", the probability of "0" at the next position (conditioned on that "1") splits
  the "1" mass into 10 (p1 * p0) and 1 (p1 * (1 - p0)). When another digit was generated we
  cannot see what would have followed a "1", so an alternative "1" counts as the score 1 --
  a conservative choice: for a judge it is the rare, low end. Tokenizers with a single "10"
  token (GPT-4's) need nothing special: "10" is read as 10.

A prompt file declares its format with a first line `# output_format: NAME`
(`declared_format` returns it and the text without that line, which is what the judge must
be sent); a FastChat judge-prompt JSONL line declares it in its `output_format` field
("[[rating]]", "[[A]]", "[[rating_a,rating_b]]"); otherwise `detect_format` recognises the
wording of FastChat's, Vicuna-80's and our packaged prompts, and falls back to "auto".
"""

from __future__ import annotations

from gpt4llm.scoring.formats import (
    EXACT_READINGS,
    FORMATS,
    ParsedScores,
    ParsedVerdict,
    declared_format,
    detect_format,
    from_verdict,
    reading_is_exact,
)
from gpt4llm.scoring.probabilities import (
    expected_score,
    expected_scores,
    probe_scores,
    read_expected,
    score_positions,
)
from gpt4llm.scoring.replies import Reading, read_replies, read_reply, sent_text
from gpt4llm.scoring.text import parse_scores, read_scores
from gpt4llm.scoring.verdicts import parse_verdict, read_verdict

__all__ = [
    "EXACT_READINGS",
    "FORMATS",
    "ParsedScores",
    "ParsedVerdict",
    "Reading",
    "declared_format",
    "detect_format",
    "expected_score",
    "expected_scores",
    "from_verdict",
    "parse_scores",
    "parse_verdict",
    "probe_scores",
    "read_expected",
    "read_replies",
    "read_reply",
    "read_scores",
    "read_verdict",
    "reading_is_exact",
    "score_positions",
    "sent_text",
]
