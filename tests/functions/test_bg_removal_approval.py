"""bg_removal_approval on the wire: the real Cloudinary and SendGrid SDKs talk to a local test server.

Every test asserts the exact requests that reached the server (method, path, form fields) and the answer.
The Admin API (resource details, GET) is the rate-limited one: each test also pins how many GETs it cost.
"""

from __future__ import annotations

import json
import logging
import threading

import pytest

from functions.bg_removal_approval.handler import handle
from tests.helpers import (
    API_KEY,
    CLOUD_NAME,
    SECRET,
    answers_too_late,
    form_fields,
    function_url_event,
    sample,
    signed_request,
)

FUNCTION = "bg_removal_approval"
SHOES = "products/yellow-shoes"  # info_complete.json and moderation_approved.json
SHOES_ASSET_ID = "74211b649fff84c7568beff390ce2492"
CHAIR = "products/red-chair"  # moderation_rejected.json
LAMP = "products/blurry-lamp"  # info_failed.json
OWN_URL = "https://hooks.example.com/api/test"  # what signed_request's Request reports as its URL

SHOES_DETAILS = f"/v1_1/{CLOUD_NAME}/resources/image/authenticated/{SHOES}"
SHOES_PUBLISHED = f"/v1_1/{CLOUD_NAME}/resources/image/upload/bg-removed/{SHOES}"
CHAIR_DETAILS = f"/v1_1/{CLOUD_NAME}/resources/image/authenticated/{CHAIR}"
LAMP_DETAILS = f"/v1_1/{CLOUD_NAME}/resources/image/authenticated/{LAMP}"
EXPLICIT = f"/v1_1/{CLOUD_NAME}/image/explicit"
RENAME = f"/v1_1/{CLOUD_NAME}/image/rename"
DESTROY = f"/v1_1/{CLOUD_NAME}/image/destroy"
TAGS = f"/v1_1/{CLOUD_NAME}/image/tags"
MAIL = "/v3/mail/send"


def details(public_id: str, *, moderation: str | None = None, tags: tuple[str, ...] = (),
            asset_id: str = SHOES_ASSET_ID, delivery_type: str = "authenticated") -> dict:
    """An Admin API resource-details answer, as Cloudinary shapes it."""
    body = {
        "asset_id": asset_id, "public_id": public_id, "format": "png", "version": 1645652403,
        "resource_type": "image", "type": delivery_type, "created_at": "2022-02-23T21:39:58Z",
        "bytes": 118094, "width": 1600, "height": 1200, "tags": list(tags),
        "secure_url": f"https://res.cloudinary.com/demo/image/{delivery_type}/v1645652403/{public_id}.png",
        "derived": [],
    }
    if moderation:
        body["moderation"] = [{"kind": "manual", "status": moderation, "updated_at": "2022-02-23T22:04:37Z"}]
    return body


NOT_FOUND = {"error": {"message": "Resource not found - products/yellow-shoes"}}


def calls(server) -> list[tuple[str, str]]:
    return [(request.method, request.path) for request, _ in server.log]


def posted(server, path: str) -> dict:
    """The form fields of the one POST to ``path``, with the signing fields checked and removed."""
    matching = [request for request, _ in server.log if request.method == "POST" and request.path == path]
    assert len(matching) == 1, calls(server)
    request = matching[0]
    assert SECRET not in request.get_data(as_text=True)
    fields = form_fields(request)
    assert fields.pop("api_key") == API_KEY
    assert len(fields.pop("signature")) == 40 and fields.pop("timestamp").isdigit()
    return fields


def admin_gets(server) -> int:
    return sum(1 for request, _ in server.log if request.method == "GET")


def writes(server) -> list[tuple[str, str]]:
    return [(method, path) for method, path in calls(server) if method != "GET"]


def send(name: str, **overrides):
    payload = json.loads(sample(FUNCTION, name))
    payload.update(overrides)
    return handle(signed_request(payload))


@pytest.fixture
def email(cloudinary_server, sendgrid_server, monkeypatch):
    """A reviewer to email; SendGrid and Cloudinary share the one local server (told apart by path)."""
    monkeypatch.setenv("BG_REMOVAL_REVIEWER_EMAIL", "reviewer@brand.example")
    monkeypatch.setenv("FROM_VERIFIED_SENDER", "media@brand.example")
    return cloudinary_server


# --- info complete: queue for review ------------------------------------------------------------------

