"""Sparse COO tensors (core/sparse/): construction, coalesce, conversions, sparse.mm and its
gradients, the sparse rules of +, *, sum and transpose, repr, save/load and errors, each
against PyTorch; and a two-layer graph convolution trained side by side with torch."""

from __future__ import annotations

import io

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.filterwarnings("ignore:Sparse invariant checks")

IDX = [[0, 1, 1, 0, 2], [2, 0, 2, 2, 1]]  # (0, 2) twice: uncoalesced
VALS = [3.0, 4.0, 5.0, 1.0, -2.0]


def _pair(dtype="float32", size=(3, 3), **kw):
    e = ember.sparse_coo_tensor(
        ember.tensor(IDX), ember.tensor(VALS, dtype=getattr(ember, dtype)), size, **kw
    )
    t = torch.sparse_coo_tensor(
        torch.tensor(IDX), torch.tensor(VALS, dtype=getattr(torch, dtype)), size, **kw
    )
    return e, t


def _np(x):
    return x.detach().numpy() if isinstance(x, torch.Tensor) else np.asarray(x.detach())


def _same_sparse(e, t, tol=1e-6):
    assert e.layout == ember.sparse_coo and t.layout == torch.sparse_coo
    assert tuple(e.shape) == tuple(t.shape) and e.dtype.name == str(t.dtype)[6:]
    assert e.is_coalesced() == t.is_coalesced() and e._nnz() == t._nnz()
    np.testing.assert_array_equal(_np(e._indices()), _np(t._indices()))
    np.testing.assert_allclose(_np(e._values()), _np(t._values()), rtol=tol, atol=tol)


# ---- construction, coalesce, conversions -------------------------------------------------
def test_construction_matches_torch():
    e, t = _pair()
    _same_sparse(e, t)
    assert e.is_sparse and not ember.ones(2).is_sparse and ember.ones(2).layout == ember.strided
    assert (e.sparse_dim(), e.dense_dim(), e.dim(), e.numel()) == (2, 0, 2, 9)
    assert e.shape == ember.Size([3, 3]) and e.size(1) == 3 and str(e.device) == "cpu"
    # size inferred from the indices; int32 NumPy indices and a dtype conversion (gcn's call)
    _same_sparse(ember.sparse_coo_tensor(IDX, VALS), torch.sparse_coo_tensor(IDX, VALS))
    edges = np.array([[0, 1], [1, 2]], dtype=np.int32)
    e2 = ember.sparse_coo_tensor(edges.T, ember.ones(2), (3, 3), dtype=ember.int64)
    t2 = torch.sparse_coo_tensor(edges.T, torch.ones(2), (3, 3), dtype=torch.int64)
    _same_sparse(e2, t2)
    # a hybrid tensor: one sparse dim, dense rows
    v = np.arange(6.0, dtype=np.float32).reshape(3, 2)
    _same_sparse(
        ember.sparse_coo_tensor([[2, 0, 1]], ember.tensor(v), (4, 2)),
        torch.sparse_coo_tensor([[2, 0, 1]], torch.tensor(v), (4, 2)),
    )
    # an empty tensor
    _same_sparse(
        ember.sparse_coo_tensor(ember.zeros(2, 0, dtype=ember.int64), ember.zeros(0), (2, 2)),
        torch.sparse_coo_tensor(torch.zeros(2, 0, dtype=torch.long), torch.zeros(0), (2, 2)),
    )


def test_coalesce_sums_duplicates_and_sorts():
    e, t = _pair()
    assert not e.is_coalesced()
    ec, tc = e.coalesce(), t.coalesce()
    _same_sparse(ec, tc)
    assert ec.coalesce() is ec
    np.testing.assert_array_equal(_np(ec.indices()), _np(tc.indices()))
    np.testing.assert_array_equal(_np(ec.values()), _np(tc.values()))
    with pytest.raises(RuntimeError, match="uncoalesced tensor, please call .coalesce"):
        e.values()
    with pytest.raises(RuntimeError, match="uncoalesced tensor, please call .coalesce"):
        e.indices()


