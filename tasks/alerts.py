"""The night's deadline alert, called by Airflow's triggerer when a night is still running at its deadline.

``dags/nightly_retrain.py`` sets ``DeadlineAlert(reference=DeadlineReference.DAGRUN_QUEUED_AT,
interval=RETRAIN_NIGHT_DEADLINE_MINUTES, callback=AsyncCallback("tasks.alerts.night_overdue", ...))``.
Airflow passes a small ``context``: the run (``dag_run``: dag_id, run_id, logical_date, state, ...)
and the deadline (``deadline``: id, deadline_time). The alert is logged and appended as one JSON
line to the same sink as the stage failures (``state/notifications.jsonl``); the night itself goes
on. This module lives in an installed package because the triggerer does not put ``dags/`` on its
path, and imports nothing heavy.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger("retrain.alerts")


async def night_overdue(context: dict[str, Any], *, sink: str | None = "state/notifications.jsonl",
                        project_dir: str = ".", minutes: float | None = None) -> None:
    """Logs and records that the night in ``context`` missed its deadline (``minutes`` after it was queued)."""
    payload = overdue_payload(context, minutes)
    log.error("deadline alert: %s", payload["summary"])
    if sink is not None:
        append_notification(Path(os.environ.get("RETRAIN_PROJECT_DIR") or project_dir), sink, payload)


def overdue_payload(context: dict[str, Any], minutes: float | None) -> dict[str, Any]:
    run = context.get("dag_run") or {}
    deadline = context.get("deadline") or {}
    night = str(run.get("logical_date") or "")[:10] or "unknown"
    allowed = f" ({minutes:g} min after it was queued)" if minutes is not None else ""
    return {
        "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "alert": "deadline", "dag_id": run.get("dag_id"), "run_id": run.get("dag_run_id") or run.get("run_id"),
        "logical_date": night, "state": run.get("state"), "deadline_time": str(deadline.get("deadline_time")),
        "summary": f"night {night} is still {run.get('state') or 'running'} at its deadline "
                   f"{deadline.get('deadline_time')}{allowed}",
    }


def append_notification(project_dir: Path, sink: str, payload: dict[str, Any]) -> Path:
    """Appends ``payload`` as one JSON line to ``sink`` (relative paths under ``project_dir``); one
    write in append mode, so concurrent writers' lines do not interleave. dags/failure_notifier.py
    writes the stage failures the same way (the DAG's modules may not import this package)."""
    path = Path(sink)
    if not path.is_absolute():
        path = project_dir / path
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(payload, sort_keys=True, default=str) + "\n")
    return path
