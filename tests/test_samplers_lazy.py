"""Samplers with replacement draw lazily: huge num_samples, constant memory, reproducible."""

import itertools
import tracemalloc

import numpy as np
import pytest

import ember
from ember.utils.data import RandomSampler, WeightedRandomSampler

HUGE = 10**12


def _first(sampler, n):
    return list(itertools.islice(iter(sampler), n))


@pytest.mark.parametrize(
    "make",
    [
        lambda g: RandomSampler(range(10), replacement=True, num_samples=HUGE, generator=g),
        lambda g: WeightedRandomSampler([0.0, 1.0, 2.0, 0.0, 1.0], num_samples=HUGE, generator=g),
    ],
)
def test_huge_num_samples_iterate_lazily_and_reproducibly(make):
    tracemalloc.start()
    a = _first(make(ember.Generator().manual_seed(0)), 3000)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 4 << 20  # an eager draw of 1e12 indices would need terabytes
    assert a == _first(make(ember.Generator().manual_seed(0)), 3000)
    assert a != _first(make(ember.Generator().manual_seed(1)), 3000)
    assert len(make(None)) == HUGE


def test_weighted_draws_follow_the_weights():
    draws = np.array(
        _first(
            WeightedRandomSampler(
                [0.0, 1.0, 3.0], num_samples=HUGE, generator=ember.Generator().manual_seed(0)
            ),
            4000,
        )
    )
    assert set(draws.tolist()) == {1, 2}
    assert abs((draws == 2).mean() - 0.75) < 0.04


def test_random_sampler_without_replacement_chains_permutations():
    out = list(RandomSampler(range(5), num_samples=12, generator=ember.Generator()))
    assert sorted(out[:5]) == sorted(out[5:10]) == list(range(5)) and len(out) == 12
    assert set(out[10:]) <= set(range(5)) and len(set(out[10:])) == 2


def test_replacement_uniform_over_dataset():
    out = np.array(
        list(
            RandomSampler(
                range(4),
                replacement=True,
                num_samples=4000,
                generator=ember.Generator().manual_seed(3),
            )
        )
    )
    np.testing.assert_allclose(np.bincount(out, minlength=4) / 4000, 0.25, atol=0.04)
