"""`python -m bench.indexed`: a range-filtered, ordered list of 1,000,000 records, with and without
the field's `indexed` option, on PostgreSQL, through HTTP against one uvicorn worker (DEBUG off).

Builds (once; kept for the next run) the collection `priced` (a number field `price`, a text
field `title`) with RECORDS records inserted by one `INSERT ... SELECT generate_series` (not the
API): `price` takes each of 0.0, 0.1, ... 99999.9 exactly once, so `price >= X && price < X+3`
selects exactly 30 records. Then, for `indexed` false and then true (switched by a PATCH of the
collection through the REST API, timed: the index build), it measures the client-side latency
of `GET /api/v1/collections/priced/records/?query=price>=X && price<X+3&ordering=price` (the
paginated list: its count and its page of 30) over random X, and prints p50 and p99 with the
EXPLAIN ANALYZE of both of the list's queries (count and page), captured from the ORM as the
view builds them. Target: p50 under 20 ms with the index.

Not one of `make bench`'s workloads. Needs PostgreSQL: `BENCH_DATABASE_URL` (default
postgres://postgres@127.0.0.1:5432/fastcms_bench_indexed, created if missing); `BENCH_RECORDS`
(default 1000000), `BENCH_REQUESTS` (indexed, default 200; without the index a tenth, at least 10).
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.fastcms_setup import prepare_postgres, server_environment, setup_over_http

ROOT = Path(__file__).resolve().parent.parent
DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/fastcms_bench_indexed")
RECORDS = int(os.environ.get("BENCH_RECORDS", "1000000"))
REQUESTS = int(os.environ.get("BENCH_REQUESTS", "200"))
NAME = "priced"
WIDTH = 3  # price >= X && price < X + WIDTH: 30 records at 10 prices per unit
FIELDS: list[dict[str, Any]] = [{"name": "price", "type": "number"}, {"name": "title", "type": "text"}]
ENVIRONMENT = server_environment(DATABASE_URL, REDIS_URL="")


def prepare() -> None:
    """Create the database if missing, migrate it, and make the bench user."""
    prepare_postgres(ENVIRONMENT, cwd=ROOT)


def fill(collection_id: str) -> None:
    """RECORDS records in one statement (skipped when the collection already has them)."""
    from django.db import connection, transaction

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM collections_app_record WHERE collection_id = %s", [collection_id])
        if cursor.fetchone()[0] == RECORDS:
            return
        started = time.perf_counter()
        with transaction.atomic():
            cursor.execute("DELETE FROM collections_app_record WHERE collection_id = %s", [collection_id])
            # i * 7 mod RECORDS is a permutation of 0..RECORDS-1 (7 is prime to 10**k): every price once.
            cursor.execute(
                """
                INSERT INTO collections_app_record (id, collection_id, data, created, updated)
                SELECT 'b' || lpad(to_hex(i), 14, '0'), %s,
                       jsonb_build_object('price', ((i::bigint * 7) %% %s) / 10.0, 'title', 'item ' || i),
                       now() - i * interval '1 second', now() - i * interval '1 second'
                FROM generate_series(0, %s - 1) AS i
                """,
                [collection_id, RECORDS, RECORDS],
            )
        cursor.execute("ANALYZE collections_app_record")
    print(f"inserted {RECORDS} records in {time.perf_counter() - started:.1f} s", file=sys.stderr)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    log = Path(tempfile.gettempdir()) / "bench-indexed.log"
    with log.open("wb") as output:
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "fastcms.asgi:application", "--port", str(port)],
            cwd=ROOT,
            env=ENVIRONMENT,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        if server.poll() is not None:
            raise RuntimeError(f"the server exited; see {log}")
        try:
            if httpx.get(f"{url}/api/v1/presence", timeout=1).status_code == 200:
                return server, url
        except httpx.HTTPError:
            time.sleep(0.1)
    server.terminate()
    raise RuntimeError(f"the server did not answer; see {log}")


def set_indexed(api: httpx.Client, indexed: bool) -> float:
    """PATCH the collection's fields with `indexed` on `price`; seconds the change took."""
    fields = [{**FIELDS[0], "options": {"indexed": indexed}}, FIELDS[1]]
    started = time.perf_counter()
    response = api.patch(f"/api/v1/collections/{NAME}/", json={"fields": fields}, timeout=600)
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"PATCH answered {response.status_code}: {response.text[:300]}")
    return elapsed


