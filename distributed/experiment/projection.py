"""From measured rows to the cost model: calibration, predictions for the measured points (how
far off the model is), and projected scaling efficiency at 8–1024 workers per interconnect."""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field

from .costmodel import (
    BUCKETED,
    ComputeModel,
    CostModel,
    Interconnect,
    comm_time,
    ddp_buckets,
    fit_alpha_beta,
    wire_bytes,
)
from .mp_projection import add_curves
from .spec import ExperimentSpec

_NUMERIC = (
    "samples_per_s",
    "scaling_efficiency",
    "step_ms",
    "compute_ms",
    "comm_exposed_ms",
    "data_ms",
    "comm_wait_ms",
    "sent_mib_per_step",
    "allreduce_grad_ms",
    "busbw_gbps",
    "mem_mib",
    "rss_peak_mib",
    "loss",
)


def aggregate(rows: list[dict]) -> list[dict]:
    """One entry per configuration (repetitions averaged; ``*_std`` and ``reps`` added), in
    the rows' order. Rows must carry ``scaling_efficiency`` (see rundir.with_efficiency)."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        if r.get("status") == "ok":
            groups[r["config_id"]].append(r)
    out = []
    for rs in groups.values():
        a = {
            k: rs[0][k]
            for k in (
                "config_id",
                "workers",
                "strategy",
                "backend",
                "scaling",
                "batch_size",
                "per_worker_batch",
                "global_batch",
                "bucket_cap_mb",
                "grad_bytes",
                "n_params",
                "mem_source",
            )
        }
        a["reps"] = len(rs)
        for k in _NUMERIC:
            vals = [r[k] for r in rs if r.get(k) is not None]
            a[k] = statistics.fmean(vals) if vals else None
            a[f"{k}_std"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
        a["rank_mem_mib"] = [x["mem_mib"] for r in rs for x in r.get("ranks", [])]
        cats = [r["memory_mib"] for r in rs if r.get("memory_mib")]
        a["memory_mib"] = (
            {k: statistics.fmean(c[k] for c in cats) for k in cats[0]} if cats else None
        )
        a["allreduce"] = [[r["workers"], s, t] for r in rs for s, t in r.get("allreduce", [])]
        out.append(a)
    return out


def messages(strategy: str, grad_bytes: float, bucket_cap_mb: float) -> int:
    """Buckets of the gradient collective (DDP's count for the bucketed strategies)."""
    return ddp_buckets(grad_bytes, bucket_cap_mb) if strategy in BUCKETED else 1


@dataclass
class Analysis:
    """Calibrated model, its predictions for the measured points, and the projection."""

    model: CostModel
    projection_model: CostModel
    links: dict = field(default_factory=dict)  # backend -> Interconnect fitted here
    compute_source: str = ""
    predictions: list = field(default_factory=list)
    curves: dict = field(default_factory=dict)  # (link name, strategy) -> [(n, efficiency)]
    interconnects: list = field(default_factory=list)  # every link projected, calibrated first
    settings: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)

    def error_summary(self) -> dict | None:
        multi = [p for p in self.predictions if p["workers"] > 1]
        if not multi:
            return None
        errs = [abs(p["step_err_pct"]) for p in multi]
        eff = [abs(p["eff_pred"] - p["eff_meas"]) for p in multi if p["eff_meas"] is not None]
        return {
            "points": len(multi),
            "step_mean_abs_pct": statistics.fmean(errs),
            "step_max_abs_pct": max(errs),
            "eff_mean_abs": statistics.fmean(eff) if eff else None,
        }


