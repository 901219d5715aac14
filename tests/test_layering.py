"""Imports go dags -> tasks -> pipelines; `tasks` and `pipelines` are this repository's."""

import subprocess
import sys

from tests.conftest import PROJECT_ROOT
from tests.imports import imported_names as imported_modules


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
    code = ("import sys, pipelines.ranking.scoring, pipelines.registry.store, pipelines.extract.extraction, pipelines.validate.validation; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'airflow'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    assert out.stdout.strip() == "[]"


def test_top_level_packages_resolve_to_this_repository():
    code = "import tasks, pipelines; print(tasks.__file__); print(pipelines.__file__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    tasks_file, pipelines_file = out.stdout.split()
    assert tasks_file == str(PROJECT_ROOT / "tasks" / "__init__.py")
    assert pipelines_file == str(PROJECT_ROOT / "pipelines" / "__init__.py")


# Which stage package may import which (at any depth of the code, lazy imports included). The
# graph has no cycle: a stage package builds on lower ones, never on one that builds on it.
ALLOWED_IMPORTS = {
    "core": set(),
    "datasets": {"core"},
    "ranking": {"core"},
    "groups": {"ranking"},  # group lists and metrics over member scores
    "extract": {"core"},
    "registry": {"core"},
    "validate": {"core", "extract", "registry"},  # releases a failed night's days; audits acceptances
    "profiles": {"core", "validate"},  # reads the validated extract
    "model": {"core", "ranking", "profiles", "registry"},  # validation ranking; warm start from the champion
    "evaluate": {"core", "ranking", "model", "profiles", "registry", "groups"},
    "publish": {"core", "ranking", "model", "profiles", "registry", "groups"},
    "config": {"core", "extract", "validate", "profiles", "model", "evaluate", "publish", "registry", "groups"},
}


def package_imports() -> dict[str, dict[str, set[str]]]:
    """For each stage package (or top-level module), the other packages it imports, with the files."""
    found: dict[str, dict[str, set[str]]] = {}
    for path in (PROJECT_ROOT / "pipelines").rglob("*.py"):
        parts = path.relative_to(PROJECT_ROOT / "pipelines").parts
        if parts == ("__init__.py",):
            continue
        source = parts[0].removesuffix(".py")
        for name in imported_modules(path):
            target = name.split(".")
            if target[0] == "pipelines" and len(target) > 1 and target[1] != source:
                found.setdefault(source, {}).setdefault(target[1], set()).add(str(path.relative_to(PROJECT_ROOT)))
    return found


def test_stage_packages_import_only_what_they_may():
    forbidden = {f"{source} -> {target}": sorted(files)
                 for source, targets in package_imports().items() for target, files in targets.items()
                 if target not in ALLOWED_IMPORTS.get(source, set())}
    assert forbidden == {}


def test_every_stage_package_is_in_the_import_rules():
    packages = {p.name for p in (PROJECT_ROOT / "pipelines").iterdir() if (p / "__init__.py").is_file()}
    assert packages | {"config"} == set(ALLOWED_IMPORTS)


def test_the_allowed_imports_have_no_cycle():
    def reaches(start: str, goal: str, seen: frozenset[str] = frozenset()) -> bool:
        return any(nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt}))
                   for nxt in ALLOWED_IMPORTS[start])

    assert [name for name in ALLOWED_IMPORTS if reaches(name, name)] == []


def test_pyproject_lists_every_package_and_data_folder():
    """setuptools ships only the listed packages: a new stage package left out would be missing from
    the wheel (the Docker image) while every test here passes from the source tree."""
    import tomllib

    listed = set(tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {path.parent for root in ("tasks", "pipelines")
               for path in (PROJECT_ROOT / root).rglob("*") if path.is_file() and "__pycache__" not in path.parts}
    on_disk = {".".join(folder.relative_to(PROJECT_ROOT).parts) for folder in folders}
    assert listed == on_disk
