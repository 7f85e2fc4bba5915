"""The idioms GPyTorch / linear_operator / BoTorch programs use, written small and compared
with PyTorch (these tests do not import gpytorch or botorch; docs/porting_examples.md).

Covers: an exact GP marginal log likelihood through ``cholesky`` + ``cholesky_solve`` fitted
with Adam in float64, batched kernels, a custom ``autograd.Function`` with an analytic
backward (linear_operator's InvQuadLogdet style), a tensor-like class dispatching
``__torch_function__`` (LinearOperator style), a scripted CG update that only writes through
``out=`` tensors, and writing into a same-shape ``expand``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")


def _both(fn):
    """Run ``fn(lib)`` with ember and with torch; NumPy results."""
    return fn(ember), fn(torch)


def _data(n: int = 24, seed: int = 0):
    rs = np.random.RandomState(seed)
    x = np.linspace(0.0, 1.0, n)
    y = np.sin(2 * math.pi * x) + 0.2 * rs.randn(n)
    return x, y


def _exact_gp_fit(lib, steps: int = 15):
    """An RBF GP's negative marginal log likelihood (GPyTorch's ExactMarginalLogLikelihood,
    divided by n) minimised with Adam over softplus-constrained hyper-parameters."""
    x_np, y_np = _data()
    x = lib.tensor(x_np, dtype=lib.float64)
    y = lib.tensor(y_np, dtype=lib.float64)
    raw = {
        k: lib.tensor(v, dtype=lib.float64, requires_grad=True)
        for k, v in (("ls", 0.0), ("os", 0.0), ("noise", -1.0), ("mean", 0.0))
    }
    opt = lib.optim.Adam(list(raw.values()), lr=0.1)
    sp = lib.nn.functional.softplus
    n = x.shape[0]
    for _ in range(steps):
        opt.zero_grad()
        ls, os_, noise = sp(raw["ls"]), sp(raw["os"]), sp(raw["noise"])
        d2 = (x.unsqueeze(-1) - x.unsqueeze(-2)).pow(2)
        k = os_ * lib.exp(-0.5 * d2 / ls**2) + noise * lib.eye(n, dtype=lib.float64)
        chol = lib.linalg.cholesky(k)
        r = (y - raw["mean"]).unsqueeze(-1)
        alpha = lib.cholesky_solve(r, chol)
        logdet = 2 * chol.diagonal(dim1=-2, dim2=-1).log().sum()
        mll = -0.5 * (r * alpha).sum() - 0.5 * logdet - 0.5 * n * math.log(2 * math.pi)
        loss = -mll / n
        loss.backward()
        opt.step()
    # posterior mean and variance at test points (GPyTorch's prediction strategy)
    with lib.no_grad():
        xt = lib.linspace(0, 1, 7, dtype=lib.float64)
        ls, os_ = sp(raw["ls"]), sp(raw["os"])
        kxt = os_ * lib.exp(-0.5 * (xt.unsqueeze(-1) - x.unsqueeze(-2)).pow(2) / ls**2)
        mean = raw["mean"] + (kxt @ alpha).squeeze(-1)
        v = lib.linalg.solve_triangular(chol, kxt.mT, upper=False)
        var = os_ - v.pow(2).sum(-2)
    params = [sp(p).item() for p in raw.values()]
    return np.array([loss.item(), *params, *mean.numpy(), *var.numpy()])


def test_exact_gp_marginal_likelihood_adam_matches_torch():
    e, t = _both(_exact_gp_fit)
    np.testing.assert_allclose(e, t, rtol=1e-9, atol=1e-11)


def _batch_kernel_solve(lib):
    """Batch-independent GPs: a (2, n, n) kernel batch, a (2, n) target batch, cholesky_ex,
    eigh and qr of the batch (linear_operator's root decompositions)."""
    rs = np.random.RandomState(1)
    x = lib.tensor(rs.rand(2, 9, 3), dtype=lib.float64)
    ls = lib.tensor([[[0.5]], [[0.8]]], dtype=lib.float64)
    k = lib.exp(-lib.cdist(x / ls, x / ls).pow(2) / 2) + 0.1 * lib.eye(9, dtype=lib.float64)
    chol, info = lib.linalg.cholesky_ex(k)
    y = lib.tensor(rs.randn(2, 9, 1), dtype=lib.float64)
    sol = lib.cholesky_solve(y, chol)
    evals, evecs = lib.linalg.eigh(k)
    q, r = lib.linalg.qr(k)
    lu, piv = lib.linalg.lu_factor(k)
    lsol = lib.linalg.lu_solve(lu, piv, y)
    return [
        info.numpy(),
        chol.numpy(),
        sol.numpy(),
        evals.numpy(),
        np.abs(evecs.numpy()),  # eigenvectors are defined up to sign
        np.abs(r.numpy()),
        lsol.numpy(),
    ]


def test_batched_decompositions_match_torch():
    e, t = _both(_batch_kernel_solve)
    for a, b in zip(e, t):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-11)


