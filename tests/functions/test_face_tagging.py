"""face_tagging on the wire: Rekognition is a local endpoint (AWS_ENDPOINT_URL_REKOGNITION, the JSON protocol
with X-Amz-Target), Cloudinary's API the local `cloudinary_server`, the image download a local CDN stand-in
(tests/fakes/cdn.py) that the SDK's delivery URL reaches through its own ``secure_distribution`` setting.

The photo is a real JPEG made here: coloured rectangles stand where DetectFaces says the faces are, so the
fake SearchFacesByImage can tell from the pixels of each crop which face it was sent.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw
from pytest_httpserver import HTTPServer
from werkzeug import Response

from functions.face_tagging import handler as face_handler
from functions.face_tagging import images, names, rekognition
from functions.face_tagging.handler import handle
from shared.errors import ConfigError
from tests.fakes.cdn import LOOPBACK_VARIABLE, FakeCDN
from tests.fakes.cloudinary import Fault
from tests.helpers import (
    API_KEY,
    CLOUD_NAME,
    ROOT,
    SECRET,
    answers_too_late,
    form_fields,
    function_url_event,
    sample,
    signed_request,
)

COLLECTION = "staff-faces"
TAGS_PATH = f"/v1_1/{CLOUD_NAME}/image/tags"
BY_ASSET_IDS_PATH = f"/v1_1/{CLOUD_NAME}/resources/by_asset_ids"

JOSE = "José García Núñez"
LI = "李伟"
TRAINING_ASSET = "4f8a2c6e0b3d5f7a9c1e3b5d7f9a1c3e"  # training_upload.json / delete_training.json
LI_ASSET = "9a1c3e5b7d9f1a3c5e7b9d1f3a5c7e9b"  # training_label_added.json
# Written out by hand, not by the encoder under test: "é" is C3 A9 in UTF-8, a space 20, ...
JOSE_ID = f"{TRAINING_ASSET}:Jos_C3_A9_20Garc_C3_ADa_20N_C3_BA_C3_B1ez"
LI_ID = f"{LI_ASSET}:_E6_9D_8E_E4_BC_9F"

WIDTH, HEIGHT = 400, 300
RED, BLUE, GREEN, GREY = (220, 30, 30), (30, 30, 220), (30, 200, 30), (128, 128, 128)
# Rekognition's boxes are ratios of the image; GREEN's reaches past the right and bottom edges, as real
# boxes of faces cut by the frame do. By area: GREEN (0.08) > RED (0.06) > BLUE (0.03).
BOXES = {
    RED: {"Left": 0.1, "Top": 0.2, "Width": 0.2, "Height": 0.3},
    BLUE: {"Left": 0.5, "Top": 0.1, "Width": 0.15, "Height": 0.2},
    GREEN: {"Left": 0.85, "Top": 0.7, "Width": 0.2, "Height": 0.4},
}
# The crops expected in pixels: each box widened by a quarter of its size per side, clamped to the image.
EXPECTED_CROPS = {RED: (20, 37, 140, 173), BLUE: (185, 15, 275, 105), GREEN: (320, 180, 400, 300)}


# --- the photo and the fakes ---------------------------------------------------------------------------

def photo(colours: list[tuple[int, int, int]] = (RED, BLUE, GREEN), size: tuple[int, int] = (WIDTH, HEIGHT)) -> bytes:
    """A real JPEG: grey, with a filled rectangle of each colour where its face box is."""
    image = Image.new("RGB", size, GREY)
    draw = ImageDraw.Draw(image)
    for colour in colours:
        box = BOXES[colour]
        draw.rectangle([box["Left"] * size[0], box["Top"] * size[1],
                        min((box["Left"] + box["Width"]) * size[0], size[0]) - 1,
                        min((box["Top"] + box["Height"]) * size[1], size[1]) - 1], fill=colour)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=95)
    return out.getvalue()


def face_detail(colour: tuple[int, int, int]) -> dict[str, Any]:
    return {"BoundingBox": BOXES[colour], "Confidence": 99.9}


def colour_of(jpeg: bytes) -> tuple[int, int, int]:
    """Which of the face colours the centre of an image is (JPEG is lossy: the nearest one)."""
    image = Image.open(io.BytesIO(jpeg)).convert("RGB")
    centre = image.getpixel((image.width // 2, image.height // 2))
    return min((RED, BLUE, GREEN, GREY), key=lambda c: sum((a - b) ** 2 for a, b in zip(c, centre, strict=True)))


def image_bytes(params: dict[str, Any]) -> bytes:
    return base64.b64decode(params["Image"]["Bytes"])  # the JSON protocol sends blobs in base64


class Fail:
    """An AWS error answer: status and the __type botocore reads the error code from."""

    def __init__(self, code: str, status: int = 400) -> None:
        self.code, self.status = code, status


class FakeRekognition:
    """A local Rekognition endpoint: answers each operation (X-Amz-Target) as told and records every call."""

    def __init__(self, server: HTTPServer) -> None:
        self.server = server
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.headers: list[dict[str, str]] = []
        self.answers: dict[str, Any] = {}
        self._lock = threading.Lock()
        server.expect_request("/", method="POST").respond_with_handler(self._answer)

    def on(self, operation: str, answer: Any) -> None:
        """``answer``: a dict, a Fail, or a callable(params) returning one of those."""
        self.answers[operation] = answer

    def _answer(self, request) -> Response:
        operation = request.headers.get("X-Amz-Target", "").removeprefix("RekognitionService.")
        params = json.loads(request.get_data() or b"{}")
        with self._lock:
            self.calls.append((operation, params))
            self.headers.append(dict(request.headers))
        answer = self.answers.get(operation, Fail("UnexpectedOperationInTest"))
        if callable(answer):
            answer = answer(params)
        if isinstance(answer, Fail):
            return Response(json.dumps({"__type": answer.code, "message": "simulated"}), status=answer.status,
                            content_type="application/x-amz-json-1.1")
        return Response(json.dumps(answer), content_type="application/x-amz-json-1.1")

    def operations(self) -> list[str]:
        return [operation for operation, _ in self.calls]

    def params(self, operation: str) -> list[dict[str, Any]]:
        return [params for called, params in self.calls if called == operation]


@pytest.fixture(scope="module")
def rek_server():
    # One server for the module: stopping a werkzeug server waits for its poll interval.
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)  # threaded: searches run concurrently
    server.start()
    yield server
    server.clear()
    server.stop()


@pytest.fixture
def rek(rek_server, monkeypatch: pytest.MonkeyPatch):
    rek_server.clear()
    monkeypatch.setenv("AWS_ENDPOINT_URL_REKOGNITION", rek_server.url_for("").rstrip("/"))
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing-key-id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret-key")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # a retry would back off in real time
    yield FakeRekognition(rek_server)
    errors = list(rek_server.handler_errors)
    rek_server.clear()
    assert errors == []  # the fake itself must not have failed (it would look like a Rekognition 500)


@pytest.fixture(scope="module")
def cdn_server():
    fake = FakeCDN()
    fake.host = fake.start()  # host:port, the SDK's secure_distribution
    yield fake
    fake.stop()


@pytest.fixture
def cdn(cdn_server):
    cdn_server.reset()
    yield cdn_server
    cdn_server.reset()  # ends a stalled answer of this test


@pytest.fixture
def configured(cloudinary_server, rek, cdn, monkeypatch: pytest.MonkeyPatch):
    """Everything set as a deployment would have it, the delivery host being the local CDN (the SDK's
    ``secure_distribution``, fetched over http on loopback only); returns (cloudinary_server, rek, cdn)."""
    monkeypatch.setenv("REKOGNITION_COLLECTION_ID", COLLECTION)
    monkeypatch.setenv("CLOUDINARY_URL", f"{os.environ['CLOUDINARY_URL']}&secure_distribution={cdn.host}")
    monkeypatch.setenv(LOOPBACK_VARIABLE, "1")
    return cloudinary_server, rek, cdn


def serve_photo(cdn: FakeCDN, jpeg: bytes | None = None, content_type: str = "image/jpeg") -> None:
    cdn.serve(photo() if jpeg is None else jpeg, content_type=content_type)


def match(external_id: str, similarity: float) -> dict[str, Any]:
    return {"Similarity": similarity, "Face": {"FaceId": f"face-{external_id[-6:]}", "ExternalImageId": external_id,
                                               "Confidence": 99.9, "ImageId": "image-1"}}


def search_by_colour(matches: dict[tuple[int, int, int], list[dict[str, Any]]]) -> Callable[[dict], dict]:
    def answer(params: dict[str, Any]) -> dict[str, Any]:
        return {"FaceMatches": matches.get(colour_of(image_bytes(params)), []), "FaceModelVersion": "7.0"}
    return answer


def no_calls(server, rek: FakeRekognition, cdn: FakeCDN) -> bool:
    return server.log == [] and rek.calls == [] and cdn.requests == []


# --- recognise -----------------------------------------------------------------------------------------

def test_recognise_tags_each_distinct_name_once_from_a_crop_of_each_face(configured):
    server, rek, cdn = configured
    serve_photo(cdn)
    rek.on("DetectFaces", {"FaceDetails": [face_detail(RED), face_detail(BLUE), face_detail(GREEN)]})
    rek.on("SearchFacesByImage", search_by_colour({
        GREEN: [match(JOSE_ID, 88.0)], RED: [match(JOSE_ID, 99.1)], BLUE: [match(LI_ID, 95.5)]}))
    server.expect_oneshot_request(TAGS_PATH, method="POST").respond_with_json(
        {"public_ids": ["events/offsite-2024/team-dinner"]})

    response = handle(signed_request(sample("face_tagging", "upload")))

    assert response.status == 200
    tags = [f"face:{JOSE}", f"face:{LI}"]  # José twice (GREEN and RED) collapses to one tag
    assert response.body == {"status": "done", "faces": 3, "tags": tags, "actions": [
        {"action": "search_faces", "faces": 3, "searched": 3, "matched": 3},
        {"action": "add_tags", "public_id": "events/offsite-2024/team-dinner", "tags": tags}]}

    # The image: one signed, size-bounded JPEG delivery URL of this version, on the account's delivery host.
    assert len(cdn.requests) == 1 and cdn.requests[0].method == "GET"
    assert re.fullmatch(rf"/{CLOUD_NAME}/image/upload/s--[\w-]{{8}}--/"
                        r"c_limit,h_1600,w_1600/q_auto:good/v1715677961/events/offsite-2024/team-dinner\.jpg",
                        cdn.requests[0].path)
    # Rekognition: DetectFaces on exactly those bytes, then one search per face, each on its own crop.
    assert rek.operations()[0] == "DetectFaces"
    assert rek.params("DetectFaces") == [{"Image": {"Bytes": base64.b64encode(photo()).decode()},
                                          "Attributes": ["DEFAULT"]}]
    searches = rek.params("SearchFacesByImage")
    assert len(searches) == 3
    seen = {}
    for params in searches:
        assert {key: value for key, value in params.items() if key != "Image"} == {
            "CollectionId": COLLECTION, "MaxFaces": 5, "FaceMatchThreshold": 80.0}
        crop = Image.open(io.BytesIO(image_bytes(params)))
        assert crop.format == "JPEG"
        seen[colour_of(image_bytes(params))] = crop.size
    assert seen == {colour: (x1 - x0, y1 - y0) for colour, (x0, y0, x1, y1) in EXPECTED_CROPS.items()}
    assert "Credential=testing-key-id/" in rek.headers[0]["Authorization"]
    assert "/us-east-1/rekognition/aws4_request" in rek.headers[0]["Authorization"]

    # Cloudinary: one Upload API tags/add call for both names, nothing else.
    assert len(server.log) == 1
    request, _ = server.log[0]
    fields = form_fields(request)
    assert request.method == "POST" and request.path == TAGS_PATH
    assert fields["command"] == "add"
    assert fields["tag[]"] == tags
    assert fields["public_ids[]"] == ["events/offsite-2024/team-dinner"]
    assert fields["type"] == "upload" and fields["api_key"] == API_KEY
    assert SECRET not in request.get_data(as_text=True)


def test_only_the_largest_faces_up_to_face_max_faces_are_searched(configured, monkeypatch):
    server, rek, cdn = configured
    monkeypatch.setenv("FACE_MAX_FACES", "2")
    monkeypatch.setenv("FACE_MATCH_THRESHOLD", "92.5")
    serve_photo(cdn)
    rek.on("DetectFaces", {"FaceDetails": [face_detail(BLUE), face_detail(RED), face_detail(GREEN)]})
    rek.on("SearchFacesByImage", search_by_colour({RED: [match(JOSE_ID, 99.0)]}))
    server.expect_oneshot_request(TAGS_PATH, method="POST").respond_with_json(
        {"public_ids": ["events/offsite-2024/team-dinner"]})

    response = handle(signed_request(sample("face_tagging", "upload")))

    assert response.status == 200 and response.body["tags"] == [f"face:{JOSE}"]
    searched = sorted(colour_of(image_bytes(params)) for params in rek.params("SearchFacesByImage"))
    assert searched == sorted([GREEN, RED])  # BLUE is the smallest
    assert {params["FaceMatchThreshold"] for params in rek.params("SearchFacesByImage")} == {92.5}


def sideways_red_face(configured: Any, upright_size: tuple[int, int]) -> Any:
    """The upload's photo is RED's face, stored turned a quarter to the left with EXIF orientation 6 (shown after
    turning it a quarter to the right), and Rekognition finds José in it: the handler's answer."""
    server, rek, cdn = configured
    upright = Image.open(io.BytesIO(photo([RED], size=upright_size)))
    exif = Image.Exif()
    exif[0x0112] = 6
    sideways = io.BytesIO()
    upright.transpose(Image.Transpose.ROTATE_90).save(sideways, format="JPEG", quality=95, exif=exif.tobytes())
    serve_photo(cdn, sideways.getvalue())
    rek.on("DetectFaces", {"FaceDetails": [face_detail(RED)]})
    rek.on("SearchFacesByImage", search_by_colour({RED: [match(JOSE_ID, 99.0)]}))
    server.expect_oneshot_request(TAGS_PATH, method="POST").respond_with_json(
        {"public_ids": ["events/offsite-2024/team-dinner"]})
    return handle(signed_request(sample("face_tagging", "upload")))


