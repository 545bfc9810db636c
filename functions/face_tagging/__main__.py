"""``python -m functions.face_tagging trim-botocore-data [--check]``: (re)write functions/face_tagging/botocore_data/
from the installed botocore (``--check``: write nothing, exit 1 if the shipped files differ).

The same as ``python -m devtools.botocore_data``, for this function's folder only; what the folder holds and why:
devtools/botocore_data.py. Not in the Lambda bundle (``__main__.py`` is tooling); the data is.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from devtools import botocore_data

    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] != ["trim-botocore-data"]:
        sys.stderr.write("usage: python -m functions.face_tagging trim-botocore-data [--check]\n")
        return 2
    return botocore_data.main(arguments[1:], only="face_tagging")


if __name__ == "__main__":
    sys.exit(main())
