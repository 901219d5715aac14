"""PostgreSQL's fast path: the ADBC driver streams a query's rows straight into Arrow.

ADBC's PostgreSQL driver runs the query as ``COPY (query) TO STDOUT (FORMAT binary)`` and decodes
the binary rows into Arrow record batches in C++: no text formatting on the server, no Python
object per value. COPY takes no bound parameters, so the query is rendered with its values as
literals by SQLAlchemy's PostgreSQL dialect; the only values extraction ever binds are datetimes
(the day bounds, the changed-since time of the dimensions), which SQLAlchemy formats and quotes.

ADBC opens its own connections from the same URL (the password goes no further than libpq;
errors are re-raised with the driver's first line, password removed, never the URL).
"""

from __future__ import annotations

import contextlib
import importlib.util
import threading
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import sqlalchemy as sa

BATCH_ROWS = 200_000  # rows per batch handed on (ADBC's own batches are smaller)


def supported(conn: sa.Connection) -> bool:
    """PostgreSQL with the ADBC driver installed."""
    return conn.dialect.name == "postgresql" and importlib.util.find_spec("adbc_driver_postgresql") is not None


def literal_sql(conn: sa.Connection, query: sa.Select) -> str:
    """The query as PostgreSQL text, its values rendered and quoted by SQLAlchemy's dialect."""
    return str(query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))


def libpq_uri(url: sa.URL) -> str:
    """The URL for libpq: SQLAlchemy's driver suffix dropped, host/port/database/query kept."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


class PostgresReadError(RuntimeError):
    """ADBC failed; the message is the driver's first line, with the password removed."""


class Connections:
    """ADBC connections opened on demand and reused (opening one reads the server's type catalogue,
    tens of milliseconds); concurrent streams each take their own. Close it to close them all."""

    def __init__(self, url: sa.URL) -> None:
        self.url = url
        self._idle: list[Any] = []
        self._all: list[Any] = []
        self._lock = threading.Lock()

    def __enter__(self) -> Connections:
        return self

    def __exit__(self, *exc: object) -> None:
        for conn in self._all:
            with contextlib.suppress(Exception):  # a broken connection needs no tidy close
                conn.close()
        self._all, self._idle = [], []

    @contextlib.contextmanager
    def _connection(self) -> Iterator[Any]:
        import adbc_driver_postgresql.dbapi as adbc

        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = adbc.connect(libpq_uri(self.url))
            with self._lock:
                self._all.append(conn)
        yield conn
        with self._lock:  # only a connection whose stream finished cleanly is reused
            self._idle.append(conn)

    def stream(self, sql: str) -> Iterator[pa.Table]:
        """The rows of ``sql`` as Arrow tables of about ``BATCH_ROWS`` rows, columns as the query names them."""
        import adbc_driver_postgresql.dbapi as adbc

        try:
            with self._connection() as conn, conn.cursor() as cursor:
                cursor.execute(sql)
                pending: list[pa.RecordBatch] = []
                rows = 0
                for batch in cursor.fetch_record_batch():
                    pending.append(batch)
                    rows += batch.num_rows
                    if rows >= BATCH_ROWS:
                        yield pa.Table.from_batches(pending)
                        pending, rows = [], 0
                if pending:
                    yield pa.Table.from_batches(pending)
        except (adbc.Error, OSError) as exc:  # a failure while batches stream arrives as Arrow's OSError
            raise PostgresReadError(_without_password(exc, self.url)) from None


def _without_password(exc: BaseException, url: sa.URL) -> str:
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if url.password:
        text = text.replace(str(url.password), "***")
    return f"PostgreSQL (ADBC) {type(exc).__name__}: {text}"
