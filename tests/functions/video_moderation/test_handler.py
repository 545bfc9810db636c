"""video_moderation's webhook on the wire: the real Cloudinary SDK talks to a local test server."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import textwrap
import threading
from typing import Any

import pytest

from functions.video_moderation.handler import handle
from tests.functions.video_moderation.fake_cloudinary import (
    DESTROY_PATH,
    RENAME_PATH,
    TAGS_PATH,
    FakeCloudinary,
    details_path,
    drain,
    video,
    wire,
    writes,
)
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

APPROVED = "ugc/tok627Lzicdh7ddzcect"  # moderation_approved.json
REJECTED = "ugc/bz1ql0kqzjhfmwd4vqkr"  # moderation_rejected.json
UPLOAD_APPROVED = "ugc/skate_park_approved"  # upload_approved.json
UPLOAD_REJECTED = "ugc/skate_park_rejected"  # upload_rejected.json
ASSET_IDS = {APPROVED: "98b7998debe995912d0e6320eac95e3f", REJECTED: "7d5e3c1a9b8f7e6d5c4b3a2918a7b6c5",
             UPLOAD_APPROVED: "5c1f0e2d3b4a69788796a5b4c3d2e1f0", UPLOAD_REJECTED: "a1b2c3d4e5f60718293a4b5c6d7e8f90"}
PUBLIC_JSON = '[{"access_type":"anonymous"}]'  # what the SDK sends: the rules, JSON-encoded
TOKEN_JSON = '[{"access_type":"token"}]'


def payload(name: str, **changes: Any) -> dict[str, Any]:
    data = json.loads(sample("video_moderation", name))
    data.update(changes)
    return data


def add(cloudinary: FakeCloudinary, public_id: str, status: str, **options: Any) -> dict[str, Any]:
    options.setdefault("asset_id", ASSET_IDS.get(public_id, "0" * 32))
    return cloudinary.add(video(public_id, status, **options))


def assert_basic_auth(request) -> None:
    expected = "Basic " + base64.b64encode(f"{API_KEY}:{SECRET}".encode()).decode()
    assert request.headers["Authorization"] == expected


def assert_publish_request(request, public_id: str, delivery_type: str = "upload") -> None:
    assert request.method == "POST" and request.path == details_path(public_id, delivery_type)
    assert request.get_json() == {"access_control": PUBLIC_JSON}
    assert_basic_auth(request)


def assert_destroy_request(request, public_id: str, delivery_type: str = "upload") -> None:
    fields = form_fields(request)
    assert request.method == "POST" and request.path == DESTROY_PATH
    assert fields["public_id"] == public_id and fields["type"] == delivery_type
    assert fields["invalidate"] == "1"
    assert fields["api_key"] == API_KEY and len(fields["signature"]) == 40
    assert SECRET not in request.get_data(as_text=True)


# --- approved: confirm, then lift the token restriction ---------------------------------------------

@pytest.mark.parametrize(("sample_name", "public_id"), [("moderation_approved", APPROVED),
                                                        ("upload_approved", UPLOAD_APPROVED)])
def test_approved_video_is_confirmed_then_made_public(cloudinary, cloudinary_server, sample_name, public_id):
    add(cloudinary, public_id, "approved")

    response = handle(signed_request(sample("video_moderation", sample_name)))

    assert response.status == 200
    assert response.body == {"status": "done", "moderation": "approved", "public_id": public_id, "actions": [
        {"action": "publish", "public_id": public_id, "resource_type": "video", "type": "upload",
         "access_control": [{"access_type": "anonymous"}]}]}
    assert wire(cloudinary_server) == [("GET", details_path(public_id)), ("POST", details_path(public_id))]
    details, update = (request for request, _ in cloudinary_server.log)
    assert details.query_string == b"" and details.get_data() == b""
    assert_basic_auth(details)
    assert_publish_request(update, public_id)
    assert cloudinary.get(public_id)["access_control"] == [{"access_type": "anonymous"}]


AUTHENTICATED = "ugc/training_run_authenticated"  # moderation_approved_authenticated.json


@pytest.mark.parametrize("access_control", [[], [{"access_type": "token"}]])
def test_approved_authenticated_video_becomes_an_upload_without_overwriting(cloudinary, cloudinary_server,
                                                                           access_control):
    # How Cloudinary's training uploads it: type authenticated, told by the URL (.../video/authenticated/s--..--/).
    add(cloudinary, AUTHENTICATED, "approved", delivery_type="authenticated", access_control=access_control,
        asset_id="5d7c0b1e3a9f4e2d8c6b4a2f0e1d3c5b")

    response = handle(signed_request(sample("video_moderation", "moderation_approved_authenticated")))

    assert response.status == 200 and response.body["status"] == "done", response.body
    expected = [("GET", details_path(AUTHENTICATED, "authenticated")), ("POST", RENAME_PATH)]
    if access_control:  # still token-restricted once it is an upload: lift that too
        expected.append(("POST", details_path(AUTHENTICATED, "upload")))
    assert wire(cloudinary_server) == expected
    rename = form_fields(cloudinary_server.log[1][0])
    assert rename["from_public_id"] == rename["to_public_id"] == AUTHENTICATED
    assert rename["type"] == "authenticated" and rename["to_type"] == "upload"
    assert rename["overwrite"] in ("0", "false") and rename["invalidate"] in ("1", "true")
    assert cloudinary.get(AUTHENTICATED, "authenticated") is None
    published = cloudinary.get(AUTHENTICATED, "upload")
    assert published is not None and published["access_control"] in ([], [{"access_type": "anonymous"}])

    # Cloudinary retries: the authenticated video is gone, nothing else is written.
    again = handle(signed_request(sample("video_moderation", "moderation_approved_authenticated")))
    assert again.status == 200 and again.body["status"] == "ignored"
    assert writes(cloudinary_server) == [call for call in expected if call[0] == "POST"]


def test_approved_authenticated_video_never_overwrites_a_public_namesake(cloudinary, cloudinary_server):
    add(cloudinary, AUTHENTICATED, "approved", delivery_type="authenticated", access_control=[],
        asset_id="5d7c0b1e3a9f4e2d8c6b4a2f0e1d3c5b")
    add(cloudinary, AUTHENTICATED, "approved", delivery_type="upload", access_control=[], asset_id="f" * 32)

    response = handle(signed_request(sample("video_moderation", "moderation_approved_authenticated")))

    assert response.status == 200 and response.body["status"] == "ignored"
    assert "never overwritten" in response.body["reason"]
    assert cloudinary.get(AUTHENTICATED, "authenticated") is not None
    assert cloudinary.get(AUTHENTICATED, "upload")["asset_id"] == "f" * 32


def test_repeated_approval_finds_it_public_and_writes_nothing(cloudinary, cloudinary_server):
    add(cloudinary, APPROVED, "approved")
    first = handle(signed_request(sample("video_moderation", "moderation_approved")))
    assert first.body["status"] == "done"

    again = handle(signed_request(sample("video_moderation", "moderation_approved")))

    assert again.status == 200
    assert again.body == {"status": "ignored", "reason": "the video is already public", "moderation": "approved",
                          "public_id": APPROVED}
    assert wire(cloudinary_server) == [("GET", details_path(APPROVED)), ("POST", details_path(APPROVED)),
                                       ("GET", details_path(APPROVED))]


@pytest.mark.parametrize("access_control", [None, [], [{"access_type": "anonymous"}],
                                            [{"access_type": "token"}, {"access_type": "anonymous"}]])
def test_approved_video_without_a_token_restriction_is_left_alone(cloudinary, cloudinary_server, access_control):
    resource = add(cloudinary, APPROVED, "approved", access_control=[])
    resource["access_control"] = access_control  # None: the details carry no access_control at all

    response = handle(signed_request(sample("video_moderation", "moderation_approved")))

    assert response.status == 200 and response.body["reason"] == "the video is already public"
    assert writes(cloudinary_server) == []


def test_a_dated_anonymous_rule_does_not_count_as_public(cloudinary, cloudinary_server):
    add(cloudinary, APPROVED, "approved",
        access_control=[{"access_type": "token"}, {"access_type": "anonymous", "start": "2030-01-01T00:00:00Z"}])

    response = handle(signed_request(sample("video_moderation", "moderation_approved")))

    assert response.body["status"] == "done"
    assert_publish_request(cloudinary_server.log[1][0], APPROVED)


# --- rejected: confirm, then delete (default) or keep --------------------------------------------------

@pytest.mark.parametrize(("sample_name", "public_id"), [("moderation_rejected", REJECTED),
                                                        ("upload_rejected", UPLOAD_REJECTED)])
def test_rejected_video_is_confirmed_then_destroyed_with_invalidate(cloudinary, cloudinary_server, sample_name,
                                                                    public_id):
    add(cloudinary, public_id, "rejected")

    response = handle(signed_request(sample("video_moderation", sample_name)))

    assert response.status == 200
    assert response.body == {"status": "done", "moderation": "rejected", "public_id": public_id, "actions": [
        {"action": "delete", "public_id": public_id, "resource_type": "video", "type": "upload",
         "invalidate": True}]}
    assert wire(cloudinary_server) == [("GET", details_path(public_id)), ("POST", DESTROY_PATH)]
    assert_destroy_request(cloudinary_server.log[1][0], public_id)
    assert cloudinary.get(public_id) is None


def test_repeated_rejection_after_the_delete_is_200_with_no_write(cloudinary, cloudinary_server):
    add(cloudinary, REJECTED, "rejected")
    assert handle(signed_request(sample("video_moderation", "moderation_rejected"))).body["status"] == "done"

    again = handle(signed_request(sample("video_moderation", "moderation_rejected")))

    assert again.status == 200
    assert again.body["status"] == "ignored" and again.body["reason"] == "the video no longer exists"
    assert wire(cloudinary_server) == [("GET", details_path(REJECTED)), ("POST", DESTROY_PATH),
                                       ("GET", details_path(REJECTED))]


def test_video_deleted_between_check_and_destroy_is_200(cloudinary, cloudinary_server):
    add(cloudinary, REJECTED, "rejected")
    cloudinary_server.expect_oneshot_request(DESTROY_PATH, method="POST").respond_with_json({"result": "not found"})

    response = handle(signed_request(sample("video_moderation", "moderation_rejected")))

    assert response.status == 200 and response.body["reason"] == "the video no longer exists"


def test_destroy_answer_that_is_neither_ok_nor_not_found_is_503(cloudinary, cloudinary_server):
    add(cloudinary, REJECTED, "rejected")
    cloudinary_server.expect_oneshot_request(DESTROY_PATH, method="POST").respond_with_json({"result": "error"})

    response = handle(signed_request(sample("video_moderation", "moderation_rejected")))

    assert response.status == 503 and response.body["error"] == "cloudinary_unavailable"


def test_keep_leaves_a_restricted_rejected_video_and_tags_it(cloudinary, cloudinary_server, monkeypatch):
    monkeypatch.setenv("VIDEO_MODERATION_ON_REJECT", "keep")
    add(cloudinary, REJECTED, "rejected", tags=["ugc"])

    response = handle(signed_request(sample("video_moderation", "moderation_rejected")))

    assert response.status == 200
    assert response.body["actions"] == [{"action": "tag", "public_id": REJECTED, "resource_type": "video",
                                         "type": "upload", "tag": "video_moderation_rejected"}]
    assert wire(cloudinary_server) == [("GET", details_path(REJECTED)), ("POST", TAGS_PATH)]
    fields = form_fields(cloudinary_server.log[1][0])
    assert fields["command"] == "add" and fields["tag"] == "video_moderation_rejected"
    assert fields["public_ids[]"] == [REJECTED] and fields["type"] == "upload"
    assert cloudinary.get(REJECTED)["access_control"] == [{"access_type": "token"}]


def test_keep_restricts_a_rejected_video_anyone_could_view(cloudinary, cloudinary_server, monkeypatch):
    monkeypatch.setenv("VIDEO_MODERATION_ON_REJECT", "keep")
    monkeypatch.setenv("VIDEO_MODERATION_REJECTED_TAG", "needs review")
    add(cloudinary, REJECTED, "rejected", access_control=[{"access_type": "anonymous"}])

    response = handle(signed_request(sample("video_moderation", "moderation_rejected")))

    assert response.status == 200
    assert [action["action"] for action in response.body["actions"]] == ["restrict", "tag"]
    assert wire(cloudinary_server) == [("GET", details_path(REJECTED)), ("POST", details_path(REJECTED)),
                                       ("POST", TAGS_PATH)]
    assert cloudinary_server.log[1][0].get_json() == {"access_control": TOKEN_JSON}
    assert form_fields(cloudinary_server.log[2][0])["tag"] == "needs review"
    assert cloudinary.get(REJECTED)["tags"] == ["needs review"]


def test_keep_repeated_changes_nothing(cloudinary, cloudinary_server, monkeypatch):
    monkeypatch.setenv("VIDEO_MODERATION_ON_REJECT", "keep")
    add(cloudinary, REJECTED, "rejected", tags=["video_moderation_rejected"])

    response = handle(signed_request(sample("video_moderation", "moderation_rejected")))

    assert response.status == 200 and response.body["status"] == "ignored"
    assert "already restricted and tagged" in response.body["reason"]
    assert wire(cloudinary_server) == [("GET", details_path(REJECTED))]


def test_keep_finishes_on_retry_after_the_tag_call_failed(cloudinary, cloudinary_server, monkeypatch):
    monkeypatch.setenv("VIDEO_MODERATION_ON_REJECT", "keep")
    add(cloudinary, REJECTED, "rejected", access_control=[{"access_type": "anonymous"}])
    cloudinary_server.expect_oneshot_request(TAGS_PATH, method="POST").respond_with_json(
        {"error": {"message": "simulated"}}, status=500)

    first = handle(signed_request(sample("video_moderation", "moderation_rejected")))
    retried = handle(signed_request(sample("video_moderation", "moderation_rejected")))

    assert first.status == 503  # Cloudinary retries: the video is already restricted, only the tag is left
    assert retried.status == 200 and [a["action"] for a in retried.body["actions"]] == ["tag"]
    assert cloudinary.get(REJECTED)["access_control"] == [{"access_type": "token"}]
    assert cloudinary.get(REJECTED)["tags"] == ["video_moderation_rejected"]


@pytest.mark.parametrize("value", ["archive", "yes"])
def test_unknown_on_reject_setting_is_500_before_any_call(cloudinary_server, monkeypatch, caplog, value):
    monkeypatch.setenv("VIDEO_MODERATION_ON_REJECT", value)

    response = handle(signed_request(sample("video_moderation", "moderation_rejected")))

    assert response.status == 500 and response.body["error"] == "not_configured"
    assert "VIDEO_MODERATION_ON_REJECT" in caplog.text
    assert cloudinary_server.log == []


# --- the Admin API check decides: nothing happens on the payload's word alone ---------------------------

def test_rejection_is_not_acted_on_when_cloudinary_now_says_approved(cloudinary, cloudinary_server):
    add(cloudinary, REJECTED, "approved")  # e.g. a person overrode Google's decision meanwhile

    response = handle(signed_request(sample("video_moderation", "moderation_rejected")))

    assert response.status == 200 and response.body["status"] == "ignored"
    assert response.body["reason"] == "Cloudinary's current Google moderation status is approved, not rejected"
    assert writes(cloudinary_server) == [] and cloudinary.get(REJECTED) is not None


def test_approval_is_not_acted_on_when_cloudinary_now_says_rejected(cloudinary, cloudinary_server):
    add(cloudinary, APPROVED, "rejected")

    response = handle(signed_request(sample("video_moderation", "moderation_approved")))

    assert response.body["status"] == "ignored" and "rejected, not approved" in response.body["reason"]
    assert writes(cloudinary_server) == []


def test_details_without_a_google_result_never_lead_to_a_delete(cloudinary, cloudinary_server):
    resource = add(cloudinary, REJECTED, "rejected")
    resource["moderation"] = [{"kind": "manual", "status": "rejected"}]

    response = handle(signed_request(sample("video_moderation", "moderation_rejected")))

    assert response.body["status"] == "ignored" and "missing, not rejected" in response.body["reason"]
    assert writes(cloudinary_server) == []


def test_conflicting_google_results_never_lead_to_a_delete(cloudinary, cloudinary_server):
    resource = add(cloudinary, REJECTED, "rejected")
    resource["moderation"].append({"kind": "google_video_moderation", "status": "approved"})

    response = handle(signed_request(sample("video_moderation", "moderation_rejected")))

    assert response.body["status"] == "ignored" and "conflicting" in response.body["reason"]
    assert writes(cloudinary_server) == []


def test_public_id_reused_by_another_asset_is_not_deleted(cloudinary, cloudinary_server):
    add(cloudinary, REJECTED, "rejected", asset_id="ffffffffffffffffffffffffffffffff")

    response = handle(signed_request(sample("video_moderation", "moderation_rejected")))

    assert response.body == {"status": "ignored", "reason": "the public ID now names another asset",
                             "moderation": "rejected", "public_id": REJECTED}
    assert writes(cloudinary_server) == []


@pytest.mark.parametrize(("key", "value"), [("type", "authenticated"), ("resource_type", "image"),
                                            ("public_id", "ugc/someone-else")])
def test_details_for_a_different_asset_are_not_acted_on(cloudinary_server, key, value):
    answer = video(REJECTED, "rejected", asset_id=ASSET_IDS[REJECTED])
    answer[key] = value
    cloudinary_server.expect_oneshot_request(details_path(REJECTED)).respond_with_json(answer)

    response = handle(signed_request(sample("video_moderation", "moderation_rejected")))

    assert response.status == 200 and response.body["status"] == "ignored"
    assert response.body["reason"] == f"Cloudinary's details do not match the notification's {key}"
    assert writes(cloudinary_server) == []


def test_video_already_deleted_is_200_after_one_call(cloudinary, cloudinary_server):
    response = handle(signed_request(sample("video_moderation", "moderation_rejected")))

    assert response.status == 200
    assert response.body["status"] == "ignored" and response.body["reason"] == "the video no longer exists"
    assert wire(cloudinary_server) == [("GET", details_path(REJECTED))]


def test_video_deleted_between_check_and_publish_is_200(cloudinary, cloudinary_server):
    add(cloudinary, APPROVED, "approved")
    cloudinary_server.expect_oneshot_request(details_path(APPROVED), method="POST").respond_with_json(
        {"error": {"message": "Resource not found"}}, status=404)

    response = handle(signed_request(sample("video_moderation", "moderation_approved")))

    assert response.status == 200 and response.body["reason"] == "the video no longer exists"


# --- where the video is: payload fields, else the delivery URL, else video/upload -------------------------

def test_delivery_type_is_read_from_the_url_when_the_payload_has_none(cloudinary, cloudinary_server):
    public_id = "ugc/private-clip"
    add(cloudinary, public_id, "rejected", delivery_type="authenticated")
    url = f"https://res.cloudinary.com/{CLOUD_NAME}/video/authenticated/s--abcd1234--/v1/{public_id}.mp4"
    notification = payload("moderation_rejected", public_id=public_id, url=url.replace("https", "http"),
                           secure_url=url, asset_id=None)

    response = handle(signed_request(notification))

    assert response.status == 200 and response.body["status"] == "done"
    assert wire(cloudinary_server) == [("GET", details_path(public_id, "authenticated")), ("POST", DESTROY_PATH)]
    assert_destroy_request(cloudinary_server.log[1][0], public_id, "authenticated")


def test_private_cdn_url_without_cloud_name_is_understood(cloudinary, cloudinary_server):
    add(cloudinary, APPROVED, "approved", delivery_type="private")
    url = f"https://{CLOUD_NAME}-res.cloudinary.com/video/private/v1645551029/{APPROVED}.mp4"

    response = handle(signed_request(payload("moderation_approved", url=None, secure_url=url)))

    assert response.body["status"] == "done"
    assert_publish_request(cloudinary_server.log[1][0], APPROVED, "private")


def test_no_type_and_no_url_defaults_to_video_upload(cloudinary, cloudinary_server):
    add(cloudinary, APPROVED, "approved")
    notification = payload("moderation_approved")
    for key in ("url", "secure_url"):
        notification.pop(key)

    response = handle(signed_request(notification))

    assert response.body["status"] == "done"
    assert wire(cloudinary_server) == [("GET", details_path(APPROVED)), ("POST", details_path(APPROVED))]


def test_public_id_with_spaces_and_unicode_is_escaped_on_the_wire(cloudinary, cloudinary_server):
    public_id = "ugc/Été 2024/clip #1"
    add(cloudinary, public_id, "approved")

    response = handle(signed_request(payload("moderation_approved", public_id=public_id, asset_id=None)))

    assert response.body["status"] == "done"
    request = cloudinary_server.log[0][0]
    assert request.path == details_path(public_id)
    assert "%20" in request.url and " " not in request.url


# --- everything else is ignored with no call ----------------------------------------------------------

@pytest.mark.parametrize("notification", [
    sample("video_moderation", "upload_pending"),
    sample("video_moderation", "moderation_pending"),
    payload("moderation_approved", moderation_status="queued"),
    payload("upload_approved", moderation=[{"kind": "google_video_moderation", "status": "aborted"}]),
    payload("moderation_rejected", moderation_kind="manual"),
    payload("moderation_rejected", moderation_kind="aws_rek"),
    payload("upload_rejected", moderation=[{"kind": "webpurify", "status": "rejected"}]),
    payload("upload_rejected", moderation=None),
    json.loads(sample("hello_tag", "upload")),
    {"notification_type": "delete", "resources": [{"resource_type": "video", "type": "upload",
                                                   "public_id": REJECTED}]},
    {"notification_type": "eager", "public_id": REJECTED, "eager": []},
], ids=["upload-pending", "moderation-pending", "queued", "aborted", "manual-kind", "aws-rek-kind",
        "webpurify-in-upload", "upload-without-moderation", "image-upload", "delete", "eager"])
def test_undecided_and_unrelated_notifications_are_ignored_with_no_call(cloudinary_server, notification):
    response = handle(signed_request(notification))

    assert response.status == 200 and response.body["status"] == "ignored"
    assert cloudinary_server.log == []


def test_an_image_with_a_google_video_result_is_not_touched(cloudinary_server):
    response = handle(signed_request(payload("upload_rejected", resource_type="image")))

    assert response.status == 200 and response.body["reason"] == "not a video (image)"
    assert cloudinary_server.log == []


def test_threshold_suffix_in_the_kind_is_still_google_video_moderation(cloudinary, cloudinary_server):
    add(cloudinary, REJECTED, "rejected")

    response = handle(signed_request(payload("moderation_rejected",
                                             moderation_kind="google_video_moderation:very_likely")))

    assert response.body["status"] == "done"


# --- requests refused before any work -----------------------------------------------------------------

@pytest.mark.parametrize("sample_name", ["moderation_rejected", "upload_rejected"])
def test_bad_signature_is_401_with_no_outbound_call(cloudinary_server, sample_name):
    response = handle(signed_request(sample("video_moderation", sample_name), secret="not-the-secret"))

    assert response.status == 401 and response.body["error"] == "signature_mismatch"
    assert cloudinary_server.log == []


def test_stale_signature_is_401_with_no_outbound_call(cloudinary_server):
    response = handle(signed_request(sample("video_moderation", "moderation_rejected"), timestamp=1645552251))

    assert response.status == 401
    assert cloudinary_server.log == []


def test_rejected_signature_never_imports_the_sdk():
    # A fresh interpreter: the request is refused before anything imports cloudinary.
    script = textwrap.dedent(f"""
        import os, sys
        os.environ["CLOUDINARY_URL"] = "cloudinary://{API_KEY}:{SECRET}@{CLOUD_NAME}?upload_prefix=http://127.0.0.1:9"
        from functions.video_moderation.handler import handle
        from tests.helpers import sample, signed_request
        response = handle(signed_request(sample("video_moderation", "moderation_rejected"), secret="wrong"))
        assert response.status == 401, response.status
        loaded = sorted(name for name in sys.modules if name.split(".")[0] in ("cloudinary", "urllib3"))
        assert not loaded, loaded
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(("notification", "error"), [
    (payload("moderation_rejected", public_id=None), "missing_field"),
    (payload("moderation_rejected", public_id=""), "missing_field"),
    (payload("upload_rejected", public_id=42), "bad_field"),
])
def test_decided_notification_without_a_usable_public_id_is_400(cloudinary_server, notification, error):
    response = handle(signed_request(notification))

    assert response.status == 400 and response.body["error"] == error
    assert cloudinary_server.log == []


