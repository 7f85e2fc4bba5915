"""Export benchmark: capture time and inference latency of saved programs vs eager.

For the CNN of DESIGN.md section 7 and a small GPT (2 layers, d=128, 4 heads, context 64):

* capture: ``ember.export.export`` + ``ember.export.save`` and ``ember.jit.trace`` +
  ``ember.jit.save`` (seconds), next to ``torch.export.export`` and ``torch.jit.trace``;
* inference at batch 1 and 32: ember eager, the loaded ``export`` program, the loaded (and
  ``optimize_for_inference``-d) ``jit`` program, and torch eager (ms per call).

    python benchmarks/export.py [--threads 1] [--quick]
"""

from __future__ import annotations

import argparse
import io
import time

from _common import best_of, pin_threads, table


def cnn(lib):
    nn = lib.nn
    return nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10))


def gpt(lib, vocab: int = 1000, d: int = 128, ctx: int = 64):
    nn = lib.nn

    class GPT(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tok = nn.Embedding(vocab, d)
            self.pos = nn.Embedding(ctx, d)
            layer = nn.TransformerEncoderLayer(d, 4, 4 * d, dropout=0.0, batch_first=True)
            self.blocks = nn.TransformerEncoder(layer, 2)
            self.head = nn.Linear(d, vocab)
            self.register_buffer("mask", lib.triu(lib.full((ctx, ctx), float("-inf")), 1))

        def forward(self, idx):
            t = idx.size(1)
            h = self.tok(idx) + self.pos(lib.arange(t))
            return self.head(self.blocks(h, mask=self.mask[:t, :t]))

    return GPT()


def inputs(lib, name: str, batch: int):
    if name == "cnn":
        return (lib.randn(batch, 1, 28, 28),)
    return (lib.randint(0, 1000, (batch, 64)),)


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench(ember, torch, name: str, make, repeat: int) -> tuple[list, list]:
    """One model: capture row and latency rows."""
    from ember.export import Dim

    ember.manual_seed(0)
    m = make(ember).eval()
    ex = inputs(ember, name, 2)
    dyn = ({0: Dim("batch", max=1024)},)
    ep_buf, jit_buf = io.BytesIO(), io.BytesIO()
    t_export = timed(lambda: ember.export.save(
        ember.export.export(m, ex, dynamic_shapes=dyn), ep_buf))
    t_jit = timed(lambda: ember.jit.save(ember.jit.trace(m, ex, check_trace=False), jit_buf))
    ep_mod = ember.export.load(io.BytesIO(ep_buf.getvalue())).module()
    jit_mod = ember.jit.optimize_for_inference(ember.jit.load(io.BytesIO(jit_buf.getvalue())))
    row = [name, f"{t_export:.3f}", f"{t_jit:.3f}"]
    tm = None
    if torch is not None:
        tm = make(torch).eval()
        tex = inputs(torch, name, 2)
        tdyn = ({0: torch.export.Dim("batch", max=1024)},)
        for fn in (lambda: torch.export.export(tm, tex, dynamic_shapes=tdyn),
                   lambda: torch.jit.trace(tm, tex, check_trace=False)):
            try:
                row.append(f"{timed(fn):.3f}")
            except Exception as e:  # noqa: BLE001 -- report, keep benchmarking
                row.append(f"failed ({type(e).__name__})")
    lat = []
    for batch in (1, 32):
        x = inputs(ember, name, batch)
        with ember.no_grad():
            r = [name, batch] + [f"{best_of(lambda f=f, x=x: f(*x), repeat=repeat) * 1e3:.2f}"
                                 for f in (m, ep_mod, jit_mod)]
        if tm is not None:
            tx = tuple(torch.from_numpy(v.numpy()) for v in x)
            with torch.no_grad():
                r.append(f"{best_of(lambda tx=tx: tm(*tx), repeat=repeat) * 1e3:.2f}")
        lat.append(r)
    return row, lat


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    pin_threads(a.threads)
    import ember

    try:
        import torch

        torch.set_num_threads(a.threads)
    except ImportError:
        torch = None
    repeat = 2 if a.quick else 5
    cap_rows, lat_rows = [], []
    for name, make in (("cnn", cnn), ("gpt", gpt)):
        cap, lat = bench(ember, torch, name, make, repeat)
        cap_rows.append(cap)
        lat_rows += lat
    print(f"# capture + save (s), {a.threads} thread(s)")
    print(table(cap_rows, ["model", "ember export+save", "ember jit.trace+save",
                           "torch.export", "torch.jit.trace"][:len(cap_rows[0])]))
    print("\n# inference latency (ms per call)")
    print(table(lat_rows, ["model", "batch", "ember eager", "loaded export", "loaded jit (opt)",
                           "torch eager"][:len(lat_rows[0])]))


if __name__ == "__main__":
    main()
