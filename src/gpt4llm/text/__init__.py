"""Text measures shared by `eval rouge`, `analyze` and the stages, below all of them (this package
imports nothing from `stages`, `evaluate` or `analyze`):

* `tokens` -- rouge-score's tokenizer (and the character tokenizer for CJK/Thai), the
  decontamination tokens, and the token -> code-point encoding rapidfuzz compares;
* `rouge` -- ROUGE-1/2/L F-measures of token lists, rouge-score's numbers, fast;
* `ngrams` -- the n-gram index of evaluation texts that `audit` checks training records against;
* `dedup` -- exact and near-duplicate texts (ROUGE-L F1 >= a threshold), blockwise;
* `novelty` -- Self-Instruct's growing pool and its ROUGE-L novelty test (`instruct`).

Nothing heavy is imported here: rapidfuzz, numpy and NLTK load on first use.
"""
