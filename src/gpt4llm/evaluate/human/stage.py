"""The `annotate_init` pipeline stage: create a study from a pipeline's response files.

Same config and output as `gpt4llm annotate init`; the admin token is printed once, as there.
"""

from __future__ import annotations

from gpt4llm.evaluate.human.cli import _run_init as run
from gpt4llm.evaluate.human.study import InitConfig as Config

__all__ = ["Config", "run"]
