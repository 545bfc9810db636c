"""video_moderation's webhook on the wire: the real Cloudinary SDK talks to the stateful stand-in of
tests/fakes/cloudinary.py (the ``fake_cloudinary`` fixture), which keeps the videos, so a repeated
notification sees what the first one did, and records every call (method, path, parameters, API)."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from functions.video_moderation.handler import handle
from functions.video_moderation.moderation import video_named_by
from tests.fakes.cloudinary import Call, FakeCloudinary, Fault
from tests.faults.scenarios import SCENARIOS
from tests.helpers import API_KEY, CLOUD_NAME, ROOT, SECRET, function_url_event, sample, signed_request

KIND = "google_video_moderation"
APPROVED = "ugc/tok627Lzicdh7ddzcect"  # moderation_approved.json
REJECTED = "ugc/bz1ql0kqzjhfmwd4vqkr"  # moderation_rejected.json
UPLOAD_APPROVED = "ugc/skate_park_approved"  # upload_approved.json
UPLOAD_REJECTED = "ugc/skate_park_rejected"  # upload_rejected.json
AUTHENTICATED = "ugc/training_run_authenticated"  # moderation_approved_authenticated.json
ASSET_IDS = {APPROVED: "98b7998debe995912d0e6320eac95e3f", REJECTED: "7d5e3c1a9b8f7e6d5c4b3a2918a7b6c5",
             UPLOAD_APPROVED: "5c1f0e2d3b4a69788796a5b4c3d2e1f0", UPLOAD_REJECTED: "a1b2c3d4e5f60718293a4b5c6d7e8f90",
             AUTHENTICATED: "5d7c0b1e3a9f4e2d8c6b4a2f0e1d3c5b"}
PUBLIC = [{"access_type": "anonymous"}]
TOKEN = [{"access_type": "token"}]

EXPLICIT_PATH = f"/v1_1/{CLOUD_NAME}/video/explicit"
DESTROY_PATH = f"/v1_1/{CLOUD_NAME}/video/destroy"
TAGS_PATH = f"/v1_1/{CLOUD_NAME}/video/tags"
RENAME_PATH = f"/v1_1/{CLOUD_NAME}/video/rename"


def details_path(public_id: str, delivery_type: str = "upload") -> str:
    return f"/v1_1/{CLOUD_NAME}/resources/video/{delivery_type}/{public_id}"


def queue_path(status: str) -> str:
    return f"/v1_1/{CLOUD_NAME}/resources/video/moderations/{KIND}/{status}"


def add_video(fake: FakeCloudinary, public_id: str, status: str, *, access_control: list | None = TOKEN,
              tags: list[str] | None = None, delivery_type: str = "upload", asset_id: str | None = None,
              ) -> dict[str, Any]:
    """A video uploaded as the README says (token access, Google moderation), now ``status``. Returns the
    fake's own record: changing it changes what Cloudinary answers. ``access_control=None``: no rules."""
    moderation = [{"kind": KIND, "status": status, "updated_at": "2022-02-22T17:31:12Z",
                   "response": {"moderation_confidence": "UNLIKELY" if status == "approved" else "LIKELY"}}]
    return fake.add_asset(public_id, resource_type="video", type=delivery_type, tags=tags, moderation=moderation,
                          access_control=access_control, asset_id=asset_id or ASSET_IDS.get(public_id, "0" * 32),
                          created_at="2022-02-22T17:30:29Z", duration=21.3)


def video(fake: FakeCloudinary, public_id: str, delivery_type: str = "upload") -> dict[str, Any] | None:
    return fake.asset(public_id, resource_type="video", type=delivery_type)


def payload(name: str, **changes: Any) -> dict[str, Any]:
    data = json.loads(sample("video_moderation", name))
    data.update(changes)
    return data


def send(name: str) -> Any:
    return handle(signed_request(sample("video_moderation", name)))


def fail_once(fake: FakeCloudinary, route: tuple[str, str], fault: Fault) -> None:
    """The next call to (method, path) is answered with ``fault``; the ones after it normally."""
    fake.fail_once(lambda call, _index: call.route == route, fault)


def assert_basic_auth(call: Call) -> None:
    expected = "Basic " + base64.b64encode(f"{API_KEY}:{SECRET}".encode()).decode()
    assert call.headers["Authorization"] == expected


def assert_signed_upload_call(call: Call) -> None:
    assert call.api == "upload" and call.params["api_key"] == API_KEY and len(call.params["signature"]) == 40
    assert all(SECRET not in str(value) for value in call.params.values())
    assert all(SECRET not in value for value in call.headers.values())


def assert_explicit(call: Call, public_id: str, rules: list[dict[str, str]], delivery_type: str = "upload") -> None:
    """The Upload API's explicit (not the rate-limited Admin API update), replacing the access control."""
    assert call.route == ("POST", EXPLICIT_PATH)
    assert call.params["public_id"] == public_id and call.params["type"] == delivery_type
    assert json.loads(call.params["access_control"]) == rules  # the SDK sends the rules JSON-encoded
    assert_signed_upload_call(call)


