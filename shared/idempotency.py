"""At most once per notification: side effects that Cloudinary's own state cannot reveal (an email, a chat
message) are guarded by an idempotency record, so a retry or a replay of the same signed notification does
not repeat them (DESIGN.md §8).

    outcome = idempotency.once(ctx, "send_email", lambda: send(...), recipients=2)
    outcome.result     # what ``perform`` returned, now or the first time (JSON round-tripped)
    outcome.repeated   # True: an earlier delivery of this notification did it; ``perform`` was not called

``once`` records the action as ``ctx.act`` does (a dry run records it and writes nothing, not even the
record) and, on a real run, in the manner of AWS Lambda Powertools' idempotency utility:

1. claims the notification's key with one conditional write: a record ``in_progress`` that expires after
   IDEMPOTENCY_IN_PROGRESS_SECONDS (longer than the function may run; a crashed instance's claim is then
   taken over by the next delivery);
2. a live record already there decides instead: ``completed`` -> ``perform`` is skipped and its stored result
   returned (the function answers 200); ``in_progress`` -> a 503 ``duplicate_in_progress``, since the first
   delivery may still fail and Cloudinary must then retry;
3. runs ``perform``; if it raises, the claim is deleted (only if still ours) so that a retry can do it;
4. marks the record ``completed`` with the result, kept past the signature window: WEBHOOK_MAX_AGE_SECONDS
   (at least the default two hours) + WEBHOOK_MAX_FUTURE_SECONDS + one hour. A replay that the signature
   check still accepts therefore always finds it.

The key is the function's name, the action's name and the SHA-256 of the signed body bytes: Cloudinary's
retries and any replay of a captured request share it; two different notifications never do.

Stores, chosen by configuration at request time:
    IDEMPOTENCY_TABLE=name      DynamoDB (botocore; AWS_REGION, AWS_ENDPOINT_URL_DYNAMODB, AWS_MAX_ATTEMPTS).
                                Partition key ``key`` (S); TTL attribute ``expires_at`` (epoch seconds).
    DATABASE_URL=postgresql://  PostgreSQL (psycopg2)  \\ table ``idempotency_keys``, created on first use
    DATABASE_URL=sqlite:///...  SQLite (stdlib)        / (key, status, expires_at, result, function)
    neither                     SQLite in .local/idempotency.sqlite3, except on a serverless platform, whose
                                disk is per instance and wiped: there it is 500 not configured.
A store that does not answer (down, timed out, throttled, locked) is a 503 (Cloudinary retries); a store that
is misconfigured (malformed URL, missing table, no access) is a 500 not configured. Every call is bounded by
IDEMPOTENCY_TIMEOUT_SECONDS.

Standard library only at module level: sqlite3, psycopg2 (``shared.postgres``) and botocore are imported at
first use.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import suppress

from shared import config, verify
from shared.errors import ConfigError, DependencyUnavailable

TYPE_CHECKING = False  # cold start: see docs/DESIGN.md §8
if TYPE_CHECKING:
    from typing import Any

    from shared.webhook import Context

# Settings a function using ``once`` reads (for ``python -m shared check``).
VARIABLES = ("IDEMPOTENCY_TABLE", "DATABASE_URL", "IDEMPOTENCY_TIMEOUT_SECONDS", "IDEMPOTENCY_IN_PROGRESS_SECONDS")

DEFAULT_SQLITE_PATH = os.path.join(".local", "idempotency.sqlite3")  # relative to the working folder
DEFAULT_TIMEOUT_SECONDS = 3.0  # one store call; two per notification stay well inside Cloudinary's 20 s
DEFAULT_IN_PROGRESS_SECONDS = 60  # > the function's timeout (15 s deployed): an older claim is a dead instance's
DEFAULT_MAX_ATTEMPTS = 2  # DynamoDB: one retry (botocore backs off before it)
# The DynamoDB operations the store calls (_DynamoStore), and DescribeEndpoints, which botocore's endpoint
# discovery would call: all the trimmed service model in DYNAMODB_DATA_PATH holds.
DYNAMODB_OPERATIONS = ("PutItem", "GetItem", "UpdateItem", "DeleteItem", "DescribeEndpoints")
# botocore data trimmed to what the store uses, found before botocore's own (written from it by
# ``python -m devtools.botocore_data``; a test fails when botocore's differs): the client's creation took 34 ms and
# ~10 MiB more with botocore's whole DynamoDB model and endpoints.json. Missing, botocore's own data is used.
DYNAMODB_DATA_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "botocore_data")
MARGIN_SECONDS = 60 * 60  # kept this long past the last moment a replay could still pass the signature check
IN_PROGRESS = "in_progress"
COMPLETED = "completed"
_CLAIM_ATTEMPTS = 3  # a conflicting record that vanishes before it is read (its owner failed): claim again
_CLEANUP_EVERY = 100  # SQL stores: delete expired rows after every this many claims (DynamoDB has its TTL)
_PG_LOCK = 0x69646D706F74  # "idmpot": one schema creator at a time across instances


class Outcome:
    """What ``once`` did. (A plain class, not a dataclass: importing ``dataclasses`` slows cold starts.)"""

    __slots__ = ("performed", "repeated", "result")

    def __init__(self) -> None:
        self.performed = False  # perform ran in this request (and returned)
        self.repeated = False  # an earlier delivery of this notification completed it; perform was not called
        self.result: Any = None  # perform's return value, or the one stored by the first delivery

    def __repr__(self) -> str:
        return f"Outcome(performed={self.performed}, repeated={self.repeated}, result={self.result!r})"


class Record:
    """A live record found where a claim was attempted."""

    __slots__ = ("expires_at", "result", "status")

    def __init__(self, status: str, expires_at: int, result: Any = None) -> None:
        self.status = status
        self.expires_at = expires_at
        self.result = result


# --- the entry point ---------------------------------------------------------------------------------

def once(ctx: Context, action: str, perform: Callable[[], Any], *, clock: Callable[[], float] | None = None,
         **details: Any) -> Outcome:
    """Do ``perform`` at most once per notification (see the module docstring); record ``action`` in
    ``ctx.actions`` as ``ctx.act`` does, with ``"repeated": True`` when an earlier delivery did it.

    Raises DependencyUnavailable (503: ``duplicate_in_progress``, or the store is unavailable), ConfigError
    (500: no usable store), or whatever ``perform`` raised."""
    outcome = Outcome()
    now_of = clock or time.time

    def guarded() -> Any:
        store = _store()
        key = key_for(ctx.function, action, ctx.request.body)
        now = int(now_of())
        claimed_until = now + in_progress_seconds()
        found = store.claim(key, ctx.function, now, claimed_until)
        if found is not None:
            if found.status == COMPLETED:
                outcome.repeated = True
                outcome.result = found.result
                ctx.note(idempotency="repeat")
                return found.result
            raise DependencyUnavailable(
                "The same notification is being handled right now; a retry will find it done or do it.",
                code="duplicate_in_progress", log_detail=f"{action}: claimed until {found.expires_at}")
        try:
            result = perform()
        except BaseException:
            try:
                store.release(key, claimed_until)
            except (DependencyUnavailable, ConfigError) as error:
                # The claim stays until it expires: a retry meanwhile is told 503 duplicate_in_progress.
                ctx.note(idempotency="claim_not_released", idempotency_detail=error.log_detail)
            raise
        outcome.performed = True
        outcome.result = _json_round_trip(result)
        try:
            store.complete(key, ctx.function, _dump(result), int(now_of()) + expires_after_seconds())
        except (DependencyUnavailable, ConfigError) as error:
            # Done but not recorded: answering 200 ends Cloudinary's retries; a 503 would invite a retry that
            # repeats the side effect once the claim expires. Say so in the request's log line.
            ctx.note(idempotency="done_not_recorded", idempotency_detail=error.log_detail)
        else:
            ctx.note(idempotency="done")
        return outcome.result

    ctx.act(action, guarded, **details)
    if outcome.repeated and ctx.actions:
        ctx.actions[-1]["repeated"] = True
    return outcome


def key_for(function: str, action: str, body: bytes) -> str:
    """The record's key: ``function:action:sha256(signed body bytes)``."""
    return f"{function}:{action}:{hashlib.sha256(body).hexdigest()}"


