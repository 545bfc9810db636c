"""The image Rekognition looks at: a size-bounded JPEG fetched from a signed Cloudinary delivery URL, and
one crop per face (``SearchFacesByImage`` only searches the largest face of the image it is given).

The image is fetched with urllib3, which the Cloudinary SDK and botocore already carry (one HTTP stack);
urllib3 and Pillow are imported at first use. Pillow (one wheel, no system libraries) is the only extra
dependency: decoding a JPEG to crop it cannot be done with the standard library.
"""

from __future__ import annotations

import io
import math
import os
import threading

from shared import coldstart, config
from shared.errors import DependencyRejected, DependencyUnavailable

TYPE_CHECKING = False  # cold start: see docs/DESIGN.md §8
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

MAX_SIDE = 1600  # plenty for faces, and the JPEG stays far below Rekognition's 5 MB
# Decoding at 1/2, 1/4 or 1/8 of the size (libjpeg's DCT scaling: the pixels of a 1600x1067 photo take 6.8 MB,
# at half size 1.7 MB) is done only while every searched face keeps at least this many pixels on its shorter
# side, and every crop at least Rekognition's minimum image side. Rekognition detects faces from 40x40 px (in
# a 1920x1080 image); twice that, so a face is never searched at the edge of what Rekognition can see.
MIN_FACE_PIXELS = 80
MIN_IMAGE_PIXELS = 80  # Rekognition's minimum image height and width
MAX_BYTES = 5 * 1024 * 1024  # Rekognition's limit for image bytes
CONNECT_TIMEOUT_SECONDS = 3.0
DEFAULT_READ_TIMEOUT_SECONDS = 6.0  # a first delivery of a transformation is generated on the fly
CROP_MARGIN = 0.25  # of the face's size, each side: Rekognition must find the face again in the crop
CROP_QUALITY = 90
EXIF_ORIENTATION = 0x0112
USER_AGENT = "cloudinary-webhook-functions face_tagging (urllib3)"
# Test-only (never a deploy setting): fetch a delivery URL on a loopback host over plain http. See _reachable.
LOOPBACK_VARIABLE = "FACE_TAGGING_ALLOW_HTTP_LOOPBACK"


class ImageMissing(Exception):
    """The delivery URL answered 404: the asset was deleted (or renamed) meanwhile. (Caught by the handler,
    which answers 200 ignored; not ``shared.errors.AssetGone``, which the wrapper answers itself.)"""


class ImageUnusable(Exception):
    """The asset cannot be delivered or decoded as an image; the message says why. A retry cannot help."""


class Picture:
    """The JPEG as fetched: what Rekognition sees, and what the face crops are cut from. Its pixels are decoded
    only to crop (never for training), once, at the smallest scale that keeps every face big enough, and
    freed with the crops made. (A plain class, not a dataclass: importing ``dataclasses`` would slow every
    cold start.)"""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def crops(self, boxes: list[dict[str, float]]) -> list[bytes]:
        """One JPEG per face box (Rekognition's ratios of the upright image), for SearchFacesByImage."""
        pixels = decode(self.data, boxes)
        return [crop(pixels, box) for box in boxes]


def delivery_url(public_id: str, resource_type: str, delivery_type: str, version: int | None) -> str:
    """A signed URL of a JPEG no larger than MAX_SIDE on either side. Signed, so it works with strict
    transformations and for private and authenticated assets alike.

    Only ever a URL on the account's own delivery host (res.cloudinary.com, its secure_distribution or
    private CDN, as the SDK is configured): the SDK returns an http(s) "public ID" unchanged, which would
    let a payload choose what this function fetches."""
    from shared import cloudinary_api

    sdk = cloudinary_api.sdk()
    options = {"resource_type": resource_type, "type": delivery_type, "secure": True}
    url, _ = sdk.cloudinary.utils.cloudinary_url(
        public_id, version=version, format="jpg", sign_url=True,
        transformation=[{"crop": "limit", "width": MAX_SIDE, "height": MAX_SIDE}, {"quality": "auto:good"}],
        **options,
    )
    # Where the SDK delivers an ordinary public ID of this account: the prefix every real URL starts with.
    reference, _ = sdk.cloudinary.utils.cloudinary_url("probe", **options)
    expected = reference[: reference.index(f"/{resource_type}/{delivery_type}/") + 1]
    if not url.startswith(expected):
        raise ImageUnusable("its public ID does not make a URL on the account's delivery host")
    return url


