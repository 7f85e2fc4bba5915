"""Session 23: convolutions at two threads without MKL (AMD), and the sweep's rest between rounds.

At two threads a convolution the direct kernels take runs in one part whether or not MKL is on
(``conv_split.DIRECT_WITHOUT_MKL``); below ``conv_split.MIN_THREADED_MACS`` it runs exactly as
at one thread. docs/kernels.md, "Session 23: convolution at two threads on AMD".
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import ember
from ember.backend import mkl_gemm
from ember.backend.threads import get_num_threads, set_num_threads
from ember.ops import conv as C
from ember.ops import conv_direct as D
from ember.ops import conv_direct_cl as CL
from ember.ops import conv_split as S

pytestmark = pytest.mark.skipif(not D.available(), reason="numba is not installed")


@pytest.fixture(autouse=True)
def _no_mkl(monkeypatch):
    """MKL off, as on AMD by default; the process's thread count restored after."""
    before = get_num_threads()
    monkeypatch.setattr(mkl_gemm, "_enabled", False)
    # serial kernels: no compile of the parallel variants (their own tests are `full`)
    monkeypatch.setattr(D, "_parallel_ok", lambda: False)
    yield
    set_num_threads(before)


def _geom(x_shape, w_shape, pad, stride=1):
    nd = len(w_shape) - 2
    return C.ConvGeom((stride,) * nd, ((pad, pad),) * nd, (1,) * nd, 1, w_shape[2:], x_shape[2:])


def _step(lib, x, w, b, g, stride):
    xt, wt, bt = (lib.tensor(a, requires_grad=True) for a in (x, w, b))
    conv = getattr(lib.nn.functional, f"conv{x.ndim - 2}d")
    y = conv(xt, wt, bt, padding=1, stride=stride)
    y.backward(lib.tensor(g))
    return [np.asarray(t.detach().numpy()) for t in (y, xt.grad, wt.grad, bt.grad)]


def test_split_bounds_direct_without_mkl(monkeypatch):
    set_num_threads(2)
    w = (16, 16, 3, 3)
    assert S.split_bounds(np, 8, w, (32, 32), 4, direct=True) == [0, 8]
    assert S.split_bounds(np, 8, w, (32, 32), 4, direct="cl") == [0, 8]
    assert S.split_bounds(np, 8, w, (32, 32), 4, direct=False) is None  # OpenBLAS's threads
    # a weight over MAX_WEIGHT_BYTES keeps OpenBLAS's threads without MKL, but the
    # channels-last kernel in one part (session 26)
    big = (128, 128, 5, 5)
    assert S.split_bounds(np, 8, big, (8, 8), 4, direct=True) is None
    assert S.split_bounds(np, 8, big, (8, 8), 4, direct="cl") == [0, 8]
    monkeypatch.setattr(S, "DIRECT_WITHOUT_MKL", False)  # as before session 23
    assert S.split_bounds(np, 8, w, (32, 32), 4, direct=True) is None
    set_num_threads(1)
    monkeypatch.setattr(S, "DIRECT_WITHOUT_MKL", True)
    assert S.split_bounds(np, 8, w, (32, 32), 4, direct=True) is None


# (x shape, w shape, stride)
CASES = [
    ((2, 16, 12, 20), (16, 16, 3, 3), 1),  # few channels: direct
    ((2, 16, 12, 20), (32, 16, 3, 3), 2),  # stride 2: phases, fused input gradient
    ((2, 64, 6, 7), (64, 64, 3, 3), 1),  # many channels, small plane: channels-last direct
    ((1, 16, 4, 5, 6), (16, 16, 3, 3, 3), 1),  # 3-D
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}-s{c[2]}")
def test_two_threads_without_mkl_take_the_direct_kernels(case):
    torch = pytest.importorskip("torch")
    x_shape, w_shape, stride = case
    rng = np.random.default_rng(23)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = (rng.standard_normal(w_shape) * 0.1).astype(np.float32)
    b = rng.standard_normal(w_shape[0]).astype(np.float32)
    out = [(n + 2 - k) // stride + 1 for n, k in zip(x_shape[2:], w_shape[2:])]
    g = rng.standard_normal([x_shape[0], w_shape[0]] + out).astype(np.float32)
    set_num_threads(1)
    one = _step(ember, x, w, b, g, stride)
    set_num_threads(2)
    geom = _geom(x_shape, w_shape, 1, stride)
    _, cols = C.conv_forward(np, x, w, b, geom)
    # the direct kernels' columns, not the GEMM paths on OpenBLAS's threads
    assert isinstance(cols, (D.DirectCols, CL.ClCols))
    two = _step(ember, x, w, b, g, stride)
    for a, o in zip(two, one):  # small: the one-thread algorithm, bit for bit
        np.testing.assert_array_equal(a, o)
    want = _step(torch, x, w, b, g, stride)
    for a, e in zip(two, want):
        np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-4 * np.abs(e).max())


def test_min_threaded_macs(monkeypatch):
    seen = []
    real = S.with_kernel_threads
    monkeypatch.setattr(S, "with_kernel_threads", lambda n, *a: seen.append(n) or real(n, *a))
    x = np.zeros((2, 16, 12, 20), np.float32)
    w = np.zeros((16, 16, 3, 3), np.float32)
    geom = _geom(x.shape, w.shape, 1)
    set_num_threads(2)
    C.conv_forward(np, x, w, None, geom)
    assert seen == [1]  # 0.7 M multiply-adds: the kernels as at one thread
    monkeypatch.setattr(S, "MIN_THREADED_MACS", 2 * 16 * 16 * 9 * 12 * 20)
    C.conv_forward(np, x, w, None, geom)
    assert seen == [1, 2]  # from the threshold: the kernels may use both threads
    set_num_threads(1)
    C.conv_forward(np, x, w, None, geom)
    assert seen == [1, 2]  # one thread: no parts at all


def test_sweep_rests_between_rounds_at_two_threads(monkeypatch):
    pytest.importorskip("torch")
    pytest.importorskip("threadpoolctl")
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "kernels.py"
    spec = importlib.util.spec_from_file_location("bench_kernels_s23", path)
    kernels = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(kernels)
    pauses = []

    def fake(libs, build, threads, repeat, clock, min_time, pause=0.0, device="cpu"):
        pauses.append((threads, pause))
        return {"ember": 1e-3, "torch": 1e-3}

    monkeypatch.setattr(kernels, "measure", fake)
    kernels.run(["conv"], [1, 2], only=1, out=lambda s: None)
    assert pauses == [(1, 0), (2, kernels.PAUSE)]
    assert kernels.PAUSE >= 0.12  # OpenBLAS's idle workers spin ~0.1 s here


def test_docs_snippet_runs():
    """The snippet of docs/kernels.md's session 23 section (serial kernels: the fixture)."""
    import re

    text = (Path(__file__).resolve().parents[1] / "docs" / "kernels.md").read_text()
    section = text[text.index("## Session 23: convolution at two threads on AMD") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    before = get_num_threads()
    exec(compile(code, "docs/kernels.md", "exec"), {})
    assert get_num_threads() == before
    assert S.DIRECT_WITHOUT_MKL and S.MIN_THREADED_MACS == 1 << 21  # (restored)
