"""A throwaway PostgreSQL database for the app, and the chat tables' row counters."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import psycopg

if TYPE_CHECKING:
    from bench.report import Report


def database_url(admin_url: str, name: str) -> str:
    """``admin_url`` pointing at database ``name`` instead, as the app's ``postgres://`` URL."""
    parts = urlsplit(admin_url)
    return urlunsplit(("postgres", parts.netloc, f"/{name}", "", ""))


def connect(url: str) -> psycopg.Connection:
    return psycopg.connect(url.replace("postgres://", "postgresql://", 1), autocommit=True, connect_timeout=5)


def recreate(admin_url: str, name: str) -> None:
    with connect(admin_url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop(admin_url: str, name: str) -> None:
    with connect(admin_url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def each_database(
    admin_url: str, name: str, sqlite_path: str, *, report: Report, figure: str
) -> Iterator[tuple[str, str]]:
    """SQLite, then a fresh PostgreSQL database when one is reachable: ``(label, DATABASE_URL)``.

    The PostgreSQL database is dropped once its turn is over; failing to make it is reported.
    """
    yield "SQLite", f"sqlite:///{sqlite_path}"
    try:
        recreate(admin_url, name)
    except Exception as exc:
        report.failed(f"{figure} (PostgreSQL)", exc)
        return
    try:
        yield "PostgreSQL", database_url(admin_url, name)
    finally:
        drop(admin_url, name)


Counts = dict[str, tuple[int, int, int]]


def chat_counts(conn: psycopg.Connection) -> Counts:
    """Rows inserted, updated and deleted so far in each ``chat_*`` table (a fresh stats snapshot)."""
    conn.execute("SELECT pg_stat_clear_snapshot()")
    rows = conn.execute(
        "SELECT relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables "
        "WHERE relname LIKE 'chat\\_%' ORDER BY relname"
    ).fetchall()
    return {name: (ins, upd, dele) for name, ins, upd, dele in rows}


# A backend flushes its statistics at most once a second; what it writes within a second of a
# flush waits until it has been idle this long (PostgreSQL 15+, PGSTAT_IDLE_INTERVAL), or until
# it exits. Two equal reads a second apart do not prove it has flushed.
IDLE_FLUSH_SECONDS = 10.0


def settled_counts(conn: psycopg.Connection, first_wait: float = 1.5, limit: float = 15) -> Counts:
    """Counts once other backends have flushed their statistics (two equal reads a second apart).

    Backends still connected may hold writes back for ``IDLE_FLUSH_SECONDS``: wait longer than
    that (``first_wait``) when they stay open.
    """
    time.sleep(first_wait)
    deadline = time.monotonic() + limit
    previous = chat_counts(conn)
    while time.monotonic() < deadline:
        time.sleep(1.0)
        current = chat_counts(conn)
        if current == previous:
            return current
        previous = current
    return previous


def difference(after: Counts, before: Counts) -> Counts:
    return {
        name: tuple(a - b for a, b in zip(values, before.get(name, (0, 0, 0)), strict=True))  # type: ignore[misc]
        for name, values in after.items()
    }
