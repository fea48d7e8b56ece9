"""The comparison table (fastcms against the reference, beside the performance targets) and its files."""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.workloads import MIN_ROUNDS

Results = dict[str, dict[str, dict[str, Any]]]  # target -> workload -> metrics (or {"error": ...})
PRODUCT, REFERENCE = "fastcms", "reference"
BACKGROUND_WARN = 10.0  # % of one CPU used by other processes (or stolen) during a workload
FANOUTS = ("fanout", "fanout_5000")  # the same workload at two sizes
WORKLOAD_ORDER = (
    "fanout",
    "fanout_5000",
    "capacity",
    "selectivity",
    "write_latency",
    "write_sustained",
    "write_throughput",
)
CPU_PER_WRITE_MS = 3.0  # server CPU per REST create, at most
WRITES_PER_SECOND = 300.0  # accepted creates per second with write_throughput's subscribers, at least
NOISY_NOTE = "A verdict with `?` rests on timings taken while other processes used the CPU (last rows): repeat it."


@dataclass(frozen=True)
class Row:
    """One line of the table: a metric, its target, each target's value, the ratio and the verdict."""

    metric: str
    target: str
    reference: str
    fastcms: str
    ratio: str
    verdict: str


def _get(results: Results, target: str, workload: str, *keys: str) -> Any:
    value: Any = results.get(target, {}).get(workload)
    if value is None or "error" in value:
        return None
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _cell(results: Results, target: str, workload: str, fmt: Callable[[dict[str, Any]], str]) -> str:
    metrics = results.get(target, {}).get(workload)
    if target not in results or metrics is None:
        return "-"
    if "error" in metrics:
        return "error"
    return fmt(metrics)


def _ratio(ours: float | None, theirs: float | None) -> float | None:
    return ours / theirs if ours is not None and theirs else None


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


def _delivered(metrics: dict[str, Any], key: str = "delivery") -> str:
    d = metrics[key]
    return f"{d['delivered']}/{d['expected']} ({d['delivered_pct']:g}%)"


def _median(values: list[float | None]) -> float | None:
    valid = [v for v in values if v is not None]
    return round(statistics.median(valid), 3) if valid else None


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def latency_ratios(results: Results, workload: str, pct: str = "p99") -> dict[str, Any] | None:
    """Latency percentile `pct` of fastcms over the reference's in a round-based workload: pooled over all
    rounds (every round's deliveries together: the verdict's figure), per round (round i against round i,
    which ran back to back) and the median of those; `rounds` is the fewer of the two targets' rounds.
    None unless both ran."""
    ours = _get(results, PRODUCT, workload, "rounds")
    theirs = _get(results, REFERENCE, workload, "rounds")
    if not ours or not theirs:
        return None
    by_round = [
        _rounded(_ratio(mine["latency_ms"][pct], base["latency_ms"][pct])) if mine["delivered"] else None
        for mine, base in zip(ours, theirs, strict=False)
    ]
    pooled = _ratio(
        _get(results, PRODUCT, workload, "delivery", "latency_ms", pct),
        _get(results, REFERENCE, workload, "delivery", "latency_ms", pct),
    )
    return {
        f"{pct}_ratio_pooled": _rounded(pooled),
        f"{pct}_ratio_by_round": by_round,
        f"{pct}_ratio_median": _median(by_round),
        "rounds": min(len(ours), len(theirs)),
    }


def fanout_ratios(results: Results, workload: str = "fanout") -> dict[str, Any] | None:
    """The fan-out p99 of fastcms over the reference's (see `latency_ratios`)."""
    return latency_ratios(results, workload, "p99")


def write_latency_ratios(results: Results) -> dict[str, Any] | None:
    """Create -> receipt p50 and p99 of fastcms over the reference's (see `latency_ratios`)."""
    p50, p99 = latency_ratios(results, "write_latency", "p50"), latency_ratios(results, "write_latency", "p99")
    return None if p50 is None or p99 is None else {**p50, **p99}


