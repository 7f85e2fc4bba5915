"""Idioms sentence-transformers (6.3), skorch (1.4) and torchdiffeq (0.2.5) reach in torch when
they run on ember, each a small program of our own checked against torch (none of the three
libraries is a test dependency; docs/porting_examples.md records the programs run through them):

- ``torch._tensor_str.printoptions(precision=4, sci_mode=False)`` around ``str(tensor)``
  (sentence-transformers' model cards), reached as an attribute of ``torch``;
- a contrastive sentence-embedding step: masked mean pooling, ``normalize``, a scaled cosine
  similarity matrix and cross-entropy against ``arange`` labels (MultipleNegativesRankingLoss),
  and the gradient-cache variant that replays the random state with
  ``get_rng_state``/``set_rng_state`` and back-propagates cached embedding gradients;
- a skorch-style classifier: probabilities from ``softmax``, ``NLLLoss`` on their ``log``,
  ``state_dict`` through ``torch.save`` into a buffer, and a pickled module + optimizer;
- sparse COO rows as sentence-transformers' ``SparseEncoder`` handles them: iterating a batch
  (``list.extend``), ``torch.stack`` of the rows, ``x[i]`` / ``select``, ``unsqueeze(0)``, and
  ``torch.mm`` of two sparse matrices (``cos_sim`` / ``dot_score`` of sparse embeddings);
- a torchdiffeq-style ODE: a Runge-Kutta solver that writes its stages into a preallocated
  tensor through an ``autograd.Function`` (``_UncheckedAssign``), and the adjoint method: an
  ``autograd.Function`` whose backward integrates the augmented state backwards with
  ``torch.autograd.grad`` over a tuple of inputs, ``allow_unused=True``.
"""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")
LIBS = {"ember": ember, "torch": torch}


def _np(t):
    return t.detach().cpu().numpy()


# ---- torch._tensor_str.printoptions ------------------------------------------------------------
def test_tensor_str_printoptions_context_manager():
    outs = {}
    for name, lib in LIBS.items():
        x = lib.tensor([[1e-5, 0.123456, 2.5]])
        with lib._tensor_str.printoptions(precision=4, sci_mode=False):
            inside = str(x)
        outs[name] = (inside, str(x), lib._tensor_str.get_printoptions()["sci_mode"])
    assert outs["ember"] == outs["torch"]
    assert "e-05" not in outs["ember"][0] and "e-05" in outs["ember"][1]


def test_tensor_str_printoptions_restores_after_an_error():
    before = ember._tensor_str.get_printoptions()
    with pytest.raises(RuntimeError), ember._tensor_str.printoptions(precision=1):
        raise RuntimeError("inside")
    assert ember._tensor_str.get_printoptions() == before


# ---- sentence-transformers: in-batch negatives ----------------------------------------------
def _encoder(lib, seed=0):
    rng = np.random.default_rng(seed)
    emb = lib.nn.Embedding(20, 8)
    lin = lib.nn.Linear(8, 8)
    with lib.no_grad():
        for p in (*emb.parameters(), *lin.parameters()):
            p.copy_(lib.from_numpy(rng.normal(0, 0.5, tuple(p.shape)).astype(np.float32)))
    return emb, lin


def _pool(lib, emb, lin, ids, mask, drop=0.0):
    tok = lib.nn.functional.dropout(lin(emb(ids)), drop, training=drop > 0)
    m = mask.unsqueeze(-1).to(tok.dtype)
    pooled = (tok * m).sum(1) / lib.clamp(m.sum(1), min=1e-9)
    return lib.nn.functional.normalize(pooled, p=2, dim=1)


def test_multiple_negatives_ranking_loss_matches_torch():
    ids = np.array([[1, 4, 5, 0], [2, 7, 0, 0], [3, 9, 11, 12]])
    pos = np.array([[4, 5, 6, 0], [7, 8, 0, 0], [9, 12, 0, 0]])
    res = {}
    for name, lib in LIBS.items():
        emb, lin = _encoder(lib)
        a = _pool(lib, emb, lin, lib.tensor(ids), lib.tensor(ids > 0))
        p = _pool(lib, emb, lin, lib.tensor(pos), lib.tensor(pos > 0))
        scores = lib.mm(a, p.transpose(0, 1)) * 20.0  # util.cos_sim of normalised rows
        labels = lib.arange(len(scores), device=scores.device)
        loss = lib.nn.functional.cross_entropy(scores, labels)
        loss.backward()
        res[name] = (loss.item(), _np(emb.weight.grad), _np(lin.weight.grad))
    assert res["ember"][0] == pytest.approx(res["torch"][0], rel=1e-5)  # (x20 logits)
    for e, t in zip(res["ember"][1:], res["torch"][1:]):
        np.testing.assert_allclose(e, t, rtol=1e-5, atol=1e-6)


