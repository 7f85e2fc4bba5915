"""The same seed gives PyTorch's CPU random numbers (core/_mt_stream.py, core/random.py):
each draw is compared with torch 2.13's on the same seed, and so is the generator state after
it (torch's 5056-byte layout, byte for byte)."""

import numpy as np
import pytest
import torch

import ember

# (label, draw, exact): run as draw(torch) and draw(ember) after manual_seed(123). Not exact:
# draws followed by float32 elementwise math (trunc_normal_'s erfinv) or a QR (orthogonal_),
# which torch rounds otherwise than NumPy (agreement to a few float32 ulps). Float32 normals
# are exact: core/_mt_avx_math.py evaluates torch's AVX2 log/sincos.
DRAWS = [
    ("rand", lambda T: T.rand(5, 7), True),
    ("rand_f64", lambda T: T.rand(5, 7, dtype=T.float64), True),
    ("rand_f16", lambda T: T.rand(40, dtype=T.float16).float(), True),
    ("rand_like", lambda T: T.rand_like(T.zeros(3, 3)), True),
    ("randn_small", lambda T: T.randn(3, 5), True),
    ("randn_small_cached", lambda T: T.cat([T.randn(3), T.randn(1), T.randn(5)]), True),
    ("randn_f64", lambda T: T.randn(37, 5, dtype=T.float64), True),
    ("randn_f32", lambda T: T.randn(37, 5), True),
    ("randn_f32_long", lambda T: T.randn(4099), True),
    ("randn_f16", lambda T: T.randn(40, dtype=T.float16).float(), True),
    ("randint", lambda T: T.randint(-5, 100, (50,)), True),
    ("randint_64bit_range", lambda T: T.randint(0, 2**40, (50,)), True),
    ("randperm", lambda T: T.randperm(10), True),
    ("randperm_long", lambda T: T.randperm(5000), True),
    ("uniform_", lambda T: T.empty(33, 4).uniform_(-0.37, 0.91), True),
    ("normal_small", lambda T: T.empty(3).normal_(0.5, 0.02), True),
    ("normal_f64", lambda T: T.empty(33, 4, dtype=T.float64).normal_(0.5, 0.02), True),
    ("normal_f32", lambda T: T.empty(33, 4).normal_(0.5, 0.02), True),
    ("normal_small_fma", lambda T: T.empty(7).normal_(0.3, 1.7), True),
    ("normal_f64_fma", lambda T: T.empty(77, dtype=T.float64).normal_(0.3, 1.7), True),
    ("bernoulli_scalar", lambda T: T.empty(50).bernoulli_(0.3), True),
    ("bernoulli_probs", lambda T: T.bernoulli(T.full((50,), 0.3)), True),
    ("bernoulli_probs_f64", lambda T: T.bernoulli(T.full((50,), 0.3, dtype=T.float64)), True),
    ("random_int64", lambda T: T.empty(4, dtype=T.int64).random_(), True),
    ("random_int32", lambda T: T.empty(4, dtype=T.int32).random_(), True),
    ("random_float", lambda T: T.empty(4).random_(), True),
    ("random_to", lambda T: T.empty(4, dtype=T.int64).random_(10), True),
    ("random_from_to", lambda T: T.empty(4, dtype=T.int64).random_(3, 10), True),
    ("dropout", lambda T: T.nn.functional.dropout(T.ones(40), 0.3), True),
    ("dropout2d", lambda T: T.nn.functional.dropout2d(T.ones(2, 6, 3, 3), 0.5), True),
    ("Linear", lambda T: _params(T.nn.Linear(20, 30)), True),
    ("Conv2d", lambda T: _params(T.nn.Conv2d(3, 8, 3)), True),
    ("LSTM", lambda T: _params(T.nn.LSTM(4, 5, 2)), True),
    ("GRU", lambda T: _params(T.nn.GRU(4, 5, bidirectional=True)), True),
    ("MultiheadAttention", lambda T: _params(T.nn.MultiheadAttention(8, 2)), True),
    ("TransformerEncoderLayer", lambda T: _params(T.nn.TransformerEncoderLayer(8, 2, 16)), True),
    ("Embedding", lambda T: _params(T.nn.Embedding(10, 4)), True),
    ("xavier_uniform", lambda T: T.nn.init.xavier_uniform_(T.empty(8, 9)), True),
    ("kaiming_normal_f64", lambda T: T.nn.init.kaiming_normal_(T.empty(8, 9).double()), True),
    ("trunc_normal_narrow", lambda T: T.nn.init.trunc_normal_(T.empty(8, 9), a=2.0, b=2.5), True),
    (
        "trunc_normal_f64",
        lambda T: T.nn.init.trunc_normal_(T.empty(8, 9).double(), 0, 0.5, -0.3, 0.4),
        True,
    ),
    ("trunc_normal", lambda T: T.nn.init.trunc_normal_(T.empty(8, 9), std=0.02), False),
    ("orthogonal", lambda T: T.nn.init.orthogonal_(T.empty(4, 6)), False),
    (
        "random_split",
        lambda T: T.tensor(_ud(T).random_split(range(20), [15, 5])[0].indices),
        True,
    ),
    ("RandomSampler", lambda T: T.tensor(list(_ud(T).RandomSampler(range(20)))), True),
    (
        "RandomSampler_replacement",
        lambda T: T.tensor(list(_ud(T).RandomSampler(range(7), True, 40))),
        True,
    ),
    (
        "SubsetRandomSampler",
        lambda T: T.tensor(list(_ud(T).SubsetRandomSampler([3, 5, 7, 9]))),
        True,
    ),
    ("exponential_", lambda T: T.empty(30).exponential_(2.5), True),
    ("exponential_f64", lambda T: T.empty(30, dtype=T.float64).exponential_(), True),
    (
        "multinomial_one",
        lambda T: T.multinomial(T.tensor([[0.2, 0.3, 0.5], [0.1, 0.0, 0.9]]), 1),
        True,
    ),
    ("multinomial_without", lambda T: T.multinomial(T.tensor([0.2, 0.3, 0.5, 1.0, 2.0]), 3), True),
    ("multinomial_with", lambda T: T.multinomial(T.rand(4, 7), 20, replacement=True), True),
    (
        "sampling_tokens",
        lambda T: T.multinomial(T.softmax(T.randn(2, 50), -1), num_samples=1),
        True,
    ),
    (
        "WeightedRandomSampler",
        lambda T: T.tensor(list(_ud(T).WeightedRandomSampler([0.1, 0.5, 0.2, 0.9], 12))),
        True,
    ),
    (
        "WeightedRandomSampler_without",
        lambda T: T.tensor(list(_ud(T).WeightedRandomSampler([0.1, 0.5, 0.2, 0.9], 3, False))),
        True,
    ),
    (
        "DistributedSampler",
        lambda T: T.tensor(list(_ud(T).DistributedSampler(range(20), 2, 1))),
        True,
    ),
    (
        "DataLoader_shuffle",
        lambda T: T.cat(list(_ud(T).DataLoader(T.arange(20), 5, shuffle=True))),
        True,
    ),
]


