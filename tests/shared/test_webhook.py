"""shared.webhook: every row of DESIGN.md §4's status table, through each entry point, with its log line.

A tiny webhook defined here stands in for a function; what it "writes" goes to a list, so every test can
assert that nothing was done when nothing should be.
"""

from __future__ import annotations

import base64
import io
import json
import logging
from dataclasses import dataclass
from typing import Any

import pytest

from shared import verify
from shared.errors import DependencyRejected, DependencyUnavailable
from shared.events import Headers, Request
from shared.webhook import Context, Notification, Result, webhook

NOW = 1_700_000_000
SECRET = "webhook-test-secret-Q7"
OTHER_SECRET = "not-the-configured-secret"
PAYLOAD_MARKER = "payload-marker-5d1f"  # a payload value that must never reach the log
CRASH_DETAIL = "internal-detail-8c2e"  # an exception message that must never reach the caller
API_KEY_VALUE = "tiny-key-value-91b0"

performed: list[tuple[str, Any]] = []


@webhook(accepts={"upload", "eager"}, requires=("TINY_API_KEY",), optional=("TINY_TARGET",),
         demo_values={"TINY_API_KEY": "demo-key", "TINY_TARGET": "demo-target"}, name="tiny")
def tiny(notification: Notification, ctx: Context) -> Result:
    """A function in miniature: read a field, maybe refuse, act, report."""
    public_id = notification.require("public_id")
    mode = notification.get("mode")
    if mode == "ignore":
        return ctx.ignored("told to ignore", public_id=public_id)
    if mode == "crash":
        raise RuntimeError(CRASH_DETAIL)
    if mode == "unavailable":
        raise DependencyUnavailable("The thing is down; a retry will finish the work.",
                                    code="thing_unavailable", log_detail="thing answered 503")
    if mode == "rejected":
        raise DependencyRejected("The thing refused.", code="thing_rejected", log_detail="thing answered 401")
    if mode == "needs_int":
        notification.require("width", int)
    key = ctx.settings.require("TINY_API_KEY")
    target = ctx.settings.get("TINY_TARGET")
    ctx.note(key_length=len(key))
    ctx.act("write", lambda: performed.append(("write", (public_id, key, target))),
            public_id=public_id, target=target)
    return ctx.done(key_length=len(key))


@pytest.fixture(autouse=True)
def configured(monkeypatch):
    performed.clear()
    monkeypatch.setenv("CLOUDINARY_NOTIFICATION_SECRETS", SECRET)
    monkeypatch.setenv("TINY_API_KEY", API_KEY_VALUE)
    monkeypatch.delenv("TINY_TARGET", raising=False)
    monkeypatch.setattr(tiny, "clock", lambda: float(NOW))
    yield
    performed.clear()


@pytest.fixture
def log_records(caplog):
    caplog.set_level(logging.INFO, logger="cloudinary_webhooks")

    def records():
        return [record for record in caplog.records if record.name == "cloudinary_webhooks"]

    return records


# --- calling the webhook through each entry point ---------------------------------------------------

@dataclass
class Answer:
    status: int
    headers: Headers
    body: dict[str, Any]


def body_of(payload: Any) -> bytes:
    return payload if isinstance(payload, bytes) else json.dumps(payload).encode()


def signed_headers(body: bytes, *, secret: str = SECRET, timestamp: int = NOW, algorithm: str = "sha1",
                   content_type: str | None = "application/json") -> dict[str, str]:
    headers = verify.signed_headers(body, secret, timestamp=timestamp, algorithm=algorithm)
    del headers["Content-Type"]
    if content_type is not None:
        headers["Content-Type"] = content_type
    return headers


def via_call(body: bytes, headers: dict[str, str], method: str) -> Answer:
    response = tiny(Request(method=method, path="/api/tiny", headers=Headers(headers.items()), body=body))
    return Answer(response.status, Headers(response.all_headers().items()), response.body)


def _from_lambda(result: dict[str, Any]) -> Answer:
    assert set(result) == {"statusCode", "headers", "body", "isBase64Encoded"}
    assert result["isBase64Encoded"] is False
    return Answer(result["statusCode"], Headers(result["headers"].items()), json.loads(result["body"]))


