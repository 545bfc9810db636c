"""A local stand-in for the AWS Lambda Runtime API, the HTTP interface a runtime client polls for work.

AWS's own runtime interface client (``python -m awslambdaric HANDLER``) talks to it exactly as it talks to
Lambda: its C extension (aws-lambda-cpp) long-polls ``GET /2018-06-01/runtime/invocation/next``, reads the
event from the body and the invocation from the headers, and POSTs the handler's answer to
``/2018-06-01/runtime/invocation/<request id>/response`` (or a failure to ``.../error``); a handler that
cannot even be imported is reported to ``/2018-06-01/runtime/init/error``. The paths, the header names and
the 202 answers are the ones aws-lambda-cpp and awslambdaric's ``lambda_runtime_client.py`` use.

One ``RuntimeAPI`` serves one function (one execution environment): ``invoke(event)`` queues an invocation,
hands it to the runtime's next poll and waits for what the runtime posts back.
"""

from __future__ import annotations

import json
import queue
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PREFIX = "/2018-06-01/runtime"
ACCOUNT = "123456789012"
REGION = "us-east-1"


@dataclass
class Invocation:
    """One invocation: what was handed to the runtime, and what it posted back."""

    request_id: str
    event: bytes
    deadline_ms: int
    function_arn: str
    trace_id: str
    done: threading.Event = field(default_factory=threading.Event)
    kind: str | None = None  # "response" or "error"
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def payload(self) -> Any:
        return json.loads(self.body)


@dataclass
class InitError:
    error_type: str | None
    body: dict[str, Any]


class RuntimeAPI:
    def __init__(self, function_name: str, timeout_seconds: int = 15) -> None:
        self.function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function_name}"
        self.timeout_seconds = timeout_seconds
        self.pending: queue.Queue[Invocation | None] = queue.Queue()
        self.invocations: dict[str, Invocation] = {}
        self.init_errors: list[InitError] = []
        self.polls = 0
        self.protocol_errors: list[str] = []  # requests the real Runtime API would have refused
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        """The value of AWS_LAMBDA_RUNTIME_API."""
        host, port = self._server.server_address[:2]
        return f"{host}:{port}"

    def queue(self, event: dict[str, Any]) -> Invocation:
        invocation = Invocation(
            request_id=str(uuid.uuid4()),
            event=json.dumps(event).encode("utf-8"),
            deadline_ms=int(time.time() * 1000) + self.timeout_seconds * 1000,
            function_arn=self.function_arn,
            # X-Ray's format: Root=1-<epoch seconds in hex>-<96 random bits>;Parent=<64 bits>;Sampled=0
            trace_id=f"Root=1-{int(time.time()):08x}-{secrets.token_hex(12)};Parent={secrets.token_hex(8)};Sampled=0",
        )
        with self._lock:
            self.invocations[invocation.request_id] = invocation
        self.pending.put(invocation)
        return invocation

    def stop(self) -> None:
        self.pending.put(None)  # releases a poll still waiting
        self._server.shutdown()
        self._server.server_close()

    # --- the HTTP side ---------------------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # aws-lambda-cpp gives a POST 100 ms: no delayed ACKs

            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: dict[str, Any] | bytes, headers: dict[str, str] | None = None) -> None:
                payload = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:
                if self.path != f"{PREFIX}/invocation/next":
                    api.protocol_errors.append(f"GET {self.path}")
                    self._reply(404, {"errorType": "InvalidRequest", "errorMessage": self.path})
                    return
                with api._lock:
                    api.polls += 1
                invocation = api.pending.get()  # a long poll, as Lambda's: the runtime waits for work
                if invocation is None:
                    api.pending.put(None)
                    self.close_connection = True
                    return
                self._reply(200, invocation.event, {
                    "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
                    "Lambda-Runtime-Deadline-Ms": str(invocation.deadline_ms),
                    "Lambda-Runtime-Invoked-Function-Arn": invocation.function_arn,
                    "Lambda-Runtime-Trace-Id": invocation.trace_id,
                })

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {name.lower(): value for name, value in self.headers.items()}
                if self.path == f"{PREFIX}/init/error":
                    self._reply(202, {"status": "OK"})
                    api.init_errors.append(InitError(headers.get("lambda-runtime-function-error-type"),
                                                     _json_or_text(body)))
                    return
                parts = self.path.removeprefix(f"{PREFIX}/invocation/").split("/")
                kind = parts[1] if len(parts) == 2 and self.path.startswith(f"{PREFIX}/invocation/") else None
                with api._lock:
                    invocation = api.invocations.get(parts[0])
                if kind not in ("response", "error") or invocation is None or invocation.kind is not None:
                    api.protocol_errors.append(f"POST {self.path}")
                    self._reply(400, {"errorType": "InvalidRequestID", "errorMessage": "unknown or answered"})
                    return
                # Answer first: the runtime's POST times out after 100 ms.
                self._reply(202, {"status": "OK"})
                invocation.kind, invocation.body, invocation.headers = kind, body, headers
                invocation.done.set()

        return Handler


def _json_or_text(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except ValueError:
        return {"text": body.decode("utf-8", "replace")}
    return value if isinstance(value, dict) else {"value": value}
