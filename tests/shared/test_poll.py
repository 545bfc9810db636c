"""shared.poll: a poll channel drained through the wrapper a webhook delivery takes, against a stand-in of
Cloudinary's notifications API (tests/fakes/notifications.py) that the real SDK reaches through CLOUDINARY_URL's
upload_prefix. A message is acknowledged only after its function answered 200 or it was stored as a dead letter.

A tiny function defined here records what it was given; the stand-in's own clock expires claims, and every
backoff wait is recorded instead of slept.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from typing import Any

import pytest

from shared import dead_letters, poll
from shared.errors import ConfigError, DependencyUnavailable
from shared.webhook import Context, Notification, Result, webhook
from tests import pg
from tests.fakes.notifications import FakeNotifications, Fault, signed_message
from tests.helpers import API_KEY, CLOUD_NAME, SECRET

ROTATED_SECRET = "rotated-api-secret-Kp4"


class Recorder:
    """What the tiny function saw, and what it should answer next."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.public_ids: list[str] = []
        self.unavailable = 0  # answer 503 this many times
        self.during: Any = None  # called while a message is in hand


recorder = Recorder()


@webhook(accepts={"upload", "delete"}, name="recorder")
def handle(notification: Notification, ctx: Context) -> Result:
    recorder.bodies.append(ctx.request.body)
    recorder.public_ids.append(notification.require("public_id"))
    if recorder.during:
        recorder.during(notification)
    if recorder.unavailable:
        recorder.unavailable -= 1
        raise DependencyUnavailable("The thing is down; a retry will finish the work.", code="thing_unavailable")
    ctx.act("record", lambda: None, public_id=notification["public_id"])
    return ctx.done()


def upload(public_id: str, **extra: Any) -> dict[str, Any]:
    return {"notification_type": "upload", "public_id": public_id, "resource_type": "image", "type": "upload",
            **extra}


@pytest.fixture(autouse=True)
def fresh_recorder():
    global recorder
    recorder.__init__()
    yield
    recorder.__init__()


@pytest.fixture
def fake(monkeypatch, tmp_path):
    stand_in = FakeNotifications(CLOUD_NAME, API_KEY, SECRET)
    prefix = stand_in.start()
    monkeypatch.setenv("CLOUDINARY_URL", f"cloudinary://{API_KEY}:{SECRET}@{CLOUD_NAME}?upload_prefix={prefix}")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("CRON_SECRET", raising=False)
    monkeypatch.setattr(dead_letters, "DEFAULT_SQLITE_PATH", str(tmp_path / "dead-letters.sqlite3"))
    yield stand_in
    stand_in.stop()


@pytest.fixture
def slept(monkeypatch) -> list[float]:
    """A scheduled drain's backoff waits, recorded; each moves the drain's clock on instead of sleeping."""
    waits: list[float] = []
    now = [time.monotonic()]

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    monkeypatch.setattr(poll, "SLEEP", sleep)
    monkeypatch.setattr(poll, "CLOCK", lambda: now[0])
    return waits


def drain(**options: Any) -> poll.Drain:
    options.setdefault("once", True)
    options.setdefault("wait_seconds", 0)
    options.setdefault("sleep", options.pop("waits", []).append)
    return poll.Drain(handle, **options)


def store() -> dead_letters.Store:
    return dead_letters.open_store()


# --- the wire ----------------------------------------------------------------------------------------------

def test_a_message_is_answered_from_its_signed_bytes_then_acknowledged_on_the_wire(fake):
    message = fake.publish("recorder", signed_message(upload("samples/dog"), SECRET))

    counts = drain().run()

    assert counts["messages"] == 1 and counts["acked"] == 1 and counts["dead_letters"] == 0
    polls = fake.requests("receive")
    assert [(seen.method, seen.path) for seen in polls] == [("GET", f"/v2/notifications/{CLOUD_NAME}/messages")] * 2
    assert polls[0].query == {"channel": "recorder", "max_messages": "10", "wait_seconds": "0",
                              "visibility_timeout": "60"}
    acks = fake.requests("ack")
    assert [(seen.method, seen.path) for seen in acks] == [("POST", f"/v2/notifications/{CLOUD_NAME}/messages/ack")]
    assert acks[0].body == {"receipt_handles": ["rh-1-1"]}
    assert all(seen.authorization == fake.authorization for seen in fake.seen)  # the key and secret of the URL
    assert recorder.bodies == [json.dumps(upload("samples/dog"), separators=(",", ":")).encode()]
    assert fake.acked == [message.number] and not fake.pending()


