"""Keep your own database in step with Cloudinary: one row per asset, and an append-only event log.

Trigger   a global notification URL for all types (Console > Settings > Webhook Notifications, or an
          Admin API trigger with event_type "all"); also per-call notification_url/eager_notification_url
Env       DATABASE_URL (default sqlite:///.local/asset_sync.sqlite3; production postgresql://...);
          ASSET_SYNC_TIME_BUDGET_SECONDS (default 10); ASSET_SYNC_DB_TIMEOUT_SECONDS (default 5);
          CLOUDINARY_URL or CLOUDINARY_NOTIFICATION_SECRETS
Calls     Cloudinary: none (0 Admin API, 0 Upload API): the notification is the state. Database: one
          transaction per notification (event row + asset rows, in batches), schema migrated on first use.
          A scheduled invocation ({"reconcile": {...}}, deploy.toml) runs reconcile.py instead: one Search API
          call per 500 assets
Responds  200 done (recorded and applied, or recorded and quarantined: see `status`) | 200 ignored (already
          recorded) | 400 malformed | 401 bad signature | 500 bad DATABASE_URL | 503 database unavailable, or
          the time budget ran out with part of a large notification applied (the retry finishes it)
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping

from functions.asset_sync import storable
from functions.asset_sync.mirror import AssetChange, AssetRef, FolderChange, Plan, event_time, make_clock
from shared import config
from shared.assets import types_in_url
from shared.errors import BadRequest, ConfigError, DependencyUnavailable
from shared.webhook import ANY_TYPE, Context, Notification, Result, webhook

TYPE_CHECKING = False  # no `typing` import at run time: it costs cold-start milliseconds for annotations only
if TYPE_CHECKING:
    from typing import Any

DEFAULT_DATABASE_URL = "sqlite:///.local/asset_sync.sqlite3"

# Every type pycloudinary's create_trigger lists (1.46: its docstring names them), plus related_assets and
# proof_status_changed from Cloudinary's AsyncAPI description. Each has an applier in APPLIERS below. A type
# Cloudinary adds later is recorded too (the event log keeps it, for replay once an applier exists).
NOTIFICATION_TYPES = (
    "upload", "eager", "rename", "delete", "delete_by_token", "restore_asset_version", "move", "create_folder",
    "delete_folder", "move_or_rename_asset_folder", "resource_tags_changed", "resource_context_changed",
    "resource_metadata_changed", "resource_display_name_changed", "access_control_changed", "moderation",
    "info", "multi", "explode", "sprite", "publish", "generate_archive", "bulk_refresh_auto_fetch",
    "invalidate_custom_cdn", "error", "report", "moderation_summary", "related_assets", "proof_status_changed",
)
DEFAULT_TIME_BUDGET_SECONDS = 10.0  # Cloudinary waits 20 s; this leaves room for the commit and the network
MAX_LISTED_ASSETS = 50  # the answer lists this many of a notification's assets, and their total

# Fields of an upload (and of an asset named in any notification) that are stated as facts about it.
UPLOAD_FIELDS = ("public_id", "resource_type", "type", "asset_folder", "display_name", "version",
                 "version_id", "format", "bytes", "width", "height", "pages", "original_filename",
                 "created_at")


# --- the story ------------------------------------------------------------------------------------

def reconcile_on_schedule(options: Mapping[str, Any], seconds: float | None) -> dict[str, Any]:
    """deploy.toml's `reconcile` schedule: an EventBridge rule invokes the function with {"reconcile": {...}}.
    Continues (or starts) a reconcile pass within the invocation's ``seconds``; see reconcile.py."""
    from functions.asset_sync import reconcile  # only a scheduled invocation loads the search and the SDK

    return reconcile.scheduled(options, seconds)


@webhook(accepts={ANY_TYPE}, optional=("DATABASE_URL", "ASSET_SYNC_TIME_BUDGET_SECONDS",
                                       "ASSET_SYNC_DB_TIMEOUT_SECONDS"),
         serverless_requires=("DATABASE_URL",), scheduled={"reconcile": reconcile_on_schedule})
