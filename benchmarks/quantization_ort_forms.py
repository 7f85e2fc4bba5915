"""Which onnxruntime int8 form runs the digits CNN fastest: ember's QDQ export against
onnxruntime's ``quantize_static`` in QDQ and QOperator form, per-tensor / per-channel weights,
7-bit (reduce_range) / 8-bit activations, uint8 weights, and graph optimisation levels (1
thread, CPU time, best of 10 interleaved rounds). Prints a Markdown table; "max diff" is the
largest logit difference from ember's own int8 model, next to that model's output step.

    python benchmarks/quantization_ort_forms.py
"""

import io
import itertools
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    import onnxruntime as ort
    import threadpoolctl
    from onnxruntime import quantization as oq

    threadpoolctl.threadpool_limits(1)
    sys.path.insert(0, str(ROOT / "examples" / "quantization"))
    import digits_ptq_qat as ex

    import ember

    ember.manual_seed(0)
    train_loader, test_loader = ex.data()
    model = ex.QuantCNN()
    ex.train(model, train_loader, 3, 3e-3)
    model.eval()
    qmodel = ex.static_ptq(model, train_loader)
    xs, ys = zip(*test_loader)
    xte, yte = ember.cat(list(xs)).numpy(), ember.cat(list(ys)).numpy()
    calib = [x.numpy() for i, (x, _) in zip(range(10), train_loader)]

    def export(m):
        buf = io.BytesIO()
        ember.onnx.export(
            m, ember.tensor(xte[:2]), buf, input_names=["x"], dynamic_axes={"x": {0: "batch"}}
        )
        return buf.getvalue()

    f32, qdq = export(model), export(qmodel)
    with ember.no_grad():
        ember_q = qmodel(ember.tensor(xte)).numpy()
    print(f"ember int8 model's output step (fc2 scale): {float(qmodel.fc2.scale):.4f}")

    class Reader(oq.CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"x": c} for c in calib])

        def get_next(self):
            return next(self.it, None)

    def ortq(fmt, per_channel, reduce_range, wt=oq.QuantType.QInt8, at=oq.QuantType.QUInt8):
        with tempfile.TemporaryDirectory() as d:
            src, dst = Path(d) / "f.onnx", Path(d) / "q.onnx"
            src.write_bytes(f32)
            oq.quantize_static(
                str(src),
                str(dst),
                Reader(),
                quant_format=fmt,
                activation_type=at,
                weight_type=wt,
                per_channel=per_channel,
                reduce_range=reduce_range,
            )
            return dst.read_bytes()

    blobs = {
        ("float32", "all"): f32,
        ("float32", "extended"): f32,
        ("ember QDQ", "all"): qdq,
        ("ember QDQ", "extended"): qdq,
        ("ember QDQ", "basic"): qdq,
    }
    for fmt, pc, rr in itertools.product(["QDQ", "QOperator"], [True, False], [True, False]):
        blobs[(f"ort {fmt} {'per-ch' if pc else 'per-tensor'}{' rr' if rr else ''}", "all")] = ortq(
            getattr(oq.QuantFormat, fmt), pc, rr
        )
    blobs[("ort QOperator per-tensor u8 weights", "all")] = ortq(
        oq.QuantFormat.QOperator, False, False, wt=oq.QuantType.QUInt8
    )
    levels = {
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    }
    sess = {}
    for key, b in blobs.items():
        so = ort.SessionOptions()
        so.intra_op_num_threads = so.inter_op_num_threads = 1
        so.graph_optimization_level = levels[key[1]]
        sess[key] = ort.InferenceSession(b, so, providers=["CPUExecutionProvider"])
    batches = ((1, 100), (64, 5))
    ms = {k: [float("inf")] * 2 for k in sess}
    for _ in range(10):
        for k, s in sess.items():
            for i, (b, n) in enumerate(batches):
                feed = {"x": xte[:b]}
                t0 = time.process_time()
                for _ in range(n):
                    s.run(None, feed)
                ms[k][i] = min(ms[k][i], 1e3 * (time.process_time() - t0) / n)
    base = ms[("float32", "all")]
    print(
        "| form | graph optimisation | accuracy % | max diff | batch 1 ms | batch 64 ms "
        "| f32/this b1 | b64 |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for k, s in sess.items():
        y = s.run(None, {"x": xte})[0]
        acc = 100 * (y.argmax(1) == yte).mean()
        diff = np.abs(y - ember_q).max()
        print(
            f"| {k[0]} | {k[1]} | {acc:.2f} | {diff:.4f} | {ms[k][0]:.3f} | {ms[k][1]:.3f} "
            f"| {base[0] / ms[k][0]:.2f}x | {base[1] / ms[k][1]:.2f}x |"
        )


if __name__ == "__main__":
    import argparse

    # no options: --help describes the benchmark instead of running it (minutes)
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()
    main()
