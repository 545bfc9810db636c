"""A stand-in for Cloudinary's triggers API (``/v1_1/<cloud>/triggers``) on a real HTTP server on 127.0.0.1.

The real SDK reaches it through ``CLOUDINARY_URL=...?upload_prefix=http://127.0.0.1:PORT``. It keeps the
account's triggers, records every request as sent (method, path, query, JSON body, Basic auth), answers the
``X-FeatureRateLimit-*`` headers Cloudinary sends on Admin API answers (one call spent per request), evaluates a
trigger's filter for ``test`` when a test gives it one, and answers chosen requests with an error instead.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

RESET_HEADER = "Tue, 01 Dec 2026 15:00:00 GMT"


@dataclass
class Sent:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    auth: str

    @property
    def is_write(self) -> bool:
        return self.method in ("POST", "PUT", "DELETE") and not self.path.endswith("/test")


class TriggersAPI:
    def __init__(self, cloud_name: str, api_key: str, api_secret: str) -> None:
        self.cloud_name = cloud_name
        self.credentials = f"{api_key}:{api_secret}"
        self.triggers: dict[str, dict[str, Any]] = {}
        self.filters: dict[str, Callable[[dict[str, Any]], bool]] = {}
        self.sent: list[Sent] = []
        self.remaining: int | None = None  # None: no rate-limit headers
        self.limit = 500
        self.spent_by_others_per_write = 0  # the functions spending the same budget meanwhile
        self.errors: list[tuple[Callable[[Sent], bool], int, Any]] = []  # (which request, status, body)
        self.list_extra: dict[str, Any] = {}  # added to the list answer (e.g. a next_cursor)
        self._next_id = 1
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # --- state and faults -------------------------------------------------------------------------

    def add(self, uri: str, event_type: str, uri_type: str | None = None, trigger_id: str | None = None) -> str:
        trigger_id = trigger_id or self._new_id()
        self.triggers[trigger_id] = {
            "id": trigger_id, "product_environment_id": "pe-1", "uri": uri, "event_type": event_type,
            "uri_type": uri_type or ("poll" if uri.startswith("poll://") else "webhook"),
            "created_at": "2026-11-30T09:00:00Z", "updated_at": "2026-11-30T09:00:00Z"}
        return trigger_id

    def fail(self, status: int, *, method: str | None = None, times: int = 1, body: Any = None,
             path_end: str | None = None) -> None:
        """Answer the next ``times`` requests (of ``method``, ending with ``path_end``) with ``status``."""
        for _ in range(times):
            self.errors.append((lambda sent: (method is None or sent.method == method)
                                and (path_end is None or sent.path.endswith(path_end)), status, body))

    @property
    def writes(self) -> list[Sent]:
        return [sent for sent in self.sent if sent.is_write]

    def _new_id(self) -> str:
        trigger_id = f"trg_{self._next_id:03d}"
        self._next_id += 1
        return trigger_id

    # --- serving ----------------------------------------------------------------------------------

    def start(self) -> str:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                body = json.loads(raw) if raw else None
                auth = self.headers.get("Authorization", "")
                sent = Sent(self.command, parts.path, parse_qs(parts.query), body, auth)
                status, answer = fake._answer(sent)
                payload = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
                if fake.remaining is not None:
                    self.send_header("X-FeatureRateLimit-Limit", str(fake.limit))
                    self.send_header("X-FeatureRateLimit-Remaining", str(fake.remaining))
                    self.send_header("X-FeatureRateLimit-Reset", RESET_HEADER)
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return f"http://127.0.0.1:{self._server.server_port}"

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    def _answer(self, sent: Sent) -> tuple[int, Any]:
        with self._lock:
            self.sent.append(sent)
            if self.remaining is not None:
                self.remaining = max(0, self.remaining - 1 - (self.spent_by_others_per_write if sent.is_write else 0))
            if base64.b64decode(sent.auth.removeprefix("Basic ")).decode() != self.credentials:
                return 401, {"error": {"message": "Invalid Signature or api_key"}}
            for index, (matches, status, body) in enumerate(self.errors):
                if matches(sent):
                    del self.errors[index]
                    return status, body if body is not None else {"error": {"message": f"Injected {status}"}}
            prefix = f"/v1_1/{self.cloud_name}/triggers"
            if not sent.path.startswith(prefix):
                return 404, {"error": {"message": f"No route {sent.path}"}}
            rest = [part for part in sent.path[len(prefix):].split("/") if part]
            if sent.method == "GET" and not rest:
                items = [trigger for trigger in self.triggers.values()
                         if not sent.query.get("event_type") or trigger["event_type"] == sent.query["event_type"][0]]
                return 200, {"triggers": items, "total": len(items), **self.list_extra}
            if sent.method == "POST" and not rest:
                trigger_id = self.add(sent.body["uri"], sent.body["event_type"], sent.body.get("uri_type"))
                return 200, self.triggers[trigger_id]
            if not rest or rest[0] not in self.triggers:
                return 404, {"error": {"message": "Trigger not found"}}
            trigger = self.triggers[rest[0]]
            if sent.method == "PUT" and len(rest) == 1:
                trigger["uri"] = sent.body["new_uri"]
                return 200, trigger
            if sent.method == "DELETE" and len(rest) == 1:
                del self.triggers[rest[0]]
                return 200, {"message": "ok"}
            if sent.method == "POST" and rest[1:] == ["test"]:
                check = self.filters.get(rest[0])
                result = check(sent.body["sample_data"]) if check else True
                return 200, {"trigger_id": rest[0], "filter_present": check is not None, "filter_result": result}
            return 404, {"error": {"message": f"No route {sent.method} {sent.path}"}}
