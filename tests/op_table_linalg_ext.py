"""Op-table records of the linalg_ext family (assembled into tests/op_table.py's OPS).

Every call returns real tensors (complex results go through ``view_as_real``) so gradcheck can
compare them; eigenvector and singular-vector outputs are squared elementwise, which makes them
independent of the sign each solver picks. Matrices that must be well conditioned or positive
definite are built inside the call (``_wc``, ``_spd``), so the gradient flows through that too.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla
from op_support import OpSpec, S, T

_LA = dict(rtol=2e-4, atol=2e-4, grad_rtol=2e-4, grad_atol=2e-4)


def _eye(m, n, like):
    return m.eye(n, dtype=like.dtype)


def _wc(m, a):
    """A well-conditioned square matrix (or batch) from ``a``."""
    return a + 4 * _eye(m, a.shape[-1], a)


def _spd(m, a):
    return a @ a.transpose(-2, -1) + a.shape[-1] * _eye(m, a.shape[-1], a)


def _np_wc(a):
    return a + 4 * np.eye(a.shape[-1])


def _np_spd(a):
    return a @ np.swapaxes(a, -1, -2) + a.shape[-1] * np.eye(a.shape[-1])


def _sym(m, a):
    return a + a.transpose(-2, -1)


def _rec(name, call, ref, samples, **kw) -> OpSpec:
    return OpSpec(name, call, ref, samples, **{**_LA, **kw})


def _cplx(m, a, b):
    return m.complex(a, b)


def _vr(z):
    """NumPy's view_as_real."""
    z = np.asarray(z)
    return np.stack([z.real, z.imag], -1)


def _np_householder(a, tau):
    mm, n = a.shape[-2:]
    q = np.eye(mm)
    for i in range(tau.shape[-1]):
        v = np.zeros(mm)
        v[i] = 1
        v[i + 1 :] = a[i + 1 :, i]
        q = q @ (np.eye(mm) - tau[i] * np.outer(v, v))
    return q[:, :n]


def _np_matrix_norm(a, ord):
    return np.linalg.norm(a, ord=ord, axis=(-2, -1))


def _np_lu(a):
    p, lo, up = sla.lu(a)
    return p, lo, up


def _np_cross(a, b):
    return np.cross(a, b, axis=-1)


