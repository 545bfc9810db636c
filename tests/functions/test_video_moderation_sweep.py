"""video_moderation's sweep on the wire: queue listings paged with next_cursor, the per-video rules, and its
bounds, against the stateful stand-in of tests/fakes/cloudinary.py (which lists a queue from the videos it
holds, sorted by public ID, ``max_results`` a page, its cursors being offsets)."""

from __future__ import annotations

import json

import pytest

from functions.video_moderation.__main__ import main
from functions.video_moderation.moderation import Policy
from functions.video_moderation.sweep import sweep
from tests.fakes.cloudinary import Call, FakeCloudinary, Fault
from tests.functions.test_video_moderation import (
    DESTROY_PATH,
    EXPLICIT_PATH,
    PUBLIC,
    RENAME_PATH,
    TAGS_PATH,
    TOKEN,
    add_video,
    assert_explicit,
    details_path,
    queue_path,
    video,
)

DELETE = Policy()
KEEP = Policy(on_reject="keep")


def listings(fake: FakeCloudinary) -> list[dict[str, str]]:
    return [call.params for call in fake.calls if call.action == "moderation_list"]


def is_listing(call: Call, _index: int) -> bool:
    return call.action == "moderation_list"


def fail_listing(fake: FakeCloudinary, fault: Fault, *, once: bool = True) -> None:
    (fake.fail_once if once else fake.fail)(is_listing, fault)


def test_pages_through_three_pages_with_next_cursor(fake_cloudinary):
    for number in range(5):
        add_video(fake_cloudinary, f"ugc/clip{number}", "approved", asset_id=f"{number:032d}")

    report = sweep(DELETE, dry_run=False, page_size=2, queues=("approved",))

    assert report.complete and report.error is None
    assert report.pages == 3 and len(report.entries) == 5 and report.count("done") == 5
    assert listings(fake_cloudinary) == [
        {"max_results": "2", "tags": "true"},
        {"max_results": "2", "tags": "true", "next_cursor": "2"},
        {"max_results": "2", "tags": "true", "next_cursor": "4"},
    ]
    expected = [("GET", queue_path("approved"))]
    for number in range(5):
        expected += [("GET", details_path(f"ugc/clip{number}")), ("POST", EXPLICIT_PATH)]
        if number in (1, 3):
            expected.append(("GET", queue_path("approved")))
    assert fake_cloudinary.routes == expected
    for number, call in enumerate(fake_cloudinary.writes):
        assert_explicit(call, f"ugc/clip{number}", PUBLIC)
    # 3 pages + 1 details call per video on the rate-limited Admin API; the 5 writes on the Upload API
    assert report.calls.admin == 3 + 5 and report.calls.upload == 5
    assert (fake_cloudinary.count("admin"), fake_cloudinary.count("upload")) == (3 + 5, 5)


def test_rejected_queue_first_then_approved(fake_cloudinary):
    add_video(fake_cloudinary, "ugc/bad", "rejected", asset_id="1" * 32)
    add_video(fake_cloudinary, "ugc/good", "approved", asset_id="2" * 32, delivery_type="authenticated")

    report = sweep(DELETE, dry_run=False)

    assert report.complete and [entry.status for entry in report.entries] == ["done", "done"]
    assert fake_cloudinary.routes == [
        ("GET", queue_path("rejected")), ("GET", details_path("ugc/bad")), ("POST", DESTROY_PATH),
        ("GET", queue_path("approved")), ("GET", details_path("ugc/good", "authenticated")),
        ("POST", EXPLICIT_PATH), ("POST", RENAME_PATH),  # token restriction lifted, then authenticated -> upload
    ]
    destroy = fake_cloudinary.calls[2].params
    assert destroy["public_id"] == "ugc/bad" and destroy["type"] == "upload" and destroy["invalidate"] == "1"
    assert_explicit(fake_cloudinary.calls[5], "ugc/good", PUBLIC, "authenticated")
    assert video(fake_cloudinary, "ugc/bad") is None
    assert video(fake_cloudinary, "ugc/good", "authenticated") is None
    assert video(fake_cloudinary, "ugc/good")["access_control"] == PUBLIC
    assert report.calls.admin == 4 and report.calls.upload == 3


