"""A catalogue of corrupted warehouses that the extract and validate stages must stop.

One clean tiny synthetic warehouse (plus a registry holding a champion) is built per module;
each case copies it, corrupts the copy with SQL, and runs the real extract and validate entry
points for the warehouse's last night. Every case must stop with a non-retryable exit and a
message naming its cause, before any profiles are written, and must leave the warehouse, the
registry database and the artifact store byte-for-byte as they were.

The tiny warehouse has explicit groups (``demo_data.n_households``), which params.yaml maps: the
group cases corrupt ``group_members`` and ``group_events`` the same way.
"""

from __future__ import annotations

import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines.core.io import read_json, sha256_dir, sha256_file
from pipelines.registry.store import Registry
from tasks.common import EXIT_NON_RETRYABLE, EXIT_OK
from tests.e2e.helpers import tiny_project
from tests.reliability.night import run_task

# The tiny warehouse holds 40 days from 2026-01-01: the night of 2026-02-10 is its last day.
NIGHT = "2026-02-10"
IN_NIGHT = "ts >= '2026-02-09' AND ts < '2026-02-10'"  # ts is ISO text in SQLite: text order is time order
IN_NIGHT_DAY = "2026-02-09"
CLEAN_NIGHTS = ("2026-02-06", "2026-02-07", "2026-02-08", "2026-02-09", "2026-02-10")


@dataclass(frozen=True)
class Project:
    root: Path
    params: dict[str, Any]
    params_file: Path

    @property
    def paths(self) -> dict[str, str]:
        return self.params["paths"]

    def warehouse(self) -> Path:
        return Path(self.paths["warehouse_url"].removeprefix("sqlite:///"))

    def snapshot_files(self) -> dict[str, str]:
        """The extract snapshot's data files (its lock file aside) and their digests."""
        root = Path(self.paths["snapshot"])
        return {str(path.relative_to(root)): sha256_file(path) for path in sorted(root.rglob("*"))
                if path.is_file() and path.name != ".lock"} if root.is_dir() else {}

    def stored(self) -> dict[str, str]:
        """Digests of everything a failed night must not touch."""
        return {"warehouse": sha256_file(self.warehouse()),
                "registry": sha256_file(Path(self.paths["registry_url"].removeprefix("sqlite:///"))),
                "artifact_store": sha256_dir(Path(self.paths["artifact_store"]))}


def _seed_champion(params: dict[str, Any], root: Path) -> None:
    """A registry with one champion, so there is something stored that a bad night could harm."""
    model = root / "seed-model"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"champion weights")
    with Registry(params["paths"]["registry_url"], Path(params["paths"]["artifact_store"])) as registry:
        registry.register(
            model_dir=model, run_date="2026-02-08", blessed=True, reason="seed champion", base_model="none",
            data_interval=("2026-02-07T00:00:00", "2026-02-08T00:00:00"), params={}, metrics={},
            lineage={}, git_commit="0" * 40, report_path="none", dvc_lock_sha256="0" * 64)
    shutil.rmtree(model)


@pytest.fixture(scope="module")
def clean_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("clean-warehouse")
    params, _ = tiny_project(root)
    _seed_champion(params, root)
    return root


def copy_project(base: Path, root: Path) -> Project:
    """A copy of the clean project under ``root``, its params pointing at the copy."""
    shutil.copytree(base, root)
    params_file = root / "params.yaml"
    params_file.write_text(params_file.read_text().replace(str(base), str(root)))
    return Project(root, yaml.safe_load(params_file.read_text()), params_file)


def corrupt(project: Project, statements: list[str]) -> None:
    with sqlite3.connect(project.warehouse()) as conn:
        for statement in statements:
            conn.execute(statement)
    conn.close()


def rebuild_table(project: Project, table: str, old: str, new: str) -> None:
    """Recreates ``table`` with ``old`` replaced by ``new`` in its DDL, keeping its rows."""
    with sqlite3.connect(project.warehouse()) as conn:
        ddl = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone()[0]
        assert old in ddl, f"{old!r} not in {ddl}"
        conn.execute(f"ALTER TABLE {table} RENAME TO {table}_old")
        conn.execute(ddl.replace(old, new))
        conn.execute(f"INSERT INTO {table} SELECT * FROM {table}_old")
        conn.execute(f"DROP TABLE {table}_old")
    conn.close()


def _run(stage: str, project: Project, capsys: pytest.CaptureFixture[str],
         caplog: pytest.LogCaptureFixture) -> tuple[int, str]:
    """Runs a stage; returns its exit code and everything it said (log records and stderr)."""
    caplog.clear()
    capsys.readouterr()
    code = run_task(stage, project.params_file, NIGHT)
    said = "\n".join(record.getMessage() for record in caplog.records) + "\n" + capsys.readouterr().err
    return code, said


