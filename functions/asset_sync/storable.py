"""Values the databases cannot hold as they are, made storable; pure functions, no database.

A notification is kept exactly as signed in the event log (its raw body is text both databases hold), so
nothing is ever lost. The mirror rows are a projection of it, and there some values need a stand-in:

- a NUL character: PostgreSQL's text and jsonb cannot hold one. The mirror shows ``␀`` (U+2400) instead.
- NaN, Infinity, -Infinity and numbers beyond a double (``1e400``, which Python reads as infinity): no JSON
  column holds them. The mirror keeps the number's text from the body, as a string (``"1e400"``).
- values nested deeper than ``MAX_DEPTH``: kept as their JSON text, so that no reader (Python's recursion
  limit, SQLite's JSON functions) meets a depth it cannot handle.
- keys (asset IDs, folder paths) longer than ``MAX_KEY_BYTES``: a btree index entry is at most ~2.7 kB in
  PostgreSQL; such a key is stored as its start plus its SHA-256 (``storage_key``). Non-key columns that are
  only compared for equality (public_id, asset_folder) have hash indexes instead, which hold any length.

``canonical_json`` serialises any value ``json.loads`` produced, however deep, without recursion.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping

TYPE_CHECKING = False  # no `typing` import at run time: it costs cold-start milliseconds for annotations only
if TYPE_CHECKING:
    from typing import Any

NUL_SIGN = "\u2400"  # ␀ SYMBOL FOR NULL: what the mirror shows for a NUL character
MAX_DEPTH = 32  # containers nested deeper than this (below a field) are kept as their JSON text
MAX_KEY_BYTES = 512  # longer keys are stored as their start and a hash
_KEY_START_BYTES = 160

# Tokens Python's JSON reader accepts but turns into NaN or an infinity: only bodies holding one are read again.
_NON_FINITE_TOKEN = re.compile(rb"NaN|Infinity|[0-9][eE][+]?[0-9]{3}")


# --- canonical JSON, any depth ------------------------------------------------------------------------

def canonical_json(value: Any) -> str:
    """``json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``, for any depth."""
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except RecursionError:  # nested deeper than the interpreter's stack allows from here
        return canonical_json_iterative(value)


class _Token(str):
    """Punctuation already rendered (a plain ``str`` on the stack is a value still to render)."""

    __slots__ = ()


def canonical_json_iterative(value: Any) -> str:
    """The same text as ``canonical_json``, with an explicit stack instead of recursion."""
    parts: list[str] = []
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, _Token):
            parts.append(item)
        elif isinstance(item, dict):
            if not item:
                parts.append("{}")
                continue
            entries = sorted(item.items())
            stack.append(_Token("}"))
            for index in range(len(entries) - 1, -1, -1):
                key, inner = entries[index]
                stack.append(inner)
                stack.append(_Token(json.dumps(key, ensure_ascii=False) + ":"))
                if index:
                    stack.append(_Token(","))
            stack.append(_Token("{"))
        elif isinstance(item, list | tuple):
            if not item:
                parts.append("[]")
                continue
            stack.append(_Token("]"))
            for index in range(len(item) - 1, -1, -1):
                stack.append(item[index])
                if index:
                    stack.append(_Token(","))
            stack.append(_Token("["))
        else:
            parts.append(json.dumps(item, ensure_ascii=False))
    return "".join(parts)


# --- reading a body so that no number is lost ------------------------------------------------------------

def has_non_finite_numbers(body: bytes) -> bool:
    """Whether the body may hold NaN, Infinity or a number beyond a double (a cheap scan of the bytes)."""
    return _NON_FINITE_TOKEN.search(body) is not None


def parse_keeping_numbers(body: bytes | str) -> Any:
    """The body as ``json.loads`` reads it, except that NaN, ±Infinity and numbers beyond a double are their
    text (a string), so that the mirror can keep what the body said."""
    return json.loads(body, parse_constant=str, parse_float=_exact_float)


def _exact_float(text: str) -> float | str:
    number = float(text)
    return number if math.isfinite(number) else text


# --- values and keys for the mirror ---------------------------------------------------------------------

def storable(value: Any, depth: int = 0) -> Any:
    """``value`` as both databases hold it in a JSON or text column (see the module docstring)."""
    if isinstance(value, str):
        return value.replace("\x00", NUL_SIGN) if "\x00" in value else value
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value).replace("inf", "Infinity").replace("nan", "NaN")
    if depth >= MAX_DEPTH and isinstance(value, Mapping | list | tuple):
        return storable(canonical_json(value))
    if isinstance(value, Mapping):
        return {storable(str(key)): storable(inner, depth + 1) for key, inner in value.items()}
    if isinstance(value, list | tuple):
        return [storable(inner, depth + 1) for inner in value]
    return storable(str(value))


def storable_text(value: str | None) -> str | None:
    """A text column's value: NUL shown as ␀."""
    return value.replace("\x00", NUL_SIGN) if value is not None and "\x00" in value else value


def storage_key(key: str) -> str:
    """``key`` as a primary-key value: itself, or (too long for an index entry) its start and its SHA-256.
    The same key always gives the same value, so the row is found again."""
    encoded = key.encode("utf-8")
    if len(encoded) <= MAX_KEY_BYTES:
        return key
    import hashlib

    start = encoded[:_KEY_START_BYTES].decode("utf-8", "ignore")
    return f"{start}\u2026sha256:{hashlib.sha256(encoded).hexdigest()}"
