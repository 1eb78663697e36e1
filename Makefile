# Two commands do everything on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
PYTHON_VERSION := $(shell cat .python-version)
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
STAMP := $(VENV)/.installed

# The interpreter named by .python-version: pyenv's when it has it, else pythonX.Y on PATH.
PYTHON ?= $(shell (command -v pyenv >/dev/null 2>&1 && pyenv which python 2>/dev/null) || command -v python$(PYTHON_VERSION))

.PHONY: run test lint format system-deps browser-deps clean prod-local bench

DEV_STAMP := $(VENV)/.installed-dev

# The server's packages only (requirements.txt): what `make run` needs.
$(STAMP): requirements.txt .python-version
	@if [ ! -x "$(PY)" ] || ! $(PY) -c 'import sys; v = "$(PYTHON_VERSION)".split("."); sys.exit(list(map(str, sys.version_info[:len(v)])) != v)'; then \
		test -n "$(PYTHON)" || { echo "Python $(PYTHON_VERSION) is needed (see .python-version)"; exit 1; }; \
		rm -rf $(VENV); \
		echo "Creating $(VENV) with $(PYTHON)"; \
		$(PYTHON) -m venv $(VENV); \
	fi
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $(STAMP)

# Plus the tests and the development tools (requirements-dev.txt), for test, lint and bench.
$(DEV_STAMP): $(STAMP) requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $(DEV_STAMP)

run: $(STAMP)
	$(PY) manage.py migrate --noinput
	@echo "Chat is at http://$(HOST):$(PORT)/  (the first visit creates the admin account)"
	exec $(PY) -m chatsite.serve -b $(HOST) -p $(PORT) chatsite.asgi:application

# The production profile on this machine: PostgreSQL, the Redis channel layer and two Daphne
# workers sharing them (put nginx or any WebSocket-aware proxy in front for one address).
PROD_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/chat
PROD_REDIS_URL ?= redis://127.0.0.1:6379/0
PROD_PORTS ?= 8001 8002

prod-local: $(STAMP)
	@$(PY) -c 'import sys, psycopg; from urllib.parse import urlsplit; u = urlsplit(sys.argv[1]); name = u.path.lstrip("/"); \
	c = psycopg.connect(sys.argv[1].replace("/" + name, "/postgres", 1), autocommit=True); \
	c.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() or c.execute(f"CREATE DATABASE \"{name}\"")' $(PROD_DATABASE_URL)
	DATABASE_URL=$(PROD_DATABASE_URL) REDIS_URL=$(PROD_REDIS_URL) $(PY) manage.py migrate --noinput
	@trap 'kill 0' INT TERM EXIT; \
	for port in $(PROD_PORTS); do \
		echo "Worker on http://$(HOST):$$port/"; \
		DATABASE_URL=$(PROD_DATABASE_URL) REDIS_URL=$(PROD_REDIS_URL) $(PY) -m chatsite.serve -b $(HOST) -p $$port chatsite.asgi:application & \
	done; \
	wait

test: $(DEV_STAMP) system-deps lint
	$(PY) -m pytest

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(DEV_STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# What the tests drive besides Python: Debian's Chromium (browser tests), nginx (the deployment's
# site config, with real workers behind it) and PgBouncer (transaction pooling). Installed when
# missing and we may (root with apt-get); otherwise the tests that need them skip, saying why.
SYSTEM_PACKAGES := chromium:chromium nginx:nginx-light pgbouncer:pgbouncer
system-deps:
	@missing=""; for pair in $(SYSTEM_PACKAGES); do \
		command -v "$${pair%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/$${pair%%:*}" ] || missing="$$missing $${pair#*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
			echo "Installing$$missing for the tests"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		else \
			echo "Not installed and cannot be installed here:$$missing (the tests that need them will be skipped)"; \
		fi; \
	fi

browser-deps: system-deps

clean:
	rm -rf $(VENV) staticfiles .pytest_cache

# Figures against the project's upstream simulator over loopback, with a real Daphne worker (and a
# throwaway PostgreSQL database when one is reachable). BENCH_ARGS=--quick for a shorter run.
bench: $(DEV_STAMP) system-deps
	$(PY) -m bench $(BENCH_ARGS)
