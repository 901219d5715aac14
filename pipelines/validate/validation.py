"""Validation of the extract stage's outputs with the Great Expectations 1.x suites in ``pipelines/validate/expectations``.

Every call builds its own ephemeral GX context, so parallel runs (two nights backfilled at
once, two test workers) share no mutable GX state and nothing reads a ``great_expectations.yml``
(within one process, calls take turns: GX keeps a process-wide "current context").
The suites are JSON files, one per GX asset (``pipelines.validate.suites`` reads them): the
contract in ``pipelines.core.schema`` plus thresholds written as GX suite parameters, filled from the
``validate`` section of params.yaml and the values this module derives (``suite_parameters``);
what fails is written to ``result.json`` and rendered by GX's own Data Docs site builder into
``data_docs/`` under the output directory.

Checks that span tables or rows (referential integrity, events dated before their user or item
existed, the night's row count, its volume against the earlier nights and its busiest user's
share, its drift against the night before) run on small frames derived with pandas
(``interactions_unknown_keys``, ``interactions_before_created``, ``interactions_interval``,
``interactions_night``, ``interactions_drift``, ``interactions_future``) rather
than on value sets in the suite: a value set of a million keys would be copied into the suite,
the result and every Data Docs page, while a masked column costs one ``isin`` per key column.
An extract with the optional group tables also gets their suites and cross-table checks
(``pipelines.validate.groups``); without them those suites do not run.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import fcntl
import io
import logging
import os
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from pipelines.validate import drift as drift_metrics
from pipelines.validate import groups as group_checks
from pipelines.core import schema
from pipelines.validate.suites import build_suite, flatten_params, read_suite, suite_files
from pipelines.core.io import NonRetryableError, read_json, sha256_file, write_json, write_text

if TYPE_CHECKING:  # great_expectations takes seconds to import: only inside the functions
    from great_expectations.core import ExpectationSuiteValidationResult
    from great_expectations.expectations import Expectation

log = logging.getLogger(__name__)

RESULT_FILE = "result.json"
DATA_DOCS_DIR = "data_docs"
MANIFEST_FILE = "manifest.json"

TABLES = ("interactions", "items", "users")  # the extract's tables; their suites are files of the same name
# Derived GX assets (each checked by the suite file of the same name).
UNKNOWN_KEYS_ASSET = "interactions_unknown_keys"
INTERVAL_ASSET = "interactions_interval"
BEFORE_CREATED_ASSET = "interactions_before_created"
NIGHT_ASSET = "interactions_night"  # one row: the night's volume ratio and busiest user's share
DRIFT_ASSET = "interactions_drift"  # one row: the night's checked distances to the night before
FUTURE_ASSET = "interactions_future"  # one row: the manifest's count of interactions dated after extraction
# The drift distances the suite can check; the threshold of each is validate.drift.max_<name>.
DRIFT_CHECKS = ("event_mix_tv", "popularity_js", "activity_js", "new_user_share", "new_item_share")
NEW_SHARES = ("new_user_share", "new_item_share")
HISTORY_FIELDS = ["logical_date", "success", "failures", "interactions_rows", "interval_rows", "volume_ratio",
                  "top_user_share", *DRIFT_CHECKS]
HISTORY_PAGE = "history.html"  # beside history.csv: each column across nights (pipelines.evaluate.report)
# History column -> (chart title, the validate params that are its thresholds, as in params.yaml).
HISTORY_CHARTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "failures": ("Failed expectations", ()),
    "interactions_rows": ("Interactions in the training window", ("min_rows",)),
    "interval_rows": ("Interactions in the night's interval", ("min_interval_rows",)),
    "volume_ratio": ("Volume: the night's rows / median of the earlier nights",
                     ("volume_min_ratio", "volume_max_ratio")),
    "top_user_share": ("Busiest user's share of the night's events", ("max_user_share",)),
    "event_mix_tv": ("Drift: event-type mix (total variation)", ("drift.max_event_mix_tv",)),
    "popularity_js": ("Drift: item popularity (Jensen-Shannon)", ("drift.max_popularity_js",)),
    "activity_js": ("Drift: per-user activity (Jensen-Shannon)", ("drift.max_activity_js",)),
    "new_user_share": ("Drift: share of new users", ("drift.max_new_user_share",)),
    "new_item_share": ("Drift: share of new items", ("drift.max_new_item_share",)),
}
# The suite parameters this module derives (``suite_parameters``) besides params.yaml's validate section.
DERIVED_PARAMETERS = (
    "interval_start", "interval_end", "stale_after", "event_types",
    "earlier_nights", "night_rows", "night_baseline", "top_user", "top_user_rows", "volume_checked",
    "user_share_checked", "drift_context", *(f"{name}_checked" for name in DRIFT_CHECKS),
    "extracted_at", "future_rows", "future_rows_checked", "groups_checked",
)
REFERENCES = {"item_id": "items", "user_id": "users"}
MAX_LISTED_FAILURES = 25  # keeps summary() on one screen; result.json keeps them all
# GX 1.x remembers the last context made by get_context() in a process-wide project manager,
# which some objects fall back on; runs in separate processes share nothing, threads take turns.
_GX_LOCK = threading.Lock()


@dataclass(frozen=True)
class Failure:
    """One failed expectation, in words a person on call can act on."""

    expectation: str
    table: str
    column: str | None
    observed: str
    expected: str

    def as_dict(self) -> dict[str, Any]:
        return {"expectation": self.expectation, "table": self.table, "column": self.column,
                "observed": self.observed, "expected": self.expected}

    def line(self) -> str:
        where = f"{self.table}.{self.column}" if self.column else self.table
        return f"{where}: {self.expectation}: observed {self.observed}; expected {self.expected}"


@dataclass
class ValidationReport:
    """The outcome of one validation run (what ``result.json`` holds, minus per-check detail)."""

    success: bool
    failures: list[Failure]
    logical_date: str = ""
    statistics: dict[str, Any] = field(default_factory=dict)
    expectations_run: int = 0
    extract_manifest_sha256: str = ""
    out_dir: Path | None = None

    def summary(self) -> str:
        """A one-screen account: the verdict, the key counts and every failed expectation."""
        verdict = "PASSED" if self.success else "FAILED"
        stats = self.statistics
        lines = [
            f"validation {verdict} for logical date {self.logical_date}: "
            f"{len(self.failures)} of {self.expectations_run} expectations failed",
            f"  rows: interactions={stats.get('interactions_rows')} items={stats.get('items_rows')} "
            f"users={stats.get('users_rows')}; in the night's interval={stats.get('interval_rows')}; "
            f"newest ts={stats.get('newest_ts')}",
        ]
        if "group_members_rows" in stats:
            lines.append(f"  groups: memberships={stats['group_members_rows']} "
                         f"group events={stats.get('group_events_rows')}")
        lines += [f"  - {failure.line()}" for failure in self.failures[:MAX_LISTED_FAILURES]]
        if len(self.failures) > MAX_LISTED_FAILURES:
            lines.append(f"  ... and {len(self.failures) - MAX_LISTED_FAILURES} more")
        skipped = (stats.get("future") or {}).get("skipped")
        if skipped:
            lines.append(f"  skipped: no interactions dated in the future: {skipped}")
        if self.out_dir is not None:
            docs = self.out_dir / DATA_DOCS_DIR / "index.html"
            lines.append(f"  details: {self.out_dir / RESULT_FILE}" + (f", {docs}" if docs.is_file() else ""))
        return "\n".join(lines)


@dataclass(frozen=True)
class Extract:
    """The extract stage's outputs, loaded."""

    manifest: dict[str, Any]
    manifest_sha256: str
    start: dt.datetime
    end: dt.datetime
    frames: dict[str, pd.DataFrame]

    @property
    def logical_date(self) -> str:
        return str(self.manifest["logical_date"])