def capacity_ratios(results: Results) -> dict[str, Any] | None:
    """The capacity connect time of fastcms over the reference's: pooled (total connect time over total: the
    verdict's figure), per round (round i against round i, which ran back to back) and their median; None
    unless both ran."""
    ours = _get(results, PRODUCT, "capacity", "rounds")
    theirs = _get(results, REFERENCE, "capacity", "rounds")
    if not ours or not theirs:
        return None
    by_round = [
        _rounded(_ratio(mine["connect"]["seconds"], base["connect"]["seconds"]))
        for mine, base in zip(ours, theirs, strict=False)
    ]
    pooled = _ratio(
        _get(results, PRODUCT, "capacity", "connect", "seconds_pooled"),
        _get(results, REFERENCE, "capacity", "connect", "seconds_pooled"),
    )
    return {
        "connect_ratio_pooled": _rounded(pooled),
        "connect_ratio_by_round": by_round,
        "connect_ratio_median": _median(by_round),
        "rounds": min(len(ours), len(theirs)),
    }


def pooled_within(figures: dict[str, Any] | None, key: str, limit: float) -> bool | None:
    """The verdict on a pooled ratio: `figures[key] <= limit`, or None (no verdict) when it is missing or
    fewer than MIN_ROUNDS rounds were pooled."""
    if figures is None or figures.get(key) is None or figures["rounds"] < MIN_ROUNDS:
        return None
    return figures[key] <= limit


def comparison(results: Results) -> dict[str, Any]:
    """Figures that compare the targets and belong to neither (for the JSON): latency ratios (fan-out p99 at
    both sizes, create -> receipt p50 and p99) and the capacity connect-time ratios."""
    found = {
        **{workload: fanout_ratios(results, workload) for workload in FANOUTS},
        "capacity": capacity_ratios(results),
        "write_latency": write_latency_ratios(results),
    }
    return {workload: figures for workload, figures in found.items() if figures is not None}


def _times(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}x"


def _by_round(metrics: dict[str, Any], key: str, fmt: str) -> str:
    """Each round's `key`, formatted with `fmt`, joined by ` / ` (`-` where a round has none)."""
    return " / ".join("-" if r.get(key) is None else fmt.format(r[key]) for r in metrics["rounds"])


def _pooled_cell(figures: dict[str, Any] | None, pct: str) -> str:
    """`1.23x (median of rounds 1.10x)`: the pooled ratio (the verdict's) with the median of per-round ratios."""
    if figures is None:
        return "-"
    return f"{_times(figures[f'{pct}_ratio_pooled'])} (median of rounds {_times(figures[f'{pct}_ratio_median'])})"


def _write_latency_rows(results: Results, add: Callable[..., None], full_delivery: Callable[..., bool | None]) -> None:
    name = "write_latency"
    add(name, f"{name}: delivered, all rounds", "100%", _delivered, None, full_delivery(name))
    ratios = write_latency_ratios(results)
    for pct, limit in (("p50", 2.5), ("p99", 3.0)):
        add(
            name,
            f"{name}: create -> receipt {pct}, pooled over rounds (ms)",
            f"<= {limit:g}x reference",
            lambda m, pct=pct: f"{m['delivery']['latency_ms'][pct]:.1f} ({len(m['rounds'])} rounds)",
            _pooled_cell(ratios, pct),
            pooled_within(ratios, f"{pct}_ratio_pooled", limit),
            timed=True,
        )
    add(
        name,
        f"{name}: create -> receipt p99 by round (ms)",
        "",
        lambda m: " / ".join(f"{r['latency_ms']['p99']:.1f}" for r in m["rounds"]),
        None if ratios is None else " / ".join(_times(r) for r in ratios["p99_ratio_by_round"]),
        None,
    )
    for pct in ("p50", "p99"):
        add(
            name,
            f"{name}: the write's response time {pct}, pooled (ms)",
            "",
            lambda m, pct=pct: f"{m['request_ms'][pct]:.1f}",
            _ratio(_get(results, PRODUCT, name, "request_ms", pct), _get(results, REFERENCE, name, "request_ms", pct)),
            None,
        )
    cpu = _get(results, PRODUCT, name, "server_cpu_ms_per_write")
    add(
        name,
        f"{name}: server CPU per write, all rounds (by round) (ms)",
        f"<= {CPU_PER_WRITE_MS:g} ms",
        lambda m: (
            f"{m['server_cpu_ms_per_write']:.2f} ("
            + " / ".join(f"{r['server_cpu_ms_per_write']:.2f}" for r in m["rounds"])
            + ")"
        ),
        _ratio(cpu, _get(results, REFERENCE, name, "server_cpu_ms_per_write")),
        None if cpu is None else cpu <= CPU_PER_WRITE_MS,
        timed=True,
    )


