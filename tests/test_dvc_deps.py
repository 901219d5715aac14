"""dvc.yaml's code deps are true: each stage lists everything its entry point imports from the project.

The closure is computed from the source (every import statement, also those inside functions,
which is where heavy imports live), so a stage whose code changes is never reported up to date.
"""

from __future__ import annotations

import ast
from pathlib import Path, PurePosixPath

import pytest
import yaml

from tests.conftest import PROJECT_ROOT
from tests.imports import imported_names

PROJECT_PACKAGES = ("tasks", "pipelines")
# Files a module reads at run time (not imports): the suites, the report's templates, Alembic's revisions.
PACKAGE_DATA = {"pipelines/validate/suites.py": ["pipelines/validate/expectations"],
                "pipelines/evaluate/report.py": ["pipelines/evaluate/templates"],
                "pipelines/registry/migrations/__init__.py": ["pipelines/registry/migrations/versions"]}


def module_file(module: str) -> Path | None:
    """The project file that defines ``module`` (a module or a package's __init__), or None."""
    base = PROJECT_ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(path: Path) -> set[str]:
    """Every project module ``path`` imports, at any depth of the code, with the packages above it."""
    modules = set()
    for name in imported_names(path, with_members=True):
        if name.split(".")[0] not in PROJECT_PACKAGES:
            continue
        parts = name.split(".")
        modules.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))  # importing a.b.c runs a, a.b
    return {m for m in modules if module_file(m) is not None}


def import_closure(module: str) -> set[str]:
    """The project files (relative POSIX paths) that importing and running ``module`` can load."""
    seen: set[str] = set()
    pending = [module, *(".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1))]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        pending.extend(imported_modules(module_file(name)) - seen)
    files = {module_file(name).relative_to(PROJECT_ROOT).as_posix() for name in seen}
    return files | {data for file in files for data in PACKAGE_DATA.get(file, [])}


def covered(path: str, deps: list[str]) -> bool:
    target = PurePosixPath(path)
    return any(target == PurePosixPath(dep) or PurePosixPath(dep) in target.parents for dep in deps)


@pytest.fixture(scope="module")
def dvc_stages() -> dict[str, dict]:
    return yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"]


def code_deps(stage: dict) -> list[str]:
    return [dep for dep in stage.get("deps", []) if dep.split("/")[0] in PROJECT_PACKAGES]


def test_every_stage_lists_its_whole_import_closure(dvc_stages):
    missing = {name: sorted(f for f in import_closure(f"tasks.{name}") if not covered(f, code_deps(stage)))
               for name, stage in dvc_stages.items()}
    assert {name: files for name, files in missing.items() if files} == {}


def test_every_code_dep_is_imported_by_its_stage(dvc_stages):
    """No padding: a listed file or package holds something the stage really loads."""
    unused = {}
    for name, stage in dvc_stages.items():
        closure = import_closure(f"tasks.{name}")
        unused[name] = [dep for dep in code_deps(stage) if not any(covered(f, [dep]) for f in closure)]
    assert {name: deps for name, deps in unused.items() if deps} == {}


def test_the_closure_follows_imports_inside_functions(tmp_path):
    """The property the deps rely on, on the real tree: a lazy import is part of the closure."""
    closure = import_closure("tasks.finetune")
    assert "pipelines/model/training.py" in closure  # imported only inside run_finetune
    assert "tasks/common.py" in closure and "pipelines/__init__.py" in closure
    assert not any(f.startswith("pipelines/datasets/") for f in closure)  # never part of a night


def test_dvc_ignores_bytecode():
    """Directory deps are hashed whole by DVC: bytecode written by a test run must not change them."""
    patterns = (PROJECT_ROOT / ".dvcignore").read_text().split()
    assert "__pycache__/" in patterns and "*.pyc" in patterns


def sections_read(stage: str) -> set[str]:
    """The params sections the entry point hands its stage (``params.<section>``), as params.yaml spells them."""
    from pipelines.config import Params

    yaml_name = {name: (field.alias or name) for name, field in Params.model_fields.items()}
    tree = ast.parse((PROJECT_ROOT / "tasks" / f"{stage}.py").read_text())
    return {yaml_name[node.attr] for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "params"
            and node.attr in yaml_name}


def test_every_stage_names_the_params_sections_it_reads(dvc_stages):
    """Locations (``paths``) and the night (``run``, in the cmd) are left out: they change no result."""
    listed = {name: {p for p in stage.get("params", []) if isinstance(p, str) and not p.startswith("run.")}
              for name, stage in dvc_stages.items()}
    read = {name: sections_read(name) - {"paths", "run"} for name in dvc_stages}
    assert listed == read
