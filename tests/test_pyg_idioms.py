"""Idioms PyTorch Geometric (torch_geometric 2.8) reaches in torch when it runs on ember, each a
small program of our own checked against torch (PyG is not a test dependency;
docs/porting_examples.md records the programs run through it):

- names read at import: ``torch.__config__.show()``, ``torch._tensor_str``'s ``PRINT_OPTS`` and
  ``_tensor_str``, ATen's internal ops (``torch.ops.aten._to_copy`` / ``index.Tensor`` /
  ``slice.Tensor`` / ``alias`` / ``_pin_memory``), ``torch.jit.script`` of a class,
  ``torch.distributed.rpc.api._require_initialized``;
- ``edge_index[:, mask].view(-1)``: advanced indexing returns a contiguous tensor;
- CSR segments: ``torch.segment_reduce`` / ``torch._segment_reduce`` (``softmax(ptr=...)``),
  ``torch._convert_indices_from_coo_to_csr`` / ``_csr_to_coo`` and
  ``torch.sparse.mm(csr, x, reduce)``;
- a graph network of our own: GCN normalisation with ``index_add_``, attention over edges
  (a segment softmax through ``scatter_reduce`` with ``amax``), max aggregation with
  ``scatter_reduce_``, mean pooling per graph, trained for a few Adam steps.
"""

from __future__ import annotations

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")
LIBS = {"ember": ember, "torch": torch}


def _np(t):
    return t.detach().cpu().numpy()


# ---- names read at import ------------------------------------------------------------------
def test_config_show_and_parallel_info():
    text = ember.__config__.show()
    assert "USE_MKL=" in text and isinstance(ember.__config__.parallel_info(), str)


def test_tensor_str_module():
    from ember._tensor_str import PRINT_OPTS, _tensor_str

    t = [[1.0, 2.5], [3.0, 4.0]]
    assert _tensor_str(ember.tensor(t), indent=0) == torch._tensor_str._tensor_str(
        torch.tensor(t), indent=0
    )
    assert PRINT_OPTS.precision == torch._tensor_str.PRINT_OPTS.precision == 4


def test_aten_internal_ops():
    aten = ember.ops.aten
    x = ember.arange(12.0).view(3, 4)
    tx = torch.arange(12.0).view(3, 4)
    c = aten._to_copy.default(x, dtype=ember.float64)
    assert c.dtype == ember.float64 and np.array_equal(_np(c), _np(tx))
    i = ember.tensor([2, 0])
    ti = torch.tensor([2, 0])
    assert np.array_equal(
        _np(aten.index.Tensor(x, [None, i])), _np(torch.ops.aten.index.Tensor(tx, [None, ti]))
    )
    assert np.array_equal(
        _np(aten.slice.Tensor(x, 1, 1, 4, 2)), _np(torch.ops.aten.slice.Tensor(tx, 1, 1, 4, 2))
    )
    a = aten.alias.default(x)
    a[0, 0] = 100.0  # a view: writes reach x
    assert x[0, 0].item() == 100.0
    assert callable(aten._pin_memory.default)  # (pinning itself needs a CUDA device)


def test_jit_script_of_a_class_returns_it():
    class SelectOutput:  # PyG scripts its NamedTuple-like output classes at import
        def __init__(self, index, num: int):
            self.index, self.num = index, num

    assert ember.jit.script(SelectOutput) is SelectOutput
    assert SelectOutput(ember.tensor([1]), 1).num == 1


def test_rpc_require_initialized():
    from ember.distributed import rpc

    @rpc.api._require_initialized
    def gather(obj):
        return obj

    with pytest.raises(RuntimeError, match="RPC has not been initialized"):
        gather(1)


