"""Reading scores out of a judge's or rater's reply: from its text (the verdict it wrote), or
from the score tokens' probabilities at the positions where it wrote that verdict.

Shared by `compare` (one score per answer, or n in one reply) and `eval judge` (two scores per
pair, or a pairwise verdict). The one rule behind everything here: **a score is read from the
judge's own verdict, in the format the prompt asked for, or not at all.** Numbers the judge
merely repeats (the scale from the prompt, the question, the answers' arithmetic), list
markers and labels ("Assistant 2") are never scores, and when two verdicts in one reply
disagree the reply is unreadable (None) rather than guessed.

The formats, how a reply is read, what `source` says and how probability-weighted scores are
computed: README, "How a judge's reply is read" (its reference; the code is in formats.py,
masking.py, text.py, verdicts.py, probabilities.py and replies.py).
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
