"""The storage layer: SQLite (stdlib ``sqlite3``) or PostgreSQL (``shared.postgres``: psycopg2), chosen by
``DATABASE_URL``.

    sqlite:///relative/path.sqlite3    sqlite:////absolute/path.sqlite3    postgresql://user:pass@host/db

One notification is one transaction: the event row (unique on its dedupe key, so a repeat inserts
nothing and changes nothing), then every asset/folder row it changes, merged by ``mirror`` so that an older
notification never overwrites newer state. The asset rows are read, locked and written in batches of
``BATCH`` (a few statements per batch, not per asset).

What a failure does depends on whether a retry can fix it (``Store._retryable``):

- connection lost or refused, lock or statement timeout, serialization failure, deadlock, disk full: the
  whole transaction rolls back and the answer is 503; Cloudinary retries, and finds nothing or everything;
- anything else while applying (the database refuses a value for good, a bug): the changes roll back to
  the savepoint after the event row, and the event is kept, marked ``quarantined`` with the reason. The
  answer is 200 (a 503 would only have the notification dropped after Cloudinary's retries); ``status``
  lists it and ``replay`` applies it once the cause is fixed;
- the time budget runs out between two batches: what is done is committed, with the event marked
  ``partial`` and its progress; the answer is 503 and the retry continues from there.

Folder renames and asset writes (PostgreSQL): a rename re-projects the assets it finds in its folder, and
a write checks for renames after its asset's folder clock; neither sees what the other has not committed. So
every transaction that writes them first takes the *folder fence* (a transaction-scoped advisory lock): shared
by the transactions that write assets, alone by those that change folders (``transaction(fence=...)``; the
reading and bookkeeping ones take none). A rename then waits for the writes in flight to commit and finds
their rows; a write that starts meanwhile waits for the rename and sees it. Both take the fence before any
row lock, so it adds no deadlock. A migration with DDL to run takes it alone too, after the migration lock,
so its table locks never meet a fenced write's row locks halfway (reconcile's bookkeeping takes no fence: a
migration of its tables could still meet it, a deadlock PostgreSQL ends with a retryable 503). (SQLite runs
one writer at a time already.)

Connections are opened at first use (never at import), kept per thread for the next request of a warm
serverless instance, and dropped on any error. The schema is migrated on first use of a database URL.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from functions.asset_sync import schema
from functions.asset_sync.mirror import (
    AssetChange,
    AssetRef,
    FolderChange,
    Plan,
    clock_time,
    combine,
    folder_renames_after,
    iso_utc,
    merge,
    new_state,
    project,
    rewrite_path,
)
from functions.asset_sync.storable import storable_text, storage_key
from shared import config
from shared.errors import BadRequest, ConfigError, DependencyRejected, DependencyUnavailable

DEFAULT_TIMEOUT_SECONDS = 5  # connect and per-statement: two of them stay well inside Cloudinary's 20 s
_ADVISORY_LOCK = 0x636C6473796E63  # "cldsync": one migrator at a time across concurrent instances
_FOLDER_FENCE = 0x636C64666F6C64  # "cldfold": asset writes share it, folder changes take it alone (module doc)
BATCH = 500  # asset rows read, locked and written per batch; the time budget is checked between batches
STATUS_LISTED = 20  # `status` lists the newest quarantined events, this many
PROVISIONAL = "~"  # the key of a row known only by (resource_type, type, public_id) starts with it

ASSET_COLUMNS = ("public_id", "resource_type", "type", "asset_folder", "display_name", "version", "version_id",
                 "format", "bytes", "width", "height", "pages", "original_filename", "created_at",
                 "secure_url", "tags", "context", "metadata", "access_control", "moderation_status",
                 "moderation_kind", "derived", "info", "deleted", "deleted_at", "last_notification_at")
JSON_COLUMNS = frozenset({"tags", "context", "metadata", "access_control", "derived", "info"})
# Whole-number columns and the bound each holds (PostgreSQL INTEGER and BIGINT; SQLite 8 bytes).
INT_COLUMNS = {"version": 2**63, "bytes": 2**63, "width": 2**31, "height": 2**31, "pages": 2**31}
TIME_COLUMNS = frozenset({"created_at", "deleted_at", "last_notification_at"})
# SQLite result codes a retry can fix: busy, locked, out of memory, read-only (a remount), interrupted,
# I/O error, disk full, cannot open, lock protocol.
_SQLITE_RETRYABLE = frozenset({5, 6, 7, 8, 9, 10, 13, 14, 15})

clock = time.monotonic  # the time budget's clock (tests replace it: none of them sleeps)


@dataclass(frozen=True)
class Event:
    """One notification as the event log keeps it."""

    dedupe_key: str
    notification_type: str
    asset_id: str | None
    received_at: str
    event_clock: str  # mirror.make_clock(event_time(...), dedupe_key): the merge order
    payload: str
    signature_timestamp: str | None = None
    signature: str | None = None


@dataclass
class Outcome:
    duplicate: bool = False
    assets: int = 0
    quarantined: str | None = None  # the reason, when the database refused the notification for good
    partial: bool = False  # the time budget ran out: ``progress`` of its assets are applied
    progress: int = 0


# (notification_type, payload text, own: an event asset_sync wrote itself, unsigned) -> plan, None if not applied
Planner = Callable[[str, str, bool], Plan | None]


# --- URLs and connections ---------------------------------------------------------------------------

def parse_url(url: str) -> tuple[str, str]:
    """(dialect, target): ("sqlite", file path) or ("postgresql", the URL for libpq)."""
    url = url.strip()
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql", url
    if url.startswith("sqlite:///"):
        path = unquote(urlsplit(url).path)
        path = path[1:] if not url.startswith("sqlite:////") else path
        if path:
            return "sqlite", path
    if url == "sqlite://" or url == "sqlite:///:memory:":
        raise ConfigError("asset_sync: DATABASE_URL must name a file: an in-memory SQLite database forgets "
                          "everything when the function's instance stops")
    raise ConfigError("asset_sync: DATABASE_URL must be sqlite:///path/to/file.sqlite3 or postgresql://...")


def redact(text: str, url: str) -> str:
    """An error message for the log, without the URL's password."""
    password = urlsplit(url).password if "://" in url else None
    if password:
        text = text.replace(password, "***").replace(unquote(password), "***")
    return re.sub(r"(postgres(?:ql)?://[^:/@\s]*):[^@\s]*@", r"\1:***@", text)[:300]


_local = threading.local()
_migrated: set[str] = set()
_migrate_lock = threading.Lock()
# Idle connections by URL, shared by threads: the local server runs each request on a new thread, and a
# PostgreSQL connection costs more than the transaction it is opened for.
_idle: dict[str, list[Any]] = {}
_idle_lock = threading.Lock()
MAX_IDLE = 4
REPLAY_PAGE = 500
LOCAL_STATE_FOLDER = ".local"  # the project's folder for local state (gitignored): created on first use


def store(url: str) -> Store:
    """The store for ``url`` on this thread."""
    stores: dict[str, Store] = _local.__dict__.setdefault("stores", {})
    if url not in stores:
        stores[url] = Store(url)
    return stores[url]


def close_all() -> None:
    """Close this thread's connections and the idle ones (tests, and the CLI before it exits)."""
    for opened in _local.__dict__.get("stores", {}).values():
        opened.close()
    _local.__dict__["stores"] = {}
    with _idle_lock:
        idle = [connection for connections in _idle.values() for connection in connections]
        _idle.clear()
    for connection in idle:
        with suppress(Exception):
            connection.close()


