"""devtools.serving: the development server, on real loopback sockets, against clients that misbehave.

Each class of problem has several variants: control characters in what the server prints (issue 12 item 6),
clients that are slow, half-sent or too many (item 11), and HTTP framing: chunked bodies, conflicting headers,
HEAD, the method's case, a connection reset under the body (item 12). Time-outs are configured short (a few
tenths of a second), so no test waits long.
"""

from __future__ import annotations

import io
import json
import logging
import re
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devtools import cli, serving
from shared import config, verify
from tests.helpers import SECRET

ROOT = Path(__file__).resolve().parent.parent.parent
SAMPLE = (ROOT / "functions" / "hello_tag" / "samples" / "upload.json").read_bytes()

# What must never reach a terminal raw, defined here independently of the code under test: C0 but the
# newline between lines, DEL, C1, line and paragraph separators, bidi controls, lone surrogates.
UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def unsafe_characters(text: str) -> list[str]:
    return UNSAFE.findall(text)


# --- a development server on a free port ------------------------------------------------------------

@dataclass
class Served:
    port: int
    lines: list[str]
    server: serving.DevServer

    def wait_for_lines(self, count: int, timeout: float = 5.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while len(self.lines) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return list(self.lines)


@pytest.fixture
def demo(monkeypatch) -> None:
    """Signed with SECRET; functions without credentials run dry (what `serve` does on a fresh clone)."""
    monkeypatch.setenv("CLOUDINARY_NOTIFICATION_SECRETS", SECRET)
    monkeypatch.setenv(config.DEMO_MODE_VAR, "1")


@pytest.fixture
def serve(demo) -> Iterator[Callable[..., Served]]:
    started: list[tuple[serving.DevServer, threading.Thread]] = []

    def start(**options: float) -> Served:
        lines: list[str] = []
        server = serving.make_dev_server("127.0.0.1", 0, serving.Router(cli.function_names(), out=lines.append),
                                         **options)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        thread.start()
        started.append((server, thread))
        return Served(server.server_port, lines, server)

    yield start
    for server, thread in started:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@dataclass
class Answer:
    status: int | None
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


def read_answer(sock: socket.socket) -> Answer:
    chunks = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw:
        return Answer(None, {}, b"")
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Answer(int(status_line.split()[1]), headers, body)


def exchange(port: int, data: bytes, *, close_write: bool = True, timeout: float = 5.0) -> Answer:
    """Send raw bytes, (by default) say that is all, and read the whole answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        if close_write:
            sock.shutdown(socket.SHUT_WR)
        return read_answer(sock)


def signed_headers(body: bytes) -> list[str]:
    return [f"{name}: {value}" for name, value in verify.signed_headers(body, SECRET).items()]


def raw_request(body: bytes = SAMPLE, *, method: str = "POST", path: str = "/api/hello_tag",
                headers: list[str] | None = None, framing: list[str] | None = None,
                payload: bytes | None = None) -> bytes:
    """A signed request as bytes; ``framing`` replaces the Content-Length line, ``payload`` the bytes sent."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *signed_headers(body), *(headers or []),
             *(framing if framing is not None else [f"Content-Length: {len(body)}"])]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body if payload is None else payload)


def chunked(body: bytes, size: int, extension: str = "", trailers: str = "") -> bytes:
    pieces = [body[i:i + size] for i in range(0, len(body), size)]
    encoded = b"".join(f"{len(piece):X}{extension}\r\n".encode() + piece + b"\r\n" for piece in pieces)
    return encoded + b"0\r\n" + trailers.encode() + b"\r\n"


def handler_threads() -> int:
    return sum(1 for thread in threading.enumerate() if thread.name.startswith("dev-server-handler-"))


# --- item 6: what the server prints of a request is escaped --------------------------------------------

@pytest.mark.parametrize("target", [
    "/api/hello%0a12:00:00%20%20POST%20/api/hello_tag%20%20200%20done",  # a forged log line
    "/api/x%0d12:00:00%20%20POST%20/api/hello_tag%20%20200%20done",  # a carriage return: the line overwritten
    "/api/%1b%5b2J%1b%5bH",  # clear the screen, cursor home
    "/api/%1b%5d0;owned%07",  # set the terminal's title
    "/api/%c2%85%c2%9b31m",  # C1 controls (NEL, CSI), as wsgiref decodes paths (latin-1)
    "/api/%7f%00%08",  # DEL, NUL, backspace
    "/api/raw\x1b[31mred",  # a raw escape byte in the request line itself
])
def test_the_request_line_is_printed_escaped(serve, target):
    served = serve()

    answer = exchange(served.port, f"GET {target} HTTP/1.0\r\n\r\n".encode("latin-1"))

    assert answer.status == 404
    [line] = served.wait_for_lines(1)
    assert unsafe_characters(line) == [] and "\n" not in line
    assert " 404 not_found " in line