def test_a_photo_stored_sideways_is_cropped_upright_as_its_exif_orientation_says(configured):
    # Rekognition reads the EXIF orientation and answers boxes of the upright image: the crop is of that one.
    _server, rek, _cdn = configured
    response = sideways_red_face(configured, (HEIGHT, WIDTH))

    assert response.status == 200 and response.body["tags"] == [f"face:{JOSE}"]
    crop = Image.open(io.BytesIO(image_bytes(rek.params("SearchFacesByImage")[0])))
    assert crop.height > crop.width  # RED's box is taller than wide in the upright photo


def test_an_image_larger_than_asked_for_is_not_decoded(configured):
    _server, rek, cdn = configured
    serve_photo(cdn, photo([RED], size=(1601, 900)))

    response = handle(signed_request(sample("face_tagging", "upload")))

    assert response.status == 200 and "over 1600 px a side" in response.body["reason"]
    assert rek.calls == []


@pytest.mark.parametrize(("size", "colours", "decoded"), [
    ((1600, 1200), [RED], (400, 300)),  # RED is 320x360 px: a quarter of it still has 80 px a side
    ((1600, 1200), [RED, BLUE], (800, 600)),  # BLUE is 240x240 px: halved, not quartered
    ((800, 600), [RED, BLUE], (800, 600)),  # BLUE is 120x120 px: halved, it would have fewer than 80
])
def test_the_crops_come_from_a_decode_as_small_as_the_smallest_face_allows(configured, size, colours, decoded):
    """libjpeg decodes at 1/2, 1/4 or 1/8 of the size (far less memory) while every searched face keeps 80 px on
    its shorter side; the crops are of the same regions, in fewer pixels."""
    server, rek, cdn = configured
    serve_photo(cdn, photo(colours, size=size))
    rek.on("DetectFaces", {"FaceDetails": [face_detail(colour) for colour in colours]})
    rek.on("SearchFacesByImage", search_by_colour({RED: [match(JOSE_ID, 99.0)], BLUE: [match(LI_ID, 98.0)]}))
    server.expect_oneshot_request(TAGS_PATH, method="POST").respond_with_json(
        {"public_ids": ["events/offsite-2024/team-dinner"]})

    response = handle(signed_request(sample("face_tagging", "upload")))

    assert response.status == 200 and response.body["status"] == "done"
    seen = {colour_of(image_bytes(params)): Image.open(io.BytesIO(image_bytes(params))).size
            for params in rek.params("SearchFacesByImage")}
    assert seen == {colour: crop_size(decoded, BOXES[colour]) for colour in colours}
    assert rek.params("DetectFaces")[0]["Image"]["Bytes"] == base64.b64encode(photo(colours, size=size)).decode()


