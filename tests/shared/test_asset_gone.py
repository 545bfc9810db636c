"""A 404 a function does not handle means the asset went away meanwhile: 200 ignored, never a 500 (which
would make Cloudinary retry a notification no retry can complete). Found by the fault suite."""

from __future__ import annotations

from shared.cloudinary_api import AssetNotFound
from shared.errors import AssetGone
from shared.webhook import webhook
from tests.helpers import signed_request


@webhook(accepts={"upload"}, name="gone_probe")
def _writes_to_a_vanished_asset(notification, ctx):
    ctx.act("explicit", lambda: (_ for _ in ()).throw(AssetNotFound("Resource not found - x")))
    return ctx.done()


def test_uncaught_asset_not_found_is_answered_200_ignored(signing_secret, caplog):
    response = _writes_to_a_vanished_asset(signed_request({"notification_type": "upload", "public_id": "x"}))

    assert response.status == 200
    assert response.body == {"status": "ignored", "reason": "the asset no longer exists"}
    assert '"outcome": "ignored"' in caplog.text


def test_asset_not_found_is_an_asset_gone():
    assert issubclass(AssetNotFound, AssetGone)
