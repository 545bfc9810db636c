"""metadata_stamp on the wire: the real Cloudinary SDK talks to a local test server.

Every notification is delivered at a chosen moment: the function's clock (the one its signature check uses)
is set to it, and the request is signed then. Prompt deliveries make exactly one Upload API call; late ones
read the current stamps first (Admin API); the function's own write never causes another call.
"""

from __future__ import annotations

import json
import re
import threading
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from functions.metadata_stamp import handler as stamp_handler
from functions.metadata_stamp.__main__ import main as setup_main
from functions.metadata_stamp.handler import handle
from shared import cloudinary_api
from tests.helpers import (
    API_KEY,
    CLOUD_NAME,
    SECRET,
    answers_too_late,
    form_fields,
    function_url_event,
    sample,
    signed_request,
    wait_until_answered,
)

FIELD = "last_update_timestamp"
IMAGE_METADATA = f"/v1_1/{CLOUD_NAME}/image/metadata"
VIDEO_METADATA = f"/v1_1/{CLOUD_NAME}/video/metadata"
IMAGE_LISTING = f"/v1_1/{CLOUD_NAME}/resources/image/upload"
FIELDS_PATH = f"/v1_1/{CLOUD_NAME}/metadata_fields"
HERITAGE = "shop/chairs/oak_chair_heritage"