def via_lambda_v1(body: bytes, headers: dict[str, str], method: str) -> Answer:
    """API Gateway REST v1: mixed-case headers, multiValueHeaders, text body when it is text."""
    try:
        text, encoded = body.decode("utf-8"), False
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(body).decode(), True
    event = {"httpMethod": method, "path": "/tiny", "headers": dict(headers),
             "multiValueHeaders": {name: [value] for name, value in headers.items()},
             "requestContext": {"domainName": "abc.execute-api.us-east-1.amazonaws.com"},
             "body": text, "isBase64Encoded": encoded}
    return _from_lambda(tiny.lambda_handler(event, None))


def via_lambda_v2(body: bytes, headers: dict[str, str], method: str) -> Answer:
    """Function URL / HTTP API v2: lower-case headers, base64 body."""
    event = {"version": "2.0", "rawPath": "/", "headers": {k.lower(): v for k, v in headers.items()},
             "requestContext": {"domainName": "x.lambda-url.us-east-1.on.aws", "http": {"method": method}},
             "body": base64.b64encode(body).decode(), "isBase64Encoded": True}
    return _from_lambda(tiny.lambda_handler(event, None))


def via_wsgi(body: bytes, headers: dict[str, str], method: str) -> Answer:
    environ: dict[str, Any] = {"REQUEST_METHOD": method, "PATH_INFO": "/api/tiny", "SERVER_NAME": "localhost",
                               "wsgi.input": io.BytesIO(body), "wsgi.url_scheme": "http",
                               "CONTENT_LENGTH": str(len(body))}
    for name, value in headers.items():
        key = name.upper().replace("-", "_")
        environ[key if key == "CONTENT_TYPE" else f"HTTP_{key}"] = value
    seen: dict[str, Any] = {}

    def start_response(status: str, response_headers: list[tuple[str, str]]) -> None:
        seen["status"], seen["headers"] = status, response_headers

    payload = b"".join(tiny.wsgi_app(environ, start_response))
    code, _, phrase = seen["status"].partition(" ")
    assert phrase and phrase != "Unknown"
    response_headers = Headers(seen["headers"])
    if method == "HEAD":  # headers only: the length of the body a GET would have had, and no body
        assert payload == b"" and int(response_headers["Content-Length"]) > 0
        return Answer(int(code), response_headers, {})
    assert response_headers["Content-Length"] == str(len(payload))
    return Answer(int(code), response_headers, json.loads(payload))


ENTRY_POINTS = {"call": via_call, "lambda_v1": via_lambda_v1, "lambda_v2": via_lambda_v2, "wsgi": via_wsgi}


@pytest.fixture(params=sorted(ENTRY_POINTS))
def send(request):
    """send(payload, **signing) -> Answer, through one entry point (each test runs through all four)."""
    entry = ENTRY_POINTS[request.param]

    def sender(payload: Any, *, method: str = "POST", headers: dict[str, str] | None = None, **signing) -> Answer:
        body = body_of(payload)
        return entry(body, signed_headers(body, **signing) if headers is None else headers, method)

    return sender


def upload(**fields: Any) -> dict[str, Any]:
    return {"notification_type": "upload", "public_id": "folder/sample", "note": PAYLOAD_MARKER, **fields}


def assert_error(answer: Answer, status: int, code: str) -> None:
    assert answer.status == status, answer.body
    assert answer.body["error"] == code
    assert set(answer.body) == {"error", "message"} and answer.body["message"]
    assert answer.headers["Content-Type"].startswith("application/json")


# --- 200 -----------------------------------------------------------------------------------------------

def test_200_done(send, log_records):
    answer = send(upload())

    assert answer.status == 200
    assert answer.body == {"status": "done", "key_length": len(API_KEY_VALUE),
                           "actions": [{"action": "write", "public_id": "folder/sample", "target": None}]}
    assert performed == [("write", ("folder/sample", API_KEY_VALUE, None))]
    [record] = log_records()
    line = json.loads(record.getMessage())
    assert record.levelno == logging.INFO
    assert line["function"] == "tiny" and line["notification_type"] == "upload"
    assert line["public_id"] == "folder/sample" and line["outcome"] == "done" and line["status"] == 200
    assert isinstance(line["ms"], float | int) and line["ms"] >= 0
    assert line["key_length"] == len(API_KEY_VALUE)  # ctx.note() fields join the line