def test_background_removed_queues_the_asset_for_manual_review(cloudinary_server):
    cloudinary_server.expect_oneshot_request(SHOES_DETAILS, method="GET").respond_with_json(details(SHOES))
    cloudinary_server.expect_oneshot_request(EXPLICIT, method="POST").respond_with_json(
        {"public_id": SHOES, "type": "authenticated", "moderation": [{"kind": "manual", "status": "pending"}]})

    response = handle(signed_request(sample(FUNCTION, "info_complete")))

    assert response.status == 200
    assert response.body == {"status": "done", "outcome": "queued", "confidence": 0.9510779767345015,
                             "actions": [{"action": "explicit", "public_id": SHOES,
                                          "moderation": "manual", "notification_url": OWN_URL}]}
    assert calls(cloudinary_server) == [("GET", SHOES_DETAILS), ("POST", EXPLICIT)]
    assert cloudinary_server.log[0][0].query_string == b""
    assert posted(cloudinary_server, EXPLICIT) == {
        "public_id": SHOES, "type": "authenticated", "moderation": "manual", "notification_url": OWN_URL}


def test_configured_notification_url_wins_over_the_request_url(cloudinary_server, monkeypatch):
    monkeypatch.setenv("BG_REMOVAL_NOTIFICATION_URL", "https://fn.example.net/api/bg_removal_approval")
    cloudinary_server.expect_oneshot_request(SHOES_DETAILS, method="GET").respond_with_json(details(SHOES))
    cloudinary_server.expect_oneshot_request(EXPLICIT, method="POST").respond_with_json({"public_id": SHOES})

    response = handle(signed_request(sample(FUNCTION, "info_complete")))

    assert response.status == 200
    assert posted(cloudinary_server, EXPLICIT)["notification_url"] == "https://fn.example.net/api/bg_removal_approval"


def test_unknown_own_url_is_500_before_any_call(cloudinary_server, caplog):
    request = signed_request(sample(FUNCTION, "info_complete"), host=None)

    response = handle(request)

    assert response.status == 500 and response.body["error"] == "not_configured"
    assert "BG_REMOVAL_NOTIFICATION_URL" in caplog.text
    assert cloudinary_server.log == []


def test_non_http_notification_url_setting_is_500_before_any_call(cloudinary_server, monkeypatch):
    monkeypatch.setenv("BG_REMOVAL_NOTIFICATION_URL", "javascript:alert(1)")

    response = handle(signed_request(sample(FUNCTION, "info_complete")))

    assert response.status == 500 and response.body["error"] == "not_configured"
    assert cloudinary_server.log == []


def test_repeated_info_for_a_queued_asset_writes_nothing(cloudinary_server):
    cloudinary_server.expect_oneshot_request(SHOES_DETAILS, method="GET").respond_with_json(
        details(SHOES, moderation="pending"))

    response = handle(signed_request(sample(FUNCTION, "info_complete")))

    assert response.status == 200
    assert response.body == {"status": "ignored", "reason": "already waiting for review"}
    assert calls(cloudinary_server) == [("GET", SHOES_DETAILS)]


@pytest.mark.parametrize("decided", ["approved", "rejected"])
def test_late_info_never_requeues_a_decided_asset(cloudinary_server, decided):
    cloudinary_server.expect_oneshot_request(SHOES_DETAILS, method="GET").respond_with_json(
        details(SHOES, moderation=decided))

    response = handle(signed_request(sample(FUNCTION, "info_complete")))

    assert response.status == 200
    assert response.body == {"status": "ignored", "reason": f"already reviewed: {decided}"}
    assert writes(cloudinary_server) == []


GONE = {"status": "ignored", "reason": "the asset is no longer there (published earlier, or deleted)",
        "published_id": f"bg-removed/{SHOES}"}


def test_info_after_the_asset_was_published_says_so_with_one_admin_call(cloudinary_server):
    cloudinary_server.expect_oneshot_request(SHOES_DETAILS, method="GET").respond_with_json(NOT_FOUND, status=404)

    response = handle(signed_request(sample(FUNCTION, "info_complete")))

    assert response.status == 200 and response.body == GONE
    assert calls(cloudinary_server) == [("GET", SHOES_DETAILS)]


def test_auto_approve_publishes_a_confident_cutout_without_a_queue(cloudinary_server, monkeypatch):
    monkeypatch.setenv("BG_REMOVAL_AUTO_APPROVE", "0.95")
    cloudinary_server.expect_oneshot_request(SHOES_DETAILS, method="GET").respond_with_json(details(SHOES))
    cloudinary_server.expect_oneshot_request(RENAME, method="POST").respond_with_json(
        details(f"bg-removed/{SHOES}", delivery_type="upload"))

    response = handle(signed_request(sample(FUNCTION, "info_complete")))  # confidence 0.951

    assert response.status == 200
    assert response.body == {"status": "done", "outcome": "published", "public_id": f"bg-removed/{SHOES}",
                             "auto_approved": True, "actions": [
                                 {"action": "rename", "public_id": SHOES, "to_public_id": f"bg-removed/{SHOES}",
                                  "to_type": "upload"}]}
    assert calls(cloudinary_server) == [("GET", SHOES_DETAILS), ("POST", RENAME)]
    assert posted(cloudinary_server, RENAME) == {
        "from_public_id": SHOES, "to_public_id": f"bg-removed/{SHOES}", "type": "authenticated",
        "to_type": "upload", "overwrite": "0", "invalidate": "1"}


