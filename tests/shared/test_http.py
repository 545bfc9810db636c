"""shared.events: every event shape the platforms deliver becomes the same Request, and answers go back right."""

from __future__ import annotations

import base64
import io
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared import verify
from shared.errors import BadRequest, PayloadTooLarge
from shared.events import (
    Headers,
    LengthRequired,
    Request,
    RequestTimeout,
    Response,
    lambda_response,
    request_from_lambda_event,
    request_from_wsgi,
    wsgi_reply,
)
from shared.webhook import webhook

BODY = b'{"notification_type":"upload","public_id":"caf\xc3\xa9"}'
SIGNATURE = "a" * 40
TIMESTAMP = "1700000000"


def rest_v1_event(**overrides):
    """API Gateway REST API (payload format 1.0), as AWS documents it: mixed-case headers plus
    multiValueHeaders carrying the same headers as lists."""
    event = {
        "resource": "/hook",
        "path": "/hook",
        "httpMethod": "POST",
        "headers": {"Content-Type": "application/json", "Host": "abc.execute-api.us-east-1.amazonaws.com",
                    "X-Cld-Timestamp": TIMESTAMP, "X-Cld-Signature": SIGNATURE,
                    "X-Forwarded-Proto": "https", "User-Agent": "Cloudinary"},
        "multiValueHeaders": {"Content-Type": ["application/json"],
                              "Host": ["abc.execute-api.us-east-1.amazonaws.com"],
                              "X-Cld-Timestamp": [TIMESTAMP], "X-Cld-Signature": [SIGNATURE],
                              "X-Forwarded-Proto": ["https"], "User-Agent": ["Cloudinary"]},
        "queryStringParameters": {"source": "preset"},
        "multiValueQueryStringParameters": {"source": ["preset"]},
        "requestContext": {"domainName": "abc.execute-api.us-east-1.amazonaws.com", "stage": "prod",
                           "httpMethod": "POST", "path": "/prod/hook"},
        "body": BODY.decode("utf-8"),
        "isBase64Encoded": False,
    }
    event.update(overrides)
    return event


def http_v2_event(**overrides):
    """API Gateway HTTP API (payload format 2.0): lower-case headers, repeated ones joined by commas."""
    event = {
        "version": "2.0",
        "routeKey": "POST /hook",
        "rawPath": "/hook",
        "rawQueryString": "source=preset",
        "headers": {"content-type": "application/json", "host": "xyz.execute-api.eu-west-1.amazonaws.com",
                    "x-cld-timestamp": TIMESTAMP, "x-cld-signature": SIGNATURE, "x-forwarded-proto": "https"},
        "queryStringParameters": {"source": "preset"},
        "requestContext": {"domainName": "xyz.execute-api.eu-west-1.amazonaws.com", "stage": "$default",
                           "http": {"method": "POST", "path": "/hook", "protocol": "HTTP/1.1",
                                    "sourceIp": "54.242.9.131", "userAgent": "Cloudinary"}},
        "body": base64.b64encode(BODY).decode(),
        "isBase64Encoded": True,
    }
    event.update(overrides)
    return event


def function_url_event(**overrides):
    """A Lambda Function URL event: payload format 2.0, no stage, no routeKey ("$default")."""
    event = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/",
        "rawQueryString": "",
        "headers": {"content-type": "application/json", "host": "abc123.lambda-url.us-east-1.on.aws",
                    "x-cld-timestamp": TIMESTAMP, "x-cld-signature": SIGNATURE,
                    "x-amzn-trace-id": "Root=1-5e1b4151", "x-forwarded-proto": "https"},
        "requestContext": {"accountId": "anonymous", "domainName": "abc123.lambda-url.us-east-1.on.aws",
                           "http": {"method": "POST", "path": "/", "protocol": "HTTP/1.1",
                                    "sourceIp": "54.242.9.131", "userAgent": "Cloudinary"}},
        "body": BODY.decode("utf-8"),
        "isBase64Encoded": False,
    }
    event.update(overrides)
    return event


