"""ember.nn.utils breadth against torch: parametrize, parametrizations (weight norm, spectral
norm, orthogonal), the hook-based weight_norm / spectral_norm, fusion, functional_call,
skip_init and the memory-format converters."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest

import ember
import ember.nn as enn
import ember.nn.utils.parametrize as EP
from ember.nn import utils as eu

torch = pytest.importorskip("torch")
tnn = torch.nn
TP = torch.nn.utils.parametrize


def _copy(emod, tmod):
    """Copy torch's parameters and buffers into the ember module (same names)."""
    sd = {k: ember.tensor(v.detach().numpy().copy()) for k, v in tmod.state_dict().items()}
    emod.load_state_dict(sd)


def _close(e, t, atol=1e-5):
    np.testing.assert_allclose(e.detach().numpy(), t.detach().numpy(), atol=atol, rtol=1e-4)


def _pair_linear(n_in=4, n_out=3):
    torch.manual_seed(0)
    t = tnn.Linear(n_in, n_out)
    e = enn.Linear(n_in, n_out)
    _copy(e, t)
    return e, t


class _Sym(enn.Module):
    def forward(self, x):
        return x.triu() + x.triu(1).transpose(-1, -2)

    def right_inverse(self, a):
        return a.triu()


class _TSym(tnn.Module):
    def forward(self, x):
        return x.triu() + x.triu(1).transpose(-1, -2)

    def right_inverse(self, a):
        return a.triu()


class _Split(enn.Module):  # right_inverse returns two tensors: original0, original1
    def forward(self, a, b):
        return a + b

    def right_inverse(self, x):
        return x * 0.25, x * 0.75


# ---- parametrize -------------------------------------------------------------------------
def test_register_parametrization_layout_and_values():
    e, t = _pair_linear(3, 3)
    EP.register_parametrization(e, "weight", _Sym())
    TP.register_parametrization(t, "weight", _TSym())
    assert type(e).__name__ == type(t).__name__ == "ParametrizedLinear"
    assert list(e.state_dict()) == list(t.state_dict())
    _close(e.weight, t.weight)
    assert EP.is_parametrized(e) and EP.is_parametrized(e, "weight")
    assert not EP.is_parametrized(e, "bias")
    assert EP.type_before_parametrizations(e) is enn.Linear
    assert isinstance(e.parametrizations.weight, EP.ParametrizationList)
    # assignment goes through right_inverse; the original stays the same object
    orig = e.parametrizations.weight.original
    e.weight = ember.ones(3, 3)
    assert e.parametrizations.weight.original is orig
    np.testing.assert_allclose(orig.detach().numpy(), np.triu(np.ones((3, 3))))
    # gradients reach the original
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    e(ember.tensor(x)).sum().backward()
    t.weight = torch.ones(3, 3)
    t(torch.tensor(x)).sum().backward()
    _close(orig.grad, t.parametrizations.weight.original.grad)


def test_cached_and_chained_and_remove():
    e, _ = _pair_linear(3, 3)
    EP.register_parametrization(e, "weight", _Sym())
    assert e.weight is not e.weight
    with EP.cached():
        assert e.weight is e.weight
    EP.register_parametrization(e, "weight", _Sym())  # chaining keeps the same list
    assert len(e.parametrizations.weight) == 2
    w = e.weight.detach().numpy().copy()
    EP.remove_parametrizations(e, "weight", leave_parametrized=True)
    assert type(e) is enn.Linear and not hasattr(e, "parametrizations")
    assert isinstance(e.weight, enn.Parameter)
    np.testing.assert_allclose(e.weight.detach().numpy(), w)
    assert list(e.state_dict()) == ["bias", "weight"]  # as torch: weight re-registered last


def test_remove_leave_unparametrized_and_sequence_originals():
    e, _ = _pair_linear()
    EP.register_parametrization(e, "weight", _Split(), unsafe=True)
    p = e.parametrizations.weight
    assert not p.is_tensor and p.ntensors == 2
    assert {"parametrizations.weight.original0", "parametrizations.weight.original1"} <= set(
        e.state_dict()
    )
    with pytest.raises(ValueError, match="Cannot leave unparametrized"):
        EP.remove_parametrizations(e, "weight", leave_parametrized=False)
    w = e.weight.detach().numpy().copy()
    EP.remove_parametrizations(e, "weight")
    np.testing.assert_allclose(e.weight.detach().numpy(), w)


