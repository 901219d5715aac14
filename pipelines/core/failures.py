"""Which failures a retry can fix, decided in one place.

Stages exit 3 (Airflow does not retry) on what no retry can fix: wrong configuration, missing
credentials, failed authentication, missing drivers, databases, roles or files, denied
permissions, a full or read-only disk, bad data. Everything else (network timeouts, refused or
reset connections, lock contention, a database starting up or busy) exits 1 and is retried. The
warehouse's own connection loop asks the same question, so it never retries a wrong password.
"""

from __future__ import annotations

import contextlib
import errno
import re
from collections.abc import Callable, Iterator

from pipelines.core.io import NonRetryableError

# (what the driver's message says, what the operator should do). Matched on the first line of the
# message of the exception or of the driver error it wraps (PostgreSQL, MySQL/MariaDB, SQLite).
PERMANENT_MESSAGES: tuple[tuple[re.Pattern[str], str], ...] = tuple((re.compile(pattern, re.IGNORECASE), advice) for
                                                                   pattern, advice in (
    (r"password authentication failed|authentication failed|no password supplied|access denied for user",
     "authentication failed: check the user and password of this connection"),
    (r'role "[^"]*" does not exist', "the user does not exist on the server: check the connection's user"),
    (r'database "[^"]*" does not exist|unknown database', "the database does not exist: create it or fix its name"),
    (r"could not translate host name|name or service not known|unknown host|nodename nor servname",
     "the host name does not resolve: check the connection's host"),
    (r"permission denied|insufficient privilege|must be owner|command denied to user",
     "permission denied: grant the user the rights it needs, or use a user that has them"),
    (r"readonly database|read-only file system|read only file system",
     "the store is read-only: point the setting at a writable location"),
    (r"unable to open database file", "the SQLite file cannot be opened: check that its directory exists"),
    (r"no space left on device|disk full|database or disk is full", "the disk is full: free space or move the store"),
))
# OS errors no retry can fix: a full or read-only disk, a denied permission.
PERMANENT_ERRNOS = {errno.ENOSPC: "the disk is full: free space or move the store",
                    errno.EROFS: "the file system is read-only: point the setting at a writable location",
                    errno.EACCES: "permission denied: fix the owner or mode, or use another location",
                    errno.EPERM: "operation not permitted: fix the owner or mode, or use another location"}


def first_line(exc: BaseException) -> str:
    """The first line of the exception's own message, or of the driver error it wraps."""
    origin = getattr(exc, "orig", None) or exc
    return (str(origin).strip().splitlines() or [type(origin).__name__])[0].strip()


def permanent_reason(exc: BaseException) -> str | None:
    """What to do about ``exc`` when no retry can fix it; None when a retry may (transient)."""
    if isinstance(exc, NonRetryableError):
        return str(exc)
    if isinstance(exc, ImportError):
        return f"a required module is not installed ({exc.name or first_line(exc)}): install the project's requirements"
    if isinstance(exc, OSError) and exc.errno in PERMANENT_ERRNOS:
        return f"{PERMANENT_ERRNOS[exc.errno]} ({first_line(exc)})"
    if isinstance(exc, FileNotFoundError):
        return f"a file or directory is missing ({first_line(exc)})"
    message = first_line(exc)
    for pattern, advice in PERMANENT_MESSAGES:
        if pattern.search(message):
            return f"{advice} ({message})"
    return None


def hide(text: str, secret: str | None) -> str:
    """``text`` with ``secret`` replaced by *** (a driver may echo what it was given)."""
    return text.replace(secret, "***") if secret else text


@contextlib.contextmanager
def named_if_permanent(where: str | Callable[[], str], secret: str | None = None,
                       errors: tuple[type[Exception], ...] = (Exception,)) -> Iterator[None]:
    """Re-raises an ``errors`` failure no retry can fix as ``NonRetryableError("<where>: <what to do>")``,
    so the one line names the resource; transient failures and NonRetryableErrors pass unchanged.
    ``where`` may be a function, called only on such a failure (when naming the resource costs work);
    ``secret`` is hidden from the message."""
    try:
        yield
    except NonRetryableError:
        raise
    except errors as exc:
        advice = permanent_reason(exc)
        if advice is None:
            raise
        raise NonRetryableError(f"{where() if callable(where) else where}: {hide(advice, secret)}") from None