def handle(notification: Notification, ctx: Context) -> Result:
    # What the notification states, per asset and folder (the appliers below): pure, no I/O. Values the
    # databases cannot hold as they are (a NUL, NaN, 1e400, JSON hundreds deep) get a stand-in in the mirror;
    # the event log keeps the body exactly as signed.
    plan = plan_for(notification.type, notification.raw(), ctx.request.body)
    key = dedupe_key(notification.raw())
    ctx.note(dedupe_key=key[:16], assets=len(plan.assets))

    # The event and its changes in one transaction; merged so that an older notification never overwrites
    # newer state (mirror.py). A dry run reports the plan and opens no database.
    database_url = ctx.settings.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    budget = time_budget()
    outcome = ctx.act("record_and_apply", lambda: record(database_url, notification, ctx, key, plan, budget),
                      **describe(plan, key, notification.type))
    if outcome is None:  # dry run
        return ctx.done()
    if outcome.duplicate:
        what = "quarantined" if outcome.quarantined else "applied"
        return ctx.ignored(f"already recorded: a repeat of a notification {what} before", dedupe_key=key[:16])
    if outcome.quarantined:
        # A value the database refused for good (a retry would fail the same way, and a 503 would have the
        # notification dropped): kept in the event log, marked, shown by `status`, applied by `replay` later.
        ctx.note(quarantined=outcome.quarantined)
        return ctx.done(quarantined=outcome.quarantined)
    if outcome.partial:
        # The time budget ran out: what is done is committed with the event's progress; the retry continues.
        raise DependencyUnavailable("Part of the notification is applied; a retry will finish the rest.",
                                    code="time_budget_exhausted",
                                    log_detail=f"{outcome.progress} of {len(plan.assets)} assets applied")
    return ctx.done()


handler = handle.lambda_handler  # AWS Lambda (Function URL, API Gateway) entry point
app = handle.wsgi_app  # WSGI entry point: Vercel, the local server, any WSGI host


# --- the appliers: what each notification type says about which assets ---------------------------

def on_upload(payload: Mapping[str, Any]) -> Plan:
    """A new asset or a new version: its whole state at upload time, and it exists."""
    change = _named(payload, fields={"deleted": False})
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
    """Eager transformations finished: their URLs are what a PIM stores (the course's "PIM update").

    The public ID it names (or, in old notifications, its URLs name) is the one the transformations were
    requested for: stated as a default, so a rename that happened meanwhile keeps the new one."""
    entries = payload.get("eager")
    if not isinstance(entries, list):
        raise BadRequest("The notification's eager list is missing or not a list.", code="bad_field")
    urls = [entry.get("secure_url") or entry.get("url") for entry in entries if isinstance(entry, Mapping)]
    change = _named(payload, urls=urls, stated=False)
    if change is None:
        return Plan()  # names no asset, and its URLs no public ID: the event log keeps it
    change.items["derived"] = _derivations(entries, change.ref.public_id)
    return Plan([change])


def on_rename(payload: Mapping[str, Any]) -> Plan:
    to_public_id = _text(payload, "to_public_id", required=True)
    ref = AssetRef(_text(payload, "asset_id"), _text(payload, "from_public_id"),
                   *_types(payload)[:2])
    if not ref.asset_id and not ref.public_id:
        raise BadRequest("The rename names neither asset_id nor from_public_id.", code="missing_field")
    change = AssetChange(ref, fields={"public_id": to_public_id})
    _copy_fields(change, payload, ("resource_type", "type", "asset_folder", "display_name"))
    return Plan([change])


def on_delete(payload: Mapping[str, Any]) -> Plan:
    """Kept as a row with ``deleted``: a CMS must learn that the asset it shows is gone."""
    changes = []
    for resource in _resources_list(payload):
        change = _named(resource, fields={"deleted": True})
        _copy_fields(change, resource, ("public_id", "resource_type", "type", "asset_folder", "display_name"))
        changes.append(change)
    return Plan(changes)


