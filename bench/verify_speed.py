"""Verification throughput: ``shared.verify.verify`` against the bare hashlib work it cannot avoid
(one SHA-1 over body + timestamp + secret and a comparison) on the same 2 KB input."""

from __future__ import annotations

import hashlib
import hmac
import os
import time

from shared import verify

SECRET = "bench-secret-0123456789"
NOW = 1_700_000_000


def _body(size: int = 2048) -> bytes:
    # A JSON-looking body of the given size; the content does not matter to a hash.
    filler = os.urandom(size).hex()[: size - 40]
    return ('{"notification_type":"upload","x":"' + filler + '"}').encode()[:size]


def _rate(fn, seconds: float) -> float:
    count = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        for _ in range(200):
            fn()
        count += 200
    return count / seconds


def measure(seconds: float = 2.0) -> dict:
    body = _body()
    timestamp = str(NOW)
    signature = verify.sign(body, timestamp, SECRET)
    signature_256 = verify.sign(body, timestamp, SECRET, "sha256")
    secret_bytes = SECRET.encode()

    def ours() -> None:
        verify.verify(body, timestamp, signature, [SECRET], now=NOW)

    def ours_256() -> None:
        verify.verify(body, timestamp, signature_256, [SECRET], now=NOW)

    def raw() -> None:
        expected = hashlib.sha1(body + timestamp.encode() + secret_bytes).hexdigest()
        hmac.compare_digest(expected, signature)

    def raw_256() -> None:
        expected = hashlib.sha256(body + timestamp.encode() + secret_bytes).hexdigest()
        hmac.compare_digest(expected, signature_256)

    # Best of 5 interleaved rounds for each: the other core's noise hits both sides alike.
    rates: dict[str, float] = {"ours": 0.0, "raw": 0.0, "ours_256": 0.0, "raw_256": 0.0}
    for _ in range(5):
        for name, fn in (("ours", ours), ("raw", raw), ("ours_256", ours_256), ("raw_256", raw_256)):
            rates[name] = max(rates[name], _rate(fn, seconds / 5))
    return {"body_bytes": len(body), **rates}


def report(result: dict) -> str:
    ratio = result["raw"] / result["ours"]
    ratio_256 = result["raw_256"] / result["ours_256"]
    return "\n".join([
        "## Signature verification",
        "",
        f"Command: `python -m bench` (section `bench/verify_speed.py`); one {result['body_bytes']}-byte body,",
        "one secret, verifications per second (best of 5 interleaved rounds each).",
        "",
        "| algorithm | shared.verify.verify | raw hashlib + compare_digest | ratio (target: within 2x) |",
        "|---|---|---|---|",
        f"| SHA-1 | {result['ours']:,.0f}/s | {result['raw']:,.0f}/s | {ratio:.2f}x |",
        f"| SHA-256 | {result['ours_256']:,.0f}/s | {result['raw_256']:,.0f}/s | {ratio_256:.2f}x |",
        "",
    ])
