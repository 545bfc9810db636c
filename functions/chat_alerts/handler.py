"""Post an activity feed of asset events to Slack, Microsoft Teams and Discord channels.

Trigger   a global trigger per type (create_trigger(url, "upload"), "delete", "moderation"), or notification_url
Env       SLACK_WEBHOOK_URL, TEAMS_WEBHOOK_URL, DISCORD_WEBHOOK_URL (any of them; secrets, never logged);
          CHAT_ALERT_TYPES (default "upload delete moderation"; also delete_by_token, rename);
          CHAT_ALERTS_TIMEOUT_SECONDS (default 4, per service); CLOUDINARY_URL (verifies the signature; its
          cloud and CDN settings build thumbnail URLs); IDEMPOTENCY_TABLE (DynamoDB) or DATABASE_URL: where
          posted messages are recorded (locally: a SQLite file)
Calls     one POST per configured service, never twice for one (retried or replayed) notification; the
          idempotency store: 2 writes per service; Cloudinary: none (thumbnail URLs are built, not fetched)
Responds  200 done (posted; already_posted on a retry or replay) | 200 ignored (other types) | 400 an asset no
          Cloudinary asset could be | 401 bad signature | 500 not configured (no webhook URL, or one not on
          its service's host), or a service refused the message (revoked webhook: see the log)
          | 503 a service rate-limited, failed or timed out (Cloudinary retries; only the services not yet
          posted to are posted to then)
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from shared import config, idempotency
from shared.assets import AssetRef, asset_named_by, check_public_id
from shared.errors import BadRequest, ConfigError, DependencyUnavailable, WebhookError
from shared.webhook import Context, Notification, Result, webhook

from . import services
from .messages import WEB_LINK, Alert, clip

TYPE_CHECKING = False  # no `typing` import at run time: it costs cold-start milliseconds for annotations only
if TYPE_CHECKING:
    from typing import Any

SUPPORTED_TYPES = ("upload", "delete", "delete_by_token", "moderation", "rename")
DEFAULT_TYPES = "upload delete moderation"
THUMBNAIL = {"width": 320, "height": 320, "crop": "limit", "quality": "auto"}  # a small c_limit JPEG
MAX_LISTED_ASSETS = 5  # a bulk delete names this many and counts the rest


@webhook(
    accepts=set(SUPPORTED_TYPES),
    # (CHAT_ALERTS_ALLOW_HTTP_LOOPBACK, read by services.configured, is for tests only: not a deploy setting)
    optional=(*services.VARIABLES, "CHAT_ALERT_TYPES", "CHAT_ALERTS_TIMEOUT_SECONDS", *idempotency.VARIABLES),
)
def handle(notification: Notification, ctx: Context) -> Result:
    wanted = alert_types(ctx.settings)
    if notification.type not in wanted:
        return ctx.ignored(f"{notification.type} is not in CHAT_ALERT_TYPES ({' '.join(wanted)})")

    targets = services.configured(ctx.settings)  # each URL on its service's own host, checked before anything
    if not targets:
        if not config.demo_mode():
            raise ConfigError("chat_alerts: not configured: set SLACK_WEBHOOK_URL, TEAMS_WEBHOOK_URL and/or "
                              "DISCORD_WEBHOOK_URL")
        # Local demo without any webhook: what `requires` does for other functions, for "any of these three".
        targets = services.demo_targets()
        ctx.dry_run = True
    timeout = ctx.settings.number("CHAT_ALERTS_TIMEOUT_SECONDS", services.DEFAULT_TIMEOUT_SECONDS)
    alert = describe(notification)  # 400 for names no Cloudinary asset has, before anything is posted
    ctx.note(targets=",".join(target.name for target in targets))

    # A chat message is a side effect Cloudinary's state cannot reveal: each service's post is recorded in the
    # idempotency store, so a retry or a replay posts nothing twice, and a retry after one service failed
    # posts only to the services not yet posted to.
    already_posted, failures = [], []
    for target in targets:
        message = target.service.render(alert)
        try:
            posted = ctx.once(f"post_to_{target.name}",
                              lambda target=target, message=message: services.post(target, message, timeout),
                              service=target.name, title=alert.headline)
        except WebhookError as error:  # the next service is still worth posting to
            failures.append((target.name, error))
            continue
        if posted.repeated:
            already_posted.append(target.name)
    if failures:
        ctx.note(failed=",".join(name for name, _ in failures))
        retryable = [error for _, error in failures if isinstance(error, DependencyUnavailable)]
        raise (retryable or [error for _, error in failures])[0]  # 503 when a retry can fix any of them
    return ctx.done(already_posted=already_posted) if already_posted else ctx.done()


handler = handle.lambda_handler  # AWS Lambda (Function URL, API Gateway) entry point
app = handle.wsgi_app  # WSGI entry point: Vercel, the local server, any WSGI host


def alert_types(settings: config.Settings) -> tuple[str, ...]:
    wanted = tuple(dict.fromkeys(word.lower() for word in config.word_list(settings.get("CHAT_ALERT_TYPES")
                                                                          or DEFAULT_TYPES)))
    unknown = [word for word in wanted if word not in SUPPORTED_TYPES]
    if unknown:
        raise ConfigError(f"chat_alerts: CHAT_ALERT_TYPES holds {len(unknown)} type(s) it cannot describe; "
                          f"it can: {', '.join(SUPPORTED_TYPES)}")
    return wanted


# --- the notification as an alert --------------------------------------------------------------------

def describe(notification: Notification) -> Alert:
    if notification.type == "upload":
        return describe_upload(notification)
    if notification.type in ("delete", "delete_by_token"):
        return describe_delete(notification)
    if notification.type == "moderation":
        return describe_moderation(notification)
    return describe_rename(notification)


def describe_upload(notification: Notification) -> Alert:
    asset = asset_named_by(notification)
    status, kind = upload_moderation(notification)
    facts = [*asset_facts(asset, notification),
             ("Moderation", f"{status} ({kind})" if status and kind else status or ""),
             ("Triggered by", triggered_by(notification))]
    # An asset that moderation rejected or has yet to decide on is never shown as an image in a channel.
    shown = status in (None, "approved")
    return Alert(event="upload", title="New upload", name=asset.public_id, facts=facts, tone="info",
                 thumbnail_url=thumbnail_url(asset, notification) if shown else None,
                 link=public_link(asset, notification) if shown else None, when=triggered_at(notification))


def describe_moderation(notification: Notification) -> Alert:
    asset = asset_named_by(notification)  # moderation notifications carry no types: the URL tells
    status = _word(notification.get("moderation_status")) or "updated"
    kind = _word(notification.get("moderation_kind"))
    labels = moderation_labels(notification.get("moderation_response"))
    decision = status + (f" by {kind}" if kind else "") + (f": {labels}" if labels else "")
    facts = [("Decision", decision), *asset_facts(asset, notification), ("Triggered by", triggered_by(notification))]
    approved = status == "approved"
    tone = "good" if approved else "bad" if status == "rejected" else "warn"
    return Alert(event="moderation", title=f"Moderation {status}", name=asset.public_id, facts=facts, tone=tone,
                 thumbnail_url=thumbnail_url(asset, notification) if approved else None,
                 link=public_link(asset, notification) if approved else None, when=triggered_at(notification))


def describe_delete(notification: Notification) -> Alert:
    entries = notification.require("resources", list)
    if not entries or not all(isinstance(entry, Mapping) for entry in entries):
        raise BadRequest("The notification's resources list is empty or holds non-objects.", code="bad_field")
    listed = [asset_named_by(entry) for entry in entries[:MAX_LISTED_ASSETS]]
    rest = len(entries) - len(listed)
    kinds = {f"{asset.resource_type}/{asset.delivery_type}" for asset in listed}
    facts = [("Type", kinds.pop() if len(kinds) == 1 and not rest else "")]
    if len(entries) == 1:
        facts += [("Folder", _text(entries[0].get("asset_folder"))),
                  ("Display name", _display_name(listed[0], entries[0]))]
    facts.append(("Triggered by", triggered_by(notification)))
    names = ", ".join(clip(asset.public_id, 100) for asset in listed) + (f" and {rest} more" if rest else "")
    title = "Deleted" if len(entries) == 1 else f"Deleted {len(entries)} assets"
    return Alert(event=notification.type, title=title, name=names, facts=facts, tone="neutral",
                 when=triggered_at(notification))


def describe_rename(notification: Notification) -> Alert:
    asset = asset_named_by(notification, key="to_public_id")
    previous = notification.get("from_public_id")
    facts = [("From", check_public_id(previous, asset.delivery_type) if previous is not None else ""),
             *asset_facts(asset, notification), ("Triggered by", triggered_by(notification))]
    return Alert(event="rename", title="Renamed", name=asset.public_id, facts=facts, tone="info",
                 thumbnail_url=thumbnail_url(asset, notification), link=public_link(asset, notification),
                 when=triggered_at(notification))


def asset_facts(asset: AssetRef, fields: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Type, format and dimensions, size, folder, display name: what the payload says (none read from
    Cloudinary; older payloads say less, and the facts they lack are left out)."""
    file_format = _word(fields.get("format")) or _extension(fields.get("secure_url") or fields.get("url"))
    width, height = _whole(fields.get("width")), _whole(fields.get("height"))
    size = _whole(fields.get("bytes"))
    looks = ", ".join(part for part in (file_format.upper() if file_format else "",
                                        f"{width}x{height}" if width and height else "") if part)
    return [("Type", f"{asset.resource_type}/{asset.delivery_type}"), ("Format", looks),
            ("Size", human_size(size) if size is not None else ""), ("Folder", _text(fields.get("asset_folder"))),
            ("Display name", _display_name(asset, fields))]