def test_parametrize_errors_deepcopy_and_transfer():
    e, _ = _pair_linear()
    with pytest.raises(ValueError, match="does not have a parameter, a buffer"):
        EP.register_parametrization(e, "nope", _Sym())
    with pytest.raises(ValueError, match="does not have a parametrization on"):
        EP.remove_parametrizations(e, "weight")

    class Bad(enn.Module):
        def forward(self, x):
            return x[:1]

    with pytest.raises(ValueError, match="may not change the shape"):
        EP.register_parametrization(e, "weight", Bad())
    sq, _ = _pair_linear(3, 3)
    EP.register_parametrization(sq, "weight", _Sym())
    dup = copy.deepcopy(sq)
    _close(dup.weight, sq.weight)
    with pytest.raises(RuntimeError, match="only supported through state_dict"):
        sq.__getstate__()
    to = enn.Linear(3, 3)
    EP.transfer_parametrizations_and_params(sq, to)
    assert EP.is_parametrized(to, "weight")
    _close(to.weight, sq.weight)


# ---- parametrizations --------------------------------------------------------------------
@pytest.mark.parametrize("dim", [0, 1, None])
def test_weight_norm_parametrization(dim):
    e, t = _pair_linear()
    eu.parametrizations.weight_norm(e, dim=dim)
    tnn.utils.parametrizations.weight_norm(t, dim=dim)
    assert list(e.state_dict()) == list(t.state_dict())
    for k, v in t.state_dict().items():
        _close(e.state_dict()[k], v)
    x = np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)
    eo, to = e(ember.tensor(x)), t(torch.tensor(x))
    _close(eo, to)
    (eo**2).sum().backward()
    (to**2).sum().backward()
    for i in (0, 1):
        _close(
            getattr(e.parametrizations.weight, f"original{i}").grad,
            getattr(t.parametrizations.weight, f"original{i}").grad,
        )


def test_weight_norm_old_checkpoint_loads_into_parametrization():
    _, t = _pair_linear()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        tnn.utils.weight_norm(t)
    e = eu.parametrizations.weight_norm(enn.Linear(4, 3))
    e.load_state_dict({k: ember.tensor(v.detach().numpy()) for k, v in t.state_dict().items()})
    x = torch.ones(1, 4)
    _close(e(ember.ones(1, 4)), t(x))


@pytest.mark.parametrize("training", [True, False])
def test_spectral_norm_parametrization(training):
    e, t = _pair_linear(5, 4)
    eu.parametrizations.spectral_norm(e)
    tnn.utils.parametrizations.spectral_norm(t)
    assert list(e.state_dict()) == list(t.state_dict())
    _copy(e, t)  # torch's random u, v after its 15 warm-up iterations
    e.train(training)
    t.train(training)
    x = np.linspace(-1, 1, 10, dtype=np.float32).reshape(2, 5)
    for _ in range(2):
        eo, to = e(ember.tensor(x)), t(torch.tensor(x))
        _close(eo, to)
    eo.sum().backward()
    to.sum().backward()
    _close(e.parametrizations.weight.original.grad, t.parametrizations.weight.original.grad)
    _close(e.parametrizations.weight[0]._u, t.parametrizations.weight[0]._u)


def test_spectral_norm_parametrization_sigma_is_top_singular_value():
    e = enn.Linear(6, 5)
    eu.parametrizations.spectral_norm(e)
    e.eval()
    s = np.linalg.svd(e.weight.detach().numpy(), compute_uv=False)
    assert abs(s[0] - 1) < 1e-3
    with pytest.raises(IndexError, match="Dimension out of range"):
        eu.parametrizations.spectral_norm(enn.Linear(2, 2), dim=2)


@pytest.mark.parametrize("orthogonal_map", ["matrix_exp", "cayley", "householder"])
def test_orthogonal(orthogonal_map):
    ember.manual_seed(0)
    e = enn.Linear(4, 4) if orthogonal_map != "householder" else enn.Linear(3, 5)
    try:
        eu.parametrizations.orthogonal(e, orthogonal_map=orthogonal_map)
        q = e.weight.detach().numpy()
    except (AttributeError, ImportError) as exc:  # the linalg ops land separately (#17)
        pytest.skip(f"linalg op missing: {exc}")
    k = min(q.shape)
    qq = q.T @ q if q.shape[0] >= q.shape[1] else q @ q.T
    np.testing.assert_allclose(qq, np.eye(k), atol=1e-5)
    x = ember.ones(2, q.shape[1])
    e(x).sum().backward()
    assert e.parametrizations.weight.original.grad is not None