def test_cached_gradients_replay_the_random_state():
    # CachedMultipleNegativesRankingLoss: embed mini-batches without a graph, remember the RNG
    # state, take the loss's gradient w.r.t. the embeddings, then re-embed with the same state
    # (the same dropout masks) and back-propagate the cached gradients into the encoder
    ember.manual_seed(0)
    emb, lin = _encoder(ember)
    ids = ember.tensor([[1, 4, 5, 0], [2, 7, 0, 0], [3, 9, 11, 12], [6, 6, 1, 0]])
    mask = ids > 0
    states, reps = [], []
    for chunk in (slice(0, 2), slice(2, 4)):
        states.append(ember.get_rng_state())
        with ember.no_grad():
            reps.append(_pool(ember, emb, lin, ids[chunk], mask[chunk], drop=0.3))
    r = ember.cat(reps).detach().requires_grad_()
    loss = ember.nn.functional.cross_entropy(r @ r.T * 20.0, ember.arange(4))
    loss.backward()
    for state, chunk in zip(states, (slice(0, 2), slice(2, 4))):
        ember.set_rng_state(state)
        again = _pool(ember, emb, lin, ids[chunk], mask[chunk], drop=0.3)
        np.testing.assert_allclose(_np(again), _np(r[chunk]), rtol=1e-6, atol=1e-7)
        again.backward(r.grad[chunk])
    cached = _np(lin.weight.grad).copy()
    # the same gradient in one graph, with the same two dropout draws
    emb.zero_grad(), lin.zero_grad()
    full = []
    for state, chunk in zip(states, (slice(0, 2), slice(2, 4))):
        ember.set_rng_state(state)
        full.append(_pool(ember, emb, lin, ids[chunk], mask[chunk], drop=0.3))
    f = ember.cat(full)
    ember.nn.functional.cross_entropy(f @ f.T * 20.0, ember.arange(4)).backward()
    np.testing.assert_allclose(cached, _np(lin.weight.grad), rtol=1e-5, atol=1e-6)


# ---- skorch: a classifier's fit / predict_proba / save_params / pickle ----------------------
def _fit_classifier(lib):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 6)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)
    net = lib.nn.Sequential(lib.nn.Linear(6, 8), lib.nn.ReLU(), lib.nn.Linear(8, 2))
    with lib.no_grad():
        for p in net.parameters():
            p.copy_(lib.from_numpy(rng.normal(0, 0.3, tuple(p.shape)).astype(np.float32)))
    opt = lib.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    crit = lib.nn.NLLLoss()
    losses = []
    for _ in range(3):
        for i in range(0, 60, 20):  # skorch's iterator without shuffling
            xb, yb = lib.as_tensor(X[i : i + 20]), lib.as_tensor(y[i : i + 20])
            proba = lib.softmax(net(xb), dim=-1)  # the module returns probabilities
            loss = crit(lib.log(proba + 1e-7), yb)  # NeuralNetClassifier.get_loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    with lib.no_grad():
        proba = lib.softmax(net(lib.as_tensor(X)), dim=-1)
    return net, opt, X, np.array(losses), _np(proba)


def test_classifier_training_state_dict_and_pickle_round_trip():
    e_net, e_opt, X, e_losses, e_proba = _fit_classifier(ember)
    _, _, _, t_losses, t_proba = _fit_classifier(torch)
    np.testing.assert_allclose(e_losses, t_losses, rtol=1e-5)
    np.testing.assert_allclose(e_proba, t_proba, rtol=1e-5, atol=1e-6)
    # save_params / load_params: state_dicts through torch.save into files (here a buffer)
    buf = io.BytesIO()
    ember.save({"module": e_net.state_dict(), "optimizer": e_opt.state_dict()}, buf)
    buf.seek(0)
    state = ember.load(buf)
    net2 = ember.nn.Sequential(ember.nn.Linear(6, 8), ember.nn.ReLU(), ember.nn.Linear(8, 2))
    net2.load_state_dict(state["module"])
    opt2 = ember.optim.SGD(net2.parameters(), lr=0.5)
    opt2.load_state_dict(state["optimizer"])
    assert opt2.param_groups[0]["lr"] == 0.1 and opt2.param_groups[0]["momentum"] == 0.9
    with ember.no_grad():
        np.testing.assert_array_equal(_np(ember.softmax(net2(ember.as_tensor(X)), dim=-1)), e_proba)
    # pickling the whole estimator pickles the module and the optimizer together
    net3, opt3 = pickle.loads(pickle.dumps((e_net, e_opt)))
    assert opt3.param_groups[0]["params"][0] is next(net3.parameters())
    with ember.no_grad():
        np.testing.assert_array_equal(_np(ember.softmax(net3(ember.as_tensor(X)), dim=-1)), e_proba)


