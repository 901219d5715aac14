"""DAG integrity: it parses, is configured as intended, stays cheap to parse, and its operator
maps stage exit codes onto Airflow's retry behaviour."""

from __future__ import annotations

import ast
import datetime as dt
import json
import subprocess
import sys
import threading
import time
from unittest import mock

import pytest
import structlog

from .conftest import DAGS_FOLDER, PROJECT_ROOT

DAG_FILE = DAGS_FOLDER / "nightly_retrain.py"
OPERATOR_FILE = DAGS_FOLDER / "stage_operator.py"
NOTIFIER_FILE = DAGS_FOLDER / "failure_notifier.py"
EXPECTED_EDGES = {
    ("extract", "validate"),
    ("validate", "profiles"),
    ("profiles", "finetune"),
    ("finetune", "evaluate"),
    ("evaluate", "promote"),
    ("promote", "publish"),
}
# What a DAG file must never pull in at parse time (Airflow itself brings sqlalchemy, so that
# one is checked by the query count below, not by module name).
LIGHT_CALLBACK_MODULES = {"tasks", "tasks.alerts"}
HEAVY_MODULES = ("torch", "transformers", "peft", "accelerate", "great_expectations", "pandas",
                 "numpy", "pyarrow", "sklearn", "dvc", "pipelines", "tasks")


def dag_edges(dag) -> set[tuple[str, str]]:
    return {(task.task_id, down) for task in dag.tasks for down in task.downstream_task_ids}


def test_dagbag_has_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert dagbag.dag_ids == ["nightly_retrain"]


def test_schedule_is_0200_utc_daily(retrain_dag):
    from airflow.sdk import CronTriggerTimetable

    timetable = retrain_dag.timetable
    assert isinstance(timetable, CronTriggerTimetable)
    assert timetable.expression == "0 2 * * *"
    assert str(timetable.timezone) in {"UTC", "Timezone('UTC')"}
    assert retrain_dag.start_date == dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def test_dag_settings(retrain_dag):
    assert retrain_dag.catchup is False
    assert retrain_dag.max_active_runs == 1
    assert {"retraining", "recommender", "lora"} <= set(retrain_dag.tags)
    assert retrain_dag.doc_md and "exit code" in retrain_dag.doc_md.lower()


def test_every_task_retries_with_exponential_backoff(retrain_dag):
    for task in retrain_dag.tasks:
        assert task.retries >= 1, task.task_id
        assert task.retry_exponential_backoff > 1, task.task_id  # a multiplier in Airflow 3.3
        assert task.retry_delay == dt.timedelta(minutes=2), task.task_id
        assert task.max_retry_delay == dt.timedelta(minutes=30), task.task_id
        assert task.execution_timeout is not None, task.task_id


def test_every_task_notifies_once_it_has_failed_for_good(retrain_dag):
    for task in retrain_dag.tasks:
        callbacks = task.on_failure_callback
        callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
        assert [type(c).__name__ for c in callbacks] == ["StageFailureNotifier"], task.task_id
        assert not task.on_retry_callback, task.task_id  # a retried failure is not news yet


def test_queues(retrain_dag):
    queues = {task.task_id: task.queue for task in retrain_dag.tasks}
    assert queues.pop("finetune") == "gpu"
    assert "gpu" not in queues.values()


def test_publish_alone_emits_the_recommendations_asset(retrain_dag):
    outlets = {task.task_id: [(a.name, a.uri) for a in task.outlets] for task in retrain_dag.tasks}
    assert outlets.pop("publish") == [("retrain_recommendations", "retrain://warehouse/recommendations")]
    assert not any(outlets.values())


def test_edges_are_the_stage_chain(retrain_dag):
    assert dag_edges(retrain_dag) == EXPECTED_EDGES


def test_dag_modules_import_only_airflow_pendulum_stdlib():
    allowed = set(sys.stdlib_module_names) | {"airflow", "pendulum", "stage_operator", "failure_notifier"}
    for path in (DAG_FILE, OPERATOR_FILE, NOTIFIER_FILE):
        tree = ast.parse(path.read_text())
        top_level = set()
        for node in tree.body:  # module level only: imports inside functions run at execute time
            if isinstance(node, ast.Import):
                top_level |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                top_level.add(node.module.split(".")[0])
        assert top_level <= allowed, f"{path.name} imports {sorted(top_level - allowed)}"


