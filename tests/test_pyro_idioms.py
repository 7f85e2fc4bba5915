"""The torch.distributions idioms Pyro programs rely on, each against PyTorch.

Pyro (pyro-ppl 1.9.2) runs on ember with ``torch`` resolved to ember (docs/porting_examples.md,
"Pyro"). These tests are small programs of our own with the same idioms, without importing Pyro:
a KL rule registered on a mixin base class, ``torch._C._get_tracing_state``, the serialization
type aliases, a reparameterized ELBO and its gradient, an enumerated mixture likelihood, an HMC
potential energy over ``biject_to`` transforms, and the structured distributions Pyro wraps.
"""

from __future__ import annotations

import numpy as np
import pytest

import ember
import ember.distributions as ED
from ember.distributions import constraints as EC

torch = pytest.importorskip("torch")
TD = torch.distributions
TC = TD.constraints


def _close(e, t, rtol=1e-5, atol=1e-5):
    np.testing.assert_allclose(e.detach().numpy(), t.detach().numpy(), rtol=rtol, atol=atol)


# ---- the fixes Pyro's import and SVI loop needed ---------------------------------------------
def _kl_on_mixin(D, lib):
    """Pyro registers KL rules on its own ``Distribution`` base, a mixin that is not a
    subclass of torch's; both libraries must accept it and dispatch through it."""

    class Mixin:  # like pyro.distributions.Distribution (not a torch Distribution)
        pass

    class Point(D.Distribution, Mixin):  # like pyro's Delta: torch base + Pyro's mixin
        arg_constraints: dict = {}

    @D.kl.register_kl(Mixin, D.Normal)
    def _kl(p, q):
        return lib.tensor(42.0)

    return D.kl_divergence(Point(validate_args=False), D.Normal(lib.tensor(1.0), lib.tensor(2.0)))


def test_register_kl_accepts_a_mixin_base_like_torch():
    assert float(_kl_on_mixin(TD, torch)) == 42.0
    assert float(_kl_on_mixin(ED, ember)) == 42.0
    # a plain Normal still takes the analytic Normal/Normal rule
    e = ED.kl_divergence(ED.Normal(0.0, 1.0), ED.Normal(1.0, 2.0))
    t = TD.kl_divergence(TD.Normal(0.0, 1.0), TD.Normal(1.0, 2.0))
    _close(e, t)


def test_register_kl_rejects_a_non_class():
    with pytest.raises(TypeError, match="type_p"):
        ED.kl.register_kl("Normal", ED.Normal)
    with pytest.raises(TypeError, match="type_q"):
        ED.kl.register_kl(ED.Normal, 3)


def test_get_tracing_state_is_none_outside_a_trace_and_set_inside():
    assert ember._C._get_tracing_state() is None
    assert torch._C._get_tracing_state() is None
    seen = []

    def f(x):
        seen.append(ember._C._get_tracing_state())
        return x * 2

    traced = ember.jit.trace(f, (ember.ones(3),), check_trace=False)
    assert seen and seen[0]  # Pyro's ignore_jit_warnings only tests it for truth
    assert ember._C._get_tracing_state() is None
    _close(traced(ember.ones(3)), torch.full((3,), 2.0))


def test_serialization_type_aliases_exist():
    from ember import serialization

    # pyro.params.param_store: ``from torch.serialization import MAP_LOCATION``
    assert hasattr(torch.serialization, "MAP_LOCATION")
    assert serialization.MAP_LOCATION is not None and serialization.FILE_LIKE is not None


def test_broadcast_mismatch_is_torchs_runtime_error():
    with pytest.raises(RuntimeError, match=r"size of tensor a \(5\) must match"):
        TD.Normal(torch.zeros(5), torch.ones(2))
    with pytest.raises(RuntimeError, match=r"size of tensor a \(5\) must match"):
        ED.Normal(ember.zeros(5), ember.ones(2))


