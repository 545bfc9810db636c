"""A stand-in for Cloudinary's poll notifications API (pycloudinary 1.46's ``api.notifications`` and
``api.ack_notifications``), on a real HTTP server on 127.0.0.1 that the real SDK reaches through
``CLOUDINARY_URL=...?upload_prefix=http://127.0.0.1:PORT``:

    GET  /v2/notifications/<cloud>/messages?channel=...&max_messages=...&wait_seconds=...&visibility_timeout=...
         -> {"messages": [...]} ; {} (no "messages" key) when nothing is visible
    POST /v2/notifications/<cloud>/messages/ack  {"receipt_handles": [...]}
         -> {"results": [{"receipt_handle": ..., "status": "acked" | "not_found"}]}
    POST /v1_1/<cloud>/image/tags   (the Upload API call hello_tag makes) -> {"public_ids": [...]}

Like the real service: a claimed message is invisible for ``visibility_timeout`` seconds, then redelivered with a
new receipt handle; only the current handle acknowledges it. Time is the stand-in's own clock (``advance``), so
no test waits for a visibility timeout. It never holds a long poll: an empty poll answers at once. Every request
is recorded (method, path, query, JSON body, Authorization) for wire-level assertions, and faults can be queued
per operation: an HTTP status with Cloudinary's error body, or a connection reset.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import struct
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def signed_message(payload: Any, secret: str, *, timestamp: int | None = None, algorithm: str = "sha1",
                   raw: bytes | None = None) -> dict[str, Any]:
    """A message as the service returns it (without its receipt handle): ``signed_payload`` is the byte-exact
    signed body, base64url without padding, exactly as pycloudinary's test suite builds it."""
    body = raw if raw is not None else json.dumps(payload, separators=(",", ":")).encode("utf-8")
    signed_at = str(int(time.time()) if timestamp is None else timestamp)
    digest = {"sha1": hashlib.sha1, "sha256": hashlib.sha256}[algorithm]
    return {
        "batch_id": "batch_0001",
        "payload": payload if payload is not None else _parsed(body),
        "signed_payload": base64.urlsafe_b64encode(body).decode("ascii").rstrip("="),
        "signature": digest(body + signed_at.encode() + secret.encode()).hexdigest(),
        "timestamp": signed_at,
    }


