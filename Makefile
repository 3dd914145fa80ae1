# The two commands of the quickstart: `make demo` and `make test`. Both set up .venv when needed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
EXAMPLE ?= examples/pipeline/workflow.toml

.PHONY: demo test lint typecheck pytest browser direnv bench clean

demo: $(STAMP)
	$(BIN)/wayang run $(EXAMPLE)
	$(BIN)/wayang status

test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

# The Workbench's browser tests drive Debian's Chromium (never a downloaded one). Under CI=true
# they must run, so it is installed when missing; elsewhere they skip without it.
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
browser:
	@if [ "$$CI" = "true" ] && [ ! -x /usr/bin/chromium ]; then \
		echo "installing chromium and chromium-driver for the browser tests"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium chromium-driver; \
	fi

# The workspace tests run commands through direnv; under CI=true they must run, so the same.
direnv:
	@if [ "$$CI" = "true" ] && ! command -v direnv >/dev/null; then \
		echo "installing direnv for the workspace tests"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq direnv; \
	fi

# pytest exits 5 when it collected no test; say so plainly instead of failing obscurely.
pytest: $(STAMP) browser direnv
	@$(BIN)/pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest: no tests were collected"; exit 0; fi; exit $$rc

bench: $(STAMP)
	$(BIN)/python bench/expr_bench.py
	for w in chain fanout many trivial shell; do $(BIN)/python bench/wayang_bench.py --workload $$w; done
	$(BIN)/python bench/memory_bench.py
	$(BIN)/python bench/steps_bench.py --workload all

$(BIN)/python:
	@scripts/bootstrap-python.sh "$(PYTHON)"
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

clean:
	rm -rf $(VENV) build dist .mypy_cache .pytest_cache .ruff_cache src/*.egg-info
