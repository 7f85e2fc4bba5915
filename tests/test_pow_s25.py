"""Session 25: ``pow`` of a float tensor to the scalar powers 3 and -2 is computed as torch's
CPU kernel computes it (``x * x * x``, ``1 / (x * x)``): the same bits, and no trip through
libm's ``powf``, whose path for negative bases took 12 ms for 131K float32 values."""

from __future__ import annotations

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
@pytest.mark.parametrize("exponent", [3, 3.0, -2, -2.0, 2.5])
def test_pow_scalar_matches_torch_bitwise(dtype, exponent):
    x = np.random.default_rng(0).standard_normal(4099).astype(dtype)
    x[:4] = [0.0, -0.0, np.inf, -np.inf]
    x[4] = np.nan
    got = (ember.tensor(x) ** exponent).numpy()
    want = torch.pow(torch.tensor(x), exponent).numpy()
    assert got.dtype == want.dtype
    if exponent == 2.5:  # libm's powf against torch's own: close, not bitwise
        np.testing.assert_allclose(got, want, rtol=2e-3 if dtype == "float16" else 1e-6)
    else:
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("exponent", [3, -2])
def test_pow_scalar_integers_and_gradient(exponent):
    xi = ember.arange(-4, 5)
    ti = torch.arange(-4, 5)
    if exponent < 0:  # torch: integers to negative integer powers are not allowed
        with pytest.raises(RuntimeError):
            ti**exponent
    else:
        assert (xi**exponent).tolist() == (ti**exponent).tolist()
        assert (xi**exponent).dtype == ember.int64
    x = np.random.default_rng(1).uniform(0.5, 2.0, 64) * np.sign(np.arange(64) - 31.5)
    e = ember.tensor(x, requires_grad=True)
    t = torch.tensor(x, requires_grad=True)
    (e**exponent).sum().backward()
    (t**exponent).sum().backward()
    np.testing.assert_allclose(e.grad.numpy(), t.grad.numpy(), rtol=1e-12)
