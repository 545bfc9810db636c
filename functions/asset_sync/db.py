"""The storage layer: SQLite (stdlib ``sqlite3``) or PostgreSQL (psycopg 3), chosen by ``DATABASE_URL``.

    sqlite:///relative/path.sqlite3    sqlite:////absolute/path.sqlite3    postgresql://user:pass@host/db

One notification is one transaction: the event row (unique on its dedupe key, so a repeat inserts
nothing and changes nothing), then every asset/folder row it changes, merged by ``mirror`` so that an older
notification never overwrites newer state. Any database error rolls the whole transaction back and is
answered 503: Cloudinary retries, and the retry finds either nothing or everything.

Connections are opened at first use (never at import), kept per thread for the next request of a warm
serverless instance, and dropped on any error. The schema is migrated on first use of a database URL.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator, Mapping
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
    event_time,
    iso_utc,
    make_clock,
    merge,
    project,
    rewrite_path,
)
from shared import config
from shared.errors import BadRequest, ConfigError, DependencyUnavailable

DEFAULT_TIMEOUT_SECONDS = 5  # connect and per-statement: two of them stay well inside Cloudinary's 20 s
_ADVISORY_LOCK = 0x636C6473796E63  # "cldsync": one migrator at a time across concurrent instances

ASSET_COLUMNS = ("public_id", "resource_type", "type", "asset_folder", "display_name", "version", "version_id",
                 "format", "bytes", "width", "height", "pages", "original_filename", "created_at",
                 "secure_url", "tags", "context", "metadata", "access_control", "moderation_status",
                 "moderation_kind", "derived", "info", "deleted", "deleted_at", "last_notification_at")
JSON_COLUMNS = frozenset({"tags", "context", "metadata", "access_control", "derived", "info"})
INT_COLUMNS = frozenset({"version", "bytes", "width", "height", "pages"})
TIME_COLUMNS = frozenset({"created_at", "deleted_at", "last_notification_at"})


@dataclass(frozen=True)
class Event:
    """One notification as the event log keeps it."""

    dedupe_key: str
    notification_type: str
    asset_id: str | None
    received_at: str
    payload: str
    signature_timestamp: str | None = None
    signature: str | None = None

    @property
    def clock(self) -> str:
        return make_clock(event_time(json.loads(self.payload), self.received_at), self.dedupe_key)


@dataclass
class Outcome:
    duplicate: bool = False
    assets: int = 0
    unmatched: int = 0


Planner = Callable[[str, Mapping[str, Any]], Plan | None]


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
        self.timeout = config.integer("ASSET_SYNC_DB_TIMEOUT_SECONDS", DEFAULT_TIMEOUT_SECONDS, minimum=1)

    # --- connection and transaction plumbing ---

    def _errors(self) -> tuple[type[BaseException], ...]:
        if self.dialect == "sqlite":
            import sqlite3

            return (sqlite3.Error,)
        import psycopg

        return (psycopg.Error,)

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
            connection.execute("PRAGMA journal_mode=WAL")  # readers (the CMS) do not block the writer
            connection.execute("PRAGMA synchronous=NORMAL")
            return connection
        import psycopg
        from psycopg.rows import dict_row

        # prepare_threshold=None: no server-side prepared statements, so transaction-mode poolers
        # (PgBouncer, RDS Proxy, Supabase/Neon pooled endpoints) work.
        return psycopg.connect(self._target, autocommit=True, connect_timeout=max(2, self.timeout),
                               prepare_threshold=None, row_factory=dict_row,
                               application_name="cloudinary-asset-sync")

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
        if self._connection is not None:
            with suppress(Exception):  # closing a broken connection may fail; it is dropped anyway
                self._connection.close()
            self._connection = None

    def _sql(self, statement: str) -> str:
        return statement.replace("?", "%s") if self.dialect == "postgresql" else statement

    def execute(self, statement: str, params: tuple[Any, ...] = ()) -> Any:
        return self._connection.execute(self._sql(statement), params)

    @contextmanager
    def transaction(self) -> Iterator[Store]:
        """One transaction; any database error (connect included) becomes a 503 after rollback."""
        errors = self._errors()
        if self._connection is None:
            self._connection = self._take_idle()
        reused = self._connection is not None
        try:
            for attempt in (1, 2):
                try:
                    if self._connection is None or getattr(self._connection, "closed", False):
                        self._connection = self._connect()
                    self._ensure_schema()
                    self._begin()
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
            raise DependencyUnavailable("The database is unavailable; a retry will finish the work.",
                                        code="database_unavailable",
                                        log_detail=redact(f"{type(error).__name__}: {error}", self.url)) \
                from error

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

    def _begin(self) -> None:
        if self.dialect == "sqlite":
            self._connection.execute("BEGIN IMMEDIATE")  # take the write lock now: no upgrade deadlocks
        else:
            self._connection.execute("BEGIN")
            self._connection.execute(f"SET LOCAL statement_timeout = {int(self.timeout * 1000)}")

    def _commit(self) -> None:
        self._connection.execute("COMMIT")

    def _rollback(self) -> None:
        try:
            self._connection.execute("ROLLBACK")
        except Exception:  # the connection is gone; the server rolled back for us
            self.close()

    # --- schema ---

    def _ensure_schema(self) -> None:
        if self.url in _migrated:
            return
        with _migrate_lock:
            self._migrate()
            _migrated.add(self.url)

    def _migrate(self) -> list[int]:
        applied: list[int] = []
        self._begin()
        try:
            if self.dialect == "postgresql":
                self.execute("SELECT pg_advisory_xact_lock(?)", (_ADVISORY_LOCK,))
            self.execute("CREATE TABLE IF NOT EXISTS cloudinary_sync_schema "
                         "(version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")
            current = self.execute("SELECT MAX(version) AS v FROM cloudinary_sync_schema").fetchone()["v"] or 0
            for version in sorted(v for v in schema.MIGRATIONS if v > current):
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

    def record(self, event: Event, plan: Plan) -> Outcome:
        """Insert the event and apply its plan, atomically. A repeat (same dedupe key) changes nothing."""
        with self.transaction():
            inserted = self.execute(
                "INSERT INTO cloudinary_events (dedupe_key, notification_type, asset_id, event_clock, "
                "received_at, payload, signature_timestamp, signature) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (dedupe_key) DO NOTHING RETURNING id",
                (event.dedupe_key, event.notification_type, event.asset_id, event.clock, event.received_at,
                 event.payload, event.signature_timestamp, event.signature),
            ).fetchone()
            if inserted is None:
                return Outcome(duplicate=True)
            return self.apply(plan, event.clock)

    def apply(self, plan: Plan, clock: str) -> Outcome:
        """Apply ``plan`` stated at ``clock`` (inside a transaction)."""
        outcome = Outcome()
        for change in plan.folders:
            self._apply_folder(change, clock)
        # A fixed lock order: two notifications naming the same assets cannot deadlock each other.
        for change in sorted(plan.assets, key=lambda c: (c.ref.asset_id or "", c.ref.public_id or "")):
            asset_id = self._resolve(change.ref)
            if asset_id is None:
                outcome.unmatched += 1
                continue
            self._apply_asset(asset_id, change, clock)
            outcome.assets += 1
        return outcome

    def _resolve(self, ref: AssetRef) -> str | None:
        """The asset_id a notification means. Old-style payloads name only a public ID: the newest live
        row with that public ID (and resource/delivery type, when given) is the one."""
        if ref.asset_id:
            return ref.asset_id
        conditions, params = ["public_id = ?"], [ref.public_id]
        for column, value in (("resource_type", ref.resource_type), ("type", ref.type)):
            if value:
                conditions.append(f"{column} = ?")
                params.append(value)
        found = self.execute(
            f"SELECT asset_id FROM cloudinary_assets WHERE {' AND '.join(conditions)} "  # noqa: S608 - fixed column names
            "ORDER BY deleted, last_notification_at DESC LIMIT 1", tuple(params)).fetchone()
        return found["asset_id"] if found else None

    def _lock_asset(self, asset_id: str) -> dict[str, Any] | None:
        self.execute("INSERT INTO cloudinary_assets (asset_id, sync_state, updated_at) VALUES (?, ?, ?) "
                     "ON CONFLICT (asset_id) DO NOTHING", (asset_id, "{}", _now()))
        lock = " FOR UPDATE" if self.dialect == "postgresql" else ""
        row = self.execute(f"SELECT sync_state FROM cloudinary_assets WHERE asset_id = ?{lock}",  # noqa: S608
                           (asset_id,)).fetchone()
        state = row["sync_state"]
        return json.loads(state) if isinstance(state, str) else state

    def _apply_asset(self, asset_id: str, change: AssetChange, clock: str) -> None:
        state = self._lock_asset(asset_id) or {}
        merged = merge(state, change, clock)
        if merged != state:
            self._write_asset(asset_id, merged)

    def _write_asset(self, asset_id: str, state: Mapping[str, Any]) -> None:
        row = _columns(project(state, self._renames_after(state)))
        assignments = ", ".join(f"{column} = ?" for column in ASSET_COLUMNS)
        self.execute(f"UPDATE cloudinary_assets SET {assignments}, sync_state = ?, updated_at = ? "  # noqa: S608
                     "WHERE asset_id = ?",
                     (*(row[column] for column in ASSET_COLUMNS), json.dumps(state), _now(), asset_id))

    def _renames_after(self, state: Mapping[str, Any]) -> list[tuple[str, str, str]]:
        folder = state.get("fields", {}).get("asset_folder")
        return self._renames_after_clock(folder[1]) if folder else []

    def _renames_after_clock(self, clock: str) -> list[tuple[str, str, str]]:
        """Folder renames that happened after ``clock``, in the order they happened."""
        rows = self.execute("SELECT event_clock, from_path, to_path FROM cloudinary_folder_renames "
                            "WHERE event_clock > ? ORDER BY event_clock", (clock,)).fetchall()
        return [(row["event_clock"], row["from_path"], row["to_path"]) for row in rows]

    def _apply_folder(self, change: FolderChange, clock: str) -> None:
        if change.kind == "delete":
            self._set_folder(change.path, True, clock)
            return
        if change.kind == "create":
            # A folder created before a rename that already arrived lives under the new name now.
            path = change.path
            for rename_clock, from_path, to_path in self._renames_after_clock(clock):
                moved = rewrite_path(path, from_path, to_path)
                if moved is not None:
                    self._set_folder(path, True, rename_clock)
                    path = moved
            self._set_folder(path, False, clock)
            return
        to_path = change.to_path or ""
        self.execute("INSERT INTO cloudinary_folder_renames (event_clock, from_path, to_path) VALUES (?, ?, ?) "
                     "ON CONFLICT (event_clock) DO NOTHING", (clock, change.path, to_path))
        pattern = _like_prefix(change.path)
        for row in self.execute("SELECT path FROM cloudinary_folders WHERE NOT deleted AND path LIKE ? "
                                "ESCAPE '\\' ORDER BY path", (pattern,)).fetchall():
            moved = rewrite_path(row["path"], change.path, to_path)
            if moved is not None and self._set_folder(row["path"], True, clock):
                self._set_folder(moved, False, clock)
        self._set_folder(change.path, True, clock)  # the old name is gone, whether we knew it or not
        self._set_folder(to_path, False, clock)
        # Assets in the folder: re-project their folder through the renames that came after their own.
        lock = " FOR UPDATE" if self.dialect == "postgresql" else ""
        query = ("SELECT asset_id, sync_state FROM cloudinary_assets WHERE asset_folder = ? "  # noqa: S608
                 f"OR asset_folder LIKE ? ESCAPE '\\' ORDER BY asset_id{lock}")
        for row in self.execute(query,
                                (change.path, pattern)).fetchall():
            state = row["sync_state"]
            self._write_asset(row["asset_id"], json.loads(state) if isinstance(state, str) else state)

    def _set_folder(self, path: str, deleted: bool, clock: str) -> bool:
        """Last writer wins on the folder's existence; True when this clock won."""
        changed = self.execute(
            "INSERT INTO cloudinary_folders (path, deleted, changed_at, sync_clock, updated_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (path) DO UPDATE SET deleted = excluded.deleted, "
            "changed_at = excluded.changed_at, sync_clock = excluded.sync_clock, updated_at = excluded.updated_at "
            "WHERE cloudinary_folders.sync_clock < excluded.sync_clock RETURNING path",
            (path, deleted, clock_time(clock), clock, _now())).fetchone()
        return changed is not None

    # --- replay and reading ---

    def replay(self, planner: Planner) -> dict[str, int]:
        """Rebuild the mirror (assets, folders) from the event log, in one transaction."""
        counts = {"events": 0, "applied": 0, "skipped": 0}
        with self.transaction():
            for table in ("cloudinary_assets", "cloudinary_folders", "cloudinary_folder_renames"):
                self.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed names
            last_id = 0
            while True:  # in pages: a log of millions of events need not fit in memory
                rows = self.execute("SELECT id, notification_type, event_clock, payload FROM cloudinary_events "
                                    "WHERE id > ? ORDER BY id LIMIT ?", (last_id, REPLAY_PAGE)).fetchall()
                if not rows:
                    break
                last_id = rows[-1]["id"]
                for row in rows:
                    counts["events"] += 1
                    try:
                        plan = planner(row["notification_type"], json.loads(row["payload"]))
                    except (BadRequest, ValueError):
                        plan = None  # a type this version does not apply, or a payload it cannot read
                    if plan is None:
                        counts["skipped"] += 1
                        continue
                    self.apply(plan, row["event_clock"])
                    counts["applied"] += 1
        return counts

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
                                "signature_timestamp, signature FROM cloudinary_events ORDER BY id").fetchall()
        return [dict(row) for row in rows]

    def status(self) -> dict[str, Any]:
        with self.transaction():
            version = self.execute("SELECT MAX(version) AS v FROM cloudinary_sync_schema").fetchone()["v"]
            by_type = self.execute("SELECT notification_type, COUNT(*) AS n FROM cloudinary_events "
                                   "GROUP BY notification_type ORDER BY notification_type").fetchall()
            last = self.execute("SELECT MAX(received_at) AS t FROM cloudinary_events").fetchone()["t"]
            assets = self.execute("SELECT COUNT(*) AS n, SUM(CASE WHEN deleted THEN 1 ELSE 0 END) AS d "
                                  "FROM cloudinary_assets").fetchone()
            folders = self.execute("SELECT COUNT(*) AS n FROM cloudinary_folders WHERE NOT deleted").fetchone()
        return {
            "database": self.dialect,
            "schema_version": version,
            "events": sum(row["n"] for row in by_type),
            "events_by_type": {row["notification_type"]: row["n"] for row in by_type},
            "last_received_at": _time_text(last),
            "assets": assets["n"] or 0,
            "deleted_assets": assets["d"] or 0,
            "folders": folders["n"] or 0,
        }


def _like_prefix(path: str) -> str:
    return path.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "/%"


def _columns(row: Mapping[str, Any]) -> dict[str, Any]:
    """Projected values in a shape both databases accept whatever the payload held: JSON as text,
    numbers that are not whole numbers dropped, times as ISO UTC (a bad time becomes NULL, not a 503)."""
    values: dict[str, Any] = {}
    for column in ASSET_COLUMNS:
        value = row.get(column)
        if column in JSON_COLUMNS:
            value = None if value is None else json.dumps(value, sort_keys=True, ensure_ascii=False)
        elif column in INT_COLUMNS:
            value = value if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**62 \
                else None
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
