"""The report's PNG plots (matplotlib's object API with the Agg canvas: no pyplot, so nothing
changes the caller's matplotlib state or needs a display)."""

from __future__ import annotations

import os
from collections import defaultdict

_SEGMENTS = (
    ("compute_ms", "compute", "#4c72b0"),
    ("comm_exposed_ms", "exposed communication", "#dd8452"),
    ("data_ms", "data loading", "#55a868"),
)


_MEM_CATEGORIES = ("parameters", "gradients", "optimizer_state", "communication_buffers", "buffers")


def _figure(w: float = 6.4, h: float = 4.2):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str) -> None:
    fig.tight_layout()
    fig.savefig(path)


def series_label(a: dict, varying: set) -> str:
    """A configuration's name in legends: its strategy, plus whichever axes vary."""
    parts = [a["strategy"]]
    if "backend" in varying:
        parts.append(a["backend"])
    if "bucket_cap_mb" in varying:
        parts.append(f"cap {a['bucket_cap_mb']:g} MB")
    if "batch" in varying:
        parts.append(f"{a['scaling']} {a['batch_size']}")
    return ", ".join(parts)


def _series(agg: list[dict]) -> dict[str, list[dict]]:
    varying = set()
    for key in ("backend", "bucket_cap_mb"):
        if len({a[key] for a in agg}) > 1:
            varying.add(key)
    if len({(a["scaling"], a["batch_size"]) for a in agg}) > 1:
        varying.add("batch")
    out: dict[str, list[dict]] = defaultdict(list)
    for a in agg:
        out[series_label(a, varying)].append(a)
    return {k: sorted(v, key=lambda a: a["workers"]) for k, v in out.items()}


def draw_all(agg: list[dict], analysis, out_dir: str) -> list[tuple[str, str]]:
    """Write every plot into ``out_dir``; return ``[(title, file name), ...]``."""
    os.makedirs(out_dir, exist_ok=True)
    series = _series(agg)
    plots = [
        ("Throughput vs workers", "throughput.png", _throughput),
        ("Scaling efficiency vs workers", "efficiency.png", _efficiency),
        ("Step-time breakdown", "breakdown.png", _breakdown),
        ("Memory per rank", "memory.png", _memory),
    ]
    done = []
    for title, name, fn in plots:
        fn(series, agg, os.path.join(out_dir, name))
        done.append((title, name))
    if analysis is not None and analysis.curves:
        _projection(series, analysis, os.path.join(out_dir, "projection.png"))
        done.append(("Projected scaling efficiency (α-β model)", "projection.png"))
    return done


def _bars(series) -> list[tuple[str, dict]]:
    """(tick label, configuration) per bar: the series' parts on separate lines."""
    return [
        (label.replace(", ", "\n") + f"\n{a['workers']} w", a)
        for label, pts in series.items()
        for a in pts
    ]


def _legend_above(ax, ncol: int) -> None:
    """A legend in a band above the bars, so that it never hides one."""
    lo, hi = ax.get_ylim()
    ax.set_ylim(lo, hi * 1.25)
    ax.legend(fontsize=7, ncol=ncol, loc="upper center")


def _workers_axis(ax, agg) -> None:
    ns = sorted({a["workers"] for a in agg})
    ax.set_xticks(ns)
    ax.set_xlabel("workers")
    ax.grid(alpha=0.3)


def _throughput(series, agg, path) -> None:
    fig = _figure()
    ax = fig.add_subplot()
    for label, pts in series.items():
        xs = [a["workers"] for a in pts]
        line = ax.errorbar(
            xs,
            [a["samples_per_s"] for a in pts],
            yerr=[a["samples_per_s_std"] for a in pts],
            marker="o",
            capsize=3,
            label=label,
        )
        one = [a for a in pts if a["workers"] == 1]
        if one:  # ideal: n times the 1-worker throughput
            ax.plot(
                xs,
                [one[0]["samples_per_s"] * n for n in xs],
                ls=":",
                color=line[0].get_color(),
                alpha=0.6,
            )
    ax.set_ylabel("samples / s (dotted: linear scaling)")
    ax.set_title("Throughput")
    _workers_axis(ax, agg)
    ax.legend(fontsize=8)
    _save(fig, path)


