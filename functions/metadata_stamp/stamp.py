"""The rules of metadata_stamp, kept apart from the story in handler.py: its settings, when a change
happened, which assets a notification names, what changed in their structured metadata, and whether a stamp
would move forwards. Pure functions over the payload: no Cloudinary call is made here.

Stamp values are fixed-width, UTC, so that their text sorts as their time does:

    string field (default)   2024-05-06T12:10:00.000Z   ISO 8601 with milliseconds
    date field               2024-05-06                 Cloudinary's date format: the day only
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from shared.assets import AssetRef, asset_named_by
from shared.config import Settings, word_list
from shared.errors import BadRequest, ConfigError

TYPE_CHECKING = False  # cold start: see docs/DESIGN.md §8
if TYPE_CHECKING:
    from typing import Any

# The notification types that mean "this asset changed", in Cloudinary's names.
STAMPABLE = ("upload", "resource_metadata_changed", "resource_tags_changed", "resource_context_changed",
             "resource_display_name_changed", "rename", "move")
DEFAULT_FIELD = "last_update_timestamp"  # the external ID the AWS blueprint's agency used
FIELD_TYPES = ("string", "date")
DEFAULT_LATE_SECONDS = 60  # Cloudinary delivers within seconds; its retries come minutes later
MAX_FUTURE = timedelta(minutes=5)  # the signature check's own tolerance for Cloudinary's clock being ahead
MAX_IDS_PER_CALL = 100  # the Upload API metadata call and the Admin API listing take up to 100 public IDs
_EXTERNAL_ID = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_NEWEST_EPOCH = 253402300799  # 9999-12-31T23:59:59Z


class Policy:
    """STAMP_FIELD, STAMP_FIELD_TYPE, STAMP_ON, STAMP_WATCH_FIELDS, STAMP_LATE_SECONDS, checked.
    (A plain class, not a dataclass: importing ``dataclasses`` would slow every cold start.)"""

    __slots__ = ("field", "field_type", "late_seconds", "stamp_on", "watch")

    def __init__(self, field: str = DEFAULT_FIELD, field_type: str = "string", stamp_on: tuple[str, ...] = STAMPABLE,
                 watch: frozenset[str] | None = None, late_seconds: int = DEFAULT_LATE_SECONDS) -> None:
        self.field = field
        self.field_type = field_type
        self.stamp_on = stamp_on
        self.watch = watch  # None: every field but the stamp
        self.late_seconds = late_seconds

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        name = settings.function
        field = settings.get("STAMP_FIELD") or DEFAULT_FIELD
        if not _EXTERNAL_ID.match(field):
            raise ConfigError(f"{name}: STAMP_FIELD must be a metadata field's external ID "
                              "(letters, digits, _ and -)")
        field_type = settings.choice("STAMP_FIELD_TYPE", "string", FIELD_TYPES)
        stamp_on = tuple(dict.fromkeys(word_list(settings.get("STAMP_ON") or ""))) or STAMPABLE
        unknown = [kind for kind in stamp_on if kind not in STAMPABLE]
        if unknown:
            raise ConfigError(f"{name}: STAMP_ON may only list {', '.join(STAMPABLE)} "
                              f"({len(unknown)} other value(s) given)")
        watched = word_list(settings.get("STAMP_WATCH_FIELDS") or "")
        if field in watched:
            # Its own write would then count as a change worth stamping: a loop.
            raise ConfigError(f"{name}: STAMP_WATCH_FIELDS must not list the stamp field itself ({field})")
        late_seconds = settings.integer("STAMP_LATE_SECONDS", DEFAULT_LATE_SECONDS)
        return cls(field, field_type, stamp_on, frozenset(watched) or None, late_seconds)

    # --- what is worth a stamp ---

    def relevant(self, changed: set[str]) -> set[str]:
        """The changed fields that call for a new stamp: the watched ones, never the stamp itself."""
        if self.watch is None:
            return changed - {self.field}
        return changed & self.watch

    # --- stamp values ---

    def value(self, when: datetime) -> str:
        """The text written into the field for a change at ``when``."""
        when = when.astimezone(UTC)
        day = f"{when.year:04d}-{when.month:02d}-{when.day:02d}"  # strftime's %Y is not padded below year 1000
        if self.field_type == "date":
            return day
        return f"{day}T{when.hour:02d}:{when.minute:02d}:{when.second:02d}.{when.microsecond // 1000:03d}Z"

    def moves_forwards(self, when: datetime, current: Any, arrival: datetime) -> bool:
        """Whether stamping ``when`` over the field's ``current`` value moves it forwards (at the field's
        precision: the millisecond, or the day). A value that is not a time is not a stamp, and neither is one
        later than ``arrival`` allows: both are overwritten (else one typo like 2099 would freeze the field)."""
        known = parse_time(current)
        if known is None or known > arrival + MAX_FUTURE:
            return True
        return self.value(when) > self.value(known)  # fixed-width UTC text sorts as time does


# --- when the change happened ---------------------------------------------------------------------------

def change_time(notification: Mapping[str, Any], arrival: datetime) -> tuple[datetime, str]:
    """(when, which field said so): the notification's own time, else its arrival. A time further in the
    future than Cloudinary's clock could be is not believed."""
    context = notification.get("notification_context")
    candidates = [("notification_context.triggered_at",
                   context.get("triggered_at") if isinstance(context, Mapping) else None),
                  ("timestamp", notification.get("timestamp"))]
    if notification.get("notification_type") == "upload":
        candidates.append(("created_at", notification.get("created_at")))
    for source, raw in candidates:
        when = parse_time(raw)
        if when is not None and when <= arrival + MAX_FUTURE:
            return when, source
    return arrival, "arrival"


