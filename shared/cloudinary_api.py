"""The Cloudinary SDK for functions: imported at first use, configured from ``CLOUDINARY_URL`` (query
string settings such as ``upload_prefix`` included), every call with a timeout, and its exceptions turned
into the statuses of DESIGN.md §4.

    from shared import cloudinary_api
    sdk = cloudinary_api.sdk()
    with cloudinary_api.calling("add_tag"):
        sdk.uploader.add_tag(tag, [public_id], timeout=cloudinary_api.timeout())

Not imported by ``shared`` itself: a request rejected for its signature never loads the SDK.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType, SimpleNamespace

from shared import config
from shared.errors import AssetGone, DependencyRejected, DependencyUnavailable

DEFAULT_TIMEOUT_SECONDS = 8.0  # Cloudinary waits 20 s for our answer; two calls must fit well inside.

# The Admin API client raises a bare Exception("Error 502 - ...") for the 5xx codes it has no class for.
_BARE_SERVER_ERROR = re.compile(r"^Error 5\d\d\b")

_configured_from: str | None = None


class AssetNotFound(AssetGone):
    """Cloudinary answered 404 for the asset: usually it was deleted meanwhile. Uncaught, it is answered
    200 ignored (see ``shared.errors.AssetGone``)."""


class AssetConflict(Exception):
    """Cloudinary answered 409: the target already exists (e.g. rename onto a taken public ID)."""


def timeout() -> float:
    return config.number("CLOUDINARY_TIMEOUT_SECONDS", DEFAULT_TIMEOUT_SECONDS)


def sdk() -> SimpleNamespace:
    """The configured SDK: ``.uploader`` (Upload API), ``.api`` (Admin API), ``.cloudinary``."""
    global _configured_from
    import cloudinary
    import cloudinary.api
    import cloudinary.uploader

    url = os.environ.get("CLOUDINARY_URL", "")
    if url != _configured_from:
        config.cloudinary_credentials()  # a clear error for a malformed URL, before the SDK's own
        cloudinary.reset_config()  # re-reads CLOUDINARY_URL, including ?upload_prefix=...
        _no_read_retries()
        _configured_from = url
    return SimpleNamespace(cloudinary=cloudinary, uploader=cloudinary.uploader, api=cloudinary.api)


def _no_read_retries() -> None:
    """urllib3 retries a GET that timed out while reading three more times, so one Admin API read could take
    4x the timeout (32 s at the default), past Cloudinary's 20 s. Retry only failed connections (fast)."""
    import urllib3
    from cloudinary.api_client import call_api

    call_api._http.connection_pool_kw["retries"] = urllib3.Retry(total=2, connect=2, read=0, status=0, redirect=0)
    call_api._http.clear()


def _short(error: BaseException) -> str:
    return str(error)[:300]


@contextmanager
def calling(what: str) -> Iterator[None]:
    """Translate the SDK's exceptions raised inside the block (``what`` names the call in the log)."""
    exceptions: ModuleType = __import__("cloudinary.exceptions", fromlist=["Error"])
    try:
        yield
    except exceptions.NotFound as error:
        raise AssetNotFound(_short(error)) from error
    except exceptions.AlreadyExists as error:
        raise AssetConflict(_short(error)) from error
    except exceptions.RateLimited as error:
        raise DependencyUnavailable("Cloudinary's rate limit was reached; a retry will finish the work.",
                                    code="cloudinary_rate_limited", log_detail=f"{what}: {_short(error)}") \
            from error
    except (exceptions.AuthorizationRequired, exceptions.NotAllowed) as error:
        raise DependencyRejected("Cloudinary refused the function's credentials.",
                                 code="cloudinary_unauthorized", log_detail=f"{what}: {_short(error)}") \
            from error
    except exceptions.BadRequest as error:
        raise DependencyRejected("Cloudinary rejected the request.", code="cloudinary_bad_request",
                                 log_detail=f"{what}: {_short(error)}") from error
    except exceptions.Error as error:
        # 5xx, timeouts, resets and unparsable answers all surface as the SDK's base or general error.
        raise DependencyUnavailable("Cloudinary is unavailable; a retry will finish the work.",
                                    code="cloudinary_unavailable", log_detail=f"{what}: {_short(error)}") \
            from error
    except Exception as error:
        if type(error) is not Exception or not _BARE_SERVER_ERROR.match(str(error)):
            raise
        # Admin API 502/504 with a JSON error body: a gateway error a retry can fix, not a bug (500).
        raise DependencyUnavailable("Cloudinary is unavailable; a retry will finish the work.",
                                    code="cloudinary_unavailable", log_detail=f"{what}: {_short(error)}") \
            from error
