"""Op-table records of the math family (assembled into tests/op_table.py's OPS)."""

from __future__ import annotations

import numpy as np
import scipy.special as sp
from op_support import OpSpec, S, T

_UNIT = np.array([[0.1, 0.35, 0.5], [0.62, 0.8, 0.93]], np.float32)  # inside (0, 1)


def _samples(kind: str = "float", int_sample: bool = True) -> list:
    """Matrix, 0-d, empty and 3-d inputs (and an integer tensor, promoted to float)."""
    out = [S(T(3, 4, kind=kind)), S(T(kind=kind)), S(T(0, 3, kind=kind)), S(T(2, 1, 3, kind=kind))]
    # integers are promoted to float; none lie inside the (-1, 1) domain of the "unit" ops
    return out + [S(T(2, 3, kind="posint"))] if int_sample and kind != "unit" else out


def _special(name, ref, kind="float", ns="special", **kw) -> OpSpec:
    """``m.<ns>.<name>(x)`` (ns "" for the top level) against a scipy/NumPy reference."""

    def call(m, x):
        return getattr(getattr(m, ns) if ns else m, name)(x)

    return OpSpec(f"{ns}.{name}" if ns else name, call, ref, _samples(kind), **kw)


def _unit(name, ref, ns="special", **kw) -> OpSpec:
    def call(m, x):
        return getattr(getattr(m, ns) if ns else m, name)(x)

    return OpSpec(
        f"{ns}.{name}" if ns else name, call, ref, [S(_UNIT), S(np.array(0.5, np.float32))], **kw
    )


def _np_mvlgamma(x, p):
    return sum(sp.gammaln(x - i / 2) for i in range(p)) + p * (p - 1) / 4 * np.log(np.pi)


_BIN = [
    S(T(3, 4), T(3, 4, kind="pos")),
    S(T(2, 3, 1), T(4, kind="pos")),
    S(T(), T(3, kind="pos")),
    S(T(0, 3), T(1, 3, kind="pos")),
    S(2.0, T(2, 3, kind="pos")),
    S(np.array([0.0, 1.5, 0.0], np.float32), T(3, kind="pos")),
]

