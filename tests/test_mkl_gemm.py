"""The MKL matrix-product path (core/backend/mkl_gemm.py): every operand layout it accepts gives
NumPy's product, everything else falls back, and the layers that use it match PyTorch with the
path on and off."""

from __future__ import annotations

import numpy as np
import pytest

import ember
from ember.backend import mkl_gemm

needs_mkl = pytest.mark.skipif(
    not mkl_gemm.enabled(), reason="the mkl wheel or numba is not installed (or EMBER_MKL=0)"
)


@pytest.fixture
def small_products(monkeypatch):
    """Route even tiny products through MKL, so that small shapes exercise the kernels."""
    monkeypatch.setattr(mkl_gemm, "MIN_FLOPS", 0)


def _operand(rng, shape, dtype, kind):
    """A matrix (stack) of ``shape`` laid out as ``kind``: C order, a transposed view, a slice
    of a wider matrix, or every second row (no unit stride on either axis)."""
    if kind == "c":
        return rng.standard_normal(shape).astype(dtype)
    if kind == "t":
        return np.swapaxes(rng.standard_normal(shape[:-2] + shape[::-1][:2]).astype(dtype), -1, -2)
    if kind == "slice":
        wide = rng.standard_normal(shape[:-1] + (shape[-1] + 5,)).astype(dtype)
        return wide[..., 2 : 2 + shape[-1]]
    tall = rng.standard_normal(shape[:-2] + (2 * shape[-2], shape[-1])).astype(dtype)
    return tall[..., ::2, :]  # "step"


@needs_mkl
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch", [None, 3])
def test_every_layout_matches_numpy(dtype, batch, small_products):
    rng = np.random.default_rng(0)
    lead = () if batch is None else (batch,)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for m, k, n in [(1, 1, 1), (5, 7, 3), (33, 64, 17), (64, 1, 40)]:
        for ka in ("c", "t", "slice", "step"):
            for kb in ("c", "t", "slice", "step"):
                a = _operand(rng, lead + (m, k), dtype, ka)
                b = _operand(rng, lead + (k, n), dtype, kb)
                got = mkl_gemm.matmul(a, b)
                want = np.matmul(a.astype(np.float64), b.astype(np.float64))
                assert got.dtype == dtype and got.shape == want.shape
                np.testing.assert_allclose(got, want, rtol=tol, atol=tol * 10)


