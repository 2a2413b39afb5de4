# One task runner. `make up` and `make test` create .venv and install on a fresh clone by themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
BUF := npx --yes @bufbuild/buf@1.75.0

.PHONY: install up test lint format protos migrate bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## create .venv and install the project with its dev tools

up: $(STAMP) ## run the whole stack: embedded Postgres (unless DATABASE_URL), sandbox, both services
	$(BIN)/invites up

test: $(STAMP) ## the whole suite (TEST_DATABASE_URL if set, else an embedded Postgres)
	$(BIN)/pytest

lint: $(STAMP) ## ruff, ruff format --check, mypy strict, buf lint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BUF) lint

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

protos: $(STAMP) ## regenerate common/generated from protos/ (checked in; a test fails on drift)
	$(BIN)/python protos/generate.py

migrate: $(STAMP) ## apply migrations to DATABASE_URL
	$(BIN)/invites migrate

bench: $(STAMP) ## run the benchmarks (prints figures; needs BENCH_DATABASE_URL or a local Postgres)
	@for script in bench/*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
