"""`python -m bench`: measure FastCMS's SSE delivery against the reference broadcaster (SPEC section 8).

Runs each workload against each target on a fresh uvicorn server, prints one table of ratios
(fastcms/reference) beside the SPEC targets, and writes `bench/results/<UTC stamp>.json` and
`bench/results/latest.md`. Exit status: 0 when every workload ran, 1 when any failed, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bench import report
from bench.loadgen import BenchError, raise_fd_limit
from bench.targets import TARGETS, Target, TargetUnavailable
from bench.workloads import FULL, QUICK, WORKLOADS, Plan, log

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def _names(value: str, known: dict[str, Any], what: str) -> list[str]:
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown {what} {unknown or value!r}; choose from {', '.join(known)}")
    return names


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line: targets, workloads, --quick, client processes, --keep."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--targets", type=lambda v: _names(v, TARGETS, "target"), default=list(TARGETS), help="default: %(default)s"
    )
    parser.add_argument(
        "--workloads",
        type=lambda v: _names(v, WORKLOADS, "workload"),
        default=list(WORKLOADS),
        help="default: %(default)s",
    )
    parser.add_argument("--quick", action="store_true", help="small numbers for a smoke run")
    parser.add_argument("--processes", type=int, default=4, help="client worker processes (default: %(default)s)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (server logs, database)")
    parser.add_argument("--results", type=Path, default=RESULTS_DIR, help="output directory (default: bench/results)")
    return parser.parse_args(argv)


def run_target(
    target: Target, workloads: list[str], plans: dict[str, Plan], workdir: Path, processes: int
) -> dict[str, Any]:
    """Every workload against `target`, by name; a failed one is `{"error": ...}`, and so is every later one
    once the target turns out to be unusable (e.g. its SSE endpoint answers 404)."""
    results: dict[str, Any] = {}
    log(f"[{target.name}] preparing")
    try:
        target.prepare(workdir)
    except TargetUnavailable as exc:
        log(f"[{target.name}] unavailable: {exc}")
        return {w: {"error": str(exc)} for w in workloads}
    for index, workload in enumerate(workloads):
        log(f"[{target.name}] {workload}: {asdict(plans[workload])}")
        started = time.monotonic()
        try:
            results[workload] = WORKLOADS[workload](target, plans[workload], workdir, processes)
        except TargetUnavailable as exc:
            log(f"[{target.name}] unavailable: {exc}")
            results.update({w: {"error": str(exc)} for w in workloads[index:]})
            break
        except BenchError as exc:
            log(f"[{target.name}] {workload} failed: {exc}")
            results[workload] = {"error": str(exc)}
        results[workload]["seconds"] = round(time.monotonic() - started, 1)
        log(f"[{target.name}] {workload}: done in {results[workload]['seconds']} s")
    return results


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; see the module docstring."""
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so every `finally` stops its servers and clients.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    raise_fd_limit()
    plans = QUICK if args.quick else FULL
    started = datetime.now(timezone.utc)
    clock = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="fastcms-bench-"))
    results: dict[str, Any] = {}
    try:
        for name in args.targets:
            results[name] = run_target(TARGETS[name](), args.workloads, plans, workdir, args.processes)
    finally:
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    used = {w: asdict(plans[w]) for w in args.workloads}
    data = {
        "started_utc": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "duration_s": round(time.monotonic() - clock, 1),
        "quick": args.quick,
        "targets": args.targets,
        "workloads": args.workloads,
        "processes": args.processes,
        "plans": used,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "uvicorn": version("uvicorn"),
            "platform": platform.platform(),
        },
        "results": results,
    }
    rows = report.build_rows(results)
    json_path, md_path = report.write(data, rows, args.results, started.strftime("%Y%m%dT%H%M%SZ"))
    print("\n".join(report.describe(used)) + "\n")
    print(report.text_table(rows))
    for error in report.errors(results):
        print(f"error: {error}")
    for warning in report.warnings(results):
        print(f"warning: {warning}")
    if any(row.verdict.endswith("?") for row in rows):
        print(report.NOISY_NOTE)
    print(f"\nwrote {json_path} and {md_path} ({data['duration_s']:.0f} s)")
    return 1 if report.errors(results) else 0


if __name__ == "__main__":
    sys.exit(main())
