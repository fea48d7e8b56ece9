"""The benchmark's own promises: an HTTP-only set-up, verdicts on pooled ratios, delivery summaries that add up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from bench import report
from bench.loadgen import HISTOGRAM_BINS_PER_SECOND, DeliverySummary
from bench.server import ServerProcess
from bench.targets import FastCMSTarget
from bench.workloads import CpuWindow

ROOT = Path(__file__).resolve().parent.parent


def test_fastcms_setup_imports_neither_django_nor_the_app() -> None:
    code = (
        "import sys, bench.fastcms_setup, bench.targets; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'django', 'collections_app', 'rest_framework'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_fastcms_target_is_prepared_over_http_and_again_on_the_same_database(tmp_path: Path) -> None:
    target = FastCMSTarget()
    target.prepare(tmp_path)
    first = target.token
    target.prepare(tmp_path)  # the user and the collections exist now: still fine, same token
    assert first
    assert target.token == first
    with (
        ServerProcess(target.app, target.env(), tmp_path / "check.log", target.ready_path) as server,
        httpx.Client(base_url=server.base_url, timeout=30) as client,
    ):
        headers = {"Authorization": f"Token {target.token}"}
        found = client.get("/api/v1/collections/bench/", headers=headers)
        assert found.status_code == 200
        assert [f["name"] for f in found.json()["fields"]] == ["seq", "sent_at", "topic", "payload"]
        assert client.get("/api/v1/collections/other_4/", headers=headers).status_code == 200
        created = client.post("/api/v1/collections/bench/records/", json={"seq": 1, "topic": "all"}, headers=headers)
        assert created.status_code == 201


def _fanout(p99_by_round: list[float], pooled_p99: float) -> dict[str, Any]:
    delivery = {"delivered": 10, "expected": 10, "delivered_pct": 100.0, "duplicates": 0, "out_of_order": 0}
    latency = {"p50": 1.0, "p95": 2.0, "p99": pooled_p99, "max": pooled_p99}
    return {
        "rounds": [
            {"delivered": 1, "expected": 1, "latency_ms": {"p99": p99}, "background_cpu": {"other": 0, "steal": 0}}
            for p99 in p99_by_round
        ],
        "delivery": {**delivery, "latency_ms": latency},
        "background_cpu": {"other": 0.0, "steal": 0.0},
    }


def _verdict(results: dict[str, Any], metric: str) -> tuple[str, str]:
    row = next(r for r in report.build_rows(results) if r.metric == metric)
    return row.ratio, row.verdict


def test_fanout_verdict_is_the_pooled_p99_ratio_not_the_median_of_rounds() -> None:
    # Two good rounds and one bad: the median of per-round ratios (1.0x) would pass, the pool (3x) does not.
    results = {
        "reference": {"fanout_5000": _fanout([10, 10, 10], pooled_p99=10)},
        "fastcms": {"fanout_5000": _fanout([10, 10, 90], pooled_p99=30)},
    }
    ratio, verdict = _verdict(results, "fanout_5000: latency p99, pooled over rounds (ms)")
    assert verdict == "FAIL"
    assert ratio == "3.00x (median of rounds 1.00x)"
    assert report.comparison(results)["fanout_5000"]["p99_ratio_pooled"] == 3.0


def test_a_ratio_pooled_over_fewer_than_three_rounds_has_no_verdict() -> None:
    results = {
        "reference": {"fanout": _fanout([10, 10], pooled_p99=10)},
        "fastcms": {"fanout": _fanout([10, 10], pooled_p99=10)},
    }
    assert _verdict(results, "fanout: latency p99, pooled over rounds (ms)")[1] == "n/a"


def test_delivery_summaries_add_up_and_give_percentiles_to_one_bin() -> None:
    first, second = DeliverySummary(subscribers=1, expected=3), DeliverySummary(subscribers=1, expected=2)
    bin_ms = 1000 / HISTOGRAM_BINS_PER_SECOND
    first.histogram.update({10: 2})  # two deliveries at 1.0 ms
    second.histogram.update({500: 1})  # one at 50 ms
    second.duplicates = 1
    first += second
    assert (first.expected, first.delivered, first.duplicates) == (5, 3, 1)
    assert abs(first.percentile_seconds(50) * 1000 - 10.5 * bin_ms) < 1e-9
    assert abs(first.percentile_seconds(99) * 1000 - 500.5 * bin_ms) < 1e-9
    assert DeliverySummary().percentile_seconds(99) == 0.0


def test_cpu_windows_pool_the_whole_machine_and_the_bench_share() -> None:
    # Two rounds of 10 s: the machine (all CPUs) was busy 15 s then 5 s, the bench's processes 12 s then 4 s.
    pooled = CpuWindow(10, 3, 0, 12, 15) + CpuWindow(10, 1, 0, 4, 5)
    assert (pooled.elapsed, pooled.other, pooled.bench, pooled.busy) == (20, 4, 16, 20)
    cpus = os.cpu_count() or 1
    assert pooled.machine_busy_percent() == round(20 / (20 * cpus) * 100, 1)
    assert CpuWindow().machine_busy_percent() == 0.0


def test_write_throughput_shows_what_the_bench_clients_used_beside_the_server() -> None:
    def figures(rate: float, busy: list[float], clients: float) -> dict[str, Any]:
        rounds = [
            {"writes_per_second": rate, "machine_busy_pct": b, "background_cpu": {"other": 0.0, "steal": 0.0}}
            for b in busy
        ]
        return {
            "writes_per_second": rate,
            "rounds": rounds,
            "delivery": {
                "delivered": 30,
                "expected": 30,
                "delivered_pct": 100.0,
                "missing": 0,
                "duplicates": 0,
                "ended_early": 0,
                "latency_ms": {"p50": 1.0, "p99": 2.0},
            },
            "refused": 0,
            "request_ms": {"p50": 1.0, "p99": 2.0},
            "server_cpu_ms_per_write": 7.0,
            "client_cpu_ms_per_write": clients,
            "machine_busy_pct": sum(busy) / len(busy),
            "background_cpu": {"other": 0.0, "steal": 0.0},
        }

    results = {
        "reference": {"write_throughput": figures(90, [96, 97, 98], 6.125)},
        "fastcms": {"write_throughput": figures(120, [98, 99, 100], 5.0)},
    }
    rows = {r.metric: r for r in report.build_rows(results)}
    busy = rows["write_throughput: machine CPU busy, all rounds (% of all its CPUs, by round)"]
    assert (busy.reference, busy.fastcms) == ("97% (96 / 97 / 98)", "99% (98 / 99 / 100)")
    clients = rows["write_throughput: the bench's subscribers' and writers' CPU per write (ms)"]
    assert (clients.reference, clients.fastcms) == ("6.12", "5.00")


def test_client_workers_lower_their_own_priority_and_still_read() -> None:
    """write_throughput's subscribers read below the server's priority: the workers renice
    themselves (no privilege needed), and the pool still answers afterwards."""
    from bench.loadgen import ClientPool

    with ClientPool("127.0.0.1", 9, processes=2) as pool:
        before = [os.getpriority(os.PRIO_PROCESS, pid) for pid in pool.pids]
        levels = pool.lower_priority(3)
        after = [os.getpriority(os.PRIO_PROCESS, pid) for pid in pool.pids]
        assert levels == after == [level + 3 for level in before]
        assert pool.counts() == {}