# ---- a hand-written ELBO with its gradient (Pyro's Trace_ELBO on a Beta-Bernoulli coin) ------
def _coin_elbo(lib, D, C):
    data = lib.tensor([1.0, 1.0, 0.0, 1.0, 0.0, 1.0])
    # unconstrained guide parameters, mapped through biject_to(positive) as pyro.param does
    ua = lib.tensor(np.log(15.0), requires_grad=True)
    ub = lib.tensor(np.log(12.0), requires_grad=True)
    pos = D.biject_to(C.positive)
    a, b = pos(ua), pos(ub)
    q = D.Beta(a, b)
    z = lib.tensor(0.55)  # the guide's draw, fixed (Pyro's poutine.condition)
    model_lp = D.Beta(10.0, 10.0).log_prob(z) + D.Bernoulli(z).log_prob(data).sum()
    elbo = model_lp - q.log_prob(z)
    grads = lib.autograd.grad(-elbo, (ua, ub))
    return elbo, grads


def test_coin_flip_elbo_and_gradient_match_torch():
    (e, eg), (t, tg) = _coin_elbo(ember, ED, EC), _coin_elbo(torch, TD, TC)
    _close(e, t)
    for a, b in zip(eg, tg):
        _close(a, b, rtol=1e-4)


def _normal_guide_elbo(lib, D, eps):
    """Trace_ELBO with an AutoNormal-style guide on Bayesian linear regression, fixed eps."""
    rs = np.random.RandomState(0)
    X = lib.tensor(rs.randn(20, 2).astype("float32"))
    y = lib.tensor(rs.randn(20).astype("float32"))
    loc = lib.tensor([0.1, -0.2, 0.3], requires_grad=True)
    uscale = lib.tensor([-1.0, -0.5, 0.0], requires_grad=True)
    scale = D.transform_to(D.constraints.positive)(uscale)
    q = D.Normal(loc, scale)
    w = loc + scale * lib.tensor(eps)  # what rsample does with this noise
    # AutoNormal puts sigma's guide in unconstrained space: transform and add the Jacobian
    exp = D.transforms.ExpTransform()
    sigma = exp(w[2])
    lp = D.Independent(D.Normal(lib.zeros(2), lib.ones(2)), 1).log_prob(w[:2])
    lp = lp + D.LogNormal(0.0, 1.0).log_prob(sigma)
    lp = lp + D.Normal(X @ w[:2], sigma).log_prob(y).sum()
    elbo = lp - (q.log_prob(w).sum() - exp.log_abs_det_jacobian(w[2], sigma))
    g = lib.autograd.grad(-elbo, (loc, uscale))
    return elbo, g


def test_reparameterized_elbo_gradient_matches_torch():
    eps = np.array([0.3, -1.2, 0.5], dtype="float32")
    (e, eg), (t, tg) = _normal_guide_elbo(ember, ED, eps), _normal_guide_elbo(torch, TD, eps)
    _close(e, t, rtol=1e-4)
    for a, b in zip(eg, tg):
        _close(a, b, rtol=1e-4, atol=1e-4)


# ---- discrete enumeration (TraceEnum_ELBO on a Gaussian mixture) ----------------------------
def _gmm_marginal(lib, D):
    rs = np.random.RandomState(1)
    x = lib.tensor(np.concatenate([rs.randn(8) - 3, rs.randn(8) + 3]).astype("float32"))
    locs = lib.tensor([-1.0, 1.0], requires_grad=True)
    w = lib.tensor([0.4, 0.6], requires_grad=True)
    K = 2
    # enumerate the assignment in a dim left of the data plate, as Pyro does (dim -2)
    z = D.Categorical(w).enumerate_support(expand=False)  # (K,): one value per category
    assert tuple(z.shape) == (K,)
    z = z.reshape(K, 1)
    lp = D.Categorical(w).log_prob(z) + D.Normal(locs[z], 0.8).log_prob(x)  # (K, N)
    ll = lp.logsumexp(-2).sum()
    return ll, lib.autograd.grad(ll, (locs, w))


def test_enumerated_mixture_likelihood_matches_torch():
    (e, eg), (t, tg) = _gmm_marginal(ember, ED), _gmm_marginal(torch, TD)
    _close(e, t, rtol=1e-5)
    for a, b in zip(eg, tg):
        _close(a, b, rtol=1e-4, atol=1e-5)


