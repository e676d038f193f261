"""Human evaluation studies: create one from model answers, add annotators, export results.

- `inputs`: what a study is built from — the criteria, and the models' answers (source files
  lined up by the package's join rule, or an `eval judge` run);
- `store`: the study's files and database — study.json, the database URL, the session-signing
  key, opening the database (and upgrading an older one), adding annotators;
- `init`: `annotate init` and the `annotate_init` pipeline stage;
- `export`: `annotate export` — win/tie/loss, majority, agreement, pie charts, raw votes and
  FastChat-format human judgments.

The names below are the study's API (the CLI, the pipeline stage and the benchmarks use it).
"""

from gpt4llm.evaluate.human.study.export import ExportConfig, export_study
from gpt4llm.evaluate.human.study.init import InitConfig, init_study, run_init
from gpt4llm.evaluate.human.study.store import (
    add_annotator,
    annotator_link,
    open_store,
    read_study,
    session_secret,
)

__all__ = [
    "ExportConfig",
    "InitConfig",
    "add_annotator",
    "annotator_link",
    "export_study",
    "init_study",
    "open_store",
    "read_study",
    "run_init",
    "session_secret",
]