def _naive_utc(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(str(text))
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return value


def read_manifest(extract_dir: Path) -> dict[str, Any]:
    """Reads the extract manifest; a missing or incomplete one is a broken input, not a blip."""
    path = Path(extract_dir) / MANIFEST_FILE
    if not path.is_file():
        raise NonRetryableError(f"extract manifest not found: {path}")
    manifest = read_json(path)
    missing = [key for key in ("logical_date", "data_interval") if key not in manifest]
    if missing or not {"start", "end"} <= set(manifest.get("data_interval") or {}):
        raise NonRetryableError(f"extract manifest {path} lacks logical_date/data_interval.start/end")
    return manifest


def load_extract(extract_dir: Path) -> Extract:
    extract_dir = Path(extract_dir)
    manifest = read_manifest(extract_dir)
    frames = {}
    for table in TABLES:
        path = schema.extract_table_path(extract_dir, table)
        if not path.exists():
            raise NonRetryableError(f"extract output missing: {path}")
        frames[table] = pd.read_parquet(path)
    present = [table for table in schema.GROUP_TABLES if schema.extract_table_path(extract_dir, table).exists()]
    if present and len(present) < len(schema.GROUP_TABLES):
        missing = [table for table in schema.GROUP_TABLES if table not in present]
        raise NonRetryableError(f"extract output missing: {schema.extract_table_path(extract_dir, missing[0])} "
                                f"(the group tables come together)")
    frames.update({table: pd.read_parquet(schema.extract_table_path(extract_dir, table)) for table in present})
    interval = manifest["data_interval"]
    try:
        start, end = _naive_utc(interval["start"]), _naive_utc(interval["end"])
    except ValueError as exc:
        raise NonRetryableError(f"bad data_interval in {extract_dir / MANIFEST_FILE}: {exc}") from exc
    return Extract(manifest, sha256_file(extract_dir / MANIFEST_FILE), start, end, frames)


# --- the suite ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class NightStats:
    """The night's volume against the earlier nights and its busiest user, before any check.

    Attributes:
        rows: interactions inside the night's interval.
        earlier: row counts of the earlier intervals of the same length (newest first) that
            the extract covers, up to ``validate.volume_nights`` of them.
        top_user: the user with the most events in the night (None on an empty night).
        top_user_rows: that user's events in the night.
    """

    rows: int
    earlier: tuple[int, ...]
    top_user: str | None
    top_user_rows: int

    @property
    def baseline(self) -> float | None:
        """The median of the earlier nights' counts (robust to one odd night among them)."""
        return float(pd.Series(self.earlier).median()) if self.earlier else None

    @property
    def volume_ratio(self) -> float | None:
        baseline = self.baseline
        return round(self.rows / baseline, 4) if baseline else None

    @property
    def top_user_share(self) -> float:
        return round(self.top_user_rows / self.rows, 4) if self.rows else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "earlier_nights": list(self.earlier), "baseline": self.baseline,
                "volume_ratio": self.volume_ratio, "top_user": self.top_user,
                "top_user_rows": self.top_user_rows, "top_user_share": self.top_user_share}


