"""Argument types shared by the commands: each refuses a bad value with one line argparse prints."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def whole_number(what: str, lowest: int = 0, highest: int | None = None) -> Callable[[str], int]:
    """An argparse ``type`` for a whole number from ``lowest`` to ``highest``; ``what`` names it in the error
    ("a port number (0 to 65535)")."""

    def parse(text: str) -> int:
        digits = text.strip()
        if not (digits.isascii() and digits.isdigit()) or int(digits) < lowest \
                or (highest is not None and int(digits) > highest):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return int(digits)

    return parse