def test_200_ignored_for_a_type_the_function_does_not_accept(send, log_records, monkeypatch):
    monkeypatch.delenv("TINY_API_KEY")  # not even configuration is needed to ignore
    answer = send({"notification_type": "delete", "resources": [{"public_id": "gone"}]})

    assert answer.status == 200
    assert answer.body == {"status": "ignored", "reason": "notification_type 'delete' is not handled by tiny"}
    assert performed == []
    line = json.loads(log_records()[0].getMessage())
    assert line["outcome"] == "ignored" and line["public_id"] == "gone" and line["notification_type"] == "delete"


def test_200_ignored_by_the_function(send, log_records):
    answer = send(upload(mode="ignore"))

    assert answer.status == 200
    assert answer.body == {"status": "ignored", "reason": "told to ignore", "public_id": "folder/sample"}
    assert performed == []
    assert json.loads(log_records()[0].getMessage())["outcome"] == "ignored"


def test_200_dry_run_reports_and_performs_nothing(send, monkeypatch, log_records):
    monkeypatch.setenv("DRY_RUN", "1")
    monkeypatch.setenv("TINY_TARGET", "bucket-7")
    answer = send(upload())

    assert answer.status == 200
    assert answer.body == {"status": "dry_run", "key_length": len(API_KEY_VALUE),
                           "actions": [{"action": "write", "public_id": "folder/sample", "target": "bucket-7"}]}
    assert performed == []
    assert json.loads(log_records()[0].getMessage())["outcome"] == "dry_run"


@pytest.mark.parametrize("value", ["0", "false", "no", "off", ""])
def test_dry_run_off_spellings_do_the_work(send, monkeypatch, value):
    monkeypatch.setenv("DRY_RUN", value)
    assert send(upload()).body["status"] == "done"
    assert len(performed) == 1


def test_dry_run_unclear_value_is_500_not_a_guess(send, monkeypatch):
    monkeypatch.setenv("DRY_RUN", "sometimes")
    assert_error(send(upload()), 500, "not_configured")
    assert performed == []


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "Application/JSON",
                                          "application/cloudevents+json", " application/json "])
def test_json_content_types_are_accepted(send, content_type):
    assert send(upload(), content_type=content_type).status == 200


# --- 400 -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("body", "code"), [
    (b"not json", "invalid_json"),
    (b"", "invalid_json"),
    (b'{"notification_type": "upload",', "invalid_json"),
    (b"\xff\xfe{}", "invalid_json"),  # invalid UTF-8
    (b'{"notification_type":"upload","public_id":"\xc3"}', "invalid_json"),  # truncated UTF-8 sequence
    (b"[1, 2]", "invalid_json"),  # JSON, not an object
    (b'"upload"', "invalid_json"),
    (b"null", "invalid_json"),
    (b"{}", "missing_field"),
    (b'{"public_id": "x"}', "missing_field"),
    (b'{"notification_type": null}', "missing_field"),
    (b'{"notification_type": ""}', "missing_field"),
    (b'{"notification_type": 5}', "missing_field"),
    (b'{"notification_type": ["upload"]}', "missing_field"),
], ids=["text", "empty", "truncated", "invalid-utf8", "bad-utf8-in-string", "array", "string", "null",
        "empty-object", "no-type", "null-type", "empty-type", "number-type", "list-type"])
def test_400_for_bodies_that_are_not_a_notification(send, body, code, log_records):
    answer = send(body)

    assert_error(answer, 400, code)
    assert performed == []
    [record] = log_records()
    assert record.levelno == logging.WARNING and json.loads(record.getMessage())["error"] == code


def test_400_for_deeply_nested_json_not_a_crash(send):
    assert_error(send(b"[" * 100_000 + b"]" * 100_000), 400, "invalid_json")


@pytest.mark.parametrize("body", [
    rb'{"notification_type":"upload","public_id":"a\ud800"}',  # a lone high surrogate
    rb'{"notification_type":"upload","public_id":"folder/sample","tags":["\uDFFF"]}',  # a lone low one
    rb'{"notification_type":"upload","public_id":"folder/sample","\udbff":1}',  # in a key
    rb'{"notification_type":"upload","public_id":"a\ude00\ud83d"}',  # a pair in the wrong order
])
def test_400_for_escaped_half_surrogates_that_no_function_could_encode(send, body):
    assert_error(send(body), 400, "invalid_json")
    assert performed == []


def test_escaped_surrogate_pairs_and_escaped_backslashes_are_fine(send):
    answer = send(rb'{"notification_type":"upload","public_id":"smile \ud83d\ude00","note":"\\ud800"}')
    assert answer.status == 200, answer.body
    assert performed == [("write", ("smile \U0001f600", API_KEY_VALUE, None))]


