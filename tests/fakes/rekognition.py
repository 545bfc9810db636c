"""A stateful Amazon Rekognition stand-in on 127.0.0.1, reached by boto3 through AWS_ENDPOINT_URL_REKOGNITION.

It speaks the JSON protocol (``X-Amz-Target: RekognitionService.<Operation>``), keeps face collections
(CreateCollection, ListFaces, IndexFaces, DeleteFaces, SearchFacesByImage) and answers DetectFaces with the
boxes a test sets. It records every call and injects faults on chosen calls: an AWS error (code and
status), a malformed success body, a stalled answer, a connection reset, or a *lost answer*: the operation
is applied and then the answer never comes (the client times out although the write happened).

SearchFacesByImage matches by a ``key`` the test derives from the image bytes (``identify``), so the
stand-in needs no image library: a face indexed or added with key K is found for a crop whose key is K.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.fakes.cloudinary import Fault
from tests.fakes.wire import Answer, LocalServer, Wire

WRITES = frozenset({"IndexFaces", "CreateCollection", "DeleteFaces"})
JSON = "application/x-amz-json-1.1"


def aws_error(code: str, status: int = 400) -> Fault:
    """Rekognition's error answer: the code in ``__type`` (and the header botocore also reads)."""
    return Fault("status", status, {"x-amzn-ErrorType": code})


@dataclass
class RekognitionCall:
    operation: str
    params: dict[str, Any]
    fault: str | None = None
    applied: bool = False  # the operation changed (or read) the stand-in's state


class FakeRekognition:
    def __init__(self, wire: Wire | None = None, identify: Callable[[bytes], str | None] | None = None) -> None:
        self.wire = wire
        self.identify = identify or (lambda image: None)
        self.calls: list[RekognitionCall] = []
        self.collections: dict[str, list[dict[str, Any]]] = {}
        self.detected: list[dict[str, float]] = []  # DetectFaces' boxes
        self._faults: dict[int, Fault] = {}
        self._lock = threading.Lock()
        self._next_face = 0
        self._server: LocalServer | None = None

    # --- state ---

    def reset(self, wire: Wire | None = None) -> None:
        """A clean slate for the next test, on the same server (boto3 keeps its client per endpoint)."""
        with self._lock:
            self.wire = wire
            self.calls = []
            self.collections = {}
            self.detected = []
            self._faults = {}
        if self._server:
            self._server.release_stalled()

    def add_face(self, collection_id: str, external_id: str, key: str | None = None) -> dict[str, Any]:
        self._next_face += 1
        face = {"FaceId": f"face-{self._next_face:04d}", "ImageId": f"image-{self._next_face:04d}",
                "ExternalImageId": external_id, "Confidence": 99.9, "key": key}
        self.collections.setdefault(collection_id, []).append(face)
        return face

    def faces(self, collection_id: str, external_id: str | None = None) -> list[dict[str, Any]]:
        return [face for face in self.collections.get(collection_id, [])
                if external_id is None or face["ExternalImageId"] == external_id]

    def applied(self, operation: str) -> int:
        return sum(1 for call in self.calls if call.operation == operation and call.applied)

    def fail_call(self, index: int, fault: Fault) -> None:
        self._faults[len(self.calls) + index] = fault

    # --- the server ---

    def start(self) -> str:
        self._server = LocalServer(self.dispatch)
        return self._server.url

    def stop(self) -> None:
        if self._server:
            self._server.stop()

    def dispatch(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        operation = headers.get("X-Amz-Target", "").removeprefix("RekognitionService.")
        params = json.loads(body or b"{}")
        call = RekognitionCall(operation, params)
        with self._lock:
            index = len(self.calls)
            self.calls.append(call)
            fault = self._faults.get(index)
            wire = self.wire
        if wire is not None:
            fault = fault or wire.arrive("rekognition", operation, operation in WRITES).fault
        if fault is not None:
            call.fault = fault.kind
            if fault.kind == "lost":
                with self._lock:
                    self._apply(call)
                return 0, {}, b"", "stall"
            if fault.kind in ("reset", "stall"):
                return 0, {}, b"", fault.kind
            if fault.kind == "garbage":
                return 200, {"Content-Type": "text/html"}, b"<html>502 Bad Gateway (proxy)</html>", None
            code = fault.headers.get("x-amzn-ErrorType", "InternalServerError")
            return fault.status, {"Content-Type": JSON, **fault.headers}, \
                json.dumps({"__type": code, "message": "injected fault"}).encode(), None
        with self._lock:
            status, answer = self._apply(call)
        return status, {"Content-Type": JSON}, json.dumps(answer).encode(), None

    def _apply(self, call: RekognitionCall) -> tuple[int, dict[str, Any]]:
        params = call.params
        collection_id = params.get("CollectionId")
        if call.operation == "DetectFaces":
            call.applied = True
            return 200, {"FaceDetails": [{"BoundingBox": box, "Confidence": 99.9} for box in self.detected]}
        if call.operation == "CreateCollection":
            if collection_id in self.collections:
                return 400, {"__type": "ResourceAlreadyExistsException", "message": f"{collection_id} exists"}
            self.collections[collection_id] = []
            call.applied = True
            return 200, {"StatusCode": 200, "CollectionArn": f"aws:rekognition:us-east-1:1:collection/{collection_id}",
                         "FaceModelVersion": "7.0"}
        if collection_id not in self.collections:
            return 400, {"__type": "ResourceNotFoundException", "message": f"no collection {collection_id}"}
        faces = self.collections[collection_id]
        call.applied = True
        if call.operation == "ListFaces":
            start = int(params.get("NextToken") or 0)
            size = int(params.get("MaxResults") or 1000)
            page = faces[start:start + size]
            answer: dict[str, Any] = {"Faces": [_public(face) for face in page], "FaceModelVersion": "7.0"}
            if start + size < len(faces):
                answer["NextToken"] = str(start + size)
            return 200, answer
        if call.operation == "IndexFaces":
            image = base64.b64decode(params["Image"]["Bytes"])
            face = self.add_face(collection_id, params["ExternalImageId"], self.identify(image))
            return 200, {"FaceRecords": [{"Face": _public(face), "FaceDetail": {"Confidence": 99.9}}],
                         "UnindexedFaces": [], "FaceModelVersion": "7.0"}
        if call.operation == "DeleteFaces":
            wanted = set(params.get("FaceIds") or [])
            deleted = [face["FaceId"] for face in faces if face["FaceId"] in wanted]
            self.collections[collection_id] = [face for face in faces if face["FaceId"] not in wanted]
            return 200, {"DeletedFaces": deleted}
        if call.operation == "SearchFacesByImage":
            key = self.identify(base64.b64decode(params["Image"]["Bytes"]))
            matches = [{"Similarity": 99.0, "Face": _public(face)} for face in faces
                       if key is not None and face["key"] == key]
            return 200, {"FaceMatches": matches[:int(params.get("MaxFaces") or 80)], "FaceModelVersion": "7.0"}
        call.applied = False
        return 400, {"__type": "UnknownOperationException", "message": f"the stand-in has no {call.operation}"}


def _public(face: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in face.items() if key != "key"}
