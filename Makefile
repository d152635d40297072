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
# The end-to-end modules, run a second time against S3 (moto, started once for the whole run).
S3_MODULES := tests.test_protection tests.test_policy_e2e tests.test_faults tests.test_corpus
export PYTHONPATH := $(CURDIR)

.PHONY: run test check-config bench clean

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
	@$(BIN)/python -m secudoc_gateway.testing_s3 $(SHELL) -o pipefail -c '\
	$(BIN)/trial --jobs=$(TRIAL_JOBS) tests 2>&1 | tee var/trial.log; rc=$$?; \
	SECUDOC_TEST_STORAGE=s3 $(BIN)/trial --jobs=$(TRIAL_JOBS) --temp-directory=_trial_temp_s3 $(S3_MODULES) 2>&1 \
	| tee -a var/trial.log && exit $$rc'; rc=$$?; \
	$(BIN)/python .ci/trial_summary.py var/trial.log; exit $$rc

bench: $(STAMP) $(CERT)
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) var/trial.log _trial_temp _trial_temp_s3 *.egg-info
