"""Per-op overhead of small-tensor ops, ember vs PyTorch in the same run, one thread.

    python benchmarks/op_overhead.py [--ops add,matmul] [--steps] [--rounds 5]

Target (issue 2): ember within 2x of PyTorch's per-op cost with grad tracking. ``--steps``
times small forward + backward steps instead (issue 23: the per-call overhead of small
models and norms), in CPU time of this process, ember and torch interleaved round by round.
"""

from __future__ import annotations

import argparse
import sys
import time
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
    "view": (lambda a: a.view(256), [(16, 16)]),
    "reshape": (lambda a: a.reshape(8, 32), [(16, 16)]),
    "linear 8x32->64": (
        lambda x, w, b: _lib(x).nn.functional.linear(x, w, b),
        [(8, 32), (64, 32), (64,)],
    ),
    "layer_norm 8x64": (
        lambda x, w, b: _lib(x).nn.functional.layer_norm(x, (64,), w, b),
        [(8, 64), (64,), (64,)],
    ),
}


def _lib(t):
    return ember if isinstance(t, ember.Tensor) else torch


def _step_models(lib):
    """Small forward + backward steps (name -> (module or None, input shape, loss)); the same
    weights for both libraries."""
    nn = lib.nn
    lib.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))
    return {
        "(a * b + c).sum(), 4 elements": None,
        "MLP 32-64-10, batch 8": (mlp, (8, 32)),
        "LayerNorm(64) on 8 x 64": (nn.LayerNorm(64), (8, 64)),
        "LayerNorm(128) on 32 x 128": (nn.LayerNorm(128), (32, 128)),
        "RMSNorm(64) on 8 x 64": (nn.RMSNorm(64), (8, 64)),
        "GroupNorm(4, 16) on 2 x 16 x 4 x 4": (nn.GroupNorm(4, 16), (2, 16, 4, 4)),
    }


def _step(lib, spec):
    """A step: forward, ``.sum().backward()``, then every gradient set to None (as
    ``zero_grad()`` does), so each step allocates its gradients as a training step does."""
    rng = np.random.default_rng(0)
    if spec is None:
        leaves = [lib.tensor(rng.standard_normal(4), requires_grad=True) for _ in range(3)]
        a, b, c = leaves

        def loss():
            return (a * b + c).sum()

    else:
        model, shape = spec
        x = lib.tensor(rng.standard_normal(shape).astype(np.float32), requires_grad=True)
        leaves = [x, *model.parameters()]

        def loss():
            return model(x).sum()

    def step():
        loss().backward()
        for t in leaves:
            t.grad = None

    return step


def measure_steps(rounds: int, number: int = 300) -> list[list]:
    """Best CPU time of a step (us) over ``rounds`` rounds of ``number`` steps, ember and
    torch alternating round by round, so both see the same machine."""
    specs = {lib: _step_models(lib) for lib in (ember, torch) if lib is not None}
    rows = []
    for name in specs[ember]:
        fns = {lib: _step(lib, s[name]) for lib, s in specs.items()}
        best = dict.fromkeys(fns, float("inf"))
        for _ in range(rounds):
            for lib, fn in fns.items():
                fn()  # (warm: the first step allocates the .grad buffers)
                t0 = time.thread_time()
                for _ in range(number):
                    fn()
                best[lib] = min(best[lib], (time.thread_time() - t0) / number)
        e, t = best[ember], best.get(torch, float("nan"))
        rows.append([name, f"{e * 1e6:.1f}", f"{t * 1e6:.1f}", f"{e / t:.2f}"])
    return rows


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
    p.add_argument("--steps", action="store_true", help="time small forward+backward steps")
    p.add_argument("--rounds", type=int, default=5, help="rounds of the --steps timing")
    args = p.parse_args(argv)
    _import_torch()
    if args.steps:
        rows = measure_steps(args.rounds)
        print(table(rows, ["step", "ember us", "torch us", "ember / torch"]))
        return
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