def _inv_quad_logdet_function(lib):
    """A custom Function computing ``(y^T K^-1 y, log|K|)`` with an analytic backward, the way
    linear_operator's InvQuadLogdet does (saves the solve, returns grads for K and y)."""

    class InvQuadLogdet(lib.autograd.Function):
        @staticmethod
        def forward(ctx, k, y):
            chol = lib.linalg.cholesky(k)
            sol = lib.cholesky_solve(y.unsqueeze(-1), chol).squeeze(-1)
            kinv = lib.cholesky_inverse(chol)
            ctx.save_for_backward(sol, kinv)
            logdet = 2 * chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)
            return (y * sol).sum(-1), logdet

        @staticmethod
        def backward(ctx, g_quad, g_logdet):
            sol, kinv = ctx.saved_tensors
            g_quad, g_logdet = g_quad[..., None, None], g_logdet[..., None, None]
            gk = -g_quad * sol.unsqueeze(-1) * sol.unsqueeze(-2) + g_logdet * kinv
            gy = 2 * g_quad[..., 0] * sol
            return gk, gy

    rs = np.random.RandomState(2)
    a = rs.randn(3, 6, 6)
    k = lib.tensor(a @ a.transpose(0, 2, 1) + 6 * np.eye(6), requires_grad=True)
    y = lib.tensor(rs.randn(3, 6), requires_grad=True)
    quad, logdet = InvQuadLogdet.apply(k, y)
    (quad.sum() * 0.5 + logdet.sum()).backward()
    return [quad.detach().numpy(), logdet.detach().numpy(), k.grad.numpy(), y.grad.numpy()]