def netlify_event(**overrides):
    """Netlify Functions: the v1 shape with lower-case header names and no requestContext domain."""
    event = {
        "path": "/.netlify/functions/hello_tag",
        "httpMethod": "POST",
        "headers": {"content-type": "application/json", "host": "example.netlify.app",
                    "x-cld-timestamp": TIMESTAMP, "x-cld-signature": SIGNATURE, "x-forwarded-proto": "https",
                    "x-nf-request-id": "01H"},
        "multiValueHeaders": {"content-type": ["application/json"], "host": ["example.netlify.app"],
                              "x-cld-timestamp": [TIMESTAMP], "x-cld-signature": [SIGNATURE],
                              "x-forwarded-proto": ["https"], "x-nf-request-id": ["01H"]},
        "queryStringParameters": {},
        "multiValueQueryStringParameters": {},
        "body": base64.b64encode(BODY).decode(),
        "isBase64Encoded": True,
        "rawUrl": "https://example.netlify.app/.netlify/functions/hello_tag",
        "rawQuery": "",
    }
    event.update(overrides)
    return event


def assert_signed_headers_readable(request: Request) -> None:
    for name in ("X-Cld-Signature", "x-cld-signature", "X-CLD-SIGNATURE"):
        assert request.headers[name] == SIGNATURE
        assert request.headers.get(name) == SIGNATURE
        assert name in request.headers
    assert request.headers.get("x-cld-timestamp") == TIMESTAMP
    assert request.headers.get("content-TYPE") == "application/json"


# --- the four event shapes ---------------------------------------------------------------------------

def test_api_gateway_rest_v1():
    request = request_from_lambda_event(rest_v1_event())

    assert request.method == "POST" and request.path == "/hook"
    assert request.body == BODY
    assert_signed_headers_readable(request)
    assert request.query == {"source": "preset"}
    assert request.host == "abc.execute-api.us-east-1.amazonaws.com"
    assert request.url == "https://abc.execute-api.us-east-1.amazonaws.com/hook"


def test_api_gateway_rest_v1_with_only_single_value_headers():
    event = rest_v1_event()
    del event["multiValueHeaders"]
    request = request_from_lambda_event(event)
    assert_signed_headers_readable(request)
    assert request.body == BODY


def test_api_gateway_rest_v1_multi_value_headers_take_precedence_and_keep_every_value():
    event = rest_v1_event(headers={"X-Cld-Signature": SIGNATURE, "Accept": "b"})  # v1 keeps the LAST one
    event["multiValueHeaders"] = {**event["multiValueHeaders"], "Accept": ["a", "b"]}
    request = request_from_lambda_event(event)
    assert request.headers["accept"] == "a, b"
    assert request.headers["x-cld-signature"] == SIGNATURE


def test_http_api_v2_with_base64_body():
    request = request_from_lambda_event(http_v2_event())

    assert request.method == "POST" and request.path == "/hook"
    assert request.body == BODY
    assert_signed_headers_readable(request)
    assert request.query == {"source": "preset"}
    assert request.url == "https://xyz.execute-api.eu-west-1.amazonaws.com/hook"


def test_http_api_v2_method_comes_from_the_request_context():
    event = http_v2_event()
    event["requestContext"]["http"]["method"] = "GET"
    assert request_from_lambda_event(event).method == "GET"


def test_function_url():
    request = request_from_lambda_event(function_url_event())

    assert request.method == "POST" and request.path == "/"
    assert request.body == BODY
    assert_signed_headers_readable(request)
    assert request.query == {}
    assert request.host == "abc123.lambda-url.us-east-1.on.aws"
    assert request.url == "https://abc123.lambda-url.us-east-1.on.aws/"


def test_netlify_v1_shape_with_lower_case_headers():
    request = request_from_lambda_event(netlify_event())

    assert request.method == "POST" and request.path == "/.netlify/functions/hello_tag"
    assert request.body == BODY
    assert_signed_headers_readable(request)
    assert request.host == "example.netlify.app"
    assert request.url == "https://example.netlify.app/.netlify/functions/hello_tag"


def test_netlify_without_multi_value_headers_and_plain_body():
    event = netlify_event(body=BODY.decode(), isBase64Encoded=False)
    del event["multiValueHeaders"]
    request = request_from_lambda_event(event)
    assert request.body == BODY
    assert_signed_headers_readable(request)


