"""A stateful stand-in for the parts of Cloudinary video_moderation talks to, served by the local
pytest-httpserver: the Admin API's resource details and update, the Upload API's destroy and tags. It
keeps the videos it was given, so a repeated notification sees what the first one did.

Every request still lands in ``server.log``: tests assert on the wire (method, path, parameters) there.
"""

from __future__ import annotations

import json
import re
from typing import Any

from werkzeug import Request, Response

from tests.helpers import CLOUD_NAME

ADMIN_RESOURCE = re.compile(rf"^/v1_1/{CLOUD_NAME}/resources/video/(upload|private|authenticated)/(.+)$")
DESTROY_PATH = f"/v1_1/{CLOUD_NAME}/video/destroy"
TAGS_PATH = f"/v1_1/{CLOUD_NAME}/video/tags"
RENAME_PATH = f"/v1_1/{CLOUD_NAME}/video/rename"
KIND = "google_video_moderation"


def details_path(public_id: str, delivery_type: str = "upload") -> str:
    return f"/v1_1/{CLOUD_NAME}/resources/video/{delivery_type}/{public_id}"


def queue_path(status: str) -> str:
    return f"/v1_1/{CLOUD_NAME}/resources/video/moderations/{KIND}/{status}"


def video(public_id: str, status: str, *, access_control: list[dict[str, Any]] | None = None,
          tags: list[str] | None = None, delivery_type: str = "upload",
          asset_id: str = "98b7998debe995912d0e6320eac95e3f") -> dict[str, Any]:
    """A resource as the Admin API's details call returns it (a video uploaded with token access)."""
    url = f"https://res.cloudinary.com/{CLOUD_NAME}/video/{delivery_type}/v1645551029/{public_id}.mp4"
    return {
        "asset_id": asset_id,
        "public_id": public_id,
        "format": "mp4",
        "version": 1645551029,
        "resource_type": "video",
        "type": delivery_type,
        "created_at": "2022-02-22T17:30:29Z",
        "bytes": 20202274,
        "width": 1080,
        "height": 1920,
        "duration": 21.3,
        "asset_folder": "ugc",
        "display_name": public_id.rsplit("/", 1)[-1],
        "url": url.replace("https://", "http://"),
        "secure_url": url,
        "access_mode": "public",
        "access_control": [{"access_type": "token"}] if access_control is None else access_control,
        "tags": list(tags or []),
        "moderation": [{"kind": KIND, "status": status, "updated_at": "2022-02-22T17:31:12Z",
                        "response": {"moderation_confidence": "UNLIKELY" if status == "approved" else "LIKELY"}}],
        "next_cursor": None,
        "derived": [],
    }


def json_response(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json")


class FakeCloudinary:
    """Videos by (delivery type, public ID); the handlers mutate them as Cloudinary would."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.videos: dict[tuple[str, str], dict[str, Any]] = {}
        server.expect_request(ADMIN_RESOURCE).respond_with_handler(self._resource)
        server.expect_request(DESTROY_PATH, method="POST").respond_with_handler(self._destroy)
        server.expect_request(TAGS_PATH, method="POST").respond_with_handler(self._tags)
        server.expect_request(RENAME_PATH, method="POST").respond_with_handler(self._rename)

    def add(self, resource: dict[str, Any]) -> dict[str, Any]:
        self.videos[(resource["type"], resource["public_id"])] = resource
        return resource

    def get(self, public_id: str, delivery_type: str = "upload") -> dict[str, Any] | None:
        return self.videos.get((delivery_type, public_id))

    def _resource(self, request: Request) -> Response:
        match = ADMIN_RESOURCE.match(request.path)
        assert match is not None
        key = (match.group(1), match.group(2))
        if key not in self.videos:
            return json_response({"error": {"message": f"Resource not found - {key[1]}"}}, 404)
        resource = self.videos[key]
        if request.method == "POST":
            changes = request.get_json()
            if "access_control" in changes:
                resource["access_control"] = json.loads(changes["access_control"])
        return json_response(resource)

    def _destroy(self, request: Request) -> Response:
        key = (request.form.get("type") or "upload", request.form["public_id"])
        return json_response({"result": "ok" if self.videos.pop(key, None) else "not found"})

    def _rename(self, request: Request) -> Response:
        source = (request.form.get("type") or "upload", request.form["from_public_id"])
        target = (request.form.get("to_type") or source[0], request.form["to_public_id"])
        if source not in self.videos:
            return json_response({"error": {"message": f"Resource not found - {source[1]}"}}, 404)
        if target in self.videos and target != source and request.form.get("overwrite") not in ("1", "true"):
            return json_response({"error": {"message": f"Resource already exists - {target[1]}"}}, 409)
        resource = self.videos.pop(source)
        resource.update(type=target[0], public_id=target[1])
        self.videos[target] = resource
        return json_response(resource)

    def _tags(self, request: Request) -> Response:
        assert request.form["command"] == "add"
        tagged = []
        for public_id in request.form.getlist("public_ids[]"):
            resource = self.videos.get((request.form.get("type") or "upload", public_id))
            if resource is not None:
                if request.form["tag"] not in resource["tags"]:
                    resource["tags"].append(request.form["tag"])
                tagged.append(public_id)
        return json_response({"public_ids": tagged})


def writes(server: Any) -> list[tuple[str, str]]:
    """(method, path) of every request that could change something."""
    return [(request.method, request.path) for request, _ in server.log if request.method != "GET"]


def wire(server: Any) -> list[tuple[str, str]]:
    return [(request.method, request.path) for request, _ in server.log]


def drain(server: Any) -> None:
    """Wait until the (single-threaded) test server has finished every request sent so far: a request the
    client gave up on (a timeout test) is otherwise logged late, into the next test's log."""
    import urllib.request

    server.expect_oneshot_request("/drain").respond_with_data("drained")
    with urllib.request.urlopen(server.url_for("/drain"), timeout=10) as response:
        assert response.read() == b"drained"
