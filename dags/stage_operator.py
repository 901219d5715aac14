"""StageOperator: runs one pipeline stage's command line, the same one dvc.yaml runs.

Exit codes follow tasks/common.py: 0 ok, 3 non-retryable (bad data, bad params or gate
configuration) -> AirflowFailException (no retry), anything else -> AirflowException (retried).
Imports stay light: this module is loaded whenever the DAG file is parsed.

Connections: at run time the operator looks up the Airflow connections ``warehouse`` and
``registry`` through Airflow's own lookup (environment, metadata database, any configured secrets
backend) and hands each one that is defined to the stage in its environment, as the JSON the
stages parse (``AIRFLOW_CONN_WAREHOUSE``, ``AIRFLOW_CONN_REGISTRY``): never on the command line,
never in a log line.

Workers without a shared working tree (``RETRAIN_STAGE_TRANSFER=dvc`` on the worker): before the
stage, the records the night's earlier stages left in XCom are pulled into this worker's tree from
the DVC remote (``python -m tasks.transfer pull``); after it, the stage's outputs are pushed and its
record goes to XCom (``push``). A missing record or input fails the task, naming it.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException

EXIT_NON_RETRYABLE = 3  # mirrors tasks.common.EXIT_NON_RETRYABLE (not imported: dags -> tasks is one way)
TAIL_LINES = 20  # last output lines quoted in the failure message, so the UI shows why
# Airflow connection id -> the environment variable the stages read it from (pipelines.core.warehouse).
CONNECTIONS = {"warehouse": "AIRFLOW_CONN_WAREHOUSE", "registry": "AIRFLOW_CONN_REGISTRY"}
GPUS_ENV = "RETRAIN_GPUS"  # GPUs a distributed stage spreads over on this worker; unset: the visible ones
TRANSFER_ENV = "RETRAIN_STAGE_TRANSFER"  # "dvc": outputs travel between workers through the DVC remote
RECORD_KEY = "stage_outputs"  # the XCom key of a stage's record (its dvc.lock entry and small files)


def resolve_executable(name: str) -> str:
    """`python` is RETRAIN_PYTHON, else the first on PATH, else this worker's interpreter."""
    if name == "python":
        return os.environ.get("RETRAIN_PYTHON") or shutil.which("python") or sys.executable
    return shutil.which(name) or name


def worker_gpu_count(environ: Mapping[str, str] = os.environ) -> int:
    """``RETRAIN_GPUS``, else the devices in ``CUDA_VISIBLE_DEVICES``, else those ``nvidia-smi -L`` lists."""
    if environ.get(GPUS_ENV, "").strip():
        return int(environ[GPUS_ENV])
    if "CUDA_VISIBLE_DEVICES" in environ:
        return len([device for device in environ["CUDA_VISIBLE_DEVICES"].split(",") if device.strip()])
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(line.startswith("GPU ") for line in listed.stdout.splitlines()) if listed.returncode == 0 else 0


