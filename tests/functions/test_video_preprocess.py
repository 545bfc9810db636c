"""video_preprocess on the wire: the real Cloudinary SDK talks to a local test server; the idempotency store
is each test's own SQLite file (tests/conftest.py)."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from functions.video_preprocess import handler as preprocess_handler
from functions.video_preprocess.handler import handle
from tests.helpers import (
    API_KEY,
    CLOUD_NAME,
    SECRET,
    answers_too_late,
    form_fields,
    function_url_event,
    sample,
    signed_request,
    wait_until_answered,
)

EXPLICIT = f"/v1_1/{CLOUD_NAME}/video/explicit"
STREAMING = "sp_auto/m3u8"
WEB_MP4 = "c_limit,h_720,vc_h264/mp4"


def payload(name: str, **changes: Any) -> dict[str, Any]:
    data = json.loads(sample("video_preprocess", name))
    data.update(changes)
    return data


def send(body: Any, **sign: Any):
    return handle(signed_request(body if isinstance(body, bytes) else json.dumps(body).encode(), **sign))


def expect_explicit(server, batch_id: str = "c0ffee", status: int = 200) -> None:
    answer = {"public_id": "x", "resource_type": "video", "type": "upload", "batch_id": batch_id,
              "eager": [{"status": "processing", "batch_id": batch_id}]} if status == 200 \
        else {"error": {"message": "simulated"}}
    server.expect_oneshot_request(EXPLICIT, method="POST").respond_with_json(answer, status=status)


def assert_explicit_request(request, public_id: str, eager: str, delivery_type: str = "upload",
                            notification_url: str | None = None) -> None:
    fields = form_fields(request)
    assert request.method == "POST" and request.path == EXPLICIT
    assert fields["public_id"] == public_id and fields["type"] == delivery_type
    assert fields["eager"] == eager
    assert fields["eager_async"] == "1"  # Cloudinary answers at once and transcodes in the background
    assert fields.get("eager_notification_url") == notification_url
    assert fields["api_key"] == API_KEY and len(fields["signature"]) == 40
    assert SECRET not in request.get_data(as_text=True)
    assert set(fields) == {"public_id", "type", "eager", "eager_async", "timestamp", "api_key", "signature"} | (
        {"eager_notification_url"} if notification_url else set())


# --- the happy paths: one explicit call per new upload ---------------------------------------------------

CLASSIFIED = [
    ("upload", "campaigns/fw24/runway_full_show", "large", STREAMING, "bytes 2483027968 >= 100000000"),
    ("upload_long", "interviews/designer_talk", "large", STREAMING, "duration 283.44 s >= 60 s"),
    ("upload_small", "products/bags/tote_360", "small", WEB_MP4,
     "bytes 8412673 < 100000000, duration 14.014 s < 60 s"),
    ("upload_pre2021", "legacy/showroom_walkthrough", "large", STREAMING, "bytes 131072000 >= 100000000"),
    ("reupload", "products/bags/tote_360", "small", WEB_MP4, "bytes 9120554 < 100000000, duration 15.015 s < 60 s"),
]


@pytest.mark.parametrize(("name", "public_id", "size", "eager", "measure"), CLASSIFIED,
                         ids=[case[0] for case in CLASSIFIED])
def test_each_video_gets_its_sizes_eager_transformations_in_one_explicit_call(cloudinary_server, name, public_id,
                                                                             size, eager, measure):
    expect_explicit(cloudinary_server)

    response = send(sample("video_preprocess", name))

    assert response.status == 200, response.body
    assert response.body == {
        "status": "done", "size": size, "measure": measure, "batch_id": "c0ffee",
        "actions": [{"action": "explicit", "public_id": public_id, "resource_type": "video", "type": "upload",
                     "size": size, "eager": [eager], "eager_async": True}]}
    assert len(cloudinary_server.log) == 1  # the Upload API only: no Admin API call at all
    assert_explicit_request(cloudinary_server.log[0][0], public_id, eager)


def test_several_transformations_thresholds_and_the_eager_notification_url(cloudinary_server, monkeypatch):
    monkeypatch.setenv("VIDEO_LARGE_BYTES", "5000000")
    monkeypatch.setenv("VIDEO_EAGER_LARGE", " sp_hd/m3u8 | sp_hd/mpd |c_scale,w_640/jpg ")
    monkeypatch.setenv("VIDEO_EAGER_NOTIFICATION_URL", "https://hooks.example.com/api/eager_email")
    expect_explicit(cloudinary_server)

    response = send(sample("video_preprocess", "upload_small"))  # 8.4 MB: large at a 5 MB threshold

    assert response.body["size"] == "large"
    assert response.body["actions"][0]["eager"] == ["sp_hd/m3u8", "sp_hd/mpd", "c_scale,w_640/jpg"]
    assert_explicit_request(cloudinary_server.log[0][0], "products/bags/tote_360",
                            "sp_hd/m3u8|sp_hd/mpd|c_scale,w_640/jpg",
                            notification_url="https://hooks.example.com/api/eager_email")


def test_duration_threshold_and_other_delivery_types(cloudinary_server, monkeypatch):
    monkeypatch.setenv("VIDEO_LARGE_SECONDS", "10.5")
    expect_explicit(cloudinary_server)
    body = payload("upload_small", type="authenticated")

    response = send(body)

    assert response.body["size"] == "large" and response.body["measure"] == "duration 14.014 s >= 10.5 s"
    assert_explicit_request(cloudinary_server.log[0][0], "products/bags/tote_360", STREAMING, "authenticated")


def test_a_size_set_to_none_is_left_alone(cloudinary_server, monkeypatch):
    monkeypatch.setenv("VIDEO_EAGER_SMALL", "none")

    response = send(sample("video_preprocess", "upload_small"))

    assert response.body["status"] == "ignored" and "VIDEO_EAGER_SMALL=none" in response.body["reason"]
    assert cloudinary_server.log == []


# --- idempotent: a retry or replay never queues the work twice -------------------------------------------

def test_a_retry_or_replay_of_the_same_notification_costs_no_call(cloudinary_server):
    expect_explicit(cloudinary_server)
    body = sample("video_preprocess", "upload")

    first = send(body)
    replay = send(body)  # the same signed request again (a lost answer's retry, or someone replaying it)

    assert first.body["status"] == "done" and "already_queued" not in first.body
    assert replay.status == 200 and replay.body["already_queued"] is True
    assert replay.body["batch_id"] == "c0ffee"  # what the first delivery recorded
    assert replay.body["actions"][0]["repeated"] is True
    assert len(cloudinary_server.log) == 1


def test_a_reupload_is_new_work(cloudinary_server):
    expect_explicit(cloudinary_server, batch_id="first")
    expect_explicit(cloudinary_server, batch_id="second")

    first = send(sample("video_preprocess", "upload_small"))
    again = send(sample("video_preprocess", "reupload"))  # same public ID, new version, no eager

    assert first.body["batch_id"] == "first" and again.body["batch_id"] == "second"
    assert len(cloudinary_server.log) == 2


def test_uploads_that_carried_eager_transformations_are_left_alone(cloudinary_server):
    response = send(sample("video_preprocess", "upload_with_eager"))

    assert response.body == {"status": "ignored", "reason": "the upload already carried eager transformations"}
    assert cloudinary_server.log == []


def test_a_failed_call_leaves_nothing_recorded_and_the_retry_queues_it(cloudinary_server):
    expect_explicit(cloudinary_server, status=502)
    expect_explicit(cloudinary_server)
    body = sample("video_preprocess", "upload")

    failed = send(body)
    retry = send(body)

    assert failed.status == 503 and failed.body["error"] == "cloudinary_unavailable"
    assert retry.status == 200 and retry.body["status"] == "done" and "already_queued" not in retry.body
    assert len(cloudinary_server.log) == 2


def test_the_same_notification_arriving_while_it_is_being_queued_is_503(cloudinary_server):
    entered, release = threading.Event(), threading.Event()

    def slow(request):
        from werkzeug import Response

        entered.set()
        release.wait(2)
        return Response(json.dumps({"batch_id": "slow"}), content_type="application/json")

    cloudinary_server.expect_oneshot_request(EXPLICIT, method="POST").respond_with_handler(slow)
    body = sample("video_preprocess", "upload")
    first: list[Any] = []
    worker = threading.Thread(target=lambda: first.append(send(body)))
    worker.start()
    try:
        assert entered.wait(2)
        second = send(body)  # Cloudinary's copy, or a person's resend, while the first is in flight
    finally:
        release.set()
        worker.join(5)

    assert second.status == 503 and second.body["error"] == "duplicate_in_progress"
    assert first[0].status == 200 and first[0].body["batch_id"] == "slow"
    assert len(cloudinary_server.log) == 1


def test_no_idempotency_store_on_a_serverless_platform_is_500_before_any_call(cloudinary_server, monkeypatch,
                                                                              caplog):
    monkeypatch.setenv("VERCEL", "1")

    response = send(sample("video_preprocess", "upload"))

    assert response.status == 500 and response.body["error"] == "not_configured"
    assert "IDEMPOTENCY_TABLE" in caplog.text and cloudinary_server.log == []


# --- failures: the right status, nothing half-done --------------------------------------------------------

@pytest.mark.parametrize(("status", "expected"), [(420, 503), (429, 503), (500, 503), (502, 503), (503, 503),
                                                  (401, 500), (403, 500)])
def test_cloudinary_failures_map_to_the_promised_status(cloudinary_server, status, expected):
    expect_explicit(cloudinary_server, status=status)

    response = send(sample("video_preprocess", "upload_small"))

    assert response.status == expected
    assert len(cloudinary_server.log) == 1


def test_cloudinary_timeout_is_503_and_not_recorded(cloudinary_server, monkeypatch):
    release = threading.Event()
    monkeypatch.setenv("CLOUDINARY_TIMEOUT_SECONDS", "0.2")
    cloudinary_server.expect_oneshot_request(EXPLICIT, method="POST").respond_with_handler(answers_too_late(release))
    try:
        response = send(sample("video_preprocess", "upload_small"))
    finally:
        release.set()
        wait_until_answered(cloudinary_server)
    expect_explicit(cloudinary_server)

    retry = send(sample("video_preprocess", "upload_small"))

    assert response.status == 503 and response.body["error"] == "cloudinary_unavailable"
    assert retry.body["status"] == "done" and len(cloudinary_server.log) == 2


def test_a_video_deleted_before_preprocessing_is_ignored(cloudinary_server):
    cloudinary_server.expect_oneshot_request(EXPLICIT, method="POST").respond_with_json(
        {"error": {"message": "Resource not found - products/bags/tote_360"}}, status=404)

    response = send(sample("video_preprocess", "upload_small"))

    assert response.status == 200
    assert response.body["status"] == "ignored" and "no longer exists" in response.body["reason"]


# --- refused and ignored: no outbound call at all -------------------------------------------------------

def test_bad_signature_is_401_with_no_outbound_call(cloudinary_server):
    response = send(sample("video_preprocess", "upload"), secret="not-the-secret")

    assert response.status == 401 and response.body["error"] == "signature_mismatch"
    assert cloudinary_server.log == []


@pytest.mark.parametrize(("name", "reason"), [
    ("upload_image", "not a video (image)"), ("upload_raw", "not a video (raw)"),
    ("eager", "notification_type 'eager' is not handled by video_preprocess")])
def test_images_raw_files_and_other_types_are_ignored_with_no_outbound_call(cloudinary_server, name, reason):
    response = send(sample("video_preprocess", name))

    assert response.status == 200 and response.body == {"status": "ignored", "reason": reason}
    assert cloudinary_server.log == []


def test_a_video_that_is_not_stored_is_ignored(cloudinary_server):
    response = send(payload("upload_small", type="youtube", public_id="dQw4w9WgXcQ"))

    assert response.body["status"] == "ignored" and "not a stored video" in response.body["reason"]
    assert cloudinary_server.log == []


@pytest.mark.parametrize(("changes", "error"), [
    ({"bytes": None, "duration": None}, "missing_field"), ({"bytes": "8412673"}, "bad_field"),
    ({"duration": -1}, "bad_field"), ({"bytes": True}, "bad_field"), ({"eager": "sp_auto/m3u8"}, "bad_field"),
    ({"public_id": None}, "missing_field"), ({"resource_type": "video/../../image"}, "bad_field"),
    ({"public_id": "https://evil.example/x.mp4"}, "bad_field"),
])
def test_malformed_or_hostile_fields_are_400_with_no_outbound_call(cloudinary_server, changes, error):
    response = send(payload("upload_small", **changes))

    assert response.status == 400 and response.body["error"] == error
    assert cloudinary_server.log == []


@pytest.mark.parametrize(("variable", "value"), [("VIDEO_EAGER_LARGE", "sp_auto /m3u8"), ("VIDEO_EAGER_SMALL", "|"),
                                                 ("VIDEO_EAGER_NOTIFICATION_URL", "javascript:alert(1)"),
                                                 ("VIDEO_LARGE_SECONDS", "0"), ("VIDEO_LARGE_BYTES", "lots")])
def test_settings_that_cannot_work_are_500_before_any_call(cloudinary_server, monkeypatch, variable, value, caplog):
    monkeypatch.setenv(variable, value)

    response = send(sample("video_preprocess", "upload_small"))

    assert response.status == 500 and response.body["error"] == "not_configured"
    assert variable in caplog.text and cloudinary_server.log == []


def test_missing_cloudinary_url_is_500(signing_secret):
    response = send(sample("video_preprocess", "upload_small"))

    assert response.status == 500 and response.body["error"] == "not_configured"


# --- dry run and demo mode ---------------------------------------------------------------------------------

def test_dry_run_reports_writes_nothing_and_records_nothing(cloudinary_server, monkeypatch):
    monkeypatch.setenv("DRY_RUN", "1")
    body = sample("video_preprocess", "upload")

    planned = send(body)
    monkeypatch.setenv("DRY_RUN", "0")
    expect_explicit(cloudinary_server)
    real = send(body)  # the dry run left no idempotency record behind: the real run queues the work

    assert planned.status == 200 and planned.body["status"] == "dry_run"
    assert planned.body["actions"][0]["action"] == "explicit" and planned.body["size"] == "large"
    assert real.body["status"] == "done" and "already_queued" not in real.body
    assert len(cloudinary_server.log) == 1


def test_demo_mode_without_credentials_plans(signing_secret, monkeypatch):
    monkeypatch.setenv("CLOUDINARY_WEBHOOKS_DEMO", "1")

    response = send(sample("video_preprocess", "upload_long"))

    assert response.status == 200 and response.body["status"] == "dry_run"
    assert response.body["actions"] == [{"action": "explicit", "public_id": "interviews/designer_talk",
                                         "resource_type": "video", "type": "upload", "size": "large",
                                         "eager": [STREAMING], "eager_async": True}]


def test_lambda_function_url_entry_point(cloudinary_server):
    expect_explicit(cloudinary_server)

    result = preprocess_handler.handler(function_url_event(sample("video_preprocess", "upload_small"),
                                                           base64_body=True), None)

    assert result["statusCode"] == 200 and json.loads(result["body"])["status"] == "done"
    assert len(cloudinary_server.log) == 1