def expires_after_seconds(environ: Mapping[str, str] | None = None) -> int:
    """How long a completed record is kept: past the last moment a replay could pass the signature check."""
    max_age = config.integer("WEBHOOK_MAX_AGE_SECONDS", verify.DEFAULT_MAX_AGE_SECONDS, environ)
    max_future = config.integer("WEBHOOK_MAX_FUTURE_SECONDS", verify.DEFAULT_MAX_FUTURE_SECONDS, environ)
    return max(max_age, verify.DEFAULT_MAX_AGE_SECONDS) + max_future + MARGIN_SECONDS


def in_progress_seconds(environ: Mapping[str, str] | None = None) -> int:
    return config.integer("IDEMPOTENCY_IN_PROGRESS_SECONDS", DEFAULT_IN_PROGRESS_SECONDS, environ, minimum=1)


def configured_backend(environ: Mapping[str, str] | None = None) -> str | None:
    """The store a request would use, in words without secrets (for ``python -m shared check``); None when
    no store is configured on a serverless platform (requests that need one answer 500 not configured).
    Raises ConfigError (its ``log_detail`` says why) when a store is configured but unusable."""
    env = environ if environ is not None else os.environ
    try:
        kind, target = _choose(env)
    except _NoStore:
        return None
    if kind == "dynamodb":
        region = _region(env) or "no AWS_REGION"
        return f"DynamoDB table {target} ({region})"
    if kind == "postgresql":
        return "PostgreSQL (DATABASE_URL)"
    if env.get("DATABASE_URL", "").strip():
        return f"SQLite file {target} (DATABASE_URL)"
    return f"SQLite file {target} (local default; set DATABASE_URL or IDEMPOTENCY_TABLE in production)"