def test_a_sideways_photo_is_decoded_smaller_as_its_upright_faces_allow(configured):
    # Stored 1200x1600 with EXIF orientation 6: upright 1600x1200, where RED's box is 320x360 px.
    _server, rek, _cdn = configured
    response = sideways_red_face(configured, (1600, 1200))

    assert response.status == 200 and response.body["tags"] == [f"face:{JOSE}"]
    crop = Image.open(io.BytesIO(image_bytes(rek.params("SearchFacesByImage")[0])))
    assert crop.size == crop_size((400, 300), BOXES[RED])  # a quarter of the upright photo, upright


def crop_size(size: tuple[int, int], box: dict[str, float]) -> tuple[int, int]:
    x0, y0, x1, y1 = images.crop_box(size, box)
    return x1 - x0, y1 - y0


def test_the_reduction_keeps_every_face_and_crop_big_enough():
    face = {"Left": 0.4, "Top": 0.4, "Width": 0.2, "Height": 0.2}
    assert images.reduction((1600, 1600), [face]) == 4  # 320 px faces: 80 at a quarter
    assert images.reduction((3200, 3200), [face]) == 8
    assert images.reduction((1560, 1560), [face]) == 2  # 312 px: a quarter would leave 78
    assert images.reduction((800, 800), [face]) == 2
    assert images.reduction((780, 780), [face]) == 1
    assert images.reduction((1600, 1600), [face, {**face, "Width": 0.05}]) == 1  # the smallest face decides
    # A face cut by the frame: its crop, clamped to the image, must keep Rekognition's 80 px minimum too.
    corner = {"Left": 0.0, "Top": 0.0, "Width": 0.1, "Height": 0.1}
    assert images.reduction((1600, 1600), [corner]) == 2  # 160 px face, a 200 px crop: halved, 80 and 100
    assert images.reduction((1500, 1500), [corner]) == 1  # halved: a 75 px face


