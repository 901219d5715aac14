# Two commands: `make demo` (two nightly runs through Airflow on the synthetic warehouse: a cold
# night promoted, a warm night the gate judges; then a night with a deliberately degraded candidate
# that the gate refuses) and
# `make test`. Both create .venv from requirements.lock when it is missing or stale.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
DEMO_DATES ?= 2026-03-01 2026-03-02
# The demo's last night runs the same stage entry points with demo/degraded_candidate.yaml laid over
# params.yaml (a cold start trained one epoch), so the demo also shows a refusal and its reasons.
DEMO_REFUSED_DATE ?= 2026-03-03
DEMO_DEGRADED := demo/degraded_candidate.yaml
DEMO_DEGRADED_PARAMS := state/params.degraded.yaml
DEMO_STAGES := extract validate profiles finetune evaluate promote publish

export PATH := $(BIN):$(PATH)
export AIRFLOW_HOME := $(CURDIR)/.airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN := sqlite:///$(CURDIR)/.airflow/airflow.db
export RETRAIN_PROJECT_DIR := $(CURDIR)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PYTHONUNBUFFERED := 1

.PHONY: venv demo cluster test test-fast where dvc-repro clean

$(VENV)/.installed: requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

venv: $(VENV)/.installed

# RETRAIN_NIGHT_DEADLINE_MINUTES=0: with a deadline on the DAG, Airflow 3.3.2's `dags test` fails a
# successful run (apache/airflow#73428); a scheduler (deploy/local, compose) keeps the deadline.
demo: venv
	retrain demo-data
	mkdir -p $(AIRFLOW_HOME)
	airflow db migrate > $(AIRFLOW_HOME)/db-migrate.log
	for date in $(DEMO_DATES); do \
	  echo "=== nightly_retrain for $$date ==="; \
	  RETRAIN_NIGHT_DEADLINE_MINUTES=0 airflow dags test nightly_retrain $$date; \
	done
	@echo "=== $(DEMO_REFUSED_DATE): a deliberately degraded candidate ($(DEMO_DEGRADED)), stage by stage ==="
	mkdir -p $(dir $(DEMO_DEGRADED_PARAMS))
	python -c 'import sys, yaml; p = yaml.safe_load(open("params.yaml")); [p[s].update(v) for s, v in yaml.safe_load(open(sys.argv[1])).items()]; yaml.safe_dump(p, open(sys.argv[2], "w"), sort_keys=False)' $(DEMO_DEGRADED) $(DEMO_DEGRADED_PARAMS)
	for stage in $(DEMO_STAGES); do \
	  retrain --params $(DEMO_DEGRADED_PARAMS) stage $$stage --logical-date $(DEMO_REFUSED_DATE); \
	done
	$(MAKE) --no-print-directory where
	@echo
	@python -c 'import json; b = json.load(open("data/evaluate/blessing.json")); print("Gate decision for", b["logical_date"] + ":", b["decision"]); print("\n".join("  failed: " + c["reason"] for c in b["checks"] if not c["passed"]))'

where:
	@echo
	@echo "Report:           reports/evaluate/report.html (metrics: reports/evaluate/metrics.json)"
	@echo "Blessing:         data/evaluate/blessing.json"
	@echo "Candidate model:  models/candidate/ (champion artifacts: state/artifacts/<sha256>/)"
	@echo "Registry:         state/registry.db   ->  retrain registry list"
	@echo "Recommendations:  table 'recommendations' in warehouse/demo.db"
	@retrain registry list

# The production topology without Docker: api-server, scheduler, dag-processor and a Celery worker per
# queue, on the local PostgreSQL and Redis (deploy/local/cluster.py); Ctrl-C stops it.
cluster: venv
	retrain demo-data
	python -m deploy.local.cluster up

# The suite runs in TEST_WORKERS processes (pytest-xdist; one per CPU core, at most 4: each slow test
# starts its own Airflow, DVC and training processes). --dist loadscope keeps a module's tests on one
# worker, so a module's costly fixture (a whole `make demo`, a cluster) is built once.
TEST_WORKERS ?= $(shell n=$$(nproc); echo $$(( n < 4 ? n : 4 )))
PYTEST := python -m pytest -n $(TEST_WORKERS) --dist loadscope

test: venv
	$(PYTEST)

# The inner loop: everything but the slow end-to-end runs (pytest -m slow), a few minutes.
test-fast: venv
	$(PYTEST) -m "not slow"

dvc-repro: venv
	dvc repro

clean:
	rm -rf .airflow .cluster state data models warehouse reports/evaluate/report.html