def analyse(spec: ExperimentSpec, rows: list[dict]) -> Analysis | None:
    """Calibrate on the ok rows (with efficiencies), predict them, project the spec's grid."""
    agg = aggregate(rows)
    if not agg:
        return None
    # Compute: the 1-worker steps less data loading (no communication there, and the baseline
    # every efficiency divides by); without any, the compute reference of all points.
    single = [a for a in agg if a["workers"] == 1]
    if single:
        samples = [(a["per_worker_batch"], (a["step_ms"] - a["data_ms"]) / 1e3) for a in single]
        source = f"the 1-worker steps less data loading ({len(single)} configuration(s))"
    else:
        samples = [(a["per_worker_batch"], a["compute_ms"] / 1e3) for a in agg]
        source = f"the compute reference of {len(agg)} configuration(s) (no 1-worker point)"
    compute = ComputeModel.fit(
        samples, [(a["per_worker_batch"], a["data_ms"] / 1e3) for a in (single or agg)]
    )
    model = CostModel(compute)
    an = Analysis(model, model, compute_source=source)
    for backend in sorted({a["backend"] for a in agg}):
        samples = [tuple(s) for a in agg if a["backend"] == backend for s in a["allreduce"]]
        if any(n > 1 for n, _, _ in samples):
            an.links[backend] = fit_alpha_beta(samples, f"this machine ({backend})")
    for strategy in spec["grid"]["strategy"]:
        pts = [
            (
                a["workers"],
                a["compute_ms"] / 1e3,
                a["grad_bytes"],
                messages(strategy, a["grad_bytes"], a["bucket_cap_mb"]),
                a["comm_exposed_ms"] / 1e3,
                an.links[a["backend"]],
            )
            for a in agg
            if a["strategy"] == strategy and a["workers"] > 1 and a["backend"] in an.links
        ]
        model.fit_overlap(strategy, pts)
        if not pts:
            an.notes.append(
                f"{strategy}: no multi-worker measurement, so no overlap is assumed (o = 0)"
            )
    an.predictions = _predict(model, agg, an.links)
    rate = spec["projection"]["compute_rate"]
    if rate is not None:
        an.projection_model = CostModel(
            ComputeModel(0.0, 1.0 / rate, compute.data_per_sample_s), dict(model.overlap)
        )
    _project(spec, agg, an)
    return an


def _predict(model: CostModel, agg: list[dict], links: dict) -> list[dict]:
    """The model's step time for each measured multi-worker configuration, given that
    configuration's own measured compute and data time: so the error is that of the
    communication model (α-β and overlap), not of core contention on the test machine."""
    out = []
    for a in agg:
        n, ic = a["workers"], links.get(a["backend"])
        if n == 1 or ic is None:
            continue
        comp, data = a["compute_ms"] / 1e3, a["data_ms"] / 1e3
        m = messages(a["strategy"], a["grad_bytes"], a["bucket_cap_mb"])
        comm = comm_time(a["strategy"], n, a["grad_bytes"], ic, m)
        exposed = max(0.0, comm - model.overlap.get(a["strategy"], 0.0) * comp)
        step_pred = (data + comp + exposed) * 1e3
        step_meas = a["step_ms"]
        eff = a["scaling_efficiency"]
        out.append(
            {
                "config_id": a["config_id"],
                "workers": n,
                "strategy": a["strategy"],
                "step_meas_ms": step_meas,
                "step_pred_ms": step_pred,
                "step_err_pct": (step_pred - step_meas) / step_meas * 100,
                "comm_pred_ms": comm * 1e3,
                "exposed_meas_ms": a["comm_exposed_ms"],
                "exposed_pred_ms": exposed * 1e3,
                "eff_meas": eff,
                "sent_meas_mib": a["sent_mib_per_step"],
                "sent_pred_mib": wire_bytes(a["strategy"], n, a["grad_bytes"]) / 2**20,
                # same throughput-to-step-time relation as the measurement
                "eff_pred": None if eff is None else eff * step_meas / step_pred,
            }
        )
    return out


def _project(spec: ExperimentSpec, agg: list[dict], an: Analysis) -> None:
    g, proj = spec["grid"], spec["projection"]
    scaling, batch, cap = g["scaling"][0], g["batch_size"][0], g["bucket_cap_mb"][0]
    grad_bytes = agg[0]["grad_bytes"]
    ns = sorted({1, 2, 4, *proj["workers"]})
    if scaling == "strong":
        ns = [n for n in ns if batch / n >= 1]
    links = list(an.links.values()) + [
        Interconnect.from_figures(ic["name"], ic["bandwidth_gbit"], ic["latency_us"])
        for ic in proj["interconnects"]
    ]
    an.interconnects = links
    an.settings = {
        "scaling": scaling,
        "batch_size": batch,
        "bucket_cap_mb": cap,
        "grad_bytes": grad_bytes,
        "workers": ns,
        "compute_rate": an.projection_model.compute.rate,
        "compute_given": proj["compute_rate"] is not None,
    }
    for ic in links:
        for strategy in g["strategy"]:
            m = messages(strategy, grad_bytes, cap)
            an.curves[(ic.name, strategy)] = [
                (n, an.projection_model.efficiency(strategy, n, batch, scaling, grad_bytes, ic, m))
                for n in ns
            ]
    add_curves(an, spec, ns, links)  # TP, PP, TP x DP (spec projection.model_parallel)