def night_stats(interactions: pd.DataFrame, start: dt.datetime, end: dt.datetime,
                nights: int) -> NightStats | None:
    """Counts the night's rows, the ``nights`` earlier intervals' rows and the busiest user.

    An earlier interval that starts before the day of the oldest extracted event is left out:
    the warehouse (or the training window) may not reach back that far, and a zero there is not
    a quiet night. None where ts is not a naive datetime column (the type check reports that).
    """
    ts = _naive_ts(interactions)
    if ts is None:
        return None
    in_night = (ts >= start) & (ts < end)
    users = interactions["user_id"][in_night] if "user_id" in interactions else pd.Series([], dtype=object)
    counts = users.value_counts()
    earlier: list[int] = []
    oldest = ts.min()
    length = end - start
    if pd.notna(oldest):
        first_day = oldest.normalize()
        recent = ts[ts >= start - nights * length]
        for k in range(1, nights + 1):
            lo, hi = start - k * length, end - k * length
            if lo < first_day:
                break
            earlier.append(int(((recent >= lo) & (recent < hi)).sum()))
    return NightStats(rows=int(in_night.sum()), earlier=tuple(earlier),
                      top_user=str(counts.index[0]) if len(counts) else None,
                      top_user_rows=int(counts.iloc[0]) if len(counts) else 0)


@dataclass(frozen=True)
class DriftPlan:
    """The night's drift distances and which of them the suite checks.

    Attributes:
        distances: every distance of ``pipelines.validate.drift.NightDrift`` (None where not computed).
        checked: distance -> value, for the distances the suite compares with their thresholds.
        skipped: distance -> why it is not checked tonight (no previous night, too few events...).
        context: the counts behind the distances, for the failure line.
    """

    distances: dict[str, Any]
    checked: dict[str, float]
    skipped: dict[str, str]
    context: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {**self.distances, "checked": sorted(self.checked), "skipped": dict(self.skipped)}


def _skip_all(reason: str) -> DriftPlan:
    return DriftPlan({}, {}, {name: reason for name in DRIFT_CHECKS})


def drift_plan(interactions: pd.DataFrame, start: dt.datetime, end: dt.datetime,
               params: Mapping[str, Any]) -> DriftPlan:
    """The night's distances to the night before it (the same interval one length earlier).

    The previous night comes from the same extract, so the comparison needs no stored state; an
    earlier interval that starts before the day of the oldest extracted event is not a night
    (the warehouse or the training window does not reach back that far). ``params`` is the
    ``validate`` section; without a ``drift`` part no drift check runs.
    """
    settings = params.get("drift")
    if not settings:
        return _skip_all("validate.drift is not configured")
    ts = _naive_ts(interactions)
    absent = [c for c in ("user_id", "item_id", "event_type") if c not in interactions]
    if ts is None or absent or not ts.notna().any():
        return _skip_all("the interactions lack a usable ts, user_id, item_id or event_type column")
    length, first_day = end - start, ts.min().normalize()
    if start - length < first_day:
        return _skip_all("no previous night in the extract")
    night = interactions[(ts >= start) & (ts < end)]
    distances = drift_metrics.night_drift(
        night, interactions[(ts >= start - length) & (ts < start)], interactions[ts < start],
        history_nights=int((start - first_day) / length), smoothing=float(settings["popularity_smoothing"]))
    values = distances.as_dict()
    min_rows = int(settings["min_rows"])
    context = f"{distances.rows} events vs {distances.previous_rows} the night before"
    if min(distances.rows, distances.previous_rows) < max(min_rows, 1):
        reason = f"{context}: fewer than validate.drift.min_rows={min_rows}"
        return DriftPlan(values, {}, {name: reason for name in DRIFT_CHECKS}, context)
    skipped = {}
    if distances.history_nights < int(settings["new_share_min_nights"]):
        skipped = {name: f"{distances.history_nights} earlier nights in the extract, fewer than "
                         f"validate.drift.new_share_min_nights={settings['new_share_min_nights']}"
                   for name in NEW_SHARES}
    checked = {name: float(values[name]) for name in DRIFT_CHECKS
               if name not in skipped and values[name] is not None}
    return DriftPlan(values, checked, skipped, context)


