"""ember.linalg, ember.fft and complex tensors beyond the op table: result tuples, errors,
``_ex`` infos, pivots, drivers, complex gradients and stft/istft, against torch."""

from __future__ import annotations

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")

RNG = np.random.default_rng(7)


def _pair(a, requires_grad=False):
    return (
        ember.tensor(a, requires_grad=requires_grad),
        torch.tensor(a, requires_grad=requires_grad),
    )


def _np(x):
    if isinstance(x, np.ndarray):
        return x
    x = x.detach()
    if isinstance(x, torch.Tensor):
        x = x.resolve_conj().resolve_neg()
    return np.asarray(x.numpy())


def _close(e, t, tol=1e-9):
    np.testing.assert_allclose(_np(e), _np(t), rtol=tol, atol=tol)


def test_result_tuples_have_torch_names():
    a = RNG.standard_normal((3, 3))
    e, t = _pair(a)
    for name, args in [
        ("slogdet", ()),
        ("qr", ()),
        ("svd", ()),
        ("eigh", ()),
        ("eig", ()),
        ("lu", ()),
        ("lu_factor", ()),
        ("lu_factor_ex", ()),
        ("inv_ex", ()),
        ("cholesky_ex", ()),
        ("lstsq", (a[:, :2],)),
    ]:
        re_ = getattr(ember.linalg, name)(e, *[ember.tensor(x) for x in args])
        rt = getattr(torch.linalg, name)(t, *[torch.tensor(x) for x in args])
        assert type(re_).__name__ == type(rt).__name__, name
        assert all(getattr(rt, f) is rt[i] for i, f in enumerate(re_._fields)), name
        assert len(re_) == len(rt), name
    assert ember.svd(e)._fields == ("U", "S", "V")
    assert type(ember.slogdet(e)).__name__ == "slogdet"


def test_errors_follow_torch():
    sing = ember.tensor(np.array([[1.0, 2.0], [2.0, 4.0]]))
    with pytest.raises(ember.linalg.LinAlgError, match="singular"):
        ember.linalg.inv(sing)
    with pytest.raises(RuntimeError, match="not positive-definite"):
        ember.linalg.cholesky(ember.tensor(-np.eye(2)))
    with pytest.raises(RuntimeError, match="must be batches of square matrices"):
        ember.linalg.det(ember.zeros(2, 3))
    with pytest.raises(RuntimeError, match="Expected a floating point or complex tensor"):
        ember.linalg.inv(ember.ones(2, 2, dtype=ember.int64))
    with pytest.raises(RuntimeError, match="expects a real input tensor"):
        ember.fft.rfft(ember.complex(ember.ones(4), ember.ones(4)))
    assert issubclass(ember.linalg.LinAlgError, RuntimeError)


def test_ex_variants_report_info_like_torch():
    a = np.array([[[4.0, 1.0], [1.0, 3.0]], [[1.0, 2.0], [2.0, 1.0]]])
    e, t = _pair(a)
    ee, te = ember.linalg.cholesky_ex(e), torch.linalg.cholesky_ex(t)
    assert ee.info.tolist() == te.info.tolist()
    _close(ee.L[0], te.L[0])
    s = np.array([[[1.0, 2.0], [2.0, 4.0]], [[2.0, 0.0], [0.0, 1.0]]])
    ei = ember.linalg.inv_ex(ember.tensor(s))
    assert ei.info.tolist()[1] == 0 and ei.info.tolist()[0] != 0
    _close(ei.inverse[1], torch.linalg.inv(torch.tensor(s[1])))


def test_lu_factor_pivots_unpack_and_solve_match_torch():
    a = RNG.standard_normal((2, 4, 4))
    b = RNG.standard_normal((2, 4, 3))
    e, t = _pair(a)
    lu_e, piv_e = ember.linalg.lu_factor(e)
    lu_t, piv_t = torch.linalg.lu_factor(t)
    assert piv_e.dtype == ember.int32 and piv_e.tolist() == piv_t.tolist()
    _close(lu_e, lu_t)
    for got, want in zip(ember.lu_unpack(lu_e, piv_e), torch.lu_unpack(lu_t, piv_t)):
        _close(got, want)
    for left in (True, False):
        for adjoint in (True, False):
            rhs = b if left else np.swapaxes(b, -1, -2)
            got = ember.linalg.lu_solve(lu_e, piv_e, ember.tensor(rhs), left=left, adjoint=adjoint)
            want = torch.linalg.lu_solve(lu_t, piv_t, torch.tensor(rhs), left=left, adjoint=adjoint)
            _close(got, want)