def on_delete_by_token(payload: Mapping[str, Any]) -> Plan:
    """A client-side delete with a delete token (the Upload Widget's): the asset it names is gone."""
    if "resources" in payload:
        return on_delete(payload)
    if not payload.get("asset_id") and not payload.get("public_id"):
        return Plan()  # no documented payload names no asset: the event log keeps it
    change = _named(payload, fields={"deleted": True})
    _copy_fields(change, payload, ("public_id", "resource_type", "type"))
    return Plan([change])


def on_restore_asset_version(payload: Mapping[str, Any]) -> Plan:
    """A previous version restored (Console or Admin API): the asset exists again, with that version."""
    resources = _resources_list(payload) if "resources" in payload else [payload]
    changes = []
    for resource in resources:
        if not resource.get("asset_id") and not resource.get("public_id"):
            continue
        change = _named(resource, fields={"deleted": False})
        _copy_fields(change, resource, UPLOAD_FIELDS)
        _set_url(change, resource)
        changes.append(change)
    return Plan(changes)


def on_move(payload: Mapping[str, Any]) -> Plan:
    changes = []
    for public_id, resource in _resources_map(payload):
        change = _named(resource, public_id)
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
    """Context keys added, updated, removed: as objects ({"alt": "..."}) or, as the Media Library sends
    them, as lists of {"name": ..., "value": ...}."""
    changes = []
    for public_id, resource in _resources_map(payload):
        entries: dict[str, Any] = {}
        for part in ("added", "updated"):
            entries.update(_context_pairs(resource.get(part)))
        entries.update({name: None for name in _context_names(resource.get("removed"))})
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
    """An add-on finished (auto-tagging, OCR, Google video tagging...): its status and data, by add-on."""
    kind = _text(payload, "info_kind", required=True)
    result = {"status": payload.get("info_status"), "data": payload.get("info_data")}
    return Plan([_identified(payload, items={"info": {kind: result}})])


def on_multi(payload: Mapping[str, Any]) -> Plan:
    """A generated animated GIF / PDF / video is a new asset of its own."""
    change = _named(payload, fields={"deleted": False})
    _copy_fields(change, payload, ("public_id", "version", "format", "resource_type", "type"))
    _set_url(change, payload)
    return Plan([change])


def on_sprite(payload: Mapping[str, Any]) -> Plan:
    """A generated sprite (generate_sprite with async) is an asset of its own (type "sprite", public ID the
    tag it was made of): its image, with its CSS and JSON as derived files."""
    image = payload.get("secure_image_url") or payload.get("image_url")
    change = _named(payload, urls=[image], fields={"deleted": False})
    if change is None:
        return Plan()
    _copy_fields(change, payload, ("version", "resource_type", "type"))
    if isinstance(image, str):
        change.fields["secure_url"] = image
        change.fields["url_public_id"] = change.ref.public_id
        name = image.rsplit("/", 1)[-1]
        if "." in name:
            change.fields["format"] = name.rpartition(".")[2]
    files = {}
    for kind in ("css", "json"):
        url = payload.get(f"secure_{kind}_url") or payload.get(f"{kind}_url")
        if isinstance(url, str):
            files[url] = {"transformation": f"sprite {kind}", "secure_url": url, "format": kind}
    change.items["derived"] = files
    return Plan([change])


def on_explode(payload: Mapping[str, Any]) -> Plan:
    """The pages of a PDF/GIF as derived images of the source asset (which, in old notifications, only the
    pages' URLs name)."""
    infos = [info for info in _list(payload.get("image_infos")) if isinstance(info, Mapping)]
    urls = [info.get("secure_url") or info.get("url") for info in infos]
    change = _named(payload, urls=urls, stated=False)
    if change is None:
        return Plan()
    pages = {}
    for info, url in zip(infos, urls, strict=True):
        if url:
            pages[str(url)] = {"transformation": "explode", "secure_url": url, "bytes": info.get("bytes")}
    change.items["derived"] = pages
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
    """No asset state to change (related assets, proof approvals, archives, CDN invalidations, reports...), or
    a type this version does not know: the event log keeps it, for audit and for replay."""
    return Plan()


