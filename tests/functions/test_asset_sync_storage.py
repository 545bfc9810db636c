"""asset_sync: what the databases cannot hold as-is is stored anyway, never answered 503 (issue 12, items 8, 9).

A 503 makes Cloudinary retry a few times and then drop the notification, so a permanent error answered 503 is
a notification lost. Each class here once was a 503 (PostgreSQL refused the value) or a 500 (Python could not
compute with it); now each is answered 200 with the event kept exactly as signed and the mirror row written:

- a NUL character (text and jsonb cannot hold one) is shown as ``␀`` (U+2400) in the mirror;
- NaN, Infinity and numbers beyond a double (1e400) are kept as their text ("NaN", "1e400") in JSON columns;
- identifiers too long for a btree index (public_id, asset_folder: hash indexes on PostgreSQL; asset_id and
  folder paths, which are keys: a hashed key);
- whole numbers too large for their column (width, height, pages: 4 bytes; version, bytes: 8) are NULL there;
- times at the datetime limits (``0001-01-01T00:00:00+01:00`` is year 0 in UTC) order at the limit;
- JSON nested ~980 deep: the dedupe key is computed without recursion, the deep value kept as its JSON text.

And a permanent error nobody foresaw is quarantined (event kept, marked, shown by ``status``), not a 503,
while what a retry can fix (connection lost, lock, serialization failure, deadlock, timeout) stays 503.
Everything runs against a real SQLite file and a real PostgreSQL server.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
from collections.abc import Iterator
from typing import Any

import psycopg2
import psycopg2.errors as pg
import pytest

from functions.asset_sync import db
from functions.asset_sync.__main__ import main as cli
from functions.asset_sync.handler import dedupe_key
from functions.asset_sync.storable import canonical_json_iterative
from tests.functions.asset_sync_support import (
    ASSET,
    asset,
    events,
    execute,
    fresh_database,
    load,
    mirror,
    query,
    send,
)

NUL_SIGN = "\u2400"


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path, monkeypatch, signing_secret) -> Iterator[str]:
    yield from fresh_database(request.param, tmp_path, monkeypatch)


@pytest.fixture
def database_of_kind(tmp_path, monkeypatch, signing_secret) -> Iterator[Any]:
    """A fresh database of the kind a test names (for errors that only one kind raises)."""
    opened: list[Iterator[str]] = []

    def open_database(kind: str) -> str:
        opened.append(fresh_database(kind, tmp_path, monkeypatch))
        return next(opened[-1])

    yield open_database
    for database in opened:
        next(database, None)


def incompressible(length: int, seed: str = "x") -> str:
    """Text PostgreSQL cannot compress below its btree limit (~2.7 kB per index entry)."""
    text, block = "", seed
    while len(text) < length:
        block = hashlib.sha256(block.encode()).hexdigest()
        text += block
    return text[:length]


def upload(**changes: Any) -> dict[str, Any]:
    payload = load("upload")
    payload.update(changes)
    return payload


def body_of(payload: dict[str, Any], **replacements: str) -> bytes:
    """The payload as JSON text, with placeholders replaced by raw JSON tokens (NaN, 1e400) json.dumps never writes."""
    text = json.dumps(payload)
    for placeholder, token in replacements.items():
        text = text.replace(json.dumps(placeholder), token)
    return text.encode()


def assert_kept_exactly_once(url: str, body: bytes) -> dict[str, Any]:
    [event] = events(url)
    assert event["payload"] == body.decode("utf-8")  # the raw body is the lossless record
    retry = send(body)  # Cloudinary's retry finds it recorded
    assert retry.status == 200 and retry.body["status"] == "ignored", retry.body
    assert len(events(url)) == 1
    return event


# --- item 8: values the database cannot hold as-is ---------------------------------------------------

LONG_PUBLIC_ID = "shop/" + incompressible(3000, "public")
LONG_FOLDER = "shop/" + incompressible(3000, "folder")


@pytest.mark.parametrize(("case", "payload", "expected"), [
    ("NUL in the public_id", upload(public_id="shop/oak\u0000chair"),
     {"public_id": f"shop/oak{NUL_SIGN}chair"}),
    ("NUL in a tag", upload(tags=["catalog", "bad\u0000tag"]), {"tags": [f"bad{NUL_SIGN}tag", "catalog"]}),
    ("NUL in a context key and a metadata value",
     upload(context={"custom": {"a\u0000lt": "x"}}, metadata={"line": "heri\u0000tage"}),
     {"context": {f"a{NUL_SIGN}lt": "x"}, "metadata": {"line": f"heri{NUL_SIGN}tage"}}),
    ("NUL in the display name and the folder", upload(display_name="oak\u0000", asset_folder="shop/\u0000"),
     {"display_name": f"oak{NUL_SIGN}", "asset_folder": f"shop/{NUL_SIGN}"}),
    ("a public_id too long for a btree index", upload(public_id=LONG_PUBLIC_ID), {"public_id": LONG_PUBLIC_ID}),
    ("an asset_folder too long for a btree index", upload(asset_folder=LONG_FOLDER), {"asset_folder": LONG_FOLDER}),
    ("a tag too long for an index", upload(tags=[incompressible(5000, "tag")]),
     {"tags": [incompressible(5000, "tag")]}),
    ("a width beyond a 4-byte integer", upload(width=3_000_000_000, height=-2**40, pages=2**31),
     {"width": None, "height": None, "pages": None}),
    ("a version and bytes beyond 8 bytes", upload(version=2**70, bytes=10**30), {"version": None, "bytes": None}),
])
def test_values_the_database_cannot_hold_are_stored_not_503(database, case, payload, expected):
    body = json.dumps(payload).encode()

    response = send(body)

    assert response.status == 200 and response.body["status"] == "done", (case, response.body)
    assert "quarantined" not in response.body, case
    row = asset(database)
    assert {key: row[key] for key in expected} == expected, case
    assert row["secure_url"] == payload["secure_url"]  # the rest of the row is there too
    assert_kept_exactly_once(database, body)


@pytest.mark.parametrize(("token", "stored"), [
    ("NaN", "NaN"), ("Infinity", "Infinity"), ("-Infinity", "-Infinity"), ("1e400", "1e400"),
    ("-2.5E+999", "-2.5E+999"),
])
def test_numbers_json_cannot_hold_are_kept_as_their_text(database, token, stored):
    """Python's JSON reader takes NaN/Infinity and turns 1e400 into inf; neither jsonb nor JSON text holds them."""
    payload = upload(metadata={"price": "@number@", "line": "heritage"},
                     context={"custom": {"weight": "@number@"}})
    body = body_of(payload, **{"@number@": token})

    response = send(body)

    assert response.status == 200 and response.body["status"] == "done", response.body
    row = asset(database)
    assert row["metadata"] == {"line": "heritage", "price": stored}
    assert row["context"] == {"weight": stored}
    assert_kept_exactly_once(database, body)