def test_a_photo_whose_pixels_cannot_be_decoded_is_200_saying_why(configured):
    # The headers are fine (checked before Rekognition sees the photo); the pixels are cut short. Rekognition
    # found the faces; the crops cannot be made, and no retry would change that.
    server, rek, cdn = configured
    whole = photo([RED])
    serve_photo(cdn, whole[:len(whole) // 2])
    rek.on("DetectFaces", {"FaceDetails": [face_detail(RED)]})

    response = handle(signed_request(sample("face_tagging", "upload")))

    assert response.status == 200 and response.body["status"] == "ignored"
    assert "not a readable image" in response.body["reason"]
    assert rek.operations() == ["DetectFaces"] and server.log == []


def test_training_never_decodes_the_photo(configured, monkeypatch):
    """Rekognition indexes the JPEG as fetched: its pixels are decoded only to crop faces for a search."""
    _server, rek, cdn = configured
    monkeypatch.setattr(images, "decode", lambda *args, **kwargs: pytest.fail("training decoded the photo"))
    serve_photo(cdn, photo([RED]))
    rek.on("ListFaces", {"Faces": []})
    rek.on("DetectFaces", {"FaceDetails": [face_detail(RED)]})
    rek.on("IndexFaces", {"FaceRecords": [{"Face": {"FaceId": "new-face-1", "ExternalImageId": JOSE_ID}}]})

    response = handle(signed_request(sample("face_tagging", "training_upload")))

    assert response.status == 200 and response.body["training"] == {"training/jose-garcia-nunez": "indexed"}


def test_a_match_that_is_not_one_of_ours_is_skipped_for_the_next_one(configured):
    server, rek, cdn = configured
    serve_photo(cdn, photo([RED]))
    rek.on("DetectFaces", {"FaceDetails": [face_detail(RED)]})
    rek.on("SearchFacesByImage", {"FaceMatches": [match("employee-42", 99.9), match("Jan_65", 99.0),
                                                  match(LI_ID, 91.0)]})
    server.expect_oneshot_request(TAGS_PATH, method="POST").respond_with_json(
        {"public_ids": ["events/offsite-2024/team-dinner"]})

    response = handle(signed_request(sample("face_tagging", "upload")))

    assert response.body["tags"] == [f"face:{LI}"]


def test_no_face_means_no_search_and_no_tag(configured):
    server, rek, cdn = configured
    serve_photo(cdn, photo([]))
    rek.on("DetectFaces", {"FaceDetails": []})

    response = handle(signed_request(sample("face_tagging", "upload")))

    assert response.status == 200
    assert response.body == {"status": "ignored", "reason": "no face in the image", "faces": 0}
    assert rek.operations() == ["DetectFaces"] and server.log == []


def test_no_match_means_no_tag(configured):
    server, rek, cdn = configured
    serve_photo(cdn)
    rek.on("DetectFaces", {"FaceDetails": [face_detail(RED), face_detail(BLUE)]})
    rek.on("SearchFacesByImage", {"FaceMatches": []})

    response = handle(signed_request(sample("face_tagging", "upload")))

    assert response.status == 200 and response.body["status"] == "ignored"
    assert response.body["reason"] == "no face matched a known person"
    assert rek.operations().count("SearchFacesByImage") == 2 and server.log == []


def test_a_crop_in_which_rekognition_finds_no_face_is_no_match(configured):
    server, rek, cdn = configured
    serve_photo(cdn)
    rek.on("DetectFaces", {"FaceDetails": [face_detail(RED), face_detail(BLUE)]})
    rek.on("SearchFacesByImage", lambda params: Fail("InvalidParameterException")
           if colour_of(image_bytes(params)) == BLUE else {"FaceMatches": [match(JOSE_ID, 97.0)]})
    server.expect_oneshot_request(TAGS_PATH, method="POST").respond_with_json(
        {"public_ids": ["events/offsite-2024/team-dinner"]})

    response = handle(signed_request(sample("face_tagging", "upload")))

    assert response.status == 200 and response.body["tags"] == [f"face:{JOSE}"]


def test_already_tagged_image_needs_no_write(configured):
    server, rek, cdn = configured
    payload = json.loads(sample("face_tagging", "upload"))
    payload["tags"] = ["offsite", f"face:{JOSE}"]
    serve_photo(cdn, photo([RED]))
    rek.on("DetectFaces", {"FaceDetails": [face_detail(RED)]})
    rek.on("SearchFacesByImage", {"FaceMatches": [match(JOSE_ID, 99.0)]})

    response = handle(signed_request(payload))

    assert response.status == 200
    assert response.body == {"status": "ignored", "reason": "already tagged", "tags": [f"face:{JOSE}"]}
    assert server.log == []


def test_without_a_collection_nothing_is_tagged(configured):
    server, rek, cdn = configured
    serve_photo(cdn, photo([RED]))
    rek.on("DetectFaces", {"FaceDetails": [face_detail(RED)]})
    rek.on("SearchFacesByImage", Fail("ResourceNotFoundException"))

    response = handle(signed_request(sample("face_tagging", "upload")))

    assert response.status == 200 and response.body["status"] == "ignored"
    assert "collection does not exist" in response.body["reason"]
    assert server.log == [] and "CreateCollection" not in rek.operations()


@pytest.mark.parametrize(("code", "status", "expected"), [
    ("ThrottlingException", 400, 503), ("ProvisionedThroughputExceededException", 400, 503),
    ("InternalServerError", 500, 503), ("ServiceUnavailable", 503, 503),
    ("AccessDeniedException", 400, 500), ("UnrecognizedClientException", 400, 500),
])
def test_rekognition_failures_on_detect_map_to_the_promised_status(configured, code, status, expected):
    server, rek, cdn = configured
    serve_photo(cdn)
    rek.on("DetectFaces", Fail(code, status))

    response = handle(signed_request(sample("face_tagging", "upload")))

    assert response.status == expected
    assert response.body["error"] == ("rekognition_unavailable" if expected == 503 else "rekognition_rejected")
    assert rek.operations() == ["DetectFaces"] and server.log == []


@pytest.mark.parametrize("code", ["InvalidImageFormatException", "ImageTooLargeException"])
def test_an_image_rekognition_cannot_read_is_200_saying_why(configured, code):
    server, rek, cdn = configured
    serve_photo(cdn)
    rek.on("DetectFaces", Fail(code))

    response = handle(signed_request(sample("face_tagging", "upload")))

    assert response.status == 200
    assert response.body == {"status": "ignored", "reason": f"Rekognition cannot read the image ({code})"}
    assert server.log == []


def test_one_throttled_search_fails_the_request_before_any_tag_is_written(configured):
    server, rek, cdn = configured
    serve_photo(cdn)
    rek.on("DetectFaces", {"FaceDetails": [face_detail(RED), face_detail(BLUE), face_detail(GREEN)]})
    rek.on("SearchFacesByImage", lambda params: Fail("ThrottlingException")
           if colour_of(image_bytes(params)) == BLUE else {"FaceMatches": [match(JOSE_ID, 99.0)]})

    response = handle(signed_request(sample("face_tagging", "upload")))

    assert response.status == 503 and response.body["error"] == "rekognition_unavailable"
    assert server.log == []  # nothing half-done: the retry tags all the names at once


def test_rekognition_timeout_is_503(configured, monkeypatch):
    server, rek, cdn = configured
    release = threading.Event()

    def too_slow(params):
        release.wait(2)
        return {"FaceDetails": []}

    monkeypatch.setenv("REKOGNITION_TIMEOUT_SECONDS", "0.2")
    serve_photo(cdn)
    rek.on("DetectFaces", too_slow)
    try:
        response = handle(signed_request(sample("face_tagging", "upload")))
    finally:
        release.set()

    assert response.status == 503 and response.body["error"] == "rekognition_unavailable"
    assert server.log == []


@pytest.mark.parametrize(("status", "expected", "error"), [
    (420, 503, "cloudinary_unavailable"), (429, 503, "cloudinary_unavailable"), (500, 503, "cloudinary_unavailable"),
    (502, 503, "cloudinary_unavailable"), (401, 500, "cloudinary_delivery_refused"),
])
def test_image_delivery_failures_map_to_the_promised_status(configured, status, expected, error):
    server, rek, cdn = configured
    cdn.serve(b"", status=status, headers={"X-Cld-Error": "simulated"})

    response = handle(signed_request(sample("face_tagging", "upload")))

    assert response.status == expected and response.body["error"] == error
    assert rek.calls == [] and server.log == []


@pytest.mark.parametrize("fault", ["stall", "reset"])
def test_image_delivery_timeout_or_reset_is_503(configured, monkeypatch, fault):
    server, rek, cdn = configured
    monkeypatch.setattr(images, "DEFAULT_READ_TIMEOUT_SECONDS", 0.2)  # the stall ends at the client's timeout
    serve_photo(cdn)
    cdn.fail_call(0, Fault(fault))

    response = handle(signed_request(sample("face_tagging", "upload")))

    assert response.status == 503 and response.body["error"] == "cloudinary_unavailable"
    assert len(cdn.requests) == 1 and rek.calls == [] and server.log == []


@pytest.mark.parametrize("location", ["{cdn}/followed.jpg", "https://evil.example/x.jpg",
                                      "http://169.254.169.254/latest/meta-data/"])
def test_a_redirect_from_the_cdn_is_not_followed(configured, location):
    server, rek, cdn = configured
    cdn.serve(b"", status=302, headers={"Location": location.format(cdn=cdn.url)})
    cdn.route("/followed.jpg", photo())  # where the first redirect leads: a request there would be seen

    response = handle(signed_request(sample("face_tagging", "upload")))

    assert response.status == 200 and "cannot deliver it as a JPEG (302" in response.body["reason"]
    assert len(cdn.requests) == 1 and cdn.requested("/followed.jpg") == 0
    assert rek.calls == [] and server.log == []


@pytest.mark.parametrize("public_id", ["http://127.0.0.1:18900/probe", "HTTPS://evil.example/x", "//evil.example/x",
                                       "ftp://evil.example/x"])
def test_a_public_id_that_is_a_url_is_400_and_fetches_nothing(configured, public_id):
    server, rek, cdn = configured
    serve_photo(cdn)

    response = handle(signed_request({**json.loads(sample("face_tagging", "upload")), "public_id": public_id}))

    assert response.status == 400 and response.body["error"] == "bad_field"
    assert no_calls(server, rek, cdn)


def test_only_the_accounts_delivery_host_is_fetched(monkeypatch):
    # Even a public ID that slips past the check cannot make the SDK's URL leave the account's host.
    monkeypatch.setenv("CLOUDINARY_URL", f"cloudinary://{API_KEY}:{SECRET}@{CLOUD_NAME}")
    for url in ("https://evil.example/x.jpg", "http://127.0.0.1:18900/probe"):
        with pytest.raises(images.ImageUnusable):
            images.delivery_url(url, "image", "upload", None)  # the SDK hands such a "public ID" back as is
    assert images.delivery_url("people/ana", "image", "upload", 3).startswith(
        f"https://res.cloudinary.com/{CLOUD_NAME}/image/upload/")
    # A private CDN (secure_distribution) is the account's delivery host: its URLs are the ones fetched.
    monkeypatch.setenv("CLOUDINARY_URL", f"cloudinary://{API_KEY}:{SECRET}@{CLOUD_NAME}"
                                         "?secure_distribution=media.example.com&private_cdn=true")
    assert images.delivery_url("people/ana", "image", "upload", 3).startswith("https://media.example.com/image/")
    with pytest.raises(images.ImageUnusable):
        images.delivery_url("https://res.cloudinary.com/other/image/upload/x.jpg", "image", "upload", None)


def test_plain_http_to_the_loopback_cdn_only_with_the_test_flag_and_never_on_a_platform(monkeypatch):
    url = "https://127.0.0.1:8123/demo-cloud/image/upload/v1/x.jpg"
    assert images._reachable(url) == url  # without the flag: https, as built
    monkeypatch.setenv(LOOPBACK_VARIABLE, "1")
    assert images._reachable(url) == "http://127.0.0.1:8123/demo-cloud/image/upload/v1/x.jpg"
    for elsewhere in ("https://res.cloudinary.com/demo-cloud/image/upload/v1/x.jpg",
                      "https://127.0.0.1.evil.example/x.jpg", "https://localhost.example:443/x.jpg"):
        assert images._reachable(elsewhere) == elsewhere
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "face_tagging")
    with pytest.raises(ConfigError) as refused:
        images._reachable(url)
    assert LOOPBACK_VARIABLE in refused.value.log_detail


def test_an_asset_deleted_before_the_fetch_is_ignored(configured):
    server, rek, cdn = configured
    cdn.serve(b"", status=404)

    response = handle(signed_request(sample("face_tagging", "upload")))

    assert response.status == 200 and response.body["reason"] == "the asset no longer exists"
    assert rek.calls == [] and server.log == []


@pytest.mark.parametrize(("body", "status", "reason"), [
    (b"<html>not an image</html>", 200, "not a readable image"),
    (b"", 400, "cannot deliver it as a JPEG"),
])
def test_an_image_that_cannot_be_delivered_or_decoded_is_200_saying_why(configured, body, status, reason):
    server, rek, cdn = configured
    cdn.serve(body, status=status, content_type="text/html")

    response = handle(signed_request(sample("face_tagging", "upload")))

    assert response.status == 200 and reason in response.body["reason"]
    assert rek.calls == [] and server.log == []


def test_a_delivery_over_five_megabytes_is_refused_not_sent(configured):
    _server, rek, cdn = configured
    serve_photo(cdn, b"\xff" * (5 * 1024 * 1024 + 1))

    response = handle(signed_request(sample("face_tagging", "upload")))

    assert response.status == 200 and "over Rekognition's 5 MB" in response.body["reason"]
    assert rek.calls == []


@pytest.mark.parametrize(("status", "expected"), [(420, 503), (429, 503), (500, 503), (401, 500)])
def test_cloudinary_tag_failures_map_to_the_promised_status(configured, status, expected):
    server, rek, cdn = configured
    serve_photo(cdn, photo([RED]))
    rek.on("DetectFaces", {"FaceDetails": [face_detail(RED)]})
    rek.on("SearchFacesByImage", {"FaceMatches": [match(JOSE_ID, 99.0)]})
    server.expect_oneshot_request(TAGS_PATH, method="POST").respond_with_json(
        {"error": {"message": "simulated"}}, status=status)

    response = handle(signed_request(sample("face_tagging", "upload")))

    assert response.status == expected and len(server.log) == 1


def test_cloudinary_tag_timeout_is_503(configured, monkeypatch):
    server, rek, cdn = configured
    release = threading.Event()

    too_slow = answers_too_late(release)

    monkeypatch.setenv("CLOUDINARY_TIMEOUT_SECONDS", "0.2")
    serve_photo(cdn, photo([RED]))
    rek.on("DetectFaces", {"FaceDetails": [face_detail(RED)]})
    rek.on("SearchFacesByImage", {"FaceMatches": [match(JOSE_ID, 99.0)]})
    server.expect_oneshot_request(TAGS_PATH, method="POST").respond_with_handler(too_slow)
    try:
        response = handle(signed_request(sample("face_tagging", "upload")))
    finally:
        release.set()
        # The server logs the slow request once its handler returns: wait for that here, or the entry
        # lands in the next test's log (the Cloudinary stand-in is shared by the session).
        logged = threading.Event()
        for _ in range(200):
            if server.log or logged.wait(0.01):
                break

    assert response.status == 503 and response.body["error"] == "cloudinary_unavailable"
    assert len(server.log) == 1  # the one tags/add attempt; nothing else was written


def test_out_of_time_before_searching_is_503_with_nothing_written(configured, monkeypatch):
    server, rek, cdn = configured
    monkeypatch.setenv("FACE_TIME_BUDGET_SECONDS", "0")
    serve_photo(cdn)

    response = handle(signed_request(sample("face_tagging", "upload")))

    assert response.status == 503 and response.body["error"] == "out_of_time"
    assert server.log == [] and "SearchFacesByImage" not in rek.operations()


def test_dry_run_searches_and_reports_the_tags_but_writes_nothing(configured, monkeypatch):
    server, rek, cdn = configured
    monkeypatch.setenv("DRY_RUN", "1")
    serve_photo(cdn, photo([RED]))
    rek.on("DetectFaces", {"FaceDetails": [face_detail(RED)]})
    rek.on("SearchFacesByImage", {"FaceMatches": [match(JOSE_ID, 99.0)]})

    response = handle(signed_request(sample("face_tagging", "upload")))

    assert response.status == 200 and response.body["status"] == "dry_run"
    assert response.body["actions"] == [
        {"action": "search_faces", "faces": 1, "searched": 1, "matched": 1},
        {"action": "add_tags", "public_id": "events/offsite-2024/team-dinner", "tags": [f"face:{JOSE}"]}]
    assert server.log == []  # the write did not happen
    assert rek.operations() == ["DetectFaces", "SearchFacesByImage"]  # reads only


def test_video_upload_is_ignored_without_any_call(configured):
    server, rek, cdn = configured

    response = handle(signed_request(sample("face_tagging", "video_upload")))

    assert response.status == 200 and response.body["status"] == "ignored"
    assert "video" in response.body["reason"]
    assert no_calls(server, rek, cdn)


def test_its_own_tag_writes_are_ignored_without_any_call(configured):
    server, rek, cdn = configured

    response = handle(signed_request(sample("face_tagging", "own_tags_changed")))

    assert response.status == 200 and response.body["status"] == "ignored"
    assert no_calls(server, rek, cdn)


@pytest.mark.parametrize("name", ["upload", "training_upload", "training_label_added", "delete_training"])
def test_bad_signature_is_401_with_no_outbound_request(configured, name):
    server, rek, cdn = configured

    response = handle(signed_request(sample("face_tagging", name), secret="not-the-secret"))

    assert response.status == 401 and response.body["error"] == "signature_mismatch"
    assert no_calls(server, rek, cdn)


def test_an_ignored_type_is_200_with_no_outbound_request(configured):
    server, rek, cdn = configured

    response = handle(signed_request({"notification_type": "eager", "public_id": "x", "eager": []}))

    assert response.status == 200 and response.body["status"] == "ignored"
    assert no_calls(server, rek, cdn)


def test_missing_public_id_is_400_and_missing_collection_setting_is_500(configured, monkeypatch, caplog):
    server, rek, cdn = configured
    assert handle(signed_request({"notification_type": "upload", "resource_type": "image"})).status == 400
    monkeypatch.delenv("REKOGNITION_COLLECTION_ID")
    response = handle(signed_request(sample("face_tagging", "upload")))
    assert response.status == 500 and response.body["error"] == "not_configured"
    assert "REKOGNITION_COLLECTION_ID" in caplog.text and "REKOGNITION" not in json.dumps(response.body)
    assert no_calls(server, rek, cdn)


def test_lambda_function_url_entry_point(configured):
    from functions.face_tagging.handler import handler

    _server, rek, cdn = configured
    serve_photo(cdn, photo([]))
    rek.on("DetectFaces", {"FaceDetails": []})

    result = handler(function_url_event(sample("face_tagging", "upload"), base64_body=True), None)

    assert result["statusCode"] == 200 and json.loads(result["body"])["reason"] == "no face in the image"


def test_a_rejected_or_ignored_request_imports_no_sdk():
    """Cold start: a bad signature, or a notification it ignores, must not load boto3, urllib3 or Pillow."""
    script = f"""
import json, sys
from functions.face_tagging.handler import handle
from tests.helpers import sample, signed_request
import os
os.environ["CLOUDINARY_URL"] = "cloudinary://{API_KEY}:{SECRET}@{CLOUD_NAME}"
os.environ["REKOGNITION_COLLECTION_ID"] = "c"
statuses = [handle(signed_request(sample("face_tagging", "upload"), secret="wrong")).status,
            handle(signed_request(sample("face_tagging", "own_tags_changed"))).status,
            handle(signed_request(sample("face_tagging", "video_upload"))).status]
loaded = [name for name in ("boto3", "botocore", "requests", "urllib3", "PIL", "cloudinary") if name in sys.modules]
print(json.dumps([statuses, loaded]))
"""
    env = {"PATH": "/usr/bin:/bin", "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"}
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60, check=True)
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [[401, 200, 200], []]