# --- bodies ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("make_event", [rest_v1_event, http_v2_event, function_url_event, netlify_event])
def test_base64_bodies_decode_to_the_exact_bytes(make_event):
    raw = b'{"a":"\xe2\x82\xac"}\n\x00\xff'  # not even valid UTF-8: bytes must come through untouched
    request = request_from_lambda_event(make_event(body=base64.b64encode(raw).decode(), isBase64Encoded=True))
    assert request.body == raw


@pytest.mark.parametrize("make_event", [rest_v1_event, http_v2_event, function_url_event, netlify_event])
def test_text_bodies_are_utf8_encoded(make_event):
    request = request_from_lambda_event(make_event(body='{"public_id":"café"}', isBase64Encoded=False))
    assert request.body == '{"public_id":"café"}'.encode()


@pytest.mark.parametrize("body", ["not base64 at all!", "abc", "YWJj\n=="[:3] + "*", '{"a":1}'])
def test_invalid_base64_is_a_400(body):
    with pytest.raises(BadRequest) as caught:
        request_from_lambda_event(function_url_event(body=body, isBase64Encoded=True))
    assert caught.value.status == 400 and caught.value.code == "bad_event"


def test_a_flag_saying_plain_text_over_a_base64_body_keeps_the_text():
    # The flag lies the other way: the body is taken as the text it is, so the signature (over the real
    # bytes) will not match and the wrapper answers 401 instead of trusting a guess.
    encoded = base64.b64encode(BODY).decode()
    request = request_from_lambda_event(function_url_event(body=encoded, isBase64Encoded=False))
    assert request.body == encoded.encode()


def test_a_base64_flag_over_a_non_string_body_is_a_400():
    with pytest.raises(BadRequest):
        request_from_lambda_event(function_url_event(body=["x"], isBase64Encoded=True))


def test_a_non_text_body_is_a_400():
    with pytest.raises(BadRequest):
        request_from_lambda_event(function_url_event(body={"already": "parsed"}, isBase64Encoded=False))


def test_a_body_of_lone_surrogates_is_a_400_not_a_crash():
    with pytest.raises(BadRequest):
        request_from_lambda_event(function_url_event(body="\ud800", isBase64Encoded=False))


@pytest.mark.parametrize("make_event", [rest_v1_event, http_v2_event, function_url_event, netlify_event])
def test_missing_body_is_empty_bytes(make_event):
    event = make_event()
    del event["body"]
    assert request_from_lambda_event(event).body == b""
    assert request_from_lambda_event(make_event(body=None)).body == b""
    assert request_from_lambda_event(make_event(body="", isBase64Encoded=True)).body == b""


# --- headers -----------------------------------------------------------------------------------------

def test_repeated_headers_are_joined_so_a_second_signature_cannot_hide():
    event = rest_v1_event()
    event["multiValueHeaders"]["X-Cld-Signature"] = [SIGNATURE, "b" * 40]
    request = request_from_lambda_event(event)
    assert request.headers["X-Cld-Signature"] == f"{SIGNATURE}, {'b' * 40}"


def test_headers_differing_only_in_case_are_one_header():
    headers = Headers([("X-Cld-Signature", "one"), ("x-cld-signature", "two")])
    assert len(headers) == 1
    assert headers["X-CLD-SIGNATURE"] == "one, two"
    assert list(headers) == ["X-Cld-Signature"]  # the first spelling is kept for iteration


def test_headers_mapping_behaviour():
    headers = Headers([("Content-Type", "application/json"), ("X-A", "1")])
    assert dict(headers) == {"Content-Type": "application/json", "X-A": "1"}
    assert headers.get("missing") is None and headers.get("missing", "d") == "d"
    assert 42 not in headers and "x-a" in headers
    with pytest.raises(KeyError):
        headers["missing"]


def test_headers_repr_never_shows_values():
    headers = Headers([("X-Cld-Signature", SIGNATURE)])
    assert SIGNATURE not in repr(headers) and "x-cld-signature" in repr(headers)


