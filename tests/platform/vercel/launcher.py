"""The platform's side of a Vercel Python function, as vercel-runtime's ``vc_init`` expects it (standard library).

How a function built by @vercel/python runs (vercel-runtime 0.23.2, ``vercel_runtime/vc_init.py``):
- the Lambda's handler is ``vc__handler__python.vc_handler``: importing ``vc__handler__python`` (the trampoline
  the builder wrote) sets ``__VC_HANDLER_*`` variables, puts ``_vendor`` (the bundled packages) on sys.path and
  imports ``vercel_runtime.vc_init``;
- when ``VERCEL_IPC_PATH`` is set (Vercel's current runtime), vc_init connects to that Unix socket, imports the
  entrypoint (``api/<name>.py``), finds ``app`` (WSGI: two positional parameters), serves it with an HTTP server
  on 127.0.0.1 at a free port, sends ``{"type": "server-started", "payload": {"httpPort": ...}}`` and serves
  forever (the import never returns). Messages are JSON objects, each followed by a NUL byte;
- the platform then forwards each request to that port, adding ``x-vercel-internal-invocation-id`` and
  ``x-vercel-internal-request-id`` (vc_init removes them before the app sees the request); per request vc_init
  sends ``handler-started``, the request's output as ``log`` messages (base64; stdout, stderr and logging are
  redirected) and ``end``.
  (Without ``VERCEL_IPC_PATH``, the legacy path: ``vc_handler(event, context)`` proxies a JSON event to the same
  server running in a thread. Not used here.)

``Launcher`` is that platform side: it starts the interpreter the way a Lambda imports its handler module, from
the laid-out task directory, with the Lambda's environment and the function's settings, and forwards requests
the way Vercel's proxy does (``x-forwarded-*`` headers, the public host).
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

PUBLIC_HOST = "cloudinary-webhooks.vercel.app"  # the deployment's public host, as Vercel's proxy forwards it


class IpcServer:
    """The Unix socket of ``VERCEL_IPC_PATH``: accepts vc_init's connection and collects its messages."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.messages: list[dict[str, Any]] = []
        self.changed = threading.Condition()
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._socket.bind(str(path))
        self._socket.listen(1)
        self._thread = threading.Thread(target=self._serve, name=f"ipc {path.name}", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            connection, _ = self._socket.accept()
        except OSError:  # closed before vc_init connected
            return
        buffer = b""
        with connection:
            while chunk := connection.recv(65536):
                buffer += chunk
                *complete, buffer = buffer.split(b"\0")
                with self.changed:
                    self.messages.extend(json.loads(raw) for raw in complete if raw)
                    self.changed.notify_all()

    def wait_for(self, predicate, timeout: float, alive=lambda: True) -> dict[str, Any] | None:
        """The first message matching ``predicate``, waiting up to ``timeout`` s while ``alive()``."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                found = next((message for message in self.messages if predicate(message)), None)
                if found is not None or time.monotonic() > deadline or not alive():
                    return found
                self.changed.wait(0.05)

    def close(self) -> None:
        self._socket.close()
        self.path.unlink(missing_ok=True)


class Response:
    def __init__(self, status: int, headers: http.client.HTTPMessage, body: bytes, invocation_id: str) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.invocation_id = invocation_id

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"Response({self.status}, {self.body[:300]!r})"


class Launcher:
    """One function: its interpreter started as Vercel's runtime starts it, and requests forwarded to it."""

    def __init__(self, name: str, task_dir: Path, function: dict[str, Any], python: Path, settings: dict[str, str],
                 scratch: Path) -> None:
        self.name = name
        self.task_dir = task_dir
        self.function = function
        self.python = python
        self.settings = settings
        self.scratch = scratch
        self.ipc: IpcServer | None = None
        self.process: subprocess.Popen | None = None
        self.port: int | None = None
        self._next_request_id = 0

    def environment(self) -> dict[str, str]:
        tmp = self.scratch / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        return {
            # what the runtime itself provides
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "TZ": ":UTC",
            "HOME": str(tmp),
            "TMPDIR": str(tmp),
            "LAMBDA_TASK_ROOT": str(self.task_dir),
            "VERCEL": "1",
            "VERCEL_ENV": "production",
            "VERCEL_REGION": "iad1",
            "VERCEL_URL": PUBLIC_HOST,
            # the Lambda's environment, as @vercel/python's build() set it (PYTHONPATH=_vendor, ...)
            **self.function["environment"],
            # the project's environment variables
            **self.settings,
            **({"VERCEL_IPC_PATH": str(self.ipc.path)} if self.ipc else {}),
        }

    def start(self) -> None:
        self.task_state = tree_state(self.task_dir)
        self.scratch.mkdir(parents=True, exist_ok=True)
        # A short path: Unix socket paths are limited to ~107 bytes.
        self.ipc = IpcServer(Path(f"/tmp/vc-ipc-{uuid.uuid4().hex[:12]}.sock"))
        module = self.function["handler"].rsplit(".", 1)[0]  # "vc__handler__python.vc_handler"
        self.stdout = (self.scratch / "stdout.log").open("wb")
        self.stderr = (self.scratch / "stderr.log").open("wb")
        self.process = subprocess.Popen(
            [str(self.python), "-c", f"import importlib; importlib.import_module({module!r})"],
            cwd=self.task_dir, env=self.environment(), stdin=subprocess.DEVNULL, stdout=self.stdout,
            stderr=self.stderr)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_ready(self, timeout: float) -> None:
        started = self.ipc.wait_for(lambda message: message.get("type") in ("server-started", "unrecoverable-error"),
                                    timeout, self.alive)
        if started is None or started["type"] != "server-started":
            raise LaunchFailed(self, started)
        self.port = int(started["payload"]["httpPort"])

    def request(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None,
                timeout: float = 30) -> Response:
        """Forward a request as Vercel's proxy does, and wait for vc_init's ``end`` message of it."""
        self._next_request_id += 1
        invocation_id = str(uuid.uuid4())
        forwarded = {
            "host": PUBLIC_HOST,
            "x-forwarded-host": PUBLIC_HOST,
            "x-forwarded-proto": "https",
            "x-forwarded-for": "54.242.9.131",
            "x-real-ip": "54.242.9.131",
            "x-vercel-id": f"iad1::{uuid.uuid4().hex[:20]}",
            "x-vercel-deployment-url": PUBLIC_HOST,
            "x-vercel-internal-invocation-id": invocation_id,
            "x-vercel-internal-request-id": str(self._next_request_id),
            **(headers or {}),
        }
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request(method, path, body=body or None, headers=forwarded)
            answer = connection.getresponse()
            response = Response(answer.status, answer.headers, answer.read(), invocation_id)
        finally:
            connection.close()
        ended = self.ipc.wait_for(lambda m: m.get("type") == "end" and _invocation(m) == invocation_id, 10, self.alive)
        if ended is None:
            raise AssertionError(f"{self.name}: vc_init sent no 'end' message for invocation {invocation_id}")
        return response

    def invoke_event(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
        """The legacy path, in a process of its own: no ``VERCEL_IPC_PATH``, so vc_init runs its server in a
        thread and ``vc_handler(event, context)`` proxies a JSON event to it. Returns what vc_handler returned."""
        work = self.scratch / f"event-{uuid.uuid4().hex[:8]}"
        work.mkdir()
        payload = {"method": method, "path": path, "headers": {"host": PUBLIC_HOST, "x-forwarded-proto": "https",
                                                                "x-forwarded-host": PUBLIC_HOST, **headers},
                   "body": base64.b64encode(body).decode(), "encoding": "base64"}
        (work / "event.json").write_text(json.dumps({"body": json.dumps(payload)}))
        module, _, attribute = self.function["handler"].rpartition(".")
        script = (f"import importlib, json, sys; handler = getattr(importlib.import_module({module!r}), "
                  f"{attribute!r}); event = json.load(open(sys.argv[1])); "
                  "open(sys.argv[2], 'w').write(json.dumps(handler(event, None)))")
        environment = {key: value for key, value in self.environment().items() if key != "VERCEL_IPC_PATH"}
        completed = subprocess.run([str(self.python), "-c", script, str(work / "event.json"), str(work / "out.json")],
                                   cwd=self.task_dir, env=environment, capture_output=True, text=True, timeout=60)
        if completed.returncode != 0 or not (work / "out.json").exists():
            raise AssertionError(f"{self.name}: vc_handler failed ({completed.returncode}):\n{completed.stderr}")
        return json.loads((work / "out.json").read_text())

    def messages(self, invocation_id: str | None = None) -> list[dict[str, Any]]:
        with self.ipc.changed:
            return [m for m in self.ipc.messages if invocation_id is None or _invocation(m) == invocation_id]

    def logs(self, invocation_id: str | None = None) -> str:
        """What the function printed or logged, as vc_init forwarded it (base64 in ``log`` messages)."""
        return "".join(base64.b64decode(m["payload"]["message"]).decode("utf-8", "replace")
                       for m in self.messages(invocation_id) if m.get("type") == "log")

    def written(self) -> list[str]:
        """Files under the task root created or changed since the start: on Vercel, /var/task is read-only."""
        now = tree_state(self.task_dir)
        return sorted(path for path, state in now.items() if self.task_state.get(path) != state)

    def output(self) -> str:
        """What reached the process's own stdout and stderr (before vc_init took them over)."""
        for stream in (self.stdout, self.stderr):
            stream.flush()
        return "".join((self.scratch / name).read_text("utf-8", "replace") for name in ("stdout.log", "stderr.log"))

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        for stream in (getattr(self, "stdout", None), getattr(self, "stderr", None)):
            if stream is not None:
                stream.close()
        if self.ipc is not None:
            self.ipc.close()


def tree_state(root: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime) of every file under ``root``, through the symlinks the layout is made of."""
    state = {}
    for directory, _, names in os.walk(root, followlinks=True):
        for name in names:
            path = os.path.join(directory, name)
            with contextlib.suppress(FileNotFoundError):
                info = os.stat(path)
                state[os.path.relpath(path, root)] = (info.st_size, info.st_mtime_ns)
    return state


def _invocation(message: dict[str, Any]) -> str | None:
    context = (message.get("payload") or {}).get("context") or {}
    return context.get("invocationId")


class LaunchFailed(Exception):
    def __init__(self, launcher: Launcher, message: dict[str, Any] | None) -> None:
        code = launcher.process.poll() if launcher.process else None
        reason = (message or {}).get("payload", {}).get("message") if message else None
        super().__init__(
            f"{launcher.name}: vc_init did not report server-started (exit code {code}).\n"
            f"unrecoverable-error: {reason}\nlogs: {launcher.logs()}\noutput: {launcher.output()}")


def wait_all(launchers: list[Launcher], timeout: float) -> None:
    """Start-up in parallel: wait until every launcher is ready (or one failed)."""
    deadline = time.monotonic() + timeout
    for launcher in launchers:
        launcher.wait_ready(max(0.1, deadline - time.monotonic()))

