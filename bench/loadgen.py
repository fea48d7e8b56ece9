"""Client side of the benchmark: worker processes that hold many SSE subscriptions and time each delivery.

Each worker runs one asyncio loop (uvloop when installed) and speaks HTTP/1.1 over raw sockets,
so the client costs as little CPU per delivery as possible and no library default (timeouts,
connection pools) gets in the way. Sockets are bound to several 127.x.y.z source addresses with
IP_BIND_ADDRESS_NO_PORT, so ephemeral ports are taken per destination and never run out.

The main process drives the workers through `ClientPool`: every command goes to all workers over a
pipe and waits (with a timeout) for all their answers. A delivery is `(seq, receipt time)`, where
`seq` is read from the event's `data` and the time is `time.time()` when its bytes arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import math
import multiprocessing
import multiprocessing.connection
import os
import re
import resource
import signal
import socket
import sys
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

SEQ_RE = re.compile(rb'"seq":\s*(-?\d+)')
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
MAX_HEAD = 65536


class BenchError(Exception):
    """A benchmark step failed; the message says what and where."""


@dataclass(frozen=True)
class Subscription:
    """One SSE subscriber to open: `group` names it in results, `path` includes the query string."""

    sub_id: int
    group: str
    path: str


@dataclass
class SubscriberResult:
    """What one subscriber saw: deliveries `(seq, receipt time)`, other events, and why its stream ended early."""

    group: str
    deliveries: list[tuple[int, float]]
    other_events: int
    ended: str | None


HISTOGRAM_BINS_PER_SECOND = 10_000  # latency histograms count deliveries in 0.1 ms bins


@dataclass
class DeliverySummary:
    """Deliveries of a set of events to a group of subscribers, without the deliveries themselves.

    `histogram` counts first receipts by latency bin (bin k: k/HISTOGRAM_BINS_PER_SECOND seconds and
    up to the next bin), so `delivered` is its total and percentiles are exact to one bin. Summaries
    of disjoint event sets (rounds) add up.
    """

    subscribers: int = 0
    expected: int = 0
    duplicates: int = 0
    ended_early: int = 0
    ended_reasons: set[str] = field(default_factory=set)
    histogram: Counter[int] = field(default_factory=Counter)

    @property
    def delivered(self) -> int:
        """First receipts of the events (duplicates not counted)."""
        return sum(self.histogram.values())

    def __iadd__(self, more: DeliverySummary) -> DeliverySummary:
        self.subscribers += more.subscribers
        self.expected += more.expected
        self.duplicates += more.duplicates
        self.ended_early += more.ended_early
        self.ended_reasons |= more.ended_reasons
        self.histogram.update(more.histogram)
        return self

    def percentile_seconds(self, p: float) -> float:
        """Nearest-rank percentile `p` of the latencies (the middle of its bin; 0 when nothing arrived)."""
        total = self.delivered
        if not total:
            return 0.0
        rank, seen = max(1, math.ceil(p / 100 * total)), 0
        for bin_, count in sorted(self.histogram.items()):
            seen += count
            if seen >= rank:
                return (bin_ + 0.5) / HISTOGRAM_BINS_PER_SECOND
        raise AssertionError("unreachable: the ranks add up to the total")


@dataclass
class ConnectResult:
    """Outcome of opening a batch of subscriptions: counts, wall time from the order to the last `connected`."""

    requested: int
    connected: int
    seconds: float
    failures: list[tuple[int, str]] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Connections per second."""
        return self.connected / self.seconds if self.seconds > 0 else 0.0


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask Linux to send `sig` to this process when its parent dies, so nothing outlives a killed bench."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, sig)  # 1 = PR_SET_PDEATHSIG


