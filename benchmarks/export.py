"""Export benchmark: capture time and inference latency of saved programs vs eager.

For the CNN of DESIGN.md section 7 and a small GPT (2 layers, d=128, 4 heads, context 64):

* capture: ``ember.export.export`` + ``ember.export.save`` and ``ember.jit.trace`` +
  ``ember.jit.save`` (seconds), next to ``torch.export.export`` and ``torch.jit.trace``;
* inference at batch 1 and 32: ember eager, the loaded ``export`` program, the loaded (and
  ``optimize_for_inference``-d) ``jit`` program, and torch eager (ms per call);
* ONNX: the file of ``ember.onnx.export`` and the file of ``torch.onnx.export(...,
  dynamo=False)`` of the same model with the same weights, both run in onnxruntime at batch 1
  and 32 (ms per call, and ember's / torch's: the target is within 10%, i.e. <= 1.10), with
  the export times and the largest difference between the two files' outputs.

    python benchmarks/export.py [--threads 1] [--quick] [--onnx-only]
"""

from __future__ import annotations

import argparse
import io
import time

from _common import best_of, pin_threads, positive_int, table


def cnn(lib):
    nn = lib.nn
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(3136, 128),
        nn.ReLU(),
        nn.Linear(128, 10),
    )


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
    t_export = timed(
        lambda: ember.export.save(ember.export.export(m, ex, dynamic_shapes=dyn), ep_buf)
    )
    t_jit = timed(lambda: ember.jit.save(ember.jit.trace(m, ex, check_trace=False), jit_buf))
    ep_mod = ember.export.load(io.BytesIO(ep_buf.getvalue())).module()
    jit_mod = ember.jit.optimize_for_inference(ember.jit.load(io.BytesIO(jit_buf.getvalue())))
    row = [name, f"{t_export:.3f}", f"{t_jit:.3f}"]
    tm = None
    if torch is not None:
        tm = make(torch).eval()
        tex = inputs(torch, name, 2)
        tdyn = ({0: torch.export.Dim("batch", max=1024)},)
        for fn in (
            lambda: torch.export.export(tm, tex, dynamic_shapes=tdyn),
            lambda: torch.jit.trace(tm, tex, check_trace=False),
        ):
            try:
                row.append(f"{timed(fn):.3f}")
            except Exception as e:  # noqa: BLE001 -- report, keep benchmarking
                row.append(f"failed ({type(e).__name__})")
    lat = []
    for batch in (1, 32):
        x = inputs(ember, name, batch)
        with ember.no_grad():
            r = [name, batch] + [
                f"{best_of(lambda f=f, x=x: f(*x), repeat=repeat) * 1e3:.2f}"
                for f in (m, ep_mod, jit_mod)
            ]
        if tm is not None:
            tx = tuple(torch.from_numpy(v.numpy()) for v in x)
            with torch.no_grad():
                r.append(f"{best_of(lambda tx=tx: tm(*tx), repeat=repeat) * 1e3:.2f}")
        lat.append(r)
    return row, lat


def _ort_session(ort, data: bytes, threads: int):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = threads
    return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])


def _interleaved_best(fns: list, repeat: int, min_time: float = 0.1) -> list[float]:
    """Seconds per call of each of ``fns``, best of rounds that alternate between them: on a
    loaded machine, back-to-back runs of one then the other would compare different loads."""
    for fn in fns:  # warm up: onnxruntime allocates and plans on the first runs
        for _ in range(3):
            fn()
    number = max(1, round(min_time / max(best_of(fns[0], repeat=1, number=1), 1e-6)))
    best = [float("inf")] * len(fns)
    for _ in range(4 * repeat):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            best[i] = min(best[i], (time.perf_counter() - t0) / number)
    return best