def _latency_row(results: Results, add: Callable[..., None], name: str, metric: str, pct: str) -> None:
    """A delivery latency percentile pooled over rounds, with its FastCMS/reference ratio (no verdict)."""
    add(
        name,
        metric,
        "",
        lambda m: f"{m['delivery']['latency_ms'][pct]:.1f}",
        _ratio(
            _get(results, PRODUCT, name, "delivery", "latency_ms", pct),
            _get(results, REFERENCE, name, "delivery", "latency_ms", pct),
        ),
        None,
    )


def _complete(results: Results, name: str) -> bool | None:
    """Whether every accepted write reached every subscriber once (None: no figures)."""
    delivery = _get(results, PRODUCT, name, "delivery")
    return None if delivery is None else delivery["missing"] == 0 and delivery["duplicates"] == 0


def _delivered_row(results: Results, add: Callable[..., None], name: str) -> None:
    add(
        name,
        f"{name}: delivered (missing / duplicates), all rounds",
        "100% (0 / 0)",
        lambda m: (
            f"{m['delivery']['delivered']}/{m['delivery']['expected']} ({m['delivery']['delivered_pct']:g}%) "
            f"({m['delivery']['missing']} / {m['delivery']['duplicates']})"
        ),
        None,
        _complete(results, name),
    )


def _write_sustained_rows(results: Results, add: Callable[..., None]) -> None:
    """Informational: the CPU per write with the worker kept busy (the write_latency verdict stands)."""
    name = "write_sustained"
    add(
        name,
        f"{name}: writes per second, one writer back to back (by round)",
        "",
        lambda m: (
            f"{m['writes_per_second']:.0f} (" + " / ".join(f"{r['writes_per_second']:.0f}" for r in m["rounds"]) + ")"
        ),
        _ratio(_get(results, PRODUCT, name, "writes_per_second"), _get(results, REFERENCE, name, "writes_per_second")),
        None,
    )
    cpu = _get(results, PRODUCT, name, "server_cpu_ms_per_write")
    add(
        name,
        f"{name}: server CPU per write, the worker kept busy (by round) (ms)",
        "",
        lambda m: (
            f"{m['server_cpu_ms_per_write']:.2f} ("
            + " / ".join(f"{r['server_cpu_ms_per_write']:.2f}" for r in m["rounds"])
            + ")"
        ),
        _ratio(cpu, _get(results, REFERENCE, name, "server_cpu_ms_per_write")),
        None,
    )
    _delivered_row(results, add, name)


def _busy(figures: dict[str, Any]) -> str:
    by_round = " / ".join(f"{r['machine_busy_pct']:.0f}" for r in figures["rounds"])
    return f"{figures['machine_busy_pct']:.0f}% ({by_round})"


def _write_throughput_rows(results: Results, add: Callable[..., None]) -> None:
    name = "write_throughput"
    rate = _get(results, PRODUCT, name, "writes_per_second")
    complete = _complete(results, name)
    add(
        name,
        f"{name}: accepted writes per second, all rounds (by round)",
        f">= {WRITES_PER_SECOND:g}/s, all delivered",
        lambda m: (
            f"{m['writes_per_second']:.0f} (" + " / ".join(f"{r['writes_per_second']:.0f}" for r in m["rounds"]) + ")"
        ),
        _ratio(rate, _get(results, REFERENCE, name, "writes_per_second")),
        None if rate is None else rate >= WRITES_PER_SECOND and bool(complete),
        timed=True,
    )
    _delivered_row(results, add, name)
    add(
        name,
        f"{name}: streams that ended early / writes refused",
        "0 / 0",
        lambda m: f"{m['delivery']['ended_early']} / {m['refused']}",
        None,
        None,
    )
    for pct in ("p50", "p99"):
        _latency_row(results, add, name, f"{name}: create -> receipt {pct}, pooled (ms)", pct)
    add(
        name,
        f"{name}: the write's response time p50 / p99 (ms)",
        "",
        lambda m: f"{m['request_ms']['p50']:.1f} / {m['request_ms']['p99']:.1f}",
        None,
        None,
    )
    add(
        name,
        f"{name}: server CPU per write, with its deliveries (ms)",
        "",
        lambda m: f"{m['server_cpu_ms_per_write']:.2f}",
        _ratio(
            _get(results, PRODUCT, name, "server_cpu_ms_per_write"),
            _get(results, REFERENCE, name, "server_cpu_ms_per_write"),
        ),
        None,
    )
    add(
        name,
        f"{name}: the bench's subscribers' and writers' CPU per write (ms)",
        "",
        lambda m: "-" if m.get("client_cpu_ms_per_write") is None else f"{m['client_cpu_ms_per_write']:.2f}",
        None,
        None,
    )
    add(
        name,
        f"{name}: machine CPU busy, all rounds (% of all its CPUs, by round)",
        "",
        lambda m: "-" if m.get("machine_busy_pct") is None else _busy(m),
        None,
        None,
    )


