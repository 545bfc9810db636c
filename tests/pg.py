"""The tests' own PostgreSQL connections (psycopg2, as the code under test uses), to set up and read back what
the code under test wrote, never through it.

    with pg.admin(url) as connection:
        connection.execute("SELECT pg_terminate_backend(%s)", (pid,))
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg2
import psycopg2.extras


class Admin:
    """An autocommit psycopg2 connection whose ``execute`` returns its cursor (as sqlite3's does)."""

    def __init__(self, url: str, *, dict_rows: bool = False) -> None:
        self.raw = psycopg2.connect(url, cursor_factory=psycopg2.extras.RealDictCursor if dict_rows else None)
        self.raw.autocommit = True

    @property
    def closed(self) -> bool:
        return bool(self.raw.closed)

    def execute(self, statement: str, params: Sequence[Any] | None = None) -> Any:
        cursor = self.raw.cursor()
        cursor.execute(statement, params)
        return cursor

    def close(self) -> None:
        self.raw.close()


@contextmanager
def admin(url: str, *, dict_rows: bool = False) -> Iterator[Admin]:
    connection = Admin(url, dict_rows=dict_rows)
    try:
        yield connection
    finally:
        connection.close()


def backend_pid(connection: Any) -> int:
    """The server process of one of the code under test's connections (``shared.postgres.Connection``)."""
    return connection.raw.get_backend_pid()