def test_400_for_a_missing_field_the_function_needs(send):
    answer = send({"notification_type": "upload", "resource_type": "image"})
    assert_error(answer, 400, "missing_field")
    assert "public_id" in answer.body["message"]
    assert performed == []


@pytest.mark.parametrize("public_id", [5, ["a"], {"a": 1}, True, ""])
def test_400_for_a_field_of_the_wrong_type_or_empty(send, public_id):
    answer = send(upload(public_id=public_id))
    assert_error(answer, 400, "missing_field" if public_id == "" else "bad_field")
    assert performed == []


@pytest.mark.parametrize("width", [True, "100", 1.5])
def test_400_booleans_are_not_integers(send, width):
    assert_error(send(upload(mode="needs_int", width=width)), 400, "bad_field")
    assert send(upload(mode="needs_int", width=100)).status == 200


def test_400_for_an_event_that_does_not_decode(monkeypatch, log_records):
    result = tiny.lambda_handler({"httpMethod": "POST", "path": "/", "headers": {}, "body": "%%%",
                                  "isBase64Encoded": True}, None)
    assert result["statusCode"] == 400 and json.loads(result["body"])["error"] == "bad_event"
    [record] = log_records()
    line = json.loads(record.getMessage())
    assert line["outcome"] == "rejected" and line["error"] == "bad_event" and line["function"] == "tiny"


def test_400_for_a_bad_content_length_through_wsgi(log_records):
    seen = {}
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/", "CONTENT_LENGTH": "ten",
               "CONTENT_TYPE": "application/json", "wsgi.input": io.BytesIO(b"{}")}
    payload = b"".join(tiny.wsgi_app(environ, lambda status, headers: seen.update(status=status)))
    assert seen["status"] == "400 Bad Request"
    assert json.loads(payload)["error"] == "bad_content_length"
    assert len(log_records()) == 1


# --- 401 -----------------------------------------------------------------------------------------------

def _without(name: str):
    def change(headers: dict[str, str]) -> dict[str, str]:
        return {k: v for k, v in headers.items() if k != name}
    return change


def _replace(name: str, value: str):
    def change(headers: dict[str, str]) -> dict[str, str]:
        return {**headers, name: value}
    return change


@pytest.mark.parametrize(("signing", "change", "code"), [
    ({}, _without("X-Cld-Timestamp"), "missing_timestamp"),
    ({}, _without("X-Cld-Signature"), "missing_signature"),
    ({}, _replace("X-Cld-Timestamp", ""), "missing_timestamp"),
    ({}, _replace("X-Cld-Signature", ""), "missing_signature"),
    ({}, _replace("X-Cld-Timestamp", "yesterday"), "malformed_timestamp"),
    ({}, _replace("X-Cld-Timestamp", "1700000000.5"), "malformed_timestamp"),
    ({}, _replace("X-Cld-Signature", "z" * 40), "malformed_signature"),
    ({}, _replace("X-Cld-Signature", "abc"), "malformed_signature"),
    ({"timestamp": NOW - 2 * 60 * 60 - 1}, None, "stale_timestamp"),
    ({"timestamp": NOW + 5 * 60 + 1}, None, "future_timestamp"),
    ({"secret": OTHER_SECRET}, None, "signature_mismatch"),
    ({"secret": OTHER_SECRET, "algorithm": "sha256"}, None, "signature_mismatch"),
    ({}, _replace("X-Cld-Signature", "0" * 40), "signature_mismatch"),
])
def test_401_for_each_signature_failure(send, signing, change, code, log_records):
    payload = upload()
    headers = signed_headers(body_of(payload), **signing)
    if change:
        headers = change(headers)

    answer = send(payload, headers=headers)

    assert_error(answer, 401, code)
    assert performed == []
    [record] = log_records()
    assert record.levelno == logging.WARNING
    line = json.loads(record.getMessage())
    assert line["error"] == code and line["status"] == 401 and line["notification_type"] is None


def test_401_for_a_body_changed_after_signing(send):
    headers = signed_headers(body_of(upload()))
    assert_error(send(upload(public_id="someone/else"), headers=headers), 401, "signature_mismatch")
    assert performed == []