def test_auto_approve_below_the_threshold_still_queues(cloudinary_server, monkeypatch):
    monkeypatch.setenv("BG_REMOVAL_AUTO_APPROVE", "0.96")
    cloudinary_server.expect_oneshot_request(SHOES_DETAILS, method="GET").respond_with_json(details(SHOES))
    cloudinary_server.expect_oneshot_request(EXPLICIT, method="POST").respond_with_json({"public_id": SHOES})

    response = handle(signed_request(sample(FUNCTION, "info_complete")))

    assert response.status == 200 and response.body["outcome"] == "queued"
    assert calls(cloudinary_server) == [("GET", SHOES_DETAILS), ("POST", EXPLICIT)]


@pytest.mark.parametrize("threshold", ["0", "1.5", "high"])
def test_bad_auto_approve_setting_is_500_before_any_call(cloudinary_server, monkeypatch, threshold):
    monkeypatch.setenv("BG_REMOVAL_AUTO_APPROVE", threshold)

    response = handle(signed_request(sample(FUNCTION, "info_complete")))

    assert response.status == 500 and response.body["error"] == "not_configured"
    assert cloudinary_server.log == []


# --- info complete with a reviewer to email -----------------------------------------------------------

def test_reviewer_is_emailed_a_link_once_the_asset_is_queued(email):
    email.expect_oneshot_request(SHOES_DETAILS, method="GET").respond_with_json(details(SHOES))
    email.expect_oneshot_request(EXPLICIT, method="POST").respond_with_json({"public_id": SHOES})
    email.expect_oneshot_request(MAIL, method="POST").respond_with_data("", status=202)
    email.expect_oneshot_request(TAGS, method="POST").respond_with_json({"public_ids": [SHOES]})

    response = handle(signed_request(sample(FUNCTION, "info_complete")))

    assert response.status == 200 and response.body["outcome"] == "queued"
    assert [action["action"] for action in response.body["actions"]] == [
        "explicit", "email_reviewer", "add_tag"]
    # queued first, emailed second, marked last: a failure at any step leaves a state a retry completes
    assert calls(email) == [("GET", SHOES_DETAILS), ("POST", EXPLICIT), ("POST", MAIL), ("POST", TAGS)]
    mail_request = next(request for request, _ in email.log if request.path == MAIL)
    assert mail_request.headers["Authorization"] == "Bearer SG.test-key"
    message = json.loads(mail_request.get_data())
    assert message["from"] == {"email": "media@brand.example"}
    assert [p["to"] for p in message["personalizations"]] == [[{"email": "reviewer@brand.example"}]]
    assert message["subject"] == f"Review needed: background removed from {SHOES}"
    assert message["tracking_settings"] == {"click_tracking": {"enable": False, "enable_text": False}}
    link = json.loads(sample(FUNCTION, "info_complete"))["secure_url"]
    text, html = (part["value"] for part in message["content"])
    assert link in text and f'href="{link}"' in html and "0.95" in text
    assert posted(email, TAGS) == {"command": "add", "tag": "bg-removal-reviewer-notified",
                                   "public_ids[]": [SHOES], "type": "authenticated"}


def test_sendgrid_down_is_503_and_the_retry_emails_without_requeueing(email):
    email.expect_oneshot_request(SHOES_DETAILS, method="GET").respond_with_json(details(SHOES))
    email.expect_oneshot_request(EXPLICIT, method="POST").respond_with_json({"public_id": SHOES})
    email.expect_oneshot_request(MAIL, method="POST").respond_with_json({"errors": [{"message": "down"}]}, status=503)

    first = handle(signed_request(sample(FUNCTION, "info_complete")))

    assert first.status == 503 and first.body["error"] == "sendgrid_unavailable"
    assert calls(email) == [("GET", SHOES_DETAILS), ("POST", EXPLICIT), ("POST", MAIL)]  # no marker tag

    email.clear_log()
    email.expect_oneshot_request(SHOES_DETAILS, method="GET").respond_with_json(details(SHOES, moderation="pending"))
    email.expect_oneshot_request(MAIL, method="POST").respond_with_data("", status=202)
    email.expect_oneshot_request(TAGS, method="POST").respond_with_json({"public_ids": [SHOES]})

    retry = handle(signed_request(sample(FUNCTION, "info_complete")))

    assert retry.status == 200 and retry.body["outcome"] == "reviewer_notified"
    assert calls(email) == [("GET", SHOES_DETAILS), ("POST", MAIL), ("POST", TAGS)]


def test_repeat_after_the_reviewer_was_emailed_sends_nothing(email):
    email.expect_oneshot_request(SHOES_DETAILS, method="GET").respond_with_json(
        details(SHOES, moderation="pending", tags=("bg-removal-reviewer-notified",)))

    response = handle(signed_request(sample(FUNCTION, "info_complete")))

    assert response.body == {"status": "ignored", "reason": "already waiting for review"}
    assert calls(email) == [("GET", SHOES_DETAILS)]


