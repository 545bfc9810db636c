"""The robustness suites' own counts (bad input tried, faults injected, burst), as they print them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUITES = ["tests/robustness", "tests/faults", "tests/load"]
MARKERS = ("test_faults", "bad input", "hostile", "real writes", "cross-check", "hypothesis", "dry-run")


def measure() -> tuple[list[str], str]:
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *SUITES],
                            cwd=ROOT, capture_output=True, text=True, check=False)
    lines = [line.strip() for line in result.stdout.splitlines() if line.strip().lower().startswith(MARKERS)]
    summary = next((line for line in reversed(result.stdout.splitlines()) if " passed" in line or " failed" in line),
                   "no summary")
    return lines, summary.strip("= ")


def report(measured: tuple[list[str], str]) -> str:
    lines, summary = measured
    return "\n".join([
        "## Robustness suites",
        "",
        f"Command: `python -m pytest -q {' '.join(SUITES)}` (what `make test` runs among the rest); each suite "
        "prints its own counts:",
        "",
        "```",
        *lines,
        summary,
        "```",
        "",
    ])