def test_ldl_factor_and_solve_match_torch():
    a = RNG.standard_normal((4, 4))
    a = a + a.T
    b = RNG.standard_normal((4, 2))
    e, t = _pair(a)
    ld_e, piv_e = ember.linalg.ldl_factor(e)
    ld_t, piv_t = torch.linalg.ldl_factor(t)
    _close(ld_e, ld_t)
    assert piv_e.tolist() == piv_t.tolist()
    _close(ember.linalg.ldl_solve(ld_e, piv_e, ember.tensor(b)), np.linalg.solve(a, b))


@pytest.mark.parametrize("driver", [None, "gelsy", "gelsd", "gelss", "gels"])
def test_lstsq_fields_per_driver(driver):
    a, b = RNG.standard_normal((5, 3)), RNG.standard_normal((5, 2))
    re_ = ember.linalg.lstsq(ember.tensor(a), ember.tensor(b), driver=driver)
    rt = torch.linalg.lstsq(torch.tensor(a), torch.tensor(b), driver=driver)
    for got, want in zip(re_, rt):
        assert tuple(got.shape) == tuple(want.shape)
        assert got.dtype.name == str(want.dtype).replace("torch.", "")
        _close(got, want, 1e-7)


def test_geqrf_orgqr_ormqr_match_torch():
    a, c = RNG.standard_normal((4, 3)), RNG.standard_normal((4, 2))
    e, t = _pair(a)
    ge, gt = ember.geqrf(e), torch.geqrf(t)
    _close(ge.a, gt.a)
    _close(ge.tau, gt.tau)
    _close(ember.orgqr(ge.a, ge.tau), torch.orgqr(gt.a, gt.tau))
    for transpose in (False, True):
        _close(
            ember.ormqr(ge.a, ge.tau, ember.tensor(c), transpose=transpose),
            torch.ormqr(gt.a, gt.tau, torch.tensor(c), transpose=transpose),
        )


def test_torch_svd_and_misc_spellings():
    a = RNG.standard_normal((4, 3))
    e, t = _pair(a)
    ue, se, ve = ember.svd(e, compute_uv=False)
    ut, st, vt = torch.svd(t, compute_uv=False)
    assert tuple(ue.shape) == tuple(ut.shape) and tuple(ve.shape) == tuple(vt.shape)
    _close(se, st)
    _close(ember.linalg.matrix_rank(e), torch.linalg.matrix_rank(t))
    _close(ember.pinverse(e), torch.pinverse(t))
    sq = RNG.standard_normal((3, 3)) + 3 * np.eye(3)
    es, ts = _pair(sq)
    _close(ember.linalg.cond(es, "fro"), torch.linalg.cond(ts, "fro"))
    _close(
        ember.triangular_solve(ember.tensor(a[:3]), es).solution,
        torch.triangular_solve(torch.tensor(a[:3]), ts).solution,
    )
    _close(
        ember.linalg.vander(ember.tensor([1.0, 2.0, 3.0])),
        torch.linalg.vander(torch.tensor([1.0, 2.0, 3.0])),
    )
    _close(ember.linalg.diagonal(es, offset=1), torch.linalg.diagonal(ts, offset=1))
    ta, tb = RNG.standard_normal((2, 3, 6)), RNG.standard_normal((2, 3))
    _close(
        ember.linalg.tensorsolve(ember.tensor(ta), ember.tensor(tb)),
        torch.linalg.tensorsolve(torch.tensor(ta), torch.tensor(tb)),
    )


def test_complex_autograd_matches_torch():
    """A real loss of complex intermediates: the gradient is d/dRe + i d/dIm, as in torch."""
    z0 = RNG.standard_normal((3, 3)) + 1j * RNG.standard_normal((3, 3))
    w0 = RNG.standard_normal((3, 3)) + 1j * RNG.standard_normal((3, 3))

    def loss(m, z, w):
        y = (z * w).exp() / (w + 2) + z @ w + m.sin(z) * m.sqrt(w) + m.log(z).tanh()
        f = m.fft.fft2(y)
        return (y.abs() ** 2).sum() + m.angle(f).sum() + m.view_as_real(f.conj_physical()).sum()

    grads = []
    for m in (ember, torch):
        z, w = m.tensor(z0, requires_grad=True), m.tensor(w0, requires_grad=True)
        loss(m, z, w).backward()
        grads.append((z.grad, w.grad))
    for ge, gt in zip(*grads):
        _close(ge, gt, 1e-8)