def raise_fd_limit() -> None:
    """Raise the soft limit on open files to the hard limit (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# --- worker side --------------------------------------------------------------------------------


class StreamRefused(Exception):
    """The server answered the subscription with something other than a 200 event stream."""


class SSEClient(asyncio.Protocol):
    """One subscription: parses the HTTP/1.1 response head, de-chunks the body and splits SSE events."""

    def __init__(self, request: bytes, group: str, counts: Counter[str]) -> None:
        self.request = request
        self.group = group
        self.counts = counts  # the worker's delivery counters, per group, read by the main process
        self.ready: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.seqs = array("q")  # deliveries: seqs[i] arrived at times[i]; 16 bytes each, so millions fit
        self.times = array("d")
        self.other_events = 0
        self.ended: str | None = None
        self.closing = False
        self.transport: asyncio.Transport | None = None
        self._head = b""
        self._in_body = False
        self._chunked = False
        self._raw = b""
        self._sse = b""
        self._error: tuple[int, int] | None = None  # (status, content-length) of a refusal being read

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._error is not None:
            self._refuse()
        if not self.closing and self.ended is None:
            self.ended = f"connection lost ({exc!r})" if exc else "closed by the server"
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"connection closed before `connected`: {self.ended}"))

    @property
    def deliveries(self) -> list[tuple[int, float]]:
        """Every delivery so far as `(seq, receipt time)`, in arrival order."""
        return list(zip(self.seqs, self.times, strict=True))

    def close(self) -> None:
        """Close from the client side (not counted as an early end)."""
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        now = time.time()  # one clock read per packet: every event in it arrived at this moment
        if not self._in_body:
            data = self._read_head(data)
            if not self._in_body:
                return
        if self.closing:
            return
        if self._error is not None:
            self._raw += data
            if len(self._raw) >= self._error[1] or (self._chunked and self._raw.endswith(b"0\r\n\r\n")):
                self._refuse()
            return
        payload = self._dechunk(data) if self._chunked else data
        if payload:
            self._feed(payload, now)

    def _read_head(self, data: bytes) -> bytes:
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > MAX_HEAD:
                self._fail("response head too long")
            return b""
        head, rest = self._head[:end].decode("latin-1"), self._head[end + 4 :]
        self._head, self._in_body = b"", True
        status_line, *lines = head.split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
        parts = status_line.split(" ", 2)
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        self._chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        if status != 200:
            length = headers.get("content-length", "")
            self._error = (status, int(length) if length.isdigit() else 2000)
        elif not headers.get("content-type", "").startswith("text/event-stream"):
            self._fail(f"HTTP 200 with Content-Type {headers.get('content-type')!r}, not text/event-stream")
        return rest

    def _refuse(self) -> None:
        assert self._error is not None
        status, _ = self._error
        body = self._raw.decode("utf-8", "replace")[:300]
        self._error = None
        self._fail(f"HTTP {status}: {body}", StreamRefused)

    def _fail(self, message: str, kind: type[Exception] = ConnectionError) -> None:
        if not self.ready.done():
            self.ready.set_exception(kind(message))
        self.ended = self.ended or message
        self.close()

    def _dechunk(self, data: bytes) -> bytes:
        self._raw += data
        out = []
        while True:
            line_end = self._raw.find(b"\r\n")
            if line_end < 0:
                break
            size = int(self._raw[:line_end].split(b";", 1)[0] or b"0", 16)
            if size == 0:
                self.ended = self.ended or "stream ended by the server"
                self._raw = b""
                break
            start = line_end + 2
            if len(self._raw) < start + size + 2:
                break  # the rest of this chunk is still in flight
            out.append(self._raw[start : start + size])
            self._raw = self._raw[start + size + 2 :]
        return b"".join(out)

    def _feed(self, payload: bytes, now: float) -> None:
        self._sse += payload
        if b"\r" in self._sse:
            self._sse = self._sse.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        *blocks, self._sse = self._sse.split(b"\n\n")
        for block in blocks:
            event_type, data = b"message", []
            for line in block.split(b"\n"):
                if line.startswith(b"data:"):
                    data.append(line[5:])
                elif line.startswith(b"event:"):
                    event_type = line[6:].strip()
            if not data:
                continue  # a comment (`: ping`) or a `retry:` alone
            if event_type == b"connected":
                if not self.ready.done():
                    self.ready.set_result(now)
                continue
            match = SEQ_RE.search(b"\n".join(data))
            if match:
                self.seqs.append(int(match[1]))
                self.times.append(now)
                self.counts[self.group] += 1
            else:
                self.other_events += 1


class Worker:
    """The state of one worker process: its subscriptions and its source addresses."""

    def __init__(self, host: str, port: int, sources: list[str], concurrency: int, connect_timeout: float) -> None:
        self.host, self.port = host, port
        self.sources = sources
        self.concurrency = concurrency
        self.connect_timeout = connect_timeout
        self.clients: dict[int, SSEClient] = {}
        self.counts: Counter[str] = Counter()
        self.opened = 0

    async def _open(self, sub: Subscription, source: str) -> float:
        """Connect, send the request and wait for `connected`; return when it arrived."""
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)  # the port is chosen at connect()
            sock.bind((source, 0))
            await loop.sock_connect(sock, (self.host, self.port))
        except BaseException:
            sock.close()
            raise
        request = (
            f"GET {sub.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            "Accept: text/event-stream\r\nCache-Control: no-cache\r\nUser-Agent: fastcms-bench\r\n\r\n"
        ).encode()
        client = SSEClient(request, sub.group, self.counts)
        self.clients[sub.sub_id] = client
        await loop.create_connection(lambda: client, sock=sock)
        return await client.ready

    async def connect(self, subs: list[Subscription]) -> dict[str, Any]:
        """Open `subs` (at most `concurrency` handshakes at a time); report failures and the last `connected` time."""
        gate = asyncio.Semaphore(self.concurrency)
        failures: list[tuple[int, str]] = []
        last = 0.0

        async def one(sub: Subscription, source: str) -> None:
            nonlocal last
            async with gate:
                try:
                    connected = await asyncio.wait_for(self._open(sub, source), self.connect_timeout)
                except Exception as exc:  # every failure is reported, none stops the others
                    if isinstance(exc, asyncio.TimeoutError):
                        reason = f"no `connected` event within {self.connect_timeout:.0f} s"
                    else:
                        reason = str(exc) if isinstance(exc, StreamRefused) else f"{type(exc).__name__}: {exc}"
                    failures.append((sub.sub_id, reason))
                    client = self.clients.pop(sub.sub_id, None)
                    if client is not None:
                        client.close()
                else:
                    last = max(last, connected)

        start = self.opened
        self.opened += len(subs)
        await asyncio.gather(*(one(s, self.sources[(start + i) % len(self.sources)]) for i, s in enumerate(subs)))
        gc.collect()
        gc.freeze()  # the subscriptions live to the end: keep the client's collector from scanning them again
        return {"connected": len(subs) - len(failures), "failures": failures, "last": last}

    def close_group(self, group: str) -> int:
        """Close the subscriptions of `group` (their results stay for `collect`); return how many."""
        clients = [c for c in self.clients.values() if c.group == group and not c.closing]
        for client in clients:
            client.close()
        return len(clients)

    def collect(self) -> dict[int, SubscriberResult]:
        """Every subscriber's deliveries so far."""
        return {
            sub_id: SubscriberResult(c.group, list(c.deliveries), c.other_events, c.ended)
            for sub_id, c in self.clients.items()
        }

    def summarize(self, group: str, sent: dict[int, float]) -> DeliverySummary:
        """The deliveries of the events in `sent` (seq -> send time) to the subscribers of `group`, as counts
        and a latency histogram (so millions of deliveries cross the pipe as a few kilobytes)."""
        summary = DeliverySummary()
        for client in self.clients.values():
            if client.group != group:
                continue
            summary.subscribers += 1
            summary.expected += len(sent)
            if client.ended:
                summary.ended_early += 1
                summary.ended_reasons.add(client.ended)
            seen: set[int] = set()
            for seq, received in zip(client.seqs, client.times, strict=True):
                at = sent.get(seq)
                if at is None:
                    continue
                if seq in seen:
                    summary.duplicates += 1
                    continue
                seen.add(seq)
                summary.histogram[max(0, int((received - at) * HISTOGRAM_BINS_PER_SECOND))] += 1
        return summary

    def close(self) -> None:
        """Close every subscription."""
        for client in self.clients.values():
            client.close()


