"""asset_sync: a notification naming thousands of assets answers in time (issue 12, item 10).

A ``resource_tags_changed`` naming 8,000 assets took 14 s on PostgreSQL: four statements per asset, one
round trip each. Cloudinary gives up after 20 s (and retries, and gives up for good). Now:

- the asset rows are read, locked and written in batches (a few statements per 500 assets);
- a time budget (``ASSET_SYNC_TIME_BUDGET_SECONDS``, default 10) bounds the work of one request: when it runs
  out, what is done is committed with the event (marked partly applied, with its progress) and the answer is
  503; Cloudinary's retry continues from there. No row or event is ever doubled, and the result is the one a
  single unlimited run gives.

No test sleeps: the database's slowness is simulated by a clock that the statements themselves advance.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from functions.asset_sync import db
from functions.asset_sync.__main__ import main as cli
from tests.functions.asset_sync_support import events, fresh_database, mirror, reset, send


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path, monkeypatch, signing_secret) -> Iterator[str]:
    yield from fresh_database(request.param, tmp_path, monkeypatch)


def tags_change(count: int, *, added: str = "sale", second: int = 3) -> bytes:
    """A bulk tag change naming ``count`` assets, compact as Cloudinary's (under the 1 MiB body limit)."""
    payload = {"notification_type": "resource_tags_changed", "source": "api", "resources": [
        {"asset_id": f"{number:032x}", "public_id": f"shop/p{number}", "resource_type": "image", "type": "upload",
         "added": [added], "removed": []} for number in range(count)],
        "notification_context": {"triggered_at": f"2024-05-06T12:00:{second:02d}.000Z",
                                 "triggered_by": {"source": "api", "id": "614335564976464"}}}
    return json.dumps(payload, separators=(",", ":")).encode()


class Statements:
    """Counts the SQL statements the code under test sends (executemany counts once: one statement for many rows;
    PostgreSQL gets them a hundred rows a round trip)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, seconds_each: float = 0.0) -> None:
        self.count = 0
        self.now = 1000.0  # the simulated clock: each statement takes ``seconds_each``
        self.seconds_each = seconds_each
        execute, executemany = db.Store.execute, getattr(db.Store, "executemany", None)

        def counted_execute(store: db.Store, *args: Any, **kwargs: Any) -> Any:
            self.count += 1
            self.now += self.seconds_each
            return execute(store, *args, **kwargs)

        def counted_executemany(store: db.Store, *args: Any, **kwargs: Any) -> Any:
            self.count += 1
            self.now += self.seconds_each
            return executemany(store, *args, **kwargs)

        monkeypatch.setattr(db.Store, "execute", counted_execute)
        monkeypatch.setattr(db.Store, "executemany", counted_executemany, raising=executemany is not None)
        monkeypatch.setattr(db, "clock", lambda: self.now)


@pytest.mark.slow
def test_8000_assets_in_one_notification_are_written_in_batches(database, monkeypatch, capsys):
    monkeypatch.setenv("WEBHOOK_MAX_BODY_BYTES", str(2 * 1024 * 1024))
    statements = Statements(monkeypatch)
    timings = {}
    for label, body in (("new rows", tags_change(8000)), ("existing rows", tags_change(8000, added="new",
                                                                                          second=9))):
        statements.count = 0
        started = time.perf_counter()
        response = send(body)
        timings[label] = (round(time.perf_counter() - started, 2), statements.count)
        assert response.status == 200 and response.body["status"] == "done", response.body
        assert statements.count <= 120, f"{statements.count} statements for 8,000 assets ({label})"
    with capsys.disabled():
        print(f"\nasset_sync 8,000-asset tags change on {db.parse_url(database)[0]}: (seconds, statements) {timings}")

    rows = db.store(database).assets()
    assert len(rows) == 8000 and all(row["tags"] == ["new", "sale"] for row in rows)
    assert len(events(database)) == 2
    # the answer lists a sample of the assets, not 8,000 of them
    [action] = response.body["actions"]
    assert len(action["assets"]) <= 50 and action["assets_total"] == 8000


@pytest.mark.slow
def test_when_the_budget_runs_out_the_retry_finishes_without_doubling_anything(database, monkeypatch):
    body = tags_change(2000)
    reference = _applied_without_a_budget(database, monkeypatch, body)
    reset(database)
    assert cli(["migrate"]) == 0  # (once per database: its statements are not what is timed here)
    monkeypatch.setenv("ASSET_SYNC_TIME_BUDGET_SECONDS", "10")
    statements = Statements(monkeypatch, seconds_each=1.5)  # a slow database: 1.5 s per round trip

    answers, states = [], []
    for _attempt in range(10):  # Cloudinary's retries
        started = statements.now
        response = send(body)
        answers.append((response.status, response.body.get("status") or response.body.get("error")))
        assert statements.now - started <= 10.0 + 1.5, "answered after the budget"
        [event] = events(database)
        states.append((event["state"], event["progress"]))
        if response.status == 200:
            break

    assert answers[0] == (503, "time_budget_exhausted") and answers[-1] == (200, "done"), answers
    assert all(answer == (503, "time_budget_exhausted") for answer in answers[:-1]), answers
    progress = [done for _state, done in states[:-1]]
    assert progress == sorted(progress) and 0 < progress[0] < 2000  # each retry went further
    assert states[-1] == ("applied", None)
    assert mirror(database) == reference  # as if applied at once: no tag, row or event twice
    assert len(events(database)) == 1

    again = send(body)  # and a repeat after that changes nothing
    assert again.status == 200 and again.body["status"] == "ignored"
    assert mirror(database) == reference


def test_partial_progress_is_committed_with_the_assets_it_covers(database, monkeypatch):
    monkeypatch.setenv("ASSET_SYNC_TIME_BUDGET_SECONDS", "3")
    Statements(monkeypatch, seconds_each=1.0)

    response = send(tags_change(1200))

    assert response.status == 503 and response.body["error"] == "time_budget_exhausted", response.body
    [event] = events(database)
    tagged = sum(1 for row in db.store(database).assets() if row["tags"] == ["sale"])
    assert event["state"] == "partial" and tagged == event["progress"] and 0 < tagged < 1200


def test_one_batch_is_always_applied_however_slow(database, monkeypatch):
    """An ordinary notification (one asset) never meets the budget: it is checked between batches."""
    monkeypatch.setenv("ASSET_SYNC_TIME_BUDGET_SECONDS", "1")
    Statements(monkeypatch, seconds_each=30.0)

    response = send("upload")

    assert response.status == 200 and response.body["status"] == "done"


@pytest.mark.parametrize("value", ["ten", "0", "-1", "inf"])
def test_a_budget_that_is_not_a_positive_number_is_500_not_configured(database, monkeypatch, value):
    monkeypatch.setenv("ASSET_SYNC_TIME_BUDGET_SECONDS", value)

    response = send("upload")

    assert response.status == 500 and response.body["error"] == "not_configured"


def _applied_without_a_budget(url: str, monkeypatch: pytest.MonkeyPatch, body: bytes) -> dict[str, Any]:
    monkeypatch.setenv("ASSET_SYNC_TIME_BUDGET_SECONDS", "1000000")
    response = send(body)
    assert response.status == 200 and response.body["status"] == "done", response.body
    return mirror(url)
