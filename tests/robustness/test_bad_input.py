"""Bad input against every function and both adapters (issue 7, item 1): hypothesis property tests.

Every function under ``functions/*/handler.py`` is found and tested automatically, through the Lambda entry
``handler(event, None)`` (API Gateway v1, HTTP API v2, Function URL and Netlify event shapes) and the WSGI
entry ``app(environ, start_response)`` (a hand-built environ, so lying and duplicated headers reach it as
they would from a server). The properties:

1. Unauthenticated requests (bad, missing, duplicated or malformed signatures and timestamps; stale and
   future timestamps; replayed, re-serialised or swapped bodies; lying base64 flags and Content-Lengths;
   huge bodies; wrong methods and content types; events that are not HTTP events) are answered 4xx, never
   200 and never 5xx, and make no outbound connection at all.
2. Correctly signed bodies that are not a JSON object with a notification_type (invalid UTF-8, not JSON,
   not an object, absurdly deep, numbers beyond the parser's limit) are a 400 with no outbound connection.
3. Correctly signed notifications whose fields hold odd values (wrong types at any depth, lone surrogates,
   NaN, huge numbers, duplicated keys) are a 200 or a 400: never a 5xx, never an exception out of the entry
   point; in DRY_RUN=1 nothing is written.
4. A valid notification built from each function's samples, with random extra fields (Cloudinary adds
   fields), is accepted (200), and the function decides exactly as it does for the sample itself.

A repeated signature or timestamp header is ambiguous and refused (401), even when both copies agree. A
"replay" is an old genuine notification (its signature over a stale timestamp), or a genuine signature
sent with another body, another timestamp, or the same JSON re-serialised with other spacing.

Properties 1 and 2 draw the function with the input and are run once per kind of attack, so every kind meets
every function and adapter within the fixed budget; 3 and 4 run per function. Plain tests complement them:
each sample through each entry point, each field of each sample with each wrong JSON type (an exhaustive
sweep), a lone surrogate in each string field, a wrong signature on each sample.

Every run sets the signing secret and every required setting of the function, with DRY_RUN=1. For 1 and 2
every outbound endpoint points at a closed local port *and* ``socket.connect``/``getaddrinfo`` (and
psycopg2's connect, whose socket is libpq's) are guarded: any attempt is recorded, refused and fails the test.
For 3 and 4 (the signature is valid, so reading is allowed) the endpoints point at a local stand-in that
answers reads plausibly and records writes: it must see none, and nothing may connect anywhere else.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import io
import json
import os
import re
import socket
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from types import ModuleType
from typing import Any
from urllib.parse import unquote

import pytest
from hypothesis import assume, given, note
from hypothesis import strategies as st

from tests.fakes.cdn import LOOPBACK_VARIABLE, FakeCDN
from tests.helpers import API_KEY, CLOUD_NAME, ROOT, SECRET
from tests.robustness.conftest import COUNTS, PROFILE

pytestmark = pytest.mark.slow  # the robustness suites: `make test` runs them, `make test-fast` does not

NOW = 1_700_000_000  # the functions' clock is frozen here, so every example is reproducible
MAX_AGE = 2 * 60 * 60
MAX_FUTURE = 5 * 60
MAX_BODY = 1024 * 1024
HOST = "hooks.example.com"
UNCAUGHT = 599  # stands for "an exception escaped the entry point": the platform would answer 502/500
SIGNATURE_NAME = "X-Cld-Signature"
TIMESTAMP_NAME = "X-Cld-Timestamp"
ADAPTERS = ("lambda_v1", "lambda_v2", "function_url", "netlify", "wsgi")
REFUSALS = {400, 401, 405, 413, 415}

# Values for required settings. Anything unknown gets a neutral word; a function that needs a particular
# shape shows up as a 500 (not configured), and belongs in this table.
KNOWN_SETTINGS = {
    "SENDGRID_API_KEY": "SG.robustness-key",
    "FROM_VERIFIED_SENDER": "webhooks@example.com",
    "TO_RECIPIENTS": "editor@example.com producer@example.com",
    "REKOGNITION_COLLECTION_ID": "robustness-faces",
    # chat_alerts needs any one of its (optional) webhook URLs; each must be on its service's own host.
    "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0000/B0000/robustness",
    "TEAMS_WEBHOOK_URL": "https://robustness.webhook.office.com/webhookb2/robustness",
    "DISCORD_WEBHOOK_URL": "https://discord.com/api/webhooks/1/robustness",
}
# Optional settings of which a function needs at least one: set like required ones when it declares them.
ANY_OF_SETTINGS = {"SLACK_WEBHOOK_URL", "TEAMS_WEBHOOK_URL", "DISCORD_WEBHOOK_URL"}

# Rekognition operations that only read; every other operation, and every non-GET elsewhere, is a write.
REKOGNITION_READS = {"DetectFaces": {"FaceDetails": []}, "SearchFacesByImage": {"FaceMatches": []},
                     "ListFaces": {"Faces": []}, "DescribeCollection": {"FaceCount": 0},
                     "ListCollections": {"CollectionIds": []}, "SearchFaces": {"FaceMatches": []}}


# --- the functions, found on disk -------------------------------------------------------------------

def discover() -> list[str]:
    """Every function folder with a handler.py, so a function added tomorrow is tested tomorrow."""
    return sorted(path.parent.name for path in (ROOT / "functions").glob("*/handler.py"))


FUNCTIONS = discover()


def samples_of(name: str) -> dict[str, bytes]:
    return {path.stem: path.read_bytes() for path in sorted((ROOT / "functions" / name / "samples").glob("*.json"))}


class Function:
    """A function under test: its handler module and its samples (raw bytes, by name)."""

    def __init__(self, name: str, module: ModuleType, samples: dict[str, bytes]) -> None:
        self.name, self.module, self.samples = name, module, samples

    def __repr__(self) -> str:  # hypothesis prints it with every failing case: the name says enough
        return f"Function({self.name!r})"

    @property
    def accepted_samples(self) -> list[bytes]:
        """Samples of a type the function acts on: if one were wrongly let in, it would try to act."""
        accepts = self.module.handle.accepts
        chosen = [raw for raw in self.samples.values() if json.loads(raw).get("notification_type") in accepts]
        return chosen or list(self.samples.values())


def load(name: str) -> Function:
    module = importlib.import_module(f"functions.{name}.handler")
    for entry in ("handle", "handler", "app"):
        assert hasattr(module, entry), f"functions/{name}/handler.py has no module-level {entry!r}"
    samples = samples_of(name)
    assert samples, f"functions/{name}/samples/ holds no *.json sample: the suites build their inputs from them"
    for sample_name, raw in samples.items():
        payload = json.loads(raw)
        assert isinstance(payload, dict) and isinstance(payload.get("notification_type"), str), \
            f"functions/{name}/samples/{sample_name}.json is not a notification"
    return Function(name, module, samples)


@pytest.fixture(params=FUNCTIONS)
def function(request, monkeypatch: pytest.MonkeyPatch) -> Function:
    loaded = load(request.param)
    monkeypatch.setattr(loaded.module.handle, "clock", lambda: float(NOW))
    return loaded


# --- the outbound guard -----------------------------------------------------------------------------

class Outbound:
    """Every outbound connection attempt of this process: recorded, and refused unless allowed."""

    def __init__(self) -> None:
        self.attempts: list[tuple[str, Any]] = []
        self.allowed: set[tuple[str, int]] = set()

    def unexpected(self) -> list[tuple[str, Any]]:
        return [attempt for attempt in self.attempts if attempt[1] not in self.allowed]

    def clear(self) -> None:
        self.attempts.clear()


_LOCAL_NAMES = {"127.0.0.1", "localhost", "::1"}


@pytest.fixture
def outbound(monkeypatch: pytest.MonkeyPatch) -> Outbound:
    guard = Outbound()
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def checked(sock: socket.socket, address: Any) -> None:
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return
        target = (str(address[0]), int(address[1]))
        guard.attempts.append(("connect", target))
        if target not in guard.allowed:
            raise ConnectionRefusedError(f"robustness guard: outbound connection to {target} refused")

    def connect(sock: socket.socket, address: Any) -> None:
        checked(sock, address)
        return real_connect(sock, address)

    def connect_ex(sock: socket.socket, address: Any) -> int:
        checked(sock, address)
        return real_connect_ex(sock, address)

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name not in _LOCAL_NAMES:  # a DNS query already leaves the machine
            guard.attempts.append(("resolve", (name, port)))
            raise socket.gaierror(socket.EAI_NONAME, f"robustness guard: no name resolution for {name!r}")
        return real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    import psycopg2

    # libpq opens its socket in C, out of socket.socket's reach: refuse at psycopg2's door instead (its
    # connect() is the one way in; shared.postgres looks it up at every call).
    def refuse_database(*args: Any, **kwargs: Any) -> Any:
        guard.attempts.append(("postgres", "database"))
        raise psycopg2.OperationalError("robustness guard: database connection refused")

    monkeypatch.setattr(psycopg2, "connect", refuse_database)
    return guard


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port bound but never listening: a connection to it is refused, and nobody can take it."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    try:
        yield holder.getsockname()[1]
    finally:
        holder.close()


def configure(monkeypatch: pytest.MonkeyPatch, function: Function, endpoint: str, database_port: int) -> None:
    """The signing secret, every required setting, DRY_RUN=1, and every outbound endpoint at ``endpoint``."""
    monkeypatch.setenv("CLOUDINARY_URL", f"cloudinary://{API_KEY}:{SECRET}@{CLOUD_NAME}?upload_prefix={endpoint}")
    monkeypatch.setenv("DRY_RUN", "1")
    monkeypatch.setenv("SENDGRID_API_HOST", endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL_REKOGNITION", endpoint)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "robustness-key-id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "robustness-secret-key")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # a retry would back off in real time
    monkeypatch.setenv("DATABASE_URL", f"postgresql://robust:robust@127.0.0.1:{database_port}/robust")
    monkeypatch.setenv("CLOUDINARY_TIMEOUT_SECONDS", "2")
    monkeypatch.setenv("SENDGRID_TIMEOUT_SECONDS", "2")
    webhook = function.module.handle
    for name in (*webhook.requires, *(name for name in webhook.optional if name in ANY_OF_SETTINGS)):
        if name not in ("CLOUDINARY_URL", "DATABASE_URL"):
            monkeypatch.setenv(name, KNOWN_SETTINGS.get(name, "robustness"))


@pytest.fixture
def sealed(function: Function, outbound: Outbound, closed_port: int, monkeypatch: pytest.MonkeyPatch) -> Outbound:
    """One function configured, every endpoint a closed port, every connection refused."""
    configure(monkeypatch, function, f"http://127.0.0.1:{closed_port}", closed_port)
    return outbound


@pytest.fixture
def fleet(outbound: Outbound, closed_port: int, monkeypatch: pytest.MonkeyPatch) -> list[Function]:
    """Properties 1 and 2: every function configured at once, every endpoint a closed port, every connection
    refused. Those properties draw the function with the input, so each kind of attack meets every function
    and every adapter within one fixed budget."""
    functions = [load(name) for name in FUNCTIONS]
    for loaded in functions:
        monkeypatch.setattr(loaded.module.handle, "clock", lambda: float(NOW))
        configure(monkeypatch, loaded, f"http://127.0.0.1:{closed_port}", closed_port)
    return functions


class World:
    """Properties 3 and 4: a local stand-in for Cloudinary's APIs, SendGrid and Rekognition (one
    pytest-httpserver) and for Cloudinary's CDN (``responses``): reads answered plausibly, writes recorded."""

    def __init__(self, server: Any, cdn: Any) -> None:
        self.server = server
        self.cdn = cdn
        self.writes: list[str] = []
        self.reads: Counter[str] = Counter()  # by service: cloudinary (Admin API GETs), rekognition
        server.expect_request(re.compile(".*")).respond_with_handler(self.answer)

    def answer(self, request: Any) -> Any:
        from werkzeug import Response

        target = request.headers.get("X-Amz-Target", "").rpartition(".")[2]
        parts = request.path.split("/")
        if target:
            if target in REKOGNITION_READS:
                self.reads["rekognition"] += 1
                return Response(json.dumps(REKOGNITION_READS[target]), content_type="application/x-amz-json-1.1")
            self.writes.append(f"Rekognition {target}")
            return Response("{}", content_type="application/x-amz-json-1.1")
        if request.method != "GET":
            self.writes.append(f"{request.method} {request.path}")
            return Response(json.dumps({"error": {"message": "the robustness stand-in refuses writes"}}),
                            status=400, content_type="application/json")
        self.reads["cloudinary"] += 1
        if len(parts) > 6 and parts[1] == "v1_1" and parts[3] == "resources" and parts[4] in ("image", "video", "raw"):
            # Admin API resource details: a plain asset, never moderated or tagged.
            body: dict[str, Any] = {
                "public_id": unquote("/".join(parts[6:])), "resource_type": parts[4], "type": parts[5],
                "asset_id": "0123456789abcdef0123456789abcdef", "format": "jpg", "version": 1700000000,
                "bytes": 1000, "width": 100, "height": 100, "tags": [], "moderation": [], "access_control": [],
                "created_at": "2023-11-14T22:13:20Z",
            }
        else:  # listings and everything else that reads
            body = {"resources": [], "total_count": 0}
        return Response(json.dumps(body), content_type="application/json")