def epoch(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def payload(name: str, **changes: Any) -> dict[str, Any]:
    data = json.loads(sample("metadata_stamp", name))
    data.update(changes)
    return data


def deliver(body: Any, at: float, monkeypatch: pytest.MonkeyPatch, **sign: Any):
    """The notification as Cloudinary delivers it at ``at`` (epoch seconds): signed then, the clock set then."""
    monkeypatch.setattr(handle, "clock", lambda: at)
    if not isinstance(body, bytes):
        body = json.dumps(body).encode()
    return handle(signed_request(body, timestamp=int(at), **sign))


def triggered(name: str) -> float:
    return epoch(json.loads(sample("metadata_stamp", name))["notification_context"]["triggered_at"])


def expect_stamp(server, path: str = IMAGE_METADATA, public_ids: list[str] | None = None, status: int = 200):
    """Cloudinary's answer to the metadata call: every requested public ID updated (or ``public_ids``)."""
    def answer(request):
        from werkzeug import Response

        updated = public_ids if public_ids is not None else form_fields(request)["public_ids[]"]
        return Response(json.dumps({"public_ids": updated}), status=status, content_type="application/json")

    server.expect_oneshot_request(path, method="POST").respond_with_handler(answer)


def assert_stamp_request(request, public_ids: list[str], value: str, delivery_type: str = "upload") -> None:
    fields = form_fields(request)
    assert fields["metadata"] == f"{FIELD}={value}"  # only the stamp: every other field is left alone
    assert fields["public_ids[]"] == public_ids
    assert fields["type"] == delivery_type
    assert fields["api_key"] == API_KEY and len(fields["signature"]) == 40
    assert SECRET not in request.get_data(as_text=True)


def wire(server) -> list[tuple[str, str]]:
    return [(request.method, request.path) for request, _ in server.log]


# --- the happy paths: one Upload API call per notification -------------------------------------------

STAMPED_SAMPLES = [
    ("upload", "shop/chairs/oak_chair", "2024-05-06T09:00:01.113Z"),
    ("resource_metadata_changed", HERITAGE, "2024-05-06T12:10:00.000Z"),
    ("resource_metadata_changed_no_previous", "shop/lamps/brass_lamp", "2024-05-07T08:00:00.000Z"),
    ("resource_tags_changed", HERITAGE, "2024-05-06T12:00:03.250Z"),
    ("resource_context_changed", HERITAGE, "2024-05-06T12:05:00.000Z"),
    ("resource_display_name_changed", HERITAGE, "2024-05-06T12:19:59.640Z"),
    ("rename", HERITAGE, "2024-05-06T10:14:59.870Z"),
    ("move", HERITAGE, "2024-05-06T11:30:00.015Z"),
]


@pytest.mark.parametrize(("name", "public_id", "stamp"), STAMPED_SAMPLES, ids=[s[0] for s in STAMPED_SAMPLES])
def test_each_change_is_stamped_with_its_own_time_in_one_upload_api_call(cloudinary_server, monkeypatch, name,
                                                                        public_id, stamp):
    expect_stamp(cloudinary_server)

    response = deliver(sample("metadata_stamp", name), epoch(stamp) + 2, monkeypatch)

    assert response.status == 200, response.body
    assert response.body == {
        "status": "done", "stamp": stamp, "time_from": "notification_context.triggered_at", "stamped": 1,
        "actions": [{"action": "update_metadata", "resource_type": "image", "type": "upload",
                     "public_ids": [public_id], "field": FIELD, "value": stamp}]}
    assert wire(cloudinary_server) == [("POST", IMAGE_METADATA)]  # no Admin API call: not rate-limited
    assert_stamp_request(cloudinary_server.log[0][0], [public_id], stamp)


def test_a_bulk_change_costs_one_call_per_resource_type(cloudinary_server, monkeypatch):
    expect_stamp(cloudinary_server, IMAGE_METADATA)
    expect_stamp(cloudinary_server, VIDEO_METADATA)

    response = deliver(sample("metadata_stamp", "resource_metadata_changed_bulk"), epoch("2024-05-08T10:00:01Z"),
                       monkeypatch)

    assert response.status == 200 and response.body["stamped"] == 3, response.body
    assert wire(cloudinary_server) == [("POST", IMAGE_METADATA), ("POST", VIDEO_METADATA)]
    assert_stamp_request(cloudinary_server.log[0][0], [HERITAGE, "shop/chairs/oak_chair_side"],
                         "2024-05-08T10:00:00.000Z")
    assert_stamp_request(cloudinary_server.log[1][0], ["shop/chairs/oak_chair_turntable"], "2024-05-08T10:00:00.000Z")


def test_more_than_100_assets_are_stamped_100_at_a_time(cloudinary_server, monkeypatch):
    resources = {f"bulk/item_{index:03d}": {"previous_metadata": {}, "new_metadata": {"cms_id": str(index)},
                                           "resource_type": "image", "type": "upload"} for index in range(150)}
    body = payload("resource_metadata_changed", resources=resources)
    expect_stamp(cloudinary_server)
    expect_stamp(cloudinary_server)

    response = deliver(body, epoch("2024-05-06T12:10:01Z"), monkeypatch)

    assert response.status == 200 and response.body["stamped"] == 150
    chunks = [form_fields(request)["public_ids[]"] for request, _ in cloudinary_server.log]
    assert [len(chunk) for chunk in chunks] == [100, 50]
    assert chunks[0] + chunks[1] == sorted(resources)


def test_other_delivery_types_are_stamped_as_such(cloudinary_server, monkeypatch):
    body = payload("resource_tags_changed")
    body["resources"][0].update(resource_type="video", type="authenticated")
    expect_stamp(cloudinary_server, VIDEO_METADATA)

    response = deliver(body, triggered("resource_tags_changed") + 1, monkeypatch)

    assert response.status == 200 and response.body["status"] == "done"
    assert_stamp_request(cloudinary_server.log[0][0], [HERITAGE], "2024-05-06T12:00:03.250Z", "authenticated")


# --- which time -------------------------------------------------------------------------------------------

def test_an_older_upload_without_notification_context_uses_its_created_at(cloudinary_server, monkeypatch):
    expect_stamp(cloudinary_server)
    monkeypatch.setenv("STAMP_LATE_SECONDS", "1000000000")  # years late, yet not read (to see the time alone)

    response = deliver(sample("metadata_stamp", "upload_pre2021"), epoch("2024-05-06T12:00:00Z"), monkeypatch)

    assert response.body["stamp"] == "2020-02-25T12:07:41.000Z" and response.body["time_from"] == "created_at"
    assert_stamp_request(cloudinary_server.log[0][0], ["legacy/lookbook/spring_cover"], "2020-02-25T12:07:41.000Z")


def test_without_any_time_of_its_own_the_arrival_time_is_stamped(cloudinary_server, monkeypatch):
    expect_stamp(cloudinary_server)

    response = deliver(sample("metadata_stamp", "resource_tags_changed_no_context"),
                       epoch("2024-05-06T12:00:00.250Z"), monkeypatch)

    assert response.body["stamp"] == "2024-05-06T12:00:00.250Z" and response.body["time_from"] == "arrival"
    assert wire(cloudinary_server) == [("POST", IMAGE_METADATA)]  # an arrival time is never late: no read


def test_timestamp_is_used_when_notification_context_is_missing(cloudinary_server, monkeypatch):
    body = payload("resource_display_name_changed")
    del body["notification_context"]
    expect_stamp(cloudinary_server)

    response = deliver(body, epoch("2024-05-06T12:20:01Z"), monkeypatch)

    assert response.body["stamp"] == "2024-05-06T12:20:00.000Z" and response.body["time_from"] == "timestamp"


def test_a_time_in_the_future_is_not_believed(cloudinary_server, monkeypatch):
    body = payload("resource_tags_changed", notification_context={"triggered_at": "2099-01-01T00:00:00Z"})
    expect_stamp(cloudinary_server)

    response = deliver(body, epoch("2024-05-06T12:00:00Z"), monkeypatch)

    assert response.body["stamp"] == "2024-05-06T12:00:00.000Z" and response.body["time_from"] == "arrival"


def test_a_date_field_gets_the_day(cloudinary_server, monkeypatch):
    monkeypatch.setenv("STAMP_FIELD_TYPE", "date")
    expect_stamp(cloudinary_server)

    response = deliver(sample("metadata_stamp", "rename"), triggered("rename") + 1, monkeypatch)

    assert response.body["stamp"] == "2024-05-06"
    assert_stamp_request(cloudinary_server.log[0][0], [HERITAGE], "2024-05-06")


def test_a_date_field_already_at_that_day_is_not_written_again(cloudinary_server, monkeypatch):
    monkeypatch.setenv("STAMP_FIELD_TYPE", "date")
    body = payload("resource_metadata_changed")
    body["resources"][HERITAGE]["new_metadata"][FIELD] = "2024-05-06"

    response = deliver(body, triggered("resource_metadata_changed") + 1, monkeypatch)

    assert response.body["status"] == "ignored" and cloudinary_server.log == []


def test_a_custom_field_name(cloudinary_server, monkeypatch):
    monkeypatch.setenv("STAMP_FIELD", "cms_last_change")
    expect_stamp(cloudinary_server)

    response = deliver(sample("metadata_stamp", "move"), triggered("move") + 1, monkeypatch)

    assert response.status == 200
    assert form_fields(cloudinary_server.log[0][0])["metadata"] == "cms_last_change=2024-05-06T11:30:00.015Z"


# --- never loops ------------------------------------------------------------------------------------------

def own_write_notification(request, previous: str | None, at: float) -> dict[str, Any]:
    """The resource_metadata_changed notification Cloudinary sends after the function's metadata call."""
    fields = form_fields(request)
    field, _, value = fields["metadata"].partition("=")
    resource_type = request.path.split("/")[3]
    return {
        "notification_type": "resource_metadata_changed", "source": "api",
        "resources": {public_id: {"previous_metadata": {field: previous} if previous else {},
                                  "new_metadata": {field: value}, "resource_type": resource_type,
                                  "type": fields["type"]}
                      for public_id in fields["public_ids[]"]},
        "notification_context": {"triggered_at": datetime.fromtimestamp(at, UTC).isoformat(),
                                 "triggered_by": {"source": "api", "id": API_KEY}},
        "signature_key": API_KEY,
    }


@pytest.mark.parametrize("previous", [None, "2024-05-01T00:00:00.000Z"])
@pytest.mark.parametrize("late", [False, True])
def test_its_own_write_comes_back_and_costs_nothing(cloudinary_server, monkeypatch, previous, late):
    expect_stamp(cloudinary_server, VIDEO_METADATA)
    expect_stamp(cloudinary_server, IMAGE_METADATA)
    written_at = epoch("2024-05-08T10:00:02Z")
    deliver(sample("metadata_stamp", "resource_metadata_changed_bulk"), written_at, monkeypatch)
    writes = [request for request, _ in cloudinary_server.log]
    assert len(writes) == 2

    for request in writes:
        echo = own_write_notification(request, previous, written_at + 1)
        response = deliver(echo, written_at + (3600 if late else 2), monkeypatch)
        assert response.status == 200
        assert response.body["status"] == "ignored" and "only the stamp" in response.body["reason"]
    assert len(cloudinary_server.log) == 2  # not one call more, not even a read


def test_its_own_write_costs_nothing_even_when_every_notification_is_checked(cloudinary_server, monkeypatch):
    monkeypatch.setenv("STAMP_LATE_SECONDS", "0")
    echo = {"notification_type": "resource_metadata_changed",
            "resources": {HERITAGE: {"previous_metadata": {FIELD: "2024-05-06T12:00:00.000Z"},
                                     "new_metadata": {FIELD: "2024-05-06T12:10:00.000Z"}}},
            "notification_context": {"triggered_at": "2024-05-06T12:10:01.000Z"}}

    response = deliver(echo, epoch("2024-05-06T12:10:02Z"), monkeypatch)

    assert response.body["status"] == "ignored" and cloudinary_server.log == []


def test_only_watched_fields_call_for_a_stamp(cloudinary_server, monkeypatch):
    monkeypatch.setenv("STAMP_WATCH_FIELDS", "cms_id, publish_state")
    at = triggered("resource_metadata_changed") + 1
    unwatched = payload("resource_metadata_changed")
    unwatched["resources"][HERITAGE]["new_metadata"] = {"product_line": "heritage_2024"}

    ignored = deliver(unwatched, at, monkeypatch)
    expect_stamp(cloudinary_server)
    stamped = deliver(sample("metadata_stamp", "resource_metadata_changed"), at, monkeypatch)  # publish_state

    assert ignored.body["status"] == "ignored" and "watched" in ignored.body["reason"]
    assert stamped.body["status"] == "done"
    assert len(cloudinary_server.log) == 1


def test_a_multi_select_reordered_is_no_change(cloudinary_server, monkeypatch):
    body = payload("resource_metadata_changed")
    body["resources"][HERITAGE].update(previous_metadata={"colors": ["red", "blue"], FIELD: "2024-05-01T00:00:00Z"},
                                       new_metadata={"colors": ["blue", "red"], FIELD: "2024-05-06T12:10:00Z"})

    response = deliver(body, triggered("resource_metadata_changed") + 1, monkeypatch)

    assert response.body["status"] == "ignored" and cloudinary_server.log == []


@pytest.mark.parametrize(("variable", "value"), [("STAMP_WATCH_FIELDS", "cms_id last_update_timestamp"),
                                                 ("STAMP_ON", "upload delete"), ("STAMP_FIELD_TYPE", "datetime"),
                                                 ("STAMP_FIELD", "last update"), ("STAMP_LATE_SECONDS", "-1")])
def test_a_setting_that_would_loop_or_cannot_work_is_500_before_any_call(cloudinary_server, monkeypatch, variable,
                                                                         value, caplog):
    monkeypatch.setenv(variable, value)

    response = deliver(sample("metadata_stamp", "upload"), triggered("upload") + 1, monkeypatch)

    assert response.status == 500 and response.body["error"] == "not_configured"
    assert variable in caplog.text and cloudinary_server.log == []


def test_types_left_out_of_stamp_on_are_ignored(cloudinary_server, monkeypatch):
    monkeypatch.setenv("STAMP_ON", "upload,resource_metadata_changed")

    response = deliver(sample("metadata_stamp", "resource_tags_changed"), triggered("resource_tags_changed") + 1,
                       monkeypatch)

    assert response.body == {"status": "ignored", "reason": "resource_tags_changed is not in STAMP_ON"}
    assert cloudinary_server.log == []


# --- never backwards --------------------------------------------------------------------------------------

def test_an_upload_that_already_carries_a_newer_stamp_is_left_alone(cloudinary_server, monkeypatch):
    response = deliver(sample("metadata_stamp", "upload_already_stamped"), triggered("upload_already_stamped") + 1,
                       monkeypatch)

    assert response.body["status"] == "ignored" and "already as new" in response.body["reason"]
    assert cloudinary_server.log == []


def test_a_metadata_change_whose_stamp_is_newer_is_left_alone(cloudinary_server, monkeypatch):
    body = payload("resource_metadata_changed")
    body["resources"][HERITAGE]["new_metadata"][FIELD] = "2024-05-06T12:10:00.001Z"

    response = deliver(body, triggered("resource_metadata_changed") + 1, monkeypatch)

    assert response.body["status"] == "ignored" and cloudinary_server.log == []


def test_a_stamp_that_is_not_a_time_or_far_in_the_future_is_overwritten(cloudinary_server, monkeypatch):
    expect_stamp(cloudinary_server)
    expect_stamp(cloudinary_server)
    for current in ("not a date", "2099-01-01T00:00:00.000Z"):
        body = payload("upload", metadata={FIELD: current})
        response = deliver(body, triggered("upload") + 1, monkeypatch)
        assert response.body["status"] == "done", (current, response.body)
    assert len(cloudinary_server.log) == 2


def listing(server, stamps: dict[str, Any], status: int = 200) -> None:
    """The Admin API listing by public IDs, with each asset's structured metadata (absent: gone)."""
    resources = [{"public_id": public_id, "resource_type": "image", "type": "upload",
                  "metadata": {FIELD: stamp} if stamp else {}} for public_id, stamp in stamps.items()]
    server.expect_oneshot_request(IMAGE_LISTING, method="GET").respond_with_json(
        {"resources": resources} if status == 200 else {"error": {"message": "simulated"}}, status=status)


def test_a_late_notification_reads_the_current_stamp_and_leaves_a_newer_one_alone(cloudinary_server, monkeypatch):
    listing(cloudinary_server, {HERITAGE: "2024-05-06T12:05:00.000Z"})  # a later change was stamped meanwhile

    response = deliver(sample("metadata_stamp", "resource_tags_changed"), triggered("resource_tags_changed") + 540,
                       monkeypatch)  # Cloudinary's retry, 9 minutes on

    assert response.body["status"] == "ignored" and "later change" in response.body["reason"]
    assert wire(cloudinary_server) == [("GET", IMAGE_LISTING)]
    query = parse_qs(cloudinary_server.log[0][0].query_string.decode())
    assert query == {"public_ids[]": [HERITAGE], "metadata": ["true"]}


@pytest.mark.parametrize("current", [None, "2024-05-06T11:00:00.000Z"])
def test_a_late_notification_writes_over_an_older_or_missing_stamp(cloudinary_server, monkeypatch, current):
    listing(cloudinary_server, {HERITAGE: current})
    expect_stamp(cloudinary_server)

    response = deliver(sample("metadata_stamp", "resource_tags_changed"), triggered("resource_tags_changed") + 540,
                       monkeypatch)

    assert response.body["status"] == "done"
    assert wire(cloudinary_server) == [("GET", IMAGE_LISTING), ("POST", IMAGE_METADATA)]
    assert_stamp_request(cloudinary_server.log[1][0], [HERITAGE], "2024-05-06T12:00:03.250Z")


def test_a_late_notification_for_assets_deleted_meanwhile_writes_nothing(cloudinary_server, monkeypatch):
    listing(cloudinary_server, {})

    response = deliver(sample("metadata_stamp", "move"), triggered("move") + 600, monkeypatch)

    assert response.body["status"] == "ignored" and wire(cloudinary_server) == [("GET", IMAGE_LISTING)]


def test_late_seconds_zero_checks_every_notification(cloudinary_server, monkeypatch):
    monkeypatch.setenv("STAMP_LATE_SECONDS", "0")
    listing(cloudinary_server, {HERITAGE: "2024-05-06T12:00:00.000Z"})
    expect_stamp(cloudinary_server)

    response = deliver(sample("metadata_stamp", "resource_tags_changed"), triggered("resource_tags_changed") + 1,
                       monkeypatch)

    assert response.body["status"] == "done"
    assert wire(cloudinary_server) == [("GET", IMAGE_LISTING), ("POST", IMAGE_METADATA)]


# --- the property: whatever the order, a stamp never moves backwards, and the function never loops -------

class StandIn:
    """Cloudinary's metadata of a few assets: the Upload API metadata call writes it, the Admin API listing
    reads it, and every write is recorded as (old, new) with the notification it causes."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.stamps: dict[str, str | None] = {}
        self.writes: list[tuple[str, str | None, str]] = []  # (public_id, old, new)
        self.reads = 0

    def answer(self, request):
        from werkzeug import Response

        if request.method == "POST" and request.path == IMAGE_METADATA:
            fields = form_fields(request)
            field, _, value = fields["metadata"].partition("=")
            assert field == FIELD
            for public_id in fields["public_ids[]"]:
                self.writes.append((public_id, self.stamps.get(public_id), value))
                self.stamps[public_id] = value
            return Response(json.dumps({"public_ids": fields["public_ids[]"]}), content_type="application/json")
        if request.method == "GET" and request.path == IMAGE_LISTING:
            self.reads += 1
            asked = parse_qs(request.query_string.decode())["public_ids[]"]
            resources = [{"public_id": public_id, "metadata": {FIELD: self.stamps[public_id]}
                          if self.stamps.get(public_id) else {}} for public_id in asked]
            return Response(json.dumps({"resources": resources}), content_type="application/json")
        return Response("{}", status=501, content_type="application/json")


BASE = datetime(2024, 5, 6, 12, 0, tzinfo=UTC)
ASSETS = ("shop/a", "shop/b")


def moment(ms: int) -> datetime:
    """``ms`` milliseconds after BASE (integers: no float rounding in what the properties compare)."""
    return BASE + timedelta(milliseconds=ms)


def iso(ms: int) -> str:
    return moment(ms).isoformat(timespec="milliseconds")


def change_notification(kind: str, public_id: str, ms: int, stamp_then: str | None) -> dict[str, Any]:
    """A change to ``public_id`` at ``ms`` as Cloudinary reports it; ``stamp_then`` is the stamp it had then
    (what an upload's metadata and a metadata change's values show)."""
    context = {"triggered_at": iso(ms)}
    if kind == "upload":
        return {"notification_type": "upload", "public_id": public_id, "resource_type": "image", "type": "upload",
                "metadata": {FIELD: stamp_then} if stamp_then else {}, "notification_context": context}
    if kind == "resource_metadata_changed":
        known = {FIELD: stamp_then} if stamp_then else {}
        return {"notification_type": kind, "notification_context": context,
                "resources": {public_id: {"previous_metadata": {"cms_id": "old", **known},
                                          "new_metadata": {"cms_id": f"new {ms}", **known}}}}
    return {"notification_type": kind, "notification_context": context,
            "resources": [{"public_id": public_id, "resource_type": "image", "type": "upload", "added": ["x"]}]}


changes_strategy = st.lists(
    st.tuples(st.sampled_from(["upload", "resource_metadata_changed", "resource_tags_changed"]),
              st.sampled_from(ASSETS),
              st.integers(1, 3_000),  # ms after the previous change
              st.lists(st.integers(0, 1_200_000), min_size=1, max_size=3)),  # delivery delays (ms): retries too
    min_size=1, max_size=6)


def simulate(stand_in: StandIn, changes: list[Any], echo_delays: list[int], monkeypatch) -> list[dict[str, Any]]:
    """Play the changes and their (possibly repeated, reordered) deliveries, and the notifications the
    function's own writes cause, in the order of their arrival. Returns what each delivery did."""
    events: list[tuple[int, int, str, Any]] = []  # (ms, tie-breaker, what, data)
    at = 0
    for index, (kind, public_id, gap_ms, delays) in enumerate(changes):
        at += gap_ms
        events.append((at, index, "change", (kind, public_id)))
        events.extend((at + delay, index, "deliver", index) for delay in delays)
    notifications: dict[int, dict[str, Any]] = {}
    outcomes: list[dict[str, Any]] = []
    echoes = iter(echo_delays)
    order = 0
    while events:
        events.sort(key=lambda event: (event[0], event[1]))
        now, index, what, data = events.pop(0)
        if what == "change":
            kind, public_id = data
            notifications[index] = change_notification(kind, public_id, now, stand_in.stamps.get(public_id))
            continue
        body = notifications[data] if what == "deliver" else data
        writes_before, reads_before = len(stand_in.writes), stand_in.reads
        response = deliver(body, moment(now).timestamp(), monkeypatch)
        assert response.status == 200, response.body
        outcomes.append({"what": what, "arrival": now, "body": body, "answer": response.body,
                         "writes": stand_in.writes[writes_before:], "reads": stand_in.reads - reads_before})
        for public_id, old, new in stand_in.writes[writes_before:]:  # each write comes back as a metadata change
            order += 1
            echo = {"notification_type": "resource_metadata_changed", "source": "api",
                    "resources": {public_id: {"previous_metadata": {FIELD: old} if old else {},
                                              "new_metadata": {FIELD: new}}},
                    "notification_context": {"triggered_at": iso(now)}}
            events.append((now + next(echoes, 500), 10_000 + order, "echo", echo))
    return outcomes


def stamp_ms(text: str) -> int:
    return (datetime.fromisoformat(text) - BASE) // timedelta(milliseconds=1)


@pytest.fixture
def stand_in(cloudinary_server) -> StandIn:
    world = StandIn()
    cloudinary_server.expect_request(re.compile(".*")).respond_with_handler(world.answer)
    return world


PROPERTY = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.mark.slow
@PROPERTY
@given(changes=changes_strategy, echo_delays=st.lists(st.integers(0, 900_000), max_size=20))
def test_checking_every_notification_a_stamp_never_moves_backwards(stand_in, monkeypatch, changes, echo_delays):
    monkeypatch.setenv("STAMP_LATE_SECONDS", "0")
    stand_in.reset()

    outcomes = simulate(stand_in, changes, echo_delays, monkeypatch)

    for public_id, old, new in stand_in.writes:
        assert old is None or stamp_ms(new) > stamp_ms(old), (public_id, old, new)
    for outcome in outcomes:
        if outcome["what"] == "echo":
            assert outcome["writes"] == [] and outcome["reads"] == 0  # its own write: not a call
    last: dict[str, int] = {}  # every asset ends stamped with the time of its last change
    at = 0
    for _, public_id, gap_ms, _ in changes:
        at += gap_ms
        last[public_id] = at
    assert {public_id: stamp_ms(stand_in.stamps[public_id]) for public_id in last} == last


@pytest.mark.slow
@PROPERTY
@given(changes=changes_strategy, echo_delays=st.lists(st.integers(0, 900_000), max_size=20))
def test_by_default_a_late_notification_never_moves_a_stamp_backwards(stand_in, monkeypatch, changes, echo_delays):
    stand_in.reset()

    outcomes = simulate(stand_in, changes, echo_delays, monkeypatch)

    for outcome in outcomes:
        if outcome["what"] == "echo":
            assert outcome["writes"] == [] and outcome["reads"] == 0
            continue
        change_at = stamp_ms(outcome["body"]["notification_context"]["triggered_at"])
        late = outcome["arrival"] - change_at >= 60_000
        assert bool(outcome["reads"]) == late  # the Admin API only for late notifications
        for public_id, old, new in outcome["writes"]:
            if old is None:
                continue
            if late:
                assert stamp_ms(new) > stamp_ms(old), (public_id, old, new)
            else:  # two prompt notifications may cross: never by the late threshold or more
                assert stamp_ms(old) - stamp_ms(new) < 60_000, (public_id, old, new)


# --- failures: the right status, nothing half-done --------------------------------------------------------

@pytest.mark.parametrize(("status", "expected"), [(420, 503), (429, 503), (500, 503), (502, 503), (503, 503),
                                                  (401, 500), (403, 500)])
def test_cloudinary_failures_map_to_the_promised_status(cloudinary_server, monkeypatch, status, expected):
    cloudinary_server.expect_oneshot_request(IMAGE_METADATA, method="POST").respond_with_json(
        {"error": {"message": "simulated"}}, status=status)

    response = deliver(sample("metadata_stamp", "upload"), triggered("upload") + 1, monkeypatch)

    assert response.status == expected
    assert len(cloudinary_server.log) == 1


def test_a_late_read_failing_is_503_before_any_write(cloudinary_server, monkeypatch):
    listing(cloudinary_server, {}, status=429)

    response = deliver(sample("metadata_stamp", "move"), triggered("move") + 600, monkeypatch)

    assert response.status == 503 and response.body["error"] == "cloudinary_rate_limited"
    assert wire(cloudinary_server) == [("GET", IMAGE_LISTING)]


def test_cloudinary_timeout_is_503(cloudinary_server, monkeypatch):
    release = threading.Event()
    monkeypatch.setenv("CLOUDINARY_TIMEOUT_SECONDS", "0.2")
    cloudinary_server.expect_oneshot_request(IMAGE_METADATA, method="POST").respond_with_handler(
        answers_too_late(release))
    try:
        response = deliver(sample("metadata_stamp", "upload"), triggered("upload") + 1, monkeypatch)
    finally:
        release.set()
        wait_until_answered(cloudinary_server)

    assert response.status == 503 and response.body["error"] == "cloudinary_unavailable"


def test_a_404_means_the_assets_are_gone_and_is_not_retried(cloudinary_server, monkeypatch):
    cloudinary_server.expect_oneshot_request(IMAGE_METADATA, method="POST").respond_with_json(
        {"error": {"message": "Resource not found"}}, status=404)

    response = deliver(sample("metadata_stamp", "rename"), triggered("rename") + 1, monkeypatch)

    assert response.status == 200
    assert response.body["status"] == "ignored" and "no longer exist" in response.body["reason"]


def test_assets_cloudinary_did_not_update_are_counted_as_gone(cloudinary_server, monkeypatch):
    expect_stamp(cloudinary_server, IMAGE_METADATA, public_ids=["shop/chairs/oak_chair_side"])
    expect_stamp(cloudinary_server, VIDEO_METADATA)

    response = deliver(sample("metadata_stamp", "resource_metadata_changed_bulk"), epoch("2024-05-08T10:00:01Z"),
                       monkeypatch)

    assert response.status == 200
    assert response.body["stamped"] == 2 and response.body["gone"] == 1


def test_a_failure_in_the_second_group_is_503_and_the_retry_finishes_the_work(cloudinary_server, monkeypatch):
    expect_stamp(cloudinary_server, IMAGE_METADATA)
    cloudinary_server.expect_oneshot_request(VIDEO_METADATA, method="POST").respond_with_json(
        {"error": {"message": "simulated"}}, status=502)
    body = sample("metadata_stamp", "resource_metadata_changed_bulk")

    first = deliver(body, epoch("2024-05-08T10:00:01Z"), monkeypatch)
    expect_stamp(cloudinary_server, IMAGE_METADATA)
    expect_stamp(cloudinary_server, VIDEO_METADATA)
    retry = deliver(body, epoch("2024-05-08T10:00:20Z"), monkeypatch)  # still prompt: no read

    assert first.status == 503 and retry.status == 200 and retry.body["stamped"] == 3
    # the retry writes the same value again (harmless: a stamp is a value, not an increment)
    values = {form_fields(request)["metadata"] for request, _ in cloudinary_server.log}
    assert values == {f"{FIELD}=2024-05-08T10:00:00.000Z"}


# --- refused and ignored: no outbound call at all -------------------------------------------------------

def test_bad_signature_is_401_with_no_outbound_call(cloudinary_server, monkeypatch):
    response = deliver(sample("metadata_stamp", "upload"), triggered("upload") + 1, monkeypatch,
                       secret="not-the-secret")

    assert response.status == 401 and response.body["error"] == "signature_mismatch"
    assert cloudinary_server.log == []


@pytest.mark.parametrize("name", ["delete"])
def test_other_notification_types_are_ignored_with_no_outbound_call(cloudinary_server, monkeypatch, name):
    response = deliver(sample("metadata_stamp", name), epoch("2024-05-09T16:00:01Z"), monkeypatch)

    assert response.status == 200 and response.body["status"] == "ignored"
    assert cloudinary_server.log == []


@pytest.mark.parametrize(("change", "error"), [
    ({"resources": None}, "missing_field"), ({"resources": "shop/a"}, "bad_field"),
    ({"resources": {"shop/a": "text"}}, "bad_field"),
    ({"resources": {"https://evil.example/x.jpg": {"resource_type": "image", "type": "upload"}}}, "bad_field"),
    ({"resources": {"shop/a": {"resource_type": "image/../../x", "type": "upload"}}}, "bad_field"),
    ({"resources": {"shop/a": {"new_metadata": "text"}}}, "bad_field"),
])
def test_malformed_or_hostile_resources_are_400_with_no_outbound_call(cloudinary_server, monkeypatch, change, error):
    body = payload("resource_metadata_changed", **change)

    response = deliver(body, triggered("resource_metadata_changed") + 1, monkeypatch)

    assert response.status == 400 and response.body["error"] == error
    assert cloudinary_server.log == []


def test_an_empty_resources_map_is_ignored(cloudinary_server, monkeypatch):
    response = deliver(payload("move", resources={}), triggered("move") + 1, monkeypatch)

    assert response.body["status"] == "ignored" and cloudinary_server.log == []


def test_missing_cloudinary_url_is_500(signing_secret, monkeypatch):
    response = deliver(sample("metadata_stamp", "upload"), triggered("upload") + 1, monkeypatch)

    assert response.status == 500 and response.body["error"] == "not_configured"


# --- dry run and demo mode ---------------------------------------------------------------------------------

def test_dry_run_reports_and_writes_nothing(cloudinary_server, monkeypatch):
    monkeypatch.setenv("DRY_RUN", "1")

    response = deliver(sample("metadata_stamp", "resource_metadata_changed_bulk"), epoch("2024-05-08T10:00:01Z"),
                       monkeypatch)

    assert response.status == 200 and response.body["status"] == "dry_run"
    assert [action["action"] for action in response.body["actions"]] == ["update_metadata", "update_metadata"]
    assert cloudinary_server.log == []


def test_dry_run_of_a_late_notification_reads_but_writes_nothing(cloudinary_server, monkeypatch):
    monkeypatch.setenv("DRY_RUN", "1")
    listing(cloudinary_server, {HERITAGE: "2024-05-06T11:00:00.000Z"})

    response = deliver(sample("metadata_stamp", "move"), triggered("move") + 600, monkeypatch)

    assert response.body["status"] == "dry_run" and response.body["actions"][0]["action"] == "update_metadata"
    assert wire(cloudinary_server) == [("GET", IMAGE_LISTING)]


def test_demo_mode_without_credentials_plans_from_the_payload(signing_secret, monkeypatch):
    monkeypatch.setenv("CLOUDINARY_WEBHOOKS_DEMO", "1")

    late = deliver(sample("metadata_stamp", "resource_tags_changed"), triggered("resource_tags_changed") + 600,
                   monkeypatch)
    prompt = deliver(sample("metadata_stamp", "upload"), triggered("upload") + 1, monkeypatch)

    assert late.status == prompt.status == 200
    assert [a["action"] for a in late.body["actions"]] == ["read_current_stamps", "update_metadata"]
    assert "not configured" in late.body["actions"][0]["note"]
    assert [a["action"] for a in prompt.body["actions"]] == ["update_metadata"]
    assert prompt.body["status"] == "dry_run"


def test_lambda_function_url_entry_point(cloudinary_server, monkeypatch):
    at = triggered("upload") + 1
    monkeypatch.setattr(handle, "clock", lambda: at)
    expect_stamp(cloudinary_server)

    result = stamp_handler.handler(function_url_event(sample("metadata_stamp", "upload"), timestamp=int(at),
                                                      base64_body=True), None)

    assert result["statusCode"] == 200 and json.loads(result["body"])["status"] == "done"
    assert len(cloudinary_server.log) == 1


# --- shared.cloudinary_api.update_metadata -----------------------------------------------------------------

def test_update_metadata_sends_one_upload_api_call_and_returns_what_was_updated(cloudinary_server):
    cloudinary_server.expect_oneshot_request(f"/v1_1/{CLOUD_NAME}/video/metadata", method="POST") \
        .respond_with_json({"public_ids": ["clips/a"]})

    updated = cloudinary_api.update_metadata({"cms_id": "x=1|2", FIELD: "2024-05-06"}, ["clips/a", "clips/b c"],
                                             resource_type="video", delivery_type="private")

    assert updated == ["clips/a"]
    fields = form_fields(cloudinary_server.log[0][0])
    assert fields["metadata"] == f"cms_id=x\\=1\\|2|{FIELD}=2024-05-06"  # the SDK escapes = and |
    assert fields["public_ids[]"] == ["clips/a", "clips/b c"] and fields["type"] == "private"
    assert fields["api_key"] == API_KEY and "signature" in fields


def test_update_metadata_trusts_a_200_without_a_list_and_raises_asset_not_found_on_404(cloudinary_server):
    cloudinary_server.expect_oneshot_request(f"/v1_1/{CLOUD_NAME}/image/metadata").respond_with_json({})
    cloudinary_server.expect_oneshot_request(f"/v1_1/{CLOUD_NAME}/image/metadata").respond_with_json(
        {"error": {"message": "Resource not found"}}, status=404)

    assert cloudinary_api.update_metadata({FIELD: "x"}, ["a"]) == ["a"]
    with pytest.raises(cloudinary_api.AssetNotFound):
        cloudinary_api.update_metadata({FIELD: "x"}, ["a"])


# --- python -m shared run metadata_stamp setup -------------------------------------------------------------

def run_setup(argv: list[str], answer: str = "") -> tuple[int, str, str, list[str]]:
    out: list[str] = []
    err: list[str] = []
    asked: list[str] = []

    def ask(prompt: str) -> str:
        asked.append(prompt)
        return answer

    code = setup_main(argv, out=out.append, err=err.append, ask=ask)
    return code, "".join(out), "".join(err), asked


def fields_listed(server, *fields: dict[str, Any]) -> None:
    server.expect_oneshot_request(FIELDS_PATH, method="GET").respond_with_json({"metadata_fields": list(fields)})


EXPECTED_FIELD = {"external_id": FIELD, "label": "Last update timestamp", "type": "string", "mandatory": False,
                  "restrictions": {"readonly_ui": True}}


@pytest.mark.parametrize(("argv", "answer"), [(["setup"], "y"), (["setup", "--yes"], "")])
def test_setup_shows_the_field_then_creates_it(cloudinary_server, argv, answer):
    fields_listed(cloudinary_server, {"external_id": "cms_id", "type": "string", "label": "CMS ID"})
    cloudinary_server.expect_oneshot_request(FIELDS_PATH, method="POST").respond_with_json(EXPECTED_FIELD)

    code, out, err, asked = run_setup(argv, answer)

    assert code == 0, err
    assert "external_id  last_update_timestamp" in out and "type         string" in out and "Created" in out
    assert len(asked) == (0 if "--yes" in argv else 1)
    assert wire(cloudinary_server) == [("GET", FIELDS_PATH), ("POST", FIELDS_PATH)]
    assert cloudinary_server.log[1][0].get_json() == EXPECTED_FIELD


def test_setup_declined_creates_nothing(cloudinary_server):
    fields_listed(cloudinary_server)

    code, _, err, asked = run_setup(["setup"], "n")

    assert code == 1 and "not created" in err and asked == ["Create it? [y/N] "]
    assert wire(cloudinary_server) == [("GET", FIELDS_PATH)]


def test_setup_dry_run_only_shows(cloudinary_server):
    fields_listed(cloudinary_server)

    code, out, _, asked = run_setup(["setup", "--dry-run"])

    assert code == 0 and "DRY RUN" in out and asked == []
    assert wire(cloudinary_server) == [("GET", FIELDS_PATH)]


def test_setup_creates_a_date_field_under_a_custom_name(cloudinary_server, monkeypatch):
    monkeypatch.setenv("STAMP_FIELD", "cms_changed_on")
    monkeypatch.setenv("STAMP_FIELD_TYPE", "date")
    fields_listed(cloudinary_server)
    cloudinary_server.expect_oneshot_request(FIELDS_PATH, method="POST").respond_with_json({})

    code, _, err, _ = run_setup(["setup", "--yes", "--label", "Changed on"])

    assert code == 0, err
    assert cloudinary_server.log[1][0].get_json() == {**EXPECTED_FIELD, "external_id": "cms_changed_on",
                                                      "type": "date", "label": "Changed on"}


def test_setup_leaves_an_existing_field_alone(cloudinary_server):
    fields_listed(cloudinary_server, {"external_id": FIELD, "type": "string", "label": "Updated"})

    code, out, _, asked = run_setup(["setup", "--yes"])

    assert code == 0 and "nothing to do" in out and asked == []
    assert wire(cloudinary_server) == [("GET", FIELDS_PATH)]


def test_setup_refuses_an_existing_field_of_another_type(cloudinary_server):
    fields_listed(cloudinary_server, {"external_id": FIELD, "type": "date", "label": "Updated"})

    code, _, err, _ = run_setup(["setup", "--yes"])

    assert code == 1 and "STAMP_FIELD_TYPE=date" in err
    assert wire(cloudinary_server) == [("GET", FIELDS_PATH)]


def test_setup_reports_cloudinary_failures(cloudinary_server):
    cloudinary_server.expect_oneshot_request(FIELDS_PATH, method="GET").respond_with_json(
        {"error": {"message": "simulated"}}, status=500)

    code, _, err, _ = run_setup(["setup", "--yes"])

    assert code == 1 and "could not list" in err


def test_setup_a_field_created_meanwhile_is_fine(cloudinary_server):
    fields_listed(cloudinary_server)
    cloudinary_server.expect_oneshot_request(FIELDS_PATH, method="POST").respond_with_json(
        {"error": {"message": "External id already exists"}}, status=409)

    code, out, _, _ = run_setup(["setup", "--yes"])

    assert code == 0 and "meanwhile" in out


def test_setup_without_credentials_exits_2():
    code, _, err, _ = run_setup(["setup", "--yes"])

    assert code == 2 and "CLOUDINARY_URL" in err


def test_setup_runs_through_the_projects_cli(cloudinary_server, capsys):
    from devtools.cli import main as cli_main

    fields_listed(cloudinary_server, {"external_id": FIELD, "type": "string", "label": "Updated"})

    assert cli_main(["run", "metadata_stamp", "setup", "--yes"]) == 0
    assert "nothing to do" in capsys.readouterr().out


@pytest.mark.parametrize("value", [10**400, -(10**400), float("nan"), float("inf"), float("-inf"), 0, -5, True])
def test_a_time_no_clock_could_show_is_no_time_not_a_crash(value):
    # Found by the bad-input suite: an int too large for a float made math.isfinite raise (a 500).
    from functions.metadata_stamp.stamp import parse_time

    assert parse_time(value) is None


def test_an_epoch_time_still_parses():
    from functions.metadata_stamp.stamp import parse_time

    assert parse_time(1714986001).isoformat() == "2024-05-06T09:00:01+00:00"
