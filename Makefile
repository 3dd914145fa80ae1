# The two commands of the quickstart: `make demo` and `make test`. Both set up .venv when needed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
EXAMPLE ?= examples/pipeline/workflow.toml

.PHONY: demo test lint typecheck pytest bench clean

demo: $(STAMP)
	$(BIN)/wayang run $(EXAMPLE)
	$(BIN)/wayang status

test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

# pytest exits 5 when it collected no test; say so plainly instead of failing obscurely.
pytest: $(STAMP)
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
