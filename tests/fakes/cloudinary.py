"""A stateful stand-in for Cloudinary's Upload and Admin APIs, on a real HTTP server on 127.0.0.1.

The real ``cloudinary`` SDK talks to it (``CLOUDINARY_URL=...?upload_prefix=http://127.0.0.1:PORT``). It keeps
assets (tags, moderation, access control), answers the calls the functions make the way Cloudinary does,
records every request, and injects faults on chosen calls: HTTP errors (with or without Retry-After), a
malformed success body, a stalled answer (client timeout), a connection reset, or a scripted answer (what a
misbehaving Cloudinary, or one changed by someone else meanwhile, might say).

Used by the functions' wire-level tests (the ``fake_cloudinary`` fixture of tests/conftest.py), the fault
suites and the API-call counts of the benchmarks. Not a complete Cloudinary: it knows the calls this
project's functions make, and answers anything else with 501 so a test notices.
"""

from __future__ import annotations

import copy
import json
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

UPLOAD_ACTIONS = {"tags", "rename", "destroy", "explicit", "context"}


@dataclass
class Call:
    """One request as the fake saw it."""

    method: str
    path: str
    api: str  # "upload" or "admin"
    action: str  # e.g. "tags", "rename", "resource", "update", "delete_resources", "moderation_list"
    params: dict[str, Any]
    fault: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    raw_path: str = ""  # as sent, percent-escapes and query string included

    @property
    def route(self) -> tuple[str, str]:
        """(method, path): what tests compare the order of calls on."""
        return self.method, self.path

    @property
    def is_write(self) -> bool:
        return self.api == "upload" or self.method in ("POST", "PUT", "DELETE")


@dataclass
class Fault:
    kind: str  # "status", "garbage", "stall", "reset"
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    # "status" answers Cloudinary's JSON error body, unless this says what to answer instead: a dict or list
    # is sent as JSON (e.g. ``Fault("status", 200, body={"result": "error"})``), a str as text/html
    body: Any = None


def _asset_key(resource_type: str, delivery_type: str, public_id: str) -> tuple[str, str, str]:
    return resource_type, delivery_type, public_id