@contextmanager
def delivery_cdn(monkeypatch: pytest.MonkeyPatch, outbound: Outbound) -> Iterator[FakeCDN]:
    """Cloudinary's CDN on loopback, serving a small JPEG for every delivery URL: the SDK's delivery URLs reach
    it through its ``secure_distribution`` setting (face_tagging fetches the image with urllib3)."""
    cdn = FakeCDN()
    host = cdn.start()
    try:
        cdn.serve(_tiny_jpeg())
        monkeypatch.setenv("CLOUDINARY_URL", f"{os.environ['CLOUDINARY_URL']}&secure_distribution={host}")
        monkeypatch.setenv(LOOPBACK_VARIABLE, "1")
        outbound.allowed.add(("127.0.0.1", int(host.rsplit(":", 1)[1])))
        yield cdn
    finally:
        cdn.stop()


@pytest.fixture
def world(function: Function, outbound: Outbound, closed_port: int, httpserver: Any,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    import responses

    endpoint = httpserver.url_for("").rstrip("/")
    configure(monkeypatch, function, endpoint, closed_port)
    outbound.allowed.add(("127.0.0.1", httpserver.port))
    with delivery_cdn(monkeypatch, outbound), responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_passthru(endpoint)
        yield World(httpserver, mock)


def _tiny_jpeg() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (64, 48), (128, 128, 128)).save(out, format="JPEG")
    return out.getvalue()


