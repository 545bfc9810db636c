"""The merge rules of the mirror: pure functions, no database.

Notifications arrive late, twice and out of order (Cloudinary retries for up to ~20 minutes). So the mirror
does not apply them as a sequence of updates; it keeps, for every fact, the time of the notification that
stated it, and a fact only replaces an older one:

- a scalar field (public_id, display_name, access_control, deleted, ...) is a last-writer-wins register:
  ``[value, clock]``. A notification may also state a field only as a default (an eager result names the
  public ID its transformation was requested for; a delivery URL tells the resource and delivery type): a
  default has a weak clock, below every real one, so it fills a field nobody stated and never overrides one;
- tags, context, structured metadata, derived versions and add-on info are keyed maps whose entries are
  registers (a removal is an entry with value ``None``), plus a ``reset`` clock: an upload states the whole
  tag list at its time, so entries older than it are gone and older tag changes arriving later are void.
  Derived versions are shown only for the asset version in their URL, so a new upload hides the old ones.

A clock is ``"<event time, ISO UTC, microseconds>#<event key>"``: ordered by when Cloudinary says the
change happened (``event_time``), ties broken by the event's dedupe key, so equal clocks mean the same event.
A row known only by its public ID (no ``asset_id`` yet) merges into the asset's own row with ``combine``. The result
depends only on the set of events, not on the order they arrive in (the tests replay 1,000 shuffled
notifications with duplicates and compare), and applying an event twice changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

TYPE_CHECKING = False  # no `typing` import at run time: it costs cold-start milliseconds for annotations only
if TYPE_CHECKING:
    from typing import Any

MAPS = ("tags", "context", "metadata", "derived", "info")

# (Plain classes below, not dataclasses: importing ``dataclasses`` would slow every cold start.)


class AssetRef:
    """How a notification names an asset. ``asset_id`` is the key; the rest helps when it is missing."""

    __slots__ = ("asset_id", "public_id", "resource_type", "type")

    def __init__(self, asset_id: str | None, public_id: str | None = None, resource_type: str | None = None,
                 type: str | None = None) -> None:
        self.asset_id = asset_id
        self.public_id = public_id
        self.resource_type = resource_type
        self.type = type

    def describe(self) -> str:
        return self.asset_id or self.public_id or "(unnamed)"


class AssetChange:
    """What one notification states about one asset."""

    __slots__ = ("defaults", "fields", "items", "ref", "resets")

    def __init__(self, ref: AssetRef, fields: dict[str, Any] | None = None,
                 resets: dict[str, dict[str, Any]] | None = None,
                 items: dict[str, dict[str, Any]] | None = None,
                 defaults: dict[str, Any] | None = None) -> None:
        self.ref = ref
        self.fields = fields if fields is not None else {}  # registers: name -> value
        self.resets = resets if resets is not None else {}  # map -> its whole content
        self.items = items if items is not None else {}  # map -> {key: value, or None = removed}
        self.defaults = defaults if defaults is not None else {}  # registers set only where nothing is stated

    def names(self) -> list[str]:
        """The fields and maps it touches, for the dry-run report and the log."""
        return sorted({*self.fields, *self.resets, *self.items, *self.defaults})


class FolderChange:
    """create / delete of a folder, or a rename (move) of ``path`` to ``to_path``."""

    __slots__ = ("kind", "path", "to_path")

    def __init__(self, kind: str, path: str, to_path: str | None = None) -> None:
        self.kind = kind
        self.path = path
        self.to_path = to_path


class Plan:
    """Everything one notification changes; empty for log-only types."""

    __slots__ = ("assets", "folders")

    def __init__(self, assets: list[AssetChange] | None = None, folders: list[FolderChange] | None = None) -> None:
        self.assets = assets if assets is not None else []
        self.folders = folders if folders is not None else []


# --- clocks -----------------------------------------------------------------------------------------

_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
EARLIEST = "0001-01-01T00:00:00.000000Z"
LATEST = "9999-12-31T23:59:59.999999Z"
# Times a payload states about itself, for notifications without notification_context and timestamp
# (moderation, info, uploads before 2021): the state they describe was true at the latest of them.
PAYLOAD_TIMES = ("moderation_updated_at", "updated_at", "uploaded_at", "created_at")


def _parse_time(value: Any) -> Any:
    if not isinstance(value, str) or not value.strip():
        return None
    from datetime import UTC, datetime  # here, not at module level: a rejected request never needs it

    text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def iso_utc(value: Any) -> str | None:
    """An ISO 8601 time (``Z``, offset or none) as a sortable ``YYYY-MM-DDTHH:MM:SS.ffffffZ``; None when it
    is not a time, or not one in years 1-9999 once in UTC (``0001-01-01T00:00:00+01:00`` is year 0)."""
    return _utc_text(value, clamp=False)


def sortable_time(value: Any) -> str | None:
    """Like ``iso_utc``, but a time beyond years 1-9999 in UTC orders at the limit it passed: for clocks."""
    return _utc_text(value, clamp=True)


def _utc_text(value: Any, *, clamp: bool) -> str | None:
    moment = _parse_time(value)
    if moment is None:
        return None
    from datetime import UTC

    try:
        return moment.astimezone(UTC).strftime(_FORMAT)
    except OverflowError:
        if not clamp:
            return None
        return EARLIEST if moment.year < 5000 else LATEST


def event_time(payload: Mapping[str, Any], received_at: str) -> str:
    """When the state the notification describes was true.

    The later of the trigger time Cloudinary reports (millisecond precision) and the notification's own
    timestamp (an asynchronous eager result is generated long after the upload that triggered it). Without
    either (moderation, info, uploads before 2021), the latest time the payload states about the asset
    (``PAYLOAD_TIMES``): a late retry of an older moderation decision then stays older than a newer one.
    Else (delete, explode: no time at all) when we received it, stored with the event so replay agrees."""
    context = payload.get("notification_context")
    triggered = sortable_time(context.get("triggered_at")) if isinstance(context, Mapping) else None
    known = [moment for moment in (triggered, sortable_time(payload.get("timestamp"))) if moment]
    if not known:
        known = [moment for moment in map(sortable_time, (payload.get(name) for name in PAYLOAD_TIMES)) if moment]
    return max(known) if known else (sortable_time(received_at) or received_at)


def make_clock(time: str, dedupe_key: str) -> str:
    return f"{time}#{dedupe_key[:16]}"


def clock_time(clock: str) -> str:
    return clock.split("#", 1)[0].lstrip(WEAK)


# --- merging ----------------------------------------------------------------------------------------

def new_state() -> dict[str, Any]:
    return {"fields": {}, "maps": {}, "last": None}


WEAK = " "  # prefixed to a clock: sorts below every real clock (which starts with a digit)


def _copy(state: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy that merging can change without touching ``state``. Registers and entries are replaced, never
    changed in place, so copying the dicts that hold them is enough (a deep copy costs ten times more)."""
    if not state:
        return new_state()
    maps = state.get("maps") or {}
    return {"fields": dict(state.get("fields") or {}),
            "maps": {name: {"reset": held.get("reset"), "items": dict(held.get("items") or {})}
                     for name, held in maps.items()},
            "last": state.get("last")}