@pytest.mark.parametrize("name", ["det", "inv", "solve", "svdvals", "eigh", "qr", "cholesky"])
def test_complex_linalg_gradients_match_torch(name):
    a0 = RNG.standard_normal((3, 3)) + 1j * RNG.standard_normal((3, 3))
    b0 = RNG.standard_normal((3, 2)) + 1j * RNG.standard_normal((3, 2))

    def loss(m, a, b):
        if name == "det":
            return m.linalg.det(a).abs()
        if name == "inv":
            return m.linalg.inv(a).abs().sum()
        if name == "solve":
            return m.view_as_real(m.linalg.solve(a, b)).sum()
        if name == "svdvals":
            return m.linalg.svdvals(a).sum()
        herm = a @ a.mH + 3 * m.eye(3)
        if name == "eigh":
            w, v = m.linalg.eigh(herm)
            return w.sum() + (v.abs() ** 2 * m.arange(3.0)).sum()
        if name == "cholesky":
            return m.linalg.cholesky(herm).abs().sum()
        q, r = m.linalg.qr(a)
        return r.abs().sum() + ((q.abs() ** 2) * m.arange(3.0)).sum()

    grads = []
    for m in (ember, torch):
        a, b = m.tensor(a0, requires_grad=True), m.tensor(b0, requires_grad=True)
        loss(m, a, b).backward()
        grads.append(a.grad)
    _close(grads[0], grads[1], 1e-7)


def test_view_as_real_aliases_and_real_imag_assign():
    z = ember.complex(ember.tensor([1.0, 2.0]), ember.tensor([3.0, 4.0]))
    r = ember.view_as_real(z)
    r[0, 1] = 9.0
    assert z.imag.tolist() == [9.0, 4.0]
    z.real = ember.tensor([5.0, 6.0])
    assert z.real.tolist() == [5.0, 6.0]
    m = ember.tensor(np.array([[1 + 1j, 2], [3, 4 - 2j]]))
    assert np.array_equal(m.mH.numpy(), m.numpy().conj().T)
    assert np.array_equal(m.H.numpy(), m.adjoint().numpy())
    assert ember.is_complex(m) and not ember.is_conj(m.conj())
    _close(
        ember.polar(ember.tensor([2.0]), ember.tensor([0.5])),
        torch.polar(
            torch.tensor([2.0], dtype=torch.float64), torch.tensor([0.5], dtype=torch.float64)
        ),
        1e-6,
    )


def test_fft_frequencies_and_shifts():
    for n, d in [(5, 1.0), (8, 0.1)]:
        _close(ember.fft.fftfreq(n, d), torch.fft.fftfreq(n, d), 1e-7)
        _close(ember.fft.rfftfreq(n, d), torch.fft.rfftfreq(n, d), 1e-7)
    assert ember.fft.fftfreq(4).dtype == ember.float32
    x = RNG.standard_normal((3, 4))
    _close(ember.fft.ifftshift(ember.fft.fftshift(ember.tensor(x))), x)


@pytest.mark.parametrize("center,onesided,win", [(True, None, 12), (False, False, 16)])
def test_stft_istft_match_torch(center, onesided, win):
    x0 = RNG.standard_normal((2, 40))
    w0 = 0.5 + np.hanning(win)
    out = []
    for m in (ember, torch):
        x = m.tensor(x0, requires_grad=True)
        w = m.tensor(w0)
        s = m.stft(
            x,
            16,
            4,
            win_length=win,
            window=w,
            center=center,
            onesided=onesided,
            return_complex=True,
            normalized=True,
        )
        y = m.istft(
            s,
            16,
            4,
            win_length=win,
            window=w,
            center=center,
            onesided=onesided,
            normalized=True,
            length=40 if center else None,
        )
        (s.abs().sum() + (y * m.arange(float(y.shape[-1]))).sum()).backward()
        out.append((s, y, x.grad))
    for e, t in zip(*out):
        _close(e, t, 1e-8)


def test_low_rank_solvers():
    a = RNG.standard_normal((6, 4)) @ RNG.standard_normal((4, 5))
    u, s, v = ember.svd_lowrank(ember.tensor(a), q=4, niter=2)
    np.testing.assert_allclose(((u * s) @ v.mT).numpy(), a, atol=1e-8)
    u, s, v = ember.pca_lowrank(ember.tensor(a), q=4)
    np.testing.assert_allclose(
        s.numpy(), np.linalg.svd(a - a.mean(0), compute_uv=False)[:4], rtol=1e-8
    )
    sym = a @ a.T
    e, x = ember.lobpcg(ember.tensor(sym), k=2)
    np.testing.assert_allclose(e.numpy(), np.linalg.eigvalsh(sym)[::-1][:2], rtol=1e-8)
    np.testing.assert_allclose((ember.tensor(sym) @ x).numpy(), (x * e).numpy(), atol=1e-7)