def test_the_signed_bytes_win_over_a_payload_that_differs(fake):
    message = signed_message(upload("samples/the-real-one"), SECRET)
    message["payload"] = upload("evil/not-what-was-signed")
    fake.publish("recorder", message)

    drain().run()

    assert recorder.public_ids == ["samples/the-real-one"]
    assert fake.acked == [1]


def test_bytes_no_serialiser_would_produce_still_verify(fake):
    """Spacing, key order and escapes as Cloudinary sent them: a re-serialisation of payload would not match."""
    raw = b'{ "public_id" : "caf\\u00e9/\\/x",\n  "notification_type":"upload" }'
    fake.publish("recorder", signed_message(None, SECRET, raw=raw))

    counts = drain().run()

    assert counts["acked"] == 1
    assert recorder.bodies == [raw] and recorder.public_ids == ["café//x"]


def test_a_sha256_signature_verifies(fake):
    fake.publish("recorder", signed_message(upload("samples/sha256"), SECRET, algorithm="sha256"))

    assert drain().run()["acked"] == 1


def test_each_message_gets_the_wrappers_one_log_line(fake, caplog):
    caplog.set_level(logging.INFO, logger="cloudinary_webhooks")
    fake.publish("recorder", signed_message(upload("samples/a"), SECRET))
    fake.publish("recorder", signed_message(upload("samples/b"), "forged"))

    drain().run()

    lines = [json.loads(record.getMessage()) for record in caplog.records if record.name == "cloudinary_webhooks"]
    # as for a webhook POST: a body is parsed only once its signature verified
    assert [(line["notification_type"], line["public_id"], line["status"]) for line in lines] == [
        ("upload", "samples/a", 200), (None, None, 401)]
    assert all(line["function"] == "recorder" for line in lines) and lines[1]["error"] == "signature_mismatch"
    assert not any(SECRET in record.getMessage() for record in caplog.records)


# --- acknowledged only once answered 200 or stored ----------------------------------------------------------

def test_a_tampered_signed_payload_is_401_stored_as_a_dead_letter_then_acknowledged(fake):
    message = signed_message(upload("samples/dog"), SECRET)
    tampered = json.dumps(upload("samples/evil"), separators=(",", ":")).encode()
    import base64

    message["signed_payload"] = base64.urlsafe_b64encode(tampered).decode().rstrip("=")
    fake.publish("recorder", message)
    outcomes: list[poll.Outcome] = []

    counts = drain(on_outcome=outcomes.append).run()

    assert counts["dead_letters"] == 1 and counts["acked"] == 0
    assert recorder.bodies == []  # the function never ran
    (outcome,) = outcomes
    assert (outcome.status, outcome.error, outcome.disposition) == (401, "signature_mismatch", "dead_letter")
    (letter,) = store().letters()
    assert (letter.id, letter.function, letter.channel, letter.status) == (outcome.dead_letter, "recorder",
                                                                           "recorder", 401)
    assert letter.body == tampered  # the raw bytes as delivered
    assert (letter.timestamp, letter.signature) == (message["timestamp"], message["signature"])
    assert letter.answer["error"] == "signature_mismatch"
    assert fake.requests("ack")[0].body == {"receipt_handles": ["rh-1-1"]} and fake.acked == [1]


