"""ember.func's transforms against torch.func on functions written once for both frameworks
(``m`` is ``ember`` or ``torch``, ``F`` is ``ember.func`` or ``torch.func``)."""

from __future__ import annotations

import numpy as np
import pytest

import ember
import ember.func as ef

torch = pytest.importorskip("torch")
tf = pytest.importorskip("torch.func")

RNG = np.random.default_rng(0)
X, Y = RNG.standard_normal(3), RNG.standard_normal(3)
M = RNG.standard_normal((2, 3))


def assert_tree_close(got, want, path="out"):
    r"""Same pytree structure and values (float64 inputs: tight tolerances)."""
    if isinstance(want, torch.Tensor):
        assert isinstance(got, ember.Tensor), f"{path}: {type(got)}"
        assert tuple(got.shape) == tuple(want.shape), f"{path}: {got.shape} vs {want.shape}"
        np.testing.assert_allclose(
            got.detach().numpy(), want.detach().numpy(), rtol=1e-10, atol=1e-12, err_msg=path
        )
    elif isinstance(want, dict):
        assert isinstance(got, dict) and list(got) == list(want), path
        for k in want:
            assert_tree_close(got[k], want[k], f"{path}[{k!r}]")
    else:
        assert type(got) is type(want) and len(got) == len(want), (
            f"{path}: {type(got)} vs {type(want)}"
        )
        for i, (a, b) in enumerate(zip(got, want)):
            assert_tree_close(a, b, f"{path}[{i}]")


def f_scalar(m, x):
    return (m.sin(x) * x + x.exp() * 0.5).sum()


def f_two(m, x, y):
    return (x * y.tanh() + m.cos(x * y)).sum()


def f_vec(m, x, y):
    return {"a": x * y.tanh(), "b": (m.stack([x.sum(), (x * y).sum()]),)}


def f_mat(m, w, x):
    return m.tanh(w @ x)


# name -> (transform applied with (m, F), input arrays); each returns a pytree of tensors
CASES = {
    "grad": (lambda m, F: F.grad(lambda x: f_scalar(m, x)), [X]),
    "grad_argnums_tuple": (
        lambda m, F: F.grad(lambda x, y: f_two(m, x, y), argnums=(0, 1)),
        [X, Y],
    ),
    "grad_argnum_neg": (lambda m, F: F.grad(lambda x, y: f_two(m, x, y), argnums=-1), [X, Y]),
    "grad_dict_input": (
        lambda m, F: F.grad(lambda d: f_two(m, d["x"], d["y"][0])),
        [{"x": X, "y": [Y]}],
    ),
    "grad_and_value": (lambda m, F: F.grad_and_value(lambda x, y: f_two(m, x, y), 1), [X, Y]),
    "grad_has_aux": (
        lambda m, F: F.grad(lambda x: (f_scalar(m, x), {"s": x.sin()}), has_aux=True),
        [X],
    ),
    "grad_of_grad": (lambda m, F: F.grad(lambda x: F.grad(lambda x: f_scalar(m, x))(x).sum()), [X]),
    "grad_unused_input": (lambda m, F: F.grad(lambda x, y: (x * 2).sum(), argnums=(0, 1)), [X, Y]),
    "jacrev": (lambda m, F: F.jacrev(lambda x, y: f_vec(m, x, y), argnums=(0, 1)), [X, Y]),
    "jacrev_matrix": (lambda m, F: F.jacrev(lambda w, x: f_mat(m, w, x)), [M, X]),
    "jacrev_scalar_out": (lambda m, F: F.jacrev(lambda x: f_scalar(m, x)), [X]),
    "jacfwd": (lambda m, F: F.jacfwd(lambda x, y: f_vec(m, x, y), argnums=(0, 1)), [X, Y]),
    "jacfwd_matrix": (lambda m, F: F.jacfwd(lambda w, x: f_mat(m, w, x)), [M, X]),
    "jacrev_has_aux": (lambda m, F: F.jacrev(lambda x: (x.sin(), x.cos()), has_aux=True), [X]),
    "jacrev_of_jacfwd": (lambda m, F: F.jacrev(F.jacfwd(lambda x: m.sin(x) * x.sum())), [X]),
    "jacfwd_of_jacrev": (lambda m, F: F.jacfwd(F.jacrev(lambda x: m.sin(x) * x.sum())), [X]),
    "hessian": (lambda m, F: F.hessian(lambda x: f_scalar(m, x)), [X]),
    "hessian_argnums": (
        lambda m, F: F.hessian(lambda x, y: f_two(m, x, y), argnums=(0, 1)),
        [X, Y],
    ),
    "hessian_matrix": (lambda m, F: F.hessian(lambda w: f_mat(m, w, X_T(m)).sum()), [M]),
}


