"""torch's reparameterized gradients of gamma and Dirichlet draws (``_standard_gamma_grad``,
``_dirichlet_grad``), on float64 NumPy or CuPy arrays: the same piecewise approximations
(Taylor series for small draws, Rice saddle points for large parameters, rational corrections
elsewhere), so a seeded ``rsample().backward()`` gives torch's gradients to float64 rounding.

``standard_gamma_grad(alpha, x)`` is ``dx/dalpha`` of a Gamma(alpha, 1) draw ``x``;
``dirichlet_grad(x, alpha, total)`` the scaled Beta gradient torch's Dirichlet backward
multiplies by ``grad - sum(x * grad)``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["dirichlet_grad", "standard_gamma_grad"]

_GAMMA_UV = np.array(
    [
        [0.16009398, -0.094634809, 0.025146376, -0.0030648343,
         1, 0.32668115, 0.10406089, 0.0014179084],
        [0.53487893, 0.1298071, 0.065735949, -0.0015649758,
         0.16639465, 0.020070113, -0.0035938915, -0.00058392623],
        [0.040121004, -0.0065914022, -0.0026286047, -0.0013441777,
         0.017050642, -0.0021309326, 0.00085092367, -1.5247877e-07],
    ]
)  # fmt: skip

_DIRICHLET_C = np.array(
    [
        [
            [[1.003668233, -0.01061107488, -0.0657888334, 0.01201642863],
             [0.6336835991, -0.3557432599, 0.05486251648, -0.001465281033],
             [-0.03276231906, 0.004474107445, 0.002429354597, -0.0001557569013]],
            [[0.221950385, -0.3187676331, 0.01799915743, 0.01074823814],
             [-0.2951249643, 0.06219954479, 0.01535556598, 0.001550077057],
             [0.02155310298, 0.004170831599, 0.001292462449, 6.976601077e-05]],
            [[-0.05980841433, 0.008441916499, 0.01085618172, 0.002319392565],
             [0.02911413504, 0.01400243777, -0.002721828457, 0.000751041181],
             [0.005900514878, -0.001936558688, -9.495446725e-06, 5.385558597e-05]],
        ],
        [
            [[1, -0.02924021934, -0.04438342661, 0.007285809825],
             [0.6357567472, -0.3473456711, 0.05454656494, -0.002407477521],
             [-0.03301322327, 0.004845219414, 0.00231480583, -0.0002307248149]],
            [[0.5925320577, -0.1757678135, 0.01505928619, 0.000564515273],
             [0.1014815858, -0.06589186703, 0.01272886114, -0.0007316646956],
             [-0.007258481865, 0.001096195486, 0.0003934994223, -4.12701925e-05]],
            [[0.06469649321, -0.0236701437, 0.002902096474, -5.896963079e-05],
             [0.001925008108, -0.002869809258, 0.0008000589141, -6.063713228e-05],
             [-0.0003477407336, 6.959756487e-05, 1.097287507e-05, -1.650964693e-06]],
        ],
    ]
)  # fmt: skip


def _digamma(xp, x):
    if xp is np:
        from scipy.special import digamma
    else:  # pragma: no cover - GPU
        from cupyx.scipy.special import digamma
    return digamma(x)


def standard_gamma_grad(xp, alpha, x):
    """torch's ``standard_gamma_grad_one``: ``-(dF/dalpha)(x; alpha) / f(x; alpha)``."""
    a, x = xp.broadcast_arrays(xp.asarray(alpha, dtype=np.float64), xp.asarray(x, np.float64))
    with np.errstate(all="ignore"):
        # small x: the CDF's Taylor series
        numer, denom = xp.ones_like(x), a.copy()
        s1, s2 = numer / denom, numer / (denom * denom)
        for i in range(1, 6):
            numer = numer * (-x / i)
            denom = denom + 1
            s1, s2 = s1 + numer / denom, s2 + numer / (denom * denom)
        pow_xa = x**a
        pdf = x ** (a - 1) * xp.exp(-x)
        cdf_alpha = (xp.log(x) - _digamma(xp, a)) * (pow_xa * s1) - pow_xa * s2
        small = -cdf_alpha / pdf
        small = xp.where(xp.isnan(small), 0.0, small)
        # large alpha: Rice's saddle point
        near = (0.9 * a <= x) & (x <= 1.1 * a)
        n1 = 1 + 24 * a * (1 + 12 * a)
        n2 = 1440 * a * a + 6 * x * (53 - 120 * x) - 65 * x * x / a + a * (107 + 3600 * x)
        centre = n1 * n2 / (1244160 * (a * a) * (a * a))
        den = xp.sqrt(8 * a)
        t2 = den / (a - x)
        t3 = (x - a - a * xp.log(x / a)) ** -1.5
        t23 = xp.where(x < a, t2 - t3, t2 + t3)
        t1 = xp.log(x / a) * t23 - xp.sqrt(2 / a) * (a + x) / ((a - x) * (a - x))
        stirling = 1 + 1 / (12 * a) * (1 + 1 / (24 * a))
        large = xp.where(near, centre, -stirling * (x * t1) / den)
        # elsewhere: a bivariate rational approximation
        u, v = xp.log(x / a), xp.log(a)
        c = [_GAMMA_UV[0, i] + u * (_GAMMA_UV[1, i] + u * _GAMMA_UV[2, i]) for i in range(8)]
        p = c[0] + v * (c[1] + v * (c[2] + v * c[3]))
        q = c[4] + v * (c[5] + v * (c[6] + v * c[7]))
        mid = xp.exp(p / q)
    return xp.where(x < 0.8, small, xp.where(a > 8.0, large, mid))


