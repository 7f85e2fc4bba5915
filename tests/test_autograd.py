"""The autograd engine: accumulation, retain/create graph, hooks, versions, custom Functions."""

import gc
import warnings
import weakref

import numpy as np
import pytest

import ember
from ember.autograd import Function


def leaf(*shape, dtype=ember.float64):
    return ember.randn(*shape, dtype=dtype, requires_grad=True)


def test_accumulates_into_leaves_across_calls():
    x = leaf(3)
    (x * 2).sum().backward()
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.full(3, 5.0))


def test_shared_gradient_arrays_are_not_aliased_between_leaves():
    a, b = leaf(3), leaf(3)
    (a + b).sum().backward()
    a.grad.mul_(10)
    np.testing.assert_allclose(b.grad.numpy(), np.ones(3))


def test_user_gradient_is_not_aliased_into_grad():
    x = leaf(3)
    g = ember.ones(3, dtype=ember.float64)
    (x + 0).backward(g)
    x.grad.mul_(5)
    np.testing.assert_allclose(g.numpy(), np.ones(3))


def test_second_backward_without_retain_graph_raises():
    x = leaf(3)
    y = (x.exp() * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    with pytest.raises(RuntimeError, match="Trying to backward through the graph a second time"):
        y.backward()


def test_graph_buffers_are_freed_after_backward():
    x = leaf(1000)
    y = x.exp()
    node = y.grad_fn
    y.sum().backward()
    assert node._saved is None


def test_saved_arrays_released_when_graph_dies():
    x = leaf(1000)
    y = x.exp()
    ref = weakref.ref(y.grad_fn)
    del y
    gc.collect()
    assert ref() is None


def test_non_scalar_backward_needs_gradient():
    x = leaf(3)
    with pytest.raises(RuntimeError, match="grad can be implicitly created only for scalar"):
        (x * 2).backward()


def test_backward_on_tensor_without_grad_raises():
    with pytest.raises(RuntimeError, match="does not require grad"):
        ember.ones(2).sum().backward()


def test_long_chain_backprops_without_recursion():
    x = ember.tensor(1.0, requires_grad=True)
    y = x
    for _ in range(10_000):
        y = y * 1.0001
    y.backward()
    assert x.grad.item() == pytest.approx(1.0001**10_000, rel=1e-3)


def test_create_graph_gives_second_derivatives():
    x = leaf(4)
    y = (x.sin() * x**2).sum()
    (g,) = ember.autograd.grad(y, x, create_graph=True)
    (gg,) = ember.autograd.grad(g.sum(), x)
    xv = x.detach().numpy()
    expected = -np.sin(xv) * xv**2 + 4 * xv * np.cos(xv) + 2 * np.sin(xv)
    np.testing.assert_allclose(gg.numpy(), expected, rtol=1e-10)


def test_grad_allow_unused_and_error():
    x, z = leaf(2), leaf(2)
    y = (x * 2).sum()
    with pytest.raises(RuntimeError, match="appears to not have been used"):
        ember.autograd.grad(y, [x, z], retain_graph=True)
    gx, gz = ember.autograd.grad(y, [x, z], allow_unused=True)
    assert gz is None and gx.shape == (2,)
    assert x.grad is None  # grad() never accumulates


def test_grad_wrt_intermediate():
    x = leaf(3)
    h = x * 3
    y = (h**2).sum()
    (gh,) = ember.autograd.grad(y, h)
    np.testing.assert_allclose(gh.numpy(), 2 * h.detach().numpy())


def test_hooks_on_leaf_and_intermediate():
    x = leaf(3)
    seen = []
    x.register_hook(lambda g: seen.append(g.clone()))
    h = x * 2
    h.register_hook(lambda g: g * 10)  # replaces the gradient flowing on
    h.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.full(3, 20.0))
    np.testing.assert_allclose(seen[0].numpy(), np.full(3, 20.0))


def test_hook_handle_remove():
    x = leaf(2)
    handle = x.register_hook(lambda g: g * 0)
    handle.remove()
    x.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.ones(2))


