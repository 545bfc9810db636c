"""shared.idempotency against real stores: SQLite in a temporary file, a real PostgreSQL server, and a DynamoDB
stand-in on 127.0.0.1 that botocore reaches through AWS_ENDPOINT_URL_DYNAMODB (its requests are asserted as sent).

Most behaviour tests run once per store (``store`` is parametrized). The PostgreSQL server is the throwaway one
that ``scripts/postgres.sh`` starts for ``make test`` (TEST_DATABASE_URL); when it is not there the PostgreSQL
third fails, loudly, rather than being skipped. Time is a fake clock handed to ``once``: nothing sleeps.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
from typing import Any

import pytest

from shared import config, idempotency
from shared.errors import ConfigError, DependencyRejected, DependencyUnavailable
from shared.webhook import Context, webhook
from tests import pg
from tests.fakes.dynamodb import FakeDynamoDB
from tests.helpers import ROOT, signed_request

T0 = 1_700_000_000  # the fake clock's start, epoch seconds
TTL = 7200 + 300 + 3600  # default signature window + allowed clock skew + one hour
IN_PROGRESS = 60
NOTIFICATION = {"notification_type": "eager", "public_id": "lamp", "batch_id": "b-1",
                "eager": [{"transformation": "c_pad,w_300", "secure_url": "https://res.example.com/lamp.jpg"}]}


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def context(payload: Any = NOTIFICATION, *, function: str = "eager_email", dry_run: bool = False) -> Context:
    request = signed_request(payload)
    return Context(function, request, config.Settings(function, os.environ), dry_run)


class Effect:
    """A side effect that counts how often it happened (an email sent)."""

    def __init__(self, result: Any = 202) -> None:
        self.result = result
        self.count = 0
        self._lock = threading.Lock()

    def __call__(self) -> Any:
        with self._lock:
            self.count += 1
        return self.result


# --- a DynamoDB stand-in: tests/fakes/dynamodb.py ---------------------------------------------------

@pytest.fixture(scope="module")
def dynamodb_server():
    fake = FakeDynamoDB()
    yield fake
    fake.stop()


# --- fixtures --------------------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def clean(monkeypatch):
    for name in list(os.environ):
        if name.startswith("IDEMPOTENCY_") or name in ("VERCEL", "NETLIFY", "DATABASE_URL"):
            monkeypatch.delenv(name, raising=False)
    idempotency.reset()
    yield
    idempotency.reset()


def _postgres_url() -> str:
    url = os.environ.get("TEST_DATABASE_URL", "")
    if not url:
        pytest.fail("TEST_DATABASE_URL is not set, so there is no PostgreSQL to test against. Run the tests "
                    "with `make test` or `bash scripts/test.sh`: they start a throwaway PostgreSQL "
                    "(scripts/postgres.sh) and set it.", pytrace=False)
    return url


def _drop_postgres_table(url: str) -> None:
    with pg.admin(url) as connection:
        connection.execute("DROP TABLE IF EXISTS idempotency_keys")


class Store:
    """The store a test runs against, and its records read straight from it: {key: (status, expires_at, result)}."""

    def __init__(self, kind: str, target: str, fake: FakeDynamoDB | None = None) -> None:
        self.kind = kind
        self.target = target
        self.fake = fake

    def records(self) -> dict[str, tuple[str, int, Any]]:
        if self.kind == "dynamodb":
            return {key: (item["status"]["S"], int(item["expires_at"]["N"]),
                          json.loads(item["result"]["S"]) if "result" in item else None)
                    for key, item in self.fake.items.items()}
        if self.kind == "sqlite":
            if not os.path.exists(self.target):
                return {}
            with sqlite3.connect(self.target) as connection:
                if not connection.execute("SELECT 1 FROM sqlite_master WHERE name = 'idempotency_keys'").fetchone():
                    return {}
                rows = connection.execute('SELECT "key", status, expires_at, result FROM idempotency_keys').fetchall()
            return {key: (status, expires_at, json.loads(result) if result is not None else None)
                    for key, status, expires_at, result in rows}
        with pg.admin(self.target) as connection:
            if connection.execute("SELECT to_regclass('idempotency_keys')").fetchone()[0] is None:
                return {}
            rows = connection.execute('SELECT "key", status, expires_at, result FROM idempotency_keys').fetchall()
        return {key: (status, expires_at, result) for key, status, expires_at, result in rows}


@pytest.fixture
def aws(monkeypatch, dynamodb_server):
    dynamodb_server.reset()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", dynamodb_server.url)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # no retry: botocore would back off in real time
    return dynamodb_server


@pytest.fixture
def dynamodb(aws, monkeypatch) -> Store:
    monkeypatch.setenv("IDEMPOTENCY_TABLE", aws.table)
    return Store("dynamodb", aws.table, aws)


@pytest.fixture(params=["sqlite", "postgresql", "dynamodb"])
def store(request, tmp_path, monkeypatch) -> Store:
    if request.param == "dynamodb":
        return request.getfixturevalue("dynamodb")
    if request.param == "sqlite":
        path = str(tmp_path / "keys.sqlite3")
        monkeypatch.setenv("DATABASE_URL", f"sqlite:///{path}")
        return Store("sqlite", path)
    url = _postgres_url()
    _drop_postgres_table(url)
    monkeypatch.setenv("DATABASE_URL", url)
    return Store("postgresql", url)


def key(payload: Any = NOTIFICATION, action: str = "send_email", function: str = "eager_email") -> str:
    return idempotency.key_for(function, action, signed_request(payload).body)


# --- the lifecycle, on every store -----------------------------------------------------------------

def test_the_first_delivery_performs_and_a_repeat_returns_the_stored_result(store):
    effect, clock = Effect({"status": 202, "to": ["a@example.com"]}), Clock()
    first_ctx = context()

    first = idempotency.once(first_ctx, "send_email", effect, clock=clock, recipients=1)

    assert (first.performed, first.repeated, first.result) == (True, False, {"status": 202, "to": ["a@example.com"]})
    assert first_ctx.actions == [{"action": "send_email", "recipients": 1}]
    assert first_ctx.log_fields == {"idempotency": "done"}
    assert store.records() == {key(): ("completed", T0 + TTL, {"status": 202, "to": ["a@example.com"]})}

    clock.now += 3600  # a replay an hour later, with the same signed bytes
    repeat_ctx = context()
    repeat = idempotency.once(repeat_ctx, "send_email", effect, clock=clock, recipients=1)

    assert effect.count == 1
    assert (repeat.performed, repeat.repeated, repeat.result) == (False, True, first.result)
    assert repeat_ctx.actions == [{"action": "send_email", "recipients": 1, "repeated": True}]
    assert repeat_ctx.log_fields == {"idempotency": "repeat"}


def test_different_notifications_actions_and_functions_do_not_share_a_record(store):
    effect, clock = Effect(), Clock()
    other = {**NOTIFICATION, "batch_id": "b-2"}

    idempotency.once(context(), "send_email", effect, clock=clock)
    idempotency.once(context(other), "send_email", effect, clock=clock)
    idempotency.once(context(), "post_to_chat", effect, clock=clock)
    idempotency.once(context(function="bg_removal_approval"), "send_email", effect, clock=clock)

    assert effect.count == 4
    assert len(store.records()) == 4


def test_a_concurrent_duplicate_is_503_while_the_first_is_in_progress(store):
    clock, started, proceed = Clock(), threading.Event(), threading.Event()
    sent: list[int] = []

    def slow_send() -> int:
        started.set()
        assert proceed.wait(10)
        sent.append(1)
        return 202

    first: list[Any] = []
    worker = threading.Thread(target=lambda: first.append(idempotency.once(context(), "send_email", slow_send,
                                                                           clock=clock)))
    worker.start()
    assert started.wait(10)
    assert store.records() == {key(): ("in_progress", T0 + IN_PROGRESS, None)}

    with pytest.raises(DependencyUnavailable) as duplicate:
        idempotency.once(context(), "send_email", Effect(), clock=clock)
    assert duplicate.value.status == 503 and duplicate.value.code == "duplicate_in_progress"

    proceed.set()
    worker.join(10)
    assert first[0].performed and sent == [1]

    retry = idempotency.once(context(), "send_email", Effect(), clock=clock)  # Cloudinary's retry of the 503
    assert retry.repeated and retry.result == 202 and sent == [1]


def test_racing_deliveries_perform_exactly_once(store):
    effect, clock = Effect(), Clock()
    racers = 6
    barrier = threading.Barrier(racers)
    answers: list[str] = []

    def deliver() -> None:
        ctx = context()
        barrier.wait(10)
        try:
            outcome = idempotency.once(ctx, "send_email", effect, clock=clock)
            answers.append("performed" if outcome.performed else "repeated")
        except DependencyUnavailable as error:
            answers.append(error.code)

    threads = [threading.Thread(target=deliver) for _ in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert effect.count == 1
    assert answers.count("performed") == 1 and len(answers) == racers
    assert set(answers) <= {"performed", "repeated", "duplicate_in_progress"}


def test_a_failed_action_releases_its_claim_so_a_retry_performs_it_exactly_once(store):
    clock, attempts = Clock(), []

    def flaky_send() -> int:
        attempts.append(1)
        if len(attempts) == 1:
            raise DependencyUnavailable("SendGrid is unavailable.", code="sendgrid_unavailable")
        return 202

    with pytest.raises(DependencyUnavailable) as failed:
        idempotency.once(context(), "send_email", flaky_send, clock=clock)
    assert failed.value.code == "sendgrid_unavailable"  # the action's own error, untouched
    assert store.records() == {}  # the claim is gone: nothing blocks the retry

    clock.now += 30
    retry = idempotency.once(context(), "send_email", flaky_send, clock=clock)
    again = idempotency.once(context(), "send_email", flaky_send, clock=clock)

    assert retry.performed and again.repeated and len(attempts) == 2
    assert store.records() == {key(): ("completed", T0 + 30 + TTL, 202)}


def test_a_permanent_failure_also_releases_the_claim(store):
    def refused() -> None:
        raise DependencyRejected("SendGrid refused the email.", code="sendgrid_rejected")

    with pytest.raises(DependencyRejected):
        idempotency.once(context(), "send_email", refused, clock=Clock())
    assert store.records() == {}


def test_a_record_lasts_past_the_signature_window_then_expires(store):
    effect, clock = Effect(), Clock()
    idempotency.once(context(), "send_email", effect, clock=clock)

    # The last moment the signature check still accepts a replay: signed up to 5 min "in the future", then 2 h.
    clock.now = T0 + 300 + 7200
    assert idempotency.once(context(), "send_email", effect, clock=clock).repeated
    clock.now = T0 + TTL  # the record's last second
    assert idempotency.once(context(), "send_email", effect, clock=clock).repeated
    assert effect.count == 1

    clock.now = T0 + TTL + 1  # expired (a replay this late is refused 401 before it gets here)
    assert idempotency.once(context(), "send_email", effect, clock=clock).performed
    assert effect.count == 2
    assert store.records() == {key(): ("completed", T0 + TTL + 1 + TTL, 202)}


def test_a_crashed_instances_claim_is_taken_over_once_older_than_the_functions_timeout(store):
    effect, clock = Effect(), Clock()
    crashed_until = T0 + IN_PROGRESS
    assert idempotency._store().claim(key(), "eager_email", T0, crashed_until) is None  # then the instance died

    clock.now = T0 + IN_PROGRESS  # still within the claim: maybe still running
    with pytest.raises(DependencyUnavailable) as duplicate:
        idempotency.once(context(), "send_email", effect, clock=clock)
    assert duplicate.value.code == "duplicate_in_progress" and effect.count == 0

    clock.now = T0 + IN_PROGRESS + 1  # older than any run can be: the instance is gone
    assert idempotency.once(context(), "send_email", effect, clock=clock).performed
    assert effect.count == 1

    idempotency._store().release(key(), crashed_until)  # the dead instance's late release touches nothing
    assert store.records() == {key(): ("completed", T0 + IN_PROGRESS + 1 + TTL, 202)}


def test_a_late_failure_does_not_release_the_claim_of_the_instance_that_took_over(store):
    clock = Clock()
    assert idempotency._store().claim(key(), "eager_email", T0, T0 + IN_PROGRESS) is None  # the slow first
    clock.now = T0 + IN_PROGRESS + 1
    assert idempotency._store().claim(key(), "eager_email", int(clock.now), int(clock.now) + IN_PROGRESS) is None

    idempotency._store().release(key(), T0 + IN_PROGRESS)  # the slow first fails at last

    assert store.records() == {key(): ("in_progress", T0 + 2 * IN_PROGRESS + 1, None)}


def test_a_dry_run_records_the_action_and_writes_nothing(store):
    effect, ctx = Effect(), context(dry_run=True)

    outcome = idempotency.once(ctx, "send_email", effect, clock=Clock(), recipients=2)

    assert (outcome.performed, outcome.repeated, outcome.result) == (False, False, None)
    assert ctx.actions == [{"action": "send_email", "recipients": 2}] and effect.count == 0
    assert store.records() == {}
    if store.kind == "sqlite":
        assert not os.path.exists(store.target)  # not even created
    if store.kind == "dynamodb":
        assert store.fake.requests == []


def test_a_result_that_is_not_json_is_stored_as_text(store):
    class Receipt:
        def __str__(self) -> str:
            return "receipt-1"

    outcome = idempotency.once(context(), "send_email", Receipt, clock=Clock())

    assert outcome.result == "receipt-1"  # what a repeat will get, too
    assert idempotency.once(context(), "send_email", Receipt, clock=Clock()).result == "receipt-1"


def test_a_store_that_does_not_answer_in_time_is_503(store, monkeypatch):
    """Every store call is bounded by IDEMPOTENCY_TIMEOUT_SECONDS (here 0.2 s): a locked table, a held row, a
    stalled answer."""
    idempotency.once(context({"warm": "up"}), "send_email", Effect(), clock=Clock())  # the table exists
    monkeypatch.setenv("IDEMPOTENCY_TIMEOUT_SECONDS", "0.2")
    effect = Effect()
    if store.kind == "sqlite":
        holder = sqlite3.connect(store.target, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        release = holder.close
    elif store.kind == "postgresql":
        import psycopg2

        holder = psycopg2.connect(store.target)  # not autocommit: the lock lasts until it closes
        holder.cursor().execute("LOCK TABLE idempotency_keys IN ACCESS EXCLUSIVE MODE")
        release = holder.close
    else:
        store.fake.stall.clear()
        release = store.fake.stall.set
    try:
        with pytest.raises(DependencyUnavailable) as unavailable:
            idempotency.once(context(), "send_email", effect, clock=Clock())
    finally:
        release()

    assert unavailable.value.status == 503 and unavailable.value.code == "idempotency_store_unavailable"
    assert effect.count == 0  # no claim, no email
    assert idempotency.once(context(), "send_email", effect, clock=Clock()).performed  # the retry


def test_a_done_action_whose_completion_cannot_be_recorded_is_still_done(store, monkeypatch):
    effect, ctx = Effect(), context()
    opened = idempotency._store()

    def down(*args: Any) -> None:
        raise DependencyUnavailable("down", code="idempotency_store_unavailable", log_detail="store went away")

    monkeypatch.setattr(opened, "complete", down)
    outcome = idempotency.once(ctx, "send_email", effect, clock=Clock())

    # 200 for the caller: a 503 would make Cloudinary retry and, once the claim expires, send again.
    assert outcome.performed and effect.count == 1
    assert ctx.log_fields == {"idempotency": "done_not_recorded", "idempotency_detail": "store went away"}


def test_a_failure_whose_claim_cannot_be_released_keeps_the_actions_error(store, monkeypatch):
    ctx, opened = context(), idempotency._store()

    def down(*args: Any) -> None:
        raise DependencyUnavailable("down", code="idempotency_store_unavailable", log_detail="store went away")

    def refused() -> None:
        raise DependencyRejected("SendGrid refused the email.", code="sendgrid_rejected")

    monkeypatch.setattr(opened, "release", down)
    with pytest.raises(DependencyRejected):
        idempotency.once(ctx, "send_email", refused, clock=Clock())
    assert ctx.log_fields["idempotency"] == "claim_not_released"


# --- SQL specifics ---------------------------------------------------------------------------------

def test_the_local_default_is_a_sqlite_file_in_dot_local(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # tests/conftest.py points every test's default at its own tmp_path; this test checks the real default
    monkeypatch.setattr(idempotency, "DEFAULT_SQLITE_PATH", ".local/idempotency.sqlite3")

    assert idempotency.configured_backend().startswith("SQLite file .local/idempotency.sqlite3 (local default")
    assert idempotency.once(context(), "send_email", Effect(), clock=Clock()).performed
    assert Store("sqlite", str(tmp_path / ".local" / "idempotency.sqlite3")).records() == {
        key(): ("completed", T0 + TTL, 202)}


def test_expired_rows_are_cleaned_up_from_sql_stores(tmp_path, monkeypatch):
    path = str(tmp_path / "keys.sqlite3")
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{path}")
    clock = Clock()
    for number in range(idempotency._CLEANUP_EVERY - 1):
        idempotency.once(context({"n": number}), "send_email", Effect(), clock=clock)
    assert len(Store("sqlite", path).records()) == idempotency._CLEANUP_EVERY - 1

    clock.now += TTL + 1
    idempotency.once(context({"n": "last"}), "send_email", Effect(), clock=clock)  # the 100th claim

    assert list(Store("sqlite", path).records()) == [key({"n": "last"})]


@pytest.mark.parametrize("store", ["sqlite", "postgresql"], indirect=True)  # DynamoDB's table is template.yaml's
def test_a_dropped_table_is_503_then_recreated_by_the_retry(store):
    idempotency.once(context({"warm": "up"}), "send_email", Effect(), clock=Clock())
    if store.kind == "sqlite":
        with sqlite3.connect(store.target) as connection:
            connection.execute("DROP TABLE idempotency_keys")
    else:
        _drop_postgres_table(store.target)

    with pytest.raises(DependencyUnavailable):
        idempotency.once(context(), "send_email", Effect(), clock=Clock())
    assert idempotency.once(context(), "send_email", Effect(), clock=Clock()).performed


def test_an_unreachable_postgresql_is_503_without_the_password(monkeypatch):
    with socket.socket() as probe:  # a port nobody listens on: the server may come back, a retry may work
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("DATABASE_URL", f"postgresql://keys:s3cret-pw@127.0.0.1:{port}/webhooks")

    with pytest.raises(DependencyUnavailable) as unavailable:
        idempotency.once(context(), "send_email", Effect(), clock=Clock())

    assert unavailable.value.code == "idempotency_store_unavailable"
    assert "s3cret-pw" not in unavailable.value.log_detail and "Connection refused" in unavailable.value.log_detail
    assert idempotency.configured_backend() == "PostgreSQL (DATABASE_URL)"


@pytest.mark.parametrize("url", [
    "mysql://user:pw@db.example.com/webhooks",
    "sqlite://",
    "sqlite:///:memory:",
    "postgresql://user@[bad/db",
    "postgresql://user@127.0.0.1:notaport/db",
    "postgresql://user@127.0.0.1:5432/db?nosuchoption=1",
])
def test_a_malformed_database_url_is_500_not_configured(url, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", url)
    effect = Effect()

    with pytest.raises(ConfigError) as misconfigured:
        idempotency.once(context(), "send_email", effect, clock=Clock())

    assert misconfigured.value.status == 500 and misconfigured.value.code == "not_configured"
    assert effect.count == 0
    assert "pw" not in misconfigured.value.log_detail.replace("password", "")


def test_a_sqlite_file_in_a_folder_that_does_not_exist_is_500(tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/missing/keys.sqlite3")

    with pytest.raises(ConfigError) as misconfigured:
        idempotency.once(context(), "send_email", Effect(), clock=Clock())
    assert "does not exist" in misconfigured.value.log_detail
    assert not (tmp_path / "missing").exists()  # a mistyped path does not start an empty store


# --- DynamoDB specifics: the requests as sent --------------------------------------------------------

def test_dynamodb_requests_are_exactly_the_conditional_writes(dynamodb):
    clock, the_key = Clock(), key()
    idempotency.once(context(), "send_email", Effect(), clock=clock)
    clock.now += 10
    idempotency.once(context(), "send_email", Effect(), clock=clock)

    claim = {
        "TableName": "idempotency",
        "Item": {"key": {"S": the_key}, "status": {"S": "in_progress"}, "expires_at": {"N": str(T0 + IN_PROGRESS)},
                 "function": {"S": "eager_email"}},
        "ConditionExpression": "attribute_not_exists(#key) OR #expires_at < :now",
        "ExpressionAttributeNames": {"#key": "key", "#expires_at": "expires_at"},
        "ExpressionAttributeValues": {":now": {"N": str(T0)}},
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }
    complete = {
        "TableName": "idempotency",
        "Key": {"key": {"S": the_key}},
        "UpdateExpression": "SET #status = :completed, #expires_at = :expires_at, #result = :result, "
                            "#function = :function",
        "ExpressionAttributeNames": {"#status": "status", "#expires_at": "expires_at", "#result": "result",
                                     "#function": "function"},
        "ExpressionAttributeValues": {":completed": {"S": "completed"}, ":expires_at": {"N": str(T0 + TTL)},
                                      ":result": {"S": "202"}, ":function": {"S": "eager_email"}},
    }
    repeat_claim = json.loads(json.dumps(claim))
    repeat_claim["Item"]["expires_at"] = {"N": str(T0 + 10 + IN_PROGRESS)}
    repeat_claim["ExpressionAttributeValues"] = {":now": {"N": str(T0 + 10)}}
    assert dynamodb.fake.requests == [("PutItem", claim), ("UpdateItem", complete), ("PutItem", repeat_claim)]
    assert dynamodb.fake.items[the_key]["expires_at"] == {"N": str(T0 + TTL)}  # the table's TTL attribute


def test_dynamodb_a_failure_deletes_only_its_own_claim(dynamodb):
    def refused() -> None:
        raise DependencyRejected("refused", code="sendgrid_rejected")

    with pytest.raises(DependencyRejected):
        idempotency.once(context(), "send_email", refused, clock=Clock())

    assert dynamodb.fake.operations() == ["PutItem", "DeleteItem"]
    assert dynamodb.fake.requests[1][1] == {
        "TableName": "idempotency",
        "Key": {"key": {"S": key()}},
        "ConditionExpression": "#status = :in_progress AND #expires_at = :claimed_until",
        "ExpressionAttributeNames": {"#status": "status", "#expires_at": "expires_at"},
        "ExpressionAttributeValues": {":in_progress": {"S": "in_progress"},
                                      ":claimed_until": {"N": str(T0 + IN_PROGRESS)}},
    }
    assert dynamodb.fake.items == {}


def test_dynamodb_without_the_old_item_in_the_refusal_reads_it(dynamodb):
    effect = Effect()
    idempotency.once(context(), "send_email", effect, clock=Clock())
    dynamodb.fake.return_old_item = False  # e.g. an older local emulator

    assert idempotency.once(context(), "send_email", effect, clock=Clock()).repeated
    assert dynamodb.fake.operations()[-2:] == ["PutItem", "GetItem"]
    assert dynamodb.fake.requests[-1][1] == {"TableName": "idempotency", "Key": {"key": {"S": key()}},
                                             "ConsistentRead": True}
    assert effect.count == 1


@pytest.mark.parametrize(("code", "status", "expected"), [
    ("ProvisionedThroughputExceededException", 400, 503),
    ("ThrottlingException", 400, 503),
    ("InternalServerError", 500, 503),
    ("ResourceNotFoundException", 400, 500),  # the table does not exist: the deployment's to fix
    ("AccessDeniedException", 400, 500),
    ("ValidationException", 400, 500),  # e.g. a table whose partition key is not "key"
])
def test_dynamodb_refusals_map_to_the_promised_status(dynamodb, code, status, expected):
    dynamodb.fake.faults.append((code, status))
    effect = Effect()

    with pytest.raises((DependencyUnavailable, ConfigError)) as refused:
        idempotency.once(context(), "send_email", effect, clock=Clock())

    assert refused.value.status == expected and effect.count == 0
    assert refused.value.code == ("idempotency_store_unavailable" if expected == 503 else "not_configured")
    assert code in refused.value.log_detail


def test_dynamodb_missing_table_is_500(dynamodb, monkeypatch):
    monkeypatch.setenv("IDEMPOTENCY_TABLE", "no-such-table")

    with pytest.raises(ConfigError) as misconfigured:
        idempotency.once(context(), "send_email", Effect(), clock=Clock())
    assert "ResourceNotFoundException" in misconfigured.value.log_detail


def test_dynamodb_unreachable_is_503(aws, monkeypatch):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("IDEMPOTENCY_TABLE", "idempotency")
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", f"http://127.0.0.1:{port}")

    with pytest.raises(DependencyUnavailable) as unavailable:
        idempotency.once(context(), "send_email", Effect(), clock=Clock())
    assert unavailable.value.code == "idempotency_store_unavailable"
    assert "EndpointConnectionError" in unavailable.value.log_detail


def test_dynamodb_without_a_region_is_500(monkeypatch):
    monkeypatch.setenv("IDEMPOTENCY_TABLE", "idempotency")

    with pytest.raises(ConfigError) as misconfigured:
        idempotency.once(context(), "send_email", Effect(), clock=Clock())
    assert "AWS_REGION" in misconfigured.value.log_detail


def test_the_table_wins_over_database_url(dynamodb, monkeypatch, tmp_path):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/keys.sqlite3")

    assert idempotency.configured_backend() == "DynamoDB table idempotency (us-east-1)"
    idempotency.once(context(), "send_email", Effect(), clock=Clock())
    assert list(dynamodb.fake.items) == [key()] and not (tmp_path / "keys.sqlite3").exists()


# --- configuration: serverless platforms, the window ------------------------------------------------

@pytest.mark.parametrize("marker", ["AWS_LAMBDA_FUNCTION_NAME", "VERCEL", "NETLIFY"])
def test_on_a_serverless_platform_without_a_store_it_is_500_not_configured(marker, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(marker, "1")
    effect = Effect()

    assert idempotency.configured_backend() is None  # what `python -m shared check` warns about
    with pytest.raises(ConfigError) as misconfigured:
        idempotency.once(context(), "send_email", effect, clock=Clock())

    assert misconfigured.value.code == "not_configured" and effect.count == 0
    assert "IDEMPOTENCY_TABLE" in misconfigured.value.log_detail
    assert not (tmp_path / ".local").exists()


def test_on_a_serverless_platform_a_sqlite_url_is_500(monkeypatch, tmp_path):
    monkeypatch.setenv("VERCEL", "1")
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/keys.sqlite3")

    with pytest.raises(ConfigError) as misconfigured:
        idempotency.configured_backend()
    assert "one instance's disk" in misconfigured.value.log_detail
    with pytest.raises(ConfigError):
        idempotency.once(context(), "send_email", Effect(), clock=Clock())


def test_on_a_serverless_platform_a_configured_store_is_used(dynamodb, monkeypatch):
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "eager_email")

    assert idempotency.configured_backend() == "DynamoDB table idempotency (us-east-1)"
    assert idempotency.once(context(), "send_email", Effect(), clock=Clock()).performed


@pytest.mark.parametrize(("max_age", "expected"), [
    (None, 7200 + 300 + 3600),
    ("86400", 86400 + 300 + 3600),  # a longer signature window: kept longer
    ("60", 7200 + 300 + 3600),  # a shorter one never shortens it below Cloudinary's two hours
])
def test_records_outlive_the_signature_window(max_age, expected, monkeypatch):
    if max_age:
        monkeypatch.setenv("WEBHOOK_MAX_AGE_SECONDS", max_age)
    assert idempotency.expires_after_seconds() == expected


def test_the_in_progress_period_is_configurable(tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/keys.sqlite3")
    monkeypatch.setenv("IDEMPOTENCY_IN_PROGRESS_SECONDS", "20")
    assert idempotency._store().claim(key(), "eager_email", T0, T0 + idempotency.in_progress_seconds()) is None

    assert idempotency.once(context(), "send_email", Effect(), clock=Clock(T0 + 21)).performed


def test_the_key_is_the_function_the_action_and_the_signed_bytes():
    body = b'{"notification_type":"eager"}'
    import hashlib

    assert idempotency.key_for("eager_email", "send_email", body) == \
        f"eager_email:send_email:{hashlib.sha256(body).hexdigest()}"
    assert idempotency.key_for("eager_email", "send_email", body + b" ") != \
        idempotency.key_for("eager_email", "send_email", body)


def test_importing_it_loads_no_store_library():
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); import shared.idempotency; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('sqlite3', '_sqlite3', 'psycopg2', 'boto3', 'botocore')))")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                               timeout=60, cwd="/", env={"PATH": os.environ.get("PATH", "")})
    assert completed.stdout.strip() == "[]"


# --- through the webhook wrapper: the answers Cloudinary gets ----------------------------------------

def _probe(clock: Clock, effect: Effect):
    @webhook(accepts={"eager"}, name="probe")
    def handle(notification, ctx):
        outcome = idempotency.once(ctx, "send_email", effect, clock=clock, recipients=2)
        return ctx.done(already_sent=outcome.repeated)

    return handle


def test_the_issue_five_sends_of_one_signed_request_send_one_email(signing_secret, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    effect, clock = Effect(), Clock()
    handle = _probe(clock, effect)
    request = signed_request(NOTIFICATION)

    responses = []
    for _ in range(5):
        responses.append(handle(request))
        clock.now += 60

    assert [response.status for response in responses] == [200] * 5
    assert effect.count == 1
    assert responses[0].body == {"status": "done", "actions": [{"action": "send_email", "recipients": 2}],
                                 "already_sent": False}
    assert responses[4].body == {"status": "done", "actions": [{"action": "send_email", "recipients": 2,
                                                                "repeated": True}], "already_sent": True}


def test_through_the_wrapper_the_failures_are_503_and_500(signing_secret, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    clock = Clock()
    request = signed_request(NOTIFICATION)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/keys.sqlite3")
    idempotency._store().claim(key(function="probe"), "probe", T0, T0 + IN_PROGRESS)  # in progress elsewhere

    duplicate = _probe(clock, Effect())(request)
    assert duplicate.status == 503
    assert duplicate.body == {"error": "duplicate_in_progress", "message": "The same notification is being "
                              "handled right now; a retry will find it done or do it."}

    monkeypatch.delenv("DATABASE_URL")
    monkeypatch.setenv("NETLIFY", "true")
    unconfigured = _probe(clock, Effect())(request)
    assert unconfigured.status == 500 and unconfigured.body["error"] == "not_configured"


def test_through_the_wrapper_a_dry_run_answers_the_plan(signing_secret, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DRY_RUN", "1")
    effect = Effect()

    response = _probe(Clock(), effect)(signed_request(NOTIFICATION))

    assert response.status == 200 and response.body["status"] == "dry_run" and effect.count == 0
    assert not (tmp_path / ".local").exists()
