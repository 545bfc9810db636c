"""What asset_sync's test modules share: a fresh database of each kind, sending signed notifications, and
reading back what the mirror holds.

Every database test runs twice (``database`` is parametrized): SQLite in a temporary file and the real
PostgreSQL server that ``scripts/postgres.sh`` starts for ``make test`` / ``bash scripts/test.sh``
(TEST_DATABASE_URL). Without that server the PostgreSQL half fails, loudly, rather than being skipped.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest

from functions.asset_sync import db
from functions.asset_sync.handler import handle
from tests import pg
from tests.helpers import sample, signed_request

ASSET = "3515c6000a548515f1134043f9785c2f"
VOLATILE = ("updated_at", "sync_state")  # when a row was written here; bookkeeping
TABLES = ("cloudinary_events", "cloudinary_assets", "cloudinary_folders", "cloudinary_folder_renames",
          "cloudinary_reconcile", "cloudinary_reconcile_seen", "cloudinary_sync_schema")


def drop_postgres_tables(url: str) -> None:
    with pg.admin(url) as connection:
        for table in TABLES:
            connection.execute(f"DROP TABLE IF EXISTS {table}")


def postgres_url() -> str:
    url = os.environ.get("TEST_DATABASE_URL", "")
    if not url:
        pytest.fail("TEST_DATABASE_URL is not set, so there is no PostgreSQL to test against. Run the tests "
                    "with `make test` or `bash scripts/test.sh`: they start a throwaway PostgreSQL "
                    "(scripts/postgres.sh) and set it.", pytrace=False)
    return url


def fresh_database(kind: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """DATABASE_URL for a fresh, empty database of ``kind`` ("sqlite" or "postgresql"), as a fixture body:

        @pytest.fixture(params=["sqlite", "postgresql"])
        def database(request, tmp_path, monkeypatch, signing_secret):
            yield from fresh_database(request.param, tmp_path, monkeypatch)
    """
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path}/mirror.sqlite3"
    else:
        url = postgres_url()
        drop_postgres_tables(url)
    db.close_all()
    db.forget_migrations()
    monkeypatch.setenv("DATABASE_URL", url)
    yield url
    db.close_all()


def reset(url: str) -> None:
    """Empty the database again (within one test)."""
    db.close_all()
    if url.startswith("sqlite:///"):
        path = db.parse_url(url)[1]
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
    else:
        drop_postgres_tables(url)
    db.forget_migrations()


def send(payload: Any, **kwargs: Any):
    """Sign and handle a notification: a sample's name, a payload, or the exact body bytes."""
    if isinstance(payload, str):
        payload = sample("asset_sync", payload)
    return handle(signed_request(payload, **kwargs))


def load(name: str) -> dict[str, Any]:
    return json.loads(sample("asset_sync", name))


def mirror(url: str) -> dict[str, Any]:
    """Assets and folders as a CMS sees them, without the write times."""
    store = db.store(url)
    assets = {row["asset_id"]: {k: v for k, v in row.items() if k not in VOLATILE} for row in store.assets()}
    return {"assets": assets, "folders": store.folders()}


def asset(url: str, asset_id: str = ASSET) -> dict[str, Any]:
    return mirror(url)["assets"][asset_id]


def events(url: str) -> list[dict[str, Any]]:
    return db.store(url).events()


def table_exists(url: str, table: str) -> bool:
    dialect, target = db.parse_url(url)
    if dialect == "sqlite":
        if not os.path.exists(target):
            return False
        with sqlite3.connect(target) as connection:
            return connection.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (table,)).fetchone() is not None
    with pg.admin(target) as connection:
        return connection.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0] is not None


def written_rows(url: str) -> int:
    """Events plus asset rows, counted straight from the database."""
    if not table_exists(url, "cloudinary_events"):
        return 0
    return len(events(url)) + len(db.store(url).assets())


def query(url: str, statement: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    """Rows read through a connection of the test's own (``?`` placeholders), not through the code under test."""
    dialect, target = db.parse_url(url)
    if dialect == "sqlite":
        with sqlite3.connect(target) as connection:
            connection.row_factory = sqlite3.Row
            return [dict(row) for row in connection.execute(statement, params)]
    with pg.admin(target, dict_rows=True) as connection:
        return [dict(row) for row in connection.execute(statement.replace("?", "%s"), params).fetchall()]


def execute(url: str, *statements: str) -> None:
    """DDL or DML of the test's own (e.g. a rule that rejects a value), committed."""
    dialect, target = db.parse_url(url)
    if dialect == "sqlite":
        with sqlite3.connect(target) as connection:
            for statement in statements:
                connection.execute(statement)
        return
    with pg.admin(target) as connection:
        for statement in statements:
            connection.execute(statement)
