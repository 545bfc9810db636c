"""The development server behind ``python -m shared serve``: every function on one local HTTP server.

Kept apart from the commands (``devtools.cli``), as pallets keep ``serving.py`` apart from their CLI, and
never bundled with a function: production runs each function's ``app`` or ``handler`` on its platform.

- ``Router``: a WSGI app serving ``functions/<name>`` at ``/.netlify/functions/<name>`` and ``/api/<name>``,
  printing one line per request.
- ``DevServer`` / ``make_dev_server``: a threaded wsgiref server that a slow or broken client cannot hold:
  the whole request must arrive within ``read_timeout`` seconds, at most ``max_connections`` requests are
  handled at once (the others wait in the listen backlog), and HTTP framing is checked before any function
  runs: conflicting Content-Length or Content-Type headers are 400, a chunked body is decoded, any other
  Transfer-Encoding is 501, HEAD answers carry no body. Its threads accept connections themselves and only one
  per process computes at a time (see its docstring for why).
- ``Workers`` / ``default_workers``: the server's listening socket shared by a process per CPU (issue 16: one
  process answered 884 requests a second with a p99 of 48 ms under 32 clients; gunicorn -w 2, 4,001 and
  9.8 ms), forked after the parent has bound, printed and imported every function; ``write_line`` prints
  their request lines without interleaving.
- ``printable``: what the server and the CLI print of a request or a payload, with every control character
  escaped, so a path with ``%0a`` cannot forge a log line and an escape sequence cannot rewrite the terminal.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import http
import importlib
import io
import ipaddress
import json
import logging
import os
import select
import signal
import socket
import sys
import threading
import time
import unicodedata
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer

ROUTE_PREFIXES = ("/.netlify/functions/", "/api/")
DEFAULT_READ_TIMEOUT = 10.0  # seconds for a whole request (line, headers and body) to arrive
DEFAULT_MAX_CONNECTIONS = 64  # requests handled at once; more wait in the listen backlog
LINGER_SECONDS = 2.0  # after answering, how long unread request bytes are drained so the client sees the answer
LINGER_BYTES = 8 * 1024 * 1024
WRITE_BUFFER_BYTES = 64 * 1024  # an answer up to this size is sent in one write
SLOW_CLIENT_SECONDS = 0.01  # a read waiting longer than this is a slow client: its thread steps aside
SMALL_ANSWER_BYTES = 16 * 1024  # an answer this size fits a new socket's send buffer: written without waiting
LONG_REQUEST_SECONDS = 0.05  # a request holding the gate longer than this waits on something: others go ahead

log = logging.getLogger("devtools.serving")


# --- printing what a request carries --------------------------------------------------------------

_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_JOINERS = {"\u200c", "\u200d"}  # zero-width (non-)joiner: part of how Persian, Indic and emoji text is written


def _unsafe(char: str) -> bool:
    """C0 and C1 controls and DEL (Cc), line and paragraph separators (Zl, Zp: U+2028, U+2029), lone
    surrogates (Cs: no terminal can print them) and invisible format characters (Cf: bidi overrides that
    reorder a line on screen, tag characters that hide text), the joiners excepted."""
    category = unicodedata.category(char)
    return category in ("Cc", "Zl", "Zp", "Cs") or (category == "Cf" and char not in _JOINERS)


def _escape(char: str) -> str:
    if char in _NAMED_ESCAPES:
        return _NAMED_ESCAPES[char]
    code = ord(char)
    if code > 0xFFFF:  # as a JSON surrogate pair, so that an escaped JSON line is still the same JSON
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
    return f"\\u{code:04x}"


def printable(text: str, keep: str = "") -> str:
    """``text`` safe to print on a terminal or in a log: every unsafe character (see ``_unsafe``) but those
    in ``keep`` written as a JSON-style escape (``\\n``, ``\\u001b``, ``\\u2028``), which keeps a JSON text
    valid JSON with the same meaning."""
    if text.isprintable():  # the common case; isprintable() is False for every character _unsafe() is True for
        return text
    return "".join(_escape(char) if char not in keep and _unsafe(char) else char for char in text)


class PrintableFormatter(logging.Formatter):
    """A log formatter for a terminal: the message escaped whole (one record, one line); a traceback keeps
    its line breaks and loses every other control character."""

    def format(self, record: logging.LogRecord) -> str:
        record.message = printable(record.getMessage())
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        text = self.formatMessage(record)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            text += "\n" + printable(record.exc_text, keep="\n")
        if record.stack_info:
            text += "\n" + printable(self.formatStack(record.stack_info), keep="\n")
        return text


# --- the router: one WSGI app for every function ----------------------------------------------------

def _json_reply(start_response: Callable[..., Any], status: str, body: dict[str, Any],
                extra_headers: Iterable[tuple[str, str]] = (), exc_info: Any = None) -> list[bytes]:
    payload = json.dumps(body).encode("utf-8")
    headers = [("Content-Type", "application/json; charset=utf-8"), ("Content-Length", str(len(payload))),
               *extra_headers]
    if exc_info:
        start_response(status, headers, exc_info)
    else:
        start_response(status, headers)
    return [payload]


class Router:
    """A WSGI app serving ``functions/<name>`` at ``/.netlify/functions/<name>`` and ``/api/<name>``.

    With an ``inspector`` (``devtools.inspector.Inspector``, which `serve` gives it), every request to a function
    is recorded, and the inspector's pages are served: a browser's ``GET /`` and ``/inspector/...``, to this
    machine only. ``GET /`` asked for JSON (or by a client elsewhere) lists the functions."""

    def __init__(self, names: Iterable[str], out: Callable[[str], None] | None = None, inspector: Any = None) -> None:
        self.names = set(names)
        self.out = out
        self.inspector = inspector

    def route(self, path: str) -> str | None:
        for prefix in ROUTE_PREFIXES:
            if path.startswith(prefix):
                name = path[len(prefix):].strip("/")
                return name if name in self.names else None
        return None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        started = time.perf_counter()
        path = str(environ.get("PATH_INFO", "/"))
        method = str(environ.get("REQUEST_METHOD", "GET"))
        if self.inspector is not None and self.inspector.owns(path, environ):
            answered = self.inspector.serve(environ, start_response, self)
            if answered is not None:  # its pages print no line: they are not notifications
                return answered
        name = self.route(path)
        seen: dict[str, str] = {}
        recording = None
        if name is not None and self.inspector is not None and method not in ("GET", "HEAD", "OPTIONS") \
                and environ.get("wsgi.input") is not None:
            recording = environ["wsgi.input"] = self.inspector.recording_input(environ["wsgi.input"])

        def remember_status(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            seen["status"] = status.split(" ", 1)[0]
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        if name is None:
            if path in ("/", "") and method in ("GET", "HEAD"):
                chunks = _json_reply(remember_status, "200 OK", {"functions": {
                    n: [f"/.netlify/functions/{n}", f"/api/{n}"] for n in sorted(self.names)}})
            else:
                chunks = _json_reply(remember_status, "404 Not Found",
                                     {"error": "not_found", "message": f"No function at {path}."})
        else:
            try:
                app = importlib.import_module(f"functions.{name}.handler").app
                chunks = list(app(environ, remember_status))
            except Exception:  # the wrapper answers every error itself; this is a bug, answered as one
                log.exception("%s %s: the function's app raised", method, path)
                chunks = _json_reply(remember_status, "500 Internal Server Error",
                                     {"error": "internal_error", "message": "The function failed; see the server."},
                                     exc_info=sys.exc_info() if seen else None)
        outcome = ""
        body = b"".join(chunks)
        answer: Any = None
        with contextlib.suppress(ValueError, AttributeError, RecursionError):
            answer = json.loads(body)
            outcome = answer.get("status") or answer.get("error", "")
        self.log_line(method, path, seen.get("status", "?"), str(outcome), started)
        if recording is not None:
            status = seen.get("status", "")
            environ["devtools.inspector.entry"] = self.inspector.record_request(
                environ, str(name), bytes(recording.data), int(status) if status.isdigit() else 0, body,
                (time.perf_counter() - started) * 1000, reply=answer if isinstance(answer, dict) else {})
        if method == "HEAD":  # the headers GET would have had, Content-Length included, and no body
            return []
        return chunks

    def log_line(self, method: str, path: str, status: int | str, outcome: str, started: float) -> None:
        """The one line per request: everything in it that the client chose is escaped."""
        if self.out:
            elapsed = (time.perf_counter() - started) * 1000
            self.out(f"{time.strftime('%H:%M:%S')}  {printable(method)} {printable(path)}  {status} "
                     f"{printable(outcome)}  {elapsed:.1f} ms")


# --- reading a request: a deadline for all of it, and chunked bodies decoded ------------------------

class _DeadlineReader(io.RawIOBase):
    """The socket's incoming bytes, each read given only what is left of the request's deadline: a client
    sending a byte every few seconds cannot hold a handler longer than the deadline either."""

    def __init__(self, sock: socket.socket, deadline: float, write_timeout: float,
                 on_wait: Callable[[], None] | None = None) -> None:
        self._sock = sock
        self._deadline = deadline
        self._write_timeout = write_timeout
        self._on_wait = on_wait  # called once, when the client first keeps a read waiting (see DevServer.step_aside)
        self.received = 0
        self.timed = True  # whether the socket's timeout is not the write timeout (at first it has none)

    def readable(self) -> bool:
        return True

    def tell(self) -> int:  # what BufferedReader.tell() counts from: the bytes read from the socket so far
        return self.received

    def readinto(self, buffer: Any) -> int:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the request did not arrive in time")
        try:
            if self._on_wait is not None and remaining > SLOW_CLIENT_SECONDS:
                self._sock.settimeout(SLOW_CLIENT_SECONDS)
                try:
                    count = self._sock.recv_into(buffer)
                except TimeoutError:  # a slow client: let another thread answer the others meanwhile
                    on_wait, self._on_wait = self._on_wait, None
                    on_wait()
                    remaining = self._deadline - time.monotonic()
                    if remaining <= 0:
                        raise TimeoutError("the request did not arrive in time") from None
                    self._sock.settimeout(remaining)
                    count = self._sock.recv_into(buffer)
            else:
                self._sock.settimeout(remaining)
                count = self._sock.recv_into(buffer)
        finally:
            self.timed = True
        self.received += count
        return count

    def before_writing(self) -> None:
        """The answer is written with the ordinary timeout, not with what was left of the reading deadline (set
        once, here, rather than after every read: each settimeout is a system call)."""
        if self.timed:
            self._sock.settimeout(self._write_timeout)
            self.timed = False


class BrokenFraming(OSError):
    """The body's framing is broken (a malformed chunk): the body cannot be read, as if the connection broke."""


