"""`python -m shared serve` with several worker processes (devtools.serving.Workers), over loopback sockets.

What a person running `serve` relies on: every worker really answers, the inspector records what each of them
handled and a page shows it at once, the banner is printed once and the request lines whole, a worker that dies
is replaced, and stopping the server (Ctrl-C to the terminal's process group, SIGTERM, even SIGKILL of the parent)
leaves no worker behind. `--workers 1` is the single process it always was. No test asserts a duration: waits
are deadlines for something to happen.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from devtools import serving
from shared import verify
from tests.helpers import SECRET

ROOT = Path(__file__).resolve().parent.parent.parent
SAMPLE = (ROOT / "functions" / "hello_tag" / "samples" / "upload.json").read_bytes()
REQUEST_LINE = re.compile(r"^\d\d:\d\d:\d\d  POST /api/hello_tag  200 dry_run  \d+\.\d ms$")

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="worker processes need os.fork"),
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="the tests find the workers in /proc"),
]


# --- a server in a process of its own ------------------------------------------------------------------

@dataclass
class Server:
    process: subprocess.Popen
    port: int
    output: queue.Queue[str]
    seen: list[str] = field(default_factory=list)

    def lines(self, until: float = 0.0) -> list[str]:
        """Everything printed so far (stdout and stderr), waiting up to ``until`` seconds for more."""
        deadline = time.monotonic() + until
        while True:
            try:
                self.seen.append(self.output.get(timeout=max(0.0, min(0.05, deadline - time.monotonic()))))
            except queue.Empty:
                if time.monotonic() >= deadline:
                    return list(self.seen)

    def wait_for_line(self, pattern: str, count: int = 1, timeout: float = 20) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [line for line in self.lines(0.05) if re.search(pattern, line)]
            if len(found) >= count:
                return found
        raise AssertionError(f"no {count} line(s) matching {pattern!r} in: {''.join(self.seen)}")

    def workers(self) -> set[int]:
        return children(self.process.pid)


def children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            if fields[1] == str(pid) and fields[0] != "Z":
                found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2:].split()[0] != "Z"


def wait_until(condition, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def start(tmp_path: Path, *arguments: str, command: list[str] | None = None) -> Server:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1",
           "INSPECTOR_DB": str(tmp_path / "inspector.sqlite3"), "CLOUDINARY_NOTIFICATION_SECRETS": SECRET,
           "CLOUDINARY_WEBHOOKS_DEMO": "1", "DRY_RUN": "1", "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(command or [sys.executable, "-m", "shared", "serve", "--port", "0", *arguments],
                               cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)  # its own process group: a Ctrl-C to it alone
    output: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [output.put(line) for line in process.stdout], daemon=True).start()
    server = Server(process, 0, output)
    try:
        [banner] = server.wait_for_line(r"^(Serving \d+ function|port )")
        server.port = int(banner.split("http://127.0.0.1:", 1)[1].split()[0])
    except BaseException:
        stop(server)
        raise
    return server


def stop(server: Server, how: signal.Signals = signal.SIGTERM) -> int:
    if server.process.poll() is None:
        server.process.send_signal(how)
    try:
        return server.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=10)
        raise


@pytest.fixture
def serve(tmp_path) -> Iterator:
    started: list[Server] = []

    def run(*arguments: str, command: list[str] | None = None) -> Server:
        server = start(tmp_path, *arguments, command=command)
        started.append(server)
        return server

    yield run
    for server in started:
        workers = server.workers() if server.process.poll() is None else set()
        with __import__("contextlib").suppress(Exception):
            stop(server)
        for pid in workers:  # never leave one behind, whatever the test did
            with __import__("contextlib").suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def exchange(port: int, data: bytes, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in header_lines)}
    return int(status_line.split()[1]), headers, body


def notification(path: str = "/api/hello_tag", body: bytes = SAMPLE) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json",
             f"Content-Length: {len(body)}",
             *(f"{name}: {value}" for name, value in verify.signed_headers(body, SECRET).items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def page(port: int, path: str) -> tuple[int, bytes]:
    status, _, body = exchange(port, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/html\r\n\r\n".encode())
    return status, body


def send_many(port: int, count: int, clients: int = 8) -> list[int]:
    with ThreadPoolExecutor(clients) as pool:
        return [status for status, _, _ in pool.map(lambda _: exchange(port, notification()), range(count))]


def recorders(server: Server, database: Path) -> set[int]:
    """The workers holding the inspector's database open: a worker opens it when it records its first request."""
    found = set()
    for pid in server.workers():
        with __import__("contextlib").suppress(OSError):
            for descriptor in Path(f"/proc/{pid}/fd").iterdir():
                with __import__("contextlib").suppress(OSError):
                    if os.readlink(descriptor) == str(database):
                        found.add(pid)
    return found


