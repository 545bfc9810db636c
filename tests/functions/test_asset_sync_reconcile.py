"""asset_sync's `reconcile` (issue 15, item 4): the mirror compared with Cloudinary's Search API, on the wire.

The Search API is a local stand-in reached the way the SDK reaches Cloudinary (``CLOUDINARY_URL``'s
``upload_prefix``): ``POST <prefix>/v1_1/<cloud>/resources/search`` with a JSON body, answered with pages of
real-shaped search results, a ``next_cursor`` and the ``X-FeatureRateLimit-*`` headers. Every database test runs
on SQLite and on the real PostgreSQL of ``scripts/postgres.sh``. No test sleeps: the wall clock, the monotonic
clock and ``sleep`` of reconcile.py are replaced.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from werkzeug import Request, Response

from functions.asset_sync import db, reconcile
from functions.asset_sync.__main__ import main as cli
from functions.asset_sync.handler import handle, handler
from tests.functions.asset_sync_support import (
    ASSET,
    events,
    execute,
    fresh_database,
    load,
    mirror,
    query,
    send,
)
from tests.helpers import CLOUD_NAME

SEARCH = f"/v1_1/{CLOUD_NAME}/resources/search"
SEARCHED_AT = datetime(2024, 5, 8, 12, 0, 0, tzinfo=UTC)  # when the stand-in's search runs (the wall clock)
RESET = datetime(2024, 5, 8, 13, 0, 0, tzinfo=UTC)  # the hourly limit's reset, as the stand-in announces it
BODY = {"max_results": 500, "with_field": ["tags", "context", "metadata"], "sort_by": [{"created_at": "asc"}]}
CHAIR = ASSET  # the upload sample's asset
TABLE = "a0c1e2f3a4b5c6d7e8f9a0b1c2d3e4f5"
LAMP = "b7d2c4e6f8a0b1c3d5e7f9a1b3c5d7e9"
STOOL = "c9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4"


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path, monkeypatch, signing_secret) -> Iterator[str]:
    yield from fresh_database(request.param, tmp_path, monkeypatch)


class Clocks:
    """reconcile.py's wall clock, monotonic clock and sleep: the wall clock moves only when told (or slept)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.wall = SEARCHED_AT
        self.monotonic = 1000.0
        self.slept: list[float] = []
        monkeypatch.setattr(reconcile, "now", lambda: self.wall)
        monkeypatch.setattr(reconcile, "clock", lambda: self.monotonic)
        monkeypatch.setattr(reconcile, "sleep", self.sleep)

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.wall += timedelta(seconds=seconds)
        self.monotonic += seconds


@pytest.fixture
def clocks(monkeypatch) -> Clocks:
    return Clocks(monkeypatch)


def found(asset_id: str, public_id: str, *, version: int = 1714986001, tags: list[str] | None = None,
          context: dict[str, Any] | None = None, metadata: dict[str, Any] | None = None, folder: str = "shop/chairs",
          created: str = "2024-05-06T09:00:01Z", **more: Any) -> dict[str, Any]:
    """One search result as the Search API returns it with ``with_field`` tags, context and metadata."""
    url = f"https://res.cloudinary.com/demo/image/upload/v{version}/{public_id}.jpg"
    resource = {
        "asset_id": asset_id, "public_id": public_id, "asset_folder": folder, "filename": public_id.rsplit("/", 1)[-1],
        "display_name": public_id.rsplit("/", 1)[-1], "format": "jpg", "version": version, "resource_type": "image",
        "type": "upload", "created_at": created, "uploaded_at": created, "bytes": 734521, "backup_bytes": 0,
        "width": 2400, "height": 1600, "aspect_ratio": 1.5, "pixels": 3840000, "url": url.replace("https", "http", 1),
        "secure_url": url, "status": "active", "access_mode": "public", "access_control": None,
        "etag": "5a0b5b1ef2b0c9a5a0c5c1d9d2a6f4e3", "created_by": {"access_key": "614335564976464"},
        "uploaded_by": {"access_key": "614335564976464"},
        "last_updated": {"updated_at": created},
        "tags": tags if tags is not None else ["catalog", "chairs"],
        "context": context if context is not None else {"alt": "Oak chair, side view", "sku": "CH-1042"},
        "metadata": metadata if metadata is not None else {"product_line": "heritage"},
    }
    resource.update(more)
    return resource


