"""The validation suites as files: ``pipelines/validate/expectations/<asset>.json``, shipped as package data.

Each file is a Great Expectations 1.x ExpectationSuite in its serialized shape (``name``,
``expectations`` with ``type``, ``kwargs``, ``meta``, optional ``description``; ``meta`` and
``notes`` of the suite) for one GX asset of the same name. Thresholds are GX suite parameters,
``{"$PARAMETER": "rating_min"}``, filled by GX itself at run time from the values passed as
``expectation_parameters`` (GX substitutes any top-level kwarg, datetimes and lists included).

Two conventions of our own, kept inside ``meta`` so the files stay valid GX suites:

* ``meta.expected``, ``meta.context`` and ``description`` are text templates over the same
  values (``"between {rating_min} and {rating_max}"``): GX does not substitute into them, and the
  failure line must show the threshold actually used;
* ``meta.run_if`` names a boolean value: the expectation runs only where it is true (a night
  without a volume baseline, a drift distance not checked tonight, an extract without
  ``future_rows``).

Parameter names are identifiers (GX's parser allows no dots): a nested section of the
``validate`` params is flattened with ``_`` (``drift.max_popularity_js`` is
``drift_max_popularity_js``).
"""

from __future__ import annotations

import datetime as dt
import json
import string
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

from pipelines.core.io import NonRetryableError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

    from great_expectations.expectations import Expectation

SUITES_PACKAGE = "pipelines.validate"
SUITES_DIR = "expectations"
PARAMETER_KEY = "$PARAMETER"
TEMPLATE_FIELDS = ("expected", "context")  # meta fields rendered with the parameter values
RUN_IF = "run_if"


class SuiteFileError(NonRetryableError):
    """A suite file that cannot be read, names an unknown expectation or lacks a parameter."""


@dataclass(frozen=True)
class SuiteFile:
    """One parsed suite file; ``source`` names it in every error."""

    source: str
    name: str
    expectations: tuple[Mapping[str, Any], ...]

    def where(self, index: int) -> str:
        """``file: expectation #i (type on column)``, for error messages."""
        entry = self.expectations[index]
        column = (entry.get("kwargs") or {}).get("column")
        on = f" on {column}" if column else ""
        return f"{self.source}: expectation #{index} ({entry.get('type')}{on})"


def suites_dir() -> Traversable:
    """The installed ``pipelines/validate/expectations`` directory (package data)."""
    return resources.files(SUITES_PACKAGE) / SUITES_DIR


def suite_files(directory: Traversable | None = None) -> dict[str, Traversable]:
    """Suite name (the file's stem) -> file, for every ``*.json`` in ``directory``."""
    directory = directory if directory is not None else suites_dir()
    return {entry.name.removesuffix(".json"): entry for entry in sorted(directory.iterdir(), key=lambda e: e.name)
            if entry.name.endswith(".json")}


