# callbridge — the two commands a new user needs: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# Debian packages callbridge runs: espeak-ng speaks IVR menus' text greetings.
RUN_DEBS := espeak-ng
# Debian packages the tests drive as real peers (and what callbridge runs).
TEST_DEBS := $(RUN_DEBS) sip-tester baresip-core linphone-cli kamailio chromium
# Installs the Debian packages of $(1) that are missing.
define install_debs
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  echo "installing Debian packages:$$missing"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi
endef
# The web panel: its sources, and the bundle `callbridge serve` serves at /.
WEB_SOURCES := $(shell find web/src web/public -type f 2>/dev/null) web/index.html \
  web/vite.config.ts web/tsconfig.json web/tsconfig.node.json
WEB_BUNDLE := web/dist/index.html
WEB_MODULES := web/node_modules/.package-lock.json
JSSIP := tests/integration/jssip

.PHONY: run venv web test test-deps lint typecheck unit integration web-test bench fuzz clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[test]'
	touch $@

venv: $(VENV)/.installed

# Node and npm from Debian when the machine has no npm; then the locked
# dependencies (npm ci) and the bundle, each only when its inputs changed.
$(WEB_MODULES): web/package.json web/package-lock.json
	@command -v npm >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  echo "installing Debian packages: nodejs npm"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends nodejs npm; \
	}
	cd web && npm ci --no-audit --no-fund
	@touch $@

$(WEB_BUNDLE): $(WEB_MODULES) $(WEB_SOURCES)
	cd web && npm run build
	@touch $@

web: $(WEB_BUNDLE)

run: venv web
	$(call install_debs,$(RUN_DEBS))
	$(VENV)/bin/callbridge serve

test-deps: venv web
	$(call install_debs,$(TEST_DEBS))
	@# JsSIP (the browser softphone's SIP stack) runs under Node as a test peer
	@# of /ws/sip, from the npm lock file in tests/integration/jssip (npm is
	@# there: `web` installed it if it was missing).
	@if [ ! -d $(JSSIP)/node_modules ] || [ $(JSSIP)/package-lock.json -nt $(JSSIP)/node_modules ]; then \
	  npm ci --prefix $(JSSIP) --no-audit --no-fund --loglevel=error && touch $(JSSIP)/node_modules; \
	fi
	@# The store tests also run on the local PostgreSQL (127.0.0.1:5432); start it
	@# if it is installed and stopped. Best effort: an online cluster is left alone.
	-@if [ -d /etc/postgresql ] && command -v pg_ctlcluster >/dev/null; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  for v in $$(ls /etc/postgresql); do \
	    $$SUDO pg_ctlcluster --skip-systemctl-redirect $$v main start >/dev/null 2>&1 || true; \
	  done; \
	fi

lint: venv
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

typecheck: venv
	$(VENV)/bin/mypy

# The tests with real peers and headless Chromium in two groups of files
# that take about as long: the second listed here (the phones and browsers,
# baresip, linphone, aiortc, JsSIP and the panel, and the tests of a server
# alone), the first the rest of tests/integration (SIPp and raw sockets), so
# a new file runs there unless listed. Mostly they wait on their peers, so
# two at once share the cores well; each file keeps its own fixed RTP ranges
# (tests/integration/conftest.py says which).
INTEGRATION_B := tests/web $(addprefix tests/integration/test_,$(addsuffix .py, \
  audio digest_choices dtmf flows hold proxy recording sip_websocket webrtc webrtc_calls webrtc_opus \
  cli http_api int_bounds music_on_hold plain_text register sessions sipp trunks))

# Three runs at once on two cores: the unit, API and fuzz tests (no fixed
# ports), and the two groups above, one file after another in each. The
# first group reports as it goes, the others' logs follow.
test: test-deps lint typecheck
	@$(VENV)/bin/pytest -q -p no:cacheprovider tests/unit tests/api tests/fuzz \
	  > .pytest-unit.log 2>&1 & unit=$$!; \
	$(VENV)/bin/pytest -q -p no:cacheprovider --durations=15 $(INTEGRATION_B) \
	  > .pytest-integration-b.log 2>&1 & second=$$!; \
	$(VENV)/bin/pytest -q -p no:cacheprovider --durations=15 tests/integration \
	  $(addprefix --ignore=,$(INTEGRATION_B)); first=$$?; \
	wait $$second; second_status=$$?; \
	wait $$unit; unit_status=$$?; \
	echo "--- integration and panel tests, second group ---"; cat .pytest-integration-b.log; \
	echo "--- unit, API and fuzz tests ---"; cat .pytest-unit.log; \
	exit $$(( first || second_status || unit_status ))

# The fast loop: everything but the real peers.
unit: venv
	$(VENV)/bin/pytest -q tests/unit tests/api

integration: test-deps
	$(VENV)/bin/pytest -q tests/integration

# The panel in headless Chromium (Debian's) against a real server and SIPp.
web-test: test-deps
	$(VENV)/bin/pytest -q tests/web

bench: test-deps
	$(PY) bench/run.py
	$(MAKE) fuzz

# The fuzzers of `make test` (tests/fuzz) at a larger size: SIP cases per
# transport and schemathesis examples per API operation, role and mode.
# FUZZ_SEED=N replays a run (each run prints its seed).
FUZZ_SIP_CASES ?= 100000
FUZZ_API_EXAMPLES ?= 50
fuzz: test-deps
	FUZZ_SIP_CASES=$(FUZZ_SIP_CASES) FUZZ_API_EXAMPLES=$(FUZZ_API_EXAMPLES) \
	  $(VENV)/bin/pytest -q -s tests/fuzz

clean:
	rm -rf $(VENV) build dist web/dist web/node_modules src/*.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis \
	  $(JSSIP)/node_modules