def _efficiency(series, agg, path) -> None:
    fig = _figure()
    ax = fig.add_subplot()
    for label, pts in series.items():
        pts = [a for a in pts if a["scaling_efficiency"] is not None]
        ax.errorbar(
            [a["workers"] for a in pts],
            [a["scaling_efficiency"] for a in pts],
            yerr=[a["scaling_efficiency_std"] for a in pts],
            marker="o",
            capsize=3,
            label=label,
        )
    ax.axhline(1.0, color="grey", ls=":")
    ax.set_ylim(0, max(1.1, *[a["scaling_efficiency"] or 0 for a in agg]) * 1.05)
    ax.set_ylabel("throughput / (workers × 1-worker throughput)")
    ax.set_title("Scaling efficiency")
    _workers_axis(ax, agg)
    ax.legend(fontsize=8)
    _save(fig, path)


def _breakdown(series, agg, path) -> None:
    bars = _bars(series)
    fig = _figure(max(6.4, 0.75 * len(bars) + 2), 4.6)
    ax = fig.add_subplot()
    xs = range(len(bars))
    bottom = [0.0] * len(bars)
    for key, name, color in _SEGMENTS:
        vals = [a[key] or 0.0 for _, a in bars]
        ax.bar(xs, vals, bottom=bottom, label=name, color=color)
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_xticks(list(xs))
    ax.set_xticklabels([b[0] for b in bars], fontsize=7)
    ax.set_ylabel("ms per step (median over steps, mean over ranks)")
    ax.set_title("Step time: compute, exposed communication, data loading")
    _legend_above(ax, 3)
    ax.grid(axis="y", alpha=0.3)
    _save(fig, path)


def _memory(series, agg, path) -> None:
    bars = _bars(series)
    fig = _figure(max(6.4, 0.75 * len(bars) + 2), 4.6)
    ax = fig.add_subplot()
    xs = list(range(len(bars)))
    if all(a.get("memory_mib") for _, a in bars):
        # the memory report: what the bytes are, on the rank holding the most
        bottom = [0.0] * len(bars)
        for cat in _MEM_CATEGORIES:
            vals = [a["memory_mib"].get(cat, 0.0) for _, a in bars]
            ax.bar(xs, vals, bottom=bottom, label=cat.replace("_", " "))
            bottom = [b + v for b, v in zip(bottom, vals)]
        ax.set_ylabel("MiB (memory report: arrays alive after the last step)")
    else:
        ax.bar(xs, [a["mem_mib"] for _, a in bars], label="largest rank")
        for x, (_, a) in zip(xs, bars):  # every rank's figure as a dot
            ax.plot([x] * len(a["rank_mem_mib"]), a["rank_mem_mib"], "k.", ms=3)
        sources = sorted({a["mem_source"] for _, a in bars})
        ax.set_ylabel(f"MiB ({', '.join(sources)}; dots: each rank)")
    ax.set_xticks(xs)
    ax.set_xticklabels([b[0] for b in bars], fontsize=7)
    ax.set_title("Memory per rank")
    _legend_above(ax, 5)
    ax.grid(axis="y", alpha=0.3)
    _save(fig, path)


def _projection(series, an, path) -> None:
    links = an.interconnects
    cols = min(2, len(links))
    rows = (len(links) + cols - 1) // cols
    fig = _figure(5.2 * cols, 3.8 * rows)
    strategies = sorted({s for _, s in an.curves})
    measured = [a for pts in series.values() for a in pts if a["scaling_efficiency"] is not None]
    for i, ic in enumerate(links):
        ax = fig.add_subplot(rows, cols, i + 1)
        for strategy in strategies:
            curve = an.curves.get((ic.name, strategy))
            if curve:
                ax.plot(
                    [n for n, _ in curve],
                    [e for _, e in curve],
                    marker=".",
                    label=f"{strategy} (model)",
                )
        here = i < len(an.links)  # the panels of links calibrated on this machine
        for a in measured:
            ax.plot(a["workers"], a["scaling_efficiency"], "^", color="k" if here else "0.6", ms=6)
        ax.plot([], [], "k^", label="measured here")
        ax.set_xscale("log", base=2)
        ax.set_ylim(0, 1.05)
        ax.set_title(f"{ic.name}: {_bw(ic)}, α {ic.alpha * 1e6:.1f} µs", fontsize=9)
        ax.set_xlabel("workers")
        ax.set_ylabel("scaling efficiency")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    _save(fig, path)


def _bw(ic) -> str:
    gbps = ic.bandwidth_gbps
    return f"{gbps:.3g} GB/s" if gbps != float("inf") else "∞ GB/s"
