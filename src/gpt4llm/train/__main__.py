"""`python -m gpt4llm.train NAME --config FILE.yaml`: one training process of `gpt4llm train NAME`.

This is what `--launcher accelerate` runs in every process (`accelerate launch -m gpt4llm.train
sft --config OUTPUT/launch_config.yaml`). The trainer module is imported under its own name
(not run as `__main__`), so there is exactly one copy of it in the process.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    import importlib

    from gpt4llm.stages import STAGES

    args = sys.argv[1:] if argv is None else argv
    trainers = {s.name: s for s in STAGES if s.group == "train"}
    if not args or args[0] not in trainers:
        sys.exit(f"usage: python -m gpt4llm.train {{{','.join(sorted(trainers))}}} --config FILE")
    importlib.import_module(trainers[args[0]].module).main(args[1:])


if __name__ == "__main__":
    main()
