"""ember.library, second part: keyword-only arguments, tuple and optional returns, per-device
kernels, register_vmap, register_torch_dispatch, and the idioms of libraries that wrap kernels
as custom ops (a registration guard on the ops namespace, Scalar lists, an explicit schema,
an op filling two buffers, checkpointing). Programs of the same shape were run on torch 2.13
with the same results (see the h5 report); the schema strings are compared with torch's here.
"""

from __future__ import annotations

import typing

import numpy as np
import pytest

import ember
from ember import library


@library.custom_op("embx::np_neg", mutates_args=())
def np_neg(x: ember.Tensor) -> ember.Tensor:
    return ember.from_numpy(-x.numpy())


# ---- keyword-only arguments, tuple returns, per-device kernels, register_vmap ---------------
library.define("embx::axpy", "(Tensor x, Tensor y, *, float alpha=1.0) -> Tensor")


@library.impl("embx::axpy", "cpu")
def _(x, y, *, alpha=1.0):
    return ember.from_numpy(x.numpy() * alpha + y.numpy())


library.register_autograd(
    "embx::axpy",
    lambda ctx, g: (g * ctx.keyword_only_args["alpha"], g),
    setup_context=lambda ctx, inputs, output: None,
)


@library.custom_op("embx::cube", mutates_args=())
def cube(x: ember.Tensor) -> tuple[ember.Tensor, ember.Tensor]:
    raise AssertionError("the cpu kernel registered below takes precedence")


@cube.register_kernel("cpu")
def _(x):
    return ember.from_numpy(x.numpy() ** 3), ember.from_numpy(3 * x.numpy() ** 2)


_VMAP_CALLS = []


@cube.register_vmap
def _(info, in_dims, x):
    _VMAP_CALLS.append(info.batch_size)
    return cube(x), (in_dims[0], in_dims[0])


def test_keyword_only_arguments_and_autograd():
    x = ember.tensor([1.0, 2.0], requires_grad=True)
    y = ember.tensor([3.0, 4.0], requires_grad=True)
    out = ember.ops.embx.axpy(x, y, alpha=2.0)
    assert out.tolist() == [5.0, 8.0]
    out.sum().backward()
    assert x.grad.tolist() == [2.0, 2.0] and y.grad.tolist() == [1.0, 1.0]
    assert "float alpha=1.0" in str(ember.ops.embx.axpy.default._schema)


@library.custom_op("embx::np_sin2", mutates_args=())
def np_sin2(x: ember.Tensor) -> ember.Tensor:
    return ember.from_numpy(np.sin(x.numpy()))


np_sin2.register_autograd(
    lambda ctx, g: g * ctx.x.cos(),  # an attribute, not save_for_backward, as torch allows
    setup_context=lambda ctx, inputs, output: setattr(ctx, "x", inputs[0]),
)


def test_double_backward_through_the_registered_backward():
    x = ember.randn(4, dtype=ember.float64, requires_grad=True)
    (g,) = ember.autograd.grad(np_sin2(x).sum(), x, create_graph=True)
    g.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), -np.sin(x.detach().numpy()))
    assert ember.autograd.gradgradcheck(np_sin2, (x.detach().requires_grad_(),))


def test_tuple_return_device_kernel_and_vmap_rule():
    x = ember.randn(4, 3)
    c, d = cube(x)
    np.testing.assert_allclose(c.numpy(), x.numpy() ** 3, rtol=1e-6)
    _VMAP_CALLS.clear()
    vc, vd = ember.func.vmap(cube)(x)
    np.testing.assert_allclose(vd.numpy(), 3 * x.numpy() ** 2, rtol=1e-6)
    assert _VMAP_CALLS == [4]  # one call of the rule for the whole batch, not a loop
    nested = ember.func.vmap(ember.func.vmap(cube))(ember.randn(2, 3, 5))
    assert tuple(nested[0].shape) == (2, 3, 5) and _VMAP_CALLS[-1] == 6


class _Tagged(ember.Tensor):
    __slots__ = ()


def test_register_torch_dispatch_for_a_subclass():
    seen = []

    @np_neg.register_torch_dispatch(_Tagged)
    def _(cls, op, types, args, kwargs):
        seen.append(str(op))
        plain = args[0].detach().clone()
        plain.__class__ = ember.Tensor
        return op(plain)

    t = ember.ones(2)
    t.__class__ = _Tagged
    try:
        assert np_neg(t).tolist() == [-1.0, -1.0]
        assert seen == ["embx.np_neg.default"]
    finally:
        np_neg._op.torch_dispatch.clear()