def build_rows(results: Results) -> list[Row]:
    """The table rows for the workloads present in `results`."""
    rows: list[Row] = []
    present = {w for per_target in results.values() for w in per_target}

    def add(
        workload: str,
        metric: str,
        target: str,
        fmt: Callable[[dict[str, Any]], str],
        ratio: float | str | None,
        ok: bool | None,
        timed: bool = False,
    ) -> None:
        verdict = _verdict(ok)
        if timed and ok is not None and noisy(workload):
            verdict += "?"  # a timing measured while other processes took the CPU: repeat on a quiet machine
        rows.append(
            Row(
                metric,
                target,
                _cell(results, REFERENCE, workload, fmt),
                _cell(results, PRODUCT, workload, fmt),
                ratio if isinstance(ratio, str) else _times(ratio),
                verdict,
            )
        )

    def noisy(workload: str) -> bool:
        return any(
            sum(per_target.get(workload, {}).get("background_cpu", {}).values()) > BACKGROUND_WARN
            for per_target in results.values()
        )

    def full_delivery(workload: str, key: str = "delivery") -> bool | None:
        d = _get(results, PRODUCT, workload, key)
        return None if d is None else d["delivered"] == d["expected"] and d["duplicates"] == 0

    for name in [w for w in FANOUTS if w in present]:
        add(name, f"{name}: delivered, all rounds", "100%", _delivered, None, full_delivery(name))
        add(
            name,
            f"{name}: duplicates / out of order, all rounds",
            "0 / 0",
            lambda m: f"{m['delivery']['duplicates']} / {m['delivery']['out_of_order']}",
            None,
            None,
        )
        for pct in ("p50", "p95", "p99", "max"):
            if pct == "p99":
                continue  # its own row below, with the verdict
            _latency_row(results, add, name, f"{name}: latency {pct}, pooled over rounds (ms)", pct)
        fan = fanout_ratios(results, name)
        add(
            name,
            f"{name}: latency p99 by round (ms)",
            "",
            lambda m: " / ".join(f"{r['latency_ms']['p99']:.1f}" for r in m["rounds"]),
            None if fan is None else " / ".join(_times(r) for r in fan["p99_ratio_by_round"]),
            None,
        )
        add(
            name,
            f"{name}: latency p99, pooled over rounds (ms)",
            "<= 1.5x reference",
            lambda m: f"{m['delivery']['latency_ms']['p99']:.1f} ({len(m['rounds'])} rounds)",
            _pooled_cell(fan, "p99"),
            pooled_within(fan, "p99_ratio_pooled", 1.5),
            timed=True,
        )
    if "capacity" in present:
        name = "capacity"
        cap = capacity_ratios(results)
        add(
            "capacity",
            f"{name}: time to connect all, by round (s)",
            "",
            lambda m: " / ".join(f"{r['connect']['seconds']:.2f}" for r in m["rounds"]),
            None if cap is None else " / ".join(_times(r) for r in cap["connect_ratio_by_round"]),
            None,
        )
        add(
            "capacity",
            f"{name}: time to connect all, pooled over rounds (total over total)",
            "<= 2x reference",
            lambda m: f"{m['connect']['seconds_pooled']:.2f} s ({m['connect']['per_second_median']:.0f}/s median)",
            None
            if cap is None
            else f"{_times(cap['connect_ratio_pooled'])} (median of rounds {_times(cap['connect_ratio_median'])})",
            pooled_within(cap, "connect_ratio_pooled", 2.0),
            timed=True,
        )
        kb = _get(results, PRODUCT, "capacity", "server", "kb_per_connection")
        add(
            "capacity",
            f"{name}: server memory per idle connection, median (by round) (KB)",
            "<= 30 KB",
            lambda m: (
                f"{m['server']['kb_per_connection']:.1f} ("
                + " / ".join(f"{r['server']['kb_per_connection']:.1f}" for r in m["rounds"])
                + ")"
            ),
            _ratio(kb, _get(results, REFERENCE, "capacity", "server", "kb_per_connection")),
            None if kb is None else kb <= 30,
        )
        add(
            "capacity",
            f"{name}: server threads before -> after, median of rounds",
            "",
            lambda m: f"{m['server']['threads_before']:g} -> {m['server']['threads_after']:g}",
            None,
            None,
        )
        add("capacity", f"{name}: delivered, all rounds", "100%", _delivered, None, full_delivery("capacity"))
        add(
            "capacity",
            f"{name}: connections the server still held after the subscribers closed them, by round",
            "0",
            lambda m: " / ".join(str(r["server_connections_left"]) for r in m["rounds"]),
            None,
            None,
        )
    if "selectivity" in present:
        name = "selectivity"
        for phase, label in (("alone", "alone, pooled"), ("with_extras", "with the extras, pooled")):
            add(
                "selectivity",
                f"{name}: p99 {label} (ms)",
                "",
                lambda m, phase=phase: f"{m[phase]['latency_ms']['p99']:.2f}",
                _ratio(
                    _get(results, PRODUCT, "selectivity", phase, "latency_ms", "p99"),
                    _get(results, REFERENCE, "selectivity", phase, "latency_ms", "p99"),
                ),
                None,
            )
        rounds = len(_get(results, PRODUCT, "selectivity", "rounds") or [])
        for key, label, target in (
            ("slowdown_p99_pooled", "slowdown p99, pooled over rounds", "<= 1.2x"),
            ("slowdown_p99", "slowdown p99, median of rounds", ""),
            ("slowdown_p50_pooled", "slowdown p50, pooled over rounds", ""),
        ):
            ours = _get(results, PRODUCT, "selectivity", key)
            add(
                "selectivity",
                f"{name}: {label} (with / alone)",
                target,
                lambda m, key=key: (
                    "-"
                    if m[key] is None
                    else f"{m[key]:.2f}x" + (f" ({len(m['rounds'])} rounds)" if key == "slowdown_p99_pooled" else "")
                ),
                None,
                (None if ours is None or rounds < MIN_ROUNDS else ours <= 1.2) if target else None,
                timed=True,
            )
        add(
            "selectivity",
            f"{name}: delivered to matching",
            "100%",
            lambda m: _delivered(m, "alone") + ", " + _delivered(m, "with_extras"),
            None,
            None
            if _get(results, PRODUCT, "selectivity") is None
            else bool(full_delivery("selectivity", "alone") and full_delivery("selectivity", "with_extras")),
        )
        leaked = _get(results, PRODUCT, "selectivity", "leaked_to_extras")
        add(
            "selectivity",
            f"{name}: deliveries to non-matching",
            "0",
            lambda m: str(m["leaked_to_extras"]),
            None,
            None if leaked is None else leaked == 0,
        )
    if "write_latency" in present:
        _write_latency_rows(results, add, full_delivery)
    if "write_sustained" in present:
        _write_sustained_rows(results, add)
    if "write_throughput" in present:
        _write_throughput_rows(results, add)
    for workload in [w for w in WORKLOAD_ORDER if w in present]:
        add(
            workload,
            f"{workload}: CPU used by other processes / stolen (% of a core)",
            f"< {BACKGROUND_WARN:g} for clean numbers",
            lambda m: "{other:.0f} / {steal:.0f}".format(**m["background_cpu"]),
            None,
            None,
        )
        if workload != "selectivity":
            add(
                workload,
                f"{workload}: CPU used by other processes / stolen, by round (% of a core)",
                "",
                lambda m: ", ".join("{other:.0f} / {steal:.0f}".format(**r["background_cpu"]) for r in m["rounds"]),
                None,
                None,
            )
    return rows