def test_stops_at_max_videos_without_listing_more(fake_cloudinary):
    for number in range(3):
        add_video(fake_cloudinary, f"ugc/v{number}", "rejected", asset_id=f"{number:032d}")

    report = sweep(DELETE, dry_run=False, max_videos=2, page_size=3)

    assert report.stopped == "reached --max 2" and not report.complete and report.error is None
    assert [entry.public_id for entry in report.entries] == ["ugc/v0", "ugc/v1"]
    assert fake_cloudinary.routes == [("GET", queue_path("rejected")),
                                      ("GET", details_path("ugc/v0")), ("POST", DESTROY_PATH),
                                      ("GET", details_path("ugc/v1")), ("POST", DESTROY_PATH)]
    assert video(fake_cloudinary, "ugc/v2") is not None


def test_stops_when_the_time_budget_is_spent(fake_cloudinary):
    for number in range(3):
        add_video(fake_cloudinary, f"ugc/t{number}", "approved", asset_id=f"{number:032d}")
    now = [0.0]

    def clock() -> float:  # every look at the clock is 4 s later: a fake clock, no real waiting
        now[0] += 4.0
        return now[0]

    report = sweep(DELETE, dry_run=False, max_seconds=18, clock=clock)

    # deadline 4+18=22; checks at 8 (rejected page), 12 (approved page), 16 (t0), 20 (t1), 24 -> stop
    assert report.stopped == "reached --max-seconds 18"
    assert [entry.public_id for entry in report.entries] == ["ugc/t0", "ugc/t1"]
    assert ("GET", details_path("ugc/t2")) not in fake_cloudinary.routes
    assert video(fake_cloudinary, "ugc/t2")["access_control"] == TOKEN


def test_dry_run_lists_and_checks_but_writes_nothing(fake_cloudinary):
    add_video(fake_cloudinary, "ugc/bad", "rejected", asset_id="1" * 32)
    add_video(fake_cloudinary, "ugc/good", "approved", asset_id="2" * 32)

    report = sweep(DELETE, dry_run=True)

    assert fake_cloudinary.writes == []
    assert [(entry.status, [a["action"] for a in entry.actions]) for entry in report.entries] == [
        ("done", ["delete"]), ("done", ["publish"])]
    assert video(fake_cloudinary, "ugc/bad") is not None
    assert report.calls.admin == 4 and report.calls.upload == 0


def test_a_second_sweep_writes_nothing(fake_cloudinary):
    add_video(fake_cloudinary, "ugc/good", "approved", asset_id="2" * 32)

    first = sweep(DELETE, dry_run=False)
    second = sweep(DELETE, dry_run=False)

    assert first.count("done") == 1
    assert second.count("done") == 0 and "already public" in (second.entries[0].reason or "")
    assert len(fake_cloudinary.writes) == 1
    assert second.calls.upload == 0


def test_listing_that_shows_a_video_settled_costs_no_details_call(fake_cloudinary):
    add_video(fake_cloudinary, "ugc/public", "approved", asset_id="3" * 32, access_control=PUBLIC)
    add_video(fake_cloudinary, "ugc/kept", "rejected", asset_id="4" * 32, tags=["video_moderation_rejected"])

    report = sweep(KEEP, dry_run=False)

    assert [entry.status for entry in report.entries] == ["ignored", "ignored"]
    assert all("per the listing" in (entry.reason or "") for entry in report.entries)
    assert fake_cloudinary.routes == [("GET", queue_path("rejected")), ("GET", queue_path("approved"))]


def test_a_listing_without_access_control_is_checked_with_the_details(fake_cloudinary):
    add_video(fake_cloudinary, "ugc/public", "approved", asset_id="3" * 32, access_control=None)

    report = sweep(KEEP, dry_run=False, queues=("approved",))

    assert report.entries[0].status == "ignored" and report.entries[0].reason == "the video is already public"
    assert fake_cloudinary.routes == [("GET", queue_path("approved")), ("GET", details_path("ugc/public"))]


