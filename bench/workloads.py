"""The three workloads of SPEC section 8 (fan-out, capacity, selectivity), each on a fresh server.

A delivery's latency is its receipt time (`time.time()` in the client worker when the bytes
arrived) minus the publisher's `time.time()` taken just before it sent the publish request: one
wall clock on one machine, so the two are comparable across processes.
"""

from __future__ import annotations

import contextlib
import math
import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.loadgen import BenchError, ClientPool, ConnectResult, SubscriberResult
from bench.server import HOST, ProcessStats, ServerProcess, cpu_seconds, machine_cpu_seconds
from bench.targets import Target

PAYLOAD = "lorem ipsum dolor sit amet " * 8  # ~200 bytes, so events are the size of a small record
WARMUP_EVENTS = 3
DRAIN_TIMEOUT = 30.0  # seconds to wait for the last deliveries after the last publish
QUIET_CPU = 0.02  # the server is idle when it used at most this share of a CPU over QUIET_WINDOW
QUIET_WINDOW = 0.5
QUIET_TIMEOUT = 60.0
MIN_ROUNDS = 3


@dataclass(frozen=True)
class Plan:
    """Sizes of one workload. Selectivity: `subscribers` match, `extras` do not."""

    subscribers: int
    events: int
    interval: float  # seconds between publishes
    extras: int = 0
    settle: float = 1.0  # least seconds of idling before reading the server's memory or publishing
    rounds: int = 1  # selectivity: alone/crowded pairs, so background noise hits both alike
    budget: float = 0.0  # selectivity: seconds after which no new round starts once MIN_ROUNDS are done (0: none)


FULL: dict[str, Plan] = {
    "fanout": Plan(subscribers=1000, events=50, interval=0.1),
    "capacity": Plan(subscribers=5000, events=3, interval=0.25, settle=2.0),
    "selectivity": Plan(subscribers=10, events=400, interval=0.01, extras=5000, rounds=5, budget=180.0),
}
QUICK: dict[str, Plan] = {
    "fanout": Plan(subscribers=50, events=10, interval=0.05, settle=0.5),
    "capacity": Plan(subscribers=200, events=3, interval=0.1, settle=0.5),
    "selectivity": Plan(subscribers=10, events=20, interval=0.02, extras=200, settle=0.5, rounds=2),
}


