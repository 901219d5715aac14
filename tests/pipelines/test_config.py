"""The typed params: params.yaml validates, holds every default, and bad keys fail by name before any work."""

from __future__ import annotations

import ast
import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from pipelines.config import Params, ParamsError, load_params, parse_params
from pipelines.core.io import NonRetryableError
from tests.conftest import PROJECT_ROOT, shipped_params

SHIPPED = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
NOT_STAGE_SETTINGS = ("run", "paths")  # a logical date and locations: names that code reuses freely


def with_change(path: str, value: Any = None, *, delete: bool = False) -> dict[str, Any]:
    """The shipped params with one key (dotted path) set, added or deleted."""
    params = copy.deepcopy(SHIPPED)
    *parents, last = path.split(".")
    node = params
    for key in parents:
        node = node[key]
    if delete:
        del node[last]
    else:
        node[last] = value
    return params


def problems(raw: dict[str, Any]) -> str:
    with pytest.raises(ParamsError) as caught:
        parse_params(raw, source="params.yaml")
    return str(caught.value)


def test_the_shipped_params_validate_and_keep_every_value():
    params = shipped_params()
    assert params.as_dict() == SHIPPED
    assert params.finetune.patience == SHIPPED["finetune"]["patience"]
    assert params.validation.drift.max_activity_js == SHIPPED["validate"]["drift"]["max_activity_js"]


def sections(model: type[BaseModel] = Params) -> list[type[BaseModel]]:
    nested = [f.annotation for f in model.model_fields.values()
              if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel)]
    return [model, *(s for n in nested for s in sections(n))]


def test_the_model_holds_no_default_values():
    """params.yaml is the only home of defaults: every key of every section must be set there."""
    defaulted = {f"{s.__name__}.{name}" for s in sections() for name, f in s.model_fields.items()
                 if not f.is_required()}
    assert defaulted == set()


def params_values() -> dict[str, list[Any]]:
    """Every stage setting's value in params.yaml, by key name (a name may occur in several sections)."""
    values: dict[str, list[Any]] = {}

    def walk(node: dict[str, Any]) -> None:
        for key, value in node.items():
            if isinstance(value, dict) and key not in ("mapping", "gate"):
                walk(value)
            else:
                values.setdefault(key, []).append(value)

    walk({k: v for k, v in SHIPPED.items() if k not in NOT_STAGE_SETTINGS})
    return values