@pytest.mark.parametrize(("key", "value"), [("type", 7), ("type", "../upload"), ("resource_type", ["video"])])
def test_mistyped_location_fields_are_400(cloudinary_server, key, value):
    response = handle(signed_request(payload("upload_rejected", **{key: value})))

    assert response.status == 400 and response.body["error"] == "bad_field"
    assert cloudinary_server.log == []


def test_missing_cloudinary_url_is_500_naming_nothing_secret(signing_secret, caplog):
    response = handle(signed_request(sample("video_moderation", "moderation_rejected")))

    assert response.status == 500 and response.body["error"] == "not_configured"
    assert "CLOUDINARY_URL" in caplog.text and "CLOUDINARY_URL" not in json.dumps(response.body)


# --- Cloudinary failing: the promised status, and nothing written after a failed check -------------------

FAILURES = [(420, 503, "cloudinary_rate_limited"), (429, 503, "cloudinary_rate_limited"),
            (500, 503, "cloudinary_unavailable"), (502, 503, "cloudinary_unavailable"),
            (503, 503, "cloudinary_unavailable"), (504, 503, "cloudinary_unavailable"),
            (401, 500, "cloudinary_unauthorized"), (403, 500, "cloudinary_unauthorized")]


@pytest.mark.parametrize(("status", "expected", "code"), FAILURES)
def test_failed_details_call_is_mapped_and_nothing_is_deleted(cloudinary, cloudinary_server, status, expected,
                                                             code):
    add(cloudinary, REJECTED, "rejected")
    cloudinary_server.expect_oneshot_request(details_path(REJECTED)).respond_with_json(
        {"error": {"message": "simulated"}}, status=status)

    response = handle(signed_request(sample("video_moderation", "moderation_rejected")))

    assert response.status == expected and response.body["error"] == code
    assert wire(cloudinary_server) == [("GET", details_path(REJECTED))]
    assert cloudinary.get(REJECTED) is not None


