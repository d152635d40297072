# The two commands a newcomer needs: `make run` and `make test`.
# Both set up everything on a fresh machine first.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Two installs: the runtime alone for `make run`, with the test extras
# for `make test`; each its own stamp.
RUNTIME := $(VENV)/.runtime
STAMP := $(VENV)/.installed
CERT := var/tls/gateway.pem
CONFIG ?= etc/secudoc-gateway.toml
WORKERS ?= 2
TRIAL_JOBS ?= 2
# axe-core, run in the pages by the browser tests.
AXE := var/axe/node_modules/axe-core/axe.min.js
# The end-to-end modules, run a second time on S3 (moto) and on PostgreSQL
# (Debian's server binaries), each server started once for the whole run.
S3_MODULES := tests.test_protection tests.test_policy_e2e tests.test_faults tests.test_corpus tests.test_portal_send \
	tests.test_crash
PG_MODULES := tests.test_protection tests.test_policy_e2e tests.test_service tests.test_recipient tests.test_portal_sessions \
	tests.test_trace tests.test_portal_settings tests.test_portal_admin tests.test_crash
PG_BIN := /usr/lib/postgresql/15/bin
# Every test module, the ones holding the longest tests first: trial --jobs
# hands tests out in this order as workers come free, so the two workers
# end together instead of one finishing a long test alone.
SLOW_MODULES := tests.test_deployment tests.test_fuzz tests.test_workers tests.test_crash tests.test_browser tests.test_portal_browser \
	tests.test_portal_send tests.test_logs tests.test_packaging tests.test_storage_s3 tests.test_nodes tests.test_saml_browser \
	tests.test_portal_nodes
TEST_MODULES := $(SLOW_MODULES) \
	$(filter-out $(SLOW_MODULES),$(patsubst tests/%.py,tests.%,$(sort $(wildcard tests/test_*.py))))

# Debian packages the tests run: promtool and Prometheus itself (alert
# rules, the dashboard's queries), systemd-analyze (the unit file),
# Chromium and its driver (the browser tests), clamd and clamscan
# (malware scanning, SPEC 10: the tests start clamd with their own
# signatures, tests/clamav; freshclam is never run), xmlsec1 (pysaml2's
# XML signatures, SPEC 9's SAML sign-on: the gateway needs it at run time too).
APT_GET := DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900
DEBIAN_TOOLS := prometheus:prometheus promtool:prometheus systemd-analyze:systemd \
	chromium:chromium chromedriver:chromium-driver clamd:clamav-daemon clamscan:clamav \
	xmlsec1:xmlsec1

FUZZ_SECONDS ?= 600

.PHONY: run test check-config bench fuzz clean debian-tools postgresql dashboard-picture xmlsec1

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(RUNTIME): setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

$(STAMP): setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

$(CERT): | $(RUNTIME)
	$(BIN)/python -m secudoc_gateway.devcert $@

# twistd finds plugins in twisted/plugins/ of each folder on the path: an
# installed wheel ships the plugin, a checkout is put on the path here.
run: $(RUNTIME) $(CERT) xmlsec1
	PYTHONPATH=$(CURDIR) $(BIN)/twistd --nodaemon --pidfile= secudoc-gateway --config $(CONFIG) --workers $(WORKERS)

check-config: $(RUNTIME) $(CERT)
	$(BIN)/secudoc-gateway check-config --config $(CONFIG)

$(AXE):
	npm install --prefix var/axe --no-save --no-audit --no-fund axe-core@4.14.1

# The one Debian tool the gateway itself runs (SAML sign-on); without it
# the gateway still runs, and says so when a tenant's SAML is used.
xmlsec1:
	@command -v xmlsec1 >/dev/null || { $(APT_GET) update -q && $(APT_GET) install -y -q --no-install-recommends xmlsec1; } \
		|| echo "xmlsec1 could not be installed: SAML sign-on will not work until it is"

debian-tools:
	@missing=$$(for t in $(DEBIAN_TOOLS); do command -v $${t%%:*} >/dev/null || echo $${t##*:}; done | sort -u); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages: $$missing"; \
		$(APT_GET) update -q && $(APT_GET) install -y -q --no-install-recommends $$missing; \
	fi

# Debian's PostgreSQL 15 server binaries, for the tests' throwaway cluster.
postgresql:
	@test -x $(PG_BIN)/initdb || { $(APT_GET) update -q && $(APT_GET) install -y -q --no-install-recommends postgresql-15; }

# One PostgreSQL cluster and one S3 server for the whole run (stopped however
# it ends): the suite once, then the end-to-end modules on S3 and on PostgreSQL.
test: $(STAMP) $(CERT) debian-tools postgresql $(AXE)
	@mkdir -p var
	$(BIN)/mypy
	@set -o pipefail; pg=$$(mktemp -d /tmp/secudoc-pg-XXXXXX); \
	trap '$(BIN)/python -m secudoc_gateway.testing.postgres stop '"$$pg"' >/dev/null' EXIT; \
	set -a; eval "$$($(BIN)/python -m secudoc_gateway.testing.postgres start $$pg)"; set +a; \
	$(BIN)/python -m secudoc_gateway.testing.s3 $(SHELL) -o pipefail -c '\
	$(BIN)/python -m twisted.trial --jobs=$(TRIAL_JOBS) $(TEST_MODULES) 2>&1 | tee var/trial.log; rc=$$?; \
	SECUDOC_TEST_STORAGE=s3 SECUDOC_TEST_UPLOAD_MB=20 $(BIN)/python -m twisted.trial --jobs=$(TRIAL_JOBS) --temp-directory=_trial_temp_s3 \
		$(S3_MODULES) 2>&1 | tee -a var/trial.log || rc=1; \
	SECUDOC_TEST_DATABASE=postgresql $(BIN)/python -m twisted.trial --jobs=$(TRIAL_JOBS) --temp-directory=_trial_temp_pg \
		$(PG_MODULES) 2>&1 | tee -a var/trial.log || rc=1; \
	exit $$rc'; rc=$$?; \
	$(BIN)/python .ci/trial_summary.py var/trial.log; exit $$rc

# The README's picture of the dashboard (a few minutes of real traffic).
dashboard-picture: $(STAMP) debian-tools
	$(BIN)/pip install --quiet matplotlib
	$(BIN)/python docs/dashboard_picture.py

# Each fuzz target for FUZZ_SECONDS (make test runs them for a few seconds).
fuzz: $(STAMP)
	$(BIN)/python fuzz/run.py --seconds $(FUZZ_SECONDS)

bench: $(STAMP) $(CERT)
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) var/trial.log _trial_temp _trial_temp_s3 _trial_temp_pg *.egg-info