@pytest.mark.parametrize("method", ["P\x1b[2JOST", "GE\x85T", "G\x7fT"])
def test_a_method_with_control_characters_is_printed_escaped(serve, method):
    served = serve()

    answer = exchange(served.port, f"{method} /api/hello_tag HTTP/1.0\r\n\r\n".encode("latin-1"))

    assert answer.status in (405, 400)  # http.server splits the request line at \x85 too: then it is malformed
    [line] = served.wait_for_lines(1)
    assert unsafe_characters(line) == []
    assert f"{answer.status} {answer.json()['error']}" in line


def test_a_request_the_server_refuses_itself_is_printed_escaped(serve):
    served = serve()

    answer = exchange(served.port, raw_request(path="/api/hello_tag%0a%1b[2J",
                                               framing=["Content-Length: 5", "Content-Length: 6"]))

    assert answer.status == 400
    [line] = served.wait_for_lines(1)
    assert unsafe_characters(line) == [] and "400 conflicting_headers" in line


@pytest.mark.parametrize("text", ["a\nb", "a\rb", "\x1b[2J", "\x85", "\x9b31m", "\x7f", "\x00", "a\u2028b",
                                  "a\u2029b", "\u202egnp.exe", "\u2066x\u2069", "\ud800", "tag\U000e0041",
                                  "\t", "\x1c\x1d\x1e"])
def test_printable_escapes_every_class_of_control_character(text):
    escaped = serving.printable(text)
    assert unsafe_characters(escaped) == []
    assert "\U000e0041" not in escaped  # tag characters hide text: escaped too
    assert json.loads(f'"{escaped}"') == text  # JSON-style escapes: the same text for a JSON reader


@pytest.mark.parametrize("text", ["café", "日本語", "👩\u200d💻", "a\u00a0b", "plain text", "", "x\\y"])
def test_printable_leaves_ordinary_text_alone(text):
    assert serving.printable(text) == text


@given(st.text())
def test_property_printable_output_is_safe_and_escaped_json_stays_the_same_json(text):
    assert unsafe_characters(serving.printable(text)) == []
    line = json.dumps({"public_id": text}, ensure_ascii=False)
    assert json.loads(serving.printable(line)) == {"public_id": text}


def test_printable_keeps_only_what_it_is_told_to_keep():
    assert serving.printable("a\nb\x1bc", keep="\n") == "a\nb\\u001bc"


