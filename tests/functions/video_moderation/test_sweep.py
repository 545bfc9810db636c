"""The sweep on the wire: queue listings paged with next_cursor, the per-video rules, and its bounds."""

from __future__ import annotations

import json
from typing import Any

import pytest

from functions.video_moderation.__main__ import main
from functions.video_moderation.moderation import Policy
from functions.video_moderation.sweep import sweep
from tests.functions.video_moderation.fake_cloudinary import (
    DESTROY_PATH,
    RENAME_PATH,
    TAGS_PATH,
    FakeCloudinary,
    details_path,
    queue_path,
    video,
    wire,
    writes,
)

DELETE = Policy()
KEEP = Policy(on_reject="keep")


def listed(resource: dict[str, Any], *, with_access: bool = False) -> dict[str, Any]:
    """A queue entry as the listing returns it: the basics, tags (asked for), access control only sometimes."""
    entry = {key: resource[key] for key in ("asset_id", "public_id", "format", "version", "resource_type", "type",
                                            "created_at", "bytes", "url", "secure_url", "tags")}
    if with_access:
        entry["access_control"] = resource["access_control"]
    return entry


def expect_page(server, status: str, resources: list[dict[str, Any]], *, cursor: str | None = None,
                next_cursor: str | None = None, page_size: int = 100) -> None:
    query = {"max_results": str(page_size), "tags": "true"}
    if cursor:
        query["next_cursor"] = cursor
    body: dict[str, Any] = {"resources": resources}
    if next_cursor:
        body["next_cursor"] = next_cursor
    server.expect_oneshot_request(queue_path(status), method="GET", query_string=query).respond_with_json(body)


def listings(server) -> list[dict[str, str]]:
    return [dict(request.args) for request, _ in server.log if "/moderations/" in request.path]


def test_pages_through_three_pages_with_next_cursor(cloudinary: FakeCloudinary, cloudinary_server):
    videos = [cloudinary.add(video(f"ugc/clip{number}", "approved", asset_id=f"{number:032d}"))
              for number in range(5)]
    expect_page(cloudinary_server, "approved", [listed(v) for v in videos[:2]], next_cursor="c-page2", page_size=2)
    expect_page(cloudinary_server, "approved", [listed(v) for v in videos[2:4]], cursor="c-page2",
                next_cursor="c-page3", page_size=2)
    expect_page(cloudinary_server, "approved", [listed(videos[4])], cursor="c-page3", page_size=2)

    report = sweep(DELETE, dry_run=False, page_size=2, queues=("approved",))

    assert report.complete and report.error is None
    assert report.pages == 3 and len(report.entries) == 5 and report.count("done") == 5
    assert listings(cloudinary_server) == [
        {"max_results": "2", "tags": "true"},
        {"max_results": "2", "tags": "true", "next_cursor": "c-page2"},
        {"max_results": "2", "tags": "true", "next_cursor": "c-page3"},
    ]
    expected = [("GET", queue_path("approved"))]
    for number in range(5):
        expected += [("GET", details_path(f"ugc/clip{number}")), ("POST", details_path(f"ugc/clip{number}"))]
        if number in (1, 3):
            expected.append(("GET", queue_path("approved")))
    assert wire(cloudinary_server) == expected
    updates = [request.get_json() for request, _ in cloudinary_server.log if request.method == "POST"]
    assert updates == [{"access_control": '[{"access_type":"anonymous"}]'}] * 5
    assert report.calls.admin == 3 + 5 * 2 and report.calls.upload == 0


