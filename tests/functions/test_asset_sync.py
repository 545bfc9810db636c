"""asset_sync against real databases: SQLite in a temporary file and a real PostgreSQL server.

Every database test runs twice (``database`` is parametrized). The PostgreSQL server is the throwaway one
that ``scripts/postgres.sh`` starts for ``make test`` / ``bash scripts/test.sh`` (TEST_DATABASE_URL); when
it is not there the PostgreSQL half fails, loudly, rather than being skipped.
"""

from __future__ import annotations

import copy
import json
import os
import random
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from functions.asset_sync import db
from functions.asset_sync.__main__ import main as cli
from functions.asset_sync.handler import APPLIERS, NOTIFICATION_TYPES, handle
from functions.asset_sync.mirror import AssetChange, AssetRef, event_time, merge, project
from tests import pg
from tests.functions.asset_sync_support import (
    ASSET,
    asset,
    events,
    fresh_database,
    load,
    mirror,
    reset,
    send,
    table_exists,
    written_rows,
)
from tests.helpers import ROOT, SECRET, function_url_event, sample, signed_request

# The samples of one asset's story, one per type that changes it (test_asset_sync_types.py covers the others).
SAMPLES = sorted(["upload", "eager", "info", "moderation", "multi", "rename", "explode", "create_folder", "move",
                  "resource_tags_changed", "resource_context_changed", "resource_metadata_changed",
                  "resource_display_name_changed", "access_control_changed", "related_assets",
                  "proof_status_changed", "delete_folder", "move_or_rename_asset_folder", "delete"])


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path, monkeypatch, signing_secret) -> Iterator[str]:
    """DATABASE_URL for a fresh, empty database of each kind."""
    yield from fresh_database(request.param, tmp_path, monkeypatch)


# --- the happy path, per notification type ----------------------------------------------------------

def test_every_type_has_an_applier_and_a_real_shaped_sample():
    files = {path.stem: json.loads(path.read_text())
             for path in (ROOT / "functions" / "asset_sync" / "samples").glob("*.json")}

    assert set(NOTIFICATION_TYPES) == set(APPLIERS) <= set(files)  # one named after each type, and variants
    assert set(SAMPLES) <= set(APPLIERS)
    assert handle.accepts == {"*"}  # every type, including ones Cloudinary adds later
    assert all(payload["notification_type"] in APPLIERS for payload in files.values())
    assert all("triggered_at" in files[name]["notification_context"] for name in SAMPLES)


UPLOADED = {
    "public_id": "shop/chairs/oak_chair", "resource_type": "image", "type": "upload", "asset_folder": "shop/chairs",
    "display_name": "oak_chair", "version": 1714986001, "version_id": "8f1f3e9ab4f2b5d4f8b51a7d2a2e0c61",
    "format": "jpg", "bytes": 734521, "width": 2400, "height": 1600, "pages": None,
    "original_filename": "IMG_4411", "created_at": "2024-05-06T09:00:01.000000Z",
    "secure_url": "https://res.cloudinary.com/demo/image/upload/v1714986001/shop/chairs/oak_chair.jpg",
    "tags": ["catalog", "chairs"], "context": {"alt": "Oak chair, side view", "sku": "CH-1042"},
    "metadata": {"product_line": "heritage"}, "access_control": None, "moderation_status": None,
    "moderation_kind": None, "derived": [], "info": {}, "deleted": False, "deleted_at": None,
    "last_notification_at": "2024-05-06T09:00:01.113000Z",
}


def test_upload_writes_one_event_and_the_whole_asset_row_without_calling_cloudinary(database, cloudinary_server):
    body = sample("asset_sync", "upload")
    request = signed_request(body)

    response = handle(request)

    assert response.status == 200
    assert response.body["status"] == "done"
    [action] = response.body["actions"]
    assert action["action"] == "record_and_apply" and action["notification_type"] == "upload"
    assert action["assets"][0]["asset_id"] == ASSET
    assert {"tags", "context", "metadata", "public_id", "deleted"} <= set(action["assets"][0]["changes"])
    assert asset(database) == {"asset_id": ASSET, **UPLOADED}
    [event] = events(database)
    assert event["notification_type"] == "upload" and event["asset_id"] == ASSET
    assert event["payload"] == body.decode()  # exactly the bytes Cloudinary signed
    assert event["signature"] == request.headers["X-Cld-Signature"]
    assert event["signature_timestamp"] == request.headers["X-Cld-Timestamp"]
    assert event["event_clock"].startswith("2024-05-06T09:00:01.113000Z#")
    assert cloudinary_server.log == []  # the notification is the state: no Admin/Upload API call


# What each type changes on the asset uploaded by upload.json (applied after it).
AFTER_UPLOAD = {
    "eager": {"derived": [
        {"transformation": "c_fill,g_auto,h_400,w_400", "width": 400, "height": 400, "bytes": 38211, "format": "jpg",
         "public_id": "shop/chairs/oak_chair",
         "secure_url": "https://res.cloudinary.com/demo/image/upload/c_fill,g_auto,h_400,w_400/v1714986001/shop/"
                       "chairs/oak_chair.jpg"},
        {"transformation": "f_webp,q_auto,w_1200", "width": 1200, "height": 800, "bytes": 91550, "format": "webp",
         "public_id": "shop/chairs/oak_chair",
         "secure_url": "https://res.cloudinary.com/demo/image/upload/f_webp,q_auto,w_1200/v1714986001/shop/"
                       "chairs/oak_chair.webp"}]},
    "rename": {"public_id": "shop/chairs/oak_chair_heritage",
               "secure_url": "https://res.cloudinary.com/demo/image/upload/v1714986001/shop/chairs/"
                             "oak_chair_heritage.jpg"},
    "delete": {"deleted": True, "deleted_at": "2024-05-08T16:02:11.305000Z",
               "public_id": "shop/chairs/oak_chair_heritage", "asset_folder": "shop/collections/heritage",
               "display_name": "Oak chair (heritage)",
               "secure_url": "https://res.cloudinary.com/demo/image/upload/v1714986001/shop/chairs/"
                             "oak_chair_heritage.jpg"},
    "move": {"asset_folder": "shop/heritage", "public_id": "shop/chairs/oak_chair_heritage",
             "secure_url": "https://res.cloudinary.com/demo/image/upload/v1714986001/shop/chairs/"
                           "oak_chair_heritage.jpg"},
    "resource_tags_changed": {"tags": ["catalog", "featured"], "public_id": "shop/chairs/oak_chair_heritage",
                              "secure_url": "https://res.cloudinary.com/demo/image/upload/v1714986001/shop/chairs/"
                                            "oak_chair_heritage.jpg"},
    "resource_context_changed": {
        "context": {"alt": "Oak chair, three-quarter view", "caption": "Heritage oak chair"},
        "public_id": "shop/chairs/oak_chair_heritage",
        "secure_url": "https://res.cloudinary.com/demo/image/upload/v1714986001/shop/chairs/oak_chair_heritage.jpg"},
    "resource_metadata_changed": {
        "metadata": {"product_line": "heritage_2024", "publish_state": ["published"]},
        "public_id": "shop/chairs/oak_chair_heritage",
        "secure_url": "https://res.cloudinary.com/demo/image/upload/v1714986001/shop/chairs/oak_chair_heritage.jpg"},
    "resource_display_name_changed": {
        "display_name": "Oak chair (heritage)", "asset_folder": "shop/heritage",
        "public_id": "shop/chairs/oak_chair_heritage",
        "secure_url": "https://res.cloudinary.com/demo/image/upload/v1714986001/shop/chairs/oak_chair_heritage.jpg"},
    "access_control_changed": {
        "access_control": [{"access_type": "token"}], "public_id": "shop/chairs/oak_chair_heritage",
        "secure_url": "https://res.cloudinary.com/demo/image/upload/v1714986001/shop/chairs/oak_chair_heritage.jpg"},
    "moderation": {"moderation_status": "approved", "moderation_kind": "manual"},
    "info": {"info": {"google_tagging": {"status": "complete", "data": [
        {"tag": "chair", "confidence": 0.97}, {"tag": "wood", "confidence": 0.91}]}}},
    "related_assets": {},  # log only
    "proof_status_changed": {},  # log only
}