# The truth in Cloudinary after notifications were lost: the chair re-uploaded (a new version) and re-tagged, a
# table the mirror never heard of, a lamp it knows exactly, and no stool (deleted; the mirror holds it live).
CHAIR_NOW = found(CHAIR, "shop/chairs/oak_chair", version=1715100000, tags=["catalog", "chairs", "sale"],
                  metadata={"product_line": "heritage", "season": "summer"},
                  last_updated={"updated_at": "2024-05-07T10:00:00Z", "tags_updated_at": "2024-05-07T10:00:00Z"})
TABLE_NOW = found(TABLE, "shop/tables/walnut_table", folder="shop/tables", created="2024-05-06T10:00:00Z",
                  tags=["catalog"], context={}, metadata={})
LAMP_NOW = found(LAMP, "shop/lamps/brass_lamp", folder="shop/lamps", created="2024-05-06T11:00:00Z",
                 tags=["lamps"], context={"alt": "Brass lamp"}, metadata={})
TRUTH = [CHAIR_NOW, TABLE_NOW, LAMP_NOW]


def upload(asset_id: str, resource: dict[str, Any], at: str) -> dict[str, Any]:
    """The upload notification of a search result's asset, triggered ``at``."""
    payload = load("upload")
    payload.update({name: resource[name] for name in ("public_id", "version", "asset_folder", "display_name",
                                                      "created_at", "secure_url", "url", "tags")})
    payload.update(asset_id=asset_id, context={"custom": resource["context"]}, metadata=resource["metadata"],
                   timestamp=at, notification_context={"triggered_at": at, "triggered_by": {"source": "ui"}})
    return payload


def known_mirror() -> None:
    """What the mirror got: the chair's first upload, the lamp, and the stool (whose delete was lost)."""
    assert send("upload").status == 200
    assert send(upload(LAMP, LAMP_NOW, "2024-05-06T11:00:01.000Z")).status == 200
    stool = found(STOOL, "shop/stools/pine_stool", folder="shop/stools", created="2024-05-06T12:00:00Z")
    assert send(upload(STOOL, stool, "2024-05-06T12:00:01.000Z")).status == 200


class SearchAPI:
    """Cloudinary's Search API behind the SDK: ``assets`` oldest first, ``per_page`` per answer (however many were
    asked for: Cloudinary may answer fewer), an opaque cursor, and the rate-limit headers of an hourly budget.
    ``fail`` answers calls by their number (1, 2, ...) with an error instead: (status, message)."""

    def __init__(self, httpserver, assets: list[dict[str, Any]], *, per_page: int = 2, remaining: int = 4999,
                 limit: int = 5000) -> None:
        self.assets = assets
        self.per_page = per_page
        self.remaining = remaining
        self.limit = limit
        self.bodies: list[dict[str, Any]] = []
        self.fail: dict[int, tuple[int, str]] = {}
        httpserver.expect_request(SEARCH, method="POST").respond_with_handler(self.answer)

    def answer(self, request: Request) -> Response:
        assert request.headers["Content-Type"] == "application/json"
        assert request.authorization.username == "614335564976464"  # the SDK's Basic auth from CLOUDINARY_URL
        body = json.loads(request.data)
        self.bodies.append(body)
        if len(self.bodies) in self.fail:
            status, message = self.fail[len(self.bodies)]
            return Response(json.dumps({"error": {"message": message}}), status, content_type="application/json")
        start = int(body.get("next_cursor", "cursor-0").split("-")[1])
        page = self.assets[start:start + self.per_page]
        answer: dict[str, Any] = {"total_count": len(self.assets), "time": 12, "resources": copy.deepcopy(page)}
        if start + self.per_page < len(self.assets):
            answer["next_cursor"] = f"cursor-{start + self.per_page}"
        self.remaining -= 1
        headers = {"X-FeatureRateLimit-Limit": str(self.limit), "X-FeatureRateLimit-Remaining": str(self.remaining),
                   "X-FeatureRateLimit-Reset": format_datetime(RESET, usegmt=True)}
        return Response(json.dumps(answer), 200, headers=headers, content_type="application/json")


@pytest.fixture
def search(cloudinary_server) -> SearchAPI:
    return SearchAPI(cloudinary_server, copy.deepcopy(TRUTH))


def reconciled(capsys, *arguments: str) -> tuple[int, list[str], list[str]]:
    """Run `reconcile` (DATABASE_URL from the environment): exit status, stdout lines, stderr lines."""
    status = cli(["reconcile", *arguments])
    captured = capsys.readouterr()
    return status, captured.out.splitlines(), captured.err.splitlines()


def reconcile_events(url: str) -> list[dict[str, Any]]:
    return [event for event in events(url) if event["notification_type"] == "reconcile"]