def assert_destroy(call: Call, public_id: str, delivery_type: str = "upload") -> None:
    assert call.route == ("POST", DESTROY_PATH)
    assert call.params["public_id"] == public_id and call.params["type"] == delivery_type
    assert call.params["invalidate"] == "1"
    assert_signed_upload_call(call)


# --- approved: confirm, then lift the token restriction ---------------------------------------------

@pytest.mark.parametrize(("sample_name", "public_id"), [("moderation_approved", APPROVED),
                                                        ("upload_approved", UPLOAD_APPROVED)])
def test_approved_video_is_confirmed_then_made_public(fake_cloudinary, sample_name, public_id):
    add_video(fake_cloudinary, public_id, "approved")

    response = send(sample_name)

    assert response.status == 200
    assert response.body == {"status": "done", "moderation": "approved", "public_id": public_id, "actions": [
        {"action": "publish", "public_id": public_id, "resource_type": "video", "type": "upload",
         "access_control": PUBLIC}]}
    assert fake_cloudinary.routes == [("GET", details_path(public_id)), ("POST", EXPLICIT_PATH)]
    details, publish = fake_cloudinary.calls
    assert details.api == "admin" and details.params == {} and details.raw_path.count("?") == 0
    assert_basic_auth(details)
    assert_explicit(publish, public_id, PUBLIC)
    assert (fake_cloudinary.count("admin"), fake_cloudinary.count("upload")) == (1, 1)
    assert video(fake_cloudinary, public_id)["access_control"] == PUBLIC


@pytest.mark.parametrize("access_control", [[], TOKEN])
def test_approved_authenticated_video_becomes_an_upload_without_overwriting(fake_cloudinary, access_control):
    # How Cloudinary's training uploads it: type authenticated, told by the URL (.../video/authenticated/s--..--/).
    add_video(fake_cloudinary, AUTHENTICATED, "approved", delivery_type="authenticated",
              access_control=access_control)

    response = send("moderation_approved_authenticated")

    assert response.status == 200 and response.body["status"] == "done", response.body
    expected = [("GET", details_path(AUTHENTICATED, "authenticated"))]
    if access_control:  # token-restricted: lifted first, while the authenticated type still keeps it private
        expected.append(("POST", EXPLICIT_PATH))
    expected.append(("POST", RENAME_PATH))
    assert fake_cloudinary.routes == expected
    if access_control:
        assert_explicit(fake_cloudinary.calls[1], AUTHENTICATED, PUBLIC, "authenticated")
    rename = fake_cloudinary.calls[-1].params
    assert rename["from_public_id"] == rename["to_public_id"] == AUTHENTICATED
    assert rename["type"] == "authenticated" and rename["to_type"] == "upload"
    assert rename["overwrite"] in ("0", "false") and rename["invalidate"] in ("1", "true")
    assert fake_cloudinary.count("admin") == 1
    assert video(fake_cloudinary, AUTHENTICATED, "authenticated") is None
    published = video(fake_cloudinary, AUTHENTICATED, "upload")
    assert published is not None and published["access_control"] in ([], PUBLIC)

    # Cloudinary retries: the authenticated video is gone, nothing else is written.
    again = send("moderation_approved_authenticated")
    assert again.status == 200 and again.body["status"] == "ignored"
    assert [call.route for call in fake_cloudinary.writes] == [route for route in expected if route[0] == "POST"]


def test_approved_authenticated_video_never_overwrites_a_public_namesake(fake_cloudinary):
    add_video(fake_cloudinary, AUTHENTICATED, "approved", delivery_type="authenticated", access_control=[])
    add_video(fake_cloudinary, AUTHENTICATED, "approved", access_control=[], asset_id="f" * 32)

    response = send("moderation_approved_authenticated")

    assert response.status == 200 and response.body["status"] == "ignored"
    assert response.body["reason"].endswith("stays authenticated (never overwritten)")
    assert video(fake_cloudinary, AUTHENTICATED, "authenticated") is not None
    assert video(fake_cloudinary, AUTHENTICATED)["asset_id"] == "f" * 32


def test_a_token_restricted_authenticated_video_blocked_by_a_namesake_says_its_restriction_was_lifted(
        fake_cloudinary):
    add_video(fake_cloudinary, AUTHENTICATED, "approved", delivery_type="authenticated")
    add_video(fake_cloudinary, AUTHENTICATED, "approved", access_control=[], asset_id="f" * 32)

    response = send("moderation_approved_authenticated")

    assert response.status == 200 and response.body["status"] == "ignored"
    assert "never overwritten" in response.body["reason"] and "restriction was lifted" in response.body["reason"]
    assert video(fake_cloudinary, AUTHENTICATED, "authenticated")["access_control"] == PUBLIC  # still private by type
    assert video(fake_cloudinary, AUTHENTICATED)["asset_id"] == "f" * 32