def parse_time(value: Any) -> datetime | None:
    """An aware UTC datetime from ISO 8601 text (``Z``, an offset, or none = UTC; a date alone is its
    midnight) or from epoch seconds; None for anything else."""
    if isinstance(value, str):
        text = value.strip()
        if not 10 <= len(text) <= 40 or not text[:4].isdigit():
            return None
        try:
            parsed = datetime.fromisoformat(text)
            return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
        except (ValueError, OverflowError):  # OverflowError: year 9999 with a negative offset, and the like
            return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        # One comparison rejects NaN, infinities and ints too large for a float (math.isfinite would raise
        # OverflowError on those: a 500 for a number no retry can change).
        if not 0 < value <= _NEWEST_EPOCH:
            return None
        return datetime.fromtimestamp(value, UTC)
    return None


# --- the assets a notification names ---------------------------------------------------------------------

class Changed:
    """One asset a notification names, with what the payload says about it."""

    __slots__ = ("asset", "changed_fields", "known_stamp")

    def __init__(self, asset: AssetRef, known_stamp: Any = None, changed_fields: set[str] | None = None) -> None:
        self.asset = asset
        self.known_stamp = known_stamp  # the field's value as the payload shows it (None: not shown)
        self.changed_fields = changed_fields  # metadata changes only: the external IDs whose value changed


def changes_in(notification: Mapping[str, Any], field: str) -> list[Changed]:
    """Every asset the notification names, each once, with its resource_type, type and public_id checked
    (400 otherwise: they go into API paths)."""
    kind = notification.get("notification_type")
    if kind == "upload":
        metadata = notification.get("metadata")
        known = metadata.get(field) if isinstance(metadata, Mapping) else None
        return [Changed(asset_named_by(notification), known)]
    if kind == "rename":
        return [Changed(asset_named_by(notification, key="to_public_id"))]

    found: dict[tuple[str, str, str], Changed] = {}
    for public_id, entry in _resource_entries(notification):
        asset = asset_named_by({**entry, "public_id": public_id})
        changed = Changed(asset)
        if kind == "resource_metadata_changed":
            previous, new = _metadata(entry, "previous_metadata"), _metadata(entry, "new_metadata")
            changed.changed_fields = changed_fields(previous, new)
            changed.known_stamp = new[field] if field in new else previous.get(field)
        found.setdefault((asset.resource_type, asset.delivery_type, asset.public_id), changed)
    return list(found.values())


def _resource_entries(notification: Mapping[str, Any]) -> list[tuple[Any, Mapping[str, Any]]]:
    """(public_id, entry) for each entry of ``resources``: a map keyed by public ID (metadata, context,
    display name, move) or a list of entries that carry it (tags); either shape is read for every type."""
    resources = notification.get("resources")
    if resources is None:
        raise BadRequest("The notification has no resources.", code="missing_field")
    if isinstance(resources, Mapping):
        pairs = list(resources.items())
    elif isinstance(resources, list):
        pairs = [(entry.get("public_id") if isinstance(entry, Mapping) else None, entry) for entry in resources]
    else:
        raise BadRequest("The notification's resources has the wrong type.", code="bad_field")
    for _, entry in pairs:
        if not isinstance(entry, Mapping):
            raise BadRequest("An entry of the notification's resources is not an object.", code="bad_field")
    return pairs


def _metadata(entry: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = entry.get(key)
    if value is None:
        return {}  # "no previous metadata": the field had no value before
    if not isinstance(value, Mapping):
        raise BadRequest(f"The notification's {key} is not an object.", code="bad_field")
    return value


def changed_fields(previous: Mapping[str, Any], new: Mapping[str, Any]) -> set[str]:
    """External IDs whose value differs between ``previous`` and ``new`` (a multi-select's values in any
    order are the same value). Works whether Cloudinary lists only the changed fields or all of them."""
    return {key for key in {*previous, *new} if _same_value(previous.get(key)) != _same_value(new.get(key))}


def _same_value(value: Any) -> Any:
    if isinstance(value, list):
        return sorted(repr(item) for item in value)
    return repr(value)


def groups_of(changes: list[Changed]) -> dict[tuple[str, str], list[Changed]]:
    """The changes by (resource_type, type): one Upload API metadata call stamps one such group."""
    grouped: dict[tuple[str, str], list[Changed]] = {}
    for changed in changes:
        grouped.setdefault((changed.asset.resource_type, changed.asset.delivery_type), []).append(changed)
    return grouped


def chunks(items: list[Any], size: int = MAX_IDS_PER_CALL) -> list[list[Any]]:
    return [items[start:start + size] for start in range(0, len(items), size)]