def _ud(T):
    return T.utils.data


def _params(module):
    return (
        ember.cat([p.detach().reshape(-1) for p in module.parameters()])
        if isinstance(module, ember.nn.Module)
        else torch.cat([p.detach().reshape(-1) for p in module.parameters()])
    )


@pytest.mark.parametrize("label,draw,exact", DRAWS, ids=[d[0] for d in DRAWS])
def test_same_seed_same_numbers_as_torch(label, draw, exact):
    torch.manual_seed(123)
    ember.manual_seed(123)
    expected = np.asarray(draw(torch))
    got = np.asarray(draw(ember))
    if exact:
        np.testing.assert_array_equal(got, expected)
    else:
        np.testing.assert_allclose(got, expected, rtol=4e-7, atol=4e-7)
    # the stream is left where torch's is: the next draws agree too
    np.testing.assert_array_equal(
        ember.get_rng_state().numpy(), torch.get_rng_state().numpy(), err_msg=label
    )


def test_state_round_trips_between_frameworks():
    torch.manual_seed(7)
    torch.randn(3)  # leaves a cached normal in the state
    ember.set_rng_state(ember.tensor(torch.get_rng_state().numpy()))
    np.testing.assert_array_equal(ember.randn(5).numpy(), torch.randn(5).numpy())
    ember.manual_seed(9)
    ember.rand(700)  # past one twist of the engine
    torch.set_rng_state(torch.from_numpy(ember.get_rng_state().numpy()))
    np.testing.assert_array_equal(ember.rand(4).numpy(), torch.rand(4).numpy())


def test_generators_are_seeded_as_torch_and_independent():
    g = ember.Generator().manual_seed(2**40 + 5)  # the engine takes the low 32 bits, as torch's
    t = torch.Generator().manual_seed(2**40 + 5)
    np.testing.assert_array_equal(
        ember.rand(20, generator=g).numpy(), torch.rand(20, generator=t).numpy()
    )
    assert g.initial_seed() == t.initial_seed() == 2**40 + 5
    ember.manual_seed(0)
    torch.manual_seed(0)
    ember.rand(3, generator=g)  # a generator of one's own leaves the default stream alone
    np.testing.assert_array_equal(ember.rand(3).numpy(), torch.rand(3).numpy())


def test_bad_state_is_refused_and_keeps_the_old_one():
    ember.manual_seed(3)
    before = ember.get_rng_state()
    with pytest.raises(RuntimeError, match="RNG state size to be 10"):
        ember.set_rng_state(ember.zeros(10, dtype=ember.uint8))
    with pytest.raises(TypeError, match="ByteTensor"):
        ember.set_rng_state(ember.zeros(5056))
    old_format = b'{"seed": 1, "state": {"bit_generator": "PCG64"}}'
    with pytest.raises(RuntimeError, match="earlier ember"):
        ember.set_rng_state(ember.tensor(np.frombuffer(old_format, dtype=np.uint8).copy()))
    np.testing.assert_array_equal(ember.get_rng_state().numpy(), before.numpy())
