"""The real-time workloads of the performance targets (fan-out, capacity, selectivity), and what every
workload shares: sessions (a fresh server, client workers, a publisher), CPU meters, delivery
statistics and `alternate`, the rounds of an ALTERNATING workload (the write workloads are in
`bench.writes`; `bench.catalog` names them all with their sizes).

Selectivity runs against one target at a time. Fan-out and capacity run against every target at
once (ALTERNATING) in rounds that alternate between the targets (only one target is measured at a
time), so a burst of background load lands on both alike: fan-out keeps each target's server and
subscribers across its rounds (`alternate`), capacity starts fresh servers for every round.

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
from abc import ABC, abstractmethod
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
CLOSE_TIMEOUT = 30.0  # seconds the server gets to close its side of connections the client closed
MIN_ROUNDS = 3


@dataclass(frozen=True)
class Plan:
    """Sizes of one workload. Selectivity: `subscribers` match, `extras` do not. Writes: `writers`, `duration`."""

    subscribers: int
    events: int
    interval: float  # seconds between publishes
    extras: int = 0
    settle: float = 1.0  # least seconds of idling before reading the server's memory or publishing
    rounds: int = 1  # selectivity: alone/crowded pairs; the others: rounds per target, alternating targets
    budget: float = 0.0  # selectivity: seconds after which no new round starts once MIN_ROUNDS are done (0: none)
    writers: int = 0  # write_throughput: concurrent keep-alive writers
    duration: float = 0.0  # write_throughput: seconds of writing per round


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


@dataclass
class CpuWindow:
    """CPU seconds used by processes other than the bench's (`other`), stolen by the hypervisor
    (`steal`), used by the bench's own processes, server included (`bench`), and by every process
    (`busy`) over `elapsed` wall seconds; windows add up, so rounds can be pooled."""

    elapsed: float = 0.0
    other: float = 0.0
    steal: float = 0.0
    bench: float = 0.0
    busy: float = 0.0

    def __add__(self, more: CpuWindow) -> CpuWindow:
        return CpuWindow(
            self.elapsed + more.elapsed,
            self.other + more.other,
            self.steal + more.steal,
            self.bench + more.bench,
            self.busy + more.busy,
        )

    def percent(self) -> dict[str, float]:
        """`other` and `steal` as % of one CPU (what the report shows and warns about above BACKGROUND_WARN)."""
        if self.elapsed <= 0:
            return {"other": 0.0, "steal": 0.0}
        return {
            "other": round(max(self.other, 0.0) / self.elapsed * 100, 1),
            "steal": round(max(self.steal, 0.0) / self.elapsed * 100, 1),
        }

    def machine_busy_percent(self) -> float:
        """How busy the machine was: CPU time used by every process, as % of all its CPUs' time."""
        cpus = os.cpu_count() or 1
        return round(self.busy / (self.elapsed * cpus) * 100, 1) if self.elapsed > 0 else 0.0