# --- a request on the wire, and the shapes each platform gives it -------------------------------------

@dataclass(frozen=True)
class Wire:
    """What a client sent. ``event_body``/``base64_flag`` override the Lambda body (to lie about base64);
    ``content_length`` overrides the WSGI CONTENT_LENGTH ("" = absent); ``adapter`` picks the entry."""

    method: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    adapter: str
    base64: bool = False
    event_body: Any = None
    base64_flag: Any = None
    content_length: str | None = None


def sign(body: bytes, timestamp: str, secret: str = SECRET, algorithm: str = "sha1") -> str:
    """Cloudinary's formula, computed here independently of shared.verify (and for any timestamp text)."""
    digest = hashlib.sha1 if algorithm == "sha1" else hashlib.sha256
    return digest(body + timestamp.encode("utf-8") + secret.encode("utf-8")).hexdigest()


def signed_headers(body: bytes, timestamp: str = str(NOW), **sign_args: Any) -> tuple[tuple[str, str], ...]:
    return (("Content-Type", "application/json"), (TIMESTAMP_NAME, timestamp),
            (SIGNATURE_NAME, sign(body, timestamp, **sign_args)))


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _joined(headers: tuple[tuple[str, str], ...], separator: str, lower: bool) -> dict[str, str]:
    joined: dict[str, str] = {}
    for name, value in headers:
        key = name.lower() if lower else name
        joined[key] = f"{joined[key]}{separator}{value}" if key in joined else value
    return joined


def to_event(wire: Wire, path: str) -> dict[str, Any]:
    if wire.event_body is not None:
        body, flag = wire.event_body, wire.base64_flag
    elif wire.base64:
        body, flag = base64.b64encode(wire.body).decode("ascii"), True
    elif _is_utf8(wire.body):
        body, flag = wire.body.decode("utf-8"), False
    else:  # a binary body always reaches Lambda base64-encoded
        body, flag = base64.b64encode(wire.body).decode("ascii"), True
    headers = (*wire.headers, ("Host", HOST))
    if wire.adapter in ("lambda_v2", "function_url"):
        # HTTP APIs and Function URLs lower-case header names and join repeated ones with commas.
        domain = "abc123.lambda-url.us-east-1.on.aws" if wire.adapter == "function_url" else HOST
        return {
            "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
            "headers": _joined(headers, ",", lower=True),
            "requestContext": {"domainName": domain, "http": {"method": wire.method, "path": path,
                                                               "protocol": "HTTP/1.1", "sourceIp": "54.242.9.131"}},
            "body": body, "isBase64Encoded": flag,
        }
    multi: dict[str, list[str]] = {}
    lower = wire.adapter == "netlify"
    for name, value in headers:
        multi.setdefault(name.lower() if lower else name, []).append(value)
    if wire.adapter == "netlify":
        return {"path": path, "httpMethod": wire.method, "headers": _joined(headers, ", ", lower=True),
                "multiValueHeaders": multi, "queryStringParameters": {}, "multiValueQueryStringParameters": {},
                "rawUrl": f"https://{HOST}{path}", "rawQuery": "", "body": body, "isBase64Encoded": flag}
    # API Gateway REST (v1): ``headers`` keeps the last value of a repeated header, ``multiValueHeaders`` all.
    return {"resource": path, "path": path, "httpMethod": wire.method,
            "headers": {name: values[-1] for name, values in multi.items()}, "multiValueHeaders": multi,
            "queryStringParameters": None, "requestContext": {"domainName": HOST, "httpMethod": wire.method,
                                                              "path": f"/prod{path}", "stage": "prod"},
            "body": body, "isBase64Encoded": flag}


def to_environ(wire: Wire, path: str) -> dict[str, Any]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": wire.method, "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": HOST,
        "SERVER_PORT": "443", "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "https",
        "wsgi.input": io.BytesIO(wire.body), "wsgi.errors": io.StringIO(), "wsgi.version": (1, 0),
        "wsgi.multithread": False, "wsgi.multiprocess": False, "wsgi.run_once": False, "HTTP_HOST": HOST,
    }
    length = str(len(wire.body)) if wire.content_length is None else wire.content_length
    if length:
        environ["CONTENT_LENGTH"] = length
    for name, value in wire.headers:  # servers join a repeated header with commas, whatever its case
        key = name.upper().replace("-", "_")
        key = key if key == "CONTENT_TYPE" else f"HTTP_{key}"
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ


def send(function: Function, wire: Wire) -> tuple[int, dict[str, Any]]:
    """(status, JSON body) through the wire's entry point; an exception out of it is UNCAUGHT."""
    path = f"/api/{function.name}"
    COUNTS["bad input: requests sent (all properties)"] += 1
    COUNTS[f"bad input: requests sent via {wire.adapter}"] += 1
    try:
        if wire.adapter == "wsgi":
            started: list[str] = []
            chunks = function.module.app(to_environ(wire, path), lambda status, headers: started.append(status))
            status, raw = int(started[0].split()[0]), b"".join(chunks)
        else:
            result = function.module.handler(to_event(wire, path), None)
            status, raw = result["statusCode"], result["body"].encode("utf-8")
        return status, json.loads(raw)
    except Exception as error:  # what the platform would answer: Lambda 502, a WSGI server 500
        return UNCAUGHT, {"uncaught": f"{type(error).__name__}: {error}"[:300]}


