"""The registry schema as first released: versions, the champion alias, the audit log.

Exactly what ``metadata.create_all`` created before migrations existed, so a database from
that time is stamped at this revision and upgraded from here.

Revision ID: 0001
Revises:
Create Date: 2026-03-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
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
    op.create_table(
        "aliases",
        sa.Column("alias", sa.String(64), primary_key=True),
        sa.Column("version", sa.Integer, sa.ForeignKey("model_versions.version"), nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime, nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("version", sa.Integer, sa.ForeignKey("model_versions.version"), nullable=True),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("details_json", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_table("aliases")
    op.drop_index("ix_model_versions_run_date", table_name="model_versions")
    op.drop_table("model_versions")
