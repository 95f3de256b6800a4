# chime-roster: `make test` from a fresh clone installs into .venv and runs the whole suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/test

.PHONY: install prerequisites test test-postgres test-sqlite lint bench migrate demo

$(BIN)/.installed: requirements.txt requirements-dev.txt
	@echo "installing into $(VENV): pip says what it fetches (the first time takes a minute or two)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --progress-bar off --disable-pip-version-check -r requirements-dev.txt
	touch $@

install: $(BIN)/.installed

# PostgreSQL and Redis answering (started when not), Debian's Chromium (installed when not), or
# a stop at once with the one command to run.
prerequisites:
	@tests/setup/prerequisites.sh

# The whole suite on PostgreSQL, then again on the embedded SQLite default (what needs
# PostgreSQL's row locks or other processes is deselected there).
test: prerequisites lint test-postgres test-sqlite

test-postgres: install prerequisites
	DATABASE_URL=$(TEST_DATABASE_URL) $(BIN)/pytest

test-sqlite: install prerequisites
	DATABASE_URL=sqlite:///$(CURDIR)/db.sqlite3 $(BIN)/pytest -q

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: install
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.burst_ingest
	$(BIN)/python -m bench.batch_cost
	$(BIN)/python -m bench.live_bench
	$(BIN)/python -m bench.list_bench
	$(BIN)/python -m bench.family_bench
	$(BIN)/python -m bench.reconcile_bench
	$(BIN)/python -m bench.hooks_bench
	$(BIN)/python -m bench.ceiling_bench

migrate: install
	$(BIN)/python manage.py migrate

# Everything on one machine with simulated meetings; prints the URL and a login; Ctrl-C stops it all.
demo: install
	$(BIN)/python manage.py demo