@dataclass(frozen=True)
class FutureRows:
    """The extract manifest's count of warehouse interactions dated after the extraction ran.

    Attributes:
        extracted_at: the extraction's wall-clock time (naive UTC, ISO), None in older manifests.
        rows: interactions in the warehouse with ts later than ``extracted_at`` (None: not recorded).
        skipped: why the check does not run (None when it runs).
    """

    extracted_at: str | None
    rows: int | None
    skipped: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"extracted_at": self.extracted_at, "future_rows": self.rows, "checked": self.skipped is None,
                "skipped": self.skipped}


FUTURE_FIELDS = ("extracted_at", "future_rows")


def future_rows(manifest: Mapping[str, Any], source: Path) -> FutureRows:
    """Reads ``extracted_at`` and ``future_rows`` from the extract manifest at ``source``.

    Extracts written before the fields existed lack them: the check is skipped, not failed.

    Raises:
        NonRetryableError: a field present but unreadable (not a count >= 0, not an ISO datetime).
    """
    missing = [name for name in FUTURE_FIELDS if manifest.get(name) is None]
    if missing:
        return FutureRows(None, None, f"the extract manifest has no {' or '.join(missing)} (an older extract)")
    count = manifest["future_rows"]
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise NonRetryableError(f"{source}: future_rows must be a count >= 0, got {count!r}")
    try:
        extracted_at = _naive_utc(manifest["extracted_at"])
    except ValueError:
        raise NonRetryableError(f"{source}: extracted_at must be an ISO datetime, "
                                f"got {manifest['extracted_at']!r}") from None
    return FutureRows(extracted_at.isoformat(), count)


def _night_parameters(params: Mapping[str, Any], night: NightStats | None) -> dict[str, Any]:
    """The night's counts for the suite's texts, and whether its volume and busiest-user checks run.

    The volume check needs ``volume_min_nights`` earlier nights covered by the extract (the first
    nights of a warehouse have no baseline); the share check needs ``user_share_min_rows`` events
    (one user's three events out of five are not a bot).
    """
    if night is None:
        return {"earlier_nights": 0, "night_rows": 0, "night_baseline": 0.0, "top_user": None, "top_user_rows": 0,
                "volume_checked": False, "user_share_checked": False}
    return {"earlier_nights": len(night.earlier), "night_rows": night.rows, "night_baseline": night.baseline or 0.0,
            "top_user": night.top_user, "top_user_rows": night.top_user_rows,
            "volume_checked": len(night.earlier) >= int(params["volume_min_nights"]) and bool(night.baseline),
            "user_share_checked": night.rows >= int(params["user_share_min_rows"])}


def suite_parameters(params: Mapping[str, Any], start: dt.datetime, end: dt.datetime,
                     night: NightStats | None = None, drift: DriftPlan | None = None,
                     future: FutureRows | None = None, groups: bool = False) -> dict[str, Any]:
    """Every value the suite files may name: ``params`` flattened, plus ``DERIVED_PARAMETERS``.

    Booleans named ``*_checked`` are the ``run_if`` conditions: ``night`` allows the volume and
    busiest-user checks where it has enough data, ``drift`` the distances it checks, ``future``
    the future-timestamps check where the manifest records it, ``groups`` the group suites where
    the extract has the group tables.
    """
    checked = drift.checked if drift is not None else {}
    return {
        **flatten_params(params),
        "interval_start": start, "interval_end": end,
        "stale_after": end - dt.timedelta(hours=float(params["max_staleness_hours"])),
        "event_types": list(schema.EVENT_TYPES),
        **_night_parameters(params, night),
        "drift_context": drift.context if drift is not None else "",
        **{f"{name}_checked": name in checked for name in DRIFT_CHECKS},
        "extracted_at": future.extracted_at if future is not None else None,
        "future_rows": future.rows if future is not None else None,
        "future_rows_checked": future is not None and future.skipped is None,
        "groups_checked": groups,
    }