def reset() -> None:
    """Close every store connection and forget which schemas exist (tests; the CLI before it exits)."""
    with _stores_lock:
        stores = list(_stores.values())
        _stores.clear()
    for opened in stores:
        opened.close()


# --- choosing the store ------------------------------------------------------------------------------

class _NoStore(ConfigError):
    """No store configured on a serverless platform."""


def _choose(env: Mapping[str, str]) -> tuple[str, str]:
    """("dynamodb", table) | ("postgresql", url) | ("sqlite", path)."""
    table = env.get("IDEMPOTENCY_TABLE", "").strip()
    if table:
        return "dynamodb", table
    platform = config.serverless_platform(env)
    url = env.get("DATABASE_URL", "").strip()
    if url:
        kind, target = _parse_url(url)
        if kind == "sqlite" and platform:
            raise ConfigError(f"idempotency: DATABASE_URL names a SQLite file, which on {platform} lives on one "
                              "instance's disk and is wiped; set DATABASE_URL=postgresql://... or "
                              "IDEMPOTENCY_TABLE")
        return kind, target
    if platform:
        raise _NoStore(f"idempotency: no store on {platform} (its disk is read-only and wiped between instances): "
                       "set IDEMPOTENCY_TABLE (DynamoDB) or DATABASE_URL (postgresql://...)")
    return "sqlite", DEFAULT_SQLITE_PATH


def _parse_url(url: str) -> tuple[str, str]:
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql", url
    if url.startswith("sqlite:///") and url not in ("sqlite:///", "sqlite:///:memory:"):
        from urllib.parse import unquote  # only for a sqlite URL, not on every cold start

        path = url[len("sqlite:///"):].split("?", 1)[0]
        return "sqlite", unquote(path)  # sqlite:////abs/path keeps its leading slash
    if url in ("sqlite://", "sqlite:///", "sqlite:///:memory:"):
        raise ConfigError("idempotency: DATABASE_URL must name a file: an in-memory SQLite database forgets "
                          "everything when the instance stops")
    raise ConfigError("idempotency: DATABASE_URL must be sqlite:///path/to/file.sqlite3 or postgresql://...")


def _region(env: Mapping[str, str]) -> str | None:
    return env.get("AWS_REGION", "").strip() or env.get("AWS_DEFAULT_REGION", "").strip() or None


_stores: dict[tuple[Any, ...], Any] = {}
_stores_lock = threading.Lock()


