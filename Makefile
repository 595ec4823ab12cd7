# Two entry points for a fresh machine: `make serve` and `make test`.
# Both create .venv on first use and reinstall only when pyproject.toml or
# constraints.txt change.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: serve test test-quick lint docs bench load clean venv browser load-tools

# tests/browser drive Debian's Chromium (headless, with no network). Installed once when
# missing; quick when it is there. apt needs root: sudo is used when we are not.
CHROMIUM ?= /usr/bin/chromium

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first, pinned: a looser requirement would let pip pick a multi-GB CUDA build.
$(VENV)/.installed-%: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) install -c constraints.txt torch==2.13.0
	$(PIP) install -c constraints.txt -e '.[$*]'
	touch $@

venv: $(VENV)/.installed-server,test,dev,docs

serve: $(VENV)/.installed-server
	$(BIN)/sampleplan serve --host $(HOST) --port $(PORT)

browser:
	@if [ ! -x $(CHROMIUM) ]; then \
	  echo "installing Debian's chromium for the browser tests"; \
	  SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; \
	fi

# The load scenarios (`make load`, and their smoke test and the replica-loss test in
# `make test`) drive Debian's wrk (a C load generator) and curl, through Debian's haproxy.
# Installed once when missing, as chromium is.
LOAD_TOOLS ?= wrk haproxy curl

load-tools:
	@missing=; for tool in $(LOAD_TOOLS); do \
	  command -v $$tool >/dev/null 2>&1 || [ -x /usr/sbin/$$tool ] || missing="$$missing $$tool"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian's$$missing for the load scenarios"; \
	  SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

# The suite runs on every core (pytest-xdist); a test file stays on one worker, so that
# its module-scoped servers start once. Tests that need a port or a PostgreSQL database
# take their own. PYTEST_ARGS adds options, e.g. PYTEST_ARGS='tests/core -x'.
PYTEST_WORKERS ?= auto
PYTEST := $(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder

test: $(VENV)/.installed-server,test,dev,docs browser load-tools
	$(PYTEST) $(PYTEST_ARGS)

# The quick loop while editing: everything but the tests marked slow (several processes:
# torch.distributed ranks, Lightning and Accelerate, `sampleplan serve` processes,
# replicas, crashes, the load scenarios). `make test` and CI run them all.
test-quick: $(VENV)/.installed-server,test,dev,docs
	$(PYTEST) -m "not slow" $(PYTEST_ARGS)

# ruff reads the real folders (service/, client/); mypy the import package, whose
# sampleplan/service and sampleplan/client are links to them.
lint: $(VENV)/.installed-server,test,dev,docs
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy sampleplan

# The guide (docs/, mkdocs.yml) as a static site in site/: open site/index.html, or serve
# it with `$(BIN)/mkdocs serve`. --strict turns every warning (a broken link, a page left
# out of the nav) into an error; the check after it refuses a page that would load a
# script, a style sheet or an image from another host (the guide is read offline).
docs: $(VENV)/.installed-server,test,dev,docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site
	@if grep -rlE '<(script|link|img)[^>]+(src|href)="(https?:)?//' site --include='*.html'; then \
	  echo "pages above load assets from another host"; exit 1; fi

bench: $(VENV)/.installed-server,test,dev,docs
	$(BIN)/python benchmarks/run.py

# wrk on cached pages (JSON, binary) and /healthz, --workers 2, 64 ranks on one cold 1e7
# epoch, haproxy over 1-3 replicas on PostgreSQL; loopback only, about 3 minutes, bounded.
# LOAD_ARGS=--quick for a short run.
load: $(VENV)/.installed-server,test,dev,docs load-tools
	timeout 900 $(BIN)/python benchmarks/load.py $(LOAD_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .hypothesis site
