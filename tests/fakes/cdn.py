"""Cloudinary's delivery CDN (res.cloudinary.com) on 127.0.0.1, for the image face_tagging fetches.

The function builds its signed delivery URL with the SDK, so the URL reaches this server the way a private
CDN's does: ``CLOUDINARY_URL=...&secure_distribution=127.0.0.1:PORT`` (the SDK's own setting). The SDK makes
that an https URL; ``FACE_TAGGING_ALLOW_HTTP_LOOPBACK=1`` (a test-only setting, refused on a serverless
platform) lets the function fetch a loopback host over plain http. The function's other guards stay as they
are: only the host the SDK delivers from, no redirects followed.

It records every request (path and headers) and answers what the test set (``serve``), or a fault on a
chosen request: a status (with headers), a stalled answer (the client's read timeout) or a connection reset.
Reporting each request to a ``Wire`` lets the fault suites number it among the other services' calls.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from tests.fakes.cloudinary import Fault
from tests.fakes.wire import Answer, LocalServer, Wire

LOOPBACK_VARIABLE = "FACE_TAGGING_ALLOW_HTTP_LOOPBACK"


@dataclass
class CDNRequest:
    method: str
    path: str  # as sent: the signature, transformation, version and public ID of the delivery URL
    headers: dict[str, str] = field(default_factory=dict)
    fault: str | None = None


class FakeCDN:
    def __init__(self, wire: Wire | None = None) -> None:
        self.wire = wire
        self.requests: list[CDNRequest] = []
        self._answer: tuple[int, dict[str, str], bytes] = (404, {"X-Cld-Error": "Resource not found"}, b"")
        self._routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
        self._faults: dict[int, Fault] = {}
        self._lock = threading.Lock()
        self._server: LocalServer | None = None

    # --- what it answers ---

    def serve(self, body: bytes, status: int = 200, headers: dict[str, str] | None = None,
              content_type: str = "image/jpeg") -> None:
        """Answer every delivery URL with this (until told otherwise)."""
        self._answer = (status, {"Content-Type": content_type, **(headers or {})}, body)

    def route(self, path: str, body: bytes, status: int = 200, content_type: str = "image/jpeg") -> None:
        """Answer this one path differently (e.g. where a redirect points, to see that it is not followed)."""
        self._routes[path] = (status, {"Content-Type": content_type}, body)

    def fail_call(self, index: int, fault: Fault) -> None:
        """Fault the ``index``-th request (0-based) counted from now."""
        self._faults[len(self.requests) + index] = fault

    def requested(self, path: str) -> int:
        return sum(1 for request in self.requests if request.path == path)

    def reset(self, wire: Wire | None = None) -> None:
        """A clean slate for the next test, on the same server."""
        with self._lock:
            self.wire = wire
            self.requests = []
            self._faults = {}
            self._routes = {}
            self._answer = (404, {"X-Cld-Error": "Resource not found"}, b"")
        if self._server:
            self._server.release_stalled()

    # --- the server ---

    def start(self) -> str:
        """Start serving; returns ``host:port``, the value of the SDK's ``secure_distribution``."""
        self._server = LocalServer(self.dispatch)
        return self._server.url.removeprefix("http://")

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        return self._server.url

    def stop(self) -> None:
        if self._server:
            self._server.stop()

    def dispatch(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        request = CDNRequest(method, path, headers)
        with self._lock:
            index = len(self.requests)
            self.requests.append(request)
            fault = self._faults.get(index)
            wire = self.wire
        if wire is not None:
            fault = fault or wire.arrive("cdn", method, is_write=False).fault
        if fault is not None:
            request.fault = fault.kind
            if fault.kind in ("reset", "stall"):
                return 0, {}, b"", fault.kind
            return fault.status, {"X-Cld-Error": "injected fault", **fault.headers}, b"", None
        status, answer_headers, payload = self._routes.get(path, self._answer)
        return status, dict(answer_headers), payload, None