def test_metadata_change_with_nan_and_nul_after_the_upload(database):
    assert send("upload").status == 200
    payload = load("resource_metadata_changed")
    payload["resources"]["shop/chairs/oak_chair_heritage"]["new_metadata"] = {"price": "@n@", "n\u0000ote": "a"}
    body = body_of(payload, **{"@n@": "NaN"})

    response = send(body)

    assert response.status == 200 and response.body["status"] == "done", response.body
    assert asset(database)["metadata"] == {"price": "NaN", f"n{NUL_SIGN}ote": "a"}  # product_line: cleared


def test_an_asset_id_too_long_for_a_key_gets_a_hashed_key_and_stays_findable(database):
    long_id = incompressible(3000, "asset")
    body = json.dumps(upload(asset_id=long_id)).encode()

    response = send(body)

    assert response.status == 200 and response.body["status"] == "done", response.body
    [row] = db.store(database).assets()
    assert row["asset_id"] != long_id and len(row["asset_id"].encode()) <= 512  # a key a btree index holds
    assert row["public_id"] == "shop/chairs/oak_chair"
    # The same asset named again finds the same row (the key is a function of the id).
    tags = load("resource_tags_changed")
    tags["resources"][0]["asset_id"] = long_id
    assert send(tags).status == 200
    [again] = db.store(database).assets()
    assert again["asset_id"] == row["asset_id"] and "featured" in again["tags"]
    assert [event["notification_type"] for event in events(database)] == ["upload", "resource_tags_changed"]


def test_a_folder_path_too_long_for_a_key_is_recorded(database):
    payload = load("create_folder")
    payload["folder_path"] = LONG_FOLDER

    response = send(payload)

    assert response.status == 200 and response.body["status"] == "done", response.body
    assert len(mirror(database)["folders"]) == 1 and len(events(database)) == 1


def test_a_cms_finds_an_overlong_public_id_by_equality(database):
    assert send(upload(public_id=LONG_PUBLIC_ID)).status == 200

    rows = query(database, "SELECT asset_id FROM cloudinary_assets WHERE public_id = ?", (LONG_PUBLIC_ID,))

    assert rows == [{"asset_id": ASSET}]