def test_reviewer_without_a_sender_is_500_before_any_call(email, monkeypatch, caplog):
    monkeypatch.delenv("FROM_VERIFIED_SENDER")

    response = handle(signed_request(sample(FUNCTION, "info_complete")))

    assert response.status == 500 and "FROM_VERIFIED_SENDER" in caplog.text
    assert email.log == []


# --- info failed --------------------------------------------------------------------------------------

def test_failed_removal_is_tagged_not_queued(cloudinary_server):
    cloudinary_server.expect_oneshot_request(LAMP_DETAILS, method="GET").respond_with_json(details(LAMP))
    cloudinary_server.expect_oneshot_request(TAGS, method="POST").respond_with_json({"public_ids": [LAMP]})

    response = handle(signed_request(sample(FUNCTION, "info_failed")))

    assert response.status == 200
    assert response.body == {"status": "done", "outcome": "marked_failed", "info_status": "failed", "actions": [
        {"action": "add_tag", "public_id": LAMP, "tag": "bg-removal-failed"}]}
    assert calls(cloudinary_server) == [("GET", LAMP_DETAILS), ("POST", TAGS)]
    assert posted(cloudinary_server, TAGS) == {"command": "add", "tag": "bg-removal-failed",
                                               "public_ids[]": [LAMP], "type": "authenticated"}


def test_repeated_failure_is_not_tagged_twice(cloudinary_server):
    cloudinary_server.expect_oneshot_request(LAMP_DETAILS, method="GET").respond_with_json(
        details(LAMP, tags=("bg-removal-failed",)))

    response = handle(signed_request(sample(FUNCTION, "info_failed")))

    assert response.body["status"] == "ignored" and response.body["reason"] == "already marked as failed"
    assert calls(cloudinary_server) == [("GET", LAMP_DETAILS)]


def test_failed_removal_of_a_deleted_asset_is_ignored_with_one_admin_call(cloudinary_server):
    cloudinary_server.expect_oneshot_request(LAMP_DETAILS, method="GET").respond_with_json(NOT_FOUND, status=404)

    response = handle(signed_request(sample(FUNCTION, "info_failed")))

    assert response.body == {"status": "ignored", "reason": "the asset no longer exists"}
    assert calls(cloudinary_server) == [("GET", LAMP_DETAILS)]


# --- moderation approved: confirm, then publish -------------------------------------------------------

def test_approval_is_confirmed_then_published_without_overwrite(cloudinary_server):
    cloudinary_server.expect_oneshot_request(SHOES_DETAILS, method="GET").respond_with_json(
        details(SHOES, moderation="approved"))
    cloudinary_server.expect_oneshot_request(RENAME, method="POST").respond_with_json(
        details(f"bg-removed/{SHOES}", delivery_type="upload"))

    response = handle(signed_request(sample(FUNCTION, "moderation_approved")))

    assert response.status == 200
    assert response.body == {"status": "done", "outcome": "published", "public_id": f"bg-removed/{SHOES}",
                             "auto_approved": False, "actions": [
                                 {"action": "rename", "public_id": SHOES, "to_public_id": f"bg-removed/{SHOES}",
                                  "to_type": "upload"}]}
    assert calls(cloudinary_server) == [("GET", SHOES_DETAILS), ("POST", RENAME)]
    assert posted(cloudinary_server, RENAME) == {
        "from_public_id": SHOES, "to_public_id": f"bg-removed/{SHOES}", "type": "authenticated",
        "to_type": "upload", "overwrite": "0", "invalidate": "1"}


def test_published_folder_is_configurable(cloudinary_server, monkeypatch):
    monkeypatch.setenv("BG_REMOVED_FOLDER", "/shop/cutouts/")
    cloudinary_server.expect_oneshot_request(SHOES_DETAILS, method="GET").respond_with_json(
        details(SHOES, moderation="approved"))
    cloudinary_server.expect_oneshot_request(RENAME, method="POST").respond_with_json({"public_id": "x"})

    response = handle(signed_request(sample(FUNCTION, "moderation_approved")))

    assert response.status == 200 and response.body["public_id"] == f"shop/cutouts/{SHOES}"
    assert posted(cloudinary_server, RENAME)["to_public_id"] == f"shop/cutouts/{SHOES}"


@pytest.mark.parametrize("now", ["rejected", "pending", None])
def test_stale_approval_publishes_nothing(cloudinary_server, now):
    cloudinary_server.expect_oneshot_request(SHOES_DETAILS, method="GET").respond_with_json(
        details(SHOES, moderation=now))

    response = handle(signed_request(sample(FUNCTION, "moderation_approved")))

    assert response.status == 200
    assert response.body == {"status": "ignored",
                             "reason": f"the asset's moderation status is now {now or 'none'}"}
    assert calls(cloudinary_server) == [("GET", SHOES_DETAILS)]