def log(message: str) -> None:
    """Progress on stderr (the table goes to stdout)."""
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile of sorted `values` (0 when empty)."""
    if not values:
        return 0.0
    return values[min(len(values) - 1, max(0, math.ceil(p / 100 * len(values)) - 1))]


def summary_ms(seconds: Iterable[float]) -> dict[str, float]:
    """p50/p95/p99/max/mean of durations in seconds, as milliseconds rounded to 0.01."""
    values = sorted(seconds)
    result = {f"p{p}": percentile(values, p) for p in (50, 95, 99)}
    result["max"] = values[-1] if values else 0.0
    result["mean"] = sum(values) / len(values) if values else 0.0
    return {key: round(value * 1000, 2) for key, value in result.items()}


def delivery_stats(results: dict[int, SubscriberResult], group: str, sent: dict[int, float]) -> dict[str, Any]:
    """Deliveries of the events in `sent` (seq -> send time) to the subscribers of `group`.

    Counts each (subscriber, event) once for latency; a second receipt is a duplicate, a seq lower
    than the previous one from the same stream is out of order.
    """
    subscribers = [r for r in results.values() if r.group == group]
    latencies: list[float] = []
    duplicates = out_of_order = 0
    for result in subscribers:
        seen: set[int] = set()
        previous = -math.inf
        for seq, received in result.deliveries:
            if seq not in sent:
                continue
            if seq in seen:
                duplicates += 1
                continue
            if seq < previous:
                out_of_order += 1
            previous = seq
            seen.add(seq)
            latencies.append(received - sent[seq])
    expected = len(subscribers) * len(sent)
    return {
        "subscribers": len(subscribers),
        "events": len(sent),
        "expected": expected,
        "delivered": len(latencies),
        "delivered_pct": round(100 * len(latencies) / expected, 3) if expected else 100.0,
        "duplicates": duplicates,
        "out_of_order": out_of_order,
        "ended_early": sum(1 for r in subscribers if r.ended),
        "ended_reasons": sorted({r.ended for r in subscribers if r.ended})[:3],
        "latency_ms": summary_ms(latencies),
    }


def connect_stats(result: ConnectResult) -> dict[str, Any]:
    """A connect batch as JSON-ready numbers."""
    return {
        "requested": result.requested,
        "connected": result.connected,
        "seconds": round(result.seconds, 3),
        "per_second": round(result.rate, 1),
    }


def memory_stats(before: ProcessStats, after: ProcessStats, connections: int) -> dict[str, Any]:
    """Server memory and threads around opening `connections` idle streams."""
    return {
        "rss_before_kb": before.rss_kb,
        "rss_after_kb": after.rss_kb,
        "kb_per_connection": round((after.rss_kb - before.rss_kb) / connections, 2) if connections else 0.0,
        "threads_before": before.threads,
        "threads_after": after.threads,
    }


class Session:
    """A fresh server for `target`, a client pool and a publisher; warmed up on entry, all stopped on exit.

    Warm-up: one subscriber (group `warmup`, on the fan-out path) receives WARMUP_EVENTS events
    with negative seqs, so first-request costs (imports, database connection) fall outside the
    measurement and the memory baseline.
    """

    def __init__(self, target: Target, workdir: Path, processes: int, label: str) -> None:
        self.target = target
        self.workdir = workdir
        self.processes = processes
        self.label = label
        self.expected: Counter[str] = Counter()
        self.publish_seconds: list[float] = []
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> Session:
        try:
            log_path = self.workdir / f"{self.target.name}-{self.label}.log"
            self.server = self._stack.enter_context(
                ServerProcess(self.target.app, self.target.env(), log_path, self.target.ready_path)
            )
            self.target.probe(self.server.base_url)
            self.pool = self._stack.enter_context(ClientPool(HOST, self.server.port, self.processes))
            # httpx defaults (5 s timeouts) would turn a slow moment into a failed run: set them high.
            timeout = httpx.Timeout(30.0, connect=10.0)
            self.http = self._stack.enter_context(httpx.Client(base_url=self.server.base_url, timeout=timeout))
            self.connect("warmup", [self.target.fanout_path()])
            self.publish(range(-WARMUP_EVENTS, 0), 0.05, "all", {"warmup": 1})
            self.wait()
            self.publish_seconds.clear()
            self._cpu_start = (time.monotonic(), machine_cpu_seconds(), self._our_cpu_seconds())
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def connect(self, group: str, paths: list[str], workers: list[int] | None = None) -> ConnectResult:
        """Open one subscriber per path (on `workers`, default all); BenchError when any of them fails."""
        result = self.pool.connect(self.pool.subscriptions(group, paths), workers)
        if result.failures:
            reasons = Counter(reason for _, reason in result.failures).most_common(3)
            detail = "; ".join(f"{n}x {reason}" for reason, n in reasons)
            raise BenchError(
                f"{self.target.name}: {len(result.failures)} of {result.requested} {group} subscribers failed: {detail}"
            )
        self.server.check_alive()
        return result

    def publish(self, seqs: Iterable[int], interval: float, topic: str, receivers: dict[str, int]) -> dict[int, float]:
        """Publish one event per seq, `interval` seconds apart; `receivers` (group -> subscribers) must get each.

        Returns seq -> the time taken just before its request was sent.
        """
        sent: dict[int, float] = {}
        start = time.monotonic()
        for index, seq in enumerate(seqs):
            delay = start + index * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            sent_at = time.time()
            try:
                self.target.publish(self.http, {"seq": seq, "sent_at": sent_at, "topic": topic, "payload": PAYLOAD})
            except httpx.HTTPError as exc:
                raise BenchError(
                    f"{self.target.name}: publishing seq {seq} failed: {type(exc).__name__}: {exc}"
                ) from exc
            self.publish_seconds.append(time.time() - sent_at)
            sent[seq] = sent_at
        for group, count in receivers.items():
            self.expected[group] += count * len(sent)
        return sent

    def wait(self, timeout: float = DRAIN_TIMEOUT) -> bool:
        """Wait until every expected delivery has arrived (True) or `timeout` passed (False)."""
        deadline = time.monotonic() + timeout
        while True:
            counts = self.pool.counts()
            if all(counts[group] >= n for group, n in self.expected.items()):
                return True
            if time.monotonic() > deadline:
                log(
                    f"  deliveries still missing after {timeout:.0f} s: have {dict(counts)}, want {dict(self.expected)}"
                )
                return False
            time.sleep(0.1)

    def stats(self) -> ProcessStats:
        """The server's memory and threads now."""
        return self.server.stats()

    def _our_cpu_seconds(self) -> float:
        times = os.times()
        return times.user + times.system + sum(cpu_seconds(pid) for pid in [self.server.pid, *self.pool.pids])

    def background_cpu(self) -> dict[str, float]:
        """Share of one CPU (in %) used since the warm-up by processes other than the bench's (`other`)
        and stolen by the hypervisor (`steal`).

        Ratios stay fair when they are high, but noise grows: the report warns above BACKGROUND_WARN.
        """
        started, (machine, steal), ours = self._cpu_start
        elapsed = time.monotonic() - started
        machine_now, steal_now = machine_cpu_seconds()
        other = (machine_now - machine) - (self._our_cpu_seconds() - ours)
        if elapsed <= 0:
            return {"other": 0.0, "steal": 0.0}
        return {
            "other": round(max(other, 0.0) / elapsed * 100, 1),
            "steal": round((steal_now - steal) / elapsed * 100, 1),
        }

    def quiesce(self, least: float) -> float:
        """Sleep `least` seconds, then until the server is idle (at most QUIET_TIMEOUT); return the seconds waited.

        So a measurement never overlaps the server's work on a previous step (e.g. 5,000 disconnects).
        """
        started = time.monotonic()
        time.sleep(least)
        before = self.server.cpu_seconds()
        while True:
            time.sleep(QUIET_WINDOW)
            now = self.server.cpu_seconds()
            if now - before <= QUIET_CPU * QUIET_WINDOW or time.monotonic() - started > QUIET_TIMEOUT:
                return time.monotonic() - started
            before = now