OPS: list[OpSpec] = [
    # ---- solves, inverses, determinants -------------------------------------------------------
    _rec(
        "linalg_solve",
        lambda m, a, b, **k: m.linalg.solve(_wc(m, a), b, **k),
        lambda a, b, left=True: (
            np.linalg.solve(_np_wc(a), b)
            if left
            else np.swapaxes(
                np.linalg.solve(np.swapaxes(_np_wc(a), -1, -2), np.swapaxes(b, -1, -2)), -1, -2
            )
        ),
        [S(T(3, 3), T(3, 2)), S(T(2, 3, 3), T(3, 2)), S(T(3, 3), T(2, 3), left=False)],
    ),
    _rec(
        "linalg_solve_vec",
        lambda m, a, b: m.linalg.solve(_wc(m, a), b),
        lambda a, b: np.linalg.solve(_np_wc(a), b[..., None])[..., 0],
        [S(T(3, 3), T(3)), S(T(2, 3, 3), T(2, 3))],
    ),
    _rec(
        "linalg_inv",
        lambda m, a: m.linalg.inv(_wc(m, a)),
        lambda a: np.linalg.inv(_np_wc(a)),
        [S(T(3, 3)), S(T(2, 2, 2))],
    ),
    _rec(
        "inverse",
        lambda m, a: _wc(m, a).inverse(),
        lambda a: np.linalg.inv(_np_wc(a)),
        [S(T(3, 3))],
    ),
    _rec(
        "linalg_det",
        lambda m, a: m.linalg.det(a),
        np.linalg.det,
        [S(T(3, 3)), S(T(2, 2, 2)), S(T(1, 1))],
    ),
    _rec(
        "slogdet",
        lambda m, a: tuple(m.linalg.slogdet(a)),
        lambda a: tuple(np.linalg.slogdet(a)),
        [S(T(3, 3)), S(T(2, 2, 2))],
    ),
    _rec(
        "logdet",
        lambda m, a: m.logdet(_spd(m, a)),
        lambda a: np.linalg.slogdet(_np_spd(a))[1],
        [S(T(3, 3))],
    ),
    _rec("matrix_exp", lambda m, a: m.linalg.matrix_exp(a), sla.expm, [S(T(3, 3)), S(T(2, 2, 2))]),
    _rec(
        "matrix_power",
        lambda m, a, n: m.linalg.matrix_power(_wc(m, a), n),
        lambda a, n: np.linalg.matrix_power(_np_wc(a), n),
        [S(T(3, 3), 3), S(T(2, 2, 2), -2), S(T(2, 2), 0)],
    ),
    _rec("pinv", lambda m, a: m.linalg.pinv(a), np.linalg.pinv, [S(T(4, 3)), S(T(3, 4))]),
    _rec(
        "lstsq",
        lambda m, a, b: m.linalg.lstsq(a, b).solution,
        lambda a, b: np.linalg.lstsq(a, b, rcond=None)[0],
        [S(T(5, 3), T(5, 2))],
    ),
    _rec(
        "solve_triangular",
        lambda m, a, b, **k: m.linalg.solve_triangular(_wc(m, a), b, **k),
        lambda a, b, upper, left=True: (
            sla.solve_triangular(_np_wc(a), b, lower=not upper)
            if left
            else sla.solve_triangular(_np_wc(a).T, b.T, lower=upper).T
        ),
        [
            S(T(3, 3), T(3, 2), upper=True),
            S(T(3, 3), T(3, 2), upper=False),
            S(T(3, 3), T(2, 3), upper=True, left=False),
        ],
    ),
    _rec(
        "cholesky_solve",
        lambda m, a, b: m.cholesky_solve(b, m.linalg.cholesky(_spd(m, a))),
        lambda a, b: np.linalg.solve(_np_spd(a), b),
        [S(T(3, 3), T(3, 2))],
    ),
    _rec(
        "cholesky_inverse",
        lambda m, a: m.cholesky_inverse(m.linalg.cholesky(_spd(m, a))),
        lambda a: np.linalg.inv(_np_spd(a)),
        [S(T(3, 3))],
    ),
    _rec(
        "lu_solve",
        lambda m, a, b: m.linalg.lu_solve(*m.linalg.lu_factor(_wc(m, a)), b),
        lambda a, b: np.linalg.solve(_np_wc(a), b),
        [S(T(3, 3), T(3, 2))],
    ),
    _rec(
        "tensorinv",
        lambda m, a: m.linalg.tensorinv(_wc(m, a.reshape(4, 4)).reshape(4, 2, 2), ind=1),
        lambda a: np.linalg.tensorinv(_np_wc(a.reshape(4, 4)).reshape(4, 2, 2), ind=1),
        [S(T(2, 8))],
    ),
    # ---- factorizations ------------------------------------------------------------------------
    _rec(
        "cholesky",
        lambda m, a, **k: m.linalg.cholesky(_spd(m, a), **k),
        lambda a, upper=False: (
            np.linalg.cholesky(_np_spd(a)).swapaxes(-1, -2)
            if upper
            else np.linalg.cholesky(_np_spd(a))
        ),
        [S(T(3, 3)), S(T(2, 2, 2)), S(T(3, 3), upper=True)],
    ),
    _rec(
        "qr",
        lambda m, a: tuple(m.linalg.qr(a)),
        lambda a: tuple(np.linalg.qr(a)),
        [S(T(4, 3)), S(T(3, 3)), S(T(3, 4)), S(T(2, 3, 2))],
    ),
    _rec(
        "eigh",
        lambda m, a: (lambda r: (r[0], r[1] ** 2))(m.linalg.eigh(_sym(m, a))),
        lambda a: (lambda r: (r[0], r[1] ** 2))(np.linalg.eigh(a + np.swapaxes(a, -1, -2))),
        [S(T(3, 3)), S(T(2, 2, 2))],
    ),
    _rec(
        "eigvalsh",
        lambda m, a: m.linalg.eigvalsh(_sym(m, a)),
        lambda a: np.linalg.eigvalsh(a + np.swapaxes(a, -1, -2)),
        [S(T(3, 3))],
    ),
    _rec(
        "eigvals",
        lambda m, a: m.view_as_real(m.linalg.eigvals(a)),
        lambda a: _vr(np.linalg.eigvals(a).astype(complex)),
        [S(T(3, 3))],
    ),
    _rec(
        "eig",
        lambda m, a: (lambda r: (m.view_as_real(r[0]), r[1].abs()))(m.linalg.eig(a)),
        lambda a: (lambda r: (_vr(r[0].astype(complex)), np.abs(r[1])))(np.linalg.eig(a)),
        [S(T(3, 3))],
    ),
    _rec(
        "svd",
        lambda m, a, **k: (lambda r: (r[0] ** 2, r[1], r[2] ** 2))(m.linalg.svd(a, **k)),
        lambda a, full_matrices=True: (lambda r: (r[0] ** 2, r[1], r[2] ** 2))(
            np.linalg.svd(a, full_matrices=full_matrices)
        ),
        [
            S(T(4, 3), full_matrices=False),
            S(T(3, 4), full_matrices=False),
            S(T(3, 3)),
            S(T(2, 3, 2), full_matrices=False),
        ],
    ),
    _rec(
        "svdvals",
        lambda m, a: m.linalg.svdvals(a),
        lambda a: np.linalg.svd(a, compute_uv=False),
        [S(T(4, 3)), S(T(2, 2, 3))],
    ),
    _rec(
        "torch_svd",
        lambda m, a: (lambda r: (r[0] ** 2, r[1], r[2] ** 2))(m.svd(a)),
        lambda a: (lambda r: (r[0] ** 2, r[1], np.swapaxes(r[2], -1, -2) ** 2))(
            np.linalg.svd(a, full_matrices=False)
        ),
        [S(T(4, 3))],
    ),
    _rec("lu", lambda m, a: tuple(m.linalg.lu(a)), _np_lu, [S(T(3, 3)), S(T(4, 3)), S(T(3, 4))]),
    _rec(
        "lu_factor",
        lambda m, a: tuple(m.linalg.lu_factor(a)),
        lambda a: (lambda r: (r[0], r[1].astype(np.int32) + 1))(sla.lu_factor(a)),
        [S(T(3, 3))],
    ),
    _rec(
        "householder_product",
        lambda m, a, tau: m.linalg.householder_product(a, tau),
        _np_householder,
        [S(T(4, 3), T(2))],
    ),
    # ---- norms and products --------------------------------------------------------------------
    _rec(
        "matrix_norm",
        lambda m, a, ord: m.linalg.matrix_norm(a, ord),
        _np_matrix_norm,
        [
            S(T(3, 4), "fro"),
            S(T(3, 4), "nuc"),
            S(T(3, 4), 2),
            S(T(3, 4), -2),
            S(T(3, 4, kind="away"), 1),
            S(T(3, 4, kind="away"), float("inf")),
            S(T(2, 3, 4, kind="away"), -1),
        ],
    ),
    _rec(
        "linalg_norm_matrix",
        lambda m, a, ord: m.linalg.norm(a, ord),
        lambda a, ord: np.linalg.norm(a, ord),
        [S(T(3, 3), 2), S(T(3, 3), "nuc")],
    ),
    _rec("cond", lambda m, a: m.linalg.cond(a), np.linalg.cond, [S(T(3, 3))]),
    _rec(
        "linalg_cross",
        lambda m, a, b: m.linalg.cross(a, b),
        _np_cross,
        [S(T(2, 3), T(2, 3)), S(T(1, 3), T(2, 3))],
    ),
    _rec(
        "vecdot",
        lambda m, a, b: m.linalg.vecdot(a, b),
        lambda a, b: (a * b).sum(-1),
        [S(T(2, 3), T(2, 3))],
    ),
    _rec(
        "multi_dot",
        lambda m, a, b, c: m.linalg.multi_dot([a, b, c]),
        lambda a, b, c: a @ b @ c,
        [S(T(3), T(3, 4), T(4, 2)), S(T(2, 3), T(3, 4), T(4))],
    ),
    _rec(
        "linalg_vander",
        lambda m, x, **k: m.linalg.vander(x, **k),
        lambda x, N=None: np.vander(x, N, increasing=True),
        [S(T(3)), S(T(3), N=4)],
    ),
    _rec("kron", lambda m, a, b: m.kron(a, b), np.kron, [S(T(2, 3), T(2, 2)), S(T(2), T(3, 1))]),
    _rec(
        "tensordot",
        lambda m, a, b, dims: m.tensordot(a, b, dims),
        lambda a, b, dims: np.tensordot(a, b, dims),
        [S(T(2, 3, 4), T(3, 4, 2), 2), S(T(2, 3), T(3, 2), ([1], [0]))],
    ),
    _rec("inner", lambda m, a, b: m.inner(a, b), np.inner, [S(T(2, 3), T(4, 3))]),
    _rec("vdot", lambda m, a, b: m.vdot(a, b), np.vdot, [S(T(3), T(3))]),
    _rec(
        "addmv",
        lambda m, x, a, v: m.addmv(x, a, v, beta=0.5, alpha=2),
        lambda x, a, v: 0.5 * x + 2 * a @ v,
        [S(T(3), T(3, 4), T(4))],
    ),
    _rec(
        "addr",
        lambda m, x, a, b: m.addr(x, a, b, alpha=2),
        lambda x, a, b: x + 2 * np.outer(a, b),
        [S(T(3, 4), T(3), T(4))],
    ),
    _rec(
        "addbmm",
        lambda m, x, a, b: m.addbmm(x, a, b),
        lambda x, a, b: x + (a @ b).sum(0),
        [S(T(3, 2), T(2, 3, 4), T(2, 4, 2))],
    ),
    _rec("trace", lambda m, a: m.trace(a), np.trace, [S(T(3, 3)), S(T(2, 4))]),
    _rec(
        "chain_matmul",
        lambda m, a, b, c: m.chain_matmul(a, b, c),
        lambda a, b, c: a @ b @ c,
        [S(T(2, 3), T(3, 4), T(4, 2))],
    ),
]