def test_repeated_approval_after_publishing_changes_nothing(cloudinary_server):
    cloudinary_server.expect_oneshot_request(SHOES_DETAILS, method="GET").respond_with_json(NOT_FOUND, status=404)

    response = handle(signed_request(sample(FUNCTION, "moderation_approved")))

    assert response.status == 200 and response.body == GONE
    assert calls(cloudinary_server) == [("GET", SHOES_DETAILS)]  # one Admin call, the cap


def test_approval_for_a_deleted_asset_is_ignored_with_one_admin_call(cloudinary_server):
    cloudinary_server.expect_oneshot_request(SHOES_DETAILS, method="GET").respond_with_json(NOT_FOUND, status=404)

    response = handle(signed_request(sample(FUNCTION, "moderation_approved")))

    assert response.body == GONE
    assert writes(cloudinary_server) == [] and admin_gets(cloudinary_server) == 1


def test_taken_target_is_never_overwritten_but_tagged_and_logged(cloudinary_server, caplog):
    cloudinary_server.expect_oneshot_request(SHOES_DETAILS, method="GET").respond_with_json(
        details(SHOES, moderation="approved"))
    cloudinary_server.expect_oneshot_request(RENAME, method="POST").respond_with_json(
        {"error": {"message": f"to_public_id bg-removed/{SHOES} already exists"}}, status=409)
    cloudinary_server.expect_oneshot_request(TAGS, method="POST").respond_with_json({"public_ids": [SHOES]})

    with caplog.at_level(logging.INFO, logger="cloudinary_webhooks"):
        response = handle(signed_request(sample(FUNCTION, "moderation_approved")))

    assert response.status == 200
    assert response.body["status"] == "done" and response.body["outcome"] == "target_taken"
    assert response.body["to_public_id"] == f"bg-removed/{SHOES}"
    assert response.body["actions"] == [
        {"action": "rename", "public_id": SHOES, "to_public_id": f"bg-removed/{SHOES}", "to_type": "upload",
         "result": "target taken: not renamed"},
        {"action": "add_tag", "public_id": SHOES, "tag": "bg-removal-conflict"}]
    assert calls(cloudinary_server) == [("GET", SHOES_DETAILS), ("POST", RENAME), ("POST", TAGS)]
    assert posted(cloudinary_server, RENAME)["overwrite"] == "0"
    assert posted(cloudinary_server, TAGS) == {"command": "add", "tag": "bg-removal-conflict",
                                               "public_ids[]": [SHOES], "type": "authenticated"}
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert any(f"bg-removed/{SHOES} already holds another asset" in record.getMessage() for record in warnings)


def test_repeated_approval_with_the_target_still_taken_does_not_tag_again(cloudinary_server):
    cloudinary_server.expect_oneshot_request(SHOES_DETAILS, method="GET").respond_with_json(
        details(SHOES, moderation="approved", tags=("bg-removal-conflict",)))
    cloudinary_server.expect_oneshot_request(RENAME, method="POST").respond_with_json(
        {"error": {"message": "already exists"}}, status=409)

    response = handle(signed_request(sample(FUNCTION, "moderation_approved")))

    assert response.status == 200 and response.body["status"] == "ignored"
    assert "already holds another asset" in response.body["reason"]
    assert calls(cloudinary_server) == [("GET", SHOES_DETAILS), ("POST", RENAME)]


def test_asset_deleted_between_check_and_rename_is_ignored(cloudinary_server):
    cloudinary_server.expect_oneshot_request(SHOES_DETAILS, method="GET").respond_with_json(
        details(SHOES, moderation="approved"))
    cloudinary_server.expect_oneshot_request(RENAME, method="POST").respond_with_json(NOT_FOUND, status=404)

    response = handle(signed_request(sample(FUNCTION, "moderation_approved")))

    assert response.body == {"status": "ignored", "reason": "the asset no longer exists"}


# --- moderation rejected ------------------------------------------------------------------------------

def test_rejection_keeps_the_asset_private_and_tags_it(cloudinary_server):
    cloudinary_server.expect_oneshot_request(CHAIR_DETAILS, method="GET").respond_with_json(
        details(CHAIR, moderation="rejected"))
    cloudinary_server.expect_oneshot_request(TAGS, method="POST").respond_with_json({"public_ids": [CHAIR]})

    response = handle(signed_request(sample(FUNCTION, "moderation_rejected")))

    assert response.status == 200
    assert response.body == {"status": "done", "outcome": "kept", "tag": "bg-removal-rejected", "actions": [
        {"action": "add_tag", "public_id": CHAIR, "tag": "bg-removal-rejected"}]}
    assert calls(cloudinary_server) == [("GET", CHAIR_DETAILS), ("POST", TAGS)]
    assert posted(cloudinary_server, TAGS) == {"command": "add", "tag": "bg-removal-rejected",
                                               "public_ids[]": [CHAIR], "type": "authenticated"}


