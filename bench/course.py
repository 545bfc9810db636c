"""The course's moderation webhooks, re-enacted call for call with the Python SDK against the same stand-in as
ours (tests/fakes/cloudinary.py), so that their API calls are counted on a run, not computed by a formula.

What each does, read from Cloudinary's training repository (cloudinary-training/cust-training-2022, 2026-11):

- Google AI video moderation (``webhooks/google-ai-video-moderation/process-queues.js``): whatever the
  notification, list the *approved* queue (Admin API ``resources_by_moderation``, ``google_video_moderation``,
  videos, no ``max_results``: Cloudinary's default page of 10) and make each listed video public with the
  Admin API ``update`` (``access_control`` anonymous); then list the *rejected* queue the same way and destroy
  the first video listed (its loop returns after the first ``destroy``).
- Background removal, approved (``webhooks/functions/webhook_bgremoval_make_public_if_approved_manual_queue.js``):
  list the ``manual`` *approved* queue (default page of 10) and rename each listed image to
  ``bg-removed/<public_id>`` (``authenticated`` -> ``upload``).
- Background removal, cut-out ready (``..._put_in_manual_moderation_pending_queue.js``): one ``explicit`` with
  ``moderation: manual`` on the notification's image.
- A rejected cut-out: the course has no function for it.

No page past the first is ever read: in a queue of more than 10, the rest is never handled, and since an
approved video stays in the approved queue, every later notification lists and updates the same first 10
again. The queues are built on the stand-in, which lists 10 per page unless asked for more, as Cloudinary does.
"""

from __future__ import annotations

from typing import Any

from tests.fakes.cloudinary import FakeCloudinary

PAGE = 10  # Cloudinary's default max_results: what a listing without max_results returns


def _sdk() -> Any:
    from shared import cloudinary_api

    return cloudinary_api.sdk()


def video_queues() -> None:
    """process-queues.js: the approved queue made public, then the first rejected video destroyed."""
    sdk = _sdk()
    approved = sdk.api.resources_by_moderation("google_video_moderation", "approved", resource_type="video")
    for video in approved.get("resources", []):
        sdk.api.update(video["public_id"], resource_type="video", access_control=[{"access_type": "anonymous"}],
                       invalidate=True)
    rejected = sdk.api.resources_by_moderation("google_video_moderation", "rejected", resource_type="video")
    for video in rejected.get("resources", [])[:1]:  # the course's loop returns after its first destroy
        sdk.uploader.destroy(video["public_id"], invalidate=True, resource_type="video")


def bg_make_public_if_approved() -> None:
    sdk = _sdk()
    approved = sdk.api.resources_by_moderation("manual", "approved", resource_type="image")
    for image in approved.get("resources", []):
        try:
            sdk.uploader.rename(image["public_id"], f"bg-removed/{image['public_id']}", resource_type="image",
                                type="authenticated", to_type="upload", invalidate=True)
        except Exception:  # noqa: S112 - the course swallows a failed rename and goes on
            continue


def bg_put_in_pending_queue(public_id: str) -> None:
    _sdk().uploader.explicit(public_id, type="authenticated", moderation="manual",
                             notification_url="https://hooks.example.com/course")


def _videos(fake: FakeCloudinary, status: str, count: int, named: str) -> None:
    for index in range(count):
        public_id = named if index == 0 else f"queue/{status}-{index:03d}"
        fake.add_asset(public_id, resource_type="video", format="mp4", access_control=[{"access_type": "token"}],
                       moderation=[{"kind": "google_video_moderation", "status": status}])


def _images(fake: FakeCloudinary, count: int, named: str) -> None:
    for index in range(count):
        public_id = named if index == 0 else f"queue/cutout-{index:03d}"
        fake.add_asset(public_id, type="authenticated", format="png",
                       moderation=[{"kind": "manual", "status": "approved"}])


# scenario name (as tests/faults/scenarios.py names it) -> (build the queue of size n, run, count unhandled)
def _video_approved(fake: FakeCloudinary, n: int, named: str) -> int:
    return sum(1 for asset in fake.assets.values() if asset["resource_type"] == "video"
               and asset.get("access_control") == [{"access_type": "token"}])


def _video_rejected(fake: FakeCloudinary, n: int, named: str) -> int:
    return sum(1 for asset in fake.assets.values() if asset["resource_type"] == "video")


def _bg_approved(fake: FakeCloudinary, n: int, named: str) -> int:
    return sum(1 for asset in fake.assets.values() if asset["type"] == "authenticated")


COURSE = {
    "video_moderation: approved video made public": (
        lambda fake, n, named: _videos(fake, "approved", n, named), lambda named: video_queues(), _video_approved),
    "video_moderation: rejected video deleted": (
        lambda fake, n, named: _videos(fake, "rejected", n, named), lambda named: video_queues(), _video_rejected),
    "bg_removal_approval: approved image published": (
        lambda fake, n, named: _images(fake, n, named), lambda named: bg_make_public_if_approved(), _bg_approved),
    "bg_removal_approval: cut-out queued for review": (
        lambda fake, n, named: [fake.add_asset(named if index == 0 else f"queue/new-{index:03d}", type="authenticated",
                                               format="png") for index in range(n)],
        lambda named: bg_put_in_pending_queue(named), lambda fake, n, named: 0),
}
NOT_IN_THE_COURSE = {
    "bg_removal_approval: rejected image deleted": "the course has no function for a rejected cut-out",
    "hello_tag: upload gets the tag": "not a course flow",
    "video_moderation: approved authenticated video made a public upload":
        "the course's video webhook only updates access_control (as in the approved row above)",
    "video_moderation: rejected video kept, restricted and tagged": "the course only deletes rejected videos",
}


def run(scenario: str, named: str, queue: int) -> dict[str, int]:
    """The course's logic for ``scenario`` with ``queue`` assets waiting (the notification's own among them),
    twice (the notification, then a retry or the next one): Admin and Upload API calls of each, and the assets
    of the queue left unhandled after both. Sets CLOUDINARY_URL (the caller restores the environment)."""
    import os

    from tests.helpers import API_KEY, CLOUD_NAME, SECRET

    build, act, unhandled = COURSE[scenario]
    fake = FakeCloudinary(CLOUD_NAME)
    prefix = fake.start()
    os.environ["CLOUDINARY_URL"] = f"cloudinary://{API_KEY}:{SECRET}@{CLOUD_NAME}?upload_prefix={prefix}"
    try:
        build(fake, queue, named)
        act(named)
        first = {"admin": fake.count("admin"), "upload": fake.count("upload")}
        act(named)
        return {"admin": first["admin"], "upload": first["upload"],
                "repeat_admin": fake.count("admin") - first["admin"],
                "repeat_upload": fake.count("upload") - first["upload"],
                "unhandled": unhandled(fake, queue, named)}
    finally:
        fake.stop()
