"""The outbound calls of a request across every stand-in, in the order they arrived, and faults by position.

A request of face_tagging or bg_removal_approval talks to more than one service (Cloudinary, SendGrid,
Rekognition, the image CDN). The fault suites break "the k-th outbound call", whatever service it goes to,
and check that no write follows it: each stand-in reports each call to one ``Wire`` as it arrives, and the
wire says whether that call is the one to fail. ``serve`` is the small loopback HTTP server the SendGrid and
Rekognition stand-ins share (stalled answers and connection resets included).
"""

from __future__ import annotations

import copy
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.fakes.cloudinary import Call, FakeCloudinary, Fault

STALL_SECONDS = 5.0  # a stalled answer ends when the test releases it, or after this at the latest


@dataclass
class WireCall:
    service: str  # "cloudinary", "sendgrid", "rekognition", "cdn"
    operation: str
    is_write: bool
    fault: Fault | None = None

    def __str__(self) -> str:
        return f"{self.service} {self.operation}"


class Wire:
    def __init__(self) -> None:
        self.calls: list[WireCall] = []
        self._faults: dict[int, Fault] = {}
        self._lock = threading.Lock()

    def arrive(self, service: str, operation: str, is_write: bool) -> WireCall:
        """Record a call as it arrives; its ``fault`` is set when it is the one to fail."""
        with self._lock:
            call = WireCall(service, operation, is_write, self._faults.get(len(self.calls)))
            self.calls.append(call)
        return call

    def fail_call(self, index: int, fault: Fault) -> None:
        """Fail the ``index``-th call (0-based) counted from now, whichever service it goes to."""
        with self._lock:
            self._faults[len(self.calls) + index] = fault

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def since(self, start: int) -> list[WireCall]:
        return self.calls[start:]


class WiredCloudinary(FakeCloudinary):
    """tests/fakes/cloudinary.py's stand-in, reporting each call to a Wire (and failing it when told to)."""

    def __init__(self, cloud_name: str, wire: Wire) -> None:
        super().__init__(cloud_name)
        self.wire = wire

    def _classify(self, request: Any) -> Call:
        call = super()._classify(request)
        if call.api == "admin" and call.path.endswith("/resources/by_asset_ids"):
            call.action = "by_asset_ids"
        wired = self.wire.arrive("cloudinary", call.action, call.is_write)
        if wired.fault is not None:
            self.fail(lambda candidate, _index, target=call: candidate is target, wired.fault)
        return call

    def _apply(self, call: Call) -> tuple[int, dict[str, Any]]:
        if call.action == "by_asset_ids":  # the Admin API lists the assets that exist; deleted ones are left out
            wanted = set(call.params.get("asset_ids[]") or [])
            found = [copy.deepcopy(asset) for asset in self.assets.values() if asset["asset_id"] in wanted]
            return 200, {"resources": found}
        return super()._apply(call)


# What a dispatcher returns: (status, headers, body, mode); mode None answers, "reset" drops the connection
# with an RST, "stall" answers nothing until released (the client times out first).
Answer = tuple[int, dict[str, str], bytes, str | None]


class LocalServer:
    """A threaded HTTP server on 127.0.0.1 that hands every request to ``dispatch``."""

    def __init__(self, dispatch: Callable[[str, str, dict[str, str], bytes], Answer]) -> None:
        self.dispatch = dispatch
        self.release = threading.Event()  # set: stalled answers end
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, headers, payload, mode = outer.dispatch(self.command, self.path, dict(self.headers.items()),
                                                                body)
                if mode == "reset":
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.close_connection = True
                    return
                if mode == "stall":
                    outer.release.wait(STALL_SECONDS)
                    self.close_connection = True
                    return
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def release_stalled(self) -> None:
        """End the stalled answers of the last test, and stall the next ones afresh."""
        self.release.set()
        self.release = threading.Event()

    def stop(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()
