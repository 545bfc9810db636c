"""One realistic notification per function branch, with the Cloudinary state it meets and the state it
must leave. The fault suite breaks each outbound call of each scenario in every way Cloudinary can fail;
the benchmarks count the calls of the same scenarios."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.cloudinary import FakeCloudinary


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


SCENARIOS: list[Scenario] = [
    Scenario(
        name="hello_tag: upload gets the tag",
        function="hello_tag",
        notification={"notification_type": "upload", "public_id": "shop/lamp", "resource_type": "image",
                      "type": "upload", "tags": ["catalog"], "version": 1700000000},
        setup=_hello_tag_setup,
        done=lambda fake: fake.asset("shop/lamp")["tags"] == ["catalog", "Hello World!"],
    ),
]