def fetch(url: str, read_timeout: float = DEFAULT_READ_TIMEOUT_SECONDS,
          meanwhile: Callable[[], None] | None = None) -> Picture:
    """Download the JPEG (at most MAX_BYTES) and check its headers (a JPEG, at most MAX_SIDE a side). With
    ``meanwhile``, the download runs in a thread of its own while ``meanwhile()`` runs in this one.

    With urllib3, the HTTP client the Cloudinary SDK and botocore already load: one HTTP stack, where
    ``requests`` would add its own import (and a second copy of urllib3's setup) to every cold start."""
    if meanwhile is not None:
        return _fetch_while(url, read_timeout, meanwhile)
    import urllib3

    try:
        response = _pool().request("GET", _reachable(url), preload_content=False, redirect=False, retries=False,
                                   timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT_SECONDS, read=read_timeout))
    except (urllib3.exceptions.HTTPError, OSError) as error:
        raise _unavailable(error) from None
    complete = False
    try:
        # No redirects: the one URL asked for is on the account's delivery host, where it leads may not be.
        status = response.status
        reason = (response.headers.get("X-Cld-Error") or "")[:200]
        if status in (404, 410):
            raise ImageMissing(reason or f"delivery answered {status}")
        if status in (420, 429) or status >= 500:
            raise DependencyUnavailable("Cloudinary delivery is unavailable; a retry will finish the work.",
                                        code="cloudinary_unavailable", log_detail=f"image fetch: {status} {reason}")
        if status in (401, 403):
            raise DependencyRejected("Cloudinary refused to deliver the image; the function's log says why.",
                                     code="cloudinary_delivery_refused", log_detail=f"image fetch: {status} {reason}")
        if status != 200:
            raise ImageUnusable(f"Cloudinary cannot deliver it as a JPEG ({status} {reason})".strip())
        try:
            data = response.read(MAX_BYTES + 1)  # reads until EOF or one byte past the limit
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise _unavailable(error) from None
        if len(data) > MAX_BYTES:
            raise ImageUnusable("the delivered JPEG is over Rekognition's 5 MB")
        complete = True
    finally:
        if not complete:
            response.close()  # unread bytes: the connection cannot be reused
        response.release_conn()
    check(data)
    return Picture(data)


def _fetch_while(url: str, read_timeout: float, meanwhile: Callable[[], None]) -> Picture:
    """fetch(url) in a thread while meanwhile() runs here; its picture, or its exception, raised here."""
    outcome: dict[str, Any] = {}

    def download() -> None:
        try:
            outcome["picture"] = fetch(url, read_timeout)
        except BaseException as error:  # handed to the request's thread, which raises it
            outcome["error"] = error

    thread = threading.Thread(target=download, name="image-fetch", daemon=True)
    thread.start()
    try:
        meanwhile()
    finally:
        thread.join()  # bounded: the download's own connect and read timeouts
    if "error" in outcome:
        raise outcome["error"]
    return outcome["picture"]


_pools: dict[str, Any] = {}
_pools_lock = threading.Lock()


def _pool() -> Any:
    """One connection pool per warm container: TLS verified against certifi's CAs, as the SDKs do, or against
    the bundle OpenSSL's own ``SSL_CERT_FILE`` names (a private CDN behind an internal CA, a TLS-inspecting
    proxy; and the platform tests' self-signed CDN)."""
    with _pools_lock:
        pool = _pools.get("delivery")
        if pool is None:
            import certifi
            import urllib3

            ca_file = os.environ.get("SSL_CERT_FILE", "").strip() or certifi.where()
            pool = _pools["delivery"] = urllib3.PoolManager(num_pools=4, maxsize=4, cert_reqs="CERT_REQUIRED",
                                                            ca_certs=ca_file, headers={"User-Agent": USER_AGENT})
    return pool


def _reachable(url: str) -> str:
    """``url`` as fetched. Only FACE_TAGGING_ALLOW_HTTP_LOOPBACK=1 (tests and benchmarks on one machine, whose
    CDN stand-in is reached through the SDK's own ``secure_distribution``) changes it: an https URL on a
    loopback host is fetched over plain http. Never on a serverless platform (500 there)."""
    if not url.startswith("https://") or not config.test_loopback_allowed(LOOPBACK_VARIABLE, "face_tagging"):
        return url
    host = url[len("https://"):].split("/", 1)[0].rsplit(":", 1)[0].strip("[]").lower()
    return "http://" + url[len("https://"):] if host in config.LOOPBACK_HOSTS else url


def _unavailable(error: BaseException) -> DependencyUnavailable:
    # Timeouts, refused or reset connections, TLS failures: a retry can fix them.
    return DependencyUnavailable("Cloudinary delivery did not answer; a retry will finish the work.",
                                 code="cloudinary_unavailable", log_detail=f"image fetch: {type(error).__name__}")


def check(data: bytes) -> None:
    """Refuse what is not a JPEG of at most MAX_SIDE a side, from its headers (no pixel is decoded)."""
    _open(data).close()