def expected_rows(url: str) -> dict[str, dict[str, Any]]:
    return mirror(url)["assets"]


# --- convergence ------------------------------------------------------------------------------------------

def test_a_mirror_that_missed_notifications_converges_and_a_second_run_finds_nothing(database, search, clocks,
                                                                                     capsys):
    known_mirror()
    before = mirror(database)

    status, out, err = reconciled(capsys)  # dry: what differs, nothing written

    assert status == 0
    assert out[:3] == [
        f"stale     {CHAIR}  image/upload/shop/chairs/oak_chair  version, secure_url, tags, metadata",
        f"missing   {TABLE}  image/upload/shop/tables/walnut_table",
        f"vanished  {STOOL}  image/upload/shop/stools/pine_stool",
    ]
    assert out[3].startswith("reconcile: complete: 2 page(s), 3 assets, 2 Search API call(s); 3 difference(s): "
                             "1 missing, 1 stale, 1 vanished; dry run: nothing written")
    assert mirror(database) == before and reconcile_events(database) == []
    assert query(database, "SELECT COUNT(*) AS n FROM cloudinary_reconcile") == [{"n": 0}]  # no bookkeeping
    assert err == ["reconcile: page 1: 2 assets, 2 differences (1 missing, 1 stale, 0 kept), "
                   "4998 Search API calls left this hour",
                   "reconcile: page 2: 3 assets, 2 differences (1 missing, 1 stale, 0 kept), "
                   "4997 Search API calls left this hour"]

    status, out, err = reconciled(capsys, "--apply")

    assert status == 0 and out[:3] == [
        f"stale     {CHAIR}  image/upload/shop/chairs/oak_chair  version, secure_url, tags, metadata",
        f"missing   {TABLE}  image/upload/shop/tables/walnut_table",
        f"vanished  {STOOL}  image/upload/shop/stools/pine_stool"]
    assert out[3].endswith("written as 3 reconcile event(s)")
    rows = expected_rows(database)
    chair, table, lamp, stool = rows[CHAIR], rows[TABLE], rows[LAMP], rows[STOOL]
    assert (chair["version"], chair["tags"], chair["metadata"]) == (
        1715100000, ["catalog", "chairs", "sale"], {"product_line": "heritage", "season": "summer"})
    assert chair["secure_url"] == CHAIR_NOW["secure_url"] and chair["original_filename"] == "IMG_4411"  # kept
    assert chair["last_notification_at"] == "2024-05-08T11:59:00.000000Z"  # the search's time less the index lag
    assert {key: table[key] for key in ("public_id", "asset_folder", "version", "tags", "context", "metadata",
                                        "deleted", "created_at", "width")} == {
        "public_id": "shop/tables/walnut_table", "asset_folder": "shop/tables", "version": 1714986001,
        "tags": ["catalog"], "context": {}, "metadata": {}, "deleted": False,
        "created_at": "2024-05-06T10:00:00.000000Z", "width": 2400}
    assert lamp == before["assets"][LAMP]  # it agreed: untouched
    assert stool["deleted"] and stool["deleted_at"] == "2024-05-08T11:59:00.000000Z"

    logged = reconcile_events(database)
    assert [(event["asset_id"], json.loads(event["payload"])["reconcile"]) for event in logged] == [
        (CHAIR, "stale"), (TABLE, "missing"), (STOOL, "vanished")]
    stale = json.loads(logged[0]["payload"])
    assert {key: stale[key] for key in ("notification_type", "source", "timestamp", "searched_at", "expression",
                                        "differences", "fields")} == {
        "notification_type": "reconcile", "source": "search", "timestamp": "2024-05-08T11:59:00.000000Z",
        "searched_at": "2024-05-08T12:00:00.000000Z", "expression": "",
        "differences": ["version", "secure_url", "tags", "metadata"], "fields": ["tags", "context", "metadata"]}
    assert stale["resource"] == CHAIR_NOW  # the asset exactly as the search returned it
    assert all(event["signature"] is None and event["state"] == "applied" for event in logged)
    [done] = db.store(database).reconcile_passes()
    assert (done["finished_at"], done["pages"], done["assets"], done["missing"], done["stale"], done["vanished"],
            done["calls"], done["next_cursor"]) == ("2024-05-08T12:00:00.000000Z", 2, 3, 1, 1, 1, 2, None)
    assert query(database, "SELECT COUNT(*) AS n FROM cloudinary_reconcile_seen") == [{"n": 0}]
    converged = mirror(database)

    status, out, _ = reconciled(capsys, "--apply")  # Cloudinary and the mirror agree now

    assert status == 0 and out[0].startswith("reconcile: complete: 2 page(s), 3 assets, 2 Search API call(s); "
                                             "0 difference(s)")
    assert len(reconcile_events(database)) == 3 and mirror(database) == converged

    assert cli(["replay"]) == 0  # the event log alone rebuilds the same mirror
    capsys.readouterr()
    assert mirror(database) == converged