# ---- torchdiffeq: a Runge-Kutta solver and the adjoint method --------------------------------
def _unchecked_assign(lib):
    class UncheckedAssign(lib.autograd.Function):
        # writes a stage into the preallocated tensor without bumping its version counter
        @staticmethod
        def forward(ctx, scratch, value, index):
            ctx.index = index
            scratch.data[index] = value
            return scratch

        @staticmethod
        def backward(ctx, grad_scratch):
            return grad_scratch, grad_scratch[ctx.index], None

    return UncheckedAssign


class _Field:
    """dy/dt = tanh(y @ W + b) - 0.1 y, a module-like callable with parameters (W, b)."""

    def __init__(self, lib, rng):
        self.lib = lib
        self.W = lib.tensor(rng.normal(0, 0.5, (2, 2)).astype(np.float32), requires_grad=True)
        self.b = lib.tensor(rng.normal(0, 0.5, (2,)).astype(np.float32), requires_grad=True)

    def __call__(self, t, y):
        return self.lib.tanh(y @ self.W + self.b) - 0.1 * y


def _rk4(lib, f, y0, ts):
    assign = _unchecked_assign(lib)
    ys = [y0]
    y = y0
    for t0, t1 in zip(ts[:-1], ts[1:]):
        dt = t1 - t0
        k = lib.empty(*y.shape, 4, dtype=y.dtype)  # torchdiffeq's `torch.empty(*f0.shape, n)`
        k = assign.apply(k, f(t0, y), (..., 0))
        k = assign.apply(k, f(t0 + dt / 2, y + dt / 2 * k[..., 0]), (..., 1))
        k = assign.apply(k, f(t0 + dt / 2, y + dt / 2 * k[..., 1]), (..., 2))
        k = assign.apply(k, f(t1, y + dt * k[..., 2]), (..., 3))
        w = lib.tensor([1.0, 2.0, 2.0, 1.0], dtype=y.dtype) * (dt / 6)
        y = y + lib.sum(k * w, dim=-1)
        ys.append(y)
    return lib.stack(ys)


def _adjoint(lib, f, params):
    class Adjoint(lib.autograd.Function):
        @staticmethod
        def forward(ctx, y0, ts, *ps):
            with lib.no_grad():
                ys = _rk4(lib, f, y0, ts)
            ctx.save_for_backward(ts, ys)
            return ys

        @staticmethod
        def backward(ctx, grad_ys):
            ts, ys = ctx.saved_tensors
            n = len(params)

            def aug(t, state):  # (y, a, *a_params) backwards in time
                y, a = state[0], state[1]
                with lib.enable_grad():
                    y = y.detach().requires_grad_(True)
                    fy = f(t, y)
                    grads = lib.autograd.grad(
                        fy, (y, *params), -a, allow_unused=True, retain_graph=True
                    )
                grads = [lib.zeros_like(p) if g is None else g for p, g in zip((y, *params), grads)]
                return (fy, *grads)

            adj_y = grad_ys[-1]
            adj_p = [lib.zeros_like(p) for p in params]
            for i in range(len(ts) - 1, 0, -1):
                state = [ys[i], adj_y, *adj_p]
                h = ts[i - 1] - ts[i]
                for _ in range(4):  # 4 Euler-RK4 substeps of the augmented system
                    s1 = aug(ts[i], state)
                    s2 = aug(ts[i], [s + h / 8 * d for s, d in zip(state, s1)])
                    s3 = aug(ts[i], [s + h / 8 * d for s, d in zip(state, s2)])
                    s4 = aug(ts[i], [s + h / 4 * d for s, d in zip(state, s3)])
                    state = [
                        s + h / 24 * (a + 2 * b + 2 * c + d)
                        for s, a, b, c, d in zip(state, s1, s2, s3, s4)
                    ]
                adj_y = state[1] + grad_ys[i - 1]
                adj_p = state[2 : 2 + n]
            return (adj_y, None, *adj_p)

    return Adjoint