# ---- HMC/NUTS potential energy over biject_to transforms ------------------------------------
def _potential(lib, D, C):
    """Pyro's potential_fn: -(model log density at the constrained value + log|J|), and its
    gradient by autograd.grad, for a logistic regression with a HalfNormal scale site."""
    rs = np.random.RandomState(2)
    X = lib.tensor(rs.randn(30, 3).astype("float32"))
    y = lib.tensor((rs.rand(30) < 0.5).astype("float32"))
    u = {
        "w": lib.tensor([0.2, -0.4, 0.1], requires_grad=True),
        "s": lib.tensor(-0.3, requires_grad=True),
    }
    t_s = D.biject_to(D.HalfNormal(1.0).support)
    s = t_s(u["s"])
    w = D.biject_to(C.real)(u["w"])
    lp = D.Independent(D.Normal(lib.zeros(3), s), 1).log_prob(w) + D.HalfNormal(1.0).log_prob(s)
    lp = lp + D.Bernoulli(logits=X @ w).log_prob(y).sum()
    pe = -(lp + t_s.log_abs_det_jacobian(u["s"], s))
    return pe, lib.autograd.grad(pe, (u["w"], u["s"]))


def test_hmc_potential_energy_and_gradient_match_torch():
    (e, eg), (t, tg) = _potential(ember, ED, EC), _potential(torch, TD, TC)
    _close(e, t, rtol=1e-5)
    for a, b in zip(eg, tg):
        _close(a, b, rtol=1e-4, atol=1e-5)


# ---- the structured distributions Pyro wraps ------------------------------------------------
def _structured(lib, D):
    T = D.transforms
    loc = lib.tensor([0.5, -1.0, 2.0])
    L = lib.tensor([[1.0, 0.0, 0.0], [0.3, 0.8, 0.0], [-0.2, 0.4, 0.6]])
    x = lib.tensor([[0.1, 0.2, 0.3], [1.0, -1.0, 2.5]])
    mvn = D.MultivariateNormal(loc, scale_tril=L)
    lr = D.LowRankMultivariateNormal(loc, lib.tensor([[1.0], [0.5], [-0.3]]), lib.ones(3) * 0.7)
    td = D.TransformedDistribution(
        D.Normal(0.0, 1.0), [T.AffineTransform(1.0, 2.0), T.ExpTransform()]
    )
    ind = D.Independent(D.Normal(lib.zeros(2, 3), lib.ones(2, 3)), 1)
    std = D.MultivariateNormal(lib.zeros(3), lib.eye(3))
    out = {
        "mvn": mvn.log_prob(x),
        "mvn_entropy": mvn.entropy(),
        "mvn_expand": mvn.expand((4, 2)).log_prob(x),  # a plate over a batch of 2
        "lowrank": lr.log_prob(x),
        "lowrank_var": lr.variance,
        "td": td.log_prob(lib.tensor([0.5, 1.0, 3.0])),
        "indep": ind.log_prob(lib.ones(2, 3)),
        "kl_mvn": D.kl_divergence(mvn, std),
        "kl_lowrank": D.kl_divergence(lr, mvn),
        "kl_indep": D.kl_divergence(ind, D.Independent(D.Normal(lib.ones(2, 3), 2.0), 1)),
    }
    shapes = {
        "mvn_rsample": tuple(mvn.rsample((5,)).shape),
        "ind": (tuple(ind.batch_shape), tuple(ind.event_shape)),
        "expand": tuple(mvn.expand((4, 1)).batch_shape),
    }
    return out, shapes


def test_structured_distributions_match_torch():
    (e, es), (t, ts) = _structured(ember, ED), _structured(torch, TD)
    assert es == ts
    for k in t:
        _close(e[k], t[k], rtol=1e-4, atol=1e-5)


def test_default_validate_args_switch():
    old = ED.Distribution._validate_args
    try:
        ED.Distribution.set_default_validate_args(False)
        ED.Normal(0.0, -1.0)  # no check
        ED.Distribution.set_default_validate_args(True)
        with pytest.raises(ValueError, match="scale"):
            ED.Normal(0.0, -1.0)
        with pytest.raises(ValueError, match="support"):
            ED.Bernoulli(probs=ember.tensor(0.5)).log_prob(ember.tensor(0.5))
        with pytest.raises(ValueError, match="set_default_validate_args"):
            ED.Distribution.set_default_validate_args("yes")
    finally:
        ED.Distribution._validate_args = old


