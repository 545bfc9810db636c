"""Environment variables, read at request time with clear messages (DESIGN.md §4 "Environment").

Nothing is read at import: a warm serverless container sees configuration changes on the next request,
and tests can set variables per test.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping

from shared.errors import ConfigError

TYPE_CHECKING = False  # cold start: see docs/DESIGN.md §8
if TYPE_CHECKING:
    from typing import TypeVar

    T = TypeVar("T")

DEMO_MODE_VAR = "CLOUDINARY_WEBHOOKS_DEMO"  # set by `python -m shared serve` when nothing is configured
_TRUE_WORDS = {"1", "true", "yes", "on"}
_FALSE_WORDS = {"", "0", "false", "no", "off"}


# --- settings read per request, parsed once per value -------------------------------------------------
# Every request needs the signing secrets and the limits. Reading os.environ costs about a microsecond a
# variable (it encodes the key and decodes the value), and parsing CLOUDINARY_URL more: together five times
# the hash the signature check cannot avoid. So the raw values are read from os.environ's own dict of
# encoded keys (POSIX; a plain os.environ.get elsewhere) and each parsed result is kept until its raw values
# change: a test's monkeypatch.setenv, or a configuration change in a warm container, is seen on the next
# request, and an unchanged environment is parsed once per process.
_ENVIRON_DATA = os.environ._data if os.name == "posix" and isinstance(getattr(os.environ, "_data", None), dict) \
    else None  # type: ignore[attr-defined]
_ENCODED_NAMES: dict[str, bytes] = {}
_parsed: dict[str, tuple[tuple[object, ...], object]] = {}


def _raw(name: str) -> object:
    if _ENVIRON_DATA is None:
        return os.environ.get(name)
    encoded = _ENCODED_NAMES.get(name)
    if encoded is None:
        encoded = _ENCODED_NAMES[name] = os.fsencode(name)
    return _ENVIRON_DATA.get(encoded)


_encoded_keys: dict[str, tuple[bytes, ...]] = {}


def parsed_once(key: str, names: tuple[str, ...], parse: Callable[[], T]) -> T:
    """``parse()`` (which reads ``names`` from os.environ), kept until one of their raw values changes.
    A parse that raises (a ConfigError) is not kept: it raises again on the next request."""
    if _ENVIRON_DATA is not None:
        encoded = _encoded_keys.get(key)
        if encoded is None:
            encoded = _encoded_keys[key] = tuple(os.fsencode(name) for name in names)
        raw: tuple[object, ...] = tuple(map(_ENVIRON_DATA.get, encoded))
    else:
        raw = tuple(os.environ.get(name) for name in names)
    kept = _parsed.get(key)
    if kept is not None and kept[0] == raw:
        return kept[1]  # type: ignore[return-value]
    value = parse()
    _parsed[key] = (raw, value)
    return value


def flag(name: str, default: bool = False, environ: Mapping[str, str] | None = None) -> bool:
    """A yes/no variable. Anything that is not clearly yes or no is a configuration error."""
    raw = (environ if environ is not None else os.environ).get(name)
    if raw is None:
        return default
    word = raw.strip().lower()
    if word in _TRUE_WORDS:
        return True
    if word in _FALSE_WORDS:
        return False
    raise ConfigError(f"{name} must be 1/0, true/false, yes/no or on/off")


def integer(name: str, default: int, environ: Mapping[str, str] | None = None, *, minimum: int = 0) -> int:
    value = _parse(name, default, environ, int, "a whole number")
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}")
    return value


def number(name: str, default: float, environ: Mapping[str, str] | None = None) -> float:
    value = _parse(name, default, environ, float, "a number")
    if not math.isfinite(value):  # "inf" as a timeout would mean waiting forever
        raise ConfigError(f"{name} must be a number")
    return value


def _parse(name: str, default: T, environ: Mapping[str, str] | None, convert: Callable[[str], T], what: str) -> T:
    raw = (environ if environ is not None else os.environ).get(name, "").strip()
    if not raw:
        return default
    try:
        return convert(raw)
    except ValueError:
        raise ConfigError(f"{name} must be {what}") from None


def word_list(raw: str) -> list[str]:
    """Split a space- or comma-separated list, as Cloudinary's course does for TO_RECIPIENTS."""
    return [item for item in raw.replace(",", " ").split() if item]


def address_list(name: str, raw: str) -> list[str]:
    """Email addresses from a space- or comma-separated setting, each once, in the order given; anything
    that is not an address is a configuration error naming the variable (never the value)."""
    addresses = list(dict.fromkeys(word_list(raw)))
    malformed = [address for address in addresses if "@" not in address.strip("@")]
    if malformed:
        raise ConfigError(f"{name} has {len(malformed)} entry(ies) that are not email addresses")
    return addresses


