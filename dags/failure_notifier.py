"""StageFailureNotifier: says why a stage failed, in the task log and a JSON-lines sink.

Set as every task's ``on_failure_callback`` (dags/nightly_retrain.py); Airflow calls it once a
task has failed for good (not on a failure it will retry). For a failed validation it reads
the quarantined ``result.json`` (the stage's summary ends with ``quarantined: <dir>``) and
names each failed expectation, column, observed value and threshold; otherwise it carries
the end of the exception message, which holds the stage's last output lines.

Other channels: subclass and override ``send``, or list a provider's notifier beside this one,
e.g. ``on_failure_callback=[StageFailureNotifier(), SlackNotifier(...)]`` from
apache-airflow-providers-slack (``airflow.providers.slack.notifications.slack``) or
``SmtpNotifier`` from apache-airflow-providers-smtp, with a message template such as
``"{{ ti.task_id }} failed for {{ ds }}: {{ exception }}"``.
Imports stay light: this module is loaded whenever the DAG file is parsed.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from pathlib import Path
from typing import Any

from airflow.sdk import BaseNotifier

QUARANTINE_LINE = re.compile(r"^\s*quarantined: (?P<path>.+?)\s*$", re.MULTILINE)
MAX_LISTED = 25  # failures named in one notification; result.json keeps them all
MAX_MESSAGE_CHARS = 4000  # of a non-validation failure's exception message


class StageFailureNotifier(BaseNotifier):
    """Logs a failed stage's summary and appends it as one JSON line to ``sink``.

    Args:
        sink: the JSON-lines file; relative paths are under the project directory
            (RETRAIN_PROJECT_DIR on the worker, else ``project_dir``). None: the task log only.
        project_dir: the project root the stages run in.
    """

    def __init__(self, *, sink: str | None = "state/notifications.jsonl", project_dir: str = ".") -> None:
        super().__init__()
        self.sink = sink
        self.project_dir = project_dir

    def notify(self, context: Any) -> None:
        payload = build_payload(context)
        self.log.error("stage failure notification:\n%s", payload["summary"])
        self.send(payload)

    def send(self, payload: dict[str, Any]) -> None:
        """Delivers one notification; override for another channel."""
        if self.sink is None:
            return
        path = Path(self.sink)
        if not path.is_absolute():
            path = Path(os.environ.get("RETRAIN_PROJECT_DIR") or self.project_dir) / path
        path.parent.mkdir(parents=True, exist_ok=True)
        # One write of one line in append mode: concurrent tasks' lines do not interleave.
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(payload, sort_keys=True, default=str) + "\n")


def build_payload(context: Any) -> dict[str, Any]:
    """The notification for a failed task's context: who, which night, and why."""
    ti = context.get("ti") or context.get("task_instance")
    task = context.get("task")
    task_id = getattr(ti, "task_id", None) or getattr(task, "task_id", None) or "unknown"
    dag_id = getattr(ti, "dag_id", None) or getattr(context.get("dag"), "dag_id", None)
    message = str(context.get("exception") or "")
    payload: dict[str, Any] = {
        "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "dag_id": dag_id, "task_id": task_id, "logical_date": context.get("ds"),
        "run_id": context.get("run_id"), "try_number": getattr(ti, "try_number", None),
    }
    found = QUARANTINE_LINE.search(message)
    result = _read_result(Path(found["path"]) / "validate" / "result.json") if found else None
    if result is not None:
        payload.update(quarantine=found["path"], failures=result.get("failures", []),
                       summary=validation_summary(result, task_id, found["path"]))
    else:
        payload["summary"] = f"{dag_id}.{task_id} failed for {payload['logical_date']}:\n" \
                             f"{message[-MAX_MESSAGE_CHARS:] or '(no exception message)'}"
    return payload


def validation_summary(result: dict[str, Any], task_id: str, quarantine: str) -> str:
    """One screen: the night, each failed expectation with its column, observed value and threshold."""
    failures = result.get("failures", [])
    lines = [f"{task_id}: validation FAILED for {result.get('logical_date')}: "
             f"{len(failures)} failed expectations; night quarantined in {quarantine}"]
    for failure in failures[:MAX_LISTED]:
        where = f"{failure.get('table')}.{failure['column']}" if failure.get("column") else failure.get("table")
        lines.append(f"  - {where}: {failure.get('expectation')}: observed {failure.get('observed')}; "
                     f"expected {failure.get('expected')}")
    if len(failures) > MAX_LISTED:
        lines.append(f"  ... and {len(failures) - MAX_LISTED} more")
    return "\n".join(lines)


def _read_result(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as handle:
            result = json.load(handle)
    except (OSError, ValueError):  # moved or unreadable: fall back on the exception message
        return None
    return result if isinstance(result, dict) else None
