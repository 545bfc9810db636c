"""The local inspector of ``python -m shared serve``: the latest notifications, at http://127.0.0.1:8888/.

Every notification the development server's ``Router`` answers, and every message ``python -m shared listen``
drains (``record_poll_message``, an observer of its drain loop), is recorded by ``record``: time, function,
notification type, public_id, the signature's verdict (checked again here with the configured secrets, so a
request refused for its content type still shows whether it was signed), outcome, status, milliseconds and the
function's actions, with the raw body and headers. ``serve`` shows them as a page; one click shows an entry's raw
body and headers; "replay" signs the body again with the local signing secret (CLOUDINARY_URL's, or the demo
secret) and sends it to any function, which records a new entry.

Bounded: the newest ``MAX_ENTRIES`` entries in one SQLite file under ``.local/`` (``INSPECTOR_DB`` to put it
elsewhere), created private (0600); a body is kept up to ``MAX_BODY_BYTES``, an answer up to ``MAX_ANSWER_BYTES``.
Signature header values are kept only as a short prefix, cookies and authorization not at all. A request only
appends its entry to an in-memory queue (bounded: when full, the oldest waiting entry is dropped and counted);
one writer thread inserts them in batches, and the pages flush that queue before they read.

Loopback only: the pages and the replay answer only a client on this machine that names it (``Host``
127.0.0.1, localhost or [::1]: no DNS-rebound name), whatever address ``serve`` listens on. Plain HTML rendered
here, every value from a payload escaped (and control characters written visibly), a strict Content Security
Policy with a per-page nonce for the little JavaScript there is, and a replay that is a POST carrying the
server's token (one per `serve`, made before its workers fork, so that every worker knows it). Development
tooling: never bundled with or imported by a deployed function.
"""

from __future__ import annotations

import atexit
import base64
import collections
import contextlib
import hmac
import html
import io
import ipaddress
import json
import logging
import mmap
import os
import secrets
import sqlite3
import struct
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from devtools.serving import printable

try:
    import fcntl  # POSIX: where `serve` can fork workers, which share the entry ids
except ImportError:  # Windows: one process, SQLite numbers the entries
    fcntl = None  # type: ignore[assignment]

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PATH = PROJECT_ROOT / ".local" / "inspector.sqlite3"
PATH_VARIABLE = "INSPECTOR_DB"
MAX_ENTRIES = 200
QUEUE_LIMIT = 1000  # entries waiting for the writer; beyond it the oldest waiting one is dropped
BATCH_LIMIT = 200  # entries per transaction
BATCH_DELAY_SECONDS = 0.02  # how long the writer lets entries gather before a transaction, unless a page waits
MAX_BODY_BYTES = 64 * 1024  # real notifications are a few KiB; a bigger body is kept cut (and not replayable)
MAX_ANSWER_BYTES = 16 * 1024
MAX_HEADER_CHARS = 1024
MAX_HEADERS = 64
MAX_SHOWN_CHARS = 200  # of a public_id, a type or an outcome in the list
SIGNATURE_PREFIX_CHARS = 8
SIGNATURE_HEADERS = {"x-cld-signature"}
HIDDEN_HEADERS = {"authorization", "proxy-authorization", "cookie", "set-cookie"}
PREFIX = "/inspector/"
_SLOT = struct.Struct("@QQ")  # a worker's (queued, done) in shared memory: native, aligned, each written whole
_LAST_ID = struct.Struct("@Q")  # after the slots: the last entry id given out (under a lockf lock)
MAX_FORM_BYTES = 4096