@pytest.mark.parametrize(("make", "status", "error"), [
    (lambda: signed_message(None, SECRET, raw=b"not json at all"), 400, "invalid_json"),
    (lambda: signed_message(None, SECRET, raw=b'{"public_id": "x"}'), 400, "missing_field"),
    (lambda: signed_message(upload("old"), SECRET, timestamp=int(time.time()) - 8 * 24 * 3600), 401,
     "stale_timestamp"),
    (lambda: {**signed_message(upload("x"), SECRET), "signature": None}, 401, "missing_signature"),
    (lambda: {**signed_message(upload("x"), SECRET), "signed_payload": "%%%not-base64%%%"}, 400,
     "malformed_message"),
    (lambda: {k: v for k, v in signed_message(upload("x"), SECRET).items() if k != "signed_payload"}, 400,
     "malformed_message"),
], ids=["not-json", "no-notification-type", "stale", "no-signature", "bad-base64", "no-signed-payload"])
def test_every_permanent_refusal_is_stored_then_acknowledged(fake, make, status, error):
    fake.publish("recorder", make())

    counts = drain().run()

    assert counts["dead_letters"] == 1
    (letter,) = store().letters()
    assert (letter.status, letter.error) == (status, error)
    assert fake.acked == [1]


def test_a_function_without_its_settings_is_500_stored_then_acknowledged(fake, monkeypatch):
    needy = webhook(accepts={"upload"}, requires=("NEEDY_API_KEY",), name="needy")(lambda n, ctx: ctx.done())
    fake.publish("needy", signed_message(upload("samples/dog"), SECRET))

    counts = poll.Drain(needy, once=True, wait_seconds=0, sleep=[].append).run()

    assert counts["dead_letters"] == 1
    (letter,) = store().letters()
    assert (letter.function, letter.status, letter.error) == ("needy", 500, "not_configured")


def test_503_is_not_acknowledged_and_comes_back_after_the_visibility_timeout(fake):
    fake.publish("recorder", signed_message(upload("samples/dog"), SECRET))
    recorder.unavailable = 1
    outcomes: list[poll.Outcome] = []

    first = drain(on_outcome=outcomes.append).run()
    assert (first["kept"], first["acked"]) == (1, 0)
    assert fake.requests("ack") == [] and len(fake.pending()) == 1
    assert outcomes[0].note == "redelivered after the visibility timeout (60 s)"

    assert drain().run()["messages"] == 0  # still claimed: invisible
    fake.advance(60)
    again = drain(on_outcome=outcomes.append).run()

    assert (again["messages"], again["acked"]) == (1, 1)
    assert fake.requests("ack")[0].body == {"receipt_handles": ["rh-1-2"]}  # the redelivery's own handle
    assert recorder.public_ids == ["samples/dog", "samples/dog"] and not fake.pending()
    assert store().letters() == []


@pytest.mark.parametrize("hours", [3, 30, 6 * 24])
def test_a_message_that_waited_longer_than_the_webhook_window_is_still_handled(fake, hours):
    # Nothing drained the channel for a while (a laptop asleep): the signature is checked as ever, the age
    # against POLL_MAX_AGE_SECONDS (7 days), not the 2 hours that guard a public URL against replays.
    fake.publish("recorder", signed_message(upload("samples/late"), SECRET, timestamp=int(time.time()) - hours * 3600))

    counts = drain().run()

    assert counts["acked"] == 1 and counts["dead_letters"] == 0
    assert recorder.bodies and b"samples/late" in recorder.bodies[-1]


def test_the_poll_window_is_configurable_and_never_reaches_webhook_deliveries(fake, monkeypatch):
    monkeypatch.setenv("POLL_MAX_AGE_SECONDS", "3600")
    fake.publish("recorder", signed_message(upload("samples/late"), SECRET, timestamp=int(time.time()) - 3 * 3600))
    assert drain().run()["dead_letters"] == 1  # older than the hour allowed
    # The same old signature POSTed to the function is refused: the wider window is the poll loop's alone.
    from tests.helpers import signed_request

    old = signed_request(upload("samples/late"), secret=SECRET, timestamp=int(time.time()) - 3 * 3600)
    assert handle(old).status == 401


