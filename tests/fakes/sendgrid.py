"""A SendGrid v3 ``mail/send`` stand-in on 127.0.0.1, reached by the real SDK through SENDGRID_API_HOST.

It checks each request the way SendGrid does (bearer key, a message with personalizations, a sender, a
subject and content: otherwise 400 with SendGrid's error shape), accepts it with ``202`` and records the
message, and injects faults on chosen calls: an HTTP error (with or without Retry-After), a malformed
success body, a stalled answer (client timeout) or a connection reset.

A fault is an answer SendGrid gave *instead of* accepting: nothing is recorded as accepted, except for
the malformed success body, which is a 2xx (SendGrid accepted; only the body is not what it sends).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.cloudinary import Fault
from tests.fakes.wire import Answer, LocalServer, Wire

MAIL_PATH = "/v3/mail/send"


@dataclass
class MailRequest:
    """One request as the stand-in saw it."""

    path: str
    authorization: str
    message: dict[str, Any] = field(default_factory=dict)
    status: int = 0
    fault: str | None = None

    @property
    def accepted(self) -> bool:
        return 200 <= self.status < 300

    @property
    def recipients(self) -> tuple[str, ...]:
        """Every To address of the message, sorted: its recipient set."""
        return tuple(sorted(to.get("email", "") for personalization in self.message.get("personalizations", [])
                            for to in personalization.get("to", [])))


class FakeSendGrid:
    def __init__(self, wire: Wire | None = None) -> None:
        self.wire = wire
        self.requests: list[MailRequest] = []
        self._faults: dict[int, Fault] = {}
        self._lock = threading.Lock()
        self._server: LocalServer | None = None

    @property
    def accepted(self) -> list[MailRequest]:
        return [request for request in self.requests if request.accepted]

    def fail_call(self, index: int, fault: Fault) -> None:
        """Fault the ``index``-th request (0-based) counted from now."""
        self._faults[len(self.requests) + index] = fault

    def clear_faults(self) -> None:
        self._faults.clear()

    def start(self) -> str:
        self._server = LocalServer(self.dispatch)
        return self._server.url

    def stop(self) -> None:
        if self._server:
            self._server.stop()

    def dispatch(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        request = MailRequest(path, headers.get("Authorization", ""))
        with self._lock:
            index = len(self.requests)
            self.requests.append(request)
            fault = self._faults.get(index)
        if self.wire is not None:
            wired = self.wire.arrive("sendgrid", "mail/send", is_write=True)
            fault = fault or wired.fault
        try:
            request.message = json.loads(body or b"{}")
        except ValueError:
            request.message = {}
        if fault is not None:
            request.fault = fault.kind
            if fault.kind in ("reset", "stall"):
                return 0, {}, b"", fault.kind
            if fault.kind == "garbage":
                problem = self._problem(method, path, request)
                request.status = 400 if problem else 202
                return request.status, {"Content-Type": "text/html"}, b"<html>upstream proxy says hi</html>", None
            request.status = fault.status
            return fault.status, {"Content-Type": "application/json", **fault.headers}, \
                json.dumps({"errors": [{"message": "injected fault", "field": None, "help": None}]}).encode(), None
        problem = self._problem(method, path, request)
        if problem:
            request.status = 404 if problem == "not found" else 400
            return request.status, {"Content-Type": "application/json"}, \
                json.dumps({"errors": [{"message": problem, "field": None, "help": None}]}).encode(), None
        request.status = 202
        return 202, {"X-Message-Id": f"fake-{index:04d}"}, b"", None

    @staticmethod
    def _problem(method: str, path: str, request: MailRequest) -> str | None:
        """What SendGrid would refuse in this request, or None."""
        if method != "POST" or path != MAIL_PATH:
            return "not found"
        if not request.authorization.startswith("Bearer ") or len(request.authorization) <= len("Bearer "):
            return "authorization required"
        message = request.message
        if not message.get("personalizations") or not request.recipients:
            return "The personalizations field is required and must have at least one personalization."
        if not (message.get("from") or {}).get("email"):
            return "The from object must be provided for every email send."
        if not message.get("subject") or not message.get("content"):
            return "The subject and content are required."
        return None