def test_null_header_values_are_dropped():
    event = function_url_event()
    event["headers"]["x-empty"] = None
    assert "x-empty" not in request_from_lambda_event(event).headers
    v1 = rest_v1_event()
    v1["multiValueHeaders"]["X-Empty"] = None
    assert request_from_lambda_event(v1).headers.get("x-empty") is None


def test_no_headers_at_all():
    request = request_from_lambda_event({"httpMethod": "POST", "path": "/x", "headers": None, "body": "{}"})
    assert len(request.headers) == 0 and request.host is None and request.url is None


# --- method, path, host, url ---------------------------------------------------------------------------

@pytest.mark.parametrize("make_event", [rest_v1_event, http_v2_event, function_url_event, netlify_event])
@pytest.mark.parametrize("method", ["post", "Post", "pOST", "get"])
def test_the_method_is_kept_as_sent_post_in_lower_case_is_not_post(make_event, method):
    # HTTP methods are case-sensitive (RFC 9110 9.1); API Gateway, Function URLs and Netlify send them upper-case.
    event = make_event()
    if "http" in event.get("requestContext", {}):
        event["requestContext"]["http"]["method"] = method
    else:
        event["httpMethod"] = method
    assert request_from_lambda_event(event).method == method


def test_the_method_is_required():
    with pytest.raises(BadRequest) as caught:
        request_from_lambda_event({"path": "/x", "body": "{}"})
    assert caught.value.code == "bad_event"


@pytest.mark.parametrize("event", [None, "a string", ["a", "list"], 42])
def test_something_that_is_not_an_event_is_a_400(event):
    with pytest.raises(BadRequest):
        request_from_lambda_event(event)


def test_host_falls_back_to_the_host_header_and_scheme_to_forwarded_proto():
    event = netlify_event()
    event["headers"]["x-forwarded-proto"] = "http, https"
    del event["multiValueHeaders"]
    request = request_from_lambda_event(event)
    assert request.scheme == "http"
    assert request.url == "http://example.netlify.app/.netlify/functions/hello_tag"


def test_missing_path_is_root():
    event = function_url_event()
    del event["rawPath"]
    del event["requestContext"]["http"]["path"]
    assert request_from_lambda_event(event).path == "/"


# --- answers -----------------------------------------------------------------------------------------

def test_lambda_response_shape():
    result = lambda_response(Response(405, {"error": "method_not_allowed", "message": "é"}, {"Allow": "POST"}))
    assert result == {
        "statusCode": 405,
        "headers": {"Content-Type": "application/json; charset=utf-8", "Allow": "POST"},
        "body": '{"error": "method_not_allowed", "message": "é"}',
        "isBase64Encoded": False,
    }


def test_wsgi_reply_sets_status_line_headers_and_length():
    seen = {}

    def start_response(status, headers):
        seen["status"], seen["headers"] = status, headers

    chunks = wsgi_reply(Response(413, {"error": "payload_too_large", "message": "big"}), start_response)
    payload = b"".join(chunks)
    assert seen["status"] == "413 Payload Too Large"
    assert ("Content-Length", str(len(payload))) in seen["headers"]
    assert ("Content-Type", "application/json; charset=utf-8") in seen["headers"]
    assert json.loads(payload) == {"error": "payload_too_large", "message": "big"}


# --- WSGI ----------------------------------------------------------------------------------------------

class ExplodingStream:
    """A wsgi.input that fails the test if anything reads it."""

    def read(self, *args):
        raise AssertionError("the body was read")


class RecordingStream(io.BytesIO):
    def __init__(self, data: bytes):
        super().__init__(data)
        self.reads: list[int | None] = []

    def read(self, size=-1):
        self.reads.append(size)
        return super().read(size)


def wsgi_environ(body: bytes = BODY, **overrides):
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/api/hello_tag",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8888",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_HOST": "localhost:8888",
        "HTTP_X_CLD_TIMESTAMP": TIMESTAMP,
        "HTTP_X_CLD_SIGNATURE": SIGNATURE,
        "wsgi.input": RecordingStream(body),
        "wsgi.url_scheme": "http",
    }
    environ.update(overrides)
    return environ


