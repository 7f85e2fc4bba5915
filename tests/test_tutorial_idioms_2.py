"""More tutorial idioms that stopped an ``import ember as torch`` port (pytorch/tutorials'
torch.func, custom Function, forward-AD, saved-tensors-hooks and BiLSTM-CRF programs), each a
small program of our own with the same idiom, checked against torch: ``vmap`` over a ``vjp_fn``
made outside the vmap (jacobians_hessians, neural_tangent_kernels), custom ``autograd.Function``
subclasses that use tensor methods (custom_function_double_backward, the autograd examples),
``AccumulateGrad`` nodes in ``next_functions`` (torchviz-style graph walks), ``make_dual``
keeping the tangent object (forward_ad_usage), ``grad_fn._saved_self`` / ``_saved_result`` and
pack hooks that see the saved input (autograd_saved_tensors_hooks), and an integer beside a 0-d
index tensor (``transitions[stop, tags[-1]]`` in the BiLSTM-CRF)."""

from __future__ import annotations

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")
LIBS = {"ember": ember, "torch": torch}


def _np(t):
    return t.detach().cpu().numpy()


def _data(lib, seed: int, *shape):
    rng = np.random.default_rng(seed)
    return lib.tensor(rng.standard_normal(shape).astype(np.float32))


# ---- vmap over a vjp_fn made outside the vmap ----------------------------------------------
def _jac_rows(lib):
    w, b, x = _data(lib, 0, 5, 4), _data(lib, 1, 5), _data(lib, 2, 4)

    def predict(x):
        return lib.nn.functional.linear(x, w, b).tanh()

    _, vjp_fn = lib.func.vjp(predict, x)
    (rows,) = lib.func.vmap(vjp_fn)(lib.eye(5))
    return rows


def test_vmap_of_a_vjp_fn_made_outside_gives_the_jacobian():
    rows = _jac_rows(ember)
    np.testing.assert_allclose(_np(rows), _np(_jac_rows(torch)), rtol=1e-5, atol=1e-6)
    want = ember.func.jacrev(
        lambda x: ember.nn.functional.linear(x, _data(ember, 0, 5, 4), _data(ember, 1, 5)).tanh()
    )(_data(ember, 2, 4))
    np.testing.assert_allclose(_np(rows), _np(want), rtol=1e-5, atol=1e-6)


def _ntk(lib):
    # neural_tangent_kernels' NTK-vector products: a vjp made inside two vmaps, its vjp_fn
    # vmapped once more over the output basis, then a jvp with the batched cotangents
    w1, w2 = _data(lib, 3, 6, 3), _data(lib, 4, 2, 6)

    def f(params, x):
        a, c = params
        return (a @ x).tanh() @ c.T

    def get_ntk(x1, x2):
        out, vjp_fn = lib.func.vjp(lambda p: f(p, x1), (w1, w2))

        def ntk_slice(vec):
            (vjps,) = vjp_fn(vec)
            return lib.func.jvp(lambda p: f(p, x2), ((w1, w2),), (vjps,))[1]

        return lib.func.vmap(ntk_slice)(lib.eye(out.numel()))

    x1, x2 = _data(lib, 5, 3, 3), _data(lib, 6, 2, 3)
    return lib.func.vmap(lib.func.vmap(get_ntk, (None, 0)), (0, None))(x1, x2)


def test_ntk_vector_products_nest_vjp_fn_inside_vmaps():
    got = _ntk(ember)
    assert tuple(got.shape) == (3, 2, 2, 2)
    np.testing.assert_allclose(_np(got), _np(_ntk(torch)), rtol=1e-4, atol=1e-5)


# ---- custom autograd.Function subclasses see tensors -----------------------------------------
def _relu_fn(lib):
    class MyReLU(lib.autograd.Function):
        @staticmethod
        def forward(ctx, input):
            ctx.save_for_backward(input)
            return input.clamp(min=0)

        @staticmethod
        def backward(ctx, grad_output):
            (input,) = ctx.saved_tensors
            grad_input = grad_output.clone()
            grad_input[input < 0] = 0
            return grad_input

    return MyReLU