def test_the_search_requests_are_exactly_what_the_sdk_sends(database, search, clocks, capsys):
    assert reconciled(capsys)[0] == 0
    assert search.bodies == [BODY, {**BODY, "next_cursor": "cursor-2"}]

    search.bodies.clear()
    assert reconciled(capsys, "--since", "2024-05-01", "--expression", "folder:shop/*")[0] == 0

    expression = ('(folder:shop/*) AND (uploaded_at>="2024-05-01T00:00:00Z" OR '
                  'last_updated.updated_at>="2024-05-01T00:00:00Z")')
    assert search.bodies == [{"expression": expression, **BODY},
                             {"expression": expression, **BODY, "next_cursor": "cursor-2"}]

    search.bodies.clear()
    assert reconciled(capsys, "--since", "36h")[0] == 0  # a span back from now, fixed when the pass starts
    assert search.bodies[0]["expression"] == ('uploaded_at>="2024-05-07T00:00:00Z" OR '
                                              'last_updated.updated_at>="2024-05-07T00:00:00Z"')


def test_a_narrowed_or_partial_search_never_marks_anything_vanished(database, search, clocks, capsys):
    known_mirror()
    for arguments in (["--since", "7d"], ["--expression", "resource_type:image"], ["--cursor", "cursor-0"]):
        status, out, _ = reconciled(capsys, "--apply", *arguments)
        assert status == 0 and not any(line.startswith("vanished") for line in out), arguments
    assert not expected_rows(database)[STOOL]["deleted"]
    assert all(row["finished_at"] for row in db.store(database).reconcile_passes())


def test_a_search_that_returns_much_less_than_the_mirror_marks_nothing_deleted(database, cloudinary_server, clocks,
                                                                               capsys):
    """A wrong CLOUDINARY_URL (another cloud, an empty one) looks like everything vanished."""
    for number in range(12):
        resource = found(f"{number:032x}", f"shop/item{number}", created=f"2024-05-06T10:{number:02d}:00Z")
        send(upload(f"{number:032x}", resource, f"2024-05-06T10:{number:02d}:01.000Z"))
    SearchAPI(cloudinary_server, [found("d" * 32, "elsewhere/other")])

    status, out, _ = reconciled(capsys, "--apply")

    assert status == reconcile.EXIT_STOPPED
    assert sum(line.startswith("vanished") for line in out) == 12
    assert "none is marked deleted" in out[-2] or "none is marked deleted" in "\n".join(out)
    assert not any(row["deleted"] for row in expected_rows(database).values())

    status, out, _ = reconciled(capsys, "--apply", "--resume", "--max-vanished", "5")
    assert status == reconcile.EXIT_STOPPED and not any(row["deleted"] for row in expected_rows(database).values())


# --- newer state wins ------------------------------------------------------------------------------------

def tags_changed(tags_added: list[str], at: str, removed: list[str] | None = None) -> dict[str, Any]:
    payload = load("resource_tags_changed")
    payload["resources"] = [{"asset_id": CHAIR, "public_id": "shop/chairs/oak_chair", "resource_type": "image",
                             "type": "upload", "added": tags_added, "removed": removed or []}]
    payload["notification_context"] = {"triggered_at": at, "triggered_by": {"source": "ui"}}
    payload.pop("timestamp", None)
    return payload


def test_a_notification_newer_than_the_search_is_never_overwritten(database, search, clocks, capsys):
    known_mirror()
    # A tag change made right after the search ran, delivered before the reconcile writes: the mirror is newer.
    assert send(tags_changed(["hero"], "2024-05-08T12:00:05.000Z", removed=["catalog"])).status == 200

    status, out, _ = reconciled(capsys, "--apply")

    assert status == 0
    assert out[0] == f"stale     {CHAIR}  image/upload/shop/chairs/oak_chair  version, secure_url, tags, metadata"
    chair = expected_rows(database)[CHAIR]
    # The search's tags (catalog, chairs, sale) as they were at its time, then the newer change: hero added,
    # catalog removed. Not the search's list as it stands, and not the mirror's as it stood.
    assert chair["tags"] == ["chairs", "hero", "sale"]
    assert chair["version"] == 1715100000 and chair["metadata"]["season"] == "summer"

    # One made after the search but delivered late (a retry), and one older than the search delivered even later.
    assert send(tags_changed(["outlet"], "2024-05-08T12:00:30.000Z")).status == 200
    assert send(tags_changed(["stale-retry"], "2024-05-08T09:00:00.000Z")).status == 200

    chair = expected_rows(database)[CHAIR]
    assert chair["tags"] == ["chairs", "hero", "outlet", "sale"]  # the later change applies; the older is history


