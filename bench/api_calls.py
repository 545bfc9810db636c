"""Cloudinary API calls per notification, counted on the stateful stand-in (tests/fakes/cloudinary.py), for
each scenario of the fault suite (tests/faults/scenarios.py) and for metadata_stamp's (on time, late, late and
naming many assets: its only Admin API read), and the same for the course's moderation webhooks re-enacted on
the same stand-in (bench/course.py) with queues of 1, 10 and 100 assets waiting."""

from __future__ import annotations

import copy
import datetime
import importlib
import json
import os
from typing import Any

from bench import course
from tests.fakes.cloudinary import FakeCloudinary
from tests.faults.scenarios import SCENARIOS
from tests.helpers import API_KEY, CLOUD_NAME, SECRET, signed_request

QUEUE_SIZES = (1, 10, 100)
BULK = 250  # assets one bulk tag change in the Media Library names (the Admin/Upload tags calls take 1,000)


class _StampScenario:
    """A metadata_stamp scenario: its ``resource_tags_changed`` sample naming ``assets`` assets, triggered
    ``minutes_late`` before it arrives (metadata_stamp reads the current stamps first from 1 minute on)."""

    function = "metadata_stamp"
    env: dict[str, str] = {}

    def __init__(self, name: str, assets: int, minutes_late: float) -> None:
        self.name, self.assets, self.minutes_late = name, assets, minutes_late
        self.notification: dict[str, Any] = {}

    def _payload(self) -> dict[str, Any]:
        from tests.helpers import sample

        payload = json.loads(sample("metadata_stamp", "resource_tags_changed"))
        template = payload["resources"][0]
        payload["resources"] = [{**template, "asset_id": f"{number:032x}", "public_id": f"shop/bulk/item_{number}"}
                                for number in range(self.assets)]
        when = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=self.minutes_late)
        payload["notification_context"]["triggered_at"] = when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        return payload

    def setup(self, fake: Any) -> None:
        self.notification = self._payload()  # dated now: "on time" and "late" are relative to the run
        for resource in self.notification["resources"]:
            fake.add_asset(resource["public_id"], tags=["featured"], metadata={})


STAMP_SCENARIOS = [
    _StampScenario("metadata_stamp: tag change stamped, on time", 1, 0),
    _StampScenario("metadata_stamp: tag change stamped, late (Cloudinary's retry 9 minutes on)", 1, 9),
    _StampScenario(f"metadata_stamp: bulk tag change of {BULK} assets stamped, late", BULK, 9),
]


def _stand_in() -> Any:
    """The Cloudinary stand-in, with the two calls metadata_stamp makes that the fault suite's functions do not:
    the Admin API listing by public IDs (with metadata) and the Upload API ``metadata`` write."""
    from bench.accepted import _with_metadata

    class StandIn(_with_metadata(FakeCloudinary)):  # type: ignore[misc]
        def _apply(self, call: Any) -> tuple[int, dict[str, Any]]:
            if call.api == "admin" and call.action == "list" and "public_ids[]" in call.params:
                resource_type, delivery_type = call.path.split("/")[4:6]
                found = [self.asset(public_id, resource_type=resource_type, type=delivery_type)
                         for public_id in call.params["public_ids[]"]]
                return 200, {"resources": [{**self._listed(asset, call.params),
                                            "metadata": copy.deepcopy(asset.get("metadata", {}))}
                                           for asset in found if asset is not None]}
            return super()._apply(call)

    return StandIn(CLOUD_NAME)


