"""The fault suites' counts (scenarios, faults injected, retries that completed the work), printed once at the
end of a run for BENCHMARKS.md. Every scenario asserts its own outcome; nothing here depends on test order."""

from __future__ import annotations

import sys


def pytest_terminal_summary(terminalreporter) -> None:
    suites = {name.rsplit(".", 1)[-1]: module.TOTALS for name, module in sorted(sys.modules.items())
              if name.startswith("tests.faults.test_") and isinstance(getattr(module, "TOTALS", None), dict)}
    if not any(any(totals.values()) for totals in suites.values()):
        return
    terminalreporter.section("fault suites")
    for suite, totals in suites.items():
        for key in sorted(totals):
            terminalreporter.write_line(f"{suite:<28} {key:<52} {totals[key]:>6}")