def _sinh_fn(lib):
    # intermediate results returned as outputs, so double backward sees them
    class Sinh(lib.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            expx, expnegx = lib.exp(x), lib.exp(-x)
            ctx.save_for_backward(expx, expnegx)
            return (expx - expnegx) / 2, expx, expnegx

        @staticmethod
        def backward(ctx, grad_out, grad_expx, grad_expnegx):
            expx, expnegx = ctx.saved_tensors
            grad_input = grad_out * (expx + expnegx) / 2
            grad_input += grad_expx * expx
            grad_input -= grad_expnegx * expnegx
            return grad_input

    return Sinh


def _split_fn(lib):
    # PyTorch 2's split form: forward without ctx, setup_context records what backward needs
    class Scale(lib.autograd.Function):
        @staticmethod
        def forward(x, k):
            return x * k, (x > 0).to(lib.float32)

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.k = inputs[1]
            ctx.mark_non_differentiable(output[1])

        @staticmethod
        def backward(ctx, grad, _unused):
            return grad * ctx.k, None

    return Scale


@pytest.mark.parametrize("name", ["ember", "torch"])
def test_custom_functions_written_for_torch(name):
    lib = LIBS[name]
    x = _data(lib, 7, 3, 4).double().requires_grad_()
    y = _relu_fn(lib).apply(x)
    y.sum().backward()
    np.testing.assert_array_equal(_np(x.grad), (_np(x) > 0).astype(np.float64))

    sinh = _sinh_fn(lib)
    assert lib.autograd.gradcheck(lambda t: sinh.apply(t)[0], (x,))
    assert lib.autograd.gradgradcheck(lambda t: sinh.apply(t)[0], (x,))
    (g,) = lib.autograd.grad(sinh.apply(x)[0].sum(), x, create_graph=True)
    assert g.requires_grad
    np.testing.assert_allclose(_np(g), np.cosh(_np(x)), rtol=1e-12)

    out, mask = _split_fn(lib).apply(x, 3.0)
    assert out.requires_grad and not mask.requires_grad
    (gk,) = lib.autograd.grad(out.sum(), x)
    np.testing.assert_allclose(_np(gk), np.full((3, 4), 3.0))


def test_custom_function_results_match_torch():
    def run(lib):
        x = _data(lib, 8, 5).requires_grad_()
        out = _sinh_fn(lib).apply(x)[0]
        (g,) = lib.autograd.grad(out.sum(), x, create_graph=True)
        (gg,) = lib.autograd.grad(g.sum(), x)
        return out, g, gg

    for a, b in zip(run(ember), run(torch)):
        np.testing.assert_allclose(_np(a), _np(b), rtol=1e-5, atol=1e-6)


def test_custom_fwd_casts_a_user_functions_tensor_inputs():
    seen = {}

    class Square(ember.autograd.Function):
        @staticmethod
        @ember.amp.custom_fwd(device_type="cpu", cast_inputs=ember.float32)
        def forward(ctx, x):
            seen["x"] = (type(x), x.dtype)
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        @ember.amp.custom_bwd(device_type="cpu")
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return 2 * x * grad

    x = ember.randn(3).to(ember.bfloat16).requires_grad_()
    with ember.autocast("cpu"):
        y = Square.apply(x)
    assert seen["x"] == (ember.Tensor, ember.float32) and y.dtype == ember.float32


# ---- graph walks: AccumulateGrad -------------------------------------------------------------
def _walk(out):
    seen, stack = set(), [out.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        stack.extend(f for f, _ in fn.next_functions)
    return sorted(fn.name() for fn in seen)


@pytest.mark.parametrize("name", ["ember", "torch"])
def test_accumulate_grad_nodes_end_a_graph_walk(name):
    lib = LIBS[name]
    x = lib.ones(2, requires_grad=True)
    a = (x * 2).grad_fn.next_functions[0][0]
    b = (x * 3).grad_fn.next_functions[0][0]
    assert a is b and a.variable is x and a.next_functions == () and a.metadata == {}
    names = _walk((x * 2 + x).sum())  # torch names it torch::autograd::AccumulateGrad
    assert sum(n.endswith("AccumulateGrad") for n in names) == 1 and len(names) == 4


# ---- forward AD: make_dual keeps the tangent ---------------------------------------------------
@pytest.mark.parametrize("name", ["ember", "torch"])
def test_make_dual_keeps_the_tangent_object(name):
    lib = LIBS[name]
    fwAD = lib.autograd.forward_ad
    primal, tangent = _data(lib, 9, 4, 4), _data(lib, 10, 4, 4)
    with fwAD.dual_level():
        dual = fwAD.make_dual(primal, tangent)
        assert fwAD.unpack_dual(dual).tangent is tangent
        alt = fwAD.make_dual(primal, tangent.T)
        t_alt = fwAD.unpack_dual(alt).tangent
        assert t_alt is not tangent and lib.equal(t_alt, tangent.T)
        jvp = fwAD.unpack_dual(dual**2 + primal).tangent
        np.testing.assert_allclose(_np(jvp), 2 * _np(primal) * _np(tangent), rtol=1e-6)


# ---- saved tensors: _saved_* attributes and pack hooks -----------------------------------------
@pytest.mark.parametrize("name", ["ember", "torch"])
def test_saved_attributes_and_pack_hooks(name):
    lib = LIBS[name]
    a = lib.randn(5, requires_grad=True)
    b = lib.ones(5, requires_grad=True)
    y = a * b
    assert y.grad_fn._saved_self is a and y.grad_fn._saved_other is b
    e = lib.exp(a)
    assert e.grad_fn._saved_result.equal(e) and e.grad_fn._saved_result is not e
    s = (a * 2.0).grad_fn  # a scalar other: self is not needed
    assert s._saved_self is None and s._saved_other.item() == 2.0
    assert s._saved_other.dtype == lib.float64

    packed, grad_on = [], []

    def pack(t):
        packed.append(t)
        grad_on.append(lib.is_grad_enabled())
        return t.numpy().copy()  # pack hooks run without grad mode: numpy() is allowed

    calls = []

    def unpack(arr):
        calls.append(1)
        return lib.tensor(arr)

    x = lib.ones(5, requires_grad=True)
    with lib.autograd.graph.saved_tensors_hooks(pack, unpack):
        z = x.pow(2)
    assert any(p is x for p in packed) and not any(grad_on)
    first, again = z.grad_fn._saved_self, z.grad_fn._saved_self
    assert len(calls) == 2 and first.equal(again)  # every access unpacks
    z.sum().backward()
    np.testing.assert_allclose(_np(x.grad), np.full(5, 2.0))
    with lib.no_grad():
        assert x.numpy().shape == (5,)


# ---- indexing: an int beside a 0-d index tensor ---------------------------------------------
def test_int_beside_a_0d_index_tensor_matches_torch():
    def run(lib):
        t = lib.arange(25.0).view(5, 5).requires_grad_()
        tags = lib.cat([lib.LongTensor([3]), lib.LongTensor([1, 2])])
        score = t[4, tags[-1]] + t[tags[0], 1] + t[1:, tags[1]].sum() + t[tags[1], tags[0]]
        score.backward()
        return score, t.grad

    for a, b in zip(run(ember), run(torch)):
        np.testing.assert_array_equal(_np(a), _np(b))
