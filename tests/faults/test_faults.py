"""Faults: every outbound Cloudinary call of every scenario fails in each way Cloudinary can fail.

For each (scenario, call, fault): the answer is the status the design promises (503 where a retry can fix
it, so Cloudinary retries; 200 when the asset is gone), nothing is half-done in a way a retry cannot finish,
and a retry of the same notification completes the work: the final state equals the happy path's.
The suite prints its counts (faults injected, retries, writes, lost work)."""

from __future__ import annotations

import contextlib
import importlib

import pytest

from tests.fakes.cloudinary import RETRYABLE_FAULTS, FakeCloudinary, Fault
from tests.faults.scenarios import SCENARIOS, Scenario
from tests.helpers import API_KEY, CLOUD_NAME, SECRET, signed_request

pytestmark = pytest.mark.slow  # the robustness suites: `make test` runs them, `make test-fast` does not

TOTALS = {"faults injected": 0, "retries that completed the work": 0, "work lost": 0}


def run(scenario: Scenario, monkeypatch) -> tuple[int, dict]:
    handle = importlib.import_module(f"functions.{scenario.function}.handler").handle
    for name, value in scenario.env.items():
        monkeypatch.setenv(name, value)
    response = handle(signed_request(scenario.notification))
    return response.status, response.body


def happy_calls(scenario: Scenario, fake: FakeCloudinary, monkeypatch) -> int:
    scenario.setup(fake)
    status, body = run(scenario, monkeypatch)
    assert status == 200 and body["status"] == "done", body
    assert scenario.done(fake), "the happy path did not finish the work"
    return len(fake.calls)


def cases():
    for scenario in SCENARIOS:
        for fault_name in [*RETRYABLE_FAULTS, "404 not found"]:
            yield pytest.param(scenario, fault_name, id=f"{scenario.name} / {fault_name}")


@pytest.fixture
def fast_timeouts(monkeypatch):
    monkeypatch.setenv("CLOUDINARY_TIMEOUT_SECONDS", "0.3")


@contextlib.contextmanager
def fresh_fake(monkeypatch):
    fake = FakeCloudinary(CLOUD_NAME)
    prefix = fake.start()
    monkeypatch.setenv("CLOUDINARY_URL", f"cloudinary://{API_KEY}:{SECRET}@{CLOUD_NAME}?upload_prefix={prefix}")
    try:
        yield fake
    finally:
        fake.stop()


@pytest.mark.parametrize(("scenario", "fault_name"), list(cases()))
def test_each_call_failing_then_retried(scenario, fault_name, monkeypatch, fast_timeouts):
    with fresh_fake(monkeypatch) as probe:
        calls = happy_calls(scenario, probe, monkeypatch)

    for index in range(calls):
        with fresh_fake(monkeypatch) as fake:
            scenario.setup(fake)
            fault = Fault("status", 404) if fault_name == "404 not found" else RETRYABLE_FAULTS[fault_name]
            fake.fail_call(index, fault)
            TOTALS["faults injected"] += 1

            status, body = run(scenario, monkeypatch)

            assert fake.calls[index].fault is not None, f"call {index} was never made"
            writes_after_fault = [call for call in fake.calls[index + 1:] if call.is_write]
            assert writes_after_fault == [], f"kept writing after a fault on call {index}"
            if fault_name == "404 not found":
                assert status == scenario.status_on_not_found, body
                continue
            assert status == 503, (index, body)

            fake.clear_faults()
            status, body = run(scenario, monkeypatch)  # Cloudinary's retry of the same notification
            assert status == 200, body
            finished = scenario.done(fake)
            TOTALS["retries that completed the work" if finished else "work lost"] += 1
            assert finished, f"the retry after a fault on call {index} did not finish the work"