def _store() -> _SQLStore | _DynamoStore:
    """The store for the current settings, created once per warm instance and setting."""
    env = os.environ
    kind, target = _choose(env)
    timeout = config.number("IDEMPOTENCY_TIMEOUT_SECONDS", DEFAULT_TIMEOUT_SECONDS, env)
    if timeout <= 0:
        raise ConfigError("IDEMPOTENCY_TIMEOUT_SECONDS must be more than 0")
    if kind == "dynamodb":
        region = _region(env)
        if not region:
            raise ConfigError("idempotency: AWS_REGION is not set (Lambda sets it; elsewhere set it)")
        endpoint = env.get("AWS_ENDPOINT_URL_DYNAMODB", "").strip() or None
        attempts = config.integer("AWS_MAX_ATTEMPTS", DEFAULT_MAX_ATTEMPTS, env, minimum=1)
        key: tuple[Any, ...] = (kind, target, region, endpoint, timeout, attempts)
    else:
        key = (kind, target, timeout)
    with _stores_lock:
        found = _stores.get(key)
        if found is None:
            if kind == "dynamodb":
                found = _DynamoStore(target, region, endpoint, timeout, attempts)
            else:
                found = _SQLStore(kind, target, timeout)
            _stores[key] = found
    return found


def _dump(result: Any) -> str:
    # default=str: the side effect happened; an odd return value must not stop it being recorded
    return json.dumps(result, default=str, ensure_ascii=False)


def _json_round_trip(result: Any) -> Any:
    """What a repeat will get back: the same result whether performed now or found stored."""
    return _load(_dump(result))


def _load(text: Any) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return None


# --- SQL stores: SQLite (stdlib) and PostgreSQL (shared.postgres) -------------------------------------

# "key" is quoted: a keyword in SQLite and in SQL generally. (The table's name is written out: no SQL is built
# from values, only from these constants.)
_CLAIM_SQL = ('INSERT INTO idempotency_keys ("key", status, expires_at, result, function) VALUES (?, ?, ?, NULL, ?) '
              'ON CONFLICT ("key") DO UPDATE SET status = excluded.status, expires_at = excluded.expires_at, '
              "result = NULL, function = excluded.function WHERE idempotency_keys.expires_at < ? "
              'RETURNING "key"')
_COMPLETE_SQL = ('INSERT INTO idempotency_keys ("key", status, expires_at, result, function) '
                 "VALUES (?, ?, ?, {result}, ?) "
                 'ON CONFLICT ("key") DO UPDATE SET status = excluded.status, expires_at = excluded.expires_at, '
                 "result = excluded.result, function = excluded.function")
_READ_SQL = {"sqlite": 'SELECT status, expires_at, result FROM idempotency_keys WHERE "key" = ?',
             "postgresql": 'SELECT status, expires_at, CAST(result AS TEXT) FROM idempotency_keys WHERE "key" = ?'}
_RELEASE_SQL = 'DELETE FROM idempotency_keys WHERE "key" = ? AND status = ? AND expires_at = ?'
_CLEANUP_SQL = "DELETE FROM idempotency_keys WHERE expires_at < ?"
_SCHEMA = {
    "sqlite": ['CREATE TABLE IF NOT EXISTS idempotency_keys ("key" TEXT PRIMARY KEY, status TEXT NOT NULL, '
               "expires_at INTEGER NOT NULL, result TEXT, function TEXT NOT NULL)",
               "CREATE INDEX IF NOT EXISTS idempotency_keys_expires_at ON idempotency_keys (expires_at)"],
    "postgresql": ['CREATE TABLE IF NOT EXISTS idempotency_keys ("key" TEXT PRIMARY KEY, status TEXT NOT NULL, '
                   "expires_at BIGINT NOT NULL, result JSONB, function TEXT NOT NULL)",
                   "CREATE INDEX IF NOT EXISTS idempotency_keys_expires_at ON idempotency_keys (expires_at)"],
}
_MAX_IDLE = 4