@pytest.mark.parametrize("name", sorted(AFTER_UPLOAD))
def test_each_asset_notification_type_updates_the_row(database, name):
    assert send("upload").status == 200
    payload = load(name)

    response = send(payload)

    assert response.status == 200 and response.body["status"] == "done"
    row = asset(database)
    expected = {"asset_id": ASSET, **UPLOADED, **AFTER_UPLOAD[name]}
    if AFTER_UPLOAD[name] or name in ("related_assets", "proof_status_changed"):
        newest = max(UPLOADED["last_notification_at"], _trigger_time(payload))
        expected["last_notification_at"] = newest if AFTER_UPLOAD[name] else UPLOADED["last_notification_at"]
    assert row == expected
    assert [event["notification_type"] for event in events(database)] == ["upload", name]


def _trigger_time(payload: dict[str, Any]) -> str:
    return event_time(payload, "2000-01-01T00:00:00Z")


def test_multi_creates_the_generated_asset(database):
    assert send("multi").status == 200
    row = asset(database, "9d1c2b3a4f5e6d7c8b9a0f1e2d3c4b5a")
    assert row["public_id"] == "chairs" and row["version"] == 1714990000 and row["deleted"] is False
    assert row["secure_url"] == "https://res.cloudinary.com/demo/image/multi/v1714990000/chairs.gif"


def test_explode_records_the_pages_as_derived_images(database):
    assert send("explode").status == 200
    row = asset(database, "0b6e1c2d3e4f5a6b7c8d9e0f1a2b3c4d")
    assert row["pages"] == 2
    assert [item["secure_url"].split("/")[6] for item in row["derived"]] == ["pg_1", "pg_2"]


def test_folder_notifications_keep_the_folder_list_and_move_the_assets_inside(database):
    for name in ("upload", "create_folder", "move", "delete_folder", "move_or_rename_asset_folder"):
        assert send(name).status == 200

    assert mirror(database)["folders"] == [{"path": "shop/collections/heritage", "deleted": False},
                                           {"path": "shop/heritage", "deleted": True},
                                           {"path": "shop/old_season", "deleted": True}]
    assert asset(database)["asset_folder"] == "shop/collections/heritage"  # renamed along with its folder


def test_the_whole_story_in_order(database):
    order = ["upload", "eager", "info", "moderation", "multi", "rename", "explode", "create_folder", "move",
             "resource_tags_changed", "resource_context_changed", "resource_metadata_changed",
             "resource_display_name_changed", "access_control_changed", "related_assets", "proof_status_changed",
             "delete_folder", "move_or_rename_asset_folder", "delete"]
    assert sorted(order) == SAMPLES  # one sample per type the function handles

    for name in order:
        response = send(name)
        assert response.status == 200 and response.body["status"] == "done", name

    row = asset(database)
    assert row["public_id"] == "shop/chairs/oak_chair_heritage"
    assert row["asset_folder"] == "shop/collections/heritage"
    assert row["tags"] == ["catalog", "featured"] and row["deleted"] is True
    assert [item["secure_url"] for item in row["derived"]] == [
        "https://res.cloudinary.com/demo/image/upload/c_fill,g_auto,h_400,w_400/v1714986001/shop/chairs/"
        "oak_chair_heritage.jpg",
        "https://res.cloudinary.com/demo/image/upload/f_webp,q_auto,w_1200/v1714986001/shop/chairs/"
        "oak_chair_heritage.webp"]
    assert len(events(database)) == len(order)


# --- repeats and order ------------------------------------------------------------------------------

def test_a_repeated_notification_is_ignored_and_changes_nothing(database):
    assert send("upload").status == 200
    before = db.store(database).assets()

    again = send("upload", timestamp=int(datetime.now(UTC).timestamp()) - 60)  # a retry: new signature

    assert again.status == 200
    assert again.body["status"] == "ignored" and "already recorded" in again.body["reason"]
    assert db.store(database).assets() == before  # not even updated_at moved
    assert len(events(database)) == 1


def test_same_content_with_other_key_order_is_the_same_notification(database):
    payload = load("resource_tags_changed")
    reordered = dict(reversed(list(payload.items())))
    assert send(payload).status == 200

    assert send(json.dumps(reordered, indent=4).encode()).body["status"] == "ignored"
    assert len(events(database)) == 1


def test_rename_then_an_older_upload_keeps_the_new_public_id(database):
    assert send("rename").status == 200
    assert send("upload").status == 200  # a retry of the upload, delivered late

    row = asset(database)
    assert row["public_id"] == "shop/chairs/oak_chair_heritage"
    assert row["secure_url"] == ("https://res.cloudinary.com/demo/image/upload/v1714986001/shop/chairs/"
                                 "oak_chair_heritage.jpg")
    assert row["width"] == 2400 and row["tags"] == ["catalog", "chairs"]  # the rest of the upload is in


def test_a_move_into_a_folder_delivered_after_that_folders_rename_lands_under_the_new_name(database):
    # upload (shop/chairs, 05-06 09:00) -> the folder shop/heritage renamed (05-07) -> the asset's move into
    # shop/heritage (05-06 11:30, before the rename) arrives last: the asset is in the folder's new name.
    for name in ("upload", "move_or_rename_asset_folder", "move"):
        assert send(name).status == 200

    assert asset(database)["asset_folder"] == "shop/collections/heritage"


