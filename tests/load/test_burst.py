"""Burst: 1,000 signed notifications across every function from 32 concurrent clients to
`python -m shared serve` on loopback (DRY_RUN=1, demo mode: no outbound call). Bounded in count and time
(bench/burst.py stops by itself after 120 s); prints throughput and latency for BENCHMARKS.md."""

from __future__ import annotations

from bench import burst


def test_a_thousand_notifications_from_32_clients_all_answered_200(capsys):
    result = burst.run(total=1000, clients=32)

    with capsys.disabled():
        print(f"\nburst: {result['total']} requests, {result['clients']} clients, "
              f"{result['total'] / result['wall']:.0f} req/s, p50 {result['p50'] * 1000:.1f} ms, "
              f"p99 {result['p99'] * 1000:.1f} ms, statuses {result['statuses']}")
    assert result["total"] == 1000
    assert result["errors"] == []
    assert result["statuses"] == {200: 1000}
