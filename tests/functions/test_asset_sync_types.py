"""asset_sync: every type Cloudinary sends, and the shapes real notifications have (issue 12, item 17).

``sprite`` is sent by Cloudinary (``generate_sprite`` with ``async``) but was in no type list, while the README
said unlisted types are ignored and the code recorded them. Now the code knows every type pycloudinary's
``create_trigger`` lists (plus ``related_assets`` and ``proof_status_changed`` from Cloudinary's AsyncAPI
description) and the README says what it does with each; a type Cloudinary adds later is recorded in the
event log, as the README says. The samples cover the shapes real notifications have: moderation and info
without resource_type/type, delete resources without asset_folder/display_name, eager HLS entries without
width/height, explode without public_id, Google video tagging's ``info_data`` list, context changes as lists
of ``{name, value}``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from functions.asset_sync.handler import APPLIERS, NOTIFICATION_TYPES, handle
from tests.functions.asset_sync_support import (
    ASSET,
    asset,
    events,
    fresh_database,
    load,
    mirror,
    send,
)
from tests.helpers import ROOT

# pycloudinary 1.46.0, cloudinary/api.py, create_trigger's docstring: "event_type: The event that fires the
# trigger. One of: ..." ("all" is not a notification type: a trigger for every type).
CREATE_TRIGGER_EVENT_TYPES = {
    "access_control_changed", "bulk_refresh_auto_fetch", "create_folder", "delete", "delete_by_token",
    "delete_folder", "eager", "error", "explode", "generate_archive", "info", "invalidate_custom_cdn", "moderation",
    "moderation_summary", "move", "move_or_rename_asset_folder", "multi", "publish", "rename", "report",
    "resource_context_changed", "resource_display_name_changed", "resource_metadata_changed",
    "resource_tags_changed", "restore_asset_version", "sprite", "upload",
}
ASYNCAPI_ONLY = {"related_assets", "proof_status_changed"}  # in Cloudinary's AsyncAPI description
SAMPLES_DIR = ROOT / "functions" / "asset_sync" / "samples"
README = ROOT / "functions" / "asset_sync" / "README.md"


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path, monkeypatch, signing_secret) -> Iterator[str]:
    yield from fresh_database(request.param, tmp_path, monkeypatch)


def samples() -> dict[str, dict[str, Any]]:
    return {path.stem: json.loads(path.read_text()) for path in sorted(SAMPLES_DIR.glob("*.json"))}


# --- the type lists, the samples and the README agree ----------------------------------------------------

def test_every_type_create_trigger_lists_is_handled():
    assert set(NOTIFICATION_TYPES) == set(APPLIERS) == CREATE_TRIGGER_EVENT_TYPES | ASYNCAPI_ONLY
    assert handle.accepts == {"*"}


def test_every_type_has_a_sample_named_after_it_and_every_sample_is_a_known_type():
    found = samples()
    assert set(NOTIFICATION_TYPES) <= set(found)
    for name, payload in found.items():
        assert payload["notification_type"] in NOTIFICATION_TYPES, name
        assert name == payload["notification_type"] or name.startswith(payload["notification_type"] + "_"), name


def test_the_readme_says_what_happens_to_every_type_and_to_unknown_ones():
    text = README.read_text()
    table = text.split("## What each notification does", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`([a-z_]+)`", table))
    assert set(NOTIFICATION_TYPES) <= named, set(NOTIFICATION_TYPES) - named
    assert "sprite" in named
    # Unknown types are recorded (test_a_type_cloudinary_adds_later_is_recorded): the README must not say
    # they are ignored or not recorded.
    assert "not recorded" not in text and "| any other type | 200 ignored" not in text


@pytest.mark.parametrize("name", sorted(samples()))
def test_each_sample_alone_is_recorded(database, name):
    response = send(name)

    assert response.status == 200 and response.body["status"] == "done", response.body
    assert "quarantined" not in response.body
    [event] = events(database)
    assert event["notification_type"] == samples()[name]["notification_type"] and event["state"] == "applied"


@pytest.mark.parametrize("name", sorted(samples()))
def test_each_sample_after_the_upload_is_recorded(database, name):
    assert send("upload").status == 200

    response = send(name)

    assert response.status == 200, response.body
    assert response.body["status"] == ("ignored" if name == "upload" else "done"), response.body


def test_a_type_cloudinary_adds_later_is_recorded(database, cloudinary_server):
    response = send({"notification_type": "asset_archived", "asset_id": ASSET, "public_id": "shop/x",
                     "notification_context": {"triggered_at": "2024-05-06T12:00:00.000Z"}})

    assert response.status == 200 and response.body["status"] == "done"
    assert [event["notification_type"] for event in events(database)] == ["asset_archived"]
    assert mirror(database)["assets"] == {}  # no state of its own: replay applies it once an applier exists
    assert cloudinary_server.log == []


# --- what each shape does --------------------------------------------------------------------------------

def test_sprite_is_an_asset_with_its_css_and_json(database):
    assert send("sprite").status == 200

    row = asset(database, "~image/sprite/chair_icons")
    assert (row["public_id"], row["resource_type"], row["type"], row["version"]) == (
        "chair_icons", "image", "sprite", 1714992000)
    assert row["secure_url"].endswith("/v1714992000/chair_icons.png") and row["secure_url"].startswith("https:")
    assert sorted(item["secure_url"].rsplit(".", 1)[1] for item in row["derived"]) == ["css", "json"]


def test_moderation_before_2021_finds_the_asset_by_public_id_and_url_types(database):
    assert send("upload").status == 200

    assert send("moderation_pre2021").status == 200

    assert list(mirror(database)["assets"]) == [ASSET]
    row = asset(database)
    assert (row["moderation_status"], row["moderation_kind"]) == ("rejected", "aws_rek")


def test_google_video_tagging_keeps_its_list_on_a_video_row(database):
    assert send("info_google_video_tagging").status == 200

    [row] = mirror(database)["assets"].values()
    assert (row["public_id"], row["resource_type"], row["type"]) == ("shop/videos/oak_chair_turntable", "video",
                                                                     "upload")
    info = row["info"]["google_video_tagging"]
    assert info["status"] == "complete" and [item["tag"] for item in info["data"]] == ["furniture", "chair"]


def test_a_delete_without_folder_and_display_name_keeps_them(database):
    assert send("upload").status == 200
    payload = load("delete")
    for key in ("asset_folder", "display_name"):
        del payload["resources"][0][key]
    del payload["notification_context"]

    assert send(payload).status == 200

    row = asset(database)
    assert row["deleted"] is True
    assert (row["asset_folder"], row["display_name"]) == ("shop/chairs", "oak_chair")


def test_the_course_delete_example_marks_the_asset_deleted(database):
    assert send("delete_course_example").status == 200

    row = asset(database, "f93dc448fe69c881f821aae29b707c95")
    assert row["deleted"] is True and row["public_id"] == "koi" and row["deleted_at"]


def test_hls_eager_entries_without_width_and_height(database):
    assert send("eager_streaming_profile").status == 200

    [row] = mirror(database)["assets"].values()
    assert (row["public_id"], row["resource_type"], row["type"]) == ("dog", "video", "upload")
    by_format = {item["secure_url"].rsplit(".", 1)[1]: item for item in row["derived"]}
    assert set(by_format) == {"mp4", "m3u8"}
    assert "width" not in by_format["m3u8"] and by_format["m3u8"]["bytes"] == 412


def test_explode_without_public_id_is_applied_to_the_source_asset(database):
    assert send("explode").status == 200  # names the asset_id only
    assert asset(database, "0b6e1c2d3e4f5a6b7c8d9e0f1a2b3c4d")["pages"] == 2

    assert send("explode_pre2021").status == 200  # names neither: the pages' URLs name the source

    row = asset(database, "~image/upload/shop/catalog_2023")
    assert row["pages"] == 2 and row["public_id"] == "shop/catalog_2023" and len(row["derived"]) == 2


def test_context_changes_as_name_value_lists_equal_the_object_form(database):
    results = []
    for name in ("resource_context_changed", "resource_context_changed_name_value"):
        assert send("upload").status in (200,)
        assert send(name).status == 200
        results.append(asset(database)["context"])
    assert results[0] == results[1] == {"alt": "Oak chair, three-quarter view", "caption": "Heritage oak chair"}


@pytest.mark.parametrize(("part", "shape"), [
    ("added", [{"key": "caption", "value": "Heritage oak chair"}]),
    ("added", ["caption=Heritage oak chair"]),
    ("removed", ["sku"]),
    ("removed", {"sku": "CH-1042"}),
])
def test_other_context_shapes(database, part, shape):
    assert send("upload").status == 200
    payload = load("resource_context_changed")
    resource = payload["resources"]["shop/chairs/oak_chair_heritage"]
    resource.pop("added"), resource.pop("removed")
    resource[part] = shape

    assert send(payload).status == 200

    context = asset(database)["context"]
    if part == "added":
        assert context["caption"] == "Heritage oak chair" and context["sku"] == "CH-1042"
    else:
        assert "sku" not in context and context["alt"] == "Oak chair, three-quarter view"


def test_restore_asset_version_brings_a_deleted_asset_back(database):
    for name in ("upload", "delete", "restore_asset_version"):
        assert send(name).status == 200

    row = asset(database)
    assert row["deleted"] is False and row["version"] == 1714986001


def test_delete_by_token_marks_the_asset_deleted(database):
    assert send("delete_by_token").status == 200

    row = asset(database, "5c1e0f2a3b4c5d6e7f8091a2b3c4d5e6")
    assert row["deleted"] is True and row["public_id"] == "user_uploads/avatar_4711"


@pytest.mark.parametrize("name", ["publish", "generate_archive", "bulk_refresh_auto_fetch", "invalidate_custom_cdn",
                                  "error", "report", "moderation_summary", "related_assets",
                                  "proof_status_changed"])
def test_types_without_asset_state_are_kept_in_the_log_only(database, name):
    assert send("upload").status == 200
    before = mirror(database)

    assert send(name).status == 200

    assert mirror(database) == before and len(events(database)) == 2