def test_repeated_rejection_is_not_tagged_twice(cloudinary_server):
    cloudinary_server.expect_oneshot_request(CHAIR_DETAILS, method="GET").respond_with_json(
        details(CHAIR, moderation="rejected", tags=("bg-removal-rejected",)))

    response = handle(signed_request(sample(FUNCTION, "moderation_rejected")))

    assert response.body["status"] == "ignored" and response.body["reason"] == "already marked as rejected"
    assert calls(cloudinary_server) == [("GET", CHAIR_DETAILS)]


def test_rejection_deletes_when_configured(cloudinary_server, monkeypatch):
    monkeypatch.setenv("BG_REMOVAL_ON_REJECT", "delete")
    cloudinary_server.expect_oneshot_request(CHAIR_DETAILS, method="GET").respond_with_json(
        details(CHAIR, moderation="rejected"))
    cloudinary_server.expect_oneshot_request(DESTROY, method="POST").respond_with_json({"result": "ok"})

    response = handle(signed_request(sample(FUNCTION, "moderation_rejected")))

    assert response.status == 200
    assert response.body == {"status": "done", "outcome": "deleted", "actions": [
        {"action": "delete", "public_id": CHAIR, "type": "authenticated"}]}
    assert calls(cloudinary_server) == [("GET", CHAIR_DETAILS), ("POST", DESTROY)]
    assert posted(cloudinary_server, DESTROY) == {"public_id": CHAIR, "type": "authenticated", "invalidate": "1"}


def test_repeated_rejection_after_deleting_deletes_nothing(cloudinary_server, monkeypatch):
    monkeypatch.setenv("BG_REMOVAL_ON_REJECT", "delete")
    cloudinary_server.expect_oneshot_request(CHAIR_DETAILS, method="GET").respond_with_json(NOT_FOUND, status=404)

    response = handle(signed_request(sample(FUNCTION, "moderation_rejected")))

    assert response.body == {"status": "ignored", "reason": "the asset no longer exists"}
    assert calls(cloudinary_server) == [("GET", CHAIR_DETAILS)]


def test_destroy_finding_nothing_is_ignored(cloudinary_server, monkeypatch):
    monkeypatch.setenv("BG_REMOVAL_ON_REJECT", "delete")
    cloudinary_server.expect_oneshot_request(CHAIR_DETAILS, method="GET").respond_with_json(
        details(CHAIR, moderation="rejected"))
    cloudinary_server.expect_oneshot_request(DESTROY, method="POST").respond_with_json({"result": "not found"})

    response = handle(signed_request(sample(FUNCTION, "moderation_rejected")))

    assert response.body == {"status": "ignored", "reason": "the asset no longer exists"}


@pytest.mark.parametrize("on_reject", ["keep", "delete"])
def test_stale_rejection_never_deletes_an_approved_asset(cloudinary_server, monkeypatch, on_reject):
    monkeypatch.setenv("BG_REMOVAL_ON_REJECT", on_reject)
    cloudinary_server.expect_oneshot_request(CHAIR_DETAILS, method="GET").respond_with_json(
        details(CHAIR, moderation="approved"))

    response = handle(signed_request(sample(FUNCTION, "moderation_rejected")))

    assert response.body == {"status": "ignored", "reason": "the asset's moderation status is now approved"}
    assert calls(cloudinary_server) == [("GET", CHAIR_DETAILS)]


def test_unknown_reject_policy_is_500_before_any_call(cloudinary_server, monkeypatch, caplog):
    monkeypatch.setenv("BG_REMOVAL_ON_REJECT", "archive")

    response = handle(signed_request(sample(FUNCTION, "moderation_rejected")))

    assert response.status == 500 and "BG_REMOVAL_ON_REJECT" in caplog.text
    assert cloudinary_server.log == []


# --- what it does not act on --------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "overrides", "reason"), [
    ("upload", {}, "notification_type 'upload' is not handled by bg_removal_approval"),
    ("info_complete", {"info_kind": "google_tagging"}, "info_kind 'google_tagging' is not background removal"),
    ("moderation_approved", {"moderation_kind": "aws_rek"}, "moderation_kind 'aws_rek' is not manual review"),
    ("moderation_approved", {"moderation_status": "pending"}, "moderation_status 'pending' is not a decision"),
    ("moderation_approved", {"url": "http://res.cloudinary.com/demo/image/upload/v1/products/yellow-shoes.png",
                             "secure_url": "https://res.cloudinary.com/demo/image/upload/v1/products/yellow-shoes.png"},
     "the asset is 'upload', not 'authenticated'"),
    ("moderation_approved", {"type": "private"}, "the asset is 'private', not 'authenticated'"),
])
def test_notifications_it_does_not_act_on_are_200_ignored_with_no_call(cloudinary_server, name, overrides, reason):
    response = send(name, **overrides)

    assert response.status == 200
    assert response.body == {"status": "ignored", "reason": reason}
    assert cloudinary_server.log == []