def warnings(results: Results) -> list[str]:
    """Runs disturbed by other processes on the machine."""
    return [
        f"{target}/{workload}: other processes used {m['background_cpu']['other']:.0f}% of a core and the "
        f"hypervisor stole {m['background_cpu']['steal']:.0f}% during the run: its timings are noisier than usual"
        for target, per_target in results.items()
        for workload, m in per_target.items()
        if "background_cpu" in m and sum(m["background_cpu"].values()) > BACKGROUND_WARN
    ]


def describe(plans: dict[str, dict[str, Any]]) -> list[str]:
    """One line per workload saying its sizes."""
    fanout = (
        "{subscribers} subscribers per target, {rounds} rounds of {events} events {interval_ms:g} ms apart "
        "alternating between the targets (each keeps its server and subscribers), latency from publish request to "
        "receipt; verdict on the p99 pooled over all rounds"
    )
    text = {
        "fanout": fanout,
        "fanout_5000": fanout,
        "capacity": "{subscribers} idle subscribers per target, {rounds} rounds alternating between the targets "
        "(fresh servers every round; memory and threads read after all got `connected`, then {events} events, then "
        "they disconnect); verdict on the connect time pooled over all rounds (total over total)",
        "selectivity": "{subscribers} matching subscribers, {events} events {interval_ms:g} ms apart alone, then "
        "again beside {extras} non-matching ones; {rounds} rounds; verdict on the p99 slowdown pooled over all rounds",
        "write_latency": "{subscribers} subscriber per target, {rounds} rounds of {events} writes (REST creates; the "
        "reference's publish) {interval_ms:g} ms apart alternating between the targets: create -> receipt and server "
        "CPU per write; verdicts on the p50 and p99 pooled over all rounds",
        "write_sustained": "{subscribers} subscriber per target, {rounds} rounds of {duration:.3g} s alternating "
        "between the targets, {writers} keep-alive writer writing as soon as its last write answered: the server CPU "
        "per write when writes keep the worker busy (no verdict: write_latency's paced CPU is the one judged)",
        "write_throughput": "{subscribers} subscribers per target, {rounds} rounds of {duration:.3g} s alternating "
        "between the targets, {writers} keep-alive writers each writing as soon as its last write answered, the "
        "subscribers reading at nice 10: accepted writes per second, every event delivered to every subscriber",
    }
    return [f"{w}: {text[w].format(**p, interval_ms=p['interval'] * 1000)}" for w, p in plans.items() if w in text]