def connection_environment(conn_ids: Mapping[str, str], log: Any) -> dict[str, str]:
    """Each defined Airflow connection as JSON under its environment name; an undefined one is
    left out (the stage then reads ``RETRAIN_*_URL`` or params.yaml) and said so, without values."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    found = {}
    for conn_id, name in conn_ids.items():
        try:
            found[name] = BaseHook.get_connection(conn_id).as_json()
        except AirflowNotFoundException:
            log.info("Airflow connection %r is not defined: the stage reads its URL from the environment or "
                     "params.yaml", conn_id)
        else:
            log.info("Airflow connection %r handed to the stage as %s", conn_id, name)
    return found


class StageOperator(BaseOperator):
    """Runs `command` (templated, split with shlex, no shell) in the project directory.

    Args:
        command: the stage's command line, e.g. ``python -m tasks.extract --logical-date {{ ds }}``.
        cwd: project directory; env RETRAIN_PROJECT_DIR on the worker takes precedence.
        distributed: a ``python -m`` stage that runs under torchrun (one process per GPU) where the
            worker has more than one GPU (``worker_gpu_count``).
    """

    template_fields: Sequence[str] = ("command",)
    ui_color = "#e8f0fe"

    def __init__(self, *, command: str, cwd: str, distributed: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.command = command
        self.cwd = cwd
        self.distributed = distributed
        self._process: subprocess.Popen[str] | None = None

    def argv(self, gpus: int = 0) -> list[str]:
        """The argument list to execute (after templating); a distributed stage on ``gpus`` > 1 GPUs
        runs under torchrun (``python -m torch.distributed.run``, the worker's interpreter)."""
        args = shlex.split(self.command)
        python = resolve_executable(args[0])
        if self.distributed and gpus > 1:
            if args[:2] != ["python", "-m"]:
                raise AirflowFailException(f"{self.task_id}: only a `python -m` command can run under torchrun")
            return [python, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(gpus), *args[1:]]
        return [python, *args[1:]]

    def execute(self, context: Any) -> None:
        cwd = os.environ.get("RETRAIN_PROJECT_DIR") or self.cwd
        # Unbuffered child output, so lines reach the task log while the stage runs.
        env = {**os.environ, **connection_environment(CONNECTIONS, self.log), "PYTHONUNBUFFERED": "1"}
        transfer = os.environ.get(TRANSFER_ENV) == "dvc"
        with tempfile.TemporaryDirectory(prefix=f"{self.task_id}-") as scratch:
            if transfer:
                self._pull_inputs(context, cwd, env, Path(scratch) / "inputs.json")
            self._run(self.argv(worker_gpu_count() if self.distributed else 0), cwd, env)
            if transfer:
                record = Path(scratch) / "record.json"
                self._run(self._transfer_argv("push", context, record, "--stage", self.task_id), cwd, env)
                context["ti"].xcom_push(key=RECORD_KEY, value=json.loads(record.read_text()))

    def _pull_inputs(self, context: Any, cwd: str, env: dict[str, str], path: Path) -> None:
        """The night's earlier stages' outputs, into this worker's tree."""
        upstream = sorted(self.get_flat_relative_ids(upstream=True))
        records = {task_id: context["ti"].xcom_pull(task_ids=task_id, key=RECORD_KEY) for task_id in upstream}
        missing = [task_id for task_id, record in records.items() if not record]
        if missing:
            raise AirflowFailException(
                f"{self.task_id}: no outputs recorded in this run by {', '.join(missing)}: they ran without "
                f"{TRANSFER_ENV}=dvc, or their XCom was cleared; clear and rerun them")
        path.write_text(json.dumps(records))
        self._run(self._transfer_argv("pull", context, path), cwd, env)

    def _transfer_argv(self, direction: str, context: Any, record: Path, *extra: str) -> list[str]:
        return [resolve_executable("python"), "-m", "tasks.transfer", direction, "--logical-date", context["ds"],
                "--record", str(record), *extra]

    def _run(self, argv: list[str], cwd: str, env: dict[str, str]) -> None:
        """Runs ``argv``, streaming its output to the task log; raises for a non-zero exit."""
        self.log.info("Running %s in %s", shlex.join(argv), cwd)
        tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        try:
            # New session: on_kill/timeout can stop the whole tree (torchrun, dataloader workers).
            self._process = subprocess.Popen(
                argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                text=True, bufsize=1, start_new_session=True,
            )
        except OSError as exc:  # missing interpreter or project dir: configuration, not transient
            raise AirflowFailException(f"cannot start {argv[0]!r} in {cwd!r}: {exc}") from exc
        try:
            assert self._process.stdout is not None
            for line in self._process.stdout:
                line = line.rstrip("\n")
                tail.append(line)
                self.log.info("%s", line)
            code = self._process.wait()
        finally:
            self.on_kill()  # no-op once the child has exited; stops it on timeout/exception
        self._raise_for_exit_code(code, tail)

    def _raise_for_exit_code(self, code: int, tail: Sequence[str]) -> None:
        if code == 0:
            return
        detail = "\n".join(tail)
        if code == EXIT_NON_RETRYABLE:
            raise AirflowFailException(f"{self.task_id} failed, exit code 3 (not retryable):\n{detail}")
        raise AirflowException(f"{self.task_id} failed, exit code {code} (will retry if retries remain):\n{detail}")

    def on_kill(self) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        self.log.warning("Stopping stage process group %d", process.pid)
        with contextlib.suppress(ProcessLookupError):  # it may exit between poll() and here
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
