"""Typed HTTP errors: one small class per status the design promises (DESIGN.md §4).

A function raises these (or lets the helpers in ``shared.cloudinary_api`` raise them); the webhook wrapper
turns each into its status and a JSON body ``{"error": code, "message": sentence}``. The message goes to
the caller, so it never carries a secret; ``log_detail`` goes to the log only.
"""

from __future__ import annotations


class WebhookError(Exception):
    """Base class: an answer other than 200, with a short code and a human sentence."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, log_detail: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.log_detail = log_detail
        self.headers = headers or {}

    def body(self) -> dict[str, str]:
        return {"error": self.code, "message": self.message}


class BadRequest(WebhookError):
    """400: the body is not JSON, not an object, or lacks a field the workflow needs."""

    status = 400
    code = "bad_request"


class Unauthorized(WebhookError):
    """401: signature or timestamp missing, malformed, stale, in the future, or not matching."""

    status = 401
    code = "invalid_signature"


class MethodNotAllowed(WebhookError):
    """405: anything but POST."""

    status = 405
    code = "method_not_allowed"

    def __init__(self, method: str) -> None:
        super().__init__(f"{method} is not allowed here; Cloudinary notifications are POSTed.",
                         headers={"Allow": "POST"})


class PayloadTooLarge(WebhookError):
    """413: the body is over the configured limit."""

    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(WebhookError):
    """415: the content type is not JSON."""

    status = 415
    code = "unsupported_media_type"


class RequestTimeout(WebhookError):
    """408: the body did not arrive in time (a WSGI server's read timeout)."""

    status = 408
    code = "request_timeout"


class LengthRequired(WebhookError):
    """411: a body sent without a Content-Length that the WSGI server did not decode (chunked)."""

    status = 411
    code = "length_required"


class ConfigError(WebhookError):
    """500: the function is not configured. The missing names go to the log, never to the caller."""

    status = 500
    code = "not_configured"

    def __init__(self, log_detail: str) -> None:
        super().__init__("The function is not configured; its log says what is missing.",
                         log_detail=log_detail)


class DependencyRejected(WebhookError):
    """500: a dependency refused the request in a way a retry cannot fix (bad key, unverified sender)."""

    status = 500
    code = "dependency_rejected"


class DependencyUnavailable(WebhookError):
    """503: a dependency failed in a way a retry can fix (rate limit, 5xx, timeout). Cloudinary retries."""

    status = 503
    code = "dependency_unavailable"


class AssetGone(Exception):
    """The asset a notification names no longer exists (a 404 from the provider, e.g. deleted meanwhile).

    Not an error: the wrapper answers 200 ignored, since Cloudinary's retries cannot bring the asset back.
    Functions that want another answer catch it (``shared.cloudinary_api.AssetNotFound`` is one)."""
