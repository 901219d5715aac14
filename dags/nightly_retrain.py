"""
### Nightly retraining of the LoRA-adapted transformer recommender

Runs at 02:00 UTC. `{{ ds }}` (the run's logical date, i.e. the night being run) is passed to
every stage as `--logical-date`; the night's data interval is `[ds - interval_days, ds)`.

| stage | does |
|---|---|
| extract | warehouse tables -> Parquet + manifest |
| validate | Great Expectations suite; **stops the run** on bad data |
| profiles | leave-last-out split, user sequences, user and item texts |
| finetune | LoRA fine-tuning (queue `gpu`; under torchrun, one process per GPU, on a worker with several) |
| evaluate | candidate vs champion and baselines, interest groups and group lists -> BLESSED / NOT_BLESSED with reasons |
| promote | **the gate**: registers the candidate as champion only if blessed (a backfilled night is held) |
| publish | the champion's top-K per user and per group, its interest groups -> warehouse (asset) |

Each task runs `python -m tasks.<stage> --logical-date {{ ds }}` in the project directory,
the same command as `dvc.yaml`, so `dvc repro` reproduces any night.

**Manual runs**: trigger with the night's date as the logical date (a backfill of an old night
is judged against the champion as of that night and never displaces a newer one), and
`dry_run: true` to decide without promoting or publishing:
`airflow dags trigger nightly_retrain --logical-date 2026-02-05T02:00:00+00:00 --conf '{"dry_run": true}'`.

**Exit codes**: `0` success; `3` not retryable (failed validation, bad params or gate configuration,
a bad value): the task fails at once; any other code is treated as transient and retried (2 retries,
exponential backoff from 2 min, or `RETRAIN_RETRY_DELAY_S` seconds where the DAG is parsed; at most
30 min). A refused candidate is no failure: promote exits 0 and publish serves the previous champion.

**On failure** (for good, after any retries) a notifier logs the task's failure summary and
appends it to `state/notifications.jsonl`; a failed validation names each failed expectation
and where the night's data was quarantined (`paths.quarantine/<ds>/`).

**Deadline**: a night still running 8 hours after it was queued (`RETRAIN_NIGHT_DEADLINE_MINUTES`
where the DAG is parsed; 0: off) is reported by the triggerer to the same sink, and goes on.

This file is wiring only: the stage graph of `dvc.yaml`, which tests/dags prove it matches.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pendulum
from airflow.sdk import Asset, AsyncCallback, CronTriggerTimetable, DeadlineAlert, DeadlineReference, Param, chain, dag

from failure_notifier import StageFailureNotifier
from stage_operator import StageOperator  # dags/ is on sys.path wherever Airflow parses this file

STAGES = ("extract", "validate", "profiles", "finetune", "evaluate", "promote", "publish")
# The project root the commands run in; RETRAIN_PROJECT_DIR on the worker overrides it at run time.
PROJECT_DIR = str(Path(__file__).resolve().parents[1])
# What publish leaves in the warehouse each night: a serving DAG can run on it (schedule=[RECOMMENDATIONS]).
RECOMMENDATIONS = Asset(name="retrain_recommendations", uri="retrain://warehouse/recommendations",
                        group="recommendations")
# The pool `gpu` holds one slot per GPU task the GPU workers can run at once; a deployment creates it
# (docker-compose.yml's airflow-init: `airflow pools set gpu N ...`). The scheduler holds a task
# whose pool does not exist, so an undersized or missing pool shows as a queued finetune.
GPU_POOL = "gpu"
# A night still running this long after it was queued is reported (tasks/alerts.py, run by the
# triggerer) and goes on. 0 turns the alert off: `airflow dags test` (the demo, the end-to-end tests)
# must, because with any deadline Airflow 3.3.2's dags test fails a successful run (apache/airflow#73428).
NIGHT_DEADLINE_MINUTES = float(os.environ.get("RETRAIN_NIGHT_DEADLINE_MINUTES", "480"))
# Per-stage settings on top of DEFAULT_ARGS: training needs the GPU workers and more time.
OVERRIDES: dict[str, dict] = {
    # distributed: under torchrun, one process per GPU, where the worker has several (RETRAIN_GPUS).
    "finetune": {"queue": "gpu", "pool": GPU_POOL, "execution_timeout": dt.timedelta(hours=6), "distributed": True},
    "evaluate": {"execution_timeout": dt.timedelta(hours=2)},
    "publish": {"outlets": [RECOMMENDATIONS]},
}
# Appended to a stage's dvc.yaml command: a manual run with dry_run decides without promoting.
EXTRA_ARGS = {"promote": "{{ ' --dry-run' if params.dry_run else '' }}"}
PARAMS = {
    "dry_run": Param(False, type="boolean", title="Dry run",
                     description="Run every stage, but promote writes only what it would decide: nothing is "
                                 "registered or served, and publish publishes nothing."),
}

DEFAULT_ARGS = {
    "owner": "ml-platform",
    "retries": 2,
    "retry_delay": dt.timedelta(seconds=int(os.environ.get("RETRAIN_RETRY_DELAY_S", "120"))),
    # In Airflow 3.3 a multiplier (a legacy True is read as 2.0 when serialized): delay doubles per try.
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": dt.timedelta(minutes=30),
    "execution_timeout": dt.timedelta(hours=1),
    # Once a task has failed for good: its summary (a failed validation's expectations) goes to
    # the task log and state/notifications.jsonl; see dags/failure_notifier.py for Slack or email.
    "on_failure_callback": StageFailureNotifier(project_dir=PROJECT_DIR),
}


def night_deadline(minutes: float) -> DeadlineAlert | None:
    if minutes <= 0:
        return None
    return DeadlineAlert(reference=DeadlineReference.DAGRUN_QUEUED_AT, interval=dt.timedelta(minutes=minutes),
                         callback=AsyncCallback("tasks.alerts.night_overdue", kwargs={
                             "sink": "state/notifications.jsonl", "project_dir": PROJECT_DIR, "minutes": minutes}))


@dag(
    dag_id="nightly_retrain",
    schedule=CronTriggerTimetable("0 2 * * *", timezone=pendulum.UTC),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=dt.timedelta(hours=20),
    deadline=night_deadline(NIGHT_DEADLINE_MINUTES),
    params=PARAMS,
    default_args=DEFAULT_ARGS,
    tags=["retraining", "recommender", "lora"],
    doc_md=__doc__,  # flush-left Markdown; an indented function docstring would render as code
)
def nightly_retrain() -> None:
    """The stage chain; the module docstring above is the DAG's UI doc."""
    chain(
        *(
            StageOperator(
                task_id=stage,
                command=f"python -m tasks.{stage} --logical-date {{{{ ds }}}}{EXTRA_ARGS.get(stage, '')}",
                cwd=PROJECT_DIR,
                **OVERRIDES.get(stage, {}),
            )
            for stage in STAGES
        )
    )


nightly_retrain()
