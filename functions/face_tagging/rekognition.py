"""Amazon Rekognition for face_tagging: one client per warm container, bounded timeouts and retries, and
its errors turned into the statuses of DESIGN.md §4.

botocore (boto3's client layer, without boto3's resources) is imported here at first use only: a request
rejected for its signature, or one this function ignores, never loads it. The client is cached per (region,
endpoint, timeout, attempts), so a warm container reuses its connections and a test (or a changed setting)
gets a client of its own. A cold recognition builds it while the image downloads (``prepare_client``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from shared import aws, config
from shared.errors import ConfigError, DependencyRejected, DependencyUnavailable

from . import names

TYPE_CHECKING = False  # cold start: see docs/DESIGN.md §8
if TYPE_CHECKING:
    from typing import Any

SERVICE = "rekognition"
# The operations this function calls: all the trimmed service model holds (see DATA_PATH).
OPERATIONS = ("CreateCollection", "DeleteFaces", "DetectFaces", "IndexFaces", "ListFaces", "SearchFacesByImage")
# botocore data trimmed to what this function uses, found before botocore's own (written from it by
# ``python -m devtools.botocore_data``; a test fails when botocore's differs). Parsed, the
# whole Rekognition model and endpoints.json made the client's creation ~11 MiB of a cold start; now ~1 MiB.
# Missing (an install without the data files), botocore's own data is used: slower and larger, same calls.
DATA_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "botocore_data")
DEFAULT_TIMEOUT_SECONDS = 4.0  # one Rekognition call; a whole request must stay well under 20 s
DEFAULT_MAX_ATTEMPTS = 2  # one retry: botocore backs off before it, so more would not fit the budget
LIST_PAGE_SIZE = 4096  # ListFaces' and DeleteFaces' maximum
MAX_LIST_PAGES = 25  # 100k faces; a collection that large needs a different forget strategy (README)

# Error codes a retry can fix; anything else that is not about the image is the deployment's fault.
_RETRYABLE = frozenset({"ThrottlingException", "ProvisionedThroughputExceededException", "InternalServerError",
                        "ServiceUnavailableException", "ServiceUnavailable", "LimitExceededException",
                        "RequestTimeout", "RequestTimeoutException"})
_IMAGE_ERRORS = frozenset({"InvalidImageFormatException", "ImageTooLargeException", "InvalidParameterException"})

_clients: dict[tuple[Any, ...], Any] = {}
_clients_lock = threading.Lock()


class CollectionMissing(Exception):
    """Rekognition answered ResourceNotFoundException: the collection does not exist (yet)."""


class ImageRefused(Exception):
    """Rekognition cannot use the image (format, size, or no face where one was needed). ``code`` says
    which; a retry cannot change it, so the caller answers 200 and says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class IndexedFace:
    """A face in the collection that this function indexed. (A plain class, not a dataclass: importing
    ``dataclasses`` would slow every cold start.)"""

    __slots__ = ("asset_id", "external_id", "face_id", "name")

    def __init__(self, face_id: str, external_id: str, asset_id: str, name: str) -> None:
        self.face_id = face_id
        self.external_id = external_id
        self.asset_id = asset_id
        self.name = name


def client() -> Any:
    """The Rekognition client for the current settings, created once per warm container."""
    key = _client_settings()
    with _clients_lock:
        cached = _clients.get(key)
        if cached is None:
            cached = _clients[key] = _create(*key)
    return cached


def cold() -> bool:
    """Whether the request's first call would create the client (a cold start, or settings changed)."""
    try:
        return _client_settings() not in _clients
    except ConfigError:
        return False  # the request's own client() call raises it, and it is answered


def prepare_client() -> None:
    """Create the client now, in this thread, unless it exists: a cold recognition calls it while the image
    downloads in another thread, so that botocore's work (importing it, loading the service model and
    endpoint data: most of a cold recognition) overlaps the download's wait on the network. Built here, not in
    a thread of its own: threads contend for the GIL when both run Python (measured on local stand-ins: ~15 ms
    slower, and ~0.1 MiB more at the peak, botocore's objects spread over a second malloc arena). Best
    effort: if the settings are wrong or the creation fails, the request's own ``client()`` call raises it."""
    try:
        key = _client_settings()
    except ConfigError:
        return
    try:
        with _clients_lock:
            if key not in _clients:
                _clients[key] = _create(*key)
    except Exception:  # noqa: S110 - the request's own client() call meets the same failure and raises it
        pass


