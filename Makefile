# Control Site QMS — developer entry points. `make help` lists them.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
UV_VERSION := 0.13.9
VENV := .venv
BIN := $(VENV)/bin
# The installed environment is stamped with the lock's hash: a changed lock reinstalls.
LOCK_SHA := $(shell sha256sum requirements.lock 2>/dev/null | cut -c1-16)
STAMP := $(VENV)/.installed-$(LOCK_SHA)

# The demo: its own SQLite file and media under var/demo, tasks in-process, DEBUG on.
DEMO_VAR := $(CURDIR)/var/demo
DEMO_DATABASE_URL ?= sqlite:///$(DEMO_VAR)/controlsite.sqlite3
DEMO_PORT ?= 8000
DEMO_ENV := CONTROLSITE_ENV=development DJANGO_DEBUG=true CONTROLSITE_VAR_DIR=$(DEMO_VAR) \
	DATABASE_URL=$(DEMO_DATABASE_URL) CELERY_BROKER_URL=
MANAGE := $(BIN)/python manage.py

# `make test ARGS="-k certify -x"` passes ARGS to pytest.
ARGS ?=
# The suite runs on every core (pytest-xdist, one test database per worker); 0 runs it in one process.
TEST_WORKERS ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: help install demo serve totp test fuzz lint bench lock clean-demo

help: ## List the targets
	@echo "Control Site QMS"
	@echo
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'
	@echo
	@echo "  Variables: ARGS (pytest arguments), TEST_WORKERS, USER (for totp), DEMO_PORT, DEMO_DATABASE_URL"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(BIN)/uv: | $(BIN)/python
	$(BIN)/pip install -q --disable-pip-version-check uv==$(UV_VERSION)

$(STAMP): requirements.lock | $(BIN)/uv
	$(BIN)/uv pip sync -q --require-hashes --python $(BIN)/python requirements.lock
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP) ## Create .venv and install the locked dependencies (skipped if the lock is unchanged)

demo: $(STAMP) ## Migrate a local SQLite demo, create the demo logins, serve http://127.0.0.1:8000
	@mkdir -p $(DEMO_VAR)
	@echo "Migrating the demo database ($(DEMO_DATABASE_URL))"
	@$(DEMO_ENV) $(MANAGE) migrate --noinput -v 0
	@$(DEMO_ENV) $(MANAGE) demo_setup
	@echo "Serving http://127.0.0.1:$(DEMO_PORT)/ — sign in with a login above. Ctrl-C stops it."
	@$(DEMO_ENV) $(MANAGE) runserver 127.0.0.1:$(DEMO_PORT)

serve: $(STAMP) ## Serve the demo database again (no migrate, no setup)
	@$(DEMO_ENV) $(MANAGE) runserver 127.0.0.1:$(DEMO_PORT)

totp: $(STAMP) ## Print a demo user's current TOTP code: make totp USER=qp
	@if [ "$(origin USER)" != "command line" ]; then \
		echo "Name the demo user: make totp USER=qp (or USER=admin)" >&2; exit 2; fi
	@$(DEMO_ENV) $(MANAGE) totp_code "$(USER)"

test: $(STAMP) ## Run the test suite (DATABASE_URL / CELERY_BROKER_URL pick PostgreSQL / a real worker)
	@rc=0; $(BIN)/pytest -p no:playwright -n $(TEST_WORKERS) $(ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then \
		echo "make test: pytest collected no tests (exit 5). Check the path or -k expression in ARGS." >&2; \
	fi; \
	exit $$rc

fuzz: $(STAMP) ## Fuzz every API operation with fresh random inputs (FUZZ_EXAMPLES, default 300)
	FUZZ_RANDOM=1 FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-300} $(BIN)/pytest -p no:playwright -n $(TEST_WORKERS) \
		tests/controlsite/test_api_fuzz.py $(ARGS)

lint: $(STAMP) ## ruff check, ruff format --check, mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

bench: $(STAMP) ## Benchmarks against a same-run baseline (uses DATABASE_URL if set)
	DJANGO_SETTINGS_MODULE=controlsite.settings.test $(BIN)/python -m tests.bench.run $(ARGS)

lock: | $(BIN)/uv ## Re-resolve requirements.lock from pyproject.toml (with hashes)
	$(BIN)/uv pip compile -q pyproject.toml --extra dev --generate-hashes \
		-o requirements.lock --python-version 3.11

clean-demo: ## Delete the demo database and files (var/demo)
	rm -rf $(DEMO_VAR)