log = logging.getLogger("devtools.inspector")
_all_stores: weakref.WeakSet[Store] = weakref.WeakSet()  # reset in a forked child (os.register_at_fork)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    source TEXT NOT NULL,
    function TEXT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    notification_type TEXT,
    public_id TEXT,
    verdict TEXT NOT NULL,
    verdict_detail TEXT NOT NULL DEFAULT '',
    outcome TEXT NOT NULL DEFAULT '',
    status INTEGER NOT NULL,
    ms REAL NOT NULL,
    actions TEXT NOT NULL DEFAULT '[]',
    headers TEXT NOT NULL DEFAULT '[]',
    body BLOB NOT NULL,
    body_size INTEGER NOT NULL,
    answer TEXT NOT NULL DEFAULT '',
    replay_of INTEGER
)
"""


# --- the store -------------------------------------------------------------------------------------

class Store:
    """The newest ``max_entries`` entries in a SQLite file: shared by `serve`'s threads and `listen`'s process.

    ``add`` only appends to an in-memory queue (at most ``queue_limit`` entries; when it is full the oldest
    waiting entry is dropped and counted, a request never waits); one writer thread per store, with one
    long-lived connection, inserts what is waiting in batches, one transaction each, at most
    ``BATCH_DELAY_SECONDS`` after the first of them was queued. The reads (``latest``,
    ``get``, ``newest_id``) ``flush`` first, so a page shows what this server has just recorded.

    Across `serve`'s worker processes (``devtools.serving.Workers``): ``share_between`` in the parent before the
    fork, ``in_worker`` in each worker after it. Each worker then has its own queue, writer thread and connection
    (made after the fork: a SQLite connection, a lock or a thread never crosses one; the file is in WAL mode and
    each connection waits up to 5 s for another's write), and a page waits for what *every* worker had queued
    when it asked: each worker counts what it queued and wrote in a slot of a shared memory page (two 64-bit
    counters each written by that worker only; the others read them). An entry's id is taken when it is recorded,
    from a counter the workers share (``_next_id``), so ids, and the list (newest id first), keep the order in
    which the requests were answered, whichever worker's writer commits first."""

    def __init__(self, path: Path | str, max_entries: int = MAX_ENTRIES, queue_limit: int = QUEUE_LIMIT) -> None:
        self.path = Path(path)
        self.max_entries = max_entries
        self.queue_limit = queue_limit
        self.dropped = 0  # entries dropped because the queue was full
        self._ready = False
        self._lock = threading.Lock()
        self._pending: collections.deque[tuple[Mapping[str, Any], list[int | None] | None]] = collections.deque()
        self._changed = threading.Condition()
        self._queued = 0  # entries ever queued
        self._done = 0  # of those: written, dropped or failed
        self._writer: threading.Thread | None = None
        self._writer_idle = False  # the writer waits for an entry (add wakes it)
        self._urgent = False  # a flush waits (the writer does not wait for more entries)
        self._progress: mmap.mmap | None = None  # (queued, done) per worker process, then the last id: share_between
        self._slots = 0
        self._id_lock: Any = None
        self._id_threads = threading.Lock()  # lockf locks belong to the process: its threads take turns here first
        self._slot: int | None = None  # this process's slot in it
        self._base = 0  # what the slot counted before this process took it over
        _all_stores.add(self)

    # --- several processes (serve's workers) ---

    def share_between(self, processes: int) -> None:
        """Before forking ``processes`` workers that each record here: the file created (then closed: no connection
        crosses the fork) and the shared counters (anonymous shared memory, inherited by every child)."""
        with self._lock:
            try:
                if not self._ready:
                    self._create()
                    self._ready = True
            except (OSError, sqlite3.Error) as error:  # each worker will try again, and say why it cannot record
                log.warning("inspector: cannot prepare %s: %s", self.path, error)
        self._slots = max(processes, 1)
        self._progress = mmap.mmap(-1, self._slots * _SLOT.size + _LAST_ID.size)
        # lockf'd around taking an id: a lock the kernel drops if its holder dies; open for the server's life
        self._id_lock = tempfile.TemporaryFile()  # noqa: SIM115
        last = 0
        with contextlib.suppress(OSError, sqlite3.Error), self._connect() as connection:
            row = connection.execute("SELECT seq FROM sqlite_sequence WHERE name = 'entries'").fetchone()
            last = int(row[0]) if row else 0
        _LAST_ID.pack_into(self._progress, self._slots * _SLOT.size, last)

    def in_worker(self, index: int) -> None:
        """In worker ``index``, just after the fork: its own queue and writer, counting in slot ``index``. A worker
        replacing one that died takes its slot over: what the dead one queued and never wrote is lost, and marked
        done, so that no page waits for it."""
        self._after_fork()
        if self._progress is None or not 0 <= index < self._slots:
            return
        queued, _ = _SLOT.unpack_from(self._progress, index * _SLOT.size)
        _SLOT.pack_into(self._progress, index * _SLOT.size, queued, queued)
        self._slot, self._base = index, queued

    def _after_fork(self) -> None:
        """A child process starts with no queue, no writer thread and fresh locks (the parent's could be held by one
        of its threads, which the child does not have); entries the parent queued are the parent's to write."""
        self._lock = threading.Lock()
        self._id_threads = threading.Lock()
        self._changed = threading.Condition()
        self._pending = collections.deque()
        self._queued = self._done = self.dropped = 0
        self._writer = None
        self._writer_idle = self._urgent = False
        self._slot = None

    def _next_id(self) -> int | None:
        """The next entry's id, taken when it is recorded, from the counter all workers share: ids (and the list,
        newest id first) follow the order in which the workers answered, not the order in which their writers
        happen to commit. None if it cannot be taken (then SQLite numbers the entry when it is written)."""
        if self._progress is None or self._slot is None or self._id_lock is None or fcntl is None:
            return None
        offset = self._slots * _SLOT.size
        with self._id_threads:  # the lockf lock keeps other processes out, not this one's other threads
            try:
                fcntl.lockf(self._id_lock, fcntl.LOCK_EX)
            except OSError:
                return None
            try:
                (last,) = _LAST_ID.unpack_from(self._progress, offset)
                _LAST_ID.pack_into(self._progress, offset, last + 1)
                return last + 1
            finally:
                fcntl.lockf(self._id_lock, fcntl.LOCK_UN)

    def _count(self) -> None:  # with self._changed held: this process's progress, for the other workers' pages
        if self._progress is not None and self._slot is not None:
            _SLOT.pack_into(self._progress, self._slot * _SLOT.size, self._base + self._queued,
                            self._base + self._done)

    def _others_behind(self) -> list[tuple[int, int]]:
        """(slot, entries it had queued) for each other worker that has not written all it had queued yet."""
        if self._progress is None or self._slot is None:
            return []
        behind = []
        for slot in range(self._slots):
            queued, done = _SLOT.unpack_from(self._progress, slot * _SLOT.size)
            if slot != self._slot and done < queued:
                behind.append((slot, queued))
        return behind

    def _open(self) -> sqlite3.Connection:
        if not self._ready:
            with self._lock:
                if not self._ready:
                    self._create()
                    self._ready = True
        connection = sqlite3.connect(self.path, timeout=5)
        connection.row_factory = sqlite3.Row
        connection.execute("PRAGMA synchronous=NORMAL")  # WAL: no fsync per batch, still never corrupt
        return connection

    def _create(self) -> None:
        """The file (private from the start: it holds payloads), in WAL mode (``shared.sqlite.use_wal``: two
        processes switching it at once), with its table. `serve` does it before its workers fork."""
        from shared import sqlite

        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        with contextlib.closing(sqlite3.connect(self.path, timeout=5)) as connection:
            sqlite.use_wal(connection, 5)
            connection.execute(_SCHEMA)
            connection.commit()

    @contextlib.contextmanager
    def _connect(self) -> Any:
        connection = self._open()
        try:
            yield connection
        finally:
            connection.close()

    def add(self, entry: Mapping[str, Any], *, wait: bool = False) -> int | None:
        """Queue ``entry`` for the writer; with ``wait``, wait until it is written and return its id (None if
        it could not be)."""
        ticket: list[int | None] | None = [] if wait else None
        if self._slot is not None and (new_id := self._next_id()) is not None:
            entry = {**entry, "id": new_id}
        with self._changed:
            if len(self._pending) >= self.queue_limit:
                _, dropped_ticket = self._pending.popleft()
                if dropped_ticket is not None:
                    dropped_ticket.append(None)
                self.dropped += 1
                self._done += 1  # counted in the slot with the entry queued below
                if self.dropped == 1 or self.dropped % 1000 == 0:
                    log.warning("inspector: %d notification(s) not recorded so far (the writer is behind)",
                                self.dropped)
            self._pending.append((entry, ticket))
            self._queued += 1
            self._count()
            if self._writer is None or not self._writer.is_alive():
                self._writer = threading.Thread(target=self._write_loop, name="inspector-writer", daemon=True)
                self._writer.start()
                atexit.register(self.flush)  # `listen` exits: what it drained last is still written
            if self._writer_idle:  # only a writer waiting for work is woken: one wake-up per batch, not per entry
                self._writer_idle = False
                self._changed.notify_all()
        if ticket is None:
            return None
        self.flush()
        return ticket[0] if ticket else None

    def flush(self, timeout: float | None = 10) -> bool:
        """Wait until every entry queued so far, by this process and by the other workers, is written (or dropped);
        False if ``timeout`` passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        others = self._others_behind()  # what the other workers had queued when this was asked
        with self._changed:
            target = self._queued
            if self._done < target:
                self._urgent = True  # someone waits: the writer writes now rather than after BATCH_DELAY_SECONDS
                self._changed.notify_all()
            if not self._changed.wait_for(lambda: self._done >= target, timeout):
                return False
        while others:  # another process's writer: nothing to wait on but its counter (it writes within ms)
            progress = self._progress
            assert progress is not None
            others = [(slot, queued) for slot, queued in others
                      if _SLOT.unpack_from(progress, slot * _SLOT.size)[1] < queued]
            if others:
                if deadline is not None and time.monotonic() >= deadline:
                    return False
                time.sleep(0.002)
        return True

    def _write_loop(self) -> None:
        connection: sqlite3.Connection | None = None
        while True:
            with self._changed:
                while not self._pending:
                    self._writer_idle = True
                    self._changed.wait()
                self._writer_idle = False
                # A burst of notifications gathers for a moment into one transaction (a commit per entry cost
                # ~11 page writes and a thread switch per request under load), unless a page or a replay waits.
                self._changed.wait_for(lambda: self._urgent or len(self._pending) >= BATCH_LIMIT, BATCH_DELAY_SECONDS)
                self._urgent = False
                batch = [self._pending.popleft() for _ in range(min(len(self._pending), BATCH_LIMIT))]
            ids: list[int | None] = [None] * len(batch)
            try:
                if connection is None:
                    connection = self._open()
                ids = list(self._insert(connection, [entry for entry, _ in batch]))
            except Exception:
                log.warning("inspector: could not record %d notification(s)", len(batch), exc_info=True)
                if connection is not None:
                    with contextlib.suppress(sqlite3.Error):
                        connection.close()
                connection = None
            with self._changed:
                for (_, ticket), new_id in zip(batch, ids, strict=True):
                    if ticket is not None:
                        ticket.append(new_id)
                self._done += len(batch)
                self._count()
                self._changed.notify_all()

    def _insert(self, connection: sqlite3.Connection, entries: list[Mapping[str, Any]]) -> list[int | None]:
        ids: list[int | None] = []
        columns = tuple(entries[0]) if entries else ()
        if "id" in columns and all(tuple(entry) == columns for entry in entries):
            # serve's workers number their entries themselves: one executemany, no round trip per row through
            # Python (and so through the GIL, which the request being answered meanwhile waits for)
            try:
                with connection:
                    connection.executemany(_insert_statement(columns), [tuple(entry.values()) for entry in entries])
                    newest = max(int(entry["id"]) for entry in entries)
                    connection.execute("DELETE FROM entries WHERE id <= ?", (newest - self.max_entries,))
                return [int(entry["id"]) for entry in entries]
            except sqlite3.IntegrityError:  # an id taken meanwhile (rolled back): row by row, below
                pass
        with connection:  # one transaction: committed, or rolled back as a whole
            for entry in entries:
                try:
                    cursor = connection.execute(_insert_statement(tuple(entry)), tuple(entry.values()))
                except sqlite3.IntegrityError:  # its id taken meanwhile (`listen`, another process, numbers its own)
                    if "id" not in entry:
                        raise
                    unnumbered = {key: value for key, value in entry.items() if key != "id"}
                    cursor = connection.execute(_insert_statement(tuple(unnumbered)), tuple(unnumbered.values()))
                ids.append(int(cursor.lastrowid or 0))
            connection.execute("DELETE FROM entries WHERE id <= ?", (max(ids or [0]) - self.max_entries,))
        return ids

    def latest(self, limit: int | None = None) -> list[dict[str, Any]]:
        self.flush()
        with self._connect() as connection:
            rows = connection.execute("SELECT * FROM entries ORDER BY id DESC LIMIT ?",
                                      (limit or self.max_entries,)).fetchall()
        return [dict(row) for row in rows]

    def get(self, entry_id: int) -> dict[str, Any] | None:
        self.flush()
        with self._connect() as connection:
            row = connection.execute("SELECT * FROM entries WHERE id = ?", (entry_id,)).fetchone()
        return dict(row) if row else None

    def newest_id(self) -> int:
        self.flush()
        with self._connect() as connection:
            row = connection.execute("SELECT MAX(id) FROM entries").fetchone()
        return int(row[0] or 0)


_INSERTS: dict[tuple[str, ...], str] = {}  # the INSERT statement for each set of columns (record's: always one)


def _insert_statement(columns: tuple[str, ...]) -> str:
    statement = _INSERTS.get(columns)
    if statement is None:
        statement = _INSERTS[columns] = (
            f"INSERT INTO entries ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})")  # noqa: S608
    return statement

_stores: dict[Path, Store] = {}
_stores_lock = threading.Lock()


def _reset_stores_after_fork() -> None:
    global _stores_lock
    _stores_lock = threading.Lock()
    for store in list(_all_stores):
        store._after_fork()


if hasattr(os, "register_at_fork"):  # POSIX; Windows cannot fork
    os.register_at_fork(after_in_child=_reset_stores_after_fork)


def default_store() -> Store:
    """The store `serve` and `listen` share: ``INSPECTOR_DB``, else .local/inspector.sqlite3."""
    path = Path(os.environ.get(PATH_VARIABLE, "").strip() or DEFAULT_PATH).resolve()
    with _stores_lock:
        if path not in _stores:
            _stores[path] = Store(path)
        return _stores[path]


# --- recording -------------------------------------------------------------------------------------

def record(*, function: str, body: bytes, headers: Iterable[tuple[str, str]], status: int, answer: Any,
           ms: float, source: str = "http", method: str = "POST", path: str = "", replay_of: int | None = None,
           store: Store | None = None, wait: bool = False, verdict: tuple[str, str] | None = None,
           reply: Mapping[str, Any] | None = None) -> int | None:
    """Record one notification and its answer: queued for the store's writer, so the request waits for no disk.

    With ``wait``, waits until it is written and returns the entry's id (None if it could not be recorded; None
    always without ``wait``). ``answer``: the function's answer body (bytes, a JSON text, or a dict); ``reply``,
    that answer already parsed, if the caller has it; ``verdict``, the signature's, if the caller knows it (else
    it is checked here). Never raises: the inspector must not change what a delivery does."""
    try:
        headers = list(headers)
        verdict, detail = verdict or signature_verdict(body, headers)
        parsed = _json_object(body)
        if reply is None:
            reply = answer if isinstance(answer, Mapping) else _json_object(answer)
        answer_text = (json.dumps(answer, ensure_ascii=False, default=str) if isinstance(answer, Mapping)
                       else _text(answer))
        actions = reply.get("actions") if isinstance(reply.get("actions"), list) else []
        outcome = reply.get("status") or reply.get("error") or ""
        entry = {
            "at": time.time(), "source": source, "function": function[:100], "method": method[:20],
            "path": path[:500], "notification_type": _short(parsed.get("notification_type")),
            "public_id": _short(_public_id(parsed)), "verdict": verdict, "verdict_detail": detail,
            "outcome": _short(outcome) or "", "status": int(status), "ms": round(float(ms), 1),
            "actions": _capped_json(actions, 8192), "headers": json.dumps(redacted_headers(headers)),
            "body": bytes(body[:MAX_BODY_BYTES]), "body_size": len(body),
            "answer": answer_text[:MAX_ANSWER_BYTES], "replay_of": replay_of,
        }
        return (store or default_store()).add(entry, wait=wait)
    except Exception:
        log.warning("inspector: could not record a notification", exc_info=True)
        return None


def record_poll_message(function: str, message: Mapping[str, Any], response: Any, ms: float) -> None:
    """``listen``'s observer (``devtools.listen.OBSERVERS``): one drained message and its function's answer."""
    message = message if isinstance(message, Mapping) else {}
    body = _signed_bytes(message.get("signed_payload"))
    headers = [("Content-Type", "application/json")]
    if message.get("timestamp") is not None:
        headers.append(("X-Cld-Timestamp", str(message["timestamp"])))
    if isinstance(message.get("signature"), str):
        headers.append(("X-Cld-Signature", message["signature"]))
    if response is None:
        status, answer = 400, {"error": "malformed_message", "message": "No signed_payload a function could read."}
    else:
        status, answer = int(response.status), dict(response.body)
    record(function=function, body=body or b"", headers=headers, status=status, answer=answer, ms=ms,
           source="listen", method="POLL", path=f"poll://{function}")


def signature_verdict(body: bytes, headers: Iterable[tuple[str, str]]) -> tuple[str, str]:
    """("valid" | "invalid" | "no secret", detail), verified as the functions verify (same secrets and limits)."""
    from shared import config, verify
    from shared.errors import ConfigError

    try:
        configured = config.signing_secrets()
    except ConfigError:
        return "no secret", "CLOUDINARY_URL is malformed"
    try:
        verify.verify_headers(
            body, dict(headers), configured,
            max_age=config.integer("WEBHOOK_MAX_AGE_SECONDS", verify.DEFAULT_MAX_AGE_SECONDS),
            max_future=config.integer("WEBHOOK_MAX_FUTURE_SECONDS", verify.DEFAULT_MAX_FUTURE_SECONDS))
    except verify.NoSecretConfigured:
        return "no secret", "no signing secret is configured"
    except verify.SignatureError as error:
        return "invalid", error.reason
    return "valid", ""


def redacted_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    kept = []
    for name, value in list(headers)[:MAX_HEADERS]:
        lowered = name.lower()
        if lowered in HIDDEN_HEADERS:
            value = "(not kept)"
        elif lowered in SIGNATURE_HEADERS:
            value = f"{value[:SIGNATURE_PREFIX_CHARS]}… ({len(value)} characters, the rest not kept)"
        kept.append((name[:200], value[:MAX_HEADER_CHARS]))
    return kept


def _signed_bytes(signed_payload: Any) -> bytes | None:
    if not isinstance(signed_payload, str) or not signed_payload.isascii():
        return None
    text = signed_payload.strip().rstrip("=")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        return None


def _json_object(data: Any) -> dict[str, Any]:
    if isinstance(data, Mapping):
        return dict(data)
    try:
        parsed = json.loads(data)
    except (TypeError, ValueError, RecursionError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _text(data: Any) -> str:
    if isinstance(data, bytes | bytearray):
        return bytes(data[:MAX_ANSWER_BYTES]).decode("utf-8", "replace")
    return "" if data is None else str(data)


def _short(value: Any) -> str | None:
    return value[:MAX_SHOWN_CHARS] if isinstance(value, str) else None


def _public_id(payload: Mapping[str, Any]) -> str | None:
    public_id = payload.get("public_id")
    if isinstance(public_id, str):
        return public_id
    resources = payload.get("resources")
    if isinstance(resources, list) and len(resources) == 1 and isinstance(resources[0], Mapping):
        named = resources[0].get("public_id")
        return named if isinstance(named, str) else None
    return None


def _capped_json(value: Any, limit: int) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else "[]"


# --- the body a function reads, kept as it is read -------------------------------------------------

class RecordingInput:
    """``wsgi.input`` that keeps a copy of what the function reads (the function reads at most its size limit
    plus one byte, so this is bounded by that limit)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.data = bytearray()

    def read(self, size: int | None = -1) -> bytes:
        chunk = self._stream.read() if size is None or size < 0 else self._stream.read(size)
        self.data += chunk
        return chunk

    def readline(self, size: int | None = -1) -> bytes:
        chunk = self._stream.readline() if size is None or size < 0 else self._stream.readline(size)
        self.data += chunk
        return chunk

    def __iter__(self) -> Any:
        return iter(self.readline, b"")


