"""Sparse compressed layouts (CSR, CSC, BSR, BSC; core/sparse/_compressed*.py) against PyTorch
on the same data: construction and its checks, conversions, printing, products with gradients
(the gradient of a compressed leaf keeps its pattern), elementwise ops, save/load, and a small
GCN layer trained a few steps."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

DENSE = [[0.0, 2.0, 0.0, 1.0], [3.0, 0.0, 4.0, 0.0], [0.0, 0.0, 0.0, 0.0], [5.0, 6.0, 0.0, 7.0]]


def _both(fn):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(torch), fn(ember)


def _same_repr(a, b) -> None:
    assert repr(a).replace("torch.", "ember.") == repr(b)


def _np(t):
    return t.detach().numpy()


@pytest.mark.parametrize(
    "convert",
    [
        lambda x: x.to_sparse_csr(),
        lambda x: x.to_sparse_csc(),
        lambda x: x.to_sparse_bsr((2, 2)),
        lambda x: x.to_sparse_bsc((2, 1)),
        lambda x: x.to_sparse(layout=x.to_sparse_csr().layout),
        lambda x: x.to_sparse_coo().to_sparse_csr(),
        lambda x: x.to_sparse_csr().to_sparse_csc(),
        lambda x: x.to_sparse_csc().to_sparse_csr(),
        lambda x: x.to_sparse_csr().to_sparse_bsr((2, 2)),
        lambda x: ember_or_torch(x).stack([x, 2 * x]).to_sparse_csr(),
        lambda x: ember_or_torch(x).stack([x, 2 * x]).to_sparse_bsr((2, 2)),
    ],
)
def test_conversions_and_repr_match_torch(convert):
    t, e = _both(lambda m: convert(m.tensor(DENSE)))
    assert str(t.layout).replace("torch.", "ember.") == str(e.layout)
    _same_repr(t, e)
    np.testing.assert_array_equal(_np(t.to_dense()), _np(e.to_dense()))
    assert (t.is_sparse, t.is_sparse_csr, t._nnz()) == (e.is_sparse, e.is_sparse_csr, e._nnz())
    assert tuple(t.shape) == tuple(e.shape) and t.dim() == e.dim()
    np.testing.assert_array_equal(_np(t.values()), _np(e.values()))


def ember_or_torch(x):
    return ember if isinstance(x, ember.Tensor) else torch


def test_factories_accessors_and_coo_round_trip():
    def build(m):
        crow, col = m.tensor([0, 2, 2, 3]), m.tensor([0, 2, 1])
        csr = m.sparse_csr_tensor(crow, col, m.tensor([1.0, 2.0, 3.0]), (3, 3))
        csc = m.sparse_compressed_tensor(crow, col, m.tensor([1.0, 2.0, 3.0]), layout=m.sparse_csc)
        bsr = m.sparse_bsr_tensor(m.tensor([0, 1]), m.tensor([1]), m.ones(1, 2, 2))
        hybrid = m.sparse_csr_tensor(crow, col, m.ones(3, 2), (3, 3, 2))
        return csr, csc, bsr, hybrid

    for t, e in zip(*_both(build)):
        _same_repr(t, e)
        np.testing.assert_array_equal(_np(t.to_dense()), _np(e.to_dense()))
    t, e = _both(lambda m: build(m)[0])
    assert e.crow_indices().tolist() == [0, 2, 2, 3] and e.col_indices().tolist() == [0, 2, 1]
    assert e.crow_indices().dtype == ember.int64
    coo = e.to_sparse()
    assert coo.layout == ember.sparse_coo and coo.is_coalesced()
    np.testing.assert_array_equal(_np(coo.indices()), _np(t.to_sparse().indices()))
    assert ember.crow_indices_copy(e).tolist() == [0, 2, 2, 3]
    assert ember.values_copy(e).tolist() == [1.0, 2.0, 3.0]


@pytest.mark.parametrize(
    "crow, col, size",
    [
        ([0, 1, 2], [1, 0, 2], (2, 3)),  # last != nnz
        ([1, 1, 3], [1, 0, 2], (2, 3)),  # first != 0
        ([0, 1, 3], [1, 0, 5], (2, 3)),  # column out of range
        ([0, 1, 3], [1, 2, 0], (2, 3)),  # unsorted in a row
        ([0, 1, 3], [1, 2, 2], (2, 3)),  # duplicate in a row
        ([0, 1, 3, 3], [1, 2, 0], (3, 3)),
        ([0, 1, 3], [1, 0, 2], (3, 3)),  # crow too short for the size
    ],
)
def test_invalid_indices_raise_torchs_messages(crow, col, size):
    msgs = []
    for m in (torch, ember):
        with pytest.raises(RuntimeError) as info:
            m.sparse_csr_tensor(
                m.tensor(crow), m.tensor(col), m.ones(3), size, check_invariants=True
            )
        msgs.append(str(info.value))
    assert msgs[0] == msgs[1]


def test_clear_errors_for_wrong_layouts_and_ops():
    csr = ember.tensor(DENSE).to_sparse_csr()
    for call, msg in [
        (lambda m: m.tensor(DENSE).to_sparse_csr().row_indices(), "row_indices expected"),
        (lambda m: m.tensor(DENSE).crow_indices(), "but got Strided"),
        (lambda m: m.tensor(DENSE).to_sparse_csr().indices(), "but got SparseCsr"),
        (lambda m: m.eye(4).to_sparse_bsr((3, 3)), "must be divisible by given blocksize"),
        (lambda m: m.tensor(DENSE).to_sparse_csr().sum(0), "keepdim=False is unsupported"),
    ]:
        texts = []
        for m in (torch, ember):
            with pytest.raises(RuntimeError) as info:
                call(m)
            texts.append(str(info.value))
        assert msg in texts[0] and texts[0] == texts[1]
    with pytest.raises(RuntimeError, match="expected sparse compressed tensor layout"):
        ember.sparse_compressed_tensor(ember.tensor([0, 1]), ember.tensor([0]), ember.ones(1))
    with pytest.raises(NotImplementedError, match="sparse_csr"):
        ember.exp(csr)
    with pytest.raises(RuntimeError, match="same number of specified elements per batch"):
        ember.tensor([[[1.0, 0], [0, 0]], [[1.0, 1], [0, 0]]]).to_sparse_csr()
    with ember.sparse.check_sparse_tensor_invariants():
        assert ember.sparse.check_sparse_tensor_invariants.is_enabled()
    assert not ember.sparse.check_sparse_tensor_invariants.is_enabled()


#: (layout, product) pairs torch 2.13 cannot run (or differentiate) on the CPU
TORCH_DENSE_FALLBACK = {
    ("csc", "sparse.mm"),
    ("bsr", "matmul"),
    ("bsr", "vec"),
    ("bsr", "addmm"),
    ("bsr", "mm"),
    ("bsr", "sparse.mm"),
    ("csc", "sparse.addmm"),
    ("bsr", "sparse.addmm"),
}


@pytest.mark.parametrize("how", ["matmul", "mm", "sparse.mm", "addmm", "sparse.addmm", "vec"])
@pytest.mark.parametrize("layout", ["csr", "csc", "bsr"])
def test_products_and_gradients_match_torch(how, layout):
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((4, 3)).astype(np.float32)
    b0 = rng.standard_normal((4, 3)).astype(np.float32)

    def run(m):
        dense = m.tensor(DENSE)
        s = {"csr": dense.to_sparse_csr, "csc": dense.to_sparse_csc}.get(
            layout, lambda: dense.to_sparse_bsr((2, 2))
        )()
        vals = s.values().detach().clone().requires_grad_(True)
        ctor = {"csr": m.sparse_csr_tensor, "csc": m.sparse_csc_tensor}.get(
            layout, m.sparse_bsr_tensor
        )
        idx = (
            (s.crow_indices(), s.col_indices())
            if layout != "csc"
            else (s.ccol_indices(), s.row_indices())
        )
        a = ctor(*idx, vals, s.shape)
        if m is torch and (layout, how) in TORCH_DENSE_FALLBACK:
            a = a.to_dense()  # torch has no kernel for this product: its dense form instead
        w = m.tensor(w0, requires_grad=True)
        b = m.tensor(b0)
        if how == "matmul":
            out = a @ w
        elif how == "mm":
            out = m.mm(a, w)
        elif how == "sparse.mm":
            out = m.sparse.mm(a, w)
        elif how == "addmm":
            out = m.addmm(b, a, w, beta=0.5, alpha=2.0)
        elif how == "sparse.addmm":
            out = m.sparse.addmm(b, a, w)
        else:
            out = m.matmul(a, w[:, 0])
        (out * out).sum().backward()
        return out, vals.grad, w.grad

    for t, e in zip(*_both(run)):
        np.testing.assert_allclose(_np(t), _np(e), rtol=1e-5, atol=1e-5)


def test_dense_times_compressed_and_leaf_gradient_keeps_pattern():
    def run(m):
        leaf = m.tensor(DENSE).to_sparse_csr().requires_grad_(True)
        x = m.arange(8.0).reshape(2, 4)
        m.sparse.mm(leaf, x.t()).sum().backward()
        return leaf.grad, x @ leaf.detach(), x @ leaf.detach().t()

    t, e = _both(run)
    _same_repr(t[0], e[0])
    for a, b in zip(t[1:], e[1:]):
        np.testing.assert_allclose(_np(a), _np(b))


def test_sampled_addmm_and_gradients():
    rng = np.random.default_rng(1)
    m1, m2 = (rng.standard_normal(s).astype(np.float32) for s in ((4, 5), (5, 4)))

    def run(m):
        mask = m.tensor(DENSE).to_sparse_csr()
        a, b = m.tensor(m1, requires_grad=True), m.tensor(m2, requires_grad=True)
        out = m.sparse.sampled_addmm(mask, a, b, beta=0.5, alpha=2.0)
        out.values().pow(2).sum().backward()
        return out.to_dense(), a.grad, b.grad

    for t, e in zip(*_both(run)):
        np.testing.assert_allclose(_np(t), _np(e), rtol=1e-5, atol=1e-5)


def test_elementwise_sum_transpose_and_add():
    def run(m):
        v = m.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0], requires_grad=True)
        s = m.tensor(DENSE).to_sparse_csr()
        a = m.sparse_csr_tensor(s.crow_indices(), s.col_indices(), v, s.shape)
        other = m.eye(4).to_sparse_csr()
        total = ((a * 3) + a).sum() + (a + other).to_dense()[0, 0]
        total.backward()
        return (
            a * 2,
            a.t(),
            a.transpose(0, 1).to_sparse_csr(),
            a + a,
            (a + other).to_dense(),
            m.ones(4, 4) + a,
            a * m.full((4, 4), 2.0),
            -a,
            v.grad,
            m.eye(4).to_sparse_bsr((2, 2)).t(),
        )

    for t, e in zip(*_both(run)):
        if t.layout == torch.strided:
            np.testing.assert_allclose(_np(t), _np(e))
        else:
            _same_repr(t.detach(), e.detach())


def test_save_load_round_trips(tmp_path):
    e = ember.tensor(DENSE).to_sparse_bsr((2, 2))
    path = str(tmp_path / "x.pt")
    ember.save({"adj": e, "csc": e.to_dense().to_sparse_csc()}, path)
    back = ember.load(path)
    assert repr(back["adj"]) == repr(e) and back["csc"].layout == ember.sparse_csc
    # PyTorch's zip format both ways
    ember.save(e.to_dense().to_sparse_csr(), path, _use_new_zipfile_serialization=True)
    t = torch.load(path, weights_only=True)
    assert t.layout == torch.sparse_csr and t.to_dense().tolist() == DENSE
    torch.save(torch.tensor(DENSE).to_sparse_bsc((2, 2)), path)
    _same_repr(torch.tensor(DENSE).to_sparse_bsc((2, 2)), ember.load(path))
    assert repr(pickle.loads(pickle.dumps(e))) == repr(e)


def test_gcn_layer_trains_as_torch():
    """``adj_csr @ (x @ W)`` twice, a few SGD steps: losses and gradients as torch's."""
    rng = np.random.default_rng(2)
    n, f, h, c = 30, 8, 16, 3
    a = (rng.random((n, n)) < 0.15).astype(np.float32) + np.eye(n, dtype=np.float32)
    a = a / a.sum(1, keepdims=True)
    x0 = rng.standard_normal((n, f)).astype(np.float32)
    y0 = rng.integers(0, c, n)
    w1, w2 = rng.standard_normal((f, h)) * 0.3, rng.standard_normal((h, c)) * 0.3

    def run(m):
        adj = m.tensor(a).to_sparse_csr()
        x, y = m.tensor(x0), m.tensor(y0)
        p1 = m.nn.Parameter(m.tensor(w1.astype(np.float32)))
        p2 = m.nn.Parameter(m.tensor(w2.astype(np.float32)))
        losses = []
        for _ in range(4):  # plain SGD (torch.optim's first import costs seconds)
            p1.grad = p2.grad = None
            hid = m.relu(adj @ (x @ p1))
            out = m.sparse.mm(adj, hid @ p2)
            loss = m.nn.functional.cross_entropy(out, y)
            loss.backward()
            with m.no_grad():
                p1 -= 0.5 * p1.grad
                p2 -= 0.5 * p2.grad
            losses.append(loss.item())
        return np.array(losses), p1.grad, p2.grad

    t, e = _both(run)
    np.testing.assert_allclose(t[0], e[0], rtol=1e-5)
    for a_, b_ in zip(t[1:], e[1:]):
        np.testing.assert_allclose(_np(a_), _np(b_), rtol=1e-4, atol=1e-6)


