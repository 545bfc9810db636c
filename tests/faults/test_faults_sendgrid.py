"""Faults: SendGrid fails in each way it can, for every function that emails (issue 7, item 2).

eager_email emails the recipients a summary; bg_removal_approval, with BG_REMOVAL_REVIEWER_EMAIL set,
queues the cut-out for review (Cloudinary), emails the reviewers, then tags the asset as notified. Both
talk to a SendGrid stand-in (tests/fakes/sendgrid.py) that counts the messages it accepts; bg_removal's
Cloudinary is the stateful stand-in of tests/fakes/cloudinary.py. Each outbound call of each scenario is
failed in turn (tests/fakes/wire.py tells the calls apart across both services). For each (call, fault):

- the answer is the status the design promises: 503 when a retry can fix it, 500 when SendGrid refuses
  the key, the sender or the message (400/401/403; a retry cannot fix those), 200 for a 2xx whose body is
  not SendGrid's (it accepted) or a Cloudinary 404 (the asset is gone);
- nothing is written after a failed call;
- Cloudinary's retry of the same notification completes the work: exactly one accepted message per
  recipient set in total, and for bg_removal one queueing (explicit) in total, the asset pending review
  and tagged as notified.
"""

from __future__ import annotations

import contextlib
import importlib
import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.fakes.cloudinary import RETRYABLE_FAULTS, FakeCloudinary, Fault
from tests.fakes.sendgrid import FakeSendGrid
from tests.fakes.wire import Wire, WiredCloudinary
from tests.helpers import API_KEY, CLOUD_NAME, SECRET, sample, signed_request

pytestmark = pytest.mark.slow  # the robustness suites: `make test` runs them, `make test-fast` does not

NOTIFIED_TAG = "bg-removal-reviewer-notified"

# SendGrid's answers a retry can fix: 503, and the next delivery sends the email.
SENDGRID_RETRYABLE = {
    "stall (client timeout)": Fault("stall"),
    "connection reset": Fault("reset"),
    "429 with Retry-After": Fault("status", 429, {"Retry-After": "60", "X-RateLimit-Remaining": "0"}),
    "429 without headers": Fault("status", 429),
    "500": Fault("status", 500),
    "502": Fault("status", 502),
    "503": Fault("status", 503),
}
# A bad key, an unverified sender, a message SendGrid will not take: 500, nothing else done.
SENDGRID_REFUSED = {
    "400 bad request": Fault("status", 400),
    "401 bad key": Fault("status", 401),
    "403 sender not verified": Fault("status", 403),
}
SENDGRID_ACCEPTED_ODDLY = {"malformed success body": Fault("garbage")}  # a 2xx: it was sent
CLOUDINARY_RETRYABLE = RETRYABLE_FAULTS  # tests/fakes/cloudinary.py
CLOUDINARY_GONE = {"404 not found": Fault("status", 404)}

TOTALS = {"faults injected": 0, "retries that completed the work": 0, "messages accepted": 0,
          "duplicate messages": 0, "work lost": 0}


@dataclass
class Scenario:
    name: str
    function: str
    notification: dict[str, Any]
    env: dict[str, str]
    recipients: tuple[str, ...]  # the recipient set of the one message the work sends
    calls: list[str]  # the happy path's outbound calls, in order, as "service operation"
    setup: Callable[[FakeCloudinary], None] | None = None
    done: Callable[[FakeCloudinary], bool] | None = None  # the Cloudinary side, as the happy path leaves it
    # Calls after which a retry repeats the email: the marker tag that says "sent" failed to be written.
    resends_after: set[int] = field(default_factory=set)


BG_INFO = json.loads(sample("bg_removal_approval", "info_complete"))
REVIEWERS = ("lea@brand.example", "sam@brand.example")


def _bg_setup(fake: FakeCloudinary) -> None:
    fake.add_asset(BG_INFO["public_id"], type="authenticated", format="png", asset_id=BG_INFO["asset_id"])