async def _worker_loop(conn: multiprocessing.connection.Connection, worker: Worker) -> None:
    loop = asyncio.get_running_loop()
    while True:
        # recv() in a thread: the loop may not own the pipe (uvloop makes fds it watches non-blocking,
        # and a big command then arrives in pieces that Connection.recv cannot resume).
        try:
            command, *args = await loop.run_in_executor(None, conn.recv)
        except (EOFError, OSError):
            command, args = "close", []  # the main process is gone
        if command == "connect":
            conn.send(await worker.connect(args[0]))
        elif command == "counts":
            conn.send(dict(worker.counts))
        elif command == "close_group":
            conn.send(worker.close_group(args[0]))
        elif command == "collect":
            conn.send(worker.collect())
        elif command == "nice":
            try:
                conn.send(os.nice(args[0]))  # this thread: the one that reads every subscription
            except OSError:  # a sandbox that forbids it: the caller says so and goes on
                conn.send(None)
        elif command == "summarize":
            conn.send(worker.summarize(*args))
        elif command == "close":
            worker.close()
            await asyncio.sleep(0.2)  # let the FINs go out before the loop closes the transports
            with contextlib.suppress(OSError):
                conn.send("closed")
            return


def worker_main(
    conn: multiprocessing.connection.Connection,
    host: str,
    port: int,
    sources: list[str],
    concurrency: int,
    connect_timeout: float,
) -> None:
    """Entry point of a worker process: serve commands from `conn` until `close`."""
    die_with_parent()
    raise_fd_limit()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle; it closes us
    worker = Worker(host, port, sources, concurrency, connect_timeout)
    try:
        import uvloop  # optional (uvicorn[standard] brings it): a cheaper client, less noise in the numbers

        uvloop.run(_worker_loop(conn, worker))
    except ImportError:
        asyncio.run(_worker_loop(conn, worker))


