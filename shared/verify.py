"""Cloudinary notification signatures: compute them and check them.

Cloudinary signs every notification with two headers:

    X-Cld-Timestamp: 1549533514
    X-Cld-Signature: hex( SHA1( raw_body + timestamp + api_secret ) )

(SHA-256 instead of SHA-1 when the product environment is set to it; the two are told apart by length.)

What this module adds to ``cloudinary.utils.verify_notification_signature``: it works on the raw bytes as
received, compares in constant time, rejects timestamps from the future, accepts several secrets (key
rotation), accepts header names in any case, and says precisely why a request was refused. Standard
library only.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable, Mapping

TIMESTAMP_HEADER = "X-Cld-Timestamp"
SIGNATURE_HEADER = "X-Cld-Signature"

DEFAULT_MAX_AGE_SECONDS = 2 * 60 * 60  # Cloudinary's own SDKs default to two hours.
DEFAULT_MAX_FUTURE_SECONDS = 5 * 60  # clock skew we forgive; more than that is a forged or replayed header.

# Hex digest length -> hash constructor. The length of the header tells which algorithm signed it.
_ALGORITHMS_BY_LENGTH = {40: hashlib.sha1, 64: hashlib.sha256}
_ALGORITHMS_BY_NAME = {"sha1": hashlib.sha1, "sha256": hashlib.sha256}
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_MAX_TIMESTAMP_DIGITS = 12  # seconds since 1970 stay under 12 digits for the next 30,000 years


class SignatureError(Exception):
    """The notification is not proven to come from Cloudinary. ``reason`` is a stable short code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class NoSecretConfigured(Exception):
    """No signing secret is configured: a setup error (500), never a reason to skip verification."""


def _as_bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8")


def sign(body: bytes | str, timestamp: int | str, secret: str, algorithm: str = "sha1") -> str:
    """Return the hex signature Cloudinary would send for ``body`` at ``timestamp``."""
    try:
        digest = _ALGORITHMS_BY_NAME[algorithm.lower()]
    except KeyError:
        raise ValueError(f"unknown algorithm {algorithm!r}; use 'sha1' or 'sha256'") from None
    return digest(_as_bytes(body) + str(timestamp).encode("ascii") + secret.encode("utf-8")).hexdigest()


def verify(
    body: bytes,
    timestamp: str | None,
    signature: str | None,
    secrets: Iterable[str],
    *,
    now: float | None = None,
    max_age: int = DEFAULT_MAX_AGE_SECONDS,
    max_future: int = DEFAULT_MAX_FUTURE_SECONDS,
) -> None:
    """Return if ``signature`` proves ``body`` was signed at ``timestamp`` with one of ``secrets``.

    Raises ``SignatureError`` (with a distinct reason per failure) or ``NoSecretConfigured``.
    """
    # (A list of usable secrets, the wrapper's case, is used as it is: one less list per request.)
    usable_secrets = secrets if isinstance(secrets, list) and all(secrets) else [secret for secret in secrets if secret]
    if not usable_secrets:
        raise NoSecretConfigured("no notification signing secret is configured")
    if timestamp is None or timestamp == "":
        raise SignatureError("missing_timestamp", f"The {TIMESTAMP_HEADER} header is missing.")
    if signature is None or signature == "":
        raise SignatureError("missing_signature", f"The {SIGNATURE_HEADER} header is missing.")

    # isdigit() alone would accept other scripts' digits; the header is plain ASCII seconds.
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= _MAX_TIMESTAMP_DIGITS):
        raise SignatureError("malformed_timestamp", f"The {TIMESTAMP_HEADER} header is not Unix seconds.")
    signed_at = int(timestamp)
    current = time.time() if now is None else now
    if signed_at < current - max_age:
        raise SignatureError("stale_timestamp",
                             f"The notification was signed more than {max_age} seconds ago.")
    if signed_at > current + max_future:
        raise SignatureError("future_timestamp",
                             f"The notification is signed more than {max_future} seconds in the future.")

    digest = _ALGORITHMS_BY_LENGTH.get(len(signature))
    if digest is None or not signature.isascii():
        raise SignatureError("malformed_signature",
                             f"The {SIGNATURE_HEADER} header is not a hex SHA-1 or SHA-256 digest.")

    presented = signature.lower()  # ASCII (checked above): compare_digest compares such strings directly
    signed_prefix = digest(body)  # hashed once, then copied per secret: rotation costs no re-hash of the body
    signed_prefix.update(timestamp.encode("ascii"))
    if len(usable_secrets) == 1:  # the usual case: no copy of the hash state
        signed_prefix.update(usable_secrets[0].encode("utf-8"))
        matched = hmac.compare_digest(signed_prefix.hexdigest(), presented)
    else:
        matched = False
        # Try every secret, without stopping early, so the time taken does not tell which one matched.
        for secret in usable_secrets:
            candidate = signed_prefix.copy()
            candidate.update(secret.encode("utf-8"))
            matched |= hmac.compare_digest(candidate.hexdigest(), presented)
    if matched:
        return
    # Only a failed match pays for telling a malformed header from a wrong signature.
    if not _HEX_DIGITS.issuperset(signature):
        raise SignatureError("malformed_signature",
                             f"The {SIGNATURE_HEADER} header is not a hex SHA-1 or SHA-256 digest.")
    raise SignatureError("signature_mismatch",
                         "The signature does not match the body, timestamp and configured secret.")


def header(headers: Mapping[str, str], name: str) -> str | None:
    """Look a header up by name in any case (HTTP header names are case-insensitive)."""
    value = headers.get(name)
    if value is not None:
        return value
    wanted = name.lower()
    for key, candidate in headers.items():
        if key.lower() == wanted:
            return candidate
    return None


def verify_headers(body: bytes, headers: Mapping[str, str], secrets: Iterable[str], **limits: float) -> None:
    """``verify`` with the timestamp and signature taken from request headers (names in any case)."""
    verify(body, header(headers, TIMESTAMP_HEADER), header(headers, SIGNATURE_HEADER), secrets, **limits)


def signed_headers(body: bytes | str, secret: str, *, timestamp: int | None = None,
                   algorithm: str = "sha1") -> dict[str, str]:
    """Headers Cloudinary would send with ``body``: for tests, the ``send`` command and benchmarks."""
    signed_at = int(time.time()) if timestamp is None else timestamp
    return {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: str(signed_at),
        SIGNATURE_HEADER: sign(body, signed_at, secret, algorithm),
    }
