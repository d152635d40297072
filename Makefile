# The two commands a newcomer needs: `make run` and `make test`.
# Both set up everything on a fresh machine first.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CERT := var/tls/gateway.pem
CONFIG ?= etc/secudoc-gateway.toml
TRIAL_JOBS ?= 2
export PYTHONPATH := $(CURDIR)

FUZZ_SECONDS ?= 600

.PHONY: run test check-config bench fuzz clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

$(CERT): | $(STAMP)
	$(BIN)/python -m secudoc_gateway.devcert $@

run: $(STAMP) $(CERT)
	$(BIN)/twistd --nodaemon --pidfile= secudoc-gateway --config $(CONFIG)

check-config: $(STAMP) $(CERT)
	$(BIN)/secudoc-gateway check-config --config $(CONFIG)

test: $(STAMP) $(CERT)
	@mkdir -p var
	@set -o pipefail; \
	$(BIN)/trial --jobs=$(TRIAL_JOBS) tests 2>&1 | tee var/trial.log; rc=$$?; \
	$(BIN)/python .ci/trial_summary.py var/trial.log; exit $$rc

# Each fuzz target for FUZZ_SECONDS (make test runs them for a few seconds).
fuzz: $(STAMP)
	$(BIN)/python fuzz/run.py --seconds $(FUZZ_SECONDS)

bench: $(STAMP) $(CERT)
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) var/trial.log _trial_temp *.egg-info