def test_bad_signature_is_401_with_no_outbound_call(cloudinary_server):
    response = handle(signed_request(sample(FUNCTION, "moderation_approved"), secret="not-the-secret"))

    assert response.status == 401 and response.body["error"] == "signature_mismatch"
    assert cloudinary_server.log == []


@pytest.mark.parametrize(("name", "field"), [("moderation_approved", "public_id"),
                                             ("moderation_approved", "moderation_status"),
                                             ("info_complete", "info_status")])
def test_missing_field_is_400_with_no_call(cloudinary_server, name, field):
    payload = json.loads(sample(FUNCTION, name))
    del payload[field]

    response = handle(signed_request(payload))

    assert response.status == 400 and response.body["error"] == "missing_field"
    assert cloudinary_server.log == []


def test_missing_cloudinary_url_is_500(signing_secret):
    response = handle(signed_request(sample(FUNCTION, "moderation_approved")))

    assert response.status == 500 and response.body["error"] == "not_configured"


# --- dependency failures: the promised status, nothing half-done --------------------------------------

@pytest.mark.parametrize(("status", "expected"), [(420, 503), (429, 503), (500, 503), (502, 503), (503, 503),
                                                  (401, 500), (403, 500)])
@pytest.mark.parametrize(("name", "path"), [("info_complete", SHOES_DETAILS), ("info_failed", LAMP_DETAILS),
                                            ("moderation_approved", SHOES_DETAILS),
                                            ("moderation_rejected", CHAIR_DETAILS)])
def test_resource_details_failing_stops_before_any_write(cloudinary_server, name, path, status, expected):
    cloudinary_server.expect_oneshot_request(path, method="GET").respond_with_json(
        {"error": {"message": "simulated"}}, status=status)

    response = handle(signed_request(sample(FUNCTION, name)))

    assert response.status == expected
    assert calls(cloudinary_server) == [("GET", path)]


@pytest.mark.parametrize("status", [420, 429, 500, 502])
@pytest.mark.parametrize(("name", "path", "write", "state", "env"), [
    ("info_complete", SHOES_DETAILS, EXPLICIT, None, {}),
    ("info_failed", LAMP_DETAILS, TAGS, None, {}),
    ("moderation_approved", SHOES_DETAILS, RENAME, "approved", {}),
    ("moderation_rejected", CHAIR_DETAILS, TAGS, "rejected", {}),
    ("moderation_rejected", CHAIR_DETAILS, DESTROY, "rejected", {"BG_REMOVAL_ON_REJECT": "delete"}),
])
def test_a_failing_write_is_503_and_nothing_follows_it(cloudinary_server, monkeypatch, name, path, write, state,
                                                        env, status):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    public_id = path.split("/authenticated/", 1)[1]
    cloudinary_server.expect_oneshot_request(path, method="GET").respond_with_json(
        details(public_id, moderation=state))
    cloudinary_server.expect_oneshot_request(write, method="POST").respond_with_json(
        {"error": {"message": "simulated"}}, status=status)

    response = handle(signed_request(sample(FUNCTION, name)))

    assert response.status == 503
    assert response.body["error"] in {"cloudinary_rate_limited", "cloudinary_unavailable"}
    assert calls(cloudinary_server) == [("GET", path), ("POST", write)]


def test_conflict_tag_failing_is_503_so_the_retry_tags_it(cloudinary_server):
    cloudinary_server.expect_oneshot_request(SHOES_DETAILS, method="GET").respond_with_json(
        details(SHOES, moderation="approved"))
    cloudinary_server.expect_oneshot_request(RENAME, method="POST").respond_with_json(
        {"error": {"message": "already exists"}}, status=409)
    cloudinary_server.expect_oneshot_request(TAGS, method="POST").respond_with_json(
        {"error": {"message": "simulated"}}, status=500)

    response = handle(signed_request(sample(FUNCTION, "moderation_approved")))

    assert response.status == 503


def test_cloudinary_timeout_is_503_after_one_attempt(cloudinary_server, monkeypatch):
    import urllib.request

    release = threading.Event()

    too_slow = answers_too_late(release)

    monkeypatch.setenv("CLOUDINARY_TIMEOUT_SECONDS", "0.2")
    cloudinary_server.expect_oneshot_request(SHOES_DETAILS, method="GET").respond_with_handler(too_slow)
    try:
        response = handle(signed_request(sample(FUNCTION, "moderation_approved")))
    finally:
        release.set()
    # The test server answers one request at a time, in arrival order: once this one is answered, any
    # retry of the timed-out GET has been logged too.
    cloudinary_server.expect_oneshot_request("/flush").respond_with_data("ok")
    with urllib.request.urlopen(cloudinary_server.url_for("/flush"), timeout=5) as flushed:
        assert flushed.read() == b"ok"

    assert response.status == 503 and response.body["error"] == "cloudinary_unavailable"
    # urllib3 would retry a timed-out GET three times (4 x the timeout, past Cloudinary's 20 s): not here
    assert calls(cloudinary_server) == [("GET", SHOES_DETAILS), ("GET", "/flush")]