class ChunkedBody(io.RawIOBase):
    """``wsgi.input`` for a chunked request (RFC 9112 7.1): the decoded body, then b"" at its end, read
    lazily, so a function reading at most its size limit + 1 bytes never pulls a huge body into memory."""

    MAX_LINE = 4096  # a chunk-size line or a trailer field
    MAX_TRAILERS = 64

    def __init__(self, raw: io.BufferedIOBase) -> None:
        self._raw = raw
        self._left = 0  # bytes left in the current chunk
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._done or not len(buffer):
            return 0
        if self._left == 0:
            self._left = self._chunk_size()
            if self._left == 0:
                for _ in range(self.MAX_TRAILERS + 1):  # trailer fields, then the empty line ending the body
                    if not self._line():
                        self._done = True
                        return 0
                raise BrokenFraming("too many trailer fields")
        data = self._raw.read(min(len(buffer), self._left))
        if not data:
            raise BrokenFraming("the body ended inside a chunk")
        buffer[:len(data)] = data
        self._left -= len(data)
        if self._left == 0 and self._raw.read(2) != b"\r\n":
            raise BrokenFraming("a chunk is not followed by CRLF")
        return len(data)

    def _chunk_size(self) -> int:
        text = self._line().split(b";", 1)[0].strip()  # chunk extensions ignored
        if not text or len(text) > 15 or text.strip(b"0123456789abcdefABCDEF"):
            raise BrokenFraming("a chunk size is not hexadecimal")
        return int(text, 16)

    def _line(self) -> bytes:
        line = self._raw.readline(self.MAX_LINE + 1)
        if not line.endswith(b"\n"):
            raise BrokenFraming("the body ended inside a chunk header" if len(line) <= self.MAX_LINE
                                else "a chunk header line is too long")
        return line.rstrip(b"\r\n")