def test_limits_of_the_timestamp_window(send, monkeypatch):
    assert send(upload(), timestamp=NOW - 2 * 60 * 60).status == 200  # exactly two hours: still fresh
    assert send(upload(), timestamp=NOW + 5 * 60).status == 200
    monkeypatch.setenv("WEBHOOK_MAX_AGE_SECONDS", "60")
    monkeypatch.setenv("WEBHOOK_MAX_FUTURE_SECONDS", "0")
    assert_error(send(upload(), timestamp=NOW - 61), 401, "stale_timestamp")
    assert_error(send(upload(), timestamp=NOW + 1), 401, "future_timestamp")
    assert send(upload(), timestamp=NOW - 60).status == 200


def test_sha256_and_upper_case_signatures_pass(send):
    assert send(upload(), algorithm="sha256").status == 200
    body = body_of(upload())
    headers = signed_headers(body)
    headers["X-Cld-Signature"] = headers["X-Cld-Signature"].upper()
    assert send(body, headers=headers).status == 200


def test_header_names_in_any_case_pass(send):
    body = body_of(upload())
    headers = {name.upper(): value for name, value in signed_headers(body).items()}
    assert send(body, headers=headers).status == 200


def test_the_signature_is_checked_before_the_body_is_parsed(send):
    # An unsigned body that is not JSON is a 401, not a 400: nothing unproven is parsed.
    assert_error(send(b"not json", secret=OTHER_SECRET), 401, "signature_mismatch")


def test_the_wrapper_uses_the_real_clock_by_default():
    import time

    fresh = webhook(accepts={"upload"}, name="fresh")(lambda n, ctx: ctx.done())
    assert fresh.clock is time.time
    body = body_of(upload())
    now = int(time.time())
    assert fresh(Request("POST", "/", Headers(signed_headers(body, timestamp=now).items()), body)).status == 200
    old = Headers(signed_headers(body, timestamp=now - 3 * 60 * 60).items())
    assert fresh(Request("POST", "/", old, body)).body["error"] == "stale_timestamp"


# --- 405 / 413 / 415 -----------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"])
def test_405_with_allow_post(send, method, log_records):
    answer = send(upload(), method=method)

    if answer.body == {}:  # HEAD through WSGI: no body at all
        assert method == "HEAD" and answer.status == 405
    else:
        assert_error(answer, 405, "method_not_allowed")
    assert answer.headers["Allow"] == "POST"
    assert performed == []
    assert len(log_records()) == 1


def test_405_comes_before_the_signature(send):
    answer = send(b"", method="GET", headers={})
    assert answer.status == 405 and answer.headers["Allow"] == "POST"


def test_413_over_one_mebibyte_by_default(send):
    body = b'{"notification_type":"upload","public_id":"p","pad":"' + b"x" * (1024 * 1024) + b'"}'
    answer = send(body)
    assert_error(answer, 413, "payload_too_large")
    assert performed == []


def test_exactly_one_mebibyte_is_accepted(send):
    head, tail = b'{"notification_type":"upload","public_id":"p","pad":"', b'"}'
    body = head + b"x" * (1024 * 1024 - len(head) - len(tail)) + tail
    assert len(body) == 1024 * 1024
    assert send(body).status == 200


def test_413_with_a_configured_limit(send, monkeypatch):
    body = body_of(upload())
    monkeypatch.setenv("WEBHOOK_MAX_BODY_BYTES", str(len(body)))
    assert send(body).status == 200
    monkeypatch.setenv("WEBHOOK_MAX_BODY_BYTES", str(len(body) - 1))
    assert_error(send(body), 413, "payload_too_large")
    assert len(performed) == 1  # only the first, accepted, request did anything


def test_413_comes_before_the_signature(send, monkeypatch):
    monkeypatch.setenv("WEBHOOK_MAX_BODY_BYTES", "10")
    assert_error(send(b"x" * 11, headers={"Content-Type": "application/json"}), 413, "payload_too_large")


@pytest.mark.parametrize("limit", ["0", "ten", "-5"])
def test_a_broken_body_limit_is_500_not_configured(send, monkeypatch, limit):
    monkeypatch.setenv("WEBHOOK_MAX_BODY_BYTES", limit)
    assert_error(send(upload()), 500, "not_configured")
    assert performed == []


@pytest.mark.parametrize("content_type", [None, "", "text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", "text/json", "application/jsonp"])
def test_415_for_content_types_that_are_not_json(send, content_type):
    answer = send(upload(), content_type=content_type)
    assert_error(answer, 415, "unsupported_media_type")
    assert performed == []


