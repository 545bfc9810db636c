"""A burst of signed notifications against ``python -m shared serve`` on loopback: tests/load/test_burst.py
checks that every one is answered right.

The server runs in its own process in demo mode with DRY_RUN=1, so no function calls out; clients are
threads in this process, each POSTing signed samples round-robin over every function. Bounded in count
and time: it stops by itself. Its timings are not a benchmark (the clients share the server's two cores and
are slower than it): BENCHMARKS.md's load figures come from wrk (bench/load.py).
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from shared import verify

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-burst-secret"
DEADLINE_SECONDS = 120


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _samples() -> list[tuple[str, bytes]]:
    from devtools.cli import function_names

    found = []
    for name in function_names():
        for path in sorted((ROOT / "functions" / name / "samples").glob("*.json")):
            found.append((name, path.read_bytes()))
    return found


def start_server(port: int, log: Any = subprocess.DEVNULL) -> subprocess.Popen:
    env = {**os.environ, "CLOUDINARY_NOTIFICATION_SECRETS": SECRET, "CLOUDINARY_WEBHOOKS_DEMO": "1",
           "DRY_RUN": "1"}
    env.pop("CLOUDINARY_URL", None)
    # Its error log goes to a file (a pipe nobody reads would stop the server once full), read when a request
    # was not answered 200.
    process = subprocess.Popen([sys.executable, "-m", "shared", "serve", "--port", str(port)], cwd=ROOT,
                               env=env, stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("the local server did not start")


def run(total: int = 1000, clients: int = 32) -> dict:
    port = _free_port()
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed below, after the server
    server = start_server(port, log)
    samples = _samples()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors: list[str] = []
    lock = threading.Lock()
    next_index = iter(range(total))
    stop_at = time.monotonic() + DEADLINE_SECONDS

    def client() -> None:
        while time.monotonic() < stop_at:
            with lock:
                index = next(next_index, None)
            if index is None:
                return
            name, body = samples[index % len(samples)]
            headers = verify.signed_headers(body, SECRET)
            request = urllib.request.Request(f"http://127.0.0.1:{port}/api/{name}", data=body,
                                             headers=headers, method="POST")
            started = time.perf_counter()
            try:
                with urllib.request.urlopen(request, timeout=20) as response:
                    response.read()
                    status = response.status
            except urllib.error.HTTPError as error:
                status = error.code
            except OSError as error:
                status = 0
                with lock:
                    errors.append(type(error).__name__)
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                statuses[status] = statuses.get(status, 0) + 1

    try:
        began = time.perf_counter()
        threads = [threading.Thread(target=client) for _ in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - began
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.seek(0)
        server_log = log.read().decode("utf-8", "replace")
        log.close()
    latencies.sort()
    return {
        "total": len(latencies), "clients": clients, "wall": wall, "statuses": statuses, "errors": errors,
        "functions": len({name for name, _ in samples}), "samples": len(samples),
        "p50": latencies[len(latencies) // 2] if latencies else 0.0,
        "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else 0.0,
        "mean": statistics.fmean(latencies) if latencies else 0.0,
        # The server's error log, when a request was not answered 200: what a failed run shows.
        "server_log": server_log[-4000:] if set(statuses) - {200} else "",
    }


def report(result: dict) -> str:
    non_200 = sum(count for status, count in result["statuses"].items() if status != 200)
    return "\n".join([
        "## Local server under a burst",
        "",
        f"Command: `python -m bench` (section `bench/burst.py`): {result['total']} signed notifications "
        f"({result['samples']} samples of {result['functions']} functions, round-robin, DRY_RUN=1) from "
        f"{result['clients']} concurrent clients to `python -m shared serve` on 127.0.0.1.",
        "",
        "| requests | non-200 answers | connection errors | throughput | p50 latency | p99 latency |",
        "|---|---|---|---|---|---|",
        f"| {result['total']} | {non_200} | {len(result['errors'])} | {result['total'] / result['wall']:,.0f} req/s "
        f"| {result['p50'] * 1000:.1f} ms | {result['p99'] * 1000:.1f} ms |",
        "",
        f"Statuses: {dict(sorted(result['statuses'].items()))}.",
        "",
    ])