def test_a_dead_letter_store_that_does_not_answer_leaves_the_message_unacknowledged(fake):
    class Down:
        def add(self, *args: Any, **kwargs: Any) -> int:
            raise dead_letters.StoreUnavailable("OperationalError: database is locked")

    fake.publish("recorder", signed_message(upload("samples/dog"), "forged"))
    outcomes: list[poll.Outcome] = []

    counts = drain(store=Down(), on_outcome=outcomes.append).run()

    assert (counts["kept"], counts["dead_letters"]) == (1, 0)
    assert fake.requests("ack") == [] and len(fake.pending()) == 1
    assert "not stored, so not acknowledged" in outcomes[0].note


def test_no_dead_letter_store_on_a_serverless_platform_leaves_the_message_unacknowledged(fake, monkeypatch):
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "recorder")
    fake.publish("recorder", signed_message(upload("samples/dog"), "forged"))
    outcomes: list[poll.Outcome] = []

    counts = drain(on_outcome=outcomes.append).run()

    assert counts["kept"] == 1 and fake.requests("ack") == []
    assert "set DATABASE_URL=postgresql://" in outcomes[0].note


# --- redelivery, duplicates, order ----------------------------------------------------------------------------

def test_duplicates_are_each_answered_and_acknowledged_and_stored_once(fake):
    good = signed_message(upload("samples/dog"), SECRET)
    bad = signed_message(upload("samples/cat"), "forged")
    for message in (good, good, bad, bad):  # Cloudinary delivered each twice
        fake.publish("recorder", message)

    counts = drain().run()

    assert (counts["acked"], counts["dead_letters"]) == (2, 2)
    assert recorder.public_ids == ["samples/dog", "samples/dog"]  # the function is idempotent; both answered
    (letter,) = store().letters()
    assert letter.deliveries == 2
    assert sorted(fake.acked) == [1, 2, 3, 4]


def test_a_receipt_handle_listed_twice_in_one_claim_is_handled_once(fake):
    class Twice(poll.NotificationsAPI):
        def receive(self, channel: str, **options: Any) -> list[Any]:
            messages = super().receive(channel, **options)
            return messages + messages

    fake.publish("recorder", signed_message(upload("samples/dog"), SECRET))

    counts = drain(api=Twice()).run()

    assert counts["messages"] == 1 and recorder.public_ids == ["samples/dog"]


def test_out_of_order_delivery_is_handled_as_delivered_with_nothing_dropped(fake):
    now = int(time.time())
    fake.publish("recorder", signed_message({"notification_type": "delete", "public_id": "samples/dog"}, SECRET,
                                            timestamp=now))
    fake.publish("recorder", signed_message(upload("samples/dog"), SECRET, timestamp=now - 30))
    fake.publish("recorder", signed_message(upload("samples/cat"), SECRET, timestamp=now - 60))

    counts = drain().run()

    assert counts["acked"] == 3
    assert recorder.public_ids == ["samples/dog", "samples/dog", "samples/cat"]  # no high-water mark drops one
    assert fake.acked == [1, 2, 3]


def test_a_message_whose_claim_runs_out_is_left_to_its_redelivery(fake):
    for public_id in ("samples/a", "samples/b"):
        fake.publish("recorder", signed_message(upload(public_id), SECRET))
    ticks = iter([0.0, 0.0, 4.5, 4.5])  # claimed at 0; message a starts at 0; b would start 4.5 s in
    clock = lambda: next(ticks, 4.5)  # noqa: E731

    counts = drain(visibility_timeout=10, clock=clock, once=False, deadline=None,
                   stop=_stop_after_polls(fake, 2)).run()

    assert counts["messages"] == 1 and recorder.public_ids == ["samples/a"]
    assert fake.acked == [1] and [b.number for b in fake.pending()] == [2]


def _stop_after_polls(fake: FakeNotifications, polls: int) -> threading.Event:
    """A stop event set once the stand-in has answered ``polls`` claims (ends a drain that is not ``once``)."""
    stop = threading.Event()
    original = fake._receive

    def counting(query: dict[str, str]) -> Any:
        answer = original(query)
        if len(fake.requests("receive")) >= polls:
            stop.set()
        return answer

    fake._receive = counting
    return stop