HEADERS = ("metric", "target", "reference", "fastcms", "fastcms/reference", "verdict")


def _cells(row: Row) -> tuple[str, ...]:
    return (row.metric, row.target, row.reference, row.fastcms, row.ratio, row.verdict)


def text_table(rows: list[Row]) -> str:
    """A fixed-width table for the terminal."""
    lines = [HEADERS, *(_cells(r) for r in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADERS))]
    out = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def markdown_table(rows: list[Row]) -> str:
    """The same table in Markdown."""
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in _cells(r)) + " |" for r in rows]
    return "\n".join(lines)


def errors(results: Results) -> list[str]:
    """`target/workload: message` for every workload that failed."""
    return [
        f"{target}/{workload}: {metrics['error']}"
        for target, per_target in results.items()
        for workload, metrics in per_target.items()
        if "error" in metrics
    ]


def write(report: dict[str, Any], rows: list[Row], directory: Path, stamp: str) -> tuple[Path, Path]:
    """Write `<stamp>.json` (everything) and `latest.md` (the table) into `directory`; return both paths."""
    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / f"{stamp}.json"
    json_path.write_text(json.dumps({**report, "table": [r.__dict__ for r in rows]}, indent=2) + "\n")
    md_path = directory / "latest.md"
    header = [
        f"# FastCMS SSE benchmark, {report['started_utc']}",
        "",
        f"Mode: {'quick' if report['quick'] else 'full'}; targets: {', '.join(report['targets'])}; "
        f"client processes: {report['processes']}; machine: {report['machine']['cpus']} CPUs, "
        f"Python {report['machine']['python']}, uvicorn {report['machine']['uvicorn']}; "
        f"{report['duration_s']:.0f} s. Raw numbers: `{json_path.name}`.",
        "",
        "Ratios compare runs of the same invocation; absolute times on a shared machine are noise.",
        "",
        *(f"- {line}" for line in describe(report["plans"])),
        "",
    ]
    footer = ["", NOISY_NOTE] if any(r.verdict.endswith("?") for r in rows) else []
    for title, lines in (("Errors", errors(report["results"])), ("Warnings", warnings(report["results"]))):
        if lines:
            footer += ["", f"{title}:", "", *(f"- {line}" for line in lines)]
    md_path.write_text("\n".join([*header, markdown_table(rows), *footer]) + "\n")
    return json_path, md_path
