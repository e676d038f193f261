"""Every packaged judge and rater prompt declares the output format its replies are read in,
and the declaration, not the wording, decides how they are read."""

from __future__ import annotations

from importlib import resources

import pytest

from gpt4llm.prompts import UNDECLARED_JUDGE_PROMPTS, load_prompt
from gpt4llm.scoring import FORMATS, declared_format, detect_format

JUDGE_PROMPTS = sorted(
    p.name
    for p in resources.files("gpt4llm.prompts").iterdir()
    if p.name.endswith(".txt") and p.name.startswith(("judge_", "rater_"))
)


def test_the_judge_prompts_are_found():
    assert len(JUDGE_PROMPTS) >= 15 and set(UNDECLARED_JUDGE_PROMPTS) <= set(JUDGE_PROMPTS)


@pytest.mark.parametrize("name", JUDGE_PROMPTS)
def test_every_judge_prompt_declares_its_format(name):
    fmt, body = declared_format(load_prompt(name))
    if name in UNDECLARED_JUDGE_PROMPTS:
        assert fmt is None
        return
    assert fmt in FORMATS and fmt != "auto", f"{name} declares no output format"
    assert not body.startswith("#")  # the declaration is never sent to the judge
    # the wording never asks for another format (it may not name one at all) ...
    assert detect_format(body) in (fmt, "auto")
    # ... and a rewording that no longer says so leaves the reading as declared
    reworded = "# output_format: " + fmt + "\nPlease review the answers below.\n{question}\n"
    assert declared_format(reworded)[0] == fmt and detect_format(reworded) == fmt
