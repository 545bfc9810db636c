"""``python -m shared triggers plan|apply|test`` against a stand-in of Cloudinary's triggers API (the real SDK, over
loopback HTTP through ``upload_prefix``): what is planned, exactly what goes on the wire, idempotence, triggers that
are not ours, the rate-limit budget, 420/429/5xx, and ``test_trigger`` with the functions' samples."""

from __future__ import annotations

import base64
import io
import json
import sys

import pytest

from devtools import cli, deploy, triggers
from tests.devtools.triggers_api import TriggersAPI
from tests.helpers import API_KEY, CLOUD_NAME, SECRET

BASE = "https://hooks.example.com/api"
DEPLOYED_BASE = "https://deployed.example.com"
PATH = f"/v1_1/{CLOUD_NAME}/triggers"
AUTH = "Basic " + base64.b64encode(f"{API_KEY}:{SECRET}".encode()).decode()
DEPLOY_TOML = f"""
[netlify]
base_url = "{DEPLOYED_BASE}"
[netlify.targets]
face_tagging = "https://abc123.lambda-url.us-east-1.on.aws/"
[functions.hello_tag]
url = "https://hello.example.net/tag"
[functions.eager_email]
delivery = "poll"
"""


def wanted(name: str) -> list[str]:
    accepts = cli.load_webhook(name).accepts
    return ["all"] if "*" in accepts else sorted(accepts)


ALL_PAIRS = [(name, event_type) for name in cli.function_names() for event_type in wanted(name)]


@pytest.fixture(autouse=True)
def deploy_toml(tmp_path, monkeypatch):
    """deploy.toml as these tests write it (the project's own changes with its deployments)."""
    path = tmp_path / "deploy.toml"
    path.write_text(DEPLOY_TOML)
    monkeypatch.setattr(deploy, "DEPLOY_CONFIG", path)
    return path


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr(triggers, "sleep", slept.append)
    return slept


@pytest.fixture
def api(monkeypatch):
    fake = TriggersAPI(CLOUD_NAME, API_KEY, SECRET)
    prefix = fake.start()
    monkeypatch.setenv("CLOUDINARY_URL", f"cloudinary://{API_KEY}:{SECRET}@{CLOUD_NAME}?upload_prefix={prefix}")
    yield fake
    fake.stop()