@pytest.mark.parametrize(("status", "expected", "code"), FAILURES)
def test_failed_publish_is_mapped(cloudinary, cloudinary_server, status, expected, code):
    add(cloudinary, APPROVED, "approved")
    cloudinary_server.expect_oneshot_request(details_path(APPROVED), method="POST").respond_with_json(
        {"error": {"message": "simulated"}}, status=status)

    response = handle(signed_request(sample("video_moderation", "moderation_approved")))

    assert response.status == expected and response.body["error"] == code
    assert wire(cloudinary_server) == [("GET", details_path(APPROVED)), ("POST", details_path(APPROVED))]
    assert cloudinary.get(APPROVED)["access_control"] == [{"access_type": "token"}]


@pytest.mark.parametrize(("status", "expected", "code"), FAILURES)
def test_failed_destroy_is_mapped(cloudinary, cloudinary_server, status, expected, code):
    add(cloudinary, REJECTED, "rejected")
    cloudinary_server.expect_oneshot_request(DESTROY_PATH, method="POST").respond_with_json(
        {"error": {"message": "simulated"}}, status=status)

    response = handle(signed_request(sample("video_moderation", "moderation_rejected")))

    assert response.status == expected and response.body["error"] == code
    assert cloudinary.get(REJECTED) is not None


