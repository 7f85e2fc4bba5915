"""report.md: the measured table (the CSV's own strings, so the two always agree), the plots,
the calibrated α-β model with its error on the measured points, and the projection."""

from __future__ import annotations

import csv

from .plots import draw_all
from .projection import Analysis, aggregate, analyse
from .rundir import RESULTS_CSV, SPEC_FILE, RunDir, _atomic_write, with_efficiency
from .spec import ExperimentSpec, load_spec

# (CSV column, table heading)
TABLE_COLUMNS = [
    ("point_id", "point"),
    ("workers", "workers"),
    ("strategy", "strategy"),
    ("backend", "backend"),
    ("bucket_cap_mb", "bucket MB"),
    ("per_worker_batch", "batch/worker"),
    ("samples_per_s", "samples/s"),
    ("scaling_efficiency", "efficiency"),
    ("step_ms", "step ms"),
    ("compute_ms", "compute ms"),
    ("comm_exposed_ms", "exposed comm ms"),
    ("data_ms", "data ms"),
    ("comm_wait_ms", "DDP wait ms"),
    ("sent_mib_per_step", "sent MiB/step"),
    ("busbw_gbps", "busbw GB/s"),
    ("mem_mib", "memory MiB/rank"),
    ("loss", "loss"),
]


_READ_ME = """
How to read it: *samples/s* is the global batch over the slowest rank's median step (the JSONL
also has the mean over the whole timed loop); *efficiency* is samples/s ÷ (workers × the
1-worker samples/s of the same configuration). *step*, *compute* and *data* are medians over
steps, averaged over ranks; *compute* is measured on an identical model with no communication,
run by all ranks at once (same core contention), so *exposed comm* = step − compute − data is
the communication that backward did not hide, plus any slow-down that communicating causes.
*DDP wait* is the time DDP itself spent waiting for its buckets after backward. *sent* counts
the bytes this rank handed to the transports per step (all collectives); *busbw* is the
NCCL-tests bus bandwidth of an allreduce of the gradient size. *memory* is the rank holding the
most, from: {sources} (a memory report counts the parameters, gradients, optimizer state and
communication buffers alive after the last timed step; `rss_peak_mib` in the CSV has each
process's peak resident size).
"""


def write_report(run_dir, spec: ExperimentSpec | None = None) -> str:
    """(Re)write ``report.md`` and ``plots/`` of a run directory from its rows; return the
    report's path. Works on a finished, interrupted or copied run directory alike."""
    rd = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    spec = spec or load_spec(rd.file(SPEC_FILE))
    rd.write_csv()
    with open(rd.file(RESULTS_CSV), newline="") as f:
        table = [r for r in csv.DictReader(f) if r["status"] == "ok"]
    rows = with_efficiency(rd.rows())
    agg = aggregate(rows)
    an = analyse(spec, rows)
    plots = draw_all(agg, an, rd.file("plots")) if agg else []
    md = _header(spec, rd, agg)
    md += _measured(table, rows)
    md += _missing(spec, rows)
    if plots:
        md += ["## Plots", ""] + [f"![{t}](plots/{n})" for t, n in plots] + [""]
    if an is not None:
        md += _model(an)
        md += _projection(an, spec)
    md += _timelines(rows)
    path = rd.file("report.md")
    _atomic_write(path, "\n".join(md).rstrip() + "\n")
    return path


