"""SendGrid for functions: imported at first use, host and timeout configured, errors translated.

``SENDGRID_API_HOST`` overrides the API host (EU data residency, or a local test server).
Not imported by ``shared`` itself: a request rejected for its signature never loads the SDK.
"""

from __future__ import annotations

import json

from shared import budget, config
from shared.errors import DependencyRejected, DependencyUnavailable

TYPE_CHECKING = False  # cold start: see docs/DESIGN.md §8
if TYPE_CHECKING:
    from typing import Any

DEFAULT_HOST = "https://api.sendgrid.com"
DEFAULT_TIMEOUT_SECONDS = 8.0
MAX_SUBJECT_CHARS = 200


def _reason(body: bytes | None) -> str:
    """SendGrid's own explanation (``errors[].message``), short, for the log."""
    try:
        errors = json.loads(body or b"{}").get("errors") or []
        return "; ".join(str(error.get("message")) for error in errors if isinstance(error, dict))[:300]
    except (ValueError, AttributeError):
        return (body or b"")[:200].decode("utf-8", "replace")


def send(settings: config.Settings, message: Any) -> int:
    """Send a ``sendgrid.helpers.mail.Mail``; return SendGrid's status code (202 when accepted)."""
    import urllib.error

    from python_http_client import exceptions as http_errors
    from sendgrid import SendGridAPIClient

    client = SendGridAPIClient(api_key=settings.require("SENDGRID_API_KEY"),
                               host=settings.get("SENDGRID_API_HOST") or DEFAULT_HOST)
    client.client.timeout = budget.call_timeout(
        "mail/send", settings.number("SENDGRID_TIMEOUT_SECONDS", DEFAULT_TIMEOUT_SECONDS))
    try:
        response = client.send(message)
    except http_errors.HTTPError as error:
        status = int(getattr(error, "status_code", 0) or 0)
        detail = f"SendGrid {status}: {_reason(getattr(error, 'body', None))}"
        if status == 429 or status >= 500:
            raise DependencyUnavailable("SendGrid is unavailable; a retry will send the email.",
                                        code="sendgrid_unavailable", log_detail=detail) from None
        # 400/401/403: bad key, unverified sender, malformed message. A retry cannot fix these.
        raise DependencyRejected("SendGrid refused the email; the function's log says why.",
                                 code="sendgrid_rejected", log_detail=detail) from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
        raise DependencyUnavailable("SendGrid did not answer; a retry will send the email.",
                                    code="sendgrid_unavailable",
                                    log_detail=f"SendGrid: {type(error).__name__}") from None
    return int(response.status_code)


def send_email(settings: config.Settings, *, recipients: list[str], subject: str, text: str, html: str) -> int:
    """Send one email from FROM_VERIFIED_SENDER to ``recipients``; SendGrid's status code (202 accepted).

    One personalization per recipient, so nobody sees the others' addresses; click tracking off, since it
    would rewrite Cloudinary's (signed) links into tracking redirects; the subject on one line."""
    from sendgrid.helpers.mail import ClickTracking, Mail, To, TrackingSettings

    message = Mail(from_email=settings.require("FROM_VERIFIED_SENDER"),
                   to_emails=[To(address) for address in recipients],
                   subject=" ".join(subject.split())[:MAX_SUBJECT_CHARS],
                   plain_text_content=text, html_content=html, is_multiple=True)
    tracking = TrackingSettings()
    tracking.click_tracking = ClickTracking(enable=False, enable_text=False)
    message.tracking_settings = tracking
    return send(settings, message)