def test_cloudinary_answering_garbage_is_503(cloudinary_server):
    cloudinary_server.expect_oneshot_request(details_path(REJECTED)).respond_with_data(
        "<html>Bad gateway</html>", status=502, content_type="text/html")

    response = handle(signed_request(sample("video_moderation", "moderation_rejected")))

    assert response.status == 503 and response.body["error"] == "cloudinary_unavailable"


def test_details_call_timing_out_is_503_and_nothing_is_written(monkeypatch):
    # A listening socket that never answers: the SDK connects, sends, and times out reading (its GETs are
    # retried by urllib3, so a local server would pile up stale requests; this has nothing to pile up).
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    port = silent.getsockname()[1]
    monkeypatch.setenv("CLOUDINARY_URL", f"cloudinary://{API_KEY}:{SECRET}@{CLOUD_NAME}"
                                         f"?upload_prefix=http://127.0.0.1:{port}")
    monkeypatch.setenv("CLOUDINARY_TIMEOUT_SECONDS", "0.05")
    try:
        response = handle(signed_request(sample("video_moderation", "moderation_rejected")))
    finally:
        silent.close()

    assert response.status == 503 and response.body["error"] == "cloudinary_unavailable"


def test_publish_timing_out_is_503(cloudinary, cloudinary_server, monkeypatch):
    add(cloudinary, APPROVED, "approved")
    release = threading.Event()

    too_slow = answers_too_late(release)

    monkeypatch.setenv("CLOUDINARY_TIMEOUT_SECONDS", "0.2")
    cloudinary_server.expect_oneshot_request(details_path(APPROVED), method="POST").respond_with_handler(too_slow)
    try:
        response = handle(signed_request(sample("video_moderation", "moderation_approved")))
    finally:
        release.set()
        drain(cloudinary_server)

    assert response.status == 503 and response.body["error"] == "cloudinary_unavailable"
    assert cloudinary.get(APPROVED)["access_control"] == [{"access_type": "token"}]


