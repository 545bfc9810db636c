"""Fixtures shared by every test: a clean environment and local test servers that stand in for
Cloudinary and SendGrid (the SDKs do not use ``requests``, so ``responses`` cannot see them).

Tests never touch the network: Cloudinary is reached through ``CLOUDINARY_URL=...?upload_prefix=`` pointing
at a pytest-httpserver on 127.0.0.1, SendGrid through ``SENDGRID_API_HOST``.
"""

from __future__ import annotations

import os

import pytest

from tests.helpers import API_KEY, CLOUD_NAME, SECRET

# Every variable a function or the core reads; each test starts with none of them set.
_ENV_VARS = [
    "CLOUDINARY_URL", "CLOUDINARY_NOTIFICATION_SECRETS", "CLOUDINARY_WEBHOOKS_DEMO", "CLOUDINARY_CLOUD_NAME",
    "CLOUDINARY_TIMEOUT_SECONDS", "DRY_RUN", "SENDGRID_API_KEY", "SENDGRID_API_HOST",
    "SENDGRID_TIMEOUT_SECONDS", "FROM_VERIFIED_SENDER", "TO_RECIPIENTS", "HELLO_TAG",
    "WEBHOOK_MAX_BODY_BYTES", "WEBHOOK_MAX_AGE_SECONDS", "WEBHOOK_MAX_FUTURE_SECONDS",
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name in _ENV_VARS or name.startswith(("BG_REMOV", "VIDEO_MODERATION", "FACE_", "REKOGNITION",
                                                 "ASSET_SYNC", "AWS_", "DATABASE_URL")):
            monkeypatch.delenv(name, raising=False)
    # botocore must never find real credentials or config files on the machine
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    return monkeypatch


@pytest.fixture
def signing_secret(monkeypatch: pytest.MonkeyPatch) -> str:
    """A signing secret configured the way a deployment without CLOUDINARY_URL would have it."""
    monkeypatch.setenv("CLOUDINARY_NOTIFICATION_SECRETS", SECRET)
    return SECRET


@pytest.fixture
def cloudinary_server(httpserver, monkeypatch: pytest.MonkeyPatch):
    """A local stand-in for Cloudinary's API. CLOUDINARY_URL points the real SDK at it."""
    prefix = httpserver.url_for("").rstrip("/")
    monkeypatch.setenv("CLOUDINARY_URL", f"cloudinary://{API_KEY}:{SECRET}@{CLOUD_NAME}?upload_prefix={prefix}")
    return httpserver


@pytest.fixture
def sendgrid_server(httpserver, monkeypatch: pytest.MonkeyPatch):
    """A local stand-in for SendGrid's API, reached by the real SDK through SENDGRID_API_HOST."""
    monkeypatch.setenv("SENDGRID_API_HOST", httpserver.url_for("").rstrip("/"))
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.test-key")
    return httpserver


@pytest.fixture
def fake_cloudinary(monkeypatch: pytest.MonkeyPatch):
    """A stateful Cloudinary stand-in (tests/fakes/cloudinary.py) that the real SDK talks to."""
    from tests.fakes.cloudinary import FakeCloudinary

    fake = FakeCloudinary(CLOUD_NAME)
    prefix = fake.start()
    monkeypatch.setenv("CLOUDINARY_URL", f"cloudinary://{API_KEY}:{SECRET}@{CLOUD_NAME}?upload_prefix={prefix}")
    yield fake
    fake.stop()
