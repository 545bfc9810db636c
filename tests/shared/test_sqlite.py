"""shared/sqlite.py: a new file switched to WAL by several connections at the same moment."""

from __future__ import annotations

import sqlite3
import threading

from shared import sqlite


def test_connections_switching_a_new_file_to_wal_at_once_all_succeed(tmp_path):
    # SQLite answers "database is locked" at once (no busy wait) to all but one: each must wait its turn instead.
    failures: list[str] = []
    for round_number in range(20):  # the race shows in some rounds only: many fresh files
        path = tmp_path / f"store-{round_number}.sqlite3"
        start = threading.Barrier(6)

        def switch(path=path, start=start) -> None:
            connection = sqlite3.connect(path, timeout=5, isolation_level=None, check_same_thread=False)
            try:
                start.wait(10)
                sqlite.use_wal(connection, 5)
                assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            except Exception as error:
                failures.append(f"{type(error).__name__}: {error}")
            finally:
                connection.close()

        threads = [threading.Thread(target=switch) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert failures == []