# --- dry run, demo mode, entry points, log ------------------------------------------------------------

def test_dry_run_reads_and_reports_the_delete_but_writes_nothing(cloudinary, cloudinary_server, monkeypatch):
    monkeypatch.setenv("DRY_RUN", "1")
    add(cloudinary, REJECTED, "rejected")

    response = handle(signed_request(sample("video_moderation", "moderation_rejected")))

    assert response.status == 200
    assert response.body == {"status": "dry_run", "moderation": "rejected", "public_id": REJECTED, "actions": [
        {"action": "delete", "public_id": REJECTED, "resource_type": "video", "type": "upload",
         "invalidate": True}]}
    assert wire(cloudinary_server) == [("GET", details_path(REJECTED))]
    assert cloudinary.get(REJECTED) is not None


def test_dry_run_reports_the_publish_but_writes_nothing(cloudinary, cloudinary_server, monkeypatch):
    monkeypatch.setenv("DRY_RUN", "1")
    add(cloudinary, UPLOAD_APPROVED, "approved")

    response = handle(signed_request(sample("video_moderation", "upload_approved")))

    assert response.body["status"] == "dry_run" and response.body["actions"][0]["action"] == "publish"
    assert writes(cloudinary_server) == []
    assert cloudinary.get(UPLOAD_APPROVED)["access_control"] == [{"access_type": "token"}]


