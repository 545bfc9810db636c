"""SQLite files shared by threads and processes: the idempotency store, asset_sync's local database, the
inspector of ``serve``. Standard library only.

    connection = sqlite3.connect(path, timeout=5, isolation_level=None)
    sqlite.use_wal(connection, timeout=5)
"""

from __future__ import annotations

import time

TYPE_CHECKING = False  # cold start: see docs/DESIGN.md §8
if TYPE_CHECKING:
    import sqlite3


def use_wal(connection: sqlite3.Connection, timeout: float) -> None:
    """Put the file in WAL mode (readers never block the writer; the file stays in it).

    While another connection switches a new file at the same moment, SQLite refuses the switch at once, without
    waiting as its busy timeout does elsewhere ("database is locked": several requests' first use of a store,
    several ``serve`` workers' first entries). Retried for up to ``timeout`` seconds."""
    import sqlite3

    deadline = time.monotonic() + timeout
    while True:
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.005)