def test_wsgi_request():
    request = request_from_wsgi(wsgi_environ())
    assert request.method == "POST" and request.path == "/api/hello_tag"
    assert request.body == BODY
    assert_signed_headers_readable(request)
    assert request.headers["Content-Length"] == str(len(BODY))
    assert request.host == "localhost:8888"
    assert request.url == "http://localhost:8888/api/hello_tag"


def test_wsgi_reads_exactly_content_length_bytes():
    environ = wsgi_environ(CONTENT_LENGTH=str(len(BODY)), **{"wsgi.input": RecordingStream(BODY + b"TRAILING")})
    request = request_from_wsgi(environ)
    assert request.body == BODY
    assert environ["wsgi.input"].reads == [len(BODY)]


def test_wsgi_content_length_over_the_limit_is_413_without_reading():
    environ = wsgi_environ(CONTENT_LENGTH="1048577", **{"wsgi.input": ExplodingStream()})
    with pytest.raises(PayloadTooLarge) as caught:
        request_from_wsgi(environ)
    assert caught.value.status == 413
    with pytest.raises(PayloadTooLarge):
        request_from_wsgi(wsgi_environ(CONTENT_LENGTH="11", **{"wsgi.input": ExplodingStream()}), max_body_bytes=10)


def test_wsgi_content_length_at_the_limit_is_read():
    request = request_from_wsgi(wsgi_environ(b"x" * 10), max_body_bytes=10)
    assert request.body == b"x" * 10


@pytest.mark.parametrize("length", ["abc", "-1", "1.5", "0x10", "1 2", "\uff11"])
def test_wsgi_bad_content_length_is_400_without_reading(length):
    with pytest.raises(BadRequest) as caught:
        request_from_wsgi(wsgi_environ(CONTENT_LENGTH=length, **{"wsgi.input": ExplodingStream()}))
    assert caught.value.code == "bad_content_length"


def test_wsgi_zero_or_absent_content_length_reads_nothing():
    assert request_from_wsgi(wsgi_environ(CONTENT_LENGTH="0", **{"wsgi.input": ExplodingStream()})).body == b""
    environ = wsgi_environ(**{"wsgi.input": ExplodingStream()})
    del environ["CONTENT_LENGTH"]
    assert request_from_wsgi(environ).body == b""


def test_wsgi_input_terminated_reads_at_most_one_byte_over_the_limit():
    stream = RecordingStream(b"y" * 50)
    environ = wsgi_environ(**{"wsgi.input": stream, "wsgi.input_terminated": True})
    del environ["CONTENT_LENGTH"]
    request = request_from_wsgi(environ, max_body_bytes=20)
    assert stream.reads == [21]
    assert request.body == b"y" * 21  # one byte over: the wrapper then answers 413


def test_wsgi_headers_become_http_names():
    request = request_from_wsgi(wsgi_environ(HTTP_X_FORWARDED_PROTO="https", HTTP_X_FORWARDED_HOST="hooks.example"))
    assert request.headers["X-Forwarded-Proto"] == "https"
    assert request.url == "https://hooks.example/api/hello_tag"
    assert request.headers["content-type"] == "application/json"


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8"])
def test_wsgi_header_copies_under_http_names_are_one_header(content_type):
    # Vercel's launcher copies every request header into HTTP_*, Content-Type and -Length included, beside
    # CONTENT_TYPE and CONTENT_LENGTH: a function must see each once, not "application/json, application/json".
    environ = wsgi_environ(CONTENT_TYPE=content_type, HTTP_CONTENT_TYPE=content_type,
                           HTTP_CONTENT_LENGTH=str(len(BODY)))
    request = request_from_wsgi(environ)
    assert request.headers["Content-Type"] == content_type
    assert request.headers["Content-Length"] == str(len(BODY))
    assert list(request.headers).count("Content-Type") == 1
    assert request.body == BODY


def test_wsgi_header_copy_alone_is_kept():
    environ = wsgi_environ(HTTP_CONTENT_TYPE="application/json")
    del environ["CONTENT_TYPE"]
    assert request_from_wsgi(environ).headers["Content-Type"] == "application/json"


@pytest.mark.parametrize(("cgi", "copy"), [("CONTENT_LENGTH", "HTTP_CONTENT_LENGTH"),
                                           ("CONTENT_TYPE", "HTTP_CONTENT_TYPE")])