def upload_moderation(notification: Notification) -> tuple[str | None, str | None]:
    """(status, kind) of the moderation an upload was queued for (the last entry), or (None, None)."""
    entries = notification.get("moderation")
    if not isinstance(entries, list) or not entries or not isinstance(entries[-1], Mapping):
        return None, None
    return _word(entries[-1].get("status")) or "pending", _word(entries[-1].get("kind"))


def moderation_labels(response: Any) -> str:
    """Why an AI moderation decided as it did (Amazon Rekognition's label names), when it says."""
    if not isinstance(response, Mapping) or not isinstance(response.get("moderation_labels"), list):
        return ""
    names = [label["name"] for label in response["moderation_labels"]
             if isinstance(label, Mapping) and isinstance(label.get("name"), str) and label["name"].strip()]
    return ", ".join(dict.fromkeys(names[:5]))


def triggered_by(notification: Notification) -> str:
    """Who or what triggered the event (``notification_context.triggered_by``): "ui: editor@example.com"."""
    context = notification.get("notification_context")
    trigger = context.get("triggered_by") if isinstance(context, Mapping) else None
    if not isinstance(trigger, Mapping):
        return ""
    source, who = _text(trigger.get("source")), _text(trigger.get("id"))
    return f"{source}: {who}" if source and who else source or who


