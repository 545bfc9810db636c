"""The per-video rules of video_moderation, shared by the webhook (one video per notification) and the
sweep (videos listed from the moderation queues).

For one video and the Google moderation status a notification (or a queue listing) claims:

    read the video's details (Admin API, 1 call)        404 -> ignored: the video is gone
    the details name another asset, or another status   -> ignored: nothing is written
    approved  authenticated     -> lift a token restriction if it has one (Upload API explicit, 1 call), then
                                   rename to type upload, never overwriting (Upload API, 1 call)
              token-restricted  -> explicit with access_control anonymous (Upload API, 1 call)
              already public    -> ignored
    rejected  on_reject=delete  -> destroy with invalidate (Upload API, 1 call)
              on_reject=keep    -> restrict to token if anything else could view it (Upload API explicit,
                                   1 call) and add the review tag if missing (Upload API, 1 call)

So a video costs exactly 1 Admin API call (the confirming read) and every write is an Upload API call, which
is not rate-limited: the Upload API's ``explicit`` updates an existing asset's access_control just as the
Admin API's ``update`` would. Every write goes through ``act`` (``Context.act`` in the webhook, a recorder in
the sweep), so a dry run reports the writes instead of doing them; the read is always done, because what a
dry run reports depends on it.
"""

from __future__ import annotations

from collections.abc import Mapping

from shared import cloudinary_api
from shared.assets import AssetRef, asset_named_by
from shared.config import Settings
from shared.errors import ConfigError, DependencyUnavailable

TYPE_CHECKING = False  # cold start: see docs/DESIGN.md §8
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    Act = Callable[..., Any]  # Context.act: act(action, perform, **details) -> perform() unless dry run

KIND = "google_video_moderation"
DECIDED = ("approved", "rejected")
CONFLICTING = "conflicting"  # several Google results that disagree: never act on those
ON_REJECT_CHOICES = ("delete", "keep")
DEFAULT_REJECTED_TAG = "video_moderation_rejected"
PUBLIC = [{"access_type": "anonymous"}]
RESTRICTED = [{"access_type": "token"}]


# (Plain classes below, not dataclasses: importing ``dataclasses`` would slow every cold start.)


Video = AssetRef  # the asset a notification or a queue entry names (resource_type, type, public_id checked)


class Policy:
    """What to do with rejected videos: VIDEO_MODERATION_ON_REJECT and VIDEO_MODERATION_REJECTED_TAG."""

    __slots__ = ("on_reject", "rejected_tag")

    def __init__(self, on_reject: str = "delete", rejected_tag: str = DEFAULT_REJECTED_TAG) -> None:
        self.on_reject = on_reject
        self.rejected_tag = rejected_tag

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        on_reject = settings.choice("VIDEO_MODERATION_ON_REJECT", "delete", ON_REJECT_CHOICES)
        tag = (settings.get("VIDEO_MODERATION_REJECTED_TAG") or DEFAULT_REJECTED_TAG).strip()
        if not tag or "," in tag:
            # the tags call takes a comma-separated list: a comma would add two tags, neither one asked for
            raise ConfigError(f"{settings.function}: VIDEO_MODERATION_REJECTED_TAG must be one tag, without commas")
        return cls(on_reject, tag)


class Calls:
    """Cloudinary calls actually made (a dry run's skipped writes are not counted)."""

    __slots__ = ("admin", "upload")

    def __init__(self, admin: int = 0, upload: int = 0) -> None:
        self.admin = admin
        self.upload = upload


class Outcome:
    __slots__ = ("calls", "reason", "status")

    def __init__(self, status: str, reason: str | None = None, calls: Calls | None = None) -> None:
        self.status = status  # "done" or "ignored"
        self.reason = reason
        self.calls = calls if calls is not None else Calls()


# --- reading notifications, details and listings ----------------------------------------------------

def google_status(data: Mapping[str, Any]) -> str | None:
    """The Google video moderation status ``data`` carries, lower-cased; None when it carries none.

    Upload notifications and the Admin API's details hold a ``moderation`` list of ``{kind, status}``;
    moderation notifications hold flat ``moderation_kind`` / ``moderation_status``.
    """
    entries = data.get("moderation")
    if isinstance(entries, list):
        statuses = {str(entry.get("status") or "").lower() for entry in entries
                    if isinstance(entry, Mapping) and _is_google(entry.get("kind"))}
        if len(statuses) == 1:
            return statuses.pop() or None
        if statuses:
            return CONFLICTING
    if _is_google(data.get("moderation_kind")):
        status = data.get("moderation_status")
        return status.lower() if isinstance(status, str) and status else None
    return None