def _beta_alpha_small(xp, x, a, b):
    factor = _digamma(xp, a) - _digamma(xp, a + b) - xp.log(x)
    numer = xp.ones_like(x)
    series = numer / a * (factor + 1 / a)
    for i in range(1, 11):
        numer = numer * ((i - b) * x / i)
        denom = a + i
        series = series + numer / denom * (factor + 1 / denom)
    out = x * (1 - x) ** -b * series
    return xp.where(xp.isnan(out), 0.0, out)


def _beta_beta_small(xp, x, a, b):
    factor = _digamma(xp, a + b) - _digamma(xp, b)
    numer, betas, dbetas, series = xp.ones_like(x), xp.ones_like(x), xp.zeros_like(x), factor / a
    for i in range(1, 9):
        numer = numer * (-x / i)
        dbetas = dbetas * (b - i) + betas
        betas = betas * (b - i)
        series = series + numer / (a + i) * (dbetas + factor * betas)
    out = -((1 - x) ** (1 - b)) * series
    return xp.where(xp.isnan(out), 0.0, out)


def _beta_alpha_mid(xp, x, a, b):
    total = a + b
    mean = a / total
    std = xp.sqrt(a * b / (total + 1)) / total
    bb = b * b
    poly = 47 * x * bb * bb + a * (
        (43 + 20 * (16 + 27 * b) * x) * bb * b
        + a * (3 * (59 + 180 * b - 90 * x) * bb
        + a * ((453 + 1620 * b * (1 - x) - 455 * x) * b + a * (8 * (1 - x) * (135 * b - 11))))
    )  # fmt: skip
    pre_num = (1 + 12 * a) * (1 + 12 * b) / (total * total)
    pre_den = 12960 * a * a * a * b * b * (1 + 12 * total)
    centre = pre_num / (1 - x) * poly / pre_den
    prefactor = -x / xp.sqrt(2 * a * b / total)
    stirling = (
        (1 + 1 / (12 * a) + 1 / (288 * a * a))
        * (1 + 1 / (12 * b) + 1 / (288 * b * b))
        / (1 + 1 / (12 * total) + 1 / (288 * total * total))
    )
    t1_num = 2 * (a * a) * (x - 1) + a * b * (x - 1) - x * bb
    axbx = a * (x - 1) + b * x
    t1 = t1_num / (xp.sqrt(2 * a / b) * total**1.5 * axbx * axbx)
    t2 = 0.5 * xp.log(a / (total * x))
    t3 = xp.sqrt(8 * a * b / total) / (b * x + a * (x - 1))
    t4 = (b * xp.log(b / (total * (1 - x))) + a * xp.log(a / (total * x))) ** -1.5
    far = stirling * prefactor * (t1 + t2 * (t3 + xp.where(x < mean, t4, -t4)))
    return xp.where((mean - 0.1 * std <= x) & (x <= mean + 0.1 * std), centre, far)


def dirichlet_grad(xp, x, alpha, total):
    """torch's ``dirichlet_grad_one`` (float64): the Beta(alpha, total - alpha) gradient."""
    x, a, t = xp.broadcast_arrays(*(xp.asarray(v, dtype=np.float64) for v in (x, alpha, total)))
    b = t - a
    boundary = t * x * (1 - x)
    with np.errstate(all="ignore"):
        near0 = _beta_alpha_small(xp, x, a, b)
        near1 = -_beta_beta_small(xp, 1 - x, b, a)
        mid = _beta_alpha_mid(xp, x, a, b)
        u = xp.log(x)
        la = xp.log(a) - u
        lb = xp.log(t) - la
        pow_u, pow_a = (1.0, u, u * u), (1.0, la, la * la)
        p = q = 0.0
        for i in range(3):
            for j in range(3):
                ua = pow_u[i] * pow_a[j]
                c0, c1 = _DIRICHLET_C[0, i, j], _DIRICHLET_C[1, i, j]
                p = p + ua * (c0[0] + lb * (c0[1] + lb * (c0[2] + lb * c0[3])))
                q = q + ua * (c1[0] + lb * (c1[1] + lb * (c1[2] + lb * c1[3])))
        approx = x * (_digamma(xp, t) - _digamma(xp, a)) / b
        rational = p / q * approx
    out = xp.where((a > 6) & (b > 6), mid, rational)
    out = xp.where((x >= 0.5) & (boundary < 0.75), near1, out)
    return xp.where((x <= 0.5) & (boundary < 2.5), near0, out)