def test_to_dense_and_to_sparse_round_trip():
    e, t = _pair()
    np.testing.assert_array_equal(_np(e.to_dense()), _np(t.to_dense()))
    x = np.array([[0.0, 1.5, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 0.0]], np.float32)
    _same_sparse(ember.tensor(x).to_sparse(), torch.tensor(x).to_sparse())
    _same_sparse(ember.tensor(x).to_sparse(1), torch.tensor(x).to_sparse(1))
    np.testing.assert_array_equal(_np(ember.tensor(x).to_sparse().to_dense()), x)
    np.testing.assert_array_equal(_np(ember.tensor(x).to_sparse(1).to_dense()), x)
    d = ember.tensor(x)
    assert d.to_dense() is d and d.sparse_dim() == 0 and d.dense_dim() == 2
    # gcn's scaling: a diagonal made sparse times a dense matrix
    s = ember.diag(ember.tensor([1.0, 0.5, 0.0])).to_sparse()
    ts = torch.diag(torch.tensor([1.0, 0.5, 0.0])).to_sparse()
    np.testing.assert_allclose(_np(s @ ember.tensor(x)), _np(ts @ torch.tensor(x)))


def test_conversions_keep_the_layout():
    e, _ = _pair()
    assert e.to("cpu") is e and e.cpu() is e
    for conv, name in ((e.double, "float64"), (e.float, "float32"), (e.long, "int64")):
        r = conv()
        assert r.layout == ember.sparse_coo and r.dtype.name == name
    assert e.to(ember.float64).to(ember.float32).dtype == ember.float32
    assert e.detach().layout == ember.sparse_coo and e.clone()._nnz() == 5


# ---- products and their gradients --------------------------------------------------------
def test_sparse_mm_forward_all_spellings():
    e, t = _pair()
    rng = np.random.default_rng(0)
    d = rng.standard_normal((3, 4)).astype(np.float32)
    want = _np(torch.sparse.mm(t, torch.tensor(d)))
    de = ember.tensor(d)
    for got in (
        ember.sparse.mm(e, de),
        ember.spmm(e, de),
        ember.mm(e, de),
        ember.matmul(e, de),
        e @ de,
        e.mm(de),
        e.coalesce() @ de,
    ):
        assert got.layout == ember.strided
        np.testing.assert_allclose(_np(got), want, rtol=1e-5, atol=1e-6)
    # a vector, and dense @ sparse (dense results, as torch)
    v = rng.standard_normal(3).astype(np.float32)
    np.testing.assert_allclose(_np(e @ ember.tensor(v)), _np(t @ torch.tensor(v)), rtol=1e-5)
    dl = rng.standard_normal((2, 3)).astype(np.float32)
    np.testing.assert_allclose(_np(ember.tensor(dl) @ e), _np(torch.tensor(dl) @ t), rtol=1e-5)
    np.testing.assert_allclose(
        _np(ember.mm(ember.tensor(dl), e)), _np(torch.mm(torch.tensor(dl), t)), rtol=1e-5
    )


def test_sparse_mm_gradients_match_torch():
    rng = np.random.default_rng(1)
    d = rng.standard_normal((3, 2)).astype(np.float32)
    w = rng.standard_normal((3, 2)).astype(np.float32)
    # values requiring grad (the sparse tensor is a non-leaf), and the dense operand
    ve = ember.tensor(VALS, requires_grad=True)
    vt = torch.tensor(VALS, requires_grad=True)
    de, dt = ember.tensor(d, requires_grad=True), torch.tensor(d, requires_grad=True)
    se, st = ember.sparse_coo_tensor(IDX, ve, (3, 3)), torch.sparse_coo_tensor(IDX, vt, (3, 3))
    assert se.requires_grad and not se.is_leaf and se.grad_fn is not None
    (ember.sparse.mm(se, de) * ember.tensor(w)).sum().backward()
    (torch.sparse.mm(st, dt) * torch.tensor(w)).sum().backward()
    np.testing.assert_allclose(_np(ve.grad), _np(vt.grad), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_np(de.grad), _np(dt.grad), rtol=1e-5, atol=1e-6)
    # a sparse leaf: its grad is sparse, one entry per stored position (torch's sparse.mm)
    e, t = _pair(requires_grad=True)
    assert e.is_leaf and e.requires_grad
    (ember.sparse.mm(e, ember.tensor(d)) * ember.tensor(w)).sum().backward()
    (torch.sparse.mm(t, torch.tensor(d)) * torch.tensor(w)).sum().backward()
    _same_sparse(e.grad, t.grad.coalesce(), tol=1e-5)


