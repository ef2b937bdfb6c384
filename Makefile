# Accord: every target does its own set-up, so a fresh clone needs only `make run` or `make test`.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install run test check format clean protos protos-check buf-lint bench

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

node_modules/.bin/buf: package.json
	npm install --no-audit --no-fund --no-package-lock --loglevel=error
	@touch $@

## protos: regenerate adapters/grpc/generated from protos/accord/v1
protos: install
	$(BIN)/python scripts/gen_protos.py

## protos-check: fail when the generated code is stale
protos-check: install
	$(BIN)/python scripts/gen_protos.py --check

buf-lint: node_modules/.bin/buf
	node_modules/.bin/buf lint

## run: set up, load the demo data set on first run, then serve Accord on ./accord.db
run: install protos
	$(BIN)/accord demo --if-empty
	$(BIN)/accord serve

## test: set up, then the whole suite on SQLite and on PostgreSQL
test: install protos-check
	@scripts/ensure-postgres
	$(BIN)/python -m pytest -n 2 --dist loadgroup

## bench: the performance benchmarks, each against baselines measured in the same run
## (docs/performance.md; never part of `make test`). BENCH_ARGS="--quick" or "--only 1 4".
bench: install
	@scripts/ensure-postgres
	PYTHONPATH=. $(BIN)/python -m bench.run $(BENCH_ARGS)

## check: lint, format, types (mypy --strict) and the layer contract
check: install buf-lint protos-check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis *.egg-info
