"""Custom ``autograd.Function``s with a ``jvp`` and no ``backward`` under forward-mode AD
(``autograd.forward_ad``, ``func.jvp``, ``func.jacfwd``), compared with PyTorch; reverse mode
through them raises PyTorch's error. Also ``vjp`` as the alias of ``backward``."""

from __future__ import annotations

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")


def _functions(lib):
    """The same jvp-only Functions written against ``lib`` (ember or torch)."""

    class Cube(lib.autograd.Function):
        generate_vmap_rule = True  # (torch's jacfwd vmaps over it)

        @staticmethod
        def forward(x):
            return x**3

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.save_for_forward(inputs[0])

        @staticmethod
        def jvp(ctx, t):
            (x,) = ctx.saved_tensors
            return 3 * x * x * t

    class MulAdd(lib.autograd.Function):
        """Two outputs, a non-tensor argument, and an attribute on ctx."""

        @staticmethod
        def forward(x, y, k):
            return x * y * k, x + y

        @staticmethod
        def setup_context(ctx, inputs, output):
            x, y, k = inputs
            ctx.k = k
            ctx.save_for_forward(x, y)

        @staticmethod
        def jvp(ctx, tx, ty, tk):
            assert tk is None  # not a tensor: None, as PyTorch passes
            x, y = ctx.saved_tensors
            return (tx * y + x * ty) * ctx.k, tx + ty

    class Sin(lib.autograd.Function):
        """The old form: ``forward(ctx, ...)`` calling ``save_for_forward``."""

        @staticmethod
        def forward(ctx, x):
            ctx.save_for_forward(x)
            return x.sin()

        @staticmethod
        def jvp(ctx, t):
            (x,) = ctx.saved_tensors
            return x.cos() * t

    return Cube, MulAdd, Sin


def _np(t):
    return t.detach().numpy()


X = [[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]]
Y = [[1.0, 2.0, -3.0], [0.5, -0.5, 4.0]]
V = [[1.0, 0.5, -2.0], [0.1, 3.0, 1.0]]


def _forward_ad(lib):
    fwAD = lib.autograd.forward_ad
    Cube, MulAdd, Sin = _functions(lib)
    x, y, v = lib.tensor(X), lib.tensor(Y), lib.tensor(V)
    with fwAD.dual_level():
        d = fwAD.make_dual(x, v)
        a, b = MulAdd.apply(d, y, 2.5)  # y carries no tangent: its tangent is zeros
        out = [Cube.apply(d), a, b, Sin.apply(d), Cube.apply(Sin.apply(d)) * y]
        return [(_np(p), _np(t)) for p, t in (fwAD.unpack_dual(o) for o in out)]


def test_forward_ad_jvp_only_function_matches_torch():
    for (ep, et), (tp, tt) in zip(_forward_ad(ember), _forward_ad(torch)):
        np.testing.assert_allclose(ep, tp, rtol=1e-6)
        np.testing.assert_allclose(et, tt, rtol=1e-5, atol=1e-6)


def _func_jvp(lib):
    Cube, MulAdd, _ = _functions(lib)
    x, y, v, w = lib.tensor(X), lib.tensor(Y), lib.tensor(V), lib.tensor(Y) * 0.5

    def f(a, b):
        p, q = MulAdd.apply(Cube.apply(a), b, -1.5)
        return p.sum(1), q

    out, tan = lib.func.jvp(f, (x, y), (v, w))
    jac = lib.func.jacfwd(lambda a: Cube.apply(a).sum(0))(x)
    return [*out, *tan, jac]


def test_func_jvp_and_jacfwd_of_jvp_only_function_match_torch():
    for e, t in zip(_func_jvp(ember), _func_jvp(torch)):
        np.testing.assert_allclose(_np(e), _np(t), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("lib", [ember, torch], ids=["ember", "torch"])
def test_backward_through_jvp_only_function_raises(lib):
    Cube, _, _ = _functions(lib)
    x = lib.tensor(X, requires_grad=True)
    y = Cube.apply(x)
    assert y.requires_grad
    with pytest.raises(NotImplementedError, match="must implement either the backward or vjp"):
        y.sum().backward()


@pytest.mark.parametrize("lib", [ember, torch], ids=["ember", "torch"])
def test_forward_ad_without_jvp_raises(lib):
    class Twice(lib.autograd.Function):
        @staticmethod
        def forward(x):
            return x * 2

        @staticmethod
        def setup_context(ctx, inputs, output):
            pass

    fwAD = lib.autograd.forward_ad
    with pytest.raises(NotImplementedError, match="must implement the jvp function"):
        with fwAD.dual_level():
            fwAD.unpack_dual(Twice.apply(fwAD.make_dual(lib.tensor(X), lib.tensor(V))))


def test_vjp_is_an_alias_of_backward():
    grads = []
    for lib in (ember, torch):

        class Square(lib.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                ctx.save_for_backward(x)
                return x * x

            @staticmethod
            def vjp(ctx, g):
                (x,) = ctx.saved_tensors
                return 2 * x * g

        x = lib.tensor(X, requires_grad=True)
        Square.apply(x).sum().backward()
        grads.append(_np(x.grad))
    np.testing.assert_allclose(grads[0], grads[1])
