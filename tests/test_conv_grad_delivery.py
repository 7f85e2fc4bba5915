"""A leaf adopts a gradient that is the only view of a fresh array (the autograd engine's
``_sole_view``), and still copies every gradient whose memory something else can see.

Kernels usually return their gradient as a reshape of a fresh array (conv, group / layer /
batch norm); the engine used to copy every such view on delivery."""

from __future__ import annotations

import numpy as np
import pytest

import ember
from ember.autograd import Function, engine

torch = pytest.importorskip("torch")


class _Views(Function):
    """y = x1 + x2 (same shape); the backward hands out gradients built as ``mode`` says."""

    @staticmethod
    def forward(ctx, x1, x2, mode):
        ctx.mode = mode
        ctx.keep = None
        return x1 + x2

    @staticmethod
    def backward(ctx, grad):
        flat = np.ascontiguousarray(grad).reshape(-1) * 1.0  # fresh, owning
        if ctx.mode == "sole":  # one reshape view each, of two fresh arrays
            return flat.reshape(grad.shape), (flat * 2.0).reshape(grad.shape), None
        if ctx.mode == "shared":  # two views of one array
            return flat.reshape(grad.shape), flat.reshape(grad.shape), None
        if ctx.mode == "kept":  # a view of an array the node keeps
            ctx.keep = flat
            return flat.reshape(grad.shape), None, None
        # "partial": a view of part of a larger array
        big = np.concatenate([flat, flat])
        return big[: flat.size].reshape(grad.shape), None, None


def _leaves():
    return (ember.randn(3, 4, requires_grad=True), ember.randn(3, 4, requires_grad=True))


def test_sole_view_is_adopted_without_a_copy():
    a, b = _leaves()
    _Views.apply(a, b, "sole").sum().backward()
    assert a.grad._data.base is not None  # the view itself became the leaf's .grad
    np.testing.assert_array_equal(a.grad.numpy(), np.ones((3, 4), np.float32))
    np.testing.assert_array_equal(b.grad.numpy(), np.full((3, 4), 2.0, np.float32))


@pytest.mark.parametrize("mode", ["shared", "kept", "partial"])
def test_views_others_can_see_are_copied(mode):
    a, b = _leaves()
    node_out = _Views.apply(a, b, mode)
    node_out.sum().backward(retain_graph=True)
    assert a.grad._data.base is None  # a copy the leaf owns
    before = a.grad.numpy().copy()
    if mode == "shared":
        b.grad._data += 5.0  # in-place on one leaf's gradient stays local
    if mode == "kept":
        node_out.grad_fn.keep += 5.0
    np.testing.assert_array_equal(a.grad.numpy(), before)


def test_sole_view_rule():
    fresh = np.zeros((4, 6), np.float32).reshape(24)
    assert engine._sole_view(fresh)
    owner = np.zeros((4, 6), np.float32)
    assert not engine._sole_view(owner.reshape(24))  # ``owner`` still sees the memory
    assert not engine._sole_view(np.zeros((4, 6), np.float32)[:2])  # part of its base
    assert not engine._sole_view(np.zeros((4, 6), np.float32).T)  # not C-contiguous


def test_group_norm_grads_match_torch_and_accumulate():
    """The norm kernels' reshaped gradients, adopted, still match torch over two backwards."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 16, 5, 5)).astype(np.float32)
    w = rng.standard_normal(16).astype(np.float32)
    b = rng.standard_normal(16).astype(np.float32)
    grads = []
    for lib in (ember, torch):
        xt, wt, bt = (lib.tensor(a, requires_grad=True) for a in (x, w, b))
        for _ in range(2):
            (lib.nn.functional.group_norm(xt, 4, wt, bt) ** 2).sum().backward()
        grads.append([t.grad.detach().numpy() for t in (xt, wt, bt)])
    for ours, ref in zip(*grads):
        np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4)