# --- every worker answers ------------------------------------------------------------------------------

PID_SERVER = """
import os, sys
from devtools import serving

def app(environ, start_response):
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]

server = serving.make_dev_server("127.0.0.1", 0, app)
print(f"Serving 1 function(s) on http://127.0.0.1:{server.server_port}", flush=True)
sys.exit(serving.Workers(server, int(sys.argv[1])).run())
"""


def test_each_worker_process_answers_on_the_shared_socket(serve):
    server = serve(command=[sys.executable, "-c", PID_SERVER, "3"])
    assert wait_until(lambda: len(server.workers()) == 3)
    workers = server.workers()

    answered: set[int] = set()
    for _ in range(50):  # which worker takes a connection is the kernel's choice: ask until each has answered
        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(lambda _: exchange(server.port, b"GET / HTTP/1.0\r\n\r\n"), range(12)))
        assert all(status == 200 for status, _, _ in answers)
        answered |= {int(body) for _, _, body in answers}
        if answered == workers:
            break

    assert answered == workers
    assert server.process.pid not in answered  # the parent only watches
    assert stop(server) == 0 and not any(alive(pid) for pid in workers)


def test_serve_runs_the_workers_it_says_and_prints_its_banner_once(serve):
    server = serve("--workers", "2")

    assert wait_until(lambda: len(server.workers()) == 2)
    text = "".join(server.lines(0.2))
    assert text.count("Serving ") == 1 and text.count("Inspector: ") == 1 and text.count("Try: ") == 1
    assert "2 worker processes answer (--workers)" in text


def test_the_inspector_records_the_requests_of_every_worker_and_a_page_shows_them_at_once(serve, tmp_path):
    server = serve("--workers", "2")
    assert wait_until(lambda: len(server.workers()) == 2)
    database = tmp_path / "inspector.sqlite3"

    sent = 0
    while len(recorders(server, database)) < 2 and sent < 400:
        assert send_many(server.port, 20) == [200] * 20
        sent += 20
    # No wait: the page's worker waits for what every worker had queued (shared counters), whichever answers it.
    status, latest = page(server.port, "/inspector/latest")
    status_list, listing = page(server.port, "/")

    assert recorders(server, database) == server.workers()  # both recorded, each through its own connection
    assert status == 200 and json.loads(latest)["latest"] == sent
    assert status_list == 200 and listing.count(b'<tr id="entry-') == min(sent, 200)
    times = [float(at) for (at,) in _rows(database, "SELECT at FROM entries ORDER BY id DESC")]
    assert len(times) == min(sent, 200)  # newest first, as the page lists them


def test_entry_numbers_follow_the_order_requests_were_answered_whichever_worker_answered(serve, tmp_path):
    server = serve("--workers", "2")
    assert wait_until(lambda: len(server.workers()) == 2)
    sample = json.loads(SAMPLE)
    names: list[str] = []

    while len(recorders(server, tmp_path / "inspector.sqlite3")) < 2 and len(names) < 200:  # both workers answer
        for _ in range(12):  # one after the other: the workers take turns, their writers commit when they will
            names.append(f"in-order/{len(names)}")
            body = json.dumps({**sample, "public_id": names[-1]}).encode()
            assert exchange(server.port, notification(body=body))[0] == 200
    json.loads(page(server.port, "/inspector/latest")[1])  # written, by every worker

    rows = _rows(tmp_path / "inspector.sqlite3", "SELECT id, public_id FROM entries ORDER BY id")
    assert len(recorders(server, tmp_path / "inspector.sqlite3")) == 2
    assert [public_id for _, public_id in rows] == names[-200:]
    assert [entry_id for entry_id, _ in rows] == list(range(len(names) - len(rows) + 1, len(names) + 1))