def send_event(function: Function, event: Any) -> tuple[int, dict[str, Any]]:
    COUNTS["bad input: requests sent (all properties)"] += 1
    COUNTS["bad input: requests sent via lambda (non-HTTP events)"] += 1
    try:
        result = function.module.handler(event, None)
        return result["statusCode"], json.loads(result["body"])
    except Exception as error:
        return UNCAUGHT, {"uncaught": f"{type(error).__name__}: {error}"[:300]}


def assert_well_formed(status: int, body: dict[str, Any], what: str) -> None:
    assert status < 500, f"{what}: answered {status} {body} (never a 5xx for bad input)"
    if status != 200:
        assert set(body) == {"error", "message"}, f"{what}: error body {body} is not {{error, message}}"


# --- strategies: values -----------------------------------------------------------------------------

json_scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=24))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=10)
# Stand-ins replaced in the JSON text by what json.dumps cannot write but json.loads reads.
ODD_LITERALS = {
    "@@lone-surrogate@@": '"\\ud800 half a character"',
    "@@low-surrogate@@": '"\\udfff"',
    "@@nan@@": "NaN",
    "@@infinity@@": "-Infinity",
    "@@overflow@@": "1e999",
    "@@huge-int@@": "9" * 5000,  # beyond Python's 4300-digit limit for int()
    "@@long-int@@": "9" * 4000,
}
odd_values = json_values | st.sampled_from(sorted(ODD_LITERALS))


def odd_json(payload: Any, **dumps: Any) -> bytes:
    text = json.dumps(payload, **dumps)
    for marker, literal in ODD_LITERALS.items():
        text = text.replace(json.dumps(marker), literal)
    return text.encode("utf-8")


def header_case(name: str) -> st.SearchStrategy[str]:
    """The header name in any case: every character independently upper or lower."""
    return st.lists(st.booleans(), min_size=len(name), max_size=len(name)).map(
        lambda flags: "".join(c.upper() if up else c.lower() for c, up in zip(name, flags, strict=True)))


def non_decimal(text: str) -> bool:
    return not (text.isascii() and text.isdigit())


# --- strategies: property 1, unauthenticated requests -----------------------------------------------

@st.composite
def bad_signature(draw: st.DrawFn, body: bytes, timestamp: str) -> str:
    good = {sign(body, timestamp, algorithm=algorithm) for algorithm in ("sha1", "sha256")}
    sha1, sha256 = sign(body, timestamp), sign(body, timestamp, algorithm="sha256")
    kind = draw(st.sampled_from(["hex_wrong_length", "wrong_alphabet", "other_secret", "flipped", "cut",
                                 "padded", "prefixed", "other_timestamp", "other_body", "text", "empty"]))
    if kind == "hex_wrong_length":
        signature = draw(st.text("0123456789abcdefABCDEF", max_size=130).filter(lambda s: len(s) not in (40, 64)))
    elif kind == "wrong_alphabet":
        length = draw(st.sampled_from([40, 64]))
        signature = draw(st.text(min_size=length, max_size=length).filter(
            lambda s: any(c not in "0123456789abcdefABCDEF" for c in s)))
    elif kind == "other_secret":
        secret = draw(st.text(min_size=1, max_size=40).filter(lambda s: s != SECRET))
        signature = sign(body, timestamp, secret, draw(st.sampled_from(["sha1", "sha256"])))
    elif kind == "flipped":
        original = draw(st.sampled_from([sha1, sha256]))
        index = draw(st.integers(0, len(original) - 1))
        digit = draw(st.sampled_from("0123456789abcdef").filter(lambda d: d != original[index]))
        signature = original[:index] + digit + original[index + 1:]
    elif kind == "cut":
        signature = draw(st.sampled_from([sha256[:40], sha1[:39], sha1 + "0", sha256[:63], sha1 + sha1[:24]]))
    elif kind == "padded":
        signature = draw(st.sampled_from([f" {sha1}", f"{sha1} ", f"{sha1}\t", f"\n{sha256}", f"{sha1}\x00"]))
    elif kind == "prefixed":
        signature = draw(st.sampled_from([f"sha1={sha1}", f"v1,{sha1}", f"sha256={sha256}", f"0x{sha1}"]))
    elif kind == "other_timestamp":
        other = draw(st.integers(NOW - MAX_AGE, NOW + MAX_FUTURE).filter(lambda t: str(t) != timestamp))
        signature = sign(body, str(other))
    elif kind == "other_body":
        signature = sign(draw(st.binary(max_size=64).filter(lambda b: b != body)), timestamp)
    elif kind == "text":
        signature = draw(st.text(max_size=80))
    else:
        signature = ""
    assume(signature.lower() not in good)
    note(f"signature attack: {kind}")
    return signature


@st.composite
def bad_timestamp(draw: st.DrawFn) -> tuple[str, str]:
    """(kind, timestamp text) that must be refused even though the signature is computed over it."""
    kind = draw(st.sampled_from(["not_integer", "far_past", "far_future", "too_many_digits"]))
    if kind == "not_integer":
        fullwidth = "".join(chr(0xFF10 + int(d)) for d in str(NOW))
        arabic = "".join(chr(0x0660 + int(d)) for d in str(NOW))
        value = draw(st.sampled_from([
            "", " ", f"{NOW}.0", f"{NOW}.5", "1.7e9", f"-{NOW}", f"+{NOW}", f" {NOW}", f"{NOW} ", f"{NOW:_}",
            hex(NOW), "NaN", "inf", "null", fullwidth, arabic, f"{NOW},{NOW}", f"{NOW}\n",
        ]) | st.text(max_size=20).filter(non_decimal))
    elif kind == "far_past":
        value = str(draw(st.integers(0, NOW - MAX_AGE - 1)))
    elif kind == "far_future":
        value = str(draw(st.integers(NOW + MAX_FUTURE + 1, 10**12 - 1)))
    else:
        value = str(draw(st.integers(10**12, 10**40)))
    return kind, value


@st.composite
def other_body(draw: st.DrawFn, original: bytes, others: list[bytes]) -> tuple[str, bytes]:
    """A body that differs from the signed one: re-serialised, re-spaced, edited, truncated, another one."""
    payload = json.loads(original)
    kind = draw(st.sampled_from(["reserialised", "whitespace", "edited", "truncated", "appended", "another"]))
    if kind == "reserialised":
        body = json.dumps(payload, separators=draw(st.sampled_from([(",", ":"), (", ", ": "), (",", ": ")])),
                          indent=draw(st.sampled_from([None, 0, 1, 4, "\t"])), sort_keys=draw(st.booleans()),
                          ensure_ascii=draw(st.booleans())).encode("utf-8")
    elif kind == "whitespace":
        body = draw(st.sampled_from([original + b"\n", b" " + original, original.rstrip(),
                                     original.replace(b"\n", b"\r\n"), original + b"\x00"]))
    elif kind == "edited":
        key = draw(st.sampled_from(sorted(payload)))
        payload[key] = draw(json_values.filter(lambda value: value != payload[key]))
        body = json.dumps(payload, indent=2).encode("utf-8")
    elif kind == "truncated":
        body = original[:draw(st.integers(0, len(original) - 1))]
    elif kind == "appended":
        body = original + draw(st.binary(min_size=1, max_size=32))
    else:
        body = draw(st.sampled_from(others))
    assume(body != original)
    return kind, body