_ISO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")


def triggered_at(notification: Notification) -> str | None:
    context = notification.get("notification_context")
    when = context.get("triggered_at") if isinstance(context, Mapping) else None
    return when if isinstance(when, str) and _ISO_TIME.match(when) else None


# --- thumbnails and links: only for assets anybody may see --------------------------------------------

_CLOUD_IN_URL = re.compile(r"^https?://res\.cloudinary\.com/([a-z0-9_-]+)/", re.IGNORECASE)


def thumbnail_url(asset: AssetRef, fields: Mapping[str, Any]) -> str | None:
    """A small JPEG of a public image (a video's poster frame: the .jpg of the video), built by the SDK from
    CLOUDINARY_URL's cloud and CDN settings (or the payload's res.cloudinary.com URL); no call is made.
    Private and authenticated assets get none: a signed URL in a channel would hand out access."""
    if asset.delivery_type != "upload" or asset.resource_type not in ("image", "video"):
        return None
    from shared import cloudinary_api  # the SDK only once an alert with a picture is being written

    sdk = cloudinary_api.sdk()
    options: dict[str, Any] = {"resource_type": asset.resource_type, "type": "upload", "secure": True,
                               "format": "jpg", "transformation": [dict(THUMBNAIL)]}
    if asset.resource_type == "video":
        options["transformation"][0]["start_offset"] = "auto"  # a representative frame, not the first
    version = fields.get("version")
    if isinstance(version, int) and not isinstance(version, bool) and 0 < version < 10**12:
        options["version"] = version
    if not sdk.cloudinary.config().cloud_name:
        found = _CLOUD_IN_URL.match(str(fields.get("secure_url") or fields.get("url") or ""))
        if not found:
            return None
        options["cloud_name"] = found.group(1)
    url = sdk.cloudinary.utils.cloudinary_url(asset.public_id, **options)[0]
    return url if isinstance(url, str) and WEB_LINK.match(url) else None


def public_link(asset: AssetRef, fields: Mapping[str, Any]) -> str | None:
    """The asset's own delivery URL when it is public (an authenticated one's secure_url is signed)."""
    if asset.delivery_type != "upload":
        return None
    for key in ("secure_url", "url"):
        url = fields.get(key)
        if isinstance(url, str) and WEB_LINK.match(url):
            return url
    return None


# --- small readers: whatever the payload holds, a string or nothing -----------------------------------

_WORD = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


def _word(value: Any) -> str | None:
    return value if isinstance(value, str) and _WORD.match(value) else None


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _whole(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**18:
        return value
    return None


def _extension(url: Any) -> str | None:
    if not isinstance(url, str):
        return None
    last = url.split("?", 1)[0].rsplit("/", 1)[-1]
    return _word(last.rsplit(".", 1)[1]) if "." in last else None


def _display_name(asset: AssetRef, fields: Mapping[str, Any]) -> str:
    """The display name, when it says more than the public ID's last segment."""
    name = _text(fields.get("display_name"))
    return name if name and name != asset.public_id.rsplit("/", 1)[-1] else ""


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{int(value)} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} bytes"  # unreachable
