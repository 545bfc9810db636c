"""Background removal with a person's approval: queue each cut-out for review, then publish or reject it.

Trigger   notification_url on an upload with type="authenticated", background_removal="cloudinary_ai";
          the function hands its own URL to the moderation queue, so the reviewer's decision comes back here
          ("info" cloudinary_ai, then "moderation" manual; "upload" and everything else: 200 ignored)
Env       CLOUDINARY_URL; optional BG_REMOVAL_NOTIFICATION_URL (else the URL this request came to),
          BG_REMOVED_FOLDER (bg-removed), BG_REMOVAL_ON_REJECT (keep | delete), BG_REMOVAL_AUTO_APPROVE
          (a confidence 0-1; off), BG_REMOVAL_REVIEWER_EMAIL (+ SENDGRID_API_KEY, FROM_VERIFIED_SENDER)
Calls     Admin API resource details: 1 per acted-on notification (at most 1 in every case; never a
          queue listing). Upload API: explicit (queue) | rename
          (publish) | destroy (reject=delete) | tags/add (markers): one write, two at most
Responds  200 done (queued, published, tagged, deleted) | 200 ignored (other types and kinds, asset gone,
          already done, decision changed since) | 400 field missing | 401 bad signature
          | 500 not configured | 503 Cloudinary (or SendGrid) rate limit, 5xx or timeout: Cloudinary retries
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

from shared import cloudinary_api, sendgrid_api
from shared.assets import AssetRef, asset_named_by
from shared.config import address_list
from shared.errors import ConfigError
from shared.webhook import Context, Notification, Result, webhook

TYPE_CHECKING = False  # cold start: see docs/DESIGN.md §8
if TYPE_CHECKING:
    from typing import Any

DEFAULT_FOLDER = "bg-removed"
# Visible markers, so a person browsing the Media Library sees what happened and why.
FAILED_TAG = "bg-removal-failed"
REJECTED_TAG = "bg-removal-rejected"
CONFLICT_TAG = "bg-removal-conflict"
NOTIFIED_TAG = "bg-removal-reviewer-notified"
# Every call takes its timeout from the request's time budget (shared.budget): up to four calls in a row
# must fit in Cloudinary's 20 s, and a step that cannot fit is left to Cloudinary's retry.

log = logging.getLogger("cloudinary_webhooks")


@webhook(
    accepts={"info", "moderation"},
    requires=("CLOUDINARY_URL",),
    optional=("BG_REMOVAL_NOTIFICATION_URL", "BG_REMOVED_FOLDER", "BG_REMOVAL_ON_REJECT",
              "BG_REMOVAL_AUTO_APPROVE", "BG_REMOVAL_REVIEWER_EMAIL", "SENDGRID_API_KEY",
              "FROM_VERIFIED_SENDER", "SENDGRID_API_HOST"),
    demo_values={"FROM_VERIFIED_SENDER": "webhooks@example.com"},
)
def handle(notification: Notification, ctx: Context) -> Result:
    if notification.type == "info" and notification.get("info_kind") != "cloudinary_ai":
        return ctx.ignored(f"info_kind {notification.get('info_kind')!r} is not background removal")
    if notification.type == "moderation" and notification.get("moderation_kind") != "manual":
        return ctx.ignored(f"moderation_kind {notification.get('moderation_kind')!r} is not manual review")
    asset = Asset.named_by(notification)
    if asset.delivery_type != "authenticated":
        # Only a private (authenticated) original is held back for review; publishing anything else
        # would move an asset that was never this flow's to decide.
        return ctx.ignored(f"the asset is {asset.delivery_type!r}, not 'authenticated'")

    if notification.type == "info":
        if notification.require("info_status") == "complete":
            return background_removed(notification, asset, ctx)
        return background_removal_failed(notification, asset, ctx)

    decision = notification.require("moderation_status")
    if decision == "approved":
        return approved(asset, ctx)
    if decision == "rejected":
        return rejected(asset, ctx)
    return ctx.ignored(f"moderation_status {decision!r} is not a decision")


handler = handle.lambda_handler  # AWS Lambda (Function URL, API Gateway) entry point
app = handle.wsgi_app  # WSGI entry point: Vercel, the local server, any WSGI host


# --- the four stories -------------------------------------------------------------------------------

def background_removed(notification: Notification, asset: Asset, ctx: Context) -> Result:
    """The cut-out is ready: queue it for a person (or publish it when the AI is confident enough)."""
    own_url = notification_url(ctx)
    threshold = auto_approve_threshold(ctx)
    confidence = confidence_score(notification)
    reviewers = reviewer_addresses(ctx)

    resource = current_state(ctx, asset, assumed_status=None)
    if resource is None:
        return gone(ctx, asset)
    status = manual_moderation_status(resource)
    if status not in (None, "pending"):
        # A late or repeated notification must not put a decided asset back into the queue.
        return ctx.ignored(f"already reviewed: {status}")

    if status is None and threshold is not None and confidence is not None and confidence >= threshold:
        ctx.note(confidence=confidence)
        return publish(ctx, asset, resource, auto_approved=True)

    if status is None:
        ctx.act("explicit", lambda: cloudinary_api.explicit(asset, moderation="manual", notification_url=own_url),
                public_id=asset.public_id, moderation="manual", notification_url=own_url)

    # The marker tag is added only after the email went out: a retry after a SendGrid failure sends it,
    # a repeat after success does not.
    email_due = bool(reviewers) and NOTIFIED_TAG not in tags_of(resource)
    if status == "pending" and not email_due:
        return ctx.ignored("already waiting for review")
    if email_due:
        ctx.act("email_reviewer", lambda: email_reviewer(ctx, asset, reviewers, confidence),
                recipients=len(reviewers))
        ctx.act("add_tag", lambda: cloudinary_api.add_tag(NOTIFIED_TAG, asset), public_id=asset.public_id,
                tag=NOTIFIED_TAG)
    return ctx.done(outcome="queued" if status is None else "reviewer_notified", confidence=confidence)


def background_removal_failed(notification: Notification, asset: Asset, ctx: Context) -> Result:
    """No cut-out: nothing to review. Leave a marker a person can search for, and answer 200."""
    resource = current_state(ctx, asset, assumed_status=None)
    if resource is None:
        return gone(ctx, asset, maybe_published=False)
    if FAILED_TAG in tags_of(resource):
        return ctx.ignored("already marked as failed", tag=FAILED_TAG)
    ctx.act("add_tag", lambda: cloudinary_api.add_tag(FAILED_TAG, asset), public_id=asset.public_id, tag=FAILED_TAG)
    return ctx.done(outcome="marked_failed", info_status=str(notification.get("info_status")))


def approved(asset: Asset, ctx: Context) -> Result:
    """A reviewer approved: publish, after confirming that this is still the asset's current decision."""
    resource = current_state(ctx, asset, assumed_status="approved")
    if resource is None:
        return gone(ctx, asset)
    status = manual_moderation_status(resource)
    if status != "approved":
        # Notifications can arrive late: the reviewer may have changed their mind since.
        return ctx.ignored(f"the asset's moderation status is now {status or 'none'}")
    return publish(ctx, asset, resource, auto_approved=False)


