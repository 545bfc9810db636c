"""Dead letters: poll-delivered notifications a function refused for good, kept until a person replays them.

In poll mode (DESIGN.md §8) a message is acknowledged only once its function answered 200 or it was stored
here. A permanent refusal (400, 401, 413, 415, 500: a wrong secret after a key rotation, a missing setting)
would otherwise be redelivered for ever, or acknowledged and lost. Each letter keeps what the function was
given, byte for byte, so a replay runs exactly the same request once the cause is fixed:

    store = dead_letters.open_store()
    letter_id = store.add("hello_tag", body, timestamp, signature, status=401, answer={...}, channel="hello_tag")
    store.letters()                      # newest first
    store.get(letter_id), store.remove(letter_id), store.record_replay(letter_id, status, answer)

The same delivery stored twice (Cloudinary redelivered it, or two listeners claimed it) is one letter: the key is
(function, SHA-256 of the signed body, timestamp, signature); ``deliveries`` counts its arrivals.

Where: ``DATABASE_URL`` when set (``sqlite:///path`` or ``postgresql://...``), else the SQLite file
``.local/dead-letters.sqlite3`` — except on a serverless platform, whose disk is wiped: there it is a
``ConfigError`` (and the message stays unacknowledged). Table ``webhook_dead_letters``, created on first use.
A database that does not answer is ``StoreUnavailable``.

Standard library only at module level: sqlite3 and psycopg2 (``shared.postgres``) are imported at first use.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from contextlib import suppress

from shared import config
from shared.errors import ConfigError

TYPE_CHECKING = False  # no `typing` import at run time (cold start)
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

DEFAULT_SQLITE_PATH = os.path.join(".local", "dead-letters.sqlite3")  # relative to the working folder
DEFAULT_TIMEOUT_SECONDS = 5.0
TABLE = "webhook_dead_letters"  # (written out in the statements below)

# The table's name is written out: no SQL is built from values, only from these constants.
_SCHEMA = {
    "sqlite": ["CREATE TABLE IF NOT EXISTS webhook_dead_letters (id INTEGER PRIMARY KEY AUTOINCREMENT, "
               "function TEXT NOT NULL, channel TEXT, body BLOB NOT NULL, body_sha256 TEXT NOT NULL, "
               "timestamp TEXT NOT NULL, signature TEXT NOT NULL, status INTEGER NOT NULL, answer TEXT NOT NULL, "
               "stored_at REAL NOT NULL, last_seen REAL NOT NULL, deliveries INTEGER NOT NULL DEFAULT 1, "
               "replays INTEGER NOT NULL DEFAULT 0, UNIQUE (function, body_sha256, timestamp, signature))"],
    "postgresql": ["CREATE TABLE IF NOT EXISTS webhook_dead_letters (id BIGSERIAL PRIMARY KEY, function TEXT NOT NULL, "
                   "channel TEXT, body BYTEA NOT NULL, body_sha256 TEXT NOT NULL, timestamp TEXT NOT NULL, "
                   "signature TEXT NOT NULL, status INTEGER NOT NULL, answer TEXT NOT NULL, "
                   "stored_at DOUBLE PRECISION NOT NULL, last_seen DOUBLE PRECISION NOT NULL, "
                   "deliveries INTEGER NOT NULL DEFAULT 1, replays INTEGER NOT NULL DEFAULT 0, "
                   "UNIQUE (function, body_sha256, timestamp, signature))"],
}
_ADD_SQL = ("INSERT INTO webhook_dead_letters (function, channel, body, body_sha256, timestamp, signature, status, "
            "answer, stored_at, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (function, body_sha256, timestamp, signature) DO UPDATE SET status = excluded.status, "
            "answer = excluded.answer, last_seen = excluded.last_seen, "
            "deliveries = webhook_dead_letters.deliveries + 1")
_ID_SQL = ("SELECT id FROM webhook_dead_letters "
           "WHERE function = ? AND body_sha256 = ? AND timestamp = ? AND signature = ?")
_SELECT = ("SELECT id, function, channel, body, timestamp, signature, status, answer, stored_at, last_seen, "
           "deliveries, replays FROM webhook_dead_letters")
_LIST_SQL = _SELECT + " ORDER BY id"
_GET_SQL = _SELECT + " WHERE id = ?"
_REMOVE_SQL = "DELETE FROM webhook_dead_letters WHERE id = ?"
_REPLAY_SQL = "UPDATE webhook_dead_letters SET status = ?, answer = ?, replays = replays + 1 WHERE id = ?"


class StoreUnavailable(Exception):
    """The dead-letter database did not answer (down, locked, timed out): a later try may work."""


class DeadLetter:
    """One stored delivery. ``body`` is the signed bytes exactly as delivered."""

    __slots__ = ("answer", "body", "channel", "deliveries", "function", "id", "last_seen", "replays", "signature",
                 "status", "stored_at", "timestamp")

    def __init__(self, row: tuple[Any, ...]) -> None:
        (self.id, self.function, self.channel, body, self.timestamp, self.signature, self.status, answer,
         self.stored_at, self.last_seen, self.deliveries, self.replays) = row
        self.id = int(self.id)
        self.status = int(self.status)
        self.body = bytes(body)
        try:
            self.answer = json.loads(answer)
        except (TypeError, ValueError):
            self.answer = {}

    def __repr__(self) -> str:  # no body, no signature
        return f"DeadLetter(#{self.id} {self.function} {self.status}, {len(self.body)} bytes)"

    @property
    def error(self) -> str:
        """The answer's short error code, e.g. "signature_mismatch" (the log line's words), or ""."""
        if isinstance(self.answer, dict):
            return str(self.answer.get("error") or self.answer.get("status") or "")
        return ""

    def payload(self) -> dict[str, Any] | None:
        """The body parsed as JSON, for display only (it may be the very thing that was refused)."""
        try:
            parsed = json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return None
        return parsed if isinstance(parsed, dict) else None


def open_store(environ: Mapping[str, str] | None = None) -> Store:
    """The store the current settings name (see the module docstring). Raises ConfigError when none can work."""
    env = environ if environ is not None else os.environ
    url = env.get("DATABASE_URL", "").strip()
    platform = config.serverless_platform(env)
    timeout = config.number("DEAD_LETTER_TIMEOUT_SECONDS", DEFAULT_TIMEOUT_SECONDS, env)
    if url:
        dialect, target = _parse_url(url)
        if dialect == "sqlite" and platform:
            raise ConfigError(f"dead letters: DATABASE_URL names a SQLite file, which on {platform} is wiped with "
                              "the instance; set DATABASE_URL=postgresql://...")
        return Store(dialect, target, timeout, described="DATABASE_URL")
    if platform:
        raise ConfigError(f"dead letters: no store on {platform} (its disk is read-only and wiped): set "
                          "DATABASE_URL=postgresql://... so refused notifications can be kept and acknowledged")
    return Store("sqlite", DEFAULT_SQLITE_PATH, timeout, described="local default; DATABASE_URL to change")


def _parse_url(url: str) -> tuple[str, str]:
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql", url
    if url.startswith("sqlite:///") and url not in ("sqlite:///", "sqlite:///:memory:"):
        from urllib.parse import unquote

        return "sqlite", unquote(url[len("sqlite:///"):].split("?", 1)[0])
    raise ConfigError("dead letters: DATABASE_URL must be sqlite:///path/to/file.sqlite3 or postgresql://...")


def body_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


class Store:
    """One database: a connection per operation (dead letters are rare; nothing to keep warm)."""

    def __init__(self, dialect: str, target: str, timeout: float = DEFAULT_TIMEOUT_SECONDS,
                 described: str = "") -> None:
        self.dialect = dialect
        self.target = target
        self.timeout = timeout
        self._described = described

    def describe(self) -> str:
        """Where the letters are, without secrets: "SQLite file .local/dead-letters.sqlite3", "PostgreSQL"."""
        where = "PostgreSQL" if self.dialect == "postgresql" else f"SQLite file {self.target}"
        return f"{where} ({self._described})" if self._described else where

    # --- operations ---

    def add(self, function: str, body: bytes, timestamp: str, signature: str, *, status: int,
            answer: Mapping[str, Any], channel: str | None = None, now: float | None = None) -> int:
        """Store a refused delivery (or count one more arrival of a stored one); returns its id."""
        stored_at = time.time() if now is None else now
        digest = body_digest(body)
        key = (function, digest, timestamp or "", signature or "")
        answer_text = json.dumps(dict(answer), ensure_ascii=False, default=str)
        with self._connection() as connection:
            self._execute(connection, _ADD_SQL, (function, channel, self._blob(body), digest, key[2], key[3],
                                                 int(status), answer_text, stored_at, stored_at))
            row = self._execute(connection, _ID_SQL, key).fetchone()
        return int(row[0])

    def letters(self) -> list[DeadLetter]:
        with self._connection() as connection:
            return [DeadLetter(row) for row in self._execute(connection, _LIST_SQL).fetchall()]

    def get(self, letter_id: int) -> DeadLetter | None:
        with self._connection() as connection:
            row = self._execute(connection, _GET_SQL, (int(letter_id),)).fetchone()
        return DeadLetter(row) if row else None

    def remove(self, letter_id: int) -> bool:
        with self._connection() as connection:
            return self._execute(connection, _REMOVE_SQL, (int(letter_id),)).rowcount > 0

    def record_replay(self, letter_id: int, status: int, answer: Mapping[str, Any]) -> None:
        text = json.dumps(dict(answer), ensure_ascii=False, default=str)
        with self._connection() as connection:
            self._execute(connection, _REPLAY_SQL, (int(status), text, int(letter_id)))

    # --- plumbing ---

    def _blob(self, body: bytes) -> Any:
        return body  # sqlite3 stores bytes as BLOB, psycopg2 as BYTEA

    def _execute(self, connection: Any, statement: str, params: tuple[Any, ...] = ()) -> Any:
        if self.dialect == "postgresql":
            statement = statement.replace("?", "%s")
        return connection.execute(statement, params)

    def _connection(self) -> _Transaction:
        return _Transaction(self)

    def _connect(self) -> Any:
        if self.dialect == "sqlite":
            import sqlite3

            folder = os.path.dirname(os.path.abspath(self.target))
            if os.path.basename(folder) == ".local":
                with suppress(OSError):  # only the project's own state folder is created
                    os.makedirs(folder, exist_ok=True)
            if not os.path.isdir(folder):
                raise ConfigError(f"dead letters: the SQLite file's folder {folder} does not exist")
            connection = sqlite3.connect(self.target, timeout=self.timeout, isolation_level=None)
            connection.execute("BEGIN IMMEDIATE")
        else:
            from shared import postgres

            try:
                postgres.driver()
            except ImportError:
                raise ConfigError("dead letters: DATABASE_URL is PostgreSQL but psycopg2 is not installed (a poll "
                                  "function's bundle needs psycopg2-binary)") from None
            problem = postgres.check_url(self.target)
            if problem:
                raise ConfigError(f"dead letters: {problem}")
            connection = postgres.connect(self.target, timeout=self.timeout, dict_rows=False,
                                          application_name="cloudinary-webhooks-dead-letters")
            # Sent with the first schema statement, in its round trip.
            connection.defer(f"BEGIN; SET LOCAL statement_timeout = {max(1, int(self.timeout * 1000))}")
        for statement in _SCHEMA[self.dialect]:
            connection.execute(statement)
        return connection

    def _errors(self) -> tuple[type[BaseException], ...]:
        if self.dialect == "sqlite":
            import sqlite3

            return (sqlite3.Error,)
        from shared import postgres

        try:
            return postgres.errors()
        except ImportError:  # _connect says so, as a ConfigError
            return ()


class _Transaction:
    """``with store._connection() as connection``: one transaction, committed on success; a database error
    becomes ``StoreUnavailable`` (its message without the URL's password)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.connection: Any = None

    def __enter__(self) -> Any:
        try:
            self.connection = self.store._connect()
        except self.store._errors() as error:
            self._close()
            raise StoreUnavailable(_redact(f"{type(error).__name__}: {error}", self.store.target)) from None
        return self.connection

    def __exit__(self, kind: Any, error: Any, traceback: Any) -> bool:
        errors = self.store._errors()
        try:
            if error is None:
                self.connection.execute("COMMIT")
            else:
                with suppress(Exception):
                    self.connection.execute("ROLLBACK")
        except errors as failed:
            error = failed
        finally:
            self._close()
        if isinstance(error, errors):
            raise StoreUnavailable(_redact(f"{type(error).__name__}: {error}", self.store.target)) from None
        return False

    def _close(self) -> None:
        if self.connection is not None:
            with suppress(Exception):
                self.connection.close()


def _redact(text: str, url: str) -> str:
    """A message for a person or a log, without the URL's password."""
    import re

    password = url.partition("://")[2].split("/", 1)[0].rpartition("@")[0].partition(":")[2]
    if password:
        from urllib.parse import unquote

        text = text.replace(password, "***").replace(unquote(password), "***")
    return re.sub(r"(postgres(?:ql)?://[^:/@\s]*):[^@\s]*@", r"\1:***@", text)[:300]