APPLIERS: dict[str, Callable[[Mapping[str, Any]], Plan]] = {
    "upload": on_upload,
    "eager": on_eager,
    "rename": on_rename,
    "delete": on_delete,
    "delete_by_token": on_delete_by_token,
    "restore_asset_version": on_restore_asset_version,
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
    "sprite": on_sprite,
    "publish": log_only,
    "generate_archive": log_only,
    "bulk_refresh_auto_fetch": log_only,
    "invalidate_custom_cdn": log_only,
    "error": log_only,
    "report": log_only,
    "moderation_summary": log_only,
    "related_assets": log_only,
    "proof_status_changed": log_only,
}


# --- asset_sync's own events: written by reconcile.py, never received ----------------------------

# The fields a search result states about its asset (besides public_id and the types, which name it).
SEARCHED_FIELDS = ("asset_folder", "display_name", "version", "version_id", "format", "bytes", "width", "height",
                   "pages", "created_at")


def on_reconcile(payload: Mapping[str, Any]) -> Plan:
    """What `reconcile` found: the asset as Cloudinary's Search API returned it ("missing" from the mirror, or
    "stale" there), or gone from a search over every asset ("vanished"). Stated at the event's time (the search's,
    less the index lag), so a notification of a later change wins whenever it arrives. The search was asked for
    ``fields`` (tags, context, metadata): one its result lacks is empty."""
    if payload.get("reconcile") == "vanished":
        return Plan([_named(payload, fields={"deleted": True})])
    resource = payload.get("resource")
    if not isinstance(resource, Mapping):
        raise BadRequest("The reconcile event has no resource.", code="missing_field")
    change = _identified(resource, fields={"deleted": False})
    _copy_fields(change, resource, SEARCHED_FIELDS)
    _set_url(change, resource)
    asked = set(_list(payload.get("fields")))
    if "tags" in asked or isinstance(resource.get("tags"), list):
        change.resets["tags"] = {str(tag): True for tag in _list(resource.get("tags"))}
    context = resource.get("context")
    if isinstance(context, Mapping) and isinstance(context.get("custom"), Mapping):
        context = context["custom"]  # the Admin API's shape; the Search API's is flat
    if "context" in asked or isinstance(context, Mapping):
        change.resets["context"] = {str(key): value for key, value in context.items()} \
            if isinstance(context, Mapping) else {}
    metadata = resource.get("metadata")
    if "metadata" in asked or isinstance(metadata, Mapping):
        change.resets["metadata"] = dict(metadata) if isinstance(metadata, Mapping) else {}
    if "access_control" in resource:
        change.fields["access_control"] = resource["access_control"]
    if isinstance(resource.get("moderation_status"), str):
        change.fields["moderation_status"] = resource["moderation_status"]
    return Plan([change])


# Events asset_sync writes itself (unsigned in the event log). A signed notification claiming one of these types is
# only logged: what the mirror holds comes from Cloudinary's notifications and from asset_sync's own searches.
OWN_APPLIERS: dict[str, Callable[[Mapping[str, Any]], Plan]] = {"reconcile": on_reconcile}


def plan_for(notification_type: str, payload: Mapping[str, Any], body: bytes | str | None = None, *,
             own: bool = False) -> Plan:
    """What a notification (``own``: an event of asset_sync's own) changes, in values both databases hold (the live
    request, ``replay`` and ``reconcile`` alike)."""
    if body is not None and storable.has_non_finite_numbers(body if isinstance(body, bytes) else body.encode()):
        payload = storable.parse_keeping_numbers(body)  # NaN, Infinity, 1e400 as the text the body has
    plan = (OWN_APPLIERS if own else APPLIERS).get(notification_type, log_only)(payload)
    return _storable(plan)


