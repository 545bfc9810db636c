"""Keep your own database in step with Cloudinary: one row per asset, and an append-only event log.

Trigger   a global notification URL for all types (Console > Settings > Webhook Notifications, or an
          Admin API trigger with event_type "all"); also per-call notification_url/eager_notification_url
Env       DATABASE_URL (default sqlite:///.local/asset_sync.sqlite3; production postgresql://...);
          CLOUDINARY_URL or CLOUDINARY_NOTIFICATION_SECRETS for the signature
Calls     Cloudinary: none (0 Admin API, 0 Upload API): the notification is the state. Database: one
          transaction per notification (event row + asset rows), schema migrated on first use
Responds  200 done (recorded and applied) | 200 ignored (already recorded; a type not in APPLIERS)
          | 400 malformed | 401 bad signature | 500 bad DATABASE_URL | 503 database unavailable (retried)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping

from functions.asset_sync.mirror import AssetChange, AssetRef, FolderChange, Plan
from shared.errors import BadRequest
from shared.webhook import ANY_TYPE, Context, Notification, Result, webhook

TYPE_CHECKING = False  # no `typing` import at run time: it costs cold-start milliseconds for annotations only
if TYPE_CHECKING:
    from typing import Any

DEFAULT_DATABASE_URL = "sqlite:///.local/asset_sync.sqlite3"

# Every type in Cloudinary's AsyncAPI description, plus moderation and info (add-ons). Each has an
# applier in APPLIERS below; any other type is answered 200 ignored by the wrapper.
NOTIFICATION_TYPES = (
    "upload", "eager", "rename", "delete", "move", "create_folder", "delete_folder",
    "move_or_rename_asset_folder", "resource_tags_changed", "resource_context_changed",
    "resource_metadata_changed", "resource_display_name_changed", "access_control_changed", "moderation",
    "info", "multi", "explode", "related_assets", "proof_status_changed",
)

# Fields of an upload (and of an asset named in any notification) that are stated as facts about it.
UPLOAD_FIELDS = ("public_id", "resource_type", "type", "asset_folder", "display_name", "version",
                 "version_id", "format", "bytes", "width", "height", "pages", "original_filename",
                 "created_at")


# --- the story ------------------------------------------------------------------------------------

@webhook(accepts={ANY_TYPE}, optional=("DATABASE_URL",), serverless_requires=("DATABASE_URL",))
def handle(notification: Notification, ctx: Context) -> Result:
    # What the notification states, per asset and folder (the appliers below): pure, no I/O.
    # Types Cloudinary adds later are kept in the event log (for replay once an applier exists), no state.
    plan = APPLIERS.get(notification.type, log_only)(notification.raw())
    key = dedupe_key(notification.raw())
    ctx.note(dedupe_key=key[:16], assets=len(plan.assets))

    # The event and its changes in one transaction; merged so that an older notification never
    # overwrites newer state (mirror.py). A dry run reports the plan and opens no database.
    database_url = ctx.settings.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    outcome = ctx.act(
        "record_and_apply", lambda: record(database_url, notification, ctx, key, plan),
        dedupe_key=key[:16], notification_type=notification.type,
        assets=[{"asset_id": change.ref.describe(), "changes": change.names()} for change in plan.assets],
        folders=[{"kind": change.kind, "path": change.path, "to_path": change.to_path}
                 for change in plan.folders],
    )
    if outcome is not None and outcome.duplicate:
        return ctx.ignored("already recorded: a repeat of a notification applied before", dedupe_key=key[:16])
    if outcome is not None and outcome.unmatched:
        ctx.note(unmatched=outcome.unmatched)
        return ctx.done(unmatched=outcome.unmatched)
    return ctx.done()


handler = handle.lambda_handler  # AWS Lambda (Function URL, API Gateway) entry point
app = handle.wsgi_app  # WSGI entry point: Vercel, the local server, any WSGI host


# --- the appliers: what each notification type says about which assets ---------------------------

def on_upload(payload: Mapping[str, Any]) -> Plan:
    """A new asset or a new version: its whole state at upload time, and it exists."""
    change = AssetChange(_ref(payload), fields={"deleted": False})
    _copy_fields(change, payload, UPLOAD_FIELDS)
    _set_url(change, payload)
    if isinstance(payload.get("tags"), list):
        change.resets["tags"] = {str(tag): True for tag in payload["tags"]}
    if isinstance(payload.get("context"), Mapping):
        custom = payload["context"].get("custom", payload["context"])
        if isinstance(custom, Mapping):
            change.resets["context"] = {str(key): value for key, value in custom.items()}
    if isinstance(payload.get("metadata"), Mapping):
        change.resets["metadata"] = dict(payload["metadata"])
    if "access_control" in payload:
        change.fields["access_control"] = payload["access_control"]
    _set_moderation(change, payload.get("moderation"))
    # Derived versions of an older version disappear by themselves (mirror._of_version).
    if payload.get("eager"):
        change.items["derived"] = _derivations(payload["eager"], payload.get("public_id"))
    return Plan([change])


def on_eager(payload: Mapping[str, Any]) -> Plan:
    """Eager transformations finished: their URLs are what a PIM stores (the course's "PIM update")."""
    entries = payload.get("eager")
    if not isinstance(entries, list):
        raise BadRequest("The notification's eager list is missing or not a list.", code="bad_field")
    if not payload.get("asset_id") and not payload.get("public_id"):
        return Plan()  # an old-style batch notification names no asset: the event log keeps it
    return Plan([AssetChange(_ref(payload), items={"derived": _derivations(entries, payload.get("public_id"))})])


def on_rename(payload: Mapping[str, Any]) -> Plan:
    to_public_id = _text(payload, "to_public_id", required=True)
    ref = AssetRef(_text(payload, "asset_id"), _text(payload, "from_public_id"),
                   _text(payload, "resource_type"), _text(payload, "type"))
    change = AssetChange(ref, fields={"public_id": to_public_id})
    _copy_fields(change, payload, ("resource_type", "type", "asset_folder", "display_name"))
    return Plan([change])


def on_delete(payload: Mapping[str, Any]) -> Plan:
    """Kept as a row with ``deleted``: a CMS must learn that the asset it shows is gone."""
    changes = []
    for resource in _resources_list(payload):
        change = AssetChange(_ref(resource), fields={"deleted": True})
        _copy_fields(change, resource, ("public_id", "resource_type", "type", "asset_folder", "display_name"))
        changes.append(change)
    return Plan(changes)


def on_move(payload: Mapping[str, Any]) -> Plan:
    changes = []
    for public_id, resource in _resources_map(payload):
        change = AssetChange(_ref(resource, public_id))
        _copy_fields(change, {**resource, "public_id": public_id}, ("public_id", "resource_type", "type",
                                                                      "display_name"))
        if isinstance(resource.get("to_asset_folder"), str):
            change.fields["asset_folder"] = resource["to_asset_folder"]
        changes.append(change)
    return Plan(changes)


def on_tags_changed(payload: Mapping[str, Any]) -> Plan:
    changes = []
    for resource in _resources_list(payload):
        entries = {str(tag): True for tag in _list(resource.get("added"))}
        entries.update({str(tag): None for tag in _list(resource.get("removed"))})
        changes.append(_identified(resource, items={"tags": entries}))
    return Plan(changes)


def on_context_changed(payload: Mapping[str, Any]) -> Plan:
    changes = []
    for public_id, resource in _resources_map(payload):
        entries: dict[str, Any] = {}
        for part in ("added", "updated"):
            if isinstance(resource.get(part), Mapping):
                entries.update({str(key): value for key, value in resource[part].items()})
        entries.update({str(key): None for key in _list(resource.get("removed"))})
        changes.append(_identified(resource, public_id, items={"context": entries}))
    return Plan(changes)


def on_metadata_changed(payload: Mapping[str, Any]) -> Plan:
    changes = []
    for public_id, resource in _resources_map(payload):
        new = resource.get("new_metadata") if isinstance(resource.get("new_metadata"), Mapping) else {}
        previous = resource.get("previous_metadata")
        entries = dict(new)
        if isinstance(previous, Mapping):  # a field that had a value and has none now was cleared
            entries.update({key: None for key in previous if key not in new})
        changes.append(_identified(resource, public_id, items={"metadata": entries}))
    return Plan(changes)


def on_display_name_changed(payload: Mapping[str, Any]) -> Plan:
    changes = []
    for public_id, resource in _resources_map(payload):
        fields = {"display_name": resource.get("new_display_name")}
        if isinstance(resource.get("asset_folder"), str):
            fields["asset_folder"] = resource["asset_folder"]
        changes.append(_identified(resource, resource.get("public_id") or public_id, fields=fields))
    return Plan(changes)


def on_access_control_changed(payload: Mapping[str, Any]) -> Plan:
    changes = [_identified(resource, fields={"access_control": resource.get("new_access_control")})
               for resource in _resources_list(payload)]
    return Plan(changes)


def on_moderation(payload: Mapping[str, Any]) -> Plan:
    change = _identified(payload, fields={"moderation_status": _text(payload, "moderation_status", required=True)})
    if isinstance(payload.get("moderation_kind"), str):
        change.fields["moderation_kind"] = payload["moderation_kind"]
    return Plan([change])


def on_info(payload: Mapping[str, Any]) -> Plan:
    """An add-on finished (auto-tagging, OCR...): its status and data, by add-on."""
    kind = _text(payload, "info_kind", required=True)
    result = {"status": payload.get("info_status"), "data": payload.get("info_data")}
    return Plan([_identified(payload, items={"info": {kind: result}})])


def on_multi(payload: Mapping[str, Any]) -> Plan:
    """A generated animated GIF / PDF / video is a new asset of its own."""
    change = AssetChange(_ref(payload), fields={"deleted": False})
    _copy_fields(change, payload, ("public_id", "version", "format", "resource_type", "type"))
    _set_url(change, payload)
    return Plan([change])


def on_explode(payload: Mapping[str, Any]) -> Plan:
    """The pages of a PDF/GIF as derived images of the source asset."""
    if not payload.get("asset_id") and not payload.get("public_id"):
        return Plan()
    pages = {}
    for info in _list(payload.get("image_infos")):
        if isinstance(info, Mapping) and (info.get("secure_url") or info.get("url")):
            url = info.get("secure_url") or info.get("url")
            pages[str(url)] = {"transformation": "explode", "secure_url": url, "bytes": info.get("bytes")}
    change = AssetChange(_ref(payload), items={"derived": pages})
    if isinstance(payload.get("pages"), int):
        change.fields["pages"] = payload["pages"]
    return Plan([change])


def on_create_folder(payload: Mapping[str, Any]) -> Plan:
    return Plan(folders=[FolderChange("create", _folder_path(payload))])


def on_delete_folder(payload: Mapping[str, Any]) -> Plan:
    # Cloudinary sends a delete notification for every asset in it; the folder itself is all we mark.
    return Plan(folders=[FolderChange("delete", _folder_path(payload))])


def on_folder_moved(payload: Mapping[str, Any]) -> Plan:
    if "fail" in str(payload.get("status") or "").lower():
        return Plan()
    from_path = _text(payload, "from_path", required=True).strip("/")
    to_path = _text(payload, "to_path", required=True).strip("/")
    return Plan(folders=[FolderChange("rename", from_path, to_path)])


def log_only(payload: Mapping[str, Any]) -> Plan:
    """No asset state to change (related assets, proof approvals): the event log keeps it for audit."""
    return Plan()


APPLIERS: dict[str, Callable[[Mapping[str, Any]], Plan]] = {
    "upload": on_upload,
    "eager": on_eager,
    "rename": on_rename,
    "delete": on_delete,
    "move": on_move,
    "create_folder": on_create_folder,
    "delete_folder": on_delete_folder,
    "move_or_rename_asset_folder": on_folder_moved,
    "resource_tags_changed": on_tags_changed,
    "resource_context_changed": on_context_changed,
    "resource_metadata_changed": on_metadata_changed,
    "resource_display_name_changed": on_display_name_changed,
    "access_control_changed": on_access_control_changed,
    "moderation": on_moderation,
    "info": on_info,
    "multi": on_multi,
    "explode": on_explode,
    "related_assets": log_only,
    "proof_status_changed": log_only,
}


def record(database_url: str, notification: Notification, ctx: Context, key: str, plan: Plan) -> Any:
    """The event and every state change it makes, in one transaction (a failure is a 503)."""
    from datetime import UTC, datetime

    from functions.asset_sync import db

    headers = ctx.request.headers
    event = db.Event(
        dedupe_key=key,
        notification_type=notification.type,
        asset_id=_first_asset_id(notification.raw(), plan),
        received_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        payload=ctx.request.body.decode("utf-8"),
        signature_timestamp=headers.get("X-Cld-Timestamp"),
        signature=headers.get("X-Cld-Signature"),
    )
    return db.store(database_url).record(event, plan)


def dedupe_key(payload: Mapping[str, Any]) -> str:
    """A retry repeats the notification's content exactly; its signature and timestamp headers change.
    So the key is a hash of the content, independent of key order and whitespace."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# --- helpers --------------------------------------------------------------------------------------

def _text(source: Mapping[str, Any], key: str, *, required: bool = False) -> str | None:
    value = source.get(key)
    if value is None or value == "":
        if required:
            raise BadRequest(f"The notification has no {key}.", code="missing_field")
        return None
    if not isinstance(value, str):
        raise BadRequest(f"The notification's {key} has the wrong type.", code="bad_field")
    return value


def _ref(source: Mapping[str, Any], public_id: str | None = None) -> AssetRef:
    ref = AssetRef(_text(source, "asset_id"), _text(source, "public_id") or public_id,
                   _text(source, "resource_type"), _text(source, "type"))
    if not ref.asset_id and not ref.public_id:
        raise BadRequest("The notification names an asset with neither asset_id nor public_id.",
                         code="missing_field")
    return ref


def _identified(source: Mapping[str, Any], public_id: str | None = None, **parts: Any) -> AssetChange:
    """A change to a named asset; its public ID, resource type and delivery type are facts too."""
    change = AssetChange(_ref(source, public_id), **parts)
    _copy_fields(change, {**source, "public_id": change.ref.public_id}, ("public_id", "resource_type", "type"))
    return change


def _copy_fields(change: AssetChange, source: Mapping[str, Any], names: tuple[str, ...]) -> None:
    for name in names:
        if source.get(name) is not None:
            change.fields[name] = source[name]


def _set_url(change: AssetChange, payload: Mapping[str, Any]) -> None:
    url = payload.get("secure_url") or payload.get("url")
    if isinstance(url, str):
        change.fields["secure_url"] = url
        # the URL embeds the public ID of its time: a later rename rewrites it (mirror._current_url)
        change.fields["url_public_id"] = payload.get("public_id")


def _set_moderation(change: AssetChange, moderation: Any) -> None:
    if isinstance(moderation, list) and moderation and isinstance(moderation[-1], Mapping):
        change.fields["moderation_status"] = moderation[-1].get("status")
        change.fields["moderation_kind"] = moderation[-1].get("kind")


def _derivations(entries: Any, public_id: Any) -> dict[str, Any]:
    """Derived versions by transformation. Each keeps the public ID its URL was made for, so that a later
    rename can rewrite the URL (``mirror.project``)."""
    derived: dict[str, Any] = {}
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, Mapping):
            raise BadRequest("The notification's eager list holds a non-object.", code="bad_field")
        transformation = str(entry.get("transformation") or entry.get("secure_url") or entry.get("url"))
        derived[transformation] = {name: entry.get(name) for name in (
            "transformation", "secure_url", "width", "height", "bytes", "format", "status", "reason")
            if entry.get(name) is not None}
        if "secure_url" not in derived[transformation] and entry.get("url"):
            derived[transformation]["secure_url"] = entry["url"]
        if isinstance(public_id, str):
            derived[transformation]["public_id"] = public_id
    return derived


def _resources_list(payload: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    resources = payload.get("resources")
    if not isinstance(resources, list) or not all(isinstance(item, Mapping) for item in resources):
        raise BadRequest("The notification's resources are missing or not a list of objects.", code="bad_field")
    return resources


def _resources_map(payload: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """Move, context, metadata and display-name notifications key their resources by public ID."""
    resources = payload.get("resources")
    if not isinstance(resources, Mapping) or not all(isinstance(item, Mapping) for item in resources.values()):
        raise BadRequest("The notification's resources are missing or not an object of objects.",
                         code="bad_field")
    return [(str(public_id), resource) for public_id, resource in resources.items()]


def _folder_path(payload: Mapping[str, Any]) -> str:
    path = _text(payload, "folder_path") or _text(payload, "folder_name")
    if not path:
        raise BadRequest("The notification has no folder_path.", code="missing_field")
    return path.strip("/")


def _first_asset_id(payload: Mapping[str, Any], plan: Plan) -> str | None:
    for change in plan.assets:
        if change.ref.asset_id:
            return change.ref.asset_id
    asset_id = payload.get("asset_id")
    if isinstance(asset_id, str):
        return asset_id
    for asset in payload.get("assets") or []:  # proof_status_changed
        if isinstance(asset, Mapping) and isinstance(asset.get("asset_id"), str):
            return asset["asset_id"]
    return None


def _list(value: object) -> list:
    """A payload field that should be a list; anything else (a wrong type from a bad sender) counts as empty."""
    return value if isinstance(value, list) else []
