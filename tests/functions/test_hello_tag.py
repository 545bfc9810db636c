"""hello_tag on the wire: the real Cloudinary SDK talks to a local test server."""

from __future__ import annotations

import json

import pytest

from functions.hello_tag.handler import handle
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

TAGS_PATH = f"/v1_1/{CLOUD_NAME}/image/tags"


def test_upload_adds_the_tag_with_one_upload_api_call(cloudinary_server):
    cloudinary_server.expect_oneshot_request(TAGS_PATH, method="POST").respond_with_json(
        {"public_ids": ["samples/hello/xsahlpu1dte4xjwvcf5k"]})

    response = handle(signed_request(sample("hello_tag", "upload")))

    assert response.status == 200
    assert response.body == {"status": "done", "tag": "Hello World!", "actions": [
        {"action": "add_tag", "public_id": "samples/hello/xsahlpu1dte4xjwvcf5k", "tag": "Hello World!"}]}
    assert len(cloudinary_server.log) == 1
    request, _ = cloudinary_server.log[0]
    fields = form_fields(request)
    assert request.method == "POST" and request.path == TAGS_PATH
    assert fields["command"] == "add"
    assert fields["tag"] == "Hello World!"
    assert fields["public_ids[]"] == ["samples/hello/xsahlpu1dte4xjwvcf5k"]
    assert fields["type"] == "upload"
    assert fields["api_key"] == API_KEY
    assert "signature" in fields and SECRET not in request.get_data(as_text=True)


def test_custom_tag_and_video_resource_type(cloudinary_server, monkeypatch):
    monkeypatch.setenv("HELLO_TAG", "reviewed by webhook")
    payload = json.loads(sample("hello_tag", "upload"))
    payload.update(resource_type="video", type="authenticated", public_id="clips/intro")
    cloudinary_server.expect_oneshot_request(f"/v1_1/{CLOUD_NAME}/video/tags", method="POST") \
        .respond_with_json({"public_ids": ["clips/intro"]})

    response = handle(signed_request(payload))

    assert response.status == 200 and response.body["tag"] == "reviewed by webhook"
    fields = form_fields(cloudinary_server.log[0][0])
    assert fields["type"] == "authenticated" and fields["public_ids[]"] == ["clips/intro"]


def test_already_tagged_upload_makes_no_call(cloudinary_server):
    response = handle(signed_request(sample("hello_tag", "already_tagged")))

    assert response.status == 200
    assert response.body == {"status": "ignored", "reason": "already tagged", "tag": "Hello World!"}
    assert cloudinary_server.log == []


def test_its_own_tag_change_notification_is_ignored(cloudinary_server):
    response = handle(signed_request(sample("hello_tag", "tags_changed")))

    assert response.status == 200 and response.body["status"] == "ignored"
    assert cloudinary_server.log == []


def test_bad_signature_is_401_with_no_outbound_call(cloudinary_server):
    response = handle(signed_request(sample("hello_tag", "upload"), secret="not-the-secret"))

    assert response.status == 401
    assert response.body["error"] == "signature_mismatch"
    assert cloudinary_server.log == []


def test_asset_deleted_before_tagging_is_ignored(cloudinary_server):
    cloudinary_server.expect_oneshot_request(TAGS_PATH, method="POST").respond_with_json({"public_ids": []})

    response = handle(signed_request(sample("hello_tag", "upload")))

    assert response.status == 200
    assert response.body["status"] == "ignored" and "no longer exists" in response.body["reason"]


def test_missing_public_id_is_400(cloudinary_server):
    response = handle(signed_request({"notification_type": "upload", "resource_type": "image"}))

    assert response.status == 400 and response.body["error"] == "missing_field"
    assert cloudinary_server.log == []


@pytest.mark.parametrize(("status", "expected"), [(420, 503), (429, 503), (500, 503), (502, 503),
                                                  (401, 500), (403, 500)])
def test_cloudinary_failures_map_to_the_promised_status(cloudinary_server, status, expected):
    cloudinary_server.expect_oneshot_request(TAGS_PATH, method="POST").respond_with_json(
        {"error": {"message": "simulated"}}, status=status)

    response = handle(signed_request(sample("hello_tag", "upload")))

    assert response.status == expected
    assert len(cloudinary_server.log) == 1


def test_cloudinary_answering_garbage_is_503(cloudinary_server):
    cloudinary_server.expect_oneshot_request(TAGS_PATH, method="POST").respond_with_data(
        "<html>Bad gateway</html>", status=502, content_type="text/html")

    assert handle(signed_request(sample("hello_tag", "upload"))).status == 503


def test_cloudinary_timeout_is_503(cloudinary_server, monkeypatch):
    import threading

    release = threading.Event()

    too_slow = answers_too_late(release)

    monkeypatch.setenv("CLOUDINARY_TIMEOUT_SECONDS", "0.2")
    cloudinary_server.expect_oneshot_request(TAGS_PATH, method="POST").respond_with_handler(too_slow)
    try:
        response = handle(signed_request(sample("hello_tag", "upload")))
    finally:
        release.set()
        wait_until_answered(cloudinary_server)

    assert response.status == 503 and response.body["error"] == "cloudinary_unavailable"


def test_missing_cloudinary_url_is_500_naming_nothing_secret(signing_secret, caplog):
    response = handle(signed_request(sample("hello_tag", "upload")))

    assert response.status == 500 and response.body["error"] == "not_configured"
    assert "CLOUDINARY_URL" in caplog.text  # the log says which variable; the body does not
    assert "CLOUDINARY_URL" not in json.dumps(response.body)


def test_dry_run_reports_and_writes_nothing(cloudinary_server, monkeypatch):
    monkeypatch.setenv("DRY_RUN", "1")

    response = handle(signed_request(sample("hello_tag", "upload")))

    assert response.status == 200 and response.body["status"] == "dry_run"
    assert response.body["actions"][0]["action"] == "add_tag"
    assert cloudinary_server.log == []


def test_lambda_function_url_entry_point(cloudinary_server):
    from functions.hello_tag.handler import handler

    cloudinary_server.expect_oneshot_request(TAGS_PATH, method="POST").respond_with_json(
        {"public_ids": ["samples/hello/xsahlpu1dte4xjwvcf5k"]})

    result = handler(function_url_event(sample("hello_tag", "upload"), base64_body=True), None)

    assert result["statusCode"] == 200
    assert json.loads(result["body"])["status"] == "done"
    assert len(cloudinary_server.log) == 1


def test_cloudinary_404_means_the_asset_is_gone_and_is_not_retried(cloudinary_server):
    """Found by the fault suite: a 404 from the tags call used to surface as a 500 (and a retry loop)."""
    cloudinary_server.expect_oneshot_request(TAGS_PATH, method="POST").respond_with_json(
        {"error": {"message": "Resource not found"}}, status=404)

    response = handle(signed_request(sample("hello_tag", "upload")))

    assert response.status == 200 and response.body["status"] == "ignored"
