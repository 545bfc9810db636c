"""One realistic notification per function branch, with the Cloudinary state it meets and the state it
must leave. The fault suite breaks each outbound call of each scenario in every way Cloudinary can fail;
the benchmarks count the calls of the same scenarios."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.cloudinary import FakeCloudinary
from tests.helpers import sample


@dataclass
class Scenario:
    name: str
    function: str
    notification: dict[str, Any]
    setup: Callable[[FakeCloudinary], None]
    done: Callable[[FakeCloudinary], bool]  # the work is complete, exactly as the happy path leaves it
    env: dict[str, str] = field(default_factory=dict)
    status_on_not_found: int = 200  # the asset vanished meanwhile: nothing to do, and Cloudinary must not retry


def _hello_tag_setup(fake: FakeCloudinary) -> None:
    fake.add_asset("shop/lamp", tags=["catalog"])


def _sample(function: str, name: str) -> dict[str, Any]:
    return json.loads(sample(function, name))


def _authenticated_image(notification: dict[str, Any], status: str | None) -> Callable[[FakeCloudinary], None]:
    """The image the notification names, authenticated, with this manual moderation status."""
    def setup(fake: FakeCloudinary) -> None:
        moderation = [{"kind": "manual", "status": status}] if status else []
        fake.add_asset(notification["public_id"], type="authenticated", format="png",
                       asset_id=notification["asset_id"], moderation=moderation)
    return setup


def _restricted_video(notification: dict[str, Any], status: str, *, delivery_type: str = "upload",
                      access_type: str = "token") -> Callable[[FakeCloudinary], None]:
    """The video the notification names, token-restricted (or viewable: ``access_type="anonymous"``), with
    this Google moderation status."""
    def setup(fake: FakeCloudinary) -> None:
        fake.add_asset(notification["public_id"], resource_type="video", type=delivery_type, format="mov",
                       asset_id=notification["asset_id"], access_control=[{"access_type": access_type}],
                       moderation=[{"kind": "google_video_moderation", "status": status}])
    return setup


def _video(fake: FakeCloudinary, notification: dict[str, Any], delivery_type: str = "upload") -> dict[str, Any]:
    return fake.asset(notification["public_id"], resource_type="video", type=delivery_type) or {}


BG_QUEUE = _sample("bg_removal_approval", "info_complete")
BG_APPROVED = _sample("bg_removal_approval", "moderation_approved")
BG_REJECTED = _sample("bg_removal_approval", "moderation_rejected")
VIDEO_APPROVED = _sample("video_moderation", "moderation_approved")
VIDEO_REJECTED = _sample("video_moderation", "moderation_rejected")
VIDEO_AUTHENTICATED = _sample("video_moderation", "moderation_approved_authenticated")


SCENARIOS: list[Scenario] = [
    Scenario(
        name="hello_tag: upload gets the tag",
        function="hello_tag",
        notification={"notification_type": "upload", "public_id": "shop/lamp", "resource_type": "image",
                      "type": "upload", "tags": ["catalog"], "version": 1700000000},
        setup=_hello_tag_setup,
        done=lambda fake: fake.asset("shop/lamp")["tags"] == ["catalog", "Hello World!"],
    ),
    Scenario(
        name="bg_removal_approval: cut-out queued for review",
        function="bg_removal_approval",
        notification=BG_QUEUE,
        setup=_authenticated_image(BG_QUEUE, None),
        done=lambda fake: fake.asset(BG_QUEUE["public_id"], type="authenticated")["moderation"]
        == [{"kind": "manual", "status": "pending"}],
        env={"BG_REMOVAL_NOTIFICATION_URL": "https://hooks.example.com/api/bg_removal_approval"},
    ),
    Scenario(
        name="bg_removal_approval: approved image published",
        function="bg_removal_approval",
        notification=BG_APPROVED,
        setup=_authenticated_image(BG_APPROVED, "approved"),
        done=lambda fake: fake.asset(f"bg-removed/{BG_APPROVED['public_id']}") is not None
        and fake.asset(BG_APPROVED["public_id"], type="authenticated") is None,
    ),
    Scenario(
        name="bg_removal_approval: rejected image deleted",
        function="bg_removal_approval",
        notification=BG_REJECTED,
        setup=_authenticated_image(BG_REJECTED, "rejected"),
        done=lambda fake: fake.asset(BG_REJECTED["public_id"], type="authenticated") is None,
        env={"BG_REMOVAL_ON_REJECT": "delete"},
    ),
    Scenario(
        name="video_moderation: approved video made public",
        function="video_moderation",
        notification=VIDEO_APPROVED,
        setup=_restricted_video(VIDEO_APPROVED, "approved"),
        done=lambda fake: _video(fake, VIDEO_APPROVED).get("access_control") == [{"access_type": "anonymous"}],
    ),
    Scenario(
        name="video_moderation: approved authenticated video made a public upload",
        function="video_moderation",
        notification=VIDEO_AUTHENTICATED,
        setup=_restricted_video(VIDEO_AUTHENTICATED, "approved", delivery_type="authenticated"),
        done=lambda fake: not _video(fake, VIDEO_AUTHENTICATED, "authenticated")
        and _video(fake, VIDEO_AUTHENTICATED).get("access_control") == [{"access_type": "anonymous"}],
    ),
    Scenario(
        name="video_moderation: rejected video deleted",
        function="video_moderation",
        notification=VIDEO_REJECTED,
        setup=_restricted_video(VIDEO_REJECTED, "rejected"),
        done=lambda fake: fake.asset(VIDEO_REJECTED["public_id"], resource_type="video") is None,
    ),
    Scenario(
        name="video_moderation: rejected video kept, restricted and tagged",
        function="video_moderation",
        notification=VIDEO_REJECTED,
        setup=_restricted_video(VIDEO_REJECTED, "rejected", access_type="anonymous"),
        done=lambda fake: _video(fake, VIDEO_REJECTED).get("access_control") == [{"access_type": "token"}]
        and _video(fake, VIDEO_REJECTED).get("tags") == ["video_moderation_rejected"],
        env={"VIDEO_MODERATION_ON_REJECT": "keep"},
    ),
]