def test_hostile_values_anywhere_are_stored_and_never_503(database):
    """The class, not the examples: any JSON value Cloudinary could send, in any field the mirror keeps."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    text = st.text(st.characters(blacklist_categories=["Cs"]), max_size=40) | st.sampled_from(
        ["\u0000", "a\u0000b", "\u2400", "~", "%", "?", "'", "\\", incompressible(2800)])
    numbers = st.integers() | st.floats() | st.sampled_from([2**31, -2**31 - 1, 2**63, 10**40])
    scalars = st.none() | st.booleans() | numbers | text
    values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                          | st.dictionaries(text, inner, max_size=3), max_leaves=12)
    times = text | st.sampled_from(LIMITS)
    counter = iter(range(10**6))

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(public_id=text.filter(bool), folder=text, tags=st.lists(text, max_size=4),
           metadata=st.dictionaries(text, values, max_size=4), context=st.dictionaries(text, values, max_size=3),
           width=values, created_at=times, triggered_at=times, display_name=values)
    def check(public_id, folder, tags, metadata, context, width, created_at, triggered_at, display_name):
        number = next(counter)
        payload = upload(asset_id=f"{number:032x}", public_id=public_id, asset_folder=folder, tags=tags,
                         metadata=metadata, context={"custom": context}, width=width, created_at=created_at,
                         display_name=display_name)
        payload["notification_context"]["triggered_at"] = triggered_at
        body = json.dumps(payload).encode()  # NaN and Infinity as Python writes them

        response = send(body)

        assert response.status == 200 and response.body["status"] == "done", response.body
        assert "quarantined" not in response.body, response.body
        tags_change = load("resource_tags_changed")
        tags_change["resources"][0].update(asset_id=f"{number:032x}", public_id=public_id, added=tags,
                                           removed=[folder])
        assert send(tags_change).status == 200
        assert send(body).body["status"] == "ignored"  # the retry

    check()
    assert len(events(database)) == 80 and len(db.store(database).assets()) == 40


# --- item 9: limits of times and of nesting ----------------------------------------------------------

LIMITS = ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00Z",
          "9999-12-31T23:59:59.999999Z", "0001-01-01T00:00:00-14:00", "9999-12-31T23:59:59+14:00"]


@pytest.mark.parametrize("moment", LIMITS)
@pytest.mark.parametrize("field", ["triggered_at", "timestamp", "created_at"])
def test_times_at_the_datetime_limits_are_200(database, moment, field):
    payload = upload()
    if field == "triggered_at":
        payload["notification_context"]["triggered_at"] = moment
    else:
        payload[field] = moment

    response = send(payload)

    assert response.status == 200 and response.body["status"] == "done", response.body
    row = asset(database)
    assert row["public_id"] == "shop/chairs/oak_chair"
    assert row["last_notification_at"][:4] in ("0001", "2024", "9999")


def test_a_moderation_time_at_the_limit_orders_at_the_limit(database):
    """No notification_context: the payload's own time orders it; year 0 in UTC is the earliest time there is."""
    early = load("moderation")
    del early["notification_context"]
    early.update(moderation_status="rejected", moderation_updated_at="0001-01-01T00:00:00+01:00")
    late = load("moderation")
    del late["notification_context"]
    late.update(moderation_updated_at="9999-12-31T23:59:59-01:00")

    for payload in (late, early):  # the later decision arrives first
        response = send(payload)
        assert response.status == 200 and response.body["status"] == "done", response.body

    assert asset(database)["moderation_status"] == "approved"


def nested(depth: int, leaf: Any = "bottom") -> Any:
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"d": value}
    return value


def on_a_fresh_stack(call: Any) -> Any:
    """``call()`` on a new thread, as the local server and the Lambda runtime run each request: at the bottom
    of a stack (a test runs ~60 frames deep, which JSON nested ~980 deep would not fit on top of)."""
    import threading

    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(call()))
    thread.start()
    thread.join()
    return result[0]


@pytest.mark.parametrize("depth", [100, 500, 980])
@pytest.mark.parametrize("where", ["metadata", "context", "info_data"])
def test_json_nested_hundreds_deep_is_recorded(database, depth, where):
    if where == "info_data":
        payload = load("info")
        payload["info_data"] = "@deep@"
    else:
        payload = upload(**{where: {"custom": {"deep": "@deep@"}} if where == "context" else {"deep": "@deep@"}})
    body = body_of(payload, **{"@deep@": canonical_json_iterative(nested(depth))})  # json.dumps cannot, here

    response = on_a_fresh_stack(lambda: send(body))

    assert response.status == 200 and response.body["status"] == "done", response.body
    row = asset(database)
    stored = row["info"]["google_tagging"]["data"] if where == "info_data" else row[where]["deep"]
    # Deeper than the mirror keeps as JSON (MAX_DEPTH levels), the value is kept as its JSON text.
    text = stored if isinstance(stored, str) else canonical_json_iterative(stored)
    assert "bottom" in text and text.count("[") + text.count("{") == depth
    [event] = events(database)
    assert event["payload"] == body.decode()
    retry = on_a_fresh_stack(lambda: send(body))
    assert retry.status == 200 and retry.body["status"] == "ignored", retry.body