# ---- indexing ------------------------------------------------------------------------------
@pytest.mark.parametrize("key", ["mask", "ids"])
def test_advanced_index_result_is_contiguous(key):
    outs = {}
    for name, lib in LIBS.items():
        ei = lib.arange(20).view(2, 10)
        idx = ei[0] % 3 == 0 if key == "mask" else lib.tensor([1, 2, 5])
        sub = ei[:, idx]
        outs[name] = (sub.stride(), _np(sub.view(-1)))  # PyG's subgraph relabelling
    assert outs["ember"][0] == outs["torch"][0]
    assert np.array_equal(outs["ember"][1], outs["torch"][1])
    assert ember.arange(24).view(2, 3, 4)[:, :, [0, 1]].is_contiguous()


# ---- CSR segments --------------------------------------------------------------------------
DATA = [1.0, 3.0, 3.0, 2.0, 5.0, 0.0, -2.0, 0.0, 4.0]
LENGTHS = [3, 0, 2, 1, 3]


@pytest.mark.parametrize("reduce", ["sum", "mean", "max", "min", "amax", "prod"])
@pytest.mark.parametrize("initial", [None, 2.0])
@pytest.mark.parametrize("by", ["lengths", "offsets"])
def test_segment_reduce_matches_torch(reduce, initial, by):
    res = {}
    for name, lib in LIBS.items():
        d = lib.tensor(DATA, requires_grad=True)
        lens = lib.tensor(LENGTHS)
        kw = {"lengths": lens} if by == "lengths" else {"offsets": lib.tensor([0, 3, 3, 5, 6, 9])}
        out = lib._segment_reduce(d, reduce, initial=initial, **kw)
        (g,) = lib.autograd.grad((out.nan_to_num(0, 0, 0) * lib.arange(1.0, 6.0)).sum(), d)
        res[name] = (_np(out), _np(g))
    np.testing.assert_allclose(res["ember"][0], res["torch"][0], rtol=1e-6)
    np.testing.assert_allclose(res["ember"][1], res["torch"][1], rtol=1e-6)


def test_segment_reduce_axis_and_errors():
    outs = [
        _np(
            lib.segment_reduce(
                lib.arange(24.0).view(2, 6, 2),
                "sum",
                lengths=lib.tensor([[2, 4], [3, 3]]),
                axis=1,
            )
        )
        for lib in (ember, torch)
    ]
    np.testing.assert_allclose(outs[0], outs[1])
    with pytest.raises(RuntimeError, match="sum to data.size"):
        ember.segment_reduce(ember.ones(6), "sum", lengths=ember.tensor([3, 1]))
    with pytest.raises(RuntimeError, match="reduce argument must be"):
        ember.segment_reduce(ember.ones(6), "median", lengths=ember.tensor([3, 3]))


def test_convert_indices_coo_csr():
    for fn, args, kw in [
        ("_convert_indices_from_coo_to_csr", ([0, 0, 2, 2, 2],), {"size": 4}),
        ("_convert_indices_from_coo_to_csr", ([0, 1, 1],), {"size": 3, "out_int32": True}),
        ("_convert_indices_from_csr_to_coo", ([0, 2, 2, 3], [1, 0, 2]), {}),
        ("_convert_indices_from_csr_to_coo", ([0, 2, 2, 3], [1, 0, 2]), {"transpose": True}),
    ]:
        e, t = (getattr(lib, fn)(*map(lib.tensor, args), **kw) for lib in (ember, torch))
        assert np.array_equal(_np(e), _np(t)) and str(e.dtype)[6:] == str(t.dtype)[6:]