@st.composite
def unauthenticated(draw: st.DrawFn, function: Function, attack: str) -> tuple[str, Wire, set[int]]:
    """(what, wire, the statuses it may get): each is refused, by construction."""
    adapter = draw(st.sampled_from(ADAPTERS))
    original = draw(st.sampled_from(function.accepted_samples))
    timestamp = str(NOW)
    good = signed_headers(original, timestamp)
    expected = {401}
    base64_body = adapter != "wsgi" and draw(st.booleans())

    def wire(headers: tuple[tuple[str, str], ...], body: bytes = original, **changes: Any) -> Wire:
        return Wire("POST", headers, body, adapter, base64=base64_body, **changes)

    if attack == "signature":
        signature = draw(bad_signature(original, timestamp))
        built = wire((good[0], good[1], (draw(header_case(SIGNATURE_NAME)), signature)))
        what = f"signature {signature!r}"
    elif attack == "timestamp":
        kind, bad = draw(bad_timestamp())
        built = wire((good[0], (draw(header_case(TIMESTAMP_NAME)), bad), (SIGNATURE_NAME, sign(original, bad))))
        what = f"timestamp {kind} {bad!r}, signed over it"
    elif attack == "replay":
        others = [raw for raw in function.samples.values() if raw != original] or [b"{}"]
        kind, body = draw(other_body(original, others))
        if draw(st.booleans()):  # the same body, signed at another time, sent with a fresh timestamp
            old = str(draw(st.integers(NOW - MAX_AGE, NOW - 1)))
            body, kind = original, f"old signature (t={old}) with a fresh timestamp"
            good = (good[0], good[1], (SIGNATURE_NAME, sign(original, old)))
        built = wire(good, body)
        what = f"body swapped ({kind}) under a signature for the original"
    elif attack == "headers":
        kind = draw(st.sampled_from(["missing_signature", "missing_timestamp", "missing_both", "renamed",
                                     "duplicate_signature", "duplicate_timestamp"]))
        if kind.startswith("missing"):
            kept = {"missing_signature": (good[0], good[1]), "missing_timestamp": (good[0], good[2]),
                    "missing_both": (good[0],)}[kind]
            built = wire(kept)
        elif kind == "renamed":
            name = draw(st.sampled_from(["X-Cld-Signature-256", "X-Cloudinary-Signature", "X-Cld-Sig",
                                         "Cld-Signature", "X-Cld-Signatures"]))
            built = wire((good[0], good[1], (name, good[2][1])))
        else:
            name, value = (SIGNATURE_NAME, good[2][1]) if kind == "duplicate_signature" else (TIMESTAMP_NAME, str(NOW))
            second = draw(st.sampled_from([value, value.upper(), "0" * len(value), "bogus"]))
            pair = [(draw(header_case(name)), value), (draw(header_case(name)), second)]
            if draw(st.booleans()):
                pair.reverse()
            rest = [header for header in good if header[0] != name]
            built = wire((*rest, *pair))
        what = f"headers {kind}"
    elif attack == "base64":
        adapter = draw(st.sampled_from(ADAPTERS[:-1]))  # a flag only Lambda-shaped events carry
        encoded = base64.b64encode(original).decode("ascii")
        kind = draw(st.sampled_from(["flag_true_plain_body", "flag_false_base64_body", "double_encoded",
                                     "unpadded", "urlsafe", "wrapped", "flag_true_not_text"]))
        event_body, flag, expected = {
            "flag_true_plain_body": (original.decode("utf-8"), True, {400, 401}),
            "flag_false_base64_body": (encoded, False, {401}),
            "double_encoded": (base64.b64encode(encoded.encode()).decode(), True, {401}),
            "unpadded": (encoded.rstrip("="), True, {400}),
            "urlsafe": (base64.urlsafe_b64encode(original).decode(), True, {400}),
            "wrapped": ("\n".join(encoded[i:i + 76] for i in range(0, len(encoded), 76)), True, {400}),
            "flag_true_not_text": (list(original[:8]), True, {400}),
        }[kind]
        assume(event_body != encoded or not flag)
        built = wire(good, event_body=event_body, base64_flag=flag)
        what = f"base64 flag lies: {kind}"
    elif attack == "length":
        adapter = "wsgi"  # a length only WSGI reads from the request
        kind = draw(st.sampled_from(["shorter", "not_a_number", "absent", "too_big"]))
        if kind == "shorter":
            length, expected = str(draw(st.integers(0, len(original) - 1))), {401}
        elif kind == "not_a_number":
            length = draw(st.sampled_from(["abc", "-1", "1e3", "\uff10\uff11\uff12", "١٢", "12.0", "0x10", "1_000"])
                          | st.text(min_size=1, max_size=8).filter(lambda s: non_decimal(s.strip()) and s.strip()))
            expected = {400}
        elif kind == "absent":
            length, expected = "", {401}  # no length and no wsgi.input_terminated: no body is read
        else:
            length, expected = str(draw(st.integers(MAX_BODY + 1, 10**15))), {413}
        built = wire(good, content_length=length)
        what = f"Content-Length lies: {kind} {length!r}"
    elif attack == "method":
        method = draw(st.sampled_from(["GET", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "CONNECT",
                                       "PROPFIND", "P0ST", "POST "]) | st.text(min_size=1, max_size=10).filter(
            lambda m: m.strip().upper() != "POST" and m.strip()))
        assume(method.upper() != "POST")
        built = replace(wire(good), method=method)
        expected = {405, 400}
        what = f"method {method!r}"
    elif attack == "content_type":
        kind = draw(st.sampled_from(["text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                                     "application/jsonp", "json", "application/json, text/plain",
                                     "text/json", "application/xml", "", None]))
        headers = good[1:] if kind is None else ((draw(header_case("Content-Type")), kind), *good[1:])
        built = wire(headers)
        expected = {415}
        what = f"content type {kind!r}"
    elif attack == "huge":
        size = draw(st.integers(MAX_BODY + 1, MAX_BODY + 4096))
        body = original[:-1] + b" " * (size - len(original)) + b"}"
        signed = draw(st.booleans())  # a valid signature must not make a huge body acceptable either
        headers = signed_headers(body) if signed else good
        built = wire(headers, body)
        expected = {413}
        what = f"{size}-byte body, {'correctly' if signed else 'not'} signed"
    else:
        body = draw(st.binary(max_size=512) | st.binary(max_size=64).map(lambda b: b"\xff\xfe\xc3\x28" + b))
        signature = draw(bad_signature(body, timestamp))
        built = wire((good[0], good[1], (SIGNATURE_NAME, signature)), body)
        what = f"random bytes with signature {signature!r}"
    return what, built, expected