# --- the server ------------------------------------------------------------------------------------

_ERROR_CODES = {400: "bad_request", 408: "request_timeout", 413: "payload_too_large", 414: "uri_too_long",
                417: "expectation_failed", 431: "headers_too_large", 501: "not_implemented",
                505: "http_version_not_supported"}


class _ServerHandler(ServerHandler):
    os_environ: dict[str, str] = {}  # wsgiref copies the process environment into every request's environ
    error_headers = [("Content-Type", "application/json; charset=utf-8")]
    error_body = b'{"error": "internal_error", "message": "The server failed; its output has the details."}'

    def log_exception(self, exc_info: Any) -> None:
        log.error("error while answering a request", exc_info=exc_info)

    def finish_response(self) -> None:
        request_handler = self.request_handler  # type: ignore[attr-defined]
        request_handler.reader.before_writing()
        length = (self.headers.get("Content-Length") or "") if self.headers is not None else ""
        if not (length.isdigit() and int(length) <= SMALL_ANSWER_BYTES):  # could wait on a client not reading
            request_handler.server.step_aside()
        super().finish_response()


class DevRequestHandler(WSGIRequestHandler):
    """One connection, one request (HTTP/1.0 answers, as wsgiref's), framing checked before the app runs."""

    def setup(self) -> None:
        read_timeout = self.server.read_timeout  # type: ignore[attr-defined]
        self.connection = self.request  # no timeout set yet: each read sets what is left of the deadline
        self.reader = _DeadlineReader(self.connection, time.monotonic() + read_timeout, read_timeout,
                                      on_wait=self.server.step_aside)  # type: ignore[attr-defined]
        self.rfile = io.BufferedReader(self.reader)
        # Buffered: wsgiref writes the status line, the headers and the body separately, and each write to the
        # socket is a system call (and under several threads a trip through the GIL); buffered, the answer
        # leaves in one send when the handler flushes after the body. A bigger body is written through.
        self.wfile = self.connection.makefile("wb", WRITE_BUFFER_BYTES)

    def handle(self) -> None:
        self.started = time.perf_counter()
        self.command, self.path, self.request_version = "", "", "HTTP/1.0"
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if not self.raw_requestline:
                return  # connected and left
            if len(self.raw_requestline) > 65536:
                self.send_error(414, "The request line is too long.")
                return
            if not self.parse_request():
                return  # parse_request answered, through send_error
        except TimeoutError:
            if self.reader.received:  # a connection opened and left idle is closed without a word
                self.reject(408, f"The request did not arrive within {self.server.read_timeout:g} s.")  # type: ignore
            return
        except OSError:
            return  # reset by the client: nobody to answer

        problem = self._framing_problem()
        if problem:
            self.reject(*problem)
            return
        environ = self.get_environ()
        stdin: io.BufferedIOBase = self.rfile
        if self.headers.get("Transfer-Encoding"):
            stdin = io.BufferedReader(ChunkedBody(self.rfile))
            environ["wsgi.input_terminated"] = True
        lengths = self._values("Content-Length")
        if lengths:
            environ["CONTENT_LENGTH"] = lengths[0]  # "5, 5" or two equal headers: one length
        if stdin is self.rfile and (not lengths or lengths[0].isdigit()):  # where the request ends, if known
            with contextlib.suppress(OSError, ValueError):
                self.request_end = self.rfile.tell() + int(lengths[0] if lengths else 0)
        handler = _ServerHandler(stdin, self.wfile, self.get_stderr(), environ, multithread=False)
        handler.request_handler = self  # type: ignore[attr-defined]
        handler.run(self.server.get_app())  # type: ignore[attr-defined]

    def _values(self, name: str) -> list[str]:
        """Every value of a header, repeated or comma-separated."""
        return [part.strip() for value in self.headers.get_all(name, []) for part in value.split(",")
                if part.strip()]

    def _framing_problem(self) -> tuple[int, str, str] | None:
        lengths = self._values("Content-Length")
        if len(set(lengths)) > 1:
            return 400, "The request carries two different Content-Length headers.", "conflicting_headers"
        if len({value.strip().lower() for value in self.headers.get_all("Content-Type", [])}) > 1:
            return 400, "The request carries two different Content-Type headers.", "conflicting_headers"
        codings = [coding.lower() for coding in self._values("Transfer-Encoding")]
        if self.headers.get_all("Transfer-Encoding"):
            if lengths:  # which one frames the body? A request two readers can split differently: refused
                return 400, "The request carries both Content-Length and Transfer-Encoding.", "conflicting_headers"
            if codings != ["chunked"]:
                return 501, f"Transfer-Encoding {', '.join(codings) or '(empty)'} is not supported: send the " \
                            "body chunked or with a Content-Length.", "not_implemented"
        return None

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's errors (a malformed request line, headers too long...) answered as JSON."""
        self.reject(code, message or http.HTTPStatus(code).phrase)

    def reject(self, status: int, message: str, code: str | None = None) -> None:
        """Answer before the app runs, close the connection, and print the request's line."""
        self.reader.before_writing()  # a short JSON answer: written at once, within the socket's buffer
        self.close_connection = True
        status = int(status)
        body = json.dumps({"error": code or _ERROR_CODES.get(status, "bad_request"), "message": message})
        payload = body.encode("utf-8")
        head = (f"HTTP/1.0 {status} {http.HTTPStatus(status).phrase}\r\n"
                "Content-Type: application/json; charset=utf-8\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n")
        with contextlib.suppress(OSError):
            self.wfile.write(head.encode("latin-1") + (b"" if self.command == "HEAD" else payload))
        app = self.server.get_app()  # type: ignore[attr-defined]
        if isinstance(app, Router):
            app.log_line(self.command or "-", self._logged_path(), status, code or _ERROR_CODES.get(status, ""),
                         self.started)

    def _logged_path(self) -> str:
        return self.path.split("?", 1)[0] or "-"

    def finish(self) -> None:
        """Answer first, then drain what the client is still sending (for a while): closing a socket with
        unread bytes resets the connection, and the client would lose the answer (a 413 among others)."""
        with contextlib.suppress(OSError):
            self.reader.before_writing()
            self.wfile.flush()
            if self._all_read():
                return super().finish()  # nothing left to drain: the connection is closed at once
            self.server.step_aside()  # type: ignore[attr-defined]  # draining waits on the client
            self.connection.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + min(LINGER_SECONDS, self.server.read_timeout)  # type: ignore
            drained = 0
            while drained < LINGER_BYTES and (remaining := deadline - time.monotonic()) > 0:
                self.connection.settimeout(remaining)
                data = self.connection.recv(65536)
                if not data:
                    break
                drained += len(data)
        with contextlib.suppress(OSError):
            super().finish()

    def _all_read(self) -> bool:
        """Whether the client sent exactly the request it announced, all of it read, and nothing after it (yet)
        but perhaps its end-of-file: then closing cannot reset the connection under the answer, and waiting for
        the client to close first (the drain, which hands this worker's turn on) would only hold this thread. A
        client pipelining a second request after the first (which an HTTP/1.0 answer does not invite) may still
        see a reset; a chunked body is always drained."""
        end = getattr(self, "request_end", None)
        if end is None or self.reader.received != end or not hasattr(select, "poll"):
            return False
        waiting = select.poll()  # not a recv: on a socket with a timeout, Python would wait for data first
        waiting.register(self.connection, select.POLLIN)
        if not waiting.poll(0):
            return True  # nothing more has come
        try:  # readable: more bytes, or the client's end-of-file (it read the answer and closed: nothing to drain)
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return False

    def log_message(self, format: str, *args: Any) -> None:  # the router prints its own line
        pass