def build_suites(values: Mapping[str, Any]) -> dict[str, list[Expectation]]:
    """Every suite file's expectations that run tonight, per GX asset; assets left empty are dropped."""
    suites = {name: build_suite(read_suite(name), values) for name in suite_files()}
    return {name: expectations for name, expectations in suites.items() if expectations}


def build_expectations(params: Mapping[str, Any], start: dt.datetime, end: dt.datetime,
                       night: NightStats | None = None, drift: DriftPlan | None = None,
                       future: FutureRows | None = None, groups: bool = False) -> dict[str, list[Expectation]]:
    """The whole suite, per GX asset (one suite each, since each asset is its own frame).

    ``night`` (from ``night_stats``) adds the volume and busiest-user checks where it allows them;
    ``drift`` (from ``drift_plan``) the drift checks it marks as checked; ``future`` (from
    ``future_rows``) the future-timestamps check where the manifest records it; ``groups`` the
    group suites.
    """
    return build_suites(suite_parameters(params, start, end, night, drift, future, groups))


def _naive_ts(interactions: pd.DataFrame) -> pd.Series | None:
    """The ts column if it is naive datetimes (anything else fails the type check, not Python)."""
    ts = interactions.get("ts")
    return ts if ts is not None and pd.api.types.is_datetime64_dtype(ts) else None


def _before_created(interactions: pd.DataFrame, frames: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Per key column, the key where the event's ts is before that user's or item's created_at.

    Unknown creation times (NULL, as MovieLens has them) and orphan keys are not judged here.
    """
    before = pd.DataFrame(index=interactions.index)
    ts = _naive_ts(interactions)
    for column, table in REFERENCES.items():
        source = frames[table]
        if ts is None or column not in interactions or not {column, "created_at"} <= set(source.columns) \
                or not pd.api.types.is_datetime64_dtype(source["created_at"]):
            before[column] = pd.Series(None, index=interactions.index, dtype=object)  # the type checks say why
            continue
        created = interactions[column].map(source.drop_duplicates(column).set_index(column)["created_at"])
        keys = interactions[column]
        before[column] = keys.where(ts.values < pd.to_datetime(created).values)  # NaT compares False
    return before


def derived_frames(frames: Mapping[str, pd.DataFrame], start: dt.datetime, end: dt.datetime,
                   night: NightStats | None = None, drift: DriftPlan | None = None,
                   future: FutureRows | None = None) -> dict[str, pd.DataFrame]:
    """The frames behind the cross-table, interval, night, future and group checks (empty where a column is absent)."""
    interactions = frames["interactions"]
    unknown = pd.DataFrame(index=interactions.index)
    for column, table in REFERENCES.items():
        if column in interactions and column in frames[table]:
            keys = interactions[column]
            unknown[column] = keys.where(~keys.isin(frames[table][column]))
    ts = _naive_ts(interactions)
    if ts is None:
        interval = pd.DataFrame({"ts": []})
    else:
        interval = interactions.loc[(ts >= start) & (ts < end), ["ts"]]
    derived = {UNKNOWN_KEYS_ASSET: unknown, BEFORE_CREATED_ASSET: _before_created(interactions, frames),
               INTERVAL_ASSET: interval}
    if night is not None:
        derived[NIGHT_ASSET] = pd.DataFrame({"volume_ratio": [night.volume_ratio],
                                             "top_user_share": [night.top_user_share]}, dtype="float64")
    if drift is not None and drift.checked:
        derived[DRIFT_ASSET] = pd.DataFrame({name: [value] for name, value in drift.checked.items()}, dtype="float64")
    if future is not None and future.rows is not None:
        derived[FUTURE_ASSET] = pd.DataFrame({"future_rows": [future.rows]}, dtype="int64")
    if group_checks.has_groups(frames):
        derived.update(group_checks.group_check_frames(frames))
    return derived


# --- running GX --------------------------------------------------------------------------------


def _ephemeral_context(docs_dir: Path | None):
    """A private in-memory context whose only Data Docs site (if any) is the directory ``docs_dir``."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    sites = {} if docs_dir is None else {"validate": {
        "class_name": "SiteBuilder",
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(Path(docs_dir).resolve())},
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        "show_how_to_buttons": False,  # GX's tutorial buttons
    }}
    # Without a project_config, mode="ephemeral" adds a docs site in a fresh temp directory.
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        data_docs_sites=sites,
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),  # no tqdm noise in task logs
    )
    return gx.get_context(mode="ephemeral", project_config=config)


