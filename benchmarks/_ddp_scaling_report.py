"""benchmarks/ddp_scaling.py's figures: one run's summary (``summarise``: the slowest rank's
median step, throughput, phases, startup) and the printed tables (``print_report``: weak
scaling per cell with each repeat's paired efficiency, ember's startup, the ``--json`` file)."""

from __future__ import annotations

import json
import os
import statistics

from _common import table

PHASES = ("fwd", "bwd", "wait", "opt", "cpu")


def summarise(ranks: list[dict], workers: int, batch: int, called: float | None) -> dict:
    """Median step of the slowest rank, throughput, phases, startup and the load average."""
    steps = [max(r["step"][i] for r in ranks) for i in range(len(ranks[0]["step"]))]
    slowest = max(ranks, key=lambda r: statistics.median(r["step"]))
    step = statistics.median(steps)
    out = {
        "workers": workers,
        "batch": batch,
        "step_ms": step * 1e3,
        "samples_per_s": workers * batch / step,
        "load": os.getloadavg()[0],
        "loss": ranks[0]["loss"],
        "wire_kib": ranks[0].get("wire", 0) / 1024,
    }
    for k in PHASES:
        out[f"{k}_ms"] = statistics.median(slowest[k]) * 1e3
    if called is not None:
        out["startup_s"] = max(r["first_step"][1] for r in ranks) - called
        out["to_first_step_start_s"] = max(r["first_step"][0] for r in ranks) - called
        out["to_loop_entered_s"] = max(r["entered"] for r in ranks) - called
    return out


def print_report(args, results: dict, runs: dict, startup: dict, load0: tuple) -> None:
    """Print the tables (and write ``--json``) from the median runs of every cell."""
    rows = []
    for (name, fw, workers), r in results.items():
        # each repeat's 2-worker run against the 1-worker run just before it
        effs = sorted(
            two["samples_per_s"] / (workers * one["samples_per_s"])
            for one, two in zip(runs[(name, fw.split("+")[0], 1)], runs[(name, fw, workers)])
        )
        r["efficiency"], r["efficiencies"] = statistics.median(effs), effs
        spread = f" ({effs[0]:.2f}-{effs[-1]:.2f})" if workers > 1 and len(effs) > 1 else ""
        rows.append(
            [
                name,
                fw,
                workers,
                r["batch"],
                f"{r['step_ms']:.1f}",
                f"{r['samples_per_s']:.0f}",
                f"{r['efficiency']:.2f}{spread}",
                *(f"{r[f'{k}_ms']:.1f}" for k in PHASES),
                f"{r['wire_kib']:.0f}",
                f"{r['load']:.1f}",
            ]
        )
    print(
        "\nweak scaling, 1 thread per worker; ms are medians per step (slowest rank); "
        "efficiency: median over repeats (lowest-highest)"
    )
    print(
        table(
            rows,
            [
                "workload",
                "framework",
                "workers",
                "batch/worker",
                "step ms",
                "samples/s",
                "efficiency",
                "fwd ms",
                "bwd ms",
                "DDP wait ms",
                "opt ms",
                "cpu ms",
                "wire KiB",
                "load 1m",
            ],
        )
    )
    if "ember" in args.frameworks:
        keys = ("startup_s", "to_first_step_start_s", "to_loop_entered_s")
        srows = [
            [
                kind,
                len(startup[kind]),
                *(f"{statistics.median(r[k] for r in startup[kind]):.2f}" for k in keys),
            ]
            for kind in ("cold", "warm")
            if startup[kind]
        ]
        print("\nember startup, 2 workers: seconds (median) from Trainer.fit() called to ...")
        print(
            table(
                srows,
                ["fit()", "fits", "first step done", "first step begins", "train function entered"],
            )
        )
    load1 = os.getloadavg()
    print(f"\nload average at the end: {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "load_start": load0,
                    "load_end": load1,
                    "startup": startup,
                    "results": [
                        {"workload": k[0], "framework": k[1], **v} for k, v in results.items()
                    ],
                },
                f,
                indent=2,
            )