def _bg_done(fake: FakeCloudinary) -> bool:
    asset = fake.asset(BG_INFO["public_id"], type="authenticated")
    return (asset is not None and asset["moderation"] == [{"kind": "manual", "status": "pending"}]
            and asset["tags"].count(NOTIFIED_TAG) == 1)


SCENARIOS = [
    Scenario(
        name="eager_email: summary to three recipients",
        function="eager_email",
        notification=json.loads(sample("eager_email", "eager")),
        env={"FROM_VERIFIED_SENDER": "media@brand.example",
             "TO_RECIPIENTS": "ana@brand.example, ben@brand.example cy@brand.example",
             "CLOUDINARY_NOTIFICATION_SECRETS": SECRET},
        recipients=("ana@brand.example", "ben@brand.example", "cy@brand.example"),
        calls=["sendgrid mail/send"],
    ),
    Scenario(
        name="bg_removal_approval: queued, reviewers emailed",
        function="bg_removal_approval",
        notification=BG_INFO,
        env={"FROM_VERIFIED_SENDER": "media@brand.example", "BG_REMOVAL_REVIEWER_EMAIL": " ".join(REVIEWERS),
             "BG_REMOVAL_NOTIFICATION_URL": "https://hooks.example.com/api/bg_removal_approval"},
        recipients=REVIEWERS,
        calls=["cloudinary resource", "cloudinary explicit", "sendgrid mail/send", "cloudinary tags"],
        setup=_bg_setup,
        done=_bg_done,
        resends_after={3},
    ),
]


class World:
    """The stand-ins of one test: the wire, SendGrid, and (for bg_removal) Cloudinary."""

    def __init__(self, scenario: Scenario, monkeypatch: pytest.MonkeyPatch) -> None:
        self.scenario = scenario
        self.monkeypatch = monkeypatch
        self.wire = Wire()
        self.sendgrid = FakeSendGrid(self.wire)
        self.cloudinary: WiredCloudinary | None = None

    @contextlib.contextmanager
    def running(self) -> Iterator[World]:
        self.monkeypatch.setenv("SENDGRID_API_HOST", self.sendgrid.start())
        self.monkeypatch.setenv("SENDGRID_API_KEY", "SG.test-key")
        self.monkeypatch.setenv("SENDGRID_TIMEOUT_SECONDS", "0.3")
        self.monkeypatch.setenv("CLOUDINARY_TIMEOUT_SECONDS", "0.3")
        for name, value in self.scenario.env.items():
            self.monkeypatch.setenv(name, value)
        try:
            if self.scenario.setup is not None:
                self.cloudinary = WiredCloudinary(CLOUD_NAME, self.wire)
                prefix = self.cloudinary.start()
                self.monkeypatch.setenv("CLOUDINARY_URL",
                                        f"cloudinary://{API_KEY}:{SECRET}@{CLOUD_NAME}?upload_prefix={prefix}")
                self.scenario.setup(self.cloudinary)
            yield self
        finally:
            self.sendgrid.stop()
            if self.cloudinary is not None:
                self.cloudinary.stop()

    def run(self) -> tuple[int, dict[str, Any]]:
        handle = importlib.import_module(f"functions.{self.scenario.function}.handler").handle
        response = handle(signed_request(self.scenario.notification))
        return response.status, response.body

    def messages_per_recipient_set(self) -> Counter:
        return Counter(request.recipients for request in self.sendgrid.accepted)

    def explicit_calls_applied(self) -> int:
        if self.cloudinary is None:
            return 0
        return sum(1 for call in self.cloudinary.calls if call.action == "explicit" and call.fault is None)

    def done(self) -> bool:
        return self.scenario.done is None or (self.cloudinary is not None and self.scenario.done(self.cloudinary))


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_happy_path_makes_exactly_these_calls(scenario, monkeypatch):
    """The call lists the fault cases below are built from: one message, one queueing, one marker tag."""
    with World(scenario, monkeypatch).running() as world:
        status, body = world.run()

        assert status == 200 and body["status"] == "done", body
        assert [str(call) for call in world.wire.calls] == scenario.calls
        assert world.messages_per_recipient_set() == {scenario.recipients: 1}
        [message] = world.sendgrid.accepted
        assert message.authorization == "Bearer SG.test-key"
        assert all(len(personalization["to"]) == 1 for personalization in message.message["personalizations"])
        assert world.done()
        assert world.explicit_calls_applied() == (1 if scenario.setup else 0)

        again_status, again = world.run()  # a resend after success: nothing more, for bg_removal
        if scenario.function == "bg_removal_approval":
            assert again_status == 200 and again == {"status": "ignored", "reason": "already waiting for review"}
            assert len(world.sendgrid.accepted) == 1 and world.explicit_calls_applied() == 1