def test_the_rename_log_is_read_only_when_a_rename_can_apply(database, monkeypatch):
    statements: list[str] = []
    execute = db.Store.execute

    def recording(store: db.Store, statement: str, params: Any = ()) -> Any:
        statements.append(statement)
        return execute(store, statement, params)

    monkeypatch.setattr(db.Store, "execute", recording)
    renames_read = "SELECT event_clock, from_path, to_path FROM cloudinary_folder_renames"
    postgresql = db.store(database).dialect == "postgresql"

    assert send("upload").status == 200
    assert send("move").status == 200  # no rename recorded at all
    # PostgreSQL: the row's write says whether a rename is recorded after its folder's clock (none: no read).
    reads = [s for s in statements if s.startswith(renames_read)]
    assert reads == ([] if postgresql else [renames_read + " WHERE event_clock > ? ORDER BY event_clock"] * 2)
    statements.clear()
    assert send("move_or_rename_asset_folder").status == 200
    late = load("move")  # a move at an older time than the rename, delivered now: the rename applies to it
    late["resources"]["shop/chairs/oak_chair_heritage"]["to_asset_folder"] = "shop/heritage/archive"
    late["notification_context"]["triggered_at"] = "2024-05-07T09:00:00.000Z"
    statements.clear()
    assert send(late).status == 200
    assert any(s.startswith(renames_read) for s in statements)  # PostgreSQL too: the write said one applies
    assert asset(database)["asset_folder"] == "shop/collections/heritage/archive"


def test_a_rename_arriving_while_a_move_waits_for_its_row_still_applies_to_it(database):
    """PostgreSQL, three sessions: a move waits for its asset's row (another transaction holds it) when the
    folder it moves into is renamed. The rename waits for the move (the folder fence), and once the row is
    free both land: the asset under the new name."""
    if db.store(database).dialect != "postgresql":
        assert send("upload").status == 200  # SQLite: one writer at a time, so the race cannot happen; the
        for name in ("move_or_rename_asset_folder", "move"):  # same story in order lands the same way
            assert send(name).status == 200
        assert asset(database)["asset_folder"] == "shop/collections/heritage"
        return
    import threading

    assert send("upload").status == 200
    holder = pg.Admin(database)
    holder.execute("BEGIN")
    holder.execute("SELECT 1 FROM cloudinary_assets WHERE asset_id = %s FOR UPDATE", (ASSET,))
    answers: dict[str, Any] = {}
    mover = threading.Thread(target=lambda: answers.update(move=send("move")))  # its own connection
    renamer = threading.Thread(target=lambda: answers.update(rename=send("move_or_rename_asset_folder")))
    try:
        mover.start()
        _wait_for_lock_waits(database, 1, mover)  # the move waits on the row
        renamer.start()
        _wait_for_lock_waits(database, 2, renamer)  # and the rename on the move
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        for thread in (mover, renamer):
            if thread.ident is not None:
                thread.join(timeout=10)
    assert answers["move"].status == 200 and answers["move"].body["status"] == "done"
    assert answers["rename"].status == 200
    assert asset(database)["asset_folder"] == "shop/collections/heritage"


def _wait_for_lock_waits(database: str, count: int, thread: Any) -> None:
    """Until ``count`` asset_sync sessions wait on a lock; fails if ``thread`` ends first or 10 s pass."""
    with pg.admin(database) as watcher:
        deadline = time.monotonic() + 10
        while watcher.execute("SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                              "AND application_name = 'cloudinary-asset-sync' "
                              "AND datname = current_database()").fetchone()[0] < count:
            assert time.monotonic() < deadline and thread.is_alive(), f"{count} lock waits never came"
            time.sleep(0.01)


def _holding_the_fence_alone(database: str) -> Any:
    """Another session, as a long folder rename would be: the folder fence held alone until its ROLLBACK."""
    holder = pg.Admin(database)
    holder.execute("BEGIN")
    holder.execute("SELECT pg_advisory_xact_lock(%s)", (db._FOLDER_FENCE,))
    return holder


def test_reading_the_mirror_does_not_wait_for_the_folder_fence(database, monkeypatch):
    """Only what writes assets or folders takes the fence: status and the mirror's reads answer while a rename
    (here another session holding the fence alone) runs."""
    assert send("upload").status == 200
    if db.store(database).dialect != "postgresql":
        return  # SQLite has no fence: one writer at a time already
    monkeypatch.setenv("ASSET_SYNC_DB_TIMEOUT_SECONDS", "2")  # a wait would end in a 503 after 2 s
    db.close_all()
    holder = _holding_the_fence_alone(database)
    try:
        store = db.store(database)
        assert store.status()["assets"] >= 1 and store.assets()[0]["asset_id"] == ASSET
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_a_transaction_that_sent_nothing_ends_without_a_round_trip(database, monkeypatch):
    """PostgreSQL's BEGIN (and the fence) wait for the first statement; a transaction that fails before one
    sends nothing at all, so it neither waits for the fence nor costs a round trip to roll back."""
    store = db.store(database)
    with store.transaction():
        pass  # migrated, and the connection kept
    if store.dialect != "postgresql":
        return
    from shared import postgres

    sent: list[bytes] = []
    send_query = postgres.Connection._send
    monkeypatch.setattr(postgres.Connection, "_send", lambda self, cursor, query: (sent.append(query),
                                                                                   send_query(self, cursor, query)))
    holder = _holding_the_fence_alone(database)
    try:
        with pytest.raises(ValueError), store.transaction(fence="shared"):
            raise ValueError("refused before any statement")
        with store.transaction(fence="shared"):
            pass
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert sent == []


def test_asset_rows_are_never_written_outside_the_folder_fence(database):
    store = db.store(database)
    if store.dialect != "postgresql":
        return
    with pytest.raises(RuntimeError, match="folder fence"), store.transaction():
        store._write_rows([(ASSET, {"fields": {}})])