# --- 500 -----------------------------------------------------------------------------------------------

def test_500_when_no_secret_is_configured_never_a_skip(send, monkeypatch, log_records):
    monkeypatch.delenv("CLOUDINARY_NOTIFICATION_SECRETS")
    answer = send(upload())

    assert_error(answer, 500, "not_configured")
    assert "CLOUDINARY" not in json.dumps(answer.body)
    assert performed == []
    [record] = log_records()
    assert record.levelno == logging.ERROR
    assert "CLOUDINARY_URL" in json.loads(record.getMessage())["detail"]


def test_500_when_a_required_variable_is_missing_named_in_the_log_only(send, monkeypatch, log_records):
    monkeypatch.delenv("TINY_API_KEY")
    answer = send(upload())

    assert_error(answer, 500, "not_configured")
    assert "TINY_API_KEY" not in json.dumps(answer.body)
    assert performed == []
    [record] = log_records()
    line = json.loads(record.getMessage())
    assert "TINY_API_KEY" in line["detail"] and line["outcome"] == "error" and line["status"] == 500


def test_a_blank_required_variable_counts_as_missing(send, monkeypatch):
    monkeypatch.setenv("TINY_API_KEY", "   ")
    assert_error(send(upload()), 500, "not_configured")


def test_500_for_a_malformed_cloudinary_url_without_logging_it(send, monkeypatch, log_records):
    monkeypatch.delenv("CLOUDINARY_NOTIFICATION_SECRETS")
    monkeypatch.setenv("CLOUDINARY_URL", f"https://key:{SECRET}@cloud")
    answer = send(upload())
    assert_error(answer, 500, "not_configured")
    assert SECRET not in json.dumps(answer.body)
    assert SECRET not in "".join(record.getMessage() for record in log_records())


@pytest.mark.parametrize("name", ["WEBHOOK_MAX_AGE_SECONDS", "WEBHOOK_MAX_FUTURE_SECONDS"])
def test_500_for_a_malformed_window_setting(send, monkeypatch, name):
    monkeypatch.setenv(name, "two hours")
    assert_error(send(upload()), 500, "not_configured")


def test_500_for_an_unexpected_exception_with_a_generic_body(send, log_records):
    answer = send(upload(mode="crash"))

    assert_error(answer, 500, "internal_error")
    assert CRASH_DETAIL not in json.dumps(answer.body) and "Traceback" not in json.dumps(answer.body)
    [record] = log_records()  # one line per request, carrying the traceback
    assert record.levelno == logging.ERROR
    assert record.exc_info and record.exc_info[0] is RuntimeError
    assert CRASH_DETAIL in str(record.exc_info[1])
    line = json.loads(record.getMessage())
    assert line["outcome"] == "error" and line["status"] == 500 and line["public_id"] == "folder/sample"


def test_the_traceback_reaches_the_formatted_log(send, caplog):
    caplog.set_level(logging.INFO, logger="cloudinary_webhooks")
    send(upload(mode="crash"))
    assert "Traceback" in caplog.text and CRASH_DETAIL in caplog.text


def test_500_when_a_dependency_rejects(send, log_records):
    answer = send(upload(mode="rejected"))
    assert_error(answer, 500, "thing_rejected")
    line = json.loads(log_records()[0].getMessage())
    assert line["detail"] == "thing answered 401" and line["error"] == "thing_rejected"
    assert "401" not in answer.body["message"]


# --- 503 -----------------------------------------------------------------------------------------------

def test_503_from_dependency_unavailable(send, log_records):
    answer = send(upload(mode="unavailable"))

    assert_error(answer, 503, "thing_unavailable")
    assert answer.body["message"] == "The thing is down; a retry will finish the work."
    assert performed == []
    [record] = log_records()
    line = json.loads(record.getMessage())
    assert record.levelno == logging.ERROR
    assert line["status"] == 503 and line["detail"] == "thing answered 503" and line["outcome"] == "error"


# --- the log line never carries secrets, signatures or the payload --------------------------------------

@pytest.mark.parametrize("payload", [upload(), upload(mode="crash"), upload(mode="unavailable"),
                                     upload(mode="ignore"), upload(public_id=5),
                                     {"notification_type": "delete", "note": PAYLOAD_MARKER}])
