"""Stamp the time of every change to an asset into a structured metadata field (the AWS blueprint agency's
`last_update_timestamp`), so that a CMS can ask Cloudinary's Search API what changed since it last looked.

Trigger   global triggers for the types in STAMP_ON (default: upload, resource_metadata_changed,
          resource_tags_changed, resource_context_changed, resource_display_name_changed, rename, move)
Env       CLOUDINARY_URL; STAMP_FIELD (default last_update_timestamp), STAMP_FIELD_TYPE (string | date,
          default string), STAMP_ON, STAMP_WATCH_FIELDS (default: every field but the stamp),
          STAMP_LATE_SECONDS (default 60)
Calls     Upload API metadata: 1 per notification (1 per resource_type/type of the assets it names, 100 IDs
          each); Admin API: none, except 1 listing per such group for a notification older than
          STAMP_LATE_SECONDS when it arrives (a retry): it reads the current stamps first
Responds  200 done (stamped) | 200 ignored (other types, only the stamp or unwatched fields changed, stamp
          already as new, assets gone) | 400 malformed or hostile asset fields | 401 bad signature
          | 500 not configured | 503 Cloudinary rate limit, 5xx or timeout (Cloudinary retries)
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from functions.metadata_stamp.stamp import STAMPABLE, Changed, Policy, change_time, changes_in, chunks, groups_of
from shared import cloudinary_api
from shared.webhook import Context, Notification, Result, webhook

TYPE_CHECKING = False  # cold start: see docs/DESIGN.md §8
if TYPE_CHECKING:
    from typing import Any


@webhook(accepts=set(STAMPABLE), requires=("CLOUDINARY_URL",),
         optional=("STAMP_FIELD", "STAMP_FIELD_TYPE", "STAMP_ON", "STAMP_WATCH_FIELDS", "STAMP_LATE_SECONDS"))
def handle(notification: Notification, ctx: Context) -> Result:
    policy = Policy.from_settings(ctx.settings)
    if notification.type not in policy.stamp_on:
        return ctx.ignored(f"{notification.type} is not in STAMP_ON")
    changes = changes_in(notification, policy.field)  # resource_type, type, public_id checked: they reach API paths
    if not changes:
        return ctx.ignored("the notification names no asset")

    # A metadata change calls for a stamp only when a watched field changed. The function's own write changes
    # nothing but the stamp, so the notification it causes ends here, without a call: it never loops.
    if notification.type == "resource_metadata_changed":
        changes = [changed for changed in changes if policy.relevant(changed.changed_fields or set())]
        if not changes:
            return ctx.ignored("no watched metadata field changed (only the stamp, or fields not watched)")

    # The change's own time (when it was triggered), not when we hear of it: a retry stamps the original time.
    arrival = datetime.fromtimestamp(handle.clock(), UTC)  # the clock the signature check used
    when, source = change_time(notification, arrival)
    stamp = policy.value(when)
    ctx.note(stamp=stamp, time_from=source, assets=len(changes))

    # Never backwards. The payload shows the stamp each asset had at the change (an upload's metadata, a
    # metadata change's new values): where that is as new as ours, there is nothing to write.
    changes = [changed for changed in changes if policy.moves_forwards(when, changed.known_stamp, arrival)]
    if not changes:
        return ctx.ignored("the stamp is already as new or newer", stamp=stamp)

    # A notification that arrives late (a retry, minutes after the change) may have been overtaken by later
    # changes, already stamped: read the current stamps first. Prompt notifications, the hot path, read nothing.
    calls = {"admin": 0, "upload": 0}
    if source != "arrival" and arrival - when >= timedelta(seconds=policy.late_seconds):
        changes = still_older(changes, when, arrival, policy, ctx, calls)
        if not changes:
            ctx.note(admin_calls=calls["admin"])
            return ctx.ignored("a later change is already stamped, or the assets no longer exist", stamp=stamp)

    # One Upload API call per resource_type/type (not rate-limited; the Admin API is never used to write).
    stamped, gone = 0, 0
    for (resource_type, delivery_type), group in groups_of(changes).items():
        for chunk in chunks([changed.asset.public_id for changed in group]):
            done = stamp_assets(ctx, policy.field, stamp, chunk, resource_type, delivery_type, calls)
            stamped, gone = stamped + done, gone + len(chunk) - done
    ctx.note(admin_calls=calls["admin"], upload_calls=calls["upload"])
    if not stamped:
        return ctx.ignored("the assets no longer exist", stamp=stamp)
    return ctx.done(stamp=stamp, time_from=source, stamped=stamped, **({"gone": gone} if gone else {}))


handler = handle.lambda_handler  # AWS Lambda (Function URL, API Gateway) entry point
app = handle.wsgi_app  # WSGI entry point: Vercel, the local server, any WSGI host


# --- Cloudinary calls, counted: the Admin API is rate-limited ------------------------------------------

def still_older(changes: list[Changed], when: datetime, arrival: datetime, policy: Policy, ctx: Context,
                calls: dict[str, int]) -> list[Changed]:
    """The changes whose asset's current stamp is older than ``when`` (assets gone meanwhile dropped). In the
    local demo, without credentials, the read is reported and every change kept."""
    if not ctx.can_read_cloudinary:
        ctx.act("read_current_stamps", None, field=policy.field, assets=len(changes),
                note="demo mode: Cloudinary is not configured, so the current stamps were not read")
        return changes
    kept: list[Changed] = []
    for (resource_type, delivery_type), group in groups_of(changes).items():
        for chunk in chunks(group):
            current = read_stamps(policy.field, [changed.asset.public_id for changed in chunk],
                                  resource_type, delivery_type, calls)
            kept.extend(changed for changed in chunk if changed.asset.public_id in current
                        and policy.moves_forwards(when, current[changed.asset.public_id], arrival))
    return kept


def read_stamps(field: str, public_ids: list[str], resource_type: str, delivery_type: str,
                calls: dict[str, int]) -> dict[str, Any]:
    """Admin API (rate-limited): GET resources/<resource_type>/<type>?public_ids[]=...&metadata=true, one
    call for up to 100 assets. {public_id: the field's value, None when unset}; a missing asset is gone."""
    api = cloudinary_api.sdk().api
    calls["admin"] += 1
    with cloudinary_api.calling("resources/by_public_ids"):
        answer = api.resources_by_ids(public_ids, resource_type=resource_type, type=delivery_type, metadata=True,
                                      timeout=cloudinary_api.timeout("resources/by_public_ids"))
    current: dict[str, Any] = {}
    for resource in answer.get("resources") or []:
        if isinstance(resource, Mapping) and resource.get("public_id") in public_ids:
            metadata = resource.get("metadata")
            current[resource["public_id"]] = metadata.get(field) if isinstance(metadata, Mapping) else None
    return current


def stamp_assets(ctx: Context, field: str, stamp: str, public_ids: list[str], resource_type: str,
                 delivery_type: str, calls: dict[str, int]) -> int:
    """Upload API metadata (not rate-limited): the stamp on up to 100 assets of one resource_type/type, every
    other field untouched. How many Cloudinary updated (all of them in a dry run); the others are gone."""
    def write() -> list[str]:
        calls["upload"] += 1
        return cloudinary_api.update_metadata({field: stamp}, public_ids, resource_type=resource_type,
                                              delivery_type=delivery_type)

    try:
        updated = ctx.act("update_metadata", write, resource_type=resource_type, type=delivery_type,
                          public_ids=public_ids, field=field, value=stamp)
    except cloudinary_api.AssetNotFound:  # none of them exists any more (the other groups may)
        return 0
    return len(public_ids) if updated is None else len(set(updated) & set(public_ids))
