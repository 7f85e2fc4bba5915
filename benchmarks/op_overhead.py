"""Per-op overhead of small-tensor ops, ember vs PyTorch in the same run, one thread.

    python benchmarks/op_overhead.py [--ops add,matmul]

Target (issue 2): ember within 2x of PyTorch's per-op cost with grad tracking.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_of, choice_list, pin_threads, table  # noqa: E402

pin_threads(1)

import numpy as np  # noqa: E402

import ember  # noqa: E402

torch = None  # imported once the arguments are parsed: --help answers without it


def _import_torch() -> None:
    global torch
    try:
        import torch as _torch

        _torch.set_num_threads(1)
        torch = _torch
    except ImportError:  # the table then shows ember only
        pass


OPS = {
    "add": (lambda a, b: a + b, [(16, 16), (16, 16)]),
    "mul": (lambda a, b: a * b, [(16, 16), (16, 16)]),
    "matmul 16x16": (lambda a, b: a @ b, [(16, 16), (16, 16)]),
    "sum": (lambda a: a.sum(), [(16, 16)]),
    "relu": (lambda a: a.relu(), [(16, 16)]),
}


def _inputs(lib, shapes, grad):
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    if lib == "ember":
        return [ember.tensor(a, requires_grad=grad) for a in arrays]
    return [torch.tensor(a, requires_grad=grad) for a in arrays]


def measure(lib, fn, shapes):
    fwd_in = _inputs(lib, shapes, grad=False)
    t_fwd = best_of(lambda: fn(*fwd_in))
    grad_in = _inputs(lib, shapes, grad=True)
    t_fwd_grad = best_of(lambda: fn(*grad_in))

    def fwd_bwd():
        out = fn(*grad_in)
        out.sum().backward() if out.dim() else out.backward()
        for t in grad_in:
            t.grad = None

    t_fb = best_of(fwd_bwd)
    return t_fwd, t_fwd_grad, t_fb


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--ops",
        type=choice_list(OPS, {"matmul": "matmul 16x16"}),
        default=",".join(OPS),
        help=f"comma-separated, from {', '.join(OPS)} (matmul for short) or all; default all",
    )
    args = p.parse_args(argv)
    _import_torch()
    rows = []
    for name in args.ops:
        fn, shapes = OPS[name]
        e = measure("ember", fn, shapes)
        t = measure("torch", fn, shapes) if torch is not None else (float("nan"),) * 3
        rows.append(
            [name]
            + [f"{x * 1e6:.1f}" for x in e]
            + [f"{x * 1e6:.1f}" for x in t]
            + [f"{a / b:.2f}" for a, b in zip(e, t)]
        )
    print(
        table(
            rows,
            [
                "op",
                "ember fwd us",
                "ember fwd(grad) us",
                "ember fwd+bwd us",
                "torch fwd us",
                "torch fwd(grad) us",
                "torch fwd+bwd us",
                "ratio fwd",
                "ratio fwd(grad)",
                "ratio fwd+bwd",
            ],
        )
    )


if __name__ == "__main__":
    main()
