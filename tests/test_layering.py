"""Imports go dags -> tasks -> pipelines; `tasks` and `pipelines` are this repository's."""

import ast
import subprocess
import sys

from tests.conftest import PROJECT_ROOT


def imported_modules(path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_pipelines_never_import_airflow_or_tasks():
    offenders = {
        str(path.relative_to(PROJECT_ROOT)): sorted(n for n in imported_modules(path)
                                                    if n.split(".")[0] in {"airflow", "tasks", "dags"})
        for path in (PROJECT_ROOT / "pipelines").rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_tasks_never_import_dags():
    for path in (PROJECT_ROOT / "tasks").rglob("*.py"):
        assert not {n for n in imported_modules(path) if n.split(".")[0] == "dags"}, path


def test_importing_pipelines_loads_no_airflow():
    code = ("import sys, pipelines.evaluate.ranking, pipelines.registry.store, pipelines.extract.extraction, pipelines.validate.validation; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'airflow'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    assert out.stdout.strip() == "[]"


def test_top_level_packages_resolve_to_this_repository():
    code = "import tasks, pipelines; print(tasks.__file__); print(pipelines.__file__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    tasks_file, pipelines_file = out.stdout.split()
    assert tasks_file == str(PROJECT_ROOT / "tasks" / "__init__.py")
    assert pipelines_file == str(PROJECT_ROOT / "pipelines" / "__init__.py")