def test_an_empty_poll_without_the_messages_key_ends_a_once_drain(fake):
    counts = drain().run()

    assert counts == {"messages": 0, "acked": 0, "kept": 0, "dead_letters": 0, "ack_failed": 0, "polls": 1,
                      "retries": 0}


# --- transient API errors ------------------------------------------------------------------------------------

def test_5xx_420_429_and_resets_during_a_poll_back_off_and_retry(fake):
    fake.publish("recorder", signed_message(upload("samples/dog"), SECRET))
    fake.fail_next("receive", Fault(502), Fault(500), Fault(420), Fault(429), Fault(reset=True), Fault(503))
    waits: list[float] = []
    retried: list[str] = []

    counts = drain(waits=waits, on_retry=lambda error, seconds: retried.append(error.message)).run()

    assert waits == [1, 2, 10, 10, 16, 32]  # doubling; at least 10 s after a rate limit
    assert len(retried) == 6 and all("notifications API is unavailable" in text for text in retried)
    assert (counts["acked"], counts["retries"]) == (1, 6)
    assert fake.acked == [1]


def test_the_backoff_starts_again_after_a_success(fake):
    fake.fail_next("receive", Fault(500), Fault(500))
    waits: list[float] = []
    first = drain(waits=waits)
    first.run()
    fake.fail_next("receive", Fault(500))
    first.once = True
    first.run()

    assert waits == [1, 2, 1]


def test_transient_errors_during_an_ack_are_retried(fake):
    fake.publish("recorder", signed_message(upload("samples/dog"), SECRET))
    fake.fail_next("ack", Fault(500), Fault(429))
    waits: list[float] = []

    counts = drain(waits=waits).run()

    assert counts["acked"] == 1 and waits == [1, 10]
    assert [seen.body for seen in fake.requests("ack")] == [{"receipt_handles": ["rh-1-1"]}] * 3
    assert fake.acked == [1]


def test_an_ack_that_keeps_failing_leaves_a_handled_message_for_redelivery(fake):
    fake.publish("recorder", signed_message(upload("samples/dog"), SECRET))
    fake.fail_next("ack", Fault(502), Fault(503), Fault(reset=True))
    outcomes: list[poll.Outcome] = []

    counts = drain(on_outcome=outcomes.append).run()

    assert counts["ack_failed"] == 1 and not outcomes[0].acked
    assert "it comes back" in outcomes[0].note
    fake.advance(60)
    assert drain().run()["acked"] == 1  # answered again (functions are idempotent), and acknowledged this time
    assert recorder.public_ids == ["samples/dog", "samples/dog"] and not fake.pending()


def test_a_dead_letter_whose_ack_fails_is_stored_once_when_it_comes_back(fake):
    fake.publish("recorder", signed_message(upload("samples/dog"), "forged"))
    fake.fail_next("ack", Fault(500), Fault(500), Fault(500))

    drain().run()
    fake.advance(60)
    counts = drain().run()

    assert counts["dead_letters"] == 1 and fake.acked == [1]
    (letter,) = store().letters()
    assert letter.deliveries == 2


def test_an_ack_cloudinary_does_not_confirm_is_not_counted_as_acknowledged(fake):
    fake.publish("recorder", signed_message(upload("samples/dog"), SECRET))
    fake.fail_next("ack", Fault(200, body={"results": [{"receipt_handle": "rh-1-1", "status": "expired"}]}))

    counts = drain().run()

    assert counts["ack_failed"] == 1


def test_a_once_drain_gives_up_after_max_failures(fake):
    fake.fail_next("receive", *[Fault(500)] * 5)

    with pytest.raises(poll.PermanentPollError, match="Gave up after 3 attempts"):
        drain(max_failures=3).run()


# --- permanent API errors ------------------------------------------------------------------------------------