def test_wsgi_header_copy_that_disagrees_is_400_without_reading(cgi, copy):
    environ = wsgi_environ(**{copy: "5" if "LENGTH" in copy else "text/plain", "wsgi.input": ExplodingStream()})
    with pytest.raises(BadRequest) as caught:
        request_from_wsgi(environ)
    assert caught.value.code == "conflicting_headers"


def test_wsgi_without_host_header_uses_server_name():
    environ = wsgi_environ()
    del environ["HTTP_HOST"]
    assert request_from_wsgi(environ).host == "127.0.0.1"




@pytest.mark.parametrize("method", ["post", "Post", "get", "GET"])
def test_wsgi_method_is_kept_as_sent(method):
    assert request_from_wsgi(wsgi_environ(REQUEST_METHOD=method)).method == method


# --- WSGI: chunked bodies and bodies whose reading fails ---------------------------------------------------

@pytest.mark.parametrize("coding", ["chunked", "Chunked", "gzip, chunked", " chunked ", "compress"])
def test_wsgi_a_transfer_encoding_the_server_left_undecoded_is_411_without_reading(coding):
    environ = wsgi_environ(HTTP_TRANSFER_ENCODING=coding, **{"wsgi.input": ExplodingStream()})
    del environ["CONTENT_LENGTH"]
    with pytest.raises(LengthRequired) as caught:
        request_from_wsgi(environ)
    assert caught.value.status == 411 and caught.value.code == "length_required"


def test_wsgi_a_chunked_body_the_server_decoded_is_read_to_its_end():
    environ = wsgi_environ(HTTP_TRANSFER_ENCODING="chunked", **{"wsgi.input_terminated": True})
    del environ["CONTENT_LENGTH"]
    assert request_from_wsgi(environ).body == BODY


def test_wsgi_a_content_length_beside_a_transfer_encoding_frames_the_body():
    # the server computed the length of what it decoded (Vercel's launcher does): trusted, as ever
    assert request_from_wsgi(wsgi_environ(HTTP_TRANSFER_ENCODING="chunked")).body == BODY


class TrickleStream(io.BytesIO):
    """A socket-like stream: read(n) may give fewer than n bytes before the end."""

    def read(self, size=-1):
        return super().read(min(size, 3) if size and size > 0 else size)


@pytest.mark.parametrize("terminated", [False, True])
def test_wsgi_a_stream_giving_a_few_bytes_at_a_time_is_read_whole(terminated):
    environ = wsgi_environ(**{"wsgi.input": TrickleStream(BODY), "wsgi.input_terminated": terminated})
    if terminated:
        del environ["CONTENT_LENGTH"]
    assert request_from_wsgi(environ).body == BODY


class FailingStream:
    """Gives some bytes, then the connection fails under the read."""

    def __init__(self, error: BaseException, first: bytes = BODY[:10]):
        self.error, self.first = error, first

    def read(self, size=-1):
        if self.first:
            data, self.first = self.first, b""
            return data
        raise self.error


@pytest.mark.parametrize("error", [ConnectionResetError(104, "Connection reset by peer"), BrokenPipeError(),
                                   ConnectionAbortedError(), OSError(5, "I/O error")])
@pytest.mark.parametrize("terminated", [False, True])
def test_wsgi_a_connection_failing_under_the_body_is_a_400(error, terminated):
    environ = wsgi_environ(**{"wsgi.input": FailingStream(error), "wsgi.input_terminated": terminated})
    if terminated:
        del environ["CONTENT_LENGTH"]
    with pytest.raises(BadRequest) as caught:
        request_from_wsgi(environ)
    assert caught.value.status == 400 and caught.value.code == "incomplete_body"


@pytest.mark.parametrize("first", [b"", BODY[:10]])
def test_wsgi_a_body_that_does_not_arrive_in_time_is_408(first):
    environ = wsgi_environ(**{"wsgi.input": FailingStream(TimeoutError("timed out"), first)})
    with pytest.raises(RequestTimeout) as caught:
        request_from_wsgi(environ)
    assert caught.value.status == 408 and caught.value.code == "request_timeout"