class CpuMeter:
    """Measures a CpuWindow from its creation; `pids` lists the bench's own processes besides this one."""

    def __init__(self, pids: Callable[[], Iterable[int]]) -> None:
        self._pids = pids
        self._start = self._read()

    def _read(self) -> tuple[float, float, float, float]:
        times = os.times()
        ours = times.user + times.system + sum(cpu_seconds(pid) for pid in self._pids())
        return (time.monotonic(), *machine_cpu_seconds(), ours)

    def window(self) -> CpuWindow:
        """Since the meter was created."""
        started, machine, steal, ours = self._start
        now, machine_now, steal_now, ours_now = self._read()
        busy, bench = machine_now - machine, ours_now - ours
        return CpuWindow(now - started, busy - bench, steal_now - steal, bench, busy)


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
            self._meter = CpuMeter(self.pids)
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def close(self) -> None:
        """Stop the publisher, the client workers and the server (what leaving the `with` does); idempotent."""
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

    def wait(self, timeout: float = DRAIN_TIMEOUT, stall: float | None = None) -> bool:
        """Wait until every expected delivery has arrived (True) or `timeout` passed (False); with `stall`,
        also give up (False) once no delivery arrived for `stall` seconds."""
        started = time.monotonic()
        deadline = started + timeout
        total, progress = -1, started
        while True:
            counts = self.pool.counts()
            if all(counts[group] >= n for group, n in self.expected.items()):
                return True
            now = time.monotonic()
            if sum(counts.values()) != total:
                total, progress = sum(counts.values()), now
            if now > deadline or (stall is not None and now - progress > stall):
                log(
                    f"  deliveries still missing after {now - started:.0f} s: have {dict(counts)}, "
                    f"want {dict(self.expected)}"
                )
                return False
            time.sleep(0.1)

    def wait_closed(self, held: int, timeout: float = CLOSE_TIMEOUT) -> int:
        """After the client closed subscribers, wait until the server holds at most `held` client connections.

        Returns how many more it still held when `timeout` passed (0: it closed its side of them all).
        """
        deadline = time.monotonic() + timeout
        while True:
            extra = self.server.held_connections() - held
            if extra <= 0:
                return 0
            if time.monotonic() > deadline:
                return extra
            time.sleep(0.1)

    def stats(self) -> ProcessStats:
        """The server's memory and threads now."""
        return self.server.stats()

    def pids(self) -> list[int]:
        """The server's and the client workers' process ids."""
        return [self.server.pid, *self.pool.pids]

    def background_cpu(self) -> dict[str, float]:
        """Share of one CPU (in %) used since the warm-up by processes other than the bench's (`other`)
        and stolen by the hypervisor (`steal`).

        Ratios stay fair when they are high, but noise grows: the report warns above BACKGROUND_WARN.
        """
        return self._meter.window().percent()

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


class AlternatingSide(ABC):
    """One target's part of an ALTERNATING workload: its session (server, clients, subscribers) and its rounds.

    `alternate` opens every target's side first, then runs round 1 of each in turn, round 2 of each,
    and so on; each round appends its background CPU window to `windows`.
    """

    def __init__(self, target: Target, label: str) -> None:
        self.target = target
        self.label = label
        self.session: Session | None = None
        self.windows: list[CpuWindow] = []
        self._stack = contextlib.ExitStack()

    def open(self, plan: Plan, workdir: Path, processes: int) -> None:
        """Start the server (a Session), then `prepare`."""
        self.session = self._stack.enter_context(Session(self.target, workdir, processes, self.label))
        self.prepare(plan)

    @abstractmethod
    def prepare(self, plan: Plan) -> None:
        """Set up what every round needs (subscribers, ...) on the started session."""

    @abstractmethod
    def run_round(self, plan: Plan, pids: Callable[[], Iterable[int]]) -> str:
        """Measure one round, append its background CPU window to `windows`; return a line for the log."""

    @abstractmethod
    def result(self, plan: Plan) -> dict[str, Any]:
        """This target's figures over every round (JSON-ready); must include `rounds` and `background_cpu`."""

    def pids(self) -> list[int]:
        return self.session.pids() if self.session is not None else []

    def quiesce(self, least: float) -> None:
        """Session.quiesce: wait until this target's server is idle."""
        assert self.session is not None
        self.session.quiesce(least)

    def close(self) -> None:
        self._stack.close()


