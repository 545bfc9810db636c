"""The sweep: catch up on moderation notifications that never arrived (the function was down, a retry ran
out, the notification_url was wrong), by paging through the Google video moderation queues.

Run by a person or a schedule (``python -m functions.video_moderation sweep``), never per notification.
It pages each queue with ``next_cursor`` and applies to every listed video the same rules as the webhook
(``moderation.settle``: confirm with the video's details, then publish, delete or keep), within a count
and a time budget. Rejected videos come first: removing them matters more than publishing.

Admin API cost: 1 listing call per page, then 1 per video (the details that confirm its status); its writes
(explicit to publish or restrict, rename, destroy, tags) are Upload API calls, not rate-limited. A listed
video that the listing already shows public (approved) or restricted and tagged (rejected, keep) costs no
more than its share of the page.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from functions.video_moderation.moderation import (
    Calls,
    Policy,
    Video,
    list_queue,
    needs_publishing,
    only_token_access,
    settle,
)
from shared.errors import WebhookError

QUEUES = ("rejected", "approved")
DEFAULT_MAX_VIDEOS = 50  # 1 Admin API call each (+1 a page): well inside an hourly Admin API allowance
DEFAULT_MAX_SECONDS = 120.0
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 500  # the Admin API's own limit for max_results


@dataclass
class Entry:
    """What the sweep did (or would do) with one listed video."""

    queue: str
    public_id: str
    delivery_type: str
    status: str  # "done", "ignored" or "failed"
    reason: str | None = None
    actions: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Report:
    dry_run: bool
    entries: list[Entry] = field(default_factory=list)
    pages: int = 0
    calls: Calls = field(default_factory=Calls)
    stopped: str | None = None  # None: both queues fully examined; else why it stopped early
    error: str | None = None  # set when a Cloudinary failure stopped it

    @property
    def complete(self) -> bool:
        return self.stopped is None

    def count(self, status: str) -> int:
        return sum(1 for entry in self.entries if entry.status == status)

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run, "complete": self.complete, "stopped": self.stopped, "error": self.error,
            "examined": len(self.entries), "done": self.count("done"), "ignored": self.count("ignored"),
            "failed": self.count("failed"), "pages": self.pages,
            "admin_api_calls": self.calls.admin, "upload_api_calls": self.calls.upload,
            "videos": [entry.__dict__ for entry in self.entries],
        }


class Recorder:
    """``Context.act`` for the sweep: records each write and performs it unless this is a dry run."""

    def __init__(self, dry_run: bool) -> None:
        self.dry_run = dry_run
        self.actions: list[dict[str, Any]] = []

    def act(self, action: str, perform: Callable[[], Any] | None = None, **details: Any) -> Any:
        self.actions.append({"action": action, **details})
        if self.dry_run or perform is None:
            return None
        return perform()


class _Stop(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def sweep(policy: Policy, *, dry_run: bool, max_videos: int = DEFAULT_MAX_VIDEOS,
          max_seconds: float = DEFAULT_MAX_SECONDS, page_size: int = DEFAULT_PAGE_SIZE,
          queues: tuple[str, ...] = QUEUES, clock: Callable[[], float] = time.monotonic) -> Report:
    """Examine at most ``max_videos`` listed videos, starting no call after ``max_seconds`` (a call already
    started may run until its own timeout). Stops at the first Cloudinary failure: when the rate limit is
    reached or Cloudinary is down, pressing on would only fail more."""
    report = Report(dry_run=dry_run)
    deadline = clock() + max_seconds

    def check_budget() -> None:
        if len(report.entries) >= max_videos:
            raise _Stop(f"reached --max {max_videos}")
        if clock() >= deadline:
            raise _Stop(f"reached --max-seconds {max_seconds:g}")

    try:
        for queue in queues:
            cursor: str | None = None
            seen_cursors: set[str] = set()
            while True:
                check_budget()
                page = _list(queue, page_size, cursor, report)
                for listed in page.get("resources") or []:
                    if not isinstance(listed, Mapping) or not isinstance(listed.get("public_id"), str):
                        continue
                    check_budget()
                    report.entries.append(_settle_listed(queue, listed, policy, dry_run, report))
                cursor = page.get("next_cursor") or None
                if not isinstance(cursor, str) or cursor in seen_cursors:
                    break  # the end of the queue (a cursor seen before would only loop)
                seen_cursors.add(cursor)
    except _Stop as stop:
        report.stopped = stop.reason
    except WebhookError as error:
        report.stopped = "Cloudinary failed"
        report.error = f"{error.code}: {error.message}" + (f" ({error.log_detail})" if error.log_detail else "")
    return report


def _list(queue: str, page_size: int, cursor: str | None, report: Report) -> Mapping[str, Any]:
    page = list_queue(queue, page_size, cursor, report.calls)
    report.pages += 1
    return page


def _settle_listed(queue: str, listed: Mapping[str, Any], policy: Policy, dry_run: bool,
                   report: Report) -> Entry:
    delivery_type = listed.get("type") if isinstance(listed.get("type"), str) else "upload"
    video = Video(listed["public_id"], "video", delivery_type,
                  listed.get("asset_id") if isinstance(listed.get("asset_id"), str) else None)
    entry = Entry(queue, video.public_id, delivery_type, "ignored")

    settled_already = _settled_per_listing(queue, listed, policy)
    if settled_already:
        entry.reason = settled_already
        return entry

    recorder = Recorder(dry_run)
    entry.actions = recorder.actions
    try:
        outcome = settle(video, queue, policy, recorder.act, calls=report.calls)
    except WebhookError as error:
        entry.status, entry.reason = "failed", f"{error.code}: {error.message}"
        report.entries.append(entry)  # the caller stops the sweep; the report still shows this video
        raise
    entry.status, entry.reason = outcome.status, outcome.reason
    return entry


def _settled_per_listing(queue: str, listed: Mapping[str, Any], policy: Policy) -> str | None:
    """Skip the details call when the listing itself shows there is nothing to write. Only ever used to
    do nothing: every write is still preceded by the details check."""
    if "access_control" not in listed:
        return None
    if queue == "approved" and not needs_publishing(listed):
        return "the video is already public (per the listing)"
    if (queue == "rejected" and policy.on_reject == "keep" and only_token_access(listed)
            and policy.rejected_tag in (listed.get("tags") or [])):
        return "the rejected video is already restricted and tagged for review (per the listing)"
    return None