def test_authenticated_video_finishes_on_retry_after_the_rename_failed(fake_cloudinary):
    add_video(fake_cloudinary, AUTHENTICATED, "approved", delivery_type="authenticated")
    fail_once(fake_cloudinary, ("POST", RENAME_PATH), Fault("status", 503))

    first = send("moderation_approved_authenticated")
    retried = send("moderation_approved_authenticated")

    assert first.status == 503  # the restriction is lifted already; the retry still finds the authenticated video
    assert retried.status == 200 and retried.body["status"] == "done"
    assert [action["to_type"] for action in retried.body["actions"]] == ["upload"]  # only the rename is left
    assert video(fake_cloudinary, AUTHENTICATED)["access_control"] == PUBLIC


def test_repeated_approval_finds_it_public_and_writes_nothing(fake_cloudinary):
    add_video(fake_cloudinary, APPROVED, "approved")
    assert send("moderation_approved").body["status"] == "done"

    again = send("moderation_approved")

    assert again.status == 200
    assert again.body == {"status": "ignored", "reason": "the video is already public", "moderation": "approved",
                          "public_id": APPROVED}
    assert fake_cloudinary.routes == [("GET", details_path(APPROVED)), ("POST", EXPLICIT_PATH),
                                      ("GET", details_path(APPROVED))]


@pytest.mark.parametrize("access_control", [None, [], PUBLIC, [*TOKEN, *PUBLIC]])
def test_approved_video_without_a_token_restriction_is_left_alone(fake_cloudinary, access_control):
    add_video(fake_cloudinary, APPROVED, "approved", access_control=access_control)  # None: no rules at all

    response = send("moderation_approved")

    assert response.status == 200 and response.body["reason"] == "the video is already public"
    assert fake_cloudinary.writes == []


def test_a_dated_anonymous_rule_does_not_count_as_public(fake_cloudinary):
    add_video(fake_cloudinary, APPROVED, "approved",
              access_control=[*TOKEN, {"access_type": "anonymous", "start": "2030-01-01T00:00:00Z"}])

    response = send("moderation_approved")

    assert response.body["status"] == "done"
    assert_explicit(fake_cloudinary.calls[1], APPROVED, PUBLIC)


# --- rejected: confirm, then delete (default) or keep --------------------------------------------------

@pytest.mark.parametrize(("sample_name", "public_id"), [("moderation_rejected", REJECTED),
                                                        ("upload_rejected", UPLOAD_REJECTED)])
def test_rejected_video_is_confirmed_then_destroyed_with_invalidate(fake_cloudinary, sample_name, public_id):
    add_video(fake_cloudinary, public_id, "rejected")

    response = send(sample_name)

    assert response.status == 200
    assert response.body == {"status": "done", "moderation": "rejected", "public_id": public_id, "actions": [
        {"action": "delete", "public_id": public_id, "resource_type": "video", "type": "upload",
         "invalidate": True}]}
    assert fake_cloudinary.routes == [("GET", details_path(public_id)), ("POST", DESTROY_PATH)]
    assert_destroy(fake_cloudinary.calls[1], public_id)
    assert video(fake_cloudinary, public_id) is None


def test_repeated_rejection_after_the_delete_is_200_with_no_write(fake_cloudinary):
    add_video(fake_cloudinary, REJECTED, "rejected")
    assert send("moderation_rejected").body["status"] == "done"

    again = send("moderation_rejected")

    assert again.status == 200
    assert again.body["status"] == "ignored" and again.body["reason"] == "the video no longer exists"
    assert fake_cloudinary.routes == [("GET", details_path(REJECTED)), ("POST", DESTROY_PATH),
                                      ("GET", details_path(REJECTED))]


def test_video_deleted_between_check_and_destroy_is_200(fake_cloudinary):
    add_video(fake_cloudinary, REJECTED, "rejected")
    fail_once(fake_cloudinary, ("POST", DESTROY_PATH), Fault("status", 200, body={"result": "not found"}))

    response = send("moderation_rejected")

    assert response.status == 200 and response.body["reason"] == "the video no longer exists"


def test_destroy_answer_that_is_neither_ok_nor_not_found_is_503(fake_cloudinary):
    add_video(fake_cloudinary, REJECTED, "rejected")
    fail_once(fake_cloudinary, ("POST", DESTROY_PATH), Fault("status", 200, body={"result": "error"}))

    response = send("moderation_rejected")

    assert response.status == 503 and response.body["error"] == "cloudinary_unavailable"


