"""Names in Rekognition's ``ExternalImageId``: any Unicode name survives the round trip.

Rekognition allows only ``[a-zA-Z0-9_.\\-:]``, 1 to 255 characters. A face's ExternalImageId is

    <asset_id>:<encoded name>          e.g.  0f3a7b2d9c4e8f1a6b5d4c3e2f1a0b9c:Jane_20Doe

The asset ID names the training image (a delete notification carries it, and it survives renames and
moves), so ``ListFaces`` finds that image's faces again when it is deleted. The name keeps ``A-Z a-z 0-9 . -``
as they are, readable in the AWS console; every other UTF-8 byte becomes ``_`` and two upper-case hex digits
("José" -> ``Jos_C3_A9``). ``_`` and ``:`` never appear unescaped in a name, so the ID splits without doubt.
"""

from __future__ import annotations

import re

MAX_EXTERNAL_ID = 255  # Rekognition's limit
_PLAIN = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-")
_ASSET_ID = re.compile(r"^[A-Za-z0-9]{1,64}$")
_ENCODED = re.compile(r"^(?:[A-Za-z0-9.\-]|_[0-9A-F]{2})+$")
_EXTERNAL_ID = re.compile(r"^[a-zA-Z0-9_.\-:]{1,255}$")


class NameRefused(ValueError):
    """The name (or asset ID) cannot be stored in an ExternalImageId; the message says why."""


def clean_name(raw: str) -> str:
    """The name as tagged, in one canonical form: Unicode NFC, whitespace runs as one space, trimmed.
    NFC matters: "é" typed as one code point or as "e" + accent must be the same person."""
    import unicodedata  # here, not at module level: a rejected request never needs it

    return " ".join(unicodedata.normalize("NFC", raw).split())


def encode_name(name: str) -> str:
    return "".join(chr(byte) if byte in _PLAIN else f"_{byte:02X}" for byte in name.encode("utf-8"))


def decode_name(encoded: str) -> str:
    if not _ENCODED.match(encoded):
        raise NameRefused("not an encoded name")
    data = bytearray()
    index = 0
    while index < len(encoded):
        if encoded[index] == "_":
            data.append(int(encoded[index + 1:index + 3], 16))
            index += 3
        else:
            data.append(ord(encoded[index]))
            index += 1
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise NameRefused("the encoded bytes are not UTF-8") from None


def external_image_id(asset_id: str, name: str) -> str:
    """The ExternalImageId for a face of ``name`` in the training image ``asset_id``. Refuses (never
    produces an invalid ID) when the name is empty, holds a comma (Cloudinary splits tags on commas, so
    it could never come back as one tag) or is too long once encoded."""
    if not _ASSET_ID.match(asset_id):
        raise NameRefused("the asset_id is not alphanumeric")
    name = clean_name(name)
    if not name:
        raise NameRefused("the name is empty")
    if "," in name:
        raise NameRefused("the name holds a comma, which Cloudinary tags cannot carry")
    external_id = f"{asset_id}:{encode_name(name)}"
    if len(external_id) > MAX_EXTERNAL_ID:
        room = MAX_EXTERNAL_ID - len(asset_id) - 1
        raise NameRefused(f"the name is too long: {len(external_id) - len(asset_id) - 1} characters once "
                          f"encoded, at most {room} fit (about {room // 3} for accented or {room // 9} "
                          "for CJK letters)")
    assert _EXTERNAL_ID.match(external_id)  # by construction; a bad ExternalImageId is never sent
    return external_id


def parse_external_id(external_id: str | None) -> tuple[str, str] | None:
    """(asset_id, name) of an ExternalImageId this function wrote; None for any other (faces indexed by
    other tools may share the collection: they are never matched as names and never deleted)."""
    if not external_id or ":" not in external_id:
        return None
    asset_id, encoded = external_id.split(":", 1)
    if not _ASSET_ID.match(asset_id):
        return None
    try:
        name = decode_name(encoded)
    except NameRefused:
        return None
    # Only the one canonical spelling decodes: a hand-made ID such as "Jan_65" is not "Jane".
    if not name or clean_name(name) != name or encode_name(name) != encoded:
        return None
    return asset_id, name