def test_linear_with_a_pruned_csr_weight_and_value_wise_ops():
    rng = np.random.default_rng(3)
    w0 = rng.standard_normal((5, 4)).astype(np.float32)
    w0[np.abs(w0) < 0.7] = 0
    x0 = rng.standard_normal((2, 3, 4)).astype(np.float32)

    def run(m):
        w = m.tensor(w0).to_sparse_csr()
        x = m.tensor(x0, requires_grad=True)
        out = m.nn.functional.linear(x, w, m.ones(5))
        out.sum().backward()
        return out, x.grad, m.relu(w), m.tanh(w), abs(w), m.sqrt(abs(w))

    for t, e in zip(*_both(run)):
        if t.layout == torch.strided:
            np.testing.assert_allclose(_np(t), _np(e), rtol=1e-5, atol=1e-6)
        else:
            np.testing.assert_allclose(_np(t.to_dense()), _np(e.to_dense()), rtol=1e-6)
            assert str(t.layout).replace("torch", "ember") == str(e.layout)


def test_docs_section_runs():
    import os
    import re

    path = os.path.join(os.path.dirname(__file__), os.pardir, "docs", "sparse.md")
    text = open(path).read()
    section = text[text.index("## Compressed layouts") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    exec(compile(code, "docs/sparse.md", "exec"), {})