def test_a_rename_committed_between_a_moves_write_and_its_commit_still_applies_to_it(database, monkeypatch):
    """PostgreSQL, the narrower race: a move has written its asset's row (no rename of its new folder recorded
    yet) and not committed, when that folder's rename arrives. The rename cannot see the uncommitted row, so it
    must wait for the move's commit (the folder fence: writers share it, renames take it alone) and then carry
    the moved asset along. (Without the fence the rename committed at once, and the asset stayed under the old
    name: here the rename is first required to wait.)"""
    if db.store(database).dialect != "postgresql":
        assert send("upload").status == 200  # SQLite: one writer at a time, so the race cannot happen
        for name in ("move", "move_or_rename_asset_folder"):
            assert send(name).status == 200
        assert asset(database)["asset_folder"] == "shop/collections/heritage"
        return
    import threading

    assert send("upload").status == 200
    written, resume = threading.Event(), threading.Event()
    mover_thread: list[threading.Thread] = []
    commit = db.Store._commit

    def paused_commit(store: db.Store) -> None:
        if mover_thread and threading.current_thread() is mover_thread[0]:
            written.set()  # the move's row is written, its transaction still open
            assert resume.wait(timeout=10)
        commit(store)

    monkeypatch.setattr(db.Store, "_commit", paused_commit)
    answers: dict[str, Any] = {}
    mover = threading.Thread(target=lambda: answers.update(move=send("move")))
    renamer = threading.Thread(target=lambda: answers.update(rename=send("move_or_rename_asset_folder")))
    mover_thread.append(mover)
    mover.start()
    try:
        assert written.wait(timeout=10), "the move never reached its commit"
        renamer.start()
        _wait_for_lock_waits(database, 1, renamer)  # the rename waits for the move (without the fence: it
    finally:                                        # committed at once, and the move then undid it)
        resume.set()
        mover.join(timeout=10)
        if renamer.ident is not None:
            renamer.join(timeout=10)
    assert answers["move"].status == 200 and answers["rename"].status == 200
    assert asset(database)["asset_folder"] == "shop/collections/heritage"


def test_a_migration_waits_behind_the_folder_fence_for_the_writes_in_flight(database, monkeypatch):
    """A deploy that brings a migration runs it while other instances write. Its DDL must not start while a
    write is half done (the ALTER's table lock and the writer's row locks could deadlock, a 503 on either
    side): with DDL to run, the migration takes the folder fence alone first, so it waits for the writes in
    flight, on the fence and not on a table, and runs once they commit. With the schema current it takes no
    fence (a cold start never waits for writers)."""
    import threading

    probe = "ALTER TABLE cloudinary_assets ADD COLUMN migration_probe TEXT"
    assert send("upload").status == 200  # migrated to schema.LATEST
    monkeypatch.setitem(db.schema.MIGRATIONS, db.schema.LATEST + 1, {"sqlite": [probe], "postgresql": [probe]})
    if db.store(database).dialect != "postgresql":  # SQLite: one writer at a time; the migration simply applies
        assert _migrate_once(database) == [db.schema.LATEST + 1]
        assert send("move").status == 200 and _has_probe_column(database)
        return

    written, resume = threading.Event(), threading.Event()
    mover_thread: list[threading.Thread] = []
    commit = db.Store._commit

    def paused_commit(store: db.Store) -> None:
        if mover_thread and threading.current_thread() is mover_thread[0]:
            written.set()  # the move's asset row is written and locked, its transaction still open
            assert resume.wait(timeout=10)
        commit(store)

    monkeypatch.setattr(db.Store, "_commit", paused_commit)
    answers: dict[str, Any] = {}
    mover = threading.Thread(target=lambda: answers.update(move=send("move")))
    migrator = threading.Thread(target=lambda: answers.update(migrated=_migrate_once(database)))
    mover_thread.append(mover)
    mover.start()
    try:
        assert written.wait(timeout=10), "the move never reached its commit"
        migrator.start()
        _wait_for_lock_waits(database, 1, migrator)
        with pg.admin(database) as watcher:
            waiting = watcher.execute("SELECT locktype, classid::bigint * 4294967296 + objid::bigint FROM pg_locks "
                                      "WHERE NOT granted AND (database IS NULL OR database = "
                                      "(SELECT oid FROM pg_database WHERE datname = current_database()))"
                                      ).fetchall()
    finally:
        resume.set()
        mover.join(timeout=10)
        if migrator.ident is not None:
            migrator.join(timeout=10)
    # Without the fence the ALTER TABLE itself waited, on the asset table: ('relation', ...).
    assert waiting == [("advisory", db._FOLDER_FENCE)]
    assert answers["move"].status == 200 and answers["migrated"] == [db.schema.LATEST + 1]
    assert asset(database)["asset_folder"] == "shop/heritage" and _has_probe_column(database)


def _migrate_once(database: str) -> list[int]:
    """A migration as another instance's cold start runs it: a store of its own, closed after."""
    store = db.Store(database)
    try:
        return store.migrate()
    finally:
        store.close()


def _has_probe_column(database: str) -> bool:
    store = db.Store(database)
    try:
        with store.transaction(migrate=False) as reading:
            columns = reading.execute("SELECT * FROM cloudinary_assets LIMIT 0").description
        return "migration_probe" in [column[0] for column in columns]
    finally:
        store.close()


def test_a_migration_with_nothing_to_apply_takes_no_fence(database):
    """A cold start with the schema current reads the version and ends: it never waits for a rename in flight
    (here another session holding the fence alone)."""
    assert send("upload").status == 200
    if db.store(database).dialect != "postgresql":
        assert _migrate_once(database) == []  # SQLite has no fence
        return
    holder = _holding_the_fence_alone(database)
    try:
        assert _migrate_once(database) == []
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_delete_then_a_late_tag_change_keeps_the_asset_deleted(database):
    for name in ("upload", "delete", "resource_tags_changed"):
        assert send(name).status == 200

    row = asset(database)
    assert row["deleted"] is True and row["deleted_at"] == "2024-05-08T16:02:11.305000Z"
    assert row["tags"] == ["catalog", "featured"]  # the change happened before the delete: it counts
    assert row["last_notification_at"] == "2024-05-08T16:02:11.305000Z"


def test_an_older_upload_does_not_undo_a_newer_tag_change(database):
    assert send("resource_tags_changed").status == 200
    assert send("upload").status == 200

    assert asset(database)["tags"] == ["catalog", "featured"]


def test_a_reupload_after_delete_brings_the_asset_back(database):
    later = load("upload")
    later["notification_context"]["triggered_at"] = "2024-05-09T08:00:00.000Z"
    later["version"] = 1715241600
    for payload in (load("upload"), load("delete"), later):
        assert send(payload).status == 200

    row = asset(database)
    assert row["deleted"] is False and row["deleted_at"] is None and row["version"] == 1715241600