def test_the_dedupe_key_of_a_deep_payload_is_the_canonical_hash():
    shallow = load("upload")
    deep = {**shallow, "metadata": {"deep": nested(980)}}
    reordered = dict(reversed(list(deep.items())))
    assert dedupe_key(shallow) == hashlib.sha256(
        json.dumps(shallow, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()).hexdigest()

    key = dedupe_key(deep)  # json.dumps raises RecursionError here, deep inside a request's stack

    assert key == hashlib.sha256(canonical_json_iterative(deep).encode()).hexdigest()
    assert key == dedupe_key(reordered) != dedupe_key(shallow)


@pytest.mark.slow
def test_canonical_json_without_recursion_equals_json_dumps():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from functions.asset_sync.storable import canonical_json_iterative

    scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text()
    values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                          | st.dictionaries(st.text(max_size=5), inner, max_size=4), max_leaves=30)

    @settings(max_examples=300, deadline=None)
    @given(values)
    def check(value):
        assert canonical_json_iterative(value) == json.dumps(value, sort_keys=True, separators=(",", ":"),
                                                             ensure_ascii=False)

    check()


# --- a permanent error nobody foresaw: quarantined, never 503 ------------------------------------------

def reject_public_id(url: str, public_id: str) -> None:
    """A rule of the database's own that refuses a value: a permanent error the code cannot foresee."""
    if url.startswith("sqlite"):
        execute(url, "CREATE TRIGGER reject_it BEFORE UPDATE ON cloudinary_assets "
                     f"WHEN NEW.public_id = '{public_id}' BEGIN SELECT RAISE(ABORT, 'rejected by a rule'); END")
    else:
        execute(url, "ALTER TABLE cloudinary_assets ADD CONSTRAINT reject_it "
                     f"CHECK (public_id IS DISTINCT FROM '{public_id}')")


def allow_public_id(url: str) -> None:
    execute(url, "DROP TRIGGER reject_it" if url.startswith("sqlite")
            else "ALTER TABLE cloudinary_assets DROP CONSTRAINT reject_it")