def test_post_accumulate_grad_hook():
    x = leaf(2)
    calls = []
    x.register_post_accumulate_grad_hook(lambda p: calls.append(p.grad.clone()))
    (x * 3).sum().backward()
    assert len(calls) == 1 and calls[0].tolist() == [3.0, 3.0]


def test_retain_grad():
    x = leaf(3)
    h = x * 2
    h.retain_grad()
    assert h.retains_grad
    (h * h).sum().backward()
    np.testing.assert_allclose(h.grad.numpy(), 2 * h.detach().numpy())


def test_grad_of_a_non_leaf_warns_and_assigned_grads_are_checked_as_in_torch():
    import torch

    for fw in (ember, torch):
        x = fw.ones(3, dtype=fw.float64, requires_grad=True)
        h = x * 2
        h.sum().backward()
        with pytest.warns(UserWarning, match="not a leaf Tensor is being accessed"):
            assert h.grad is None
        with pytest.raises(
            RuntimeError, match=r"assign a gradient of size '\[2\]' to a tensor of size '\[3\]'"
        ):
            x.grad = fw.ones(2, dtype=fw.float64)
        with pytest.raises(TypeError, match="expected to be a Tensor or None"):
            x.grad = 3.0
        x.grad = None  # a leaf, a retained non-leaf and a detached tensor read quietly
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert x.grad is None and h.detach().grad is None
            k = x * 3
            k.retain_grad()
            assert k.grad is None


def test_inplace_on_saved_tensor_raises_pytorch_error():
    x = leaf(2, 2)
    y = x.exp()
    y.add_(1)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def test_inplace_on_leaf_requiring_grad_raises():
    x = leaf(2)
    with pytest.raises(RuntimeError, match="a leaf Variable that requires grad"):
        x.add_(1)
    with ember.no_grad():
        x.add_(1)  # fine without grad mode


def test_inplace_on_intermediate_is_recorded():
    x = leaf(3)
    y = x * 2
    y.mul_(3)
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.full(3, 6.0))
    assert y._version == 1


def test_setitem_with_grad_tracks_both_sides():
    x = leaf(3)
    v = leaf(())
    out = ember.zeros(3, dtype=ember.float64)
    out[1] = v * 2
    out = out + x
    out.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.ones(3))
    assert v.grad.item() == pytest.approx(2.0)


def test_views_share_version_counter():
    x = ember.zeros(4)
    v = x[1:3]
    v.add_(1)
    assert x._version == v._version == 1
    assert x.tolist() == [0.0, 1.0, 1.0, 0.0]


def test_grad_modes_as_context_and_decorator():
    x = leaf(2)
    with ember.no_grad():
        assert not (x * 2).requires_grad
        with ember.enable_grad():
            assert (x * 2).requires_grad
    with ember.set_grad_enabled(False):
        assert not ember.is_grad_enabled()
    assert ember.is_grad_enabled()

    @ember.no_grad()
    def f(t):
        return t * 2

    assert not f(x).requires_grad
    with ember.inference_mode():
        assert not (x + 1).requires_grad
    ember.set_grad_enabled(False)
    assert not ember.is_grad_enabled()
    ember.set_grad_enabled(True)


def test_detach_and_requires_grad_():
    x = leaf(2)
    d = x.detach()
    assert not d.requires_grad and d.is_leaf
    d.add_(1)
    assert x._version == 1  # shares storage and version with x
    with pytest.raises(RuntimeError, match="only Tensors of floating point"):
        ember.tensor([1, 2]).requires_grad_()
    y = x * 2
    with pytest.raises(RuntimeError, match="you can only change requires_grad flags of leaf"):
        y.requires_grad_(False)


class _MulConst(Function):
    @staticmethod
    def forward(ctx, a, k):
        ctx.k = k
        return a * k

    @staticmethod
    def backward(ctx, grad):
        assert ctx.needs_input_grad == (True, False)
        return grad * ctx.k, None


class _SortWithIndex(Function):
    @staticmethod
    def forward(ctx, a):
        idx = ctx.xp.argsort(a)
        ctx.mark_non_differentiable(idx)
        ctx.save_for_backward(idx)
        return a[idx], idx

    @staticmethod
    def backward(ctx, grad, _):
        (idx,) = ctx.saved_tensors
        out = ctx.xp.zeros_like(grad)
        out[idx] = grad
        return out


