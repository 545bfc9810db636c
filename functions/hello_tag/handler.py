"""Tag every new upload: the AWS blueprint's "Hello World" listener.

Trigger   notification_url on upload (or an upload preset, or a global "upload" trigger)
Env       CLOUDINARY_URL; HELLO_TAG (optional, default "Hello World!")
Calls     Upload API tags/add: 1 per new upload, 0 when the payload already carries the tag
Responds  200 done (tag added) | 200 ignored (other types, already tagged, asset gone) | 400 no public_id
          | 401 bad signature | 500 not configured | 503 Cloudinary rate limit, 5xx or timeout
"""

from __future__ import annotations

from shared import cloudinary_api
from shared.assets import asset_named_by
from shared.webhook import Context, Notification, Result, webhook

DEFAULT_TAG = "Hello World!"


@webhook(accepts={"upload"}, requires=("CLOUDINARY_URL",), optional=("HELLO_TAG",))
def handle(notification: Notification, ctx: Context) -> Result:
    asset = asset_named_by(notification)  # resource_type, type and public_id checked: they go into API paths
    tag = ctx.settings.get("HELLO_TAG") or DEFAULT_TAG

    # Cloudinary retries and users resend: an asset that already carries the tag needs no call.
    tags = notification.get("tags")
    if isinstance(tags, list) and tag in tags:
        return ctx.ignored("already tagged", tag=tag)

    # The Upload API's tags call: no read-modify-write, so a person's or another notification's tags survive.
    # (Deleted meanwhile: AssetNotFound, which the wrapper answers 200 ignored; a retry would not change it.)
    ctx.act("add_tag", lambda: cloudinary_api.add_tag(tag, asset), public_id=asset.public_id, tag=tag)
    return ctx.done(tag=tag)


handler = handle.lambda_handler  # AWS Lambda (Function URL, API Gateway) entry point
app = handle.wsgi_app  # WSGI entry point: Vercel, the local server, any WSGI host
