"""ember.nested against torch.nested: construction, shapes, the ops of a variable-length
transformer block (forward and gradients), the strided layout of the nested tensor tutorial,
and the errors for what is not supported."""

from __future__ import annotations

import numpy as np
import pytest

import ember
import ember.nn.functional as F

torch = pytest.importorskip("torch")

LENS = (3, 1, 4)
D = 8


def _arrays(lens=LENS, d=D, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((n, d)).astype(np.float32) for n in lens]


def _pair(arrays, layout="jagged", requires_grad=True):
    e = ember.nested.nested_tensor(
        [ember.tensor(a) for a in arrays],
        layout=ember.jagged if layout == "jagged" else ember.strided,
        requires_grad=requires_grad,
    )
    t = torch.nested.nested_tensor(
        [torch.tensor(a) for a in arrays],
        layout=torch.jagged if layout == "jagged" else torch.strided,
        requires_grad=requires_grad,
    )
    return e, t


def _close(e, t, atol=1e-5):
    if isinstance(e, ember.nested.NestedTensor):
        assert t.is_nested
        ec, tc = e.unbind(), t.unbind()
        assert len(ec) == len(tc)
        for a, b in zip(ec, tc):
            np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), atol=atol)
    else:
        np.testing.assert_allclose(e.detach().numpy(), t.detach().numpy(), atol=atol)


def _grads_close(e, t, atol=1e-5):
    _close(e.grad, t.grad, atol)


# ---- construction and queries -------------------------------------------------------------
def test_jagged_construction_and_queries():
    e, t = _pair(_arrays())
    assert e.is_nested and not ember.randn(2).is_nested
    assert e.layout is ember.jagged and ember.jagged is not ember.strided
    assert e.dim() == 3 and e.shape[0] == 3 and e.shape[2] == D
    j = e.shape[1]
    assert repr(j).startswith("j") and e.size(1) is j and j != 4
    with pytest.raises(RuntimeError, match="no single size"):
        int(j)
    assert e.values().shape == tuple(t.values().shape)
    assert e.offsets().tolist() == t.offsets().tolist() == [0, 3, 4, 8]
    assert e.lengths() is None and e.is_contiguous()
    assert (
        repr(e) == f"NestedTensor(size=(3, {j}, 8), offsets=tensor([0, 3, 4, 8]), contiguous=True)"
    )
    assert e.is_leaf and e.requires_grad
    # ops that keep the offsets keep the ragged size
    assert (e * 2).shape == e.shape
    other = ember.nested.nested_tensor([ember.tensor(a) for a in _arrays()], layout=ember.jagged)
    assert other.shape != e.shape
    _close(e.to(ember.float64), t.to(torch.float64))
    assert e.to(ember.float64).dtype == ember.float64
    assert [c.shape for c in e.unbind()] == [(n, D) for n in LENS]
    _close(e[2], t[2])
    _close(e[0, :, -1], t[0, :, -1])


def test_from_jagged_narrow_and_padding():
    vals = np.arange(30, dtype=np.float32).reshape(10, 3)
    off = np.array([0, 4, 10])
    e = ember.nested.nested_tensor_from_jagged(ember.tensor(vals), ember.tensor(off))
    t = torch.nested.nested_tensor_from_jagged(torch.tensor(vals), torch.tensor(off))
    assert e.values()._data is not None and e.shape[0] == 2
    _close(e, t)
    dense = np.arange(40, dtype=np.float32).reshape(2, 5, 4)
    start, length = np.array([0, 1]), np.array([2, 3])
    e = ember.nested.narrow(
        ember.tensor(dense), 1, ember.tensor(start), ember.tensor(length), layout=ember.jagged
    )
    t = torch.nested.narrow(
        torch.tensor(dense), 1, torch.tensor(start), torch.tensor(length), layout=torch.jagged
    )
    assert not e.is_contiguous() and e.lengths().tolist() == [2, 3]
    assert e.offsets().tolist() == t.offsets().tolist()
    _close(e, t)
    # torch refuses to reduce over the ragged dim of a view with holes; ember sums the rows
    _close((e * 3).sum(1), torch.stack([c.sum(0) * 3 for c in t.unbind()]))
    # (torch cannot pad a view with holes; the reference pads its components)
    ref = torch.full((2, 3, 4), -1.0)
    for i, c in enumerate(t.unbind()):
        ref[i, : c.shape[0]] = c
    _close(ember.nested.to_padded_tensor(e, -1.0), ref)
    _close(e.contiguous(), t.contiguous())
    e, t = _pair(_arrays())
    _close(e.to_padded_tensor(0.0), t.to_padded_tensor(0.0))
    _close(
        ember.nested.to_padded_tensor(e, 0.5, output_size=(3, 6, D)),
        torch.nested.to_padded_tensor(t, 0.5, output_size=(3, 6, D)),
    )


