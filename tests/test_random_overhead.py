"""The small-draw paths of core/_mt_stream.py (up to ``_FAST`` values computed in Python ints
and floats instead of NumPy calls) give torch's numbers and leave torch's state: each case is
drawn in a sequence across the size threshold, after ``manual_seed``, and compared with torch
draw by draw and with the 5056-byte generator state after it (the Box-Muller cache included).
"""

import math

import numpy as np
import pytest
import torch

import ember
from ember._mt_stream import _FAST

SIZES = [1, 2, 3, 4, 7, 15, 16, 17, _FAST - 1, _FAST, _FAST + 1, 2 * _FAST + 3]


def _same(draw, seed=7):
    """``draw(T)`` returns a list of tensors; each and the state after must be torch's."""
    torch.manual_seed(seed)
    ember.manual_seed(seed)
    ref, got = draw(torch), draw(ember)
    assert len(ref) == len(got)
    for i, (r, g) in enumerate(zip(ref, got)):
        r = r.detach().numpy()
        g = g.numpy()
        assert r.dtype == g.dtype and r.shape == g.shape, i
        assert r.tobytes() == g.tobytes(), (i, r, g)
    assert bytes(torch.get_rng_state().numpy()) == bytes(ember.get_rng_state().numpy())


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "bfloat16"])
def test_rand_randn_small_sizes(dtype):
    def draw(T):
        dt = getattr(T, dtype)
        out = []
        for n in SIZES:
            if dtype in ("float32", "float64"):  # (the half types' rand: see docs/api.md)
                out.append(T.rand(n, dtype=dt))
            out += [T.randn(n, dtype=dt), T.randn(1, n, 1, dtype=dt)]
        return [t.float() if dtype == "bfloat16" else t for t in out]

    _same(draw)


@pytest.mark.parametrize(
    "bounds", [(0.0, 1.0), (-1, 1), (-0.37, 0.91), (1e-30, 1e30), (-1e38, 1e38), (2, 2**40)]
)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_uniform_bounds_small(bounds, dtype):
    # float64: torch's x * (to - from) + from is contracted to an FMA (fixed here)
    def draw(T):
        dt = getattr(T, dtype)
        return [T.empty(n, dtype=dt).uniform_(*bounds) for n in SIZES + [1000]]

    _same(draw)


@pytest.mark.parametrize("mean,std", [(0.0, 1.0), (0.5, 0.02), (-3, 7), (0.3, 1.7)])
def test_normal_small_keeps_the_cached_sine(mean, std):
    # odd sizes leave a cached normal that the next draw starts from (and the state records)
    def draw(T):
        out = [T.empty(n).normal_(mean, std) for n in (1, 3, 2, 5, 4, 1)]
        out += [T.empty(7, dtype=T.float64).normal_(mean, std), T.randn(3)]
        out += [T.normal(mean, std, (5,))]
        return out

    _same(draw)


@pytest.mark.parametrize(
    "low,high", [(0, 10), (-5, 3), (0, 2**40), (-(2**62), 2**62), (-(2**63), 2**63 - 1), (3, 4)]
)
def test_randint_small(low, high):
    # (spans of 2**63 and more were refused before: torch draws them from two outputs)
    def draw(T):
        out = [T.randint(low, high, (n,)) for n in SIZES + [100]]
        out.append(T.randint(low, high, (2, 3)))
        return out + ([T.randint(low, high, (1,), dtype=T.int32)] if high < 2**31 else [])

    _same(draw)


def test_randperm_small():
    _same(lambda T: [T.randperm(n) for n in range(0, 2 * _FAST + 3)])


@pytest.mark.parametrize("p", [0.0, 1.0, 0.1, 0.9, 0.5, 1e-300, 1 - 2**-53, 0.3])
def test_bernoulli_scalar_threshold(p):
    # u < p is checked on the integers behind u: the edges (0, 1, tiny p) must agree
    _same(lambda T: [T.empty(n).bernoulli_(p) for n in SIZES + [8 * 64]])


def test_dropout_mask():
    def draw(T):
        x = T.ones(8, 64)
        return [T.nn.functional.dropout(x, p) for p in (0.1, 0.5, 0.0, 0.999)]

    _same(draw)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_exponential_small(dtype):
    def draw(T):
        dt = getattr(T, dtype)
        return [T.empty(n, dtype=dt).exponential_(1.5) for n in SIZES]

    _same(draw)


def test_multinomial_one_sample_from_a_vocabulary():
    def draw(T):
        p = T.softmax(T.randn(1, 50257), -1)
        return [T.multinomial(p, 1) for _ in range(3)] + [T.multinomial(p[0], 2)]

    _same(draw)


def test_normal_into_a_non_contiguous_tensor_fills_memory_order():
    # torch's one-at-a-time path walks the target in memory order (fixed here: it was the
    # logical order)
    def draw(T):
        return [
            T.empty(9, 4).t().normal_(0.5, 0.02),
            T.empty(3, 5, 4).permute(2, 0, 1).normal_(),
            T.empty(6, 8)[::2, 1:5].normal_(1.0, 2.0),
            T.empty(5, 40, dtype=T.float64).t().normal_(1.0, 2.0),
            T.empty(7, 3).t()[1:].normal_(),
        ]

    _same(draw)


def test_bernoulli_scalar_matches_the_float_comparison():
    # the integer threshold equals comparing the float64 uniform with p, for p anywhere
    st = ember.Generator().manual_seed(3).numpy()
    for p in [0.0, 0.25, 1 / 3, 2**-60, 1 - 2**-53, 1.0, 1.5, -0.5, math.nan]:
        st.seed(11)
        hits = st.bernoulli_scalar((100,), p)
        st.seed(11)
        assert np.array_equal(hits, st._unit(100, 53) < p), p


def test_small_draws_after_state_restores_and_reseeds():
    # nothing of an earlier stream survives a reseed, set_rng_state or fork_rng
    def draw(T):
        out = [T.randn(3)]  # an odd count: a cached sine
        state = T.get_rng_state()
        out += [T.randn(1), T.rand(2)]
        T.set_rng_state(state)
        out += [T.randn(1), T.rand(2)]
        with T.random.fork_rng():
            T.manual_seed(99)
            out += [T.randn(3)]
        out += [T.randn(2)]
        g = T.Generator().manual_seed(5)
        out += [T.randn(3, generator=g), T.rand(2, generator=g), T.randn(1)]
        T.manual_seed(7)
        out += [T.randn(1)]
        return out

    _same(draw)
