# Two commands do all the set-up on a fresh machine:
#   make demo   build the virtual environment, generate a small corpus, ingest it, query it
#   make test   build the virtual environment and run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint format bench ui clean mutation

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install "torch==2.14.1" "torchvision==0.29.1"
	$(BIN)/pip install -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/lakehouse demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/pytest

test-fast: $(STAMP)
	$(BIN)/pytest -m "not slow" -x

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

ui: $(STAMP)
	$(BIN)/lakehouse ui

# mutation testing of the safety-critical modules (docs/testing.md); not part of `make test`
mutation: $(STAMP)
	HYPOTHESIS_PROFILE=deep $(BIN)/python tests/mutation.py

bench: $(STAMP)
	$(BIN)/python bench/bench_keyframes.py

clean:
	rm -rf $(VENV) lakehouse_data demo_corpus exports .pytest_cache .ruff_cache