class FakeCloudinary:
    def __init__(self, cloud_name: str) -> None:
        self.cloud_name = cloud_name
        self.assets: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.calls: list[Call] = []
        self._faults: list[tuple[Callable[[Call, int], bool], Fault]] = []
        self._lock = threading.Lock()
        self.release = threading.Event()  # set at shutdown: stalled answers end
        self._server: ThreadingHTTPServer | None = None

    # --- state -----------------------------------------------------------------------------------

    def add_asset(self, public_id: str, *, resource_type: str = "image", type: str = "upload",
                  tags: list[str] | None = None, moderation: list[dict[str, str]] | None = None,
                  access_control: list[dict[str, str]] | None = None, **extra: Any) -> dict[str, Any]:
        asset = {
            "asset_id": f"asset-{len(self.assets) + 1:04d}", "public_id": public_id,
            "resource_type": resource_type, "type": type, "version": 1700000000 + len(self.assets),
            "format": "mp4" if resource_type == "video" else "jpg", "bytes": 1024,
            "tags": list(tags or []), "moderation": copy.deepcopy(moderation or []),
            **({"access_control": copy.deepcopy(access_control)} if access_control is not None else {}),
            **extra,
        }
        if moderation:
            asset["moderation_status"] = moderation[-1]["status"]
        self.assets[_asset_key(resource_type, type, public_id)] = asset
        self._refresh_urls(asset)
        return asset

    def asset(self, public_id: str, *, resource_type: str = "image", type: str = "upload") -> dict[str, Any] | None:
        return self.assets.get(_asset_key(resource_type, type, public_id))

    def _refresh_urls(self, asset: dict[str, Any]) -> None:
        path = f"{asset['resource_type']}/{asset['type']}/v{asset['version']}/{asset['public_id']}.{asset['format']}"
        asset["url"] = f"http://res.cloudinary.com/{self.cloud_name}/{path}"
        asset["secure_url"] = f"https://res.cloudinary.com/{self.cloud_name}/{path}"

    # --- faults and counts -----------------------------------------------------------------------

    def fail(self, when: Callable[[Call, int], bool], fault: Fault) -> None:
        """Answer the calls matching ``when(call, index)`` with ``fault`` instead of the real answer."""
        self._faults.append((when, fault))

    def fail_call(self, index: int, fault: Fault) -> None:
        """Fault the ``index``-th call (0-based) counted from now."""
        start = len(self.calls)
        self.fail(lambda call, position: position == start + index, fault)

    def fail_once(self, when: Callable[[Call, int], bool], fault: Fault) -> None:
        """Answer the first call from now matching ``when(call, index)`` with ``fault``; later ones normally."""
        start, chosen = len(self.calls), []

        def first(call: Call, index: int) -> bool:
            if not chosen and index >= start and when(call, index):
                chosen.append(index)
            return chosen == [index]

        self.fail(first, fault)

    def clear_faults(self) -> None:
        self._faults.clear()

    @property
    def writes(self) -> list[Call]:
        return [call for call in self.calls if call.is_write and call.fault is None]

    def count(self, api: str | None = None) -> int:
        return sum(1 for call in self.calls if api is None or call.api == api)

    @property
    def routes(self) -> list[tuple[str, str]]:
        """(method, path) of every call so far, in order."""
        return [call.route for call in self.calls]

    # --- the HTTP server -------------------------------------------------------------------------

    def start(self) -> str:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else every answer waits out a 40 ms delayed ACK

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                builder = EnvironBuilder(method=self.command, path=self.path, data=body,
                                         headers=dict(self.headers.items()), environ_overrides={"RAW_URI": self.path})
                request = Request(builder.get_environ())
                status, headers, payload, fault = fake.dispatch(request)
                if fault == "reset":
                    # RST instead of an answer: what a dropped connection looks like to the client
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.close_connection = True
                    return
                if fault == "stall":
                    fake.release.wait(10)
                    self.close_connection = True
                    return
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        self.release.set()
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    # --- routing ---------------------------------------------------------------------------------

    def dispatch(self, request: Request) -> tuple[int, dict[str, str], bytes, str | None]:
        call = self._classify(request)
        with self._lock:
            index = len(self.calls)
            self.calls.append(call)
            fault = next((f for when, f in self._faults if when(call, index)), None)
        if fault is not None:
            call.fault = fault.kind
            if fault.kind in ("reset", "stall"):
                return 0, {}, b"", fault.kind
            if fault.kind == "garbage":
                return 200, {"Content-Type": "text/html"}, b"<html>upstream proxy error</html>", None
            if isinstance(fault.body, str):
                return fault.status, {"Content-Type": "text/html", **fault.headers}, fault.body.encode(), None
            body = {"error": {"message": "injected fault"}} if fault.body is None else fault.body
            return fault.status, fault.headers, json.dumps(body).encode(), None
        try:
            with self._lock:
                status, answer = self._apply(call)
        except KeyError as missing:
            status, answer = 400, {"error": {"message": f"Missing required parameter - {missing.args[0]}"}}
        return status, {}, json.dumps(answer).encode(), None

    def _classify(self, request: Request) -> Call:
        path = request.path  # percent-escapes decoded: public IDs with spaces or slashes
        params: dict[str, Any] = {}
        for source in (request.args, request.form):
            for key in source:
                values = source.getlist(key)
                params[key] = values if key.endswith("[]") else values[0]
        if request.is_json:  # the Admin API's update sends a JSON body
            params.update(request.get_json(silent=True) or {})
        prefix = f"/v1_1/{self.cloud_name}/"
        rest = path[len(prefix):] if path.startswith(prefix) else path
        parts = rest.split("/")
        if parts[0] == "resources":
            if len(parts) >= 5 and parts[2] == "moderations":
                action = "moderation_list"
            elif len(parts) >= 4:
                action = {"GET": "resource", "POST": "update", "DELETE": "delete_resources"}.get(request.method, "?")
            elif request.method == "DELETE":
                action = "delete_resources"
            else:
                action = "list"
            api = "admin"
        elif len(parts) == 2 and parts[1] in UPLOAD_ACTIONS:
            api, action = "upload", parts[1]
        else:
            api, action = "unknown", rest
        return Call(request.method, path, api, action, params, headers=dict(request.headers.items()),
                    raw_path=str(request.environ.get("RAW_URI", path)))

    def _resource_path(self, call: Call) -> tuple[str, str, str]:
        # /v1_1/<cloud>/resources/<resource_type>/<type>/<public_id...>
        parts = call.path.split("/", 6)
        return parts[4], parts[5], parts[6]

    def _not_found(self, public_id: str) -> tuple[int, dict[str, Any]]:
        return 404, {"error": {"message": f"Resource not found - {public_id}"}}

    def _apply(self, call: Call) -> tuple[int, dict[str, Any]]:
        params = call.params
        resource_type = call.path.split("/")[3] if call.api == "upload" else None
        if call.api == "upload" and call.action == "tags":
            if params.get("tag[]"):  # add_tag with a list sends one tag[] field per tag
                tags = [str(tag) for tag in params["tag[]"]]
            else:
                tags = [tag.strip() for tag in str(params["tag"]).split(",")] if params.get("tag") else []
            found = []
            for public_id in params.get("public_ids[]", []):
                asset = self.asset(public_id, resource_type=resource_type, type=params.get("type", "upload"))
                if asset is None:
                    continue
                found.append(public_id)
                if params["command"] == "add":
                    asset["tags"] += [tag for tag in tags if tag not in asset["tags"]]
                elif params["command"] == "remove":
                    asset["tags"] = [tag for tag in asset["tags"] if tag not in tags]
                elif params["command"] == "replace":
                    asset["tags"] = tags
            return 200, {"public_ids": found}
        if call.api == "upload" and call.action == "rename":
            from_type = params.get("type", "upload")
            to_type = params.get("to_type", from_type)
            source = self.asset(params["from_public_id"], resource_type=resource_type, type=from_type)
            if source is None:
                return self._not_found(params["from_public_id"])
            target_key = _asset_key(resource_type, to_type, params["to_public_id"])
            if target_key in self.assets and str(params.get("overwrite", "")).lower() not in ("1", "true"):
                return 409, {"error": {"message": f"Resource already exists - {params['to_public_id']}"}}
            del self.assets[_asset_key(resource_type, from_type, params["from_public_id"])]
            source.update(public_id=params["to_public_id"], type=to_type, version=source["version"] + 1)
            self._refresh_urls(source)
            self.assets[target_key] = source
            return 200, copy.deepcopy(source)
        if call.api == "upload" and call.action == "destroy":
            key = _asset_key(resource_type, params.get("type", "upload"), params["public_id"])
            return 200, {"result": "ok" if self.assets.pop(key, None) is not None else "not found"}
        if call.api == "upload" and call.action == "explicit":
            asset = self.asset(params["public_id"], resource_type=resource_type, type=params.get("type", "upload"))
            if asset is None:
                return self._not_found(params["public_id"])
            if params.get("moderation"):
                kind = params["moderation"]
                asset["moderation"] = [m for m in asset["moderation"] if m.get("kind") != kind]
                asset["moderation"].append({"kind": kind, "status": "pending"})
                asset["moderation_status"] = "pending"
            if params.get("tags"):
                asset["tags"] += [tag for tag in str(params["tags"]).split(",") if tag not in asset["tags"]]
            if params.get("access_control"):  # the SDK sends the rules JSON-encoded; they replace the old ones
                asset["access_control"] = json.loads(params["access_control"])
            return 200, copy.deepcopy(asset)
        if call.api == "admin" and call.action == "resource":
            asset = self._asset_at(call)
            return (200, copy.deepcopy(asset)) if asset else self._not_found(self._resource_path(call)[2])
        if call.api == "admin" and call.action == "update":
            asset = self._asset_at(call)
            if asset is None:
                return self._not_found(self._resource_path(call)[2])
            if "access_control" in params:
                asset["access_control"] = json.loads(params["access_control"])
            if "moderation_status" in params:
                asset["moderation_status"] = params["moderation_status"]
                for moderation in asset["moderation"]:
                    moderation["status"] = params["moderation_status"]
            if "tags" in params:
                asset["tags"] = [tag for tag in str(params["tags"]).split(",") if tag]
            return 200, copy.deepcopy(asset)
        if call.api == "admin" and call.action == "delete_resources":
            parts = call.path.split("/")
            resource_type, delivery_type = parts[4], parts[5] if len(parts) > 5 else "upload"
            deleted = {}
            for public_id in params.get("public_ids[]", []):
                existed = self.assets.pop(_asset_key(resource_type, delivery_type, public_id), None)
                deleted[public_id] = "deleted" if existed else "not_found"
            return 200, {"deleted": deleted, "partial": False}
        if call.api == "admin" and call.action == "moderation_list":
            parts = call.path.split("/")
            resource_type, kind, status = parts[4], parts[6], parts[7]
            matching = [self._listed(asset, params) for asset in self.assets.values()
                        if asset["resource_type"] == resource_type
                        and any(m.get("kind") == kind and m.get("status") == status for m in asset["moderation"])]
            matching.sort(key=lambda asset: asset["public_id"])
            size = int(params.get("max_results", 10))
            start = int(params.get("next_cursor", 0) or 0)
            page = matching[start:start + size]
            answer: dict[str, Any] = {"resources": page}
            if start + size < len(matching):
                answer["next_cursor"] = str(start + size)
            return 200, answer
        return 501, {"error": {"message": f"the fake does not implement {call.method} {call.path}"}}

    # What a listing shows of each asset: the basics, tags / context / moderation only when asked for, and the
    # access control rules when the asset has some (a function must not rely on them being there).
    _LISTED = ("asset_id", "public_id", "format", "version", "resource_type", "type", "created_at", "bytes",
               "width", "height", "url", "secure_url", "access_control")
    _ON_REQUEST = {"tags": "tags", "context": "context", "moderations": "moderation"}

    def _listed(self, asset: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        entry = {key: copy.deepcopy(asset[key]) for key in self._LISTED if key in asset}
        for param, key in self._ON_REQUEST.items():
            if str(params.get(param, "")).lower() in ("1", "true") and key in asset:
                entry[key] = copy.deepcopy(asset[key])
        return entry

    def _asset_at(self, call: Call) -> dict[str, Any] | None:
        resource_type, delivery_type, public_id = self._resource_path(call)
        return self.asset(public_id, resource_type=resource_type, type=delivery_type)


# Every way a Cloudinary call can fail that a retry can fix: each must be answered 503 (the fault suites).
RETRYABLE_FAULTS = {
    "stall (client timeout)": Fault("stall"),
    "connection reset": Fault("reset"),
    "420 rate limited": Fault("status", 420),
    "429 with Retry-After": Fault("status", 429, {"Retry-After": "60", "X-FeatureRateLimit-Remaining": "0"}),
    "429 without headers": Fault("status", 429),
    "500": Fault("status", 500),
    "502": Fault("status", 502),
    "503": Fault("status", 503),
    "malformed success body": Fault("garbage"),
}
