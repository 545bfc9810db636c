"""Publish videos Google's AI moderation approved; delete (or keep, tagged) the ones it rejected.

Trigger   notification_url on a video upload with moderation="google_video_moderation" and
          access_control=[{"access_type": "token"}] (notification_type "moderation", and "upload")
Env       CLOUDINARY_URL; VIDEO_MODERATION_ON_REJECT (optional: delete | keep, default delete);
          VIDEO_MODERATION_REJECTED_TAG (optional, default video_moderation_rejected)
Calls     1 Admin API call per decided notification (the details that confirm it); every write is Upload API:
          approved: + explicit access_control anonymous = 1 (none when already public; authenticated: explicit
          if token-restricted, then rename = 1 or 2); rejected: + destroy = 1 (keep: + explicit access_control
          token if viewable without a token, + tags if untagged); pending and all else: none
Responds  200 done (published, deleted, kept) | 200 ignored (pending, other types and kinds, status changed,
          already done, video gone) | 400 no public_id | 401 bad signature | 500 not configured
          | 503 Cloudinary rate limit, 5xx or timeout (Cloudinary retries)
"""

from __future__ import annotations

from functions.video_moderation.moderation import DECIDED, Policy, google_status, settle, video_named_by
from shared.webhook import Context, Notification, Result, webhook


@webhook(accepts={"moderation", "upload"}, requires=("CLOUDINARY_URL",),
         optional=("VIDEO_MODERATION_ON_REJECT", "VIDEO_MODERATION_REJECTED_TAG"))
def handle(notification: Notification, ctx: Context) -> Result:
    # Both shapes Cloudinary sends: a "moderation" notification with flat moderation_kind/_status, or an
    # "upload" notification whose moderation list holds the result (usually still pending for videos).
    status = google_status(notification)
    if status is None:
        return ctx.ignored("no Google video moderation result in this notification")
    ctx.note(moderation=status)
    if status not in DECIDED:
        return ctx.ignored(f"the Google video moderation is {status}; a later notification will decide",
                           moderation=status)

    video = video_named_by(notification)
    if video.resource_type != "video":
        return ctx.ignored(f"not a video ({video.resource_type})", moderation=status)
    policy = Policy.from_settings(ctx.settings)

    # Act only on the asset named here, and only once the Admin API confirms its current status: a queue
    # is never listed per notification, and nothing is published or deleted on the payload's word alone.
    # Without credentials (local demo mode) the check is reported instead of made.
    outcome = settle(video, status, policy, ctx.act, can_read=ctx.can_read_cloudinary)
    ctx.note(admin_calls=outcome.calls.admin, upload_calls=outcome.calls.upload)
    if outcome.status == "ignored":
        return ctx.ignored(outcome.reason or "nothing to do", moderation=status, public_id=video.public_id)
    return ctx.done(moderation=status, public_id=video.public_id)


handler = handle.lambda_handler  # AWS Lambda (Function URL, API Gateway) entry point
app = handle.wsgi_app  # WSGI entry point: Vercel, the local server, any WSGI host