def test_keep_leaves_a_restricted_rejected_video_and_tags_it(fake_cloudinary, monkeypatch):
    monkeypatch.setenv("VIDEO_MODERATION_ON_REJECT", "keep")
    add_video(fake_cloudinary, REJECTED, "rejected", tags=["ugc"])

    response = send("moderation_rejected")

    assert response.status == 200
    assert response.body["actions"] == [{"action": "tag", "public_id": REJECTED, "resource_type": "video",
                                         "type": "upload", "tag": "video_moderation_rejected"}]
    assert fake_cloudinary.routes == [("GET", details_path(REJECTED)), ("POST", TAGS_PATH)]
    tags = fake_cloudinary.calls[1].params
    assert tags["command"] == "add" and tags["tag"] == "video_moderation_rejected"
    assert tags["public_ids[]"] == [REJECTED] and tags["type"] == "upload"
    assert video(fake_cloudinary, REJECTED)["access_control"] == TOKEN
    assert video(fake_cloudinary, REJECTED)["tags"] == ["ugc", "video_moderation_rejected"]


def test_keep_restricts_a_rejected_video_anyone_could_view(fake_cloudinary, monkeypatch):
    monkeypatch.setenv("VIDEO_MODERATION_ON_REJECT", "keep")
    monkeypatch.setenv("VIDEO_MODERATION_REJECTED_TAG", "needs review")
    add_video(fake_cloudinary, REJECTED, "rejected", access_control=PUBLIC)

    response = send("moderation_rejected")

    assert response.status == 200
    assert [action["action"] for action in response.body["actions"]] == ["restrict", "tag"]
    assert fake_cloudinary.routes == [("GET", details_path(REJECTED)), ("POST", EXPLICIT_PATH), ("POST", TAGS_PATH)]
    assert_explicit(fake_cloudinary.calls[1], REJECTED, TOKEN)
    assert fake_cloudinary.calls[2].params["tag"] == "needs review"
    assert (fake_cloudinary.count("admin"), fake_cloudinary.count("upload")) == (1, 2)
    assert video(fake_cloudinary, REJECTED)["access_control"] == TOKEN
    assert video(fake_cloudinary, REJECTED)["tags"] == ["needs review"]


def test_keep_repeated_changes_nothing(fake_cloudinary, monkeypatch):
    monkeypatch.setenv("VIDEO_MODERATION_ON_REJECT", "keep")
    add_video(fake_cloudinary, REJECTED, "rejected", tags=["video_moderation_rejected"])

    response = send("moderation_rejected")

    assert response.status == 200 and response.body["status"] == "ignored"
    assert "already restricted and tagged" in response.body["reason"]
    assert fake_cloudinary.routes == [("GET", details_path(REJECTED))]


def test_keep_finishes_on_retry_after_the_tag_call_failed(fake_cloudinary, monkeypatch):
    monkeypatch.setenv("VIDEO_MODERATION_ON_REJECT", "keep")
    add_video(fake_cloudinary, REJECTED, "rejected", access_control=PUBLIC)
    fail_once(fake_cloudinary, ("POST", TAGS_PATH), Fault("status", 500))

    first = send("moderation_rejected")
    retried = send("moderation_rejected")

    assert first.status == 503  # Cloudinary retries: the video is already restricted, only the tag is left
    assert retried.status == 200 and [a["action"] for a in retried.body["actions"]] == ["tag"]
    assert video(fake_cloudinary, REJECTED)["access_control"] == TOKEN
    assert video(fake_cloudinary, REJECTED)["tags"] == ["video_moderation_rejected"]


@pytest.mark.parametrize("value", ["archive", "yes"])
def test_unknown_on_reject_setting_is_500_before_any_call(fake_cloudinary, monkeypatch, caplog, value):
    monkeypatch.setenv("VIDEO_MODERATION_ON_REJECT", value)

    response = send("moderation_rejected")

    assert response.status == 500 and response.body["error"] == "not_configured"
    assert "VIDEO_MODERATION_ON_REJECT" in caplog.text
    assert fake_cloudinary.calls == []


# --- the Admin API check decides: nothing happens on the payload's word alone ---------------------------

def test_rejection_is_not_acted_on_when_cloudinary_now_says_approved(fake_cloudinary):
    add_video(fake_cloudinary, REJECTED, "approved")  # e.g. a person overrode Google's decision meanwhile

    response = send("moderation_rejected")

    assert response.status == 200 and response.body["status"] == "ignored"
    assert response.body["reason"] == "Cloudinary's current Google moderation status is approved, not rejected"
    assert fake_cloudinary.writes == [] and video(fake_cloudinary, REJECTED) is not None


def test_approval_is_not_acted_on_when_cloudinary_now_says_rejected(fake_cloudinary):
    add_video(fake_cloudinary, APPROVED, "rejected")

    response = send("moderation_approved")

    assert response.body["status"] == "ignored" and "rejected, not approved" in response.body["reason"]
    assert fake_cloudinary.writes == []


def test_details_without_a_google_result_never_lead_to_a_delete(fake_cloudinary):
    resource = add_video(fake_cloudinary, REJECTED, "rejected")
    resource["moderation"] = [{"kind": "manual", "status": "rejected"}]

    response = send("moderation_rejected")

    assert response.body["status"] == "ignored" and "missing, not rejected" in response.body["reason"]
    assert fake_cloudinary.writes == []