def cases() -> Iterator[Any]:
    for scenario in SCENARIOS:
        for index, call in enumerate(scenario.calls):
            service = call.split()[0]
            faults = ({**SENDGRID_RETRYABLE, **SENDGRID_REFUSED, **SENDGRID_ACCEPTED_ODDLY} if service == "sendgrid"
                      else {**CLOUDINARY_RETRYABLE, **CLOUDINARY_GONE})
            for fault_name, fault in faults.items():
                yield pytest.param(scenario, index, fault_name, fault,
                                   id=f"{scenario.name} / #{index} {call} / {fault_name}")


@pytest.mark.parametrize(("scenario", "index", "fault_name", "fault"), list(cases()))
def test_each_call_failing_then_retried(scenario, index, fault_name, fault, monkeypatch):
    service = scenario.calls[index].split()[0]
    with World(scenario, monkeypatch).running() as world:
        world.wire.fail_call(index, fault)
        TOTALS["faults injected"] += 1

        status, body = world.run()

        failed = world.wire.calls[index]
        assert str(failed) == scenario.calls[index] and failed.fault is fault, "the faulted call was not made"
        writes_after = [str(call) for call in world.wire.calls[index + 1:] if call.is_write]

        if service == "sendgrid" and fault_name in SENDGRID_ACCEPTED_ODDLY:
            # A 2xx is SendGrid's "accepted", whatever its body: the work is done, nothing to retry.
            assert status == 200 and body["status"] == "done", body
            assert world.messages_per_recipient_set() == {scenario.recipients: 1}
            assert world.done() and world.explicit_calls_applied() == (1 if scenario.setup else 0)
            TOTALS["messages accepted"] += len(world.sendgrid.accepted)
            return

        assert writes_after == [], f"kept writing after a fault on call {index}: {writes_after}"
        if fault_name in SENDGRID_REFUSED:
            assert status == 500 and body["error"] == "sendgrid_rejected", body
            assert world.sendgrid.accepted == []
            assert world.explicit_calls_applied() == (1 if scenario.setup else 0)  # done before the email
            return
        if fault_name in CLOUDINARY_GONE:
            assert status == 200 and body["status"] == "ignored", body
            return
        assert status == 503, (index, body)
        assert body["error"] in ("sendgrid_unavailable", "cloudinary_unavailable", "cloudinary_rate_limited"), body
        sent_before_retry = len(world.sendgrid.accepted)
        assert sent_before_retry == (1 if index > scenario.calls.index("sendgrid mail/send") else 0)

        world.wire.clear_faults()
        status, body = world.run()  # Cloudinary's retry of the same notification

        assert status == 200 and body["status"] == "done", body
        expected = 2 if index in scenario.resends_after else 1
        per_set = world.messages_per_recipient_set()
        assert per_set == {scenario.recipients: expected}, per_set
        TOTALS["messages accepted"] += sum(per_set.values())
        TOTALS["duplicate messages"] += expected - 1
        assert world.explicit_calls_applied() == (1 if scenario.setup else 0), "queued for review twice"
        finished = world.done()
        TOTALS["retries that completed the work" if finished else "work lost"] += 1
        assert finished, f"the retry after a fault on call {index} did not finish the work"