def test_as_nested_tensor_keeps_the_graph():
    xs = [ember.tensor(a, requires_grad=True) for a in _arrays()]
    ts = [torch.tensor(a, requires_grad=True) for a in _arrays()]
    e = ember.nested.as_nested_tensor(xs, layout=ember.jagged)
    t = torch.nested.as_nested_tensor(ts, layout=torch.jagged)
    (e.values() ** 2).sum().backward()
    (t.values() ** 2).sum().backward()
    for a, b in zip(xs, ts):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), atol=1e-6)


# ---- ops, forward and backward against torch ----------------------------------------------
CASES = {
    "pointwise": lambda m, x: (m.nn.functional.gelu(x) * 2 + x.exp() - 1).relu() / 3,
    "dense_broadcast_dim": lambda m, x: x * m.arange(8, dtype=m.float32) + 1,
    "dense_broadcast_batch": lambda m, x: x + m.arange(24, dtype=m.float32).reshape(3, 1, 8),
    "softmax_last": lambda m, x: m.nn.functional.softmax(x, -1),
    "unflatten_transpose_flatten": lambda m, x: (
        x.unflatten(-1, [2, 4]).transpose(1, 2).sigmoid().transpose(1, 2).flatten(-2)
    ),
    "cat_last": lambda m, x: m.cat([x, x.tanh()], dim=-1),
    "chunk_last": lambda m, x: x.chunk(2, dim=-1)[1] * 1.5,
    "top_level_chunk": lambda m, x: m.chunk(x, 2, dim=-1)[0] * 1.5,
    "where_compare": lambda m, x: m.where(x > 0, x, x * 0.1),
    "permute_heads": lambda m, x: (
        x.unflatten(-1, [2, 4]).permute(0, 2, 1, 3).exp().permute(0, 2, 1, 3).flatten(-2)
    ),
    "rms_norm": lambda m, x: m.nn.functional.rms_norm(x, (8,)),
}


def _reduce_out(o):
    return o.values() if getattr(o, "is_nested", False) else o


@pytest.mark.parametrize("case", sorted(CASES))
def test_op_matches_torch(case):
    e, t = _pair(_arrays())
    eo, to = CASES[case](ember, e), CASES[case](torch, t)
    _close(eo, to)
    w = (
        np.random.default_rng(1)
        .standard_normal(tuple(to.values().shape if to.is_nested else to.shape))
        .astype(np.float32)
    )
    (_reduce_out(eo) * ember.tensor(w)).sum().backward()
    (_reduce_out(to) * torch.tensor(w)).sum().backward()
    _grads_close(e, t)


# torch 2.13 has these forwards but not their backward on CPU (aten._nested_sum_backward):
# the gradient reference is the same reduction on torch's dense components
REDUCTIONS = {
    "sum_ragged": (lambda x: x.sum(1), lambda cs: torch.stack([c.sum(0) for c in cs])),
    "mean_ragged": (lambda x: x.mean(dim=1), lambda cs: torch.stack([c.mean(0) for c in cs])),
    "sum_last": (lambda x: x.sum(-1), lambda cs: torch.cat([c.sum(-1) for c in cs])),
    "sum_batch_ragged": (lambda x: x.sum((0, 1)), lambda cs: torch.cat(cs).sum(0)),
    "mean_keepdim": (
        lambda x: x.mean(1, keepdim=True),
        lambda cs: torch.stack([c.mean(0, keepdim=True) for c in cs]),
    ),
}


@pytest.mark.parametrize("case", sorted(REDUCTIONS))
def test_reduction_matches_torch(case):
    fn, dense = REDUCTIONS[case]
    e, t = _pair(_arrays())
    eo = fn(e)
    with torch.no_grad():
        _close(eo, fn(t))
    comps = [torch.tensor(a, requires_grad=True) for a in _arrays()]
    ref = dense(comps)
    w = np.random.default_rng(1).standard_normal(tuple(ref.shape)).astype(np.float32)
    (_reduce_out(eo) * ember.tensor(w)).sum().backward()
    (ref * torch.tensor(w)).sum().backward()
    for g, c in zip(e.grad.unbind(), comps):
        np.testing.assert_allclose(g.numpy(), c.grad.numpy(), atol=1e-5)


def _copy_params(em, tm):
    for pe, pt in zip(em.parameters(), tm.parameters()):
        pe.data = ember.tensor(pt.detach().numpy().copy())


