"""Fixtures for video_moderation's tests: a stateful fake Cloudinary on the local test server."""

from __future__ import annotations

import pytest

from tests.functions.video_moderation.fake_cloudinary import FakeCloudinary


@pytest.fixture
def cloudinary(cloudinary_server) -> FakeCloudinary:
    return FakeCloudinary(cloudinary_server)