def test_rejected_queue_first_then_approved(cloudinary: FakeCloudinary, cloudinary_server):
    bad = cloudinary.add(video("ugc/bad", "rejected", asset_id="1" * 32))
    good = cloudinary.add(video("ugc/good", "approved", asset_id="2" * 32, delivery_type="authenticated"))
    expect_page(cloudinary_server, "rejected", [listed(bad)])
    expect_page(cloudinary_server, "approved", [listed(good)])

    report = sweep(DELETE, dry_run=False)

    assert report.complete and [entry.status for entry in report.entries] == ["done", "done"]
    assert wire(cloudinary_server) == [
        ("GET", queue_path("rejected")), ("GET", details_path("ugc/bad")), ("POST", DESTROY_PATH),
        ("GET", queue_path("approved")), ("GET", details_path("ugc/good", "authenticated")),
        ("POST", RENAME_PATH), ("POST", details_path("ugc/good", "upload")),  # authenticated -> upload, then public
    ]
    destroy = cloudinary_server.log[2][0].form
    assert destroy["public_id"] == "ugc/bad" and destroy["type"] == "upload" and destroy["invalidate"] == "1"
    assert cloudinary.get("ugc/bad") is None
    assert cloudinary.get("ugc/good", "authenticated") is None
    assert cloudinary.get("ugc/good", "upload")["access_control"] == [{"access_type": "anonymous"}]
    assert report.calls.admin == 5 and report.calls.upload == 2


def test_stops_at_max_videos_without_listing_more(cloudinary: FakeCloudinary, cloudinary_server):
    videos = [cloudinary.add(video(f"ugc/v{number}", "rejected", asset_id=f"{number:032d}")) for number in range(3)]
    expect_page(cloudinary_server, "rejected", [listed(v) for v in videos], next_cursor="more")

    report = sweep(DELETE, dry_run=False, max_videos=2)

    assert report.stopped == "reached --max 2" and not report.complete and report.error is None
    assert [entry.public_id for entry in report.entries] == ["ugc/v0", "ugc/v1"]
    assert wire(cloudinary_server) == [("GET", queue_path("rejected")),
                                       ("GET", details_path("ugc/v0")), ("POST", DESTROY_PATH),
                                       ("GET", details_path("ugc/v1")), ("POST", DESTROY_PATH)]
    assert cloudinary.get("ugc/v2") is not None


def test_stops_when_the_time_budget_is_spent(cloudinary: FakeCloudinary, cloudinary_server):
    videos = [cloudinary.add(video(f"ugc/t{number}", "approved", asset_id=f"{number:032d}")) for number in range(3)]
    expect_page(cloudinary_server, "rejected", [])
    expect_page(cloudinary_server, "approved", [listed(v) for v in videos])
    now = [0.0]

    def clock() -> float:  # every look at the clock is 4 s later: a fake clock, no real waiting
        now[0] += 4.0
        return now[0]

    report = sweep(DELETE, dry_run=False, max_seconds=18, clock=clock)

    # deadline 4+18=22; checks at 8 (rejected page), 12 (approved page), 16 (t0), 20 (t1), 24 -> stop
    assert report.stopped == "reached --max-seconds 18"
    assert [entry.public_id for entry in report.entries] == ["ugc/t0", "ugc/t1"]
    assert ("GET", details_path("ugc/t2")) not in wire(cloudinary_server)
    assert cloudinary.get("ugc/t2")["access_control"] == [{"access_type": "token"}]


def test_dry_run_lists_and_checks_but_writes_nothing(cloudinary: FakeCloudinary, cloudinary_server):
    bad = cloudinary.add(video("ugc/bad", "rejected", asset_id="1" * 32))
    good = cloudinary.add(video("ugc/good", "approved", asset_id="2" * 32))
    expect_page(cloudinary_server, "rejected", [listed(bad)])
    expect_page(cloudinary_server, "approved", [listed(good)])

    report = sweep(DELETE, dry_run=True)

    assert writes(cloudinary_server) == []
    assert [(entry.status, [a["action"] for a in entry.actions]) for entry in report.entries] == [
        ("done", ["delete"]), ("done", ["publish"])]
    assert cloudinary.get("ugc/bad") is not None
    assert report.calls.admin == 4 and report.calls.upload == 0