# ---- FFT (complex inputs are built from two real ones; complex outputs viewed as real) ---------
def _fft_rec(name, fn, np_fn, samples, complex_in=True, real_out=False, **kw):
    if complex_in:

        def call(m, a, b, **k):
            out = fn(m)(m.complex(a, b), **k).resolve_conj().resolve_neg()
            return out if real_out else m.view_as_real(out)

        def ref(a, b, **k):
            out = np_fn(a + 1j * b, **k)
            return out if real_out else _vr(out)
    else:

        def call(m, a, **k):
            out = fn(m)(a, **k).resolve_conj().resolve_neg()
            return out if real_out else m.view_as_real(out)

        def ref(a, **k):
            out = np_fn(a, **k)
            return out if real_out else _vr(out)

    return OpSpec(
        name, call, ref, samples, rtol=1e-4, atol=1e-4, grad_rtol=1e-4, grad_atol=1e-4, **kw
    )


def _np_fftn(np_name):
    def fn(x, s=None, dim=None, norm=None, n=None):
        f = getattr(np.fft, np_name)
        if np_name.endswith("2"):
            return f(x, s=s, axes=(-2, -1) if dim is None else dim, norm=norm)
        if np_name.endswith("n"):
            if dim is None and s is not None:
                dim = tuple(range(x.ndim - len(s), x.ndim))
            return f(x, s=s, axes=dim, norm=norm)
        return f(x, n=n, axis=-1 if dim is None else dim, norm=norm)

    return fn