def parse_suite(text: str, source: str) -> SuiteFile:
    """Checks the shape of one suite file's JSON (not yet its expectation types).

    Raises:
        SuiteFileError: invalid JSON, no ``name``, or an expectation without ``type``/``kwargs``.
    """
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SuiteFileError(f"{source}: not valid JSON: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("name"), str) or not document["name"]:
        raise SuiteFileError(f"{source}: a suite file needs a non-empty \"name\"")
    expectations = document.get("expectations")
    if not isinstance(expectations, list):
        raise SuiteFileError(f"{source}: \"expectations\" must be a list")
    for index, entry in enumerate(expectations):
        if not isinstance(entry, dict) or not isinstance(entry.get("type"), str) \
                or not isinstance(entry.get("kwargs"), dict) or not isinstance(entry.get("meta", {}), dict):
            raise SuiteFileError(f"{source}: expectation #{index} needs a \"type\", a \"kwargs\" object "
                                 "and (optionally) a \"meta\" object")
    return SuiteFile(source, document["name"], tuple(expectations))


def read_suite(name: str, directory: Traversable | None = None) -> SuiteFile:
    """Reads and parses the suite file ``<name>.json``."""
    files = suite_files(directory)
    if name not in files:
        raise SuiteFileError(f"no suite file {name}.json in {directory or suites_dir()}")
    suite = parse_suite(files[name].read_text(encoding="utf-8"), f"{SUITES_DIR}/{name}.json")
    if suite.name != name:
        raise SuiteFileError(f"{suite.source}: its \"name\" is {suite.name!r}, not the file's stem {name!r}")
    return suite


def parameter_names(entry: Mapping[str, Any]) -> set[str]:
    """The ``$PARAMETER`` names an expectation uses: in kwargs, templates and ``run_if``."""
    names = {value[PARAMETER_KEY] for value in entry["kwargs"].values()
             if isinstance(value, dict) and PARAMETER_KEY in value}
    meta = entry.get("meta") or {}
    texts = [meta.get(key) for key in TEMPLATE_FIELDS] + [entry.get("description")]
    names |= {field for text in texts if isinstance(text, str) for field in _template_fields(text)}
    if meta.get(RUN_IF):
        names.add(str(meta[RUN_IF]))
    return names


def _template_fields(text: str) -> Iterator[str]:
    for _, field, _, _ in string.Formatter().parse(text):
        if field:
            yield field


def flatten_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """The ``validate`` params as parameter values: scalars by name, nested sections as ``section_key``."""
    values: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, Mapping):
            values.update({f"{key}_{inner}": v for inner, v in value.items() if not isinstance(v, (Mapping, list))})
        elif not isinstance(value, list):
            values[key] = value
    return values


def _render(text: str, values: Mapping[str, Any]) -> str:
    """A template with datetimes written as ISO text (the form the interval is written in)."""
    shown = {k: v.isoformat() if isinstance(v, dt.datetime) else v for k, v in values.items()}
    return text.format_map(shown)


def check_expectation_types(suite: SuiteFile) -> None:
    """Every ``type`` must name an expectation GX knows; a typo would otherwise only fail at run time."""
    from great_expectations.exceptions import ExpectationNotFoundError
    from great_expectations.expectations.registry import get_expectation_impl

    for index, entry in enumerate(suite.expectations):
        try:
            get_expectation_impl(entry["type"])
        except ExpectationNotFoundError:
            raise SuiteFileError(f"{suite.where(index)}: unknown expectation type {entry['type']!r}") from None


def build_suite(suite: SuiteFile, values: Mapping[str, Any]) -> list[Expectation]:
    """The suite's expectations whose ``run_if`` holds, with texts rendered; kwargs keep ``$PARAMETER``.

    Raises:
        SuiteFileError: an unknown expectation type, a parameter missing from ``values``, or
            kwargs that GX rejects; the message names the file and the expectation.
    """
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    check_expectation_types(suite)
    built: list[Expectation] = []
    for index, entry in enumerate(suite.expectations):
        meta = dict(entry.get("meta") or {})
        condition = meta.pop(RUN_IF, None)
        # A check that does not run tonight may name values absent tonight (no validate.drift section).
        if condition is not None and condition in values and not values[condition]:
            continue
        missing = sorted(parameter_names(entry) - set(values))
        if missing:
            raise SuiteFileError(f"{suite.where(index)}: no value for $PARAMETER {', '.join(missing)} "
                                 "(neither in params.yaml's validate section nor derived by the validate stage)")
        description = entry.get("description")
        try:
            meta.update({key: _render(meta[key], values) for key in TEMPLATE_FIELDS if isinstance(meta.get(key), str)})
            description = _render(description, values) if isinstance(description, str) else None
        except (ValueError, TypeError) as exc:  # e.g. a format spec that does not fit the value
            raise SuiteFileError(f"{suite.where(index)}: bad text template: {exc}") from exc
        try:
            built.append(ExpectationConfiguration(
                type=entry["type"], kwargs=dict(entry["kwargs"]), meta=meta, description=description,
            ).to_domain_obj())
        except Exception as exc:  # GX raises pydantic errors, its own or ValueError: all mean a bad entry
            reason = " ".join(str(exc).split())[:300] or type(exc).__name__
            raise SuiteFileError(f"{suite.where(index)}: GX rejects it: {reason}") from exc
    return built
