"""ember.special beyond the op table: the functions PyTorch gives no gradient (Bessel, Airy,
orthogonal polynomials), PyTorch's errors for undefined derivatives and bad input, and the
in-place and operator spellings of the math family."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special as sp

import ember

_X = np.array([-2.5, -1.0, -0.3, 0.0, 0.4, 1.0, 2.5], np.float32)
_POS = np.array([0.0, 0.3, 1.0, 2.5, 7.0], np.float32)

# name -> (input values, reference)
_NO_GRAD = {
    "bessel_j0": (_X, sp.j0),
    "bessel_j1": (_X, sp.j1),
    "bessel_y0": (_POS, sp.y0),
    "bessel_y1": (_POS, sp.y1),
    "modified_bessel_i0": (_X, sp.i0),
    "modified_bessel_i1": (_X, sp.i1),
    "modified_bessel_k0": (_POS, sp.k0),
    "modified_bessel_k1": (_POS, sp.k1),
    "scaled_modified_bessel_k0": (_POS, sp.k0e),
    "scaled_modified_bessel_k1": (_POS, sp.k1e),
    "airy_ai": (_X, lambda x: sp.airy(x)[0]),
    "spherical_bessel_j0": (_X, lambda x: sp.spherical_jn(0, x)),
}


@pytest.mark.parametrize("name", sorted(_NO_GRAD))
def test_no_grad_special_functions(name):
    x, ref = _NO_GRAD[name]
    t = ember.tensor(x, requires_grad=True)
    out = getattr(ember.special, name)(t)
    assert out.dtype == ember.float32 and not out.requires_grad
    np.testing.assert_allclose(out.numpy(), ref(x.astype(np.float64)), rtol=2e-6, atol=1e-6)
    assert getattr(ember.special, name)(ember.tensor([1, 2])).dtype == ember.float32


_POLY = [
    "chebyshev_polynomial_t",
    "chebyshev_polynomial_u",
    "chebyshev_polynomial_v",
    "chebyshev_polynomial_w",
    "shifted_chebyshev_polynomial_t",
    "shifted_chebyshev_polynomial_u",
    "shifted_chebyshev_polynomial_v",
    "shifted_chebyshev_polynomial_w",
    "hermite_polynomial_h",
    "hermite_polynomial_he",
    "laguerre_polynomial_l",
    "legendre_polynomial_p",
]
_SCIPY_POLY = {
    "chebyshev_polynomial_t": sp.eval_chebyt,
    "chebyshev_polynomial_u": sp.eval_chebyu,
    "shifted_chebyshev_polynomial_t": sp.eval_sh_chebyt,
    "shifted_chebyshev_polynomial_u": sp.eval_sh_chebyu,
    "hermite_polynomial_h": sp.eval_hermite,
    "hermite_polynomial_he": sp.eval_hermitenorm,
    "laguerre_polynomial_l": sp.eval_laguerre,
    "legendre_polynomial_p": sp.eval_legendre,
}


@pytest.mark.parametrize("name", _POLY)
def test_orthogonal_polynomials(name):
    x = np.array([-0.9, -0.3, 0.0, 0.45, 0.8, 1.0], np.float32)
    n = np.array([-1, 0, 1, 2, 3, 5])
    out = getattr(ember.special, name)(ember.tensor(x), ember.tensor(n))
    assert out.dtype == ember.float32
    assert out.numpy()[0] == 0  # negative degree
    if name in _SCIPY_POLY:
        want = _SCIPY_POLY[name](n[1:], x[1:].astype(np.float64))
        np.testing.assert_allclose(out.numpy()[1:], want, rtol=1e-5, atol=1e-6)
    # a Python degree broadcasts like a tensor one
    scalar = getattr(ember.special, name)(ember.tensor(x), 3)
    full = getattr(ember.special, name)(ember.tensor(x), ember.tensor(np.full(6, 3)))
    np.testing.assert_array_equal(scalar.numpy(), full.numpy())


def test_namespace_matches_torch_special():
    torch = pytest.importorskip("torch")
    public = [n for n in dir(torch.special) if not n.startswith("_")]
    missing = [
        n
        for n in public
        if callable(getattr(torch.special, n))
        and not isinstance(getattr(torch.special, n), type)
        and not hasattr(ember.special, n)
    ]
    assert not missing


def test_special_is_a_lazy_attribute():
    import importlib
    import sys

    assert importlib.import_module("ember.special") is sys.modules["ember.special"]
    assert ember.special.gammaln is ember.lgamma


@pytest.mark.parametrize("name", _POLY[:2] + ["bessel_j0", "airy_ai"])
def test_no_grad_functions_match_torch(name):
    torch = pytest.importorskip("torch")
    x = np.array([-1.5, -0.3, 0.0, 0.4, 2.5], np.float32)
    n = np.array([0, 1, 3, 8, 9])
    fn_e, fn_t = getattr(ember.special, name), getattr(torch.special, name)
    if name.endswith(("_t", "_u")):
        got, want = fn_e(ember.tensor(x), ember.tensor(n)), fn_t(torch.tensor(x), torch.tensor(n))
    else:
        got, want = fn_e(ember.tensor(x)), fn_t(torch.tensor(x))
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)


# ---- PyTorch's errors -----------------------------------------------------------------------
def _grad_of(fn, *args):
    out = fn(*args)
    return ember.autograd.grad(
        out.sum(), [a for a in args if isinstance(a, ember.Tensor) and a.requires_grad]
    )


def test_undefined_derivatives_raise_like_torch():
    a = ember.tensor([1.5, 2.0], requires_grad=True)
    x = ember.tensor([0.5, 1.0], requires_grad=True)
    with pytest.raises(NotImplementedError, match="the derivative for 'zeta' is not implemented"):
        _grad_of(ember.special.zeta, a, x)
    with pytest.raises(NotImplementedError, match="'igamma: input' is not implemented"):
        _grad_of(ember.igamma, a, x)
    with pytest.raises(NotImplementedError, match="'igammac: input' is not implemented"):
        _grad_of(ember.igammac, a, x)
    with pytest.raises(RuntimeError, match="derivative for aten::heaviside is not implemented"):
        _grad_of(ember.heaviside, a, ember.tensor([0.5]))
    # the other argument's derivative is defined
    (g,) = _grad_of(ember.special.zeta, a.detach(), x)
    np.testing.assert_allclose(
        g.numpy(), -np.array([1.5, 2.0]) * sp.zeta([2.5, 3.0], [0.5, 1.0]), rtol=1e-5
    )


def test_bad_input_errors():
    x = ember.tensor([0.5, 1.0])
    with pytest.raises(RuntimeError, match="does not support negative n"):
        ember.polygamma(-1, x)
    with pytest.raises(RuntimeError, match=r"All elements must be greater than \(p-1\)/2"):
        ember.mvlgamma(x, 3)
    with pytest.raises(RuntimeError, match="\"hypot_cpu\" not implemented for 'Long'"):
        ember.hypot(ember.tensor([3]), ember.tensor([4]))
    with pytest.raises(RuntimeError, match="\"gcd_cpu\" not implemented for 'Float'"):
        ember.gcd(x, x)
    with pytest.raises(RuntimeError, match="different dtypes"):
        ember.heaviside(x, ember.tensor([1]))
    with pytest.raises(RuntimeError, match="requires dtype Double"):
        x.clone().float_power_(2)
    with pytest.raises(RuntimeError, match="Integer division with addcdiv"):
        ember.addcdiv(x, ember.tensor([1]), ember.tensor([2]))


# ---- in-place, operator and alias spellings --------------------------------------------------
def test_inplace_comparisons_and_logic_keep_dtype():
    x = ember.tensor([1.0, 2.0, 3.0])
    assert x.lt_(2.5) is x and x.tolist() == [1.0, 1.0, 0.0]
    y = ember.tensor([1, 2, 3])
    y.greater_equal_(2)
    assert y.dtype == ember.int64 and y.tolist() == [0, 1, 1]
    b = ember.tensor([True, False])
    b.logical_xor_(ember.tensor([True, True]))
    assert b.tolist() == [False, True]


def test_shift_and_bitwise_operators():
    a = ember.tensor([1, 2, -8])
    np.testing.assert_array_equal((a << 2).numpy(), [4, 8, -32])
    np.testing.assert_array_equal((a >> 1).numpy(), [0, 1, -4])
    np.testing.assert_array_equal((8 >> ember.tensor([1, 2])).numpy(), [4, 2])
    np.testing.assert_array_equal((1 << ember.tensor([1, 2])).numpy(), [2, 4])
    b = a.clone()
    b <<= 1
    b |= 1
    b ^= 2
    b &= 7
    b >>= 1
    np.testing.assert_array_equal(b.numpy(), ((((np.array([1, 2, -8]) << 1) | 1) ^ 2) & 7) >> 1)


def test_top_level_inplace_functions():
    x = ember.tensor([0.25, 1.0])
    assert ember.sqrt_(x) is x and x.tolist() == [0.5, 1.0]
    ember.clamp_min_(x, 0.75)
    assert x.tolist() == [0.75, 1.0]
    ember.xlogy_(x, ember.tensor([1.0, np.e]))
    np.testing.assert_allclose(x.numpy(), [0.0, 1.0], atol=1e-7)
    assert ember.fill_(x, 2.5) is x and x.tolist() == [2.5, 2.5]
    assert ember.zero_(x) is x and x.tolist() == [0.0, 0.0]
    v = ember.tensor(3.0, requires_grad=True)
    y = ember.fill(x, v)
    y.sum().backward()
    assert y.tolist() == [3.0, 3.0] and x.tolist() == [0.0, 0.0] and v.grad.item() == 2.0


def test_frexp_named_tuple_and_float_power_dtype():
    m, e = ember.frexp(ember.tensor([8.0, 0.3, -5.0]))
    out = ember.frexp(ember.tensor([8.0]))
    assert out.mantissa.tolist() == [0.5] and out.exponent.dtype == ember.int32
    np.testing.assert_allclose(m.numpy() * 2.0 ** e.numpy(), [8.0, 0.3, -5.0], rtol=1e-7)
    assert ember.float_power(ember.tensor([2]), 2).dtype == ember.float64


def test_special_functions_double_backward():
    """Second derivatives flow through the special functions' backward (create_graph)."""
    x = ember.tensor([0.7, 1.6], dtype=ember.float64, requires_grad=True)
    for fn, d2 in [
        (ember.lgamma, lambda v: sp.polygamma(1, v)),
        (ember.special.i1, lambda v: sp.ivp(1, v, 2)),
        (ember.sinh, np.sinh),
    ]:
        (g,) = ember.autograd.grad(fn(x).sum(), x, create_graph=True)
        (gg,) = ember.autograd.grad(g.sum(), x)
        np.testing.assert_allclose(gg.numpy(), d2(np.array([0.7, 1.6])), rtol=1e-8)
