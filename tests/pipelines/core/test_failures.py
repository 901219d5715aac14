"""One classification of failures: what no retry can fix (exit 3) and what may be transient (exit 1)."""

from __future__ import annotations

import errno

import pytest
import sqlalchemy as sa

from pipelines.core.failures import permanent_reason
from pipelines.core.io import NonRetryableError


def driver_error(message: str) -> sa.exc.OperationalError:
    """What SQLAlchemy raises around a driver's error with this message."""
    return sa.exc.OperationalError("SELECT 1", {}, Exception(message))


@pytest.mark.parametrize("error, advice", [
    (driver_error('connection to server at "db" failed: FATAL:  password authentication failed for user "etl"'),
     "authentication failed"),
    (driver_error("(1045, \"Access denied for user 'etl'@'10.0.0.2' (using password: YES)\")"), "authentication failed"),
    (driver_error('FATAL:  role "etl" does not exist'), "the user does not exist"),
    (driver_error('FATAL:  database "warehouse" does not exist'), "the database does not exist"),
    (driver_error("(1049, \"Unknown database 'wh'\")"), "the database does not exist"),
    (driver_error('could not translate host name "db.internal" to address: Name or service not known'),
     "does not resolve"),
    (sa.exc.ProgrammingError("INSERT", {}, Exception("permission denied for table recommendations")),
     "permission denied"),
    (driver_error("attempt to write a readonly database"), "read-only"),
    (driver_error("unable to open database file"), "cannot be opened"),
    (OSError(errno.ENOSPC, "No space left on device"), "the disk is full"),
    (OSError(errno.EROFS, "Read-only file system"), "read-only"),
    (PermissionError(errno.EACCES, "Permission denied"), "permission denied"),
    (ModuleNotFoundError("No module named 'psycopg'", name="psycopg"), "not installed (psycopg)"),
    (FileNotFoundError(errno.ENOENT, "No such file or directory"), "missing"),
    (NonRetryableError("extract.mapping.items: 'title' is not mapped"), "extract.mapping.items"),
])
def test_what_no_retry_can_fix_is_permanent(error, advice):
    reason = permanent_reason(error)
    assert reason is not None and advice in reason


@pytest.mark.parametrize("error", [
    driver_error('connection to server at "127.0.0.1", port 5432 failed: Connection refused'),
    driver_error("server closed the connection unexpectedly"),
    driver_error("FATAL:  the database system is starting up"),
    driver_error("FATAL:  sorry, too many clients already"),
    driver_error("deadlock detected"),
    driver_error("database is locked"),
    driver_error("canceling statement due to lock timeout"),
    ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"),
    TimeoutError("timed out"),
    RuntimeError("CUDA error: an illegal memory access was encountered"),
])
def test_what_a_retry_may_fix_is_transient(error):
    assert permanent_reason(error) is None


class RefusingEngine:
    """An engine whose every connection attempt fails with ``error``, counting the attempts."""

    def __init__(self, error: Exception) -> None:
        self.url = sa.make_url("postgresql+psycopg2://etl:Zq8x3-secret@db.example/wh")
        self.error, self.attempts = error, 0

    def connect(self):
        self.attempts += 1
        raise self.error


def test_the_warehouse_never_retries_a_wrong_password_but_retries_a_refused_connection():
    from pipelines.core import warehouse

    waits: list[float] = []
    wrong_password = RefusingEngine(driver_error('FATAL:  password authentication failed for user "etl"'))
    with pytest.raises(NonRetryableError, match="authentication failed: check the user and password") as info:
        warehouse.connect(wrong_password, attempts=4, backoff_s=1, max_backoff_s=8, sleep=waits.append)
    assert wrong_password.attempts == 1 and waits == [] and "Zq8x3-secret" not in str(info.value)

    refused = RefusingEngine(driver_error("connection to server failed: Connection refused"))
    with pytest.raises(warehouse.WarehouseUnavailableError, match="unreachable after 4 attempt"):
        warehouse.connect(refused, attempts=4, backoff_s=1, max_backoff_s=8, sleep=waits.append)
    assert refused.attempts == 4 and waits == [1, 2, 4]