class _SQLStore:
    """One database URL: a few idle connections shared by threads, one short transaction per call."""

    def __init__(self, dialect: str, target: str, timeout: float) -> None:
        self.dialect = dialect
        self.target = target
        self.timeout = timeout
        self._idle: list[Any] = []
        self._lock = threading.Lock()
        self._schema_ready = False
        self._claims = 0

    # --- the three operations ---

    def claim(self, key: str, function: str, now: int, claimed_until: int) -> Record | None:
        """None when claimed; else the live record that holds the key."""
        for _ in range(_CLAIM_ATTEMPTS):
            def attempt(connection: Any) -> Record | str | None:
                claimed = self._execute(connection, _CLAIM_SQL,
                                        (key, IN_PROGRESS, claimed_until, function, now)).fetchone()
                if claimed is not None:
                    return None
                row = self._execute(connection, _READ_SQL[self.dialect], (key,)).fetchone()
                if row is None or int(row[1]) < now:
                    return "again"  # its owner released it, or it expired, in between: claim again
                return Record(row[0], int(row[1]), _load(row[2]) if row[0] == COMPLETED else None)

            found = self._run(attempt)
            if found != "again":
                self._claims += 1
                if self._claims % _CLEANUP_EVERY == 0:
                    with suppress(DependencyUnavailable):  # housekeeping; never the request's failure
                        self._run(lambda c: self._execute(c, _CLEANUP_SQL, (now,)))
                return found  # type: ignore[return-value]
        return Record(IN_PROGRESS, claimed_until)  # contended without end: answer as a duplicate (503)

    def complete(self, key: str, function: str, result: str, expires_at: int) -> None:
        # An upsert: the claim may have expired and been cleaned up while ``perform`` ran.
        value = "CAST(? AS JSONB)" if self.dialect == "postgresql" else "?"
        self._run(lambda c: self._execute(c, _COMPLETE_SQL.format(result=value),
                                          (key, COMPLETED, expires_at, result, function)))

    def release(self, key: str, claimed_until: int) -> None:
        """Delete our claim. ``expires_at`` identifies it: a later claim (a takeover) expires later."""
        self._run(lambda c: self._execute(c, _RELEASE_SQL, (key, IN_PROGRESS, claimed_until)))

    # --- plumbing ---

    def _errors(self) -> tuple[type[BaseException], ...]:
        if self.dialect == "sqlite":
            import sqlite3

            return (sqlite3.Error,)
        from shared import postgres

        return postgres.errors()

    def _execute(self, connection: Any, statement: str, params: tuple[Any, ...] = ()) -> Any:
        if self.dialect == "postgresql":
            statement = statement.replace("?", "%s")
        return connection.execute(statement, params)

    def _run(self, work: Callable[[Any], Any]) -> Any:
        """``work(connection)`` in one transaction; a database error is a 503 after rollback."""
        errors = self._errors()
        connection = self._take_idle()
        reused = connection is not None
        try:
            for attempt in (1, 2):
                try:
                    if connection is None:
                        connection = self._connect()
                    self._begin(connection)
                    break
                except errors:
                    # A kept connection may have been closed by the server meanwhile: one fresh connection,
                    # before anything of this call was sent.
                    self._discard(connection)
                    connection = None
                    if attempt == 2 or not reused:
                        raise
            try:
                value = work(connection)
                connection.execute("COMMIT")
            except BaseException:
                with suppress(Exception):
                    connection.execute("ROLLBACK")
                raise
        except errors as error:
            self._discard(connection)
            self._schema_ready = False  # a dropped table is recreated by the retry
            raise DependencyUnavailable("The idempotency store is unavailable; a retry will finish the work.",
                                        code="idempotency_store_unavailable",
                                        log_detail=_redact(f"{type(error).__name__}: {error}", self.target)) \
                from error
        except BaseException:
            self._discard(connection)
            raise
        self._give_back(connection)
        return value

    def _connect(self) -> Any:
        if self.dialect == "sqlite":
            import sqlite3

            self._check_sqlite_folder()
            # check_same_thread=False: an idle connection may serve the next call on another thread; it is only
            # ever used by one thread at a time (taken from and given back to the idle list).
            connection = sqlite3.connect(self.target, timeout=self.timeout, isolation_level=None,
                                         check_same_thread=False)
            from shared import sqlite

            sqlite.use_wal(connection, self.timeout)
        else:
            from shared import postgres

            problem = postgres.check_url(self.target)
            if problem:  # a malformed URL: no retry can fix it
                raise ConfigError(f"idempotency: {problem}")
            connection = postgres.connect(self.target, timeout=self.timeout, dict_rows=False,
                                          application_name="cloudinary-webhooks-idempotency")
        if not self._schema_ready:
            self._create_schema(connection)
        return connection

    def _create_schema(self, connection: Any) -> None:
        self._begin(connection)
        try:
            if self.dialect == "postgresql":
                connection.execute("SELECT pg_advisory_xact_lock(%s)", (_PG_LOCK,))
            for statement in _SCHEMA[self.dialect]:
                connection.execute(statement)
            connection.execute("COMMIT")
        except BaseException:
            with suppress(Exception):
                connection.execute("ROLLBACK")
            raise
        self._schema_ready = True

    def _begin(self, connection: Any) -> None:
        if self.dialect == "sqlite":
            connection.execute("BEGIN IMMEDIATE")  # the write lock now: a claim reads after it writes
        else:
            # One round trip, and sent right away: a kept connection the server closed meanwhile shows here,
            # before anything of the call was sent (``_run`` then opens a fresh one).
            connection.execute(f"BEGIN; SET LOCAL statement_timeout = {max(1, int(self.timeout * 1000))}")

    def _check_sqlite_folder(self) -> None:
        """The file's folder must exist and be writable: no retry can fix either (500, not 503). Only the
        project's own state folder, ``.local/``, is created: a mistyped path must not silently start an empty
        store somewhere."""
        folder = os.path.dirname(os.path.abspath(self.target))
        if os.path.basename(folder) == ".local" and not os.path.exists(folder):
            with suppress(OSError):
                os.makedirs(folder, exist_ok=True)
        if not os.path.isdir(folder):
            raise ConfigError(f"idempotency: the SQLite file's folder {folder} does not exist; create it or set "
                              "DATABASE_URL")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise ConfigError(f"idempotency: this process cannot write the SQLite file's folder {folder} "
                              "(a read-only deployment? set DATABASE_URL=postgresql://... or IDEMPOTENCY_TABLE)")

    def _take_idle(self) -> Any:
        with self._lock:
            return self._idle.pop() if self._idle else None

    def _give_back(self, connection: Any) -> None:
        with self._lock:
            if len(self._idle) < _MAX_IDLE:
                self._idle.append(connection)
                return
        with suppress(Exception):
            connection.close()

    def _discard(self, connection: Any) -> None:
        if connection is not None:
            with suppress(Exception):  # closing a broken connection may fail; it is dropped anyway
                connection.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            self._discard(connection)