# --- corruptions that reach the validate stage ---------------------------------------------------

SPIKE = ("INSERT INTO interactions WITH RECURSIVE k(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM k WHERE n < 9) "
         "SELECT event_id + n * 1000000, user_id, item_id, event_type, rating, datetime(ts, '+' || n || ' seconds') "
         f"FROM interactions, k WHERE {IN_NIGHT}")
OLDEST_USER = "(SELECT user_id FROM users ORDER BY created_at, user_id LIMIT 1)"
LONG_TEXT = "substr(replace(hex(zeroblob(200)), '00', 'Sequel '), 1, 600)"  # 600 characters
FIRST_ITEM = "(SELECT item_id FROM items ORDER BY item_id LIMIT 1)"

# Cases whose SQL needs a looser table first (as an upstream schema change would leave it).
REBUILDS = {"null_user_ids": ("interactions", "user_id VARCHAR(64) NOT NULL", "user_id VARCHAR(64)"),
            "changed_type": ("interactions", "rating FLOAT", "rating TEXT")}

# case: (SQL, (where, expectation, text the summary line must also contain))
VALIDATE_CASES: dict[str, tuple[list[str], tuple[str, str, str]]] = {
    "null_user_ids": (
        [f"UPDATE interactions SET user_id = NULL WHERE {IN_NIGHT} AND event_id % 4 = 0"],
        ("interactions.user_id", "expect_column_values_to_not_be_null", "rows unexpected")),
    "duplicate_events": (
        [f"INSERT INTO interactions SELECT event_id + 1000000, user_id, item_id, event_type, rating, ts "
         f"FROM interactions WHERE {IN_NIGHT} AND event_id % 5 = 0"],
        ("interactions.user_id,item_id,event_type,ts", "expect_compound_columns_to_be_unique", "rows unexpected")),
    "rating_out_of_range": (
        [f"UPDATE interactions SET event_type = 'rating', rating = 7.5 WHERE {IN_NIGHT} AND event_id % 4 = 0"],
        ("interactions.rating", "expect_column_values_to_be_between", "7.5")),
    "unknown_event_type": (
        [f"UPDATE interactions SET event_type = 'hover' WHERE {IN_NIGHT} AND event_id % 4 = 0"],
        ("interactions.event_type", "expect_column_values_to_be_in_set", "hover")),
    "rows_outside_the_interval": (  # a reset clock: part of the night dated 1970
        [f"UPDATE interactions SET ts = '1970-01-01 00:00:00.000000' WHERE {IN_NIGHT} AND event_id % 3 = 0"],
        ("interactions.ts", "expect_column_values_to_be_null", "before its users.created_at")),
    "empty_night": (
        [f"DELETE FROM interactions WHERE {IN_NIGHT}"],
        ("interactions.ts", "expect_table_row_count_to_be_between", "observed 0;")),
    "volume_drop_90_percent": (
        [f"DELETE FROM interactions WHERE {IN_NIGHT} AND event_id % 10 != 0"],
        ("interactions", "expect_column_max_to_be_between", "rows vs median")),
    "volume_spike_10x": (
        [SPIKE],
        ("interactions", "expect_column_max_to_be_between", "rows vs median")),
    "orphan_item_ids": (
        [f"UPDATE interactions SET item_id = 'i9999' WHERE {IN_NIGHT} AND event_id % 5 = 0"],
        ("interactions.item_id", "expect_column_values_to_be_null", "i9999")),
    "orphan_user_ids": (
        [f"UPDATE interactions SET user_id = 'u9999' WHERE {IN_NIGHT} AND event_id % 5 = 0"],
        ("interactions.user_id", "expect_column_values_to_be_null", "u9999")),
    "empty_titles": (
        ["UPDATE items SET title = '' WHERE item_id IN (SELECT item_id FROM items ORDER BY item_id LIMIT 3)"],
        ("items.title", "expect_column_value_lengths_to_be_between", "rows unexpected")),
    "oversized_titles": (
        [f"UPDATE items SET title = title || ' ' || {LONG_TEXT} "
         "WHERE item_id IN (SELECT item_id FROM items ORDER BY item_id LIMIT 3)"],
        ("items.title", "expect_column_value_lengths_to_be_between", "Sequel")),
    "bot_user": (
        [f"UPDATE interactions SET user_id = {OLDEST_USER} WHERE {IN_NIGHT} AND event_id % 10 < 7"],
        ("interactions.user_id", "expect_column_max_to_be_between", "bot share")),
    # Explicit groups: the failure names the count and the first offending rows.
    "group_member_unknown_user": (
        ["INSERT INTO group_members (group_id, user_id) VALUES ('g0001', 'u9999')"],
        ("group_members.user_id", "expect_column_values_to_be_null", "rows unexpected, e.g. ['g0001/u9999']")),
    "group_duplicate_membership": (  # every membership of g0001 recorded twice, both still open
        ["INSERT INTO group_members SELECT * FROM group_members WHERE group_id = 'g0001'"],
        ("group_members.group_id,user_id", "expect_column_values_to_be_null", "rows unexpected, e.g. ['g0001/u")),
    "group_events_of_unknown_group": (
        [f"UPDATE group_events SET group_id = 'g9999' WHERE {IN_NIGHT}"],
        ("group_events.group_id", "expect_column_values_to_be_null", "rows unexpected, e.g. ['g9999@2026-02-09T")),
    "group_events_of_empty_group": (  # a group whose only membership ended before its event
        [f"INSERT INTO group_members VALUES ('g0999', {OLDEST_USER}, '2026-01-01 00:00:00.000000', "
         "'2026-01-02 00:00:00.000000')",
         f"INSERT INTO group_events VALUES ('g0999', {FIRST_ITEM}, 'view', '2026-02-09 12:00:00.000000')"],
        ("group_events.group_id", "expect_column_values_to_be_null",
         "rows unexpected, e.g. ['g0999@2026-02-09T12:00:00']; expected no empty group")),
    "group_event_type_unknown": (
        [f"UPDATE group_events SET event_type = 'hover' WHERE {IN_NIGHT}"],
        ("group_events.event_type", "expect_column_values_to_be_in_set", "hover")),
}


