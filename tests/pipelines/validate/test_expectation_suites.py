"""The suite files in pipelines/validate/expectations: each loads, names only known parameters, and a bad one fails by name."""

from __future__ import annotations

import datetime as dt
import json
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines.core import schema
from pipelines.validate.suites import (
    SuiteFileError,
    build_suite,
    flatten_params,
    parameter_names,
    parse_suite,
    read_suite,
    suite_files,
)
from pipelines.validate.validation import DERIVED_PARAMETERS, DRIFT_CHECKS, TABLES, suite_parameters
from tests.conftest import PROJECT_ROOT

SHIPPED_PARAMS = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())["validate"]
START, END = dt.datetime(2026, 3, 1), dt.datetime(2026, 3, 2)


def every_check_on() -> dict[str, Any]:
    """The shipped params plus derived values with every ``run_if`` condition true."""
    values = suite_parameters(SHIPPED_PARAMS, START, END)
    values.update({name: True for name in values if name.endswith("_checked")})
    values.update(extracted_at="2026-03-02T03:00:00", future_rows=0)
    return values


def test_every_suite_file_is_a_gx_suite_named_after_its_file_and_builds() -> None:
    files = suite_files()
    assert set(TABLES) <= set(files), "every extracted table needs a suite file"
    values = every_check_on()
    for name in files:
        suite = read_suite(name)
        assert suite.name == name and suite.expectations, name
        built = build_suite(suite, values)
        assert len(built) == len(suite.expectations), f"{name}: an expectation did not build with every check on"


def test_every_parameter_is_in_params_yaml_validate_or_derived() -> None:
    known = set(flatten_params(SHIPPED_PARAMS)) | set(DERIVED_PARAMETERS)
    for name in suite_files():
        suite = read_suite(name)
        for index, entry in enumerate(suite.expectations):
            unknown = parameter_names(entry) - known
            assert not unknown, f"{suite.where(index)} names unknown parameters {sorted(unknown)}"
    # ... and what the code derives is what it says it derives.
    assert set(suite_parameters(SHIPPED_PARAMS, START, END)) - set(flatten_params(SHIPPED_PARAMS)) \
        == set(DERIVED_PARAMETERS)


def test_table_suites_match_the_schema_contract() -> None:
    contract = {"interactions": schema.INTERACTION_COLUMNS, "items": schema.ITEM_COLUMNS, "users": schema.USER_COLUMNS}
    for table, columns in contract.items():
        first = read_suite(table).expectations[0]
        assert first["type"] == "expect_table_columns_to_match_set"
        assert first["kwargs"]["column_set"] == list(columns)


def test_drift_suite_has_one_check_per_distance_gated_by_its_plan() -> None:
    entries = read_suite("interactions_drift").expectations
    assert [e["kwargs"]["column"] for e in entries] == list(DRIFT_CHECKS)
    assert [e["meta"]["run_if"] for e in entries] == [f"{name}_checked" for name in DRIFT_CHECKS]


def test_thresholds_reach_gx_as_suite_parameters_and_texts_are_rendered() -> None:
    rating = next(e for e in build_suite(read_suite("interactions"), every_check_on())
                  if e.expectation_type == "expect_column_values_to_be_between")
    config = rating.configuration
    assert config.kwargs["min_value"] == {"$PARAMETER": "rating_min"}
    assert config.meta["expected"] == (f"between {SHIPPED_PARAMS['rating_min']} and {SHIPPED_PARAMS['rating_max']} "
                                       "(nulls allowed)")


def test_a_check_whose_condition_is_false_does_not_run() -> None:
    values = {**every_check_on(), "volume_checked": False}
    built = build_suite(read_suite("interactions_night"), values)
    assert [e.meta["expected"].split(":")[0] for e in built] == ["bot share"]
    assert "run_if" not in built[0].meta  # our convention stays out of what GX reports


def test_pyproject_ships_every_suite_file_as_package_data() -> None:
    tomllib = pytest.importorskip("tomllib")
    setuptools = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "pipelines.validate.expectations" in setuptools["packages"]  # a data-only package: listed, or not shipped
    patterns = setuptools["package-data"]["pipelines.validate.expectations"]
    shipped = [path.name for path in (PROJECT_ROOT / "pipelines" / "validate" / "expectations").iterdir()]
    assert shipped and all(any(fnmatch(name, pattern) for pattern in patterns) for name in shipped), shipped


# --- bad suite files ---------------------------------------------------------------------------


def bad_suite(tmp_path: Path, entry: dict[str, Any]) -> Path:
    path = tmp_path / "broken.json"
    path.write_text(json.dumps({"name": "broken", "expectations": [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "user_id"}, "meta": {}}, entry]}))
    return path


def test_an_unknown_expectation_type_names_the_file_and_the_expectation(tmp_path: Path) -> None:
    path = bad_suite(tmp_path, {"type": "expect_column_values_to_be_nice", "kwargs": {"column": "title"}})
    with pytest.raises(SuiteFileError) as raised:
        build_suite(parse_suite(path.read_text(), str(path)), every_check_on())
    message = str(raised.value)
    assert str(path) in message and "expectation #1" in message and "on title" in message
    assert "unknown expectation type 'expect_column_values_to_be_nice'" in message


def test_a_missing_parameter_names_the_file_the_expectation_and_the_parameter(tmp_path: Path) -> None:
    path = bad_suite(tmp_path, {"type": "expect_column_values_to_be_between",
                                "kwargs": {"column": "rating", "max_value": {"$PARAMETER": "rating_maximum"}},
                                "meta": {"expected": "at most {rating_maximum}"}})
    with pytest.raises(SuiteFileError) as raised:
        build_suite(parse_suite(path.read_text(), str(path)), every_check_on())
    message = str(raised.value)
    assert str(path) in message and "expectation #1 (expect_column_values_to_be_between on rating)" in message
    assert "$PARAMETER rating_maximum" in message


def test_kwargs_gx_rejects_name_the_file_and_the_expectation(tmp_path: Path) -> None:
    path = bad_suite(tmp_path, {"type": "expect_column_values_to_be_between",
                                "kwargs": {"column": "rating", "maximum": 5}})
    with pytest.raises(SuiteFileError, match=r"broken\.json: expectation #1 .*GX rejects it: .*maximum"):
        build_suite(parse_suite(path.read_text(), str(path)), every_check_on())


@pytest.mark.parametrize("text, words", [
    ("{", "not valid JSON"),
    ('{"expectations": []}', "non-empty \\\"name\\\""),
    ('{"name": "x", "expectations": [{"kwargs": {}}]}', "expectation #0 needs a \\\"type\\\""),
])
def test_a_malformed_file_is_refused_with_its_name(text: str, words: str) -> None:
    with pytest.raises(SuiteFileError, match=f"^bad.json: .*{words}"):
        parse_suite(text, "bad.json")