def _np_hfft(x, n=None, dim=-1, norm=None):
    return np.fft.hfft(x, n=n, axis=dim, norm=norm)


def _np_ihfft(x, n=None, dim=-1, norm=None):
    return np.fft.ihfft(x, n=n, axis=dim, norm=norm)


_C2 = [
    S(T(5), T(5)),
    S(T(2, 4), T(2, 4), n=6, norm="ortho"),
    S(T(4, 3), T(4, 3), dim=0, n=3, norm="forward"),
]

OPS += [
    _fft_rec("fft", lambda m: m.fft.fft, _np_fftn("fft"), _C2),
    _fft_rec(
        "fft_real",
        lambda m: m.fft.fft,
        _np_fftn("fft"),
        [S(T(6)), S(T(2, 5), n=4, norm="ortho")],
        complex_in=False,
    ),
    _fft_rec("ifft", lambda m: m.fft.ifft, _np_fftn("ifft"), _C2),
    _fft_rec(
        "rfft",
        lambda m: m.fft.rfft,
        _np_fftn("rfft"),
        [S(T(6)), S(T(2, 5), norm="ortho"), S(T(3, 4), n=5, dim=0, norm="forward")],
        complex_in=False,
    ),
    _fft_rec(
        "irfft",
        lambda m: m.fft.irfft,
        _np_fftn("irfft"),
        [
            S(T(4), T(4)),
            S(T(2, 4), T(2, 4), n=7, norm="ortho"),
            S(T(3, 2), T(3, 2), n=4, dim=0, norm="forward"),
        ],
        real_out=True,
    ),
    _fft_rec(
        "hfft",
        lambda m: m.fft.hfft,
        _np_hfft,
        [S(T(4), T(4)), S(T(2, 3), T(2, 3), n=5, norm="ortho")],
        real_out=True,
    ),
    _fft_rec(
        "ihfft",
        lambda m: m.fft.ihfft,
        _np_ihfft,
        [S(T(6)), S(T(2, 5), norm="forward")],
        complex_in=False,
    ),
    _fft_rec(
        "fft2",
        lambda m: m.fft.fft2,
        _np_fftn("fft2"),
        [S(T(3, 4), T(3, 4)), S(T(2, 3, 3), T(2, 3, 3), s=(4, 2), norm="ortho")],
    ),
    _fft_rec("ifft2", lambda m: m.fft.ifft2, _np_fftn("ifft2"), [S(T(3, 4), T(3, 4))]),
    _fft_rec(
        "fftn",
        lambda m: m.fft.fftn,
        _np_fftn("fftn"),
        [S(T(2, 3, 2), T(2, 3, 2)), S(T(3, 4), T(3, 4), s=(2, 5), dim=(1, 0))],
    ),
    _fft_rec(
        "ifftn", lambda m: m.fft.ifftn, _np_fftn("ifftn"), [S(T(2, 3, 2), T(2, 3, 2), norm="ortho")]
    ),
    _fft_rec(
        "rfft2",
        lambda m: m.fft.rfft2,
        _np_fftn("rfft2"),
        [S(T(3, 4)), S(T(2, 3, 5), norm="ortho")],
        complex_in=False,
    ),
    _fft_rec(
        "rfftn",
        lambda m: m.fft.rfftn,
        _np_fftn("rfftn"),
        [S(T(2, 3, 4)), S(T(3, 4), s=(4, 6))],
        complex_in=False,
    ),
    _fft_rec(
        "irfft2",
        lambda m: m.fft.irfft2,
        _np_fftn("irfft2"),
        [S(T(3, 3), T(3, 3)), S(T(3, 3), T(3, 3), s=(3, 5))],
        real_out=True,
    ),
    _fft_rec(
        "irfftn",
        lambda m: m.fft.irfftn,
        _np_fftn("irfftn"),
        [S(T(2, 2, 3), T(2, 2, 3), norm="ortho")],
        real_out=True,
    ),
    OpSpec(
        "fftshift",
        lambda m, x, **k: m.fft.fftshift(x, **k),
        lambda x, dim=None: np.fft.fftshift(x, axes=dim),
        [S(T(3, 4)), S(T(5, 2), dim=0)],
    ),
    OpSpec(
        "ifftshift",
        lambda m, x, **k: m.fft.ifftshift(x, **k),
        lambda x, dim=None: np.fft.ifftshift(x, axes=dim),
        [S(T(3, 5)), S(T(5), dim=-1)],
    ),
]