# --- train ---------------------------------------------------------------------------------------------

def test_training_upload_indexes_its_one_face_under_the_encoded_name(configured):
    server, rek, cdn = configured
    training_photo = photo([RED])
    serve_photo(cdn, training_photo)
    rek.on("ListFaces", {"Faces": [{"FaceId": "other-1", "ExternalImageId": LI_ID}], "FaceModelVersion": "7.0"})
    rek.on("DetectFaces", {"FaceDetails": [face_detail(RED)]})
    rek.on("IndexFaces", {"FaceRecords": [{"Face": {"FaceId": "new-face-1", "ExternalImageId": JOSE_ID}}],
                          "UnindexedFaces": []})

    response = handle(signed_request(sample("face_tagging", "training_upload")))

    assert response.status == 200
    assert response.body == {"status": "done", "training": {"training/jose-garcia-nunez": "indexed"},
                             "actions": [{"action": "index_face", "public_id": "training/jose-garcia-nunez",
                                          "external_image_id": JOSE_ID}]}
    assert rek.operations() == ["ListFaces", "DetectFaces", "IndexFaces"]
    assert rek.params("ListFaces") == [{"CollectionId": COLLECTION, "MaxResults": 4096}]
    assert rek.params("IndexFaces") == [{
        "CollectionId": COLLECTION, "Image": {"Bytes": base64.b64encode(training_photo).decode()},
        "ExternalImageId": JOSE_ID, "MaxFaces": 1, "QualityFilter": "AUTO", "DetectionAttributes": ["DEFAULT"]}]
    assert "/v1715618402/training/jose-garcia-nunez.jpg" in cdn.requests[0].path
    assert server.log == []  # an upload carries folder and tags: no Admin API call


