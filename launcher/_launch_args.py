"""``ember launch``'s argument types and plan: ``--nnodes N`` or ``MIN:MAX``, numbers with a
lower bound, ``--env K=V`` pairs, and how many workers go where (``_plan``: the count and the
Ray placement strategy, from the flags and the cluster config)."""

from __future__ import annotations

import argparse


def _at_least(low: int, kind: type = int):
    """An argparse type: a ``kind`` number >= ``low``; anything else is argparse's one-line
    error naming the option (not a traceback, nor a Ray started for zero workers)."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'an integer' if kind is int else 'a number'}, got {text!r}"
            ) from None
        if not value >= low:  # also NaN
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse's messages name the type by it
    return parse


def _nnodes(text: str) -> tuple[int, int]:
    """``--nnodes``: ``N`` or torchrun's elastic ``MIN:MAX``, as ``(min, max)``."""
    lo, sep, hi = text.partition(":")
    try:
        lo_n = int(lo)
        hi_n = int(hi) if sep else lo_n
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or MIN:MAX, got {text!r}") from None
    if lo_n < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    if lo_n > hi_n:
        raise argparse.ArgumentTypeError(f"MIN:MAX needs MIN <= MAX, got {lo_n} > {hi_n}")
    return lo_n, hi_n


def _parse_env(pairs: list[str]) -> dict:
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"ember launch: --env expects K=V, got {pair!r}")
        env[key] = value
    return env


def _plan(args, cfg=None) -> tuple[int, str]:
    if isinstance(args.nnodes, tuple):  # --nnodes MIN:MAX (or N): keep MAX as args.nnodes
        args.min_nnodes, args.nnodes = args.nnodes
    else:
        args.min_nnodes = args.nnodes
    if args.workers is not None and (args.nnodes or args.nproc_per_node):
        raise SystemExit("ember launch: give either --workers or --nnodes/--nproc-per-node")
    per_node = cfg.ember["workers_per_node"] if cfg is not None else None
    if args.nnodes is not None and args.nproc_per_node is None and per_node:
        args.nproc_per_node = per_node  # the cluster config's workers_per_node
    if (args.nnodes is None) != (args.nproc_per_node is None):
        raise SystemExit("ember launch: --nnodes and --nproc-per-node go together")
    if args.nnodes is not None:
        n = args.nnodes * args.nproc_per_node
        strategy = "STRICT_SPREAD" if args.nproc_per_node == 1 and args.nnodes > 1 else "SPREAD"
        most = cfg.max_nodes() if cfg is not None else None
        if most is not None and args.nnodes > most:
            raise SystemExit(
                f"ember launch: --nnodes {args.nnodes} but the cluster of "
                f"{cfg.path} has at most {most} node(s)"
            )
    else:
        n = args.workers or per_node or 1
        strategy = "PACK"
    if args.placement:
        strategy = args.placement.upper()
    if n < 1:
        raise SystemExit(f"ember launch: the number of workers must be >= 1, got {n}")
    return n, strategy