class DevServer(WSGIServer):
    """A WSGI server for one machine's development: bounded threads, bounded read time.

    Its handler threads wait in ``accept()`` on the listening socket themselves (leader/follower): the kernel
    hands each connection to one waiting thread, which answers it and goes back to waiting. A thread is started
    only when the last waiting one takes a connection, up to ``max_connections``; beyond that, connections wait
    unaccepted in the listen backlog. So no thread is started per request (socketserver's ThreadingMixIn started
    one per connection, handed over from a selector thread: two thread switches and a thread start, under one
    GIL, for every notification), and the worker processes of ``Workers`` can share the one listening socket:
    each of their threads waits in the same ``accept()``.

    And only one thread of a process accepts and runs a request at a time (it holds the
    process's gate): the others wait on the gate, not in ``accept()``, so the connections queue in the kernel's
    backlog, first come first served, where another worker process may take them, instead of 32 threads of one
    process taking turns on its one interpreter, each request waiting for all the others (measured: p99 twice
    the median, the same throughput). The thread holding the gate keeps it from one connection to the next, as a
    gunicorn sync worker loops (no thread switch between requests), and hands it on (``step_aside``) only before
    it would wait on a client: when a read waits longer than ``SLOW_CLIENT_SECONDS``, before writing an answer
    bigger than ``SMALL_ANSWER_BYTES``, before draining a request it did not read whole. A slow client then
    holds a thread, never the server: the bound on those threads is ``max_connections``, as before. And a slow
    function (one waiting on an API, not a dry run) holds no one back either: once the holder has been on one
    request longer than ``LONG_REQUEST_SECONDS``, the next thread stops waiting for the gate and answers
    alongside it (``_wait_for_gate``)."""

    allow_reuse_address = True
    request_queue_size = 128  # the default backlog of 5 resets connections under a burst of notifications

    def __init__(self, server_address: tuple[str, int], handler_class: type = DevRequestHandler, *,
                 read_timeout: float = DEFAULT_READ_TIMEOUT, max_connections: int = DEFAULT_MAX_CONNECTIONS,
                 bind_and_activate: bool = True) -> None:
        if read_timeout <= 0 or max_connections < 1:
            raise ValueError("read_timeout must be > 0 and max_connections >= 1")
        self.read_timeout = read_timeout
        self.max_connections = max_connections
        self._lock = threading.Lock()
        self._handlers = 0  # handler threads started
        self._waiting = 0  # of those, waiting in accept()
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._stopped.set()
        self._gate = threading.Lock()  # acquired and released by the same thread: a lock, no Python-level condition
        self._busy_since: float | None = None  # when the gate's holder took the request it is answering
        self._holding = threading.local()  # .gate: whether this thread holds the gate
        if ":" in server_address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(server_address, handler_class, bind_and_activate)

    def start(self) -> None:
        """Start answering, in handler threads, and return: what ``serve_forever`` and each worker process do."""
        with self._lock:
            if not self._handlers and not self._stopping.is_set():
                self._add_handler()

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Answer until ``shutdown`` (from another thread) or Ctrl-C (KeyboardInterrupt, in the main thread)."""
        self._stopped.clear()
        try:
            self.start()
            while not self._stopping.wait(poll_interval):  # a timed wait: Ctrl-C interrupts it everywhere
                pass
        finally:
            self._stopped.set()

    def shutdown(self) -> None:
        """Stop accepting and make ``serve_forever`` return (it waits for that, as socketserver's does). A request
        in flight is not waited for: its thread is a daemon, as Ctrl-C has always stopped the server at once."""
        self._stopping.set()
        self._wake_handlers()
        self._stopped.wait()

    def server_close(self) -> None:
        self._stopping.set()
        self._wake_handlers()
        super().server_close()

    def _add_handler(self) -> None:  # with self._lock held
        self._handlers += 1
        self._waiting += 1
        threading.Thread(target=self._handle_connections, name=f"dev-server-handler-{self._handlers}",
                         daemon=True).start()

    def step_aside(self) -> None:
        """The calling thread hands the gate on, if it holds it: it has no more computing to do for now."""
        if getattr(self._holding, "gate", False):
            self._holding.gate = False
            self._busy_since = None
            self._gate.release()

    def _wait_for_gate(self) -> None:
        """Take the gate; or, once its holder has been busy with one request for longer than ``LONG_REQUEST_SECONDS``
        (a function waiting on Cloudinary's API, say), go on without it: this thread then answers alongside, as a
        thread per connection would, so one slow function never holds the others back."""
        while True:  # the holder's state checked first: in a burst of slow requests each new thread joins at once
            since = self._busy_since
            if self._stopping.is_set() or (since is not None and time.monotonic() - since > LONG_REQUEST_SECONDS):
                return
            if self._gate.acquire(timeout=LONG_REQUEST_SECONDS):
                self._holding.gate = True
                return

    def _handle_connections(self) -> None:
        while not self._stopping.is_set():
            if not getattr(self._holding, "gate", False):  # kept from the last request unless it stepped aside
                self._wait_for_gate()
            if self._stopping.is_set():
                break
            try:
                request, client_address = self.get_request()
            except OSError as error:
                self.step_aside()
                if self._stopping.is_set() or error.errno in (errno.EBADF, errno.EINVAL, errno.ENOTSOCK):
                    break  # the listening socket is shut or closed
                if error.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    time.sleep(0.05)  # out of descriptors or memory: let the connections in flight end first
                continue  # a connection reset while in the backlog (ECONNABORTED) and the like
            with self._lock:
                self._waiting -= 1
                if not self._waiting and self._handlers < self.max_connections and not self._stopping.is_set():
                    self._add_handler()  # someone must be waiting in accept() while this thread answers
            if getattr(self._holding, "gate", False):
                self._busy_since = time.monotonic()
            try:
                if not self._stopping.is_set():
                    self.finish_request(request, client_address)
            except BaseException:  # SystemExit from a function too: this thread serves on (ThreadingMixIn's ended)
                self.handle_error(request, client_address)
            finally:
                if getattr(self._holding, "gate", False):
                    self._busy_since = None
                self.shutdown_request(request)  # the gate kept: this thread accepts the next one, no thread switch
                with self._lock:
                    self._waiting += 1
        self.step_aside()  # stopping: the next thread waiting on the gate sees it too

    def _wake_handlers(self) -> None:
        """Wake the threads blocked in accept(): on Linux shutting the listening socket does it; where it does
        not (macOS, Windows: ENOTCONN), one connection per waiting thread. Never called in a worker process:
        the listening socket is the whole server's (a worker just exits)."""
        try:
            self.socket.shutdown(socket.SHUT_RDWR)
            return
        except OSError:
            pass
        host, port = self.server_address[:2]
        with contextlib.suppress(ValueError):
            if ipaddress.ip_address(host).is_unspecified:
                host = "::1" if self.address_family == socket.AF_INET6 else "127.0.0.1"
        for _ in range(self._waiting):
            with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
                pass

    def server_bind(self) -> None:
        super().server_bind()
        # The answer is written whole, at once: no reason to wait for an ACK before sending it. Set once here:
        # Linux gives accepted sockets the listening socket's TCP_NODELAY (elsewhere the one write makes it moot).
        with contextlib.suppress(OSError):
            self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, OSError):  # a client that reset or stalled: nothing to report
            return
        log.error("error while serving a request from %s", client_address[0], exc_info=True)


# --- a process per core ------------------------------------------------------------------------------

MAX_DEFAULT_WORKERS = 8  # a laptop's notifications need no more; each worker imports the SDKs it uses again
STOP_SECONDS = 5.0  # for the workers to end (record what they have queued) before they are killed
RESTARTS_ALLOWED = 5  # worker deaths within RESTART_WINDOW_SECONDS before the server gives up
RESTART_WINDOW_SECONDS = 30.0


def default_workers() -> int:
    """One worker process per CPU this process may run on (its affinity: what ``taskset`` or a container's
    cpuset leaves it, not the machine's count), at most ``MAX_DEFAULT_WORKERS``; 1 without ``os.fork``."""
    if not hasattr(os, "fork"):
        return 1
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS has no sched_getaffinity
        count = os.cpu_count() or 1
    return max(1, min(count, MAX_DEFAULT_WORKERS))


class _Stop(BaseException):
    """SIGTERM, raised in the main thread (a BaseException, as KeyboardInterrupt is: no handler swallows it)."""


def _raise_stop(signum: int, frame: Any) -> None:
    raise _Stop


class Workers:
    """``count`` processes forked from this one, each answering on ``server``'s listening socket, watched here.

    Python runs one thread at a time per process, so a single process answers on one core however many threads
    it has (and its threads queue for the interpreter); gunicorn's answer is a process per core sharing one
    listening socket, and so is this. The parent binds, prints, imports the functions and then forks, so the
    workers start warm, and it answers nothing itself: it waits for its workers.

    - ``max_connections`` stays the whole server's bound: each worker handles its share of it at once.
    - ``on_start(index)`` runs in each worker after the fork, before it answers (the inspector opens its own
      SQLite connection and writer thread there: neither may cross a fork); ``on_exit()`` as it ends.
    - Ctrl-C (which a terminal sends to every process of the group) and SIGTERM stop the parent, which stops the
      workers (SIGTERM; SIGKILL after ``STOP_SECONDS``) and waits for them; the workers ignore SIGINT. A worker
      also ends when the parent is gone however it went (a pipe the parent holds open reads end-of-file): no
      orphan keeps the port.
    - A worker that dies (killed, or a crash in native code) is reported and replaced: a development server
      should outlive one bad request. More than ``RESTARTS_ALLOWED`` deaths within ``RESTART_WINDOW_SECONDS``
      (a worker that cannot start) stop the server, with exit status 1.
    """

    def __init__(self, server: DevServer, count: int, *, on_start: Callable[[int], None] | None = None,
                 on_exit: Callable[[], None] | None = None, note: Callable[[str], None] | None = None) -> None:
        if count < 1 or not hasattr(os, "fork"):
            raise ValueError("Workers needs os.fork and a count of at least 1")
        self.server = server
        self.count = min(count, server.max_connections)  # each worker handles at least one request at once
        total = server.max_connections
        self.shares = [total // self.count + (1 if index < total % self.count else 0) for index in range(self.count)]
        self.on_start = on_start
        self.on_exit = on_exit
        self.note = note or (lambda text: write_line(text, sys.stderr))
        self.pids: dict[int, int] = {}  # pid -> worker index
        self._deaths: list[float] = []
        self._alive_read = self._alive_write = -1

    def run(self) -> int:
        """Fork the workers and watch them until Ctrl-C or SIGTERM (0), or until they keep dying (1)."""
        sys.stdout.flush()  # what the parent printed must not be printed again by a worker's copy of the buffer
        sys.stderr.flush()
        # What the parent built (every function imported) lasts: out of the collector's sight, the workers'
        # collections do not walk it again and again (a pause of its own within some requests), nor write to
        # its pages, which then stay shared between the processes (gunicorn's and Instagram's practice).
        gc.collect()
        gc.freeze()
        self._alive_read, self._alive_write = os.pipe()
        previous = signal.signal(signal.SIGTERM, _raise_stop)
        status = 0
        try:
            for index in range(self.count):
                self._spawn(index)
            while self.pids:
                pid, wait_status = os.waitpid(-1, 0)
                index = self.pids.pop(pid, None)
                if index is None:
                    continue
                now = time.monotonic()
                self._deaths = [at for at in self._deaths if now - at < RESTART_WINDOW_SECONDS] + [now]
                ended = _ended(os.waitstatus_to_exitcode(wait_status))
                if len(self._deaths) > RESTARTS_ALLOWED:
                    self.note(f"worker {pid} {ended}: {len(self._deaths)} workers ended within "
                              f"{RESTART_WINDOW_SECONDS:g} s, so the server stops (see the errors above)")
                    status = 1
                    break
                self._spawn(index)
                self.note(f"worker {pid} {ended}; worker {self._pid_of(index)} answers in its place")
        except (KeyboardInterrupt, _Stop):
            pass
        finally:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})  # a second Ctrl-C: ignored
            try:
                self._stop_all()
            finally:
                os.close(self._alive_read)
                os.close(self._alive_write)
                with contextlib.suppress(KeyboardInterrupt, _Stop):  # one that came while stopping: stopped already
                    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
                signal.signal(signal.SIGTERM, previous)
        return status

    def _pid_of(self, index: int) -> int:
        return next((pid for pid, at in self.pids.items() if at == index), 0)

    def _spawn(self, index: int) -> None:
        # Signals blocked across the fork: the child sets its own handlers before any can reach it.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            pid = os.fork()
            if pid == 0:
                self._child(index)  # never returns
            self.pids[pid] = index
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})

    def _child(self, index: int) -> None:
        code = 1
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent decides
            signal.signal(signal.SIGTERM, _raise_stop)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
            os.close(self._alive_write)
            self.server.max_connections = self.shares[index]
            if self.on_start is not None:
                self.on_start(index)
            self.server.start()
            while os.read(self._alive_read, 1):  # end-of-file once the parent is gone, however it went
                pass
            code = 0
        except _Stop:
            code = 0
        except BaseException:
            log.exception("worker %d could not go on", os.getpid())
        finally:
            # os._exit: neither the parent's atexit handlers nor interpreter shutdown (a handler thread mid-request
            # is abandoned, as Ctrl-C always did); what this worker queued for the inspector is written first.
            try:
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                if self.on_exit is not None:
                    self.on_exit()
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)

    def _stop_all(self) -> None:
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        while self.pids and time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:  # every one already reaped
                self.pids.clear()
                break
            if pid:
                self.pids.pop(pid, None)
            else:
                time.sleep(0.01)
        for pid in list(self.pids):
            self.note(f"worker {pid} did not stop within {STOP_SECONDS:g} s: killed")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            self.pids.pop(pid, None)


