"""A throwaway PostgreSQL database for a benchmark run."""

from __future__ import annotations

import uuid
from collections.abc import Callable


def temporary_postgres(admin_url: str) -> tuple[str | None, Callable[[], None], str | None]:
    """A fresh database on the server (url, drop function), or (None, no-op, why not)."""
    import sqlalchemy as sa

    try:
        admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any connection failure means "no server here"
        return None, lambda: None, f"PostgreSQL not reachable: {exc.__class__.__name__}"
    name = f"bench_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()

    return admin_url.rsplit("/", 1)[0] + f"/{name}", drop, None
