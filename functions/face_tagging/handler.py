"""Tag images with the names of the people Amazon Rekognition recognises in them.

Rekognition learns each person's face from a training folder; then every new image gets one
``face:<Name>`` tag per person it recognises, and deleting a training image forgets its faces.

Trigger   notification_url or global triggers for "upload", "resource_tags_changed" and "delete"
          train:     an image uploaded to FACE_TRAINING_FOLDER tagged faceLabel:<Name>, or tagged so later
          recognise: an image uploaded anywhere else
          forget:    a training image deleted
Env       CLOUDINARY_URL, REKOGNITION_COLLECTION_ID, AWS_REGION (+ AWS credentials where there is no role);
          optional FACE_TRAINING_FOLDER (training), FACE_LABEL_PREFIX (faceLabel:), FACE_TAG_PREFIX (face:),
          FACE_MATCH_THRESHOLD (80), FACE_MAX_FACES (10), FACE_TIME_BUDGET_SECONDS (12),
          REKOGNITION_TIMEOUT_SECONDS (4), AWS_MAX_ATTEMPTS (2), AWS_ENDPOINT_URL_REKOGNITION
Calls     train:     ListFaces 1+, image fetch 1, DetectFaces 1, IndexFaces 1 (CreateCollection the first
                     time, DeleteFaces 1 on a relabel; a repeat: ListFaces only); + Admin API
                     resources/by_asset_ids 1 per resource_tags_changed notification that adds a label
          recognise: image fetch 1, DetectFaces 1, SearchFacesByImage 1 per face (at most FACE_MAX_FACES,
                     concurrently), Upload API tags/add 0-1
          forget:    Admin API resources/by_asset_ids 1, ListFaces 1+, DeleteFaces 0-1
          anything else (other folders' deletes, tag changes without a label, videos): none
Responds  200 done | 200 ignored (other types, no face, no match, a training image without exactly one face,
          a name that cannot be stored, an image Rekognition cannot read) | 400 missing public_id, asset_id
          or resources | 401 bad signature | 500 not configured, or AWS/Cloudinary refused the credentials
          | 503 Rekognition throttled, 5xx or timed out; Cloudinary 420/429/5xx or timed out; out of time
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from shared import budget, cloudinary_api, config
from shared.assets import AssetRef, asset_named_by
from shared.errors import BadRequest, ConfigError, DependencyUnavailable
from shared.webhook import Context, Notification, Result, webhook

from . import images, names, rekognition
from .rekognition import CollectionMissing, Gallery, ImageRefused, IndexedFace

TYPE_CHECKING = False  # cold start: see docs/DESIGN.md §8
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

DEFAULT_TRAINING_FOLDER = "training"
DEFAULT_LABEL_PREFIX = "faceLabel:"
DEFAULT_TAG_PREFIX = "face:"
DEFAULT_THRESHOLD = 80.0
DEFAULT_MAX_FACES = 10
DEFAULT_BUDGET_SECONDS = 12.0  # Cloudinary gives up after 20 s; the Lambda default timeout is 15 s
# Concurrent searches: each is a network round trip, well inside Rekognition's default TPS limits. They start
# once the crops are made and the pixels freed, so their threads (and glibc's arena per thread) add nothing
# measurable to a cold start's peak memory (bench/accepted.py).
SEARCH_WORKERS = 4
MAX_ASSET_IDS_PER_LOOKUP = 100  # the Admin API's resources/by_asset_ids takes at most 100


@webhook(
    accepts={"upload", "resource_tags_changed", "delete"},
    requires=("CLOUDINARY_URL", "REKOGNITION_COLLECTION_ID"),
    # AWS_REGION and the other AWS_* variables are boto3's own (Lambda sets AWS_REGION and forbids setting
    # it), so they are not listed here for the deploy files to template; the README lists them.
    optional=("FACE_TRAINING_FOLDER", "FACE_LABEL_PREFIX", "FACE_TAG_PREFIX", "FACE_MATCH_THRESHOLD",
              "FACE_MAX_FACES", "FACE_TIME_BUDGET_SECONDS", "REKOGNITION_TIMEOUT_SECONDS",
              "CLOUDINARY_TIMEOUT_SECONDS"),
    demo_values={"REKOGNITION_COLLECTION_ID": "cloudinary-faces"},
)
def handle(notification: Notification, ctx: Context) -> Result:
    options = Options.read(ctx.settings)
    if notification.type == "delete":
        return forget(notification, ctx, options)
    if notification.type == "resource_tags_changed":
        # Includes the notifications its own face: tags cause: they add no label, so they are ignored.
        return train_newly_labelled(notification, ctx, options)

    asset = Asset.from_fields(notification, need_asset_id=False)
    if asset.resource_type != "image":
        return ctx.ignored(f"a {asset.resource_type} upload: only images are tagged with faces")
    if options.is_training(asset.folder):
        return train(ctx, options, [asset])
    return recognise(ctx, options, asset)


handler = handle.lambda_handler  # AWS Lambda (Function URL, API Gateway) entry point
app = handle.wsgi_app  # WSGI entry point: Vercel, the local server, any WSGI host


# --- settings and the asset --------------------------------------------------------------------------
# (Plain classes, not dataclasses: importing ``dataclasses`` would slow every cold start.)

class Options:
    __slots__ = ("budget_seconds", "collection_id", "label_prefix", "max_faces", "tag_prefix", "threshold",
                 "training_folder")

    def __init__(self, collection_id: str, training_folder: str, label_prefix: str, tag_prefix: str,
                 threshold: float, max_faces: int, budget_seconds: float) -> None:
        self.collection_id = collection_id
        self.training_folder = training_folder
        self.label_prefix = label_prefix
        self.tag_prefix = tag_prefix
        self.threshold = threshold
        self.max_faces = max_faces
        self.budget_seconds = budget_seconds

    @classmethod
    def read(cls, settings: config.Settings) -> Options:
        threshold = settings.number("FACE_MATCH_THRESHOLD", DEFAULT_THRESHOLD)
        if not 0 <= threshold <= 100:
            raise ConfigError("face_tagging: FACE_MATCH_THRESHOLD must be between 0 and 100")
        return cls(
            collection_id=settings.require("REKOGNITION_COLLECTION_ID"),
            training_folder=(settings.get("FACE_TRAINING_FOLDER") or DEFAULT_TRAINING_FOLDER).strip("/"),
            label_prefix=settings.get("FACE_LABEL_PREFIX") or DEFAULT_LABEL_PREFIX,
            tag_prefix=settings.get("FACE_TAG_PREFIX") or DEFAULT_TAG_PREFIX,
            threshold=threshold,
            max_faces=settings.integer("FACE_MAX_FACES", DEFAULT_MAX_FACES, minimum=1),
            budget_seconds=settings.number("FACE_TIME_BUDGET_SECONDS", DEFAULT_BUDGET_SECONDS),
        )

    def is_training(self, folder: str) -> bool:
        return folder == self.training_folder or folder.startswith(self.training_folder + "/")

    def labels(self, tags: Iterable[str]) -> list[str]:
        """The distinct names the asset is labelled with (``faceLabel:Jane Doe`` -> ``Jane Doe``)."""
        found = (names.clean_name(tag[len(self.label_prefix):]) for tag in tags
                 if isinstance(tag, str) and tag.startswith(self.label_prefix))
        return list(dict.fromkeys(name for name in found if name))


class Asset(AssetRef):
    """The asset a notification (or a listing) names, checked by ``shared.assets``, with what face tagging
    reads besides: its version (for the delivery URL), its folder (training or not) and its tags."""

    __slots__ = ("folder", "tags", "version")

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any], *, need_asset_id: bool) -> Asset:
        ref = asset_named_by(fields)  # resource_type, type, public_id checked: they make API paths and URLs
        if need_asset_id and ref.asset_id is None:
            raise BadRequest("The notification has no asset_id.", code="missing_field")
        asset = cls(ref.public_id, ref.resource_type, ref.delivery_type, ref.asset_id)
        # Dynamic-folder accounts say where the asset is (asset_folder, "" for the root); on fixed-folder
        # accounts the folder is the public ID's path.
        folder = fields.get("asset_folder")
        asset.folder = (folder if isinstance(folder, str) else ref.public_id.rpartition("/")[0]).strip("/")
        version = fields.get("version")
        asset.version = version if isinstance(version, int) and not isinstance(version, bool) else None
        asset.tags = tuple(tag for tag in _list(fields.get("tags")) if isinstance(tag, str))
        return asset

    def picture(self, meanwhile: Callable[[], None] | None = None) -> images.Picture:
        """The JPEG Rekognition looks at; ``meanwhile()`` runs while it downloads (in a thread of its own)."""
        url = images.delivery_url(self.public_id, self.resource_type, self.delivery_type, self.version)
        return images.fetch(url, budget.call_timeout("image fetch", images.DEFAULT_READ_TIMEOUT_SECONDS), meanwhile)


def plan_only(ctx: Context) -> bool:
    """Local demo mode without credentials: nothing can be read either, so only the plan is reported.
    (An explicit DRY_RUN=1 with credentials does read: fetch, detect, search, list. It writes nothing.)"""
    return not ctx.can_read_cloudinary


# --- recognise ---------------------------------------------------------------------------------------

def recognise(ctx: Context, options: Options, asset: Asset) -> Result:
    """Find every face, search each one, and tag the image once per distinct name."""
    if plan_only(ctx):
        ctx.act("search_faces", None, public_id=asset.public_id, collection_id=options.collection_id,
                threshold=options.threshold, max_faces=options.max_faces)
        ctx.act("add_tags", None, public_id=asset.public_id, tags=[f"{options.tag_prefix}<each name found>"])
        return ctx.done()

    budget.narrow(options.budget_seconds)
    gallery = Gallery(options.collection_id)
    try:
        # A cold start builds the Rekognition client (botocore: most of its time) while the image downloads.
        picture = asset.picture(meanwhile=rekognition.prepare_client if rekognition.cold() else None)
        budget.check("DetectFaces")
        boxes = gallery.detect(picture.data)
    except images.ImageMissing:
        return ctx.ignored("the asset no longer exists")
    except images.ImageUnusable as error:
        return ctx.ignored(f"the image cannot be used: {error}")
    except ImageRefused as error:
        return ctx.ignored(f"Rekognition cannot read the image ({error.code})")
    ctx.note(faces=len(boxes))
    if not boxes:
        return ctx.ignored("no face in the image", faces=0)

    searched = boxes[:options.max_faces]  # the largest ones: bounded work per image
    try:
        crops = picture.crops(searched)
    except images.ImageUnusable as error:  # headers fine, pixels not (truncated): no retry can fix it
        return ctx.ignored(f"the image cannot be used: {error}", faces=len(boxes))
    budget.check("SearchFacesByImage")
    try:
        matches = search_each(gallery, crops, options.threshold)
    except CollectionMissing:
        return ctx.ignored("the face collection does not exist yet: add a training image first",
                           faces=len(boxes))
    found = list(dict.fromkeys(match[0] for match in matches if match))  # one tag per person
    ctx.act("search_faces", None, faces=len(boxes), searched=len(searched), matched=sum(1 for m in matches if m))
    ctx.note(matched=len(found))
    if not found:
        return ctx.ignored("no face matched a known person", faces=len(boxes))

    tags = [options.tag_prefix + name for name in found]
    new_tags = [tag for tag in tags if tag not in asset.tags]
    if not new_tags:
        return ctx.ignored("already tagged", tags=tags)  # a retry or a resend: nothing to write
    # One Upload API tags call for all the names: no read-modify-write, so nothing tagged meanwhile is lost.
    try:
        ctx.act("add_tags", lambda: cloudinary_api.add_tag(new_tags, asset), public_id=asset.public_id,
                tags=new_tags)
    except cloudinary_api.AssetNotFound:
        return ctx.ignored("the asset no longer exists", tags=new_tags)
    return ctx.done(faces=len(boxes), tags=new_tags)


def search_each(gallery: Gallery, crops: list[bytes], threshold: float) -> list[tuple[str, float] | None]:
    """One SearchFacesByImage per face crop, concurrently; results in the order of the crops."""
    if len(crops) == 1:
        return [gallery.search(crops[0], threshold)]
    from concurrent.futures import ThreadPoolExecutor, wait

    pool = ThreadPoolExecutor(max_workers=min(len(crops), SEARCH_WORKERS), thread_name_prefix="face-search")
    try:
        futures = [pool.submit(gallery.search, crop, threshold) for crop in crops]
        _, pending = wait(futures, timeout=max(budget.remaining(), 0.0))
        if pending:
            raise DependencyUnavailable("The face searches did not finish in time; a retry will finish them.",
                                        code="out_of_time", log_detail=f"{len(pending)} searches pending")
        return [future.result() for future in futures]  # re-raises the first failure (503, 500, ...)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


# --- train -------------------------------------------------------------------------------------------

def train_newly_labelled(notification: Notification, ctx: Context, options: Options) -> Result:
    """A faceLabel tag was added to existing images: train on those that are in the training folder."""
    resources = notification.require("resources", list)
    labelled = [resource for resource in resources if isinstance(resource, Mapping)
                and (resource.get("resource_type") or "image") == "image"
                and options.labels(_list(resource.get("added")))]
    if not labelled:
        return ctx.ignored(f"no {options.label_prefix} tag was added to an image")
    # One entry per asset: a resource listed twice must not be indexed twice.
    by_asset = {Asset.from_fields(resource, need_asset_id=True).asset_id or "": resource for resource in labelled}
    asset_ids = list(by_asset)
    if plan_only(ctx):
        ctx.act("look_up_assets", None, asset_ids=asset_ids)
        ctx.act("index_faces", None, asset_ids=asset_ids, collection_id=options.collection_id)
        return ctx.done()

    # The notification tells neither the folder nor the other tags, and the label may have been removed
    # since: read the assets' current state, one Admin API call for all of them.
    current = {asset.asset_id: asset for asset in look_up_assets(asset_ids)}
    outcomes: dict[str, str] = {}
    candidates = []
    for asset_id, resource in by_asset.items():
        asset = current.get(asset_id)
        if asset is None:
            outcomes[str(resource.get("public_id"))] = "not indexed: the asset no longer exists"
        elif not options.is_training(asset.folder):
            outcomes[asset.public_id] = f"not indexed: not in the {options.training_folder} folder"
        else:
            candidates.append(asset)
    return train(ctx, options, candidates, outcomes)


def train(ctx: Context, options: Options, assets: list[Asset], outcomes: dict[str, str] | None = None) -> Result:
    """Index the one face of each training image under its label, once (a repeat finds it indexed)."""
    outcomes = dict(outcomes or {})
    todo: list[tuple[Asset, str, str]] = []
    for asset in assets:
        labels = options.labels(asset.tags)
        if len(labels) != 1:
            outcomes[asset.public_id] = (f"not indexed: no {options.label_prefix} tag" if not labels else
                                         f"not indexed: {len(labels)} different {options.label_prefix} tags")
            continue
        if not asset.asset_id:
            raise BadRequest("The notification has no asset_id.", code="missing_field")
        try:
            todo.append((asset, labels[0], names.external_image_id(asset.asset_id, labels[0])))
        except names.NameRefused as error:
            outcomes[asset.public_id] = f"not indexed: {error}"
    if not todo:
        return finish_training(ctx, outcomes, changed=False)
    if plan_only(ctx):
        for asset, _, external_id in todo:
            ctx.act("index_face", None, public_id=asset.public_id, external_image_id=external_id)
        return ctx.done()

    budget.narrow(options.budget_seconds)
    collection = Collection(Gallery(options.collection_id))
    indexed = collection.faces_of({asset.asset_id or "" for asset, _, _ in todo})
    changed = False
    for asset, _, external_id in todo:
        budget.check(f"training {asset.public_id}")  # the rest is done by the retry; done ones are skipped
        outcome, did = train_one(ctx, collection, asset, external_id, indexed[asset.asset_id or ""])
        outcomes[asset.public_id] = outcome
        changed = changed or did
    return finish_training(ctx, outcomes, changed)


def train_one(ctx: Context, collection: Collection, asset: Asset, external_id: str,
              existing: list[IndexedFace]) -> tuple[str, bool]:
    stale = [face.face_id for face in existing if face.external_id != external_id]
    if len(stale) < len(existing):
        outcome, changed = "already indexed", False
    else:
        try:
            picture = asset.picture()
            budget.check("DetectFaces")
            faces = len(collection.gallery.detect(picture.data))
        except images.ImageMissing:
            return "not indexed: the asset no longer exists", False
        except images.ImageUnusable as error:
            return f"not indexed: {error}", False
        except ImageRefused as error:
            return f"not indexed: Rekognition cannot read the image ({error.code})", False
        if faces != 1:
            return f"not indexed: the image shows {faces} faces; a training image must show exactly one", False
        collection.ensure(ctx)
        try:
            result = ctx.act("index_face", lambda: collection.gallery.index(picture.data, external_id),
                             public_id=asset.public_id, external_image_id=external_id)
        except ImageRefused as error:
            return f"not indexed: Rekognition cannot read the image ({error.code})", False
        except CollectionMissing:
            raise DependencyUnavailable("The face collection vanished while indexing; a retry recreates it.",
                                        code="rekognition_unavailable", log_detail="IndexFaces: no collection") \
                from None
        if result is not None and not result[0]:
            return f"not indexed: Rekognition rejected the face ({', '.join(result[1]) or 'no reason'})", False
        outcome, changed = ("would be indexed" if ctx.dry_run else "indexed"), True
    if stale:
        # The label changed: the faces under the old name go, after the new one is in (a failure between
        # the two is finished by the retry, which finds the new face indexed and the old ones stale).
        ctx.act("delete_faces", lambda: collection.gallery.delete(stale), public_id=asset.public_id,
                face_ids=stale, reason="relabelled")
        outcome, changed = f"{outcome}; the previous label's faces removed", True
    return outcome, changed


def finish_training(ctx: Context, outcomes: dict[str, str], changed: bool) -> Result:
    ctx.note(trained=sum(1 for outcome in outcomes.values() if not outcome.startswith("not indexed")),
             refused=sum(1 for outcome in outcomes.values() if outcome.startswith("not indexed")))
    if changed:
        return ctx.done(training=outcomes)
    return ctx.ignored("; ".join(dict.fromkeys(outcomes.values())) or "nothing to train", training=outcomes)


class Collection:
    """The gallery plus whether its collection exists, learnt from the first ListFaces."""

    def __init__(self, gallery: Gallery) -> None:
        self.gallery = gallery
        self.exists = True

    def faces_of(self, asset_ids: set[str]) -> dict[str, list[IndexedFace]]:
        try:
            return self.gallery.faces_of(asset_ids)
        except CollectionMissing:
            self.exists = False
            return {asset_id: [] for asset_id in asset_ids}

    def ensure(self, ctx: Context) -> None:
        if not self.exists:
            ctx.act("create_collection", self.gallery.create, collection_id=self.gallery.collection_id)
            self.exists = True


# --- forget ------------------------------------------------------------------------------------------

def forget(notification: Notification, ctx: Context, options: Options) -> Result:
    """Training images were deleted: remove their faces from the collection, so nobody is recognised
    from a photo that no longer exists."""
    resources = notification.require("resources", list)
    deleted = [Asset.from_fields(resource, need_asset_id=True) for resource in resources
               if isinstance(resource, Mapping) and (resource.get("resource_type") or "image") == "image"]
    training = [asset for asset in deleted if options.is_training(asset.folder)]
    if not training:
        return ctx.ignored(f"no image in the {options.training_folder} folder was deleted")
    asset_ids = [asset.asset_id or "" for asset in training]
    if plan_only(ctx):
        ctx.act("delete_faces", None, public_ids=[asset.public_id for asset in training],
                collection_id=options.collection_id)
        return ctx.done()

    # Re-check before deleting: a replayed notification may come after the image was restored from
    # backup (which keeps its asset ID). Faces of an image that exists again are kept.
    restored = {asset.asset_id for asset in look_up_assets(asset_ids)}
    gone = [asset for asset in training if asset.asset_id not in restored]
    if not gone:
        return ctx.ignored("the deleted training image exists again (restored?); its faces are kept")
    gallery = Gallery(options.collection_id)
    try:
        faces = gallery.faces_of({asset.asset_id or "" for asset in gone})
    except CollectionMissing:
        return ctx.ignored("the face collection does not exist: nothing to forget")
    face_ids = [face.face_id for asset in gone for face in faces[asset.asset_id or ""]]
    ctx.note(forgotten=len(face_ids))
    if not face_ids:
        return ctx.ignored("no face of the deleted training image is indexed")  # e.g. a repeat
    try:
        ctx.act("delete_faces", lambda: gallery.delete(face_ids),
                public_ids=[asset.public_id for asset in gone], face_ids=face_ids)
    except CollectionMissing:
        return ctx.ignored("the face collection does not exist: nothing to forget")
    return ctx.done(forgotten=len(face_ids))


def look_up_assets(asset_ids: list[str]) -> list[Asset]:
    """The assets that exist now, with folder and tags: Admin API resources/by_asset_ids, one call per
    100 IDs (never listing deleted ones, even if backed up)."""
    sdk = cloudinary_api.sdk()
    found: list[Asset] = []
    unique = list(dict.fromkeys(asset_ids))
    for start in range(0, len(unique), MAX_ASSET_IDS_PER_LOOKUP):
        with cloudinary_api.calling("resources/by_asset_ids"):
            answer = sdk.api.resources_by_asset_ids(unique[start:start + MAX_ASSET_IDS_PER_LOOKUP], tags=True,
                                                    timeout=cloudinary_api.timeout("resources/by_asset_ids"))
        found.extend(Asset.from_fields(resource, need_asset_id=True) for resource in answer.get("resources") or []
                     if isinstance(resource, Mapping))
    return found


def _list(value: object) -> list:
    """A payload field that should be a list; anything else (a wrong type from a bad sender) counts as empty."""
    return value if isinstance(value, list) else []