def _open(data: bytes) -> Any:
    """The JPEG, its headers read, opened by Pillow's JPEG plugin directly: ``Image.open`` would first load
    every other format's plugin. Its decompression-bomb check is replaced by a stricter one: the URL asks for
    at most MAX_SIDE pixels a side, so a larger image is not what was asked for."""
    with coldstart.first_import("PIL.JpegImagePlugin"):  # a cold start: Pillow's modules, for good
        from PIL import Image, JpegImagePlugin

    try:
        image = JpegImagePlugin.JpegImageFile(io.BytesIO(data))
    except (SyntaxError, OSError, ValueError, Image.DecompressionBombError) as error:
        # SyntaxError: Pillow's "not a JPEG file"; OSError: truncated or corrupt data
        raise ImageUnusable(f"the delivered file is not a readable image ({type(error).__name__})") from None
    if max(image.size) > MAX_SIDE:
        image.close()
        raise ImageUnusable(f"the delivered image is {image.size[0]}x{image.size[1]}, over {MAX_SIDE} px a side")
    return image


def reduction(size: tuple[int, int], boxes: list[dict[str, float]]) -> int:
    """The largest of 8, 4, 2 (else 1) by which the upright image of ``size`` can be decoded smaller and still
    give every face in ``boxes`` MIN_FACE_PIXELS on its shorter side and a crop of MIN_IMAGE_PIXELS a side."""
    for scale in (8, 4, 2):
        smaller = (-(-size[0] // scale), -(-size[1] // scale))  # libjpeg rounds a scaled side up
        if all(_big_enough(smaller, box) for box in boxes):
            return scale
    return 1


def _big_enough(size: tuple[int, int], box: dict[str, float]) -> bool:
    face = crop_box(size, box, margin=0.0)
    cropped = crop_box(size, box)
    return (min(face[2] - face[0], face[3] - face[1]) >= MIN_FACE_PIXELS
            and min(cropped[2] - cropped[0], cropped[3] - cropped[1]) >= MIN_IMAGE_PIXELS)


def decode(data: bytes, boxes: list[dict[str, float]] | None = None) -> Any:
    """The JPEG's pixels, upright, decoded once: smaller (see MIN_FACE_PIXELS) when the faces in ``boxes``
    allow it, at full size without boxes. No other copy of them is made (a 1600 px image is ~7 MB)."""
    from PIL import Image

    image = _open(data)
    try:
        # Rekognition reads the EXIF orientation and gives boxes for the upright image: crop that one.
        orientation = image.getexif().get(EXIF_ORIENTATION, 1)
        upright = image.size[::-1] if orientation in (5, 6, 7, 8) else image.size
        scale = reduction(upright, boxes) if boxes else 1
        if scale > 1:
            image.draft("RGB", (image.size[0] // scale, image.size[1] // scale))
        image.load()
        if orientation != 1:
            from PIL import ImageOps

            image = ImageOps.exif_transpose(image)
        return image if image.mode == "RGB" else image.convert("RGB")
    except (SyntaxError, OSError, ValueError, Image.DecompressionBombError) as error:
        raise ImageUnusable(f"the delivered file is not a readable image ({type(error).__name__})") from None


def crop_box(size: tuple[int, int], box: dict[str, float], margin: float = CROP_MARGIN) -> tuple[int, int, int, int]:
    """Pixel (left, top, right, bottom) of a Rekognition bounding box widened by ``margin`` of its size on
    each side, clamped to the image (Rekognition's boxes may reach past the edges), never empty."""
    width, height = size
    left, top = float(box.get("Left", 0.0)), float(box.get("Top", 0.0))
    box_width, box_height = float(box.get("Width", 0.0)), float(box.get("Height", 0.0))

    def pixel(ratio: float, extent: int, rounding: Any) -> int:
        # round() first: 0.35 * 400 is 140.00000000000003 in floating point, which must stay 140
        return int(rounding(round(ratio * extent, 6)))

    x0 = min(max(pixel(left - margin * box_width, width, math.floor), 0), width - 1)
    y0 = min(max(pixel(top - margin * box_height, height, math.floor), 0), height - 1)
    x1 = max(min(pixel(left + box_width + margin * box_width, width, math.ceil), width), x0 + 1)
    y1 = max(min(pixel(top + box_height + margin * box_height, height, math.ceil), height), y0 + 1)
    return x0, y0, x1, y1


def crop(pixels: Any, box: dict[str, float]) -> bytes:
    """The face's region of the decoded image as a JPEG, for SearchFacesByImage."""
    out = io.BytesIO()
    # Named, with no format given: Pillow takes the format from the name and loads no plugin but JPEG's, where
    # format="JPEG" first loads its BMP, GIF, PNG and PPM plugins too (0.8 MiB of a cold start). Same bytes.
    out.name = "face.jpg"
    pixels.crop(crop_box(pixels.size, box)).save(out, quality=CROP_QUALITY)
    return out.getvalue()
