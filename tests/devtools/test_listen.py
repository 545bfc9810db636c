"""``python -m shared listen`` and ``dead-letters``: the command line around shared.poll, against the
notifications API stand-in (tests/fakes/notifications.py) reached through CLOUDINARY_URL's upload_prefix.

The story the README tells runs here end to end: an upload notification buffered in poll://hello_tag is
drained by `listen`, hello_tag tags the image with one Upload API call, the message is acknowledged. A
notification signed with a rotated secret becomes a dead letter, and `dead-letters replay` delivers it once
CLOUDINARY_NOTIFICATION_SECRETS holds that secret.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from typing import Any

import pytest

from devtools import cli, listen
from shared import dead_letters
from shared.webhook import Context, Notification, Result, webhook
from tests.fakes.notifications import FakeNotifications, Fault, signed_message
from tests.helpers import API_KEY, CLOUD_NAME, SECRET

ROTATED_SECRET = "rotated-api-secret-Kp4"


def upload(public_id: str, **extra: Any) -> dict[str, Any]:
    return {"notification_type": "upload", "public_id": public_id, "resource_type": "image", "type": "upload",
            "asset_id": "3515c6000a548515f1134043f9785c2f", "version": 1700000000, **extra}


@pytest.fixture
def fake(monkeypatch, tmp_path):
    stand_in = FakeNotifications(CLOUD_NAME, API_KEY, SECRET)
    prefix = stand_in.start()
    monkeypatch.setenv("CLOUDINARY_URL", f"cloudinary://{API_KEY}:{SECRET}@{CLOUD_NAME}?upload_prefix={prefix}")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setattr(dead_letters, "DEFAULT_SQLITE_PATH", str(tmp_path / "dead-letters.sqlite3"))
    stand_in.prefix = prefix
    yield stand_in
    stand_in.stop()


@pytest.fixture(autouse=True)
def quiet(monkeypatch, tmp_path):
    """Backoff waits recorded, not slept; the inspector's store this test's own; the functions' log level put
    back after `listen` set it."""
    waits: list[float] = []
    monkeypatch.setattr(listen, "SLEEP", waits.append)
    monkeypatch.setattr(listen, "OBSERVERS", [])
    monkeypatch.setenv("INSPECTOR_DB", str(tmp_path / "inspector.sqlite3"))
    logger = logging.getLogger("cloudinary_webhooks")
    level = logger.level
    yield waits
    logger.setLevel(level)


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    status = cli.main(list(args))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def message_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line[:2].isdigit() and line[2] == ":"]


# --- listen ------------------------------------------------------------------------------------------------

def test_an_upload_reaches_hello_tag_which_tags_it_and_the_message_is_acknowledged(fake, capsys):
    fake.publish("hello_tag", signed_message(upload("samples/dog"), SECRET))

    status, out, err = run_cli(capsys, "listen", "hello_tag", "--once", "--wait", "0")

    assert status == 0, err
    assert f"Listening to 1 poll channel(s) of Cloudinary account {CLOUD_NAME}" in out
    assert "  hello_tag  poll://hello_tag" in out
    (line,) = message_lines(out)
    assert line.split("  ")[1:5] == ["hello_tag", "upload", "samples/dog", "200 done"]
    assert "  acknowledged  " in line and line.endswith(" ms")
    assert fake.tagged == [("Hello World!", "samples/dog")]  # the Upload API call hello_tag makes
    assert fake.acked == [1] and not fake.pending()
    assert "Done: 1 message(s): 1 acknowledged, 0 dead letter(s), 0 left for redelivery." in out
    assert fake.requests("receive")[0].query == {"channel": "hello_tag", "max_messages": "10", "wait_seconds": "0",
                                                "visibility_timeout": "60"}
    assert fake.requests("ack")[0].body == {"receipt_handles": ["rh-1-1"]}


def test_what_listen_handled_shows_in_the_inspector(fake, capsys):
    from devtools import inspector

    fake.publish("hello_tag", signed_message(upload("samples/dog"), SECRET))
    fake.publish("hello_tag", signed_message(upload("samples/cat"), "forged"))

    run_cli(capsys, "listen", "hello_tag", "--once", "--wait", "0")

    entries = inspector.default_store().latest()
    assert sorted((entry["source"], entry["public_id"], entry["status"]) for entry in entries) == [
        ("listen", "samples/cat", 401), ("listen", "samples/dog", 200)]


def test_channel_overrides_the_channel_of_one_function(fake, capsys):
    fake.publish("staging-tags", signed_message(upload("samples/dog"), SECRET))

    status, out, _ = run_cli(capsys, "listen", "hello_tag", "--channel", "staging-tags", "--once", "--wait", "0")

    assert status == 0 and "poll://staging-tags" in out
    assert fake.requests("receive")[0].query["channel"] == "staging-tags" and fake.acked == [1]


def test_channel_with_several_functions_is_a_usage_error(fake, capsys):
    status, _, err = run_cli(capsys, "listen", "hello_tag", "eager_email", "--channel", "x")

    assert status == 2 and "--channel sets the channel of one function" in err and fake.seen == []


def test_an_unknown_function_is_one_line(fake, capsys):
    status, _, err = run_cli(capsys, "listen", "no_such_function")

    assert status == 2 and err.startswith("No function named 'no_such_function'") and err.count("\n") == 1


def test_in_demo_mode_it_says_what_to_set(capsys, monkeypatch):
    monkeypatch.delenv("CLOUDINARY_URL", raising=False)

    status, out, err = run_cli(capsys, "listen", "--once")

    assert status == 2 and out == "" and err.count("\n") == 1
    assert "set CLOUDINARY_URL=cloudinary://API_KEY:API_SECRET@CLOUD_NAME" in err
    assert "python -m shared triggers apply --poll" in err


def test_a_malformed_cloudinary_url_is_one_clear_line(capsys, monkeypatch):
    monkeypatch.setenv("CLOUDINARY_URL", "cloudinary://only-a-key@cloud")

    status, _, err = run_cli(capsys, "listen", "--once")

    assert status == 2 and err.count("\n") == 1
    assert err.startswith("CLOUDINARY_URL must look like cloudinary://API_KEY:API_SECRET@CLOUD_NAME")


def test_refused_credentials_are_one_line_and_exit_2(fake, capsys, monkeypatch, quiet):
    monkeypatch.setenv("CLOUDINARY_URL", f"cloudinary://{API_KEY}:wrong-secret@{CLOUD_NAME}?upload_prefix={fake.prefix}")

    status, out, err = run_cli(capsys, "listen", "hello_tag", "eager_email", "--once", "--wait", "0")

    assert status == 2 and quiet == []  # no retry: a refusal is not transient
    assert err.count("\n") == 1 and "Cloudinary refused CLOUDINARY_URL's credentials" in err
    assert "wrong-secret" not in out + err and "Traceback" not in out + err


def test_transient_errors_are_retried_with_a_line_each(fake, capsys, quiet):
    fake.publish("hello_tag", signed_message(upload("samples/dog"), SECRET))
    fake.fail_next("receive", Fault(502), Fault(429))

    status, out, _ = run_cli(capsys, "listen", "hello_tag", "--once", "--wait", "0")

    assert status == 0 and quiet == [1, 10]
    retries = [line for line in out.splitlines() if "retrying in" in line]
    assert len(retries) == 2 and retries[0].endswith("retrying in 1 s") and "Error 502" in retries[0]
    assert fake.acked == [1]


def test_once_gives_up_after_repeated_transient_errors(fake, capsys, quiet):
    fake.fail_next("receive", *[Fault(503)] * 10)

    status, _, err = run_cli(capsys, "listen", "hello_tag", "--once", "--wait", "0")

    assert status == 2 and len(quiet) == listen.ONCE_MAX_FAILURES - 1
    assert f"Gave up after {listen.ONCE_MAX_FAILURES} attempts" in err


def test_unconfigured_functions_are_named_at_the_start(fake, capsys, monkeypatch):
    monkeypatch.delenv("SENDGRID_API_KEY", raising=False)

    status, out, _ = run_cli(capsys, "listen", "eager_email", "hello_tag", "--once", "--wait", "0")

    assert status == 0
    (line,) = [line for line in out.splitlines() if "poll://eager_email" in line]
    assert "NOT CONFIGURED: SENDGRID_API_KEY" in line and "dead letters" in line
    assert {seen.query["channel"] for seen in fake.requests("receive")} == {"eager_email", "hello_tag"}


def test_a_refused_message_is_a_dead_letter_line(fake, capsys):
    fake.publish("hello_tag", signed_message(upload("samples/dog"), "forged"))

    status, out, _ = run_cli(capsys, "listen", "hello_tag", "--once", "--wait", "0")

    (line,) = message_lines(out)
    assert status == 0 and "401 signature_mismatch" in line and "dead letter #1, acknowledged" in line
    assert "See them: python -m shared dead-letters" in out


def test_a_503_line_says_it_is_left_for_redelivery(fake, capsys):
    fake.publish("hello_tag", signed_message(upload("samples/dog"), SECRET))
    fake.fail_next("tags", Fault(503))  # hello_tag's Upload API call: a retry can fix it

    status, out, _ = run_cli(capsys, "listen", "hello_tag", "--once", "--wait", "0")

    (line,) = message_lines(out)
    assert status == 0 and "503 cloudinary_unavailable" in line
    assert "NOT acknowledged: redelivered after the visibility timeout (60 s)" in line
    assert fake.requests("ack") == [] and len(fake.pending()) == 1


# --- several channels, observers, Ctrl-C --------------------------------------------------------------------

def recording(name: str, seen: list[str], during: Any = None):
    @webhook(accepts={"upload"}, name=name)
    def handle(notification: Notification, ctx: Context) -> Result:
        seen.append(f"{name}:{notification['public_id']}")
        if during:
            during(len(seen))
        return ctx.done()

    return handle


def test_every_channel_is_drained_at_once_and_observers_see_each_message(fake, capsys):
    seen: list[str] = []
    observed: list[tuple[str, int]] = []
    listen.OBSERVERS.append(lambda function, message, response, ms: observed.append((function, response.status)))
    for channel in ("alpha", "beta"):
        for number in (1, 2):
            fake.publish(channel, signed_message(upload(f"{channel}/{number}"), SECRET))

    status = listen.run({"alpha": recording("alpha", seen), "beta": recording("beta", seen)}, once=True,
                        wait_seconds=0)

    assert status == 0
    assert sorted(seen) == ["alpha:alpha/1", "alpha:alpha/2", "beta:beta/1", "beta:beta/2"]
    assert sorted(observed) == [("alpha", 200), ("alpha", 200), ("beta", 200), ("beta", 200)]
    assert sorted(fake.acked) == [1, 2, 3, 4]


def test_ctrl_c_finishes_the_message_in_hand_leaves_the_rest_unacknowledged_and_exits_0(fake, capsys):
    """A real SIGINT while the first of three messages is in hand: this thread gets the KeyboardInterrupt, as
    at a terminal; the function's thread finishes that message, acknowledges it, and takes no other."""
    stop = threading.Event()
    seen: list[str] = []

    def interrupt(count: int) -> None:
        if count == 1:
            os.kill(os.getpid(), signal.SIGINT)
            assert stop.wait(10), "the interrupt did not stop the drain"

    for number in (1, 2, 3):
        fake.publish("alpha", signed_message(upload(f"alpha/{number}"), SECRET))
    lines: list[str] = []

    status = listen.run({"alpha": recording("alpha", seen, interrupt)}, once=False, wait_seconds=0, stop=stop,
                        out=lines.append)

    assert status == 0
    assert seen == ["alpha:alpha/1"] and fake.acked == [1]
    assert [b.number for b in fake.pending()] == [2, 3]
    assert any(line.startswith("Stopping: finishing the message in hand") for line in lines)
    assert lines[-1].startswith("Stopped: 1 message(s): 1 acknowledged")