not_http_events = st.one_of(
    st.none(), st.integers(), st.text(max_size=20), st.lists(json_scalars, max_size=3), json_values,
    st.dictionaries(st.sampled_from(["httpMethod", "headers", "multiValueHeaders", "body", "isBase64Encoded",
                                     "requestContext", "rawPath", "path", "version", "queryStringParameters"]),
                    json_values, max_size=6),
    st.fixed_dictionaries({"httpMethod": st.just("POST"), "body": json_values.filter(lambda v: not isinstance(v, str)),
                           "headers": json_values}),
    st.fixed_dictionaries({"version": st.just("2.0"),
                           "requestContext": st.fixed_dictionaries({"http": json_values}),
                           "headers": st.dictionaries(st.text(max_size=20), json_scalars, max_size=4),
                           "body": json_values}),
)


# --- strategies: properties 2, 3 and 4, correctly signed --------------------------------------------

@st.composite
def signed_malformed_body(draw: st.DrawFn, function: Function, kind: str) -> tuple[str, bytes]:
    accepted = sorted(function.module.handle.accepts)
    if kind == "invalid_utf8":
        body = draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80"]))
        body = b'{"notification_type": "' + body + b'"}'
    elif kind == "not_json":
        body = draw(st.text(max_size=200).map(str.encode).filter(lambda b: not _parses(b)))
    elif kind == "not_an_object":
        body = json.dumps(draw(json_values.filter(lambda v: not isinstance(v, dict)))).encode()
    elif kind == "no_type":
        payload = draw(st.dictionaries(st.text(max_size=12).filter(lambda k: k != "notification_type"),
                                       json_values, max_size=5))
        body = json.dumps(payload).encode()
    elif kind == "type_not_text":
        value = draw(json_values.filter(lambda v: not isinstance(v, str) or v == "") | st.sampled_from(
            [[name] for name in accepted] + [{"name": name} for name in accepted]))
        body = json.dumps({"notification_type": value, "public_id": "sample"}).encode()
    elif kind == "deep":
        depth = draw(st.integers(2_000, 100_000))
        opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}")]))
        body = b'{"notification_type":"%s","x":' % accepted[0].encode() + opener * depth + b"1" + closer * depth + b"}"
        assume(len(body) <= MAX_BODY)
    elif kind == "huge_number":
        body = b'{"notification_type":"%s","public_id":"x","version":%s}' % (accepted[0].encode(), b"7" * 5000)
    else:
        body = "\ufeff".encode() + json.dumps({"notification_type": accepted[0]}).encode()
    return kind, body


def _parses(body: bytes) -> bool:
    try:
        return isinstance(json.loads(body), dict)
    except ValueError:
        return False


def json_paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside a notification (keys and list indexes), the root excluded."""
    found: list[tuple[Any, ...]] = []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else []
    for key, child in items:
        found.append((*prefix, key))
        found.extend(json_paths(child, (*prefix, key)))
    return found


def set_path(payload: Any, path: tuple[Any, ...], value: Any) -> None:
    for key in path[:-1]:
        payload = payload[key]
    payload[path[-1]] = value


@st.composite
def odd_notification(draw: st.DrawFn, function: Function) -> tuple[str, bytes]:
    """A sample with one to three values anywhere replaced by odd ones; its notification_type kept."""
    name = draw(st.sampled_from(sorted(function.samples)))
    payload = json.loads(function.samples[name])
    paths = [path for path in json_paths(payload) if path != ("notification_type",)]
    changes = []
    for path in draw(st.lists(st.sampled_from(paths), min_size=1, max_size=3, unique=True)):
        value = draw(odd_values)
        try:
            set_path(payload, path, value)
        except (KeyError, IndexError, TypeError):  # an earlier change replaced a parent of this path
            continue
        changes.append(f"{'.'.join(map(str, path))} = {value!r}"[:200])
    body = odd_json(payload)
    if draw(st.booleans()):  # a repeated key: JSON parsers keep the last one
        key = draw(st.sampled_from(sorted(payload)))
        if key != "notification_type":
            body = body[:-1] + b", " + json.dumps(key).encode() + b": " + odd_json(draw(odd_values)) + b"}"
            changes.append(f"{key} repeated")
    return f"{name} with {'; '.join(changes)}", body


@st.composite
def extra_fields(draw: st.DrawFn, payload: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The payload with new fields at the top and inside nested objects (never changing existing ones)."""
    grown = json.loads(json.dumps(payload))
    added = []
    # Fields go into records, not into maps of records (``resources`` keyed by public ID in some types):
    # a new entry there would be another asset, not a field Cloudinary added.
    objects = [()] + [path for path in json_paths(grown) if isinstance(_at(grown, path), dict)
                      and not _is_map_of_records(_at(grown, path))]
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.sampled_from(objects))
        target = _at(grown, where)
        key = draw(st.text(min_size=1, max_size=16).filter(lambda k, target=target: k not in target))
        target[key] = draw(json_values)
        added.append(".".join(map(str, (*where, key))))
    return grown, added


def _is_map_of_records(value: dict[str, Any]) -> bool:
    return bool(value) and all(isinstance(child, dict) for child in value.values())


