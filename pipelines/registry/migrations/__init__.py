"""Schema migrations of the model registry (Alembic), applied when a ``Registry`` opens.

Revisions live in ``versions/``: ``0001`` is the schema the registry had before it was
versioned (``metadata.create_all``), ``0002`` adds the lineage columns. The applied revision
is kept in ``registry_alembic_version``, not Alembic's default ``alembic_version``: in
production the registry may share a PostgreSQL database with Airflow, which owns that table.

``upgrade`` must run inside the registry's write transaction (its writer lock), so concurrent
first opens apply each revision once. A database created before Alembic (the three tables, no
version table) is stamped at ``0001`` first and then upgraded, keeping its rows.
"""

from __future__ import annotations

import functools
import io
import logging
import threading
from typing import TYPE_CHECKING

from pipelines.core.io import NonRetryableError

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from sqlalchemy.engine import Connection

log = logging.getLogger(__name__)

VERSION_TABLE = "registry_alembic_version"
BASELINE_REVISION = "0001"  # the schema of databases created before Alembic
# The newest revision in versions/ (a test checks it). Kept here so that opening an up-to-date
# registry, which every stage does, reads one row and never loads Alembic.
HEAD_REVISION = "0002"
REGISTRY_TABLES = ("model_versions", "aliases", "audit_log")
SCRIPT_LOCATION = "pipelines.registry:migrations"
# Alembic's ``op`` and ``context`` are module globals: two migrations in one process (two
# registries in threads) must not run at once. The database's own lock covers processes.
_ALEMBIC_RUN = threading.Lock()


def alembic_config(connection: Connection | None = None, url: str | None = None) -> Config:
    """An Alembic config built in code (no ini file); ``connection`` is used as is."""
    from alembic.config import Config

    config = Config(stdout=io.StringIO())  # commands' console output is not ours to print
    config.set_main_option("script_location", SCRIPT_LOCATION)
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@functools.cache
def scripts() -> ScriptDirectory:
    """The revisions shipped in ``versions/``."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def current_revision(connection: Connection) -> str | None:
    """The applied revision, or None where the version table is missing or empty.

    Read directly rather than through Alembic's MigrationContext, which logs on every call;
    every open of the registry asks this.
    """
    from sqlalchemy import inspect, text

    if not inspect(connection).has_table(VERSION_TABLE):
        return None
    rows = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    if len(rows) > 1:
        raise NonRetryableError(f"{VERSION_TABLE} holds several revisions {sorted(rows)}; expected one")
    return rows[0] if rows else None


def upgrade(connection: Connection) -> bool:
    """Brings the registry schema to the head revision; True when anything was applied.

    Args:
        connection: An open connection inside the registry's write transaction. Alembic runs
            on it without committing; the caller's transaction commits or rolls back all of it.

    Raises:
        NonRetryableError: The database is at a revision this code does not know (written by
            newer code), or holds only some of the registry's tables.
    """
    from alembic.util import CommandError

    current = current_revision(connection)
    if current == HEAD_REVISION:
        return False
    if current is not None:
        try:
            scripts().get_revision(current)
        except CommandError as exc:
            raise NonRetryableError(
                f"registry database is at revision {current!r}, unknown to this code (head {HEAD_REVISION!r}); "
                "was it migrated by a newer release?"
            ) from exc
    with _ALEMBIC_RUN:
        _stamp_legacy_and_upgrade(connection, current)
    return True


def _stamp_legacy_and_upgrade(connection: Connection, current: str | None) -> None:
    from alembic import command
    from sqlalchemy import inspect

    config = alembic_config(connection)
    if current is None:
        present = set(REGISTRY_TABLES) & set(inspect(connection).get_table_names())
        if present == set(REGISTRY_TABLES):
            log.info("registry database predates migrations: stamping it at revision %s", BASELINE_REVISION)
            command.stamp(config, BASELINE_REVISION)
        elif present:
            missing = sorted(set(REGISTRY_TABLES) - present)
            raise NonRetryableError(
                f"registry database has tables {sorted(present)} but not {missing} and no {VERSION_TABLE}; "
                "it is not a registry this code can migrate"
            )
    log.info("migrating registry schema from %s to %s", current or "an empty database", HEAD_REVISION)
    command.upgrade(config, HEAD_REVISION)
