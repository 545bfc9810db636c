"""asset_sync: notifications applied per second, one at a time and with 32 concurrent deliveries.

One at a time: ``python -m functions.asset_sync.bench`` (asset_sync's own command): signed notifications POSTed
one after another to a local server, each verified, parsed and applied in one transaction; on SQLite and on
PostgreSQL.

Concurrently (PostgreSQL, the database a deployment uses): the same notifications, plus 2% of them delivered a
second time later on (Cloudinary's retries), from 32 connections by wrk (bench/load.py, bench/wrk.lua, each
notification once) to the WSGI app behind gunicorn (2 worker processes) and behind ``python -m shared serve``.
Then the database is checked against the one-at-a-time run of the same notifications: every notification
recorded once (no event lost, none doubled: the events table holds exactly the distinct notifications), and
the asset rows identical (same assets, tags, context, metadata, folder, deletion...), whatever order the
concurrent deliveries were applied in.

PostgreSQL is the throwaway server `make bench` starts (scripts/postgres.sh exports TEST_DATABASE_URL); each
run gets a database of its own there, dropped afterwards.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench import load

ROOT = Path(__file__).resolve().parent.parent
CLIENTS = 32
RETRIED = 0.02  # share of notifications delivered twice
# The asset columns that must come out the same whatever the order of delivery (times of writing excluded).
COMPARED = ("asset_id", "public_id", "resource_type", "type", "asset_folder", "display_name", "version", "tags",
            "context", "metadata", "access_control", "moderation_status", "deleted")


def _one_at_a_time(database_url: str, count: int) -> dict:
    result = subprocess.run([sys.executable, "-m", "functions.asset_sync.bench", "--database-url", database_url,
                             "--count", str(count)], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


@contextmanager
def _database(base_url: str):
    """A fresh PostgreSQL database on the server of ``base_url``, dropped at the end."""
    from tests import pg

    name = f"bench_{uuid.uuid4().hex[:12]}"
    with pg.admin(base_url) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    head, _, tail = base_url.rpartition("/")
    query = ("?" + tail.split("?", 1)[1]) if "?" in tail else ""
    try:
        yield f"{head}/{name}{query}"
    finally:
        with pg.admin(base_url) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _assets(database_url: str) -> dict[str, tuple]:
    from tests import pg

    with pg.admin(database_url) as connection:
        rows = connection.execute(f"SELECT {', '.join(COMPARED)} FROM cloudinary_assets").fetchall()  # noqa: S608
    return {row[0]: tuple(json.dumps(value, sort_keys=True, default=str) for value in row) for row in rows}


def _events(database_url: str) -> tuple[int, int]:
    from tests import pg

    with pg.admin(database_url) as connection:
        return connection.execute("SELECT count(*), count(DISTINCT dedupe_key) FROM cloudinary_events").fetchone()


def _concurrently(database_url: str, count: int, server: str, folder: Path) -> dict[str, Any]:
    from functions.asset_sync.bench import notifications

    subprocess.run([sys.executable, "-m", "shared", "run", "asset_sync", "migrate"], cwd=ROOT, check=True,
                   capture_output=True, env={**os.environ, "DATABASE_URL": database_url})
    bodies = notifications(count)
    deliveries = list(bodies)
    chooser = random.Random(16)
    for index in sorted(chooser.sample(range(count), int(count * RETRIED))):
        deliveries.insert(chooser.randrange(index + 1, len(deliveries) + 1), bodies[index])  # a later retry
    requests = load.requests_file(folder, [("/api/asset_sync", body) for body in deliveries])
    env = {**os.environ, "DATABASE_URL": database_url, "CLOUDINARY_NOTIFICATION_SECRETS": load.SECRET,
           "BENCH_FUNCTIONS": "asset_sync", "PYTHONPATH": os.pathsep.join([str(ROOT), str(load.TOOLS)])}
    for name in ("CLOUDINARY_URL", "DRY_RUN", "CLOUDINARY_WEBHOOKS_DEMO"):
        env.pop(name, None)
    port = load._free_port()
    process = load.start(server, port, folder, env=env)
    try:
        measured = load.wrk(port, requests, len(deliveries), CLIENTS, cycle=False, server_pid=process.pid)
    finally:
        load.stop(process)
    events, distinct = _events(database_url)
    return {"server": server, "deliveries": len(deliveries), "notifications": count, **measured,
            "events": events, "distinct_events": distinct}


def measure(count: int = 3000, servers: tuple[str, ...] = ("gunicorn -w 2", "gunicorn -w 4", "serve")
            ) -> dict[str, Any]:
    results: dict[str, Any] = {"count": count, "one_at_a_time": [], "concurrent": []}
    with tempfile.TemporaryDirectory() as folder:
        results["one_at_a_time"].append(_one_at_a_time(f"sqlite:///{folder}/bench.sqlite3", count))
    postgres = os.environ.get("TEST_DATABASE_URL")
    if not postgres:
        return results
    folder = Path(tempfile.mkdtemp(prefix="bench-asset-sync-"))
    try:
        with _database(postgres) as reference:
            results["one_at_a_time"].append(_one_at_a_time(reference, count))
            expected = _assets(reference)
            for server in servers:
                if not load.wrk_available():
                    results["concurrent"].append({"server": server, "missing": "wrk is not installed"})
                    continue
                if server.startswith("gunicorn") and not (load.TOOLS / "gunicorn").exists():
                    results["concurrent"].append({"server": server, "missing": "gunicorn is not installed"})
                    continue
                with _database(postgres) as target:
                    run = _concurrently(target, count, server, folder)
                    found = _assets(target)
                run["assets"] = len(found)
                run["assets_expected"] = len(expected)
                run["assets_differing"] = sum(1 for key in expected.keys() | found.keys()
                                              if expected.get(key) != found.get(key))
                results["concurrent"].append(run)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return results


def report(results: dict[str, Any]) -> str:
    count = results["count"]
    lines = [
        "## asset_sync: notifications applied per second",
        "",
        f"Command: `python -m bench.asset_sync_rate` (run by `python -m bench`). **One at a time**: `python -m "
        f"functions.asset_sync.bench --database-url URL --count {count}`, signed notifications POSTed one after "
        "another to a local server, each verified, parsed and applied in one transaction (event row + asset "
        "rows). **Concurrently**: the same notifications plus 2% delivered twice later on (Cloudinary's "
        f"retries), from {CLIENTS} connections (wrk, each delivery once) into PostgreSQL, then checked against "
        "the one-at-a-time database: events recorded (distinct = notifications: none lost, none doubled) and "
        "asset rows identical. The database runs on the same 2 cores as the server and the generator.",
        "",
        "| database | how | notifications | non-200 | seconds | per second |",
        "|---|---|---|---|---|---|",
    ]
    for row in results["one_at_a_time"]:
        lines.append(f"| {row['database']} | one at a time (asset_sync's local server) | {row['notifications']} "
                     f"| {row['non_200']} | {row['seconds']} | {row['per_second']} |")
    for row in results["concurrent"]:
        if "missing" in row:
            lines.append(f"| postgresql | {CLIENTS} concurrent, {row['server']} | not measured: {row['missing']} "
                         "| | | |")
            continue
        lines.append(
            f"| postgresql | **{CLIENTS} concurrent**, {load.SERVERS[row['server']][1]} | {row['answered']:,} "
            f"deliveries of {row['notifications']:,} | {row['non_200']} | {row['duration_us'] / 1e6:.2f} "
            f"| **{row['rate']:,.0f}** |")
    if results["concurrent"]:
        lines += ["", "| concurrent run | events recorded (distinct) | asset rows (one at a time) | asset rows "
                  "differing | p50 / p99 latency | CPU per notification: server, PostgreSQL, wrk | goal: >= 1,000/s, "
                  "none lost or doubled |", "|---|---|---|---|---|---|---|"]
        for row in results["concurrent"]:
            if "missing" in row:
                continue
            intact = (row["events"] == row["distinct_events"] == row["notifications"]
                      and row["assets_differing"] == 0 and row["assets"] == row["assets_expected"])
            held = intact and row["rate"] >= 1000
            cpu = row.get("cpu_seconds") or {}
            per = ", ".join(f"{cpu.get(key, 0) / max(row['answered'], 1) * 1000:.2f}" for key in
                            ("server", "postgresql", "wrk"))
            lines.append(
                f"| {row['server']} | {row['events']:,} ({row['distinct_events']:,}) of {row['notifications']:,} "
                f"| {row['assets']:,} ({row['assets_expected']:,}) | {row['assets_differing']} "
                f"| {row['p50_us'] / 1000:.1f} / {row['p99_us'] / 1000:.1f} ms | {per} ms "
                f"| {'holds' if held else '**not met**'}: {row['rate']:,.0f}/s, "
                f"{'none lost or doubled' if intact else '**rows differ**'} |")
        best = max((row for row in results["concurrent"] if "cpu_seconds" in row), key=lambda row: row["rate"],
                   default=None)
        if best:
            cpu = sum(best["cpu_seconds"].values()) / max(best["answered"], 1) * 1000
            cores = os.cpu_count() or 1
            lines += ["", f"What limits it: CPU. In the fastest run ({best['server']}) one notification costs "
                      f"{cpu:.2f} ms of CPU in all (server, PostgreSQL and wrk, measured from /proc while it ran); "
                      f"{cores} cores give at most {cores / cpu * 1000:,.0f} notifications/s, and the other work on "
                      "this shared machine takes its part. More worker processes do not help (the -w 4 row): each "
                      "gunicorn worker waits on its own PostgreSQL connection, and more of them only add switching. "
                      "A notification about a known asset is 3 round trips to PostgreSQL: the event inserted and its "
                      "asset rows locked in one statement (with the deferred BEGIN and the folder fence, a shared "
                      "advisory lock, in front), the rows written (with the SAVEPOINT in front), COMMIT; a new asset "
                      "adds its row's insert. Measured once "
                      "(2026-11-30, not repeated by `make bench`), the same notifications through the same app in one "
                      "process without HTTP cost 0.65-0.9 ms of Python and 0.6-0.9 ms of PostgreSQL each (the range "
                      "is the shared machine's noise); the rest of the server's share is gunicorn's HTTP handling and "
                      "the TCP connection each delivery opens and closes (gunicorn's sync workers close it)."]
    else:
        lines += ["", "(PostgreSQL not measured: run `make bench`, which starts a throwaway server.)"]
    return "\n".join(lines) + "\n"


def main() -> int:
    print(report(measure()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
