"""Streams with new frames are woken together; costly rounds leave the loop time in between."""

from __future__ import annotations

import asyncio
import time

from realtime.flushing import BEHIND_EVENTS, BEHIND_HOLD, BEHIND_MAX_DELAY, MAX_DELAY, MEASURED_FROM, FlushGate


class Stream:
    def __init__(self, log: list[tuple[str, float]], name: str, cost: float = 0.0) -> None:
        self.log, self.name, self.cost = log, name, cost

    def wake(self) -> None:
        asyncio.get_running_loop().call_soon(self.write)  # as a woken task writes in its own step

    def write(self) -> None:
        time.sleep(self.cost)
        self.log.append((self.name, asyncio.get_running_loop().time()))


async def round_of(gate: FlushGate, streams: list[Stream]) -> None:
    for stream in streams:
        gate.add(stream)
    gate.schedule(asyncio.get_running_loop())


def test_cheap_rounds_wake_at_once_and_a_stream_once_per_round() -> None:
    async def run() -> list[tuple[str, float]]:
        log: list[tuple[str, float]] = []
        gate = FlushGate()
        a, b = Stream(log, "a"), Stream(log, "b")
        await round_of(gate, [a, b, a])
        await round_of(gate, [b])  # already scheduled: joins the same round
        await asyncio.sleep(0.01)
        await round_of(gate, [a])
        await asyncio.sleep(0.01)
        return log

    log = asyncio.run(run())
    assert [name for name, _ in log] == ["a", "b", "a", "b", "a"]


def test_a_costly_round_delays_the_next_by_its_own_duration_at_most_max_delay() -> None:
    async def run() -> tuple[float, float, float, float]:
        loop = asyncio.get_running_loop()
        log: list[tuple[str, float]] = []
        gate = FlushGate()
        many = [Stream(log, f"s{i}", cost=0.0002) for i in range(MEASURED_FROM)]
        started = loop.time()
        await round_of(gate, many)
        await asyncio.sleep(0)  # the round's writes, then the gate's measurement
        await asyncio.sleep(0)
        first_end = log[-1][1]
        opens = gate.next_round
        await round_of(gate, [Stream(log, "next")])
        await asyncio.sleep(MAX_DELAY + 0.01)
        assert log[-1][0] == "next"
        return started, first_end, opens, log[-1][1]

    started, first_end, opens, next_written = asyncio.run(run())
    assert opens - first_end >= (first_end - started) * 0.9  # the gate stays shut about as long as the round took
    assert next_written >= opens  # and the next round waited for it


def test_the_delay_is_capped() -> None:
    async def run() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        gate = FlushGate()
        gate._written(loop, started=loop.time() - 10)  # a round that took 10 s
        return gate.next_round, loop.time()

    opens, now = asyncio.run(run())
    assert opens <= now + MAX_DELAY


def test_a_round_of_several_events_holds_the_next_longer() -> None:
    async def run(events: int) -> tuple[float, float, float]:
        loop = asyncio.get_running_loop()
        log: list[tuple[str, float]] = []
        gate = FlushGate()
        many = [Stream(log, f"s{i}", cost=0.0002) for i in range(MEASURED_FROM)]
        for _ in range(events):  # events that queue frames before the round runs
            await round_of(gate, many)
        assert gate.events == events
        started = loop.time()
        await asyncio.sleep(0)  # the round's writes, then the gate's measurement
        await asyncio.sleep(0)
        assert len(log) == events * MEASURED_FROM  # a stream woken once per add: harmless, as in a real round
        return started, log[-1][1], gate.next_round

    started, end, opens = asyncio.run(run(BEHIND_EVENTS))
    took = end - started
    assert opens - end >= min(BEHIND_HOLD * took, BEHIND_MAX_DELAY) * 0.9
    assert opens - end <= BEHIND_MAX_DELAY + 0.01

    started, end, opens = asyncio.run(run(BEHIND_EVENTS - 1))  # not behind: the usual hold
    took = end - started
    assert opens - end <= min(took, MAX_DELAY) + 0.001


def test_events_that_queued_nothing_are_not_counted() -> None:
    async def run() -> int:
        gate = FlushGate()
        gate.schedule(asyncio.get_running_loop())  # an event no stream wanted
        await round_of(gate, [Stream([], "a")])
        return gate.events

    assert asyncio.run(run()) == 1


def test_wake_now_without_a_loop_wakes_everything() -> None:
    woken: list[str] = []

    class Plain:
        def wake(self) -> None:
            woken.append("x")

    gate = FlushGate()
    gate.add(Plain())
    gate.add(Plain())
    gate.wake_now()
    assert woken == ["x", "x"]
    assert gate.pending == []
