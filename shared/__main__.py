"""``python -m shared --help``: the local server and the tools around the functions."""

import sys
from pathlib import Path

# The functions are imported as `functions.<name>.handler`: make that work from any working directory.
_ROOT = str(Path(__file__).resolve().parent.parent)
_HERE = Path(__file__).resolve().parent
# Run as a script (`python shared/__main__.py`), shared/ itself would be on sys.path and its http.py would
# shadow the standard library's http: keep only the project root.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _HERE]
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from shared.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
