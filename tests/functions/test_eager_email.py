"""eager_email on the wire: the real SendGrid SDK posts to a local test server."""

from __future__ import annotations

import json
import time

import pytest

from functions.eager_email.handler import handle, human_size
from tests.helpers import answers_too_late, sample, signed_request, wait_until_answered

MAIL_PATH = "/v3/mail/send"


@pytest.fixture
def configured(sendgrid_server, signing_secret, monkeypatch):
    monkeypatch.setenv("FROM_VERIFIED_SENDER", "media@brand.example")
    monkeypatch.setenv("TO_RECIPIENTS", "ana@brand.example  ben@brand.example,cy@brand.example")
    return sendgrid_server


def sent_message(server) -> dict:
    assert len(server.log) == 1
    request, _ = server.log[0]
    assert request.method == "POST" and request.path == MAIL_PATH
    assert request.headers["Authorization"] == "Bearer SG.test-key"
    return json.loads(request.get_data())


def test_eager_notification_emails_each_recipient_separately(configured):
    configured.expect_oneshot_request(MAIL_PATH, method="POST").respond_with_data("", status=202)

    response = handle(signed_request(sample("eager_email", "eager")))

    assert response.status == 200
    assert response.body == {"status": "done", "actions": [{
        "action": "send_email", "recipients": 3, "derivations": 1, "failed": 0,
        "subject": "Cloudinary: 1 derived version of webhooks/vase ready"}]}
    message = sent_message(configured)
    assert message["from"] == {"email": "media@brand.example"}
    assert message["subject"] == "Cloudinary: 1 derived version of webhooks/vase ready"
    # one personalization per recipient: nobody sees the other addresses
    assert sorted(p["to"][0]["email"] for p in message["personalizations"]) == [
        "ana@brand.example", "ben@brand.example", "cy@brand.example"]
    assert all(len(p["to"]) == 1 for p in message["personalizations"])
    assert message["tracking_settings"] == {"click_tracking": {"enable": False, "enable_text": False}}
    text, html = (part["value"] for part in message["content"])
    secure_url = ("https://res.cloudinary.com/cloudinary-training/image/private/"
                  "g_south_east,l_webhooks:logo,o_200,w_200,x_30,y_30/v1645739702/webhooks/vase.jpg")
    for body in (text, html):
        assert secure_url in body
        assert "g_south_east,l_webhooks:logo,o_200,w_200,x_30,y_30" in body
        assert "JPG, 1920x2880, 887.0 KB" in body
    assert [part["type"] for part in message["content"]] == ["text/plain", "text/html"]


def test_failed_derivation_is_named_with_its_reason(configured):
    configured.expect_oneshot_request(MAIL_PATH, method="POST").respond_with_data("", status=202)

    response = handle(signed_request(sample("eager_email", "eager_partly_failed")))

    assert response.status == 200
    message = sent_message(configured)
    assert message["subject"] == "Cloudinary: 1 of 2 derived versions of products/lamp failed"
    text = message["content"][0]["value"]
    assert "FAILED: Transformation failed: background removal add-on is not enabled" in text
    assert "c_pad,h_300,w_300" in text and "JPG, 300x300, 40.3 KB" in text


def test_format_comes_from_the_url_when_the_payload_has_none(configured):
    configured.expect_oneshot_request(MAIL_PATH, method="POST").respond_with_data("", status=202)

    handle(signed_request(sample("eager_email", "eager_video")))

    text = sent_message(configured)["content"][0]["value"]
    assert "MP4, 1.0 KB" in text


def test_html_body_escapes_what_the_payload_carries(configured):
    configured.expect_oneshot_request(MAIL_PATH, method="POST").respond_with_data("", status=202)
    payload = {"notification_type": "eager", "public_id": "<script>x</script>",
               "eager": [{"transformation": "w_1<b>", "status": "failed", "reason": "<img src=x>"}]}

    handle(signed_request(payload))

    html = sent_message(configured)["content"][1]["value"]
    assert "<script>" not in html and "<img" not in html and "&lt;script&gt;" in html