def run_suites(expectations: Mapping[str, list[Expectation]], frames: Mapping[str, pd.DataFrame],
               docs_dir: Path | None, run_name: str, run_time: dt.datetime,
               parameters: Mapping[str, Any] | None = None) -> dict[str, ExpectationSuiteValidationResult]:
    """Validates each frame against its suite; builds the Data Docs site when ``docs_dir`` is set.

    ``run_time`` is passed in (not "now") so reruns of a night write the same Data Docs paths;
    ``parameters`` fill the suites' ``$PARAMETER`` kwargs (GX's expectation_parameters).
    """
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier

    run_id = RunIdentifier(run_name=run_name, run_time=run_time.replace(tzinfo=dt.timezone.utc))
    results = {}
    with _GX_LOCK:
        context = _ephemeral_context(docs_dir)
        source = context.data_sources.add_pandas("extract")
        for asset_name, asset_expectations in expectations.items():
            asset = source.add_dataframe_asset(asset_name)
            batch_definition = asset.add_batch_definition_whole_dataframe("all")
            suite = context.suites.add(gx.ExpectationSuite(name=asset_name, expectations=asset_expectations))
            definition = context.validation_definitions.add(
                gx.ValidationDefinition(name=asset_name, data=batch_definition, suite=suite))
            results[asset_name] = definition.run(
                batch_parameters={"dataframe": frames[asset_name]}, result_format="SUMMARY", run_id=run_id,
                expectation_parameters=dict(parameters or {}))
        if docs_dir is not None:
            context.build_data_docs()
    return results


# --- turning GX results into a report -----------------------------------------------------------


def _error_message(exception_info: Mapping[str, Any] | None) -> str | None:
    """The first raised exception's message; GX nests it per metric in some cases."""
    if not exception_info:
        return None
    infos = [exception_info] if "raised_exception" in exception_info else list(exception_info.values())
    for info in infos:
        if isinstance(info, Mapping) and info.get("raised_exception"):
            return str(info.get("exception_message") or "raised an exception").splitlines()[0]
    return None


def _short(value: Any, limit: int = 160) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _observed(result: Mapping[str, Any], error: str | None) -> str:
    """What the data showed, in one line."""
    if error:
        return f"error: {_short(error)}"
    mismatched = (result.get("details") or {}).get("mismatched")
    if mismatched:
        return f"columns {result.get('observed_value')} (missing {mismatched.get('missing', [])}, " \
               f"unexpected {mismatched.get('unexpected', [])})"
    if "observed_value" in result:
        return _short(result["observed_value"])
    if "unexpected_count" in result:
        return (f"{result['unexpected_count']} of {result.get('element_count')} rows unexpected, "
                f"e.g. {_short(result.get('partial_unexpected_list', [])[:5])}")
    return _short(dict(result))


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return None if value != value else value  # NaN is not JSON
    return str(value)


def _compact(asset: str, expectation_result: Any, columns: set[str]) -> dict[str, Any]:
    """One result.json entry per expectation: what was checked, where, and what was seen.

    ``columns`` are the asset's actual columns: a check on an absent column errors inside GX
    (e.g. "list index out of range"), which says less than naming the absence.
    """
    config = expectation_result.expectation_config
    meta = config.meta or {}
    result = dict(expectation_result.result or {})
    error = _error_message(expectation_result.exception_info)
    column = config.kwargs.get("column")
    if error and column and column not in columns:
        error = f"column {column!r} is absent"
    keep = ("observed_value", "element_count", "unexpected_count", "unexpected_percent",
            "missing_count", "partial_unexpected_list", "details")
    observed = _observed(result, error)
    if meta.get("context"):  # what the observed ratio is made of, e.g. "6 rows vs median 52"
        observed = f"{observed} ({meta['context']})"
    return {
        "expectation": config.type,
        "asset": asset,
        "table": meta.get("table", asset),
        "column": meta.get("column"),
        "success": bool(expectation_result.success),
        "expected": meta.get("expected", ""),
        "observed": observed,
        "error": error is not None,
        "result": _jsonable({k: result[k] for k in keep if k in result}),
    }


def statistics(extract: Extract, night: NightStats | None = None, drift: DriftPlan | None = None,
               future: FutureRows | None = None) -> dict[str, Any]:
    """Counts that help read a failure (and the next night's comparison)."""
    frames = extract.frames
    stats: dict[str, Any] = {f"{table}_rows": len(frame) for table, frame in frames.items()}
    stats["data_interval"] = {"start": extract.start.isoformat(), "end": extract.end.isoformat()}
    ts = _naive_ts(frames["interactions"])
    if ts is not None and ts.notna().any():
        stats["oldest_ts"] = ts.min().isoformat()
        stats["newest_ts"] = ts.max().isoformat()
        stats["interval_rows"] = int(((ts >= extract.start) & (ts < extract.end)).sum())
    else:
        stats.update(oldest_ts=None, newest_ts=None, interval_rows=0)
    stats["night"] = night.as_dict() if night is not None else None
    stats["drift"] = drift.as_dict() if drift is not None else None
    stats["future"] = future.as_dict() if future is not None else None
    return stats