def forget_migrations() -> None:
    """Make the next use of every URL check its schema again (tests that drop tables)."""
    _migrated.clear()


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Store:
    def __init__(self, url: str) -> None:
        self.url = url
        self.dialect, self._target = parse_url(url)
        self._connection: Any = None
        self._unconfirmed = False  # the next statement is the first on a kept connection (see _first_statement)
        self._fence: str | None = None  # the open transaction's folder fence: "shared", "alone" or none (module doc)
        self.timeout = config.integer("ASSET_SYNC_DB_TIMEOUT_SECONDS", DEFAULT_TIMEOUT_SECONDS, minimum=1)

    # --- connection and transaction plumbing ---

    def _errors(self) -> tuple[type[BaseException], ...]:
        if self.dialect == "sqlite":
            import sqlite3

            return (sqlite3.Error,)
        from shared import postgres

        return postgres.errors()

    def _retryable(self, error: BaseException) -> bool:
        """Whether a retry can fix ``error``: see the module docstring."""
        if self.dialect == "sqlite":
            import sqlite3

            if not isinstance(error, sqlite3.OperationalError):
                return False
            code = getattr(error, "sqlite_errorcode", None)  # unset on one raised by hand
            return code is None or code & 0xFF in _SQLITE_RETRYABLE
        from shared import postgres

        return postgres.retryable(error)

    def _missing_table(self, error: BaseException) -> bool:
        """A table dropped under a running instance: the next request should migrate again."""
        if self.dialect == "sqlite":
            return "no such table" in str(error)
        from shared import postgres

        return postgres.sqlstate(error) == postgres.UNDEFINED_TABLE

    def _connect(self) -> Any:
        if self.dialect == "sqlite":
            import sqlite3

            self._check_sqlite_folder()
            # check_same_thread=False: an idle connection may serve the next request on another thread;
            # it is only ever used by one thread at a time (taken from and given back to the idle list).
            connection = sqlite3.connect(self._target, timeout=self.timeout, isolation_level=None,
                                         check_same_thread=False)
            connection.row_factory = lambda cursor, row: {d[0]: v for d, v in zip(cursor.description, row,
                                                                                   strict=True)}
            from shared import sqlite

            sqlite.use_wal(connection, self.timeout)  # readers (the CMS) do not block the writer
            connection.execute("PRAGMA synchronous=NORMAL")
            return connection
        from shared import postgres

        return postgres.connect(self._target, timeout=self.timeout, application_name="cloudinary-asset-sync")

    def _check_sqlite_folder(self) -> None:
        """A SQLite file's folder must exist and be writable: no retry can fix either (500, not 503).

        Only the project's own state folder, ``.local/`` (the default's), is created: a mistyped path must
        not silently start an empty database somewhere."""
        import os

        folder = Path(self._target).parent
        if folder.name == LOCAL_STATE_FOLDER and not folder.exists():
            with suppress(OSError):
                folder.mkdir(parents=True, exist_ok=True)
        if not folder.is_dir():
            raise ConfigError(f"asset_sync: DATABASE_URL names a SQLite file in {folder}, which is not a folder "
                              "that exists; create it or fix the path")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise ConfigError(f"asset_sync: DATABASE_URL names a SQLite file in {folder}, which this process "
                              "cannot write (a read-only deployment? set DATABASE_URL to postgresql://...)")

    def close(self) -> None:
        self._unconfirmed = False
        if self._connection is not None:
            with suppress(Exception):  # closing a broken connection may fail; it is dropped anyway
                self._connection.close()
            self._connection = None

    def _sql(self, statement: str) -> str:
        """``?`` placeholders as the driver wants them (psycopg2: ``%s``, and a literal ``%`` doubled)."""
        return statement.replace("%", "%%").replace("?", "%s") if self.dialect == "postgresql" else statement

    def execute(self, statement: str, params: Sequence[Any] = ()) -> Any:
        if self._unconfirmed:
            return self._first_statement(statement, params)
        return self._connection.execute(self._sql(statement), params)

    def _first_statement(self, statement: str, params: Sequence[Any]) -> Any:
        """The transaction's first statement, carrying its deferred BEGIN, on a PostgreSQL connection kept from an
        earlier request. If the server closed that connection meanwhile (its idle timeout, a restart, a
        failover), nothing of this transaction reached it: the statement goes again, once, on a fresh one."""
        from shared import postgres

        self._unconfirmed = False
        try:
            return self._connection.execute(self._sql(statement), params)
        except postgres.errors() as error:
            if not postgres.connection_lost(error):
                raise
        self.close()
        self._connection = self._connect()
        self._begin(self._fence)
        return self._connection.execute(self._sql(statement), params)

    def executemany(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        """One statement for many rows: PostgreSQL gets a hundred rows a round trip, sqlite3 runs it natively."""
        self._unconfirmed = False  # only a transaction's first ``execute`` is sent again on a fresh connection
        if self.dialect == "sqlite":
            self._connection.executemany(statement, rows)
            return
        self._connection.execute_many(self._sql(statement), rows)

    def _in(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        """``column IN (values)`` and its parameters (PostgreSQL: one array parameter)."""
        if self.dialect == "postgresql":
            return f"{column} = ANY(?)", [list(values)]
        return f"{column} IN ({', '.join('?' * len(values))})", list(values)

    @contextmanager
    def transaction(self, *, migrate: bool = True, fence: str | None = None) -> Iterator[Store]:
        """One transaction; a database error (connect included) rolls it back and becomes a 503 when a retry
        can fix it, else a 500 (the log says what the database refused). ``migrate=False``: the schema is
        neither created nor upgraded first (a dry run reads what is there). ``fence``: "shared" when it writes
        assets, "alone" when it changes folders (the folder fence: module docstring); none when it writes
        neither."""
        errors = self._errors()
        self._fence = fence
        if self._connection is None:
            self._connection = self._take_idle()
        reused = self._connection is not None
        try:
            for attempt in (1, 2):
                try:
                    kept = self._connection is not None and not getattr(self._connection, "closed", False)
                    if not kept:
                        self._connection = self._connect()
                    if migrate:
                        self._ensure_schema()
                    self._begin(self._fence)
                    # PostgreSQL's BEGIN waits for the first statement: a kept connection is confirmed there.
                    self._unconfirmed = kept and self.dialect == "postgresql"
                    break
                except errors:
                    # A connection kept from an earlier request may have been closed by the server
                    # meanwhile: one fresh connection, before anything of this request was done.
                    self.close()
                    if attempt == 2 or not reused:
                        raise
            try:
                yield self
            except BaseException:
                self._rollback()
                raise
            self._commit()
            self._give_back()
        except errors as error:
            self.close()
            detail = redact(f"{type(error).__name__}: {error}", self.url)
            if self._missing_table(error):
                _migrated.discard(self.url)  # the retry creates it again
            elif not self._retryable(error):
                raise DependencyRejected("The database refused the request; its log says why.",
                                         code="database_rejected", log_detail=detail) from error
            raise DependencyUnavailable("The database is unavailable; a retry will finish the work.",
                                        code="database_unavailable", log_detail=detail) from error

    def _take_idle(self) -> Any:
        with _idle_lock:
            connections = _idle.get(self.url)
            return connections.pop() if connections else None

    def _give_back(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        with _idle_lock:
            connections = _idle.setdefault(self.url, [])
            if len(connections) < MAX_IDLE:
                connections.append(connection)
                return
        connection.close()

    def _begin(self, fence: str | None = None) -> None:
        """Open a transaction; PostgreSQL: behind the folder ``fence`` ("shared" or "alone") if one is given."""
        if self.dialect == "sqlite":
            self._connection.execute("BEGIN IMMEDIATE")  # take the write lock now: no upgrade deadlocks
            return
        # Sent with the transaction's first statement, in its round trip (BEGIN opens the block the SETs are
        # in). SET LOCAL: transaction-scoped, so pooled connections keep no session state. UTC: times read
        # back near the year-1 and year-9999 limits stay within what Python represents.
        begin = f"BEGIN; SET LOCAL statement_timeout = {int(self.timeout * 1000)}; SET LOCAL TimeZone = 'UTC'"
        if fence is not None:
            # A statement of its own, ahead of any row lock: the statements after it take their snapshots once
            # the fence is held, so they see every rename committed before it.
            lock = "pg_advisory_xact_lock" if fence == "alone" else "pg_advisory_xact_lock_shared"
            begin += f"; SELECT {lock}({_FOLDER_FENCE})"
        self._connection.defer(begin)

    def _commit(self) -> None:
        self._unconfirmed = False
        if self._end_unsent():
            return
        self._connection.execute("COMMIT")

    def _rollback(self) -> None:
        self._unconfirmed = False
        try:
            if self._end_unsent():
                return
            self._connection.execute("ROLLBACK")
        except Exception:  # the connection is gone; the server rolled back for us
            self.close()

    def _behind_fence(self, needed: str) -> None:
        """A transaction that writes asset rows (``needed`` "shared") or folders ("alone") without the fence is
        a bug here, never the database's doing: PostgreSQL would let a rename and a write miss each other."""
        if self.dialect == "postgresql" and self._fence not in (needed, "alone"):
            raise RuntimeError(f"asset_sync: a write outside the folder fence ({needed}); see the db module")

    def _end_unsent(self) -> bool:
        """True when nothing of the open transaction reached the server (PostgreSQL: no statement followed its
        deferred BEGIN), which is then dropped: no round trip waits for the folder fence only to end at once."""
        if self.dialect != "postgresql":
            return False
        deferred = self._connection.deferred()
        if not deferred or not deferred[0].startswith("BEGIN"):
            return False
        self._connection.discard_deferred()
        return True

    # --- schema ---

    def _ensure_schema(self) -> None:
        if self.url in _migrated:
            return
        with _migrate_lock:
            self._migrate()
            _migrated.add(self.url)

    def _migrate(self) -> list[int]:
        applied: list[int] = []
        self._begin()  # its own transaction, before the caller's; behind the folder fence only to migrate
        try:
            if self.dialect == "postgresql":
                self.execute("SELECT pg_advisory_xact_lock(?)", (_ADVISORY_LOCK,))
            self.execute("CREATE TABLE IF NOT EXISTS cloudinary_sync_schema "
                         "(version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")
            current = self.execute("SELECT MAX(version) AS v FROM cloudinary_sync_schema").fetchone()["v"] or 0
            pending = sorted(v for v in schema.MIGRATIONS if v > current)
            if pending and self.dialect == "postgresql":
                # Behind the folder fence alone, only when there is DDL to run (a cold start with the schema
                # current does not wait for writers): the writes in flight commit first, new ones wait for the new
                # schema. Otherwise a DDL statement's table lock and a writer's row locks could deadlock (a 503).
                # The migration lock is only ever taken in a transaction of its own, committed before any fenced
                # one begins: nobody waits for it while holding the fence, so no wait cycle.
                self.execute("SELECT pg_advisory_xact_lock(?)", (_FOLDER_FENCE,))
            for version in pending:
                for statement in schema.MIGRATIONS[version][self.dialect]:
                    self.execute(statement)
                self.execute("INSERT INTO cloudinary_sync_schema (version, applied_at) VALUES (?, ?)",
                             (version, _now()))
                applied.append(version)
        except BaseException:
            self._rollback()
            raise
        self._commit()
        return applied

    def migrate(self) -> list[int]:
        """Apply missing migrations now; the versions applied (empty when up to date)."""
        errors = self._errors()
        try:
            if self._connection is None:
                self._connection = self._connect()
            applied = self._migrate()
        except errors as error:
            self.close()
            raise DependencyUnavailable("The database is unavailable.", code="database_unavailable",
                                        log_detail=redact(f"{type(error).__name__}: {error}", self.url)) \
                from error
        _migrated.add(self.url)
        return applied

    # --- recording ---

    def record(self, event: Event, plan: Plan, *, budget: float | None = None) -> Outcome:
        """Insert the event and apply its plan, atomically; a repeat (same dedupe key) changes nothing, except
        that it continues an event a spent time budget left partly applied. See the module docstring."""
        deadline = None if budget is None else clock() + budget
        with self.transaction(fence="alone" if plan.folders else "shared"):
            insert = ("INSERT INTO cloudinary_events (dedupe_key, notification_type, asset_id, event_clock, "
                      "received_at, payload, signature_timestamp, signature) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                      "ON CONFLICT (dedupe_key) DO NOTHING RETURNING id")
            values = (event.dedupe_key, event.notification_type,
                      storage_key(event.asset_id) if event.asset_id else None, event.event_clock, event.received_at,
                      event.payload, event.signature_timestamp, event.signature)
            # A value the database refuses for good must not take the event row down with it: the changes are
            # applied after a savepoint, set in the same round trip as the statement after it.
            first = self._first_batch(plan)
            locked = None
            if first is not None:
                inserted, locked = self._insert_and_lock(insert, values, first)
            else:
                inserted = self._then_savepoint(insert, values)
            start = 0
            if inserted is None:
                lock = " FOR UPDATE" if self.dialect == "postgresql" else ""
                # Set again after the lock (PostgreSQL): a rollback to it keeps the event row locked.
                found = self._then_savepoint("SELECT id, event_clock, state, progress, detail "  # noqa: S608
                                             f"FROM cloudinary_events WHERE dedupe_key = ?{lock}",
                                             (event.dedupe_key,), again=True)
                if found["state"] != "partial":
                    return Outcome(duplicate=True, quarantined=found["detail"] if found["state"] == "quarantined"
                                   else None)
                event_id, start, event_clock = found["id"], found["progress"] or 0, found["event_clock"]
            else:
                event_id, event_clock = inserted["id"], event.event_clock
            try:
                outcome = self.apply(plan, event_clock, start=start, deadline=deadline, locked=locked)
            except Exception as error:
                if self._retryable(error) or self._missing_table(error):
                    raise
                self.execute("ROLLBACK TO SAVEPOINT apply")
                reason = _reason(error, self.url)
                self.execute("UPDATE cloudinary_events SET state = 'quarantined', progress = NULL, detail = ? "
                             "WHERE id = ?", (reason, event_id))
                return Outcome(quarantined=reason)
            if outcome.partial:
                self.execute("UPDATE cloudinary_events SET state = 'partial', progress = ? WHERE id = ?",
                             (outcome.progress, event_id))
            elif start:
                self.execute("UPDATE cloudinary_events SET state = 'applied', progress = NULL WHERE id = ?",
                             (event_id,))
            return outcome

    def _then_savepoint(self, statement: str, params: Sequence[Any], *, again: bool = False) -> Any:
        """The first row of ``statement``, then ``SAVEPOINT apply``. PostgreSQL: the savepoint needs no answer, so
        it goes out with the next statement, in its round trip. SQLite: the savepoint only the first time
        (``again``: no row locks to keep, its write lock covers the whole transaction)."""
        if self.dialect == "postgresql":
            row = self.execute(statement, params).fetchone()
            self._connection.defer("SAVEPOINT apply")
            return row
        row = self.execute(statement, params).fetchone()
        if not again:
            self.execute("SAVEPOINT apply")
        return row

    def _first_batch(self, plan: Plan) -> list[AssetChange] | None:
        """PostgreSQL: the plan's first batch, when its rows can be locked in the event's own statement (no
        folder changes to apply first, every asset named by asset_id, so no lookup to make); else None."""
        if self.dialect != "postgresql" or plan.folders or not plan.assets:
            return None
        batch = self._ordered(plan.assets)[:BATCH]
        return batch if all(change.ref.asset_id for change in batch) else None

    def _insert_and_lock(self, insert: str, values: Sequence[Any], batch: list[AssetChange]
                         ) -> tuple[dict[str, Any] | None, list[dict[str, Any]] | None]:
        """The event inserted and, when it is new, ``batch``'s rows locked, in one statement and round trip: (the
        event's row or None for a repeat, the locked rows or None). The lock reads the inserted event (LATERAL),
        so it runs after the insert, in the order every other transaction takes them; a repeat locks nothing."""
        keys, named = self._targets(batch)
        lock, params = self._lock_query(sorted(set(keys)), named, after="event.id IS NOT NULL")
        rows = self.execute(f"WITH event AS ({insert}) SELECT event.id AS event_id, locked.* "  # noqa: S608
                            f"FROM event LEFT JOIN LATERAL ({lock}) AS locked ON TRUE", [*values, *params]).fetchall()
        if not rows:
            return None, None
        self._connection.defer("SAVEPOINT apply")
        return {"id": rows[0]["event_id"]}, [row for row in rows if row["asset_id"] is not None]

    def record_batch(self, items: Sequence[tuple[Event, Plan]],
                     then: Callable[[Store], None] | None = None) -> dict[str, int]:
        """Events asset_sync writes itself (``reconcile``'s: one per asset) with their plans, and ``then`` (their
        bookkeeping), in one transaction: all of it or nothing. The asset changes are applied in batches of
        ``BATCH``, each at its own event's clock; an event already recorded changes nothing; one the database
        refuses for good is quarantined alone, as ``record`` does. Counts: recorded, duplicates, quarantined."""
        unique = list({event.dedupe_key: (event, plan) for event, plan in items}.values())
        counts = {"recorded": 0, "duplicates": len(items) - len(unique), "quarantined": 0}
        with self.transaction(fence="alone" if any(plan.folders for _event, plan in unique) else "shared"):
            ids = self._insert_events([event for event, _plan in unique])
            todo = [(ids[event.dedupe_key], event, plan) for event, plan in unique if event.dedupe_key in ids]
            counts["duplicates"] += len(unique) - len(todo)
            counts["recorded"] = len(todo)
            for event_id, reason in self._apply_events(todo).items():
                counts["quarantined"] += 1
                self.execute("UPDATE cloudinary_events SET state = 'quarantined', progress = NULL, detail = ? "
                             "WHERE id = ?", (reason, event_id))
            if then is not None:
                then(self)
        return counts

    def _insert_events(self, events: Sequence[Event]) -> dict[str, int]:
        """Insert the events not recorded yet, a batch per statement; their ids by dedupe key."""
        ids: dict[str, int] = {}
        for start in range(0, len(events), BATCH):
            chunk = events[start:start + BATCH]
            values = ", ".join("(?, ?, ?, ?, ?, ?, ?, ?)" for _ in chunk)
            params = [value for event in chunk for value in (
                event.dedupe_key, event.notification_type, storage_key(event.asset_id) if event.asset_id else None,
                event.event_clock, event.received_at, event.payload, event.signature_timestamp, event.signature)]
            for row in self.execute(
                    "INSERT INTO cloudinary_events (dedupe_key, notification_type, asset_id, event_clock, "  # noqa: S608
                    f"received_at, payload, signature_timestamp, signature) VALUES {values} "
                    "ON CONFLICT (dedupe_key) DO NOTHING RETURNING id, dedupe_key", params).fetchall():
                ids[row["dedupe_key"]] = row["id"]
        return ids

    def _apply_events(self, todo: Sequence[tuple[int, Event, Plan]]) -> dict[int, str]:
        """Apply the plans of new events under one savepoint, their asset changes in batches; only when the database
        refuses something for good does each event get a savepoint of its own. The reasons by event id."""
        if not todo:
            return {}
        self.execute("SAVEPOINT events")
        failures: dict[int, str] = {}
        try:
            for _event_id, event, plan in todo:
                for change in plan.folders:
                    self._apply_folder(change, event.event_clock)
            pairs = sorted(((change, event.event_clock) for _event_id, event, plan in todo for change in plan.assets),
                           key=lambda pair: (pair[0].ref.asset_id or "", pair[0].ref.public_id or ""))
            for start in range(0, len(pairs), BATCH):
                chunk = pairs[start:start + BATCH]
                self._apply_batch([change for change, _clock in chunk], [clock for _change, clock in chunk])
        except Exception as error:
            if self._retryable(error) or self._missing_table(error):
                raise
            self.execute("ROLLBACK TO SAVEPOINT events")
            for event_id, event, plan in todo:
                self.execute("SAVEPOINT one")
                try:
                    self.apply(plan, event.event_clock)
                except Exception as refused:
                    if self._retryable(refused) or self._missing_table(refused):
                        raise
                    self.execute("ROLLBACK TO SAVEPOINT one")
                    failures[event_id] = _reason(refused, self.url)
                self.execute("RELEASE SAVEPOINT one")
        self.execute("RELEASE SAVEPOINT events")
        return failures

    def apply(self, plan: Plan, event_clock: str, *, start: int = 0, deadline: float | None = None,
              locked: list[dict[str, Any]] | None = None) -> Outcome:
        """Apply ``plan`` stated at ``event_clock`` (inside a transaction), from its ``start``-th asset, in
        batches; stop between two batches when the next one would end after ``deadline``. ``locked``: the
        first batch's rows, already locked (``_insert_and_lock``)."""
        outcome = Outcome(progress=start)
        if start == 0:
            for change in plan.folders:
                self._apply_folder(change, event_clock)
        changes = self._ordered(plan.assets)
        position = start
        while position < len(changes):
            began = clock()
            batch = changes[position:position + BATCH]
            self._apply_batch(batch, event_clock, locked=locked if position == 0 else None)
            position += len(batch)
            outcome.assets += len(batch)
            if deadline is not None and position < len(changes):
                now = clock()
                if now + (now - began) > deadline:
                    outcome.partial = True
                    break
        outcome.progress = position
        return outcome

    @staticmethod
    def _ordered(changes: Sequence[AssetChange]) -> list[AssetChange]:
        """A fixed order: two notifications naming the same assets lock them in the same order (no deadlock),
        and a retry's ``start`` counts the same assets."""
        return sorted(changes, key=lambda c: (c.ref.asset_id or "", c.ref.public_id or ""))

    def _targets(self, batch: list[AssetChange]) -> tuple[list[str], list[str]]:
        """The row key of each change (``_resolve``), and the public IDs whose provisional rows the changes
        named by asset_id take over (merged into the asset's row)."""
        named = sorted({change.ref.public_id for change in batch if change.ref.asset_id and change.ref.public_id})
        return self._resolve(batch), named

    def _apply_batch(self, batch: list[AssetChange], event_clock: str | Sequence[str], *,
                     locked: list[dict[str, Any]] | None = None) -> None:
        """Apply ``batch``, each change at ``event_clock`` (one clock, or one per change). ``locked``: its rows,
        already locked (as ``_lock_rows`` reads them)."""
        clocks = [event_clock] * len(batch) if isinstance(event_clock, str) else list(event_clock)
        keys, named = self._targets(batch)
        wanted = set(keys)
        rows = locked if locked is not None else self._lock_rows(sorted(wanted), named)
        states = {row["asset_id"]: _state(row["sync_state"]) for row in rows if row["asset_id"] in wanted}
        missing = sorted(wanted - set(states))
        if missing:
            states.update(self._insert_rows(missing))
        before = dict(states)
        absorbed = self._absorb([row for row in rows if row["asset_id"] not in states], batch, keys, states)
        for key, change, clock in zip(keys, batch, clocks, strict=True):
            states[key] = merge(states[key], change, clock)
        self._write_rows([(key, state) for key, state in states.items() if state != before.get(key)
                          or key in missing])
        if absorbed:
            where, params = self._in("asset_id", sorted(absorbed))
            self.execute(f"DELETE FROM cloudinary_assets WHERE {where}", params)  # noqa: S608 - fixed names

    def _resolve(self, batch: list[AssetChange]) -> list[str]:
        """The row key of each change: its asset_id; else (notifications before 2021, eager ones) the row of
        the same (resource_type, type, public_id) — the live asset row first, newest first; else a new
        provisional row, keyed ``~<resource_type>/<type>/<public_id>``."""
        wanted = sorted({change.ref.public_id for change in batch if not change.ref.asset_id})
        candidates: dict[str, list[dict[str, Any]]] = {}
        if wanted:
            where, params = self._in("public_id", wanted)
            for row in self.execute("SELECT asset_id, public_id, resource_type, type, deleted, last_notification_at "  # noqa: S608
                                    f"FROM cloudinary_assets WHERE {where}", params).fetchall():
                row = {**row, "last_notification_at": _time_text(row["last_notification_at"]) or ""}
                candidates.setdefault(row["public_id"], []).append(row)
        keys = []
        for change in batch:
            ref = change.ref
            if ref.asset_id:
                keys.append(storage_key(ref.asset_id))
                continue
            found = sorted((row for row in candidates.get(ref.public_id, []) if _same_asset(row, ref)),
                           key=lambda row: row["last_notification_at"], reverse=True)
            found.sort(key=lambda row: (row["asset_id"].startswith(PROVISIONAL), bool(row["deleted"])))
            if found:
                keys.append(found[0]["asset_id"])
                continue
            key = storage_key(provisional_key(ref))
            candidates.setdefault(ref.public_id, []).append(
                {"asset_id": key, "resource_type": ref.resource_type, "type": ref.type, "deleted": False,
                 "last_notification_at": ""})
            keys.append(key)
        return keys

    def _lock_rows(self, keys: list[str], public_ids: list[str]) -> list[dict[str, Any]]:
        """The rows ``keys`` name, and the provisional rows of ``public_ids``, locked for this transaction."""
        query, params = self._lock_query(keys, public_ids)
        return self.execute(query, params).fetchall()

    def _lock_query(self, keys: list[str], public_ids: list[str], *,
                    after: str | None = None) -> tuple[str, list[Any]]:
        """``_lock_rows``'s statement and parameters; ``after``: a condition of the enclosing statement's."""
        where, params = self._in("asset_id", keys)
        if public_ids:
            provisional, more = self._in("public_id", public_ids)
            where = f"{where} OR (asset_id LIKE '{PROVISIONAL}%' AND {provisional})"
            params += more
        lock = " FOR UPDATE" if self.dialect == "postgresql" else ""
        if after:
            where = f"{after} AND ({where})"
        return ("SELECT asset_id, public_id, resource_type, type, sync_state "  # noqa: S608
                f"FROM cloudinary_assets WHERE {where} ORDER BY asset_id{lock}", params)

    def _insert_rows(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        """New, empty rows for ``keys`` (a concurrent request may insert some first: those are read, locked)."""
        now = _now()
        values = ", ".join("(?, ?, ?)" for _ in keys)
        params = [value for key in keys for value in (key, "{}", now)]
        inserted = {row["asset_id"] for row in self.execute(
            f"INSERT INTO cloudinary_assets (asset_id, sync_state, updated_at) VALUES {values} "  # noqa: S608
            "ON CONFLICT (asset_id) DO NOTHING RETURNING asset_id", params).fetchall()}
        states = {key: new_state() for key in inserted}
        raced = [key for key in keys if key not in inserted]
        if raced:
            states.update({row["asset_id"]: _state(row["sync_state"]) for row in self._lock_rows(raced, [])})
        return states

    def _absorb(self, provisional: list[dict[str, Any]], batch: list[AssetChange], keys: list[str],
                states: dict[str, dict[str, Any]]) -> set[str]:
        """Merge each provisional row into the row of the asset a change names it by (asset_id and public ID of
        the same types); the keys of the rows merged, to delete."""
        absorbed: set[str] = set()
        for row in provisional:
            for key, change in zip(keys, batch, strict=True):
                if change.ref.asset_id and change.ref.public_id == row["public_id"] and _same_asset(row, change.ref):
                    states[key] = combine(states[key], _state(row["sync_state"]))
                    absorbed.add(row["asset_id"])
                    break
        return absorbed

    def _write_rows(self, rows: list[tuple[str, Mapping[str, Any]]]) -> None:
        """Each row's columns projected from its merge state (its folder through the folder renames recorded
        after the folder's own clock), in one statement."""
        if not rows:
            return
        self._behind_fence("shared")
        folder_clocks = [state["fields"]["asset_folder"][1] for _key, state in rows
                         if state.get("fields", {}).get("asset_folder")]
        since = min(folder_clocks) if folder_clocks else None
        update = (f"UPDATE cloudinary_assets SET {', '.join(f'{column} = ?' for column in ASSET_COLUMNS)}, "  # noqa: S608
                  "sync_state = ?, updated_at = ? WHERE asset_id = ?")
        if len(rows) == 1 and since is not None and self.dialect == "postgresql":
            # The usual notification: one row, and no rename after its folder's clock. The write itself says
            # whether one is recorded (its snapshot is taken after the row's lock, as a query of its own would
            # be), so that none costs no round trip; when one is, the row is written again through it.
            written = self.execute(f"{update} RETURNING EXISTS (SELECT 1 FROM cloudinary_folder_renames "  # noqa: S608
                                   "WHERE event_clock > ?) AS renamed", [*self._row_values(rows, [])[0], since])
            if not written.fetchone()["renamed"]:
                return
        renames = self._renames_after_clock(since) if since is not None else []
        values = self._row_values(rows, renames)
        if len(values) == 1:  # one row (most notifications): a plain execute costs less than a batch
            self.execute(update, values[0])
            return
        self.executemany(update, values)

    @staticmethod
    def _row_values(rows: list[tuple[str, Mapping[str, Any]]],
                    renames: list[tuple[str, str, str]]) -> list[tuple[Any, ...]]:
        """The UPDATE's parameters for each row: its columns, its merge state, the time, its key."""
        now = _now()
        values = []
        for key, state in rows:
            folder = state.get("fields", {}).get("asset_folder")
            row = _columns(project(state, folder_renames_after(renames, folder[1]) if folder else []))
            values.append((*(row[column] for column in ASSET_COLUMNS),
                           json.dumps(state, ensure_ascii=False, separators=(",", ":")), now, key))
        return values

    def _renames_after_clock(self, event_clock: str) -> list[tuple[str, str, str]]:
        """Folder renames that happened after ``event_clock``, in the order they happened."""
        rows = self.execute("SELECT event_clock, from_path, to_path FROM cloudinary_folder_renames "
                            "WHERE event_clock > ? ORDER BY event_clock", (event_clock,)).fetchall()
        return [(row["event_clock"], row["from_path"], row["to_path"]) for row in rows]

    def _apply_folder(self, change: FolderChange, event_clock: str) -> None:
        self._behind_fence("alone")
        if change.kind == "delete":
            self._set_folder(change.path, True, event_clock)
            return
        if change.kind == "create":
            # A folder created before a rename that already arrived lives under the new name now.
            path = change.path
            for rename_clock, from_path, to_path in self._renames_after_clock(event_clock):
                moved = rewrite_path(path, from_path, to_path)
                if moved is not None:
                    self._set_folder(path, True, rename_clock)
                    path = moved
            self._set_folder(path, False, event_clock)
            return
        to_path = change.to_path or ""
        self.execute("INSERT INTO cloudinary_folder_renames (event_clock, from_path, to_path) VALUES (?, ?, ?) "
                     "ON CONFLICT (event_clock) DO NOTHING", (event_clock, change.path, to_path))
        pattern = _like_prefix(change.path)
        for row in self.execute("SELECT path FROM cloudinary_folders WHERE NOT deleted AND path LIKE ? "
                                "ESCAPE '\\' ORDER BY path", (pattern,)).fetchall():
            moved = rewrite_path(row["path"], change.path, to_path)
            if moved is not None and self._set_folder(row["path"], True, event_clock):
                self._set_folder(moved, False, event_clock)
        self._set_folder(change.path, True, event_clock)  # the old name is gone, whether we knew it or not
        self._set_folder(to_path, False, event_clock)
        # Assets in the folder: re-project their folder through the renames that came after their own.
        lock = " FOR UPDATE" if self.dialect == "postgresql" else ""
        query = ("SELECT asset_id, sync_state FROM cloudinary_assets WHERE asset_folder = ? "  # noqa: S608
                 f"OR asset_folder LIKE ? ESCAPE '\\' ORDER BY asset_id{lock}")
        rows = self.execute(query, (change.path, pattern)).fetchall()
        self._write_rows([(row["asset_id"], _state(row["sync_state"])) for row in rows])

    def _set_folder(self, path: str, deleted: bool, event_clock: str) -> bool:
        """Last writer wins on the folder's existence; True when this clock won."""
        changed = self.execute(
            "INSERT INTO cloudinary_folders (path, deleted, changed_at, sync_clock, updated_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (path) DO UPDATE SET deleted = excluded.deleted, "
            "changed_at = excluded.changed_at, sync_clock = excluded.sync_clock, updated_at = excluded.updated_at "
            "WHERE cloudinary_folders.sync_clock < excluded.sync_clock RETURNING path",
            (storage_key(path), deleted, clock_time(event_clock), event_clock, _now())).fetchone()
        return changed is not None

    # --- replay and reading ---

    def replay(self, planner: Planner) -> dict[str, int]:
        """Rebuild the mirror (assets, folders) from the event log, in one transaction. An event the database
        refuses is (still, or now) quarantined; a quarantined or partly applied one that applies is applied."""
        counts = {"events": 0, "applied": 0, "skipped": 0, "quarantined": 0}
        with self.transaction(fence="alone"):  # it rebuilds every folder
            for table in ("cloudinary_assets", "cloudinary_folders", "cloudinary_folder_renames"):
                self.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed names
            last_id = 0
            while True:  # in pages: a log of millions of events need not fit in memory
                rows = self.execute("SELECT id, notification_type, event_clock, payload, state, signature FROM "
                                    "cloudinary_events WHERE id > ? ORDER BY id LIMIT ?",
                                    (last_id, REPLAY_PAGE)).fetchall()
                if not rows:
                    break
                last_id = rows[-1]["id"]
                plans = []
                for row in rows:
                    counts["events"] += 1
                    try:
                        plan = planner(row["notification_type"], row["payload"], row["signature"] is None)
                    except (BadRequest, ValueError, RecursionError):
                        plan = None  # a payload this version cannot read
                    if plan is None:
                        counts["skipped"] += 1
                    else:
                        plans.append((row, plan))
                failures = self._replay_page(plans)
                for row, _plan in plans:
                    reason = failures.get(row["id"])
                    counts["quarantined" if reason else "applied"] += 1
                    if reason or row["state"] != "applied":
                        self.execute("UPDATE cloudinary_events SET state = ?, progress = NULL, detail = ? "
                                     "WHERE id = ?", ("quarantined" if reason else "applied", reason, row["id"]))
        return counts

    def _replay_page(self, plans: list[tuple[Mapping[str, Any], Plan]]) -> dict[int, str]:
        """Apply a page of events; the reasons of those the database refuses, by event id. The page runs
        under one savepoint; only when something in it is refused does each event get its own."""
        self.execute("SAVEPOINT page")
        try:
            for row, plan in plans:
                self.apply(plan, row["event_clock"])
            failures: dict[int, str] = {}
        except Exception as error:
            if self._retryable(error) or self._missing_table(error):
                raise
            self.execute("ROLLBACK TO SAVEPOINT page")
            failures = {}
            for row, plan in plans:
                self.execute("SAVEPOINT one")
                try:
                    self.apply(plan, row["event_clock"])
                except Exception as refused:
                    if self._retryable(refused) or self._missing_table(refused):
                        raise
                    self.execute("ROLLBACK TO SAVEPOINT one")
                    failures[row["id"]] = _reason(refused, self.url)
                self.execute("RELEASE SAVEPOINT one")
        self.execute("RELEASE SAVEPOINT page")
        return failures

    def assets(self) -> list[dict[str, Any]]:
        """Every mirror row as plain values (JSON decoded, times as ISO UTC text), by asset_id."""
        with self.transaction():
            rows = self.execute("SELECT * FROM cloudinary_assets ORDER BY asset_id").fetchall()
        return [_plain(row) for row in rows]

    def folders(self) -> list[dict[str, Any]]:
        with self.transaction():
            rows = self.execute("SELECT path, deleted FROM cloudinary_folders ORDER BY path").fetchall()
        return [{"path": row["path"], "deleted": bool(row["deleted"])} for row in rows]

    def events(self) -> list[dict[str, Any]]:
        with self.transaction():
            rows = self.execute("SELECT id, dedupe_key, notification_type, asset_id, event_clock, payload, "
                                "signature_timestamp, signature, state, progress, detail FROM cloudinary_events "
                                "ORDER BY id").fetchall()
        return [dict(row) for row in rows]

    def status(self) -> dict[str, Any]:
        with self.transaction():
            version = self.execute("SELECT MAX(version) AS v FROM cloudinary_sync_schema").fetchone()["v"]
            by_type = self.execute("SELECT notification_type, COUNT(*) AS n FROM cloudinary_events "
                                   "GROUP BY notification_type ORDER BY notification_type").fetchall()
            by_state = self.execute("SELECT state, COUNT(*) AS n FROM cloudinary_events WHERE state <> 'applied' "
                                    "GROUP BY state").fetchall()
            quarantined = self.execute(
                "SELECT id, notification_type, dedupe_key, received_at, detail FROM cloudinary_events "
                "WHERE state = 'quarantined' ORDER BY id DESC LIMIT ?", (STATUS_LISTED,)).fetchall()
            last = self.execute("SELECT MAX(received_at) AS t FROM cloudinary_events").fetchone()["t"]
            assets = self.execute(
                "SELECT COUNT(*) AS n, SUM(CASE WHEN deleted THEN 1 ELSE 0 END) AS d, "
                "SUM(CASE WHEN asset_id LIKE '~%' THEN 1 ELSE 0 END) AS p "  # PROVISIONAL
                "FROM cloudinary_assets").fetchone()
            folders = self.execute("SELECT COUNT(*) AS n FROM cloudinary_folders WHERE NOT deleted").fetchone()
        states = {row["state"]: row["n"] for row in by_state}
        return {
            "database": self.dialect,
            "schema_version": version,
            "events": sum(row["n"] for row in by_type),
            "events_by_type": {row["notification_type"]: row["n"] for row in by_type},
            "last_received_at": _time_text(last),
            "assets": assets["n"] or 0,
            "deleted_assets": assets["d"] or 0,
            "provisional_assets": assets["p"] or 0,
            "folders": folders["n"] or 0,
            "quarantined": states.get("quarantined", 0),
            "partially_applied": states.get("partial", 0),
            "quarantined_events": [
                {"id": row["id"], "notification_type": row["notification_type"], "dedupe_key": row["dedupe_key"],
                 "received_at": _time_text(row["received_at"]), "reason": row["detail"]} for row in quarantined],
        }

    # --- reconcile (reconcile.py): the mirror as the Search API sees it, and where a pass continues ---

    def has_table(self, table: str) -> bool:
        """Whether ``table`` exists, creating nothing (not even a SQLite file): a dry run reads what is there."""
        if self.dialect == "sqlite" and not Path(self._target).exists():
            return False
        with self.transaction(migrate=False):
            if self.dialect == "sqlite":
                found = self.execute("SELECT 1 AS found FROM sqlite_master WHERE type = 'table' AND name = ?",
                                     (table,)).fetchone()
                return found is not None
            return bool(self.execute("SELECT to_regclass(?) IS NOT NULL AS found", (table,)).fetchone()["found"])

    def asset_rows(self, keys: Sequence[str], *, migrate: bool = True) -> dict[str, dict[str, Any]]:
        """The mirror rows of ``keys`` (plain values, ``sync_state`` decoded) by key: one statement per ``BATCH``."""
        found: dict[str, dict[str, Any]] = {}
        with self.transaction(migrate=migrate):
            for start in range(0, len(keys), BATCH):
                where, params = self._in("asset_id", list(keys[start:start + BATCH]))
                for row in self.execute(f"SELECT * FROM cloudinary_assets WHERE {where}", params).fetchall():  # noqa: S608
                    found[row["asset_id"]] = _plain(row)
        return found

    def unseen_assets(self, *, before: str, after: str = "", pass_id: int | None = None, limit: int = BATCH,
                      migrate: bool = True) -> list[dict[str, Any]]:
        """Rows a search over every asset should have returned, ``limit`` of them keyed after ``after``: live, known
        by asset_id, of a delivery type the Search API returns (``SEARCHED_TYPES``), last changed by a notification
        before ``before`` (ISO UTC); with ``pass_id``, only those that pass did not see."""
        types, params = self._in("a.type", list(SEARCHED_TYPES))
        params += [before, after]
        unseen = ""
        if pass_id is not None:
            unseen = ("AND NOT EXISTS (SELECT 1 FROM cloudinary_reconcile_seen s WHERE s.pass_id = ? "
                      "AND s.asset_id = a.asset_id) ")
            params.append(pass_id)
        with self.transaction(migrate=migrate):
            rows = self.execute(
                "SELECT a.asset_id, a.public_id, a.resource_type, a.type, a.last_notification_at "  # noqa: S608
                f"FROM cloudinary_assets a WHERE NOT a.deleted AND a.asset_id NOT LIKE '{PROVISIONAL}%' AND {types} "
                f"AND a.last_notification_at < ? AND a.asset_id > ? {unseen}ORDER BY a.asset_id LIMIT ?",
                (*params, limit)).fetchall()
        return [_plain(row) for row in rows]

    def live_assets(self, *, migrate: bool = True) -> int:
        """How many rows are live and known by asset_id (the measure of a search that misses too much)."""
        with self.transaction(migrate=migrate):
            return self.execute("SELECT COUNT(*) AS n FROM cloudinary_assets WHERE NOT deleted "  # noqa: S608
                                f"AND asset_id NOT LIKE '{PROVISIONAL}%'").fetchone()["n"] or 0

    def reconcile_passes(self, *, expression: str | None = None, unfinished: bool = False,
                         migrate: bool = True) -> list[dict[str, Any]]:
        """Reconcile passes, newest first: of ``expression`` only, or unfinished only, when asked."""
        conditions, params = [], []
        if expression is not None:
            conditions.append("expression = ?")
            params.append(expression)
        if unfinished:
            conditions.append("finished_at IS NULL")
        where = f"WHERE {' AND '.join(conditions)} " if conditions else ""
        with self.transaction(migrate=migrate):
            rows = self.execute(f"SELECT * FROM cloudinary_reconcile {where}ORDER BY id DESC", params).fetchall()  # noqa: S608
        return [_pass(row) for row in rows]

    def start_pass(self, expression: str, every_asset: bool, cursor: str | None, *, now: str,
                   lease_until: str) -> dict[str, Any]:
        """A new pass of ``expression``, leased until ``lease_until``; an unfinished pass of the same expression is
        abandoned (its seen assets forgotten), unless a run holds it (``PassBusy``)."""
        with self.transaction():
            lock = " FOR UPDATE" if self.dialect == "postgresql" else ""
            for old in self.execute("SELECT id, lease_until FROM cloudinary_reconcile WHERE expression = ? "  # noqa: S608
                                    f"AND finished_at IS NULL{lock}", (expression,)).fetchall():
                held = _time_text(old["lease_until"])
                if held and held > now:
                    raise PassBusy(held)
                self.execute("UPDATE cloudinary_reconcile SET finished_at = ?, updated_at = ?, lease_until = NULL, "
                             "stopped = 'abandoned: a new pass started' WHERE id = ?", (now, now, old["id"]))
                self.execute("DELETE FROM cloudinary_reconcile_seen WHERE pass_id = ?", (old["id"],))
            row = self.execute("INSERT INTO cloudinary_reconcile (expression, every_asset, started_at, updated_at, "
                               "next_cursor, lease_until) VALUES (?, ?, ?, ?, ?, ?) RETURNING *",
                               (expression, every_asset, now, now, cursor, lease_until)).fetchone()
        return _pass(row)

    def take_pass(self, pass_id: int, *, now: str, lease_until: str) -> dict[str, Any]:
        """Lease an unfinished pass to continue it; ``PassBusy`` while another run holds it."""
        with self.transaction():
            row = self.execute("UPDATE cloudinary_reconcile SET lease_until = ?, updated_at = ?, stopped = NULL "
                               "WHERE id = ? AND finished_at IS NULL AND (lease_until IS NULL OR lease_until <= ?) "
                               "RETURNING *", (lease_until, now, pass_id, now)).fetchone()
            if row is None:
                held = self.execute("SELECT lease_until FROM cloudinary_reconcile WHERE id = ?", (pass_id,)).fetchone()
                raise PassBusy(_time_text(held["lease_until"]) if held else None)
        return _pass(row)

    def update_pass(self, pass_id: int, *, now: str, seen: Sequence[str] = (), finished: bool = False,
                    add: Mapping[str, int] | None = None, **values: Any) -> None:
        """Inside a transaction (``record_batch``'s ``then``): the pass's columns ``values``, counts ``add``ed, the
        assets it has ``seen`` remembered; ``finished``: done, its seen assets forgotten."""
        if finished:  # a finished pass has neither a cursor nor a lease
            values = {column: value for column, value in values.items() if column not in ("next_cursor", "lease_until")}
        assignments = [f"{column} = ?" for column in values if column in _PASS_SET]
        params: list[Any] = [values[column] for column in values if column in _PASS_SET]
        for column, count in (add or {}).items():
            if column in _PASS_COUNTS:
                assignments.append(f"{column} = {column} + ?")
                params.append(count)
        if finished:
            assignments += ["finished_at = ?", "lease_until = NULL", "next_cursor = NULL"]
            params.append(now)
        self.execute(f"UPDATE cloudinary_reconcile SET {', '.join([*assignments, 'updated_at = ?'])} "  # noqa: S608
                     "WHERE id = ?", (*params, now, pass_id))
        if seen:
            self.executemany("INSERT INTO cloudinary_reconcile_seen (pass_id, asset_id) VALUES (?, ?) "
                             "ON CONFLICT (pass_id, asset_id) DO NOTHING", [(pass_id, key) for key in seen])
        if finished:
            self.execute("DELETE FROM cloudinary_reconcile_seen WHERE pass_id = ?", (pass_id,))

    def release_pass(self, pass_id: int, *, now: str, stopped: str | None, **values: Any) -> None:
        """The run stops continuing the pass: its lease is given back, with why it stopped (and ``values``)."""
        with self.transaction():
            self.update_pass(pass_id, now=now, **values, stopped=stopped, lease_until=None)


class PassBusy(Exception):
    """Another run continues this reconcile pass; it holds it until ``lease_until`` (ISO UTC)."""

    def __init__(self, lease_until: str | None) -> None:
        super().__init__(f"another reconcile run holds this pass until {lease_until}")
        self.lease_until = lease_until


# The delivery types the Search API returns; rows of other types (sprites, multi, fetched...) are never judged vanished.
SEARCHED_TYPES = ("upload", "private", "authenticated")
_PASS_SET = frozenset({"next_cursor", "searched_all", "stopped", "lease_until", "rate_remaining", "rate_reset_at"})
_PASS_COUNTS = frozenset({"pages", "assets", "missing", "stale", "vanished", "calls"})


def _pass(row: Mapping[str, Any]) -> dict[str, Any]:
    plain = dict(row)
    for column in ("started_at", "updated_at", "finished_at", "lease_until", "rate_reset_at"):
        plain[column] = _time_text(plain[column])
    for column in ("every_asset", "searched_all"):
        plain[column] = bool(plain[column])
    return plain


def row_of(state: Mapping[str, Any]) -> dict[str, Any]:
    """The columns a merge state projects to, as ``asset_rows`` reads them back (JSON decoded). Folder renames that
    came after the state's folder are not applied: compare two of these, or a stated field with a row."""
    return {column: json.loads(value) if column in JSON_COLUMNS and isinstance(value, str) else value
            for column, value in _columns(project(state)).items()}


def provisional_key(ref: AssetRef) -> str:
    """The key of a row known only by its public ID: ``~<resource_type>/<type>/<public_id>`` ("?" for a type
    the notification does not tell)."""
    def token(value: str | None) -> str:
        return value if value and _TOKEN.fullmatch(value) else "?"

    return f"{PROVISIONAL}{token(ref.resource_type)}/{token(ref.type)}/{ref.public_id}"


_TOKEN = re.compile(r"[a-z_]{1,40}")


def _same_asset(row: Mapping[str, Any], ref: AssetRef) -> bool:
    """Whether a row may be the asset ``ref`` names by public ID: its types agree where both are known."""
    return all(not known or not stated or known == stated
               for known, stated in ((row["resource_type"], ref.resource_type), (row["type"], ref.type)))


def _state(value: Any) -> dict[str, Any]:
    return (json.loads(value) if isinstance(value, str) else value) or new_state()


def _reason(error: BaseException, url: str) -> str:
    """Why the database refused an event, for ``status``, the answer and the log: the error's class, code and
    first line (PostgreSQL's DETAIL line, which quotes the row's values, is left out), no password, bounded."""
    state = getattr(error, "pgcode", None) or getattr(error, "sqlite_errorname", None)
    text = " ".join((str(error).strip().splitlines() or [""])[0].split())
    return storable_text(redact(f"{type(error).__name__}{f' {state}' if state else ''}: {text}", url))[:300]


def _like_prefix(path: str) -> str:
    return path.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "/%"


def _columns(row: Mapping[str, Any]) -> dict[str, Any]:
    """Projected values in a shape both databases accept whatever the payload held: JSON as text, whole
    numbers the column cannot hold NULL (the merge state keeps them), times as ISO UTC (a time that is none,
    or outside years 1-9999, NULL): a value never makes the transaction fail."""
    values: dict[str, Any] = {}
    for column in ASSET_COLUMNS:
        value = row.get(column)
        if column in JSON_COLUMNS:
            value = None if value is None else json.dumps(value, sort_keys=True, ensure_ascii=False)
        elif column in INT_COLUMNS:
            value = value if isinstance(value, int) and not isinstance(value, bool) \
                and -INT_COLUMNS[column] <= value < INT_COLUMNS[column] else None
        elif column in TIME_COLUMNS:
            value = iso_utc(value)
        elif column == "deleted":
            value = bool(value)
        elif value is not None and not isinstance(value, str):
            value = json.dumps(value) if isinstance(value, dict | list) else str(value)
        values[column] = value
    return values


def _time_text(value: Any) -> str | None:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return iso_utc(value) if isinstance(value, str) else value


def _plain(row: Mapping[str, Any]) -> dict[str, Any]:
    plain: dict[str, Any] = {}
    for column, value in row.items():
        if column in JSON_COLUMNS or column == "sync_state":
            value = json.loads(value) if isinstance(value, str) else value
        elif column == "deleted":
            value = bool(value)
        elif column in TIME_COLUMNS or column == "updated_at":
            value = _time_text(value)
        plain[column] = value
    return plain