def test_gradcheck_float64():
    rng = np.random.default_rng(2)
    v = ember.tensor(rng.standard_normal(5), dtype=ember.float64, requires_grad=True)
    d = ember.tensor(rng.standard_normal((3, 2)), dtype=ember.float64, requires_grad=True)

    def mm(v, d):
        return ember.sparse.mm(ember.sparse_coo_tensor(IDX, v, (3, 3)), d)

    def dense_of_coalesced(v):
        return ember.sparse_coo_tensor(IDX, v, (3, 3)).coalesce().to_dense() * 1.5

    def dense_at_sparse(d, v):
        return d.t() @ ember.sparse_coo_tensor(IDX, v, (3, 3))

    assert ember.autograd.gradcheck(mm, (v, d))
    assert ember.autograd.gradcheck(dense_of_coalesced, (v,))
    assert ember.autograd.gradcheck(dense_at_sparse, (d, v))
    x = ember.tensor([[0.5, 1.0], [2.0, 3.0]], dtype=ember.float64, requires_grad=True)
    assert ember.autograd.gradcheck(lambda x: ember.sparse.mm(x.to_sparse(), x), (x,))


# ---- the other sparse rules ---------------------------------------------------------------
def test_add_mul_sum_transpose_match_torch():
    e, t = _pair()
    _same_sparse(e * 2, t * 2)
    _same_sparse(2.0 * e, 2.0 * t)
    _same_sparse(e / 4, t / 4)
    _same_sparse(e + e, t + t)
    _same_sparse(e - e * 3, t - t * 3)
    u = ([[1, 0], [1, 0]], [1.0, 2.0])
    eu, tu = ember.sparse_coo_tensor(*u, (3, 3)), torch.sparse_coo_tensor(*u, (3, 3))
    assert (e + eu)._nnz() == (t + tu)._nnz() == 7 and not (e + eu).is_coalesced()
    _same_sparse((e + eu).coalesce(), (t + tu).coalesce())
    _same_sparse(e.coalesce() + eu.coalesce(), t.coalesce() + tu.coalesce())
    _same_sparse(e.t(), t.t())
    _same_sparse(e.transpose(0, 1), t.transpose(0, 1))
    dense = np.arange(9.0, dtype=np.float32).reshape(3, 3)
    _same_sparse(e * ember.tensor(dense), t * torch.tensor(dense))
    # dense + sparse is dense, with torch's promotion (gcn: eye(V) + int64 adjacency)
    ei = ember.sparse_coo_tensor(IDX, ember.ones(5), (3, 3), dtype=ember.int64)
    ti = torch.sparse_coo_tensor(IDX, torch.ones(5), (3, 3), dtype=torch.int64)
    r, rt = ember.eye(3) + ei, torch.eye(3) + ti
    assert r.layout == ember.strided and r.dtype == ember.float32
    np.testing.assert_array_equal(_np(r), _np(rt))
    np.testing.assert_array_equal(_np(ember.add(ember.eye(3), ei)), _np(rt))
    # sums: all dims (dense 0-d), a sparse dim (sparse), every sparse dim (dense)
    assert abs(ember.sum(e).item() - torch.sum(t).item()) < 1e-6
    assert abs(e.sum().item() - t.sum().item()) < 1e-6
    _same_sparse(e.sum(dim=1), torch.sparse.sum(t, dim=1))
    _same_sparse(ember.sparse.sum(e, 0), torch.sparse.sum(t, 0))
    np.testing.assert_allclose(_np(ember.sparse.sum(e, (0, 1))), _np(torch.sparse.sum(t, (0, 1))))


def test_softmax_over_stored_entries():
    e, t = _pair(dtype="float64")
    for dim in (0, 1):
        _same_sparse(ember.sparse.softmax(e, dim), torch.sparse.softmax(t, dim), tol=1e-12)
        _same_sparse(ember.sparse.log_softmax(e, dim), torch.sparse.log_softmax(t, dim), 1e-12)
    v = ember.tensor(VALS, dtype=ember.float64, requires_grad=True)
    w = ember.tensor(np.linspace(-1, 1, 9).reshape(3, 3))

    def f(v):
        s = ember.sparse.softmax(ember.sparse_coo_tensor(IDX, v, (3, 3)), 1)
        return (s.to_dense() * w).sum()

    assert ember.autograd.gradcheck(f, (v,))


