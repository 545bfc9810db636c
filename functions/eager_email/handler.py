"""Email a summary when Cloudinary finishes eager transformations.

Trigger   eager_notification_url on an upload/explicit with eager_async=true  (notification_type "eager")
Env       SENDGRID_API_KEY, FROM_VERIFIED_SENDER, TO_RECIPIENTS (space- or comma-separated);
          CLOUDINARY_URL (its api_secret verifies the signature); SENDGRID_API_HOST (optional, e.g. EU);
          IDEMPOTENCY_TABLE (DynamoDB) or DATABASE_URL: where sent emails are recorded (locally: a SQLite file)
Calls     SendGrid mail/send: 1 per notification, never twice for one (retried or replayed) notification;
          the idempotency store: 2 writes; Cloudinary: none
Responds  200 done (sent; already_sent on a retry or replay) | 200 ignored (other types) | 400 no eager list
          | 401 bad signature | 500 not configured (no idempotency store on Lambda/Vercel, too), or SendGrid
          refused (bad key, unverified sender: see the log) | 503 SendGrid rate limit, 5xx or timeout, or the
          same notification still being sent (Cloudinary retries)
"""

from __future__ import annotations

import re
from collections import namedtuple
from collections.abc import Mapping

from shared import idempotency, sendgrid_api
from shared.assets import asset_named_by
from shared.config import address_list
from shared.errors import BadRequest
from shared.webhook import Context, Notification, Result, webhook

TYPE_CHECKING = False  # cold start: see docs/DESIGN.md §8
if TYPE_CHECKING:
    from typing import Any

MAX_SUBJECT_NAME = 80  # keep subjects readable in a mail client; the body has the full public ID
_WEB_LINK = re.compile(r"^https?://[^\s\x00-\x1f\x7f\"'<>]+$", re.IGNORECASE)  # never javascript:, data:, ...


@webhook(
    accepts={"eager"},
    requires=("SENDGRID_API_KEY", "FROM_VERIFIED_SENDER", "TO_RECIPIENTS"),
    optional=("SENDGRID_API_HOST", *idempotency.VARIABLES),
    demo_values={"FROM_VERIFIED_SENDER": "webhooks@example.com",
                 "TO_RECIPIENTS": "editor@example.com producer@example.com"},
)
def handle(notification: Notification, ctx: Context) -> Result:
    derivations = read_derivations(notification)
    # An eager batch of several assets names none; one that names an asset names a real one (checked).
    if notification.get("public_id") is not None:
        asset_name = asset_named_by(notification).public_id
    else:
        asset_name = f"batch {sendgrid_api.single_line(str(notification.get('batch_id') or '')) or 'without id'}"
    recipients = address_list("TO_RECIPIENTS", ctx.settings.require("TO_RECIPIENTS"))
    ctx.settings.require("FROM_VERIFIED_SENDER")  # checked before anything is done, not at sending time

    subject = subject_line(str(asset_name), derivations)
    failed = sum(1 for derivation in derivations if derivation.failed)
    ctx.note(recipients=len(recipients), derivations=len(derivations), failed=failed)
    # An email is a side effect Cloudinary's state cannot reveal: a retry or a replay of this signed
    # notification finds it recorded in the idempotency store and sends nothing again.
    sent = ctx.once(
        "send_email",
        lambda: sendgrid_api.send_email(ctx.settings, recipients=recipients, subject=subject,
                                        text=text_body(asset_name, notification, derivations),
                                        html=html_body(asset_name, notification, derivations)),
        recipients=len(recipients), subject=subject, derivations=len(derivations), failed=failed,
    )
    return ctx.done(already_sent=True) if sent.repeated else ctx.done()


handler = handle.lambda_handler  # AWS Lambda (Function URL, API Gateway) entry point
app = handle.wsgi_app  # WSGI entry point: Vercel, the local server, any WSGI host