def test_a_difference_a_newer_notification_already_settled_is_kept_not_written(database, search, clocks, capsys):
    known_mirror()
    assert reconciled(capsys, "--apply")[0] == 0
    assert send(tags_changed(["hero"], "2024-05-08T12:10:00.000Z")).status == 200  # Cloudinary's index lags
    clocks.wall = SEARCHED_AT + timedelta(minutes=10, seconds=30)  # the search runs 30 s after the change
    written = len(reconcile_events(database))

    status, out, _ = reconciled(capsys, "--apply")

    assert status == 0
    assert out[0] == (f"kept      {CHAIR}  image/upload/shop/chairs/oak_chair  tags: a notification newer than the "
                      "search set them")
    assert "(1 kept: a notification newer than the search changed them)" in out[-1]
    assert len(reconcile_events(database)) == written and "hero" in expected_rows(database)[CHAIR]["tags"]


def test_an_asset_the_database_refuses_is_quarantined_alone_and_the_pass_goes_on(database, search, clocks, capsys):
    from tests.functions.test_asset_sync_storage import allow_public_id, reject_public_id

    known_mirror()
    reject_public_id(database, "shop/tables/walnut_table")  # a rule of the CMS's own, say

    status, out, _ = reconciled(capsys, "--apply")

    assert status == 0 and "written as 3 reconcile event(s), 1 quarantined (see status)" in out[-1]
    rows = expected_rows(database)
    assert TABLE not in rows and rows[CHAIR]["version"] == 1715100000 and rows[STOOL]["deleted"]
    [refused] = [event for event in reconcile_events(database) if event["asset_id"] == TABLE]
    assert refused["state"] == "quarantined" and "reject" in refused["detail"]

    allow_public_id(database)
    assert cli(["replay"]) == 0  # once the cause is fixed, replay applies it like any quarantined event
    capsys.readouterr()
    assert expected_rows(database)[TABLE]["public_id"] == "shop/tables/walnut_table"


# --- the rate limit, failures, resuming ------------------------------------------------------------------

def test_it_stops_before_the_reserve_with_the_cursor_and_resume_continues(database, cloudinary_server, clocks,
                                                                          capsys):
    known_mirror()
    api = SearchAPI(cloudinary_server, copy.deepcopy(TRUTH), per_page=1, remaining=52, limit=500)

    status, out, err = reconciled(capsys, "--apply")  # the answers say 51, then 50 left: the reserve (50)

    assert status == reconcile.EXIT_STOPPED
    assert [body.get("next_cursor") for body in api.bodies] == [None, "cursor-1"]
    assert out[2:] == [
        "reconcile: stopped (rate_budget): 50 Search API calls are left this hour, and --reserve keeps 50 free for "
        "everything else (the limit resets at 13:00:00 UTC).",
        "  So far: 2 page(s), 2 assets, 2 Search API call(s); 2 difference(s): 1 missing, 1 stale, 0 vanished; "
        "written as 2 reconcile event(s)",
        "Resume with: python -m shared run asset_sync reconcile --apply --resume",
        "  or from the cursor: python -m shared run asset_sync reconcile --cursor cursor-2 --apply"]
    assert err[-1].endswith("50 Search API calls left this hour")
    assert expected_rows(database)[TABLE]["public_id"] == "shop/tables/walnut_table"  # page 2 is written
    assert not expected_rows(database)[STOOL]["deleted"]  # the search has not finished: nothing vanished yet
    [stopped] = db.store(database).reconcile_passes()
    assert (stopped["next_cursor"], stopped["stopped"], stopped["lease_until"], stopped["finished_at"]) == (
        "cursor-2", "rate_budget", None, None)

    status, out, _ = reconciled(capsys, "--apply", "--resume")  # the same hour, and the last answer said 50

    assert status == reconcile.EXIT_STOPPED and len(api.bodies) == 2  # not one more call

    api.remaining = 4999  # the hour turned
    clocks.wall = RESET + timedelta(minutes=1)
    status, out, _ = reconciled(capsys, "--apply", "--resume")

    assert status == 0 and [body.get("next_cursor") for body in api.bodies[2:]] == ["cursor-2"]
    assert out == [f"vanished  {STOOL}  image/upload/shop/stools/pine_stool",
                   "reconcile: complete: 1 page(s), 1 assets, 1 Search API call(s); 1 difference(s): 0 missing, "
                   "0 stale, 1 vanished; written as 1 reconcile event(s)"]
    rows = expected_rows(database)
    assert rows[STOOL]["deleted"] and rows[CHAIR]["version"] == 1715100000
    [done] = db.store(database).reconcile_passes()
    assert (done["pages"], done["calls"], done["missing"], done["stale"], done["vanished"]) == (3, 3, 1, 1, 1)
    assert done["finished_at"] == "2024-05-08T13:01:00.000000Z"