def test_a_second_sweep_writes_nothing(cloudinary: FakeCloudinary, cloudinary_server):
    good = cloudinary.add(video("ugc/good", "approved", asset_id="2" * 32))
    for _ in range(2):
        expect_page(cloudinary_server, "rejected", [])
        expect_page(cloudinary_server, "approved", [listed(good)])

    first = sweep(DELETE, dry_run=False)
    second = sweep(DELETE, dry_run=False)

    assert first.count("done") == 1
    assert second.count("done") == 0 and second.entries[0].reason == "the video is already public"
    assert len(writes(cloudinary_server)) == 1


def test_listing_that_shows_a_video_settled_costs_no_details_call(cloudinary: FakeCloudinary, cloudinary_server):
    public = cloudinary.add(video("ugc/public", "approved", asset_id="3" * 32,
                                  access_control=[{"access_type": "anonymous"}]))
    kept = cloudinary.add(video("ugc/kept", "rejected", asset_id="4" * 32, tags=["video_moderation_rejected"]))
    expect_page(cloudinary_server, "rejected", [listed(kept, with_access=True)])
    expect_page(cloudinary_server, "approved", [listed(public, with_access=True)])

    report = sweep(KEEP, dry_run=False)

    assert [entry.status for entry in report.entries] == ["ignored", "ignored"]
    assert all("per the listing" in (entry.reason or "") for entry in report.entries)
    assert wire(cloudinary_server) == [("GET", queue_path("rejected")), ("GET", queue_path("approved"))]


def test_keep_policy_tags_rejected_videos(cloudinary: FakeCloudinary, cloudinary_server):
    bad = cloudinary.add(video("ugc/bad", "rejected", asset_id="1" * 32))
    expect_page(cloudinary_server, "rejected", [listed(bad)])

    report = sweep(KEEP, dry_run=False, queues=("rejected",))

    assert report.count("done") == 1
    assert wire(cloudinary_server) == [("GET", queue_path("rejected")), ("GET", details_path("ugc/bad")),
                                       ("POST", TAGS_PATH)]
    assert cloudinary.get("ugc/bad")["tags"] == ["video_moderation_rejected"]


def test_listed_video_whose_status_changed_is_not_deleted(cloudinary: FakeCloudinary, cloudinary_server):
    stale = cloudinary.add(video("ugc/overridden", "approved", asset_id="5" * 32))
    expect_page(cloudinary_server, "rejected", [listed(stale)])

    report = sweep(DELETE, dry_run=False, queues=("rejected",))

    assert report.entries[0].status == "ignored" and "approved, not rejected" in report.entries[0].reason
    assert writes(cloudinary_server) == []


def test_rate_limit_stops_the_sweep_and_reports_it(cloudinary: FakeCloudinary, cloudinary_server):
    first = cloudinary.add(video("ugc/first", "rejected", asset_id="6" * 32))
    second = cloudinary.add(video("ugc/second", "rejected", asset_id="7" * 32))
    expect_page(cloudinary_server, "rejected", [listed(first), listed(second)])
    cloudinary_server.expect_oneshot_request(details_path("ugc/first")).respond_with_json(
        {"error": {"message": "Rate Limit Exceeded"}}, status=420)

    report = sweep(DELETE, dry_run=False)

    assert report.stopped == "Cloudinary failed" and report.error.startswith("cloudinary_rate_limited")
    assert [(entry.public_id, entry.status) for entry in report.entries] == [("ugc/first", "failed")]
    assert wire(cloudinary_server) == [("GET", queue_path("rejected")), ("GET", details_path("ugc/first"))]
    assert cloudinary.get("ugc/first") is not None and cloudinary.get("ugc/second") is not None
    assert report.calls.admin == 2


@pytest.mark.parametrize("status", [429, 502, 503])
def test_listing_failure_stops_the_sweep(cloudinary_server, status):
    cloudinary_server.expect_oneshot_request(queue_path("rejected")).respond_with_json(
        {"error": {"message": "simulated"}}, status=status)

    report = sweep(DELETE, dry_run=False)

    assert report.error and report.entries == [] and report.pages == 0
    assert len(cloudinary_server.log) == 1