@pytest.mark.parametrize("causal", [False, True])
def test_multi_head_attention_block_matches_torch(causal):
    """Linear -> heads -> SDPA -> merge -> Linear -> LayerNorm, the tutorial's MHA plus a
    residual LayerNorm, on ragged sequences of several lengths (some repeated)."""
    heads, lens = 2, (3, 1, 4, 3, 2)

    def block(m, mods, x):
        qp, kp, vp, out, norm = mods
        q, k, v = qp(x), kp(x), vp(x)
        q, k, v = (y.unflatten(-1, [heads, D // heads]).transpose(1, 2) for y in (q, k, v))
        if m is torch and causal:  # torch 2.13 has no CPU kernel for causal nested SDPA
            rows = [
                torch.nn.functional.scaled_dot_product_attention(*c, is_causal=True).transpose(0, 1)
                for c in zip(q.unbind(), k.unbind(), v.unbind())
            ]
            a = torch.nested.nested_tensor_from_jagged(torch.cat(rows), x.offsets())
            a = a.transpose(1, 2)  # (B, H, j, D), the layout SDPA returns
        else:
            a = m.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return norm(out(a.transpose(1, 2).flatten(-2)) + x)

    torch.manual_seed(0)
    tmods = (*(torch.nn.Linear(D, D) for _ in range(4)), torch.nn.LayerNorm(D))
    emods = (*(ember.nn.Linear(D, D) for _ in range(4)), ember.nn.LayerNorm(D))
    for em, tm in zip(emods, tmods):
        _copy_params(em, tm)
    e, t = _pair(_arrays(lens))
    eo, to = block(ember, emods, e), block(torch, tmods, t)
    _close(eo, to)
    w = np.random.default_rng(2).standard_normal(tuple(to.values().shape)).astype(np.float32)
    (eo.values() * ember.tensor(w)).sum().backward()
    (to.values() * torch.tensor(w)).sum().backward()
    _grads_close(e, t, atol=1e-4)
    for em, tm in zip(emods, tmods):
        for pe, pt in zip(em.parameters(), tm.parameters()):
            np.testing.assert_allclose(pe.grad.numpy(), pt.grad.numpy(), atol=1e-4)


def test_sdpa_cross_attention_lengths_differ():
    qa, ka = _arrays((2, 5, 3), seed=3), _arrays((4, 1, 3), seed=4)
    eq, tq = _pair(qa)
    ek, tk = _pair(ka)

    def run(m, q, k):
        q, k = (y.unflatten(-1, [2, 4]).transpose(1, 2) for y in (q, k))
        return m.nn.functional.scaled_dot_product_attention(q, k, k).transpose(1, 2)

    eo, to = run(ember, eq, ek), run(torch, tq, tk)
    _close(eo.flatten(-2), to.flatten(-2))
    eo.values().sum().backward()
    to.values().sum().backward()
    _grads_close(eq, tq, 1e-4)
    _grads_close(ek, tk, 1e-4)


def test_padded_equals_nested_attention():
    """The tutorial's check: nested attention equals padded attention on the real rows."""
    e, _ = _pair(_arrays((2, 5, 5, 1)), requires_grad=False)
    x = e.unflatten(-1, [2, 4]).transpose(1, 2)
    out = F.scaled_dot_product_attention(x, x, x, is_causal=True).transpose(1, 2).flatten(-2)
    padded = ember.nested.to_padded_tensor(e, 0.0).unflatten(-1, [2, 4]).transpose(1, 2)
    ref = F.scaled_dot_product_attention(padded, padded, padded, is_causal=True)
    ref = ref.transpose(1, 2).flatten(-2)
    for i, comp in enumerate(out.unbind()):
        np.testing.assert_allclose(comp.numpy(), ref[i, : comp.shape[0]].numpy(), atol=1e-5)


def test_inplace_and_unbind():
    e, t = _pair(_arrays(), requires_grad=False)
    e.mul_(2).add_(1)
    t.mul_(2).add_(1)
    _close(e, t)
    for a, b in zip(ember.unbind(e), torch.unbind(t)):
        np.testing.assert_allclose(a.numpy(), b.numpy())
    leaf, _ = _pair(_arrays())
    with pytest.raises(RuntimeError, match="in-place"):
        leaf.mul_(2)


# ---- the strided layout, as the tutorial uses it -------------------------------------------
def test_strided_tutorial_ops():
    def run(m):
        nt = m.nested.nested_tensor(
            [m.arange(12).reshape(2, 6), m.arange(18).reshape(3, 6)], dtype=m.float
        )
        padded = m.nested.to_padded_tensor(nt, padding=0.0)
        col = nt[1, :, -1]
        tr = nt.reshape(2, -1, 2, 3).transpose(1, 2)
        rng = np.random.default_rng(5)
        mm = m.nested.nested_tensor(
            [
                m.tensor(rng.standard_normal((2, 3, 4)).astype(np.float32)),
                m.tensor(rng.standard_normal((2, 3, 5)).astype(np.float32)),
            ]
        )
        out = m.nn.functional.softmax(m.matmul(tr, mm), -1)
        sent = m.nn.functional.softmax(
            m.nested.nested_tensor([m.tensor([1.0, 2.0]), m.tensor([3.0, 4.0, 5.0])]), -1
        )
        return padded, col, out, sent, nt

    e, t = run(ember), run(torch)
    for a, b in zip(e[:4], t[:4]):
        _close(a, b)
    assert e[4].layout is ember.strided and e[4].size(0) == 2 and e[4].size(2) == 6
    with pytest.raises(RuntimeError, match="irregular"):
        e[4].size(1)
    assert repr(e[3]).startswith("nested_tensor([\n  tensor([0.2689, 0.7311])")


def test_strided_gradients():
    e, t = _pair(_arrays(), layout="strided")
    eo = (F.gelu(e) * 2).softmax(-1)
    to = torch.nn.functional.gelu(t).mul(2).softmax(-1)
    _close(eo, to)
    ember.nested.to_padded_tensor(eo, 0.0).pow(2).sum().backward()
    torch.nested.to_padded_tensor(to, 0.0).pow(2).sum().backward()
    _grads_close(e, t)


# ---- errors ----------------------------------------------------------------------------
def test_unsupported_ops_name_themselves():
    e, _ = _pair(_arrays(), requires_grad=False)
    with pytest.raises(NotImplementedError, match="'cum_sum' is not supported for nested"):
        ember.cumsum(e, 2)
    with pytest.raises(NotImplementedError, match="'sort' is not supported for nested"):
        e.sort()
    with pytest.raises(RuntimeError, match="dim=0"):
        e.transpose(0, 1)
    with pytest.raises(RuntimeError, match="dim=0"):
        e[0:2]
    with pytest.raises(RuntimeError, match="ragged dimension"):
        e + ember.ones(3, 4, D)
    with pytest.raises(NotImplementedError, match="numpy"):
        e.numpy()
    with pytest.raises(RuntimeError, match="different structure"):
        e + ember.nested.nested_tensor([ember.ones(1, D)] * 3, layout=ember.jagged)
    with pytest.raises(RuntimeError, match="layout"):
        ember.nested.nested_tensor([ember.ones(2)], layout=ember.sparse_coo)
    with pytest.raises(RuntimeError, match="jagged layout"):
        ember.nested.nested_tensor([ember.ones(2, 3), ember.ones(2, 4)], layout=ember.jagged)
    heads_last = e.unflatten(-1, [2, 4])  # (B, j, H, D): heads not transposed first
    with pytest.raises(RuntimeError, match="second to last"):
        F.scaled_dot_product_attention(heads_last, heads_last, heads_last)


# ---- the ragged dimension: softmax, matmul, flatten; torch's refusals -------------------
@pytest.mark.parametrize("dim", [1, -2])
def test_softmax_over_ragged_dim_matches_torch(dim):
    e, t = _pair(_arrays())
    _close(F.softmax(e, dim), torch.softmax(t, dim))
    # gradients: against torch's dense softmax within each component (torch 2.13's own jagged
    # softmax backward over the ragged dim on CPU disagrees with it, so it is not the reference)
    w = torch.tensor(np.random.default_rng(1).standard_normal((sum(LENS), D)), dtype=torch.float32)
    for ef, tf in ((F.softmax, torch.softmax), (F.log_softmax, torch.log_softmax)):
        # torch refuses log_softmax over the ragged dim; it is log_softmax within each component
        e, _ = _pair(_arrays())
        cs = [torch.tensor(a, requires_grad=True) for a in _arrays()]
        eo, to = ef(e, dim), torch.cat([tf(c, 0) for c in cs])
        np.testing.assert_allclose(eo.values().detach().numpy(), to.detach().numpy(), atol=1e-5)
        (eo.values() * ember.tensor(w.numpy())).sum().backward()
        (to * w).sum().backward()
        np.testing.assert_allclose(
            e.grad.values().numpy(), torch.cat([c.grad for c in cs]).numpy(), atol=1e-5
        )


def test_softmax_over_ragged_dim_of_a_narrowed_view():
    base = ember.arange(24.0).reshape(3, 4, 2) / 7
    nt = ember.nested.narrow(
        base, 1, ember.tensor([0, 1, 2]), ember.tensor([2, 3, 1]), layout=ember.jagged
    )
    assert not nt.is_contiguous()
    out = nt.softmax(1)
    for c, o in zip(nt.unbind(), out.unbind()):
        np.testing.assert_allclose(o.numpy(), ember.softmax(c, 0).numpy(), atol=1e-6)


def test_matmul_with_jagged_second_operand_matches_torch():
    e, t = _pair(_arrays())
    w = np.random.default_rng(2).standard_normal((5, D)).astype(np.float32)
    ew, tw = ember.tensor(w, requires_grad=True), torch.tensor(w, requires_grad=True)
    # dense (5, D) @ jagged (B, D, j) -> jagged (B, 5, j)
    eo, to = ember.matmul(ew, e.transpose(1, 2)), torch.matmul(tw, t.transpose(1, 2))
    assert eo.is_nested and eo.shape[2] is e.shape[1]
    _close(eo, to)
    # jagged (B, D, j) @ jagged (B, j, D): contracts the ragged dim -> dense (B, D, D)
    eg, tg = ember.matmul(e.transpose(1, 2), e), torch.matmul(t.transpose(1, 2), t)
    assert not eg.is_nested and tuple(eg.shape) == (3, D, D)
    _close(eg, tg, atol=1e-4)
    (eo.values().sum() + eg.sum()).backward()
    (to.values().sum() + tg.sum()).backward()
    _grads_close(e, t, atol=1e-4)
    np.testing.assert_allclose(ew.grad.numpy(), tw.grad.numpy(), atol=1e-4)
    with pytest.raises(RuntimeError, match="not supported between inputs of shapes"):
        ember.matmul(e, e.transpose(1, 2))  # torch refuses this too
    with pytest.raises(RuntimeError, match="not supported between inputs of shapes"):
        ember.matmul(ew, e)


def test_top_level_flatten_matches_torch():
    arrays = [np.ones((n, 2, 3), np.float32) * n for n in LENS]
    e, t = _pair(arrays, requires_grad=False)
    eo, to = ember.flatten(e, 2), torch.flatten(t, 2)
    assert eo.is_nested and eo.shape[2] == to.shape[2] == 6
    _close(eo, to)
    assert ember.flatten(e, 2, 2) is e
    with pytest.raises(RuntimeError, match="dim=0"):
        ember.flatten(e)
    with pytest.raises(RuntimeError, match="ragged dimension"):
        ember.flatten(e, 1)


def test_batch_slicing_and_sdpa_mask_are_refused_as_torch():
    e, t = _pair(_arrays(), requires_grad=False)
    for index in (slice(1, 3), slice(None, None, 2)):
        with pytest.raises(RuntimeError, match="not supported for NestedTensor on dim=0"):
            t[index]
        with pytest.raises(RuntimeError, match="not supported for NestedTensor on dim=0"):
            e[index]
    q = e.unflatten(-1, [2, 4]).transpose(1, 2)
    tq = t.unflatten(-1, [2, 4]).transpose(1, 2)
    mask = np.ones((4, 4), bool)
    with pytest.raises(ValueError, match="Masks are not yet supported"):
        torch.nn.functional.scaled_dot_product_attention(tq, tq, tq, attn_mask=torch.tensor(mask))
    with pytest.raises(ValueError, match="Masks are not yet supported"):
        F.scaled_dot_product_attention(q, q, q, attn_mask=ember.tensor(mask))


@pytest.mark.gpu
def test_cuda_matches_cpu():
    e, _ = _pair(_arrays((3, 1, 4, 3)), requires_grad=False)
    g = e.to("cuda")
    assert g.device.type == "cuda" and g.values().is_cuda and g.offsets().is_cuda

    def run(x):
        y = x.unflatten(-1, [2, 4]).transpose(1, 2)
        a = F.scaled_dot_product_attention(y, y, y, is_causal=True).transpose(1, 2).flatten(-2)
        z = F.gelu(a) + x + ember.ones(4, 1, D, device=x.device)
        return ember.nested.to_padded_tensor(z, 0.0), x.mean(1)

    for c, d in zip(run(e), run(g)):
        np.testing.assert_allclose(c.numpy(), d.cpu().numpy(), atol=1e-5)


def test_docs_snippet_runs():
    import os
    import re

    path = os.path.join(os.path.dirname(__file__), os.pardir, "docs", "nested.md")
    code = re.search(r"```python\n(.*?)```", open(path).read(), re.S).group(1)
    exec(compile(code, "docs/nested.md", "exec"), {})