# ---- hook-based weight_norm / spectral_norm ----------------------------------------------
def test_weight_norm_hooks():
    e, t = _pair_linear()
    with pytest.warns(FutureWarning):
        eu.weight_norm(e)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        tnn.utils.weight_norm(t)
    assert list(e.state_dict()) == list(t.state_dict())
    x = np.ones((2, 4), dtype=np.float32)
    _close(e(ember.tensor(x)), t(torch.tensor(x)))
    with pytest.raises(RuntimeError, match="Cannot register two weight_norm"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            eu.weight_norm(e)
    eu.remove_weight_norm(e)
    tnn.utils.remove_weight_norm(t)
    assert list(e.state_dict()) == list(t.state_dict())
    _close(e.weight, t.weight)
    with pytest.raises(ValueError, match="weight_norm of 'weight' not found"):
        eu.remove_weight_norm(e)


def test_spectral_norm_hooks():
    e, t = _pair_linear(5, 4)
    eu.spectral_norm(e)
    tnn.utils.spectral_norm(t)
    assert list(e.state_dict()) == list(t.state_dict())
    _copy(e, t)
    x = np.linspace(-1, 1, 10, dtype=np.float32).reshape(2, 5)
    for _ in range(2):
        _close(e(ember.tensor(x)), t(torch.tensor(x)))
    eu.remove_spectral_norm(e)
    tnn.utils.remove_spectral_norm(t)
    _close(e.weight, t.weight)
    assert not e._state_dict_hooks and not e._load_state_dict_pre_hooks


# ---- fusion, functional_call, skip_init, memory format -----------------------------------
def test_fuse_conv_bn_and_linear_bn():
    torch.manual_seed(0)
    tc, tb = tnn.Conv2d(2, 3, 3), tnn.BatchNorm2d(3)
    tb.running_mean.uniform_(-1, 1)
    tb.running_var.uniform_(0.5, 2)
    tb.weight.data.uniform_(0.5, 2)
    ec, eb = enn.Conv2d(2, 3, 3), enn.BatchNorm2d(3)
    _copy(ec, tc)
    _copy(eb, tb)
    for m in (tc, tb, ec, eb):
        m.eval()
    fe, ft = eu.fuse_conv_bn_eval(ec, eb), tnn.utils.fuse_conv_bn_eval(tc, tb)
    _close(fe.weight, ft.weight)
    _close(fe.bias, ft.bias)
    x = np.random.default_rng(0).standard_normal((1, 2, 5, 5)).astype(np.float32)
    _close(fe(ember.tensor(x)), eb(ec(ember.tensor(x))))
    el, tl = _pair_linear(4, 3)
    tb1, eb1 = tnn.BatchNorm1d(3), enn.BatchNorm1d(3)
    tb1.running_var.fill_(2.0)
    _copy(eb1, tb1)
    for m in (el, tl, tb1, eb1):
        m.eval()
    fl, ftl = eu.fuse_linear_bn_eval(el, eb1), tnn.utils.fuse_linear_bn_eval(tl, tb1)
    _close(fl.weight, ftl.weight)
    _close(fl.bias, ftl.bias)
    with pytest.raises(AssertionError, match="Fusion only for eval"):
        eu.fuse_linear_bn_eval(el.train(), eb1)


def test_functional_call():
    e, _ = _pair_linear()
    w0 = e.weight
    new = {"weight": ember.zeros(3, 4), "bias": ember.ones(3)}
    with pytest.warns(FutureWarning):
        out = eu.stateless.functional_call(e, new, (ember.ones(2, 4),))
    np.testing.assert_allclose(out.numpy(), np.ones((2, 3)))
    assert e.weight is w0
    with pytest.raises(RuntimeError, match="Missing key"):
        eu.stateless._functional_call(
            e, {"weight": ember.zeros(3, 4)}, ember.ones(1, 4), strict=True
        )


def test_skip_init_and_memory_format():
    m = eu.skip_init(enn.Linear, 5, 2)
    assert m.weight.shape == (2, 5)
    with pytest.raises(RuntimeError, match="Expected a Module"):
        eu.skip_init(int)
    c = enn.Sequential(enn.Conv2d(1, 2, 3))
    w = c[0].weight.detach().numpy().copy()
    assert (
        eu.convert_conv2d_weight_memory_format(
            c, ember.channels_last if hasattr(ember, "channels_last") else None
        )
        is c
    )
    np.testing.assert_array_equal(c[0].weight.detach().numpy(), w)
    assert eu.convert_conv3d_weight_memory_format(c, None) is c
    with pytest.warns(FutureWarning):
        e, _ = _pair_linear()
        e(ember.ones(1, 4)).sum().backward()
        eu.clip_grad_norm(e.parameters(), 0.1)