def alternate(
    make_side: Callable[[Target], AlternatingSide], targets: list[Target], plan: Plan, workdir: Path, processes: int
) -> dict[str, dict[str, Any] | BenchError]:
    """Run an ALTERNATING workload: every target's side opened first and kept, then `plan.rounds` rounds of
    each target in turn (the others idle, and let go idle before each round). A target that fails drops
    out with its error (its processes stopped at once); the others go on. Returns, per target name, its
    metrics or its error."""
    outcome: dict[str, dict[str, Any] | BenchError] = {}
    sides: list[AlternatingSide] = []

    def drop(side: AlternatingSide, exc: BenchError) -> None:
        log(f"  [{side.target.name}] {side.label} failed, dropping out after {len(side.windows)} rounds: {exc}")
        outcome[side.target.name] = exc
        sides.remove(side)
        side.close()

    def pids() -> list[int]:
        return [pid for side in sides for pid in side.pids()]

    try:
        for target in targets:
            side = make_side(target)
            sides.append(side)
            try:
                side.open(plan, workdir, processes)
            except BenchError as exc:
                drop(side, exc)
        for number in range(1, plan.rounds + 1):
            for side in list(sides):
                if side not in sides:
                    continue  # dropped while another target was being measured
                for other in [s for s in sides if s is not side]:
                    try:
                        other.quiesce(0)
                    except BenchError as exc:
                        drop(other, exc)
                try:
                    side.quiesce(plan.settle)
                    line = side.run_round(plan, pids)
                except BenchError as exc:
                    drop(side, exc)
                    continue
                window = side.windows[-1].percent()
                log(
                    f"  round {number} [{side.target.name}]: {line}, CPU used by others "
                    f"{window['other']:.0f}%, stolen {window['steal']:.0f}%"
                )
        for side in list(sides):
            try:
                outcome[side.target.name] = side.result(plan)
            except BenchError as exc:
                outcome[side.target.name] = exc
    finally:
        for side in sides:
            side.close()
    return {target.name: outcome[target.name] for target in targets}


class _FanoutSide(AlternatingSide):
    """Fan-out: `plan.subscribers` streams kept across rounds; each round publishes `plan.events` events."""

    def __init__(self, target: Target, label: str) -> None:
        super().__init__(target, label)
        self.sent: list[dict[int, float]] = []  # per round: seq -> send time

    def prepare(self, plan: Plan) -> None:
        """Connect `plan.subscribers` fan-out streams; memory before and after."""
        assert self.session is not None
        session = self.session
        session.quiesce(0)
        self.before = session.stats()
        self.connected = session.connect("sub", [self.target.fanout_path()] * plan.subscribers)
        connected = self.connected
        log(f"  [{self.target.name}] {connected.connected} subscribers connected in {connected.seconds:.2f} s")
        session.quiesce(plan.settle)
        self.after = session.stats()

    def run_round(self, plan: Plan, pids: Callable[[], Iterable[int]]) -> str:
        """Publish the next `plan.events` events (seqs continue across rounds) and wait for their deliveries."""
        assert self.session is not None
        first = len(self.sent) * plan.events
        meter = CpuMeter(pids)
        sent = self.session.publish(
            range(first, first + plan.events), plan.interval, "all", {"sub": plan.subscribers, "warmup": 1}
        )
        self.session.wait()
        self.windows.append(meter.window())
        self.sent.append(sent)
        return f"{plan.events} events published"

    def result(self, plan: Plan) -> dict[str, Any]:
        """Pooled delivery over every round, and each round's latency and background CPU."""
        assert self.session is not None
        results = self.session.pool.collect()
        rounds = []
        for number, (sent, window) in enumerate(zip(self.sent, self.windows, strict=True), 1):
            stats = delivery_stats(results, "sub", sent)
            rounds.append(
                {
                    "round": number,
                    "delivered": stats["delivered"],
                    "expected": stats["expected"],
                    "latency_ms": stats["latency_ms"],
                    "background_cpu": window.percent(),
                }
            )
        everything = {seq: at for sent in self.sent for seq, at in sent.items()}
        return {
            "plan": asdict(plan),
            "connect": connect_stats(self.connected),
            "server": memory_stats(self.before, self.after, self.connected.connected),
            "delivery": delivery_stats(results, "sub", everything),
            "rounds": rounds,
            "publish_request_ms": summary_ms(self.session.publish_seconds),
            "background_cpu": sum(self.windows, CpuWindow()).percent(),
        }


