# The two commands of the README:
#   make demo   set everything up and run the demo pipeline on the embedded model (CPU)
#   make test   set everything up and run the test suite (what .ci/run calls)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test install system-deps bench clean

demo: install
	$(BIN)/gpt4llm pipeline configs/demo.yaml

test: install system-deps
	bash scripts/with-test-services.sh $(BIN)/pytest

install: $(VENV)/.installed

# torch is pinned to the CPU build first, so nothing later pulls a CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# Debian's Chromium (browser test) and PostgreSQL (web-app test); skipped where apt is unusable.
system-deps:
	bash scripts/install-system-deps.sh

bench: install
	for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) runs .pytest_cache