# ---- complex tensors -----------------------------------------------------------------------
def _np_polar(r, t):
    return _vr(r * np.exp(1j * t))


OPS += [
    OpSpec(
        "view_as_real",
        lambda m, a, b: m.view_as_real(m.complex(a, b)) * 1,
        lambda a, b: np.stack([a, b], -1),
        [S(T(3), T(3)), S(T(2, 3), T(2, 3))],
    ),
    OpSpec(
        "view_as_complex",
        lambda m, x: m.view_as_complex(x).abs(),
        lambda x: np.abs(x[..., 0] + 1j * x[..., 1]),
        [S(T(3, 2)), S(T(2, 2, 2))],
    ),
    OpSpec(
        "real_imag",
        lambda m, a, b: (lambda z: (z.real * 2, m.imag(z) * 3))(m.complex(a, b)),
        lambda a, b: (a * 2, b * 3),
        [S(T(2, 3), T(2, 3))],
    ),
    OpSpec(
        "angle",
        lambda m, a, b: m.angle(m.complex(a, b)),
        lambda a, b: np.angle(a + 1j * b),
        [S(T(2, 3), T(2, 3))],
    ),
    OpSpec("angle_real", lambda m, a: m.angle(a), lambda a: np.angle(a), [S(T(2, 3, kind="away"))]),
    OpSpec(
        "abs_complex",
        lambda m, a, b: m.complex(a, b).abs(),
        lambda a, b: np.abs(a + 1j * b),
        [S(T(2, 3), T(2, 3))],
    ),
    OpSpec(
        "conj",
        lambda m, a, b: m.view_as_real(m.complex(a, b).conj().resolve_conj()),
        lambda a, b: _vr(a - 1j * b),
        [S(T(2, 3), T(2, 3))],
    ),
    OpSpec(
        "polar",
        lambda m, r, t: m.view_as_real(m.polar(r, t)),
        _np_polar,
        [S(T(2, 3, kind="pos"), T(2, 3))],
    ),
    OpSpec(
        "complex_mul",
        lambda m, a, b, c, d: (m.complex(a, b) * m.complex(c, d)).abs(),
        lambda a, b, c, d: np.abs((a + 1j * b) * (c + 1j * d)),
        [S(T(2, 3), T(2, 3), T(2, 3), T(2, 3))],
    ),
    OpSpec(
        "complex_matmul",
        lambda m, a, b, c, d: m.view_as_real(m.complex(a, b) @ m.complex(c, d)),
        lambda a, b, c, d: _vr((a + 1j * b) @ (c + 1j * d)),
        [S(T(2, 3), T(2, 3), T(3, 2), T(3, 2))],
        rtol=1e-5,
    ),
]
