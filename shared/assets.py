"""The asset a notification names, validated once for every function.

A notification's ``resource_type``, ``type`` and ``public_id`` end up in Cloudinary API paths
(``/v1_1/<cloud>/<resource_type>/<type>/...``) and delivery URLs. Unchecked, a signed payload with
``"resource_type": "image/../../other/image"`` reaches another path, and a ``public_id`` that is a URL makes
the SDK build a URL to any host. So each is checked against Cloudinary's own values here; anything else is
a 400 (a retry cannot fix it).

Info and moderation notifications carry no ``resource_type``/``type``: their delivery URL tells
(``https://res.cloudinary.com/<cloud>/<resource_type>/<type>/[s--sig--/]v<version>/<public_id>``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from shared.errors import BadRequest

TYPE_CHECKING = False  # cold start: see docs/DESIGN.md §8
if TYPE_CHECKING:
    from typing import Any

RESOURCE_TYPES = frozenset({"image", "video", "raw"})
# Cloudinary's delivery types (the `type` of an asset or of a delivery URL).
DELIVERY_TYPES = frozenset({
    "upload", "private", "authenticated", "fetch", "list", "multi", "text", "asset", "sprite", "facebook",
    "twitter", "twitter_name", "gravatar", "youtube", "hulu", "vimeo", "animoto", "worldstarhiphop",
    "dailymotion",
})
# Types whose public_id names a stored asset: never a URL (a fetch's public_id is one; these never are).
STORED_TYPES = frozenset({"upload", "private", "authenticated"})
MAX_PUBLIC_ID_LENGTH = 1024  # far above Cloudinary's own limit (255 per path segment)

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_URL_LIKE = re.compile(r"^(?:[A-Za-z][A-Za-z0-9+.-]*:|//|\\\\)")
# [/<cloud>]/<resource_type>/<type>/ at the start of a delivery URL's path (shared domains carry the cloud
# name; private CDNs and CNAMEs do not).
_DELIVERY_PATH = re.compile(r"^/(?:[^/]+/)?(image|video|raw)/([a-z_]+)/")


class AssetRef:
    """(resource_type, delivery_type, public_id, asset_id) of one asset, each checked.
    (A plain class, not a dataclass: importing ``dataclasses`` would slow every cold start.)"""

    __slots__ = ("asset_id", "delivery_type", "public_id", "resource_type")

    def __init__(self, public_id: str, resource_type: str = "image", delivery_type: str = "upload",
                 asset_id: str | None = None) -> None:
        self.resource_type = check_resource_type(resource_type)
        self.delivery_type = check_delivery_type(delivery_type)
        self.public_id = check_public_id(public_id, self.delivery_type)
        self.asset_id = asset_id

    def describe(self) -> dict[str, str]:
        return {"public_id": self.public_id, "resource_type": self.resource_type, "type": self.delivery_type}

    def __repr__(self) -> str:
        return f"AssetRef({self.resource_type}/{self.delivery_type}/{self.public_id[:80]!r})"


def asset_named_by(fields: Mapping[str, Any], *, resource_type: str = "image", delivery_type: str = "upload",
                   key: str = "public_id") -> AssetRef:
    """The asset ``fields`` (a notification, or one entry of its ``resources``) names.

    Missing types come from its delivery URL, else the defaults given (what the workflow's uploads use)."""
    public_id = fields.get(key)
    if public_id is None or public_id == "":
        raise BadRequest(f"The notification has no {key}.", code="missing_field")
    if not isinstance(public_id, str):
        raise BadRequest(f"The notification's {key} has the wrong type.", code="bad_field")
    from_url = types_in_url(fields.get("secure_url")) or types_in_url(fields.get("url")) or (None, None)
    asset_id = fields.get("asset_id")
    return AssetRef(public_id,
                    _text(fields, "resource_type") or from_url[0] or resource_type,
                    _text(fields, "type") or from_url[1] or delivery_type,
                    asset_id if isinstance(asset_id, str) and asset_id else None)


def check_resource_type(value: Any) -> str:
    if not isinstance(value, str) or value not in RESOURCE_TYPES:
        raise BadRequest("The notification's resource_type is not image, video or raw.", code="bad_field")
    return value


def check_delivery_type(value: Any) -> str:
    if not isinstance(value, str) or value not in DELIVERY_TYPES:
        raise BadRequest("The notification's type is not a Cloudinary delivery type.", code="bad_field")
    return value


def check_public_id(value: Any, delivery_type: str = "upload") -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadRequest("The notification has no public_id.", code="missing_field")
    if len(value) > MAX_PUBLIC_ID_LENGTH:
        raise BadRequest("The notification's public_id is longer than any Cloudinary public ID.", code="bad_field")
    if _CONTROL.search(value):
        raise BadRequest("The notification's public_id holds control characters.", code="bad_field")
    if delivery_type in STORED_TYPES and _URL_LIKE.match(value):
        # The SDK passes an http(s) "public ID" through as the URL itself: never let a payload pick a host.
        raise BadRequest("The notification's public_id is a URL, which no stored asset's public ID is.",
                         code="bad_field")
    return value


def types_in_url(url: Any) -> tuple[str, str] | None:
    """(resource_type, delivery type) from a Cloudinary delivery URL, or None."""
    if not isinstance(url, str) or "://" not in url:
        return None
    path = "/" + url.split("://", 1)[1].partition("/")[2].split("?", 1)[0]
    match = _DELIVERY_PATH.match(path)
    if not match or match.group(2) not in DELIVERY_TYPES:
        return None
    return match.group(1), match.group(2)


def _text(fields: Mapping[str, Any], key: str) -> str | None:
    value = fields.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BadRequest(f"The notification's {key} has the wrong type.", code="bad_field")
    return value