def X_T(m):  # a constant captured by the function (not differentiated)
    return m.tensor(X)


def _inputs(m, tree):
    if isinstance(tree, dict):
        return {k: _inputs(m, v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_inputs(m, v) for v in tree]
    return m.tensor(tree)


@pytest.mark.parametrize("name", list(CASES))
def test_transform_matches_torch(name):
    make, arrays = CASES[name]
    got = make(ember, ef)(*_inputs(ember, arrays))
    want = make(torch, tf)(*_inputs(torch, arrays))
    assert_tree_close(got, want)


def _vjp(m, F, x, y):
    out, fn = F.vjp(lambda x, y: (x * y.sin(), {"a": (x * x).sum()}), x, y)
    return out, fn((y, {"a": m.tensor(2.0, dtype=m.float64)})), fn((x, {"a": x.sum()}))


def _jvp(m, F, x, y):
    return F.jvp(lambda x, y: (x * y.sin(), [m.exp(x)]), (x, y), (y, x))


def _jvp_aux(m, F, x, y):
    return F.jvp(lambda x: (x.sin(), {"c": x.cos()}), (x,), (y,), has_aux=True)


def _linearize(m, F, x, y):
    out, fn = F.linearize(lambda x, y: (x * y.sin(), x.exp()), x, y)
    return out, fn(y, x), fn(x, x)


def _hvp(m, F, x, v):  # the tutorial's Hessian-vector product: forward-over-reverse
    return F.jvp(F.grad(lambda x: f_scalar(m, x)), (x,), (v,))[1]


def _vhp(m, F, x, v):  # reverse-over-reverse
    return F.vjp(F.grad(lambda x: f_scalar(m, x)), x)[1](v)


@pytest.mark.parametrize(
    "fn", [_vjp, _jvp, _jvp_aux, _linearize, _hvp, _vhp], ids=lambda f: f.__name__
)
def test_products_match_torch(fn):
    got = fn(ember, ef, ember.tensor(X), ember.tensor(Y))
    want = fn(torch, tf, torch.tensor(X), torch.tensor(Y))
    assert_tree_close(got, want)


@pytest.mark.parametrize("name", ["grad", "vjp", "jvp", "jacrev", "jacfwd", "hessian"])
def test_pure_and_graph_rules_match_torch(name):
    r"""No ``.grad`` left anywhere; results carry a graph exactly when torch's do: under the
    caller's grad mode, when they depend on a closed-over tensor that requires grad."""
    calls = {
        "grad": lambda F, f, x: F.grad(lambda x: f(x).sum())(x),
        "vjp": lambda F, f, x: F.vjp(f, x)[1](x)[0],
        "jvp": lambda F, f, x: F.jvp(f, (x,), (x,))[1],
        "jacrev": lambda F, f, x: F.jacrev(f)(x),
        "jacfwd": lambda F, f, x: F.jacfwd(f)(x),
        "hessian": lambda F, f, x: F.hessian(lambda x: f(x).sum())(x),
    }
    for m, F in ((ember, ef), (torch, tf)):
        w = m.tensor(Y, requires_grad=True)
        x = m.tensor(X, requires_grad=True)
        seen = []
        for fn in (lambda x, w=w: x * x * x * w, lambda x, w=w: x * x * x * w.detach()):
            out = calls[name](F, fn, x)
            seen.append(out.requires_grad)
            with m.no_grad():
                seen.append(calls[name](F, fn, x).requires_grad)
        if m is ember:
            got = seen
            assert x.grad is None and w.grad is None
        else:
            assert seen == got, f"ember {got} vs torch {seen}"


def test_results_differentiable_by_outer_autograd():
    r"""A transform inside a loss: autograd differentiates through it (as torch's do)."""
    res = []
    for m, F in ((ember, ef), (torch, tf)):
        w = m.tensor(Y, requires_grad=True)
        g = F.grad(lambda x, w=w: (x.sin() * w * x).sum())(m.tensor(X))
        (g**2).sum().backward()
        res.append(w.grad)
    assert_tree_close(res[0], res[1])


def test_grad_under_no_grad_inside_and_outside():
    for m, F in ((ember, ef), (torch, tf)):
        x = m.tensor(X)

        def f(x, m=m):
            with m.no_grad():
                c = x * 3  # a constant for the gradient (respects the inner no_grad)
            return (c * x).sum()

        with m.no_grad():
            g = F.grad(f)(x)  # the caller's no_grad does not stop the transform
        np.testing.assert_allclose(g.numpy(), 3 * X)


def test_vjp_fn_reusable_and_pytree_checked():
    out, fn = ef.vjp(lambda x: {"a": x.sin()}, ember.tensor(X))
    a = fn({"a": ember.ones(3, dtype=ember.float64)})[0]
    b = fn({"a": ember.ones(3, dtype=ember.float64)})[0]
    np.testing.assert_allclose(a.numpy(), np.cos(X))
    np.testing.assert_allclose(b.numpy(), np.cos(X))
    with pytest.raises(RuntimeError, match="Expected pytree structure of cotangents"):
        fn(ember.ones(3))


def test_functionalize_is_the_function():
    x = ember.tensor(X)

    def f(x):
        x.add_(1)  # the input mutation stays observable, as under torch.func.functionalize
        return x * 2

    out = ef.functionalize(f)(x)
    np.testing.assert_allclose(x.numpy(), X + 1)
    np.testing.assert_allclose(out.numpy(), 2 * (X + 1))
    assert ef.functionalize(f, remove="mutations_and_views")(ember.tensor(X)).shape == (3,)


def _err(m, F, call):
    with pytest.raises(Exception) as info:
        call(m, F)
    return type(info.value), str(info.value)


def _f_sum(x):
    return x.sum()


ERRORS = {
    "non_scalar": lambda m, F: F.grad(lambda x: x * 2)(m.ones(3)),
    "non_tensor_out": lambda m, F: F.grad(lambda x: 3)(m.ones(3)),
    "aux_not_tuple": lambda m, F: F.grad(_f_sum, has_aux=True)(m.ones(3)),
    "argnum_range": lambda m, F: F.grad(_f_sum, argnums=1)(m.ones(3)),
    "argnum_neg_range": lambda m, F: F.grad(_f_sum, argnums=-2)(m.ones(3)),
    "argnum_type": lambda m, F: F.grad(_f_sum, argnums=1.0)(m.ones(3)),
    "argnum_empty": lambda m, F: F.grad(_f_sum, argnums=())(m.ones(3)),
    "argnum_dup": lambda m, F: F.grad(lambda x, y: x.sum(), argnums=(0, 0))(m.ones(3), m.ones(3)),
    "int_input": lambda m, F: F.grad(_f_sum)(m.arange(3)),
    "float_input": lambda m, F: F.grad(_f_sum)(3.0),
    "vjp_shape": lambda m, F: F.vjp(lambda x: x * 2, m.ones(3))[1](m.ones(2)),
    "vjp_out_type": lambda m, F: F.vjp(lambda x: 3, m.ones(3)),
    "jvp_not_tuple": lambda m, F: F.jvp(lambda x: x, m.ones(3), m.ones(3)),
    "jvp_structure": lambda m, F: F.jvp(lambda x: x, (m.ones(3),), (m.ones(3), m.ones(3))),
    "jvp_shape": lambda m, F: F.jvp(lambda x: x, (m.ones(3),), (m.ones(2),)),
    "jvp_empty": lambda m, F: F.jvp(lambda x: x, (), ()),
    "jacrev_chunk": lambda m, F: F.jacrev(lambda x: x, chunk_size=0),
    "jacfwd_randomness": lambda m, F: F.jacfwd(lambda x: x, randomness="bad")(m.ones(3)),
    "linearize_shape": lambda m, F: F.linearize(lambda x: x * 2, m.ones(3))[1](m.ones(2)),
    "functionalize_remove": lambda m, F: F.functionalize(lambda x: x, remove="bad"),
}


@pytest.mark.parametrize("name", list(ERRORS))
def test_errors_match_torch(name):
    et, emsg = _err(ember, ef, ERRORS[name])
    tt, tmsg = _err(torch, tf, ERRORS[name])
    assert et.__name__ == tt.__name__, (et, tt, emsg)
    # same words (torch's TreeSpec repr wraps lines; ember.Size prints as torch.Size)
    emsg, tmsg = " ".join(emsg.replace("ember.", "torch.").split()), " ".join(tmsg.split())
    assert emsg == tmsg, f"\nember: {emsg}\ntorch: {tmsg}"


def test_jvp_agrees_with_forward_ad_and_attribute_access():
    from ember.autograd import forward_ad as fwAD

    x, v = ember.tensor(X), ember.tensor(Y)
    _, jv = ember.func.jvp(lambda x: f_mat(ember, ember.tensor(M), x), (x,), (v,))
    with fwAD.dual_level():
        out = f_mat(ember, ember.tensor(M), fwAD.make_dual(x, v))
        tangent = fwAD.unpack_dual(out).tangent
    np.testing.assert_allclose(jv.numpy(), tangent.numpy(), rtol=1e-12)
    # kwargs go to the function untouched; only positional arguments are differentiated
    g = ember.func.grad(lambda x, *, scale: (x * scale).sum())(x, scale=3.0)
    np.testing.assert_allclose(g.numpy(), np.full(3, 3.0))