def rejected(asset: Asset, ctx: Context) -> Result:
    """A reviewer rejected: keep it private and tagged (default), or delete it."""
    on_reject = ctx.settings.choice("BG_REMOVAL_ON_REJECT", "keep", ("keep", "delete"))
    resource = current_state(ctx, asset, assumed_status="rejected")
    if resource is None:
        return gone(ctx, asset, maybe_published=False)
    status = manual_moderation_status(resource)
    if status != "rejected":
        # Deleting on a stale rejection would destroy an image a reviewer has since approved.
        return ctx.ignored(f"the asset's moderation status is now {status or 'none'}")

    if on_reject == "delete":
        result = ctx.act("delete", lambda: cloudinary_api.destroy(asset), public_id=asset.public_id,
                         type=asset.delivery_type)
        if result is not None and result != "ok":
            return ctx.ignored("the asset no longer exists")
        return ctx.done(outcome="deleted")
    if REJECTED_TAG in tags_of(resource):
        return ctx.ignored("already marked as rejected", tag=REJECTED_TAG)
    ctx.act("add_tag", lambda: cloudinary_api.add_tag(REJECTED_TAG, asset), public_id=asset.public_id, tag=REJECTED_TAG)
    return ctx.done(outcome="kept", tag=REJECTED_TAG)