def test_the_cursor_printed_by_a_dry_run_continues_it(database, cloudinary_server, clocks, capsys):
    SearchAPI(cloudinary_server, copy.deepcopy(TRUTH), per_page=1, remaining=52, limit=500)

    status, out, _ = reconciled(capsys)

    assert status == reconcile.EXIT_STOPPED
    assert out[-1] == "Continue from the cursor: python -m shared run asset_sync reconcile --cursor cursor-2"


def test_wait_sleeps_until_the_hourly_reset_and_goes_on(database, cloudinary_server, clocks, capsys, monkeypatch):
    api = SearchAPI(cloudinary_server, copy.deepcopy(TRUTH), per_page=1, remaining=52, limit=500)

    def turn_of_the_hour(seconds: float) -> None:
        clocks.sleep(seconds)
        api.remaining = 5000

    monkeypatch.setattr(reconcile, "sleep", turn_of_the_hour)

    status, out, err = reconciled(capsys, "--apply", "--wait")

    assert status == 0 and out[-1].startswith("reconcile: complete: 3 page(s), 3 assets, 3 Search API call(s)")
    assert clocks.slept == [3601.0]  # from 12:00:00 to the reset at 13:00:00, and a second
    assert ("reconcile: 50 Search API calls left this hour (--reserve 50): waiting 60 min for the reset (the limit "
            "resets at 13:00:00 UTC)") in err
    assert [body.get("next_cursor") for body in api.bodies] == [None, "cursor-1", "cursor-2"]


@pytest.mark.parametrize("status", [420, 429])
def test_a_rate_limited_answer_stops_with_the_cursor_and_no_call_until_the_reset(database, search, clocks, capsys,
                                                                                 status):
    known_mirror()
    search.fail = {2: (status, "Rate Limit Exceeded")}

    code, out, _ = reconciled(capsys, "--apply")

    assert code == reconcile.EXIT_STOPPED and len(search.bodies) == 2 and search.bodies[1]["next_cursor"] == "cursor-2"
    assert out[-4] == (f"reconcile: stopped (rate_limited): Cloudinary answered that the hourly limit is reached "
                       f"(resources/search: Error {status} - Rate Limit Exceeded) (the limit resets at 13:00:00 UTC).")
    assert out[-2] == "Resume with: python -m shared run asset_sync reconcile --apply --resume"
    assert expected_rows(database)[TABLE]["deleted"] is False  # page 1 is written

    assert reconciled(capsys, "--apply", "--resume")[0] == reconcile.EXIT_STOPPED  # within the hour: no call
    assert len(search.bodies) == 2

    clocks.wall = RESET + timedelta(seconds=5)
    code, out, _ = reconciled(capsys, "--apply", "--resume")
    assert code == 0 and [body.get("next_cursor") for body in search.bodies[2:]] == ["cursor-2"]
    assert expected_rows(database)[STOOL]["deleted"]


def test_after_a_rate_limited_answer_not_even_a_new_pass_calls_before_the_reset(database, search, clocks, capsys):
    search.fail = {1: (420, "Rate Limit Exceeded")}
    assert reconciled(capsys, "--apply")[0] == reconcile.EXIT_STOPPED

    code, out, _ = reconciled(capsys, "--apply")  # the budget is the account's, not the pass's

    assert code == reconcile.EXIT_STOPPED and len(search.bodies) == 1
    assert out[0].startswith("reconcile: stopped (rate_budget): 0 Search API calls are left this hour")