def test_concurrent_notifications_for_one_asset_lose_nothing(database):
    import threading

    assert send("upload").status == 200
    barrier = threading.Barrier(8)
    statuses: list[int] = []

    def tag(number: int) -> None:
        payload = load("resource_tags_changed")
        payload["resources"][0].update(added=[f"t{number}"], removed=[])
        payload["notification_context"]["triggered_at"] = f"2024-05-06T12:00:{number:02d}.000Z"
        barrier.wait()
        statuses.append(send(payload).status)
        db.close_all()  # this thread's connections

    threads = [threading.Thread(target=tag, args=(number,)) for number in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert statuses == [200] * 8
    assert asset(database)["tags"] == ["catalog", "chairs"] + [f"t{number}" for number in range(8)]
    assert len(events(database)) == 9


def test_an_asset_named_only_by_public_id_is_found_by_it(database):
    assert send("upload").status == 200
    payload = load("resource_tags_changed")
    del payload["resources"][0]["asset_id"]
    payload["resources"][0]["public_id"] = "shop/chairs/oak_chair"

    response = send(payload)

    assert response.status == 200 and "unmatched" not in response.body
    assert asset(database)["tags"] == ["catalog", "featured"]


def test_an_unknown_asset_named_only_by_public_id_gets_a_row_of_its_own(database):
    """Item 15 of issue 12: it was "unmatched", with no row (test_asset_sync_identity.py has the rest)."""
    payload = load("moderation")
    del payload["asset_id"]

    response = send(payload)

    assert response.status == 200 and "unmatched" not in response.body
    [row] = db.store(database).assets()
    assert row["asset_id"] == "~image/upload/shop/chairs/oak_chair" and row["moderation_status"] == "approved"
    assert len(events(database)) == 1


def test_eager_results_arriving_before_their_upload_are_kept_and_a_new_version_hides_them(database):
    assert send("eager").status == 200
    assert send("upload").status == 200
    assert [item["transformation"] for item in asset(database)["derived"]] == [
        "c_fill,g_auto,h_400,w_400", "f_webp,q_auto,w_1200"]

    new_version = load("upload")
    new_version.update(version=1715000000, timestamp="2024-05-06T13:00:00+00:00")
    new_version["notification_context"]["triggered_at"] = "2024-05-06T13:00:00.000Z"
    assert send(new_version).status == 200

    assert asset(database)["derived"] == []  # the old version's URLs are gone with it


def test_event_time_is_the_later_of_trigger_time_and_timestamp():
    eager = load("eager")
    eager["notification_context"]["triggered_at"] = "2024-05-06T09:00:01.113Z"  # the upload's request

    assert event_time(eager, "2030-01-01T00:00:00Z") == "2024-05-06T09:00:07.000000Z"
    assert event_time(load("upload"), "2030-01-01T00:00:00Z") == "2024-05-06T09:00:01.113000Z"
    assert event_time({"notification_type": "delete"}, "2030-01-01T00:00:00Z") == "2030-01-01T00:00:00.000000Z"


# --- failures: nothing half-done -------------------------------------------------------------------

def _kill_connection(url: str) -> None:
    """The database goes away: PostgreSQL terminates this request's backend; SQLite fails its I/O."""
    store = db.store(url)
    if store.dialect == "sqlite":
        raise sqlite3.OperationalError("disk I/O error")
    pid = pg.backend_pid(store._connection)
    with pg.admin(url) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


def test_database_going_away_mid_request_is_503_and_leaves_no_half_applied_event(database, monkeypatch):
    original = db.Store._write_rows

    def dies_midway(self, *args, **kwargs):
        _kill_connection(self.url)  # after the event row was inserted, before the asset row
        return original(self, *args, **kwargs)

    monkeypatch.setattr(db.Store, "_write_rows", dies_midway)
    response = send("upload")

    assert response.status == 503
    assert response.body == {"error": "database_unavailable",
                             "message": "The database is unavailable; a retry will finish the work."}
    monkeypatch.setattr(db.Store, "_write_rows", original)
    assert events(database) == [] and db.store(database).assets() == []  # rolled back, both

    retry = send("upload")  # Cloudinary's retry, on a fresh connection
    assert retry.status == 200 and retry.body["status"] == "done"
    assert len(events(database)) == 1 and asset(database)["public_id"] == "shop/chairs/oak_chair"


def test_a_connection_closed_between_requests_is_replaced(database):
    assert send("upload").status == 200
    [kept] = db._idle[database]  # the connection the next request will reuse
    if db.store(database).dialect == "postgresql":
        with pg.admin(database) as admin:  # e.g. the server's idle timeout
            admin.execute("SELECT pg_terminate_backend(%s)", (pg.backend_pid(kept),))
    else:
        kept.close()

    assert send("eager").status == 200
    assert len(events(database)) == 2


def test_tables_dropped_under_a_running_instance_are_created_again_by_the_retry(database):
    from tests.functions.asset_sync_support import TABLES, execute

    assert send("upload").status == 200
    db.close_all()  # (SQLite: no connection of ours in the way of the drop)
    execute(database, *(f"DROP TABLE {table}" for table in TABLES))  # the instance still thinks it migrated

    response = send("rename")

    assert response.status == 503 and response.body["error"] == "database_unavailable"
    assert send("rename").status == 200  # the retry migrates again
    assert [event["notification_type"] for event in events(database)] == ["rename"]


def test_unreachable_database_is_503_without_the_password(tmp_path, monkeypatch, signing_secret, caplog):
    import socket

    with socket.socket() as probe:  # a port nobody listens on: the server may come back, a retry may work
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("DATABASE_URL", f"postgresql://sync:s3cret-pw@127.0.0.1:{port}/mirror")
    try:
        response = send("upload")
    finally:
        db.close_all()

    assert response.status == 503 and response.body["error"] == "database_unavailable"
    assert "s3cret-pw" not in caplog.text and "s3cret-pw" not in json.dumps(response.body)
    assert "database_unavailable" in caplog.text


@pytest.mark.parametrize("where", ["under_a_file", "missing_folder", "missing_nested_folder", "read_only_folder"])
def test_a_sqlite_file_no_retry_can_open_is_500_not_configured(where, tmp_path, monkeypatch, signing_secret,
                                                                caplog):
    # 503 would make Cloudinary retry a few times and then drop the notification: say what to fix instead.
    if where == "under_a_file":
        (tmp_path / "a-file").write_text("not a folder")
        path = tmp_path / "a-file" / "mirror.sqlite3"
    elif where == "missing_folder":
        path = tmp_path / "nonexistent_dir" / "mirror.sqlite3"
    elif where == "missing_nested_folder":
        path = tmp_path / "a" / "b" / "mirror.sqlite3"
    else:
        folder = tmp_path / "ro"
        folder.mkdir()
        path = folder / "mirror.sqlite3"
        real_access = os.access
        monkeypatch.setattr("os.access", lambda target, mode: real_access(target, mode)
                            and Path(target).resolve() != folder.resolve())  # as root, anything is writable
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{path}")
    try:
        response = send("upload")
    finally:
        db.close_all()

    assert response.status == 500 and response.body["error"] == "not_configured"
    assert not path.exists()
    assert "DATABASE_URL" in caplog.text


@pytest.mark.parametrize("marker", [("AWS_LAMBDA_FUNCTION_NAME", "asset-sync"), ("VERCEL", "1"), ("NETLIFY", "true")])
def test_on_a_serverless_platform_without_database_url_is_500_not_configured(marker, tmp_path, monkeypatch,
                                                                            signing_secret, caplog):
    # Lambda's /var/task is read-only and every instance starts with an empty /tmp: the local SQLite default
    # would lose the mirror (or fail every write, 503, until Cloudinary gives up). Say what is missing.
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv(*marker)
    response = send("upload")
    assert response.status == 500 and response.body["error"] == "not_configured"
    assert "DATABASE_URL" in caplog.text and "DATABASE_URL" not in json.dumps(response.body)
    assert not (tmp_path / ".local").exists()


def test_a_database_url_of_another_kind_is_500(monkeypatch, signing_secret, caplog):
    monkeypatch.setenv("DATABASE_URL", "mysql://user:pw@db.example.com/cms")

    response = send("upload")

    assert response.status == 500 and response.body["error"] == "not_configured"
    assert "DATABASE_URL" in caplog.text and "pw@" not in caplog.text


def test_bad_signature_is_401_and_touches_no_database(database, cloudinary_server):
    response = send("upload", secret="not-the-secret")

    assert response.status == 401 and response.body["error"] == "signature_mismatch"
    assert not table_exists(database, "cloudinary_events")  # never even connected and migrated
    assert cloudinary_server.log == []


def test_unknown_type_is_kept_in_the_event_log_and_changes_no_asset(database, cloudinary_server):
    """A type Cloudinary adds later (or one without asset state) is recorded for audit and replay."""
    response = send({"notification_type": "asset_archived", "batch_id": "f97c6bf03074d9641f1a9c9b6bcebef7"})

    assert response.status == 200 and response.body["status"] == "done"
    assert [event["notification_type"] for event in events(database)] == ["asset_archived"]
    assert db.store(database).assets() == []
    assert cloudinary_server.log == []


@pytest.mark.parametrize(("payload", "error"), [
    ({"notification_type": "delete", "resources": "koi"}, "bad_field"),
    ({"notification_type": "rename", "asset_id": ASSET, "from_public_id": "a"}, "missing_field"),
    ({"notification_type": "resource_context_changed", "resources": [{"asset_id": ASSET}]}, "bad_field"),
    ({"notification_type": "upload", "version": 1}, "missing_field"),
    ({"notification_type": "create_folder"}, "missing_field"),
    ({"notification_type": "eager", "asset_id": ASSET}, "bad_field"),
])
def test_malformed_notifications_are_400_and_write_nothing(database, payload, error):
    response = send(payload)

    assert response.status == 400 and response.body["error"] == error
    assert written_rows(database) == 0


def test_dry_run_reports_the_changes_and_writes_nothing(database, monkeypatch):
    monkeypatch.setenv("DRY_RUN", "1")

    response = send("resource_tags_changed")

    assert response.status == 200 and response.body["status"] == "dry_run"
    [action] = response.body["actions"]
    assert action["action"] == "record_and_apply"
    assert action["assets"] == [{"asset_id": ASSET, "changes": ["public_id", "resource_type", "tags", "type"]}]
    assert not table_exists(database, "cloudinary_events")


def test_the_log_line_carries_no_payload_and_no_signature(database, caplog):
    request = signed_request(sample("asset_sync", "upload"))
    handle(request)

    assert '"outcome": "done"' in caplog.text and '"notification_type": "upload"' in caplog.text
    assert request.headers["X-Cld-Signature"] not in caplog.text
    assert "Oak chair, side view" not in caplog.text and SECRET not in caplog.text


def test_lambda_function_url_entry_point(database):
    from functions.asset_sync.handler import handler

    result = handler(function_url_event(sample("asset_sync", "upload"), base64_body=True), None)

    assert result["statusCode"] == 200 and json.loads(result["body"])["status"] == "done"
    assert asset(database)["public_id"] == "shop/chairs/oak_chair"


# --- the commands -----------------------------------------------------------------------------------

def test_migrate_creates_the_tables_once(database, capsys):
    assert cli(["--database-url", database, "migrate"]) == 0
    assert json.loads(capsys.readouterr().out)["applied"] == [1, 2, 3]
    assert cli(["--database-url", database, "migrate"]) == 0
    assert json.loads(capsys.readouterr().out)["applied"] == []
    assert table_exists(database, "cloudinary_assets")


def test_a_database_of_schema_1_is_upgraded_with_its_events_kept(database, capsys, monkeypatch):
    from functions.asset_sync import schema

    with monkeypatch.context() as old_version:
        old_version.setattr(schema, "MIGRATIONS", {1: schema.MIGRATIONS[1]})
        assert cli(["migrate"]) == 0
        assert json.loads(capsys.readouterr().out)["applied"] == [1]
        assert send("upload").status == 200  # written by the code as it was, on schema 1
    db.close_all()
    db.forget_migrations()

    assert cli(["migrate"]) == 0

    assert json.loads(capsys.readouterr().out)["applied"] == [2, 3]
    [event] = events(database)
    assert (event["state"], event["progress"], event["detail"]) == ("applied", None, None)
    assert send("resource_tags_changed").status == 200
    assert asset(database)["tags"] == ["catalog", "featured"]


def test_replay_rebuilds_the_mirror_from_the_event_log(database, capsys):
    for name in SAMPLES:
        assert send(name).status == 200
    expected = mirror(database)
    store = db.store(database)
    with store.transaction():  # someone damaged the mirror: the log is the truth
        store.execute("DELETE FROM cloudinary_assets WHERE asset_id = ?", (ASSET,))
        store.execute("UPDATE cloudinary_assets SET public_id = 'wrong'")
    db.close_all()

    assert cli(["replay"]) == 0  # DATABASE_URL from the environment

    assert json.loads(capsys.readouterr().out) == {"database": db.parse_url(database)[0], "events": len(SAMPLES),
                                                   "applied": len(SAMPLES), "skipped": 0, "quarantined": 0}
    assert mirror(database) == expected


def test_status_reports_what_the_database_holds(database, capsys):
    for name in ("upload", "delete", "create_folder"):
        send(name)

    assert cli(["status"]) == 0

    status = json.loads(capsys.readouterr().out)
    assert status["schema_version"] == 3 and status["events"] == 3
    assert status["events_by_type"] == {"create_folder": 1, "delete": 1, "upload": 1}
    assert status["assets"] == 1 and status["deleted_assets"] == 1 and status["folders"] == 1
    assert status["quarantined"] == status["partially_applied"] == status["provisional_assets"] == 0
    assert status["quarantined_events"] == []


def test_help_names_every_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli(["--help"])
    text = capsys.readouterr().out
    assert exit_info.value.code == 0
    assert all(word in text for word in ("migrate", "replay", "status", "reconcile", "DATABASE_URL", "postgresql://"))


def test_the_command_fails_clearly_on_a_bad_url(capsys):
    assert cli(["--database-url", "mysql://x", "status"]) == 1
    assert "DATABASE_URL" in capsys.readouterr().err


# --- 1,000 notifications, shuffled, with duplicates -------------------------------------------------

def realistic_notifications(count: int, seed: int = 8) -> list[dict[str, Any]]:
    """A plausible day of a shop's media library: uploads first, then edits by people and integrations,
    renames, moves, folder changes, eager results, moderation, deletes and re-uploads."""
    rng = random.Random(seed)
    start = datetime(2024, 5, 6, 8, 0, tzinfo=UTC)
    assets: dict[str, dict[str, Any]] = {}
    folders = ["shop/chairs", "shop/tables", "shop/lamps"]
    out: list[dict[str, Any]] = []

    def context(step: int) -> dict[str, Any]:
        moment = start + timedelta(seconds=step * 7, milliseconds=rng.randrange(1000))
        return {"triggered_at": moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
                "triggered_by": {"source": "ui", "id": "editor@example.com"}}

    for step in range(count):
        live = [a for a in assets.values() if not a["deleted"]]
        kind = "upload" if len(assets) < 25 or not live else rng.choices(
            ["upload", "rename", "delete", "move", "resource_tags_changed", "resource_context_changed",
             "resource_metadata_changed", "resource_display_name_changed", "access_control_changed", "eager",
             "moderation", "create_folder", "move_or_rename_asset_folder", "related_assets"],
            weights=[6, 5, 3, 5, 12, 6, 6, 4, 3, 5, 3, 1, 1, 1])[0]
        target = rng.choice(live) if live else None
        stamp = context(step)
        if kind == "upload":
            revived = [a for a in assets.values() if a["deleted"]]
            if revived and rng.random() < 0.3:
                target = rng.choice(revived)  # a new version of a deleted asset
            else:
                number = len(assets)
                target = {"asset_id": f"{number:032x}", "public_id": f"{rng.choice(folders)}/item_{number}",
                          "folder": rng.choice(folders), "version": 1714986000}
                assets[target["asset_id"]] = target
            target["deleted"] = False
            target["version"] += 1 + step
            out.append({"notification_type": "upload", "asset_id": target["asset_id"],
                        "public_id": target["public_id"], "version": target["version"], "resource_type": "image",
                        "type": "upload", "format": "jpg", "width": rng.randrange(100, 4000),
                        "height": rng.randrange(100, 4000), "bytes": rng.randrange(10**4, 10**7),
                        "tags": rng.sample(["a", "b", "c", "d", "e"], rng.randrange(0, 4)),
                        "asset_folder": target["folder"], "display_name": target["public_id"].rsplit("/", 1)[-1],
                        "secure_url": f"https://res.cloudinary.com/demo/image/upload/v{target['version']}/"
                                      f"{target['public_id']}.jpg",
                        "notification_context": stamp})
        elif kind == "rename":
            new = f"{target['public_id']}_r{step}"
            out.append({"notification_type": "rename", "asset_id": target["asset_id"], "resource_type": "image",
                        "type": "upload", "from_public_id": target["public_id"], "to_public_id": new,
                        "notification_context": stamp})
            target["public_id"] = new
        elif kind == "delete":
            target["deleted"] = True
            out.append({"notification_type": "delete", "resources": [
                {"asset_id": target["asset_id"], "public_id": target["public_id"], "resource_type": "image",
                 "type": "upload"}], "notification_context": stamp})
        elif kind == "move":
            to = rng.choice(folders)
            out.append({"notification_type": "move", "source": "ui", "resources": {target["public_id"]: {
                "asset_id": target["asset_id"], "resource_type": "image", "type": "upload",
                "from_asset_folder": target["folder"], "to_asset_folder": to}}, "notification_context": stamp})
            target["folder"] = to
        elif kind == "resource_tags_changed":
            out.append({"notification_type": "resource_tags_changed", "source": "ui", "resources": [
                {"asset_id": target["asset_id"], "public_id": target["public_id"], "resource_type": "image",
                 "type": "upload", "added": rng.sample(["a", "b", "c", "d", "e", "f"], rng.randrange(0, 3)),
                 "removed": rng.sample(["a", "b", "c", "d", "e", "f"], rng.randrange(0, 2))}],
                "notification_context": stamp})
        elif kind == "resource_context_changed":
            out.append({"notification_type": "resource_context_changed", "resources": {target["public_id"]: {
                "asset_id": target["asset_id"], "added": {rng.choice("xyz"): f"v{step}"},
                "removed": rng.sample(["x", "y", "z"], rng.randrange(0, 2))}}, "notification_context": stamp})
        elif kind == "resource_metadata_changed":
            out.append({"notification_type": "resource_metadata_changed", "resources": {target["public_id"]: {
                "asset_id": target["asset_id"], "new_metadata": {rng.choice(["season", "line"]): f"m{step}"}}},
                "notification_context": stamp})
        elif kind == "resource_display_name_changed":
            out.append({"notification_type": "resource_display_name_changed", "resources": {target["public_id"]: {
                "asset_id": target["asset_id"], "new_display_name": f"Name {step}"}}, "notification_context": stamp})
        elif kind == "access_control_changed":
            out.append({"notification_type": "access_control_changed", "resources": [{
                "asset_id": target["asset_id"], "public_id": target["public_id"],
                "new_access_control": [{"access_type": rng.choice(["anonymous", "token"])}]}],
                "notification_context": stamp})
        elif kind == "eager":
            out.append({"notification_type": "eager", "asset_id": target["asset_id"],
                        "public_id": target["public_id"], "batch_id": f"b{step}", "eager": [
                            {"transformation": rng.choice(["w_400", "w_800"]), "width": 400,
                             "secure_url": f"https://res.cloudinary.com/demo/image/upload/w_400/v{target['version']}/"
                                           f"{target['public_id']}.jpg"}], "notification_context": stamp})
        elif kind == "moderation":
            out.append({"notification_type": "moderation", "asset_id": target["asset_id"],
                        "public_id": target["public_id"], "moderation_kind": "manual",
                        "moderation_status": rng.choice(["approved", "rejected", "pending"]),
                        "notification_context": stamp})
        elif kind == "create_folder":
            path = f"shop/new_{step}"
            folders.append(path)
            out.append({"notification_type": "create_folder", "folder_path": path, "notification_context": stamp})
        elif kind == "move_or_rename_asset_folder":
            from_path = folders.pop(rng.randrange(len(folders)))
            to_path = f"{from_path}_renamed_{step}"
            folders.append(to_path)
            for item in assets.values():
                if item["folder"] == from_path:
                    item["folder"] = to_path
            out.append({"notification_type": "move_or_rename_asset_folder", "from_path": from_path,
                        "to_path": to_path, "status": "success", "notification_context": stamp})
        else:
            out.append({"notification_type": "related_assets", "action_type": "add", "asset_id": target["asset_id"],
                        "total_success": 1, "total_failed": 0, "notification_context": stamp})
    return out


@pytest.mark.slow
def test_1000_shuffled_notifications_with_duplicates_give_the_in_order_mirror(database):
    notifications = realistic_notifications(1000)
    for payload in notifications:
        assert send(payload).status == 200
    in_order = mirror(database)
    reset(database)

    rng = random.Random(2024)
    delivered = notifications + rng.sample(notifications, 150)  # Cloudinary's retries
    rng.shuffle(delivered)
    statuses = [send(copy.deepcopy(payload)).body["status"] for payload in delivered]

    assert statuses.count("ignored") == 150 and statuses.count("done") == 1000
    assert mirror(database) == in_order
    assert len(in_order["assets"]) >= 25 and any(row["deleted"] for row in in_order["assets"].values())
    assert len({row["asset_folder"] for row in in_order["assets"].values()}) > 2

    assert cli(["replay"]) == 0  # and the log alone rebuilds the same mirror
    assert mirror(database) == in_order


# --- the merge rules, without a database ------------------------------------------------------------

def test_merging_is_independent_of_order_and_repeats():
    ref = AssetRef("a1", "p")
    changes = [
        (AssetChange(ref, fields={"public_id": "p", "deleted": False}, resets={"tags": {"x": True, "y": True}}),
         "2024-01-01T00:00:01.000000Z#1"),
        (AssetChange(ref, items={"tags": {"y": None, "z": True}}), "2024-01-01T00:00:02.000000Z#2"),
        (AssetChange(ref, fields={"public_id": "q"}), "2024-01-01T00:00:03.000000Z#3"),
        (AssetChange(ref, items={"tags": {"w": True}}), "2024-01-01T00:00:00.500000Z#0"),
        (AssetChange(ref, fields={"deleted": True}), "2024-01-01T00:00:04.000000Z#4"),
    ]
    rng = random.Random(1)
    results = []
    for _ in range(50):
        shuffled = changes + rng.sample(changes, 2)
        rng.shuffle(shuffled)
        state: dict[str, Any] = {}
        for change, clock in shuffled:
            state = merge(state, change, clock)
        results.append(project(state))
    assert all(result == results[0] for result in results)
    assert results[0]["tags"] == ["x", "z"]  # w came before the upload's whole list; y was removed after
    assert results[0]["public_id"] == "q" and results[0]["deleted"] is True


def _changes_strategy():
    from hypothesis import strategies as st

    keys = st.sampled_from(["a", "b", "c", "d"])
    change = st.one_of(
        st.builds(lambda v: AssetChange(AssetRef("x"), fields={"public_id": v}), st.sampled_from(["p", "q", "r"])),
        st.builds(lambda v: AssetChange(AssetRef("x"), fields={"deleted": v}), st.booleans()),
        st.builds(lambda tags: AssetChange(AssetRef("x"), resets={"tags": dict.fromkeys(tags, True)}),
                  st.lists(keys, max_size=3)),
        st.builds(lambda k, v: AssetChange(AssetRef("x"), items={"tags": {k: v}}), keys, st.sampled_from([True, None])),
        st.builds(lambda k, v: AssetChange(AssetRef("x"), items={"context": {k: v}}), keys,
                  st.sampled_from(["1", "2", None])),
    )
    return st.lists(change, min_size=1, max_size=12)


def test_merge_gives_the_same_row_for_any_arrival_order_with_repeats():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=200, deadline=None)
    @given(_changes_strategy(), st.randoms(use_true_random=False))
    def check(changes, rng):
        stated = [(change, f"2024-01-01T00:00:{second:02d}.000000Z#{second:02d}")
                  for second, change in enumerate(changes)]
        in_order: dict[str, Any] = {}
        for change, clock in stated:
            in_order = merge(in_order, change, clock)
        delivered = stated + [rng.choice(stated) for _ in range(3)]
        rng.shuffle(delivered)
        shuffled: dict[str, Any] = {}
        for change, clock in delivered:
            shuffled = merge(shuffled, change, clock)
        assert project(shuffled) == project(in_order)

    check()


