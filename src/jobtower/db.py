"""Database settings from a URL: SQLite (WAL) by default, PostgreSQL via psycopg 3."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

SQLITE_OPTIONS = {
    # WAL lets readers (the web site) run while the monitor writes; NORMAL is durable in WAL mode.
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    # Take the write lock at BEGIN, so concurrent writers wait (timeout) instead of failing midway.
    "transaction_mode": "IMMEDIATE",
    "timeout": 30,
}


#: Keep SQLite connections open between requests: opening one (and its PRAGMAs) costs about 2 ms,
#: more than a whole status callback.
SQLITE_CONN_MAX_AGE = 600


def database_settings(url: str | None, home: Path) -> dict[str, Any]:
    """Return a Django DATABASES entry for `url`, or for SQLite under `home` when url is empty."""
    if not url:
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(home / "jobtower.sqlite3"),
            "OPTIONS": dict(SQLITE_OPTIONS),
            "CONN_MAX_AGE": SQLITE_CONN_MAX_AGE,
        }
    parts = urlsplit(url)
    if parts.scheme in ("sqlite", "sqlite3"):
        path = unquote(parts.path)
        if path.startswith("//"):
            path = path[1:]  # sqlite:////abs/file, the form dj-database-url users write
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": path or str(home / "jobtower.sqlite3"),
            "OPTIONS": dict(SQLITE_OPTIONS),
            "CONN_MAX_AGE": SQLITE_CONN_MAX_AGE,
        }
    if parts.scheme in ("postgres", "postgresql", "postgresql+psycopg"):
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parts.path.lstrip("/")) or "jobtower",
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
            "OPTIONS": dict(parse_qsl(parts.query)),
            "CONN_MAX_AGE": 60,
        }
    raise ValueError(
        f"JOBTOWER_DATABASE_URL {url!r} is not supported: use postgresql://user@host:5432/dbname "
        "or sqlite:///path/to/file.sqlite3"
    )


def database_busy(exc: BaseException) -> bool:
    """Return True when `exc` means another connection held a lock too long: a retry can succeed."""
    from django.db import OperationalError

    if not isinstance(exc, OperationalError):
        return False
    # SQLite: a write lock held longer than the busy timeout. PostgreSQL: lock_timeout ran out (55P03).
    text = str(exc)
    return text.startswith(("database is locked", "database table is locked")) or (
        getattr(exc.__cause__, "sqlstate", None) == "55P03"
    )


#: Below this many rows (as the planner estimates) an unfiltered list is counted exactly.
EXACT_COUNT_BELOW = 100_000


def estimated_count(queryset: Any) -> int | None:
    """Return the planner's row count of an unfiltered queryset's table on PostgreSQL, or None: count it.

    COUNT(*) reads the whole table (about a second for a million jobs). The estimate (pg_class.reltuples,
    kept by ANALYZE and autovacuum) is used only for a queryset with no filter at all on a table of at
    least EXACT_COUNT_BELOW rows; a filtered list, a small table or another database is counted exactly.
    """
    from django.db import connections

    query = getattr(queryset, "query", None)
    model = getattr(queryset, "model", None)
    if query is None or model is None or query.where or query.distinct or query.combinator:
        return None
    connection = connections[queryset.db]
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [model._meta.db_table])
        row = cursor.fetchone()
    if row is None or row[0] < EXACT_COUNT_BELOW:
        return None
    return int(row[0])
