"""Faults: asset_sync's database fails at every point of a notification's transaction (issue 7, item 2).

Against a real SQLite file and a real PostgreSQL server (the throwaway one of scripts/postgres.sh,
TEST_DATABASE_URL; without it the PostgreSQL half fails, loudly, as in tests/functions/test_asset_sync.py).
For upload (the first one, which also migrates the schema), rename, resource_tags_changed and delete, each
applied after the notifications that come before it in an asset's life, the database fails:

- before each SQL statement of the request in turn (PostgreSQL: this request's backend is terminated, so
  the statement meets a dead connection; SQLite: the statement fails with a disk I/O error), and at COMMIT;
- at connect, on a cold instance (PostgreSQL: a refused TCP connection; SQLite: the file locked by another
  process's write transaction, with no busy wait: a path that cannot be opened at all is a setup error, 500);
- with the pooled connection dropped while idle and new connections refused.

Each time the answer is 503 with neither the event nor any row committed (the database holds exactly what
it held before), and Cloudinary's retry applies the notification exactly once: one event row, the mirror
equal to the happy path's, and a further repeat answers 200 ignored and changes nothing.

Two more points, whose promise differs: a pooled connection dropped while idle, database up (the request
reconnects by itself: 200 at once, applied once), and a COMMIT that succeeded but whose acknowledgement was
lost (503, because the function cannot know; the retry finds the event recorded and answers 200 ignored).
The database is read back through connections of its own, not through the code under test.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from functions.asset_sync import db
from functions.asset_sync.handler import dedupe_key, handle
from tests import pg
from tests.helpers import sample, signed_request

pytestmark = pytest.mark.slow  # the robustness suites: `make test` runs them, `make test-fast` does not

TABLES = ("cloudinary_events", "cloudinary_assets", "cloudinary_folders", "cloudinary_folder_renames",
          "cloudinary_sync_schema")
TOTALS = {"faults injected": 0, "retries that completed the work": 0, "half-committed notifications": 0,
          "applied twice": 0, "work lost": 0}


@dataclass(frozen=True)
class Scenario:
    name: str
    before: tuple[str, ...]  # the samples applied first, in the asset's order of life

    @property
    def payload(self) -> dict[str, Any]:
        return json.loads(sample("asset_sync", self.name))


SCENARIOS = [
    Scenario("upload", ()),
    Scenario("rename", ("upload",)),
    Scenario("resource_tags_changed", ("upload", "rename")),
    Scenario("delete", ("upload", "rename", "resource_tags_changed")),
]


# --- the databases, and reading them back independently ------------------------------------------------

@dataclass
class Database:
    dialect: str
    tmp_path: Path
    serial: int = 0
    url: str = ""
    _admin: Any = None  # PostgreSQL: one connection of the test's own, to read back, drop tables, terminate

    def admin(self) -> Any:
        if self._admin is None or self._admin.closed:
            self._admin = pg.Admin(os.environ["TEST_DATABASE_URL"], dict_rows=True)
        return self._admin

    def close(self) -> None:
        if self._admin is not None:
            self._admin.close()

    def fresh(self, monkeypatch: pytest.MonkeyPatch) -> str:
        """An empty database (no tables) for the next attempt; the function's pool and schema cache forgotten."""
        db.close_all()
        db.forget_migrations()
        self.serial += 1
        if self.dialect == "sqlite":
            self.url = f"sqlite:///{self.tmp_path}/mirror-{self.serial}.sqlite3"
        else:
            self.url = os.environ["TEST_DATABASE_URL"]
            for table in TABLES:
                self.admin().execute(f"DROP TABLE IF EXISTS {table}")
        monkeypatch.setenv("DATABASE_URL", self.url)
        return self.url

    @contextlib.contextmanager
    def refusing(self, store: db.Store) -> Iterator[None]:
        """New connections fail for real, for a reason a retry can fix. PostgreSQL: a port nobody listens on.
        SQLite: another process holds the file's write lock, and the store waits 0 s for it (a real lock, no
        sleeping). (A SQLite path that cannot be opened at all is a setup error, answered 500, not a fault.)"""
        if self.dialect == "postgresql":
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
            real_target, store._target = store._target, f"postgresql://postgres:unused@127.0.0.1:{port}/asset_sync_test"
            try:
                yield
            finally:
                store._target = real_target  # the database is back
            return
        holder = sqlite3.connect(db.parse_url(self.url)[1], isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        real_timeout, store.timeout = store.timeout, 0
        try:
            yield
        finally:
            store.timeout = real_timeout
            holder.execute("ROLLBACK")
            holder.close()

    def state(self) -> dict[str, Any]:
        """What a CMS would see, and the event log: every committed row, without the write times."""
        queries = {  # name: (table, query)
            "events": ("cloudinary_events", "SELECT dedupe_key, notification_type, asset_id, event_clock "
                                            "FROM cloudinary_events ORDER BY id"),
            "assets": ("cloudinary_assets", "SELECT * FROM cloudinary_assets ORDER BY asset_id"),
            "folders": ("cloudinary_folders", "SELECT path, deleted, sync_clock FROM cloudinary_folders ORDER BY path"),
        }
        if self.dialect == "sqlite":
            path = db.parse_url(self.url)[1]
            if not os.path.exists(path):
                return {name: [] for name in queries}
            with contextlib.closing(sqlite3.connect(path)) as connection:
                connection.row_factory = sqlite3.Row
                tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
                found = {name: [dict(row) for row in connection.execute(query)] if table in tables else []
                         for name, (table, query) in queries.items()}
        else:
            admin = self.admin()
            found = {name: admin.execute(query).fetchall()
                     if admin.execute("SELECT to_regclass(%s) AS t", (table,)).fetchone()["t"] else []
                     for name, (table, query) in queries.items()}
        found["assets"] = [{key: value for key, value in row.items() if key not in ("updated_at", "sync_state")}
                           for row in found["assets"]]
        return found

    def terminate(self, connection: Any) -> None:
        """Terminate the connection's backend and see it gone. (pg_terminate_backend's own wait polls every
        100 ms; asking pg_stat_activity, without sleeping, takes about a millisecond.)"""
        admin, pid = self.admin(), pg.backend_pid(connection)
        assert admin.execute("SELECT pg_terminate_backend(%s) AS sent", (pid,)).fetchone()["sent"]
        deadline = time.monotonic() + 5
        while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
            assert time.monotonic() < deadline, "the backend did not end"

    def kill(self, connection: Any) -> None:
        """The server side of this connection goes away (PostgreSQL), or the file's I/O fails (SQLite)."""
        if self.dialect == "sqlite":
            raise sqlite3.OperationalError("disk I/O error")
        self.terminate(connection)

    def drop_idle(self) -> None:
        """The pooled connection is closed under the function while idle (e.g. the server's idle timeout)."""
        [kept] = db._idle[self.url]
        if self.dialect == "sqlite":
            kept.close()
        else:
            self.terminate(kept)

    def lost_answer_error(self) -> Exception:
        if self.dialect == "sqlite":
            return sqlite3.OperationalError("disk I/O error")
        import psycopg2

        return psycopg2.OperationalError("server closed the connection unexpectedly")


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path, monkeypatch, signing_secret) -> Iterator[Database]:
    if request.param == "postgresql" and not os.environ.get("TEST_DATABASE_URL"):
        pytest.fail("TEST_DATABASE_URL is not set, so there is no PostgreSQL to test against. Run the tests "
                    "with `make test` or `bash scripts/test.sh` (or `source scripts/postgres.sh` first): they "
                    "start a throwaway PostgreSQL and set it.", pytrace=False)
    database = Database(request.param, tmp_path)
    yield database
    database.close()
    db.close_all()
    db.forget_migrations()


