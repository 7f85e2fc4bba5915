"""``ember experiment SPEC.yaml``: a scale-out sweep through the Trainer, its run directory,
report, plots and projection (ember.distributed.experiment does the work)."""

from __future__ import annotations

import argparse
import os
import sys


def add_parser(sub) -> None:
    p = sub.add_parser(
        "experiment",
        help="run a scale-out sweep and write results, plots and a projection",
        description="Measure every point of SPEC's grid (workers x strategy x backend x batch "
        "size x bucket size x repetitions) through the Trainer, record one row per "
        "point (CSV and JSONL), and write report.md with plots, an alpha-beta "
        "projection to 8-1024 workers and Chrome-trace timelines. Running it again "
        "on the same --out resumes: finished points are skipped.",
    )
    p.add_argument("spec", help="the experiment spec (YAML); see docs/experiments.md")
    p.add_argument(
        "--out", metavar="DIR", help="run directory (default ~/ember_results/experiments/NAME)"
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--address",
        help="an existing Ray cluster (ray://... or HOST:PORT); "
        "default: the spec's where.address, else a local Ray",
    )
    where.add_argument(
        "--cluster", metavar="CONFIG", help="a cluster config from cluster_configs/ (uses its head)"
    )
    p.add_argument(
        "--fresh",
        action="store_true",
        help="drop earlier results in the run directory instead of resuming",
    )
    p.add_argument(
        "--report-only",
        action="store_true",
        help="only rewrite report.md and the plots from the rows already there",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no line per point")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ember.distributed import experiment

    try:
        spec = experiment.load_spec(args.spec)
    except experiment.SpecError as e:
        print(f"ember experiment: {e}", file=sys.stderr)
        return 2
    out = args.out or experiment.runner.default_out_dir(spec)
    if args.report_only:
        if not os.path.exists(os.path.join(out, "results.jsonl")):
            print(f"ember experiment: no results in {out}", file=sys.stderr)
            return 2
        print(experiment.write_report(out, spec))
        return 0
    cluster = args.cluster or spec["where"]["cluster"]
    address, env = args.address, {}
    if cluster and not address:
        address, env = _cluster_address(cluster, args.spec)
    try:
        result = experiment.run(
            spec, out, address=address, fresh=args.fresh, verbose=not args.quiet, worker_env=env
        )
    except experiment.SpecError as e:
        print(f"ember experiment: {e}", file=sys.stderr)
        return 2
    print(result.report or result.path)
    return 1 if result.failed else 0


def _cluster_address(cluster: str, spec_path: str) -> tuple[str | None, dict]:
    """The Ray address of a cluster config (relative paths also tried next to the spec), and
    the environment its workers need (the cluster's auth settings)."""
    from .launch import _cluster

    if not os.path.exists(cluster):
        beside = os.path.join(os.path.dirname(os.path.abspath(spec_path)), cluster)
        if os.path.exists(beside):
            cluster = beside
    _, address, env = _cluster(argparse.Namespace(cluster=cluster, address=None))
    return address, env
