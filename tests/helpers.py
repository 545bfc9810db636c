"""Helpers for tests: signed requests and events exactly as Cloudinary sends them, samples, and reading
what the SDKs sent to the local test servers."""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path
from typing import Any

from shared import verify
from shared.events import Headers, Request

ROOT = Path(__file__).resolve().parent.parent
SECRET = "test-api-secret-Zx9"
API_KEY = "614335564976464"
CLOUD_NAME = "demo-cloud"


def sample(function: str, name: str) -> bytes:
    """The raw bytes of functions/<function>/samples/<name>.json."""
    return (ROOT / "functions" / function / "samples" / f"{name}.json").read_bytes()


def to_body(payload: Any) -> bytes:
    if isinstance(payload, bytes):
        return payload
    return json.dumps(payload).encode("utf-8")


def signed_request(payload: Any, *, secret: str = SECRET, timestamp: int | None = None,
                   algorithm: str = "sha1", method: str = "POST", path: str = "/api/test",
                   extra_headers: dict[str, str] | None = None, host: str | None = "hooks.example.com") -> Request:
    """A Request signed exactly as Cloudinary signs a notification."""
    body = to_body(payload)
    headers = verify.signed_headers(body, secret, timestamp=timestamp or int(time.time()), algorithm=algorithm)
    headers.update(extra_headers or {})
    return Request(method=method, path=path, headers=Headers(headers.items()), body=body, host=host)


def function_url_event(payload: Any, *, secret: str = SECRET, timestamp: int | None = None,
                       base64_body: bool = False, path: str = "/") -> dict[str, Any]:
    """An AWS Lambda Function URL (payload format 2.0) event carrying a signed notification."""
    body = to_body(payload)
    headers = {k.lower(): v for k, v in
               verify.signed_headers(body, secret, timestamp=timestamp or int(time.time())).items()}
    return {
        "version": "2.0",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {**headers, "host": "abc123.lambda-url.us-east-1.on.aws", "user-agent": "Cloudinary"},
        "requestContext": {"domainName": "abc123.lambda-url.us-east-1.on.aws",
                           "http": {"method": "POST", "path": path, "protocol": "HTTP/1.1",
                                    "sourceIp": "54.242.9.131", "userAgent": "Cloudinary"}},
        "body": base64.b64encode(body).decode() if base64_body else body.decode("utf-8"),
        "isBase64Encoded": base64_body,
    }


def answer(response) -> tuple[int, dict[str, Any]]:
    """(status, JSON body) of a shared.events.Response."""
    return response.status, response.body


def form_fields(request) -> dict[str, Any]:
    """The form fields of a request the Cloudinary SDK sent (multipart for the Upload API, urlencoded
    for the Admin API), with `key[]` lists collected."""
    fields: dict[str, Any] = {}
    for key in request.form:
        values = request.form.getlist(key)
        fields[key] = values if key.endswith("[]") else values[0]
    return fields



def wait_until_answered(httpserver, expected: int = 1, seconds: float = 5.0) -> None:
    """After a client timeout, let the test server finish the abandoned request, so that it is not logged
    into the next test's server log (bounded: gives up after ``seconds``)."""
    deadline = time.monotonic() + seconds
    while len(httpserver.log) < expected and time.monotonic() < deadline:
        time.sleep(0.01)


def answers_too_late(release, body: str = "{}", status: int = 200, content_type: str = "application/json"):
    """A pytest-httpserver handler that answers only once ``release`` is set (at most 2 s later): the
    client under test gives up first, as on a Cloudinary or SendGrid timeout. Set ``release`` in a
    ``finally`` and then ``wait_until_answered``."""

    def handler(request):
        from werkzeug import Response

        release.wait(2)
        return Response(body, status=status, content_type=content_type)

    return handler


def in_a_fresh_process(code: str, env: dict[str, str] | None = None) -> Any:
    """Run ``code`` in a fresh interpreter (a cold start: nothing imported yet) in the repository, with PATH and
    ``env`` only; the JSON its last line of output prints."""
    import subprocess
    import sys

    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                               check=False, cwd=str(ROOT), env={"PATH": os.environ.get("PATH", ""), **(env or {})})
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1])


def at_once_in_fresh_processes(setup: str, work: str, *, env: dict[str, str] | None = None, threads: int = 8,
                               processes: int = 3) -> list[list[str]]:
    """Run ``work`` (a Python expression) in ``threads`` threads started together, after ``setup`` (statements),
    in each of ``processes`` fresh interpreters (a cold start each, where imports race). For each process: the
    distinct results (``str`` of each value, or the name of the exception it raised), sorted."""
    code = (f"import json, threading\n{setup}\nstart = threading.Barrier({threads}); results = []\n"
            "def run():\n"
            "    start.wait()\n"
            "    try:\n"
            f"        results.append(str({work}))\n"
            "    except Exception as error:\n"
            "        results.append(type(error).__name__)\n"
            f"workers = [threading.Thread(target=run) for _ in range({threads})]\n"
            "[worker.start() for worker in workers]; [worker.join() for worker in workers]\n"
            "print(json.dumps(sorted(set(results))))")
    return [in_a_fresh_process(code, env) for _ in range(processes)]