def test_repr_matches_torch():
    for kw in ({}, {"dtype": "float64"}, {"requires_grad": True}):
        e, t = _pair(**kw)
        assert repr(e) == repr(t).replace("torch.", "ember."), (repr(e), repr(t))
    e, t = _pair()
    assert repr(e.coalesce()) == repr(t.coalesce()).replace("torch.", "ember.")
    x = np.array([[0.0, 1.0], [2.0, 0.0]], np.float32)
    assert repr(ember.tensor(x).to_sparse(1)) == repr(torch.tensor(x).to_sparse(1)).replace(
        "torch.", "ember."
    )
    v = ember.tensor([1.0, 2.0], requires_grad=True)
    text = repr(ember.sparse_coo_tensor([[0, 1], [1, 0]], v, (2, 2)))
    assert "layout=ember.sparse_coo,\n       grad_fn=<" in text


def test_save_load_round_trip_and_torch_files():
    e, t = _pair()
    buf = io.BytesIO()
    ember.save({"adj": e, "list": [e.coalesce()]}, buf)
    buf.seek(0)
    back = ember.load(buf)
    _same_sparse(back["adj"], t)
    _same_sparse(back["list"][0], t.coalesce())
    leaf, _ = _pair(requires_grad=True)
    buf = io.BytesIO()
    ember.save(leaf, buf)
    buf.seek(0)
    r = ember.load(buf)
    assert r.requires_grad and r.is_leaf
    # PyTorch's zip format both ways
    buf = io.BytesIO()
    ember.save({"adj": e}, buf, _use_new_zipfile_serialization=True)
    buf.seek(0)
    from_ember = torch.load(buf, weights_only=True)["adj"]
    assert from_ember.layout == torch.sparse_coo
    np.testing.assert_array_equal(from_ember.to_dense().numpy(), _np(t.to_dense()))
    buf = io.BytesIO()
    torch.save({"adj": t.coalesce()}, buf)
    buf.seek(0)
    _same_sparse(ember.load(buf)["adj"], t.coalesce())


def test_errors_name_the_op_and_the_layout():
    e, _ = _pair()
    for op in (
        lambda: ember.exp(e),
        lambda: ember.relu(e),
        lambda: e.reshape(9),
        lambda: e.abs(),
        lambda: e[0:2],  # (an integer selects, as in torch: test_small_libs_idioms.py)
        lambda: e > 0,
        lambda: ember.isnan(e),
        lambda: e.numpy(),
        lambda: ember.cat([e, e]),
        lambda: e + 1,
    ):
        with pytest.raises(NotImplementedError, match="sparse_coo"):
            op()
    with pytest.raises(RuntimeError, match=r"add\(sparse, dense\) is not supported"):
        e + ember.ones(3, 3)
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        ember.sparse.mm(e, ember.ones(2, 2))
    with pytest.raises(RuntimeError, match="same nnz"):
        ember.sparse_coo_tensor(IDX, ember.ones(4), (3, 3))
    with pytest.raises(RuntimeError, match="sparse_dim x nnz"):
        ember.sparse_coo_tensor(IDX[0], ember.ones(5), (3, 3))
    with pytest.raises(RuntimeError, match="for dim 0, size is 2 but found index 2"):
        ember.sparse_coo_tensor(IDX, ember.ones(5), (2, 3))
    with pytest.raises(RuntimeError, match="indices expected sparse coordinate tensor layout"):
        ember.ones(2).indices()


def test_legacy_constructor_and_size_keyword():
    # the two idioms that stopped pytorch/examples gcn and gat after sparse support
    assert ember.Tensor(2, 3).shape == (2, 3) and ember.Tensor(4).shape == (4,)
    assert ember.Tensor(ember.Size([2, 1])).shape == (2, 1)
    assert ember.Tensor([1, 2]).tolist() == [1.0, 2.0]
    assert ember.empty(size=(2, 3)).shape == (2, 3) and ember.zeros(size=[4]).shape == (4,)
    assert ember.ones(2, 2).shape == (2, 2) and ember.zeros((1, 2)).shape == (1, 2)
    with pytest.raises(TypeError, match="size given both"):
        ember.zeros(2, size=(2,))