def _client_settings() -> tuple[str, str | None, float, int]:
    region = os.environ.get("AWS_REGION", "").strip() or os.environ.get("AWS_DEFAULT_REGION", "").strip()
    if not region:
        raise ConfigError("face_tagging: AWS_REGION is not set (Lambda sets it; elsewhere set it)")
    endpoint = os.environ.get("AWS_ENDPOINT_URL_REKOGNITION", "").strip() or None
    timeout = config.number("REKOGNITION_TIMEOUT_SECONDS", DEFAULT_TIMEOUT_SECONDS)
    attempts = config.integer("AWS_MAX_ATTEMPTS", DEFAULT_MAX_ATTEMPTS, minimum=1)
    return region, endpoint, timeout, attempts


def _create(region: str, endpoint: str | None, timeout: float, attempts: int) -> Any:
    """The Rekognition client (``shared.aws``: botocore without boto3, built for good), from the trimmed data in
    DATA_PATH: botocore's own, trimmed to the operations called (a test proves it)."""
    return aws.client(SERVICE, region=region, endpoint=endpoint, data_path=DATA_PATH,
                      connect_timeout=min(timeout, 3.0), read_timeout=timeout,
                      retries={"mode": "standard", "total_max_attempts": attempts},
                      max_pool_connections=16)  # concurrent searches share the pool


@contextmanager
def calling(what: str) -> Iterator[None]:
    """Translate botocore's exceptions raised inside the block (``what`` names the call in the log)."""
    from botocore import exceptions

    try:
        yield
    except exceptions.ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", ""))
        message = str(error.response.get("Error", {}).get("Message", ""))[:200]
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if code == "ResourceNotFoundException":
            raise CollectionMissing(message) from error
        if code in _IMAGE_ERRORS:
            raise ImageRefused(code, message) from error
        if code in _RETRYABLE or status >= 500:
            raise DependencyUnavailable("Rekognition is unavailable; a retry will finish the work.",
                                        code="rekognition_unavailable", log_detail=f"{what}: {code} {status}") \
                from error
        # AccessDenied, bad credentials, a full collection (ServiceQuotaExceeded): a retry cannot fix it.
        raise DependencyRejected("Rekognition refused the request; the function's log says why.",
                                 code="rekognition_rejected", log_detail=f"{what}: {code} {message}") from error
    except (exceptions.NoCredentialsError, exceptions.PartialCredentialsError, exceptions.NoRegionError) as error:
        raise ConfigError(f"face_tagging: AWS credentials or region missing ({type(error).__name__})") from error
    except exceptions.ParamValidationError:
        raise  # a bug in this function, not a dependency failure: 500 with the traceback in the log
    except exceptions.BotoCoreError as error:
        # Timeouts, refused or reset connections, endpoint unreachable: a retry can fix them.
        raise DependencyUnavailable("Rekognition did not answer; a retry will finish the work.",
                                    code="rekognition_unavailable",
                                    log_detail=f"{what}: {type(error).__name__}") from error


def _listed(answer: Any, key: str, what: str) -> list[Any]:
    """``answer[key]``: the list Rekognition always sends, empty when there is nothing. Without it, the answer
    was not Rekognition's (a proxy's page with a 200, which botocore turns into an answer holding only
    ResponseMetadata). Reading that as "no face" or "nothing indexed" would answer 200 and lose the work for
    good; a retry can fix it. Found by the fault suite."""
    value = answer.get(key) if isinstance(answer, dict) else None
    if not isinstance(value, list):
        raise DependencyUnavailable("Rekognition's answer was malformed; a retry will finish the work.",
                                    code="rekognition_unavailable", log_detail=f"{what}: no {key} in the answer")
    return value