def _broadcast(target: Target, plan: Plan, workdir: Path, processes: int, label: str) -> dict[str, Any]:
    """Open `plan.subscribers` streams that all receive every event, then publish `plan.events`."""
    with Session(target, workdir, processes, label) as session:
        session.quiesce(0)
        before = session.stats()
        connected = session.connect("sub", [target.fanout_path()] * plan.subscribers)
        log(f"  {connected.connected} subscribers connected in {connected.seconds:.2f} s")
        session.quiesce(plan.settle)
        after = session.stats()
        sent = session.publish(range(plan.events), plan.interval, "all", {"sub": plan.subscribers, "warmup": 1})
        session.wait()
        results = session.pool.collect()
        return {
            "plan": asdict(plan),
            "connect": connect_stats(connected),
            "server": memory_stats(before, after, connected.connected),
            "delivery": delivery_stats(results, "sub", sent),
            "publish_request_ms": summary_ms(session.publish_seconds),
            "background_cpu": session.background_cpu(),
        }


def fanout(target: Target, plan: Plan, workdir: Path, processes: int) -> dict[str, Any]:
    """N subscribers, M events published through the target's publish endpoint: latency and delivery."""
    return _broadcast(target, plan, workdir, processes, "fanout")


def capacity(target: Target, plan: Plan, workdir: Path, processes: int) -> dict[str, Any]:
    """N idle subscribers: connect time, memory per connection, threads; then a few events to prove they live."""
    return _broadcast(target, plan, workdir, processes, "capacity")