def params(low: float) -> dict[str, str]:
    return {"query": f"price>={low:.1f} && price<{low + WIDTH:.1f}", "ordering": "price"}


def measure(api: httpx.Client, requests: int, rng: random.Random) -> list[float]:
    top = RECORDS / 10 - WIDTH
    for _ in range(5):  # warm-up
        api.get(f"/api/v1/collections/{NAME}/records/", params=params(rng.uniform(0, top)))
    latencies = []
    for _ in range(requests):
        low = round(rng.uniform(0, top), 1)
        started = time.perf_counter()
        response = api.get(f"/api/v1/collections/{NAME}/records/", params=params(low))
        latencies.append(time.perf_counter() - started)
        body = response.json()
        if response.status_code != 200 or body["count"] != WIDTH * 10 or len(body["results"]) != WIDTH * 10:
            raise RuntimeError(f"unexpected answer {response.status_code}: {str(body)[:300]}")
    return latencies


def explain_list(low: float) -> list[str]:
    """EXPLAIN ANALYZE of the list's two queries (count, page), built as the records view builds them."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from collections_app import filters
    from collections_app.models import Collection

    collection = Collection.objects.get(name=NAME)
    condition = filters.query_condition(collection, params(low)["query"], user=None, show_hidden=False)
    queryset = filters.filter_records(collection.records.all(), condition)
    ordered = queryset.order_by(*filters.ordering_expressions(collection, "price", show_hidden=False))
    with CaptureQueriesContext(connection) as captured:
        queryset.count()
        list(ordered[:30])
    plans = []
    with connection.cursor() as cursor:
        for query in captured.captured_queries:
            cursor.execute("EXPLAIN (ANALYZE, COSTS OFF) " + query["sql"])
            plans.append("\n".join(row[0] for row in cursor.fetchall()))
    return plans


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    prepare()
    os.environ.update(ENVIRONMENT)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    server, url = start_server()
    token = setup_over_http(url, [])
    rng = random.Random(20260101)
    try:
        with httpx.Client(base_url=url, headers={"Authorization": f"Token {token}"}, timeout=120) as api:
            if api.get(f"/api/v1/collections/{NAME}/").status_code == 404:
                created = api.post("/api/v1/collections/", json={"name": NAME, "fields": FIELDS, "list_rule": ""})
                if created.status_code != 201:
                    raise RuntimeError(f"create answered {created.status_code}: {created.text[:300]}")
            from collections_app.models import Collection

            set_indexed(api, False)  # a run stopped midway may have left the index
            fill(Collection.objects.get(name=NAME).pk)
            rows = []
            for indexed, requests in ((False, max(10, REQUESTS // 10)), (True, REQUESTS)):
                change = set_indexed(api, indexed)
                latencies = measure(api, requests, rng)
                p50, p99 = percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000
                rows.append((indexed, requests, p50, p99, change))
                print(f"\n## indexed={str(indexed).lower()}: EXPLAIN ANALYZE (count, then page)")
                for plan in explain_list(round(rng.uniform(0, RECORDS / 10 - WIDTH), 1)):
                    print(plan, end="\n\n")
            set_indexed(api, False)
    finally:
        server.terminate()
        server.wait(20)
    print(f"{RECORDS} records; GET ...?query=price>=X && price<X+{WIDTH}&ordering=price (30 records, count included)")
    print("| indexed | requests | p50 ms | p99 ms | PATCH that set it, s |")
    print("|---|---|---|---|---|")
    for indexed, requests, p50, p99, change in rows:
        print(f"| {str(indexed).lower()} | {requests} | {p50:.1f} | {p99:.1f} | {change:.2f} |")


if __name__ == "__main__":
    main()
