# clerk-sync developer commands. `make run` and `make test` install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PLUGINS := plugins/users plugins/sessions plugins/organizations plugins/billing
STAMP := $(VENV)/.installed
# `make run PORT=8001` serves on another port
PORT = 8000

.PHONY: install run test lint tools bench mutate clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml $(wildcard plugins/*/pyproject.toml)
	$(BIN)/pip install --quiet -e '.[dev]' $(foreach p,$(wildcard $(PLUGINS)),-e $(p))
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/clerk-sync serve --dev --host 127.0.0.1 --port $(PORT)

tools: install
	bash scripts/install-tools.sh

lint: install
	$(BIN)/ruff check service plugins tests ops examples $(wildcard bench)
	$(BIN)/ruff format --check service plugins tests ops examples $(wildcard bench)
	$(BIN)/mypy service plugins/*/src ops/dashboard.py
	$(BIN)/mypy examples/quart-app examples/fastapi-mount
	$(BIN)/lint-imports

# the suite runs in PYTEST_WORKERS processes (docs/testing.md: most tests wait on servers and
# timeouts, so 4 keep 2 cores busy); tests/scheduling.py keeps the tests of a module with an
# expensive shared fixture (the image build, a pair of servers) in one process and starts the
# longest first
PYTEST_WORKERS ?= 4
test:
	@bash scripts/test-stages.sh $(MAKE) $(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadscope --no-loadscope-reorder --durations=30 $(ARGS)

bench: install
	$(BIN)/python -m bench

# mutation testing of the delivery path (docs/testing.md); not part of CI, about 20 minutes
mutate: install
	$(BIN)/python scripts/mutate.py $(ARGS)

clean:
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache .mutate