@pytest.mark.parametrize("faces", [0, 2])
def test_a_training_image_without_exactly_one_face_is_not_indexed(configured, faces):
    _server, rek, cdn = configured
    serve_photo(cdn)
    rek.on("ListFaces", {"Faces": []})
    rek.on("DetectFaces", {"FaceDetails": [face_detail(RED), face_detail(BLUE)][:faces]})

    response = handle(signed_request(sample("face_tagging", "training_upload")))

    assert response.status == 200 and response.body["status"] == "ignored"
    assert response.body["reason"] == (f"not indexed: the image shows {faces} faces; a training image must show "
                                       "exactly one")
    assert "IndexFaces" not in rek.operations()


def test_the_collection_is_created_when_missing(configured):
    _server, rek, cdn = configured
    serve_photo(cdn, photo([RED]))
    rek.on("ListFaces", Fail("ResourceNotFoundException"))
    rek.on("DetectFaces", {"FaceDetails": [face_detail(RED)]})
    rek.on("CreateCollection", {"CollectionArn": "arn:aws:rekognition:us-east-1:1:collection/staff-faces",
                                "StatusCode": 200, "FaceModelVersion": "7.0"})
    rek.on("IndexFaces", {"FaceRecords": [{"Face": {"FaceId": "new-face-1"}}]})

    response = handle(signed_request(sample("face_tagging", "training_upload")))

    assert response.status == 200 and response.body["status"] == "done"
    assert rek.operations() == ["ListFaces", "DetectFaces", "CreateCollection", "IndexFaces"]
    assert rek.params("CreateCollection") == [{"CollectionId": COLLECTION}]


def test_a_repeat_finds_the_face_indexed_and_does_nothing(configured):
    _server, rek, cdn = configured
    rek.on("ListFaces", {"Faces": [{"FaceId": "face-1", "ExternalImageId": JOSE_ID}]})

    response = handle(signed_request(sample("face_tagging", "training_upload")))

    assert response.status == 200
    assert response.body == {"status": "ignored", "reason": "already indexed",
                             "training": {"training/jose-garcia-nunez": "already indexed"}}
    assert rek.operations() == ["ListFaces"] and cdn.requests == []


def test_a_new_label_replaces_the_old_one_index_first_then_delete(configured):
    _server, rek, cdn = configured
    serve_photo(cdn, photo([RED]))
    rek.on("ListFaces", {"Faces": [{"FaceId": "old-face", "ExternalImageId": f"{TRAINING_ASSET}:Jose"},
                                   {"FaceId": "someone-else", "ExternalImageId": LI_ID}]})
    rek.on("DetectFaces", {"FaceDetails": [face_detail(RED)]})
    rek.on("IndexFaces", {"FaceRecords": [{"Face": {"FaceId": "new-face"}}]})
    rek.on("DeleteFaces", {"DeletedFaces": ["old-face"]})

    response = handle(signed_request(sample("face_tagging", "training_upload")))

    assert response.status == 200 and response.body["status"] == "done"
    assert rek.operations() == ["ListFaces", "DetectFaces", "IndexFaces", "DeleteFaces"]
    assert rek.params("DeleteFaces") == [{"CollectionId": COLLECTION, "FaceIds": ["old-face"]}]


def test_a_face_rekognition_will_not_index_is_reported(configured):
    _server, rek, cdn = configured
    serve_photo(cdn, photo([RED]))
    rek.on("ListFaces", {"Faces": []})
    rek.on("DetectFaces", {"FaceDetails": [face_detail(RED)]})
    rek.on("IndexFaces", {"FaceRecords": [], "UnindexedFaces": [{"Reasons": ["LOW_SHARPNESS", "SMALL_BOUNDING_BOX"]}]})

    response = handle(signed_request(sample("face_tagging", "training_upload")))

    assert response.status == 200 and response.body["status"] == "ignored"
    assert response.body["reason"] == "not indexed: Rekognition rejected the face (LOW_SHARPNESS, SMALL_BOUNDING_BOX)"


def test_a_name_too_long_to_store_is_refused_clearly_without_any_call(configured):
    server, rek, cdn = configured
    payload = json.loads(sample("face_tagging", "training_upload"))
    payload["tags"] = ["faceLabel:" + "名" * 30]  # 30 CJK letters: 270 characters once encoded

    response = handle(signed_request(payload))

    assert response.status == 200 and response.body["status"] == "ignored"
    assert response.body["reason"].startswith("not indexed: the name is too long")
    assert no_calls(server, rek, cdn)


@pytest.mark.parametrize(("tags", "reason"), [
    (["staff"], "not indexed: no faceLabel: tag"),
    (["faceLabel:Ann", "faceLabel:Bob"], "not indexed: 2 different faceLabel: tags"),
])
def test_a_training_image_needs_exactly_one_label(configured, tags, reason):
    server, rek, cdn = configured
    payload = json.loads(sample("face_tagging", "training_upload"))
    payload["tags"] = tags

    response = handle(signed_request(payload))

    assert response.status == 200 and response.body["reason"] == reason
    assert no_calls(server, rek, cdn)


@pytest.mark.parametrize(("operation", "code"), [("IndexFaces", "ThrottlingException"),
                                                 ("ListFaces", "InternalServerError")])
def test_training_failures_are_503(configured, operation, code):
    _server, rek, cdn = configured
    serve_photo(cdn, photo([RED]))
    rek.on("ListFaces", {"Faces": []})
    rek.on("DetectFaces", {"FaceDetails": [face_detail(RED)]})
    rek.on(operation, Fail(code, 500 if code == "InternalServerError" else 400))

    response = handle(signed_request(sample("face_tagging", "training_upload")))

    assert response.status == 503 and response.body["error"] == "rekognition_unavailable"


def test_dry_run_training_reports_the_index_and_writes_nothing(configured, monkeypatch):
    _server, rek, cdn = configured
    monkeypatch.setenv("DRY_RUN", "1")
    serve_photo(cdn, photo([RED]))
    rek.on("ListFaces", Fail("ResourceNotFoundException"))
    rek.on("DetectFaces", {"FaceDetails": [face_detail(RED)]})

    response = handle(signed_request(sample("face_tagging", "training_upload")))

    assert response.status == 200 and response.body["status"] == "dry_run"
    assert [action["action"] for action in response.body["actions"]] == ["create_collection", "index_face"]
    assert response.body["training"] == {"training/jose-garcia-nunez": "would be indexed"}
    assert rek.operations() == ["ListFaces", "DetectFaces"]