def merge(state: Mapping[str, Any] | None, change: AssetChange, clock: str) -> dict[str, Any]:
    """The state after ``change`` stated at ``clock``; ``state`` is not modified."""
    merged = _copy(state)
    fields = merged["fields"]
    for name, value in change.fields.items():
        _set(fields, name, value, clock)
    for name, value in change.defaults.items():
        _set(fields, name, value, WEAK + clock)
    for name, content in change.resets.items():
        _reset(merged["maps"].setdefault(name, {"reset": None, "items": {}}), content, clock)
    for name, entries in change.items.items():
        target = merged["maps"].setdefault(name, {"reset": None, "items": {}})
        for key, value in entries.items():
            _put(target, key, value, clock)
    if merged.get("last") is None or merged["last"] < clock:
        merged["last"] = clock
    return merged


def combine(first: Mapping[str, Any] | None, second: Mapping[str, Any] | None) -> dict[str, Any]:
    """One state holding both: what applying every change behind ``first`` and ``second`` to one state gives.
    (A row known only by its public ID merges into the asset's own row when its asset_id appears.)"""
    merged = _copy(first)
    other = _copy(second)
    for name, entry in other["fields"].items():
        _set(merged["fields"], name, entry[0], entry[1])
    for name, held in other["maps"].items():
        target = merged["maps"].setdefault(name, {"reset": None, "items": {}})
        resets = [clock for clock in (target["reset"], held["reset"]) if clock is not None]
        target["reset"] = max(resets) if resets else None
        for key, entry in held["items"].items():
            current = target["items"].get(key)
            if current is None or current[1] < entry[1]:
                target["items"][key] = entry
        if target["reset"] is not None:  # entries older than the newest whole list are history
            target["items"] = {key: entry for key, entry in target["items"].items() if entry[1] >= target["reset"]}
    lasts = [clock for clock in (merged.get("last"), other.get("last")) if clock is not None]
    merged["last"] = max(lasts) if lasts else None
    return merged


def _set(fields: dict[str, Any], name: str, value: Any, clock: str) -> None:
    current = fields.get(name)
    if current is None or current[1] < clock:
        fields[name] = [value, clock]