# --- dead-letters ------------------------------------------------------------------------------------------

def test_a_rotated_secret_dead_letter_is_listed_then_replayed_once_the_secret_is_configured(fake, capsys,
                                                                                           monkeypatch):
    message = signed_message(upload("samples/dog"), ROTATED_SECRET)  # Cloudinary signs with the new key
    fake.publish("hello_tag", message)
    run_cli(capsys, "listen", "hello_tag", "--once", "--wait", "0")
    assert fake.tagged == [] and fake.acked == [1]

    status, out, _ = run_cli(capsys, "dead-letters")
    assert status == 0 and "1 dead letter(s) in SQLite file" in out
    (row,) = [line for line in out.splitlines() if line.startswith("    1  ")]
    assert "hello_tag" in row and "upload" in row and "401 signature_mismatch" in row and "samples/dog" in row
    assert message["signature"] not in out

    status, out, _ = run_cli(capsys, "dead-letters", "replay", "1")  # not fixed yet: still refused, kept
    assert status == 1 and "#1  hello_tag  401 signature_mismatch  kept" in out
    assert dead_letters.open_store().get(1).replays == 1

    monkeypatch.setenv("CLOUDINARY_NOTIFICATION_SECRETS", ROTATED_SECRET)
    status, out, _ = run_cli(capsys, "dead-letters", "replay", "--all")

    assert status == 0 and "#1  hello_tag  200 done  removed" in out
    assert fake.tagged == [("Hello World!", "samples/dog")]
    assert dead_letters.open_store().letters() == []
    assert run_cli(capsys, "dead-letters")[1].startswith("No dead letters")


