"""The `annotate_init` pipeline stage: create a study from a pipeline's response files (or an
`eval judge` run, `from_judge`).

Same config, output and function as `gpt4llm annotate init`; the admin token is printed once on
stdout, as there, and is never part of the returned summary.
"""

from __future__ import annotations

from gpt4llm.evaluate.human.study.init import InitConfig as Config
from gpt4llm.evaluate.human.study.init import run_init as run

__all__ = ["Config", "run"]
