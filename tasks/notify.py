"""A night still running at its deadline: one line in the notifications sink.

The DAG's deadline alert (``dags/nightly_retrain.py``) names ``night_deadline_missed``; Airflow's
triggerer imports and awaits it when a run passes its deadline, so it lives in this installed
package, importable wherever the project is installed, and uses the standard library only (the
DAG file's parsing imports it too).
The line has the same shape as the stage-failure notifications (``dags/failure_notifier.py``).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger("retrain.notify")


async def night_deadline_missed(*, sink: str, project_dir: str, deadline: str,
                                context: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Logs the missed deadline and appends it to ``sink`` (relative paths are under
    ``RETRAIN_PROJECT_DIR``, else ``project_dir``); returns the notification."""
    context = context or {}
    run = context.get("dag_run") or {}
    field = (lambda name: run.get(name)) if isinstance(run, Mapping) else (lambda name: getattr(run, name, None))
    payload = {
        "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "dag_id": field("dag_id") or context.get("dag_id"), "run_id": field("run_id") or context.get("run_id"),
        "logical_date": str(field("logical_date") or context.get("logical_date") or ""), "task_id": None,
        "summary": f"the night has not finished by its deadline ({deadline}); it is still running or queued",
    }
    log.error("night deadline missed: %s", payload)
    path = Path(sink)
    if not path.is_absolute():
        path = Path(os.environ.get("RETRAIN_PROJECT_DIR") or project_dir) / path
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:  # one write of one line: no interleaving
        handle.write(json.dumps(payload, sort_keys=True, default=str) + "\n")
    return payload