def run(capsys, *argv: str, stdin: str | None = None, monkeypatch=None) -> tuple[int, str, str]:
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    status = cli.main(["triggers", *argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def plan_lines(out: str, kind: str) -> list[str]:
    return [line.strip() for line in out.splitlines() if line.startswith(f"  {kind} ")]


# --- plan -----------------------------------------------------------------------------------------------

def test_plan_on_an_empty_account_creates_one_trigger_per_type_each_function_accepts(api, capsys):
    status, out, _ = run(capsys, "plan", "--poll")

    assert status == 0
    created = plan_lines(out, "create")
    assert len(created) == len(ALL_PAIRS)
    for name, event_type in ALL_PAIRS:
        assert f"create   {event_type:<29} {name:<20} poll://{name} (poll)" in created
    # accepts "*": Cloudinary's "all"
    assert "create   all                           asset_sync           poll://asset_sync (poll)" in out
    assert [(sent.method, sent.path, sent.auth) for sent in api.sent] == [("GET", PATH, AUTH)]  # reads only


def test_plan_shows_what_it_leaves_changes_and_never_touches(api, capsys):
    kept = api.add(f"{BASE}/hello_tag", "upload")
    moved = api.add(f"{DEPLOYED_BASE}/api/eager_email", "eager")  # ours (deploy.toml's base URL): same kind
    api.add("https://someone-else.example.org/hook", "upload")
    api.add("poll://another_app", "upload", "poll")

    status, out, _ = run(capsys, "plan", "hello_tag", "eager_email", "--base-url", BASE + "/")

    assert status == 0
    assert f"  leave    upload                        hello_tag            {BASE}/hello_tag\n" in out
    assert (f"  change   eager                         eager_email          {DEPLOYED_BASE}/api/eager_email -> "
            f"{BASE}/eager_email\n") in out
    assert ("  foreign  upload                        -                    https://someone-else.example.org/hook   "
            "(not ours: never touched)") in out
    assert "  foreign  upload                        -                    poll://another_app   (not ours" in out
    assert "Plan: 0 to create, 1 to change, 0 extra kept, 1 unchanged, 2 not ours." in out
    assert {kept, moved} <= set(api.triggers) and api.writes == []


def test_plan_prints_what_the_account_holds_escaped(api, capsys):
    api.add("https://evil.example.org/\x1b[2J\u202ehook\nforged", "upload\r")

    status, out, _ = run(capsys, "plan", "--poll")

    assert status == 0
    assert "\x1b" not in out and "\u202e" not in out and "\r" not in out
    assert "https://evil.example.org/\\u001b[2J\\u202ehook\\nforged" in out


def test_the_deployed_addresses_come_from_deploy_toml(api, capsys):
    status, out, _ = run(capsys, "plan", "--deployed")

    assert status == 0
    assert "upload                        hello_tag            https://hello.example.net/tag\n" in out  # its url
    assert "eager                         eager_email          poll://eager_email (poll)\n" in out  # delivery poll
    assert "face_tagging         https://abc123.lambda-url.us-east-1.on.aws/\n" in out  # its Netlify target
    assert f"create   all                           asset_sync           {DEPLOYED_BASE}/api/asset_sync\n" in out


def test_deploy_tomls_default_delivery_poll_puts_every_function_on_its_channel(api, capsys, deploy_toml):
    deploy_toml.write_text('[defaults]\ndelivery = "poll"\n[functions.hello_tag]\ndelivery = "webhook"\n'
                           'url = "https://hello.example.net/tag"\n')

    status, out, _ = run(capsys, "plan", "--deployed", "hello_tag", "eager_email")

    assert status == 0
    assert "eager                         eager_email          poll://eager_email (poll)\n" in out
    assert "upload                        hello_tag            https://hello.example.net/tag\n" in out


def test_a_function_deploy_toml_gives_no_address_is_one_line(api, capsys, deploy_toml):
    deploy_toml.write_text("[netlify]\n")

    status, _, err = run(capsys, "plan", "--deployed", "asset_sync")

    assert status == 2 and err.count("\n") == 1 and "deploy/deploy.toml gives asset_sync no address" in err
    assert api.sent == []


@pytest.mark.parametrize("argv", [["plan"], ["plan", "--poll", "--base-url", BASE], ["apply", "--poll", "nope"],
                                  ["plan", "--base-url", "ftp://x.example.com"], ["test"],
                                  ["plan", "--poll", "--reserve", "-1"]])
def test_usage_errors_are_one_line(api, capsys, argv):
    with pytest.raises(SystemExit) as stopped:
        status = cli.main(["triggers", *argv])
        raise SystemExit(status)
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") <= 1 and "Traceback" not in err
    assert api.sent == []


# --- apply ------------------------------------------------------------------------------------------------

def test_apply_creates_exactly_the_missing_triggers_then_a_second_apply_writes_nothing(api, capsys):
    api.add(f"{BASE}/hello_tag", "upload")

    status, out, _ = run(capsys, "apply", "--base-url", BASE, "--yes")

    assert status == 0
    missing = [(name, event_type) for name, event_type in ALL_PAIRS if (name, event_type) != ("hello_tag", "upload")]
    assert [(sent.method, sent.path, sent.body) for sent in api.writes] == [
        ("POST", PATH, {"uri": f"{BASE}/{name}", "event_type": event_type, "uri_type": None})
        for name, event_type in missing]
    assert all(sent.auth == AUTH for sent in api.sent)
    assert f"Done: {len(missing)} change(s) applied." in out

    before = len(api.sent)
    status, out, _ = run(capsys, "apply", "--base-url", BASE, "--yes")

    assert status == 0 and "Nothing to do" in out
    assert [(sent.method, sent.path) for sent in api.sent[before:]] == [("GET", PATH)]
    assert len(plan_lines(out, "leave")) == len(ALL_PAIRS)


def test_apply_poll_creates_poll_triggers_with_uri_type_poll(api, capsys):
    status, _, _ = run(capsys, "apply", "--poll", "--yes", "hello_tag", "asset_sync")

    assert status == 0
    assert [sent.body for sent in api.writes] == [
        {"uri": "poll://asset_sync", "event_type": "all", "uri_type": "poll"},
        {"uri": "poll://hello_tag", "event_type": "upload", "uri_type": "poll"}]


def test_apply_moves_a_trigger_of_ours_with_update_trigger(api, capsys):
    moved = api.add(f"{DEPLOYED_BASE}/api/hello_tag", "upload")

    status, out, _ = run(capsys, "apply", "hello_tag", "--base-url", BASE, "--yes")

    assert status == 0
    assert [(sent.method, sent.path, sent.body) for sent in api.writes] == [
        ("PUT", f"{PATH}/{moved}", {"new_uri": f"{BASE}/hello_tag"})]
    assert api.triggers[moved]["uri"] == f"{BASE}/hello_tag"
    assert f"changed  upload {DEPLOYED_BASE}/api/hello_tag -> {BASE}/hello_tag" in out


def test_a_webhook_and_a_poll_trigger_are_different_kinds_the_other_kind_is_kept(api, capsys):
    webhook = api.add(f"{DEPLOYED_BASE}/api/hello_tag", "upload")

    status, out, _ = run(capsys, "apply", "hello_tag", "--poll", "--yes")

    assert status == 0
    assert [(sent.method, sent.body) for sent in api.writes] == [
        ("POST", {"uri": "poll://hello_tag", "event_type": "upload", "uri_type": "poll"})]
    assert webhook in api.triggers  # a production webhook is not taken away by a laptop's poll channel
    assert f"hello_tag            {DEPLOYED_BASE}/api/hello_tag   (ours, not wanted: kept (--prune deletes it))" in out


def test_triggers_that_are_not_ours_are_never_changed_or_deleted_even_with_prune(api, capsys):
    foreign = {
        api.add("https://someone-else.example.org/hello_tag", "upload"),  # our function's name, not our address
        api.add(f"{BASE}/hello_tag/deeper", "upload"),  # not one path segment below the base URL
        api.add("https://hooks.example.com/apiary/hello_tag", "upload"),  # a prefix, not the base URL's folder
        api.add("poll://another_app", "upload", "poll"),
        api.add("poll://*", "upload", "poll"),
    }
    snapshot = {trigger_id: dict(api.triggers[trigger_id]) for trigger_id in foreign}

    status, out, _ = run(capsys, "apply", "--base-url", BASE, "--yes", "--prune")

    assert status == 0
    touched = {sent.path.rsplit("/", 1)[-1] for sent in api.writes if sent.method in ("PUT", "DELETE")}
    assert touched == set()
    assert {trigger_id: api.triggers[trigger_id] for trigger_id in foreign} == snapshot
    assert len(plan_lines(out, "foreign")) == len(foreign)


def test_prune_deletes_only_ours_that_are_not_wanted(api, capsys):
    leftover = api.add(f"{BASE}/a_removed_function", "upload")
    old_type = api.add(f"{BASE}/hello_tag", "eager")  # hello_tag no longer wants eager
    twin = api.add(f"{BASE}/hello_tag", "upload")
    duplicate = api.add(f"{BASE}/hello_tag", "upload")

    status, out, _ = run(capsys, "plan", "--base-url", BASE)
    assert status == 0 and "3 extra kept" in out
    assert "(no function)        https://hooks.example.com/api/a_removed_function" in out

    status, out, _ = run(capsys, "apply", "--base-url", BASE, "--yes", "--prune")

    assert status == 0
    deleted = [sent.path for sent in api.writes if sent.method == "DELETE"]
    assert deleted == [f"{PATH}/{leftover}", f"{PATH}/{old_type}", f"{PATH}/{duplicate}"]
    assert twin in api.triggers


def test_prune_for_some_functions_leaves_the_others_and_unknown_ones(api, capsys):
    leftover = api.add(f"{BASE}/a_removed_function", "upload")
    other = api.add(f"{BASE}/eager_email", "upload")

    status, _, _ = run(capsys, "apply", "hello_tag", "--base-url", BASE, "--yes", "--prune")

    assert status == 0 and {leftover, other} <= set(api.triggers)
    assert [sent.method for sent in api.writes] == ["POST"]


@pytest.mark.parametrize(("answer", "status", "writes"), [("y\n", 0, 1), ("yes\n", 0, 1), ("n\n", 1, 0), ("", 1, 0),
                                                          ("\n", 1, 0)])
def test_apply_asks_first(api, capsys, monkeypatch, answer, status, writes):
    code, out, _ = run(capsys, "apply", "hello_tag", "--poll", stdin=answer, monkeypatch=monkeypatch)

    assert code == status
    assert f"Apply these 1 change(s) to cloud {CLOUD_NAME}? [y/N]" in out
    assert len(api.writes) == writes
    if not writes:
        assert "Not confirmed: nothing changed" in out


# --- the Admin API's rate limit and errors ------------------------------------------------------------

def test_apply_stops_before_it_would_exhaust_the_budget(api, capsys):
    api.remaining = 12  # 11 left after the list; 10 kept for the functions

    status, _out, err = run(capsys, "apply", "--poll", "--yes")

    assert status == 2 and api.writes == []
    assert err.count("\n") == 1
    assert "rate limit: 11 of 500 Admin API calls left" in err
    assert f"needs {len(ALL_PAIRS)} and keeps 10" in err and "Nothing changed: try again after 15:00 UTC" in err


def test_a_smaller_reserve_lets_it_through_and_it_says_what_is_left(api, capsys):
    api.remaining = 100

    status, out, _ = run(capsys, "apply", "hello_tag", "--poll", "--yes", "--reserve", "0")

    assert status == 0 and len(api.writes) == 1
    assert "Done: 1 change(s) applied (98 of 500 Admin API calls left)." in out


def test_apply_stops_midway_when_others_spend_the_budget(api, capsys):
    api.remaining = 10 + len(ALL_PAIRS) + 1
    api.spent_by_others_per_write = 100

    status, out, err = run(capsys, "apply", "--poll", "--yes")

    assert status == 2
    assert len(api.writes) == 1
    assert "Stopped after 1 of" in err and "try again after 15:00 UTC" in err
    status, out, _ = run(capsys, "plan", "--poll")  # a later apply does the rest: the first is left alone
    assert len(plan_lines(out, "leave")) == 1


@pytest.mark.parametrize("status_code", [420, 429])
def test_rate_limited_while_listing_is_one_line(api, capsys, status_code):
    api.fail(status_code, method="GET", body={"error": {"message": "Rate Limit Exceeded"}})

    status, _, err = run(capsys, "plan", "--poll")

    assert status == 2 and err.count("\n") == 1
    assert f"rate limit is reached (listing the triggers: Error {status_code} - Rate Limit Exceeded)" in err


def test_rate_limited_while_writing_says_how_far_it_got(api, capsys):
    api.fail(429, method="POST")
    api.fail(429, method="POST")  # ... not retried: the first 429 stops it

    status, _, err = run(capsys, "apply", "hello_tag", "face_tagging", "--poll", "--yes")

    assert status == 2
    assert "0 of 4 change(s) made" in err
    assert len(api.writes) == 1


def test_a_read_is_retried_after_a_5xx(api, capsys, no_sleep):
    api.fail(502, method="GET")
    api.fail(503, method="GET")

    status, out, _ = run(capsys, "plan", "--poll")

    assert status == 0 and "Plan:" in out
    assert no_sleep == [1.0, 3.0]
    assert [sent.method for sent in api.sent] == ["GET", "GET", "GET"]


def test_a_read_failing_three_times_is_one_line(api, capsys):
    api.fail(500, method="GET", times=3)

    status, _, err = run(capsys, "plan", "--poll")

    assert status == 2 and err.count("\n") == 1 and "Cloudinary is unavailable (listing the triggers" in err


@pytest.mark.parametrize("status_code", [500, 502, 503, 504])
def test_a_write_is_never_retried_after_a_5xx(api, capsys, no_sleep, status_code):
    api.fail(status_code, method="POST")

    status, _, err = run(capsys, "apply", "hello_tag", "--poll", "--yes")

    assert status == 2 and no_sleep == []
    assert len(api.writes) == 1
    assert "it may or may not have been done" in err and "`triggers plan` shows where things stand" in err


@pytest.mark.parametrize(("status_code", "words"), [(400, "Cloudinary refused creating"),
                                                    (422, "Cloudinary refused creating"),
                                                    (401, "refused CLOUDINARY_URL's credentials"),
                                                    (403, "refused CLOUDINARY_URL's credentials")])
def test_a_refused_write_is_one_line(api, capsys, status_code, words):
    api.fail(status_code, method="POST", body={"error": {"message": "Invalid event_type"}})

    status, _, err = run(capsys, "apply", "hello_tag", "--poll", "--yes")

    assert status == 2 and err.count("\n") == 1 and words in err and "Traceback" not in err


def test_wrong_credentials_are_one_line_without_the_secret(api, capsys, monkeypatch):
    prefix = f"http://127.0.0.1:{api._server.server_port}"
    monkeypatch.setenv("CLOUDINARY_URL", f"cloudinary://{API_KEY}:wrong-secret-123@{CLOUD_NAME}?upload_prefix={prefix}")

    status, _, err = run(capsys, "plan", "--poll")

    assert status == 2 and err.count("\n") == 1
    assert "refused CLOUDINARY_URL's credentials" in err and "wrong-secret-123" not in err


@pytest.mark.parametrize(("url", "words"), [(None, "CLOUDINARY_URL is not set"),
                                            ("", "CLOUDINARY_URL is not set"),
                                            ("https://key:secret-xyz@demo", "must look like cloudinary://"),
                                            ("cloudinary://key-only@demo", "must look like cloudinary://")])
def test_a_missing_or_malformed_cloudinary_url_is_one_line(capsys, monkeypatch, url, words):
    if url is not None:
        monkeypatch.setenv("CLOUDINARY_URL", url)

    status, out, err = run(capsys, "plan", "--poll")

    assert status == 2 and out == "" and err.count("\n") == 1 and words in err
    assert "secret-xyz" not in err


def test_a_paginated_list_is_refused_rather_than_planned_from_part(api, capsys):
    api.list_extra = {"next_cursor": "abc"}

    status, _, err = run(capsys, "apply", "--poll", "--yes")

    assert status == 2 and api.writes == [] and "more triggers than Cloudinary lists in one answer" in err


def test_cloudinary_unreachable_is_one_line(capsys, monkeypatch):
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("CLOUDINARY_URL", f"cloudinary://{API_KEY}:{SECRET}@{CLOUD_NAME}"
                                         f"?upload_prefix=http://127.0.0.1:{port}")

    status, _, err = run(capsys, "plan", "--poll")

    assert status == 2 and err.count("\n") == 1 and "Cloudinary is unavailable" in err


# --- test: test_trigger with the function's samples ----------------------------------------------------

def test_test_runs_each_matching_sample_against_each_of_the_functions_triggers(api, capsys):
    polled = api.add("poll://hello_tag", "upload", "poll")
    filtered = api.add("https://front.example.net/webhooks/hello_tag", "upload")  # an address deploy.toml lacks
    api.filters[filtered] = lambda sample: sample.get("resource_type") == "video"
    api.add("https://someone-else.example.org/hook", "upload")
    api.remaining = 200
    samples = sorted(path.name for path in (cli.FUNCTIONS_DIR / "hello_tag" / "samples").glob("*.json"))
    uploads = [name for name in samples if json.loads((cli.FUNCTIONS_DIR / "hello_tag" / "samples" / name)
                                                       .read_text())["notification_type"] == "upload"]
    assert uploads and len(uploads) < len(samples)

    status, out, _ = run(capsys, "test", "hello_tag")

    assert status == 0
    tested = [(sent.path, sent.body["sample_data"]["notification_type"]) for sent in api.sent if sent.method == "POST"]
    assert tested == [(f"{PATH}/{polled}/test", "upload")] * len(uploads) + \
        [(f"{PATH}/{filtered}/test", "upload")] * len(uploads)
    assert f"hello_tag: 2 trigger(s) in cloud {CLOUD_NAME}, {len(samples)} sample(s)" in out
    assert "upload.json" in out and "delivered (no filter)" in out
    assert "not delivered: the filter does not match" in out
    assert "not delivered: a resource_tags_changed notification, not upload" in out
    assert api.writes == []


def test_test_sends_the_sample_as_it_is_in_the_file(api, capsys):
    trigger_id = api.add("poll://hello_tag", "upload", "poll")

    status, _out, _ = run(capsys, "test", "hello_tag", "upload")

    assert status == 0
    [sent] = [sent for sent in api.sent if sent.method == "POST"]
    assert sent.path == f"{PATH}/{trigger_id}/test"
    assert sent.body == {"sample_data": json.loads((cli.FUNCTIONS_DIR / "hello_tag/samples/upload.json").read_text())}


def test_test_on_an_all_trigger_tests_every_sample(api, capsys):
    api.add(f"{DEPLOYED_BASE}/api/asset_sync", "all")
    samples = list((cli.FUNCTIONS_DIR / "asset_sync" / "samples").glob("*.json"))

    status, _out, _ = run(capsys, "test", "asset_sync", "--reserve", "0")

    assert status == 0
    assert len([sent for sent in api.sent if sent.path.endswith("/test")]) == len(samples)


def test_test_without_a_trigger_or_with_an_unknown_sample_is_one_line(api, capsys):
    status, _, err = run(capsys, "test", "hello_tag")
    assert status == 2 and "hello_tag has no trigger in cloud" in err and "triggers plan hello_tag" in err

    status, _, err = run(capsys, "test", "hello_tag", "nope")
    assert status == 2 and "hello_tag has no sample 'nope'. Samples: " in err


def test_test_keeps_the_budget_too(api, capsys):
    api.add("poll://hello_tag", "upload", "poll")
    api.remaining = 11

    status, _, err = run(capsys, "test", "hello_tag")

    assert status == 2 and "testing" in err and "keeps 10" in err
    assert [sent.method for sent in api.sent] == ["GET"]
