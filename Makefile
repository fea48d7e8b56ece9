# FastCMS: `make run` serves the demo on http://127.0.0.1:8000, `make test` runs the test suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint format bench bench-write bench-indexed clean

$(BIN)/.runtime: requirements.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	@touch $@

$(BIN)/.dev: $(BIN)/.runtime requirements-dev.txt
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	@touch $@

# Local development settings, written once: DEBUG on and a random secret key.
.env:
	@$(PYTHON) -c "import secrets; print('DEBUG=true'); print('SECRET_KEY=' + secrets.token_urlsafe(50))" > $@
	@echo "wrote .env (DEBUG=true and a new SECRET_KEY)"

run: $(BIN)/.runtime .env
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py collectstatic --noinput -v0
	$(BIN)/python manage.py load_demo
	$(BIN)/uvicorn fastcms.asgi:application --host $(HOST) --port $(PORT) --timeout-graceful-shutdown 5

test: $(BIN)/.dev
	$(BIN)/python -m pytest

lint: $(BIN)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(BIN)/.dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# make bench BENCH_ARGS='--quick' or BENCH_ARGS='--workloads write_latency,write_throughput'
bench: $(BIN)/.dev
	$(BIN)/python -m bench $(BENCH_ARGS)

# What the Redis backend's outbox costs a REST create (needs PostgreSQL and Redis).
bench-write: $(BIN)/.dev
	$(BIN)/python -m bench.write_path

# A range-filtered, ordered list of 1,000,000 records with and without `indexed` (needs PostgreSQL).
bench-indexed: $(BIN)/.dev
	$(BIN)/python -m bench.indexed

clean:
	rm -rf $(VENV) staticfiles .pytest_cache .ruff_cache .hypothesis
