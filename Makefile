# The collector's commands. `make run` and `make test` work from a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BROKER_PORT ?= 9092
AID ?= 1
STORM_MINUTES ?= 10
STORM_WORKERS ?= 2
STORM_SEED ?=
export BROKER_PORT

.PHONY: help install run test lint events clean bench storm
.DEFAULT_GOAL := help

help:  ## this list (a plain `make` prints it too)
	@echo "The collector's commands (those that need it create .venv and install the project first):"
	@awk -F ':.*## ' '/^[a-z]+:.*## / {printf "  make %-8s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

install: $(STAMP)  ## create the virtualenv .venv and install the project in it (the others do it first)

$(STAMP): setup.cfg
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,dev]'
	touch $@

run: $(STAMP)  ## serve on http://127.0.0.1:8000, with an embedded broker unless KAFKA_BOOTSTRAP_SERVERS is set
	$(BIN)/python dev/broker.py run -- $(BIN)/gunicorn -c gunicorn.conf.py wsgi:app

test: $(STAMP)  ## the whole suite, integration tests against a real broker included (first: dev/system-packages)
	@dev/system-packages
	promtool check rules deploy/prometheus/collector.rules.yml
	promtool test rules deploy/prometheus/collector.test.yml
	$(BIN)/python -m pytest

$(VENV)/.bench: $(STAMP) setup.cfg
	$(BIN)/pip install --quiet -e '.[bench]'
	touch $@

bench: $(VENV)/.bench  ## throughput, latency and delivery under wrk, beside a bare Flask app: docs/benchmarks.md
	@dev/system-packages wrk
	$(BIN)/python bench/run.py

storm: $(STAMP)  ## faults at random under load for STORM_MINUTES (STORM_SEED=, STORM_WORKERS=); fails if a 204 is lost
	@dev/system-packages procps
	$(BIN)/python bench/storm.py --minutes $(STORM_MINUTES) --workers $(STORM_WORKERS) $(if $(STORM_SEED),--seed $(STORM_SEED))

lint: $(STAMP)  ## ruff and mypy
	$(BIN)/ruff check app dev bench tests wsgi.py gunicorn.conf.py
	$(BIN)/mypy

events: $(STAMP)  ## print the events of account AID (default 1) from make run's broker (BROKER_PORT=)
	@$(BIN)/python -m dev.events $(AID)

clean:  ## remove .venv and the caches
	rm -rf $(VENV) *.egg-info .pytest_cache .mypy_cache .ruff_cache