def test_conflicting_google_results_never_lead_to_a_delete(fake_cloudinary):
    resource = add_video(fake_cloudinary, REJECTED, "rejected")
    resource["moderation"].append({"kind": KIND, "status": "approved"})

    response = send("moderation_rejected")

    assert response.body["status"] == "ignored" and "conflicting" in response.body["reason"]
    assert fake_cloudinary.writes == []


def test_public_id_reused_by_another_asset_is_not_deleted(fake_cloudinary):
    add_video(fake_cloudinary, REJECTED, "rejected", asset_id="f" * 32)

    response = send("moderation_rejected")

    assert response.body == {"status": "ignored", "reason": "the public ID now names another asset",
                             "moderation": "rejected", "public_id": REJECTED}
    assert fake_cloudinary.writes == []


@pytest.mark.parametrize(("key", "value"), [("type", "authenticated"), ("resource_type", "image"),
                                            ("public_id", "ugc/someone-else")])
def test_details_for_a_different_asset_are_not_acted_on(fake_cloudinary, key, value):
    resource = add_video(fake_cloudinary, REJECTED, "rejected")
    resource[key] = value  # what Cloudinary's details answer says, whatever was asked for

    response = send("moderation_rejected")

    assert response.status == 200 and response.body["status"] == "ignored"
    assert response.body["reason"] == f"Cloudinary's details do not match the notification's {key}"
    assert fake_cloudinary.writes == []


def test_video_already_deleted_is_200_after_one_call(fake_cloudinary):
    response = send("moderation_rejected")

    assert response.status == 200
    assert response.body["status"] == "ignored" and response.body["reason"] == "the video no longer exists"
    assert fake_cloudinary.routes == [("GET", details_path(REJECTED))]


def test_video_deleted_between_check_and_publish_is_200(fake_cloudinary):
    add_video(fake_cloudinary, APPROVED, "approved")
    fail_once(fake_cloudinary, ("POST", EXPLICIT_PATH), Fault("status", 404))

    response = send("moderation_approved")

    assert response.status == 200 and response.body["reason"] == "the video no longer exists"


# --- where the video is: payload fields, else the delivery URL, else video/upload -------------------------

def test_delivery_type_is_read_from_the_url_when_the_payload_has_none(fake_cloudinary):
    public_id = "ugc/private-clip"
    add_video(fake_cloudinary, public_id, "rejected", delivery_type="authenticated")
    url = f"https://res.cloudinary.com/{CLOUD_NAME}/video/authenticated/s--abcd1234--/v1/{public_id}.mp4"
    notification = payload("moderation_rejected", public_id=public_id, url=url.replace("https", "http"),
                           secure_url=url, asset_id=None)

    response = handle(signed_request(notification))

    assert response.status == 200 and response.body["status"] == "done"
    assert fake_cloudinary.routes == [("GET", details_path(public_id, "authenticated")), ("POST", DESTROY_PATH)]
    assert_destroy(fake_cloudinary.calls[1], public_id, "authenticated")


def test_private_cdn_url_without_cloud_name_is_understood(fake_cloudinary):
    add_video(fake_cloudinary, APPROVED, "approved", delivery_type="private")
    url = f"https://{CLOUD_NAME}-res.cloudinary.com/video/private/v1645551029/{APPROVED}.mp4"

    response = handle(signed_request(payload("moderation_approved", url=None, secure_url=url)))

    assert response.body["status"] == "done"
    assert_explicit(fake_cloudinary.calls[1], APPROVED, PUBLIC, "private")


def test_no_type_and_no_url_defaults_to_video_upload(fake_cloudinary):
    add_video(fake_cloudinary, APPROVED, "approved")
    notification = payload("moderation_approved")
    for key in ("url", "secure_url"):
        notification.pop(key)

    response = handle(signed_request(notification))

    assert response.body["status"] == "done"
    assert fake_cloudinary.routes == [("GET", details_path(APPROVED)), ("POST", EXPLICIT_PATH)]


def test_public_id_with_spaces_and_unicode_is_escaped_on_the_wire(fake_cloudinary):
    public_id = "ugc/Été 2024/clip #1"
    add_video(fake_cloudinary, public_id, "approved")

    response = handle(signed_request(payload("moderation_approved", public_id=public_id, asset_id=None)))

    assert response.body["status"] == "done"
    details = fake_cloudinary.calls[0]
    assert details.path == details_path(public_id)
    assert "%20" in details.raw_path and " " not in details.raw_path and "#" not in details.raw_path
    assert fake_cloudinary.calls[1].params["public_id"] == public_id


# --- everything else is ignored with no call ----------------------------------------------------------

