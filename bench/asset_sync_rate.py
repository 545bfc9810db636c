"""asset_sync: notifications applied per second through the local server, on SQLite and PostgreSQL.

PostgreSQL is the throwaway server `make bench` starts (scripts/postgres.sh exports TEST_DATABASE_URL)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(database_url: str, count: int) -> dict:
    result = subprocess.run([sys.executable, "-m", "functions.asset_sync.bench", "--database-url", database_url,
                             "--count", str(count)], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def measure(count: int = 2000) -> list[dict]:
    results = []
    with tempfile.TemporaryDirectory() as folder:
        results.append(_run(f"sqlite:///{folder}/bench.sqlite3", count))
    postgres = os.environ.get("TEST_DATABASE_URL")
    if postgres:
        results.append(_run(postgres, count))
    return results


def report(results: list[dict]) -> str:
    lines = [
        "## asset_sync: notifications applied per second",
        "",
        "Command: `python -m functions.asset_sync.bench --database-url URL --count 2000` (run by `python -m bench`,",
        "section `bench/asset_sync_rate.py`): signed notifications POSTed one after another to the local server,",
        "each verified, parsed and applied in one database transaction (event log + mirror rows).",
        "",
        "| database | notifications | non-200 | seconds | per second |",
        "|---|---|---|---|---|",
    ]
    for row in results:
        lines.append(f"| {row['database']} | {row['notifications']} | {row['non_200']} | {row['seconds']} "
                     f"| {row['per_second']} |")
    if len(results) == 1:
        lines += ["", "(PostgreSQL not measured: run `make bench`, which starts a throwaway server.)"]
    return "\n".join(lines) + "\n"
