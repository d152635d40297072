# The two commands a newcomer needs: `make run` and `make test`.
# Both set up everything on a fresh machine first.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CERT := var/tls/gateway.pem
CONFIG ?= etc/secudoc-gateway.toml
WORKERS ?= 2
TRIAL_JOBS ?= 2
# The end-to-end modules that run a second time on PostgreSQL.
E2E_MODULES := tests.test_protection tests.test_policy_e2e tests.test_service
PG_BIN := /usr/lib/postgresql/15/bin
export PYTHONPATH := $(CURDIR)

.PHONY: run test check-config bench clean postgresql

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

$(CERT): | $(STAMP)
	$(BIN)/python -m secudoc_gateway.devcert $@

run: $(STAMP) $(CERT)
	$(BIN)/twistd --nodaemon --pidfile= secudoc-gateway --config $(CONFIG) --workers $(WORKERS)

check-config: $(STAMP) $(CERT)
	$(BIN)/secudoc-gateway check-config --config $(CONFIG)

# Debian's PostgreSQL 15 server binaries, for the tests' throwaway cluster.
postgresql:
	@test -x $(PG_BIN)/initdb || { apt-get update && DEBIAN_FRONTEND=noninteractive \
		apt-get -o DPkg::Lock::Timeout=900 install -y --no-install-recommends postgresql-15; }

# One PostgreSQL cluster for the whole run (stopped however the run ends);
# the suite once, then the end-to-end modules again on PostgreSQL.
test: $(STAMP) $(CERT) postgresql
	@mkdir -p var
	@set -o pipefail; pg=$$(mktemp -d /tmp/secudoc-pg-XXXXXX); \
	trap '$(BIN)/python -m secudoc_gateway.pgcluster stop '"$$pg"' >/dev/null' EXIT; \
	set -a; eval "$$($(BIN)/python -m secudoc_gateway.pgcluster start $$pg)"; set +a; \
	$(BIN)/trial --jobs=$(TRIAL_JOBS) tests 2>&1 | tee var/trial.log; rc=$$?; \
	SECUDOC_TEST_DATABASE=postgresql $(BIN)/trial --jobs=$(TRIAL_JOBS) $(E2E_MODULES) 2>&1 \
		| tee var/trial-postgresql.log; rc2=$$?; \
	$(BIN)/python .ci/trial_summary.py var/trial.log var/trial-postgresql.log; \
	exit $$(( rc || rc2 ))

bench: $(STAMP) $(CERT)
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) var/trial.log var/trial-postgresql.log _trial_temp *.egg-info