# --- shared steps -----------------------------------------------------------------------------------

def publish(ctx: Context, asset: Asset, resource: Mapping[str, Any], *, auto_approved: bool) -> Result:
    """Rename into the public folder as type upload. Never overwrite: a taken target is a person's call."""
    target = published_id(ctx, asset)
    try:
        ctx.act("rename", lambda: cloudinary_api.rename(asset, target, to_type="upload"), public_id=asset.public_id,
                to_public_id=target, to_type="upload")
    except cloudinary_api.AssetConflict:
        # A retry cannot fix this, so 200; the tag and the warning tell a person.
        ctx.actions[-1]["result"] = "target taken: not renamed"
        ctx.note(conflict=target)
        log.warning("bg_removal_approval: %s not published: %s already holds another asset",
                    asset.public_id, target)
        if CONFLICT_TAG in tags_of(resource):
            return ctx.ignored(f"{target} already holds another asset (the asset is tagged {CONFLICT_TAG})",
                               to_public_id=target)
        ctx.act("add_tag", lambda: cloudinary_api.add_tag(CONFLICT_TAG, asset), public_id=asset.public_id,
                tag=CONFLICT_TAG)
        return ctx.done(outcome="target_taken", to_public_id=target)
    except cloudinary_api.AssetNotFound:
        return ctx.ignored("the asset no longer exists")
    return ctx.done(outcome="published", public_id=target, auto_approved=auto_approved)


def gone(ctx: Context, asset: Asset, *, maybe_published: bool = True) -> Result:
    """The authenticated asset is not there: published by an earlier delivery of this decision (a retry, a
    resend), or deleted. Either way nothing is left to do; telling the two apart would cost a second Admin
    API call, and this function stays at one per notification."""
    if not maybe_published:  # a failed removal or a rejection never publishes
        return ctx.ignored("the asset no longer exists")
    return ctx.ignored("the asset is no longer there (published earlier, or deleted)",
                       published_id=published_id(ctx, asset))


def current_state(ctx: Context, asset: Asset, *, assumed_status: str | None) -> dict[str, Any] | None:
    """The asset as Cloudinary has it now (one Admin API call); None when it does not exist.

    Reads change nothing, so a dry run with credentials reads too and plans from the real state. Only the
    local demo, which has no credentials, plans from what the notification says.
    """
    if not ctx.can_read_cloudinary:
        ctx.act("assume_state", None, reason="no CLOUDINARY_URL: planned from the notification alone")
        moderation = [{"kind": "manual", "status": assumed_status}] if assumed_status else []
        return {"public_id": asset.public_id, "tags": [], "moderation": moderation}
    return cloudinary_api.resource(asset)


# --- reading the notification and the settings ------------------------------------------------------

class Asset(AssetRef):
    """The asset a notification names, and its signed delivery URL for the reviewer's email."""

    __slots__ = ("secure_url",)

    @classmethod
    def named_by(cls, notification: Notification) -> Asset:
        """Info and moderation notifications carry no ``type``/``resource_type``: their URL does
        (``.../image/authenticated/s--sig--/v1/id.png``). The flow's uploads are authenticated images."""
        ref = asset_named_by(notification, resource_type="image", delivery_type="authenticated")
        asset = cls(ref.public_id, ref.resource_type, ref.delivery_type, ref.asset_id)
        url = notification.get("secure_url") or notification.get("url")
        asset.secure_url = url if isinstance(url, str) and url.startswith("https://") else None
        return asset


def confidence_score(notification: Notification) -> float | None:
    data = notification.get("info_data")
    score = data.get("confidence_score") if isinstance(data, Mapping) else None
    if isinstance(score, int | float) and not isinstance(score, bool) and math.isfinite(score):
        return float(score)
    return None