def test_custom_function_inv_quad_logdet_matches_torch():
    e, t = _both(_inv_quad_logdet_function)
    for a, b in zip(e, t):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def _dense_operator(lib):
    """A LinearOperator-style class: not a Tensor, but torch functions called on it dispatch
    to its ``__torch_function__``, which densifies (or handles matmul itself)."""

    class DenseOp:
        def __init__(self, t):
            self.t = t

        def to_dense(self):
            return self.t

        def matmul(self, other):
            return self.t @ other

        @classmethod
        def __torch_function__(cls, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func is lib.matmul:
                return args[0].matmul(args[1])
            args = [a.to_dense() if isinstance(a, cls) else a for a in args]
            return func(*args, **kwargs)

    rs = np.random.RandomState(3)
    m = rs.randn(4, 4)
    op = DenseOp(lib.tensor(m @ m.T + 4 * np.eye(4)))
    v = lib.tensor(rs.randn(4, 2))
    return [
        lib.matmul(op, v).numpy(),
        lib.linalg.cholesky(op).numpy(),
        lib.diagonal(op, dim1=-2, dim2=-1).numpy(),
        lib.add(op, v[:, :1]).numpy(),
    ]


def test_torch_function_tensor_like_matches_torch():
    e, t = _both(_dense_operator)
    for a, b in zip(e, t):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


# linear_operator's CG: a @torch.jit.script function that returns nothing and updates its
# arguments through torch.mul(..., out=...), torch.addcmul(..., out=...) and in-place methods
# (scripting needs the source in a file: written to tmp_path for each library)
_CG_SRC = """
import {lib} as torch


@torch.jit.script
def _update(mvms, result, alpha, residual_inner_prod, eps, beta, residual, mul_storage, is_zero,
            p):
    torch.mul(p, mvms, out=mul_storage)
    torch.sum(mul_storage, dim=-2, keepdim=True, out=alpha)
    torch.lt(alpha, eps, out=is_zero)
    alpha.masked_fill_(is_zero, 1)
    torch.div(residual_inner_prod, alpha, out=alpha)
    alpha.masked_fill_(is_zero, 0)
    torch.addcmul(residual, -alpha, mvms, out=residual)
    torch.addcmul(result, alpha, p, out=result)
    beta.resize_as_(residual_inner_prod).copy_(residual_inner_prod)
    torch.mul(residual, residual, out=mul_storage)
    torch.sum(mul_storage, -2, keepdim=True, out=residual_inner_prod)
    torch.lt(beta, eps, out=is_zero)
    beta.masked_fill_(is_zero, 1)
    torch.div(residual_inner_prod, beta, out=beta)
    beta.masked_fill_(is_zero, 0)
    p.mul_(beta).add_(residual)


def cg_solve(a, b, iters=30):
    a, b = torch.tensor(a), torch.tensor(b)
    guess = torch.zeros_like(b)
    residual = b - a @ guess
    result = guess.expand_as(residual).contiguous()  # written in place by _update
    p = residual.clone()
    rip = residual.mul(residual).sum(-2, keepdim=True)
    mul_storage = torch.empty_like(residual)
    alpha = torch.empty(1, b.shape[-1], dtype=b.dtype)
    beta = torch.empty_like(alpha)
    is_zero = torch.empty(1, b.shape[-1], dtype=torch.bool)
    eps = torch.tensor(1e-30, dtype=b.dtype)
    for _ in range(iters):
        _update(a @ p, result, alpha, rip, eps, beta, residual, mul_storage, is_zero, p)
    return result.numpy()
"""


def _cg_module(tmp_path, lib: str):
    import importlib.util

    path = tmp_path / f"_gp_cg_{lib}.py"
    path.write_text(_CG_SRC.format(lib=lib))
    spec = importlib.util.spec_from_file_location(f"_gp_cg_{lib}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")
def test_scripted_function_writing_only_through_out_arguments(tmp_path):
    rs = np.random.RandomState(4)
    a = rs.randn(12, 12)
    a = a @ a.T + 12 * np.eye(12)
    b = rs.randn(12, 2)
    got = _cg_module(tmp_path, "ember").cg_solve(a, b)
    want = _cg_module(tmp_path, "torch").cg_solve(a, b)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(a @ got, b, atol=1e-8)


def test_same_shape_expand_is_a_writable_view():
    # torch: expand to the same shape is a plain view (linear_operator writes into
    # ``initial_guess.expand_as(residual).contiguous()``)
    for lib in (ember, torch):
        base = lib.zeros(3, 2)
        view = base.expand(3, 2).contiguous()
        view.add_(1)
        assert base.sum().item() == 6.0
        grown = lib.zeros(1, 2).expand(3, 2)
        assert not grown.is_contiguous()


def _sparse_interp(lib):
    """KISS-GP's interpolation: a custom Function multiplying a sparse summing matrix (built
    with sparse_coo_tensor, no gradient) by a dense tensor that requires grad (linear_operator's
    DSMM, which calls torch.dsmm in forward and the transposed product in backward)."""

    class DSMM(lib.autograd.Function):
        @staticmethod
        def forward(ctx, sparse, dense):
            ctx.sparse = sparse
            return lib.dsmm(sparse, dense)

        @staticmethod
        def backward(ctx, grad):
            return None, lib.dsmm(ctx.sparse.t(), grad)

    idx = lib.tensor([[0, 0, 1, 2, 2], [0, 3, 1, 2, 4]])
    vals = lib.tensor([0.5, 0.5, 1.0, 0.25, 0.75], dtype=lib.float64)
    summing = lib.sparse_coo_tensor(idx, vals, (3, 5), check_invariants=True)
    dense = lib.tensor(np.arange(10.0).reshape(5, 2), requires_grad=True)
    out = DSMM.apply(summing, dense)
    (out * lib.tensor([[1.0, -1.0]], dtype=lib.float64)).sum().backward()
    return [out.detach().numpy(), dense.grad.numpy()]


def test_custom_function_takes_sparse_argument_matches_torch():
    e, t = _both(_sparse_interp)
    for a, b in zip(e, t):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_tensor_split_keyword_is_split_size():
    # BoTorch's initializer: X.split(split_size=batch_limit, dim=0)
    for lib in (ember, torch):
        parts = lib.arange(5.0).split(split_size=2, dim=0)
        assert [p.tolist() for p in parts] == [[0.0, 1.0], [2.0, 3.0], [4.0]]


def test_torch_names_gpytorch_imports():
    from ember.autograd.function import FunctionCtx
    from ember.distributions.utils import _standard_normal

    class Square(ember.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            assert isinstance(ctx, FunctionCtx)
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return 2 * x * g

    x = ember.tensor([1.5, -2.0], requires_grad=True)
    Square.apply(x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [3.0, -4.0])
    s = _standard_normal((200, 3), dtype=ember.float64, device="cpu")
    assert s.shape == (200, 3) and s.dtype == ember.float64
    assert abs(s.mean().item()) < 0.3 and 0.7 < s.std().item() < 1.3
