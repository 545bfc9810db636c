"""The Cloudinary SDK for functions: imported at first use, configured from ``CLOUDINARY_URL`` (query
string settings such as ``upload_prefix`` included), every call with a timeout, and its exceptions turned
into the statuses of DESIGN.md §4.

    from shared import cloudinary_api
    tagged = cloudinary_api.add_tag("reviewed", asset)          # Upload API: [] when the asset is gone
    details = cloudinary_api.resource(asset)                     # Admin API: None when the asset is gone

The actions below are the only place functions call the SDK: each names its endpoint in the log, takes its
timeout from the request's budget (``shared.budget``), and follows one 404 policy: a read answers None, and
every write raises ``AssetNotFound`` (answered 200 "ignored: the asset no longer exists" unless the function
catches it) — the tags call too, which answers 200 with the public IDs it tagged and leaves a vanished one
out. Renames never overwrite.
Writes use the Upload API (not rate-limited: ``add_tag``, ``rename``, ``destroy``, ``explicit``,
``update_metadata``); ``resource``, ``update`` and ``resources_by_asset_ids`` are the rate-limited Admin API,
which each function's README counts.

Not imported by ``shared`` itself: a request rejected for its signature never loads the SDK.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from types import ModuleType

from shared import budget, coldstart, config
from shared.errors import AssetGone, DependencyRejected, DependencyUnavailable

TYPE_CHECKING = False  # cold start: see docs/DESIGN.md §8
if TYPE_CHECKING:
    from typing import Any, Protocol

    class Asset(Protocol):  # shared.assets.AssetRef, or a function's richer asset with the same three fields
        public_id: str
        resource_type: str
        delivery_type: str

DEFAULT_TIMEOUT_SECONDS = 8.0  # Cloudinary waits 20 s for our answer; two calls must fit well inside.

# The Admin API client raises a bare Exception("Error 502 - ...") for the 5xx codes it has no class for.
_BARE_SERVER_ERROR = re.compile(r"^Error 5\d\d\b")

_configured_from: str | None = None  # the CLOUDINARY_URL the SDK was last configured from
_retries_set_for: str | None = None  # ... and the one the Admin API's pool had its retries set for


class AssetNotFound(AssetGone):
    """Cloudinary answered 404 for the asset: usually it was deleted meanwhile. Uncaught, it is answered
    200 ignored (see ``shared.errors.AssetGone``)."""


class AssetConflict(Exception):
    """Cloudinary answered 409: the target already exists (e.g. rename onto a taken public ID)."""


def timeout(what: str = "cloudinary") -> float:
    """CLOUDINARY_TIMEOUT_SECONDS, cut to what is left of the request's time budget."""
    return budget.call_timeout(what, config.number("CLOUDINARY_TIMEOUT_SECONDS", DEFAULT_TIMEOUT_SECONDS))


class SDK:
    """The configured SDK: ``.cloudinary`` (configuration, URL building), ``.uploader`` (Upload API), ``.api``
    (Admin API). The two API modules are imported when first used: a function that only builds URLs (chat_alerts)
    or only writes (hello_tag, face_tagging) never loads the Admin API's."""

    __slots__ = ("cloudinary",)

    def __init__(self, module: ModuleType) -> None:
        self.cloudinary = module

    @property
    def uploader(self) -> Any:
        return _imported("cloudinary.uploader")

    @property
    def api(self) -> Any:
        global _retries_set_for
        module = _imported("cloudinary.api")
        if _retries_set_for != _configured_from:  # once per configuration (reset_config replaces nothing here)
            _no_read_retries()
            _retries_set_for = _configured_from
        return module


def sdk() -> SDK:
    """The SDK, configured from CLOUDINARY_URL (again whenever its value changes)."""
    global _configured_from
    cloudinary = _imported("cloudinary")
    url = os.environ.get("CLOUDINARY_URL", "")
    if url != _configured_from:
        config.cloudinary_credentials()  # a clear error for a malformed URL, before the SDK's own
        cloudinary.reset_config()  # re-reads CLOUDINARY_URL, including ?upload_prefix=...
        _configured_from = url
    return SDK(cloudinary)


def _imported(name: str) -> ModuleType:
    """``import name``, its objects built for good when this is the cold start's import. Always through the import
    system, never straight from sys.modules: a module another thread is still importing is there already, half
    built, and only the import system waits for it to be finished."""
    with _processor_known_without_a_subprocess(name), coldstart.first_import(name):  # a cold start: the SDK's
        return importlib.import_module(name)                                        # ~20,000 objects, for good