def test_a_server_error_is_tried_again_then_the_run_stops_resumable(database, search, clocks, capsys):
    known_mirror()
    search.fail = {2: (500, "Internal error"), 3: (503, "Unavailable")}  # then the third try of page 2 works

    code, out, err = reconciled(capsys, "--apply")

    assert code == 0 and clocks.slept == [2.0, 8.0]
    assert [body.get("next_cursor") for body in search.bodies] == [None, "cursor-2", "cursor-2", "cursor-2"]
    assert "reconcile: the search failed (resources/search: Error 500 - Internal error); trying again in 2 s" in err
    assert out[-1].startswith("reconcile: complete: 2 page(s), 3 assets, 4 Search API call(s)")

    search.bodies.clear()
    search.fail = {2: (502, "Bad gateway"), 3: (500, "x"), 4: (504, "Gateway timeout")}
    clocks.slept.clear()
    code, out, _ = reconciled(capsys, "--apply")

    assert code == reconcile.EXIT_STOPPED and clocks.slept == [2.0, 8.0] and len(search.bodies) == 4
    assert out[-4] == ("reconcile: stopped (unavailable): Cloudinary's search failed 3 time(s): resources/search: "
                       "Error 504 - Gateway timeout.")
    [latest, _first] = db.store(database).reconcile_passes()
    assert (latest["next_cursor"], latest["stopped"], latest["calls"]) == ("cursor-2", "unavailable", 4)


def test_a_refused_search_or_missing_credentials_is_an_error(database, search, clocks, capsys, monkeypatch):
    search.fail = {1: (400, "Invalid expression: unbalanced parenthesis")}

    assert cli(["reconcile", "--expression", "(oops", "--apply"]) == 1
    assert capsys.readouterr().err == ("asset_sync: Cloudinary rejected the request. resources/search: Error 400 - "
                                       "Invalid expression: unbalanced parenthesis\n")
    [refused] = db.store(database).reconcile_passes()
    assert refused["lease_until"] is None  # given back: the next run need not wait for it

    assert cli(["reconcile", "--since", "yesterday"]) == 1
    assert "--since 'yesterday' is neither a date/time" in capsys.readouterr().err
    assert cli(["reconcile", "--resume", "--since", "7d"]) == 1
    assert "leave out --expression and --since" in capsys.readouterr().err

    monkeypatch.delenv("CLOUDINARY_URL")
    assert cli(["reconcile"]) == 1
    assert "set CLOUDINARY_URL" in capsys.readouterr().err
    assert len(search.bodies) == 1


def test_a_dry_run_writes_nothing_not_even_the_database_file(tmp_path, monkeypatch, search, clocks, capsys):
    url = f"sqlite:///{tmp_path}/absent/mirror.sqlite3"
    monkeypatch.setenv("DATABASE_URL", url)
    db.close_all()

    status, out, _ = reconciled(capsys)

    assert status == 0 and out == [
        f"missing   {CHAIR}  image/upload/shop/chairs/oak_chair",
        f"missing   {TABLE}  image/upload/shop/tables/walnut_table",
        f"missing   {LAMP}  image/upload/shop/lamps/brass_lamp",
        "reconcile: complete: 2 page(s), 3 assets, 2 Search API call(s); 3 difference(s): 3 missing, 0 stale, "
        "0 vanished; dry run: nothing written (--apply writes them)"]
    assert not (tmp_path / "absent").exists()
    assert cli(["reconcile", "--resume"]) == 1  # nothing stored to resume
    assert "no unfinished reconcile pass" in capsys.readouterr().err


def test_two_runs_never_continue_one_pass_at_once(database, search, clocks, capsys):
    known_mirror()
    store = db.store(database)
    held = store.start_pass("", True, None, now="2024-05-08T11:59:00.000000Z", lease_until="2024-05-08T12:09:00Z")

    assert reconciled(capsys, "--apply", "--resume")[0] == reconcile.EXIT_STOPPED
    assert reconciled(capsys, "--apply")[1][-1].startswith("reconcile: busy: another reconcile run is continuing "
                                                           "this pass (it holds it until 2024-05-08T12:09:00")
    assert search.bodies == []

    clocks.wall = SEARCHED_AT + timedelta(minutes=10)  # its run died: the lease ran out
    assert reconciled(capsys, "--apply", "--resume")[0] == 0
    [done] = db.store(database).reconcile_passes()
    assert done["id"] == held["id"] and done["finished_at"] and expected_rows(database)[STOOL]["deleted"]


def test_a_signed_notification_claiming_to_be_a_reconcile_event_is_only_logged(database):
    payload = {"notification_type": "reconcile", "source": "search", "reconcile": "vanished", "asset_id": ASSET,
               "timestamp": "2030-01-01T00:00:00Z"}
    send("upload")

    assert send(payload).status == 200

    assert not expected_rows(database)[ASSET]["deleted"]
    assert cli(["replay"]) == 0  # nor on replay: it is signed, so not one of asset_sync's own
    assert not expected_rows(database)[ASSET]["deleted"]