def fanout(
    targets: list[Target], plan: Plan, workdir: Path, processes: int, label: str = "fanout"
) -> dict[str, dict[str, Any] | BenchError]:
    """N subscribers per target; R rounds of M events, alternating between the targets: latency and delivery.

    Every target gets its own server and subscribers, all started first and kept across rounds; then
    round 1 of each target in turn, round 2 of each, and so on (`alternate`), so only one target's
    subscribers receive at a time (the others idle, connected) and a burst of background load hits
    both targets' rounds alike. The report compares the targets' p99 pooled over all rounds (the
    verdict) and round by round. Returns, per target name, its metrics or its error.
    """
    return alternate(lambda target: _FanoutSide(target, label), targets, plan, workdir, processes)


def _capacity_round(
    session: Session, plan: Plan, pids: Callable[[], Iterable[int]]
) -> tuple[dict[str, Any], CpuWindow]:
    """One capacity round on `session`'s fresh server: connect, memory and threads, a few events, disconnect.

    Returns the round's figures and the background CPU during the connect (the timed part). The
    subscribers are closed at the end and the server must close its side of them too (it may
    take up to CLOSE_TIMEOUT); any it still holds then are counted in `server_connections_left`.
    """
    target = session.target
    session.quiesce(0)
    held = session.server.held_connections()  # the warm-up stream
    before = session.stats()
    meter = CpuMeter(pids)
    connected = session.connect("sub", [target.fanout_path()] * plan.subscribers)
    window = meter.window()
    session.quiesce(plan.settle)
    after = session.stats()
    sent = session.publish(range(plan.events), plan.interval, "all", {"sub": plan.subscribers, "warmup": 1})
    session.wait()
    delivery = delivery_stats(session.pool.collect(), "sub", sent)
    session.pool.close_group("sub")
    left = session.wait_closed(held)
    return {
        "connect": connect_stats(connected),
        "server": memory_stats(before, after, connected.connected),
        "delivery": delivery,
        "server_connections_left": left,
        "publish_request_ms": summary_ms(session.publish_seconds),
        "background_cpu": window.percent(),
    }, window


def _capacity_result(plan: Plan, rounds: list[dict[str, Any]], windows: list[CpuWindow]) -> dict[str, Any]:
    """One target's capacity figures: its rounds, and medians (memory, threads, connect time) and totals over them."""
    median = statistics.median
    seconds = [r["connect"]["seconds"] for r in rounds]
    connected = sum(r["connect"]["connected"] for r in rounds)
    servers = [r["server"] for r in rounds]
    counts = ("subscribers", "expected", "delivered", "duplicates", "out_of_order", "ended_early")
    delivery: dict[str, Any] = {key: sum(r["delivery"][key] for r in rounds) for key in counts}
    expected = delivery["expected"]
    delivery["delivered_pct"] = round(100 * delivery["delivered"] / expected, 3) if expected else 100.0
    return {
        "plan": asdict(plan),
        "rounds": [{"round": number, **entry} for number, entry in enumerate(rounds, 1)],
        "connect": {
            "rounds": len(rounds),
            "connected": connected,
            "seconds_median": round(median(seconds), 3),
            "seconds_pooled": round(sum(seconds), 3),
            "per_second_median": round(median(r["connect"]["per_second"] for r in rounds), 1),
        },
        "server": {
            "kb_per_connection": round(median(s["kb_per_connection"] for s in servers), 2),
            # whole numbers: the median round's (the lower middle one of an even count)
            **{
                key: statistics.median_low(s[key] for s in servers)
                for key in ("rss_before_kb", "rss_after_kb", "threads_before", "threads_after")
            },
        },
        "server_connections_left": sum(r["server_connections_left"] for r in rounds),
        "delivery": delivery,
        "background_cpu": sum(windows, CpuWindow()).percent(),
    }