OPS: list[OpSpec] = [
    # -- gamma family --
    _special("lgamma", sp.gammaln, "pos", ns=""),
    _special("gammaln", sp.gammaln, "pos"),
    OpSpec(
        "lgamma_negative",
        lambda m, x: m.lgamma(x),
        sp.gammaln,
        [S(np.array([-0.5, -1.5, -2.7, 0.3], np.float32))],
    ),
    _special("digamma", sp.psi, "pos", ns=""),
    _special("psi", sp.psi, "pos"),
    OpSpec(
        "polygamma",
        lambda m, x, n: m.polygamma(n, x),
        lambda x, n: sp.polygamma(n, x),
        [
            S(T(3, 4, kind="pos"), 1),
            S(T(kind="pos"), 2),
            S(T(2, 3, kind="pos"), 0),
            S(T(2, 3, kind="posint"), 1),
        ],
        rtol=1e-5,
    ),
    OpSpec(
        "polygamma_method",
        lambda m, x: x.polygamma(3),
        lambda x: sp.polygamma(3, x),
        [S(T(2, 3, kind="pos"))],
        rtol=1e-5,
    ),
    OpSpec(
        "mvlgamma",
        lambda m, x, p: m.mvlgamma(x, p),
        _np_mvlgamma,
        [
            S(np.array([1.2, 2.0, 3.5], np.float32), 2),
            S(np.array([[2.6, 4.0], [5.5, 3.1]], np.float32), 4),
        ],
        rtol=1e-5,
    ),
    OpSpec(
        "special.multigammaln",
        lambda m, x: m.special.multigammaln(x, 3),
        lambda x: _np_mvlgamma(x, 3),
        [S(np.array([1.2, 2.0, 3.5], np.float32))],
        rtol=1e-5,
    ),
    # -- error functions and the normal distribution --
    _special("erf", sp.erf, ns=""),
    _special("erf", sp.erf),
    _special("erfc", sp.erfc, ns=""),
    _special("erfc", sp.erfc),
    _unit("erfinv", sp.erfinv, ns=""),
    _unit("erfinv", sp.erfinv),
    _special("erfcx", sp.erfcx),
    _special("ndtr", sp.ndtr),
    _special("log_ndtr", sp.log_ndtr, rtol=1e-5),
    _unit("ndtri", sp.ndtri, rtol=1e-5),
    # -- Bessel functions with gradients --
    _special("i0", sp.i0, ns=""),
    _special("i0", sp.i0),
    _special("i0e", sp.i0e),
    _special("i1", sp.i1),
    _special("i1e", sp.i1e),
    OpSpec(
        "special.i1_at_zero",
        lambda m, x: m.special.i1(x) + m.special.i1e(x),
        lambda x: sp.i1(x) + sp.i1e(x),
        [S(np.array([0.0, 1.0], np.float32))],
    ),
    # -- logistic, sinc, entropy --
    _unit("logit", sp.logit, ns=""),
    _unit("logit", sp.logit),
    OpSpec(
        "logit_eps",
        lambda m, x: m.logit(x, eps=0.15),
        lambda x: sp.logit(np.clip(x, 0.15, 0.85)),
        [S(_UNIT)],
    ),
    _special("expit", sp.expit),
    _special("sinc", np.sinc, ns=""),
    _special("sinc", np.sinc),
    # torch masks sinc's gradient formula to 0 at 0, so its second derivative there is 0
    OpSpec(
        "sinc_at_zero",
        lambda m, x: m.sinc(x),
        np.sinc,
        [S(np.array([0.0, 0.5, -1.25], np.float32), gg=False)],
    ),
    _special("entr", sp.entr, "pos"),
    # -- binary --
    OpSpec("xlogy", lambda m, a, b: m.xlogy(a, b), sp.xlogy, _BIN, binary=True),
    OpSpec("special.xlogy", lambda m, a, b: m.special.xlogy(a, b), sp.xlogy, _BIN[:2]),
    OpSpec(
        "special.xlog1py", lambda m, a, b: m.special.xlog1py(a, b), sp.xlog1py, _BIN, binary=True
    ),
    # torch implements no derivative for zeta's first argument, nor igamma/igammac's
    OpSpec(
        "special.zeta",
        lambda m, x, q: m.special.zeta(x, q),
        sp.zeta,
        [
            S(np.array([2.5, 3.0, 4.2], np.float32), T(3, kind="pos")),
            S(np.array([2.5, 3.0], np.float32), 1.5),
        ],
        grad=False,
        rtol=1e-5,
    ),
    OpSpec(
        "special.zeta_q",
        lambda m, q: m.special.zeta(3.0, q),
        lambda q: sp.zeta(3.0, q),
        [S(T(2, 3, kind="pos"))],
        rtol=1e-5,
    ),
    OpSpec(
        "igamma",
        lambda m, x: m.igamma(m.tensor([0.5, 2.0, 3.5], dtype=x.dtype), x),
        lambda x: sp.gammainc([0.5, 2.0, 3.5], x),
        [S(T(2, 3, kind="pos"))],
        rtol=1e-5,
    ),
    OpSpec(
        "igammac",
        lambda m, x: m.igammac(m.tensor([0.5, 2.0, 3.5], dtype=x.dtype), x),
        lambda x: sp.gammaincc([0.5, 2.0, 3.5], x),
        [S(T(2, 3, kind="pos"))],
        rtol=1e-5,
    ),
    OpSpec(
        "special.gammainc",
        lambda m, a, x: m.special.gammainc(a, x),
        sp.gammainc,
        [S(T(2, 3, kind="pos"), T(2, 3, kind="pos"))],
        grad=False,
        rtol=1e-5,
    ),
    OpSpec(
        "special.gammaincc",
        lambda m, a, x: m.special.gammaincc(a, x),
        sp.gammaincc,
        [S(T(2, 3, kind="pos"), T(3, kind="pos"))],
        grad=False,
        rtol=1e-5,
    ),
    # -- trigonometric and hyperbolic --
    _special("tan", np.tan, "unit", ns=""),
    _special("asin", np.arcsin, "unit", ns=""),
    _special("acos", np.arccos, "unit", ns=""),
    _special("atan", np.arctan, ns=""),
    _special("arcsin", np.arcsin, "unit", ns=""),
    _special("arctan", np.arctan, ns=""),
    _special("sinh", np.sinh, ns=""),
    _special("cosh", np.cosh, ns=""),
    _special("asinh", np.arcsinh, ns=""),
    OpSpec(
        "acosh",
        lambda m, x: m.acosh(x + 1.5),
        lambda x: np.arccosh(x + 1.5),
        _samples("pos", int_sample=False),
    ),
    _special("atanh", np.arctanh, "unit", ns=""),
    _special("arctanh", np.arctanh, "unit", ns=""),
    OpSpec(
        "atan2",
        lambda m, a, b: m.atan2(a, b),
        np.arctan2,
        [
            S(T(3, 4), T(3, 4, kind="away")),
            S(T(2, 3, 1), T(4, kind="away")),
            S(T(), T(3, kind="away")),
            S(T(0, 3), T(1, 3)),
        ],
        binary=True,
    ),
    OpSpec("arctan2_method", lambda m, a, b: a.arctan2(b), np.arctan2, [S(T(2, 3), T(2, 3))]),
    # -- exponentials and logarithms --
    _special("exp2", np.exp2, ns=""),
    _special("exp2", np.exp2),
    _special("log2", np.log2, "pos", ns=""),
    _special("log10", np.log10, "pos", ns=""),
    OpSpec(
        "logaddexp",
        lambda m, a, b: m.logaddexp(a, b),
        np.logaddexp,
        [S(T(3, 4), T(3, 4)), S(T(2, 3, 1), T(4)), S(T(), T(3)), S(T(0, 3), T(1, 3))],
        binary=True,
    ),
    OpSpec(
        "logaddexp2",
        lambda m, a, b: m.logaddexp2(a, b),
        np.logaddexp2,
        [S(T(3, 4), T(3, 4)), S(T(2, 1), T(3))],
        binary=True,
    ),
    OpSpec(
        "ldexp", lambda m, a, b: m.ldexp(a, b), lambda a, b: a * np.exp2(b), [S(T(3, 4), T(3, 4))]
    ),
    # torch's gradient is 0 for negative integer exponents (it takes 2 ** other in integers)
    OpSpec(
        "ldexp_int",
        lambda m, a, b: m.ldexp(a, b),
        lambda a, b: a * np.exp2(b),
        [S(T(2, 3), T(3, kind="int"))],
        torch_grad=False,
    ),
    OpSpec(
        "float_power",
        lambda m, a, b: m.float_power(a, b),
        np.power,
        [
            S(T(3, 4, kind="pos"), T(3, 4)),
            S(T(2, 3, kind="pos"), 2),
            S(T(2, 3, kind="posint"), 3),
            S(2.0, T(3)),
        ],
    ),
    # -- two-argument float functions --
    OpSpec(
        "hypot",
        lambda m, a, b: m.hypot(a, b),
        np.hypot,
        [S(T(3, 4), T(3, 4)), S(T(2, 3, 1), T(4)), S(T(), T(3))],
        binary=True,
    ),
    OpSpec(
        "copysign",
        lambda m, a, b: m.copysign(a, b),
        np.copysign,
        [
            S(T(3, 4), T(3, 4, kind="away")),
            S(T(2, 3), -1.0),
            S(T(2, 3, kind="int"), T(3, kind="away")),
        ],
    ),
    OpSpec(
        "fmod",
        lambda m, a, b: m.fmod(a, b),
        np.fmod,
        [
            S(T(3, 4, kind="frac"), T(3, 4, kind="away")),
            S(T(2, 3, kind="frac"), 1.5),
            S(T(2, 3, kind="int"), T(3, kind="posint")),
        ],
        binary=True,
    ),
    OpSpec(
        "fmax",
        lambda m, a, b: m.fmax(a, b),
        np.fmax,
        [
            S(T(3, 4, kind="distinct"), T(3, 4, kind="distinct")),
            S(np.array([1.0, np.nan, 2.0], np.float32), np.array([np.nan, 0.5, 3.0], np.float32)),
            S(T(2, 3, kind="int"), T(3, kind="int")),
        ],
    ),
    OpSpec(
        "fmin",
        lambda m, a, b: m.fmin(a, b),
        np.fmin,
        [
            S(T(3, 4, kind="distinct"), T(3, 4, kind="distinct")),
            S(np.array([1.0, np.nan, 2.0], np.float32), np.array([np.nan, 0.5, 3.0], np.float32)),
        ],
    ),
    OpSpec(
        "nextafter",
        lambda m, a, b: m.nextafter(a, b),
        np.nextafter,
        [S(T(3, 4), T(3, 4)), S(T(2, 3), T(3))],
        grad=False,
    ),
    OpSpec(
        "heaviside",
        lambda m, a, b: m.heaviside(a, b),
        lambda a, b: np.heaviside(a, b).astype(np.result_type(a, b)),
        [
            S(np.array([-1.0, 0.0, 2.0, 0.0], np.float32), np.array([0.5], np.float32)),
            S(T(2, 3, kind="int"), T(3, kind="int")),
        ],
        grad=False,
    ),
    OpSpec(
        "addcmul",
        lambda m, a, b, c: m.addcmul(a, b, c, value=0.5),
        lambda a, b, c: a + 0.5 * b * c,
        [S(T(3, 4), T(3, 4), T(4)), S(T(), T(2), T(2, 1))],
    ),
    OpSpec(
        "addcdiv",
        lambda m, a, b, c: a.addcdiv(b, c, value=-2),
        lambda a, b, c: a - 2 * b / c,
        [S(T(3, 4), T(3, 4), T(4, kind="away"))],
    ),
    # -- rounding, angles, classification --
    _special("deg2rad", np.deg2rad, ns=""),
    _special("rad2deg", np.rad2deg, ns=""),
    _special("fix", np.trunc, "frac", ns=""),
    # torch's gradient of sgn is a ZeroTensor, which cannot be read back: values only
    _special("sgn", np.sign, "away", ns="", torch_grad=False),
    OpSpec(
        "nan_to_num",
        lambda m, x, **kw: m.nan_to_num(x, **kw),
        lambda x, **kw: np.nan_to_num(x, **{"nan": 0.0, **kw}),
        [
            S(
                np.array([1.0, np.nan, np.inf, -np.inf, -2.0], np.float32),
                nan=1.5,
                posinf=9.0,
                neginf=-9.0,
            ),
            S(T(2, 3)),
            S(T(2, 3, kind="int")),
        ],
    ),
    *[
        OpSpec(
            name,
            (lambda n: lambda m, x: getattr(m, n)(x))(name),
            ref,
            [
                S(np.array([1.0, -0.0, np.inf, -np.inf, np.nan, -2.0], np.float32)),
                S(T(2, 3, kind="int")),
            ],
            grad=False,
        )
        for name, ref in [
            ("signbit", np.signbit),
            ("isposinf", np.isposinf),
            ("isneginf", np.isneginf),
            ("isreal", np.isreal),
        ]
    ],
    OpSpec("frexp", lambda m, x: tuple(m.frexp(x)), np.frexp, [S(T(3, 4)), S(T())]),
    # -- integer math --
    OpSpec(
        "gcd",
        lambda m, a, b: m.gcd(a, b),
        np.gcd,
        [S(T(3, 4, kind="int"), T(3, 4, kind="int")), S(T(2, 3, kind="int"), T(3, kind="int"))],
        grad=False,
    ),
    OpSpec(
        "lcm",
        lambda m, a, b: m.lcm(a, b),
        np.lcm,
        [S(T(3, 4, kind="int"), T(3, 4, kind="int"))],
        grad=False,
    ),
    OpSpec(
        "lshift",
        lambda m, a, b: a << b,
        np.left_shift,
        [
            S(T(3, 4, kind="int"), T(3, 4, kind="posint")),
            S(T(2, 3, kind="int"), 2),
            S(3, T(2, kind="posint")),
        ],
        grad=False,
    ),
    OpSpec(
        "rshift",
        lambda m, a, b: m.bitwise_right_shift(a, b),
        np.right_shift,
        [S(T(3, 4, kind="int"), T(3, 4, kind="posint")), S(T(2, 3, kind="int"), 1)],
        grad=False,
    ),
]