def measure() -> list[dict]:
    rows = []
    saved = dict(os.environ)
    try:
        os.environ["CLOUDINARY_NOTIFICATION_SECRETS"] = SECRET
        for scenario in [*SCENARIOS, *STAMP_SCENARIOS]:
            fake = _stand_in()
            prefix = fake.start()
            os.environ.update(scenario.env)
            os.environ["CLOUDINARY_URL"] = f"cloudinary://{API_KEY}:{SECRET}@{CLOUD_NAME}?upload_prefix={prefix}"
            try:
                scenario.setup(fake)
                handle = importlib.import_module(f"functions.{scenario.function}.handler").handle
                response = handle(signed_request(scenario.notification))
                # a retry (or a resend) of the same notification after the work is done
                repeat = len(fake.calls)
                handle(signed_request(scenario.notification))
                row = {
                    "scenario": scenario.name, "status": response.status,
                    "admin": sum(1 for c in fake.calls[:repeat] if c.api == "admin"),
                    "upload": sum(1 for c in fake.calls[:repeat] if c.api == "upload"),
                    "repeat_admin": sum(1 for c in fake.calls[repeat:] if c.api == "admin"),
                    "repeat_writes": sum(1 for c in fake.calls[repeat:] if c.is_write),
                }
            finally:
                fake.stop()
                for name in scenario.env:
                    os.environ.pop(name, None)
            if response.status != 200 or response.body.get("status") not in ("done", "ignored"):
                raise RuntimeError(f"{scenario.name}: answered {response.status} {response.body!r}")
            if scenario.name in course.COURSE:
                named = scenario.notification["public_id"]
                row["course"] = {size: course.run(scenario.name, named, size) for size in QUEUE_SIZES}
            else:
                row["course_note"] = course.NOT_IN_THE_COURSE.get(scenario.name, "not a course flow")
            rows.append(row)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return rows


def _course_cell(runs: dict[int, dict[str, int]]) -> str:
    cells = []
    for size, run in runs.items():
        left = f", {run['unhandled']} left unhandled" if run["unhandled"] else ""
        cells.append(f"queue of {size}: {run['admin']} Admin + {run['upload']} Upload{left}")
    return "; ".join(cells)


def report(rows: list[dict]) -> str:
    lines = [
        "## Cloudinary API calls per notification",
        "",
        "Command: `python -m bench` (section `bench/api_calls.py`): each scenario of the fault suite, run against "
        "the stateful Cloudinary stand-in, which counts the requests; then the same notification again (a retry "
        "or a resend). The Admin API is the rate-limited one (a few hundred calls an hour on small plans).",
        "",
        "The course column is measured too: the course's webhooks (cloudinary-training/cust-training-2022, "
        "read 2026-11) re-enacted call for call with the Python SDK on the same stand-in (`bench/course.py`), "
        "with that many assets waiting in the notification's queue. They process whole queues, not the "
        "notification's asset, and never read past the first page of 10: in a longer queue the rest is never "
        "handled, and an approved video stays approved, so every later notification updates the same first 10 "
        "again. Calls are those of the notification (its repeat makes the same ones); \"left unhandled\": assets "
        "of the queue still not acted on after both.",
        "",
        "| scenario | ours: Admin API | ours: Upload API | ours, repeated: Admin / writes | the course (measured) |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        theirs = _course_cell(row["course"]) if "course" in row else row["course_note"]
        lines.append(f"| {row['scenario']} | {row['admin']} | {row['upload']} | {row['repeat_admin']} / "
                     f"{row['repeat_writes']} | {theirs} |")
    over = [row["scenario"] for row in rows if row["admin"] > 1]
    lines += ["", "At most one rate-limited Admin API call per notification: "
              + ("holds in every scenario." if not over else f"**not met** in {', '.join(over)}.")]
    if over:
        lines += ["", "metadata_stamp reads the current stamps before writing a late notification's (so a retry "
                  "never moves a stamp backwards), with the one Admin API call that lists assets by public ID: "
                  "100 assets a call. The Search API would take 500 a call, but its index lags the writes by "
                  "seconds, so a stamp written just before could be missed and moved backwards. Late notifications "
                  "are Cloudinary's retries; an on-time one, however many assets it names, makes no Admin call.",
                  "", "Not counted here, the same kind of read: face_tagging's training path (a tag change naming "
                  "training photos) looks the assets up by asset ID, 100 a call, so one bulk change naming more "
                  "than 100 of them also makes more than one Admin call."]
    return "\n".join(lines) + "\n"
