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
# The browser tests: Debian's Chromium and its driver, and axe-core run in the pages.
BROWSER := /usr/bin/chromium /usr/bin/chromedriver
AXE := var/axe/node_modules/axe-core/axe.min.js
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

$(BROWSER):
	DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -q chromium chromium-driver \
	  || { apt-get -o DPkg::Lock::Timeout=900 update -q && \
	       DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -q chromium chromium-driver; }

$(AXE):
	npm install --prefix var/axe --no-save --no-audit --no-fund axe-core@4.14.1

test: $(STAMP) $(CERT) $(BROWSER) $(AXE)
	@mkdir -p var
	$(BIN)/mypy
	@set -o pipefail; \
	$(BIN)/trial --jobs=$(TRIAL_JOBS) tests 2>&1 | tee var/trial.log; rc=$$?; \
	$(BIN)/python .ci/trial_summary.py var/trial.log; exit $$rc

bench: $(STAMP) $(CERT)
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) var/trial.log _trial_temp *.egg-info