def _redact(text: str, url: str) -> str:
    """An error message for the log, without the URL's password."""
    import re

    rest = url.partition("://")[2]
    userinfo = rest.split("/", 1)[0].rpartition("@")[0]
    password = userinfo.partition(":")[2]
    if password:
        from urllib.parse import unquote

        text = text.replace(password, "***").replace(unquote(password), "***")
    return re.sub(r"(postgres(?:ql)?://[^:/@\s]*):[^@\s]*@", r"\1:***@", text)[:300]


# --- DynamoDB (botocore, low-level client) ----------------------------------------------------------

# Error codes a retry can fix; any other refusal (missing table, no permission, wrong key schema) is a
# deployment error that no retry can fix.
_DYNAMODB_RETRYABLE = frozenset({"ProvisionedThroughputExceededException", "ThrottlingException",
                                 "RequestLimitExceeded", "InternalServerError", "ServiceUnavailable",
                                 "TransactionConflictException", "LimitExceededException"})


class _DynamoStore:
    """A DynamoDB table: conditional PutItem to claim, UpdateItem to complete, conditional DeleteItem to release."""

    def __init__(self, table: str, region: str, endpoint: str | None, timeout: float, attempts: int) -> None:
        self.table = table
        self.region = region
        self.endpoint = endpoint
        self.timeout = timeout
        self.attempts = attempts
        self._client: Any = None
        self._lock = threading.Lock()

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._create()
            return self._client

    def _create(self) -> Any:
        """The DynamoDB client (``shared.aws``: botocore without boto3, built for good). On Lambda, where the
        template's table makes this the store, importing boto3 and creating its client with botocore's whole data
        took 166-180 ms of a cold start here. The trimmed data (DYNAMODB_DATA_PATH) takes ~20 ms and ~10 MiB off
        the creation; botocore's own import is most of what is left."""
        from shared import aws

        return aws.client("dynamodb", region=self.region, endpoint=self.endpoint, data_path=DYNAMODB_DATA_PATH,
                          connect_timeout=min(self.timeout, 2.0), read_timeout=self.timeout,
                          retries={"mode": "standard", "total_max_attempts": self.attempts})

    def claim(self, key: str, function: str, now: int, claimed_until: int) -> Record | None:
        for _ in range(_CLAIM_ATTEMPTS):
            try:
                with self._calling("PutItem"):
                    self.client().put_item(
                        TableName=self.table,
                        Item={"key": {"S": key}, "status": {"S": IN_PROGRESS},
                              "expires_at": {"N": str(claimed_until)}, "function": {"S": function}},
                        # Absent, or expired (DynamoDB's TTL deletes expired items late, up to days later).
                        ConditionExpression="attribute_not_exists(#key) OR #expires_at < :now",
                        ExpressionAttributeNames={"#key": "key", "#expires_at": "expires_at"},
                        ExpressionAttributeValues={":now": {"N": str(now)}},
                        ReturnValuesOnConditionCheckFailure="ALL_OLD",
                    )
                return None
            except _ConditionFailed as failed:
                item = failed.item
            if item is None:  # a store that does not return the old item: read it
                with self._calling("GetItem"):
                    item = self.client().get_item(TableName=self.table, Key={"key": {"S": key}},
                                                  ConsistentRead=True).get("Item")
            if item is None:
                continue  # released in between: claim again
            status = item.get("status", {}).get("S", "")
            try:
                expires_at = int(item.get("expires_at", {}).get("N", "0"))
            except ValueError:
                expires_at = 0
            if expires_at < now:
                continue  # expired in between: claim again
            result = _load(item.get("result", {}).get("S")) if status == COMPLETED else None
            return Record(status, expires_at, result)
        return Record(IN_PROGRESS, claimed_until)

    def complete(self, key: str, function: str, result: str, expires_at: int) -> None:
        with self._calling("UpdateItem"):
            self.client().update_item(
                TableName=self.table,
                Key={"key": {"S": key}},
                UpdateExpression="SET #status = :completed, #expires_at = :expires_at, #result = :result, "
                                 "#function = :function",
                ExpressionAttributeNames={"#status": "status", "#expires_at": "expires_at", "#result": "result",
                                          "#function": "function"},
                ExpressionAttributeValues={":completed": {"S": COMPLETED}, ":expires_at": {"N": str(expires_at)},
                                           ":result": {"S": result}, ":function": {"S": function}},
            )

    def release(self, key: str, claimed_until: int) -> None:
        with suppress(_ConditionFailed), self._calling("DeleteItem"):  # no longer ours: a takeover's claim
            self.client().delete_item(
                TableName=self.table,
                Key={"key": {"S": key}},
                ConditionExpression="#status = :in_progress AND #expires_at = :claimed_until",
                ExpressionAttributeNames={"#status": "status", "#expires_at": "expires_at"},
                ExpressionAttributeValues={":in_progress": {"S": IN_PROGRESS},
                                           ":claimed_until": {"N": str(claimed_until)}},
            )

    def _calling(self, operation: str) -> _Calling:
        return _Calling(self.table, operation)

    def close(self) -> None:
        with self._lock:
            self._client = None


