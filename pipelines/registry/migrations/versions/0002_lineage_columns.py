"""Lineage columns: the ``dvc.lock`` digest and the parent version of each model version.

``dvc_lock_sha256`` is filled for existing rows from their lineage JSON, where the promote
stage has always recorded it; ``parent_version`` (the champion a candidate was warm-started
from or compared with) was never recorded, so existing rows keep NULL.

Revision ID: 0002
Revises: 0001
Create Date: 2026-03-20
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SHA256 = re.compile(r"[0-9a-f]{64}")


def upgrade() -> None:
    op.add_column("model_versions", sa.Column("dvc_lock_sha256", sa.String(64), nullable=True))
    # Inline REFERENCES: SQLite can add a foreign-key column this way, but not ALTER ... ADD CONSTRAINT.
    op.add_column(
        "model_versions",
        sa.Column("parent_version", sa.Integer, sa.ForeignKey("model_versions.version"), nullable=True),
        inline_references=True,
    )
    if not op.get_context().as_sql:
        _backfill_dvc_lock()


def _backfill_dvc_lock() -> None:
    versions = sa.table(
        "model_versions", sa.column("version", sa.Integer), sa.column("lineage_json", sa.Text),
        sa.column("dvc_lock_sha256", sa.String),
    )
    bind = op.get_bind()
    for version, lineage_json in bind.execute(sa.select(versions.c.version, versions.c.lineage_json)).all():
        digest = json.loads(lineage_json).get("dvc_lock_sha256")
        if isinstance(digest, str) and _SHA256.fullmatch(digest):
            bind.execute(sa.update(versions).where(versions.c.version == version).values(dvc_lock_sha256=digest))


def downgrade() -> None:
    if op.get_context().dialect.name != "sqlite":
        op.drop_column("model_versions", "parent_version")  # drops its foreign key too
        op.drop_column("model_versions", "dvc_lock_sha256")
        return
    _sqlite_rebuild_without_lineage_columns()


def _sqlite_rebuild_without_lineage_columns() -> None:
    """Rebuilds ``model_versions`` as revision 0001 defined it, keeping its rows.

    SQLite cannot drop a column that carries a foreign key, and inside the registry's
    transaction it cannot switch foreign keys off. So the checks are deferred to commit, the
    table is dropped (its rows set aside first) and refilled: the rows that aliases and
    audit_log reference exist again when the commit checks them. Alembic's batch mode fills
    the new table before dropping the old one, which SQLite still counts as a violation.
    """
    op.execute("PRAGMA defer_foreign_keys = ON")
    columns = ", ".join(_REVISION_0001_COLUMNS)
    op.execute(f"CREATE TABLE _model_versions_0001 AS SELECT {columns} FROM model_versions")
    op.drop_table("model_versions")  # its index goes with it
    op.create_table(
        "model_versions",
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("run_date", sa.String(10), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("artifact_sha256", sa.String(64), nullable=False),
        sa.Column("artifact_uri", sa.Text, nullable=False),
        sa.Column("base_model", sa.Text, nullable=False),
        sa.Column("data_interval_start", sa.String(40), nullable=False),
        sa.Column("data_interval_end", sa.String(40), nullable=False),
        sa.Column("params_json", sa.Text, nullable=False),
        sa.Column("metrics_json", sa.Text, nullable=False),
        sa.Column("lineage_json", sa.Text, nullable=False),
        sa.Column("git_commit", sa.String(64), nullable=False),
        sa.Column("report_path", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.UniqueConstraint("artifact_sha256", "run_date", name="uq_model_versions_artifact_run"),
        sa.CheckConstraint("status IN ('blessed', 'rejected')", name="ck_model_versions_status"),
    )
    op.create_index("ix_model_versions_run_date", "model_versions", ["run_date"])
    op.execute(f"INSERT INTO model_versions ({columns}) SELECT {columns} FROM _model_versions_0001")
    op.drop_table("_model_versions_0001")


_REVISION_0001_COLUMNS = (
    "version", "created_at", "run_date", "status", "artifact_sha256", "artifact_uri", "base_model",
    "data_interval_start", "data_interval_end", "params_json", "metrics_json", "lineage_json", "git_commit",
    "report_path", "reason",
)