def _parsed(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")


@dataclass
class Buffered:
    number: int
    channel: str
    message: dict[str, Any]
    invisible_until: float = 0.0
    receipt_handle: str | None = None
    deliveries: int = 0


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    authorization: str
    fault: str | None = None


@dataclass
class Fault:
    status: int = 500
    reset: bool = False
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


class FakeNotifications:
    def __init__(self, cloud_name: str, api_key: str, api_secret: str) -> None:
        self.cloud_name = cloud_name
        self.authorization = "Basic " + base64.b64encode(f"{api_key}:{api_secret}".encode()).decode()
        self.now = 1_000_000.0  # the stand-in's clock (seconds): claims expire against it
        self.buffered: list[Buffered] = []
        self.seen: list[Seen] = []
        self.tagged: list[tuple[str, str]] = []  # (tag, public_id) of each Upload API tags call
        self.acked: list[int] = []  # numbers of the messages acknowledged, in order
        self._faults: dict[str, list[Fault]] = {"receive": [], "ack": [], "tags": []}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._numbers = 0

    # --- what a test does ---

    def publish(self, channel: str, message: dict[str, Any]) -> Buffered:
        with self._lock:
            self._numbers += 1
            buffered = Buffered(self._numbers, channel, dict(message))
            self.buffered.append(buffered)
        return buffered

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds

    def fail_next(self, operation: str, *faults: Fault) -> None:
        """The next calls of ``operation`` ("receive", "ack", "tags") answer these faults, one each."""
        with self._lock:
            self._faults[operation].extend(faults)

    def requests(self, operation: str) -> list[Seen]:
        suffix = {"receive": "/messages", "ack": "/messages/ack", "tags": "/tags"}[operation]
        return [seen for seen in self.seen if seen.path.endswith(suffix)]

    def pending(self, channel: str | None = None) -> list[Buffered]:
        return [b for b in self.buffered if channel is None or b.channel == channel]

    # --- the service ---

    def _receive(self, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        channel = query.get("channel")
        if bool(channel) == bool(query.get("batch_id")):
            return 400, {"error": {"message": "Supply exactly one of channel or batch_id"}}
        limit = int(query.get("max_messages", "10"))
        visibility = int(query.get("visibility_timeout", "30"))
        claimed = []
        for buffered in self.buffered:
            if len(claimed) >= limit:
                break
            if buffered.channel != channel or buffered.invisible_until > self.now:
                continue
            buffered.deliveries += 1
            buffered.receipt_handle = f"rh-{buffered.number}-{buffered.deliveries}"
            buffered.invisible_until = self.now + visibility
            claimed.append({**buffered.message, "receipt_handle": buffered.receipt_handle})
        return 200, ({"messages": claimed} if claimed else {})

    def _ack(self, body: Any) -> tuple[int, dict[str, Any]]:
        handles = body.get("receipt_handles") if isinstance(body, dict) else None
        if not isinstance(handles, list) or not 1 <= len(handles) <= 100:
            return 400, {"error": {"message": "receipt_handles must be a list of 1 to 100 handles"}}
        results = []
        for handle in handles:
            found = next((b for b in self.buffered if b.receipt_handle == handle), None)
            if found is None:
                results.append({"receipt_handle": handle, "status": "not_found"})
                continue
            self.buffered.remove(found)
            self.acked.append(found.number)
            results.append({"receipt_handle": handle, "status": "acked"})
        return 200, {"results": results}

    def dispatch(self, method: str, target: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any, bool]:
        parsed = urllib.parse.urlsplit(target)
        query = dict(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True))
        path = parsed.path
        operation = ("ack" if path.endswith("/messages/ack") else "receive" if path.endswith("/messages")
                     else "tags" if path.endswith("/tags") else "other")
        content = None
        if body and headers.get("content-type", "").startswith("application/json"):
            content = json.loads(body)
        elif body:
            content = body
        with self._lock:
            seen = Seen(method, path, query, content, headers.get("authorization", ""))
            self.seen.append(seen)
            faults = self._faults.get(operation)
            if faults:
                fault = faults.pop(0)
                seen.fault = "reset" if fault.reset else str(fault.status)
                if fault.reset:
                    return 0, None, True
                answer = fault.body if fault.body is not None else {"error": {"message": "injected fault"}}
                return fault.status, answer, False
            # The Admin and v2 APIs authenticate with HTTP Basic; the Upload API signs its form fields instead.
            if operation != "tags" and seen.authorization != self.authorization:
                return 401, {"error": {"message": "Invalid api_key or api_secret"}}, False
            if operation == "receive" and method == "GET" and path == f"/v2/notifications/{self.cloud_name}/messages":
                status, answer = self._receive(query)
            elif operation == "ack" and method == "POST" and path.startswith(f"/v2/notifications/{self.cloud_name}/"):
                status, answer = self._ack(content)
            elif operation == "tags" and method == "POST":
                status, answer = self._tags(body, headers)
            else:
                status, answer = 404, {"error": {"message": f"no route {method} {path}"}}
        return status, answer, False

    def _tags(self, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        from werkzeug.test import EnvironBuilder
        from werkzeug.wrappers import Request

        environ = EnvironBuilder(method="POST", data=body, headers={"Content-Type": headers["content-type"]})
        form = Request(environ.get_environ()).form
        tag = form.get("tag", "")
        public_ids = form.getlist("public_ids[]")
        for public_id in public_ids:
            self.tagged.append((tag, public_id))
        return 200, {"public_ids": public_ids}

    # --- the HTTP server ---

    def start(self) -> str:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {name.lower(): value for name, value in self.headers.items()}
                status, answer, reset = fake.dispatch(self.command, self.path, body, headers)
                if reset:  # RST instead of an answer: a dropped connection, as the client sees it
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.close_connection = True
                    return
                payload = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