class Gallery:
    """The face collection: the handful of Rekognition operations this function uses, each one call."""

    def __init__(self, collection_id: str) -> None:
        self.collection_id = collection_id

    def detect(self, image: bytes) -> list[dict[str, float]]:
        """Every face's bounding box (ratios of the image's width and height), largest first."""
        with calling("DetectFaces"):
            answer = client().detect_faces(Image={"Bytes": image}, Attributes=["DEFAULT"])
        boxes = [face["BoundingBox"] for face in _listed(answer, "FaceDetails", "DetectFaces")
                 if face.get("BoundingBox")]
        return sorted(boxes, key=lambda box: -(box.get("Width", 0) * box.get("Height", 0)))

    def search(self, face_image: bytes, threshold: float) -> tuple[str, float] | None:
        """The best-matching known name of the (largest) face in ``face_image``, or None.
        Asks for a few matches: one may belong to a face another tool indexed, which carries no name."""
        try:
            with calling("SearchFacesByImage"):
                answer = client().search_faces_by_image(CollectionId=self.collection_id,
                                                        Image={"Bytes": face_image}, MaxFaces=5,
                                                        FaceMatchThreshold=threshold)
        except ImageRefused:
            return None  # Rekognition found no face in the crop: nothing to match
        matches = _listed(answer, "FaceMatches", "SearchFacesByImage")
        for match in sorted(matches, key=lambda m: -float(m.get("Similarity", 0))):
            parsed = names.parse_external_id((match.get("Face") or {}).get("ExternalImageId"))
            if parsed and float(match.get("Similarity", 0)) >= threshold:
                return parsed[1], float(match["Similarity"])
        return None

    def faces_of(self, asset_ids: set[str]) -> dict[str, list[IndexedFace]]:
        """The indexed faces of the given training images, found by the asset ID in their ExternalImageId
        (the only per-face data Rekognition keeps). Raises CollectionMissing."""
        found: dict[str, list[IndexedFace]] = {asset_id: [] for asset_id in asset_ids}
        token: str | None = None
        for _ in range(MAX_LIST_PAGES):
            request: dict[str, Any] = {"CollectionId": self.collection_id, "MaxResults": LIST_PAGE_SIZE}
            if token:
                request["NextToken"] = token
            with calling("ListFaces"):
                answer = client().list_faces(**request)
            for face in _listed(answer, "Faces", "ListFaces"):
                external_id = face.get("ExternalImageId")
                parsed = names.parse_external_id(external_id)
                if parsed and parsed[0] in found:
                    found[parsed[0]].append(IndexedFace(face["FaceId"], external_id, *parsed))
            token = answer.get("NextToken")
            if not token:
                return found
        raise DependencyRejected("The face collection is too large to search for a training image's faces.",
                                 code="collection_too_large",
                                 log_detail=f"ListFaces: more than {MAX_LIST_PAGES * LIST_PAGE_SIZE} faces")

    def create(self) -> None:
        from botocore import exceptions

        try:
            with calling("CreateCollection"):
                answer = client().create_collection(CollectionId=self.collection_id)
            if not isinstance(answer, dict) or not answer.get("CollectionArn"):
                raise DependencyUnavailable("Rekognition's answer was malformed; a retry will finish the work.",
                                            code="rekognition_unavailable",
                                            log_detail="CreateCollection: no CollectionArn in the answer")
        except DependencyRejected as error:
            # Another request created it a moment ago: that is what we wanted.
            cause = error.__cause__
            if not (isinstance(cause, exceptions.ClientError)
                    and cause.response.get("Error", {}).get("Code") == "ResourceAlreadyExistsException"):
                raise

    def index(self, image: bytes, external_id: str) -> tuple[list[str], list[str]]:
        """Index the one face of a training image: (face IDs indexed, reasons faces were not)."""
        with calling("IndexFaces"):
            answer = client().index_faces(CollectionId=self.collection_id, Image={"Bytes": image},
                                          ExternalImageId=external_id, MaxFaces=1, QualityFilter="AUTO",
                                          DetectionAttributes=["DEFAULT"])
        indexed = [record["Face"]["FaceId"] for record in _listed(answer, "FaceRecords", "IndexFaces")]
        unindexed = answer.get("UnindexedFaces") or []
        reasons = sorted({reason for face in unindexed for reason in face.get("Reasons") or []})
        return indexed, reasons

    def delete(self, face_ids: list[str]) -> list[str]:
        """Delete the faces; returns the IDs Rekognition reports deleted. Deleting a face already gone is not
        an error (Rekognition just leaves it out), so a repeat is harmless."""
        deleted: list[str] = []
        for start in range(0, len(face_ids), LIST_PAGE_SIZE):
            with calling("DeleteFaces"):
                answer = client().delete_faces(CollectionId=self.collection_id,
                                               FaceIds=face_ids[start:start + LIST_PAGE_SIZE])
            deleted.extend(_listed(answer, "DeletedFaces", "DeleteFaces"))
        return deleted
