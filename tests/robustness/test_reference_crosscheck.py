"""shared.verify against the reference, ``cloudinary.utils.verify_notification_signature`` (issue 7, item 4).


On random bodies, secrets, timestamps and signatures, with both algorithms, shared.verify accepts exactly
what the SDK accepts, except where the SDK is wrong or stricter than hex needs, and each exception is a
test of its own that says so:

- timestamps more than 5 minutes in the future: the SDK has no future check and accepts them (a forged or
  replayed header could pin a notification as "fresh" for as long as it likes); shared.verify refuses;
- timestamp text that ``int()`` reads but is not plain ASCII seconds (" 1700000000", "+1700000000",
  "1_700_000_000", other scripts' digits): the SDK accepts when the signature covers that text;
  shared.verify refuses it as malformed;
- upper-case hex: the SDK compares strings with ``==``, so only the lower-case spelling of the right digest
  passes; shared.verify accepts either spelling of the same digest (no extra forgery power);
- the comparison itself: the SDK's ``==`` stops at the first differing character (timing leaks how much of
  a guess is right); shared.verify uses ``hmac.compare_digest``.

The SDK chooses one algorithm (``algorithm=`` or its config); shared.verify tells SHA-1 from SHA-256 by the
digest's length, as DESIGN.md asks. So "the SDK accepts" means: it accepts with sha1 or with sha256.
"""

from __future__ import annotations

import hmac
import inspect
import time
from collections.abc import Iterator
from contextlib import contextmanager

import cloudinary
import cloudinary.utils
import pytest
from hypothesis import assume, given, note, settings
from hypothesis import strategies as st

from shared import verify
from tests.robustness.conftest import COUNTS, PROFILE

pytestmark = pytest.mark.slow  # the robustness suites: `make test` runs them, `make test-fast` does not

VALID_FOR = verify.DEFAULT_MAX_AGE_SECONDS  # both sides: two hours
MARGIN = 120  # seconds kept from every boundary: the SDK reads the real clock while the test runs
CROSSCHECK = settings(PROFILE, max_examples=PROFILE.max_examples * 5)

bodies = st.text(max_size=300) | st.sampled_from(['{"notification_type":"upload","public_id":"dog"}', "{}", ""])
secrets = st.text(min_size=1, max_size=40)
algorithms = st.sampled_from(["sha1", "sha256"])
FRESH = st.integers(0, VALID_FOR - MARGIN)


@contextmanager
def sdk_secret(secret: str) -> Iterator[None]:
    """The SDK reads the secret from its global config: set it for the call, then put everything back."""
    saved_config = cloudinary._config
    saved_values = dict(vars(saved_config))
    try:
        cloudinary.config(api_secret=secret)
        yield
    finally:
        cloudinary._config = saved_config
        vars(saved_config).clear()
        vars(saved_config).update(saved_values)


def sdk_accepts(body: str, timestamp: str, signature: str, secret: str) -> bool:
    with sdk_secret(secret):
        accepted = False
        for algorithm in ("sha1", "sha256"):
            try:
                accepted |= cloudinary.utils.verify_notification_signature(
                    body, timestamp, signature, valid_for=VALID_FOR, algorithm=algorithm)
            except ValueError:  # int(timestamp) failed: the SDK raises where it means "not valid"
                return False
        return accepted


def shared_accepts(body: str, timestamp: str, signature: str, secret: str, now: float) -> bool:
    try:
        verify.verify(body.encode("utf-8"), timestamp, signature, [secret], now=now)
    except verify.SignatureError as error:
        note(f"shared.verify: {error.reason}")
        return False
    return True


def reference_signature(body: str, timestamp: str, secret: str, algorithm: str) -> str:
    """The SDK's own signing formula (it is what Cloudinary's servers compute)."""
    return cloudinary.utils.compute_hex_hash(f"{body}{timestamp}{secret}", algorithm)


@st.composite
def candidate_signature(draw: st.DrawFn, body: str, timestamp: str, secret: str) -> tuple[str, str]:
    """(kind, signature): right, or wrong in one of the ways that matter. Always lower-case when hex."""
    algorithm = draw(algorithms)
    right = reference_signature(body, timestamp, secret, algorithm)
    # Right signatures weigh a third: "both accept" must be tried as often as the ways to refuse.
    kind = draw(st.sampled_from(["right"] * 4 + ["other_secret", "other_body", "other_timestamp", "flipped",
                                                 "random_hex", "cut", "text", "empty"]))
    if kind == "right":
        return kind, right
    if kind == "other_secret":
        return kind, reference_signature(body, timestamp, draw(secrets.filter(lambda s: s != secret)), algorithm)
    if kind == "other_body":
        return kind, reference_signature(draw(bodies.filter(lambda b: b != body)), timestamp, secret, algorithm)
    if kind == "other_timestamp":
        return kind, reference_signature(body, str(int(timestamp) + draw(st.integers(1, 10**6))), secret,
                                         algorithm)
    if kind == "flipped":
        index = draw(st.integers(0, len(right) - 1))
        digit = draw(st.sampled_from("0123456789abcdef").filter(lambda d: d != right[index]))
        return kind, right[:index] + digit + right[index + 1:]
    if kind == "random_hex":
        length = draw(st.sampled_from([40, 64]))
        return kind, draw(st.text("0123456789abcdef", min_size=length, max_size=length))
    if kind == "cut":
        return kind, right[:draw(st.integers(0, len(right) - 1))]
    if kind == "text":
        return kind, draw(st.text(max_size=70).map(str.lower))
    return kind, ""