def test_the_log_never_carries_secret_signature_or_payload(send, caplog, payload, monkeypatch):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("CLOUDINARY_URL", f"cloudinary://614335564976464:{SECRET}@demo-cloud")
    monkeypatch.delenv("CLOUDINARY_NOTIFICATION_SECRETS")
    body = body_of(payload)
    headers = signed_headers(body)

    send(body, headers=headers)
    send(body, headers={**headers, "X-Cld-Signature": "f" * 40})

    text = caplog.text
    assert len([r for r in caplog.records if r.name == "cloudinary_webhooks"]) == 2
    assert SECRET not in text
    assert headers["X-Cld-Signature"] not in text and "f" * 40 not in text
    assert PAYLOAD_MARKER not in text
    assert API_KEY_VALUE not in text


# --- demo mode and secrets ------------------------------------------------------------------------------

def test_demo_mode_with_missing_variables_runs_dry_with_demo_values(send, monkeypatch):
    monkeypatch.setenv("CLOUDINARY_WEBHOOKS_DEMO", "1")
    monkeypatch.delenv("TINY_API_KEY")

    answer = send(upload())

    assert answer.status == 200
    assert answer.body == {"status": "dry_run", "key_length": len("demo-key"),
                           "actions": [{"action": "write", "public_id": "folder/sample", "target": "demo-target"}]}
    assert performed == []


def test_demo_mode_with_everything_set_does_the_work(send, monkeypatch):
    monkeypatch.setenv("CLOUDINARY_WEBHOOKS_DEMO", "1")
    answer = send(upload())
    assert answer.body["status"] == "done" and answer.body["actions"][0]["target"] == "demo-target"
    assert performed == [("write", ("folder/sample", API_KEY_VALUE, "demo-target"))]


def test_demo_values_are_not_used_outside_demo_mode(send, monkeypatch):
    monkeypatch.setenv("CLOUDINARY_WEBHOOKS_DEMO", "0")
    assert send(upload()).body["actions"][0]["target"] is None
    monkeypatch.delenv("TINY_API_KEY")
    assert_error(send(upload()), 500, "not_configured")


def test_demo_mode_still_verifies_signatures(send, monkeypatch):
    monkeypatch.setenv("CLOUDINARY_WEBHOOKS_DEMO", "1")
    monkeypatch.delenv("TINY_API_KEY")
    assert_error(send(upload(), secret=OTHER_SECRET), 401, "signature_mismatch")


def test_cloudinary_url_is_a_secret_source(send, monkeypatch):
    monkeypatch.delenv("CLOUDINARY_NOTIFICATION_SECRETS")
    monkeypatch.setenv("CLOUDINARY_URL", "cloudinary://614335564976464:url-secret-7@demo-cloud?upload_prefix=x")

    assert send(upload(), secret="url-secret-7").status == 200
    assert send(upload(), secret="url-secret-7", algorithm="sha256").status == 200
    assert_error(send(upload(), secret=SECRET), 401, "signature_mismatch")


def test_rotation_accepts_the_url_secret_and_each_extra_secret(send, monkeypatch):
    monkeypatch.setenv("CLOUDINARY_URL", "cloudinary://614335564976464:new-secret@demo-cloud")
    monkeypatch.setenv("CLOUDINARY_NOTIFICATION_SECRETS", "old-secret-1, old-secret-2")

    for secret in ("new-secret", "old-secret-1", "old-secret-2"):
        assert send(upload(), secret=secret).status == 200, secret
    assert_error(send(upload(), secret="retired-secret"), 401, "signature_mismatch")
    assert len(performed) == 3


def test_settings_read_at_request_time_not_import_time(send, monkeypatch):
    assert send(upload()).status == 200
    monkeypatch.setenv("CLOUDINARY_NOTIFICATION_SECRETS", "rotated")
    assert_error(send(upload()), 401, "signature_mismatch")
    assert send(upload(), secret="rotated").status == 200


# --- the decorator itself ---------------------------------------------------------------------------------

def test_the_function_name_comes_from_its_folder():
    from functions.hello_tag.handler import handle

    assert handle.name == "hello_tag" and handle.accepts == frozenset({"upload"})
    assert tiny.name == "tiny" and tiny.requires == ("TINY_API_KEY",) and tiny.optional == ("TINY_TARGET",)
    assert tiny.__doc__ == "A function in miniature: read a field, maybe refuse, act, report."