def _at(payload: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        payload = payload[key]
    return payload


@st.composite
def valid_wire(draw: st.DrawFn, body: bytes) -> Wire:
    """A correctly signed delivery of ``body``, in any of the forms every platform may give it."""
    adapter = draw(st.sampled_from(ADAPTERS))
    algorithm = draw(st.sampled_from(["sha1", "sha256"]))
    timestamp = str(draw(st.integers(NOW - MAX_AGE, NOW + MAX_FUTURE)))  # the whole window is fresh
    signature = sign(body, timestamp, algorithm=algorithm)
    if draw(st.booleans()):
        signature = signature.upper()  # hex is hex, in either case
    content_type = draw(st.sampled_from(["application/json", "application/json; charset=utf-8",
                                         "Application/JSON", "application/json;charset=UTF-8"]))
    headers = ((draw(header_case("Content-Type")), content_type), (draw(header_case(TIMESTAMP_NAME)), timestamp),
               (draw(header_case(SIGNATURE_NAME)), signature),
               (draw(header_case("User-Agent")), "Cloudinary"))
    return Wire("POST", headers, body, adapter, base64=adapter != "wsgi" and draw(st.booleans()))


def decision(body: dict[str, Any]) -> tuple[Any, ...]:
    """What a function decided: its status, reason, and the actions it took (by name)."""
    return body.get("status"), body.get("reason"), tuple(a.get("action") for a in body.get("actions", []))


# --- the properties ---------------------------------------------------------------------------------

ATTACKS = ("signature", "timestamp", "replay", "headers", "base64", "length", "method", "content_type", "huge",
           "garbage")
MALFORMED = ("invalid_utf8", "not_json", "not_an_object", "no_type", "type_not_text", "deep", "huge_number", "bom")


@pytest.mark.parametrize("attack", ATTACKS)
@PROFILE
@given(data=st.data())
def test_unauthenticated_requests_are_refused_with_no_outbound_connection(
        fleet: list[Function], outbound: Outbound, attack: str, data: st.DataObject) -> None:
    function = data.draw(st.sampled_from(fleet), label="function")
    what, wire, expected = data.draw(unauthenticated(function, attack))
    sealed = outbound
    sealed.clear()

    status, body = send(function, wire)

    COUNTS["bad input: unauthenticated requests refused"] += 1
    context = f"{function.name} via {wire.adapter}, {what}"
    assert_well_formed(status, body, context)
    assert status in expected, f"{context}: answered {status} {body}, expected one of {sorted(expected)}"
    assert sealed.attempts == [], f"{context}: tried to connect out: {sealed.attempts}"


@PROFILE
@given(data=st.data(), event=not_http_events)
def test_events_that_are_not_http_requests_are_refused(fleet: list[Function], outbound: Outbound,
                                                       data: st.DataObject, event: Any) -> None:
    function = data.draw(st.sampled_from(fleet), label="function")
    sealed = outbound
    sealed.clear()

    status, body = send_event(function, event)

    context = f"{function.name} via lambda, event {event!r}"[:400]
    assert_well_formed(status, body, context)
    assert status in REFUSALS, f"{context}: answered {status} {body}"
    assert sealed.attempts == [], f"{context}: tried to connect out: {sealed.attempts}"


@pytest.mark.parametrize("malformed", MALFORMED)
@PROFILE
@given(data=st.data())
def test_signed_bodies_that_are_not_notifications_are_400_with_no_outbound_connection(
        fleet: list[Function], outbound: Outbound, malformed: str, data: st.DataObject) -> None:
    function = data.draw(st.sampled_from(fleet), label="function")
    kind, body = data.draw(signed_malformed_body(function, malformed))
    wire = data.draw(valid_wire(body))
    sealed = outbound
    sealed.clear()

    status, answer = send(function, wire)

    COUNTS["bad input: signed malformed bodies refused"] += 1
    context = f"{function.name} via {wire.adapter}, correctly signed {kind} body ({len(body)} bytes)"
    assert_well_formed(status, answer, context)
    assert status == 400, f"{context}: answered {status} {answer}, expected 400"
    assert sealed.attempts == [], f"{context}: tried to connect out: {sealed.attempts}"


@PROFILE
@given(data=st.data())
def test_signed_notifications_with_odd_values_are_never_a_5xx(function: Function, world: World, outbound: Outbound,
                                                              data: st.DataObject) -> None:
    what, body = data.draw(odd_notification(function))
    wire = data.draw(valid_wire(body))
    outbound.clear()
    writes_before = len(world.writes)

    status, answer = send(function, wire)

    COUNTS["bad input: signed notifications with odd values"] += 1
    context = f"{function.name} via {wire.adapter}, signed {what}"
    assert status < 500, (f"{context}: answered {status} {answer}. A well-formed notification with an odd field "
                          f"must be a 400 (or 200 ignored), never a 5xx: treat payload fields defensively")
    assert status in (200, 400), f"{context}: answered {status} {answer}"
    if status == 200:
        assert answer.get("status") in ("dry_run", "ignored"), f"{context}: DRY_RUN=1 answered {answer}"
    assert world.writes[writes_before:] == [], f"{context}: DRY_RUN=1 wrote {world.writes[writes_before:]}"
    assert outbound.unexpected() == [], f"{context}: connected beyond the stand-ins: {outbound.unexpected()}"


@PROFILE
@given(data=st.data())
def test_valid_notifications_with_extra_fields_are_accepted_and_decided_alike(
        function: Function, world: World, outbound: Outbound, data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(function.samples)), label="sample")
    payload = json.loads(function.samples[name])
    grown, added = data.draw(extra_fields(payload), label="extra fields")
    body = json.dumps(grown, indent=data.draw(st.sampled_from([None, 2]))).encode("utf-8")
    wire = data.draw(valid_wire(body))
    plain = replace(wire, body=function.samples[name],
                    headers=signed_headers(function.samples[name], str(NOW)) + wire.headers[3:])
    outbound.clear()
    writes_before = len(world.writes)

    status, answer = send(function, wire)
    plain_status, plain_answer = send(function, plain)

    COUNTS["bad input: valid notifications with extra fields accepted"] += 1
    context = f"{function.name} via {wire.adapter}, sample {name} with extra fields {added}"
    assert plain_status == 200, f"{function.name}: its own sample {name} answered {plain_status} {plain_answer}"
    assert status == 200, f"{context}: answered {status} {answer}; Cloudinary adds fields, they must be accepted"
    assert answer.get("status") in ("dry_run", "ignored"), f"{context}: DRY_RUN=1 answered {answer}"
    assert decision(answer) == decision(plain_answer), \
        f"{context}: decided {decision(answer)}, but the sample alone {decision(plain_answer)}"
    assert world.writes[writes_before:] == [], f"{context}: DRY_RUN=1 wrote {world.writes[writes_before:]}"
    assert outbound.unexpected() == [], f"{context}: connected beyond the stand-ins: {outbound.unexpected()}"


# --- fixed cases: the inputs hypothesis found, kept as plain regression tests --------------------------

@pytest.mark.parametrize("adapter", ADAPTERS)
def test_every_sample_is_accepted_through_every_entry_point(function: Function, world: World, outbound: Outbound,
                                                            adapter: str) -> None:
    for name, raw in function.samples.items():
        reads_before = Counter(world.reads)
        status, answer = send(function, Wire("POST", signed_headers(raw), raw, adapter))
        assert status == 200, f"{function.name}: sample {name} via {adapter} answered {status} {answer}"
        assert answer["status"] in ("dry_run", "ignored"), f"{function.name}: {name} via {adapter}: {answer}"
        if adapter == "wsgi":  # reads are what a dry run costs against Cloudinary's (and AWS's) rate limits
            reads = world.reads - reads_before
            COUNTS[f"dry-run Admin API reads: {function.name}/{name}"] = reads["cloudinary"]
            if reads["rekognition"]:
                COUNTS[f"dry-run Rekognition reads: {function.name}/{name}"] = reads["rekognition"]
    assert world.writes == []
    assert outbound.unexpected() == []


WRONG_TYPES = (7, "text", {"k": ["v"]}, [], None)  # number, string, object, list, null: most are wrong


