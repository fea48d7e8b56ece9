"""`python -m bench`: measure FastCMS's SSE delivery against the reference broadcaster.

Prepares every target, then runs each workload against each target on a fresh uvicorn server
(the ALTERNATING ones, fan-out at two sizes, capacity and the write workloads, against all targets at
once, in rounds alternating between them), prints one table of ratios (fastcms/reference) beside the
targets, and writes `bench/results/<UTC stamp>.json` and
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
from bench.catalog import ALTERNATING, FULL, QUICK, WORKLOADS
from bench.loadgen import BenchError, raise_fd_limit
from bench.targets import TARGETS, Target, TargetUnavailable
from bench.workloads import Plan, log

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


def prepare(targets: list[Target], workdir: Path) -> dict[str, str]:
    """Prepare every target; return the unusable ones' errors by name."""
    unavailable: dict[str, str] = {}
    for target in targets:
        log(f"[{target.name}] preparing")
        try:
            target.prepare(workdir)
        except TargetUnavailable as exc:
            log(f"[{target.name}] unavailable: {exc}")
            unavailable[target.name] = str(exc)
    return unavailable


def run_workload(
    workload: str, targets: list[Target], plan: Plan, workdir: Path, processes: int, unavailable: dict[str, str]
) -> dict[str, dict[str, Any]]:
    """`workload` against every target, by target name; a failed run is `{"error": ...}`.

    A target that turns out to be unusable (TargetUnavailable, e.g. its SSE endpoint answers 404)
    is added to `unavailable` and gets that error for this and every later workload. An ALTERNATING
    workload runs once with all usable targets; `seconds` is then its whole duration for each.
    """
    results: dict[str, dict[str, Any]] = {
        t.name: {"error": unavailable[t.name]} for t in targets if t.name in unavailable
    }
    live = [t for t in targets if t.name not in unavailable]

    def record(target: Target, outcome: dict[str, Any] | BenchError, started: float) -> None:
        if isinstance(outcome, TargetUnavailable):
            log(f"[{target.name}] unavailable: {outcome}")
            unavailable[target.name] = str(outcome)
            results[target.name] = {"error": str(outcome)}
            return
        if isinstance(outcome, BenchError):
            log(f"[{target.name}] {workload} failed: {outcome}")
            outcome = {"error": str(outcome)}
        outcome["seconds"] = round(time.monotonic() - started, 1)
        log(f"[{target.name}] {workload}: done in {outcome['seconds']} s")
        results[target.name] = outcome

    if workload in ALTERNATING and live:
        log(f"[{' + '.join(t.name for t in live)}] {workload}: {asdict(plan)}")
        started = time.monotonic()
        outcomes = WORKLOADS[workload](live, plan, workdir, processes)
        for target in live:
            record(target, outcomes[target.name], started)
    else:
        for target in live:
            log(f"[{target.name}] {workload}: {asdict(plan)}")
            started = time.monotonic()
            try:
                outcome = WORKLOADS[workload](target, plan, workdir, processes)
            except BenchError as exc:
                outcome = exc
            record(target, outcome, started)
    return {t.name: results[t.name] for t in targets}


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
    targets = [TARGETS[name]() for name in args.targets]
    results: dict[str, Any] = {target.name: {} for target in targets}
    try:
        unavailable = prepare(targets, workdir)
        for workload in args.workloads:
            outcome = run_workload(workload, targets, plans[workload], workdir, args.processes, unavailable)
            for name, metrics in outcome.items():
                results[name][workload] = metrics
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
        "comparison": report.comparison(results),
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