class Derivation(namedtuple("Derivation", "transformation format width height bytes secure_url failed reason")):
    """One entry of the notification's ``eager`` list, as the email shows it. (A named tuple, not a
    dataclass: ``collections`` is loaded already, by ``collections.abc``; ``dataclasses`` would slow every
    cold start.)"""

    __slots__ = ()

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any]) -> Derivation:
        url = entry.get("secure_url") or entry.get("url")
        url = url if isinstance(url, str) and _WEB_LINK.match(url) else None  # a link is http(s) or nothing
        file_format = entry.get("format")
        if not isinstance(file_format, str) and url and "." in url.rsplit("/", 1)[-1]:
            file_format = url.rsplit(".", 1)[-1]  # older payloads carry no format; the URL ends with it
        return cls(
            transformation=str(entry.get("transformation") or "(unnamed)"),
            format=file_format if isinstance(file_format, str) else None,
            width=_whole(entry.get("width")),
            height=_whole(entry.get("height")),
            bytes=_whole(entry.get("bytes")),
            secure_url=url,
            failed=str(entry.get("status", "")).lower() == "failed",
            reason=str(entry["reason"]) if entry.get("reason") else None,
        )

    def describe(self) -> str:
        """One line of facts: format, dimensions, size (the HTML and text bodies share it)."""
        facts = [self.format.upper() if self.format else None,
                 f"{self.width}x{self.height}" if self.width and self.height else None,
                 human_size(self.bytes) if self.bytes is not None else None]
        return ", ".join(fact for fact in facts if fact) or "no details"


def read_derivations(notification: Notification) -> list[Derivation]:
    entries = notification.require("eager", list)
    if not entries or not all(isinstance(entry, Mapping) for entry in entries):
        raise BadRequest("The notification's eager list is empty or holds non-objects.", code="bad_field")
    return [Derivation.from_entry(entry) for entry in entries]


def subject_line(asset_name: str, derivations: list[Derivation]) -> str:
    asset_name = sendgrid_api.single_line(asset_name)
    name = asset_name if len(asset_name) <= MAX_SUBJECT_NAME else asset_name[: MAX_SUBJECT_NAME - 1] + "…"
    failed = sum(1 for derivation in derivations if derivation.failed)
    total = len(derivations)
    noun = "derived version" if total == 1 else "derived versions"
    if failed == 0:
        return f"Cloudinary: {total} {noun} of {name} ready"
    if failed == total:
        return f"Cloudinary: {noun} of {name} failed ({failed} of {total})"
    return f"Cloudinary: {failed} of {total} {noun} of {name} failed"


def text_body(asset_name: str, notification: Notification, derivations: list[Derivation]) -> str:
    lines = [f"Cloudinary finished the eager transformations of {asset_name}.", ""]
    for number, derivation in enumerate(derivations, 1):
        lines.append(f"{number}. {derivation.transformation}")
        if derivation.failed:
            lines.append(f"   FAILED: {derivation.reason or 'no reason given'}")
        else:
            lines.append(f"   {derivation.describe()}")
            if derivation.secure_url:
                lines.append(f"   {derivation.secure_url}")
        lines.append("")
    lines.append(_footer(notification))
    return "\n".join(lines)


def html_body(asset_name: str, notification: Notification, derivations: list[Derivation]) -> str:
    import html  # only an email being sent needs it, not a request rejected before

    rows = []
    for derivation in derivations:
        if derivation.failed:
            reason = html.escape(derivation.reason or "no reason given")
            outcome = f'<strong style="color:#b00020">Failed:</strong> {reason}'
        elif derivation.secure_url:
            url = html.escape(derivation.secure_url, quote=True)
            outcome = f'{html.escape(derivation.describe())}<br><a href="{url}">{url}</a>'
        else:
            outcome = html.escape(derivation.describe())
        rows.append(f"<tr><td><code>{html.escape(derivation.transformation)}</code></td><td>{outcome}</td></tr>")
    return (
        f"<p>Cloudinary finished the eager transformations of <strong>{html.escape(asset_name)}</strong>.</p>"
        '<table cellpadding="6" border="1" style="border-collapse:collapse">'
        "<tr><th>Transformation</th><th>Result</th></tr>"
        + "".join(rows)
        + f"</table><p style=\"color:#666\">{html.escape(_footer(notification))}</p>"
    )


def human_size(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    value, units = size / 1024, ["KB", "MB", "GB"]
    while value >= 1024 and len(units) > 1:
        value, units = value / 1024, units[1:]
    return f"{value:.1f} {units[0]}"


def _whole(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _footer(notification: Notification) -> str:
    batch = notification.get("batch_id")
    return f"Eager batch {batch}." if batch else "Sent by the eager_email webhook function."