def code_defaults(path: Path) -> list[tuple[str, int, ast.expr]]:
    """Defaults in ``path`` for a name: keyword defaults, class field defaults, ``.get("name", d)``
    and ``.get("name") or d``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            positional = node.args.posonlyargs + node.args.args
            pairs = list(zip(positional[len(positional) - len(node.args.defaults):], node.args.defaults))
            pairs += [(a, d) for a, d in zip(node.args.kwonlyargs, node.args.kw_defaults) if d is not None]
            found += [(arg.arg, default.lineno, default) for arg, default in pairs]
        elif isinstance(node, ast.ClassDef):
            found += [(item.target.id, item.lineno, item.value) for item in node.body
                      if isinstance(item, ast.AnnAssign) and item.value is not None and isinstance(item.target, ast.Name)]
        elif isinstance(node, ast.Call) and _is_get(node) and len(node.args) == 2:
            found.append((node.args[0].value, node.lineno, node.args[1]))
        elif isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or) and _is_get(node.values[0]):
            found.append((node.values[0].args[0].value, node.lineno, node.values[1]))
    return found


def _is_get(node: ast.expr) -> bool:
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
            and bool(node.args) and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str))


def test_no_default_in_code_disagrees_with_params_yaml():
    """A setting's name with a default in code: the default must be params.yaml's value (or None)."""
    values = params_values()
    disagreeing = []
    for path in sorted([*(PROJECT_ROOT / "pipelines").rglob("*.py"), *(PROJECT_ROOT / "tasks").rglob("*.py")]):
        if path == PROJECT_ROOT / "pipelines" / "config.py":  # field constraints, not defaults
            continue
        for name, line, default in code_defaults(path):
            if name not in values:
                continue
            try:
                value = ast.literal_eval(default)
            except ValueError:
                value = ast.unparse(default)  # not a literal: cannot equal params.yaml's value
            if value is not None and value not in values[name]:
                disagreeing.append(f"{path.relative_to(PROJECT_ROOT)}:{line}: {name}={value!r}, "
                                   f"params.yaml has {values[name]}")
    assert disagreeing == []


def test_the_defaults_scan_finds_a_disagreeing_default(tmp_path):
    source = tmp_path / "example.py"
    source.write_text("def train(patience: int = 3):\n    return settings.get('lr_schedule') or 'constant'\n")
    found = {(name, ast.literal_eval(default)) for name, _, default in code_defaults(source)}
    assert found == {("patience", 3), ("lr_schedule", "constant")}
    assert 3 not in params_values()["patience"]


def test_a_misspelled_key_is_named_with_its_path_and_the_allowed_keys():
    message = problems(with_change("finetune.patince", 3))
    assert "finetune.patince: unknown key; did you mean 'patience'?" in message
    assert "allowed: base_model, max_text_tokens" in message and "patience" in message


@pytest.mark.parametrize("path, value, expected", [
    ("finetune.lr_schedule", "cosin", "finetune.lr_schedule: Input should be 'constant', 'linear' or 'cosine'"),
    ("finetune.epochs", "five", "finetune.epochs: Input should be a valid integer"),
    ("finetune.device", "tpu", "finetune.device: Input should be 'auto', 'cuda' or 'cpu'"),
    ("validate.drift.max_popularity_js", 1.5, "validate.drift.max_popularity_js: Input should be less than or equal to 1"),
    ("profiles.min_user_interactions", 2, "profiles.min_user_interactions: Input should be greater than or equal to 3"),
    ("run.logical_date", "2026-13-45", "run.logical_date: must be a date YYYY-MM-DD, got '2026-13-45'"),
    ("validate.rating_min", 9.0, "validate: rating_min (9.0) must not exceed rating_max (5.0)"),
    ("finetune.num_heads", 5, "finetune: hidden_dim (96) must be a multiple of num_heads (5)"),
    ("extract.connect_backoff_s", 60.0, "extract: connect_backoff_s must not exceed connect_max_backoff_s"),
    ("extract.mapping.items.table", "items; DROP TABLE x", "extract.mapping.items.table: 'items; DROP TABLE x' is not"),
    # The gate judges ndcg@10 against the champion; a paired interval exists only at the headline k.
    ("evaluate.k", 5, "evaluate.gate.metrics[0] (ndcg@10).change: 'ndcg@10' is not a metric the evaluation computes"),
    ("bogus", 1, "bogus: unknown key (allowed: run, paths, demo_data, extract, validate, profiles, finetune"),
])
def test_a_bad_value_is_named_with_what_is_allowed(path, value, expected):
    assert expected in problems(with_change(path, value))


def test_a_missing_key_is_an_error_not_a_silent_default():
    assert "publish.k: missing" in problems(with_change("publish.k", delete=True))


def test_every_problem_is_reported_at_once():
    raw = with_change("finetune.patince", 3)
    raw["publish"]["k"] = 0
    raw["validate"]["min_rows"] = "many"
    message = problems(raw)
    assert message.startswith("params.yaml is invalid (3 problems):")
    assert all(key in message for key in ("finetune.patince", "publish.k", "validate.min_rows"))


def test_connection_urls_come_from_the_environment_over_the_file():
    params = parse_params(SHIPPED, environ={"RETRAIN_WAREHOUSE_URL": "postgresql://etl@db/analytics"})
    assert params.paths.warehouse_url == "postgresql://etl@db/analytics"
    assert params.paths.registry_url == SHIPPED["paths"]["registry_url"]
    assert SHIPPED["paths"]["warehouse_url"] == "sqlite:///warehouse/demo.db"  # the caller's dict is left alone


def test_the_airflow_registry_connection_wins_over_the_registry_url_variable():
    connection = '{"conn_type": "postgres", "host": "db", "login": "reg", "password": "p@ss", "schema": "registry"}'
    params = parse_params(SHIPPED, environ={"AIRFLOW_CONN_REGISTRY": connection,
                                            "RETRAIN_REGISTRY_URL": "sqlite:///elsewhere.db"})
    assert params.paths.registry_url == "postgresql+psycopg2://reg:p%40ss@db/registry"
    with pytest.raises(NonRetryableError, match="AIRFLOW_CONN_REGISTRY: unsupported connection type 'http'"):
        parse_params(SHIPPED, environ={"AIRFLOW_CONN_REGISTRY": "http://registry.example"})


@pytest.mark.parametrize("content, expected", [
    (None, "params file not found"),
    ("finetune: [unclosed", "is not valid YAML"),
    ("- a list", "must hold a mapping of sections, got list"),
])
def test_an_unusable_file_is_named(tmp_path, content, expected):
    path = tmp_path / "params.yaml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ParamsError, match=expected):
        load_params(path, environ={})


def test_a_misspelled_key_stops_a_stage_with_exit_3_and_its_path(tmp_path):
    """Through the CLI, as an operator runs it: one clear line per problem, no traceback, exit 3."""
    bad = with_change("finetune.patince", 3)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(bad))
    result = subprocess.run([sys.executable, "-m", "tasks.cli", "--params", str(tmp_path / "params.yaml"),
                             "stage", "extract", "--logical-date", "2026-03-02"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 3, result.stderr
    assert "finetune.patince: unknown key; did you mean 'patience'?" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "state").exists()  # no work was done