def test_refused_credentials_are_a_permanent_error_without_retries(fake, monkeypatch):
    prefix = f"http://127.0.0.1:{fake._server.server_address[1]}"
    monkeypatch.setenv("CLOUDINARY_URL", f"cloudinary://{API_KEY}:wrong-secret@{CLOUD_NAME}?upload_prefix={prefix}")
    waits: list[float] = []

    with pytest.raises(poll.PermanentPollError, match="refused CLOUDINARY_URL's credentials") as raised:
        drain(waits=waits).run()

    assert waits == [] and "Invalid api_key" in raised.value.detail
    assert "wrong-secret" not in raised.value.message + raised.value.detail


def test_a_refused_parameter_is_a_permanent_error(fake):
    fake.fail_next("receive", Fault(400, body={"error": {"message": "Invalid channel name"}}))

    with pytest.raises(poll.PermanentPollError, match="rejected the notifications request"):
        drain().run()


def test_a_malformed_cloudinary_url_is_a_permanent_error(fake, monkeypatch):
    monkeypatch.setenv("CLOUDINARY_URL", "cloudinary://no-secret@cloud")

    with pytest.raises(poll.PermanentPollError, match="CLOUDINARY_URL must look like"):
        drain().run()


# --- stopping ------------------------------------------------------------------------------------------------

def test_a_stop_mid_batch_finishes_the_message_in_hand_and_leaves_the_rest_unacknowledged(fake):
    for public_id in ("samples/a", "samples/b", "samples/c"):
        fake.publish("recorder", signed_message(upload(public_id), SECRET))
    stop = threading.Event()
    recorder.during = lambda notification: stop.set()  # Ctrl-C while the first message is in hand

    counts = drain(stop=stop, once=False).run()

    assert recorder.public_ids == ["samples/a"]
    assert counts["acked"] == 1 and fake.acked == [1]
    assert [b.number for b in fake.pending()] == [2, 3]  # claimed, never acknowledged: they come back


def test_observers_see_each_message_with_its_answer(fake):
    fake.publish("recorder", signed_message(upload("samples/dog"), SECRET))
    fake.publish("recorder", {"receipt_handle": "ignored", "signed_payload": None})
    seen: list[tuple[str, str, Any, float]] = []

    def observer(function: str, message: Any, response: Any, ms: float) -> None:
        seen.append((function, message.get("receipt_handle"), response and response.status, ms))
        raise RuntimeError("an observer's bug is not the message's")

    drain(on_message=observer).run()

    assert [(function, handle, status) for function, handle, status, _ in seen] == [
        ("recorder", "rh-1-1", 200), ("recorder", "rh-2-1", None)]
    assert all(ms >= 0 for *_, ms in seen)
    assert fake.acked == [1, 2]


# --- scheduled drains: AWS Lambda and Vercel ----------------------------------------------------------------

SCHEDULED_EVENT = {
    "version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa", "detail-type": "Scheduled Event",
    "source": "aws.events", "account": "123456789012", "time": "2025-10-08T16:53:06Z", "region": "us-east-1",
    "resources": ["arn:aws:events:us-east-1:123456789012:rule/stack-RecorderFunctionPollSchedule-1"], "detail": {},
}


class LambdaContext:
    def __init__(self, millis: int) -> None:
        self.millis = millis

    def get_remaining_time_in_millis(self) -> int:
        return self.millis


def test_a_scheduled_lambda_invocation_drains_the_channel(fake, caplog):
    caplog.set_level(logging.INFO, logger="cloudinary_webhooks")
    fake.publish("recorder", signed_message(upload("samples/dog"), SECRET))
    fake.publish("recorder", signed_message(upload("samples/cat"), "forged"))
    dead_letter_db = store().target

    answer = handle.lambda_handler(SCHEDULED_EVENT, LambdaContext(14_000))

    assert answer == {"status": "drained", "channel": "recorder", "messages": 2, "acked": 1, "kept": 0,
                      "dead_letters": 1, "ack_failed": 0, "polls": 2, "retries": 0}
    assert fake.requests("receive")[0].query["wait_seconds"] == "0"
    assert fake.acked == [1, 2] and len(dead_letters.Store("sqlite", dead_letter_db).letters()) == 1
    summary = json.loads(caplog.records[-1].getMessage())
    assert summary["poll"] == "poll://recorder" and summary["trigger"] == "schedule" and summary["outcome"] == "drained"


