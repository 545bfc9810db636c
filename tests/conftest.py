"""Fixtures shared by every test: a clean environment and local test servers that stand in for
Cloudinary and SendGrid (the SDKs do not use ``requests``, so ``responses`` cannot see them).

Tests never touch the network: Cloudinary is reached through ``CLOUDINARY_URL=...?upload_prefix=`` pointing
at a pytest-httpserver on 127.0.0.1, SendGrid through ``SENDGRID_API_HOST``.
"""

from __future__ import annotations

import os

import pytest

from tests.helpers import API_KEY, CLOUD_NAME, ROOT, SECRET

# Every variable the core reads, plus every one a function declares (its @webhook requires/optional): each
# test starts with none of them set.
_CORE_VARS = {
    "CLOUDINARY_URL", "CLOUDINARY_NOTIFICATION_SECRETS", "CLOUDINARY_WEBHOOKS_DEMO", "CLOUDINARY_CLOUD_NAME",
    "CLOUDINARY_TIMEOUT_SECONDS", "DRY_RUN", "SENDGRID_TIMEOUT_SECONDS", "WEBHOOK_MAX_BODY_BYTES",
    "WEBHOOK_MAX_AGE_SECONDS", "WEBHOOK_MAX_FUTURE_SECONDS", "WEBHOOK_TIME_BUDGET_SECONDS", "VERCEL", "NETLIFY",
}
_PREFIXES = ("AWS_", "IDEMPOTENCY_", "ASSET_SYNC_")


def _declared_variables() -> set[str]:
    import importlib

    declared = set()
    for handler in sorted((ROOT / "functions").glob("*/handler.py")):
        webhook = importlib.import_module(f"functions.{handler.parent.name}.handler").handle
        declared.update(webhook.requires, webhook.optional, webhook.serverless_requires)
    return declared


_ENV_VARS = _CORE_VARS | _declared_variables()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests parametrized over PostgreSQL need the throwaway server `make test` starts: mark them, so that
    `make test-fast` (-m "not postgres ...") can leave them out."""
    for item in items:
        if "postgres" in item.nodeid.lower():
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path) -> pytest.MonkeyPatch:
    from shared import idempotency

    for name in list(os.environ):
        if name in _ENV_VARS or name.startswith(_PREFIXES):
            monkeypatch.delenv(name, raising=False)
    # botocore must never find real credentials or config files on the machine
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    # the local idempotency store of each test is its own, never the repository's .local/
    idempotency.reset()
    monkeypatch.setattr(idempotency, "DEFAULT_SQLITE_PATH", str(tmp_path / "idempotency.sqlite3"))
    monkeypatch.setenv("INSPECTOR_DB", str(tmp_path / "inspector.sqlite3"))  # and its own inspector store
    yield monkeypatch
    idempotency.reset()


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