_HEADER_NAMES: dict[str, str] = {"CONTENT_TYPE": "Content-Type", "CONTENT_LENGTH": "Content-Length"}


def request_headers(environ: Mapping[str, Any]) -> list[tuple[str, str]]:
    pairs = []
    for key, value in environ.items():
        name = _HEADER_NAMES.get(key)
        if name is None and key.startswith("HTTP_"):
            name = "-".join(part.capitalize() for part in key[5:].split("_"))
            if len(_HEADER_NAMES) < 256:  # the usual names, spelled once each; a client's inventions are not kept
                _HEADER_NAMES[key] = name
        if name is not None and (value or key.startswith("HTTP_")):
            pairs.append((name, str(value)))
    return sorted(pairs)


# --- the pages -------------------------------------------------------------------------------------

def is_loopback_client(environ: Mapping[str, Any]) -> bool:
    """A client on this machine (REMOTE_ADDR), naming this machine (Host): refuses a DNS-rebound page."""
    try:
        address = ipaddress.ip_address(str(environ.get("REMOTE_ADDR", "")).split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if not address.is_loopback:
        return False
    host = str(environ.get("HTTP_HOST", "")).strip().lower()
    if host.startswith("["):
        name = host[1:].split("]", 1)[0]
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def wants_html(environ: Mapping[str, Any]) -> bool:
    return "text/html" in str(environ.get("HTTP_ACCEPT", "")).lower()


class Inspector:
    """The inspector's pages and replay, served by the ``Router`` (``devtools.serving``) of `serve`."""

    def __init__(self, store: Store | None = None, *, sign: Callable[[bytes], dict[str, str]] | None = None) -> None:
        self.store = store or default_store()
        self.token = secrets.token_urlsafe(32)  # per server: a replay form from any other page lacks it
        self._sign = sign

    def prepare_workers(self, count: int) -> None:
        """In `serve`'s parent, before it forks ``count`` workers (``devtools.serving.Workers``)."""
        self.store.share_between(count)

    def worker_started(self, index: int) -> None:
        """In a worker, after the fork: its own writer and connection, counted in the shared slot ``index``. The
        token stays the parent's, so that a page from one worker replays through any other."""
        self.store.in_worker(index)

    def close(self) -> None:
        """A worker ends: what it queued is written first (for a moment at most)."""
        self.store.flush(timeout=2)

    def recording_input(self, stream: Any) -> RecordingInput:
        return RecordingInput(stream)

    def record_request(self, environ: Mapping[str, Any], function: str, body: bytes, status: int, answer: bytes,
                       ms: float, reply: Mapping[str, Any] | None = None) -> int | None:
        """Record a request the Router answered (a replay says so in its environ, and waits for its entry's id).

        A 200 needs no second signature check: a function's app (``shared.webhook``) verifies the signature before
        anything else, with the secrets and limits ``signature_verdict`` reads, and answers 401 when it fails, so
        its 200 is a valid signature (checking it again was a third of what recording a request cost). Any other
        answer is checked here: a 415 or 413 comes before the check, and the page still says whether it was
        signed."""
        source = str(environ.get("devtools.inspector.source", "http"))
        return record(function=function, body=body, headers=request_headers(environ), status=status, answer=answer,
                      ms=ms, source=source, wait=source == "replay",
                      method=str(environ.get("REQUEST_METHOD", "POST")), path=str(environ.get("PATH_INFO", "")),
                      replay_of=environ.get("devtools.inspector.replay_of"), store=self.store,
                      verdict=("valid", "") if status == 200 else None, reply=reply)

    def owns(self, path: str, environ: Mapping[str, Any]) -> bool:
        """Whether this request is the inspector's: /inspector/..., or a browser's GET /."""
        if path.startswith(PREFIX):
            return True
        return path in ("/", "") and environ.get("REQUEST_METHOD") in ("GET", "HEAD") and wants_html(environ)

    def serve(self, environ: dict[str, Any], start_response: Callable[..., Any], router: Any) -> list[bytes] | None:
        """Answer an inspector request, or None to let the Router answer it (a non-local browser's GET /)."""
        path = str(environ.get("PATH_INFO") or "/")
        method = str(environ.get("REQUEST_METHOD", "GET"))
        if not is_loopback_client(environ):
            if not path.startswith(PREFIX):
                return None  # GET /: the list of functions, as before
            return _reply(start_response, "403 Forbidden", "application/json",
                          json.dumps({"error": "forbidden", "message": "The inspector answers only on this machine "
                                      "(http://127.0.0.1:PORT/)."}).encode())
        try:
            if path in ("/", "") and method in ("GET", "HEAD"):
                return self._page(start_response, *self._list_page(router), method)
            if path == PREFIX + "latest" and method == "GET":
                body = json.dumps({"latest": self.store.newest_id()}).encode()
                return _reply(start_response, "200 OK", "application/json", body)
            if path.startswith(PREFIX + "entries/") and method in ("GET", "HEAD"):
                tail = path[len(PREFIX + "entries/"):]
                entry = self.store.get(int(tail)) if tail.isascii() and tail.isdigit() and len(tail) < 12 else None
                if entry is None:
                    return self._page(start_response, "Not found", _NOT_FOUND, method, "404 Not Found")
                return self._page(start_response, f"Entry {entry['id']}", self._entry_page(entry, router), method)
            if path == PREFIX + "replay":
                if method != "POST":
                    return _reply(start_response, "405 Method Not Allowed", "text/plain; charset=utf-8",
                                  b"POST only.", [("Allow", "POST")])
                return self._replay(environ, start_response, router)
        except sqlite3.Error as error:
            log.warning("inspector: %s", error)
            message = f"<p>The inspector's store cannot be read: {e(str(error))}.</p>"
            return self._page(start_response, "Store unavailable", message, method, "503 Service Unavailable")
        return self._page(start_response, "Not found", _NOT_FOUND, method, "404 Not Found")

    # --- replay ---

    def _replay(self, environ: dict[str, Any], start_response: Callable[..., Any], router: Any) -> list[bytes]:
        def refuse(status: str, message: str) -> list[bytes]:
            return self._page(start_response, "Replay refused", f"<p>{e(message)}</p>{_BACK}", "POST", status)

        media_type = str(environ.get("CONTENT_TYPE", "")).split(";", 1)[0].strip().lower()
        if media_type != "application/x-www-form-urlencoded":
            return refuse("415 Unsupported Media Type", "A replay is the form on an entry's page.")
        origin = environ.get("HTTP_ORIGIN")
        if origin is not None and origin != f"{environ.get('wsgi.url_scheme', 'http')}://{environ.get('HTTP_HOST')}":
            return refuse("403 Forbidden", "A replay comes from the inspector's own page.")
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if not 0 < length <= MAX_FORM_BYTES:
            return refuse("400 Bad Request", "The replay form is missing or too long.")
        form = {key: values[0] for key, values in
                parse_qs(environ["wsgi.input"].read(length).decode("utf-8", "replace")).items()}
        if not hmac.compare_digest(form.get("token", "").encode(), self.token.encode()):
            return refuse("403 Forbidden", "The page's replay token is stale (the server restarted?): reload it.")
        entry_id, target = form.get("entry", ""), form.get("function", "")
        entry = self.store.get(int(entry_id)) if entry_id.isascii() and entry_id.isdigit() else None
        if entry is None:
            return refuse("404 Not Found", "No such entry (only the newest are kept).")
        if target not in router.names:
            return refuse("400 Bad Request", f"No function named {target!r}.")
        if entry["body_size"] > len(entry["body"]):
            return refuse("409 Conflict", f"Only the first {MAX_BODY_BYTES} bytes of this body were kept: it "
                                          "cannot be replayed.")
        new_id = self.replay(bytes(entry["body"]), target, router, replay_of=int(entry["id"]), environ=environ)
        location = f"/#entry-{new_id}" if new_id else "/"
        return _reply(start_response, "303 See Other", "text/plain; charset=utf-8", b"Replayed.",
                      [("Location", location)])

    def replay(self, body: bytes, function: str, router: Any, *, replay_of: int | None = None,
               environ: Mapping[str, Any] | None = None) -> int | None:
        """POST ``body``, signed now with the local signing secret, to ``function`` through the router (in this
        process, as a request to /api/<function>); returns the new entry's id."""
        headers = self._sign(body) if self._sign else _signed_now(body)
        outer = environ or {}
        inner: dict[str, Any] = {
            "REQUEST_METHOD": "POST", "PATH_INFO": f"/api/{function}", "QUERY_STRING": "", "SCRIPT_NAME": "",
            "SERVER_NAME": outer.get("SERVER_NAME", "127.0.0.1"), "SERVER_PORT": outer.get("SERVER_PORT", "0"),
            "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1",
            "HTTP_HOST": outer.get("HTTP_HOST", "127.0.0.1"), "HTTP_USER_AGENT": "inspector replay",
            "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body), "wsgi.errors": io.StringIO(),
            "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.multithread": True,
            "wsgi.multiprocess": False, "wsgi.run_once": False,
            "devtools.inspector.source": "replay", "devtools.inspector.replay_of": replay_of,
        }
        for name, value in headers.items():
            key = name.upper().replace("-", "_")
            inner[key if key == "CONTENT_TYPE" else f"HTTP_{key}"] = value
        list(router(inner, lambda status, headers, exc_info=None: None))
        return inner.get("devtools.inspector.entry")

    # --- pages ---

    def _page(self, start_response: Callable[..., Any], title: str, content: str, method: str,
              status: str = "200 OK") -> list[bytes]:
        nonce = secrets.token_urlsafe(16)
        page = _PAGE.format(title=e(title), content=content, nonce=nonce, style=_STYLE, script=_SCRIPT).encode()
        headers = [("Content-Security-Policy", f"default-src 'none'; style-src 'nonce-{nonce}'; script-src "
                    f"'nonce-{nonce}'; connect-src 'self'; form-action 'self'; base-uri 'none'; "
                    "frame-ancestors 'none'"),
                   ("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "same-origin"),
                   ("Cache-Control", "no-store")]
        chunks = _reply(start_response, status, "text/html; charset=utf-8", page, headers)
        return [] if method == "HEAD" else chunks

    def _list_page(self, router: Any) -> tuple[str, str]:
        entries = self.store.latest()
        newest = max((entry["id"] for entry in entries), default=0)  # what /inspector/latest says (MAX(id))
        rows = "\n".join(_row(entry) for entry in entries) or (
            '<tr><td colspan="10" class="empty">Nothing yet. Send one: <code>python -m shared send hello_tag</code>'
            "</td></tr>")
        names = ", ".join(f"<code>{e(name)}</code>" for name in sorted(router.names))
        content = f"""
<h1>Notifications</h1>
<p class="lead">The newest {len(entries)} of at most {self.store.max_entries} notifications this server and
<code>python -m shared listen</code> handled, newest first (kept in <code>{e(_shown_path(self.store.path))}</code>).
Functions: {names}. The list refreshes itself.</p>
<table id="entries" data-latest="{newest}">
<thead><tr><th>time</th><th>via</th><th>function</th><th>type</th><th>public_id</th><th>signature</th>
<th>outcome</th><th>status</th><th>ms</th><th>actions</th></tr></thead>
<tbody>
{rows}
</tbody></table>"""
        return "Inspector", content

    def _entry_page(self, entry: Mapping[str, Any], router: Any) -> str:
        body = bytes(entry["body"])
        kept = "" if entry["body_size"] <= len(body) else f", the first {len(body)} kept"
        headers = "\n".join(f"{name}: {value}" for name, value in json.loads(entry["headers"]))
        formatted = ""
        with contextlib.suppress(ValueError, RecursionError):
            pretty = json.dumps(json.loads(body), indent=2, ensure_ascii=False)
            formatted = f"<details><summary>formatted</summary><pre>{_block(pretty)}</pre></details>"
        options = "\n".join(f'<option value="{e(name)}"{" selected" if name == entry["function"] else ""}>'
                            f"{e(name)}</option>" for name in sorted(router.names))
        replayable = entry["body_size"] <= len(body)
        replay = (f"""<form method="post" action="{PREFIX}replay" id="replay-form">
<input type="hidden" name="token" value="{e(self.token)}">
<input type="hidden" name="entry" value="{entry['id']}">
<label>Replay to <select name="function" id="replay-function">{options}</select></label>
<button type="submit" id="replay">Replay</button>
<span class="hint">signed again now with the local signing secret</span></form>""" if replayable else
                  f"<p>Only the first {len(body)} bytes were kept: this body cannot be replayed.</p>")
        replayed = (f' (replay of <a href="{PREFIX}entries/{entry["replay_of"]}">#{entry["replay_of"]}</a>)'
                    if entry["replay_of"] else "")
        return f"""
<p><a href="/">&larr; all notifications</a></p>
<h1>#{entry['id']} {e(entry['function'])}{replayed}</h1>
<table class="fields">
<tr><th>time</th><td>{e(_when(entry['at'], full=True))}</td></tr>
<tr><th>via</th><td>{e(entry['source'])}: {e(entry['method'])} {e(entry['path'])}</td></tr>
<tr><th>type</th><td>{e(entry['notification_type'] or '-')}</td></tr>
<tr><th>public_id</th><td class="public-id">{e(entry['public_id'] or '-')}</td></tr>
<tr><th>signature</th><td>{_verdict(entry)}</td></tr>
<tr><th>answer</th><td><span class="{_status_class(entry['status'])}">{entry['status']}</span>
 {e(entry['outcome'])} in {entry['ms']} ms</td></tr>
<tr><th>actions</th><td>{e(_actions(entry['actions'], 2000))}</td></tr>
</table>
{replay}
<h2>Headers</h2>
<pre id="raw-headers">{_block(headers)}</pre>
<h2>Body <span class="hint">({entry['body_size']} bytes{kept}, as received)</span></h2>
<pre id="raw-body">{_block(body.decode('utf-8', 'replace'))}</pre>
{formatted}
<h2>Answer</h2>
<pre id="raw-answer">{_block(entry['answer'])}</pre>"""


def _signed_now(body: bytes) -> dict[str, str]:
    from devtools.cli import signing_secret_for_send
    from shared import verify

    return verify.signed_headers(body, signing_secret_for_send())


def _reply(start_response: Callable[..., Any], status: str, content_type: str, body: bytes,
           extra: Iterable[tuple[str, str]] = ()) -> list[bytes]:
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body))), *extra])
    return [body]


