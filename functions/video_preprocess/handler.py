"""Prepare every new video for delivery: large ones for adaptive streaming, small ones as one web-ready MP4
(the AWS blueprint agency's "is the video large or small? then preprocess it with explicit").

Trigger   notification_url on video uploads, an upload preset, or a global "upload" trigger
Env       CLOUDINARY_URL; VIDEO_LARGE_BYTES (default 100000000), VIDEO_LARGE_SECONDS (default 60),
          VIDEO_EAGER_LARGE (default sp_auto/m3u8), VIDEO_EAGER_SMALL (default c_limit,h_720,vc_h264/mp4),
          VIDEO_EAGER_NOTIFICATION_URL (optional: e.g. eager_email's URL);
          IDEMPOTENCY_TABLE (DynamoDB) or DATABASE_URL: where queued work is recorded (locally: a SQLite file)
Calls     Upload API explicit (eager, eager_async): 1 per new upload, 0 on a retry or replay of the same
          notification (the idempotency store: 2 writes, 1 on a repeat); Admin API: none
Responds  200 done (queued; already_queued on a retry or replay) | 200 ignored (other types, images, raw
          files, uploads that carried eager transformations, video gone) | 400 no public_id, no bytes nor
          duration, hostile asset fields | 401 bad signature | 500 not configured (no idempotency store on
          Lambda/Vercel, too) | 503 Cloudinary rate limit, 5xx or timeout, or the same notification being
          handled right now (Cloudinary retries)
"""

from __future__ import annotations

import math
import re

from shared import cloudinary_api, idempotency
from shared.assets import STORED_TYPES, AssetRef, asset_named_by
from shared.config import Settings
from shared.errors import BadRequest, ConfigError
from shared.webhook import Context, Notification, Result, webhook

TYPE_CHECKING = False  # cold start: see docs/DESIGN.md §8
if TYPE_CHECKING:
    from typing import Any

DEFAULT_LARGE_BYTES = 100_000_000  # 100 MB: where Cloudinary asks for chunked uploads (upload_large)
DEFAULT_LARGE_SECONDS = 60.0
DEFAULT_EAGER = {
    "large": "sp_auto/m3u8",  # HLS adaptive streaming, renditions chosen by Cloudinary's automatic profile
    "small": "c_limit,h_720,vc_h264/mp4",  # one H.264 MP4 of at most 720 px high: plays everywhere
}
NONE = "none"  # VIDEO_EAGER_<SIZE>=none: leave videos of that size alone
_TRANSFORMATION = re.compile(r"^[^\s|\x00-\x1f\x7f]{1,1000}$")
_WEB_URL = re.compile(r"^https?://[^\s\x00-\x1f\x7f\"'<>]+$", re.IGNORECASE)


@webhook(accepts={"upload"}, requires=("CLOUDINARY_URL",),
         optional=("VIDEO_LARGE_BYTES", "VIDEO_LARGE_SECONDS", "VIDEO_EAGER_LARGE", "VIDEO_EAGER_SMALL",
                   "VIDEO_EAGER_NOTIFICATION_URL", *idempotency.VARIABLES))
def handle(notification: Notification, ctx: Context) -> Result:
    video = asset_named_by(notification)  # resource_type, type and public_id checked: they go into API paths
    if video.resource_type != "video":
        return ctx.ignored(f"not a video ({video.resource_type})")
    if video.delivery_type not in STORED_TYPES:
        return ctx.ignored(f"not a stored video (type {video.delivery_type})")
    # Eager work requested with the upload (or a preset) is already done or queued: never queue it again.
    # (explicit's own answers carry the eager list too, should they ever come back as an upload notification.)
    if carries_eager(notification):
        return ctx.ignored("the upload already carried eager transformations")

    policy = Policy.from_settings(ctx.settings)
    size, measure = policy.classify(notification)
    transformations = policy.eager[size]
    ctx.note(size=size)
    if not transformations:
        return ctx.ignored(f"{size} videos are left alone (VIDEO_EAGER_{size.upper()}={NONE})", size=size)

    options: dict[str, Any] = {"eager": list(transformations), "eager_async": True}
    if policy.notification_url:
        options["eager_notification_url"] = policy.notification_url
    # Queued at most once per notification: a retry or replay finds it recorded and costs no Cloudinary call.
    # Asking again would reuse finished derivations, but may transcode again those still being processed.
    queued = ctx.once("explicit", lambda: queue(video, options), **video.describe(), size=size, **options)
    details: dict[str, Any] = {"size": size, "measure": measure}
    if isinstance(queued.result, dict) and queued.result.get("batch_id"):
        details["batch_id"] = queued.result["batch_id"]
    if queued.repeated:
        details["already_queued"] = True
    return ctx.done(**details)