def notification_url(ctx: Context) -> str:
    """Where the reviewer's decision must be sent: this function."""
    url = ctx.settings.get("BG_REMOVAL_NOTIFICATION_URL") or ctx.request.url
    if not url:
        raise ConfigError("bg_removal_approval: the function's own URL is unknown; set BG_REMOVAL_NOTIFICATION_URL")
    from urllib.parse import urlsplit

    if urlsplit(url).scheme not in ("https", "http"):
        raise ConfigError("bg_removal_approval: BG_REMOVAL_NOTIFICATION_URL must be an http(s) URL")
    return url


def auto_approve_threshold(ctx: Context) -> float | None:
    if not ctx.settings.get("BG_REMOVAL_AUTO_APPROVE"):
        return None
    threshold = ctx.settings.number("BG_REMOVAL_AUTO_APPROVE", 0.0)
    if not 0 < threshold <= 1:
        raise ConfigError("bg_removal_approval: BG_REMOVAL_AUTO_APPROVE must be a confidence above 0, at most 1")
    return threshold


def reviewer_addresses(ctx: Context) -> list[str]:
    """Reviewers to email, or none. With reviewers set, the SendGrid settings are checked before any
    write, so a missing key is a 500 up front rather than a queued asset and a failed email."""
    reviewers = address_list("BG_REMOVAL_REVIEWER_EMAIL", ctx.settings.get("BG_REMOVAL_REVIEWER_EMAIL") or "")
    if not reviewers:
        return []
    ctx.settings.require("FROM_VERIFIED_SENDER")
    if not ctx.dry_run:
        ctx.settings.require("SENDGRID_API_KEY")
    return reviewers


def published_id(ctx: Context, asset: Asset) -> str:
    folder = (ctx.settings.get("BG_REMOVED_FOLDER") or DEFAULT_FOLDER).strip().strip("/")
    if not folder or ".." in folder.split("/"):
        raise ConfigError("bg_removal_approval: BG_REMOVED_FOLDER must be a folder path")
    return f"{folder}/{asset.public_id}"


def manual_moderation_status(resource: Mapping[str, Any]) -> str | None:
    """The asset's manual moderation status in resource details: ``moderation: [{kind, status}]``, the
    latest manual entry; top-level ``moderation_kind``/``moderation_status`` as some answers carry."""
    status = None
    for entry in resource.get("moderation") or []:
        if isinstance(entry, Mapping) and entry.get("kind") == "manual":
            status = entry.get("status")
    if status is None and resource.get("moderation_kind") == "manual":
        status = resource.get("moderation_status")
    return str(status) if status else None


def tags_of(resource: Mapping[str, Any]) -> list[str]:
    tags = resource.get("tags")
    return [str(tag) for tag in tags] if isinstance(tags, list) else []


# --- Cloudinary and SendGrid calls ------------------------------------------------------------------

def email_reviewer(ctx: Context, asset: Asset, reviewers: list[str], confidence: float | None) -> int:
    """The reviewers' email (one message each: nobody sees the others' addresses), with the signed link."""
    import html

    score = f" (background removal confidence {confidence:.2f})" if confidence is not None else ""
    link = asset.secure_url or "(no link in the notification)"
    text = (f"{asset.public_id} has its background removed{score} and waits for your review.\n\n"
            f"Image: {link}\n\nApprove or reject it in the Media Library's moderation queue (manual).\n")
    link_html = (f'<a href="{html.escape(asset.secure_url, quote=True)}">{html.escape(asset.secure_url)}</a>'
                 if asset.secure_url else html.escape(link))
    body_html = (f"<p><strong>{html.escape(asset.public_id)}</strong> has its background removed"
                 f"{html.escape(score)} and waits for your review.</p><p>Image: {link_html}</p>"
                 "<p>Approve or reject it in the Media Library's moderation queue (manual).</p>")
    return sendgrid_api.send_email(ctx.settings, recipients=reviewers,
                                   subject=f"Review needed: background removed from {asset.public_id}",
                                   text=text, html=body_html)