def test_every_field_of_every_sample_with_the_wrong_type_is_never_a_5xx(
        function: Function, world: World, outbound: Outbound) -> None:
    """The exhaustive sweep behind property 3: each value of each sample, at any depth, in turn replaced by each
    JSON type it does not have. A 5xx here is a function trusting a payload field's type, where DESIGN.md asks
    for a 400 (or 200 ignored); it is listed with the field so the fix is obvious."""
    failures = []
    for name, raw in function.samples.items():
        original = json.loads(raw)
        for path in json_paths(original):
            if path == ("notification_type",):
                continue
            for value in WRONG_TYPES:
                if type(value) is type(_at(original, path)):
                    continue
                payload = json.loads(raw)
                set_path(payload, path, value)
                body = json.dumps(payload).encode("utf-8")
                status, answer = send(function, Wire("POST", signed_headers(body), body, "lambda_v2"))
                COUNTS["bad input: wrong-type sweep requests"] += 1
                if status not in (200, 400):
                    failures.append(f"{name}: {'.'.join(map(str, path))} = {value!r} -> {status} {answer}")
    assert failures == [], (f"{function.name} answers 5xx for well-formed notifications with a field of the wrong "
                            f"type (treat payload fields defensively: 400 or 200 ignored):\n" + "\n".join(failures))
    assert world.writes == []
    assert outbound.unexpected() == []


def test_a_lone_surrogate_in_any_string_is_refused_not_a_crash(function: Function, world: World) -> None:
    """JSON can spell half a character ("\\ud800"); json.loads keeps it, and then nothing can encode it:
    not the response, the log line, or an SDK request. It must be a 400, never a 500 or an exception out of
    the entry point (which a platform answers 502)."""
    failures = []
    for name, raw in function.samples.items():
        payload = json.loads(raw)
        for key, value in payload.items():
            if not isinstance(value, str) or key == "notification_type":
                continue
            body = odd_json({**payload, key: "@@lone-surrogate@@"})
            for adapter in ("lambda_v2", "wsgi"):
                status, answer = send(function, Wire("POST", signed_headers(body), body, adapter))
                if status >= 500:
                    failures.append(f"{name}: {key} via {adapter} -> {status} {answer}")
    assert failures == [], (f"{function.name}: a signed notification with a lone surrogate in a string field "
                            f"crashes it (fix proposed for shared/webhook.py: refuse such bodies as invalid "
                            f"JSON, 400):\n" + "\n".join(failures[:10]))
    assert world.writes == []


def test_a_wrong_signature_on_every_sample_never_connects_out(function: Function, sealed: Outbound) -> None:
    """The unit-sized version of property 1: each sample, each entry point, signed with another secret."""
    for adapter in ADAPTERS:
        for name, raw in function.samples.items():
            status, answer = send(function, Wire("POST", signed_headers(raw, secret="another-secret"), raw, adapter))
            assert (status, answer["error"]) == (401, "signature_mismatch"), f"{name} via {adapter}: {answer}"
    assert sealed.attempts == []


def test_the_guard_itself_catches_a_connection(outbound: Outbound, closed_port: int) -> None:
    """The guard is what makes 'no outbound connection' mean something: prove it sees and refuses one."""
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", closed_port), timeout=1):
        pass
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo("api.cloudinary.com", 443)
    from shared import postgres

    with pytest.raises(postgres.driver().OperationalError):
        postgres.connect(f"postgresql://robust:robust@127.0.0.1:{closed_port}/robust", timeout=1,
                         application_name="robustness")
    assert outbound.attempts == [("connect", ("127.0.0.1", closed_port)), ("resolve", ("api.cloudinary.com", 443)),
                                 ("postgres", "database")]


# --- hostile asset fields: what ends up in API paths and URLs is one of Cloudinary's values (issue 12) ---

HOSTILE_FIELDS = [
    ("resource_type", "image/../../other/image"), ("resource_type", "image/destroy?x="), ("resource_type", ["image"]),
    ("resource_type", "IMAGE"), ("resource_type", "image\n"), ("resource_type", "auto"),
    ("type", "upload/../../x"), ("type", "upload?x="), ("type", "../upload"), ("type", 7), ("type", "Upload"),
    ("public_id", "http://127.0.0.1:18900/probe"), ("public_id", "https://evil.example/x.jpg"),
    ("public_id", "//evil.example/x"), ("public_id", "a\r\nSubject: forged"), ("public_id", "a\x00b"),
    ("public_id", "x" * 5000),
]
# asset_sync makes no Cloudinary call: it records what it is told (its own suite covers how it stores it).
ACTING_FUNCTIONS = [name for name in FUNCTIONS if name != "asset_sync"]


@pytest.mark.parametrize("name", ACTING_FUNCTIONS)
def test_hostile_asset_fields_are_400_and_reach_no_api_path(name: str, outbound: Outbound, closed_port: int,
                                                          httpserver: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import responses

    function = load(name)
    monkeypatch.setattr(function.module.handle, "clock", lambda: float(NOW))
    endpoint = httpserver.url_for("").rstrip("/")
    configure(monkeypatch, function, endpoint, closed_port)
    outbound.allowed.add(("127.0.0.1", httpserver.port))
    tried = 0
    with delivery_cdn(monkeypatch, outbound) as delivery, \
            responses.RequestsMock(assert_all_requests_are_fired=False) as cdn:
        cdn.add_passthru(endpoint)
        world = World(httpserver, cdn)
        for sample_name, raw in function.samples.items():
            payload = json.loads(raw)
            if payload.get("notification_type") not in function.module.handle.accepts or "public_id" not in payload:
                continue
            reads_before = sum(world.reads.values())
            _, baseline = send(function, Wire("POST", signed_headers(raw), raw, "wsgi"))
            if baseline.get("status") == "ignored" and sum(world.reads.values()) == reads_before:
                continue  # the function never gets to the asset on this sample: nothing would reach a path
            for key, value in HOSTILE_FIELDS:
                body = json.dumps({**payload, key: value}).encode()
                reads_before = sum(world.reads.values())
                status, answer = send(function, Wire("POST", signed_headers(body), body, "wsgi"))
                what = f"{name}/{sample_name} with {key}={value!r:.60}"
                assert status == 400 and answer["error"] in ("bad_field", "missing_field"), (what, status, answer)
                assert sum(world.reads.values()) == reads_before, f"{what}: Cloudinary was called"
                assert not any("evil" in str(call.request.url) or "18900" in str(call.request.url)
                               for call in cdn.calls), what
                assert not any("evil" in request.path or "18900" in request.path
                               for request in delivery.requests), what
                tried += 1
                COUNTS["hostile asset fields: requests refused with 400"] += 1
    assert world.writes == [] and outbound.unexpected() == []
    assert tried >= len(HOSTILE_FIELDS), f"{name}: no sample it acts on carries a public_id"
