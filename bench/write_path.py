"""`python -m bench.write_path`: what the Redis backend's outbox costs a REST create, on PostgreSQL.

Runs one uvicorn worker at a time on one PostgreSQL database, alternating in rounds between
- `memory`: in-process delivery (no Redis, no outbox): the write path without the outbox;
- `outbox`: the Redis backend: the event row written in the create's transaction, relayed to
  Redis by the relay thread of the same worker, read back by its reader and delivered.
In each round one subscriber listens while CREATES records are created one after another,
PACE seconds apart, by one keep-alive client. Reported per target (medians over rounds): the
create's latency (p50, p99: client side, request sent to response read), create -> receipt by
the subscriber (p50, p99), and the worker's CPU time per create (user + system, from /proc, over
the whole round: request, relay, reader and delivery).

Needs PostgreSQL and Redis: `BENCH_DATABASE_URL` (default postgres://postgres@127.0.0.1:5432/
fastcms_bench_write, created if missing) and `BENCH_REDIS_URL` (default redis://127.0.0.1:6379/15).
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from bench.fastcms_setup import prepare_postgres, server_environment, setup_over_http
from bench.server import ServerProcess, cpu_seconds
from bench.workloads import percentile

DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/fastcms_bench_write")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
CREATES = int(os.environ.get("BENCH_CREATES", "200"))
PACE = 0.05
TARGETS = {"memory": {"REDIS_URL": ""}, "outbox": {"REDIS_URL": REDIS_URL}}
READY_PATH = "/api/v1/presence"


def environment(extra: dict[str, str]) -> dict[str, str]:
    return server_environment(DATABASE_URL, FASTCMS_REDIS_PREFIX="bench-write", **extra)


def prepare() -> str:
    """Create the database if missing, migrate it, create the staff user and (over HTTP) the collection; the token."""
    env = environment({"REDIS_URL": ""})
    prepare_postgres(env)
    log = Path(tempfile.gettempdir()) / "bench-write-setup.log"
    with ServerProcess("fastcms.asgi:application", env, log, READY_PATH) as server:
        return setup_over_http(server.base_url, ["bench"])


def run_round(name: str, token: str) -> dict[str, float]:
    """One server of target `name`: CREATES paced creates with one subscriber."""
    log = Path(tempfile.gettempdir()) / f"bench-write-{name}.log"
    received: dict[int, float] = {}
    ready = threading.Event()
    with ServerProcess("fastcms.asgi:application", environment(TARGETS[name]), log, READY_PATH) as server:
        url = server.base_url

        def listen() -> None:
            with (
                contextlib.suppress(httpx.HTTPError),
                httpx.stream("GET", f"{url}/api/v1/realtime/bench", timeout=3600) as stream,
            ):
                for line in stream.iter_lines():
                    if line.startswith("event: connected"):
                        ready.set()
                    elif line.startswith("data: ") and '"seq":' in line:
                        seq = json.loads(line[6:])["data"]["seq"]
                        received[seq] = time.perf_counter()

        listener = threading.Thread(target=listen, daemon=True)
        listener.start()
        ready.wait(10)
        headers = {"Authorization": f"Token {token}"}
        sent: dict[int, float] = {}
        latencies: list[float] = []
        with httpx.Client(base_url=url, headers=headers, timeout=30) as api:
            for seq in range(-20, 0):  # warm-up
                api.post("/api/v1/collections/bench/records/", json={"seq": seq})
            time.sleep(1)
            cpu_before = cpu_seconds(server.pid)
            for seq in range(CREATES):
                sent[seq] = time.perf_counter()
                response = api.post("/api/v1/collections/bench/records/", json={"seq": seq, "topic": "t"})
                latencies.append(time.perf_counter() - sent[seq])
                if response.status_code != 201:
                    raise RuntimeError(f"{name}: create answered {response.status_code}: {response.text[:200]}")
                time.sleep(max(0.0, PACE - latencies[-1]))
            deadline = time.monotonic() + 10
            while len([s for s in sent if s in received]) < CREATES and time.monotonic() < deadline:
                time.sleep(0.05)
            cpu = cpu_seconds(server.pid) - cpu_before
    listener.join(10)  # the stream ended with the server; no thread outlives the round
    delivery = sorted(received[s] - sent[s] for s in sent if s in received)
    latencies.sort()
    return {
        "create_p50_ms": percentile(latencies, 50) * 1000,
        "create_p99_ms": percentile(latencies, 99) * 1000,
        "receipt_p50_ms": percentile(delivery, 50) * 1000,
        "receipt_p99_ms": percentile(delivery, 99) * 1000,
        "delivered": len(delivery) / CREATES,
        "cpu_ms_per_create": cpu / CREATES * 1000,
    }


def main() -> None:
    token = prepare()
    results: dict[str, list[dict[str, float]]] = {name: [] for name in TARGETS}
    for index in range(ROUNDS):
        for name in TARGETS:
            results[name].append(run_round(name, token))
            print(f"round {index + 1} {name}: {json.dumps(results[name][-1])}", file=sys.stderr)
    keys = list(results["memory"][0])
    print(f"| target | {' | '.join(keys)} |")
    print(f"|---|{'---|' * len(keys)}")
    medians: dict[str, dict[str, float]] = {}
    for name, rounds in results.items():
        medians[name] = {key: statistics.median(r[key] for r in rounds) for key in keys}
        print(f"| {name} | {' | '.join(f'{medians[name][key]:.2f}' for key in keys)} |")
    extra = {key: medians["outbox"][key] - medians["memory"][key] for key in keys}
    print(f"| outbox - memory | {' | '.join(f'{extra[key]:+.2f}' for key in keys)} |")


if __name__ == "__main__":
    main()