def test_notification_mapping_and_public_id():
    n = Notification({"notification_type": "delete", "resources": [{"public_id": "a"}]})
    assert n.type == "delete" and n.public_id == "a" and len(n) == 2 and set(n) == {"notification_type",
                                                                                     "resources"}
    assert Notification({"notification_type": "x", "resources": [{"public_id": "a"}, {"public_id": "b"}]}) \
        .public_id is None
    assert Notification({"notification_type": "x", "public_id": 5}).public_id is None
    assert n.raw() == {"notification_type": "delete", "resources": [{"public_id": "a"}]}


# --- a function's own fields never break or falsify the answer or the log line ----------------------------

@webhook(accepts={"upload"}, name="noisy")
def noisy(notification: Notification, ctx: Context) -> Result:
    # field names a function may well use for its own facts (e.g. a moderation status)
    ctx.note(status="approved", outcome="kept", function="other", started=0, exc_info=True, public_id="x",
             extra="fine")
    ctx.act("write", None, public_id="p")
    return ctx.done(status="approved", actions="none", kind="video")


def test_notes_and_details_named_like_core_fields_do_not_override_them(log_records, monkeypatch):
    monkeypatch.setattr(noisy, "clock", lambda: float(NOW))
    body = body_of(upload())

    response = noisy(Request("POST", "/", Headers(signed_headers(body).items()), body))

    assert response.status == 200
    assert response.body["status"] == "done" and response.body["actions"] == [{"action": "write",
                                                                               "public_id": "p"}]
    assert response.body["kind"] == "video"
    [record] = log_records()
    line = json.loads(record.getMessage())
    assert line["status"] == 200 and line["outcome"] == "done" and line["function"] == "noisy"
    assert line["public_id"] == "folder/sample" and line["extra"] == "fine"
    assert not record.exc_info


@webhook(accepts={"upload"}, name="dated")
def dated(notification: Notification, ctx: Context) -> Result:
    import datetime

    ctx.act("write", lambda: performed.append(("write", notification["public_id"])))
    return ctx.done(when=datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC))


@pytest.mark.parametrize("entry", ["lambda_v2", "wsgi"])
def test_a_detail_json_cannot_encode_does_not_turn_finished_work_into_a_crash(monkeypatch, entry):
    # The work is done; a crash now would make Cloudinary retry it. The detail is sent as text instead.
    monkeypatch.setattr(dated, "clock", lambda: float(NOW))
    monkeypatch.setattr("tests.shared.test_webhook.tiny", dated)  # the entry helpers call `tiny`
    body = body_of(upload())

    answer = ENTRY_POINTS[entry](body, signed_headers(body), "POST")

    assert answer.status == 200 and answer.body["when"] == "2026-01-02 03:04:05+00:00"
    assert performed == [("write", "folder/sample")]


# --- what a request may put into the log and the answer: capped (issue 12) ---------------------------

@pytest.mark.parametrize(("field", "mode"), [("public_id", None), ("public_id", "ignore"),
                                             ("notification_type", None), ("public_id", "unavailable")])
def test_a_huge_field_is_capped_in_the_log_line_and_the_answer(send, field, mode, log_records):
    payload = {"notification_type": "upload", "public_id": "shop/chair"}
    if mode:
        payload["mode"] = mode
    payload[field] = "x" * (1000 * 1000)  # just under the body limit
    answer = send(payload)

    encoded_answer = json.dumps(answer.body)
    assert len(encoded_answer) < 4096, f"{len(encoded_answer)} characters echoed"
    [record] = log_records()
    assert len(record.getMessage()) < 2048
    assert "chars)" in record.getMessage()  # says it was cut, and by how much


def test_a_rotated_secret_is_used_from_the_next_request_on(send, monkeypatch):
    # Settings are parsed once per value, not once per process: a changed environment is seen at once.
    assert send(upload()).status == 200
    monkeypatch.setenv("CLOUDINARY_NOTIFICATION_SECRETS", OTHER_SECRET)
    assert send(upload()).status == 401
    assert send(upload(), secret=OTHER_SECRET).status == 200
    monkeypatch.setenv("CLOUDINARY_URL", "cloudinary://key:%20@demo")  # blank secret: not configured, each time
    assert send(upload(), secret=OTHER_SECRET).status == 500
    assert send(upload(), secret=OTHER_SECRET).status == 500