def test_a_step_that_no_longer_fits_the_time_budget_is_left_for_the_retry(cloudinary_server, monkeypatch):
    from werkzeug import Response

    from shared import budget

    now = [0.0]
    monkeypatch.setattr(budget, "clock", lambda: now[0])

    def slow_read(request):  # the read takes 16 s of the 15 s budget: the rename must not start
        now[0] += 16.0
        return Response(json.dumps(details(SHOES, moderation="approved")), content_type="application/json")

    cloudinary_server.expect_oneshot_request(SHOES_DETAILS, method="GET").respond_with_handler(slow_read)

    response = handle(signed_request(sample(FUNCTION, "moderation_approved")))

    assert response.status == 503 and response.body["error"] == "out_of_time"
    assert calls(cloudinary_server) == [("GET", SHOES_DETAILS)]  # the rename was not started


# --- dry run, demo, entry points ----------------------------------------------------------------------

@pytest.mark.parametrize(("name", "path", "state", "env", "action"), [
    ("info_complete", SHOES_DETAILS, None, {}, "explicit"),
    ("info_failed", LAMP_DETAILS, None, {}, "add_tag"),
    ("moderation_approved", SHOES_DETAILS, "approved", {}, "rename"),
    ("moderation_rejected", CHAIR_DETAILS, "rejected", {}, "add_tag"),
    ("moderation_rejected", CHAIR_DETAILS, "rejected", {"BG_REMOVAL_ON_REJECT": "delete"}, "delete"),
])
def test_dry_run_reads_the_state_reports_the_write_and_makes_none(cloudinary_server, monkeypatch, name, path,
                                                                  state, env, action):
    monkeypatch.setenv("DRY_RUN", "1")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    public_id = path.split("/authenticated/", 1)[1]
    cloudinary_server.expect_oneshot_request(path, method="GET").respond_with_json(
        details(public_id, moderation=state))

    response = handle(signed_request(sample(FUNCTION, name)))

    assert response.status == 200 and response.body["status"] == "dry_run"
    assert [entry["action"] for entry in response.body["actions"]] == [action]
    assert calls(cloudinary_server) == [("GET", path)]  # a read; no write


def test_dry_run_with_a_reviewer_plans_the_email_and_sends_nothing(email, monkeypatch):
    monkeypatch.setenv("DRY_RUN", "1")
    email.expect_oneshot_request(SHOES_DETAILS, method="GET").respond_with_json(details(SHOES))

    response = handle(signed_request(sample(FUNCTION, "info_complete")))

    assert [entry["action"] for entry in response.body["actions"]] == [
        "explicit", "email_reviewer", "add_tag"]
    assert calls(email) == [("GET", SHOES_DETAILS)]


def test_local_demo_without_credentials_plans_from_the_notification(signing_secret, monkeypatch, httpserver):
    monkeypatch.setenv("CLOUDINARY_WEBHOOKS_DEMO", "1")

    response = handle(signed_request(sample(FUNCTION, "moderation_approved")))

    assert response.status == 200 and response.body["status"] == "dry_run"
    assert [entry["action"] for entry in response.body["actions"]] == ["assume_state", "rename"]
    assert httpserver.log == []


def test_lambda_function_url_entry_point_passes_its_own_url_on(cloudinary_server):
    from functions.bg_removal_approval.handler import handler

    cloudinary_server.expect_oneshot_request(SHOES_DETAILS, method="GET").respond_with_json(details(SHOES))
    cloudinary_server.expect_oneshot_request(EXPLICIT, method="POST").respond_with_json({"public_id": SHOES})

    result = handler(function_url_event(sample(FUNCTION, "info_complete"), base64_body=True,
                                        path="/"), None)

    assert result["statusCode"] == 200 and json.loads(result["body"])["outcome"] == "queued"
    assert posted(cloudinary_server, EXPLICIT)["notification_url"] == "https://abc123.lambda-url.us-east-1.on.aws/"


def test_the_log_line_names_the_asset_and_never_the_secret(cloudinary_server, caplog):
    cloudinary_server.expect_oneshot_request(SHOES_DETAILS, method="GET").respond_with_json(
        details(SHOES, moderation="approved"))
    cloudinary_server.expect_oneshot_request(RENAME, method="POST").respond_with_json({"public_id": "x"})

    with caplog.at_level(logging.INFO, logger="cloudinary_webhooks"):
        handle(signed_request(sample(FUNCTION, "moderation_approved")))

    line = json.loads(caplog.records[-1].getMessage())
    assert line["function"] == FUNCTION and line["public_id"] == SHOES and line["outcome"] == "done"
    assert SECRET not in caplog.text and "z5agKeX5" not in caplog.text  # no secret, no payload