def test_custom_function():
    x = leaf(3)
    _MulConst.apply(x, 4.0).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.full(3, 4.0))
    assert ember.autograd.gradcheck(lambda a: _MulConst.apply(a, 3.0), (leaf(4),))


def test_custom_function_non_differentiable_output():
    x = leaf(4)
    vals, idx = _SortWithIndex.apply(x)
    assert vals.requires_grad and not idx.requires_grad
    (vals * ember.arange(4, dtype=ember.float64)).sum().backward()
    order = np.argsort(x.detach().numpy())
    expected = np.zeros(4)
    expected[order] = np.arange(4)
    np.testing.assert_allclose(x.grad.numpy(), expected)


def test_wrong_number_of_gradients_is_reported():
    class Bad(Function):
        @staticmethod
        def forward(ctx, a, b):
            return a + b

        @staticmethod
        def backward(ctx, grad):
            return grad

    with pytest.raises(RuntimeError, match="incorrect number of gradients"):
        Bad.apply(leaf(2), leaf(2)).sum().backward()


def test_gradcheck_detects_wrong_gradient():
    class Wrong(Function):
        @staticmethod
        def forward(ctx, a):
            return a * a

        @staticmethod
        def backward(ctx, grad):
            return grad  # should be 2 a grad

    assert not ember.autograd.gradcheck(Wrong.apply, (leaf(3),), raise_exception=False)


def test_gradgradcheck():
    assert ember.autograd.gradgradcheck(lambda a: (a.tanh() * a).sum(), (leaf(3),))


def test_next_functions_and_names():
    x = leaf(2)
    y = (x * 2).exp()
    assert y.grad_fn.name() == "ExpBackward0"
    ((fn, _),) = y.grad_fn.next_functions
    assert fn.name() == "MulBackward0"
    assert fn.next_functions[0][0].name() == "AccumulateGrad"


def test_broadcast_gradients_are_summed_back():
    a = leaf(3, 1)
    b = leaf(1, 4)
    (a * b).sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), np.repeat(b.detach().numpy().sum(), 3)[:, None])
    np.testing.assert_allclose(b.grad.numpy(), np.repeat(a.detach().numpy().sum(), 4)[None, :])


def test_grad_dtype_follows_input_dtype():
    a = ember.ones(3, dtype=ember.float32, requires_grad=True)
    b = ember.ones(3, dtype=ember.float64, requires_grad=True)
    (a * b).sum().backward()
    assert a.grad.dtype == ember.float32 and b.grad.dtype == ember.float64


def test_functional_against_torch():
    torch = pytest.importorskip("torch")
    from ember.autograd import functional as F

    xv = np.array([0.3, -1.2, 2.0])
    x, tx = ember.tensor(xv), torch.tensor(xv)

    def f(a):
        return a.sin() * a**2

    def scalar(a):
        return (a.exp() * a).sum()

    np.testing.assert_allclose(
        F.jacobian(f, x).numpy(), torch.autograd.functional.jacobian(f, tx).numpy(), rtol=1e-10
    )
    np.testing.assert_allclose(
        F.hessian(scalar, x).numpy(),
        torch.autograd.functional.hessian(scalar, tx).numpy(),
        rtol=1e-10,
    )
    v = np.array([1.0, 0.5, -2.0])
    _, e_vjp = F.vjp(f, x, ember.tensor(v))
    _, t_vjp = torch.autograd.functional.vjp(f, tx, torch.tensor(v))
    np.testing.assert_allclose(e_vjp.numpy(), t_vjp.numpy(), rtol=1e-10)
    _, e_jvp = F.jvp(f, x, ember.tensor(v))
    _, t_jvp = torch.autograd.functional.jvp(f, tx, torch.tensor(v))
    np.testing.assert_allclose(e_jvp.numpy(), t_jvp.numpy(), rtol=1e-10)
    _, e_hvp = F.hvp(scalar, x, ember.tensor(v))
    _, t_hvp = torch.autograd.functional.hvp(scalar, tx, torch.tensor(v))
    np.testing.assert_allclose(e_hvp.numpy(), t_hvp.numpy(), rtol=1e-10)