@pytest.mark.slow
def test_the_benchmark_runs_through_the_local_server(database, monkeypatch):
    from functions.asset_sync.bench import run

    monkeypatch.setenv("DATABASE_URL", database)  # run() sets both for its server; restored afterwards
    monkeypatch.setenv("CLOUDINARY_NOTIFICATION_SECRETS", "restored-after-the-test")

    result = run(database, 31)

    assert result["notifications"] == 30 and result["non_200"] == 0 and result["per_second"] > 0
    assert len(events(database)) == 31 and len(db.store(database).assets()) == 7


def test_postgres_script_starts_a_throwaway_server_reuses_it_and_cleans_up(tmp_path):
    import subprocess

    probe = ("import os, psycopg2; cursor = psycopg2.connect(os.environ['TEST_DATABASE_URL']).cursor(); "
             "cursor.execute('select 41 + 1'); print(cursor.fetchone()[0])")
    script = f"""
        set -euo pipefail
        trap 'echo earlier-exit-trap-ran' EXIT
        unset TEST_DATABASE_URL _PGTEST_DIR
        source scripts/postgres.sh
        first="$TEST_DATABASE_URL"
        source scripts/postgres.sh
        [ "$first" = "$TEST_DATABASE_URL" ] && echo same-url
        echo "$_PGTEST_DIR" > {tmp_path}/dir
        .venv/bin/python -c "{probe}"
    """
    completed = subprocess.run(["bash", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300,
                               check=False, stdin=subprocess.DEVNULL)

    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.splitlines()
    assert lines[0].startswith("postgres.sh: throwaway PostgreSQL") and "127.0.0.1:" in lines[0]
    assert "postgres.sh: reusing" in lines[1]
    assert lines[2:] == ["same-url", "42", "earlier-exit-trap-ran"]
    assert not os.path.exists((tmp_path / "dir").read_text().strip())  # stopped and removed on exit