def _report(extract: Extract, results: Mapping[str, Any], frames: Mapping[str, pd.DataFrame],
            out_dir: Path, night: NightStats | None, drift: DriftPlan | None = None,
            future: FutureRows | None = None) -> tuple[ValidationReport, list[dict[str, Any]]]:
    entries = [_compact(asset, r, set(frames[asset].columns))
               for asset, suite_result in results.items() for r in suite_result.results]
    # Causes before consequences: a column-set mismatch first, checks that errored on it last.
    entries.sort(key=lambda e: (e["expectation"] != "expect_table_columns_to_match_set", e["error"]))
    failures = [Failure(e["expectation"], e["table"], e["column"], e["observed"], e["expected"])
                for e in entries if not e["success"]]
    report = ValidationReport(
        success=not failures, failures=failures, logical_date=extract.logical_date,
        statistics=statistics(extract, night, drift, future), expectations_run=len(entries),
        extract_manifest_sha256=extract.manifest_sha256, out_dir=out_dir)
    return report, entries


def _annotate_index(docs_dir: Path, report: ValidationReport) -> None:
    """Puts the verdict and the failed expectations on top of GX's Data Docs index page.

    GX's index only lists suites with a Failed/Succeeded badge; whoever opens it from an alert
    should see at once which expectation failed, on which column, and with which value.
    """
    index = docs_dir / "index.html"
    verdict = "passed" if report.success else "FAILED"
    rows = "".join(
        f"<tr><td>{escape(f.table)}</td><td>{escape(f.column or '')}</td><td>{escape(f.expectation)}</td>"
        f"<td>{escape(f.observed)}</td><td>{escape(f.expected)}</td></tr>" for f in report.failures)
    table = ("<table class='table table-sm'><tr><th>table</th><th>column</th><th>expectation</th>"
             f"<th>observed</th><th>expected</th></tr>{rows}</table>") if rows else ""
    section = (f"<section id='retrain-validation-summary' class='container mt-3'>"
               f"<h2>Validation {verdict} for {escape(report.logical_date)}</h2>"
               f"<p>{len(report.failures)} of {report.expectations_run} expectations failed.</p>"
               f"{table}</section>")
    page = index.read_text(encoding="utf-8")
    body = re.search(r"<body[^>]*>", page)
    at = body.end() if body else 0
    index.write_text(page[:at] + section + page[at:], encoding="utf-8")


def validate_extract(extract_dir: Path, out_dir: Path, params: Mapping[str, Any], *,
                     data_docs: bool = True) -> ValidationReport:
    """Validates the extract in ``extract_dir`` and writes ``result.json`` and Data Docs to ``out_dir``.

    Args:
        extract_dir: the extract stage's output (three Parquet tables, the group tables where
            mapped, and ``manifest.json``).
        out_dir: where ``result.json`` and ``data_docs/`` go (the caller makes this atomic).
        params: the ``validate`` section of params.yaml.
        data_docs: build the HTML site (tests turn it off where they only read the verdict).

    Returns:
        The report; it never raises for bad data: deciding to stop the run is the caller's job.
    """
    extract = load_extract(extract_dir)
    out_dir = Path(out_dir)
    night = night_stats(extract.frames["interactions"], extract.start, extract.end, int(params["volume_nights"]))
    drift = drift_plan(extract.frames["interactions"], extract.start, extract.end, params)
    future = future_rows(extract.manifest, Path(extract_dir) / MANIFEST_FILE)
    frames = {**extract.frames, **derived_frames(extract.frames, extract.start, extract.end, night, drift, future)}
    values = suite_parameters(params, extract.start, extract.end, night, drift, future,
                              groups=group_checks.has_groups(extract.frames))
    results = run_suites(build_suites(values), frames, out_dir / DATA_DOCS_DIR if data_docs else None,
                         run_name=f"validate-{extract.logical_date}", run_time=extract.end, parameters=values)
    report, entries = _report(extract, results, frames, out_dir, night, drift, future)
    if data_docs:
        _annotate_index(out_dir / DATA_DOCS_DIR, report)
    write_json(out_dir / RESULT_FILE, {
        "success": report.success,
        "logical_date": extract.logical_date,
        "extract_manifest_sha256": extract.manifest_sha256,
        "params": _jsonable(dict(params)),
        "statistics": report.statistics,
        "failures": [failure.as_dict() for failure in report.failures],
        "results": entries,
    })
    # One line only: the caller decides whether the full summary is news or an error.
    log.info("validation of %s: %s, %d of %d expectations failed", extract.logical_date,
             "passed" if report.success else "FAILED", len(report.failures), report.expectations_run)
    return report