handler = handle.lambda_handler  # AWS Lambda (Function URL, API Gateway) entry point
app = handle.wsgi_app  # WSGI entry point: Vercel, the local server, any WSGI host


# --- helpers -------------------------------------------------------------------------------------------

def carries_eager(notification: Notification) -> bool:
    eager = notification.get("eager")
    if eager is None:
        return False
    if not isinstance(eager, list):
        raise BadRequest("The notification's eager has the wrong type.", code="bad_field")
    return bool(eager)


def queue(video: AssetRef, options: dict[str, Any]) -> dict[str, Any]:
    """Upload API explicit (not rate-limited) with eager_async: Cloudinary answers at once and works in the
    background. What is kept in the idempotency store: the batch ID only, not the whole answer."""
    answer = cloudinary_api.explicit(video, **options)
    batch_id = answer.get("batch_id")
    return {"batch_id": batch_id if isinstance(batch_id, str) else None}


class Policy:
    """The size thresholds and each size's eager transformations, checked.
    (A plain class, not a dataclass: importing ``dataclasses`` would slow every cold start.)"""

    __slots__ = ("eager", "large_bytes", "large_seconds", "notification_url")

    def __init__(self, large_bytes: int = DEFAULT_LARGE_BYTES, large_seconds: float = DEFAULT_LARGE_SECONDS,
                 eager: dict[str, tuple[str, ...]] | None = None, notification_url: str | None = None) -> None:
        self.large_bytes = large_bytes
        self.large_seconds = large_seconds
        self.eager = eager or {size: (text,) for size, text in DEFAULT_EAGER.items()}
        self.notification_url = notification_url

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        name = settings.function
        large_bytes = settings.integer("VIDEO_LARGE_BYTES", DEFAULT_LARGE_BYTES, minimum=1)
        large_seconds = settings.number("VIDEO_LARGE_SECONDS", DEFAULT_LARGE_SECONDS)
        if large_seconds <= 0:
            raise ConfigError(f"{name}: VIDEO_LARGE_SECONDS must be more than 0")
        eager = {size: eager_list(settings, f"VIDEO_EAGER_{size.upper()}", DEFAULT_EAGER[size])
                 for size in DEFAULT_EAGER}
        url = settings.get("VIDEO_EAGER_NOTIFICATION_URL")
        if url and not _WEB_URL.match(url):
            raise ConfigError(f"{name}: VIDEO_EAGER_NOTIFICATION_URL must be an http(s) URL")
        return cls(large_bytes, large_seconds, eager, url or None)

    def classify(self, notification: Notification) -> tuple[str, str]:
        """("large" | "small", what decided it). Large when either measure reaches its threshold; an older
        notification without ``duration`` is judged by ``bytes`` alone."""
        size_bytes = _measure(notification, "bytes")
        seconds = _measure(notification, "duration")
        if size_bytes is None and seconds is None:
            raise BadRequest("The notification has neither bytes nor duration.", code="missing_field")
        if size_bytes is not None and size_bytes >= self.large_bytes:
            return "large", f"bytes {_text(size_bytes)} >= {self.large_bytes}"
        if seconds is not None and seconds >= self.large_seconds:
            return "large", f"duration {_text(seconds)} s >= {_text(self.large_seconds)} s"
        known = [f"bytes {_text(size_bytes)} < {self.large_bytes}"] if size_bytes is not None else []
        known += [f"duration {_text(seconds)} s < {_text(self.large_seconds)} s"] if seconds is not None else []
        return "small", ", ".join(known)


def eager_list(settings: Settings, variable: str, default: str) -> tuple[str, ...]:
    """Transformations in Cloudinary's URL syntax, several separated by ``|`` (as the Upload API's eager
    parameter takes them); ``none``: none."""
    raw = settings.get(variable) or default
    if raw.strip().lower() == NONE:
        return ()
    items = tuple(item.strip() for item in raw.split("|") if item.strip())
    if not items or not all(_TRANSFORMATION.match(item) for item in items):
        raise ConfigError(f"{settings.function}: {variable} must be transformations such as "
                          f"{DEFAULT_EAGER['small']}, several separated by |, or {NONE}")
    return items


def _measure(notification: Notification, key: str) -> float | None:
    """The notification's ``bytes`` or ``duration``: None when absent, 400 when not a number >= 0."""
    value = notification.get(key)
    if value is None:
        return None
    usable = isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))
    if isinstance(value, bool) or not usable or value < 0:
        raise BadRequest(f"The notification's {key} is not a number of {key if key == 'bytes' else 'seconds'}.",
                         code="bad_field")
    return value


def _text(number: float) -> str:
    """12, 12.5, 104857600: never 1.04858e+08."""
    if isinstance(number, int):
        return str(number)
    return str(int(number)) if number.is_integer() else f"{number:.3f}".rstrip("0").rstrip(".")
