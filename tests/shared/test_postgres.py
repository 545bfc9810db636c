"""shared/postgres.py against the throwaway PostgreSQL of `make test`: deferred statements, binding before
sending, error classification on the server's real answers, URL checks."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from shared import postgres
from tests.functions.asset_sync_support import postgres_url
from tests.helpers import at_once_in_fresh_processes


@pytest.fixture
def connection() -> Iterator[postgres.Connection]:
    opened = postgres.connect(postgres_url(), timeout=5, application_name="tests-shared-postgres")
    opened.execute("CREATE TEMP TABLE notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL CHECK (text <> 'no'))")
    try:
        yield opened
    finally:
        opened.close()


def test_execute_returns_dict_rows_or_tuples(connection):
    connection.execute("INSERT INTO notes VALUES (%s, %s)", (1, "a 100% note"))
    assert connection.execute("SELECT id, text FROM notes").fetchall() == [{"id": 1, "text": "a 100% note"}]
    plain = postgres.connect(postgres_url(), timeout=5, application_name="tests", dict_rows=False)
    try:
        assert plain.execute("SELECT 41 + %s AS answer", (1,)).fetchone() == (42,)
    finally:
        plain.close()


def test_deferred_statements_go_out_with_the_next_one_in_the_same_query(connection):
    connection.defer("BEGIN")
    connection.defer("SET LOCAL application_name = 'deferred'")
    # Nothing is sent yet: the server still sees no open transaction and the old name.
    assert connection.raw.get_transaction_status() == 0  # TRANSACTION_STATUS_IDLE
    row = connection.execute("SELECT current_setting('application_name') AS name").fetchone()
    assert row == {"name": "deferred"}  # BEGIN and SET LOCAL ran first, in that order, in this query
    assert connection.raw.get_transaction_status() == 2  # INTRANS: the BEGIN opened a block
    connection.execute("COMMIT")
    assert connection.execute("SELECT current_setting('application_name') AS name").fetchone() == \
        {"name": "tests-shared-postgres"}  # SET LOCAL ended with the transaction


def test_a_savepoint_deferred_in_front_of_a_failing_statement_still_holds(connection):
    """The statement carrying the deferred SAVEPOINT fails on the server: the SAVEPOINT ran, and a ROLLBACK TO it
    (not resent) brings the transaction back."""
    connection.execute("BEGIN")
    connection.execute("INSERT INTO notes VALUES (1, 'kept')")
    connection.defer("SAVEPOINT apply")
    with pytest.raises(postgres.driver().IntegrityError) as refused:
        connection.execute("INSERT INTO notes VALUES (2, 'no')")
    assert postgres.sqlstate(refused.value) == "23514" and not postgres.retryable(refused.value)
    connection.execute("ROLLBACK TO SAVEPOINT apply")
    connection.execute("INSERT INTO notes VALUES (3, 'after')")
    connection.execute("COMMIT")
    assert [row["id"] for row in connection.execute("SELECT id FROM notes ORDER BY id")] == [1, 3]


def test_a_value_the_driver_cannot_send_sends_nothing_and_keeps_the_deferred_statements(connection):
    connection.execute("BEGIN")
    connection.defer("SAVEPOINT apply")
    with pytest.raises(ValueError, match="NUL"):
        connection.execute("INSERT INTO notes VALUES (%s, %s)", (1, "a\x00b"))
    # The SAVEPOINT is still to be sent, and goes with the ROLLBACK TO it: the transaction carries on.
    connection.execute("ROLLBACK TO SAVEPOINT apply")
    connection.execute("INSERT INTO notes VALUES (2, 'fine')")
    connection.execute("COMMIT")
    assert connection.execute("SELECT id FROM notes").fetchall() == [{"id": 2}]


def test_execute_many_writes_every_row_after_the_deferred_statements(connection):
    connection.defer("BEGIN")
    connection.execute_many("INSERT INTO notes VALUES (%s, %s)", [(number, f"n{number}") for number in range(250)])
    assert connection.raw.get_transaction_status() == 2  # the deferred BEGIN went first
    connection.execute("ROLLBACK")
    assert connection.execute("SELECT count(*) AS n FROM notes").fetchone() == {"n": 0}  # all inside it
    connection.execute_many("INSERT INTO notes VALUES (%s, %s)", [(number, f"n{number}") for number in range(250)])
    assert connection.execute("SELECT count(*) AS n, max(id) AS top FROM notes").fetchone() == {"n": 250, "top": 249}


def test_the_servers_answers_are_classified_by_their_sqlstate(connection):
    connection.execute("BEGIN; SET LOCAL statement_timeout = 50")
    with pytest.raises(postgres.errors()) as timed_out:
        connection.execute("SELECT pg_sleep(5)")
    assert postgres.sqlstate(timed_out.value) == "57014" and postgres.retryable(timed_out.value)
    connection.execute("ROLLBACK")
    with pytest.raises(postgres.errors()) as missing:
        connection.execute("SELECT * FROM no_such_table")
    assert postgres.sqlstate(missing.value) == postgres.UNDEFINED_TABLE and not postgres.retryable(missing.value)
    assert not postgres.retryable(ValueError("not a database error"))


def test_a_connection_lost_or_refused_is_retryable(connection):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(postgres.errors()) as refused:
        postgres.connect(f"postgresql://user:s3cret@127.0.0.1:{port}/none", timeout=1, application_name="tests")
    assert postgres.sqlstate(refused.value) is None and postgres.retryable(refused.value)
    killer = postgres.connect(postgres_url(), timeout=5, application_name="tests-killer")
    try:
        killer.execute("SELECT pg_terminate_backend(%s)", (connection.raw.get_backend_pid(),))
    finally:
        killer.close()
    with pytest.raises(postgres.errors()) as lost:
        connection.execute("SELECT 1")
    assert postgres.sqlstate(lost.value) is None and postgres.retryable(lost.value)


@pytest.mark.parametrize(("url", "problem"), [
    ("postgresql://user:pw@host:5432/db?sslmode=require", None),
    ("postgresql://user:pw@host/db", None),
    ("postgresql://user:s3cret@host:notaport/db", "DATABASE_URL's port is not a number"),
    ("postgresql://user:s3cret@host:5432/db?no_such_option=1", "DATABASE_URL is malformed"),
])
def test_urls_are_checked_before_connecting_without_naming_the_password(url, problem):
    assert postgres.check_url(url) == problem


def test_threads_that_need_the_driver_at_once_on_a_cold_start_all_get_it_whole():
    """As for the Cloudinary SDK: a thread must wait for another one's import of the driver, never take the
    half-built module from sys.modules."""
    found = at_once_in_fresh_processes(
        "from shared import postgres",
        "(postgres.driver().extras.RealDictCursor.__name__, postgres.driver().extensions.parse_dsn.__name__)",
        processes=8)  # the driver imports fast: more cold starts, so the race shows every time
    assert found == [["('RealDictCursor', 'parse_dsn')"]] * 8
