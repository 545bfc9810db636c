"""Faults: every outbound call of face_tagging fails in each way it can (issue 7, item 2).

face_tagging talks to three services: the image CDN (the signed delivery URL, fetched with urllib3 from a
local stand-in, tests/fakes/cdn.py, reached through the SDK's ``secure_distribution``), Amazon Rekognition
(a stateful stand-in on 127.0.0.1, tests/fakes/rekognition.py) and Cloudinary's Upload API (tags/add,
tests/fakes/cloudinary.py). tests/fakes/wire.py numbers the calls across the three, so "the k-th call" can
be failed whatever service it goes to. For the recognise path, both train paths (collection there; first
image, collection created) and the forget path (a training image deleted: Admin API resources/by_asset_ids,
ListFaces, DeleteFaces), each call fails in turn, with each fault:

- the answer is 503 (200 when the image is gone: a CDN or Cloudinary 404), and nothing is written after
  the failed call (no IndexFaces, CreateCollection, DeleteFaces or tags/add);
- Cloudinary's retry of the same notification completes the work: the asset carries exactly the names
  found (recognise); the training face is indexed exactly once in total, even when the failed call was an
  IndexFaces that Rekognition applied before its answer was lost: the retry must find it by ListFaces;
  the deleted image's face is removed, and only it.

Rekognition's own retries are off (AWS_MAX_ATTEMPTS=1, as in tests/functions/test_face_tagging.py), so each
fault reaches the function: botocore's backoff would sleep in real time.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from PIL import Image, ImageDraw

from functions.face_tagging import images
from functions.face_tagging.handler import handle
from tests.fakes.cdn import LOOPBACK_VARIABLE, FakeCDN
from tests.fakes.cloudinary import RETRYABLE_FAULTS, FakeCloudinary, Fault
from tests.fakes.rekognition import WRITES, FakeRekognition, aws_error
from tests.fakes.wire import Wire, WiredCloudinary
from tests.helpers import API_KEY, CLOUD_NAME, SECRET, sample, signed_request

pytestmark = pytest.mark.slow  # the robustness suites: `make test` runs them, `make test-fast` does not

COLLECTION = "staff-faces"
JOSE = "José García Núñez"
LI = "李伟"
TRAINING_ASSET = "4f8a2c6e0b3d5f7a9c1e3b5d7f9a1c3e"  # training_upload.json
JOSE_ID = f"{TRAINING_ASSET}:Jos_C3_A9_20Garc_C3_ADa_20N_C3_BA_C3_B1ez"  # names.external_image_id, by hand
LI_ID = "9a1c3e5b7d9f1a3c5e7b9d1f3a5c7e9b:_E6_9D_8E_E4_BC_9F"

WIDTH, HEIGHT = 400, 300
COLOURS = {"red": (220, 30, 30), "blue": (30, 30, 220), "grey": (128, 128, 128)}
BOXES = {"red": {"Left": 0.1, "Top": 0.2, "Width": 0.2, "Height": 0.3},
         "blue": {"Left": 0.5, "Top": 0.1, "Width": 0.15, "Height": 0.2}}

REKOGNITION_RETRYABLE = {
    "ThrottlingException": aws_error("ThrottlingException"),
    "ProvisionedThroughputExceededException": aws_error("ProvisionedThroughputExceededException"),
    "InternalServerError 500": aws_error("InternalServerError", 500),
    "ServiceUnavailable 503": aws_error("ServiceUnavailableException", 503),
    "stall (client timeout)": Fault("stall"),
    "connection reset": Fault("reset"),
    "malformed success body": Fault("garbage"),
}
REKOGNITION_WRITE_ONLY = {"applied, answer lost (client timeout)": Fault("lost")}
CDN_RETRYABLE = {
    "420 rate limited": Fault("status", 420),
    "429 with Retry-After": Fault("status", 429, {"Retry-After": "30"}),
    "500": Fault("status", 500),
    "502": Fault("status", 502),
    "503": Fault("status", 503),
    "read timeout": Fault("stall"),
    "connection reset": Fault("reset"),
}
CLOUDINARY_RETRYABLE = RETRYABLE_FAULTS  # tests/fakes/cloudinary.py
GONE = {"404 not found": Fault("status", 404)}  # CDN or Cloudinary: the asset went away; 200, no retry

TOTALS = {"faults injected": 0, "retries that completed the work": 0, "IndexFaces applied per trained face": 0,
          "work lost": 0}


# --- the photo: a real JPEG whose face boxes are coloured, so a crop tells which face it is -------------

def photo(faces: list[str]) -> bytes:
    image = Image.new("RGB", (WIDTH, HEIGHT), COLOURS["grey"])
    draw = ImageDraw.Draw(image)
    for name in faces:
        box = BOXES[name]
        draw.rectangle([box["Left"] * WIDTH, box["Top"] * HEIGHT, (box["Left"] + box["Width"]) * WIDTH - 1,
                        (box["Top"] + box["Height"]) * HEIGHT - 1], fill=COLOURS[name])
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=95)
    return out.getvalue()


def identify(jpeg: bytes) -> str | None:
    """The colour at the centre of an image (a face crop is centred on its face); None for the background."""
    image = Image.open(io.BytesIO(jpeg)).convert("RGB")
    centre = image.getpixel((image.width // 2, image.height // 2))
    nearest = min(COLOURS, key=lambda name: sum((a - b) ** 2 for a, b in zip(COLOURS[name], centre, strict=True)))
    return None if nearest == "grey" else nearest


# --- the scenarios --------------------------------------------------------------------------------------

@dataclass
class Scenario:
    name: str
    notification: dict[str, Any]
    faces: list[str]  # what the photo shows and DetectFaces finds
    calls: list[str]  # the happy path's outbound calls, in order, as "service operation"
    setup: Callable[[FakeRekognition, FakeCloudinary], None]
    done: Callable[[FakeRekognition, FakeCloudinary], bool]
    kind: str = "recognise"  # or "train", "forget"


UPLOAD = json.loads(sample("face_tagging", "upload"))
TRAINING = json.loads(sample("face_tagging", "training_upload"))
RECOGNISED_TAGS = ["offsite", f"face:{JOSE}", f"face:{LI}"]


def _known_people(rek: FakeRekognition, cloudinary: FakeCloudinary) -> None:
    rek.add_face(COLLECTION, JOSE_ID, "red")
    rek.add_face(COLLECTION, LI_ID, "blue")
    cloudinary.add_asset(UPLOAD["public_id"], tags=["offsite"], asset_id=UPLOAD["asset_id"])


def _recognised(rek: FakeRekognition, cloudinary: FakeCloudinary) -> bool:
    return cloudinary.asset(UPLOAD["public_id"])["tags"] == RECOGNISED_TAGS


def _collection_with_someone_else(rek: FakeRekognition, cloudinary: FakeCloudinary) -> None:
    rek.add_face(COLLECTION, LI_ID, "blue")


def _no_collection(rek: FakeRekognition, cloudinary: FakeCloudinary) -> None:
    pass


def _trained(rek: FakeRekognition, cloudinary: FakeCloudinary) -> bool:
    return (len(rek.faces(COLLECTION, JOSE_ID)) == 1 and rek.applied("IndexFaces") == 1
            and rek.applied("CreateCollection") <= 1 and cloudinary.calls == [])


def _trained_beside_li(rek: FakeRekognition, cloudinary: FakeCloudinary) -> bool:
    return _trained(rek, cloudinary) and len(rek.faces(COLLECTION, LI_ID)) == 1 and len(rek.faces(COLLECTION)) == 2


def _indexed_then_deleted(rek: FakeRekognition, cloudinary: FakeCloudinary) -> None:
    rek.add_face(COLLECTION, JOSE_ID, "red")
    rek.add_face(COLLECTION, LI_ID, "blue")  # someone else's: kept


def _forgotten(rek: FakeRekognition, cloudinary: FakeCloudinary) -> bool:
    return (rek.faces(COLLECTION, JOSE_ID) == [] and len(rek.faces(COLLECTION, LI_ID)) == 1
            and rek.applied("DeleteFaces") == 1 and [call.action for call in cloudinary.writes] == [])


SCENARIOS = [
    Scenario(
        name="recognise: two known faces tagged",
        notification=UPLOAD,
        faces=["red", "blue"],
        calls=["cdn GET", "rekognition DetectFaces", "rekognition SearchFacesByImage",
               "rekognition SearchFacesByImage", "cloudinary tags"],
        setup=_known_people,
        done=_recognised,
    ),
    Scenario(
        name="train: face indexed in the collection",
        notification=TRAINING,
        faces=["red"],
        calls=["rekognition ListFaces", "cdn GET", "rekognition DetectFaces", "rekognition IndexFaces"],
        setup=_collection_with_someone_else,
        done=_trained_beside_li,
        kind="train",
    ),
    Scenario(
        name="train: first image creates the collection",
        notification=TRAINING,
        faces=["red"],
        calls=["rekognition ListFaces", "cdn GET", "rekognition DetectFaces", "rekognition CreateCollection",
               "rekognition IndexFaces"],
        setup=_no_collection,
        done=_trained,
        kind="train",
    ),
    Scenario(
        name="forget: a deleted training image's face removed",
        notification=json.loads(sample("face_tagging", "delete_training")),
        faces=[],
        calls=["cloudinary by_asset_ids", "rekognition ListFaces", "rekognition DeleteFaces"],
        setup=_indexed_then_deleted,
        done=_forgotten,
        kind="forget",
    ),
]


# --- the stand-ins --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rekognition_server():
    # One server for the module: boto3 keeps one client per endpoint, and building one costs ~50 ms.
    fake = FakeRekognition(identify=identify)
    url = fake.start()
    yield fake, url
    fake.stop()


@pytest.fixture(scope="module")
def cdn_server():
    fake = FakeCDN()
    host = fake.start()
    yield fake, host
    fake.stop()


class World:
    def __init__(self, scenario: Scenario, rek: FakeRekognition, cdn: FakeCDN) -> None:
        self.scenario = scenario
        self.wire = Wire()
        self.rek = rek
        rek.reset(self.wire)
        rek.detected = [BOXES[name] for name in scenario.faces]
        self.cloudinary = WiredCloudinary(CLOUD_NAME, self.wire)
        self.cdn = cdn
        cdn.reset(self.wire)  # each delivery is numbered on the wire, and failed when it is the one to fail
        cdn.serve(photo(scenario.faces))

    def run(self) -> tuple[int, dict[str, Any]]:
        response = handle(signed_request(self.scenario.notification))
        return response.status, response.body

    def done(self) -> bool:
        return self.scenario.done(self.rek, self.cloudinary)


@contextlib.contextmanager
def world_for(scenario: Scenario, rekognition_server, cdn_server, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    rek, url = rekognition_server
    cdn, cdn_host = cdn_server
    monkeypatch.setenv("AWS_ENDPOINT_URL_REKOGNITION", url)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing-key-id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret-key")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("REKOGNITION_COLLECTION_ID", COLLECTION)
    monkeypatch.setenv("REKOGNITION_TIMEOUT_SECONDS", "0.3")
    monkeypatch.setenv("CLOUDINARY_TIMEOUT_SECONDS", "0.3")
    monkeypatch.setattr(images, "DEFAULT_READ_TIMEOUT_SECONDS", 0.3)  # a stalled delivery: the client's timeout
    monkeypatch.setenv(LOOPBACK_VARIABLE, "1")  # the CDN stand-in is fetched over http on loopback
    world = World(scenario, rek, cdn)
    prefix = world.cloudinary.start()
    monkeypatch.setenv("CLOUDINARY_URL", f"cloudinary://{API_KEY}:{SECRET}@{CLOUD_NAME}?upload_prefix={prefix}"
                                         f"&secure_distribution={cdn_host}")
    scenario.setup(rek, world.cloudinary)
    try:
        yield world
    finally:
        world.cloudinary.stop()
        rek.reset()
        cdn.reset()


# --- the tests ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_happy_path_makes_exactly_these_calls(scenario, rekognition_server, cdn_server, monkeypatch):
    """The call lists the fault cases are built from; and a repeat finds the work done, writing nothing."""
    with world_for(scenario, rekognition_server, cdn_server, monkeypatch) as world:
        status, body = world.run()

        assert status == 200 and body["status"] == "done", body
        assert [str(call) for call in world.wire.calls] == scenario.calls
        assert world.done()

        start = len(world.wire.calls)
        status, body = world.run()  # a resend of the same notification
        assert status == 200, body
        writes = [str(call) for call in world.wire.since(start) if call.is_write]
        if scenario.kind == "recognise":  # the notification still lists the old tags: tags/add again, a no-op
            assert body["status"] == "done" and writes == ["cloudinary tags"], (body, writes)
        else:  # ListFaces finds the face indexed (train) or gone (forget): nothing more
            assert body["status"] == "ignored" and writes == [], (body, writes)
        assert world.done()


def cases() -> Iterator[Any]:
    for scenario in SCENARIOS:
        for index, call in enumerate(scenario.calls):
            service, operation = call.split()
            if service == "rekognition":
                faults = dict(REKOGNITION_RETRYABLE)
                if operation in WRITES:
                    faults.update(REKOGNITION_WRITE_ONLY)
            elif service == "cdn":
                faults = {**CDN_RETRYABLE, **GONE}
            elif operation == "by_asset_ids":  # a listing: it answers [] for deleted assets, never 404
                faults = dict(CLOUDINARY_RETRYABLE)
            else:
                faults = {**CLOUDINARY_RETRYABLE, **GONE}
            for fault_name, fault in faults.items():
                yield pytest.param(scenario, index, fault_name, fault,
                                   id=f"{scenario.name} / #{index} {call} / {fault_name}")


@pytest.mark.parametrize(("scenario", "index", "fault_name", "fault"), list(cases()))
def test_each_call_failing_then_retried(scenario, index, fault_name, fault, rekognition_server, cdn_server,
                                        monkeypatch):
    with world_for(scenario, rekognition_server, cdn_server, monkeypatch) as world:
        world.wire.fail_call(index, fault)
        TOTALS["faults injected"] += 1

        status, body = world.run()

        failed = world.wire.calls[index]
        assert str(failed) == scenario.calls[index] and failed.fault is fault, "the faulted call was not made"
        writes_after = [str(call) for call in world.wire.calls[index + 1:] if call.is_write]
        assert writes_after == [], f"kept writing after a fault on call {index}: {writes_after}"
        if scenario.kind == "recognise":  # the failed tags/add, too, was not applied
            assert world.cloudinary.asset(UPLOAD["public_id"])["tags"] == ["offsite"]
        if fault_name in GONE:
            assert status == 200 and body["status"] == "ignored", body
            return
        assert status == 503, (index, body)

        world.wire.clear_faults()
        status, body = world.run()  # Cloudinary's retry of the same notification

        assert status == 200, body
        if scenario.kind == "train":
            assert len(world.rek.faces(COLLECTION, JOSE_ID)) == 1, "the training face is indexed twice"
            TOTALS["IndexFaces applied per trained face"] = max(TOTALS["IndexFaces applied per trained face"],
                                                               world.rek.applied("IndexFaces"))
        finished = world.done()
        TOTALS["retries that completed the work" if finished else "work lost"] += 1
        assert finished, f"the retry after a fault on call {index} did not finish the work"