def capacity(
    targets: list[Target], plan: Plan, workdir: Path, processes: int
) -> dict[str, dict[str, Any] | BenchError]:
    """N idle subscribers per target and round: connect time, memory per connection, threads; a few events.

    R rounds, alternating between the targets: each round starts a fresh server (and client pool)
    for every target, then each target in turn, while the others sit idle, connects its N
    subscribers, has its memory and threads read once its server is idle, gets `plan.events`
    events, and closes them again (its server must close them too) before the next one starts.
    The servers are stopped at the end of the round. Fresh servers, because memory freed by the
    last round's disconnects stays in the process and would be reused by the next round's
    connections (measured: 24 KB per connection in round 1, -0.1 in round 2 on the same server).
    The report judges the pooled connect time (total over total) and shows each round's ratio beside it.
    A target that fails drops out with its error; the others go on. Returns, per target name,
    its metrics or its error.
    """
    outcome: dict[str, dict[str, Any] | BenchError] = {}
    live = list(targets)
    rounds: dict[str, list[dict[str, Any]]] = {t.name: [] for t in targets}
    windows: dict[str, list[CpuWindow]] = {t.name: [] for t in targets}
    sessions: dict[str, Session] = {}  # this round's, by target name

    def drop(target: Target, exc: BenchError) -> None:
        log(f"  [{target.name}] capacity failed, dropping out after {len(rounds[target.name])} rounds: {exc}")
        outcome[target.name] = exc
        live.remove(target)
        session = sessions.pop(target.name, None)
        if session is not None:
            session.close()

    def pids() -> list[int]:
        return [pid for session in sessions.values() for pid in session.pids()]

    for number in range(1, plan.rounds + 1):
        try:
            for target in list(live):
                try:
                    sessions[target.name] = Session(target, workdir, processes, "capacity").__enter__()
                except BenchError as exc:
                    drop(target, exc)
            for target in list(live):
                if target not in live:
                    continue  # dropped this round while another target was being measured
                for other in [t for t in live if t is not target]:
                    try:
                        sessions[other.name].quiesce(0)
                    except BenchError as exc:
                        drop(other, exc)
                try:
                    entry, window = _capacity_round(sessions[target.name], plan, pids)
                except BenchError as exc:
                    drop(target, exc)
                    continue
                rounds[target.name].append(entry)
                windows[target.name].append(window)
                cpu, connect = entry["background_cpu"], entry["connect"]
                log(
                    f"  round {number} [{target.name}]: {connect['connected']} subscribers connected in "
                    f"{connect['seconds']:.2f} s ({entry['server']['kb_per_connection']:.1f} KB each), "
                    f"CPU used by others {cpu['other']:.0f}%, stolen {cpu['steal']:.0f}%"
                )
                if entry["server_connections_left"]:
                    log(
                        f"  [{target.name}] the server still held {entry['server_connections_left']} connections "
                        f"{CLOSE_TIMEOUT:.0f} s after the subscribers closed them"
                    )
        finally:
            while sessions:
                sessions.popitem()[1].close()
    for target in live:
        outcome[target.name] = _capacity_result(plan, rounds[target.name], windows[target.name])
    return {target.name: outcome[target.name] for target in targets}


def selectivity(target: Target, plan: Plan, workdir: Path, processes: int) -> dict[str, Any]:
    """Latency to `subscribers` matching streams, alone and then beside `extras` streams that match nothing.

    Repeated `rounds` times (alone, connect the extras, crowded, close the extras), fewer (but at
    least MIN_ROUNDS) when the next round would end past `budget` seconds. The verdict's figure is
    `slowdown_p99_pooled`: the p99 over every round's deliveries with the extras over the p99 over
    every round's deliveries alone; `slowdown_p99`, the median of each round's ratio, goes beside it.
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