def size(nbytes: float) -> str:
    """Bytes in KiB, MiB or GiB, whichever reads best."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.3g} {unit}"
    return f"{nbytes:.0f} bytes"


def _f3(x) -> str:
    return "" if x is None else f"{x:.3f}"


def md_table(header: list[str], rows: list[list]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out + [""]


def _header(spec: ExperimentSpec, rd: RunDir, agg: list[dict]) -> list[str]:
    opt = spec["optimizer"]
    lines = [f"# Scale-out experiment: {spec.name}", ""]
    desc = f"Workload `{spec['workload']}`"
    if agg:
        desc += f" ({agg[0]['n_params']:,} parameters, {size(agg[0]['grad_bytes'])} of gradients)"
    lines.append(
        f"{desc}; {opt['name']} (lr {opt['lr']:g}); per point {spec['warmup']} warm-up and "
        f"{spec['steps']} timed steps, then {spec['compute_steps']} steps of the same model "
        f"with no communication (the compute reference); {spec['repetitions']} "
        "repetition(s). Rows: `results.csv` / `results.jsonl`; spec: `spec.yaml`; software "
        "and machine: `environment.json`."
    )
    lines.append("")
    envs = rd.environment()
    if envs:
        e = envs[-1]
        m, v = e.get("machine", {}), e.get("versions", {})
        gpus = ", ".join(m.get("gpus") or []) or "none"
        lines.append(
            f"Machine (last session, {e.get('started')}): {m.get('cpu')}, "
            f"{m.get('cpu_count')} cores, {m.get('memory_gb')} GB, GPUs: {gpus}; "
            f"{m.get('platform')}. Ray nodes: {e.get('ray', {}).get('nodes', '?')}. "
            f"Load average at the start: {m.get('load_average')} (other work on the "
            "machine makes timings noisy; each row's `load_1m` has the load when it "
            "started)."
        )
        lines.append("Software: " + ", ".join(f"{k} {x}" for k, x in v.items()) + ".")
        lines.append("")
    return lines


def _measured(table: list[dict], rows: list[dict]) -> list[str]:
    lines = ["## Measured points", ""]
    if not table:
        return lines + ["No point has finished yet.", ""]
    lines += md_table(
        [h for _, h in TABLE_COLUMNS], [[r[c] for c, _ in TABLE_COLUMNS] for r in table]
    )
    sources = sorted({r["mem_source"] for r in table})
    lines += [" ".join(_READ_ME.split()).format(sources=", ".join(sources)), ""]
    return lines


def _missing(spec: ExperimentSpec, rows: list[dict]) -> list[str]:
    from .runner import available_strategies

    ok = {r["point_id"] for r in rows if r.get("status") == "ok"}
    failed = [r for r in rows if r.get("status") == "failed"]
    available = available_strategies()
    pending, waiting = [], {}
    for p in spec.points():
        if p.id in ok or any(r["point_id"] == p.id for r in failed):
            continue
        if p.strategy not in available:
            waiting.setdefault(p.strategy, []).append(p.id)
        else:
            pending.append(p.id)
    if not (failed or pending or waiting):
        return []
    lines = ["## Not measured", ""]
    for strategy, ids in waiting.items():
        lines.append(
            f"- `{strategy}` ({len(ids)} point(s)): not a Trainer strategy in this "
            "build yet; run the same command again once it is, and only these points "
            "will run."
        )
    for r in failed:
        lines.append(f"- `{r['point_id']}` failed: {r.get('error', '')}")
    if pending:
        lines.append(f"- not run yet (sweep interrupted?): {', '.join(pending)}")
    return lines + [""]


def _model(an: Analysis) -> list[str]:
    c = an.model.compute
    lines = [
        "## Cost model (α-β)",
        "",
        "Each strategy's collectives are priced as rings: allreduce 2(n−1)·α + "
        "2(n−1)/n·S·β, all-gather and reduce-scatter (n−1)·α + (n−1)/n·S·β, on the gradient "
        "size S (DDP: one allreduce per bucket; ZeRO-1 allreduce + all-gather; ZeRO-2 "
        "reduce-scatter + all-gather; FSDP two all-gathers + reduce-scatter; the gradient "
        "collectives of the first three in buckets, each paying its latency). A step takes "
        "data + compute + max(0, comm − o·compute), with o the share of compute that hides "
        "communication. Rings pay a latency that grows with n; tree and hierarchical "
        "algorithms pay log n, so at hundreds of workers with small buckets the projection "
        "is pessimistic.",
        "",
    ]
    if an.links:
        lines += md_table(
            ["link", "α (µs)", "bandwidth (GB/s)"],
            [
                [ic.name, f"{ic.alpha * 1e6:.1f}", f"{ic.bandwidth_gbps:.3g}"]
                for ic in an.links.values()
            ],
        )
        lines += [
            "Fitted to the allreduce timings of every multi-worker point (calibration "
            "sizes and the gradient size).",
            "",
        ]
    else:
        lines += ["No multi-worker point has run, so α and β of this machine are unknown.", ""]
    lines += [
        f"Compute (for the projection): {c.per_sample_s * 1e3:.4g} ms per sample + "
        f"{c.fixed_s * 1e3:.3g} ms per step ({c.rate:,.0f} samples/s per worker), fitted "
        f"on {an.compute_source}; data loading {c.data_per_sample_s * 1e6:.3g} µs per "
        "sample.",
        "",
    ]
    lines += md_table(
        ["strategy", "overlap o"], [[s, f"{o:.2f}"] for s, o in sorted(an.model.overlap.items())]
    )
    lines += [f"- {n}" for n in an.notes] + ([""] if an.notes else [])
    preds = an.predictions
    if preds:
        lines += [
            "### The model on the measured points",
            "",
            "Each multi-worker configuration predicted from its own measured compute and "
            "data time plus the model's exposed communication, so the error below is the "
            "communication model's (α-β and overlap), not the test machine's core "
            "contention.",
            "",
        ]
        lines += md_table(
            [
                "configuration",
                "workers",
                "step ms measured",
                "step ms model",
                "error",
                "exposed comm ms measured",
                "exposed comm ms model",
                "efficiency measured",
                "efficiency model",
                "sent MiB/step measured",
                "sent MiB/step model",
            ],
            [
                [
                    p["config_id"],
                    p["workers"],
                    f"{p['step_meas_ms']:.3f}",
                    f"{p['step_pred_ms']:.3f}",
                    f"{p['step_err_pct']:+.1f}%",
                    f"{p['exposed_meas_ms']:.3f}",
                    f"{p['exposed_pred_ms']:.3f}",
                    _f3(p["eff_meas"]),
                    _f3(p["eff_pred"]),
                    _f3(p["sent_meas_mib"]),
                    _f3(p["sent_pred_mib"]),
                ]
                for p in preds
            ],
        )
        s = an.error_summary()
        if s:
            eff = (
                ""
                if s["eff_mean_abs"] is None
                else (f", and its scaling efficiency by {s['eff_mean_abs']:.3f} on average")
            )
            ratio = [
                p["exposed_meas_ms"] / p["comm_pred_ms"] for p in preds if p["comm_pred_ms"] > 0
            ]
            lines += [
                f"On the {s['points']} multi-worker configuration(s) the model's step time "
                f"was off by {s['step_mean_abs_pct']:.1f}% on average (at most "
                f"{s['step_max_abs_pct']:.1f}%){eff}. These are in-sample figures: α, β "
                "and o were calibrated on the same runs."
            ]
            if ratio and min(ratio) > 1.2:
                lines[-1] += (
                    f" The exposed communication measured in training was "
                    f"{min(ratio):.1f}–{max(ratio):.1f}× the α-β time of the same collectives "
                    "run alone: during backward the communication competes with compute for "
                    "the cores (and the Python interpreter), which a pure α-β model does not "
                    "price, so read the projection as a bound from the link alone."
                )
            lines += [""]
    return lines


def _projection(an: Analysis, spec: ExperimentSpec) -> list[str]:
    st = an.settings
    ns = [n for n in st["workers"] if n in spec["projection"]["workers"]]
    batch = (
        f"{st['batch_size']} samples per worker (weak scaling)"
        if st["scaling"] == "weak"
        else f"a global batch of {st['batch_size']} (strong scaling)"
    )
    rate = "given in the spec" if st["compute_given"] else "calibrated here"
    lines = [
        "### Projection",
        "",
        f"Predicted scaling efficiency with {batch}, DDP buckets of {st['bucket_cap_mb']:g} "
        f"MB, {size(st['grad_bytes'])} of gradients and a compute rate of "
        f"{st['compute_rate']:,.0f} samples/s per worker ({rate}). Interconnect figures "
        "are inputs (spec `projection.interconnects`), except the links fitted on this "
        "machine.",
        "",
    ]
    lines += md_table(
        ["interconnect", "α (µs)", "GB/s", "strategy"] + [str(n) for n in ns],
        [
            [ic.name, f"{ic.alpha * 1e6:.3g}", f"{ic.bandwidth_gbps:.3g}", s]
            + [f"{e:.3f}" if e == e else "-" for n, e in an.curves[(ic.name, s)] if n in ns]
            for ic in an.interconnects
            for s in spec["grid"]["strategy"] + _mp_strategies(spec)
            if (ic.name, s) in an.curves
        ],
    )
    return lines


def _mp_strategies(spec: ExperimentSpec) -> list[str]:
    mp = spec["projection"].get("model_parallel")
    return list(mp["strategies"]) if mp else []


def _timelines(rows: list[dict]) -> list[str]:
    files = [
        (r["point_id"], r["timeline"])
        for r in rows
        if r.get("status") == "ok" and r.get("timeline")
    ]
    if not files:
        return []
    lines = [
        "## Timelines",
        "",
        "Chrome traces of the first timed steps, one process per rank, lanes `main` (data, "
        "forward, backward, waits for buckets, optimizer) and `comm` (each bucket's "
        "allreduce from launch to completion). Open them in https://ui.perfetto.dev or "
        "chrome://tracing.",
        "",
    ]
    return lines + [f"- [{pid}]({path})" for pid, path in files] + [""]


__all__ = ["write_report", "md_table", "TABLE_COLUMNS"]
