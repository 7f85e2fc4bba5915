"""nn.init: distributions (Kolmogorov-Smirnov tests against the exact CDFs), deterministic
initialisers compared with PyTorch, gains and fans, error messages, and the default
initialisation of D1's layers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

import ember
import ember.nn as nn
from ember.nn import init

torch = pytest.importorskip("torch")

# Seeded draws, so the tests are deterministic; the threshold only guards against a wrong law.
P_MIN = 1e-3


@pytest.fixture(autouse=True)
def _seed():
    ember.manual_seed(0)


def ks(sample, dist) -> float:
    return stats.kstest(np.asarray(sample).ravel(), dist.cdf).pvalue


def test_uniform_normal_constant():
    t = ember.empty(200, 100)
    assert ks(init.uniform_(t, -2, 3), stats.uniform(-2, 5)) > P_MIN
    assert ks(init.normal_(t, 1.5, 0.5), stats.norm(1.5, 0.5)) > P_MIN
    assert np.all(init.constant_(t, 0.25).numpy() == 0.25)
    assert np.all(init.ones_(t).numpy() == 1) and np.all(init.zeros_(t).numpy() == 0)


def test_init_returns_same_tensor_without_graph():
    p = nn.Parameter(ember.empty(3, 4))
    out = init.kaiming_uniform_(p)
    assert out is p and p.grad_fn is None and p.requires_grad


def test_trunc_normal():
    t = ember.empty(300, 100)
    init.trunc_normal_(t, mean=0.5, std=2.0, a=-1.0, b=3.0)
    x = t.numpy()
    assert x.min() >= -1.0 and x.max() <= 3.0
    dist = stats.truncnorm((-1.0 - 0.5) / 2.0, (3.0 - 0.5) / 2.0, loc=0.5, scale=2.0)
    assert ks(x, dist) > P_MIN


@pytest.mark.parametrize("shape", [(64, 128), (32, 16, 3, 3)])
def test_xavier_and_kaiming_distributions(shape):
    t = ember.empty(*shape)
    fan_in = shape[1] * int(np.prod(shape[2:]))
    fan_out = shape[0] * int(np.prod(shape[2:]))
    a = 1.7 * math.sqrt(6.0 / (fan_in + fan_out))
    assert ks(init.xavier_uniform_(t, gain=1.7), stats.uniform(-a, 2 * a)) > P_MIN
    std = 0.8 * math.sqrt(2.0 / (fan_in + fan_out))
    assert ks(init.xavier_normal_(t, gain=0.8), stats.norm(0, std)) > P_MIN
    bound = math.sqrt(2.0) * math.sqrt(3.0 / fan_in)
    assert (
        ks(init.kaiming_uniform_(t, nonlinearity="relu"), stats.uniform(-bound, 2 * bound)) > P_MIN
    )
    std = math.sqrt(2.0 / (1 + 0.2**2)) / math.sqrt(fan_out)
    assert ks(init.kaiming_normal_(t, a=0.2, mode="fan_out"), stats.norm(0, std)) > P_MIN


def test_orthogonal():
    for shape in ((6, 10), (10, 6), (4, 3, 2)):
        t = init.orthogonal_(ember.empty(*shape), gain=2.0)
        m = t.numpy().reshape(shape[0], -1)
        gram = m @ m.T if shape[0] <= m.shape[1] else m.T @ m
        np.testing.assert_allclose(gram, 4.0 * np.eye(gram.shape[0]), atol=1e-5)


def test_eye_dirac_sparse_match_torch():
    np.testing.assert_array_equal(
        init.eye_(ember.empty(3, 5)).numpy(), torch.nn.init.eye_(torch.empty(3, 5)).numpy()
    )
    for shape, groups in (((4, 2, 3), 1), ((6, 3, 3, 3), 2), ((4, 4, 3, 3, 3), 1)):
        np.testing.assert_array_equal(
            init.dirac_(ember.empty(*shape), groups).numpy(),
            torch.nn.init.dirac_(torch.empty(*shape), groups).numpy(),
        )
    s = init.sparse_(ember.empty(20, 8), sparsity=0.25).numpy()
    assert np.all((s == 0).sum(0) >= 5)


def test_calculate_gain_and_fans_match_torch():
    for nl, param in (
        ("linear", None),
        ("conv2d", None),
        ("sigmoid", None),
        ("tanh", None),
        ("relu", None),
        ("leaky_relu", None),
        ("leaky_relu", 0.2),
        ("selu", None),
    ):
        assert init.calculate_gain(nl, param) == pytest.approx(
            torch.nn.init.calculate_gain(nl, param)
        )
    for shape in ((3, 4), (5, 6, 7), (2, 3, 4, 5)):
        assert init._calculate_fan_in_and_fan_out(
            ember.empty(*shape)
        ) == torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(*shape))


def test_init_errors_match_torch():
    cases = [
        (lambda lib: lib.calculate_gain("swish"), ValueError),
        (lambda lib: lib.calculate_gain("leaky_relu", "x"), ValueError),
        (lambda lib: lib.xavier_uniform_(_empty(lib, 3)), ValueError),
        (lambda lib: lib.kaiming_uniform_(_empty(lib, 3, 4), mode="fan_avg"), ValueError),
        (lambda lib: lib.eye_(_empty(lib, 3, 4, 5)), ValueError),
        (lambda lib: lib.dirac_(_empty(lib, 3, 4)), ValueError),
        (lambda lib: lib.dirac_(_empty(lib, 3, 4, 3), groups=2), ValueError),
        (lambda lib: lib.orthogonal_(_empty(lib, 3)), ValueError),
    ]
    for fn, exc in cases:
        with pytest.raises(exc) as ee:
            fn(init)
        with pytest.raises(exc) as te:
            fn(torch.nn.init)
        assert str(ee.value) == str(te.value)


def _empty(lib, *shape):
    return ember.empty(*shape) if lib is init else torch.empty(*shape)


def test_zero_element_warns():
    with pytest.warns(UserWarning, match="Initializing zero-element tensors is a no-op"):
        init.kaiming_uniform_(ember.empty(0, 3))


def test_generator_argument_is_reproducible():
    g1, g2 = ember.Generator().manual_seed(5), ember.Generator().manual_seed(5)
    a = init.normal_(ember.empty(10), generator=g1).numpy().copy()
    b = init.normal_(ember.empty(10), generator=g2).numpy()
    np.testing.assert_array_equal(a, b)


# ---- default initialisation of layers: the same distributions as PyTorch's ----------------
def test_linear_and_bilinear_defaults():
    lin = nn.Linear(300, 200)
    bound = 1 / math.sqrt(300)
    assert ks(lin.weight.detach().numpy(), stats.uniform(-bound, 2 * bound)) > P_MIN
    big_bias = nn.Linear(300, 4000).bias.detach().numpy()
    assert ks(big_bias, stats.uniform(-bound, 2 * bound)) > P_MIN
    bil = nn.Bilinear(40, 30, 50)
    bound = 1 / math.sqrt(40)
    assert ks(bil.weight.detach().numpy(), stats.uniform(-bound, 2 * bound)) > P_MIN
    # the same moments as torch's own default init
    t_w = torch.nn.Linear(300, 200).weight.detach().numpy()
    assert abs(t_w.std() - lin.weight.detach().numpy().std()) < 2e-3


def test_embedding_and_norm_defaults():
    emb = nn.Embedding(300, 64, padding_idx=3)
    w = emb.weight.detach().numpy()
    assert ks(np.delete(w, 3, axis=0), stats.norm(0, 1)) > P_MIN
    assert np.all(w[3] == 0)
    bag = nn.EmbeddingBag(300, 64)
    assert ks(bag.weight.detach().numpy(), stats.norm(0, 1)) > P_MIN
    for m in (
        nn.BatchNorm1d(5),
        nn.LayerNorm(5),
        nn.GroupNorm(1, 5),
        nn.RMSNorm(5),
        nn.InstanceNorm1d(5, affine=True),
    ):
        assert np.all(m.weight.detach().numpy() == 1)
        if getattr(m, "bias", None) is not None:
            assert np.all(m.bias.detach().numpy() == 0)
    bn = nn.BatchNorm2d(4)
    assert np.all(bn.running_mean.numpy() == 0) and np.all(bn.running_var.numpy() == 1)
    assert bn.num_batches_tracked.item() == 0 and bn.num_batches_tracked.dtype == ember.int64
    assert np.all(nn.PReLU(3).weight.detach().numpy() == 0.25)