def test_a_scheduled_drain_stops_before_the_lambda_timeout(fake):
    fake.publish("recorder", signed_message(upload("samples/dog"), SECRET))

    answer = handle.lambda_handler(SCHEDULED_EVENT, LambdaContext(3_000))  # 3 s - 2 s margin < 2 s per message

    assert answer["polls"] == 0 and fake.seen == []


def test_a_scheduled_drain_that_cannot_reach_cloudinary_in_time_says_so(fake, slept, caplog):
    caplog.set_level(logging.INFO, logger="cloudinary_webhooks")
    fake.fail_next("receive", *[Fault(503)] * 10)

    answer = handle.lambda_handler(SCHEDULED_EVENT, LambdaContext(14_000))

    assert answer["status"] == "unavailable" and slept == [1, 2, 4]  # the next wait (8 s) would outlast the drain
    assert caplog.records[-1].levelno == logging.WARNING


def test_a_scheduled_drain_with_refused_credentials_fails_the_invocation(fake, monkeypatch, caplog):
    prefix = f"http://127.0.0.1:{fake._server.server_address[1]}"
    monkeypatch.setenv("CLOUDINARY_URL", f"cloudinary://{API_KEY}:wrong@{CLOUD_NAME}?upload_prefix={prefix}")

    with pytest.raises(poll.PermanentPollError):
        handle.lambda_handler(SCHEDULED_EVENT, LambdaContext(14_000))

    line = json.loads(caplog.records[-1].getMessage())
    assert line["outcome"] == "error" and "credentials" in line["error"]


def test_an_http_event_still_reaches_the_function(fake):
    from tests.helpers import function_url_event

    answer = handle.lambda_handler(function_url_event(upload("samples/dog")), LambdaContext(14_000))

    assert answer["statusCode"] == 200 and fake.seen == []


def wsgi_get(app: Any, headers: dict[str, str]) -> tuple[int, dict[str, str], Any]:
    from werkzeug.test import Client

    response = Client(app).get("/api/recorder", headers=headers)
    return response.status_code, dict(response.headers), response.get_json(silent=True)


def test_a_vercel_cron_request_with_the_cron_secret_drains(fake, monkeypatch):
    monkeypatch.setenv("CRON_SECRET", "cron-secret-at-least-16-chars")
    fake.publish("recorder", signed_message(upload("samples/dog"), SECRET))

    status, _, body = wsgi_get(handle.wsgi_app, {"Authorization": "Bearer cron-secret-at-least-16-chars",
                                                 "User-Agent": "vercel-cron/1.0"})

    assert status == 200 and body["status"] == "drained" and body["acked"] == 1
    assert fake.acked == [1]


@pytest.mark.parametrize("headers", [{"Authorization": "Bearer wrong"},
                                     {"Authorization": "cron-secret-at-least-16-chars"},
                                     {"User-Agent": "vercel-cron/1.0"}], ids=["wrong", "no-bearer", "no-header"])
def test_a_cron_request_without_the_right_secret_is_401_and_drains_nothing(fake, monkeypatch, headers):
    monkeypatch.setenv("CRON_SECRET", "cron-secret-at-least-16-chars")
    fake.publish("recorder", signed_message(upload("samples/dog"), SECRET))

    status, _, body = wsgi_get(handle.wsgi_app, headers)

    assert status == 401 and body["error"] == "invalid_cron_secret"
    assert fake.seen == []


@pytest.mark.parametrize("headers", [{"Authorization": "Bearer "}, {"Authorization": "Bearer anything"},
                                     {"User-Agent": "vercel-cron/1.0"}])
def test_without_cron_secret_configured_a_cron_request_is_500_never_a_drain(fake, headers):
    fake.publish("recorder", signed_message(upload("samples/dog"), SECRET))

    status, _, body = wsgi_get(handle.wsgi_app, headers)

    assert status == 500 and body["error"] == "not_configured"
    assert fake.seen == []


