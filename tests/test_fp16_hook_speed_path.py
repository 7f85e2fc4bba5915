"""The float16 fast path of DDP's compression hooks (``default_hooks``): the division by the
world size and the decompression copy run as vectorized casts around float32 arithmetic
instead of NumPy's per-element float16 ufunc loops, with bit-identical results.

(The 2-rank hook runs against torch's DDP are in ``test_ddp_comm_hooks.py``.)
"""

from __future__ import annotations

import numpy as np
import pytest

import ember
from ember import _interop
from ember.distributed.algorithms.ddp_comm_hooks import default_hooks as dh


def _values(n: int = 4096) -> np.ndarray:
    """float32 gradients-like values plus the float16 edge cases: subnormal quotients, the
    largest finite values, infinities, NaN, signed zeros."""
    rng = np.random.default_rng(0)
    edges = np.array(
        [
            0.0,
            -0.0,
            np.inf,
            -np.inf,
            np.nan,
            65504.0,
            -65504.0,
            6e-8,
            -6e-8,
            1e-7,
            6.1e-5,
            3.0e-5,
            1.0,
            1.0 / 3.0,
        ],
        dtype=np.float32,
    )
    return np.concatenate(
        [
            (rng.standard_normal(n) * 1e-3).astype(np.float32),
            (rng.standard_normal(n) * 1e-6).astype(np.float32),
            (rng.standard_normal(n) * 1e4).astype(np.float32),
            edges,
        ]
    )


def _bits(a: np.ndarray) -> np.ndarray:
    # NaN payloads aside, the float16 patterns must agree exactly
    a = np.where(np.isnan(a), np.float16(np.nan), a).astype(np.float16)
    return a.view(np.uint16)


@pytest.mark.parametrize("world", [2, 3, 8])
def test_float16_division_equals_the_float16_ufunc(world):
    with np.errstate(over="ignore"):
        x = _values().astype(np.float16)
    t = ember.tensor(x.copy())
    before = _interop.version(t)
    out = dh._div_by_world_size_(t, world)
    assert out is t and t.dtype is ember.float16
    assert _interop.version(t) == before + 1
    want = np.true_divide(x, np.float16(world))  # NumPy's own (slow) float16 loop
    np.testing.assert_array_equal(_bits(t.numpy()), _bits(want))


@pytest.mark.parametrize("world", [2, 3])
def test_float16_division_matches_torch(world):
    torch = pytest.importorskip("torch")
    with np.errstate(over="ignore"):
        x = _values().astype(np.float16)
    t = dh._div_by_world_size_(ember.tensor(x.copy()), world)
    want = torch.from_numpy(x.copy()).div_(world).numpy()
    np.testing.assert_array_equal(_bits(t.numpy()), _bits(want))


def test_float16_skips_the_tensor_op_and_other_dtypes_keep_it(monkeypatch):
    calls = []
    real = ember.Tensor.div_

    def spy(self, other, *args, **kwargs):
        calls.append(self.dtype)
        return real(self, other, *args, **kwargs)

    monkeypatch.setattr(ember.Tensor, "div_", spy)
    x = np.linspace(-2, 2, 64, dtype=np.float32)
    dh._div_by_world_size_(ember.tensor(x.astype(np.float16)), 2)
    assert calls == []  # the fast path: no float16 ufunc through the op
    b = dh._div_by_world_size_(ember.tensor(x).to(ember.bfloat16), 2)
    f = dh._div_by_world_size_(ember.tensor(x), 2)
    assert calls == [ember.bfloat16, ember.float32]
    np.testing.assert_array_equal(f.numpy(), x / 2)
    # halving is exact in bfloat16 too: half of the rounded values
    np.testing.assert_array_equal(
        b.float().numpy(), ember.tensor(x).to(ember.bfloat16).float().numpy() / 2
    )
    one = ember.tensor(x.astype(np.float16))
    assert dh._div_by_world_size_(one, 1) is one and calls == [ember.bfloat16, ember.float32]


@pytest.mark.parametrize("low", ["float16", "bfloat16"])
def test_copy_back_casts_into_the_bucket(low):
    torch = pytest.importorskip("torch")
    x = _values(256)
    x = x[np.isfinite(x) & (np.abs(x) < 6e4)]
    small = ember.tensor(x).to(getattr(ember, low))
    bucket = ember.zeros(x.size)
    array = _interop.array_of(bucket)
    before = _interop.version(bucket)
    dh._copy_back_(bucket, small)
    assert _interop.array_of(bucket) is array  # written in place: DDP's views stay valid
    assert _interop.version(bucket) == before + 1
    want = torch.from_numpy(x).to(getattr(torch, low)).float().numpy()
    np.testing.assert_array_equal(bucket.numpy(), want)


def test_copy_back_rejects_a_result_of_another_shape():
    with pytest.raises(ValueError, match="shape"):
        dh._copy_back_(ember.zeros(8), ember.zeros(4, dtype=ember.float16))


# ---- the float16 conversions (``distributed/parallel/_half.py``) ----
def _half_module():
    import importlib

    return importlib.import_module("ember.distributed.parallel._half")


def _all_floats() -> np.ndarray:
    """Random float32 bit patterns (every class: NaN, inf, float32 subnormals) and values at
    every float16 scale, its rounding ties included."""
    rng = np.random.default_rng(1)
    ties = (np.arange(1, 2048, dtype=np.float32) + 0.5) * np.float32(2.0**-24)
    return np.concatenate(
        [
            rng.integers(0, 2**32, 1 << 15, dtype=np.uint64).astype(np.uint32).view(np.float32),
            ties,
            -ties,
            65519.99 + np.zeros(1, np.float32),
            65520 + np.zeros(1, np.float32),
        ]
        + [
            (rng.standard_normal(1 << 12) * s).astype(np.float32)
            for s in (1e-9, 1e-7, 1e-5, 1e-2, 1.0, 1e3, 3e4)
        ]
    )


def test_float_to_half_equals_numpy_bit_for_bit():
    x = _all_floats()
    with np.errstate(over="ignore", invalid="ignore"):
        want = x.astype(np.float16)
    got = _half_module().float_to_half(x, np.empty(x.size, np.float16))
    np.testing.assert_array_equal(_bits(got), _bits(want))


def test_half_to_float_equals_numpy_for_every_pattern():
    h = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    out = np.empty(h.size, np.float32)
    got = _half_module().half_to_float(h, out=out)
    assert got is out
    want = h.astype(np.float32)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    ok = ~np.isnan(want)
    np.testing.assert_array_equal(got[ok].view(np.uint32), want[ok].view(np.uint32))
