"""PostgreSQL, the one way this project's stores reach it: asset_sync's database, the idempotency store and the
dead-letter store (``DATABASE_URL=postgresql://...``).

    connection = postgres.connect(url, timeout=5, application_name="cloudinary-asset-sync")
    connection.defer("BEGIN")                       # sent with the next statement, in its round trip
    row = connection.execute("INSERT ... RETURNING id", (value,)).fetchone()    # a dict, or None
    connection.execute("COMMIT")

The driver is psycopg2 (``psycopg2-binary``: libpq and OpenSSL inside the wheel, for Lambda's x86_64 and arm64).
Importing it is ~18 ms of a cold start on the benchmark machine; importing psycopg 3, which this project used
before, was 60-110 ms (it imports asyncio, importlib.metadata and ctypes.util on the way), the larger part of
asset_sync's cold start on PostgreSQL (``python -m bench.accepted``). Both drive the same libpq.

What this module adds to the driver, and why:

- ``execute`` on the connection returns the cursor, as sqlite3's does (rows as dicts or tuples), so the stores'
  SQL code has one shape for both databases.
- **Autocommit, explicit transactions**: the stores send ``BEGIN`` and ``SET LOCAL`` themselves (transaction-
  scoped settings, so a pooled connection keeps no session state), and no server-side prepared statements are
  ever made (psycopg2 binds parameters on the client), so transaction-mode poolers (PgBouncer, RDS Proxy,
  Supabase/Neon pooled endpoints) work.
- ``defer``: statements whose answer nobody reads (``BEGIN``, ``SAVEPOINT``) wait and go out in front of the next
  statement, one simple query and one round trip for both. Parameters are bound before anything is sent, so a
  value the driver cannot send (a NUL in text) fails with nothing sent and the deferred statements still queued.
- A URL's syntax is checked before connecting (``check_url``): a malformed URL is configuration, not an outage.
"""

from __future__ import annotations

from shared import coldstart

TYPE_CHECKING = False  # no `typing` import at run time: it costs cold-start milliseconds for annotations only
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

# SQLSTATE classes a retry can fix: connection exception, transaction rollback (serialization failure, deadlock),
# insufficient resources, object not in prerequisite state (lock not available), operator intervention
# (statement timeout, shutdown), system error (I/O).
RETRYABLE_CLASSES = frozenset({"08", "40", "53", "55", "57", "58"})
UNDEFINED_TABLE = "42P01"


def driver() -> Any:
    """The ``psycopg2`` module, imported at first use (never at a function's import: a forged request's 401
    loads no driver)."""
    # A cold start builds the driver's modules once, for good. Imported through the import system even when
    # loaded: it waits for a thread still importing them (sys.modules holds a module from its import's start).
    with coldstart.first_import("psycopg2.extras"):
        import psycopg2
        import psycopg2.extensions
        import psycopg2.extras
    return psycopg2


def errors() -> tuple[type[BaseException], ...]:
    """What a database failure raises: the driver's errors."""
    return (driver().Error,)


def sqlstate(error: BaseException) -> str | None:
    """The server's SQLSTATE of ``error``; None for one raised by the client (a lost connection, a value that
    cannot be sent) or for anything that is not a database error."""
    return getattr(error, "pgcode", None)


def connection_lost(error: BaseException) -> bool:
    """Whether ``error`` is the client's own report of a connection lost, closed or never made (the server said
    nothing: no SQLSTATE)."""
    psycopg2 = driver()
    return isinstance(error, psycopg2.OperationalError | psycopg2.InterfaceError) and sqlstate(error) is None


def retryable(error: BaseException) -> bool:
    """Whether a retry can fix ``error``: a lost or refused connection, a timeout, a conflict, a full disk."""
    if not isinstance(error, driver().Error):
        return False
    code = sqlstate(error)
    return connection_lost(error) if code is None else code[:2] in RETRYABLE_CLASSES


def check_url(url: str) -> str | None:
    """Why ``url`` is not a connection URL libpq can use (never naming its password); None when it is."""
    psycopg2 = driver()
    try:
        parts = psycopg2.extensions.parse_dsn(url)
    except psycopg2.ProgrammingError:
        return "DATABASE_URL is malformed"
    ports = str(parts.get("port") or "5432")
    if not all(port.strip().isdigit() for port in ports.split(",")):
        return "DATABASE_URL's port is not a number"
    return None


def connect(url: str, *, timeout: float, application_name: str, dict_rows: bool = True) -> Connection:
    """A new connection in autocommit mode, whose rows are dicts (``dict_rows``) or tuples. ``timeout`` bounds
    connecting and, through TCP's user timeout, any call to a server that vanished without a reset (Linux)."""
    psycopg2 = driver()
    raw = psycopg2.connect(url, connect_timeout=max(2, int(timeout + 0.5)),
                           tcp_user_timeout=int(timeout * 1000) + 1000, application_name=application_name)
    raw.autocommit = True
    return Connection(raw, psycopg2.extras.RealDictCursor if dict_rows else None)


class Connection:
    """A psycopg2 connection with ``execute`` (returning its cursor) and ``defer``; see the module docstring."""

    __slots__ = ("_cursor_factory", "_pending", "raw")

    def __init__(self, raw: Any, cursor_factory: Any = None) -> None:
        self.raw = raw
        self._cursor_factory = cursor_factory
        self._pending: list[str] = []

    @property
    def closed(self) -> bool:
        return bool(self.raw.closed)

    def defer(self, statement: str) -> None:
        """Send ``statement`` (which returns no rows) in front of the next ``execute``."""
        self._pending.append(statement)

    def deferred(self) -> tuple[str, ...]:
        """The statements waiting for the next ``execute``."""
        return tuple(self._pending)

    def discard_deferred(self) -> None:
        """Drop the statements waiting for the next ``execute`` (they were never sent)."""
        self._pending.clear()

    def execute(self, statement: str, params: Sequence[Any] = ()) -> Any:
        """Run ``statement`` (``%s`` placeholders, a literal ``%`` doubled) after the deferred ones; its cursor."""
        cursor = self.raw.cursor(cursor_factory=self._cursor_factory)
        self._send(cursor, cursor.mogrify(statement, tuple(params)))  # bound first: a refused value sends nothing
        return cursor

    def execute_many(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        """``statement`` once per row, a hundred rows to a round trip (psycopg2's ``execute_batch``)."""
        with self.raw.cursor() as cursor:
            if self._pending:  # rare (the stores read something first): on their own, in front
                self._send(cursor, b"SELECT 1")
            driver().extras.execute_batch(cursor, statement, [tuple(row) for row in rows], page_size=100)

    def _send(self, cursor: Any, query: bytes) -> None:
        if self._pending:
            query = "; ".join(self._pending).encode() + b"; " + query
            # Gone with this query whatever its answer: the server runs a simple query's statements in order, so
            # when the last one fails the deferred ones have still run (and a resent SAVEPOINT would fail in the
            # aborted transaction, taking the ROLLBACK TO it down too).
            self._pending.clear()
        cursor.execute(query)  # no parameters: psycopg2 sends it as it is

    def close(self) -> None:
        self._pending.clear()
        self.raw.close()