def test_a_label_added_later_trains_after_reading_the_assets_current_state(configured):
    server, rek, cdn = configured
    server.expect_oneshot_request(BY_ASSET_IDS_PATH, method="GET").respond_with_json({"resources": [{
        "asset_id": LI_ASSET, "public_id": "training/li-wei", "resource_type": "image", "type": "upload",
        "version": 1715619000, "format": "jpg", "asset_folder": "training", "tags": ["faceLabel:李伟", "staff"]}]})
    serve_photo(cdn, photo([BLUE]))
    rek.on("ListFaces", {"Faces": []})
    rek.on("DetectFaces", {"FaceDetails": [face_detail(BLUE)]})
    rek.on("IndexFaces", {"FaceRecords": [{"Face": {"FaceId": "li-face"}}]})

    response = handle(signed_request(sample("face_tagging", "training_label_added")))

    assert response.status == 200 and response.body["training"] == {"training/li-wei": "indexed"}
    assert len(server.log) == 1  # one Admin API call
    request, _ = server.log[0]
    assert request.path == BY_ASSET_IDS_PATH
    assert request.args.getlist("asset_ids[]") == [LI_ASSET] and request.args["tags"] == "true"
    assert rek.params("IndexFaces")[0]["ExternalImageId"] == LI_ID
    assert "/v1715619000/training/li-wei.jpg" in cdn.requests[0].path


def test_a_label_added_to_several_images_at_once_costs_one_lookup_and_one_listing(configured):
    server, rek, cdn = configured
    ann_asset = "1a2b3c4d5e6f708192a3b4c5d6e7f809"
    payload = json.loads(sample("face_tagging", "training_label_added"))
    payload["resources"] += [dict(payload["resources"][0]),  # listed twice: trained once
                             {"asset_id": ann_asset, "public_id": "training/ann", "type": "upload",
                              "resource_type": "image", "added": ["faceLabel:Ann"]}]
    server.expect_oneshot_request(BY_ASSET_IDS_PATH, method="GET").respond_with_json({"resources": [
        {"asset_id": LI_ASSET, "public_id": "training/li-wei", "asset_folder": "training", "tags": ["faceLabel:李伟"]},
        {"asset_id": ann_asset, "public_id": "training/ann", "asset_folder": "training", "tags": ["faceLabel:Ann"]}]})
    serve_photo(cdn, photo([RED]))
    rek.on("ListFaces", {"Faces": []})
    rek.on("DetectFaces", {"FaceDetails": [face_detail(RED)]})
    rek.on("IndexFaces", {"FaceRecords": [{"Face": {"FaceId": "new"}}]})

    response = handle(signed_request(payload))

    assert response.status == 200
    assert response.body["training"] == {"training/li-wei": "indexed", "training/ann": "indexed"}
    assert len(server.log) == 1 and server.log[0][0].args.getlist("asset_ids[]") == [LI_ASSET, ann_asset]
    assert rek.operations() == ["ListFaces", "DetectFaces", "IndexFaces", "DetectFaces", "IndexFaces"]
    assert [params["ExternalImageId"] for params in rek.params("IndexFaces")] == [LI_ID, f"{ann_asset}:Ann"]


@pytest.mark.parametrize(("resources", "reason"), [
    ([], "not indexed: the asset no longer exists"),
    ([{"asset_id": LI_ASSET, "public_id": "training/li-wei", "asset_folder": "people", "tags": ["faceLabel:李伟"]}],
     "not indexed: not in the training folder"),
])
def test_a_label_on_an_asset_gone_or_outside_the_training_folder_trains_nothing(configured, resources, reason):
    server, rek, cdn = configured
    server.expect_oneshot_request(BY_ASSET_IDS_PATH, method="GET").respond_with_json({"resources": resources})

    response = handle(signed_request(sample("face_tagging", "training_label_added")))

    assert response.status == 200 and response.body["reason"] == reason
    assert rek.calls == [] and cdn.requests == []


def test_admin_api_rate_limit_on_the_lookup_is_503(configured):
    server, rek, _cdn = configured
    server.expect_oneshot_request(BY_ASSET_IDS_PATH, method="GET").respond_with_json(
        {"error": {"message": "Rate Limit Exceeded"}}, status=420)

    response = handle(signed_request(sample("face_tagging", "training_label_added")))

    assert response.status == 503 and rek.calls == []


@pytest.mark.parametrize(("fields", "training"), [
    ({"public_id": "training/ann"}, True),  # fixed folders: the public ID's path
    ({"public_id": "training/team/ann"}, True),  # a subfolder of the training folder
    ({"public_id": "trainingday/ann"}, False),
    ({"public_id": "training/ann", "asset_folder": "people"}, False),  # dynamic folders: asset_folder decides
    ({"public_id": "ann", "asset_folder": "training"}, True),
    ({"public_id": "ann", "asset_folder": ""}, False),
])
def test_what_counts_as_the_training_folder(fields, training):
    options = face_handler.Options("c", "training", "faceLabel:", "face:", 80.0, 10, 12.0)
    asset = face_handler.Asset.from_fields(fields, need_asset_id=False)
    assert options.is_training(asset.folder) is training


# --- forget --------------------------------------------------------------------------------------------

def test_deleting_a_training_image_deletes_its_faces_found_across_pages(configured):
    server, rek, cdn = configured
    server.expect_oneshot_request(BY_ASSET_IDS_PATH, method="GET").respond_with_json({"resources": []})
    pages = {None: {"Faces": [{"FaceId": "jose-1", "ExternalImageId": JOSE_ID},
                              {"FaceId": "li-1", "ExternalImageId": LI_ID},
                              {"FaceId": "foreign", "ExternalImageId": "employee-42"}], "NextToken": "page-2"},
             "page-2": {"Faces": [{"FaceId": "jose-2", "ExternalImageId": JOSE_ID}]}}
    rek.on("ListFaces", lambda params: pages[params.get("NextToken")])
    rek.on("DeleteFaces", {"DeletedFaces": ["jose-1", "jose-2"]})

    response = handle(signed_request(sample("face_tagging", "delete_training")))

    assert response.status == 200
    assert response.body == {"status": "done", "forgotten": 2, "actions": [
        {"action": "delete_faces", "public_ids": ["training/jose-garcia-nunez"], "face_ids": ["jose-1", "jose-2"]}]}
    assert rek.params("ListFaces") == [{"CollectionId": COLLECTION, "MaxResults": 4096},
                                       {"CollectionId": COLLECTION, "MaxResults": 4096, "NextToken": "page-2"}]
    assert rek.params("DeleteFaces") == [{"CollectionId": COLLECTION, "FaceIds": ["jose-1", "jose-2"]}]
    request, _ = server.log[0]
    assert request.args.getlist("asset_ids[]") == [TRAINING_ASSET]
    assert cdn.requests == []


def test_a_restored_training_image_keeps_its_faces(configured):
    server, rek, _cdn = configured
    server.expect_oneshot_request(BY_ASSET_IDS_PATH, method="GET").respond_with_json({"resources": [
        {"asset_id": TRAINING_ASSET, "public_id": "training/jose-garcia-nunez", "asset_folder": "training"}]})

    response = handle(signed_request(sample("face_tagging", "delete_training")))

    assert response.status == 200 and response.body["status"] == "ignored"
    assert "exists again" in response.body["reason"]
    assert rek.calls == []


def test_a_repeated_delete_finds_nothing_to_forget(configured):
    server, rek, _cdn = configured
    server.expect_oneshot_request(BY_ASSET_IDS_PATH, method="GET").respond_with_json({"resources": []})
    rek.on("ListFaces", {"Faces": [{"FaceId": "li-1", "ExternalImageId": LI_ID}]})

    response = handle(signed_request(sample("face_tagging", "delete_training")))

    assert response.status == 200
    assert response.body["reason"] == "no face of the deleted training image is indexed"
    assert rek.operations() == ["ListFaces"]


