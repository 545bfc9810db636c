"""asset_sync: which asset a notification means, and in which order its facts count (issue 12, items 15, 16).

Item 15. Notifications from before 2021 (uploads, moderation) and the SDK's own eager fixture carry no
``asset_id``. They were answered "unmatched" and left no row. Now an asset is identified by (resource_type,
type, public_id) while its id is unknown (a provisional row keyed ``~<resource_type>/<type>/<public_id>``),
and that row merges into the asset's own when a notification names both. The types come from the delivery
URL where the payload has none (``.../image/authenticated/s--sig--/v123/...`` too). Rows that eager
notifications create carry the public ID and types the payload names.

Item 16. Moderation, info, explode and delete notifications may carry no ``timestamp`` and no
``notification_context``: they were ordered by arrival, so a late retry of an older moderation decision
overwrote a newer one. Now the payload's own times order them (``moderation_updated_at``, ``uploaded_at``,
``created_at``), and the result does not depend on the arrival order.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

import pytest

from functions.asset_sync.__main__ import main as cli
from functions.asset_sync.mirror import event_time
from tests.functions.asset_sync_support import (
    ASSET,
    asset,
    events,
    fresh_database,
    load,
    mirror,
    reset,
    send,
)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path, monkeypatch, signing_secret) -> Iterator[str]:
    yield from fresh_database(request.param, tmp_path, monkeypatch)


# pycloudinary's own eager notification fixture (test/test_utils.py, test_verify_notification_signature):
# no asset_id, no resource_type/type, no notification_context.
SDK_EAGER = ('{"notification_type":"eager","eager":[{"transformation":"sp_full_hd/mp4","bytes":1055,'
             '"url":"http://res.cloudinary.com/demo/video/upload/sp_full_hd/v1533125278/dog.mp4",'
             '"secure_url":"https://res.cloudinary.com/demo/video/upload/sp_full_hd/v1533125278/dog.mp4"}],'
             '"public_id":"dog","batch_id":"9b11fa058c61fa577f4ec516bf6ee756ac2aefef095af99aef1302142cc1694a"}')
DOG_ID = "d06d06d06d06d06d06d06d06d06d06d0"


def legacy(payload: dict[str, Any], *drop: str) -> dict[str, Any]:
    """The payload as Cloudinary sent it before 2021: no asset_id, no notification_context (and ``drop``)."""
    for key in ("asset_id", "notification_context", *drop):
        payload.pop(key, None)
    return payload


def dog_upload() -> dict[str, Any]:
    return {"notification_type": "upload", "timestamp": "2018-08-01T12:14:40+00:00", "asset_id": DOG_ID,
            "public_id": "dog", "version": 1533125278, "resource_type": "video", "type": "upload",
            "format": "mp4", "created_at": "2018-08-01T12:14:38Z",
            "secure_url": "https://res.cloudinary.com/demo/video/upload/v1533125278/dog.mp4"}


# --- item 15: no asset_id -------------------------------------------------------------------------------

def test_an_upload_without_asset_id_gets_a_row(database):
    response = send(legacy(load("upload")))

    assert response.status == 200 and response.body["status"] == "done" and "unmatched" not in response.body
    [row] = mirror(database)["assets"].values()
    assert row["asset_id"] == "~image/upload/shop/chairs/oak_chair"
    assert (row["public_id"], row["resource_type"], row["type"]) == ("shop/chairs/oak_chair", "image", "upload")
    assert row["tags"] == ["catalog", "chairs"] and row["width"] == 2400


def test_the_sdk_eager_fixture_gets_a_row_with_its_public_id_and_types_from_the_url(database):
    response = send(SDK_EAGER.encode())

    assert response.status == 200 and response.body["status"] == "done" and "unmatched" not in response.body
    [row] = mirror(database)["assets"].values()
    assert row["asset_id"] == "~video/upload/dog"
    assert (row["public_id"], row["resource_type"], row["type"]) == ("dog", "video", "upload")
    assert [item["transformation"] for item in row["derived"]] == ["sp_full_hd/mp4"]


@pytest.mark.parametrize("order", ["eager first", "upload first"])
def test_the_provisional_row_merges_into_the_asset_when_its_id_appears(database, order):
    bodies = [SDK_EAGER.encode(), json.dumps(dog_upload()).encode()]
    for body in bodies if order == "eager first" else reversed(bodies):
        response = send(body)
        assert response.status == 200 and response.body["status"] == "done", response.body

    assets = mirror(database)["assets"]
    assert list(assets) == [DOG_ID]  # one row, under the asset's own id
    row = assets[DOG_ID]
    assert (row["public_id"], row["resource_type"], row["type"], row["format"]) == ("dog", "video", "upload", "mp4")
    assert [item["transformation"] for item in row["derived"]] == ["sp_full_hd/mp4"]


def test_either_order_gives_the_same_mirror_and_replay_agrees(database, capsys):
    moderation = legacy(load("moderation"), "resource_type", "type")
    info = legacy(load("info"), "resource_type", "type")
    notifications = [load("upload"), moderation, info, load("eager")]
    mirrors = []
    for order in itertools.permutations(notifications):
        reset(database)
        for payload in [*order, load("rename")]:  # (matched by name: see the README's known limits)
            response = send(payload)
            assert response.status == 200 and response.body["status"] == "done", response.body
        mirrors.append(mirror(database))
    assert len(mirrors) == 24 and all(found == mirrors[0] for found in mirrors)
    row = mirrors[0]["assets"][ASSET]
    assert list(mirrors[0]["assets"]) == [ASSET]
    assert row["moderation_status"] == "approved" and row["public_id"] == "shop/chairs/oak_chair_heritage"
    assert "google_tagging" in row["info"]

    assert cli(["replay"]) == 0
    assert mirror(database) == mirrors[-1]


def test_a_moderation_without_asset_id_and_types_finds_the_uploaded_asset(database):
    assert send("upload").status == 200

    response = send(legacy(load("moderation"), "resource_type", "type"))

    assert response.status == 200 and response.body["status"] == "done"
    assert list(mirror(database)["assets"]) == [ASSET]
    assert asset(database)["moderation_status"] == "approved"


def test_same_public_id_of_another_resource_type_is_another_asset(database):
    assert send("upload").status == 200
    video = legacy(load("moderation"), "resource_type", "type")
    video["url"] = video["url"].replace("/image/", "/video/")
    video["secure_url"] = video["secure_url"].replace("/image/", "/video/")

    assert send(video).status == 200

    assets = mirror(database)["assets"]
    assert sorted(assets) == [ASSET, "~video/upload/shop/chairs/oak_chair"]
    assert assets[ASSET]["moderation_status"] is None
    assert assets["~video/upload/shop/chairs/oak_chair"]["resource_type"] == "video"


@pytest.mark.parametrize(("url", "types"), [
    ("https://res.cloudinary.com/demo/image/authenticated/s--Ai2bsbQU--/v1714986001/shop/chairs/oak_chair.jpg",
     ("image", "authenticated")),
    ("https://res.cloudinary.com/demo/video/private/s--xYz_-12a--/c_scale,w_500/v1714986001/shop/chairs/oak.mp4",
     ("video", "private")),
    ("https://demo-res.cloudinary.com/raw/upload/v1714986001/shop/chairs/oak_chair.pdf", ("raw", "upload")),
    ("http://cloudinary-a.akamaihd.net/demo/image/upload/v1714986001/shop/chairs/oak_chair.jpg", ("image", "upload")),
])
def test_types_come_from_the_delivery_url(database, url, types):
    payload = legacy(load("moderation"), "resource_type", "type")
    payload.update(url=url, secure_url=url)

    assert send(payload).status == 200

    [row] = mirror(database)["assets"].values()
    assert (row["resource_type"], row["type"]) == types
    assert row["asset_id"] == f"~{types[0]}/{types[1]}/shop/chairs/oak_chair"


@pytest.mark.parametrize(("url", "named", "expected"), [
    ("https://res.cloudinary.com/demo/image/authenticated/s--Ai2bsbQU--/c_fill,w_400/v1714986001/shop/v2/oak.jpg",
     None, ("~image/authenticated/shop/v2/oak", "shop/v2/oak", "image", "authenticated")),
    ("https://res.cloudinary.com/demo/image/authenticated/s--Ai2bsbQU--/c_fill,w_400/v1714986001/shop/v2/oak.jpg",
     "shop/v2/oak", ("~image/authenticated/shop/v2/oak", "shop/v2/oak", "image", "authenticated")),
    ("https://res.cloudinary.com/v1/raw/upload/fl_attachment/v1714986001/docs/price%20list.pdf",
     None, ("~raw/upload/docs/price list.pdf", "docs/price list.pdf", "raw", "upload")),
    ("https://media.example.com/video/private/sp_hd/v1714986001/clips/oak.m3u8",
     None, ("~video/private/clips/oak", "clips/oak", "video", "private")),
])
def test_an_eager_result_without_asset_id_is_named_by_its_urls(database, url, named, expected):
    payload = {"notification_type": "eager", "batch_id": "b1", "eager": [{"transformation": "t", "secure_url": url}]}
    if named:
        payload["public_id"] = named

    assert send(payload).status == 200

    [row] = mirror(database)["assets"].values()
    assert (row["asset_id"], row["public_id"], row["resource_type"], row["type"]) == expected


def test_eager_rows_carry_the_public_id_and_types(database):
    """An eager result that arrives before its upload (or whose upload was missed) names the asset."""
    response = send("eager")

    assert response.status == 200
    row = asset(database)
    assert (row["public_id"], row["resource_type"], row["type"]) == ("shop/chairs/oak_chair", "image", "upload")


def test_an_eager_result_after_a_rename_does_not_bring_the_old_public_id_back(database):
    """The public ID an eager notification names is the one the transformation was requested for: a fact only
    where nothing else is known."""
    late_eager = load("eager")
    late_eager["timestamp"] = "2024-05-06T11:00:00+00:00"  # finished after the rename (10:15)
    late_eager["notification_context"]["triggered_at"] = "2024-05-06T11:00:00.000Z"
    for payload in (load("upload"), load("rename"), late_eager):
        assert send(payload).status == 200

    assert asset(database)["public_id"] == "shop/chairs/oak_chair_heritage"


def test_a_notification_naming_nothing_identifiable_is_kept_in_the_log(database):
    payload = {"notification_type": "eager", "batch_id": "c0ed79e610f0636d15a1353a0a866933", "eager": [
        {"width": 150, "height": 100, "url": "https://res.cloudinary.com/1233456ab/image/upload/c_fill,h_100,w_150/"
                                             "noapoaq60varndxnh2or.jpg"}]}

    response = send(payload)

    assert response.status == 200 and response.body["status"] == "done"
    assert len(events(database)) == 1 and mirror(database)["assets"] == {}


# --- item 16: the payload's own times order it -----------------------------------------------------------

def moderation(status: str, at: str) -> dict[str, Any]:
    payload = legacy(load("moderation"), "resource_type", "type")
    payload.update(moderation_status=status, moderation_updated_at=at)
    return payload


@pytest.mark.parametrize("with_asset_id", [True, False])
def test_a_late_retry_of_an_older_moderation_decision_does_not_win(database, with_asset_id):
    older = moderation("rejected", "2024-05-06T09:30:00Z")
    newer = moderation("approved", "2024-05-06T09:45:00Z")
    if with_asset_id:
        older["asset_id"] = newer["asset_id"] = ASSET
    assert send("upload").status == 200

    # The first delivery of `older` failed (a 503, nothing recorded); `newer` arrives; then `older`'s retry.
    for payload in (newer, older):
        assert send(payload).status == 200

    assert asset(database)["moderation_status"] == "approved"


def test_moderation_order_is_the_same_whatever_the_arrival_order(database):
    decisions = [moderation("pending", "2024-05-06T09:10:00Z"), moderation("rejected", "2024-05-06T09:30:00Z"),
                 moderation("approved", "2024-05-06T09:45:00Z")]
    results = set()
    for order in itertools.permutations(decisions):
        reset(database)
        assert send("upload").status == 200
        for payload in order:
            assert send(payload).status == 200
        results.add(asset(database)["moderation_status"])
    assert results == {"approved"}


def test_a_late_legacy_upload_of_an_older_version_does_not_win(database):
    version_1 = legacy(load("upload"), "timestamp")
    version_2 = legacy(load("upload"), "timestamp")
    version_2.update(version=1715000000, created_at="2024-05-06T13:00:00Z", width=1200)

    for payload in (version_2, version_1):
        assert send(payload).status == 200

    [row] = mirror(database)["assets"].values()
    assert row["version"] == 1715000000 and row["width"] == 1200


def test_info_without_context_is_ordered_by_its_own_times(database):
    """An info result (uploaded_at 09:00:01) must not undo a rename (10:14) when it arrives after it."""
    info = legacy(load("info"))
    info["asset_id"] = ASSET
    for payload in (load("upload"), load("rename"), info):
        assert send(payload).status == 200

    row = asset(database)
    assert row["public_id"] == "shop/chairs/oak_chair_heritage" and "google_tagging" in row["info"]


def test_event_time_uses_the_payloads_own_times_before_the_arrival():
    arrival = "2030-01-01T00:00:00Z"
    assert event_time({"moderation_updated_at": "2024-05-06T09:45:00Z", "uploaded_at": "2024-05-06T09:00:01Z"},
                      arrival) == "2024-05-06T09:45:00.000000Z"
    assert event_time({"uploaded_at": "2024-05-06T09:00:01Z"}, arrival) == "2024-05-06T09:00:01.000000Z"
    assert event_time({"created_at": "2024-05-06T09:00:01Z"}, arrival) == "2024-05-06T09:00:01.000000Z"
    assert event_time({"resources": [{"public_id": "x"}]}, arrival) == "2030-01-01T00:00:00.000000Z"
    # Cloudinary's own stamps come first when present
    assert event_time({"timestamp": "2024-05-06T10:00:00+00:00", "created_at": "2024-05-06T09:00:00Z"},
                      arrival) == "2024-05-06T10:00:00.000000Z"
