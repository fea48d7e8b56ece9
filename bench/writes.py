"""The write workloads: records created through REST (the reference: its publish request) while streams listen.

Both are ALTERNATING (see `workloads.alternate`): every target's server starts first and keeps its
subscribers; then round 1 of each target in turn, round 2 of each, and so on. A "write" is one
POST that publishes one event (`Target.publish_request`): for FastCMS a REST create, for the
reference its `POST /publish`. Server CPU is the uvicorn worker's user + system time from
`/proc/<pid>/stat` over the round (its writes and their deliveries) divided by the round's writes.

- write_latency: one subscriber on the fan-out path (the session's warm-up stream), writes one
  after another, `plan.interval` apart: create -> receipt (send time taken just before the request
  is sent, receipt time in the client), the write's own response time, and server CPU per write.
- write_throughput: `plan.subscribers` subscribers on the fan-out path, `plan.writers` keep-alive
  writers each sending its next write as soon as the previous one answered, for `plan.duration`
  seconds: accepted (2xx) writes per second, whether every subscriber got every accepted write's
  event exactly once (missing, duplicates), create -> receipt latency, server CPU per write.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.loadgen import BenchError, DeliverySummary
from bench.targets import Target
from bench.workloads import (
    DRAIN_TIMEOUT,
    PAYLOAD,
    AlternatingSide,
    CpuMeter,
    CpuWindow,
    Plan,
    alternate,
    delivery_stats,
    log,
    summary_ms,
)

# write_throughput's subscribers read at this nice level: on a machine shared with the server, a
# burst of reads after a round of writes would otherwise take the CPU turns of the worker whose
# capacity is measured (measured: FastCMS 269 writes/s at the same priority, 335/s below it).
SUBSCRIBER_NICENESS = 10
STALL_SECONDS = 5.0  # write_throughput stops waiting for deliveries once none arrived for this long
WRITE_TIMEOUT = httpx.Timeout(30.0, connect=10.0)


@dataclass(frozen=True)
class Write:
    """One write: its seq, `time.time()` just before it was sent, its response time (s), its HTTP status (0: none)."""

    seq: int
    sent_at: float
    seconds: float
    status: int

    @property
    def accepted(self) -> bool:
        return 200 <= self.status < 300


def run_writers(
    target: Target,
    base_url: str,
    writers: int,
    duration: float,
    seqs: Iterable[int],
    on_start: Callable[[], None] = lambda: None,
) -> tuple[list[Write], float]:
    """`writers` threads, each with its own keep-alive client, writing back to back for `duration` seconds.

    Each takes the next seq from `seqs`, sends, waits for the answer, and goes again; the clock starts
    when every writer has its connection open, right after `on_start()` (so a reading it takes leaves the
    connections' opening out). Returns every write, accepted or not, ordered by seq, and the seconds
    from the start to the last answer.
    """
    numbers = iter(seqs)
    lock = threading.Lock()
    done: list[list[Write]] = [[] for _ in range(writers)]
    errors: list[str] = []
    ready = threading.Barrier(writers + 1)
    go = threading.Event()
    deadline = [0.0]

    def write(client: httpx.Client, seq: int) -> Write:
        body = {"seq": seq, "sent_at": 0.0, "topic": "all", "payload": PAYLOAD}
        path, headers = target.publish_request(body)
        body["sent_at"] = sent_at = time.time()
        try:
            response = client.post(path, json=body, headers=headers)
        except httpx.HTTPError as exc:
            if not errors:
                errors.append(f"{type(exc).__name__}: {exc}")
            return Write(seq, sent_at, time.time() - sent_at, 0)
        if not response.is_success and not errors:
            errors.append(f"HTTP {response.status_code}: {response.text[:200]}")
        return Write(seq, sent_at, time.time() - sent_at, response.status_code)

    def writer(index: int) -> None:
        with httpx.Client(base_url=base_url, timeout=WRITE_TIMEOUT) as client:
            try:
                client.get(target.ready_path)  # opens the keep-alive connection before the clock starts
            except httpx.HTTPError:
                pass  # the first write reports it
            ready.wait()
            go.wait()
            while time.monotonic() < deadline[0]:
                with lock:
                    seq = next(numbers)
                done[index].append(write(client, seq))

    threads = [threading.Thread(target=writer, args=(i,), name=f"bench-writer-{i}") for i in range(writers)]
    for thread in threads:
        thread.start()
    started = time.monotonic()
    try:
        ready.wait(30)
        on_start()
        started = time.monotonic()
        deadline[0] = started + duration
    except threading.BrokenBarrierError as exc:
        raise BenchError(f"{target.name}: the writers did not start") from exc
    finally:
        go.set()
        for thread in threads:
            thread.join()
    elapsed = time.monotonic() - started
    writes = sorted((w for per_writer in done for w in per_writer), key=lambda w: w.seq)
    if writes and not any(w.accepted for w in writes):
        raise BenchError(f"{target.name}: no write accepted out of {len(writes)}; first error: {errors[0]}")
    return writes, elapsed


def summary_stats(summary: DeliverySummary, subscribers: int) -> dict[str, Any]:
    """A DeliverySummary as JSON-ready numbers (latencies in ms, to its 0.1 ms bins)."""
    delivered = summary.delivered
    latency = {f"p{p}": round(summary.percentile_seconds(p) * 1000, 2) for p in (50, 95, 99)}
    latency["max"] = round(summary.percentile_seconds(100) * 1000, 2)
    return {
        "subscribers": subscribers,
        "expected": summary.expected,
        "delivered": delivered,
        "delivered_pct": round(100 * delivered / summary.expected, 3) if summary.expected else 100.0,
        "missing": summary.expected - delivered,
        "duplicates": summary.duplicates,
        "ended_early": summary.ended_early,
        "ended_reasons": sorted(summary.ended_reasons)[:3],
        "latency_ms": latency,
    }


class _WriteLatencySide(AlternatingSide):
    """write_latency for one target: the warm-up stream is the one subscriber; paced writes each round."""

    def __init__(self, target: Target) -> None:
        super().__init__(target, "write_latency")
        self.rounds: list[tuple[dict[int, float], list[float], float]] = []  # sent, response times, server CPU

    def prepare(self, plan: Plan) -> None:
        return None  # the session's warm-up subscriber (fan-out path) is the one listening

    def run_round(self, plan: Plan, pids: Callable[[], Iterable[int]]) -> str:
        session = self.session
        assert session is not None
        first = len(self.rounds) * plan.events
        meter = CpuMeter(pids)
        cpu = session.server.cpu_seconds()
        answered = len(session.publish_seconds)
        sent = session.publish(range(first, first + plan.events), plan.interval, "all", {"warmup": 1})
        session.wait()
        cpu = session.server.cpu_seconds() - cpu
        self.windows.append(meter.window())
        self.rounds.append((sent, session.publish_seconds[answered:], cpu))
        return f"{len(sent)} writes, server CPU {cpu / len(sent) * 1000:.2f} ms each"

    def result(self, plan: Plan) -> dict[str, Any]:
        session = self.session
        assert session is not None
        results = session.pool.collect()
        rounds = []
        for number, ((sent, seconds, cpu), window) in enumerate(zip(self.rounds, self.windows, strict=True), 1):
            stats = delivery_stats(results, "warmup", sent)
            rounds.append(
                {
                    "round": number,
                    "writes": len(sent),
                    "delivered": stats["delivered"],
                    "expected": stats["expected"],
                    "latency_ms": stats["latency_ms"],
                    "request_ms": summary_ms(seconds),
                    "server_cpu_ms_per_write": round(cpu / len(sent) * 1000, 3) if sent else None,
                    "background_cpu": window.percent(),
                }
            )
        everything = {seq: at for sent, _, _ in self.rounds for seq, at in sent.items()}
        writes = len(everything)
        return {
            "plan": asdict(plan),
            "delivery": delivery_stats(results, "warmup", everything),
            "request_ms": summary_ms(s for _, seconds, _ in self.rounds for s in seconds),
            "server_cpu_ms_per_write": round(sum(c for _, _, c in self.rounds) / writes * 1000, 3) if writes else None,
            "rounds": rounds,
            "background_cpu": sum(self.windows, CpuWindow()).percent(),
        }


class _WriteThroughputSide(AlternatingSide):
    """write_throughput for one target: `plan.subscribers` kept across rounds, back-to-back writers each round."""

    def __init__(self, target: Target, label: str = "write_throughput") -> None:
        super().__init__(target, label)
        self.seqs = itertools.count()
        self.rounds: list[dict[str, Any]] = []
        self.summaries: list[DeliverySummary] = []
        self.request_seconds: list[float] = []

    def prepare(self, plan: Plan) -> None:
        session = self.session
        assert session is not None
        session.quiesce(0)
        self.connected = session.connect("sub", [self.target.fanout_path()] * plan.subscribers)
        if plan.subscribers > 1 and None in session.pool.lower_priority(SUBSCRIBER_NICENESS):
            log(f"  [{self.target.name}] the subscribers could not lower their priority: they compete with the server")
        log(
            f"  [{self.target.name}] {self.connected.connected} subscribers connected in {self.connected.seconds:.2f} s"
        )

    def run_round(self, plan: Plan, pids: Callable[[], Iterable[int]]) -> str:
        session = self.session
        assert session is not None
        start: dict[str, Any] = {}

        def on_start() -> None:
            start.update(meter=CpuMeter(pids), cpu=session.server.cpu_seconds())

        writes, elapsed = run_writers(
            self.target, session.server.base_url, plan.writers, plan.duration, self.seqs, on_start
        )
        accepted = {w.seq: w.sent_at for w in writes if w.accepted}
        session.expected["sub"] += plan.subscribers * len(accepted)
        session.expected["warmup"] += len(accepted)
        drained = session.wait(max(DRAIN_TIMEOUT, 3 * plan.duration), stall=STALL_SECONDS)
        if not drained:  # what is missing now counts as lost; later rounds wait for their own events only
            for group, count in session.pool.counts().items():
                session.expected[group] = min(session.expected[group], count)
        cpu = session.server.cpu_seconds() - start["cpu"]
        window = start["meter"].window()
        self.windows.append(window)
        session.server.check_alive()
        summary = session.pool.summarize("sub", accepted)
        self.summaries.append(summary)
        self.request_seconds += [w.seconds for w in writes if w.accepted]
        rate = len(accepted) / elapsed if elapsed > 0 else 0.0
        self.rounds.append(
            {
                "round": len(self.rounds) + 1,
                "writes": len(accepted),
                "refused": len(writes) - len(accepted),
                "refused_by_status": dict(Counter(w.status for w in writes if not w.accepted)),
                "seconds": round(elapsed, 3),
                "writes_per_second": round(rate, 1),
                "delivery": summary_stats(summary, plan.subscribers),
                "drained": drained,
                "request_ms": summary_ms(w.seconds for w in writes if w.accepted),
                "server_cpu_ms_per_write": round(cpu / len(accepted) * 1000, 3) if accepted else None,
                "server_cpu_seconds": round(cpu, 3),
                # Where the machine's CPU went: the subscribers and writers share it with the server.
                "client_cpu_seconds": round(window.bench - cpu, 3),
                "machine_busy_pct": window.machine_busy_percent(),
                "background_cpu": window.percent(),
            }
        )
        return (
            f"{len(accepted)} writes accepted in {elapsed:.1f} s ({rate:.0f}/s), "
            f"{summary.delivered}/{summary.expected} delivered"
        )

    def result(self, plan: Plan) -> dict[str, Any]:
        pooled = DeliverySummary()
        for summary in self.summaries:
            pooled += summary
        writes = sum(r["writes"] for r in self.rounds)
        seconds = sum(r["seconds"] for r in self.rounds)
        cpu = sum(r["server_cpu_seconds"] for r in self.rounds)
        clients = sum(r["client_cpu_seconds"] for r in self.rounds)
        return {
            "plan": asdict(plan),
            "connect": {"connected": self.connected.connected, "seconds": round(self.connected.seconds, 3)},
            "writes": writes,
            "refused": sum(r["refused"] for r in self.rounds),
            "seconds": round(seconds, 3),
            "writes_per_second": round(writes / seconds, 1) if seconds else 0.0,
            "delivery": summary_stats(pooled, plan.subscribers),
            "request_ms": summary_ms(self.request_seconds),
            "server_cpu_ms_per_write": round(cpu / writes * 1000, 3) if writes else None,
            "client_cpu_ms_per_write": round(clients / writes * 1000, 3) if writes else None,
            "machine_busy_pct": sum(self.windows, CpuWindow()).machine_busy_percent(),
            "rounds": self.rounds,
            "background_cpu": sum(self.windows, CpuWindow()).percent(),
        }


def write_latency(
    targets: list[Target], plan: Plan, workdir: Path, processes: int
) -> dict[str, dict[str, Any] | BenchError]:
    """Paced writes with one subscriber, rounds alternating between the targets: create -> receipt,
    the write's response time, server CPU per write. Per target name, its metrics or its error."""
    return alternate(_WriteLatencySide, targets, plan, workdir, processes)


def write_throughput(
    targets: list[Target], plan: Plan, workdir: Path, processes: int
) -> dict[str, dict[str, Any] | BenchError]:
    """Back-to-back writers with many subscribers, rounds alternating between the targets: accepted writes
    per second, every event delivered, latency, server CPU per write. Per target name, its metrics or its error."""
    return alternate(_WriteThroughputSide, targets, plan, workdir, processes)


def write_sustained(
    targets: list[Target], plan: Plan, workdir: Path, processes: int
) -> dict[str, dict[str, Any] | BenchError]:
    """write_throughput's measurement with one subscriber and one back-to-back writer: the server CPU a write
    costs when writes keep the worker busy (write_latency's paced writes each find it idle and cold)."""
    return alternate(lambda target: _WriteThroughputSide(target, "write_sustained"), targets, plan, workdir, processes)