def _lowrank_kls(lib, D):
    rs = np.random.RandomState(3)
    loc = lib.tensor(rs.randn(2, 3).astype("float32"), requires_grad=True)  # a batch of 2
    W = lib.tensor(rs.randn(3, 2).astype("float32"), requires_grad=True)
    diag = lib.tensor([0.5, 0.7, 0.9], requires_grad=True)
    lr = D.LowRankMultivariateNormal(loc, W, diag)
    lr2 = D.LowRankMultivariateNormal(lib.zeros(3), W * 0.5, diag + 0.3)
    mvn = D.MultivariateNormal(lib.ones(3), scale_tril=lib.eye(3) * 1.5)
    kls = [D.kl_divergence(lr, lr2), D.kl_divergence(lr, mvn), D.kl_divergence(mvn, lr)]
    total = sum(k.sum() for k in kls)
    return kls, lib.autograd.grad(total, (loc, W, diag))


def test_lowrank_mvn_kl_pairs_and_gradients_match_torch():
    (e, eg), (t, tg) = _lowrank_kls(ember, ED), _lowrank_kls(torch, TD)
    for a, b in zip(e, t):
        assert tuple(a.shape) == tuple(b.shape) == (2,)
        _close(a, b, rtol=1e-4, atol=1e-5)
    for a, b in zip(eg, tg):
        _close(a, b, rtol=1e-3, atol=1e-4)
    with pytest.raises(ValueError, match="different event shapes"):
        ED.kl_divergence(
            ED.LowRankMultivariateNormal(ember.zeros(3), ember.ones(3, 1), ember.ones(3)),
            ED.MultivariateNormal(ember.zeros(2), ember.eye(2)),
        )


# ---- in-place writes through a view reach the base's graph (Pyro's GP models) ----------------
def _gp_marginal(lib):
    """pyro.contrib.gp's GPRegression: add the noise to the kernel matrix's diagonal through a
    strided view, then a Cholesky log-likelihood; the gradient must reach ``noise``."""
    X = lib.linspace(0.0, 3.0, 6)
    y = lib.sin(X)
    ls = lib.tensor(0.8, requires_grad=True)
    noise = lib.tensor(0.1, requires_grad=True)
    n = X.shape[0]
    K = 0.9 * lib.exp(-0.5 * ((X[:, None] - X[None, :]) / ls) ** 2)  # variance * exp(...)
    K.view(-1)[:: n + 1] += noise + 1e-6  # PyTorch's CopySlices
    L = lib.linalg.cholesky(K)
    alpha = lib.cholesky_solve(y[:, None], L)
    ll = -0.5 * (y[:, None] * alpha).sum() - L.diagonal().log().sum()
    return ll, lib.autograd.grad(ll, (ls, noise))


def test_inplace_on_strided_view_sends_gradient_to_the_value():
    (e, eg), (t, tg) = _gp_marginal(ember), _gp_marginal(torch)
    _close(e, t, rtol=1e-4)
    for a, b in zip(eg, tg):
        _close(a, b, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("how", ["diagonal_add_", "slice_iadd", "row_mul_", "setitem_on_view"])
def test_inplace_view_write_matches_torch(how):
    def run(lib):
        a = lib.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], requires_grad=True)
        v = lib.tensor([0.5, -1.0], requires_grad=True)
        K = a * 2
        if how == "diagonal_add_":
            K.diagonal().add_(v)
        elif how == "slice_iadd":
            K[:, 1:] += v[:, None]
        elif how == "row_mul_":
            K[1].mul_(v[0])
        else:
            K.t()[2] = v
        out = (K * lib.arange(6.0).reshape(2, 3)).sum() + (K**2).sum()
        return (K, *lib.autograd.grad(out, (a, v)))

    for e, t in zip(run(ember), run(torch)):
        _close(e, t)


def test_inplace_on_a_view_of_a_leaf_is_refused_like_torch():
    w = ember.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="view of a leaf Variable"):
        w[:2].add_(1.0)
    with ember.no_grad():
        w[:2].add_(1.0)  # allowed outside autograd
    assert w.tolist() == [2.0, 2.0, 1.0]


def test_cdata_identifies_the_tensor_object():
    a = ember.ones(2)
    p = ember.nn.Parameter(a)
    assert a._cdata == a._cdata and a._cdata != p._cdata