def test_replay_sends_the_stored_bytes_timestamp_and_signature(fake, monkeypatch):
    raw = b'{"public_id":"samples/dog",  "notification_type":"upload","resource_type":"image","type":"upload"}'
    message = signed_message(None, ROTATED_SECRET, raw=raw)
    store = dead_letters.open_store()
    letter_id = store.add("hello_tag", raw, message["timestamp"], message["signature"], status=401, answer={})
    seen: list[Any] = []
    hello = cli.load_webhook("hello_tag")
    monkeypatch.setattr(hello, "handler", lambda notification, ctx: seen.append(ctx.request) or ctx.done())
    monkeypatch.setenv("CLOUDINARY_NOTIFICATION_SECRETS", ROTATED_SECRET)

    response = listen.replay_letter(store.get(letter_id))

    assert response.status == 200
    (request,) = seen
    assert request.body == raw and request.method == "POST"
    assert request.headers["X-Cld-Timestamp"] == message["timestamp"]
    assert request.headers["X-Cld-Signature"] == message["signature"]
    assert request.headers["Content-Type"] == "application/json"


def test_a_stale_dead_letter_replays_with_max_age(fake, capsys, monkeypatch):
    monkeypatch.delenv("WEBHOOK_MAX_AGE_SECONDS", raising=False)
    monkeypatch.setenv("POLL_MAX_AGE_SECONDS", "3600")  # the channel's window, made shorter than the message's age
    three_hours_ago = int(time.time()) - 3 * 3600
    fake.publish("hello_tag", signed_message(upload("samples/old"), SECRET, timestamp=three_hours_ago))
    run_cli(capsys, "listen", "hello_tag", "--once", "--wait", "0")
    assert dead_letters.open_store().get(1).error == "stale_timestamp"

    status, out, _ = run_cli(capsys, "dead-letters", "replay", "1", "--max-age", "86400")

    assert status == 0 and "200 done  removed" in out and fake.tagged == [("Hello World!", "samples/old")]


