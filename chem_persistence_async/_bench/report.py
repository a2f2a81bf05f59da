"""Results as JSON, as a Markdown table and as a PNG chart (when matplotlib is installed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _num(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:,.1f}"
    return f"{value:,.2f}"


def _spread(stats: dict[str, float]) -> str:
    return f"{_num(stats['median'])} ({_num(stats['min'])}-{_num(stats['max'])})"


def _ratio(stats: dict[str, float]) -> str:
    return f"{stats['median']:.2f} ({stats['min']:.2f}-{stats['max']:.2f})"


def table_rows(results: dict[str, Any]) -> list[list[str]]:
    rows = []
    for op in results["operations"]:
        for index, base in enumerate(op["baselines"]):
            goal = ""
            if index == 0 and op["goal"] is not None:
                goal = f"≥ {op['goal']:.2f} {'met' if op['meets_goal'] else 'MISSED'}"
            elif base.get("goal") is not None:
                goal = f"≥ {base['goal']:.2f} {'met' if base['meets_goal'] else 'MISSED'}"
            rows.append(
                [
                    op["name"] if index == 0 else "",
                    f"{_spread(op['library']['throughput'])} {op['unit']}" if index == 0 else "",
                    base["label"],
                    _spread(base["throughput"]),
                    _ratio(base["ratio"]),
                    goal,
                ]
            )
    return rows


HEADERS = [
    "operation",
    "library: median (min-max)",
    "baseline",
    "baseline: median (min-max)",
    "ratio lib/baseline",
    "goal",
]


def peer_line(results: dict[str, Any]) -> str | None:
    """One line on the optional peer (eventsourcing): what the (peer) rows are, or why there are none."""
    peer = results.get("peer")
    if not peer:
        return None
    if not peer.get("available"):
        return f"peer ({peer['name']}): skipped, {peer['skipped']}"
    return (
        f"peer: rows marked (peer) are {peer['name']} {peer['version']}'s PostgreSQL recorder on the same "
        "database; their ratio is library / peer"
    )


def queue_peer_lines(results: dict[str, Any]) -> list[str]:
    """One line per queue peer (PgQueuer, DBOS): its version and shape, or why it was skipped."""
    lines = []
    for peer in results.get("queue_peers") or []:
        if peer.get("available"):
            lines.append(f"{peer['name']} {peer['version']}: {peer['shape']}; ratio = library / peer")
        else:
            lines.append(f"{peer['name']}: skipped, {peer['skipped']}")
    return lines


WAKE_HEADERS = [
    "wake-up (submit called → step started)",
    "median ms",
    "p99 ms",
    "min-max ms",
    "flows",
    "submit alone, median ms",
]


def wake_rows(results: dict[str, Any]) -> list[list[str]]:
    wake = results.get("wake_latency") or {}
    rows = []
    for key in ("local", "remote", "raw_notify"):
        if key in wake:
            w = wake[key]
            rows.append(
                [
                    w["label"],
                    f"{w['median_ms']:.2f}",
                    f"{w['p99_ms']:.2f}",
                    f"{w['min_ms']:.2f}-{w['max_ms']:.2f}",
                    str(w["samples"]),
                    f"{w['submit_median_ms']:.2f}" if "submit_median_ms" in w else "-",
                ]
            )
    return rows


GROWTH_HEADERS = ["events in event_log (never analyzed)", "flows/s (32 tasks, run_to_end, 3 no-op steps)"]


def growth_rows(results: dict[str, Any]) -> list[list[str]]:
    growth = results.get("log_growth") or {}
    return [[f"{row['log_events']:,}", _num(row["flows_per_s"])] for row in growth.get("rows", [])]


def markdown(results: dict[str, Any]) -> str:
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(results)]
    peer = peer_line(results)
    if peer is not None:
        lines += ["", peer[0].upper() + peer[1:] + "."]
    lines += ["", *(f"- {line}" for line in queue_peer_lines(results))] if queue_peer_lines(results) else []
    wake = wake_rows(results)
    if wake:
        lines += ["", "| " + " | ".join(WAKE_HEADERS) + " |", "|" + "---|" * len(WAKE_HEADERS)]
        lines += ["| " + " | ".join(row) + " |" for row in wake]
    growth = growth_rows(results)
    if growth:
        lines += ["", "| " + " | ".join(GROWTH_HEADERS) + " |", "|---|---|"]
        lines += ["| " + " | ".join(row) + " |" for row in growth]
    memory = results.get("memory") or []
    if memory:
        lines += [
            "",
            "| read (subprocess) | events | peak RSS MiB | RSS before MiB | growth MiB | events/s |",
            "|---|---|---|---|---|---|",
        ]
        for m in memory:
            what = f"{m['mode']}" + (f" (batch {m['batch_size']})" if m.get("batch_size") else "")
            lines.append(
                f"| {what} | {m['events']:,} | {m['peak_rss_mib']:.1f} | {m['rss_before_mib']:.1f} "
                f"| {m['growth_mib']:.1f} | {_num(m['events_per_s'] or 0.0)} |"
            )
    return "\n".join(lines) + "\n"


def console(results: dict[str, Any]) -> str:
    cells = [HEADERS, *table_rows(results)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(HEADERS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    peer = peer_line(results)
    if peer is not None:
        lines += ["", peer]
    lines += queue_peer_lines(results)
    wake = wake_rows(results)
    if wake:
        lines += ["", *("  ".join(row) for row in [WAKE_HEADERS, *wake])]
    growth = growth_rows(results)
    if growth:
        lines += ["", *("  ".join(row) for row in [GROWTH_HEADERS, *growth])]
    return "\n".join(lines)


def write_json(results: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return path


def write_chart(results: dict[str, Any], path: Path) -> Path | None:
    """A PNG: ratios library/raw (primary baseline, with min-max and the goal) and throughputs.
    Returns ``None`` when matplotlib is not installed (the ``bench`` extra)."""
    try:
        import matplotlib  # type: ignore[import-not-found,unused-ignore]

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None

    ops = results["operations"]
    if not ops:
        return None
    names = [op["name"] for op in ops]
    fig, (left, right) = plt.subplots(1, 2, figsize=(15, 0.55 * len(ops) + 2.2))

    # Left: each operation against its primary baseline, then every other baseline with a goal of
    # its own (a peer's), as rows of their own.
    rows = []
    for op in ops:
        rows.append((op["name"], op["baselines"][0]["label"], op["ratio"], op["goal"], op["meets_goal"]))
        for base in op["baselines"][1:]:
            if base.get("goal") is not None:
                rows.append((op["name"], base["label"], base["ratio"], base["goal"], base["meets_goal"]))
    fig.set_size_inches(15, 0.55 * max(len(ops), len(rows)) + 2.2)
    ys = list(range(len(rows)))
    medians = [r[2]["median"] for r in rows]
    low = [r[2]["median"] - r[2]["min"] for r in rows]
    high = [r[2]["max"] - r[2]["median"] for r in rows]
    colors = ["#999999" if r[3] is None else ("#2a9d3a" if r[4] else "#d1495b") for r in rows]
    left.barh(ys, medians, xerr=[low, high], color=colors, capsize=3)
    for y, (_, _, ratio, goal, _) in zip(ys, rows, strict=True):
        if goal is not None:
            left.plot([goal, goal], [y - 0.4, y + 0.4], color="black", linewidth=2)
        left.text(ratio["max"] * 1.02, y, f"{ratio['median']:.2f}", va="center", fontsize=8)
    left.axvline(1.0, color="#444444", linestyle="--", linewidth=1)
    if max(r[2]["max"] for r in rows) > 5:
        left.set_xscale("log")
    left.set_yticks(ys, [f"{name}\nvs {label}" for name, label, *_ in rows], fontsize=7)
    left.invert_yaxis()
    left.set_xlabel("throughput ratio library / baseline (>1: library faster); black tick = goal")
    left.set_title("ratio to the primary baseline, and to peers with a goal (median, min-max)")
    ys = list(range(len(ops)))

    series = [("library", [op["library"]["throughput"] for op in ops])]
    max_baselines = max(len(op["baselines"]) for op in ops)
    for index in range(max_baselines):
        stats = [op["baselines"][index]["throughput"] if index < len(op["baselines"]) else None for op in ops]
        series.append((f"baseline {index + 1}", stats))
    height = 0.8 / len(series)
    for offset, (label, stats) in enumerate(series):
        positions = [y + (offset - (len(series) - 1) / 2) * height for y in ys]
        values = [s["median"] if s else 0.0 for s in stats]
        right.barh(positions, values, height=height, label=label)
    right.set_xscale("log")
    right.set_yticks(ys, [f"{n} ({op['unit']})" for n, op in zip(names, ops, strict=True)], fontsize=7)
    right.invert_yaxis()
    right.set_xlabel("throughput, median (log scale); baselines in the order of the table")
    right.legend(fontsize=7, loc="lower right")
    right.set_title("throughput")

    env = results.get("environment", {})
    fig.suptitle(
        f"chem-persistence-async vs raw asyncpg — {results['started_at'][:19]} — "
        f"{'QUICK smoke run' if results['quick'] else 'full run'}, "
        f"{results['config']['repetitions']} rounds, "
        f"PostgreSQL {env.get('server_version', '?')}, {env.get('cpu_count', '?')} CPUs",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