def _is_google(kind: Any) -> bool:
    # the upload parameter may carry a threshold (google_video_moderation:likely); results name the kind
    return isinstance(kind, str) and (kind == KIND or kind.startswith(KIND + ":"))


def video_named_by(payload: Mapping[str, Any]) -> Video:
    """The video a notification is about. ``resource_type``/``type`` may be missing (moderation
    notifications have neither): they are read from the delivery URL, else video/upload; the Admin API
    read settles it either way, since it is asked for exactly that asset."""
    ref = asset_named_by(payload, resource_type="video", delivery_type="upload")
    return ref


def needs_publishing(resource: Mapping[str, Any]) -> bool:
    """Whether the upload's restriction is still on: a token rule and no unconditional anonymous rule.
    No access control at all, or an anonymous rule without dates, is already public."""
    rules = _rules(resource)
    return any(rule.get("access_type") == "token" for rule in rules) and not _open_to_anyone(rules)


def only_token_access(resource: Mapping[str, Any]) -> bool:
    """Whether nobody can view the video without a token: every rule is a token rule."""
    rules = _rules(resource)
    return bool(rules) and all(rule.get("access_type") == "token" for rule in rules)


def _rules(resource: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    rules = resource.get("access_control")
    return [rule for rule in rules if isinstance(rule, Mapping)] if isinstance(rules, list) else []


def _open_to_anyone(rules: list[Mapping[str, Any]]) -> bool:
    return any(rule.get("access_type") == "anonymous" and not rule.get("start") and not rule.get("end")
               for rule in rules)


def _tags(resource: Mapping[str, Any]) -> list[str]:
    tags = resource.get("tags")
    return [tag for tag in tags if isinstance(tag, str)] if isinstance(tags, list) else []


def _different_asset(video: Video, resource: Mapping[str, Any]) -> str | None:
    """Why the details do not describe exactly the video we were told about, or None when they do."""
    for key, expected in (("public_id", video.public_id), ("resource_type", video.resource_type),
                          ("type", video.delivery_type)):
        if resource.get(key) != expected:
            return f"Cloudinary's details do not match the notification's {key}"
    if video.asset_id and resource.get("asset_id") and resource.get("asset_id") != video.asset_id:
        # the public ID was deleted and reused: the decision was about the earlier video
        return "the public ID now names another asset"
    return None


# --- the rules --------------------------------------------------------------------------------------

def settle(video: Video, claimed: str, policy: Policy, act: Act, *, can_read: bool = True,
           calls: Calls | None = None) -> Outcome:
    """Apply the decision ``claimed`` ("approved" or "rejected") to ``video`` once Cloudinary confirms it.

    ``can_read`` is False only in the local demo mode, where no Cloudinary account is configured: the
    check is then reported, not made, and the plan assumes the notification is current. ``calls`` counts
    the calls made, also when one of them fails (the sweep passes its running total).
    """
    calls = calls if calls is not None else Calls()
    resource: Mapping[str, Any] | None = None
    try:
        if can_read:
            resource = read_details(video, calls)
            if resource is None:
                return Outcome("ignored", "the video no longer exists", calls)
            different = _different_asset(video, resource)
            if different:
                return Outcome("ignored", different, calls)
            current = google_status(resource)
            if current != claimed:
                return Outcome("ignored", f"Cloudinary's current Google moderation status is "
                                          f"{current or 'missing'}, not {claimed}", calls)
        else:
            act("check_status", None, **video.describe(),
                note="demo mode: Cloudinary is not configured, so its current status was not read")

        if claimed == "approved":
            return _publish(video, resource, act, calls)
        if policy.on_reject == "delete":
            return _delete(video, act, calls)
        return _keep(video, resource, policy, act, calls)
    except cloudinary_api.AssetNotFound:
        # deleted meanwhile (by a person, an earlier run, or a repeat of this notification): nothing to do
        return Outcome("ignored", "the video no longer exists", calls)


def _publish(video: Video, resource: Mapping[str, Any] | None, act: Act, calls: Calls) -> Outcome:
    if video.delivery_type != "authenticated":
        if resource is not None and not needs_publishing(resource):
            return Outcome("ignored", "the video is already public", calls)
        act("publish", lambda: set_access_control(video, PUBLIC, calls), **video.describe(), access_control=PUBLIC)
        return Outcome("done", calls=calls)
    # Private by its type (how Cloudinary's own training uploads it): it becomes public by becoming an
    # `upload` asset under the same public ID, never overwriting one that exists. A token restriction is
    # lifted first, while the authenticated type still keeps the video private: the rename is then the last
    # write, so a retry after any failure still finds the authenticated video and finishes the work (lifting
    # it after the rename would leave a retry nothing to find but a 404, and the video restricted for good).
    lifted = resource is not None and needs_publishing(resource)  # demo mode: as training uploads it, no rules
    if lifted:
        act("publish", lambda: set_access_control(video, PUBLIC, calls), **video.describe(), access_control=PUBLIC)
    try:
        act("publish", lambda: rename_to_upload(video, calls), **video.describe(), to_type="upload")
    except cloudinary_api.AssetConflict:
        return Outcome("ignored", "a public asset with this public ID already exists; the approved video "
                                  "stays authenticated (never overwritten)"
                       + ("; its token restriction was lifted, its type still keeps it private" if lifted else ""),
                       calls)
    return Outcome("done", calls=calls)


def _delete(video: Video, act: Act, calls: Calls) -> Outcome:
    result = act("delete", lambda: destroy(video, calls), **video.describe(), invalidate=True)
    if result is not None and result.get("result") == "not found":
        return Outcome("ignored", "the video no longer exists", calls)
    if result is not None and result.get("result") != "ok":
        raise DependencyUnavailable("Cloudinary did not confirm the deletion; a retry will finish it.",
                                    code="cloudinary_unavailable",
                                    log_detail=f"destroy answered {str(result.get('result'))[:80]!r}")
    return Outcome("done", calls=calls)


def _keep(video: Video, resource: Mapping[str, Any] | None, policy: Policy, act: Act, calls: Calls) -> Outcome:
    restrict = resource is None or not only_token_access(resource)
    tag = resource is None or policy.rejected_tag not in _tags(resource)
    if not restrict and not tag:
        return Outcome("ignored", "the rejected video is already restricted and tagged for review", calls)
    if restrict:
        # a rejected video must not stay viewable, whatever changed its access since the upload
        act("restrict", lambda: set_access_control(video, RESTRICTED, calls), **video.describe(),
            access_control=RESTRICTED)
    if tag:
        act("tag", lambda: add_tag(video, policy.rejected_tag, calls), **video.describe(), tag=policy.rejected_tag)
    return Outcome("done", calls=calls)


# --- Cloudinary calls (shared.cloudinary_api), counted: the Admin API is rate-limited -------------------

def read_details(video: Video, calls: Calls) -> Mapping[str, Any] | None:
    """Admin API: GET resources/<resource_type>/<type>/<public_id>; None when it is gone."""
    calls.admin += 1
    return cloudinary_api.resource(video)


def set_access_control(video: Video, rules: list[dict[str, str]], calls: Calls) -> Mapping[str, Any]:
    """Upload API explicit (not rate-limited, unlike the Admin API's update): POST <resource_type>/explicit
    with the JSON-encoded rules, which replace the video's access control."""
    calls.upload += 1
    return cloudinary_api.explicit(video, access_control=rules)


def rename_to_upload(video: Video, calls: Calls) -> Mapping[str, Any]:
    """Upload API rename to type `upload` (not rate-limited), never overwriting, invalidating the CDN's
    copies of the authenticated URLs."""
    calls.upload += 1
    return cloudinary_api.rename(video, video.public_id, to_type="upload")


def destroy(video: Video, calls: Calls) -> Mapping[str, Any]:
    """Upload API destroy (not rate-limited like the Admin API), invalidating CDN copies: a rejected video
    must stop being served, not linger in caches."""
    calls.upload += 1
    return {"result": cloudinary_api.destroy(video)}


def add_tag(video: Video, tag: str, calls: Calls) -> None:
    """Upload API tags call (command=add): no read-modify-write of the tag list."""
    calls.upload += 1
    cloudinary_api.add_tag(tag, video)


def list_queue(status: str, page_size: int, cursor: str | None, calls: Calls) -> Mapping[str, Any]:
    """Admin API: GET resources/video/moderations/google_video_moderation/<status> (one page). Only the
    sweep lists; a notification never does."""
    sdk = cloudinary_api.sdk()
    options: dict[str, Any] = {"resource_type": "video", "max_results": page_size, "tags": True,
                               "timeout": cloudinary_api.timeout("resources/moderations")}
    if cursor:
        options["next_cursor"] = cursor
    calls.admin += 1
    with cloudinary_api.calling("resources/moderations"):
        return sdk.api.resources_by_moderation(KIND, status, **options)