class _ConditionFailed(Exception):
    def __init__(self, item: dict[str, Any] | None) -> None:
        super().__init__("ConditionalCheckFailedException")
        self.item = item


class _Calling:
    """Translate botocore's exceptions raised inside the block into the statuses of DESIGN.md §4."""

    def __init__(self, table: str, operation: str) -> None:
        self.table = table
        self.operation = operation

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, error: Any, traceback: Any) -> bool:
        if error is None or not isinstance(error, Exception):
            return False
        from botocore import exceptions

        what = f"DynamoDB {self.operation} on {self.table}"
        if isinstance(error, exceptions.ClientError):
            code = str(error.response.get("Error", {}).get("Code", ""))
            status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            if code == "ConditionalCheckFailedException":
                raise _ConditionFailed(error.response.get("Item")) from None
            if code in _DYNAMODB_RETRYABLE or status >= 500:
                raise DependencyUnavailable("The idempotency store is unavailable; a retry will finish the work.",
                                            code="idempotency_store_unavailable",
                                            log_detail=f"{what}: {code} {status}") from error
            message = str(error.response.get("Error", {}).get("Message", ""))[:200]
            raise ConfigError(f"idempotency: {what} refused: {code} {message}") from error
        if isinstance(error, exceptions.NoCredentialsError | exceptions.PartialCredentialsError
                      | exceptions.NoRegionError):
            raise ConfigError(f"idempotency: AWS credentials or region missing ({type(error).__name__})") \
                from error
        if isinstance(error, exceptions.ParamValidationError):
            return False  # a bug here, not the store: 500 with the traceback in the log
        if isinstance(error, exceptions.BotoCoreError):
            # Timeouts, refused or reset connections, endpoint unreachable: a retry can fix them.
            raise DependencyUnavailable("The idempotency store did not answer; a retry will finish the work.",
                                        code="idempotency_store_unavailable",
                                        log_detail=f"{what}: {type(error).__name__}") from error
        return False