@pytest.mark.parametrize("url", [
    "javascript:alert(document.cookie)", "JavaScript:alert(1)", " javascript:alert(1)", "data:text/html,<b>x</b>",
    "vbscript:msgbox(1)", "file:///etc/passwd", "//evil.example/x.jpg", 'https://x.example/a" onclick="alert(1)',
    "https://x.example/a\nb", "ftp://x.example/a.jpg",
])
def test_only_http_links_reach_the_email(configured, url):
    configured.expect_oneshot_request(MAIL_PATH, method="POST").respond_with_data("", status=202)
    payload = {"notification_type": "eager", "public_id": "webhooks/vase",
               "eager": [{"transformation": "w_300", "format": "jpg", "secure_url": url},
                         {"transformation": "w_600", "format": "jpg",
                          "secure_url": "https://res.cloudinary.com/demo/image/upload/w_600/webhooks/vase.jpg"}]}

    assert handle(signed_request(payload)).status == 200

    message = sent_message(configured)
    text, html = message["content"][0]["value"], message["content"][1]["value"]
    assert html.count("<a href=") == 1 and 'href="https://res.cloudinary.com/demo/' in html
    for dangerous in ("javascript", "JavaScript", "data:", "vbscript", "file:", "evil.example", "onclick", "ftp:"):
        assert dangerous not in html and dangerous not in text


@pytest.mark.parametrize("batch_id", ["b1\r\nBcc: victim@example.com", "b1\nX-Injected: 1", "b1\x00\x1b[2J",
                                      "b1\u2028line"])
def test_the_subject_is_one_line_whatever_the_payload(configured, batch_id):
    configured.expect_oneshot_request(MAIL_PATH, method="POST").respond_with_data("", status=202)
    payload = {"notification_type": "eager", "batch_id": batch_id,
               "eager": [{"transformation": "w_300", "secure_url": "https://res.cloudinary.com/d/image/upload/a.jpg"}]}

    assert handle(signed_request(payload)).status == 200

    subject = sent_message(configured)["personalizations"][0].get("subject") or ""
    subject = subject or json.loads(configured.log[0][0].get_data())["subject"]
    assert subject.startswith("Cloudinary: 1 derived version of batch b1")
    assert not any(character in subject for character in "\r\n\x00\x1b\u2028")


@pytest.mark.parametrize("public_id", ["a\r\nBcc: victim@example.com", "a\x00", "javascript:alert(1)"])
def test_a_public_id_no_asset_has_is_400_and_sends_nothing(configured, public_id):
    payload = {"notification_type": "eager", "public_id": public_id,
               "eager": [{"transformation": "w_300", "secure_url": "https://res.cloudinary.com/d/image/upload/a.jpg"}]}

    response = handle(signed_request(payload))

    assert response.status == 400 and response.body["error"] == "bad_field"
    assert configured.log == []


def test_upload_notification_is_ignored_without_sending(configured):
    response = handle(signed_request(sample("eager_email", "upload")))

    assert response.status == 200 and response.body["status"] == "ignored"
    assert configured.log == []


def test_bad_signature_is_401_and_sends_nothing(configured):
    response = handle(signed_request(sample("eager_email", "eager"), secret="wrong"))

    assert response.status == 401
    assert configured.log == []


@pytest.mark.parametrize("eager", [None, [], "not a list", [1, 2]])
def test_missing_or_malformed_eager_list_is_400(configured, eager):
    payload = {"notification_type": "eager", "public_id": "x"}
    if eager is not None:
        payload["eager"] = eager

    response = handle(signed_request(payload))

    assert response.status == 400
    assert configured.log == []


@pytest.mark.parametrize(("status", "expected", "code"), [
    (400, 500, "sendgrid_rejected"), (401, 500, "sendgrid_rejected"), (403, 500, "sendgrid_rejected"),
    (429, 503, "sendgrid_unavailable"), (500, 503, "sendgrid_unavailable"), (502, 503, "sendgrid_unavailable"),
    (503, 503, "sendgrid_unavailable"),
])
def test_sendgrid_failures_map_to_the_promised_status(configured, caplog, status, expected, code):
    configured.expect_oneshot_request(MAIL_PATH, method="POST").respond_with_json(
        {"errors": [{"message": "The from address does not match a verified Sender Identity"}]}, status=status)

    response = handle(signed_request(sample("eager_email", "eager")))

    assert response.status == expected and response.body["error"] == code
    assert f"SendGrid {status}" in caplog.text  # the reason is in the log ...
    assert "SG.test-key" not in caplog.text  # ... and the key never is


def test_sendgrid_timeout_is_503(configured, monkeypatch):
    import threading


    release = threading.Event()

    too_slow = answers_too_late(release, body="", status=202)

    monkeypatch.setenv("SENDGRID_TIMEOUT_SECONDS", "0.2")
    configured.expect_oneshot_request(MAIL_PATH, method="POST").respond_with_handler(too_slow)
    try:
        response = handle(signed_request(sample("eager_email", "eager")))
    finally:
        release.set()
        wait_until_answered(configured)

    assert response.status == 503 and response.body["error"] == "sendgrid_unavailable"


