"""The bad-input properties again, writing for real (issue 12: DRY_RUN=1 hid what a database cannot hold).

asset_sync records every notification into a real SQLite file and a real PostgreSQL database, with the same
odd values the dry-run properties draw (NUL characters, NaN, 1e400, lone surrogates, wrong types, deep
nesting...) and Cloudinary's own samples with random extra fields. Whatever is drawn, a signed notification is
never a 5xx (a 503 would make Cloudinary retry, then drop it), and one that is answered 200 is in the event log:
nothing accepted is lost. eager_email sends through a SendGrid stand-in and records each notification in a
real idempotency store: a second delivery of the same body never sends a second email.
"""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from functions.asset_sync import db
from tests.functions.asset_sync_support import fresh_database
from tests.helpers import SECRET
from tests.robustness.conftest import COUNTS, PROFILE
from tests.robustness.test_bad_input import (
    NOW,
    Wire,
    extra_fields,
    load,
    odd_notification,
    send,
    signed_headers,
)

EXAMPLES = itertools.count()

pytestmark = pytest.mark.slow  # the robustness suites: `make test` runs them, `make test-fast` does not


def event_count(url: str) -> int:
    store = db.store(url)
    with store.transaction():
        return int(store.execute("SELECT COUNT(*) AS n FROM cloudinary_events").fetchone()["n"])


@pytest.fixture(params=["sqlite", "postgresql"])
def asset_sync(request, tmp_path, monkeypatch):
    monkeypatch.setenv("CLOUDINARY_NOTIFICATION_SECRETS", SECRET)
    monkeypatch.delenv("DRY_RUN", raising=False)
    function = load("asset_sync")
    monkeypatch.setattr(function.module.handle, "clock", lambda: float(NOW))
    for url in fresh_database(request.param, tmp_path, monkeypatch):
        db.store(url).migrate()  # the tables, so that counting events works before the first notification
        yield function, url, request.param


@PROFILE
@given(data=st.data())
def test_odd_values_are_recorded_or_refused_never_a_5xx(asset_sync, data: st.DataObject) -> None:
    function, url, kind = asset_sync
    what, body = data.draw(odd_notification(function))
    before = event_count(url)

    status, answer = send(function, Wire("POST", signed_headers(body), body, "wsgi"))

    COUNTS[f"real writes: asset_sync odd values into {kind}"] += 1
    assert status in (200, 400), f"asset_sync on {kind}, signed {what}: answered {status} {answer}"
    if status == 200 and answer.get("status") == "done":
        assert event_count(url) == before + 1, f"{what}: answered done, but no event was recorded"
    if status == 400:
        assert event_count(url) == before, f"{what}: refused, yet something was recorded"


@PROFILE
@given(data=st.data())
def test_every_sample_with_extra_fields_is_recorded_once(asset_sync, data: st.DataObject) -> None:
    function, url, kind = asset_sync
    name = data.draw(st.sampled_from(sorted(function.samples)))
    payload, added = data.draw(extra_fields(json.loads(function.samples[name])))
    payload["x_example"] = next(EXAMPLES)  # examples share the database: each one is a new notification
    body = json.dumps(payload).encode()
    before = event_count(url)

    first = send(function, Wire("POST", signed_headers(body), body, "wsgi"))
    again = send(function, Wire("POST", signed_headers(body), body, "function_url"))

    COUNTS[f"real writes: asset_sync samples with extra fields into {kind}"] += 1
    context = f"asset_sync on {kind}: {name} with {added}"
    assert first[0] == 200 and first[1]["status"] == "done", (context, first)
    assert again[0] == 200 and again[1]["status"] == "ignored", (context, again)  # a repeat is not re-applied
    assert event_count(url) == before + 1, context


@pytest.fixture
def eager_email(sendgrid_server, tmp_path, monkeypatch):
    monkeypatch.setenv("CLOUDINARY_NOTIFICATION_SECRETS", SECRET)
    monkeypatch.setenv("FROM_VERIFIED_SENDER", "media@brand.example")
    monkeypatch.setenv("TO_RECIPIENTS", "ana@brand.example")
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/sent.sqlite3")
    monkeypatch.delenv("DRY_RUN", raising=False)
    sendgrid_server.expect_request("/v3/mail/send", method="POST").respond_with_data("", status=202)
    function = load("eager_email")
    monkeypatch.setattr(function.module.handle, "clock", lambda: float(NOW))
    return function, sendgrid_server


@PROFILE
@given(data=st.data())
def test_odd_eager_notifications_send_at_most_one_email_each(eager_email, data: st.DataObject) -> None:
    function, server = eager_email
    what, body = data.draw(odd_notification(function))
    sent_before = len(server.log)

    first = send(function, Wire("POST", signed_headers(body), body, "wsgi"))
    again = send(function, Wire("POST", signed_headers(body), body, "lambda_v2"))

    COUNTS["real writes: eager_email odd values, sent and replayed"] += 1
    assert first[0] in (200, 400) and again[0] == first[0], (what, first, again)
    assert len(server.log) - sent_before == (1 if first[1].get("status") == "done" else 0), what