@needs_mkl
def test_out_and_accumulate(small_products):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((6, 4)).astype(np.float32)
    b = rng.standard_normal((4, 5)).astype(np.float32)
    out = np.full((6, 5), np.nan, np.float32)  # beta = 0 never reads the old contents
    assert mkl_gemm.matmul(a, b, out=out) is out
    np.testing.assert_allclose(out, a @ b, rtol=1e-6)
    # accumulate into a row block of a larger array (unit stride along rows, ld > n)
    big = rng.standard_normal((3, 6, 5)).astype(np.float32)
    before = big.copy()
    mkl_gemm.addmm_(big[1], a, b)
    np.testing.assert_allclose(big[1], before[1] + a @ b, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(big[0], before[0])
    np.testing.assert_array_equal(big[2], before[2])
    # an out that overlaps an operand goes to NumPy, which handles the overlap
    sq = rng.standard_normal((5, 5)).astype(np.float32)
    want = sq @ sq
    np.testing.assert_allclose(mkl_gemm.matmul(sq, sq, out=sq), want, rtol=1e-5)


def test_fallbacks_keep_numpy_semantics(small_products):
    rng = np.random.default_rng(2)
    # mixed dtypes, complex, integers, 1-D and broadcast batches are NumPy's
    a32 = rng.standard_normal((4, 3)).astype(np.float32)
    a64 = rng.standard_normal((3, 2))
    assert mkl_gemm.matmul(a32, a64).dtype == np.float64
    c = (rng.standard_normal((3, 3)) + 1j).astype(np.complex64)
    np.testing.assert_allclose(mkl_gemm.matmul(c, c), c @ c, rtol=1e-5)
    i = np.arange(6).reshape(2, 3)
    np.testing.assert_array_equal(mkl_gemm.matmul(i, i.T), i @ i.T)
    v = rng.standard_normal(3).astype(np.float32)
    np.testing.assert_allclose(mkl_gemm.matmul(a32, v), a32 @ v, rtol=1e-6)
    s = rng.standard_normal((2, 4, 3)).astype(np.float32)
    np.testing.assert_allclose(mkl_gemm.matmul(s, a32.T), s @ a32.T, rtol=1e-5)
    with pytest.raises(ValueError):
        mkl_gemm.matmul(a32, a32)  # (4, 3) @ (4, 3): NumPy's error


@needs_mkl
def test_switch_and_layers_match_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((7, 32, 24)).astype(np.float32)
    results = []
    for on in (True, False):
        prev = mkl_gemm.set_enabled(on)
        try:
            ember.manual_seed(0)
            lstm = ember.nn.LSTM(24, 48, num_layers=2)
            head = ember.nn.Linear(48, 40)
            xe = ember.tensor(x, requires_grad=True)
            out = head(lstm(xe)[0])
            out.square().sum().backward()
            results.append((out, xe.grad, lstm, head))
        finally:
            mkl_gemm.set_enabled(prev)
    (out, gx, lstm, head), (out0, gx0, _, _) = results
    np.testing.assert_allclose(out.detach().numpy(), out0.detach().numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(gx.numpy(), gx0.numpy(), rtol=1e-3, atol=1e-4)
    tl = torch.nn.LSTM(24, 48, num_layers=2)
    tl.load_state_dict({k: torch.from_numpy(v.numpy()) for k, v in lstm.state_dict().items()})
    th = torch.nn.Linear(48, 40)
    th.load_state_dict({k: torch.from_numpy(v.numpy()) for k, v in head.state_dict().items()})
    xt = torch.from_numpy(x).requires_grad_()
    ot = th(tl(xt)[0])
    ot.square().sum().backward()
    np.testing.assert_allclose(out.detach().numpy(), ot.detach().numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(gx.numpy(), xt.grad.numpy(), rtol=1e-3, atol=1e-4)


def test_backends_mkl_reports_the_path():
    assert ember.backends.mkl.is_available() == mkl_gemm.enabled()


@needs_mkl
def test_loaded_only_after_enough_work():
    """A short script never pays MKL's and numba's start (~0.7 s): they load once LOAD_AFTER
    multiply-adds have gone through NumPy."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np, ember\n"
        "from ember.backend import mkl_gemm as M\n"
        "M.LOAD_AFTER = 1 << 24\n"
        "lin = ember.nn.Linear(256, 256)\n"
        "x = ember.randn(64, 256)\n"
        "lin(x)\n"  # 4M multiply-adds: below the threshold
        "print(M._enabled, 'numba' in sys.modules)\n"
        "for _ in range(4):\n"
        "    lin(x)\n"
        "print(M._enabled)\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != "EMBER_MKL"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["None", "False", "True"]


@needs_mkl
def test_stacks_of_more_than_three_dims(small_products):
    """(B, H, m, k) stacks merge into one strided batch when their leading axes allow (C order,
    broadcast heads at stride 0); other layouts and a strided out go to NumPy."""
    rng = np.random.default_rng(4)
    a = rng.standard_normal((2, 3, 5, 4)).astype(np.float32)
    b = rng.standard_normal((2, 3, 4, 6)).astype(np.float32)
    cases = [
        (a, b),
        (np.swapaxes(rng.standard_normal((2, 3, 4, 5)).astype(np.float32), -1, -2), b),
        (a, np.broadcast_to(b[:1], b.shape)),
        (rng.standard_normal((3, 2, 5, 4)).astype(np.float32).swapaxes(0, 1), b),  # no merge
    ]
    for x, y in cases:
        np.testing.assert_allclose(mkl_gemm.matmul(x, y), np.matmul(x, y), rtol=1e-5, atol=1e-5)
        out = np.empty((2, 3, 5, 6), np.float32)
        assert mkl_gemm.matmul(x, y, out=out) is out
        np.testing.assert_allclose(out, np.matmul(x, y), rtol=1e-5, atol=1e-5)
    big = np.zeros((2, 3, 5, 8), np.float32)
    mkl_gemm.matmul(a, b, out=big[..., :6])  # a strided out: NumPy writes it
    np.testing.assert_allclose(big[..., :6], np.matmul(a, b), rtol=1e-5, atol=1e-5)
    assert not big[..., 6:].any()


def test_docs_snippet_runs():
    """The MKL snippet of docs/kernels.md."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "kernels.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    code = next(b for b in blocks if "mkl_gemm" in b)
    exec(compile(code, "docs/kernels.md", "exec"), {})