def test_keep_policy_tags_rejected_videos(fake_cloudinary):
    add_video(fake_cloudinary, "ugc/bad", "rejected", asset_id="1" * 32)

    report = sweep(KEEP, dry_run=False, queues=("rejected",))

    assert report.count("done") == 1
    assert fake_cloudinary.routes == [("GET", queue_path("rejected")), ("GET", details_path("ugc/bad")),
                                      ("POST", TAGS_PATH)]
    assert video(fake_cloudinary, "ugc/bad")["tags"] == ["video_moderation_rejected"]


def test_keep_policy_restricts_with_explicit(fake_cloudinary):
    add_video(fake_cloudinary, "ugc/open", "rejected", asset_id="1" * 32, access_control=PUBLIC)

    report = sweep(KEEP, dry_run=False, queues=("rejected",))

    assert report.count("done") == 1
    assert fake_cloudinary.routes == [("GET", queue_path("rejected")), ("GET", details_path("ugc/open")),
                                      ("POST", EXPLICIT_PATH), ("POST", TAGS_PATH)]
    assert_explicit(fake_cloudinary.calls[2], "ugc/open", TOKEN)
    assert report.calls.admin == 2 and report.calls.upload == 2


def test_listed_video_whose_status_changed_is_not_deleted(fake_cloudinary):
    add_video(fake_cloudinary, "ugc/overridden", "approved", asset_id="5" * 32)
    # listed in the rejected queue, but a person approved it before its details were read
    listed = {"public_id": "ugc/overridden", "resource_type": "video", "type": "upload", "asset_id": "5" * 32}
    fail_listing(fake_cloudinary, Fault("status", 200, body={"resources": [listed]}))

    report = sweep(DELETE, dry_run=False, queues=("rejected",))

    assert report.entries[0].status == "ignored" and "approved, not rejected" in report.entries[0].reason
    assert fake_cloudinary.writes == [] and video(fake_cloudinary, "ugc/overridden") is not None


def test_rate_limit_stops_the_sweep_and_reports_it(fake_cloudinary):
    add_video(fake_cloudinary, "ugc/first", "rejected", asset_id="6" * 32)
    add_video(fake_cloudinary, "ugc/second", "rejected", asset_id="7" * 32)
    fake_cloudinary.fail_once(lambda call, _index: call.route == ("GET", details_path("ugc/first")),
                              Fault("status", 420))

    report = sweep(DELETE, dry_run=False)

    assert report.stopped == "Cloudinary failed" and report.error.startswith("cloudinary_rate_limited")
    assert [(entry.public_id, entry.status) for entry in report.entries] == [("ugc/first", "failed")]
    assert fake_cloudinary.routes == [("GET", queue_path("rejected")), ("GET", details_path("ugc/first"))]
    assert video(fake_cloudinary, "ugc/first") is not None and video(fake_cloudinary, "ugc/second") is not None
    assert report.calls.admin == 2


@pytest.mark.parametrize("status", [429, 502, 503])
def test_listing_failure_stops_the_sweep(fake_cloudinary, status):
    add_video(fake_cloudinary, "ugc/bad", "rejected")
    fail_listing(fake_cloudinary, Fault("status", status))

    report = sweep(DELETE, dry_run=False)

    assert report.error and report.entries == [] and report.pages == 0
    assert len(fake_cloudinary.calls) == 1


def test_a_cursor_seen_before_ends_the_queue_instead_of_looping(fake_cloudinary):
    # a listing that keeps answering the same cursor (a misbehaving Cloudinary) must not loop forever
    fail_listing(fake_cloudinary, Fault("status", 200, body={"resources": [], "next_cursor": "same"}), once=False)

    report = sweep(DELETE, dry_run=False, queues=("approved",))

    assert report.complete and report.pages == 2 and len(fake_cloudinary.calls) == 2
    assert listings(fake_cloudinary)[1]["next_cursor"] == "same"


