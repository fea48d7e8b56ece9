"""Every workload of `python -m bench` by name, with its full and quick sizes.

A workload takes one target and returns its metrics; an ALTERNATING one takes every target at once
and returns, per target name, its metrics or the BenchError that stopped it. Latency verdicts pool
at least MIN_ROUNDS rounds, so every round-based workload runs that many, quick ones too.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from bench.workloads import MIN_ROUNDS, Plan, capacity, fanout, selectivity
from bench.writes import write_latency, write_sustained, write_throughput

FULL: dict[str, Plan] = {
    "fanout": Plan(subscribers=1000, events=30, interval=0.1, rounds=MIN_ROUNDS),
    "fanout_5000": Plan(subscribers=5000, events=30, interval=0.1, settle=2.0, rounds=MIN_ROUNDS),
    "capacity": Plan(subscribers=5000, events=3, interval=0.25, settle=2.0, rounds=MIN_ROUNDS),
    "selectivity": Plan(subscribers=10, events=400, interval=0.01, extras=5000, rounds=5, budget=180.0),
    "write_latency": Plan(subscribers=1, events=200, interval=0.05, rounds=MIN_ROUNDS),
    "write_throughput": Plan(subscribers=1000, events=0, interval=0.0, writers=8, duration=10.0, rounds=MIN_ROUNDS),
    "write_sustained": Plan(subscribers=1, events=0, interval=0.0, writers=1, duration=5.0, rounds=MIN_ROUNDS),
}
QUICK: dict[str, Plan] = {
    "fanout": Plan(subscribers=50, events=5, interval=0.05, settle=0.5, rounds=MIN_ROUNDS),
    "fanout_5000": Plan(subscribers=200, events=5, interval=0.05, settle=0.5, rounds=MIN_ROUNDS),
    "capacity": Plan(subscribers=200, events=3, interval=0.1, settle=0.5, rounds=MIN_ROUNDS),
    "selectivity": Plan(subscribers=10, events=20, interval=0.02, extras=200, settle=0.5, rounds=MIN_ROUNDS),
    "write_latency": Plan(subscribers=1, events=20, interval=0.05, settle=0.5, rounds=MIN_ROUNDS),
    "write_throughput": Plan(
        subscribers=50, events=0, interval=0.0, writers=4, duration=5 / MIN_ROUNDS, settle=0.5, rounds=MIN_ROUNDS
    ),
    "write_sustained": Plan(
        subscribers=1, events=0, interval=0.0, writers=1, duration=3 / MIN_ROUNDS, settle=0.5, rounds=MIN_ROUNDS
    ),
}

WORKLOADS: dict[str, Callable[..., Any]] = {
    "fanout": fanout,
    "fanout_5000": partial(fanout, label="fanout_5000"),
    "capacity": capacity,
    "selectivity": selectivity,
    "write_latency": write_latency,
    "write_throughput": write_throughput,
    "write_sustained": write_sustained,
}
ALTERNATING = frozenset({"fanout", "fanout_5000", "capacity", "write_latency", "write_throughput", "write_sustained"})
