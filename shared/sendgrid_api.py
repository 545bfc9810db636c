"""SendGrid for functions: one email sender, on SendGrid's own lightweight HTTP client.

``python_http_client`` is the HTTP layer the ``sendgrid`` package is built on (same project, same
maintainers). Sending needs nothing else: the ``sendgrid`` package would add its mail-builder classes and
its event-webhook verifier, which imports ``cryptography`` — half of an accepted request's cold start, for
code sending never runs. So the v3 ``mail/send`` body is built here as the plain JSON SendGrid documents.

``SENDGRID_API_HOST`` overrides the API host (EU data residency, or a local test server).
Not imported by ``shared`` itself: a request rejected for its signature never loads the client.
"""

from __future__ import annotations

import json
import re

from shared import budget, coldstart, config
from shared.errors import DependencyRejected, DependencyUnavailable

TYPE_CHECKING = False  # cold start: see docs/DESIGN.md §8
if TYPE_CHECKING:
    from typing import Any

DEFAULT_HOST = "https://api.sendgrid.com"
DEFAULT_TIMEOUT_SECONDS = 8.0
MAX_SUBJECT_CHARS = 200
_LINE_BREAKS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")  # nothing may start a new header line
USER_AGENT = "cloudinary-webhook-functions (python_http_client)"


def single_line(text: str) -> str:
    """``text`` with every run of control characters or line breaks made one space: safe in a header."""
    return " ".join(_LINE_BREAKS.sub(" ", text).split())


def send_email(settings: config.Settings, *, recipients: list[str], subject: str, text: str, html: str) -> int:
    """Send one email from FROM_VERIFIED_SENDER to ``recipients``; SendGrid's status code (202 accepted).

    One personalization per recipient, so nobody sees the others' addresses; click tracking off, since it
    would rewrite Cloudinary's (signed) links into tracking redirects; the subject on one line."""
    body = {
        "from": {"email": settings.require("FROM_VERIFIED_SENDER")},
        "subject": single_line(subject)[:MAX_SUBJECT_CHARS],
        "personalizations": [{"to": [{"email": address}]} for address in recipients],
        "content": [{"type": "text/plain", "value": text}, {"type": "text/html", "value": html}],
        "tracking_settings": {"click_tracking": {"enable": False, "enable_text": False}},
    }
    return post(settings, "mail/send", body)


def post(settings: config.Settings, path: str, body: dict[str, Any]) -> int:
    """POST ``body`` to SendGrid's v3 API at ``path``; the status code. Errors become the statuses of
    DESIGN.md §4: 429 and 5xx, timeouts and resets 503 (a retry sends it); 400/401/403 500 (it cannot)."""
    with coldstart.first_import("python_http_client"):  # a cold start: the HTTP client's modules, for good
        import urllib.error

        from python_http_client import Client
        from python_http_client import exceptions as http_errors

    client = Client(host=settings.get("SENDGRID_API_HOST") or DEFAULT_HOST, version=3,
                    request_headers={"Authorization": f"Bearer {settings.require('SENDGRID_API_KEY')}",
                                     "User-Agent": USER_AGENT, "Accept": "application/json"},
                    timeout=budget.call_timeout(path, settings.number("SENDGRID_TIMEOUT_SECONDS",
                                                                      DEFAULT_TIMEOUT_SECONDS)))
    endpoint = client
    for segment in path.split("/"):
        endpoint = endpoint._(segment)
    try:
        response = endpoint.post(request_body=body)
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


def _reason(body: bytes | None) -> str:
    """SendGrid's own explanation (``errors[].message``), short, for the log."""
    try:
        errors = json.loads(body or b"{}").get("errors") or []
        return "; ".join(str(error.get("message")) for error in errors if isinstance(error, dict))[:300]
    except (ValueError, AttributeError):
        return (body or b"")[:200].decode("utf-8", "replace")