# ---- idioms of kernel-wrapping libraries ---------------------------------------------------
# the typing spelling such libraries use (inferred as Scalar[])
_Scalars = typing.List[typing.Union[int, float, bool]]  # noqa: UP006, UP007


def _register_scale(tag: str):
    if hasattr(ember.ops.embx, f"scale{tag}"):  # the registration guard
        return getattr(ember.ops.embx, f"scale{tag}")

    @library.custom_op(f"embx::scale{tag}", mutates_args=())
    def scale(x: ember.Tensor, factors: _Scalars) -> ember.Tensor:
        out = x.clone()
        for f in factors:
            out = out * f
        return out

    return getattr(ember.ops.embx, f"scale{tag}")


def test_registration_guard_and_scalar_lists():
    a, b = _register_scale("A"), _register_scale("A")
    assert a is b
    assert a(ember.ones(2), [2, 1.5, True]).tolist() == [3.0, 3.0]
    assert "Scalar[] factors" in str(a.default._schema)


@library.custom_op(
    "embx::stateful",
    mutates_args=(),
    schema="(Tensor x, Tensor? state, bool keep) -> (Tensor, Tensor?)",
)
def stateful(x, state, keep):
    new = x.cumsum(0) + (state if state is not None else 0)
    return new, (new[-1].clone() if keep else None)


@library.custom_op("embx::fill_pairs", mutates_args=("counts", "pairs"))
def fill_pairs(
    pos: ember.Tensor,
    cutoff: float,
    counts: ember.Tensor,
    pairs: ember.Tensor,
    flags: ember.Tensor | None = None,
) -> None:
    d = (pos[:, None] - pos[None, :]).abs()
    near = (d < cutoff) & ~ember.eye(pos.shape[0], dtype=ember.bool)
    counts.copy_(near.sum(1))
    pairs.copy_(near.to(pairs.dtype))


def test_explicit_schema_optional_return_and_two_buffers():
    o, st = stateful(ember.ones(3), None, True)
    o2, st2 = stateful(ember.ones(3), st, False)
    assert (o.tolist(), st.tolist(), o2.tolist(), st2) == ([1, 2, 3], 3.0, [4, 5, 6], None)
    pos = ember.tensor([0.0, 0.5, 2.0, 2.2])
    counts, pairs = ember.zeros(4, dtype=ember.int64), ember.zeros(4, 4)
    fill_pairs(pos, 1.0, counts, pairs)
    assert counts.tolist() == [1, 1, 1, 1] and pairs.sum().item() == 4
    res = library.opcheck(fill_pairs, (pos, 1.0, counts, pairs))
    assert set(res.values()) == {"SUCCESS"}
    want = (
        "embx::fill_pairs(Tensor pos, float cutoff, Tensor(a2!) counts, Tensor(a3!) pairs, "
        "Tensor? flags=None) -> ()"
    )
    assert str(fill_pairs._schema) == want  # torch 2.13 infers the same string


def test_checkpoint_through_a_custom_op():
    from ember.utils.checkpoint import checkpoint

    x = ember.randn(2, 3, requires_grad=True)
    y = checkpoint(lambda a: np_neg(a) * 2, x, use_reentrant=False)
    with pytest.raises(RuntimeError, match="no autograd formula"):
        y.sum().backward()
    np_neg.register_autograd(lambda ctx, g: -g)
    try:
        x.grad = None
        checkpoint(lambda a: np_neg(a) * 2, x, use_reentrant=False).sum().backward()
        np.testing.assert_allclose(x.grad.numpy(), -2 * np.ones((2, 3)))
    finally:
        np_neg._op.backward = None
        np_neg._op._autograd_cls = None


def test_unsupported_registrations_say_so():
    lib = library.Library("embx_na", "DEF")
    try:
        lib.define("f(Tensor x) -> Tensor")
        with pytest.raises(NotImplementedError, match="Autograd dispatch keys"):
            lib.impl("f", lambda x: x, "Autograd")
    finally:
        lib._destroy()
    with pytest.raises(RuntimeError, match="cannot load compiled"):
        ember.ops.load_library("libmyops.so")