def record(database_url: str, notification: Notification, ctx: Context, key: str, plan: Plan,
           budget: float) -> Any:
    """The event and every state change it makes, in one transaction (a failure is a 503)."""
    from datetime import UTC, datetime

    from functions.asset_sync import db

    headers = ctx.request.headers
    received_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    event = db.Event(
        dedupe_key=key,
        notification_type=storable.storable_text(notification.type),
        asset_id=storable.storable_text(_first_asset_id(notification.raw(), plan)),
        received_at=received_at,
        event_clock=make_clock(event_time(notification.raw(), received_at), key),
        payload=ctx.request.body.decode("utf-8"),
        signature_timestamp=storable.storable_text(headers.get("X-Cld-Timestamp")),
        signature=storable.storable_text(headers.get("X-Cld-Signature")),
    )
    return db.store(database_url).record(event, plan, budget=budget)


def dedupe_key(payload: Mapping[str, Any]) -> str:
    """A retry repeats the notification's content exactly; its signature and timestamp headers change.
    So the key is a hash of the content, independent of key order and whitespace (and of its depth:
    ``canonical_json`` needs no recursion)."""
    return hashlib.sha256(storable.canonical_json(payload).encode("utf-8")).hexdigest()


def time_budget() -> float:
    """Seconds one request may spend applying a notification (``ASSET_SYNC_TIME_BUDGET_SECONDS``)."""
    seconds = config.number("ASSET_SYNC_TIME_BUDGET_SECONDS", DEFAULT_TIME_BUDGET_SECONDS)
    if seconds <= 0:
        raise ConfigError("ASSET_SYNC_TIME_BUDGET_SECONDS must be a number of seconds above 0")
    return seconds


def describe(plan: Plan, key: str, notification_type: str) -> dict[str, Any]:
    """The action's details for the answer and the dry run (a sample of the assets of a large notification)."""
    assets = [{"asset_id": change.ref.describe(), "changes": change.names()}
              for change in plan.assets[:MAX_LISTED_ASSETS]]
    details: dict[str, Any] = {"dedupe_key": key[:16], "notification_type": notification_type, "assets": assets}
    if len(plan.assets) > MAX_LISTED_ASSETS:
        details["assets_total"] = len(plan.assets)
    details["folders"] = [{"kind": change.kind, "path": change.path, "to_path": change.to_path}
                          for change in plan.folders]
    return details


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


def _types(source: Mapping[str, Any], urls: list[Any] | None = None) -> tuple[str | None, str | None, dict[str, Any]]:
    """(resource_type, type, the part of them only a delivery URL told): moderation and info notifications, and
    all from before 2021, carry no types, but their URL does (``.../image/authenticated/s--sig--/v1/...``)."""
    resource_type, delivery_type = _text(source, "resource_type"), _text(source, "type")
    told: dict[str, Any] = {}
    if resource_type is None or delivery_type is None:
        found = next(filter(None, map(types_in_url, [source.get("secure_url"), source.get("url"), *(urls or [])])),
                     None)
        if found is not None:
            if resource_type is None:
                resource_type = told["resource_type"] = found[0]
            if delivery_type is None:
                delivery_type = told["type"] = found[1]
    return resource_type, delivery_type, told


def _named(source: Mapping[str, Any], public_id: str | None = None, *, urls: list[Any] | None = None,
           stated: bool = True, **parts: Any) -> AssetChange | None:
    """A change to the asset ``source`` names: by asset_id, else by (resource_type, type, public_id).

    Types only its URL tells are defaults (facts where nothing else is known). With ``urls``, a source naming
    no asset may be named by the public ID in its delivery URLs (None when they name none either); with
    ``stated=False`` even the public ID it names is only a default (eager: the one requested for)."""
    resource_type, delivery_type, told = _types(source, urls)
    asset_id = _text(source, "asset_id")
    public_id = _text(source, "public_id") or public_id
    if public_id is None and urls is not None:  # an old notification: its delivery URLs name the asset
        public_id = next(filter(None, (_public_id_in_url(url, resource_type) for url in urls)), None)
        stated = False
    if not asset_id and not public_id:
        if urls is not None:
            return None
        raise BadRequest("The notification names an asset with neither asset_id nor public_id.",
                         code="missing_field")
    change = AssetChange(AssetRef(asset_id, public_id, resource_type, delivery_type), **parts)
    change.defaults.update(told)
    if not stated:
        named = (("public_id", public_id), ("resource_type", resource_type), ("type", delivery_type))
        change.defaults.update({name: value for name, value in named if value is not None})
    return change