# --- the command line ---------------------------------------------------------------------------------

def run_cli(*argv: str) -> tuple[int, str, str]:
    out: list[str] = []
    err: list[str] = []
    code = main(list(argv), out=out.append, err=err.append)
    return code, "".join(out), "".join(err)


def test_cli_dry_run_prints_a_line_per_video_and_the_totals(fake_cloudinary):
    add_video(fake_cloudinary, "ugc/bad", "rejected", asset_id="1" * 32)

    code, out, err = run_cli("sweep", "--dry-run", "--max", "5", "--page-size", "10")

    assert code == 0 and err == ""
    assert "rejected  ugc/bad [upload]  done: would delete" in out
    assert "DRY RUN: nothing was written." in out and "2 page(s) listed; 3 Admin API call(s)" in out
    assert "Both queues examined to the end." in out
    assert fake_cloudinary.writes == []
    assert [call.params["max_results"] for call in fake_cloudinary.calls if call.action == "moderation_list"] == \
        ["10", "10"]


def test_cli_reports_upload_api_writes(fake_cloudinary):
    add_video(fake_cloudinary, "ugc/good", "approved", asset_id="2" * 32)

    code, out, _ = run_cli("sweep")

    assert code == 0 and "approved  ugc/good [upload]  done: publish" in out
    assert "2 page(s) listed; 3 Admin API call(s), 1 Upload API call(s)." in out


def test_cli_honours_dry_run_from_the_environment(fake_cloudinary, monkeypatch):
    monkeypatch.setenv("DRY_RUN", "1")
    add_video(fake_cloudinary, "ugc/bad", "rejected", asset_id="1" * 32)

    code, out, _ = run_cli("sweep", "--queue", "rejected", "--json")

    report = json.loads(out)
    assert code == 0 and report["dry_run"] is True and report["done"] == 1
    assert fake_cloudinary.writes == [] and video(fake_cloudinary, "ugc/bad") is not None


def test_cli_json_report_and_exit_status_1_on_failure(fake_cloudinary):
    fail_listing(fake_cloudinary, Fault("status", 500))

    code, out, _ = run_cli("sweep", "--json")

    report = json.loads(out)
    assert code == 1 and report["complete"] is False and report["error"].startswith("cloudinary_unavailable")


def test_cli_reports_an_early_stop(fake_cloudinary):
    for number in range(2):
        add_video(fake_cloudinary, f"ugc/v{number}", "rejected", asset_id=f"{number:032d}")

    code, out, _ = run_cli("sweep", "--max", "1")

    assert code == 0 and "Stopped early (reached --max 1)" in out and "run the sweep again" in out
    assert video(fake_cloudinary, "ugc/v1") is not None


def test_cli_without_cloudinary_url_exits_2_and_calls_nothing(fake_cloudinary, monkeypatch):
    monkeypatch.delenv("CLOUDINARY_URL")

    code, out, err = run_cli("sweep")

    assert code == 2 and out == "" and "CLOUDINARY_URL" in err
    assert fake_cloudinary.calls == []


def test_cli_with_a_bad_on_reject_setting_exits_2(fake_cloudinary, monkeypatch):
    monkeypatch.setenv("VIDEO_MODERATION_ON_REJECT", "shred")

    code, _, err = run_cli("sweep")

    assert code == 2 and "VIDEO_MODERATION_ON_REJECT" in err
    assert fake_cloudinary.calls == []


@pytest.mark.parametrize("argv", [["sweep", "--max", "0"], ["sweep", "--max-seconds", "-1"],
                                  ["sweep", "--page-size", "501"], ["sweep", "--queue", "pending"], []])
def test_cli_rejects_bad_arguments(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2


def test_cli_help_explains_the_sweep(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["sweep", "--help"])
    text = capsys.readouterr().out
    assert exit_info.value.code == 0
    for words in ("--dry-run", "--max N", "--max-seconds S", "next_cursor", "Admin API cost", "exit status"):
        assert words in text
