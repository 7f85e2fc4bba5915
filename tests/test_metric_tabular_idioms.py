"""Idioms pytorch-metric-learning (2.9), pytorch-tabnet (4.1) and torch-optimizer (0.3) reach in
torch when they run on ember, each a small program of our own checked against torch (none of the
three libraries is a test dependency; docs/porting_examples.md records the programs run through
them):

- ``y = relu(x) ** 2; y /= 2`` before ``backward`` (LiftedStructureLoss): ``pow`` by a number
  keeps its input, not its result, so the in-place division is legal;
- ``mat[pairs.tolist()]`` with ``pairs`` a ``2 x n`` index (HistogramLoss): torch reads a short
  list holding sequences as the tuple of its items, for reading and for writing;
- ``torch.randint_like(p, high=2, memory_format=torch.preserve_format) * 2 - 1`` Rademacher
  vectors in a Hutchinson Hessian-diagonal estimate (AdaHessian), the same numbers as torch's
  under the same seed;
- a metric-learning step: pairwise distances, label masks by broadcasting, semi-hard triplet
  mining with ``where``/``masked_fill``, ``logsumexp`` over masked rows, kNN precision with
  ``topk``;
- TabNet's sparsemax as an ``autograd.Function`` with its own backward, ghost batch norm
  through ``chunk``;
- an optimizer written against ``Optimizer``'s internals (``state``, ``param_groups``,
  ``addcdiv_(value=)``, ``lerp_``, ``torch.max(a, b, out=...)``), stepped beside torch's.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")
LIBS = {"ember": ember, "torch": torch}


def _np(t):
    return t.detach().cpu().numpy()


def _both(fn, *args):
    return {name: fn(lib, *args) for name, lib in LIBS.items()}


# ---- pow by a number, then an in-place op on its result ---------------------------------------


def _lifted(T, x0):
    x = T.tensor(x0, requires_grad=True)
    y = T.relu(x - 0.2) ** 2
    y /= 2  # in place on pow's output: torch saves pow's input only
    (y * T.arange(x0.size, dtype=T.float32).reshape(x0.shape)).sum().backward()
    return _np(y), _np(x.grad)


def test_pow_result_modified_in_place_then_backward():
    x0 = np.random.RandomState(0).randn(6, 3).astype(np.float32)
    r = _both(_lifted, x0)
    for a, b in zip(r["ember"], r["torch"]):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_pow_tensor_exponent_still_guards_its_result():
    # the exponent's gradient needs a**b, so torch (and ember) refuse an in-place change of it
    for T in LIBS.values():
        b = T.tensor(2.0, requires_grad=True)
        y = T.tensor([1.0, 2.0]) ** b
        y.mul_(2)
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            y.sum().backward()


# ---- a list of index lists reads as a tuple ---------------------------------------------------


def _histogram_pairs(T, emb0, labels0):
    emb = T.tensor(emb0, requires_grad=True)
    labels = T.tensor(labels0)
    e = T.nn.functional.normalize(emb, dim=1)
    mat = e @ e.t()
    same = labels[:, None] == labels[None, :]
    same.fill_diagonal_(False)
    a, p = T.where(same)
    t = T.stack([a, p])
    t, _ = T.sort(t, dim=0)
    pairs = T.unique(t, dim=1).tolist()  # [[rows...], [cols...]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch's deprecation of x[list]
        d = mat[pairs]
    # a soft histogram of the similarities, as HistogramLoss builds it
    delta = 0.25
    r = T.floor((d.detach() + 1) / delta).long()
    frac = (d + 1 - r * delta) / delta
    dens = T.zeros(round(1 + 2 / delta)).scatter_add(0, r + 1, frac)
    dens = dens.scatter_add(0, r, 1 - frac)
    loss = (T.cumsum(dens, 0) * dens).sum() / len(pairs[0])
    loss.backward()
    return float(loss.detach()), _np(emb.grad), _np(d)


def test_nested_list_index_is_a_tuple_of_indices():
    rng = np.random.RandomState(1)
    emb0 = rng.randn(12, 5).astype(np.float32)
    labels0 = rng.randint(0, 3, 12)
    r = _both(_histogram_pairs, emb0, labels0)
    np.testing.assert_allclose(r["ember"][2], r["torch"][2], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(r["ember"][0], r["torch"][0], rtol=1e-5)
    np.testing.assert_allclose(r["ember"][1], r["torch"][1], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    "make_idx",
    [
        lambda T: [[0, 2], [1, 3]],
        lambda T: [T.tensor([0, 2]), T.tensor([1, 1])],
        lambda T: [0, slice(1, 3)],
        lambda T: [None, 1],
        lambda T: [Ellipsis, 2],
        lambda T: [[0, 2]],
        lambda T: [0, 2],  # plain ints: still one index array along dim 0
    ],
)
def test_list_index_reads_and_writes_like_torch(make_idx):
    base = np.arange(12.0, dtype=np.float32).reshape(3, 4)
    out = {}
    for name, T in LIBS.items():
        t = T.tensor(base)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            got = _np(t[make_idx(T)])
            t[make_idx(T)] = -1.0
        out[name] = got, _np(t)
    for a, b in zip(out["ember"], out["torch"]):
        assert a.shape == b.shape
        np.testing.assert_array_equal(a, b)


def test_list_index_warns_as_torch_does():
    t = ember.arange(6.0).reshape(2, 3)
    with pytest.warns(UserWarning, match="non-tuple sequence"):
        t[[[0, 1], [2, 2]]]


# ---- randint_like Rademacher vectors (AdaHessian) ---------------------------------------------


def _hutchinson(T, w0, x0):
    T.manual_seed(3)
    w = T.tensor(w0, requires_grad=True)
    x = T.tensor(x0)
    loss = (T.tanh(x @ w) ** 2).sum()
    (g,) = T.autograd.grad(loss, [w], create_graph=True)
    z = T.randint_like(w, high=2, memory_format=T.preserve_format) * 2 - 1
    (hz,) = T.autograd.grad(g, [w], grad_outputs=z)
    return _np(z), _np(hz * z)


def test_randint_like_high_keyword_and_hessian_diagonal():
    rng = np.random.RandomState(2)
    w0, x0 = rng.randn(4, 3).astype(np.float32), rng.randn(5, 4).astype(np.float32)
    r = _both(_hutchinson, w0, x0)
    np.testing.assert_array_equal(r["ember"][0], r["torch"][0])  # torch's stream
    assert set(np.unique(r["ember"][0])) <= {-1.0, 1.0}
    np.testing.assert_allclose(r["ember"][1], r["torch"][1], rtol=1e-5, atol=1e-6)


def test_like_creators_take_generator_and_memory_format():
    for T in LIBS.values():
        p = T.zeros(2, 3)
        g = T.Generator().manual_seed(7)
        a = T.rand_like(p, generator=g, memory_format=T.preserve_format)
        b = T.randn_like(p, memory_format=T.preserve_format)
        c = T.randint_like(p, 4, 9, memory_format=T.preserve_format)
        assert a.shape == b.shape == c.shape == p.shape and c.dtype == p.dtype
        assert 4 <= float(c.min()) and float(c.max()) < 9
    e = ember.rand_like(ember.zeros(5), generator=ember.Generator().manual_seed(7))
    t = torch.rand_like(torch.zeros(5), generator=torch.Generator().manual_seed(7))
    np.testing.assert_array_equal(_np(e), _np(t))


# ---- a metric-learning step: distances, masks, mining, logsumexp, kNN -------------------------


def _metric_step(T, emb0, labels0):
    emb = T.tensor(emb0, requires_grad=True)
    labels = T.tensor(labels0)
    e = T.nn.functional.normalize(emb, p=2, dim=1)
    dist = T.cdist(e, e)
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    eye = T.eye(len(labels), dtype=T.bool)
    pos, neg = same & ~eye, ~same
    # semi-hard triplets: every (a, p, n) with d(a,p) < d(a,n) < d(a,p) + margin
    a, p, n = T.where(pos.unsqueeze(2) & neg.unsqueeze(1))
    ap, an = dist[a, p], dist[a, n]
    keep = (an > ap) & (an < ap + 0.5)
    triplet = T.relu(ap - an + 0.5)[keep].mean()
    # multi-similarity-style soft terms over masked rows
    sim = e @ e.t()
    pos_term = T.logsumexp((-2 * (sim - 0.5)).masked_fill(~pos, -1e4), dim=1)
    neg_term = T.logsumexp((40 * (sim - 0.5)).masked_fill(~neg, -1e4), dim=1)
    ms = (T.nn.functional.softplus(pos_term) / 2 + T.nn.functional.softplus(neg_term) / 40).mean()
    loss = triplet + ms
    loss.backward()
    # kNN precision@1 without faiss: the nearest other sample's label
    with T.no_grad():
        _, idx = T.topk(dist.masked_fill(eye, float("inf")), k=1, dim=1, largest=False)
        p_at_1 = (labels[idx.squeeze(1)] == labels).float().mean()
        counts = T.bincount(labels)
    return (
        float(loss.detach()),
        _np(emb.grad),
        int(keep.sum()),
        float(p_at_1),
        _np(counts),
        _np(T.unique(labels)),
    )


def test_metric_learning_step_matches_torch():
    rng = np.random.RandomState(4)
    emb0 = rng.randn(24, 8).astype(np.float32)
    labels0 = rng.randint(0, 4, 24)
    r = _both(_metric_step, emb0, labels0)
    e, t = r["ember"], r["torch"]
    np.testing.assert_allclose(e[0], t[0], rtol=1e-5)
    np.testing.assert_allclose(e[1], t[1], rtol=1e-4, atol=1e-6)
    assert e[2] == t[2] and e[3] == t[3]
    np.testing.assert_array_equal(e[4], t[4])
    np.testing.assert_array_equal(e[5], t[5])


# ---- sparsemax as an autograd.Function; ghost batch norm through chunk ------------------------


def _sparsemax_fn(T):
    class Sparsemax(T.autograd.Function):
        @staticmethod
        def forward(ctx, x, dim=-1):
            ctx.dim = dim
            x = x - x.max(dim=dim, keepdim=True).values
            zs, _ = T.sort(x, dim=dim, descending=True)
            rng = T.arange(1, x.size(dim) + 1, dtype=x.dtype)
            view = [1] * x.dim()
            view[0] = -1
            rng = rng.view(view).transpose(0, dim)
            support = rng * zs > T.cumsum(zs, dim) - 1
            k = support.sum(dim=dim, keepdim=True)
            tau = (T.cumsum(zs, dim).gather(dim, k - 1) - 1) / k.to(x.dtype)
            out = T.clamp(x - tau, min=0)
            ctx.save_for_backward(out)
            return out

        @staticmethod
        def backward(ctx, grad_output):
            (out,) = ctx.saved_tensors
            dim = ctx.dim
            grad_input = grad_output.clone()
            grad_input[out == 0] = 0
            v_hat = grad_input.sum(dim=dim) / (out != 0).sum(dim=dim).to(out.dtype)
            grad_input = T.where(out != 0, grad_input - v_hat.unsqueeze(dim), grad_input)
            return grad_input, None

    return Sparsemax


def _tabnet_block(T, x0, w0):
    T.manual_seed(0)
    bn = T.nn.BatchNorm1d(w0.shape[0], momentum=0.02)
    x = T.tensor(x0)
    w = T.tensor(w0, requires_grad=True)
    h = x @ w.t()
    h = T.cat([bn(c) for c in h.chunk(int(np.ceil(h.shape[0] / 4)), 0)], dim=0)  # ghost BN
    m = _sparsemax_fn(T).apply(h, -1)
    loss = (m * T.linspace(-1, 1, m.shape[1])).sum() + T.mean(T.sum(m * T.log(m + 1e-15), dim=1))
    loss.backward()
    return _np(m), _np(w.grad), _np(bn.running_mean), _np(bn.running_var)


def test_sparsemax_function_and_ghost_batch_norm():
    rng = np.random.RandomState(5)
    x0, w0 = rng.randn(16, 6).astype(np.float32), rng.randn(5, 6).astype(np.float32)
    r = _both(_tabnet_block, x0, w0)
    for a, b in zip(r["ember"], r["torch"]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(r["ember"][0].sum(1), 1.0, rtol=1e-5)


# ---- an optimizer written against Optimizer's internals ---------------------------------------


def _adamod_like(T):
    class AdaModLike(T.optim.Optimizer):
        def __init__(self, params, lr=1e-2, betas=(0.9, 0.999), beta3=0.99, eps=1e-8):
            super().__init__(params, dict(lr=lr, betas=betas, beta3=beta3, eps=eps))

        @T.no_grad()
        def step(self, closure=None):
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    state = self.state[p]
                    if len(state) == 0:
                        state["step"] = 0
                        state["exp_avg"] = T.zeros_like(p, memory_format=T.preserve_format)
                        state["exp_avg_sq"] = T.zeros_like(p)
                        state["exp_avg_lr"] = T.zeros_like(p)
                    b1, b2 = group["betas"]
                    state["step"] += 1
                    state["exp_avg"].lerp_(p.grad, 1 - b1)
                    state["exp_avg_sq"].mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
                    denom = state["exp_avg_sq"].sqrt().add_(group["eps"])
                    bc1, bc2 = 1 - b1 ** state["step"], 1 - b2 ** state["step"]
                    step_size = group["lr"] * bc2**0.5 / bc1
                    lrs = T.full_like(denom, step_size).div_(denom)
                    state["exp_avg_lr"].mul_(group["beta3"]).add_(lrs, alpha=1 - group["beta3"])
                    T.min(lrs, state["exp_avg_lr"], out=lrs)
                    T.max(lrs, T.zeros_like(lrs), out=lrs)
                    p.addcdiv_(state["exp_avg"] * lrs, T.ones_like(lrs), value=-1)

    return AdaModLike


def _run_optimizer(T, w0):
    w = T.nn.Parameter(T.tensor(w0))
    opt = _adamod_like(T)([{"params": [w], "lr": 5e-2}])
    traj = []
    for _ in range(20):
        opt.zero_grad()
        x, y = w[0], w[1]
        ((1 - x) ** 2 + 100 * (y - x**2) ** 2).backward()
        opt.step()
        traj.append(_np(w).copy())
    sd = opt.state_dict()
    return np.array(traj), sd["state"][0]["step"], sd["param_groups"][0]["lr"]


def test_optimizer_internals_step_for_step():
    w0 = np.array([1.5, 1.5], np.float32)
    r = _both(_run_optimizer, w0)
    np.testing.assert_allclose(r["ember"][0], r["torch"][0], rtol=1e-5, atol=1e-6)
    assert r["ember"][1:] == r["torch"][1:] == (20, 5e-2)


def test_porting_examples_snippet_runs(capsys):
    import pathlib

    doc = pathlib.Path(__file__).resolve().parents[1] / "docs" / "porting_examples.md"
    head = "\n## pytorch-metric-learning, TabNet, torch-optimizer\n"
    section = doc.read_text().split(head, 1)[1].split("\n## ", 1)[0]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(code, "metric-tabular-doc", "exec"), {})
    assert capsys.readouterr().out.strip() == "[0.5, 0.0, 2.0] [1.0, 11.0] [-1.0, 1.0, 1.0]"
