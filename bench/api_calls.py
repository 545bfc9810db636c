"""Cloudinary API calls per notification, counted on the stateful test server (tests/fakes/cloudinary.py),
for each scenario of the fault suite (tests/faults/scenarios.py), against the course's design, which
listed both moderation queues on every notification and then called once per queued asset."""

from __future__ import annotations

import importlib
import os

from tests.fakes.cloudinary import FakeCloudinary
from tests.faults.scenarios import SCENARIOS
from tests.helpers import API_KEY, CLOUD_NAME, SECRET, signed_request

QUEUE_SIZES = (10, 100)


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
                rows.append({
                    "scenario": scenario.name, "status": response.status,
                    "admin": fake.count("admin") - sum(1 for c in fake.calls[repeat:] if c.api == "admin"),
                    "upload": fake.count("upload") - sum(1 for c in fake.calls[repeat:] if c.api == "upload"),
                    "repeat_admin": sum(1 for c in fake.calls[repeat:] if c.api == "admin"),
                    "repeat_writes": sum(1 for c in fake.calls[repeat:] if c.is_write),
                    "moderation": scenario.function in ("bg_removal_approval", "video_moderation"),
                })
            finally:
                fake.stop()
                for name in scenario.env:
                    os.environ.pop(name, None)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return rows


def report(rows: list[dict]) -> str:
    lines = [
        "## Cloudinary API calls per notification",
        "",
        "Command: `python -m bench` (section `bench/api_calls.py`): each scenario of the fault suite, run against",
        "the stateful Cloudinary test server, which counts the requests. The Admin API is the rate-limited one",
        "(a few hundred calls an hour on small plans). The course's moderation design listed both queues on",
        "every notification (2 Admin calls) and then updated or deleted every asset it found (1 call each).",
        "",
        "| scenario | Admin API | Upload API | repeat of the same notification: Admin / writes "
        f"| course design, queue of {QUEUE_SIZES[0]} / {QUEUE_SIZES[1]} |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        course = (" / ".join(str(2 + size) for size in QUEUE_SIZES) + " calls") if row["moderation"] else "n/a"
        lines.append(f"| {row['scenario']} | {row['admin']} | {row['upload']} | {row['repeat_admin']} / "
                     f"{row['repeat_writes']} | {course} |")
    return "\n".join(lines) + "\n"
