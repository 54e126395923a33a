# The two commands a new user needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 5000

.PHONY: run test lint bench chromium postgresql clean

# A stamp file, so the venv is rebuilt only when the requirements change.
$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

# The web app and the trainer together, on local storage (see digits/local.py).
run: $(VENV)/.installed
	PORT=$(PORT) $(BIN)/python -m digits.local

# Browser tests need Debian's chromium; install it when we can (as root), else they skip.
chromium:
	@test -x /usr/bin/chromium || { test "$$(id -u)" = 0 && apt-get update -qq && apt-get install -y -qq chromium; } || echo "chromium missing: browser tests will be skipped"

# The records tests run on SQLite and on a throw-away PostgreSQL server (tests/helpers.py), which
# needs Debian's postgresql: installed when we can (as root), else those cases skip.
postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { test "$$(id -u)" = 0 && apt-get update -qq && apt-get install -y -qq postgresql; } || echo "postgresql missing: the PostgreSQL cases will be skipped"

test: $(VENV)/.installed chromium postgresql
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