# --- main side ----------------------------------------------------------------------------------


class ClientPool:
    """`processes` worker processes that subscribe to one server; use it as a context manager.

    Subscriptions are dealt round-robin. Worker `w` binds its sockets to 127.0.<w+1>.1-8.
    """

    def __init__(
        self,
        host: str,
        port: int,
        processes: int,
        *,
        concurrency: int = 64,
        connect_timeout: float = 60.0,
        sources_per_process: int = 8,
    ) -> None:
        self.host, self.port = host, port
        self.processes = processes
        self.concurrency = concurrency
        self.connect_timeout = connect_timeout
        self.sources_per_process = sources_per_process
        self._workers: list[tuple[multiprocessing.process.BaseProcess, multiprocessing.connection.Connection]] = []
        self._next_id = 0

    def __enter__(self) -> ClientPool:
        context = multiprocessing.get_context("spawn")  # a clean interpreter: no inherited sockets or state
        try:
            for w in range(self.processes):
                ours, theirs = context.Pipe()
                sources = [f"127.0.{w + 1}.{i + 1}" for i in range(self.sources_per_process)]
                args = (theirs, self.host, self.port, sources, self.concurrency, self.connect_timeout)
                process = context.Process(target=worker_main, args=args, name=f"bench-client-{w}", daemon=True)
                process.start()
                theirs.close()
                self._workers.append((process, ours))
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _ask(self, messages: list[tuple[Any, ...]], timeout: float) -> list[Any]:
        for (_, conn), message in zip(self._workers, messages, strict=True):
            conn.send(message)
        deadline = time.monotonic() + timeout
        answers = []
        for index, (process, conn) in enumerate(self._workers):
            while not conn.poll(0.2):
                if not process.is_alive():
                    raise BenchError(
                        f"client worker {index} died (exit code {process.exitcode}) during {messages[0][0]}"
                    )
                if time.monotonic() > deadline:
                    raise BenchError(f"client worker {index} did not answer {messages[0][0]!r} within {timeout:.0f} s")
            answers.append(conn.recv())
        return answers

    def subscriptions(self, group: str, paths: list[str]) -> list[Subscription]:
        """New subscriptions of `group`, one per path, with ids unique in this pool."""
        subs = [Subscription(self._next_id + i, group, path) for i, path in enumerate(paths)]
        self._next_id += len(subs)
        return subs

    @property
    def pids(self) -> list[int]:
        """Process ids of the workers."""
        return [process.pid for process, _ in self._workers if process.pid is not None]

    def connect(
        self, subs: list[Subscription], workers: list[int] | None = None, timeout: float = 300.0
    ) -> ConnectResult:
        """Open `subs` across `workers` (default: all); time runs from the order to the last `connected` received."""
        chosen = workers or list(range(self.processes))
        shares: list[list[Subscription]] = [[] for _ in range(self.processes)]
        for index, sub in enumerate(subs):
            shares[chosen[index % len(chosen)]].append(sub)
        start = time.time()
        answers = self._ask([("connect", share) for share in shares], timeout)
        failures = [f for answer in answers for f in answer["failures"]]
        last = max((answer["last"] for answer in answers), default=start)
        return ConnectResult(len(subs), len(subs) - len(failures), max(last - start, 0.0), failures)

    def counts(self, timeout: float = 30.0) -> Counter[str]:
        """Deliveries received so far, per group (all workers together)."""
        total: Counter[str] = Counter()
        for answer in self._ask([("counts",)] * self.processes, timeout):
            total.update(answer)
        return total

    def close_group(self, group: str, timeout: float = 60.0) -> int:
        """Close every subscription of `group`; return how many were open."""
        return sum(self._ask([("close_group", group)] * self.processes, timeout))

    def summarize(self, group: str, sent: dict[int, float], timeout: float = 120.0) -> DeliverySummary:
        """Deliveries of the events in `sent` to the subscribers of `group`, summed over every worker."""
        total = DeliverySummary()
        for answer in self._ask([("summarize", group, sent)] * self.processes, timeout):
            total += answer
        return total

    def lower_priority(self, increment: int, timeout: float = 30.0) -> list[int | None]:
        """Make the workers' reading `increment` nice levels kinder to other processes; their new
        levels (None for a worker the system did not let change it).

        A server under test must not wait for the CPU while its own subscribers read: on a machine
        it shares with them, a burst of reads after a round of writes takes both cores."""
        return self._ask([("nice", increment)] * self.processes, timeout)

    def collect(self, timeout: float = 120.0) -> dict[int, SubscriberResult]:
        """Every subscriber's result, by subscription id."""
        results: dict[int, SubscriberResult] = {}
        for answer in self._ask([("collect",)] * self.processes, timeout):
            results.update(answer)
        return results

    def close(self) -> None:
        """Close every subscription and stop the workers; kills any worker that does not stop in time."""
        for process, conn in self._workers:
            with contextlib.suppress(OSError, ValueError):
                if process.is_alive():
                    conn.send(("close",))
        deadline = time.monotonic() + 10
        for process, conn in self._workers:
            process.join(max(deadline - time.monotonic(), 0.1))
            if process.is_alive():
                process.kill()
                process.join(5)
            conn.close()
        self._workers = []
