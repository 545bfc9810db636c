"""Cloudinary API calls per notification, counted on the stateful stand-in (tests/fakes/cloudinary.py), for
each scenario of the fault suite (tests/faults/scenarios.py), and the same for the course's moderation
webhooks re-enacted on the same stand-in (bench/course.py) with queues of 1, 10 and 100 assets waiting."""

from __future__ import annotations

import importlib
import os

from bench import course
from tests.fakes.cloudinary import FakeCloudinary
from tests.faults.scenarios import SCENARIOS
from tests.helpers import API_KEY, CLOUD_NAME, SECRET, signed_request

QUEUE_SIZES = (1, 10, 100)


def measure() -> list[dict]:
    rows = []
    saved = dict(os.environ)
    try:
        os.environ["CLOUDINARY_NOTIFICATION_SECRETS"] = SECRET
        for scenario in SCENARIOS:
            fake = FakeCloudinary(CLOUD_NAME)
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
            if scenario.name in course.COURSE:
                named = scenario.notification["public_id"]
                row["course"] = {size: course.run(scenario.name, named, size) for size in QUEUE_SIZES}
            else:
                row["course_note"] = course.NOT_IN_THE_COURSE.get(scenario.name, "n/a")
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
    return "\n".join(lines) + "\n"