def test_dry_run_of_a_video_already_public_says_nothing_to_do(cloudinary, cloudinary_server, monkeypatch):
    monkeypatch.setenv("DRY_RUN", "1")
    add(cloudinary, APPROVED, "approved", access_control=[{"access_type": "anonymous"}])

    response = handle(signed_request(sample("video_moderation", "moderation_approved")))

    assert response.body["status"] == "ignored" and response.body["reason"] == "the video is already public"


def test_demo_mode_without_credentials_plans_without_calling(signing_secret, monkeypatch):
    monkeypatch.setenv("CLOUDINARY_WEBHOOKS_DEMO", "1")

    response = handle(signed_request(sample("video_moderation", "moderation_rejected")))

    assert response.status == 200 and response.body["status"] == "dry_run"
    assert [action["action"] for action in response.body["actions"]] == ["check_status", "delete"]


def test_lambda_function_url_entry_point(cloudinary, cloudinary_server):
    from functions.video_moderation.handler import handler

    add(cloudinary, REJECTED, "rejected")

    result = handler(function_url_event(sample("video_moderation", "moderation_rejected"), base64_body=True), None)

    assert result["statusCode"] == 200 and json.loads(result["body"])["status"] == "done"
    assert wire(cloudinary_server) == [("GET", details_path(REJECTED)), ("POST", DESTROY_PATH)]