def test_parsing_in_a_fresh_interpreter_loads_no_heavy_modules():
    # A fresh interpreter, because this test session may have imported anything already.
    script = f"""
import importlib.util, json, sys
sys.path.insert(0, {str(DAGS_FOLDER)!r})  # as Airflow does with the bundle folder
spec = importlib.util.spec_from_file_location("nightly_retrain_probe", {str(DAG_FILE)!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
assert module.nightly_retrain is not None
print(json.dumps(sorted(sys.modules)))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            cwd=PROJECT_ROOT.parent)  # not the project root: `tasks` must not be importable by accident
    assert result.returncode == 0, result.stderr
    modules = json.loads(result.stdout.strip().splitlines()[-1])
    assert "stage_operator" in modules and "failure_notifier" in modules and "airflow.sdk" in modules
    # Airflow imports the deadline alert's callback path to check it; that module is stdlib only
    # (test_the_deadline_alert_module_stays_light)
    loaded = sorted(m for m in modules if m.split(".")[0] in HEAVY_MODULES and m not in LIGHT_CALLBACK_MODULES)
    assert loaded == []


def test_the_deadline_alert_module_stays_light():
    for path in (PROJECT_ROOT / "tasks" / "__init__.py", PROJECT_ROOT / "tasks" / "alerts.py"):
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                imported.add(node.module.split(".")[0])
        assert imported <= set(sys.stdlib_module_names) | {"__future__"}, (path.name, imported)


def test_parsing_does_no_db_queries_and_reads_no_variables_or_connections():
    """The check Airflow's example-DAG tests make: count SQL sent to the metadata engine."""
    import airflow.settings
    from airflow.dag_processing.dagbag import BundleDagBag
    from airflow.sdk import BaseHook, Connection, Variable
    from sqlalchemy import event

    statements: list[str] = []

    def record(conn, cursor, statement, *args):
        statements.append(statement)

    engine = airflow.settings.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        with mock.patch.object(Variable, "get") as variable_get, \
                mock.patch.object(Connection, "get") as connection_get, \
                mock.patch.object(BaseHook, "get_connection") as hook_get_connection:
            bag = BundleDagBag(dag_folder=DAGS_FOLDER, bundle_path=DAGS_FOLDER)
        parse_statements = list(statements)
        with engine.connect() as conn:  # proves the listener sees this engine's queries
            conn.exec_driver_sql("SELECT 1")
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert bag.dag_ids == ["nightly_retrain"] and not bag.import_errors
    assert parse_statements == []
    assert statements == ["SELECT 1"]
    assert variable_get.call_count == connection_get.call_count == hook_get_connection.call_count == 0


# --- the operator ---------------------------------------------------------------------------

@pytest.fixture
def make_operator(monkeypatch, tmp_path):
    """StageOperator instances whose `python` is this interpreter, runnable outside a task runner."""
    from airflow.sdk.bases.operator import ExecutorSafeguard
    from stage_operator import StageOperator

    monkeypatch.setattr(ExecutorSafeguard, "test_mode", True)  # execute() called directly, on purpose
    monkeypatch.setenv("RETRAIN_PYTHON", sys.executable)
    monkeypatch.delenv("RETRAIN_PROJECT_DIR", raising=False)

    def make(code: str) -> StageOperator:
        return StageOperator(task_id="stage", command=f"python -c {code!r}", cwd=str(tmp_path))

    return make


@pytest.fixture(autouse=True, scope="module")
def dags_on_sys_path():
    sys.path.insert(0, str(DAGS_FOLDER))
    yield
    sys.path.remove(str(DAGS_FOLDER))


def run(operator, context=None) -> list[str]:
    with structlog.testing.capture_logs() as logs:
        operator.execute(context or {})
    return [entry["event"] for entry in logs]


def test_exit_3_fails_without_retry(make_operator):
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException, match="exit code 3") as info:
        run(make_operator("import sys; print('bad column rating'); sys.exit(3)"))
    assert "bad column rating" in str(info.value)  # the reason reaches the UI


@pytest.mark.parametrize("code", [1, 2, 137])
def test_other_exit_codes_fail_retryably(make_operator, code):
    from airflow.sdk.exceptions import AirflowException, AirflowFailException

    with pytest.raises(AirflowException, match=f"exit code {code}") as info:
        run(make_operator(f"import sys; sys.exit({code})"))
    assert not isinstance(info.value, AirflowFailException)


def test_exit_0_succeeds_and_streams_output_to_the_log(make_operator):
    events = run(make_operator("import sys; print('to stdout'); print('to stderr', file=sys.stderr)"))
    assert "to stdout" in events and "to stderr" in events


