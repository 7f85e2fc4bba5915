"""Optional int8 kernels from onnxruntime (MLAS): the exact int32 accumulator of a quantized
Linear / convolution on CPU arrays.

NumPy has no integer GEMM; onnxruntime's CPU provider has one (MLAS). Each quantized weight gets
one small cached ``InferenceSession`` running ``MatMulInteger`` or ``ConvInteger`` on the uint8
activation codes, which returns the int32 accumulator ``sum (a - za) * (w - zw)``, the same
integers the float-BLAS path computes. Both operands are given to MLAS as uint8 (qint8 weight
codes shifted by +128, their zero point with them): its AVX2 u8 x s8 kernel sums pairs of
products in saturating int16 (wrong for large codes), the u8 x u8 kernel widens to int16 first
and is exact while the int32 sums cannot overflow (``K * 255 * 255 < 2**31``).

Used only when onnxruntime and onnx import (the ``quant`` extra), the arrays are NumPy's, the weight
cache is on (``set_weight_cache``) and ``set_ort_kernels(True)`` (the default); every other
case, and any session that fails to build, takes the float-BLAS path in ``_kernels``.
"""

from __future__ import annotations

import numpy as np

from ....backend.threads import num_threads

__all__ = ["available", "set_ort_kernels", "linear_acc", "conv_acc"]

_ENABLED = [True]
_ORT = []  # [module or None], imported on first use (import costs ~0.1 s)
_INT32_SAFE = (2**31 - 1) // (255 * 255)  # products summed exactly by u8 x u8 -> int32
# Below this many multiply-adds a Linear takes the float path: a session run has a fixed cost
# (~40 us here) that NumPy's GEMV beats (1 x 784 x 512: 72 us float, 84 us onnxruntime; from
# 4 x 784 x 512 onnxruntime is 1.5-2x faster). Convolutions always gain (their float path
# pays for im2col): 1x1x28x28 -> 32 channels 78 us against 242 us.
LINEAR_MIN_MACS = 2**19


def set_ort_kernels(enabled: bool) -> None:
    """Use (True, default) or skip (False) onnxruntime's int8 kernels where they apply."""
    _ENABLED[0] = bool(enabled)


def _ort():
    if not _ORT:
        try:
            import onnx  # noqa: F401  (builds the one-node graphs)
            import onnxruntime

            onnxruntime.set_default_logger_severity(3)  # no warnings on stderr per session
            _ORT.append(onnxruntime)
        except Exception:  # not installed, or a broken install: the float path serves
            _ORT.append(None)
    return _ORT[0]


def available() -> bool:
    """Whether the onnxruntime kernels are enabled and importable."""
    return _ENABLED[0] and _ort() is not None


