"""ember.signal.windows, ember.quasirandom.SobolEngine, ember.poisson / ember.binomial and the
functional Tensor methods, against torch."""

from __future__ import annotations

import numpy as np
import pytest

import ember
import ember.signal.windows as ew

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("name", ew.__all__)
def test_windows_match_torch(name):
    kw = {"a": [0.5, 0.3, 0.2]} if name == "general_cosine" else {}
    tw = getattr(torch.signal.windows, name)
    for M in (0, 1, 2, 5, 8):
        for sym in (True, False):
            got = getattr(ew, name)(M, sym=sym, dtype=ember.float64, **kw)
            want = tw(M, sym=sym, dtype=torch.float64, **kw)
            np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-12, err_msg=f"{M} {sym}")
    assert getattr(ew, name)(4, **kw).dtype == ember.float32


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda m: m.signal.windows.hann(-1), "non-negative window length, got M=-1"),
        (lambda m: m.signal.windows.hann(3, dtype=m.int64), "expects float32 or float64 dtypes"),
        (lambda m: m.signal.windows.gaussian(4, std=0), "Standard deviation must be positive"),
        (lambda m: m.signal.windows.exponential(4, tau=0), "Tau must be positive"),
        (lambda m: m.signal.windows.kaiser(4, beta=-1), "beta must be non-negative"),
    ],
)
def test_window_errors_match_torch(call, match):
    for m in (torch, ember):
        with pytest.raises(ValueError, match=match):
            call(m)


def test_sobol_matches_torch_unscrambled():
    e, t = ember.quasirandom.SobolEngine(6), torch.quasirandom.SobolEngine(6)
    np.testing.assert_array_equal(e.draw(5).numpy(), t.draw(5).numpy())
    e.fast_forward(3)
    t.fast_forward(3)
    np.testing.assert_array_equal(e.draw_base2(3).numpy(), t.draw_base2(3).numpy())
    assert e.num_generated == t.num_generated == 16
    assert repr(e) == repr(t).replace("torch", "ember")
    np.testing.assert_array_equal(
        e.reset().draw(2, dtype=ember.float64).numpy(),
        t.reset().draw(2, dtype=torch.float64).numpy(),
    )
    with pytest.raises(ValueError, match="require n to be a power of 2"):
        ember.quasirandom.SobolEngine(2).fast_forward(1).draw_base2(2)


def test_scrambled_sobol_is_seeded_and_balanced():
    a = ember.quasirandom.SobolEngine(3, scramble=True, seed=7).draw_base2(8).numpy()
    b = ember.quasirandom.SobolEngine(3, scramble=True, seed=7).draw_base2(8).numpy()
    np.testing.assert_array_equal(a, b)
    assert ((a >= 0) & (a < 1)).all()
    # each of the 16 equal bins of every coordinate holds exactly 256/16 points
    for d in range(3):
        assert (np.bincount((a[:, d] * 16).astype(int), minlength=16) == 16).all()


def test_poisson_and_binomial():
    ember.manual_seed(0)
    rates = ember.tensor([0.5, 3.0, 20.0]).expand(20000, 3).contiguous()
    draws = ember.poisson(rates)
    assert draws.dtype == ember.float32 and draws.shape == rates.shape
    np.testing.assert_allclose(draws.mean(0).numpy(), [0.5, 3.0, 20.0], rtol=0.05)
    np.testing.assert_allclose(draws.var(0).numpy(), [0.5, 3.0, 20.0], rtol=0.08)
    ember.manual_seed(0)
    assert bool((ember.poisson(rates) == draws).all())
    n = ember.full((20000,), 10.0)
    b = ember.binomial(n, ember.tensor(0.3).expand(20000))
    assert b.dtype == ember.float32 and float(b.max()) <= 10
    assert abs(float(b.mean()) - 3.0) < 0.1
    with pytest.raises(RuntimeError, match="Found dtype Double but expected Float"):
        ember.binomial(ember.tensor([10.0]), ember.tensor([0.5], dtype=ember.float64))


def test_functional_tensor_methods():
    x = np.array([-1.0, 0.2, 0.7], dtype=np.float32)
    w = np.array([0.1], dtype=np.float32)
    np.testing.assert_allclose(
        ember.tensor(x).hardshrink(0.5).numpy(), torch.tensor(x).hardshrink(0.5).numpy()
    )
    np.testing.assert_allclose(
        ember.tensor(x).prelu(ember.tensor(w)).numpy(),
        torch.tensor(x).prelu(torch.tensor(w)).numpy(),
    )