@pytest.mark.parametrize("notification", [
    sample("video_moderation", "upload_pending"),
    sample("video_moderation", "moderation_pending"),
    payload("moderation_approved", moderation_status="queued"),
    payload("upload_approved", moderation=[{"kind": KIND, "status": "aborted"}]),
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
def test_undecided_and_unrelated_notifications_are_ignored_with_no_call(fake_cloudinary, notification):
    response = handle(signed_request(notification))

    assert response.status == 200 and response.body["status"] == "ignored"
    assert fake_cloudinary.calls == []


def test_an_image_with_a_google_video_result_is_not_touched(fake_cloudinary):
    response = handle(signed_request(payload("upload_rejected", resource_type="image")))

    assert response.status == 200 and response.body["reason"] == "not a video (image)"
    assert fake_cloudinary.calls == []


def test_threshold_suffix_in_the_kind_is_still_google_video_moderation(fake_cloudinary):
    add_video(fake_cloudinary, REJECTED, "rejected")

    response = handle(signed_request(payload("moderation_rejected", moderation_kind=f"{KIND}:very_likely")))

    assert response.body["status"] == "done"


# --- requests refused before any work -----------------------------------------------------------------

@pytest.mark.parametrize("sample_name", ["moderation_rejected", "upload_rejected"])
def test_bad_signature_is_401_with_no_outbound_call(fake_cloudinary, sample_name):
    response = handle(signed_request(sample("video_moderation", sample_name), secret="not-the-secret"))

    assert response.status == 401 and response.body["error"] == "signature_mismatch"
    assert fake_cloudinary.calls == []


def test_stale_signature_is_401_with_no_outbound_call(fake_cloudinary):
    response = handle(signed_request(sample("video_moderation", "moderation_rejected"), timestamp=1645552251))

    assert response.status == 401
    assert fake_cloudinary.calls == []


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
def test_decided_notification_without_a_usable_public_id_is_400(fake_cloudinary, notification, error):
    response = handle(signed_request(notification))

    assert response.status == 400 and response.body["error"] == error
    assert fake_cloudinary.calls == []


@pytest.mark.parametrize(("key", "value"), [("type", 7), ("type", "../upload"), ("resource_type", ["video"])])
def test_mistyped_location_fields_are_400(fake_cloudinary, key, value):
    response = handle(signed_request(payload("upload_rejected", **{key: value})))

    assert response.status == 400 and response.body["error"] == "bad_field"
    assert fake_cloudinary.calls == []


def test_missing_cloudinary_url_is_500_naming_nothing_secret(signing_secret, caplog):
    response = send("moderation_rejected")

    assert response.status == 500 and response.body["error"] == "not_configured"
    assert "CLOUDINARY_URL" in caplog.text and "CLOUDINARY_URL" not in json.dumps(response.body)


# --- Cloudinary failing: the promised status, and nothing written after a failed check -------------------

FAILURES = [(420, 503, "cloudinary_rate_limited"), (429, 503, "cloudinary_rate_limited"),
            (500, 503, "cloudinary_unavailable"), (502, 503, "cloudinary_unavailable"),
            (503, 503, "cloudinary_unavailable"), (504, 503, "cloudinary_unavailable"),
            (401, 500, "cloudinary_unauthorized"), (403, 500, "cloudinary_unauthorized")]


@pytest.mark.parametrize(("status", "expected", "code"), FAILURES)
def test_failed_details_call_is_mapped_and_nothing_is_deleted(fake_cloudinary, status, expected, code):
    add_video(fake_cloudinary, REJECTED, "rejected")
    fail_once(fake_cloudinary, ("GET", details_path(REJECTED)), Fault("status", status))

    response = send("moderation_rejected")

    assert response.status == expected and response.body["error"] == code
    assert fake_cloudinary.routes == [("GET", details_path(REJECTED))]
    assert video(fake_cloudinary, REJECTED) is not None


@pytest.mark.parametrize(("status", "expected", "code"), FAILURES)
def test_failed_publish_is_mapped(fake_cloudinary, status, expected, code):
    add_video(fake_cloudinary, APPROVED, "approved")
    fail_once(fake_cloudinary, ("POST", EXPLICIT_PATH), Fault("status", status))

    response = send("moderation_approved")

    assert response.status == expected and response.body["error"] == code
    assert fake_cloudinary.routes == [("GET", details_path(APPROVED)), ("POST", EXPLICIT_PATH)]
    assert video(fake_cloudinary, APPROVED)["access_control"] == TOKEN


@pytest.mark.parametrize(("status", "expected", "code"), FAILURES)
def test_failed_destroy_is_mapped(fake_cloudinary, status, expected, code):
    add_video(fake_cloudinary, REJECTED, "rejected")
    fail_once(fake_cloudinary, ("POST", DESTROY_PATH), Fault("status", status))

    response = send("moderation_rejected")

    assert response.status == expected and response.body["error"] == code
    assert video(fake_cloudinary, REJECTED) is not None


def test_cloudinary_answering_garbage_is_503(fake_cloudinary):
    add_video(fake_cloudinary, REJECTED, "rejected")
    fail_once(fake_cloudinary, ("GET", details_path(REJECTED)), Fault("status", 502, body="<html>Bad gateway</html>"))

    response = send("moderation_rejected")

    assert response.status == 503 and response.body["error"] == "cloudinary_unavailable"
    assert video(fake_cloudinary, REJECTED) is not None


def test_details_call_timing_out_is_503_and_nothing_is_written(monkeypatch):
    # A listening socket that never answers: the SDK connects, sends, and times out reading.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    port = silent.getsockname()[1]
    monkeypatch.setenv("CLOUDINARY_URL", f"cloudinary://{API_KEY}:{SECRET}@{CLOUD_NAME}"
                                         f"?upload_prefix=http://127.0.0.1:{port}")
    monkeypatch.setenv("CLOUDINARY_TIMEOUT_SECONDS", "0.05")
    try:
        response = send("moderation_rejected")
    finally:
        silent.close()

    assert response.status == 503 and response.body["error"] == "cloudinary_unavailable"


def test_publish_timing_out_is_503(fake_cloudinary, monkeypatch):
    add_video(fake_cloudinary, APPROVED, "approved")
    monkeypatch.setenv("CLOUDINARY_TIMEOUT_SECONDS", "0.2")
    fail_once(fake_cloudinary, ("POST", EXPLICIT_PATH), Fault("stall"))  # released when the fixture stops

    response = send("moderation_approved")

    assert response.status == 503 and response.body["error"] == "cloudinary_unavailable"
    assert fake_cloudinary.routes == [("GET", details_path(APPROVED)), ("POST", EXPLICIT_PATH)]  # not retried
    assert video(fake_cloudinary, APPROVED)["access_control"] == TOKEN


# --- dry run, demo mode, entry points, log ------------------------------------------------------------

def test_dry_run_reads_and_reports_the_delete_but_writes_nothing(fake_cloudinary, monkeypatch):
    monkeypatch.setenv("DRY_RUN", "1")
    add_video(fake_cloudinary, REJECTED, "rejected")

    response = send("moderation_rejected")

    assert response.status == 200
    assert response.body == {"status": "dry_run", "moderation": "rejected", "public_id": REJECTED, "actions": [
        {"action": "delete", "public_id": REJECTED, "resource_type": "video", "type": "upload",
         "invalidate": True}]}
    assert fake_cloudinary.routes == [("GET", details_path(REJECTED))]
    assert video(fake_cloudinary, REJECTED) is not None


def test_dry_run_reports_the_publish_but_writes_nothing(fake_cloudinary, monkeypatch):
    monkeypatch.setenv("DRY_RUN", "1")
    add_video(fake_cloudinary, UPLOAD_APPROVED, "approved")

    response = send("upload_approved")

    assert response.body["status"] == "dry_run" and response.body["actions"][0]["action"] == "publish"
    assert fake_cloudinary.writes == []
    assert video(fake_cloudinary, UPLOAD_APPROVED)["access_control"] == TOKEN


def test_dry_run_of_a_video_already_public_says_nothing_to_do(fake_cloudinary, monkeypatch):
    monkeypatch.setenv("DRY_RUN", "1")
    add_video(fake_cloudinary, APPROVED, "approved", access_control=PUBLIC)

    response = send("moderation_approved")

    assert response.body["status"] == "ignored" and response.body["reason"] == "the video is already public"


def test_demo_mode_without_credentials_plans_without_calling(signing_secret, monkeypatch):
    monkeypatch.setenv("CLOUDINARY_WEBHOOKS_DEMO", "1")

    response = send("moderation_rejected")

    assert response.status == 200 and response.body["status"] == "dry_run"
    assert [action["action"] for action in response.body["actions"]] == ["check_status", "delete"]


def test_lambda_function_url_entry_point(fake_cloudinary):
    from functions.video_moderation.handler import handler

    add_video(fake_cloudinary, REJECTED, "rejected")

    result = handler(function_url_event(sample("video_moderation", "moderation_rejected"), base64_body=True), None)

    assert result["statusCode"] == 200 and json.loads(result["body"])["status"] == "done"
    assert fake_cloudinary.routes == [("GET", details_path(REJECTED)), ("POST", DESTROY_PATH)]


def test_wsgi_entry_point(fake_cloudinary):
    from functions.video_moderation.handler import app

    add_video(fake_cloudinary, APPROVED, "approved")
    request = signed_request(sample("video_moderation", "moderation_approved"))
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/api/video_moderation", "CONTENT_TYPE": "application/json",
               "CONTENT_LENGTH": str(len(request.body)), "wsgi.input": __import__("io").BytesIO(request.body),
               **{f"HTTP_{name.upper().replace('-', '_')}": value for name, value in request.headers.items()
                  if name.lower() != "content-type"}}
    seen: dict[str, Any] = {}

    body = b"".join(app(environ, lambda status, headers: seen.update(status=status)))

    assert seen["status"].startswith("200") and json.loads(body)["status"] == "done"


def test_one_log_line_with_call_counts_and_no_secrets(fake_cloudinary, caplog):
    add_video(fake_cloudinary, APPROVED, "approved")
    request = signed_request(sample("video_moderation", "moderation_approved"))

    handle(request)

    lines = [json.loads(record.getMessage()) for record in caplog.records if record.name == "cloudinary_webhooks"]
    assert len(lines) == 1
    line = lines[0]
    assert line["function"] == "video_moderation" and line["notification_type"] == "moderation"
    assert line["public_id"] == APPROVED and line["outcome"] == "done" and line["status"] == 200
    assert line["moderation"] == "approved" and line["admin_calls"] == 1 and line["upload_calls"] == 1
    assert (fake_cloudinary.count("admin"), fake_cloudinary.count("upload")) == (1, 1)  # the log tells the truth
    signature = request.headers.get("X-Cld-Signature")
    assert SECRET not in caplog.text and signature not in caplog.text and "pornography" not in caplog.text


# --- the Admin API budget: at most one rate-limited call per notification, whatever it meets ---------------

SAMPLES = sorted(path.stem for path in (ROOT / "functions" / "video_moderation" / "samples").glob("*.json"))
STATES: dict[str, dict[str, Any] | None] = {  # what Cloudinary holds under the notification's public ID
    "gone": None,
    "approved, token-restricted": {"status": "approved"},
    "approved, public": {"status": "approved", "access_control": PUBLIC},
    "approved, no rules": {"status": "approved", "access_control": None},
    "rejected, token-restricted": {"status": "rejected"},
    "rejected, public": {"status": "rejected", "access_control": PUBLIC},
    "rejected, restricted and tagged": {"status": "rejected", "tags": ["video_moderation_rejected"]},
    "pending": {"status": "pending"},
    "another asset": {"status": "approved", "asset_id": "e" * 32},
    "a public namesake too": {"status": "approved", "namesake": True},
}


@pytest.mark.parametrize("sample_name", SAMPLES)
def test_no_notification_makes_more_than_one_admin_api_call(fake_cloudinary, monkeypatch, sample_name):
    """Every sample, against every state Cloudinary may be in, with both policies, live and dry run, and the
    repeat Cloudinary sends: never more than 1 Admin API call (the details), all writes Upload API."""
    notification = json.loads(sample("video_moderation", sample_name))
    where = video_named_by(notification)
    checked = 0
    for policy in ("delete", "keep"):
        for dry_run in ("", "1"):
            monkeypatch.setenv("VIDEO_MODERATION_ON_REJECT", policy)
            monkeypatch.setenv("DRY_RUN", dry_run)
            for state_name, state in STATES.items():
                fake_cloudinary.assets.clear()
                if state is not None:
                    options = {key: value for key, value in state.items() if key not in ("status", "namesake")}
                    add_video(fake_cloudinary, where.public_id, state["status"],
                              delivery_type=where.delivery_type, **options)
                    if state.get("namesake") and where.delivery_type != "upload":
                        add_video(fake_cloudinary, where.public_id, "approved", access_control=[], asset_id="d" * 32)
                for attempt in ("first", "repeat"):
                    start = len(fake_cloudinary.calls)
                    response = handle(signed_request(notification))
                    made = fake_cloudinary.calls[start:]
                    what = f"{sample_name} / {state_name} / {policy} / dry run {dry_run!r} / {attempt}"
                    assert response.status == 200, (what, response.body)
                    assert sum(call.api == "admin" for call in made) <= 1, (what, [c.route for c in made])
                    assert all(call.api == "upload" for call in made if call.is_write), what
                    assert {call.api for call in made} <= {"admin", "upload"}, what
                    checked += 1
    assert checked == 2 * 2 * len(STATES) * 2


@pytest.mark.parametrize("scenario", [scenario for scenario in SCENARIOS if scenario.function == "video_moderation"],
                         ids=lambda scenario: scenario.name)
def test_each_fault_suite_scenario_costs_one_admin_api_call(fake_cloudinary, monkeypatch, scenario):
    """The scenarios the fault suite breaks and the benchmarks count (tests/faults/scenarios.py): 1 Admin API
    call each, for the work and for Cloudinary's repeat of the same notification."""
    for name, value in scenario.env.items():
        monkeypatch.setenv(name, value)
    scenario.setup(fake_cloudinary)

    first = handle(signed_request(scenario.notification))
    admin_first = fake_cloudinary.count("admin")
    repeat = handle(signed_request(scenario.notification))

    assert first.status == 200 and first.body["status"] == "done" and scenario.done(fake_cloudinary)
    assert repeat.status == 200 and repeat.body["status"] == "ignored"
    assert admin_first == 1 and fake_cloudinary.count("admin") == 2
    assert all(call.api == "upload" for call in fake_cloudinary.writes)