def e(value: Any) -> str:
    """A value from a payload, for HTML: control and invisible characters written as escapes, then escaped."""
    return html.escape(printable(str(value)), quote=True)


def _block(text: str) -> str:
    """A text for <pre>: line breaks and tabs kept, every other control character written visibly, escaped."""
    return html.escape(printable(text, keep="\n\t"), quote=True)


def _shown_path(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.relative_to(PROJECT_ROOT))
    return str(path)


def _when(at: float, full: bool = False) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %z" if full else "%H:%M:%S", time.localtime(at))


def _status_class(status: int) -> str:
    return f"status status-{status // 100}xx"


def _verdict(entry: Mapping[str, Any]) -> str:
    detail = f" ({e(entry['verdict_detail'])})" if entry["verdict_detail"] else ""
    css = {"valid": "ok", "invalid": "bad"}.get(entry["verdict"], "warn")
    return f'<span class="verdict {css}">{e(entry["verdict"])}</span>{detail}'


def _actions(text: str, limit: int = 120) -> str:
    try:
        actions = json.loads(text)
    except ValueError:
        return ""
    named = [str(action.get("action", "?")) if isinstance(action, Mapping) else str(action) for action in actions]
    shown = ", ".join(named)
    return shown if len(shown) <= limit else shown[:limit] + "…"