def _reset(target: dict[str, Any], content: Mapping[str, Any], clock: str) -> None:
    if target["reset"] is not None and target["reset"] >= clock:
        return  # a newer whole list is already in: this one is history
    target["reset"] = clock
    # Entries newer than this whole list stay (they changed it afterwards); older ones are replaced.
    kept = {key: entry for key, entry in target["items"].items() if entry[1] > clock}
    for key, value in content.items():
        kept.setdefault(key, [value, clock])
    target["items"] = kept


def _put(target: dict[str, Any], key: str, value: Any, clock: str) -> None:
    if target["reset"] is not None and clock < target["reset"]:
        return  # a later whole list already says what the map held after this change
    current = target["items"].get(key)
    if current is None or current[1] < clock:
        target["items"][key] = [value, clock]


# --- what the mirror row shows ---------------------------------------------------------------------

SCALARS = ("public_id", "resource_type", "type", "display_name", "version", "version_id", "format", "bytes",
           "width", "height", "pages", "original_filename", "created_at", "access_control",
           "moderation_status", "moderation_kind")


def project(state: Mapping[str, Any], renames: Iterable[tuple[str, str, str]] = ()) -> dict[str, Any]:
    """The row a CMS reads, from the merge state. ``renames`` are folder renames (clock, from, to)."""
    fields = state.get("fields", {})
    maps = state.get("maps", {})

    def value(name: str) -> Any:
        entry = fields.get(name)
        return entry[0] if entry else None

    def live(name: str) -> dict[str, Any]:
        items = (maps.get(name) or {}).get("items", {})
        return {key: entry[0] for key, entry in sorted(items.items()) if entry[0] is not None}

    row = {name: value(name) for name in SCALARS}
    row["asset_folder"] = _folder(fields.get("asset_folder"), renames)
    row["secure_url"] = _current_url(value("secure_url"), value("url_public_id"), row["public_id"])
    row["tags"] = list(live("tags"))
    row["context"] = live("context")
    row["metadata"] = live("metadata")
    row["derived"] = [_derived_now(item, row["public_id"]) for item in live("derived").values()
                      if _of_version(item, row["version"])]
    row["info"] = live("info")
    deleted = fields.get("deleted")
    row["deleted"] = bool(deleted and deleted[0])
    row["deleted_at"] = clock_time(deleted[1]) if deleted and deleted[0] else None
    row["last_notification_at"] = clock_time(state["last"]) if state.get("last") else None
    return row


def folder_renames_after(renames: Iterable[tuple[str, str, str]], clock: str) -> list[tuple[str, str, str]]:
    return sorted(rename for rename in renames if rename[0] > clock)


def rewrite_path(path: str, from_path: str, to_path: str) -> str | None:
    """``path`` moved by renaming folder ``from_path`` to ``to_path``; None when it is not inside it."""
    if path == from_path:
        return to_path
    if from_path and path.startswith(from_path + "/"):
        return to_path + path[len(from_path):]
    return None


def _folder(entry: list[Any] | None, renames: Iterable[tuple[str, str, str]]) -> str | None:
    """The folder the asset was last put in, moved along by every folder rename that came after."""
    if not entry or entry[0] is None:
        return None
    path = entry[0]
    for _clock, from_path, to_path in folder_renames_after(renames, entry[1]):
        path = rewrite_path(path, from_path, to_path) or path
    return path


_VERSION_IN_URL = re.compile(r"/v(\d+)/")


def _of_version(item: Any, version: Any) -> bool:
    """A derived version belongs to the asset version in its URL: a new upload hides the old ones
    (whatever order the upload and the eager notifications arrive in)."""
    if not isinstance(item, Mapping) or not isinstance(version, int) or not isinstance(item.get("secure_url"), str):
        return True
    found = _VERSION_IN_URL.search(item["secure_url"])
    return found is None or int(found.group(1)) == version


def _derived_now(item: Any, public_id: str | None) -> Any:
    if not isinstance(item, Mapping) or not item.get("public_id"):
        return item
    url = _current_url(item.get("secure_url"), item["public_id"], public_id)
    return {**item, "secure_url": url, "public_id": public_id or item["public_id"]}


def _current_url(url: str | None, url_public_id: str | None, public_id: str | None) -> str | None:
    """A rename notification carries no URL: the delivery URL of the stored version is the uploaded URL
    with the new public ID in place of the old one."""
    if not url or not url_public_id or not public_id or url_public_id == public_id:
        return url
    marker = f"/{url_public_id}"
    at = url.rfind(marker)
    if at < 0:
        return url
    rest = url[at + len(marker):]
    if rest and not rest.startswith("."):
        return url
    return url[:at] + f"/{public_id}" + rest