@pytest.mark.parametrize("case", list(VALIDATE_CASES))
def test_validate_stops_the_night_and_names_the_cause(
        case: str, clean_base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    statements, (where, expectation, text) = VALIDATE_CASES[case]
    project = copy_project(clean_base, tmp_path / "project")
    if case in REBUILDS:
        rebuild_table(project, *REBUILDS[case])
    corrupt(project, statements)
    before = project.stored()

    code, said = _run("extract", project, capsys, caplog)
    assert code == EXIT_OK, said
    code, said = _run("validate", project, capsys, caplog)

    assert code == EXIT_NON_RETRYABLE, said
    lines = [line for line in said.splitlines() if line.strip().startswith(f"- {where}: {expectation}:")]
    assert any(text in line for line in lines), f"no summary line '{where}: {expectation}: ...{text}...' in:\n{said}"
    assert read_json(Path(project.paths["validate"]) / "result.json")["success"] is False
    # The run stops here: profiles refuses a failed verdict and writes nothing.
    assert _run("profiles", project, capsys, caplog)[0] == EXIT_NON_RETRYABLE
    assert not Path(project.paths["profiles"]).exists()
    assert project.stored() == before


# --- corruptions that make extraction itself impossible -------------------------------------------

# case: (SQL, words the failure message must all contain: the table and the column)
EXTRACT_CASES: dict[str, tuple[list[str], tuple[str, ...]]] = {
    "dropped_column": (["ALTER TABLE interactions DROP COLUMN rating"], ("interactions", "rating")),
    "renamed_column": (["ALTER TABLE items RENAME COLUMN title TO name"], ("items", "title")),
    "changed_type": (  # rating rebuilt as TEXT holding words
        [f"UPDATE interactions SET rating = 'five' WHERE {IN_NIGHT} AND event_id % 4 = 0"], ("rating",)),
    "undecodable_text": (  # bytes that are not UTF-8, stored in a TEXT column
        ["UPDATE items SET title = CAST(X'4BFF6F' AS TEXT) "
         "WHERE item_id = (SELECT item_id FROM items ORDER BY item_id LIMIT 1)"], ("title",)),
    "dropped_group_column": (["ALTER TABLE group_members DROP COLUMN left_at"], ("group_members", "left_at")),
    "dropped_group_table": (["DROP TABLE group_events"], ("extract.mapping.group_events.table", "group_events")),
}
def _extract_corrupted(case: str, clean_base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                       caplog: pytest.LogCaptureFixture) -> tuple[Project, dict[str, str], int, str]:
    statements, _ = EXTRACT_CASES[case]
    project = copy_project(clean_base, tmp_path / "project")
    if case in REBUILDS:
        rebuild_table(project, *REBUILDS[case])
    corrupt(project, statements)
    before = project.stored()
    code, said = _run("extract", project, capsys, caplog)
    return project, before, code, said


@pytest.mark.parametrize("case", list(EXTRACT_CASES))
def test_extract_fails_on_an_unreadable_warehouse_and_names_the_column(
        case: str, clean_base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    project, before, code, said = _extract_corrupted(case, clean_base, tmp_path, capsys, caplog)

    assert code != EXIT_OK
    assert all(word in said for word in EXTRACT_CASES[case][1]), said
    assert project.snapshot_files() == {}, "a failed extract left files in the snapshot"
    for stage in ("extract", "validate", "profiles"):
        assert not Path(project.paths[stage]).exists(), f"{stage} output written for a failed extract"
    assert project.stored() == before


@pytest.mark.parametrize("case", ["dropped_column", "renamed_column", "changed_type", "undecodable_text",
                                  "dropped_group_column", "dropped_group_table"])
def test_extract_failure_on_an_unreadable_warehouse_is_not_retried(
        case: str, clean_base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    code = _extract_corrupted(case, clean_base, tmp_path, capsys, caplog)[2]
    assert code == EXIT_NON_RETRYABLE


def test_future_timestamps_stop_the_night(clean_base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          caplog: pytest.LogCaptureFixture) -> None:
    project = copy_project(clean_base, tmp_path / "project")
    corrupt(project, [f"UPDATE interactions SET ts = '2999-01-01 00:00:00.000000' WHERE {IN_NIGHT} "
                      "AND event_id % 10 = 0"])
    before = project.stored()
    assert _run("extract", project, capsys, caplog)[0] == EXIT_OK
    future_rows = read_json(Path(project.paths["extract"]) / "manifest.json")["future_rows"]

    code, said = _run("validate", project, capsys, caplog)
    assert code == EXIT_NON_RETRYABLE and future_rows > 0
    assert f"observed {future_rows} ({future_rows} warehouse rows dated after extracted_at" in said, said
    assert project.stored() == before


def test_a_quarantined_night_is_read_again_once_the_warehouse_is_fixed(
        clean_base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    project = copy_project(clean_base, tmp_path / "project")
    clean = project.root / "clean-warehouse.db"
    shutil.copy(project.warehouse(), clean)
    corrupt(project, VALIDATE_CASES["rating_out_of_range"][0])
    assert _run("extract", project, capsys, caplog)[0] == EXIT_OK
    code, said = _run("validate", project, capsys, caplog)
    assert code == EXIT_NON_RETRYABLE and "released from the snapshot" in said, said
    assert f"interactions/{IN_NIGHT_DAY}.parquet" not in project.snapshot_files()

    shutil.copy(clean, project.warehouse())  # fixed upstream
    assert _run("extract", project, capsys, caplog)[0] == EXIT_OK
    reads = read_json(Path(project.paths["extract"]) / "manifest.json")["reads"]
    assert any(read["first_day"] <= IN_NIGHT_DAY < read["end_day"] for read in reads)
    code, said = _run("validate", project, capsys, caplog)
    assert code == EXIT_OK, said


def test_a_quarantined_night_releases_its_group_event_days(
        clean_base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    project = copy_project(clean_base, tmp_path / "project")
    clean = project.root / "clean-warehouse.db"
    shutil.copy(project.warehouse(), clean)
    corrupt(project, VALIDATE_CASES["group_event_type_unknown"][0])
    assert _run("extract", project, capsys, caplog)[0] == EXIT_OK
    assert f"group_events/{IN_NIGHT_DAY}.parquet" in project.snapshot_files()
    code, said = _run("validate", project, capsys, caplog)
    assert code == EXIT_NON_RETRYABLE and "released from the snapshot" in said, said
    assert f"group_events/{IN_NIGHT_DAY}.parquet" not in project.snapshot_files()

    shutil.copy(clean, project.warehouse())  # fixed upstream
    assert _run("extract", project, capsys, caplog)[0] == EXIT_OK
    reads = read_json(Path(project.paths["extract"]) / "manifest.json")["group_events"]["reads"]
    assert any(read["first_day"] <= IN_NIGHT_DAY < read["end_day"] for read in reads)
    code, said = _run("validate", project, capsys, caplog)
    assert code == EXIT_OK, said


# --- no false alarms -----------------------------------------------------------------------------


def test_clean_nights_pass_with_every_night_check_on(clean_base: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str],
                                                     caplog: pytest.LogCaptureFixture) -> None:
    project = copy_project(clean_base, tmp_path / "project")
    settings = project.params["validate"]
    share_checked = []
    for night in CLEAN_NIGHTS:
        caplog.clear()
        capsys.readouterr()
        assert run_task("extract", project.params_file, night) == EXIT_OK
        code = run_task("validate", project.params_file, night)
        said = "\n".join(r.getMessage() for r in caplog.records) + capsys.readouterr().err
        assert code == EXIT_OK, said
        result = read_json(Path(project.paths["validate"]) / "result.json")
        stats = result["statistics"]["night"]
        checked = {entry["expected"].split(":")[0] for entry in result["results"]
                   if entry["asset"] == "interactions_night"}
        assert len(stats["earlier_nights"]) >= settings["volume_min_nights"] and "volume" in checked, night
        if stats["rows"] >= settings["user_share_min_rows"]:
            assert "bot share" in checked, night
            share_checked.append(night)
    assert share_checked, "the busiest-user check never ran: the clean nights are too small to test it"