def _ended(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
        return f"was killed by signal {-code}"
    return f"exited with status {code}"


def write_line(line: str, stream: Any = None) -> None:
    """Print ``line`` in one write(2), so that the lines of several worker processes sharing a terminal, a pipe
    or a file never interleave within a line (a pipe keeps writes up to PIPE_BUF, 4 KiB, whole; a terminal or a
    file each write). ``print`` may write a line in pieces."""
    stream = stream or sys.stdout
    try:
        descriptor = stream.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (a test's capture): as print would
        print(line, file=stream, flush=True)
        return
    data = (line + "\n").encode(stream.encoding or "utf-8", "backslashreplace")
    stream.flush()  # whatever was printed before stays before
    while data:
        written = os.write(descriptor, data)
        data = data[written:]


def make_dev_server(host: str, port: int, app: Callable[..., Any], *, read_timeout: float = DEFAULT_READ_TIMEOUT,
                    max_connections: int = DEFAULT_MAX_CONNECTIONS) -> DevServer:
    """A ``DevServer`` listening on ``host:port`` (port 0: any free port) for ``app``. Raises ``OSError``
    when it cannot listen there (port in use, an address not of this machine, an unknown host)."""
    server = DevServer((host, port), DevRequestHandler, read_timeout=read_timeout, max_connections=max_connections)
    server.set_app(app)
    return server
