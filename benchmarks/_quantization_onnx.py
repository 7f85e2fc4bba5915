"""benchmarks/quantization.py, part 4: the digits CNN (and a wide MLP) exported by
``ember.onnx.export`` as float32 and int8 QDQ ONNX, timed in onnxruntime beside onnxruntime's
own quantizer on the float32 export."""

from __future__ import annotations

import copy
import io
import sys
import time
from pathlib import Path

from _common import table

ROOT = Path(__file__).resolve().parent.parent


def _ort_reference(ort_q, fp32_bytes: bytes, calib) -> bytes | None:
    """onnxruntime's own QDQ quantizer (``quantize_static``: uint8 activations, per-channel int8
    weights, reduce_range, as the x86 qconfig) on the float32 export: what onnxruntime's
    tooling reaches on the same model, to compare ember's QDQ export with."""
    import tempfile

    class Reader(ort_q.CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"x": c} for c in calib])

        def get_next(self):
            return next(self.it, None)

    with tempfile.TemporaryDirectory() as d:
        src, dst = Path(d) / "f32.onnx", Path(d) / "q.onnx"
        src.write_bytes(fp32_bytes)
        try:
            ort_q.quantize_static(
                str(src),
                str(dst),
                Reader(),
                quant_format=ort_q.QuantFormat.QDQ,
                activation_type=ort_q.QuantType.QUInt8,
                weight_type=ort_q.QuantType.QInt8,
                per_channel=True,
                reduce_range=True,
            )
        except Exception as err:  # an onnxruntime without the quantization tools
            print(f"(onnxruntime quantize_static failed: {err})")
            return None
        return dst.read_bytes()


def _ort_rows(args, label, models: dict, x, calib, batches=((1, 100), (64, 5))):
    """Rows (name, size, ms per batch size) for ember's float32 / int8 QDQ exports of
    ``models`` and onnxruntime's own quantization of the float32 export, timed in one
    interleaved loop (CPU time of the calling thread's process, best round: the sessions see
    the same machine load)."""
    import onnxruntime as ort
    from onnxruntime import quantization as ort_q

    import ember

    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = args.threads
    blobs = {}
    for name, m in models.items():
        buf = io.BytesIO()
        ember.onnx.export(
            m, ember.tensor(x[:2]), buf, input_names=["x"], dynamic_axes={"x": {0: "batch"}}
        )
        blobs[name] = buf.getvalue()
    ref = _ort_reference(ort_q, blobs["float32"], calib)
    if ref is not None:
        blobs["int8 QDQ, onnxruntime quantize_static"] = ref
    sessions = {
        n: ort.InferenceSession(b, so, providers=["CPUExecutionProvider"]) for n, b in blobs.items()
    }
    ms = {n: [float("inf")] * len(batches) for n in sessions}
    for _ in range(10):
        for name, sess in sessions.items():
            for i, (b, n) in enumerate(batches):
                feed = {"x": x[:b]}
                t0 = time.process_time()
                for _ in range(n):
                    sess.run(None, feed)
                ms[name][i] = min(ms[name][i], 1e3 * (time.process_time() - t0) / n)
    rows = [
        [label, name, f"{len(blobs[name]) / 1024:.1f}"]
        + [f"{v:.3f}" for v in ms[name]]
        + [f"{f / v:.2f}x" for f, v in zip(ms["float32"], ms[name])]
        for name in sessions
    ]
    return rows, sessions


def onnx_section(args, epochs: int = 3):
    """ember.onnx.export's float32 and int8 QDQ models in onnxruntime (and onnxruntime's own
    quantizer on the float32 export): the digits CNN, and a wide MLP (1024 -> 2048 -> 2048 ->
    10) whose weights (24 MiB float32, 6 MiB int8) do not stay in this CPU's 8 MiB L3."""
    sys.path.insert(0, str(ROOT / "examples" / "quantization"))
    import digits_ptq_qat as ex
    import numpy as np

    import ember
    from ember import nn
    from ember.ao import quantization as tq

    ember.manual_seed(0)
    train_loader, test_loader = ex.data()
    model = ex.QuantCNN()
    ex.train(model, train_loader, epochs, 3e-3)
    model.eval()
    qmodel = ex.static_ptq(model, train_loader)
    xs, ys = zip(*test_loader)
    xte, yte = ember.cat(list(xs)).numpy(), ember.cat(list(ys)).numpy()
    calib = [x.numpy() for i, (x, _) in zip(range(10), train_loader)]
    rows, sessions = _ort_rows(
        args, "digits CNN", {"float32": model, "int8 QDQ": qmodel}, xte, calib
    )
    acc = {
        n: 100 * (s.run(None, {"x": xte})[0].argmax(1) == yte).mean() for n, s in sessions.items()
    }
    for r in rows:
        r.insert(2, f"{acc[r[1]]:.2f}")

    class MLP(nn.Module):
        def __init__(self, width: int = 2048):
            super().__init__()
            self.quant, self.dequant = tq.QuantStub(), tq.DeQuantStub()
            self.fc1, self.relu1 = nn.Linear(1024, width), nn.ReLU()
            self.fc2, self.relu2 = nn.Linear(width, width), nn.ReLU()
            self.fc3 = nn.Linear(width, 10)

        def forward(self, x):
            x = self.relu2(self.fc2(self.relu1(self.fc1(self.quant(x)))))
            return self.dequant(self.fc3(x))

    mlp = MLP().eval()
    prepared = tq.fuse_modules(copy.deepcopy(mlp), [["fc1", "relu1"], ["fc2", "relu2"]])
    prepared.qconfig = tq.get_default_qconfig("x86")
    tq.prepare(prepared, inplace=True)
    rng = np.random.default_rng(0)
    calib = [rng.random((32, 1024), dtype=np.float32) for _ in range(4)]
    with ember.no_grad():
        for c in calib:
            prepared(ember.tensor(c))
    qmlp = tq.convert(prepared)
    mlp_rows, _ = _ort_rows(
        args,
        "MLP 1024-2048-2048-10",
        {"float32": mlp, "int8 QDQ": qmlp},
        rng.random((64, 1024), dtype=np.float32),
        calib,
        batches=((1, 20), (64, 2)),
    )
    for r in mlp_rows:
        r.insert(2, "")
    return table(
        rows + mlp_rows,
        [
            "onnxruntime",
            "model",
            "accuracy %",
            "size KiB",
            "batch 1 ms",
            "batch 64 ms",
            "f32/this b1",
            "f32/this b64",
        ],
    )