def _identified(source: Mapping[str, Any], public_id: str | None = None, **parts: Any) -> AssetChange:
    """A change to a named asset; its public ID, resource type and delivery type are facts too."""
    change = _named(source, public_id, **parts)
    _copy_fields(change, {**source, "public_id": change.ref.public_id}, ("public_id", "resource_type", "type"))
    return change


def _public_id_in_url(url: Any, resource_type: str | None) -> str | None:
    """The public ID in a delivery URL with a version (``.../v1714991000/shop/catalog.png``): what follows
    the version, less the format (a raw file's public ID keeps its extension). None without a version."""
    types = types_in_url(url)
    if types is None:
        return None
    segments = url.split("://", 1)[-1].split("?", 1)[0].split("#", 1)[0].split("/")
    start = next((index for index in range(2, len(segments)) if tuple(segments[index - 2:index]) == types), None)
    for index in range(start or len(segments), len(segments) - 1):  # after <resource_type>/<type>/: the
        segment = segments[index]  # signature (s--...--) and transformations, then the version
        if len(segment) > 1 and segment[0] == "v" and segment[1:].isdigit():
            rest = segments[index + 1:]
            if (resource_type or types[0]) != "raw" and "." in rest[-1]:
                rest[-1] = rest[-1].rpartition(".")[0]
            found = "/".join(rest)
            if "%" in found:
                from urllib.parse import unquote  # only for a URL with escapes

                found = unquote(found)
            return found or None
    return None


def _context_pairs(value: Any) -> dict[str, Any]:
    """Context entries as an object, as a list of {"name"|"key": ..., "value": ...}, or as "key=value"."""
    if isinstance(value, Mapping):
        return {str(key): inner for key, inner in value.items()}
    pairs: dict[str, Any] = {}
    for entry in _list(value):
        if isinstance(entry, Mapping):
            name = entry.get("name", entry.get("key"))
            if name is not None:
                pairs[str(name)] = entry.get("value")
        elif isinstance(entry, str) and "=" in entry:
            name, _, text = entry.partition("=")
            pairs[name] = text
    return pairs


def _context_names(value: Any) -> list[str]:
    """Removed context keys: a list of names, of {"name": ...} entries, or an object's keys."""
    if isinstance(value, Mapping):
        return [str(key) for key in value]
    names = []
    for entry in _list(value):
        if isinstance(entry, Mapping):
            name = entry.get("name", entry.get("key"))
            if name is not None:
                names.append(str(name))
        elif entry is not None:
            names.append(str(entry))
    return names


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
    rename can rewrite the URL (``mirror.project``). Streaming entries (HLS, DASH) have no width/height."""
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
    for asset in _list(payload.get("assets")):  # proof_status_changed
        if isinstance(asset, Mapping) and isinstance(asset.get("asset_id"), str):
            return asset["asset_id"]
    return None


def _storable(plan: Plan) -> Plan:
    """The plan with every value as both databases hold it (storable.py): NUL shown as ␀, NaN as text, values
    nested deeper than the mirror keeps as JSON as their JSON text."""
    for change in plan.assets:
        ref = change.ref
        change.ref = AssetRef(*map(storable.storable_text, (ref.asset_id, ref.public_id, ref.resource_type,
                                                             ref.type)))
        change.fields = storable.storable(change.fields)
        change.defaults = storable.storable(change.defaults)
        change.resets = storable.storable(change.resets)
        change.items = storable.storable(change.items)
    for folder in plan.folders:
        folder.path = storable.storable_text(folder.path)
        folder.to_path = storable.storable_text(folder.to_path)
    return plan


def _list(value: object) -> list:
    """A payload field that should be a list; anything else (a wrong type from a bad sender) counts as empty."""
    return value if isinstance(value, list) else []