def test_runge_kutta_through_unchecked_assign_matches_torch():
    res = {}
    for name, lib in LIBS.items():
        f = _Field(lib, np.random.default_rng(0))
        y0 = lib.tensor([[1.0, -0.5], [0.3, 0.8]], requires_grad=True)
        ts = lib.linspace(0.0, 1.0, 6)
        ys = _rk4(lib, f, y0, ts)
        loss = (ys[-1] ** 2).sum() + ys[2].sum()
        gy0, gW, gb = lib.autograd.grad(loss, (y0, f.W, f.b))
        res[name] = [_np(ys), _np(gy0), _np(gW), _np(gb)]
    for e, t in zip(res["ember"], res["torch"]):
        np.testing.assert_allclose(e, t, rtol=1e-5, atol=1e-6)


def test_adjoint_gradients_match_backprop_and_torch():
    res = {}
    for name, lib in LIBS.items():
        f = _Field(lib, np.random.default_rng(1))
        y0 = lib.tensor([[1.0, -0.5]], requires_grad=True)
        ts = lib.linspace(0.0, 1.0, 5)
        ys = _adjoint(lib, f, (f.W, f.b)).apply(y0, ts, f.W, f.b)
        loss = (ys[-1] ** 2).sum() + ys[1].sum()
        g_adj = lib.autograd.grad(loss, (y0, f.W, f.b))
        direct = _rk4(lib, f, y0, ts)
        loss2 = (direct[-1] ** 2).sum() + direct[1].sum()
        g_bp = lib.autograd.grad(loss2, (y0, f.W, f.b))
        for a, b in zip(g_adj, g_bp):  # the adjoint is a different discretisation: close only
            np.testing.assert_allclose(_np(a), _np(b), rtol=2e-3, atol=2e-4)
        res[name] = [_np(ys)] + [_np(g) for g in g_adj]
    for e, t in zip(res["ember"], res["torch"]):
        np.testing.assert_allclose(e, t, rtol=1e-5, atol=1e-6)


# ---- sentence-transformers' SparseEncoder: rows of sparse COO embeddings ---------------------
_SPARSE = np.array(
    [[0.0, 1.5, 0.0, 0.0, 2.0], [0.0, 0.0, 0.0, 0.0, 0.0], [3.0, 0.0, 0.5, 0.0, 1.0]]
)


def _dense(t):
    return _np(t.to_dense()) if t.is_sparse else _np(t)


def test_sparse_rows_iterate_stack_select_and_unsqueeze_like_torch():
    res = {}
    for name, lib in LIBS.items():
        batch = lib.tensor(_SPARSE, dtype=lib.float32).to_sparse()
        rows = []
        rows.extend(batch)  # SparseEncoder.encode collects the rows of each batch
        back = lib.stack([rows[i] for i in (2, 0, 1)])  # ... in their original order
        one = batch[2].unsqueeze(0).coalesce()  # SparseEncoder.decode of one embedding
        res[name] = [
            [r.is_sparse for r in rows],
            [_dense(r) for r in rows],
            back.is_sparse,
            _dense(back),
            _dense(batch.select(1, 4)),
            _dense(back[0][2]),
            tuple(one.shape),
            _np(one.indices()),
            _np(one.values()),
        ]
    e, t = res["ember"], res["torch"]
    assert e[0] == t[0] == [True] * 3 and e[2] and t[2] and e[6] == t[6]
    for a, b in zip(e[1] + e[3:6] + e[7:], t[1] + t[3:6] + t[7:]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support")  # (torch's own)
def test_sparse_mm_sparse_is_sparse_and_differentiable():
    res = {}
    for name, lib in LIBS.items():
        x = lib.tensor(_SPARSE, dtype=lib.float32, requires_grad=True)
        s = x.to_sparse()
        norm = lib.tensor([1.0, 2.0, 0.5])
        sims = lib.mm(s, s.t())  # util.dot_score(a, b) of sparse embeddings
        assert sims.is_sparse
        (sims.to_dense() * norm).sum().backward()
        res[name] = (_dense(sims), _dense(x.grad))
    np.testing.assert_allclose(res["ember"][0], res["torch"][0], rtol=1e-6)
    # ember's gradient stays on the stored entries; torch's is dense: compare those entries
    stored = _SPARSE != 0
    np.testing.assert_allclose(res["ember"][1][stored], res["torch"][1][stored], rtol=1e-6)


def test_sparse_indexing_refuses_what_it_cannot_do():
    s = ember.tensor(_SPARSE).to_sparse()
    for op in (lambda: s[0:2], lambda: s.reshape(15), lambda: s[..., 1, 2]):
        with pytest.raises(NotImplementedError, match="sparse_coo"):
            op()
    with pytest.raises(IndexError, match="out of range"):
        s[3]
    with pytest.raises(RuntimeError, match="equal size"):
        ember.stack([s[0], ember.tensor([1.0, 0.0]).to_sparse()])