def require_validated(validate_dir: Path, extract_dir: Path) -> None:
    """Refuses to go on unless ``validate_dir`` holds a passing verdict on *this* extract.

    Later stages call this so a rerun extract (new manifest) can never ride on an old verdict.

    Raises:
        NonRetryableError: no result, a failed result, or one about another extract manifest.
    """
    result_path = Path(validate_dir) / RESULT_FILE
    manifest_path = Path(extract_dir) / MANIFEST_FILE
    if not result_path.is_file():
        raise NonRetryableError(f"no validation result at {result_path}: run the validate stage first")
    result = read_json(result_path)
    if result.get("success") is not True:
        raise NonRetryableError(f"validation of {extract_dir} failed (see {result_path})")
    if not manifest_path.is_file():
        raise NonRetryableError(f"extract manifest not found: {manifest_path}")
    current = sha256_file(manifest_path)
    if result.get("extract_manifest_sha256") != current:
        raise NonRetryableError(
            f"validation result {result_path} is about another extract "
            f"(manifest sha256 {str(result.get('extract_manifest_sha256'))[:12]}, "
            f"current {current[:12]}): rerun the validate stage")


# --- the history across nights -----------------------------------------------------------------


def history_row(report: ValidationReport) -> dict[str, Any]:
    """The night's verdict, counts and drift distances as one row of the history (``HISTORY_FIELDS``)."""
    stats = report.statistics
    night, drift = stats.get("night") or {}, stats.get("drift") or {}
    row = {"logical_date": report.logical_date, "success": report.success, "failures": len(report.failures),
           "interactions_rows": stats.get("interactions_rows"), "interval_rows": stats.get("interval_rows"),
           "volume_ratio": night.get("volume_ratio"), "top_user_share": night.get("top_user_share")}
    return {**row, **{name: drift.get(name) for name in DRIFT_CHECKS}}


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """An exclusive lock on ``directory``: two nights validated at once must not drop each other's row."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def history_page(rows: list[dict[str, str]], params: Mapping[str, Any]) -> str:
    """The history as an HTML page: one chart per ``HISTORY_CHARTS`` column, thresholds from ``params``.

    ``params`` is the ``validate`` section; a threshold it lacks (no ``drift`` part) is not drawn.
    """
    from pipelines.validate.history import HistoryChart, render_validation_history

    values = flatten_params(params)
    charts = []
    for column, (title, keys) in HISTORY_CHARTS.items():
        present = [(key, values.get(key.replace(".", "_"))) for key in keys]
        thresholds = tuple((float(value), f"validate.{key} = {value}") for key, value in present
                           if isinstance(value, (int, float)) and not isinstance(value, bool))
        charts.append(HistoryChart(column, title, thresholds))
    return render_validation_history(rows, charts)


def update_history(path: Path, row: Mapping[str, Any],
                   page_params: Mapping[str, Any] | None = None) -> list[dict[str, str]]:
    """Puts ``row`` into the CSV history at ``path``, one row per logical date, sorted by date.

    A rerun of a date replaces its row; the file is rewritten atomically (temp file, rename), so
    a reader or a crash never sees half a file. Every night is recorded, passed or failed.
    With ``page_params`` (the ``validate`` section) it also rewrites ``history.html`` beside it,
    under the same lock, so the page always shows what the CSV holds.

    Returns:
        The rows now in the file (as strings, as CSV holds them).

    Raises:
        NonRetryableError: an existing history without a logical_date column.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path.parent):
        rows: list[dict[str, str]] = []
        if path.is_file():
            reader = csv.DictReader(io.StringIO(path.read_text(encoding="utf-8")))
            if "logical_date" not in (reader.fieldnames or []):
                raise NonRetryableError(f"validation history {path} has no logical_date column")
            rows = [r for r in reader if r["logical_date"] != str(row["logical_date"])]
        rows.append({field: "" if row.get(field) is None else str(row[field]) for field in HISTORY_FIELDS})
        rows.sort(key=lambda r: r["logical_date"])
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=HISTORY_FIELDS, extrasaction="ignore", restval="")
        writer.writeheader()
        writer.writerows(rows)
        write_text(path, buffer.getvalue())
        if page_params is not None:
            write_text(path.with_name(HISTORY_PAGE), history_page(rows, page_params))
    return rows