def test_a_plain_get_is_still_405(fake, monkeypatch):
    monkeypatch.setenv("CRON_SECRET", "cron-secret-at-least-16-chars")

    status, headers, _ = wsgi_get(handle.wsgi_app, {"User-Agent": "curl/8.5"})

    assert status == 405 and headers["Allow"] == "POST" and fake.seen == []


# --- the dead-letter store -----------------------------------------------------------------------------------

def test_the_store_keeps_bytes_exactly_and_counts_arrivals(fake, tmp_path):
    letters = dead_letters.Store("sqlite", str(tmp_path / "letters.sqlite3"))
    body = b'{"a":\xff\x00"binary-safe"}'

    first = letters.add("f", body, "1700000000", "ab" * 20, status=401, answer={"error": "signature_mismatch"},
                        channel="f", now=1.0)
    again = letters.add("f", body, "1700000000", "ab" * 20, status=500, answer={"error": "not_configured"}, now=2.0)
    other = letters.add("f", body, "1700000001", "ab" * 20, status=401, answer={}, now=3.0)

    assert first == again != other
    stored = letters.get(first)
    assert stored.body == body and stored.deliveries == 2 and stored.status == 500 and stored.last_seen == 2.0
    letters.record_replay(first, 401, {"error": "signature_mismatch"})
    assert letters.get(first).replays == 1 and letters.get(first).error == "signature_mismatch"
    assert letters.remove(first) and not letters.remove(first)
    assert [letter.id for letter in letters.letters()] == [other]


def test_the_store_follows_database_url(fake, monkeypatch, tmp_path):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/from-url.sqlite3")

    assert dead_letters.open_store().target == f"{tmp_path}/from-url.sqlite3"
    monkeypatch.setenv("DATABASE_URL", "mysql://nope")
    with pytest.raises(ConfigError) as malformed:
        dead_letters.open_store()
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/x.sqlite3")
    monkeypatch.setenv("VERCEL", "1")
    with pytest.raises(ConfigError) as wiped:
        dead_letters.open_store()

    assert "must be sqlite:///" in malformed.value.log_detail
    assert "on Vercel is wiped" in wiped.value.log_detail


def test_the_store_on_postgresql(fake, monkeypatch):
    url = os.environ.get("TEST_DATABASE_URL", "")
    if not url:
        pytest.fail("TEST_DATABASE_URL is not set, so there is no PostgreSQL to test against: run the tests with "
                    "`make test` (scripts/postgres.sh starts a throwaway one).", pytrace=False)
    monkeypatch.setenv("DATABASE_URL", url)
    letters = dead_letters.open_store()
    with pg.admin(url) as connection:
        connection.execute("DROP TABLE IF EXISTS webhook_dead_letters")
    fake.publish("recorder", signed_message(upload("samples/dog"), "forged"))

    drain().run()
    drain().run()

    (letter,) = letters.letters()
    assert letter.status == 401 and letter.body == json.dumps(upload("samples/dog"), separators=(",", ":")).encode()
    assert letters.remove(letter.id) and letters.letters() == []


def test_a_store_that_cannot_be_reached_is_unavailable_without_its_password(fake):
    letters = dead_letters.Store("postgresql", "postgresql://user:s3cret-pw@127.0.0.1:9/none", timeout=1)

    with pytest.raises(dead_letters.StoreUnavailable) as raised:
        letters.letters()

    assert "s3cret-pw" not in str(raised.value)


def test_postgresql_without_its_driver_is_a_configuration_error_and_the_message_stays(fake, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "psycopg2", None)  # a bundle built without psycopg2
    monkeypatch.setenv("DATABASE_URL", "postgresql://user:pw@127.0.0.1:5432/db")
    fake.publish("recorder", signed_message(upload("samples/dog"), "forged"))
    outcomes: list[poll.Outcome] = []

    counts = drain(on_outcome=outcomes.append).run()

    assert counts["kept"] == 1 and fake.requests("ack") == []
    assert "psycopg2 is not installed" in outcomes[0].note