# --- the command line ---------------------------------------------------------------------------------

def run_cli(*argv: str) -> tuple[int, str, str]:
    out: list[str] = []
    err: list[str] = []
    code = main(list(argv), out=out.append, err=err.append)
    return code, "".join(out), "".join(err)


def test_cli_dry_run_prints_a_line_per_video_and_the_totals(cloudinary: FakeCloudinary, cloudinary_server):
    bad = cloudinary.add(video("ugc/bad", "rejected", asset_id="1" * 32))
    expect_page(cloudinary_server, "rejected", [listed(bad)], page_size=10)
    expect_page(cloudinary_server, "approved", [], page_size=10)

    code, out, err = run_cli("sweep", "--dry-run", "--max", "5", "--page-size", "10")

    assert code == 0 and err == ""
    assert "rejected  ugc/bad [upload]  done: would delete" in out
    assert "DRY RUN: nothing was written." in out and "2 page(s) listed; 3 Admin API call(s)" in out
    assert "Both queues examined to the end." in out
    assert writes(cloudinary_server) == []


def test_cli_honours_dry_run_from_the_environment(cloudinary: FakeCloudinary, cloudinary_server, monkeypatch):
    monkeypatch.setenv("DRY_RUN", "1")
    bad = cloudinary.add(video("ugc/bad", "rejected", asset_id="1" * 32))
    expect_page(cloudinary_server, "rejected", [listed(bad)])

    code, out, _ = run_cli("sweep", "--queue", "rejected", "--json")

    report = json.loads(out)
    assert code == 0 and report["dry_run"] is True and report["done"] == 1
    assert writes(cloudinary_server) == [] and cloudinary.get("ugc/bad") is not None


def test_cli_json_report_and_exit_status_1_on_failure(cloudinary_server):
    cloudinary_server.expect_oneshot_request(queue_path("rejected")).respond_with_json(
        {"error": {"message": "simulated"}}, status=500)

    code, out, _ = run_cli("sweep", "--json")

    report = json.loads(out)
    assert code == 1 and report["complete"] is False and report["error"].startswith("cloudinary_unavailable")


def test_cli_reports_an_early_stop(cloudinary: FakeCloudinary, cloudinary_server):
    videos = [cloudinary.add(video(f"ugc/v{n}", "rejected", asset_id=f"{n:032d}")) for n in range(2)]
    expect_page(cloudinary_server, "rejected", [listed(v) for v in videos])

    code, out, _ = run_cli("sweep", "--max", "1")

    assert code == 0 and "Stopped early (reached --max 1)" in out and "run the sweep again" in out
    assert cloudinary.get("ugc/v1") is not None


def test_cli_without_cloudinary_url_exits_2_and_calls_nothing(cloudinary_server, monkeypatch):
    monkeypatch.delenv("CLOUDINARY_URL")

    code, out, err = run_cli("sweep")

    assert code == 2 and out == "" and "CLOUDINARY_URL" in err
    assert cloudinary_server.log == []


def test_cli_with_a_bad_on_reject_setting_exits_2(cloudinary_server, monkeypatch):
    monkeypatch.setenv("VIDEO_MODERATION_ON_REJECT", "shred")

    code, _, err = run_cli("sweep")

    assert code == 2 and "VIDEO_MODERATION_ON_REJECT" in err
    assert cloudinary_server.log == []


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


def test_a_cursor_seen_before_ends_the_queue_instead_of_looping(cloudinary: FakeCloudinary, cloudinary_server):
    expect_page(cloudinary_server, "approved", [], next_cursor="same")
    expect_page(cloudinary_server, "approved", [], cursor="same", next_cursor="same")

    report = sweep(DELETE, dry_run=False, queues=("approved",))

    assert report.complete and report.pages == 2 and len(cloudinary_server.log) == 2