@pytest.mark.parametrize("reduce", ["sum", "mean", "max", "min", "amax", "amin"])
def test_sparse_mm_reduce_matches_torch(reduce):
    rng = np.random.default_rng(0)
    dense = rng.standard_normal((7, 5)).astype(np.float32) * (rng.random((7, 5)) < 0.4)
    dense[3] = 0  # an empty row: 0 for every reduce
    other = rng.standard_normal((5, 3)).astype(np.float32)
    w = rng.standard_normal((7, 3)).astype(np.float32)
    res = {}
    for name, lib in LIBS.items():
        a = lib.tensor(dense).to_sparse_csr()
        b = lib.tensor(other, requires_grad=True)
        out = lib.sparse.mm(a, b, reduce)
        (g,) = lib.autograd.grad((out * lib.tensor(w)).sum(), b)
        res[name] = (_np(out), _np(g))
    np.testing.assert_allclose(res["ember"][0], res["torch"][0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(res["ember"][1], res["torch"][1], rtol=1e-5, atol=1e-6)
    with pytest.raises(RuntimeError, match="CSR"):
        ember.sparse.mm(ember.tensor(dense).to_sparse(), ember.tensor(other), "max")


# ---- a graph network of our own --------------------------------------------------------------
def _graph():
    rng = np.random.default_rng(1)
    n, e = 40, 120
    src, dst = rng.integers(0, n, e), rng.integers(0, n, e)
    ei = np.concatenate([np.stack([src, dst]), np.stack([dst, src])], 1)  # undirected
    x = rng.standard_normal((n, 6)).astype(np.float32)
    batch = np.repeat(np.arange(4), n // 4)
    y = rng.integers(0, 3, 4)
    return x, ei, batch, y


def _gnn_losses(lib, weights, steps=4):
    x_np, ei_np, batch_np, y_np = _graph()
    x, y = lib.tensor(x_np), lib.tensor(y_np)
    src, dst = lib.tensor(ei_np[0]), lib.tensor(ei_np[1])
    batch = lib.tensor(batch_np)
    n = x.shape[0]
    params = [lib.tensor(w, requires_grad=True) for w in weights]
    w1, att, w2, head = params
    opt = lib.optim.Adam(params, lr=0.01)
    losses = []
    for _ in range(steps):
        # GCN: symmetric normalisation with self loops, aggregated by index_add_
        loop = lib.arange(n)
        s, d = lib.cat([src, loop]), lib.cat([dst, loop])
        deg = lib.zeros(n).index_add_(0, d, lib.ones(d.shape[0]))
        norm = deg.pow(-0.5)[s] * deg.pow(-0.5)[d]
        h = x @ w1
        h = lib.zeros(n, h.shape[1]).index_add_(0, d, h[s] * norm.unsqueeze(1)).relu()
        # attention over incoming edges: softmax per target via scatter_reduce amax
        logit = lib.nn.functional.leaky_relu((h[s] * h[d] * att).sum(-1), 0.2)
        mx = lib.full((n,), -1e9).scatter_reduce(0, d, logit, "amax", include_self=True)
        ex = (logit - mx[d]).exp()
        den = lib.zeros(n).index_add_(0, d, ex)
        alpha = ex / den[d]
        msg = h[s] * alpha.unsqueeze(1)
        h2 = lib.zeros(n, h.shape[1]).index_add_(0, d, msg)
        # max aggregation with scatter_reduce_, as SAGEConv(aggr="max")
        idx = d.unsqueeze(1).expand(-1, h.shape[1])
        hmax = lib.zeros(n, h.shape[1]).scatter_reduce_(0, idx, h[s], "amax", include_self=False)
        z = lib.cat([h2, hmax], 1) @ w2
        # mean pooling per graph (global_mean_pool)
        cnt = lib.zeros(4).index_add_(0, batch, lib.ones(n))
        pooled = lib.zeros(4, z.shape[1]).index_add_(0, batch, z) / cnt.unsqueeze(1)
        loss = lib.nn.functional.cross_entropy(pooled @ head, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return np.array(losses)


def test_message_passing_program_matches_torch():
    rng = np.random.default_rng(2)
    shapes = [(6, 8), (8,), (16, 8), (8, 3)]
    weights = [(0.3 * rng.standard_normal(s)).astype(np.float32) for s in shapes]
    mine, ref = _gnn_losses(ember, weights), _gnn_losses(torch, weights)
    np.testing.assert_allclose(mine, ref, rtol=1e-5)


def test_doc_snippet_runs():
    import os

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "docs", "porting_examples.md"), encoding="utf-8") as f:
        section = f.read().split("## PyTorch Geometric", 1)[1]
    snippet = section.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(snippet, "docs/porting_examples.md", "exec"), {})
