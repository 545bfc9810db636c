"""The robustness suites' own counts (bad input tried, faults injected, burst), as they print them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUITES = ["tests/robustness", "tests/faults", "tests/load"]
MARKERS = ("test_faults", "bad input", "hostile", "real writes", "cross-check", "hypothesis", "dry-run")


def _grouped(lines: list[str]) -> list[str]:
    """Per-sample counters ("dry-run Admin API reads: hello_tag/upload   0") summed per function and
    counter, with the most any one sample took; every other line as printed."""
    import re

    sample_line = re.compile(r"^(dry-run [^:]+): (\w+)/\S+\s+(\d+)$")
    groups: dict[tuple[str, str], list[int]] = {}
    kept = []
    for line in lines:
        found = sample_line.match(line)
        if found:
            groups.setdefault((found.group(1), found.group(2)), []).append(int(found.group(3)))
        else:
            kept.append(line)
    for (counter, function), counts in sorted(groups.items()):
        kept.append(f"{counter}: {function}: {len(counts)} samples, {sum(counts)} in all, at most {max(counts)} "
                    "per sample")
    return kept


def measure() -> tuple[list[str], str]:
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *SUITES],
                            cwd=ROOT, capture_output=True, text=True, check=False)
    lines = _grouped([line.strip() for line in result.stdout.splitlines()
                      if line.strip().lower().startswith(MARKERS)])
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
