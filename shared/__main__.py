"""``python -m shared --help``: the local server and the tools around the functions (``devtools.cli``).

Kept here so that the command the README teaches stays the same; the tooling itself lives in ``devtools/``
and is never bundled with a function.
"""

import sys

from devtools.cli import main

if __name__ == "__main__":
    sys.exit(main())
