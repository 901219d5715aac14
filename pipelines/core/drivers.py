"""The database driver behind a SQLAlchemy URL, chosen among those installed.

A URL without a driver (``postgresql://...``, ``mysql://...``) means SQLAlchemy's default DBAPI for
the dialect, which for PostgreSQL in SQLAlchemy 2.1 is psycopg 3. The project installs psycopg2,
so a bare dialect takes the first installed driver of ``PREFERRED_DRIVERS`` instead; a URL that
names its driver keeps it. A driver that is not installed is a configuration error (not retried),
named with the package to install, before anything connects.
"""

from __future__ import annotations

import importlib.util

import sqlalchemy as sa

from pipelines.core.io import NonRetryableError

# dialect -> (SQLAlchemy driver name, importable module, pip package), in order of preference
PREFERRED_DRIVERS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "postgresql": (("psycopg2", "psycopg2", "psycopg2-binary"), ("psycopg", "psycopg", "psycopg[binary]")),
    "mysql": (("mysqldb", "MySQLdb", "mysqlclient"), ("pymysql", "pymysql", "PyMySQL")),
    "mariadb": (("mysqldb", "MySQLdb", "mysqlclient"), ("pymysql", "pymysql", "PyMySQL")),
}
KNOWN_PACKAGES: dict[str, str] = {
    module: package for choices in PREFERRED_DRIVERS.values() for _, module, package in choices}


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def with_installed_driver(url: sa.URL) -> sa.URL:
    """``url`` with a bare dialect replaced by its first installed preferred driver (unchanged
    otherwise, and unchanged where none is installed: ``require_driver`` then says what to install)."""
    if "+" in url.drivername:
        return url
    for driver, module, _ in PREFERRED_DRIVERS.get(url.drivername, ()):
        if installed(module):
            return url.set(drivername=f"{url.drivername}+{driver}")
    return url


def require_driver(url: sa.URL, source: str) -> sa.URL:
    """The URL with its driver resolved (``with_installed_driver``), once both its SQLAlchemy dialect
    and its DBAPI module import.

    Raises:
        NonRetryableError: naming ``source`` (the setting the URL came from), the driver and what to
            install. The password never appears.
    """
    url = with_installed_driver(url)
    shown = url.render_as_string(hide_password=True)
    try:
        dialect = url.get_dialect()
    except sa.exc.NoSuchModuleError:
        raise NonRetryableError(
            f"{source}: no SQLAlchemy dialect installed for {url.drivername!r} ({shown}); "
            "install the dialect package or use another scheme") from None
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        module = (exc.name or "").split(".")[0] or url.drivername
        package = KNOWN_PACKAGES.get(module, module)
        raise NonRetryableError(
            f"{source}: the database driver {module!r} for {url.drivername!r} is not installed ({shown}); "
            f"install {package!r} or name an installed driver in the URL (e.g. postgresql+psycopg2://)") from None
    return url