# --- the breaker: fails the request's k-th statement, or its COMMIT ------------------------------------

class Breaker:
    """Where the request's transaction breaks: before its k-th SQL statement ("statement", k), at its i-th
    COMMIT ("commit", i: the schema migration's, then the notification's), or just after the notification's
    COMMIT ("lost ack")."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.armed = False
        self.at: tuple[str, int] | str | None = None
        self.statements: list[str] = []  # each statement's first words
        self.texts: list[str] = []  # and whole
        self.commits = 0
        self.fired = False
        self.on_kept_connection = False  # fired before the first statement of a kept PostgreSQL connection

    def arm(self, at: tuple[str, int] | str | None) -> None:
        self.armed, self.at, self.statements, self.texts, self.commits, self.fired = True, at, [], [], 0, False
        self.on_kept_connection = False

    def disarm(self) -> None:
        self.armed = False

    @property
    def event_inserted(self) -> bool:
        # PostgreSQL inserts the event in the statement that locks its asset rows (WITH event AS (INSERT ...)).
        return any("INSERT INTO cloudinary_events" in text for text in self.texts)


@pytest.fixture
def breaker(database, monkeypatch) -> Breaker:
    breaker = Breaker(database)
    execute, executemany, commit = db.Store.execute, db.Store.executemany, db.Store._commit

    def before_statement(store: db.Store, statement: str) -> None:
        if breaker.armed:
            index = len(breaker.statements)
            breaker.statements.append(" ".join(statement.split()[:3]))
            breaker.texts.append(statement)
            if breaker.at == ("statement", index):
                breaker.fired = True
                breaker.on_kept_connection = store._unconfirmed
                database.kill(store._connection)

    def breaking_execute(store: db.Store, statement: str, params: Any = ()) -> Any:
        before_statement(store, statement)
        return execute(store, statement, params)

    def breaking_executemany(store: db.Store, statement: str, rows: Any) -> Any:
        before_statement(store, statement)  # one statement for many rows (the asset rows' batched write)
        return executemany(store, statement, rows)

    def breaking_commit(store: db.Store) -> None:
        if not breaker.armed:
            return commit(store)
        index, breaker.commits = breaker.commits, breaker.commits + 1
        if breaker.at == ("commit", index):
            breaker.fired = True
            database.kill(store._connection)
        commit(store)
        if breaker.at == "lost ack" and breaker.event_inserted:
            breaker.fired = True  # committed; then the connection dies before its answer is read
            if database.dialect == "postgresql":
                database.kill(store._connection)
            raise database.lost_answer_error()
        return None

    monkeypatch.setattr(db.Store, "execute", breaking_execute)
    monkeypatch.setattr(db.Store, "executemany", breaking_executemany)
    monkeypatch.setattr(db.Store, "_commit", breaking_commit)
    return breaker


# --- helpers ------------------------------------------------------------------------------------------

def send(name_or_payload: str | dict[str, Any]) -> tuple[int, dict[str, Any]]:
    payload = json.loads(sample("asset_sync", name_or_payload)) if isinstance(name_or_payload, str) \
        else name_or_payload
    response = handle(signed_request(payload))
    return response.status, response.body


def prepare(scenario: Scenario, database: Database, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A fresh database holding what comes before the scenario's notification; returns its state."""
    database.fresh(monkeypatch)
    for name in scenario.before:
        status, body = send(name)
        assert status == 200 and body["status"] == "done", (name, body)
    return database.state()


