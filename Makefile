# The two commands of the README:
#   make demo   set everything up and run the demo pipeline on the embedded model (CPU)
#   make test   set everything up and run the test suite (what .ci/run calls)
# For development, `make test-fast` runs the fast unit subset only (no embedded model, no
# browser, no PostgreSQL; 1,473 tests in 2m33s on 2 cores, in 2 workers); `make test` still runs
# everything.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test test-fast lint install system-deps bench clean

demo: install
	$(BIN)/gpt4llm pipeline configs/demo.yaml

# Two passes. The unit tests (FAST_MARKERS: tiny models, fake servers, torch on one thread) run
# in WORKERS pytest-xdist processes, each taking whole files (a file's module fixtures are built
# once): on 2 cores one process left a core idle (2m33s vs 4m45s; README, "Development"). Then the
# rest in one process: the embedded model, trainings, servers, the browser and PostgreSQL tests
# use both cores alone. The heavy tests (a real vLLM server and engine, a Ray cluster: ~15 min
# more on 2 cores) run under CI=true (CI services set it); a developer's `make test` leaves them
# out. Both passes run; the target fails when either did.
# --durations: each pass ends with its 30 slowest steps, so the suite's time stays visible.
WORKERS ?= 2
UNIT = $(FAST_MARKERS) and not heavy
REST = not ($(UNIT))$(if $(filter true 1,$(CI)),, and not heavy)
test: install system-deps lint
	bash scripts/with-test-services.sh bash -c 'rc=0; \
	  $(BIN)/pytest -m "$(UNIT)" -n $(WORKERS) --dist loadfile --durations=30 || rc=1; \
	  $(BIN)/pytest -m "$(REST)" --durations=30 || rc=1; exit $$rc'

# ruff's rules (line length 100 included) and its formatter, on everything Python we ship.
lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

# The unit tests that need neither the embedded model (e2e/slow) nor services; no cache dir.
FAST_MARKERS := not e2e and not slow and not browser and not postgres
test-fast: install
	$(BIN)/pytest -q -p no:cacheprovider -m "$(FAST_MARKERS)" -n $(WORKERS) --dist loadfile \
	  $(PYTEST_ARGS)

install: $(VENV)/.installed

# torch is pinned to the CPU build first (a local wheel), so nothing later pulls a CUDA build;
# naming it again keeps the resolver from replacing it. `.[dev]` brings every extra but vllm.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]' torch==2.13.0
	touch $@

# Debian's Chromium (browser test) and PostgreSQL (web-app test); skipped where apt is unusable.
system-deps:
	bash scripts/install-system-deps.sh

bench: install
	for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) runs .pytest_cache