def test_a_permanent_error_nobody_foresaw_is_quarantined_and_replay_applies_it_later(database, capsys):
    assert cli(["migrate"]) == 0
    reject_public_id(database, "shop/chairs/oak_chair")
    body = json.dumps(load("upload")).encode()

    response = send(body)

    assert response.status == 200 and response.body["status"] == "done", response.body
    assert "rejected by a rule" in response.body["quarantined"] or "reject_it" in response.body["quarantined"]
    [event] = events(database)
    assert event["state"] == "quarantined" and event["payload"] == body.decode()
    assert db.store(database).assets() == []  # nothing half-applied
    retry = send(body)
    assert retry.status == 200 and retry.body["status"] == "ignored" and "quarantined" in retry.body["reason"]

    capsys.readouterr()
    assert cli(["status"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["quarantined"] == 1
    [shown] = status["quarantined_events"]
    assert shown["notification_type"] == "upload" and shown["dedupe_key"] == event["dedupe_key"]
    assert shown["reason"]

    allow_public_id(database)  # a person fixed the cause
    assert cli(["replay"]) == 0
    assert json.loads(capsys.readouterr().out)["quarantined"] == 0
    assert asset(database)["public_id"] == "shop/chairs/oak_chair"
    assert cli(["status"]) == 0
    assert json.loads(capsys.readouterr().out)["quarantined"] == 0


def test_a_quarantined_event_among_others_leaves_the_others_applied(database):
    assert send("upload").status == 200
    reject_public_id(database, "shop/chairs/oak_chair_heritage")

    renamed = send("rename")
    tagged = send("resource_tags_changed")

    assert renamed.status == tagged.status == 200
    assert "quarantined" in renamed.body and "quarantined" in tagged.body
    row = asset(database)
    assert row["public_id"] == "shop/chairs/oak_chair" and "featured" not in row["tags"]
    assert [event["state"] for event in events(database)] == ["applied", "quarantined", "quarantined"]


def test_an_event_the_database_refuses_to_record_is_500_for_a_person_not_503(database):
    """Outside the savepoint (the event row itself) a permanent refusal cannot be quarantined: a person must act,
    and the answer says so (500; Cloudinary still retries it, and the log says what the database refused)."""
    assert cli(["migrate"]) == 0
    if database.startswith("sqlite"):
        execute(database, "CREATE TRIGGER refuse_events BEFORE INSERT ON cloudinary_events "
                          "BEGIN SELECT RAISE(ABORT, 'no events today'); END")
    else:
        execute(database, "ALTER TABLE cloudinary_events ADD CONSTRAINT refuse_events CHECK (id < 0)")

    response = send("upload")

    assert response.status == 500 and response.body["error"] == "database_rejected", response.body
    assert query(database, "SELECT COUNT(*) AS n FROM cloudinary_events") == [{"n": 0}]


def _server(error_class: type[psycopg2.Error], sqlstate: str, message: str) -> psycopg2.Error:
    """A psycopg2 error as the server's answer raises it: its class and its SQLSTATE (``pgcode``, which only the
    driver can set on the class itself)."""
    return type(error_class.__name__, (error_class,), {"pgcode": sqlstate})(message)


RETRYABLE = [
    ("sqlite", sqlite3.OperationalError("database is locked")),
    ("sqlite", sqlite3.OperationalError("disk I/O error")),
    ("postgresql", _server(pg.SerializationFailure, "40001", "could not serialize access due to concurrent update")),
    ("postgresql", _server(pg.DeadlockDetected, "40P01", "deadlock detected")),
    ("postgresql", _server(pg.QueryCanceled, "57014", "canceling statement due to statement timeout")),
    ("postgresql", _server(pg.LockNotAvailable, "55P03", "could not obtain lock on row")),
    ("postgresql", _server(pg.AdminShutdown, "57P01", "terminating connection due to administrator command")),
    ("postgresql", _server(pg.TooManyConnections, "53300", "sorry, too many clients already")),
    ("postgresql", psycopg2.OperationalError("server closed the connection unexpectedly")),  # the client's
]
PERMANENT = [
    ("sqlite", sqlite3.IntegrityError("CHECK constraint failed")),
    ("sqlite", sqlite3.DataError("string or blob too big")),
    ("sqlite", OverflowError("Python int too large to convert to SQLite INTEGER")),
    ("postgresql", ValueError("A string literal cannot contain NUL (0x00) characters.")),  # psycopg2's refusal
    ("postgresql", _server(pg.UntranslatableCharacter, "22P05", "unsupported Unicode escape sequence")),
    ("postgresql", _server(pg.NumericValueOutOfRange, "22003", "integer out of range")),
    ("postgresql", _server(pg.ProgramLimitExceeded, "54000", "index row size 3016 exceeds btree maximum 2704")),
    ("postgresql", _server(pg.DatetimeFieldOverflow, "22008", "date/time field value out of range")),
    ("postgresql", _server(pg.CheckViolation, "23514", "new row violates check constraint")),
    ("postgresql", RecursionError("maximum recursion depth exceeded")),
]


def _id(value: Any) -> str:
    return f"{type(value).__name__}:{str(value)[:30]}" if isinstance(value, BaseException) else str(value)


@contextlib.contextmanager
def _failing_write(error: BaseException) -> Iterator[None]:
    """While in effect, the asset rows' write fails with ``error``, raised where the database would raise it."""
    def fail(store: db.Store, *args: Any, **kwargs: Any) -> None:
        raise error

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(db.Store, "_write_rows", fail)
        yield


@pytest.mark.parametrize(("dialect", "error"), RETRYABLE, ids=_id)
def test_what_a_retry_can_fix_is_503_with_nothing_committed(database_of_kind, dialect, error):
    database = database_of_kind(dialect)
    with _failing_write(error):
        response = send("upload")

    assert response.status == 503 and response.body["error"] == "database_unavailable", response.body
    assert events(database) == [] and db.store(database).assets() == []
    assert send("upload").body["status"] == "done"  # the retry


@pytest.mark.parametrize(("dialect", "error"), PERMANENT, ids=_id)
def test_what_no_retry_can_fix_is_quarantined_not_503(database_of_kind, dialect, error):
    database = database_of_kind(dialect)
    with _failing_write(error):
        response = send("upload")

    assert response.status == 200 and response.body["status"] == "done" and response.body["quarantined"], \
        response.body
    [event] = events(database)
    assert event["state"] == "quarantined" and db.store(database).assets() == []
    assert send("upload").body["status"] == "ignored"  # a retry: recorded already
