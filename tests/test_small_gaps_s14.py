"""Small gaps found by session 14's helpers: ``Tensor.new_*(size=...)``, integer tensors as
sizes (factories, view, reshape), and ``ember.save`` of nested tensors under the default
``weights_only=True`` load."""

from __future__ import annotations

import io

import numpy as np
import pytest

import ember
from ember import nested
from ember._serialization_codec import FormatError
from ember._serialization_nested import decode_nested

torch = pytest.importorskip("torch")


# ---- Tensor.new_*(size=...) ----------------------------------------------------------------
@pytest.mark.parametrize("name", ["new_ones", "new_zeros", "new_empty"])
@pytest.mark.parametrize("size", [(), (2, 3), [4]])
def test_new_factories_size_keyword(name, size):
    ours = getattr(ember.zeros(2, dtype=ember.float64), name)(size=size)
    theirs = getattr(torch.zeros(2, dtype=torch.float64), name)(size=size)
    assert tuple(ours.shape) == tuple(theirs.shape)
    assert ours.dtype == ember.float64
    if name != "new_empty":
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def test_new_full_keywords_and_size_twice():
    ours = ember.zeros(1).new_full(size=(2,), fill_value=3.0)
    np.testing.assert_array_equal(ours.numpy(), torch.zeros(1).new_full(size=(2,), fill_value=3.0))
    assert tuple(ember.zeros(1).new_ones(2, 3).shape) == (2, 3)
    assert tuple(ember.zeros(1).new_ones((2, 3)).shape) == (2, 3)
    with pytest.raises(TypeError, match="size"):
        ember.zeros(1).new_ones(2, size=(2,))


def test_noop_mask_idiom():
    # torch's own helpers build masks with ``x.new_ones(size=())``
    m = ember.randn(3).new_ones(size=(), dtype=ember.bool)
    assert m.shape == () and m.dtype == ember.bool and bool(m)


# ---- integer tensors as sizes ---------------------------------------------------------------
def test_factories_take_integer_tensors():
    s = ember.tensor(14)
    full = ember.full((s, s), 2.0)
    assert tuple(full.shape) == (14, 14)
    assert tuple(ember.zeros(s, ember.tensor(3)).shape) == (14, 3)
    assert tuple(ember.ones((ember.tensor([2]), 3)).shape) == (2, 3)  # one element, like torch
    assert tuple(ember.empty(ember.tensor(4, dtype=ember.int32)).shape) == (4,)
    assert tuple(ember.zeros(2).new_zeros((s,)).shape) == (14,)


def test_square_subsequent_mask_with_tensor_size():
    ours = ember.nn.Transformer.generate_square_subsequent_mask(ember.tensor(5))
    theirs = torch.nn.Transformer.generate_square_subsequent_mask(torch.tensor(5))
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def test_view_reshape_take_integer_tensors():
    x = ember.arange(12)
    assert tuple(x.view(ember.tensor(3), 4).shape) == (3, 4)
    assert tuple(x.view(ember.tensor(12)).shape) == (12,)
    assert tuple(x.reshape((ember.tensor(2), -1)).shape) == (2, 6)
    assert tuple(ember.reshape(x, (ember.tensor(4), ember.tensor(3))).shape) == (4, 3)


@pytest.mark.parametrize(
    "bad", [ember.tensor(2.0), ember.tensor(True), ember.tensor([2, 3]), ember.tensor([[2]]) * 0.5]
)
def test_non_integer_or_multi_element_size_tensors_fail_clearly(bad):
    with pytest.raises(TypeError, match="integer tensor with one element"):
        ember.full((bad, 2), 1.0)
    with pytest.raises(TypeError, match="integer tensor with one element"):
        ember.zeros(4).view(bad, -1)


# ---- ember.save / load of nested tensors (weights_only=True) -------------------------------
def _round_trip(obj):
    buf = io.BytesIO()
    ember.save(obj, buf)
    buf.seek(0)
    return ember.load(buf)  # weights_only=True, the default


def _same(a, b):
    assert a.layout == b.layout and a.dim() == b.dim()
    for x, y in zip(a.unbind(), b.unbind()):
        np.testing.assert_array_equal(x.detach().numpy(), y.detach().numpy())