def _rows(database: Path, query: str) -> list[tuple]:
    import sqlite3

    with sqlite3.connect(database, timeout=5) as connection:
        return connection.execute(query).fetchall()


def test_a_replay_form_from_one_worker_is_accepted_by_any(serve):
    server = serve("--workers", "2")
    assert wait_until(lambda: len(server.workers()) == 2)
    assert send_many(server.port, 4) == [200] * 4
    tokens = set()
    for _ in range(10):  # the token is made once, before the fork: every worker's pages carry the same
        _, entry_page = page(server.port, "/inspector/entries/1")
        tokens |= set(re.findall(rb'name="token" value="([^"]+)"', entry_page))
    assert len(tokens) == 1


def test_request_lines_are_printed_once_each_and_whole(serve):
    server = serve("--workers", "2")
    assert wait_until(lambda: len(server.workers()) == 2)

    assert send_many(server.port, 60, clients=12) == [200] * 60

    lines = server.wait_for_line(r"POST /api/hello_tag", count=60)
    assert len(lines) == 60 and all(REQUEST_LINE.match(line.rstrip("\n")) for line in lines), lines


# --- a worker that dies; stopping ------------------------------------------------------------------------

def test_a_worker_that_dies_is_reported_and_replaced(serve):
    server = serve("--workers", "2")
    assert wait_until(lambda: len(server.workers()) == 2)
    victim = min(server.workers())

    os.kill(victim, signal.SIGKILL)

    server.wait_for_line(rf"worker {victim} was killed by SIGKILL; worker \d+ answers in its place")
    assert wait_until(lambda: len(server.workers()) == 2 and victim not in server.workers())
    assert send_many(server.port, 10) == [200] * 10
    assert "Traceback" not in "".join(server.lines())


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM])
def test_stopping_the_server_stops_every_worker_without_a_traceback(serve, how):
    server = serve("--workers", "2")
    assert wait_until(lambda: len(server.workers()) == 2)
    workers = server.workers()
    assert send_many(server.port, 6) == [200] * 6

    if how == signal.SIGINT:  # Ctrl-C: the terminal signals the whole process group, workers included
        os.killpg(server.process.pid, signal.SIGINT)
    else:
        server.process.send_signal(signal.SIGTERM)
    code = server.process.wait(timeout=20)

    text = "".join(server.lines(0.5))
    assert code == 0 and text.rstrip().endswith("Stopped."), text
    assert "Traceback" not in text and "Error" not in text
    assert not any(alive(pid) for pid in workers)


def test_a_parent_killed_outright_leaves_no_worker_behind(serve):
    server = serve("--workers", "2")
    assert wait_until(lambda: len(server.workers()) == 2)
    workers = server.workers()

    server.process.kill()  # SIGKILL: no handler runs; the workers see the parent's pipe close
    server.process.wait(timeout=10)

    assert wait_until(lambda: not any(alive(pid) for pid in workers))  # and with them the listening socket


def test_workers_1_is_one_process(serve, tmp_path):
    server = serve("--workers", "1")

    assert send_many(server.port, 5) == [200] * 5
    assert server.workers() == set()
    assert "One process answers." in "".join(server.lines())
    assert json.loads(page(server.port, "/inspector/latest")[1]) == {"latest": 5}
    assert stop(server, signal.SIGTERM) in (0, -signal.SIGTERM)


# --- the defaults --------------------------------------------------------------------------------------

