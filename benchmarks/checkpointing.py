"""Activation checkpointing: peak memory and step time of a 12-layer transformer, with and
without ``ember.utils.checkpoint`` (one checkpoint per layer).

    python benchmarks/checkpointing.py [--layers 12] [--d-model 128] [--batch 8] [--seq 128]

Memory is measured, not estimated: ``tracemalloc`` traces every NumPy allocation, so the peak
of (forward + backward) above the model's own memory, and the memory still held between
forward and backward (the saved activations), are what the process really allocated.
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc

from _common import positive_int

import ember
from ember.utils.checkpoint import checkpoint


class Stack(ember.nn.Module):
    def __init__(self, layers: int, d: int, use_checkpoint: bool):
        super().__init__()
        self.layers = ember.nn.ModuleList(
            ember.nn.TransformerEncoderLayer(d, 4, 4 * d, dropout=0.1, batch_first=True)
            for _ in range(layers)
        )
        self.use_checkpoint = use_checkpoint

    def forward(self, x):
        for layer in self.layers:
            x = checkpoint(layer, x, use_reentrant=False) if self.use_checkpoint else layer(x)
        return x


def measure(use_checkpoint: bool, args) -> dict:
    ember.manual_seed(0)
    model = Stack(args.layers, args.d_model, use_checkpoint)
    x = ember.randn(args.batch, args.seq, args.d_model)
    step = lambda: model(x).square().mean()  # noqa: E731
    step().backward()  # warm-up (lazy buffers, grads allocated)
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    loss = step()
    held = tracemalloc.get_traced_memory()[0] - base
    loss.backward()
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    del loss
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        step().backward()
        times.append(time.perf_counter() - t0)
    return {
        "held_mib": held / 2**20,
        "peak_mib": peak / 2**20,
        "step_ms": 1000 * sorted(times)[len(times) // 2],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", type=positive_int, default=12)
    p.add_argument("--d-model", type=positive_int, default=128)
    p.add_argument("--batch", type=positive_int, default=8)
    p.add_argument("--seq", type=positive_int, default=128)
    p.add_argument("--repeats", type=positive_int, default=5)
    args = p.parse_args()
    plain, ckpt = measure(False, args), measure(True, args)
    print(
        f"{args.layers}-layer transformer, d_model={args.d_model}, batch={args.batch}x"
        f"{args.seq} tokens"
    )
    print(f"{'':16}{'held after fwd':>16}{'peak fwd+bwd':>16}{'step ms':>10}")
    for name, r in (("no checkpoint", plain), ("checkpoint", ckpt)):
        print(f"{name:16}{r['held_mib']:>13.1f}MiB{r['peak_mib']:>13.1f}MiB{r['step_ms']:>10.1f}")
    print(
        f"activation memory held: {plain['held_mib'] / ckpt['held_mib']:.1f}x less; peak "
        f"{plain['peak_mib'] / ckpt['peak_mib']:.1f}x less; recompute cost "
        f"{ckpt['step_ms'] / plain['step_ms']:.2f}x step time"
    )


if __name__ == "__main__":
    main()
