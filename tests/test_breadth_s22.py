"""Breadth fixes of session 22, each compared with torch 2.13: ``jit.trace`` of a forward with
mutable default arguments, the RNN constructors' size checks (and NumPy ints where torch takes
them), and ``generator=`` in every sampling function."""

from __future__ import annotations

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")


# ---- jit.trace: parameters left at their (mutable) defaults -------------------------------
def _cached_model(lib):
    class Cached(lib.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = lib.nn.Linear(4, 3)

        def forward(self, x, seen=[], opts={}, scale=None):  # noqa: B006 - the idiom under test
            seen.append(x)
            opts["calls"] = opts.get("calls", 0) + 1
            return self.lin(x) if scale is None else self.lin(x) * scale

    return Cached()


def test_trace_with_mutable_defaults_matches_torch():
    res = {}
    for lib in (ember, torch):
        lib.manual_seed(0)
        m, x = _cached_model(lib), lib.randn(2, 4)
        traced = lib.jit.trace(m, x)  # check_trace runs forward again: the defaults grow
        y = lib.randn(5, 4)
        res[lib.__name__] = traced(y).detach().numpy(), m(y).detach().numpy()
        assert len(m.forward.__defaults__[0]) >= 2
        with pytest.raises((TypeError, RuntimeError)):  # the traced forward takes x only
            traced(y, [], {}, 2.0)
    np.testing.assert_allclose(res["ember"][0], res["torch"][0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(res["ember"][0], res["ember"][1], rtol=1e-6)


def test_trace_keeps_given_non_tensor_inputs_out_and_tensor_kwargs():
    m = _cached_model(ember)
    x = ember.randn(2, 4)
    traced = ember.jit.trace(m, example_kwarg_inputs={"x": x, "scale": ember.tensor(2.0)})
    assert ember.allclose(traced(x=x, scale=ember.tensor(3.0)), m.lin(x) * 3)
    assert "seen" not in traced.code and "opts" not in traced.code


# ---- RNN sizes ------------------------------------------------------------------------------
_RNN_CASES = [
    ("LSTM", (np.int64(8), 16), {}),
    ("GRU", (8, np.int64(16)), {}),
    ("RNN", (8, 16), {"bias": 1}),
    ("LSTM", (8, 16), {"batch_first": 0}),
    ("RNN", (0, 4), {}),
    ("GRU", (8, 16, np.int64(2)), {}),
]


@pytest.mark.parametrize("name,args,kwargs", _RNN_CASES)
def test_rnn_constructor_checks_like_torch(name, args, kwargs):
    outcome = {}
    for lib in (ember, torch):
        try:
            m = getattr(lib.nn, name)(*args, **kwargs)
            outcome[lib.__name__] = ("ok", m.num_layers)
        except (TypeError, ValueError) as e:
            outcome[lib.__name__] = (type(e).__name__, str(e))
    assert outcome["ember"] == outcome["torch"]


@pytest.mark.parametrize(
    "build",
    [
        lambda nn: nn.LayerNorm(np.int64(8)),
        lambda nn: nn.RMSNorm(np.int64(8)),
        lambda nn: nn.TransformerEncoderLayer(np.int64(8), np.int64(2), np.int64(16)),
        lambda nn: nn.LSTMCell(np.int64(8), np.int64(4)),
        lambda nn: nn.Conv2d(np.int64(3), np.int64(8), np.int64(3)),
        lambda nn: nn.Linear(np.int64(8), np.int64(4)),
    ],
    ids=["layer_norm", "rms_norm", "encoder_layer", "lstm_cell", "conv2d", "linear"],
)
def test_numpy_int_sizes_accepted_like_torch(build):
    shapes = []
    for lib in (ember, torch):
        lib.manual_seed(0)
        m = build(lib.nn)
        shapes.append(sorted((k, tuple(v.shape)) for k, v in m.state_dict().items()))
    assert shapes[0] == shapes[1]


# ---- generator= ---------------------------------------------------------------------------
def _samplers(lib):
    full = lib.full
    return {
        "_standard_gamma": lambda g: lib._standard_gamma(full((6,), 2.5), generator=g),
        "_standard_gamma_f64": lambda g: lib._standard_gamma(
            full((4,), 0.5, dtype=lib.float64), generator=g
        ),
        "_sample_dirichlet": lambda g: lib._sample_dirichlet(full((2, 3), 1.5), generator=g),
        "poisson": lambda g: lib.poisson(full((6,), 3.0), generator=g),
        "binomial": lambda g: lib.binomial(full((6,), 10.0), full((6,), 0.3), generator=g),
        "multinomial": lambda g: lib.multinomial(lib.tensor([0.1, 0.2, 0.7]), 4, True, generator=g),
        "normal": lambda g: lib.normal(lib.zeros(5), lib.ones(5), generator=g),
        "bernoulli": lambda g: lib.bernoulli(full((8,), 0.4), generator=g),
        "rand": lambda g: lib.rand(5, generator=g),
        "randn": lambda g: lib.randn(5, generator=g),
        "randint": lambda g: lib.randint(0, 10, (5,), generator=g),
        "randperm": lambda g: lib.randperm(7, generator=g),
        "uniform_": lambda g: lib.empty(5).uniform_(generator=g),
        "normal_": lambda g: lib.empty(5).normal_(generator=g),
        "bernoulli_": lambda g: lib.empty(5).bernoulli_(0.3, generator=g),
        "random_": lambda g: lib.empty(5).random_(0, 10, generator=g),
        "exponential_": lambda g: lib.empty(5).exponential_(generator=g),
        "geometric_": lambda g: lib.empty(5).geometric_(0.3, generator=g),
        "cauchy_": lambda g: lib.empty(5).cauchy_(generator=g),
        "log_normal_": lambda g: lib.empty(5).log_normal_(generator=g),
    }


def _draw(lib, name, seeded: bool):
    lib.manual_seed(123)
    g = lib.Generator().manual_seed(7) if seeded else None
    return _samplers(lib)[name](g).detach().numpy().astype(np.float64)


@pytest.mark.parametrize("name", list(_samplers(ember)))
def test_generator_is_honoured_with_torch_numbers(name):
    e_gen, t_gen = _draw(ember, name, True), _draw(torch, name, True)
    np.testing.assert_allclose(e_gen, t_gen, rtol=1e-5, atol=1e-6)
    # the generator's draws, not the global stream's
    assert not np.array_equal(e_gen, _draw(ember, name, False))


def test_gamma_and_dirichlet_with_generator_keep_gradients():
    g = ember.Generator().manual_seed(3)
    a = ember.full((4,), 2.0, requires_grad=True)
    ember._standard_gamma(a, generator=g).sum().backward()
    b = ember.full((2, 3), 2.0, requires_grad=True)
    (ember._sample_dirichlet(b, generator=g) * ember.arange(3.0)).sum().backward()
    assert a.grad is not None and bool((a.grad > 0).all()) and b.grad.shape == (2, 3)