def test_wsgi_entry_point(cloudinary, cloudinary_server):
    from functions.video_moderation.handler import app

    add(cloudinary, APPROVED, "approved")
    request = signed_request(sample("video_moderation", "moderation_approved"))
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/api/video_moderation", "CONTENT_TYPE": "application/json",
               "CONTENT_LENGTH": str(len(request.body)), "wsgi.input": __import__("io").BytesIO(request.body),
               **{f"HTTP_{name.upper().replace('-', '_')}": value for name, value in request.headers.items()
                  if name.lower() != "content-type"}}
    seen: dict[str, Any] = {}

    body = b"".join(app(environ, lambda status, headers: seen.update(status=status)))

    assert seen["status"].startswith("200") and json.loads(body)["status"] == "done"


def test_one_log_line_with_call_counts_and_no_secrets(cloudinary, cloudinary_server, caplog):
    add(cloudinary, APPROVED, "approved")
    request = signed_request(sample("video_moderation", "moderation_approved"))

    handle(request)

    lines = [json.loads(record.getMessage()) for record in caplog.records if record.name == "cloudinary_webhooks"]
    assert len(lines) == 1
    line = lines[0]
    assert line["function"] == "video_moderation" and line["notification_type"] == "moderation"
    assert line["public_id"] == APPROVED and line["outcome"] == "done" and line["status"] == 200
    assert line["moderation"] == "approved" and line["admin_calls"] == 2 and line["upload_calls"] == 0
    signature = request.headers.get("X-Cld-Signature")
    assert SECRET not in caplog.text and signature not in caplog.text and "pornography" not in caplog.text