def selectivity(target: Target, plan: Plan, workdir: Path, processes: int) -> dict[str, Any]:
    """Latency to `subscribers` matching streams, alone and then beside `extras` streams that match nothing.

    Repeated `rounds` times (alone, connect the extras, crowded, close the extras), fewer (but at
    least MIN_ROUNDS) when the next round would end past `budget` seconds. The headline
    `slowdown_p99` is the median over rounds of each round's p99 ratio: a burst of background load
    spoils one round, not the result. Pooled figures over all rounds are reported beside it.
    """
    with Session(target, workdir, processes, "selectivity") as session:
        # The matching subscribers get a client process of their own, the extras the others, so the
        # client that times deliveries does the same work in both conditions.
        match_workers, extra_workers = [0], list(range(1, processes)) or [0]
        matching = session.connect("match", [target.match_path()] * plan.subscribers, match_workers)
        receivers = {"match": plan.subscribers, "warmup": 1}
        alone: dict[int, float] = {}
        crowded: dict[int, float] = {}
        rounds: list[dict[str, Any]] = []
        seq = 0
        started = time.monotonic()
        for number in range(1, plan.rounds + 1):
            elapsed = time.monotonic() - started
            if plan.budget and number > MIN_ROUNDS and elapsed + elapsed / (number - 1) > plan.budget:
                log(f"  stopping after {number - 1} rounds: another would pass the {plan.budget:.0f} s budget")
                break
            session.quiesce(plan.settle)
            alone_round = session.publish(range(seq, seq + plan.events), plan.interval, "hot", receivers)
            seq += plan.events
            session.wait()
            before = session.stats()
            extras = session.connect(f"extra-{number}", target.extra_paths(plan.extras), extra_workers)
            log(f"  round {number}: {extras.connected} non-matching subscribers connected in {extras.seconds:.2f} s")
            session.quiesce(plan.settle)
            after = session.stats()
            crowded_round = session.publish(range(seq, seq + plan.events), plan.interval, "hot", receivers)
            seq += plan.events
            session.wait()
            session.pool.close_group(f"extra-{number}")
            alone.update(alone_round)
            crowded.update(crowded_round)
            rounds.append(
                {
                    "connect_extras": connect_stats(extras),
                    "server": memory_stats(before, after, extras.connected),
                    "sent": (alone_round, crowded_round),
                }
            )
        results = session.pool.collect()
        leaked = sum(
            1
            for r in results.values()
            if r.group.startswith("extra-")
            for seq, _ in r.deliveries
            if seq in alone or seq in crowded
        )
        for entry in rounds:
            sent_alone, sent_crowded = entry.pop("sent")
            p99_alone = delivery_stats(results, "match", sent_alone)["latency_ms"]["p99"]
            p99_crowded = delivery_stats(results, "match", sent_crowded)["latency_ms"]["p99"]
            entry.update(p99_alone_ms=p99_alone, p99_with_extras_ms=p99_crowded)
            entry["slowdown_p99"] = round(p99_crowded / p99_alone, 3) if p99_alone else None
        stats_alone = delivery_stats(results, "match", alone)
        stats_crowded = delivery_stats(results, "match", crowded)

        def pooled(key: str) -> float | None:
            base = stats_alone["latency_ms"][key]
            return round(stats_crowded["latency_ms"][key] / base, 3) if base else None

        per_round = [r["slowdown_p99"] for r in rounds if r["slowdown_p99"] is not None]

        return {
            "plan": asdict(plan),
            "connect_matching": connect_stats(matching),
            "connect_extras": rounds[0]["connect_extras"],
            "server": rounds[0]["server"],
            "rounds": rounds,
            "alone": stats_alone,
            "with_extras": stats_crowded,
            "leaked_to_extras": leaked,
            "slowdown_p99": round(statistics.median(per_round), 3) if per_round else None,
            "slowdown_p99_pooled": pooled("p99"),
            "slowdown_p50_pooled": pooled("p50"),
            "publish_request_ms": summary_ms(session.publish_seconds),
            "background_cpu": session.background_cpu(),
        }


WORKLOADS: dict[str, Callable[[Target, Plan, Path, int], dict[str, Any]]] = {
    "fanout": fanout,
    "capacity": capacity,
    "selectivity": selectivity,
}