def _session(graph_nodes, inputs, outputs, initializers):
    from onnx import helper, numpy_helper  # a runtime dependency of ember (ember.onnx)

    ort = _ort()
    g = helper.make_graph(
        graph_nodes,
        "ember_qkernel",
        inputs,
        outputs,
        [numpy_helper.from_array(v, k) for k, v in initializers.items()],
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    so = ort.SessionOptions()
    so.intra_op_num_threads = num_threads()  # follow ember.set_num_threads (BLAS pool size)
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _u8_weight(w):
    """(uint8 codes, uint8 zero point) of a quantized weight, or None when its zero points are
    not one value (ConvInteger takes a per-tensor zero point only)."""
    codes, zp = w._data, np.asarray(w._zero_point).reshape(-1)
    if zp.size > 1 and not (zp == zp[0]).all():
        return None
    zp = int(zp[0])
    if codes.dtype == np.int8:  # +128 maps int8 onto uint8 exactly, differences unchanged
        return (codes.astype(np.int16) + 128).astype(np.uint8), zp + 128
    if codes.dtype == np.uint8:
        return codes, zp
    return None


_MISSING = object()
_weight_cache = []  # modules.utils._CACHE, bound on first use (it imports this package)


def _cached(w, key, build):
    """The session for ``key`` on weight ``w``, built once (None: these kernels don't apply)."""
    if not _weight_cache:
        from .modules.utils import _CACHE

        _weight_cache.append(_CACHE)
    if not _weight_cache[0][0]:
        return None
    key = ("ort",) + key + (num_threads(),)
    cache = w._cache
    sess = _MISSING if cache is None else cache.get(key, _MISSING)
    if sess is _MISSING:
        try:
            sess = build() if _ort() is not None else None
        except Exception:  # an onnxruntime without the op / type: the float path serves
            sess = None
        if w._cache is None:
            w._cache = {}
        w._cache[key] = sess
    return sess


def _usable(codes, zp: int, w) -> bool:
    return (
        _ENABLED[0]
        and type(codes) is np.ndarray
        and codes.dtype == np.uint8
        and type(w._data) is np.ndarray
        and 0 <= zp <= 255
    )


def linear_acc(codes, zp: int, w):
    """int32 ``(codes - zp) @ (w - zw)^T`` for uint8 codes (M, K) and a quantized weight (N, K),
    or None where these kernels do not apply."""
    if not _usable(codes, zp, w) or codes.size * w._data.shape[0] < LINEAR_MIN_MACS:
        return None

    def build():
        from onnx import TensorProto as T
        from onnx import helper

        u8 = _u8_weight(w)
        if u8 is None or w.shape[1] > _INT32_SAFE:
            return None
        wc, wz = u8
        k, n = wc.shape[1], wc.shape[0]
        node = helper.make_node("MatMulInteger", ["A", "B", "az", "bz"], ["Y"])
        return _session(
            [node],
            [
                helper.make_tensor_value_info("A", T.UINT8, [None, k]),
                helper.make_tensor_value_info("az", T.UINT8, []),
            ],
            [helper.make_tensor_value_info("Y", T.INT32, [None, n])],
            {"B": np.ascontiguousarray(wc.T), "bz": np.array(wz, np.uint8)},
        )

    sess = _cached(w, ("linear",), build)
    if sess is None:
        return None
    return sess.run(None, {"A": np.ascontiguousarray(codes), "az": _ZP[zp]})[0]


def conv_acc(codes, zp: int, w, stride, padding, dilation, groups: int):
    """int32 accumulator of the convolution of uint8 codes (N, C, *S) with a quantized weight,
    or None where these kernels do not apply."""
    if not _usable(codes, zp, w):
        return None
    geom = (tuple(stride), tuple(padding), tuple(dilation), int(groups))

    def build():
        from onnx import TensorProto as T
        from onnx import helper

        u8 = _u8_weight(w)
        if u8 is None or int(np.prod(w.shape[1:])) > _INT32_SAFE:
            return None
        wc, wz = u8
        node = helper.make_node(
            "ConvInteger",
            ["X", "W", "az", "wz"],
            ["Y"],
            strides=list(geom[0]),
            pads=list(geom[1]) * 2,
            dilations=list(geom[2]),
            group=geom[3],
            kernel_shape=list(wc.shape[2:]),
        )
        x_shape = [None, int(w.shape[1]) * geom[3]] + [None] * (wc.ndim - 2)
        return _session(
            [node],
            [
                helper.make_tensor_value_info("X", T.UINT8, x_shape),
                helper.make_tensor_value_info("az", T.UINT8, []),
            ],
            [helper.make_tensor_value_info("Y", T.INT32, None)],
            {"W": np.ascontiguousarray(wc), "wz": np.array(wz, np.uint8)},
        )

    sess = _cached(w, ("conv",) + geom, build)
    if sess is None:
        return None
    return sess.run(None, {"X": np.ascontiguousarray(codes), "az": _ZP[zp]})[0]


_ZP = [np.array(z, np.uint8) for z in range(256)]  # the zero-point inputs, made once