_reference: dict[tuple[str, str], dict[str, Any]] = {}


def reference(scenario: Scenario, database: Database, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The state the happy path leaves (computed once per database kind and scenario)."""
    key = (database.dialect, scenario.name)
    if key not in _reference:
        prepare(scenario, database, monkeypatch)
        status, body = send(scenario.name)
        assert status == 200 and body["status"] == "done", body
        _reference[key] = database.state()
    return _reference[key]


def assert_applied_once(scenario: Scenario, database: Database, expected: dict[str, Any]) -> None:
    state = database.state()
    key = dedupe_key(scenario.payload)
    copies = sum(1 for event in state["events"] if event["dedupe_key"] == key)
    TOTALS["applied twice"] += copies > 1
    assert copies == 1, f"{copies} event rows for one notification"
    finished = state == expected
    TOTALS["retries that completed the work" if finished else "work lost"] += 1
    assert finished, "the state after the retry is not the happy path's"


def retry_applies_once(scenario: Scenario, database: Database, expected: dict[str, Any],
                       *, already_recorded: bool = False) -> None:
    status, body = send(scenario.name)  # Cloudinary's retry of the same notification
    assert status == 200, body
    assert body["status"] == ("ignored" if already_recorded else "done"), body
    assert_applied_once(scenario, database, expected)

    status, body = send(scenario.name)  # and once more: a repeat changes nothing
    assert status == 200 and body["status"] == "ignored" and "already recorded" in body["reason"], body
    assert database.state() == expected


def assert_nothing_committed(before: dict[str, Any], database: Database, status: int, body: dict[str, Any]) -> None:
    assert status == 503, body
    assert body == {"error": "database_unavailable",
                    "message": "The database is unavailable; a retry will finish the work."}
    half = database.state() != before
    TOTALS["half-committed notifications"] += half
    assert not half, "the failed request committed something"


# --- the tests ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_killed_before_each_statement_and_at_commit(scenario, database, breaker, monkeypatch):
    expected = reference(scenario, database, monkeypatch)
    prepare(scenario, database, monkeypatch)
    breaker.arm(None)
    assert send(scenario.name)[0] == 200  # the happy path's statements, counted
    breaker.disarm()
    statements, commits = list(breaker.statements), breaker.commits
    assert breaker.event_inserted, statements
    # The first notification to a new database migrates its schema too, in a transaction of its own.
    assert ("CREATE TABLE IF" in statements, commits) == ((True, 2) if not scenario.before else (False, 1))

    for at in [*(("statement", index) for index in range(len(statements))),
               *(("commit", index) for index in range(commits))]:
        before = prepare(scenario, database, monkeypatch)
        breaker.arm(at)
        TOTALS["faults injected"] += 1
        status, body = send(scenario.name)
        breaker.disarm()

        assert breaker.fired, f"the request never reached {at!r}"
        if breaker.on_kept_connection:
            # Lost before the transaction's first statement (which carries its BEGIN) on a connection kept from
            # an earlier request: nothing of it reached the server, so the function itself sent it again on a
            # fresh connection. Done, once.
            assert (status, body["status"]) == (200, "done"), body
            assert_applied_once(scenario, database, expected)
            continue
        assert_nothing_committed(before, database, status, body)
        retry_applies_once(scenario, database, expected)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_commit_that_succeeded_but_whose_answer_was_lost(scenario, database, breaker, monkeypatch):
    """503 (the function cannot know it committed); the retry finds the event recorded: 200, applied once."""
    expected = reference(scenario, database, monkeypatch)
    prepare(scenario, database, monkeypatch)
    breaker.arm("lost ack")
    TOTALS["faults injected"] += 1
    status, body = send(scenario.name)
    breaker.disarm()

    assert breaker.fired and status == 503 and body["error"] == "database_unavailable", body
    assert database.state() == expected  # it did commit, all of it
    retry_applies_once(scenario, database, expected, already_recorded=True)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_connection_refused_on_a_cold_instance(scenario, database, monkeypatch):
    expected = reference(scenario, database, monkeypatch)
    before = prepare(scenario, database, monkeypatch)
    db.close_all()  # a new instance: no pooled connection
    store = db.store(database.url)
    TOTALS["faults injected"] += 1
    with database.refusing(store):
        status, body = send(scenario.name)
    assert store._connection is None  # nothing half-open kept

    assert_nothing_committed(before, database, status, body)
    retry_applies_once(scenario, database, expected)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_idle_connection_dropped_and_new_ones_refused(scenario, database, monkeypatch):
    expected = reference(scenario, database, monkeypatch)
    prepare(scenario, database, monkeypatch)
    db.store(database.url).status()  # a pooled connection, whatever came before (upload: nothing did)
    before = database.state()
    database.drop_idle()
    store = db.store(database.url)
    TOTALS["faults injected"] += 1
    with database.refusing(store):
        status, body = send(scenario.name)

    assert_nothing_committed(before, database, status, body)
    assert db._idle.get(database.url) == []  # the dead connection was not given back to the pool
    retry_applies_once(scenario, database, expected)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_idle_connection_dropped_while_the_database_is_up_reconnects(scenario, database, monkeypatch):
    """Not a failure the caller sees: the request replaces the dead pooled connection and applies once."""
    expected = reference(scenario, database, monkeypatch)
    prepare(scenario, database, monkeypatch)
    db.store(database.url).status()
    database.drop_idle()
    TOTALS["faults injected"] += 1

    status, body = send(scenario.name)

    assert status == 200 and body["status"] == "done", body
    assert_applied_once(scenario, database, expected)