@contextmanager
def _processor_known_without_a_subprocess(name: str) -> Iterator[None]:
    """The SDK builds its User-Agent at import with ``platform.platform()``, whose processor field Python gets on
    Linux by running ``uname -p`` in a subprocess: a fork and an exec, ~7 ms of every cold start here. Linux's
    ``uname -p`` answers "unknown" (Debian, Ubuntu) or the machine (Amazon Linux, Fedora), and ``platform()``
    leaves either out of its string; so while the SDK is first imported the field is "" (set as Python stores
    it, ``uname()``'s cached property), and the User-Agent comes out the same without the process. After it,
    the field is Python's own again: whoever asks later (``platform.processor()``) gets the real answer. Elsewhere
    (macOS says "arm" where the machine is "arm64") it is left to Python; so it is if a Python stores the field
    differently, or if the SDK is loaded already."""
    fields = None
    if sys.platform.startswith("linux") and name not in sys.modules:
        import platform

        with suppress(TypeError, AttributeError):  # no instance dict: the field is Python's to find
            fields = vars(platform.uname())
    preset = fields is not None and "processor" not in fields
    if preset:
        fields["processor"] = ""
    try:
        yield
    finally:
        if preset and fields.get("processor") == "":
            del fields["processor"]  # Python's own answer again, found when someone asks


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


# --- the actions functions take -----------------------------------------------------------------------

def _where(asset: Asset) -> dict[str, str]:
    return {"resource_type": asset.resource_type, "type": asset.delivery_type}


def resource(asset: Asset) -> dict[str, Any] | None:
    """Admin API resource details (rate-limited); None when the asset does not exist."""
    api = sdk().api
    try:
        with calling("resources/details"):
            return dict(api.resource(asset.public_id, **_where(asset), timeout=timeout("resources/details")))
    except AssetNotFound:
        return None


def update(asset: Asset, **fields: Any) -> dict[str, Any]:
    """Admin API update (rate-limited), e.g. ``access_control=[...]``."""
    api = sdk().api
    with calling("resources/update"):
        return dict(api.update(asset.public_id, **_where(asset), **fields, timeout=timeout("resources/update")))


def add_tag(tags: str | list[str], asset: Asset) -> None:
    """Upload API tags (command add): no read-modify-write of the tag list, so nothing a person or another
    notification tags meanwhile is lost. ``AssetNotFound`` when the asset is gone."""
    uploader = sdk().uploader
    with calling("tags/add"):
        result = uploader.add_tag(tags, [asset.public_id], **_where(asset), timeout=timeout("tags/add"))
    if asset.public_id not in (result.get("public_ids") or []):
        raise AssetNotFound(f"tags/add: {asset.public_id[:100]} was not tagged: it no longer exists")


def rename(asset: Asset, to_public_id: str, *, to_type: str | None = None) -> dict[str, Any]:
    """Upload API rename, never overwriting (a taken target raises ``AssetConflict``: a person's call),
    invalidating the CDN's copies of the old URLs."""
    uploader = sdk().uploader
    options: dict[str, Any] = {"to_type": to_type} if to_type else {}
    with calling("rename"):
        return dict(uploader.rename(asset.public_id, to_public_id, **_where(asset), **options, overwrite=False,
                                    invalidate=True, timeout=timeout("rename")))


def destroy(asset: Asset) -> str:
    """Upload API destroy, invalidating the CDN's copies; Cloudinary's ``result``: "ok", or "not found"
    when it was gone already (a repeat)."""
    uploader = sdk().uploader
    with calling("destroy"):
        result = uploader.destroy(asset.public_id, **_where(asset), invalidate=True, timeout=timeout("destroy"))
    return str(result.get("result"))


def explicit(asset: Asset, **options: Any) -> dict[str, Any]:
    """Upload API explicit (not rate-limited): eager transformations, moderation, a notification URL, an
    ``access_control`` list... on an existing asset; most of what the Admin API's update changes."""
    uploader = sdk().uploader
    with calling("explicit"):
        return dict(uploader.explicit(asset.public_id, **_where(asset), **options, timeout=timeout("explicit")))


def update_metadata(metadata: dict[str, Any], public_ids: list[str], *, resource_type: str = "image",
                    delivery_type: str = "upload") -> list[str]:
    """Upload API metadata (not rate-limited): set structured metadata fields (by external ID) on up to 100
    assets of one resource type and delivery type in one call; fields not named are left as they are.
    Returns the public IDs Cloudinary says it updated: one missing from its answer no longer exists. A 404
    (none of them exists) raises ``AssetNotFound``."""
    uploader = sdk().uploader
    with calling("metadata"):
        result = uploader.update_metadata(metadata, list(public_ids), resource_type=resource_type,
                                          type=delivery_type, timeout=timeout("metadata"))
    updated = result.get("public_ids")
    if not isinstance(updated, list):  # a 200 without the list: Cloudinary did it, it just did not say for whom
        return list(public_ids)
    return [public_id for public_id in updated if isinstance(public_id, str)]