def bench_onnx(ember, torch, ort, name: str, make, repeat: int, threads: int) -> list:
    """Rows ``[model, batch, ember export s, torch export s, ort(ember) ms, ort(torch) ms,
    ratio, max |diff|]``: the two ONNX files of one model, run by onnxruntime (export times
    are the best of two exports)."""
    import numpy as np

    ember.manual_seed(0)
    m = make(ember).eval()
    tm = make(torch).eval()
    tm.load_state_dict(
        {k: torch.from_numpy(v.detach().numpy().copy()) for k, v in m.state_dict().items()}
    )
    ex = inputs(ember, name, 2)
    tex = tuple(torch.from_numpy(v.numpy()) for v in ex)
    io_kw = {
        "input_names": ["x"],
        "output_names": ["y"],
        "opset_version": 17,
        "dynamic_axes": {"x": {0: "batch"}, "y": {0: "batch"}},
    }
    bufs: dict[str, io.BytesIO] = {}

    def export_best_of_2(key: str, fn) -> float:  # the first call also pays one-time imports
        times = []
        for _ in range(2):
            bufs[key] = io.BytesIO()
            times.append(timed(lambda: fn(bufs[key])))
        return min(times)

    t_e = export_best_of_2("ember", lambda f: ember.onnx.export(m, ex, f, **io_kw))
    # with grad enabled: under no_grad torch's eval TransformerEncoderLayer takes its fused
    # fast path (aten::_transformer_encoder_layer_fwd), which torch cannot export to ONNX
    t_t = export_best_of_2("torch", lambda f: torch.onnx.export(tm, tex, f, dynamo=False, **io_kw))
    e_buf, t_buf = bufs["ember"], bufs["torch"]
    e_sess = _ort_session(ort, e_buf.getvalue(), threads)
    t_sess = _ort_session(ort, t_buf.getvalue(), threads)
    rows = []
    for batch in (1, 32):
        feed = {"x": inputs(ember, name, batch)[0].numpy()}
        diff = float(np.abs(e_sess.run(None, feed)[0] - t_sess.run(None, feed)[0]).max())
        t_ember, t_torch = _interleaved_best(
            [lambda f=feed: e_sess.run(None, f), lambda f=feed: t_sess.run(None, f)], repeat
        )
        rows.append(
            [
                name,
                batch,
                f"{t_e:.3f}",
                f"{t_t:.3f}",
                f"{t_ember * 1e3:.3f}",
                f"{t_torch * 1e3:.3f}",
                f"{t_ember / t_torch:.2f}",
                f"{diff:.1e}",
            ]
        )
    return rows


def onnx_table(ember, torch, repeat: int, threads: int) -> str | None:
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    if torch is None:
        return None
    ort.set_default_logger_severity(3)  # torch's file warns about unused initializers
    rows = []
    for name, make in (("cnn", cnn), ("gpt", gpt)):
        rows += bench_onnx(ember, torch, ort, name, make, repeat, threads)
    return table(
        rows,
        [
            "model",
            "batch",
            "ember onnx.export (s)",
            "torch onnx.export (s)",
            "ort: ember's file (ms)",
            "ort: torch's file (ms)",
            "ratio",
            "max |diff|",
        ],
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=positive_int, default=1)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--onnx-only", action="store_true", help="only the onnxruntime comparison")
    a = ap.parse_args()
    pin_threads(a.threads)
    import ember

    try:
        import torch

        torch.set_num_threads(a.threads)
    except ImportError:
        torch = None
    repeat = 2 if a.quick else 5
    if not a.onnx_only:
        _capture_and_latency(ember, torch, repeat, a.threads)
    onnx_rows = onnx_table(ember, torch, repeat, a.threads)
    if onnx_rows is not None:
        print(
            f"\n# onnxruntime ({a.threads} thread(s)): ember's ONNX file vs torch's "
            "(dynamo=False), same weights; ratio = ember / torch, target <= 1.10"
        )
        print(onnx_rows)


def _capture_and_latency(ember, torch, repeat: int, threads: int) -> None:
    cap_rows, lat_rows = [], []
    for name, make in (("cnn", cnn), ("gpt", gpt)):
        cap, lat = bench(ember, torch, name, make, repeat)
        cap_rows.append(cap)
        lat_rows += lat
    print(f"# capture + save (s), {threads} thread(s)")
    print(
        table(
            cap_rows,
            [
                "model",
                "ember export+save",
                "ember jit.trace+save",
                "torch.export",
                "torch.jit.trace",
            ][: len(cap_rows[0])],
        )
    )
    print("\n# inference latency (ms per call)")
    print(
        table(
            lat_rows,
            ["model", "batch", "ember eager", "loaded export", "loaded jit (opt)", "torch eager"][
                : len(lat_rows[0])
            ],
        )
    )


if __name__ == "__main__":
    main()