def test_sendgrid_unreachable_is_503(signing_secret, monkeypatch):
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("SENDGRID_API_HOST", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.test-key")
    monkeypatch.setenv("FROM_VERIFIED_SENDER", "media@brand.example")
    monkeypatch.setenv("TO_RECIPIENTS", "ana@brand.example")

    assert handle(signed_request(sample("eager_email", "eager"))).status == 503


def test_missing_recipients_is_500_and_the_log_names_the_variable(sendgrid_server, signing_secret, caplog,
                                                                 monkeypatch):
    monkeypatch.setenv("FROM_VERIFIED_SENDER", "media@brand.example")

    response = handle(signed_request(sample("eager_email", "eager")))

    assert response.status == 500 and response.body["error"] == "not_configured"
    assert "TO_RECIPIENTS" in caplog.text and "TO_RECIPIENTS" not in json.dumps(response.body)
    assert sendgrid_server.log == []


def test_malformed_recipient_is_500(configured, monkeypatch):
    monkeypatch.setenv("TO_RECIPIENTS", "ana@brand.example not-an-address")

    assert handle(signed_request(sample("eager_email", "eager"))).status == 500
    assert configured.log == []


def test_dry_run_names_recipient_count_and_subject_and_sends_nothing(configured, monkeypatch):
    monkeypatch.setenv("DRY_RUN", "true")

    response = handle(signed_request(sample("eager_email", "eager")))

    assert response.status == 200
    assert response.body["status"] == "dry_run"
    assert response.body["actions"][0]["recipients"] == 3
    assert response.body["actions"][0]["subject"] == "Cloudinary: 1 derived version of webhooks/vase ready"
    assert configured.log == []


def test_repeated_recipients_get_one_copy(configured, monkeypatch):
    monkeypatch.setenv("TO_RECIPIENTS", "ana@brand.example ana@brand.example")
    configured.expect_oneshot_request(MAIL_PATH, method="POST").respond_with_data("", status=202)

    handle(signed_request(sample("eager_email", "eager")))

    assert len(sent_message(configured)["personalizations"]) == 1


def test_human_size():
    assert human_size(0) == "0 bytes"
    assert human_size(1023) == "1023 bytes"
    assert human_size(1536) == "1.5 KB"
    assert human_size(5 * 1024 * 1024) == "5.0 MB"


# --- at most one email per notification (issue 12: a captured request replayed 5 times sent 5 emails) ---

def test_the_same_signed_notification_five_times_sends_one_email(configured):
    configured.expect_request(MAIL_PATH, method="POST").respond_with_data("", status=202)
    request = signed_request(sample("eager_email", "eager"))

    answers = [handle(request) for _ in range(5)]

    assert [answer.status for answer in answers] == [200] * 5
    assert "already_sent" not in answers[0].body
    assert all(answer.body.get("already_sent") is True for answer in answers[1:])
    assert len(configured.log) == 1


def test_a_replay_signed_again_later_is_still_one_email(configured):
    # The same body (a retry from Cloudinary, or a captured one) under a newer timestamp: the same notification.
    configured.expect_request(MAIL_PATH, method="POST").respond_with_data("", status=202)
    body = sample("eager_email", "eager")
    first = handle(signed_request(body))
    later = handle(signed_request(body, timestamp=int(time.time()) - 600))

    assert first.status == later.status == 200 and later.body.get("already_sent") is True
    assert len(configured.log) == 1


def test_two_different_notifications_send_two_emails(configured):
    configured.expect_request(MAIL_PATH, method="POST").respond_with_data("", status=202)
    payload = json.loads(sample("eager_email", "eager"))

    handle(signed_request(payload))
    handle(signed_request({**payload, "batch_id": "another-batch"}))

    assert len(configured.log) == 2


def test_a_failed_send_is_sent_by_the_retry_once(configured):
    configured.expect_oneshot_request(MAIL_PATH, method="POST").respond_with_data("", status=503)
    configured.expect_request(MAIL_PATH, method="POST").respond_with_data("", status=202)
    request = signed_request(sample("eager_email", "eager"))

    failed, retried, again = handle(request), handle(request), handle(request)

    assert failed.status == 503 and retried.status == 200 and again.body.get("already_sent") is True
    assert len(configured.log) == 2  # the failed attempt, then exactly one delivered email


def test_on_lambda_without_an_idempotency_store_it_is_500_and_sends_nothing(configured, monkeypatch):
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "eager-email")
    response = handle(signed_request(sample("eager_email", "eager")))
    assert response.status == 500 and response.body["error"] == "not_configured"
    assert configured.log == []