def test_runs_in_project_dir_with_the_environment(make_operator, monkeypatch, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.setenv("RETRAIN_PROJECT_DIR", str(project))
    monkeypatch.setenv("RETRAIN_PROBE", "passed-through")
    events = run(make_operator("import os; print(os.getcwd()); print(os.environ['RETRAIN_PROBE'])"))
    assert str(project) in events and "passed-through" in events


def test_a_defined_connection_reaches_the_stage_in_its_environment_and_never_the_log(make_operator, monkeypatch):
    secret = "pw-7f3e9a"
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", f"postgres://etl:{secret}@db.internal:5432/analytics")
    monkeypatch.delenv("AIRFLOW_CONN_REGISTRY", raising=False)
    operator = make_operator("import json, os; c = json.loads(os.environ['AIRFLOW_CONN_WAREHOUSE']); "
                             "print(c['conn_type'], c['host'], c['login'], len(c['password']), "
                             "'AIRFLOW_CONN_REGISTRY' in os.environ)")
    events = run(operator)
    # Looked up through Airflow (the URI came back as the connection's JSON), not copied through.
    assert events[-1] == f"postgres db.internal etl {len(secret)} False"
    assert "Airflow connection 'warehouse' handed to the stage as AIRFLOW_CONN_WAREHOUSE" in events
    assert "Airflow connection 'registry' is not defined" in " ".join(events)
    assert not any(secret in event for event in events) and secret not in " ".join(operator.argv())


def test_command_is_templated_with_the_logical_date(make_operator):
    operator = make_operator("print('{{ ds }}')")
    operator.render_template_fields({"ds": "2026-03-02"})
    assert run(operator)[-1] == "2026-03-02"


def test_missing_interpreter_is_not_retryable(make_operator, monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException

    monkeypatch.setenv("RETRAIN_PYTHON", "/nonexistent/python")
    with pytest.raises(AirflowFailException, match="cannot start"):
        run(make_operator("pass"))


def test_on_kill_stops_the_stage_and_the_run_is_retryable(make_operator):
    from airflow.sdk.exceptions import AirflowException, AirflowFailException

    operator = make_operator("import time; print('started', flush=True); time.sleep(60)")
    outcome: list[BaseException] = []

    def target() -> None:
        try:
            operator.execute({})
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            outcome.append(exc)

    thread = threading.Thread(target=target)
    start = time.monotonic()
    thread.start()
    while operator._process is None and time.monotonic() - start < 10:
        time.sleep(0.05)
    time.sleep(0.3)
    operator.on_kill()
    thread.join(timeout=20)
    assert not thread.is_alive() and time.monotonic() - start < 20
    assert len(outcome) == 1 and isinstance(outcome[0], AirflowException)
    assert not isinstance(outcome[0], AirflowFailException)
    assert "exit code -15" in str(outcome[0])


def test_only_finetune_runs_under_torchrun_and_only_with_several_gpus(retrain_dag):
    assert {task.task_id for task in retrain_dag.tasks if task.distributed} == {"finetune"}
    finetune = retrain_dag.get_task("finetune")
    finetune.render_template_fields({"ds": "2026-03-02", "params": {"dry_run": False}})
    plain = finetune.argv(gpus=1)
    assert plain[1:] == ["-m", "tasks.finetune", "--logical-date", "2026-03-02"]
    assert finetune.argv(gpus=4) == [plain[0], "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "4",
                                     "-m", "tasks.finetune", "--logical-date", "2026-03-02"]


@pytest.mark.parametrize(("environ", "count"), [({"RETRAIN_GPUS": "3", "CUDA_VISIBLE_DEVICES": "0"}, 3),
                                                ({"CUDA_VISIBLE_DEVICES": "0,1"}, 2), ({"CUDA_VISIBLE_DEVICES": ""}, 0)])
def test_a_workers_gpus_come_from_the_setting_then_the_visible_devices(environ, count):
    from stage_operator import worker_gpu_count

    assert worker_gpu_count(environ) == count


def test_a_distributed_stage_really_starts_one_process_per_gpu(monkeypatch, tmp_path):
    from airflow.sdk.bases.operator import ExecutorSafeguard
    from stage_operator import StageOperator

    monkeypatch.setattr(ExecutorSafeguard, "test_mode", True)
    monkeypatch.setenv("RETRAIN_PYTHON", sys.executable)
    monkeypatch.delenv("RETRAIN_PROJECT_DIR", raising=False)
    monkeypatch.setenv("RETRAIN_GPUS", "2")  # torchrun on the CPU: the launch is what is checked
    # One write per line: unbuffered print() writes each argument on its own, so the two ranks'
    # words would interleave in the shared pipe.
    (tmp_path / "rank.py").write_text(
        "import os; os.write(1, f\"rank {os.environ['RANK']} of {os.environ['WORLD_SIZE']}\\n\".encode())")
    operator = StageOperator(task_id="stage", command="python -m rank", cwd=str(tmp_path), distributed=True)
    events = run(operator)
    assert sorted(event for event in events if event.startswith("rank ")) == ["rank 0 of 2", "rank 1 of 2"]


def test_a_night_still_running_eight_hours_after_it_was_queued_raises_the_deadline_alert(retrain_dag):
    from airflow.sdk import AsyncCallback, DeadlineReference

    deadline = retrain_dag.deadline[0] if isinstance(retrain_dag.deadline, list) else retrain_dag.deadline
    assert deadline.reference == DeadlineReference.DAGRUN_QUEUED_AT
    assert deadline.interval == dt.timedelta(hours=8)
    assert isinstance(deadline.callback, AsyncCallback)  # run by the triggerer
    assert deadline.callback.path == "tasks.alerts.night_overdue"
    assert deadline.callback.kwargs["sink"] == "state/notifications.jsonl"


def test_the_deadline_is_off_where_asked():
    import nightly_retrain

    assert nightly_retrain.night_deadline(0) is None
    assert nightly_retrain.night_deadline(30).interval == dt.timedelta(minutes=30)