def test_replay_usage_errors_are_one_line(fake, capsys):
    assert run_cli(capsys, "dead-letters", "replay")[0] == 2
    status, _, err = run_cli(capsys, "dead-letters", "replay", "7")
    assert status == 2 and err == "No dead letter #7: see `python -m shared dead-letters`.\n"
    status, _, err = run_cli(capsys, "dead-letters", "replay", "7", "--all")
    assert status == 2 and "or use --all" in err


def test_replay_without_any_signing_secret_says_so(capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("CLOUDINARY_URL", raising=False)
    monkeypatch.setattr(dead_letters, "DEFAULT_SQLITE_PATH", str(tmp_path / "dead-letters.sqlite3"))

    status, _, err = run_cli(capsys, "dead-letters", "replay", "--all")

    assert status == 2 and "No signing secret is configured" in err


def test_drop_forgets_a_dead_letter(fake, capsys):
    store = dead_letters.open_store()
    letter_id = store.add("hello_tag", b"{}", "1", "ab", status=400, answer={"error": "missing_field"})

    status, out, _ = run_cli(capsys, "dead-letters", "drop", str(letter_id), "99")

    assert status == 0 and out == f"#{letter_id}  dropped\n#99  not found\n"
    assert store.letters() == []


def test_the_store_in_database_url_is_the_one_listed(fake, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/shared.sqlite3")
    dead_letters.open_store().add("hello_tag", json.dumps(upload("x")).encode(), "1", "ab", status=400, answer={})

    status, out, _ = run_cli(capsys, "dead-letters", "list")

    assert status == 0 and f"SQLite file {tmp_path}/shared.sqlite3 (DATABASE_URL)" in out


def test_a_store_that_does_not_answer_is_one_line(capsys, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://user:s3cret@127.0.0.1:9/none?connect_timeout=1")

    status, _, err = run_cli(capsys, "dead-letters")

    assert status == 2 and err.startswith("the dead-letter store did not answer") and "s3cret" not in err