def cloudinary_credentials(environ: Mapping[str, str] | None = None) -> tuple[str, str, str] | None:
    """(cloud_name, api_key, api_secret) from ``CLOUDINARY_URL``, or None when it is not set."""
    raw = (environ if environ is not None else os.environ).get("CLOUDINARY_URL", "").strip()
    if not raw:
        return None
    # Parsed by hand, as urllib.parse.urlsplit would: importing urllib.parse costs more cold-start time
    # than the rest of this module, on every request's path.
    scheme, separator, rest = raw.partition("://")
    netloc = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    userinfo, _, host = netloc.rpartition("@")
    api_key, _, api_secret = userinfo.partition(":")
    cloud_name = host.split(":", 1)[0].lower()
    if scheme.lower() != "cloudinary" or not separator or not cloud_name or not api_key or not api_secret:
        raise ConfigError("CLOUDINARY_URL must look like cloudinary://API_KEY:API_SECRET@CLOUD_NAME")
    api_key, api_secret = _unquote(api_key), _unquote(api_secret)
    if not usable_secret(api_secret) or not usable_secret(api_key):
        # "cloudinary://k:%20@demo" or a NUL: a blank secret would sign anything anyone can compute.
        raise ConfigError("CLOUDINARY_URL's api_key or api_secret is blank or holds control characters")
    return cloud_name, api_key, api_secret


def usable_secret(secret: str) -> bool:
    """A secret worth verifying with: not blank, and no control character (a NUL, a line break)."""
    return bool(secret.strip()) and not any(ord(character) < 32 or ord(character) == 127 for character in secret)


def _unquote(text: str) -> str:
    if "%" not in text:
        return text
    from urllib.parse import unquote  # only for percent-encoded credentials

    return unquote(text)


def signing_secrets(environ: Mapping[str, str] | None = None) -> list[str]:
    """Every secret a notification may be signed with: CLOUDINARY_URL's api_secret, then the extra
    ``CLOUDINARY_NOTIFICATION_SECRETS`` (comma-separated) kept during a key rotation."""
    env = environ if environ is not None else os.environ
    secrets: list[str] = []
    credentials = cloudinary_credentials(env)
    if credentials:
        secrets.append(credentials[2])
    extra = env.get("CLOUDINARY_NOTIFICATION_SECRETS", "")
    secrets.extend(secret.strip() for secret in extra.split(",") if usable_secret(secret.strip()))
    return secrets


# Variables each platform sets in every function's environment; their presence says where we run.
_PLATFORM_MARKERS = (("AWS_LAMBDA_FUNCTION_NAME", "AWS Lambda"), ("VERCEL", "Vercel"), ("NETLIFY", "Netlify"))


def serverless_platform(environ: Mapping[str, str] | None = None) -> str | None:
    """The serverless platform this process runs on ("AWS Lambda", "Vercel", "Netlify"), or None.

    There the code's folder is read-only and the disk is wiped between instances, so nothing that must last
    (a database, an idempotency record) can live in a local file."""
    env = environ if environ is not None else os.environ
    for variable, platform in _PLATFORM_MARKERS:
        if env.get(variable, "").strip():
            return platform
    return None


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


def test_loopback_allowed(variable: str, function: str) -> bool:
    """A function's test-only switch (``FACE_TAGGING_ALLOW_HTTP_LOOPBACK``...) that lets it reach a stand-in on
    ``LOOPBACK_HOSTS`` over http: tests and benchmarks on one machine. Never a deploy setting: set on a serverless
    platform, it is a ConfigError (500) rather than a way around the function's host checks."""
    if not flag(variable):
        return False
    platform = serverless_platform()
    if platform:
        raise ConfigError(f"{function}: {variable} is for tests on one machine; unset it on {platform}")
    return True


def demo_mode(environ: Mapping[str, str] | None = None) -> bool:
    return flag(DEMO_MODE_VAR, environ=environ)


class Settings:
    """A function's view of its environment for one request.

    ``require`` names the variable in the error (for the log) when it is missing. In local demo mode a
    function's declared demo values stand in for its missing settings, and the request runs dry.
    """

    def __init__(self, function: str, environ: Mapping[str, str], demo_values: Mapping[str, str] | None = None):
        self.function = function
        self._environ = environ
        self._demo_values = dict(demo_values or {})

    def get(self, name: str, default: str | None = None) -> str | None:
        value = self._environ.get(name, "").strip()
        if value:
            return value
        return self._demo_values.get(name, default)

    def require(self, name: str) -> str:
        value = self.get(name)
        if not value:
            raise ConfigError(f"{self.function}: environment variable {name} is not set")
        return value

    def flag(self, name: str, default: bool = False) -> bool:
        return flag(name, default, self._environ)

    def integer(self, name: str, default: int, *, minimum: int = 0) -> int:
        return integer(name, default, self._environ, minimum=minimum)

    def number(self, name: str, default: float) -> float:
        return number(name, default, self._environ)

    def choice(self, name: str, default: str, allowed: tuple[str, ...]) -> str:
        value = (self.get(name) or default).strip().lower()
        if value not in allowed:
            raise ConfigError(f"{self.function}: {name} must be one of {', '.join(allowed)}")
        return value
