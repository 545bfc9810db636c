"""Hypothesis budgets for the robustness suites, and the counts they print at the end.

``ci`` (the default) is fixed and derandomized, so CI runs the same inputs every time and stays within a
minute on two cores; ``HYPOTHESIS_PROFILE=long`` lets a person search much longer with fresh inputs:

    .venv/bin/pytest -q tests/robustness                              # ci: 40 inputs per property and function
    HYPOTHESIS_PROFILE=long .venv/bin/pytest -q tests/robustness      # long: 1,000 (about half an hour)

The bad-input properties run once per function, so ``max_examples`` counts per property *and* function: with
six functions, ``ci`` tries 240 inputs per property. The cross-check runs once, with ``max_examples`` x 5.
"""

from __future__ import annotations

import os
from collections import Counter

from hypothesis import HealthCheck, settings

# The environment (signing secret, required settings, stand-in servers) is set once per test by
# function-scoped fixtures and is the same for every example, so that health check does not apply.
_SHARED = {
    "deadline": None,  # first requests import SDKs; timing belongs to the benchmarks, not here
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                              HealthCheck.data_too_large],
}
settings.register_profile("ci", max_examples=40, derandomize=True, database=None, print_blob=True, **_SHARED)
settings.register_profile("long", max_examples=1000, derandomize=False, print_blob=True, **_SHARED)

PROFILE_NAME = os.environ.get("HYPOTHESIS_PROFILE", "ci")
PROFILE = settings.get_profile(PROFILE_NAME)

# What the suites tried, printed at the end of the run (and recorded in BENCHMARKS.md).
COUNTS: Counter[str] = Counter()


def pytest_terminal_summary(terminalreporter) -> None:
    if not COUNTS:
        return
    terminalreporter.section(f"robustness counts (hypothesis profile {PROFILE_NAME!r})")
    for key in sorted(COUNTS):
        terminalreporter.write_line(f"{key:<70} {COUNTS[key]:>8}")
