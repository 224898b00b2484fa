# The quick start is two commands:  make drill  and  make test.
# Everything else here is a step of those, or a tier of the tests.
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || echo "$(HOME)/.local/bin/uv")
RUN := $(UV) run --frozen
SCENARIO ?= scenarios/keqiao_drowning.yaml
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: install stack up down status drill test unit integration e2e faults bench lint asyncapi

install:  ## uv and the locked Python environment
	@command -v uv >/dev/null 2>&1 || [ -x "$(UV)" ] || python3 -m pip install --quiet --user uv || python3 -m pip install --quiet uv
	@$(UV) sync --frozen --quiet

stack: install  ## real Kafka (from Maven Central) and PostgreSQL (Debian's server) on loopback
	@$(RUN) muster stack up

up: install  ## the stack, the provider simulator and the three services
	@$(RUN) muster stack up --services

down:
	@$(RUN) muster stack down

status:
	@$(RUN) muster stack status

drill: up  ## the main job: bring everything up and run a drill end to end
	@if $(RUN) python -c "import muster.drill" 2>/dev/null; then \
		$(RUN) muster drill run $(SCENARIO); \
	else \
		echo "stack and services are up (see: make status)"; \
	fi

test: lint stack  ## lint, then every tier against the real broker and database
	MUSTER_REQUIRE_STACK=1 $(RUN) pytest $(PYTEST_ARGS)

unit: install
	$(RUN) pytest tests/unit $(PYTEST_ARGS)

integration: stack
	MUSTER_REQUIRE_STACK=1 $(RUN) pytest tests/integration $(PYTEST_ARGS)

e2e: stack
	MUSTER_REQUIRE_STACK=1 $(RUN) pytest tests/e2e $(PYTEST_ARGS)

faults: stack
	MUSTER_REQUIRE_STACK=1 $(RUN) pytest -m faults $(PYTEST_ARGS)

bench: up  ## issue #7 in one run: fan-out, reply path, selection, each beside its floor (about 10 min; bench/results/run-latest.*)
	$(RUN) python -m bench.run $(BENCH_ARGS)

lint: install  ## ruff, and mypy --strict over the six packages
	$(RUN) ruff check .
	$(RUN) mypy shared services muster simulator deploy bench

asyncapi: install
	$(RUN) muster contract asyncapi --write