def test_deleting_an_image_outside_the_training_folder_makes_no_call(configured):
    server, rek, cdn = configured
    payload = json.loads(sample("face_tagging", "delete_training"))
    payload["resources"][0].update(public_id="events/x", asset_folder="events")

    response = handle(signed_request(payload))

    assert response.status == 200 and response.body["status"] == "ignored"
    assert no_calls(server, rek, cdn)


def test_delete_faces_throttled_is_503_and_dry_run_deletes_nothing(configured, monkeypatch):
    server, rek, _cdn = configured
    server.expect_request(BY_ASSET_IDS_PATH, method="GET").respond_with_json({"resources": []})
    rek.on("ListFaces", {"Faces": [{"FaceId": "jose-1", "ExternalImageId": JOSE_ID}]})
    rek.on("DeleteFaces", Fail("ThrottlingException"))

    assert handle(signed_request(sample("face_tagging", "delete_training"))).status == 503

    rek.calls.clear()
    monkeypatch.setenv("DRY_RUN", "1")
    response = handle(signed_request(sample("face_tagging", "delete_training")))
    assert response.status == 200 and response.body["status"] == "dry_run"
    assert response.body["actions"][0]["face_ids"] == ["jose-1"]
    assert rek.operations() == ["ListFaces"]


# --- demo mode: `python -m shared send face_tagging <sample>` against the local server ------------------

@pytest.mark.parametrize("name", ["upload", "training_upload", "training_label_added", "own_tags_changed",
                                  "delete_training", "video_upload"])
def test_every_sample_answers_200_in_demo_mode_without_any_call(rek, cdn, httpserver, monkeypatch, name):
    monkeypatch.setenv("CLOUDINARY_WEBHOOKS_DEMO", "1")
    monkeypatch.setenv("CLOUDINARY_NOTIFICATION_SECRETS", SECRET)

    response = handle(signed_request(sample("face_tagging", name)))

    assert response.status == 200 and response.body["status"] in ("dry_run", "ignored")
    assert rek.calls == [] and cdn.requests == [] and httpserver.log == []


# --- names ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "encoded"), [
    ("José García Núñez", "Jos_C3_A9_20Garc_C3_ADa_20N_C3_BA_C3_B1ez"),
    ("李伟", "_E6_9D_8E_E4_BC_9F"),
    ("Anne-Marie O'Neil", "Anne-Marie_20O_27Neil"),
    ("J.R.R. Tolkien", "J.R.R._20Tolkien"),
    ("a_b:c", "a_5Fb_3Ac"),
])
def test_names_encode_readably_and_round_trip(name, encoded):
    external_id = names.external_image_id("abc123", name)
    assert external_id == f"abc123:{encoded}"
    assert names.parse_external_id(external_id) == ("abc123", name)


def test_names_are_compared_in_one_canonical_form():
    decomposed = "Jose\u0301  García "  # "e" + combining accent, doubled and trailing spaces
    assert names.external_image_id("a1", decomposed) == names.external_image_id("a1", "José García")


@given(st.text(min_size=1, max_size=120))
@settings(max_examples=300, deadline=None)
def test_any_name_round_trips_or_is_refused_never_a_bad_id(name):
    try:
        external_id = names.external_image_id("4f8a2c6e0b3d5f7a9c1e3b5d7f9a1c3e", name)
    except names.NameRefused:
        cleaned = names.clean_name(name)
        assert not cleaned or "," in cleaned or len(names.encode_name(cleaned)) > 255 - 33
        return
    assert re.fullmatch(r"[a-zA-Z0-9_.\-:]{1,255}", external_id)
    assert names.parse_external_id(external_id) == ("4f8a2c6e0b3d5f7a9c1e3b5d7f9a1c3e", names.clean_name(name))


@pytest.mark.parametrize("external_id", [None, "", "employee-42", "abc:", "abc:Jan_65", "abc:Ann_2", "abc:_FF",
                                         "a-b:Ann", "abc:Ann__20", "abc:_20Ann"])
def test_ids_not_written_by_this_function_are_not_names(external_id):
    assert names.parse_external_id(external_id) is None


def test_the_longest_name_that_fits_is_stored_and_one_more_letter_is_refused():
    asset_id = "4f8a2c6e0b3d5f7a9c1e3b5d7f9a1c3e"
    fits = "a" * (255 - len(asset_id) - 1)
    assert len(names.external_image_id(asset_id, fits)) == 255
    with pytest.raises(names.NameRefused, match="too long"):
        names.external_image_id(asset_id, fits + "a")


# --- the client ----------------------------------------------------------------------------------------

def test_one_client_per_warm_container_with_bounded_timeouts_and_retries(monkeypatch):
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing-key-id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret-key")
    first = rekognition.client()
    assert rekognition.client() is first
    assert first.meta.region_name == "eu-west-1"
    assert first.meta.config.read_timeout == 4.0 and first.meta.config.connect_timeout == 3.0
    assert first.meta.config.retries == {"mode": "standard", "total_max_attempts": 2}
    monkeypatch.setenv("AWS_ENDPOINT_URL_REKOGNITION", "http://127.0.0.1:9")
    other = rekognition.client()
    assert other is not first and other.meta.endpoint_url == "http://127.0.0.1:9"


def test_a_cold_recognition_builds_the_client_while_the_image_downloads(configured, monkeypatch):
    """The client is built in the request's thread (botocore's import is Python work: a thread of its own would
    only contend for the GIL) while the download, which waits on the network, runs in another."""
    server, rek, cdn = configured
    monkeypatch.setattr(rekognition, "_clients", {})  # a cold start
    threads = {}
    create, fetch = rekognition._create, images.fetch

    def recording_create(*args):
        threads["client"] = threading.current_thread()
        return create(*args)

    def recording_fetch(url, read_timeout=images.DEFAULT_READ_TIMEOUT_SECONDS, meanwhile=None):
        if meanwhile is None:
            threads["download"] = threading.current_thread()
        return fetch(url, read_timeout, meanwhile)

    monkeypatch.setattr(rekognition, "_create", recording_create)
    monkeypatch.setattr(images, "fetch", recording_fetch)
    serve_photo(cdn, photo([RED]))
    rek.on("DetectFaces", {"FaceDetails": [face_detail(RED)]})
    rek.on("SearchFacesByImage", {"FaceMatches": [match(JOSE_ID, 99.0)]})
    server.expect_oneshot_request(TAGS_PATH, method="POST").respond_with_json(
        {"public_ids": ["events/offsite-2024/team-dinner"]})

    response = handle(signed_request(sample("face_tagging", "upload")))

    assert response.status == 200 and response.body["tags"] == [f"face:{JOSE}"]
    assert threads["client"] is threading.main_thread() and threads["download"] is not threading.main_thread()
    threads.clear()
    serve_photo(cdn, photo([RED]))
    handle(signed_request(sample("face_tagging", "upload")))  # warm: no client to build, no second thread
    assert threads == {"download": threading.main_thread()}


def test_a_download_failure_meanwhile_is_raised_in_the_requests_thread(configured):
    _server, _rek, cdn = configured
    cdn.serve(b"", status=404)
    ran_in = []

    with pytest.raises(images.ImageMissing):
        images.fetch(f"{cdn.url}/demo/image/upload/x.jpg", 1.0, meanwhile=lambda: ran_in.append(
            threading.current_thread()))
    assert ran_in == [threading.main_thread()]


def test_no_region_is_a_configuration_error(configured, monkeypatch):
    _server, _rek, cdn = configured
    monkeypatch.delenv("AWS_REGION")
    serve_photo(cdn)

    response = handle(signed_request(sample("face_tagging", "upload")))

    assert response.status == 500 and response.body["error"] == "not_configured"