# ---- a graph convolution network, side by side ---------------------------------------------
def _graph(n=40, feats=12, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    edges = rng.integers(0, n, (2, 120))
    adj = np.zeros((n, n), np.float32)
    adj[edges[0], edges[1]] = 1.0
    adj = np.maximum(adj, adj.T) + np.eye(n, dtype=np.float32)
    dinv = 1.0 / np.sqrt(adj.sum(1))
    norm = (dinv[:, None] * adj * dinv[None, :]).astype(np.float32)
    x = (rng.random((n, feats)) < 0.3).astype(np.float32)
    y = rng.integers(0, classes, n)
    w1 = (rng.standard_normal((feats, 8)) * 0.3).astype(np.float32)
    w2 = (rng.standard_normal((8, classes)) * 0.3).astype(np.float32)
    return norm, x, y, w1, w2


def _train_gcn(lib, norm, x, y, w1, w2, steps=8):
    adj = lib.tensor(norm).to_sparse()
    feats = lib.tensor(x).to_sparse()
    labels = lib.tensor(y)
    p1 = lib.nn.Parameter(lib.tensor(w1))
    p2 = lib.nn.Parameter(lib.tensor(w2))
    b = lib.nn.Parameter(lib.zeros(w2.shape[1]))
    opt = lib.optim.Adam([p1, p2, b], lr=0.05, weight_decay=5e-4)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        h = lib.relu(lib.spmm(adj, lib.mm(feats, p1)))
        out = lib.nn.functional.log_softmax(lib.sparse.mm(adj, h @ p2) + b, dim=1)
        loss = lib.nn.functional.nll_loss(out[:30], labels[:30])
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses, p1.detach().numpy()


def test_gcn_training_matches_torch():
    data = _graph()
    le, w_e = _train_gcn(ember, *data)
    lt, w_t = _train_gcn(torch, *data)
    np.testing.assert_allclose(le, lt, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(w_e, w_t, rtol=1e-3, atol=1e-4)
    assert le[-1] < le[0]


def test_docs_snippet_runs():
    import os
    import re

    path = os.path.join(os.path.dirname(__file__), os.pardir, "docs", "sparse.md")
    code = re.search(r"```python\n(.*?)```", open(path).read(), re.S).group(1)
    exec(compile(code, "docs/sparse.md", "exec"), {})


@pytest.mark.gpu
def test_cuda_matches_cpu():
    e, _ = _pair()
    g = e.to("cuda")
    assert g.layout == ember.sparse_coo and g.device.type == "cuda" and g._indices().is_cuda
    d = ember.tensor(np.random.default_rng(3).standard_normal((3, 2)), dtype=ember.float32)
    dc = d.to("cuda").requires_grad_()
    vc = g._values().requires_grad_()
    out = ember.sparse.mm(ember.sparse_coo_tensor(g._indices(), vc, (3, 3)), dc)
    out.sum().backward()
    dd = d.clone().requires_grad_()
    vv = e._values().requires_grad_()
    ember.sparse.mm(ember.sparse_coo_tensor(e._indices(), vv, (3, 3)), dd).sum().backward()
    np.testing.assert_allclose(out.cpu().detach().numpy(), (e @ d).numpy(), rtol=1e-5)
    np.testing.assert_allclose(dc.grad.cpu().numpy(), dd.grad.numpy(), rtol=1e-5)
    np.testing.assert_allclose(vc.grad.cpu().numpy(), vv.grad.numpy(), rtol=1e-5)
    _same = np.testing.assert_allclose
    _same(g.coalesce().to_dense().cpu().numpy(), e.coalesce().to_dense().numpy())
    _same(g.to_dense().to_sparse().to_dense().cpu().numpy(), e.to_dense().numpy())
    _same(
        ember.sparse.softmax(g, 1).to_dense().cpu().numpy(),
        ember.sparse.softmax(e, 1).to_dense().numpy(),
        rtol=1e-6,
    )
    buf = io.BytesIO()
    ember.save(g, buf)
    buf.seek(0)
    assert ember.load(buf).device.type == "cuda"