def test_the_default_is_a_worker_per_usable_cpu_within_a_cap(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 2, 5}, raising=False)
    assert serving.default_workers() == 3
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    assert serving.default_workers() == serving.MAX_DEFAULT_WORKERS
    monkeypatch.delattr(os, "fork")
    assert serving.default_workers() == 1


def test_max_connections_is_the_whole_servers_bound_shared_by_the_workers():
    server = serving.make_dev_server("127.0.0.1", 0, lambda environ, start_response: [], max_connections=5)
    try:
        assert serving.Workers(server, 2).shares == [3, 2]
        assert serving.Workers(server, 8).shares == [1] * 5  # never more workers than requests at once
    finally:
        server.server_close()


BROKEN_WORKERS = """
import sys
from devtools import serving

def broken(index):
    raise RuntimeError("this worker cannot start")

server = serving.make_dev_server("127.0.0.1", 0, lambda environ, start_response: [])
print(f"Serving 0 function(s) on http://127.0.0.1:{server.server_port}", flush=True)
sys.exit(serving.Workers(server, 2, on_start=broken).run())
"""


def test_workers_that_keep_dying_stop_the_server_with_status_1(serve):
    server = serve(command=[sys.executable, "-c", BROKEN_WORKERS])

    code = server.process.wait(timeout=30)

    text = "".join(server.lines(0.5))
    assert code == 1, text
    assert text.count("answers in its place") == serving.RESTARTS_ALLOWED  # replaced, then no more
    assert f"{serving.RESTARTS_ALLOWED + 1} workers ended within" in text and "so the server stops" in text
    assert text.count("RuntimeError: this worker cannot start") >= serving.RESTARTS_ALLOWED + 1  # each said why


# --- within one process: the thread that computes, and a function that waits ---------------------------------

def test_a_function_that_waits_holds_no_other_request_back():
    """One thread per process computes at a time (the gate); a function waiting on an API must not keep it."""
    entered, release = threading.Event(), threading.Event()

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/slow":
            entered.set()
            release.wait(30)  # a function waiting on Cloudinary's API, say
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]

    server = serving.make_dev_server("127.0.0.1", 0, app)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    try:
        with ThreadPoolExecutor(1) as pool:
            slow = pool.submit(exchange, server.server_port, b"GET /slow HTTP/1.0\r\n\r\n", 30)
            assert entered.wait(10)

            fast = [exchange(server.server_port, b"GET /fast HTTP/1.0\r\n\r\n", 10) for _ in range(3)]

            assert [(status, body) for status, _, body in fast] == [(200, b"ok")] * 3
            assert not slow.done()  # answered while the slow one still waits
            release.set()
            assert slow.result(timeout=10)[0] == 200
    finally:
        release.set()
        server.shutdown()
        server.server_close()


def test_entry_ids_taken_by_threads_of_one_worker_at_once_are_all_different(tmp_path, monkeypatch):
    """A worker's handler threads may record at the same moment (one waits on a slow client while another
    answers): the shared counter hands each of them its own id (the lockf lock alone is the process's, so it
    keeps out the other workers, not this worker's other threads)."""
    from devtools import inspector

    counter = inspector._LAST_ID

    class Dawdling:  # reads the counter, then lets the other threads run before the new value is written
        size = counter.size

        def unpack_from(self, buffer: Any, offset: int) -> tuple[int]:
            value = counter.unpack_from(buffer, offset)
            time.sleep(0.001)
            return value

        def pack_into(self, buffer: Any, offset: int, value: int) -> None:
            counter.pack_into(buffer, offset, value)

    store = inspector.Store(tmp_path / "inspector.sqlite3")
    store.share_between(2)
    store.in_worker(0)
    monkeypatch.setattr(inspector, "_LAST_ID", Dawdling())
    taken: list[int | None] = []
    start = threading.Barrier(8)

    def take() -> None:
        start.wait()
        taken.extend(store._next_id() for _ in range(25))

    threads = [threading.Thread(target=take) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert None not in taken and len(taken) == 200
    assert sorted(taken) == list(range(1, 201))  # every id once: none given twice, none skipped
