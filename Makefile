# Two commands: `make demo` (two nightly runs through Airflow on the synthetic warehouse)
# and `make test`. Both create .venv from requirements.lock when it is missing or stale.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
DEMO_DATES ?= 2026-03-01 2026-03-02

export PATH := $(BIN):$(PATH)
export AIRFLOW_HOME := $(CURDIR)/.airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN := sqlite:///$(CURDIR)/.airflow/airflow.db
export RETRAIN_PROJECT_DIR := $(CURDIR)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PYTHONUNBUFFERED := 1

.PHONY: venv demo test where dvc-repro clean

$(VENV)/.installed: requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

venv: $(VENV)/.installed

demo: venv
	retrain demo-data
	mkdir -p $(AIRFLOW_HOME)
	airflow db migrate > $(AIRFLOW_HOME)/db-migrate.log
	for date in $(DEMO_DATES); do \
	  echo "=== nightly_retrain for $$date ==="; \
	  airflow dags test nightly_retrain $$date; \
	done
	$(MAKE) --no-print-directory where

where:
	@echo
	@echo "Report:           reports/evaluate/report.html (metrics: reports/evaluate/metrics.json)"
	@echo "Blessing:         data/evaluate/blessing.json"
	@echo "Candidate model:  models/candidate/ (champion artifacts: state/artifacts/<sha256>/)"
	@echo "Registry:         state/registry.db   ->  retrain registry list"
	@echo "Recommendations:  table 'recommendations' in warehouse/demo.db"
	@retrain registry list

test: venv
	python -m pytest

dvc-repro: venv
	dvc repro

clean:
	rm -rf .airflow state data models warehouse reports/evaluate/report.html
