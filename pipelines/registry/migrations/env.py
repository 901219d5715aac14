"""Alembic environment of the model registry.

``Registry`` runs the migrations on its own open connection, inside its writer lock
(``config.attributes["connection"]``). The only other mode is offline (``sql=True`` with
``sqlalchemy.url`` set): it prints the SQL for a DBA to review and touches no database.
Online runs without the writer lock are refused, since concurrent opens could race.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from pipelines.registry.migrations import REGISTRY_TABLES, VERSION_TABLE
from pipelines.registry.store import metadata


def _include_name(name: str | None, type_: str, _parent: object) -> bool:
    """Autogenerate looks at the registry's tables only; a shared database holds others (Airflow's)."""
    return type_ != "table" or name in REGISTRY_TABLES


def _configure(**kwargs: object) -> None:
    context.configure(target_metadata=metadata, version_table=VERSION_TABLE, include_name=_include_name, **kwargs)


def _run(connection: Connection) -> None:
    _configure(connection=connection)
    with context.begin_transaction():  # a no-op inside the caller's transaction
        context.run_migrations()


def run() -> None:
    config = context.config
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not context.is_offline_mode() or not url:
        raise RuntimeError(
            "registry migrations run when pipelines.registry.store.Registry opens the database (under its writer "
            "lock); only offline SQL generation (sql=True with sqlalchemy.url) runs on its own"
        )
    _configure(url=url, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


run()
