"""Vectorized ``jacrev``/``jacfwd``/``hessian`` (a vmapped vjp/jvp over the standard basis)
against ``torch.func``: pytrees, tuple ``argnums``, several outputs, ``has_aux``, ``chunk_size``,
and the row-at-a-time fallback for functions vmap cannot batch."""

from __future__ import annotations

import numpy as np
import pytest

import ember
import ember.func._jacobians_vec as jv
from ember.func import hessian, jacfwd, jacrev

torch = pytest.importorskip("torch")
tf = pytest.importorskip("torch.func")


def _close(got, want):
    if isinstance(want, (tuple, list)):
        assert len(got) == len(want)
        for g, w in zip(got, want):
            _close(g, w)
    elif isinstance(want, dict):
        assert set(got) == set(want)
        for k in want:
            _close(got[k], want[k])
    else:
        np.testing.assert_allclose(
            got.detach().numpy(), want.detach().numpy(), rtol=1e-10, atol=1e-12
        )


def _data(*shape, seed=0):
    x = np.random.default_rng(seed).standard_normal(shape)
    return ember.tensor(x), torch.tensor(x)


@pytest.fixture
def passes(monkeypatch):
    """Counts the vectorized passes (so a test proves the fast path ran)."""
    n = {"rows": 0, "cols": 0}
    rows, cols = jv.jac_rows, jv.jac_cols

    def count_rows(*a):
        n["rows"] += 1
        return rows(*a)

    def count_cols(*a):
        n["cols"] += 1
        return cols(*a)

    monkeypatch.setattr(jv, "MIN_VECTORIZED", 0)  # vectorize these small Jacobians too
    monkeypatch.setattr(jv, "jac_rows", count_rows)
    monkeypatch.setattr("ember.func._jacobians.jac_rows", count_rows)
    monkeypatch.setattr("ember.func._jacobians.jac_cols", count_cols)
    return n


def _fns(mod):
    def two_outputs(x, w):
        h = mod.tanh(w @ x)
        return h.sin(), (h @ w * x).sum()

    def pytree(d):
        return d["a"].exp() * d["b"].sum() + d["b"][:2].cos().sum()

    def with_aux(x, w):
        y = w @ x
        return y.sigmoid(), y.max()

    return two_outputs, pytree, with_aux


# jacfwd has no chunk_size (as torch.func)
@pytest.mark.parametrize("mode,chunk", [("rev", None), ("rev", 1), ("rev", 2), ("fwd", None)])
def test_jacobians_match_torch(mode, chunk, passes):
    xe, xt = _data(4)
    we, wt = _data(3, 4, seed=1)
    de = {"a": xe[:3], "b": we[0]}
    dt = {"a": xt[:3], "b": wt[0]}
    (e2, ep, ea), (t2, tp, ta) = _fns(ember), _fns(torch)
    if mode == "rev":
        ej = lambda f, **k: jacrev(f, chunk_size=chunk, **k)  # noqa: E731
        tj = lambda f, **k: tf.jacrev(f, chunk_size=chunk, **k)  # noqa: E731
    else:
        ej, tj = jacfwd, tf.jacfwd
    _close(ej(e2, argnums=(0, 1))(xe, we), tj(t2, argnums=(0, 1))(xt, wt))
    _close(ej(ep)(de), tj(tp)(dt))
    jac_e, aux_e = ej(ea, argnums=1, has_aux=True)(xe, we)
    jac_t, aux_t = tj(ta, argnums=1, has_aux=True)(xt, wt)
    _close(jac_e, jac_t)
    _close(aux_e, aux_t)
    vectorized = passes["rows"] if mode == "rev" else passes["cols"]
    assert vectorized == (0 if chunk == 1 else 3)


def test_hessian_is_vectorized_and_matches_torch(passes):
    xe, xt = _data(5)
    we, wt = _data(5, 5, seed=2)
    got = hessian(lambda x: (ember.tanh(we @ x) ** 2).sum())(xe)
    _close(got, tf.hessian(lambda x: (torch.tanh(wt @ x) ** 2).sum())(xt))
    assert passes["cols"] == 1 and passes["rows"] >= 1


def test_jacrev_falls_back_to_rows_where_vmap_cannot_batch(passes):
    # masked_select has a data-dependent shape: no batching rule; the Jacobian is still right
    xe, xt = _data(6)
    me, mt = xe > 0, xt > 0
    got = jacrev(lambda x: x * ember.masked_select(x, me).sum())(xe)
    _close(got, tf.jacrev(lambda x: x * torch.masked_select(x, mt).sum())(xt))
    assert passes["rows"] == 1  # tried, then computed row by row


def test_jacrev_bad_chunk_size():
    with pytest.raises(ValueError, match="chunk_size"):
        jacrev(ember.sin, chunk_size=0)


@pytest.mark.parametrize("strategy", ["reverse-mode", "forward-mode"])
def test_autograd_functional_vectorize_matches_torch(strategy, passes):
    from torch.autograd import functional as TF

    from ember.autograd import functional as EF

    xe, xt = _data(4)
    we, wt = _data(3, 4, seed=3)
    (e2, _, _), (t2, _, _) = _fns(ember), _fns(torch)
    kw = dict(vectorize=True, strategy=strategy)
    # torch's forward-mode refuses tuple inputs here ("a forward gradient that has a different
    # size"); the Jacobian is the same as reverse mode's
    _close(EF.jacobian(e2, (xe, we), **kw), TF.jacobian(t2, (xt, wt), vectorize=True))
    _close(EF.jacobian(ember.sin, xe, **kw), TF.jacobian(torch.sin, xt, **kw))
    kw = dict(vectorize=True, outer_jacobian_strategy=strategy)
    _close(
        EF.hessian(lambda x, w: (ember.tanh(w @ x) ** 2).sum(), (xe, we), **kw),
        TF.hessian(lambda x, w: (torch.tanh(w @ x) ** 2).sum(), (xt, wt), **kw),
    )
    assert passes["rows"] + passes["cols"] >= 3
    with pytest.raises(NotImplementedError, match="vectorize=True"):
        EF.jacobian(ember.sin, xe, strategy="forward-mode")


def test_autograd_functional_vectorize_create_graph():
    from ember.autograd import functional as EF

    xe, xt = _data(3)
    xe.requires_grad_(True)
    xt.requires_grad_(True)
    je = EF.jacobian(lambda x: x**3, xe, create_graph=True, vectorize=True)
    jt = torch.autograd.functional.jacobian(lambda x: x**3, xt, create_graph=True, vectorize=True)
    (ge,) = ember.autograd.grad(je.sum(), xe)
    (gt,) = torch.autograd.grad(jt.sum(), xt)
    _close(ge, gt)


def test_small_jacobians_outside_vmap_go_row_by_row(monkeypatch):
    calls = []
    monkeypatch.setattr("ember.func._jacobians.jac_rows", lambda *a: calls.append(a))
    xe, xt = _data(5)
    _close(jacrev(ember.sin)(xe), tf.jacrev(torch.sin)(xt))  # 5 rows < MIN_VECTORIZED
    assert not calls