@pytest.mark.parametrize("sent", [0, 1, len(BODY) - 1])
def test_wsgi_a_body_shorter_than_its_content_length_is_400(sent):
    environ = wsgi_environ(**{"wsgi.input": io.BytesIO(BODY[:sent]), "CONTENT_LENGTH": str(len(BODY))})
    with pytest.raises(BadRequest) as caught:
        request_from_wsgi(environ)
    assert caught.value.code == "incomplete_body" and f"after {sent} of its {len(BODY)} bytes" in caught.value.message


# --- the same, through a function's WSGI and Lambda entry points: answers, never exceptions ---------------

@webhook(accepts={"upload"}, name="tiny_http")
def tiny_http(notification, ctx):
    return ctx.done()


def call_wsgi_app(environ) -> tuple[str, dict, dict]:
    seen = {}

    def start_response(status, headers):
        seen["status"], seen["headers"] = status, dict(headers)

    payload = b"".join(tiny_http.wsgi_app(environ, start_response))
    return seen["status"], seen["headers"], json.loads(payload)


@pytest.mark.parametrize(("stream", "status", "code"), [
    (FailingStream(ConnectionResetError(104, "Connection reset by peer")), "400 Bad Request", "incomplete_body"),
    (FailingStream(TimeoutError("timed out")), "408 Request Timeout", "request_timeout"),
    (io.BytesIO(BODY[:5]), "400 Bad Request", "incomplete_body"),
])
def test_wsgi_app_answers_a_failed_body_read_in_json(monkeypatch, stream, status, code):
    monkeypatch.setenv("CLOUDINARY_NOTIFICATION_SECRETS", "s")
    answer_status, headers, body = call_wsgi_app(wsgi_environ(**{"wsgi.input": stream}))
    assert answer_status == status and body["error"] == code
    assert headers["Content-Type"].startswith("application/json")


def test_wsgi_app_answers_an_undecoded_chunked_body_411(monkeypatch):
    monkeypatch.setenv("CLOUDINARY_NOTIFICATION_SECRETS", "s")
    environ = wsgi_environ(HTTP_TRANSFER_ENCODING="chunked", **{"wsgi.input": ExplodingStream()})
    del environ["CONTENT_LENGTH"]
    status, _, body = call_wsgi_app(environ)
    assert status == "411 Length Required" and body["error"] == "length_required"


@pytest.mark.parametrize("method", ["post", "Post"])
def test_a_signed_lower_case_post_is_405_through_wsgi_and_lambda(monkeypatch, method):
    monkeypatch.setenv("CLOUDINARY_NOTIFICATION_SECRETS", "s")
    signed = verify.signed_headers(BODY, "s")
    environ = wsgi_environ(REQUEST_METHOD=method, HTTP_X_CLD_TIMESTAMP=signed["X-Cld-Timestamp"],
                           HTTP_X_CLD_SIGNATURE=signed["X-Cld-Signature"])
    status, headers, body = call_wsgi_app(environ)
    assert status.startswith("405") and headers["Allow"] == "POST" and body["error"] == "method_not_allowed"

    event = function_url_event(headers={k.lower(): v for k, v in signed.items()})
    event["requestContext"]["http"]["method"] = method
    assert tiny_http.lambda_handler(event)["statusCode"] == 405


# --- properties: whatever the bytes, every adapter hands the function exactly those bytes -------------------

@given(body=st.binary(max_size=4096))
def test_property_every_adapter_preserves_the_bytes(body):
    encoded = base64.b64encode(body).decode()
    for make_event in (rest_v1_event, http_v2_event, function_url_event, netlify_event):
        assert request_from_lambda_event(make_event(body=encoded, isBase64Encoded=True)).body == body
    assert request_from_wsgi(wsgi_environ(body)).body == body


@given(names=st.lists(st.sampled_from(["X-Cld-Signature", "x-cld-signature", "X-CLD-SIGNATURE", "Accept"]),
                      min_size=1, max_size=6))
def test_property_header_lookup_ignores_case(names):
    headers = Headers((name, str(index)) for index, name in enumerate(names))
    for name in names:
        expected = ", ".join(str(i) for i, other in enumerate(names) if other.lower() == name.lower())
        assert headers[name.swapcase()] == expected
