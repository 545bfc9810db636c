"""Run by bench/verify_speed.py under valgrind's callgrind: N calls of one variant (instruction counts)."""

import hashlib
import hmac
import os
import sys

from shared import config, verify
from shared import webhook as wrapper
from shared.events import Headers

os.environ["CLOUDINARY_URL"] = "cloudinary://614335564976464:bench-secret-0123456789@demo"  # read per request

BODY = (b'{"notification_type":"upload","x":"' + b"a" * 2000 + b'"}')[:2048]
TIMESTAMP = "1700000000"
SECRET = b"bench-secret-0123456789"
SIGNATURE = verify.sign(BODY, TIMESTAMP, SECRET.decode())
HEADERS = Headers([("X-Cld-Timestamp", TIMESTAMP), ("X-Cld-Signature", SIGNATURE),
                   ("Content-Type", "application/json")])


def step() -> None:
    secrets, max_age, max_future = config.parsed_once("signature", wrapper._SIGNATURE_SETTINGS,
                                                      wrapper._signature_settings)
    verify.verify(BODY, verify.header(HEADERS, verify.TIMESTAMP_HEADER),
                  verify.header(HEADERS, verify.SIGNATURE_HEADER), secrets, now=1700000000.0, max_age=max_age,
                  max_future=max_future)


def raw() -> None:
    hmac.compare_digest(hashlib.sha1(BODY + TIMESTAMP.encode() + SECRET).hexdigest(), SIGNATURE)


def nothing() -> None:
    pass


if __name__ == "__main__":
    variant = {"step": step, "raw": raw, "nothing": nothing}[sys.argv[1]]
    for _ in range(int(sys.argv[2])):
        variant()