def test_nested_save_load_jagged_strided_and_views():
    r = np.random.default_rng(0)
    comps = [ember.tensor(r.standard_normal((n, 3)).astype(np.float32)) for n in (2, 4, 1)]
    jag = nested.nested_tensor(comps, layout=ember.jagged, requires_grad=True)
    wide = [ember.tensor(r.standard_normal((n, 5, 3)).astype(np.float32)) for n in (2, 3)]
    transposed = nested.nested_tensor(wide, layout=ember.jagged).transpose(1, 2)
    narrowed = nested.narrow(
        ember.arange(36.0).reshape(3, 6, 2),
        1,
        ember.tensor([0, 1, 2]),
        ember.tensor([3, 2, 4]),
        layout=ember.jagged,
    )
    strided = nested.nested_tensor([comps[0], ember.ones(4, 5)])
    saved = {"jagged": jag, "transposed": transposed, "narrowed": narrowed, "strided": strided}
    loaded = _round_trip({**saved, "dense": ember.ones(2)})
    for k, t in saved.items():
        _same(t, loaded[k])
    assert loaded["jagged"].requires_grad and loaded["jagged"].is_leaf
    assert loaded["transposed"]._ragged_idx == 2
    assert loaded["narrowed"]._lengths is not None
    loaded["jagged"].values().sum().backward()  # gradients reach the loaded values
    assert loaded["jagged"].values().grad is not None


def test_nested_save_of_a_non_leaf_saves_its_data():
    x = nested.nested_tensor([ember.ones(2, 3), ember.ones(1, 3)], layout=ember.jagged)
    x.requires_grad_()
    y = x * 2.0
    loaded = _round_trip(y)
    _same(y, loaded)


def test_malformed_nested_node_is_a_format_error():
    values, offsets = ember.zeros(5, 2), ember.tensor([0, 3, 9])  # past the 5 values

    def tensor_at(i):
        return (values, offsets)[i]

    node = {
        "$": "nested_jagged",
        "v": {"$": "tensor", "i": 0},
        "o": {"$": "tensor", "i": 1},
        "r": 1,
    }
    with pytest.raises(FormatError, match="offsets"):
        decode_nested(node, tensor_at, None)
    with pytest.raises(FormatError, match="ragged dim"):
        decode_nested({**node, "r": 3}, tensor_at, None)


@pytest.mark.parametrize("layout", ["split", "contiguous", "dropout"])
def test_sdpa_output_keeps_the_querys_layout_as_torch(layout):
    # nanoGPT-style scripts ``y.transpose(1, 2).view(B, T, C)`` without ``.contiguous()``: torch's
    # fused output follows a (B, T, H, D)-laid-out query; its math path (dropout) is contiguous
    import torch

    import ember.nn.functional as F

    B, T, H, D = 2, 16, 4, 8
    x = np.random.default_rng(0).standard_normal((B, T, 3 * H * D)).astype(np.float32)
    outs = []
    for lib, fn in ((ember, F), (torch, torch.nn.functional)):
        if layout == "contiguous":
            q = k = v = lib.tensor(x[:, :, : H * D].reshape(B, H, T, D).copy())
        else:
            q, k, v = (
                t.view(B, T, H, D).transpose(1, 2) for t in lib.tensor(x).split(H * D, dim=2)
            )
        p = 0.5 if layout == "dropout" else 0.0
        y = fn.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        outs.append((tuple(y.stride()), y))
    assert outs[0][0] == outs[1][0]
    if layout == "split":
        got = outs[0][1].transpose(1, 2).view(B, T, H * D)
        np.testing.assert_allclose(
            got.numpy(), outs[1][1].transpose(1, 2).reshape(B, T, H * D).numpy(), atol=1e-5
        )


def test_rand_and_randn_take_size_as_a_keyword():
    ember.manual_seed(0)
    a = ember.rand(size=(2, 3))
    ember.manual_seed(0)
    assert ember.equal(a, ember.rand(2, 3))
    assert ember.randn(size=[4], dtype=ember.float64).dtype == ember.float64
    with pytest.raises(TypeError, match="both positionally and as the keyword 'size'"):
        ember.randn(2, size=(3,))