@CROSSCHECK
@given(body=bodies, secret=secrets, age=st.one_of(FRESH, FRESH, st.integers(VALID_FOR + MARGIN, 10**9)),
       leading_zero=st.booleans(), data=st.data())
def test_shared_verify_accepts_exactly_what_the_sdk_accepts(body: str, secret: str, age: int, leading_zero: bool,
                                                            data: st.DataObject) -> None:
    """Fresh (and clearly stale) timestamps, right and wrong signatures, both algorithms: the same verdict."""
    now = int(time.time())
    timestamp = str(max(now - age, 0))
    if leading_zero and len(timestamp) < 12:  # still plain ASCII seconds: both read it as the same number
        timestamp = "0" + timestamp
    kind, signature = data.draw(candidate_signature(body, timestamp, secret))

    sdk = sdk_accepts(body, timestamp, signature, secret)
    ours = shared_accepts(body, timestamp, signature, secret, now=now)

    COUNTS["cross-check: inputs compared with the SDK"] += 1
    COUNTS[f"cross-check: {'accepted' if sdk else 'refused'} by both"] += int(sdk == ours)
    assert ours == sdk, (f"shared.verify {'accepts' if ours else 'refuses'} but the SDK "
                         f"{'accepts' if sdk else 'refuses'}: {kind} signature, timestamp {timestamp} ({age} s old)")
    if kind == "right" and age <= VALID_FOR - MARGIN:
        assert ours, "a right signature with a fresh timestamp must be accepted by both"


@CROSSCHECK
@given(body=bodies, secret=secrets, algorithm=algorithms,
       ahead=st.integers(verify.DEFAULT_MAX_FUTURE_SECONDS + MARGIN, 10**9))
def test_future_timestamps_are_refused_though_the_sdk_accepts_them(body: str, secret: str, algorithm: str,
                                                                   ahead: int) -> None:
    now = int(time.time())
    timestamp = str(now + ahead)
    signature = reference_signature(body, timestamp, secret, algorithm)

    COUNTS["cross-check: future timestamps the SDK wrongly accepts, refused"] += 1
    assert sdk_accepts(body, timestamp, signature, secret), "the SDK now refuses future timestamps: update the doc"
    try:
        verify.verify(body.encode("utf-8"), timestamp, signature, [secret], now=now)
    except verify.SignatureError as error:
        assert error.reason == "future_timestamp"
    else:
        raise AssertionError(f"shared.verify accepted a timestamp {ahead} s in the future")


def _other_script_digits(text: str, zero: int) -> str:
    return "".join(chr(zero + int(digit)) for digit in text)


@CROSSCHECK
@given(body=bodies, secret=secrets, algorithm=algorithms, age=st.integers(0, VALID_FOR - MARGIN),
       spelling=st.sampled_from(["leading space", "trailing newline", "plus sign", "underscores", "arabic-indic",
                                 "fullwidth", "devanagari"]))
def test_timestamps_int_reads_but_are_not_ascii_seconds_are_refused(body: str, secret: str, algorithm: str,
                                                                   age: int, spelling: str) -> None:
    now = int(time.time())
    seconds = str(now - age)
    timestamp = {
        "leading space": f" {seconds}", "trailing newline": f"{seconds}\n", "plus sign": f"+{seconds}",
        "underscores": f"{int(seconds):_}", "arabic-indic": _other_script_digits(seconds, 0x0660),
        "fullwidth": _other_script_digits(seconds, 0xFF10), "devanagari": _other_script_digits(seconds, 0x0966),
    }[spelling]
    signature = reference_signature(body, timestamp, secret, algorithm)

    COUNTS["cross-check: non-ASCII-seconds timestamps the SDK accepts, refused"] += 1
    assert sdk_accepts(body, timestamp, signature, secret), f"the SDK now refuses a {spelling} timestamp"
    try:
        verify.verify(body.encode("utf-8"), timestamp, signature, [secret], now=now)
    except verify.SignatureError as error:
        assert error.reason == "malformed_timestamp"
    else:
        raise AssertionError(f"shared.verify accepted a {spelling} timestamp {timestamp!r}")


@CROSSCHECK
@given(body=bodies, secret=secrets, algorithm=algorithms, age=st.integers(0, VALID_FOR - MARGIN))
def test_upper_case_hex_is_the_same_digest_to_shared_verify_only(body: str, secret: str, algorithm: str,
                                                                age: int) -> None:
    now = int(time.time())
    timestamp = str(now - age)
    signature = reference_signature(body, timestamp, secret, algorithm)
    assume(signature != signature.upper())

    assert sdk_accepts(body, timestamp, signature, secret) is True
    assert sdk_accepts(body, timestamp, signature.upper(), secret) is False  # the SDK's == on strings
    assert shared_accepts(body, timestamp, signature.upper(), secret, now=now) is True


def test_shared_verify_compares_in_constant_time_where_the_sdk_uses_equality(monkeypatch) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real_compare = hmac.compare_digest

    def recording(expected: bytes, presented: bytes) -> bool:
        compared.append((expected, presented))
        return real_compare(expected, presented)

    monkeypatch.setattr(hmac, "compare_digest", recording)
    timestamp = str(int(time.time()))
    signature = reference_signature("{}", timestamp, "s3cret", "sha1")
    verify.verify(b"{}", timestamp, signature, ["s3cret"])

    assert compared == [(signature, signature)]  # hex digests, compared as ASCII strings
    # The reference compares with ==, which returns at the first differing character.
    source = inspect.getsource(cloudinary.utils.verify_notification_signature)
    assert "signature == compute_hex_hash(" in source, "the SDK changed its comparison: update this file's doc"
