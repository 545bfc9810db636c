"""shared.verify: every property of DESIGN.md §4 "Signature", with the vectors Cloudinary's SDKs test with."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared import verify
from shared.verify import NoSecretConfigured, SignatureError

# Cloudinary's published vectors (the Node/PHP/Python SDK test suites).
SHA1_SECRET = "X7qLTrsES31MzxxkxPPA-pAGGfU"
SHA1_TIMESTAMP = "1549533514"
SHA1_BODY = (
    b'{"notification_type":"eager","eager":[{"transformation":"sp_full_hd/mp4","bytes":1055,'
    b'"url":"http://res.cloudinary.com/demo/video/upload/sp_full_hd/v1533125278/dog.mp4",'
    b'"secure_url":"https://res.cloudinary.com/demo/video/upload/sp_full_hd/v1533125278/dog.mp4"}],'
    b'"public_id":"dog","batch_id":"9b11fa058c61fa577f4ec516bf6ee756ac2aefef095af99aef1302142cc1694a"}'
)
SHA1_SIGNATURE = "dfe82de1d9083fe0b7ea68070649f9a15b8874da"

SHA256_SECRET = "someApiSecret"
SHA256_TIMESTAMP = "0"
SHA256_BODY = b"{}"
SHA256_SIGNATURE = "d5497e1a206ad0ba29ad09a7c0c5f22e939682d15009c15ab3199f62fefbd14b"

NOW = 1_700_000_000
_REAL_COMPARE_DIGEST = hmac.compare_digest  # the tests below replace it on the hmac module
SECRET = "current-secret"
BODY = b'{"notification_type":"upload","public_id":"sample"}'


def signed(body: bytes = BODY, timestamp: int = NOW, secret: str = SECRET, algorithm: str = "sha1") -> str:
    return verify.sign(body, timestamp, secret, algorithm)


def reason_of(**kwargs) -> str:
    arguments = {"body": BODY, "timestamp": str(NOW), "signature": signed(), "secrets": [SECRET], "now": NOW}
    arguments.update(kwargs)
    with pytest.raises(SignatureError) as caught:
        verify.verify(**arguments)
    return caught.value.reason


# --- the published vectors -------------------------------------------------------------------------

def test_sign_reproduces_cloudinarys_sha1_vector():
    assert verify.sign(SHA1_BODY, SHA1_TIMESTAMP, SHA1_SECRET) == SHA1_SIGNATURE
    assert verify.sign(SHA1_BODY.decode(), int(SHA1_TIMESTAMP), SHA1_SECRET, "SHA1") == SHA1_SIGNATURE


def test_sign_reproduces_cloudinarys_sha256_vector():
    assert verify.sign(SHA256_BODY, SHA256_TIMESTAMP, SHA256_SECRET, "sha256") == SHA256_SIGNATURE


def test_sign_matches_the_formula_computed_independently():
    expected = hashlib.sha1(BODY + str(NOW).encode() + SECRET.encode()).hexdigest()  # noqa: S324 - Cloudinary's
    assert verify.sign(BODY, NOW, SECRET) == expected


def test_sign_refuses_an_unknown_algorithm():
    with pytest.raises(ValueError, match="unknown algorithm"):
        verify.sign(BODY, NOW, SECRET, "md5")


def test_verify_accepts_the_sha1_vector():
    verify.verify(SHA1_BODY, SHA1_TIMESTAMP, SHA1_SIGNATURE, [SHA1_SECRET], now=int(SHA1_TIMESTAMP) + 60)


def test_verify_accepts_the_sha256_vector_told_apart_by_length():
    verify.verify(SHA256_BODY, SHA256_TIMESTAMP, SHA256_SIGNATURE, [SHA256_SECRET], now=0)


def test_the_vectors_fail_with_any_other_secret():
    with pytest.raises(SignatureError) as caught:
        verify.verify(SHA1_BODY, SHA1_TIMESTAMP, SHA1_SIGNATURE, [SHA1_SECRET + "x"], now=int(SHA1_TIMESTAMP))
    assert caught.value.reason == "signature_mismatch"
    with pytest.raises(SignatureError):
        verify.verify(SHA256_BODY, SHA256_TIMESTAMP, SHA256_SIGNATURE, ["someapisecret"], now=0)


def test_a_sha256_signature_of_the_sha1_vector_is_accepted_too():
    signature = verify.sign(SHA1_BODY, SHA1_TIMESTAMP, SHA1_SECRET, "sha256")
    assert len(signature) == 64
    verify.verify(SHA1_BODY, SHA1_TIMESTAMP, signature, [SHA1_SECRET], now=int(SHA1_TIMESTAMP))


# --- raw bytes -------------------------------------------------------------------------------------

def test_a_reserialised_body_fails_although_it_is_the_same_json():
    reserialised = json.dumps(json.loads(SHA1_BODY)).encode()  # ", " and ": " separators
    assert json.loads(reserialised) == json.loads(SHA1_BODY) and reserialised != SHA1_BODY
    with pytest.raises(SignatureError) as caught:
        verify.verify(reserialised, SHA1_TIMESTAMP, SHA1_SIGNATURE, [SHA1_SECRET], now=int(SHA1_TIMESTAMP))
    assert caught.value.reason == "signature_mismatch"


@pytest.mark.parametrize("tampered", [SHA1_BODY + b"\n", b" " + SHA1_BODY, SHA1_BODY.replace(b"dog", b"cat")])
def test_any_byte_changed_fails(tampered):
    with pytest.raises(SignatureError):
        verify.verify(tampered, SHA1_TIMESTAMP, SHA1_SIGNATURE, [SHA1_SECRET], now=int(SHA1_TIMESTAMP))


def test_non_ascii_bodies_are_verified_as_the_bytes_received():
    body = '{"notification_type":"upload","public_id":"café/日本"}'.encode()
    verify.verify(body, str(NOW), verify.sign(body, NOW, SECRET), [SECRET], now=NOW)
    latin1 = body.decode().encode("utf-8").replace("é".encode(), b"\xe9")
    assert reason_of(body=latin1, signature=verify.sign(body, NOW, SECRET)) == "signature_mismatch"


def test_the_timestamp_is_part_of_what_is_signed():
    assert reason_of(timestamp=str(NOW - 1), signature=signed(timestamp=NOW)) == "signature_mismatch"


# --- hex case and header names -----------------------------------------------------------------------

def test_upper_case_hex_is_accepted():
    verify.verify(SHA1_BODY, SHA1_TIMESTAMP, SHA1_SIGNATURE.upper(), [SHA1_SECRET], now=int(SHA1_TIMESTAMP))
    verify.verify(SHA256_BODY, SHA256_TIMESTAMP, SHA256_SIGNATURE.upper(), [SHA256_SECRET], now=0)


@pytest.mark.parametrize(("timestamp_name", "signature_name"), [
    ("X-Cld-Timestamp", "X-Cld-Signature"),
    ("x-cld-timestamp", "x-cld-signature"),
    ("X-CLD-TIMESTAMP", "X-CLD-SIGNATURE"),
    ("x-Cld-tImEsTaMp", "X-cld-SIGNature"),
])
def test_header_names_in_any_case(timestamp_name, signature_name):
    headers = {timestamp_name: SHA1_TIMESTAMP, signature_name: SHA1_SIGNATURE, "Content-Type": "application/json"}
    verify.verify_headers(SHA1_BODY, headers, [SHA1_SECRET], now=int(SHA1_TIMESTAMP))


def test_header_lookup_returns_none_when_absent():
    assert verify.header({"Content-Type": "application/json"}, verify.SIGNATURE_HEADER) is None
    assert verify.header({"x-cld-signature": "abc"}, "X-Cld-Signature") == "abc"


def test_verify_headers_reports_a_missing_header():
    with pytest.raises(SignatureError) as caught:
        verify.verify_headers(BODY, {"X-Cld-Timestamp": str(NOW)}, [SECRET], now=NOW)
    assert caught.value.reason == "missing_signature"


def test_signed_headers_are_what_cloudinary_sends():
    headers = verify.signed_headers(SHA1_BODY, SHA1_SECRET, timestamp=int(SHA1_TIMESTAMP))
    assert headers == {"Content-Type": "application/json", "X-Cld-Timestamp": SHA1_TIMESTAMP,
                       "X-Cld-Signature": SHA1_SIGNATURE}
    sha256 = verify.signed_headers(SHA256_BODY, SHA256_SECRET, timestamp=0, algorithm="sha256")
    assert sha256["X-Cld-Signature"] == SHA256_SIGNATURE and sha256["X-Cld-Timestamp"] == "0"


def test_signed_headers_default_to_the_current_time(monkeypatch):
    monkeypatch.setattr(verify.time, "time", lambda: 1234567890.9)
    assert verify.signed_headers(BODY, SECRET)["X-Cld-Timestamp"] == "1234567890"


# --- timestamps: stale, future, boundaries -----------------------------------------------------------

def test_exactly_max_age_old_is_accepted_one_second_more_is_stale():
    age = verify.DEFAULT_MAX_AGE_SECONDS
    assert age == 2 * 60 * 60
    verify.verify(BODY, str(NOW - age), signed(timestamp=NOW - age), [SECRET], now=NOW)
    old = NOW - age - 1
    assert reason_of(timestamp=str(old), signature=signed(timestamp=old)) == "stale_timestamp"


def test_exactly_max_future_ahead_is_accepted_one_second_more_is_rejected():
    ahead = verify.DEFAULT_MAX_FUTURE_SECONDS
    assert ahead == 5 * 60
    verify.verify(BODY, str(NOW + ahead), signed(timestamp=NOW + ahead), [SECRET], now=NOW)
    future = NOW + ahead + 1
    assert reason_of(timestamp=str(future), signature=signed(timestamp=future)) == "future_timestamp"


def test_limits_are_configurable():
    old = NOW - 61
    verify.verify(BODY, str(old), signed(timestamp=old), [SECRET], now=NOW, max_age=61)
    assert reason_of(timestamp=str(old), signature=signed(timestamp=old), max_age=60) == "stale_timestamp"
    verify.verify(BODY, str(NOW + 10), signed(timestamp=NOW + 10), [SECRET], now=NOW, max_future=10)
    assert reason_of(timestamp=str(NOW + 10), signature=signed(timestamp=NOW + 10), max_future=9) \
        == "future_timestamp"


def test_a_fractional_clock_does_not_move_the_boundaries():
    old = NOW - verify.DEFAULT_MAX_AGE_SECONDS
    verify.verify(BODY, str(old), signed(timestamp=old), [SECRET], now=NOW + 0.0)
    assert reason_of(timestamp=str(old), signature=signed(timestamp=old), now=NOW + 0.5) == "stale_timestamp"


def test_a_stale_timestamp_is_rejected_even_with_a_correct_signature():
    # A replayed notification: genuine signature, old timestamp. Freshness is checked, not skipped.
    with pytest.raises(SignatureError) as caught:
        verify.verify(SHA1_BODY, SHA1_TIMESTAMP, SHA1_SIGNATURE, [SHA1_SECRET], now=NOW)
    assert caught.value.reason == "stale_timestamp"


def test_now_defaults_to_the_clock(monkeypatch):
    monkeypatch.setattr(verify.time, "time", lambda: float(int(SHA1_TIMESTAMP) + 30))
    verify.verify(SHA1_BODY, SHA1_TIMESTAMP, SHA1_SIGNATURE, [SHA1_SECRET])
    monkeypatch.setattr(verify.time, "time", lambda: float(NOW))
    with pytest.raises(SignatureError):
        verify.verify(SHA1_BODY, SHA1_TIMESTAMP, SHA1_SIGNATURE, [SHA1_SECRET])


# --- malformed and missing headers: a distinct reason for each ----------------------------------------

@pytest.mark.parametrize("timestamp", [
    "abc", "-5", "+5", "1.5", "1e9", " 1700000000", "1700000000 ", "0x10", "\uff11\uff12\uff13",  # full-width digits
    "١٢٣", "1" * 13, "17000000 00",
])
def test_malformed_timestamps(timestamp):
    assert reason_of(timestamp=timestamp) == "malformed_timestamp"


@pytest.mark.parametrize("signature", [
    "xyz", "g" * 40, "0" * 39, "0" * 41, "0" * 63, "0" * 65, " " + "0" * 39, "0" * 40 + "\n",
    "sha1=" + "0" * 40, "é" * 40, "\uff10" * 40,
])
def test_malformed_signatures(signature):
    assert reason_of(signature=signature) == "malformed_signature"


@pytest.mark.parametrize(("field", "reason"), [("timestamp", "missing_timestamp"),
                                               ("signature", "missing_signature")])
@pytest.mark.parametrize("value", [None, ""])
def test_missing_headers(field, reason, value):
    assert reason_of(**{field: value}) == reason


def test_every_failure_has_its_own_reason_and_message():
    cases = {
        "missing_timestamp": {"timestamp": None},
        "missing_signature": {"signature": None},
        "malformed_timestamp": {"timestamp": "yesterday"},
        "stale_timestamp": {"timestamp": str(NOW - 100_000), "signature": signed(timestamp=NOW - 100_000)},
        "future_timestamp": {"timestamp": str(NOW + 100_000), "signature": signed(timestamp=NOW + 100_000)},
        "malformed_signature": {"signature": "not-hex"},
        "signature_mismatch": {"signature": "0" * 40},
    }
    messages = set()
    for expected, kwargs in cases.items():
        arguments = {"body": BODY, "timestamp": str(NOW), "signature": signed(), "secrets": [SECRET], "now": NOW}
        arguments.update(kwargs)
        with pytest.raises(SignatureError) as caught:
            verify.verify(**arguments)
        assert caught.value.reason == expected
        assert str(caught.value) == caught.value.message and caught.value.message
        assert SECRET not in caught.value.message
        messages.add(caught.value.message)
    assert len(messages) == len(cases)


def test_a_valid_signature_with_the_other_length_is_a_mismatch_not_a_crash():
    # a SHA-256-length signature that is not the SHA-256 of this body
    assert reason_of(signature=signed()[:40] + "0" * 24) == "signature_mismatch"


# --- secrets: rotation, none configured ---------------------------------------------------------------

def test_secret_rotation_second_secret_matches():
    old_secret, new_secret = "old-secret", "new-secret"
    for secret in (old_secret, new_secret):
        signature = verify.sign(BODY, NOW, secret)
        verify.verify(BODY, str(NOW), signature, [old_secret, new_secret], now=NOW)
        verify.verify(BODY, str(NOW), signature, (s for s in [new_secret, old_secret]), now=NOW)
    assert reason_of(signature=verify.sign(BODY, NOW, "third"), secrets=[old_secret, new_secret]) \
        == "signature_mismatch"


def test_empty_secrets_are_ignored_among_real_ones():
    verify.verify(BODY, str(NOW), signed(), ["", SECRET], now=NOW)
    # An empty secret must never be usable: a signature made with "" is not accepted.
    assert reason_of(signature=verify.sign(BODY, NOW, ""), secrets=["", SECRET]) == "signature_mismatch"


@pytest.mark.parametrize("secrets", [[], [""], ["", ""], ()])
def test_no_secret_is_a_configuration_error_never_a_skip(secrets):
    with pytest.raises(NoSecretConfigured):
        verify.verify(BODY, str(NOW), signed(), secrets, now=NOW)
    with pytest.raises(NoSecretConfigured):  # even with no headers at all: setup error first
        verify.verify(BODY, None, None, secrets, now=NOW)


def test_no_secret_is_not_a_signature_error():
    # the wrapper maps the two to different statuses (500 vs 401); they must not share a base class
    assert not issubclass(NoSecretConfigured, SignatureError)
    assert not issubclass(SignatureError, NoSecretConfigured)


# --- constant time ------------------------------------------------------------------------------------

class CountingCompare:
    def __init__(self):
        self.calls: list[tuple[bytes, bytes]] = []

    def __call__(self, a, b):
        self.calls.append((a, b))
        return _REAL_COMPARE_DIGEST(a, b)


@pytest.fixture
def compare(monkeypatch):
    counter = CountingCompare()
    monkeypatch.setattr(verify.hmac, "compare_digest", counter)
    return counter


@pytest.mark.parametrize("matching_index", [0, 1, 2, None])
def test_compare_digest_is_used_for_every_secret_without_stopping_early(compare, matching_index):
    secrets = ["first", "second", "third"]
    signing = secrets[matching_index] if matching_index is not None else "none-of-them"
    signature = verify.sign(BODY, NOW, signing)
    if matching_index is None:
        with pytest.raises(SignatureError):
            verify.verify(BODY, str(NOW), signature, secrets, now=NOW)
    else:
        verify.verify(BODY, str(NOW), signature, secrets, now=NOW)
    assert len(compare.calls) == len(secrets)
    assert all(presented == signature for _, presented in compare.calls)  # ASCII strings, compared as such


def test_compare_digest_sees_lower_case_hex_for_an_upper_case_header(compare):
    verify.verify(SHA1_BODY, SHA1_TIMESTAMP, SHA1_SIGNATURE.upper(), [SHA1_SECRET], now=int(SHA1_TIMESTAMP))
    assert compare.calls == [(SHA1_SIGNATURE, SHA1_SIGNATURE)]


def test_no_plain_equality_decides_the_match(monkeypatch):
    # With compare_digest forced to say "no", a correct signature must be refused: the module has no
    # second, non-constant-time comparison that could accept it.
    monkeypatch.setattr(verify.hmac, "compare_digest", lambda a, b: False)
    with pytest.raises(SignatureError) as caught:
        verify.verify(SHA1_BODY, SHA1_TIMESTAMP, SHA1_SIGNATURE, [SHA1_SECRET], now=int(SHA1_TIMESTAMP))
    assert caught.value.reason == "signature_mismatch"


# --- properties over arbitrary inputs ---------------------------------------------------------------------

_secrets = st.text(min_size=1, max_size=40).filter(lambda s: "\x00" not in s)
_timestamps = st.integers(min_value=0, max_value=10**11)


@given(body=st.binary(max_size=2048), timestamp=_timestamps, secret=_secrets,
       algorithm=st.sampled_from(["sha1", "sha256"]))
def test_property_what_sign_makes_verify_accepts(body, timestamp, secret, algorithm):
    signature = verify.sign(body, timestamp, secret, algorithm)
    verify.verify(body, str(timestamp), signature, [secret], now=timestamp)
    verify.verify(body, str(timestamp), signature.upper(), ["other", secret], now=timestamp)


@given(body=st.binary(min_size=1, max_size=512), timestamp=_timestamps, secret=_secrets,
       index=st.integers(min_value=0), flip=st.integers(min_value=1, max_value=255))
def test_property_any_changed_byte_is_refused(body, timestamp, secret, index, flip):
    signature = verify.sign(body, timestamp, secret)
    position = index % len(body)
    tampered = body[:position] + bytes([body[position] ^ flip]) + body[position + 1:]
    with pytest.raises(SignatureError) as caught:
        verify.verify(tampered, str(timestamp), signature, [secret], now=timestamp)
    assert caught.value.reason == "signature_mismatch"


@given(timestamp=st.text(max_size=20), signature=st.text(max_size=80))
def test_property_arbitrary_headers_never_crash(timestamp, signature):
    # Whatever arrives in the headers, the answer is a SignatureError with a known reason, never a crash.
    reasons = {"missing_timestamp", "missing_signature", "malformed_timestamp", "stale_timestamp",
               "future_timestamp", "malformed_signature", "signature_mismatch"}
    with pytest.raises(SignatureError) as caught:
        verify.verify(BODY, timestamp, signature, [SECRET], now=NOW)
    assert caught.value.reason in reasons