def _row(entry: Mapping[str, Any]) -> str:
    href = f"{PREFIX}entries/{entry['id']}"
    css = "entry replay" if entry["replay_of"] else "entry"
    cells = [f'<a href="{href}" title="{e(_when(entry["at"], full=True))}">{e(_when(entry["at"]))}</a>',
             e(entry["source"]), e(entry["function"]), e(entry["notification_type"] or "-"),
             e(entry["public_id"] or "-"), _verdict(entry), e(entry["outcome"]),
             f'<span class="{_status_class(entry["status"])}">{entry["status"]}</span>', str(entry["ms"]),
             e(_actions(entry["actions"]))]
    columns = ("time", "via", "function", "type", "public-id", "signature", "outcome", "status", "ms", "actions")
    tds = "".join(f'<td class="{column}">{cell}</td>' for column, cell in zip(columns, cells, strict=True))
    return (f'<tr id="entry-{entry["id"]}" class="{css}" data-href="{href}" data-verdict="{e(entry["verdict"])}">'
            f"{tds}</tr>")


_BACK = '<p><a href="/">&larr; all notifications</a></p>'
_NOT_FOUND = f"<h1>Not found</h1><p>No such entry: only the newest {MAX_ENTRIES} are kept.</p>{_BACK}"

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · Cloudinary webhook functions</title>
<style nonce="{nonce}">{style}</style></head>
<body>{content}
<script nonce="{nonce}">{script}</script>
</body></html>
"""

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 1.5em; }
code, pre, td.public-id { font-family: ui-monospace, monospace; }
pre { background: #f6f6f6; padding: .8em; overflow: auto; white-space: pre-wrap; word-break: break-all; }
table { border-collapse: collapse; } th, td { text-align: left; padding: .3em .6em; border-bottom: 1px solid #eee; }
td.public-id { max-width: 28em; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
tr.entry { cursor: pointer; } tr.entry:hover { background: #f3f7ff; } tr.entry:target { background: #fff6d6; }
tr.replay td.via { font-style: italic; }
.ok { color: #17692d; } .bad { color: #b3261e; font-weight: 600; } .warn { color: #8a5a00; }
.status-2xx { color: #17692d; } .status-4xx { color: #b3261e; } .status-5xx { color: #b3261e; font-weight: 600; }
.hint, .lead { color: #666; } .empty { color: #666; padding: 1em; }
table.fields th { width: 7em; color: #666; font-weight: normal; }
form { margin: 1em 0; }
"""

_SCRIPT = """
(function () {
  document.querySelectorAll('tr.entry').forEach(function (row) {
    row.addEventListener('click', function (event) {
      if (event.target.closest('a')) { return; }
      window.location.href = row.dataset.href;
    });
  });
  var table = document.getElementById('entries');
  if (!table) { return; }
  var shown = Number(table.dataset.latest);
  window.setInterval(function () {
    fetch('/inspector/latest', {cache: 'no-store'}).then(function (answer) { return answer.json(); })
      .then(function (data) { if (data.latest !== shown) { window.location.reload(); } })
      .catch(function () {});
  }, 1500);
})();
"""