def test_the_log_formatter_keeps_a_record_on_one_line_and_a_traceback_readable():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(serving.PrintableFormatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("tests.serving.formatter")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.error('{"public_id": "a\u2028b\x85c"}')
        logger.error("path %s", "/api/x\n12:00:00  forged")
        try:
            raise ValueError("bad value \x1b[2J\rforged")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    output = stream.getvalue()

    lines = output.splitlines()
    assert lines[0] == 'ERROR {"public_id": "a\\u2028b\\u0085c"}'
    assert json.loads(lines[0][len("ERROR "):]) == {"public_id": "a\u2028b\x85c"}
    assert lines[1] == "ERROR path /api/x\\n12:00:00  forged"
    assert lines[2] == "ERROR failed" and lines[3].startswith("Traceback")
    assert "ValueError: bad value \\u001b[2J\\rforged" in output
    assert unsafe_characters(output) == []


def test_serve_prints_nothing_raw_from_a_request_or_a_payload(tmp_path):
    """`serve --log-json` in a fresh interpreter: the request lines and the functions' JSON log lines."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1",
           "INSPECTOR_DB": str(tmp_path / "inspector.sqlite3"),  # never the project's .local/
           "CLOUDINARY_URL": f"cloudinary://614335564976464:{SECRET}@demo-cloud", "DRY_RUN": "1"}
    server = subprocess.Popen([sys.executable, "-m", "shared", "serve", "--port", "0", "--log-json"], cwd=ROOT,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(server.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 30
        while not any("Serving " in line for line in output) and time.monotonic() < deadline:
            time.sleep(0.02)
        banner = next(line for line in output if "Serving " in line)
        port = int(banner.rsplit(":", 1)[1])
        payload = json.loads(SAMPLE)
        payload["public_id"] = "evil\u2028forged\x85line\u202e\x1b[2J"
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")

        assert exchange(port, raw_request(body)).status in (200, 400)  # such a public_id may be refused
        assert exchange(port, b"GET /api/%0a%1b[2J%c2%9b HTTP/1.0\r\n\r\n").status == 404

        while sum("hello_tag" in line or " 404 " in line for line in output) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        server.terminate()
        server.wait(timeout=10)
        reader.join(timeout=5)
    text = "".join(output)
    assert unsafe_characters(text) == [], text
    [json_line] = [line for line in output if '"function": "hello_tag"' in line]
    logged = json.loads(json_line[json_line.index("{"):])
    assert logged["public_id"] == payload["public_id"]  # escaped on screen, the same value for a JSON reader


# --- item 11: slow, half-sent and too many clients ---------------------------------------------------------

def test_headers_that_never_finish_are_answered_408_after_the_read_timeout(serve):
    served = serve(read_timeout=0.3)
    with socket.create_connection(("127.0.0.1", served.port), timeout=5) as sock:
        started = time.monotonic()
        sock.sendall(b"POST /api/hello_tag HTTP/1.1\r\nContent-Le")  # and nothing more, connection kept open

        answer = read_answer(sock)

    assert answer.status == 408 and answer.json()["error"] == "request_timeout"
    assert time.monotonic() - started < 2.5


def test_a_content_length_longer_than_the_body_is_408_not_a_hang(serve):
    served = serve(read_timeout=0.3)
    with socket.create_connection(("127.0.0.1", served.port), timeout=5) as sock:
        started = time.monotonic()
        sock.sendall(raw_request(framing=[f"Content-Length: {len(SAMPLE) + 100}"]))  # 100 bytes never come

        answer = read_answer(sock)

    assert answer.status == 408 and answer.json()["error"] == "request_timeout"
    assert time.monotonic() - started < 2.5
    assert "408 request_timeout" in served.wait_for_lines(1)[0]


@pytest.mark.slow
def test_a_client_trickling_bytes_cannot_outlast_the_deadline(serve):
    """Each byte arrives well within the timeout; the whole request does not."""
    served = serve(read_timeout=0.4)
    request = raw_request()
    stop = threading.Event()
    with socket.create_connection(("127.0.0.1", served.port), timeout=5) as sock:
        def trickle() -> None:
            for byte in request:
                if stop.wait(0.05):
                    return
                try:
                    sock.send(bytes([byte]))
                except OSError:
                    return

        sender = threading.Thread(target=trickle, daemon=True)
        started = time.monotonic()
        sender.start()
        try:
            answer = read_answer(sock)
        finally:
            stop.set()
            sender.join(timeout=5)

    assert answer.status == 408
    assert time.monotonic() - started < 2.5


def test_an_idle_connection_is_closed_without_an_answer_or_a_line(serve):
    served = serve(read_timeout=0.2)
    with socket.create_connection(("127.0.0.1", served.port), timeout=5) as sock:
        started = time.monotonic()
        assert read_answer(sock).status is None  # closed: recv gives b""
    assert time.monotonic() - started < 2.5
    assert served.lines == []


@pytest.mark.slow
def test_handlers_are_bounded_and_a_request_beyond_them_waits_its_turn(serve):
    served = serve(read_timeout=0.3, max_connections=3)
    baseline = handler_threads()
    stalled = [socket.create_connection(("127.0.0.1", served.port), timeout=5) for _ in range(8)]
    try:
        for sock in stalled:
            sock.sendall(b"POST /api/hello_tag HTTP/1.1\r\nContent-Le")
        peak = 0
        for _ in range(15):
            peak = max(peak, handler_threads() - baseline)
            time.sleep(0.02)

        answer = exchange(served.port, raw_request(), timeout=10)  # queued behind the stalled ones

        assert peak <= 3
        assert answer.status == 200 and answer.json()["status"] == "dry_run"
    finally:
        for sock in stalled:
            sock.close()


def test_many_stalled_clients_hold_no_more_threads_than_the_bound(serve):
    served = serve(read_timeout=0.5, max_connections=4)
    baseline = threading.active_count()
    stalled = [socket.create_connection(("127.0.0.1", served.port), timeout=5) for _ in range(40)]
    try:
        for sock in stalled:
            sock.sendall(b"POST /api/hello_tag HTTP/1.1\r\n")
        time.sleep(0.1)
        assert threading.active_count() - baseline <= 4
    finally:
        for sock in stalled:
            sock.close()


def test_the_defaults_are_ten_seconds_and_64_handlers(demo):
    server = serving.make_dev_server("127.0.0.1", 0, serving.Router([]))
    try:
        assert server.read_timeout == 10.0 and server.max_connections == 64
    finally:
        server.server_close()


# --- item 12: HTTP framing, methods, broken connections -------------------------------------------------

@pytest.mark.parametrize(("size", "extension", "trailers"), [
    (len(SAMPLE), "", ""),  # one chunk
    (100, "", ""),  # many
    (1, "", ""),  # one byte each
    (256, ";name=value", ""),  # chunk extensions are ignored
    (300, "", "X-Trailer: yes\r\n"),  # trailer fields are read past
])
def test_a_signed_chunked_body_is_decoded_and_verified(serve, size, extension, trailers):
    served = serve()

    answer = exchange(served.port, raw_request(framing=["Transfer-Encoding: chunked"],
                                               payload=chunked(SAMPLE, size, extension, trailers)))

    assert answer.status == 200, answer.body
    assert answer.json()["status"] == "dry_run"


@pytest.mark.parametrize("limit", [None, 2048])
def test_a_chunked_body_over_the_limit_is_413_not_401(serve, monkeypatch, limit):
    if limit:
        monkeypatch.setenv("WEBHOOK_MAX_BODY_BYTES", str(limit))
    served = serve()
    body = b'{"notification_type": "upload", "pad": "' + b"x" * (2 * 1024 * 1024 if limit is None else limit) + b'"}'

    answer = exchange(served.port, raw_request(body, framing=["Transfer-Encoding: chunked"],
                                               payload=chunked(body, 64 * 1024)), timeout=20)

    assert answer.status == 413 and answer.json()["error"] == "payload_too_large"


@pytest.mark.parametrize("payload", [
    b"zz\r\n" + SAMPLE + b"\r\n0\r\n\r\n",  # a size that is not hexadecimal
    f"{len(SAMPLE):x}\r\n".encode() + SAMPLE + b"XX0\r\n\r\n",  # no CRLF after the data
    f"{len(SAMPLE) + 50:x}\r\n".encode() + SAMPLE,  # the body ends inside a chunk
    f"{len(SAMPLE):x}\r\n".encode() + SAMPLE + b"\r\n",  # no last chunk
    b"-5\r\nhello\r\n0\r\n\r\n",  # a negative size
])
def test_a_malformed_chunked_body_is_400(serve, payload):
    served = serve()

    answer = exchange(served.port, raw_request(framing=["Transfer-Encoding: chunked"], payload=payload))

    assert answer.status == 400 and answer.json()["error"] == "incomplete_body"


@pytest.mark.parametrize(("framing", "status"), [
    (["Transfer-Encoding: gzip"], 501),
    (["Transfer-Encoding: gzip, chunked"], 501),
    (["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"], 501),
    (["Transfer-Encoding: chunked", f"Content-Length: {len(SAMPLE)}"], 400),
])
def test_other_transfer_encodings_are_refused(serve, framing, status):
    served = serve()

    answer = exchange(served.port, raw_request(framing=framing, payload=chunked(SAMPLE, 100)))

    assert answer.status == status and set(answer.json()) == {"error", "message"}


@pytest.mark.parametrize("framing", [
    [f"Content-Length: {len(SAMPLE)}", f"Content-Length: {len(SAMPLE) + 1}"],
    [f"Content-Length: {len(SAMPLE)}", "Content-Length: 0"],
    [f"Content-Length: {len(SAMPLE)}, {len(SAMPLE) - 1}"],
    [f"Content-Length: {len(SAMPLE)}", f"content-length: {len(SAMPLE) + 5}"],
])
def test_conflicting_content_lengths_are_400(serve, framing):
    served = serve()

    answer = exchange(served.port, raw_request(framing=framing))

    assert answer.status == 400 and answer.json()["error"] == "conflicting_headers"


def test_conflicting_content_types_are_400(serve):
    served = serve()
    answer = exchange(served.port, raw_request(headers=["Content-Type: text/plain"]))
    assert answer.status == 400 and answer.json()["error"] == "conflicting_headers"


@pytest.mark.parametrize("framing", [[f"Content-Length: {len(SAMPLE)}", f"Content-Length: {len(SAMPLE)}"],
                                     [f"Content-Length: {len(SAMPLE)}, {len(SAMPLE)}"]])
def test_the_same_content_length_twice_is_one_length(serve, framing):
    served = serve()
    answer = exchange(served.port, raw_request(framing=framing))
    assert answer.status == 200 and answer.json()["status"] == "dry_run"


@pytest.mark.parametrize("path", ["/api/hello_tag", "/.netlify/functions/eager_email"])
def test_head_on_a_function_is_405_with_allow_post_and_no_body(serve, path):
    served = serve()

    answer = exchange(served.port, f"HEAD {path} HTTP/1.0\r\n\r\n".encode())

    assert answer.status == 405 and answer.headers["allow"] == "POST"
    assert answer.body == b""
    assert int(answer.headers["content-length"]) > 0  # what GET would have carried
    assert f"HEAD {path}  405" in served.wait_for_lines(1)[0]  # the app sends no body to read an outcome from


@pytest.mark.parametrize(("path", "status"), [("/", 200), ("/api/no_such_function", 404)])
def test_head_elsewhere_has_no_body_either(serve, path, status):
    served = serve()
    answer = exchange(served.port, f"HEAD {path} HTTP/1.0\r\n\r\n".encode())
    assert answer.status == status and answer.body == b""


@pytest.mark.parametrize("method", ["post", "Post", "pOST"])
def test_a_lower_case_post_is_not_post(serve, method):
    served = serve()

    answer = exchange(served.port, raw_request(method=method))

    assert answer.status == 405 and answer.json()["error"] == "method_not_allowed"


def test_a_connection_reset_under_the_body_is_a_400_line_not_a_traceback(serve, capsys):
    served = serve(read_timeout=5)
    sock = socket.create_connection(("127.0.0.1", served.port), timeout=5)
    sock.sendall(raw_request(framing=[f"Content-Length: {len(SAMPLE) + 500}"]))
    time.sleep(0.2)  # the server is now waiting for the rest of the body
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()  # with SO_LINGER 0: a reset, not a goodbye

    [line] = served.wait_for_lines(1)

    assert "POST /api/hello_tag  400 incomplete_body" in line
    assert "Traceback" not in capsys.readouterr().err
    assert exchange(served.port, raw_request()).status == 200  # and the server goes on


def test_a_client_that_said_it_was_done_gets_its_answer_without_a_drain(serve, monkeypatch):
    """A client that sent its request and closed its side (as most do once they have read the answer) has
    nothing left to drain: the handler closes at once, keeping its turn, instead of handing the turn on and
    waiting on the client (which cost a thread switch for every such request under load)."""
    served = serve()
    verdicts: list[bool] = []
    all_read = serving.DevRequestHandler._all_read
    monkeypatch.setattr(serving.DevRequestHandler, "_all_read",
                        lambda handler: verdicts.append(all_read(handler)) or verdicts[-1])

    answer = exchange(served.port, raw_request())  # sent, then SHUT_WR: end-of-file before the answer is written

    assert answer.status == 200 and answer.json()["status"] == "dry_run"
    assert verdicts == [True]  # nothing to drain: closed at once (a drain would hand the worker's turn on)


def test_a_body_cut_short_by_the_client_is_400(serve):
    served = serve()

    answer = exchange(served.port, raw_request(framing=[f"Content-Length: {len(SAMPLE) + 50}"]))  # then EOF

    assert answer.status == 400 and answer.json()["error"] == "incomplete_body"


@pytest.mark.parametrize("request_line", [b"GET / HTTP/9.9", b"GARBAGE", b"GET /" + b"a" * 70000 + b" HTTP/1.0"])
def test_a_malformed_request_is_answered_in_json(serve, request_line):
    served = serve()
    answer = exchange(served.port, request_line + b"\r\n\r\n")
    assert answer.status in (400, 414, 505)
    assert set(answer.json()) == {"error", "message"}


def test_an_app_that_raises_is_a_json_500_and_a_logged_traceback(serve, monkeypatch, caplog):
    served = serve()

    def broken(environ, start_response):
        raise RuntimeError("boom\x1b[2J")

    import functions.hello_tag.handler as hello_tag

    monkeypatch.setattr(hello_tag, "app", broken)

    answer = exchange(served.port, raw_request())

    assert answer.status == 500 and answer.json()["error"] == "internal_error"
    assert any(record.exc_info for record in caplog.records if record.name == "devtools.serving")
