"""Burst: 1,000 signed notifications across every function from 32 concurrent clients to
`python -m shared serve` on loopback (DRY_RUN=1, demo mode: no outbound call). Bounded in count and time
(bench/burst.py stops by itself after 120 s). Every request answered right is what this asserts; throughput
and latency are measured by `make bench` with a load generator that is not the bottleneck (bench/load.py, wrk)."""

from __future__ import annotations

import pytest

from bench import burst


@pytest.mark.slow
def test_a_thousand_notifications_from_32_clients_all_answered_200():
    # Throughput and latency are the benchmarks' to report (make bench); here: every request answered right.
    result = burst.run(total=1000, clients=32)

    assert result["total"] == 1000
    assert result["errors"] == []
    assert result["statuses"] == {200: 1000}, result["server_log"]