def test_a_database_reset_by_dropping_the_older_tables_only_migrates_again(database, search, clocks, capsys):
    """A cleanup written for schema 2 (tests/faults' does) leaves the reconcile tables behind: no matter."""
    known_mirror()
    assert reconciled(capsys, "--apply")[0] == 0
    db.close_all()
    execute(database, *(f"DROP TABLE {table}" for table in ("cloudinary_events", "cloudinary_assets",
                                                            "cloudinary_folders", "cloudinary_folder_renames",
                                                            "cloudinary_sync_schema")))
    db.forget_migrations()

    assert send("upload").status == 200
    assert db.store(database).status()["schema_version"] == 3


# --- the schedule ----------------------------------------------------------------------------------------

class LambdaContext:
    """What the Lambda runtime passes: the time left, which the clock below spends."""

    def __init__(self, clocks: Clocks, seconds: float) -> None:
        self.clocks = clocks
        self.ends = clocks.monotonic + seconds

    def get_remaining_time_in_millis(self) -> int:
        return int((self.ends - self.clocks.monotonic) * 1000)


def test_a_scheduled_run_stays_within_the_invocation_and_the_next_resumes(database, cloudinary_server, clocks,
                                                                         monkeypatch, caplog):
    known_mirror()
    api = SearchAPI(cloudinary_server, copy.deepcopy(TRUTH), per_page=1)
    answer = api.answer

    def slow(request: Request) -> Response:  # each page takes 5 s of the invocation's time
        clocks.monotonic += 5
        return answer(request)

    api.answer = slow
    cloudinary_server.clear()
    cloudinary_server.expect_request(SEARCH, method="POST").respond_with_handler(slow)
    caplog.set_level(logging.INFO, logger="cloudinary_webhooks")

    first = handler({"reconcile": {}}, LambdaContext(clocks, 15))  # 13 s after the margin: two 5-s pages fit

    assert first["status"] == "stopped" and first["reason"] == "time_budget" and first["pages"] == 2
    assert first["resumable"] and first["apply"]
    [line] = [json.loads(record.message) for record in caplog.records if '"scheduled"' in record.message]
    assert line["function"] == "asset_sync" and line["scheduled"] == "reconcile" and line["reason"] == "time_budget"
    [stopped] = db.store(database).reconcile_passes()
    assert stopped["next_cursor"] == "cursor-2" and stopped["lease_until"] is None

    clocks.wall += timedelta(days=1)  # the next night
    second = handler({"reconcile": {}}, LambdaContext(clocks, 15))

    assert second["status"] == "complete" and second["pages"] == 1 and second["vanished"] == 1
    assert [body.get("next_cursor") for body in api.bodies] == [None, "cursor-1", "cursor-2"]
    assert expected_rows(database)[STOOL]["deleted"] and expected_rows(database)[TABLE]["deleted"] is False

    clocks.wall += timedelta(hours=2)  # a schedule that fires again the same night: the pass is recent
    assert handler({"reconcile": {}}, LambdaContext(clocks, 15))["status"] == "up_to_date"
    clocks.wall += timedelta(hours=20)  # the night after: a new pass, from the first page
    third = handler({"reconcile": {}}, LambdaContext(clocks, 15))
    assert third["status"] == "stopped" and third["pass_id"] == second["pass_id"] + 1
    assert [body.get("next_cursor") for body in api.bodies[3:]] == [None, "cursor-1"]


def test_a_scheduled_run_with_bad_options_fails_the_invocation(database, search, clocks, caplog):
    with pytest.raises(Exception) as raised:
        handler({"reconcile": {"reserv": 10}}, LambdaContext(clocks, 15))
    assert "unknown option(s): reserv" in raised.value.log_detail
    assert search.bodies == []


def test_an_http_event_is_never_taken_for_a_schedule(database, search):
    """A Function URL event has many keys; one carrying {"reconcile": {}} as its body is a notification (401)."""
    event = {"version": "2.0", "rawPath": "/", "headers": {"content-type": "application/json"},
             "requestContext": {"http": {"method": "POST"}}, "body": json.dumps({"reconcile": {}}),
             "isBase64Encoded": False}
    assert handler(event, None)["statusCode"] == 401
    assert handle._scheduled_task({"reconcile": {}, "extra": 1}) is None
    assert handle._scheduled_task({"reconcile": "x"}) is None
    assert search.bodies == []
