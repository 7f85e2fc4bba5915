"""Samplers: orders, errors, reproducibility, resumable state, DistributedSampler vs torch."""

from __future__ import annotations

import collections

import pytest

import ember
from ember.utils.data import (
    BatchSampler,
    DistributedSampler,
    RandomSampler,
    Sampler,
    SequentialSampler,
    SubsetRandomSampler,
    WeightedRandomSampler,
)


def test_sequential_and_batch_sampler():
    assert list(SequentialSampler(range(5))) == [0, 1, 2, 3, 4]
    bs = BatchSampler(SequentialSampler(range(10)), batch_size=3, drop_last=False)
    assert list(bs) == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]] and len(bs) == 4
    bs = BatchSampler(SequentialSampler(range(10)), batch_size=3, drop_last=True)
    assert list(bs) == [[0, 1, 2], [3, 4, 5], [6, 7, 8]] and len(bs) == 3
    assert list(BatchSampler(range(4), 2, False)) == [[0, 1], [2, 3]]
    with pytest.raises(
        ValueError, match="batch_size should be a positive integer value, but got batch_size=0"
    ):
        BatchSampler(range(3), 0, False)
    with pytest.raises(ValueError, match="drop_last should be a boolean value"):
        BatchSampler(range(3), 2, 1)


def test_random_sampler_permutation_and_replacement():
    ember.manual_seed(0)
    perm = list(RandomSampler(range(20)))
    assert sorted(perm) == list(range(20)) and perm != list(range(20))
    ember.manual_seed(0)
    assert list(RandomSampler(range(20))) == perm  # the default generator drives it
    chained = list(RandomSampler(range(5), num_samples=12))
    assert len(chained) == 12 and sorted(chained[:5]) == list(range(5))
    assert sorted(chained[10:]) == sorted(set(chained[10:]))  # the tail is a partial permutation
    drawn = list(RandomSampler(range(3), replacement=True, num_samples=50))
    assert len(drawn) == 50 and set(drawn) == {0, 1, 2}
    g = ember.Generator().manual_seed(5)
    a = list(RandomSampler(range(10), generator=g))
    b = list(RandomSampler(range(10), generator=ember.Generator().manual_seed(5)))
    assert a == b
    with pytest.raises(TypeError, match="replacement should be a boolean value"):
        RandomSampler(range(3), replacement=0)
    with pytest.raises(
        ValueError, match="num_samples should be a positive integer value, but got num_samples=0"
    ):
        RandomSampler([])


def test_subset_random_and_weighted_sampler():
    ember.manual_seed(1)
    out = list(SubsetRandomSampler([10, 20, 30]))
    assert sorted(out) == [10, 20, 30]
    ember.manual_seed(2)
    draws = list(WeightedRandomSampler([0.0, 1.0, 3.0], num_samples=4000))
    counts = collections.Counter(draws)
    assert counts[0] == 0 and 0.70 < counts[2] / 4000 < 0.80
    unique = list(WeightedRandomSampler([1, 1, 1, 1], num_samples=4, replacement=False))
    assert sorted(unique) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="weights should be a 1d sequence"):
        WeightedRandomSampler([[1.0, 2.0]], 2)
    with pytest.raises(RuntimeError, match="cannot sample n_sample > prob_dist"):
        WeightedRandomSampler([1.0, 0.0], 2, replacement=False)
    with pytest.raises(RuntimeError, match="invalid multinomial distribution"):
        WeightedRandomSampler([1.0, -1.0], 2)


@pytest.mark.parametrize(
    "make",
    [
        lambda g: RandomSampler(range(30), generator=g),
        lambda g: RandomSampler(range(30), replacement=True, generator=g),
        lambda g: SubsetRandomSampler(list(range(0, 60, 2)), generator=g),
        lambda g: WeightedRandomSampler([1.0] * 30, 30, generator=g),
    ],
)
@pytest.mark.parametrize("own_generator", [False, True])
def test_random_sampler_state_replays_the_pass(make, own_generator):
    ember.manual_seed(7)
    s = make(ember.Generator().manual_seed(11) if own_generator else None)
    it = iter(s)
    first = [next(it) for _ in range(5)]
    state = s.state_dict()  # mid-pass: describes this pass
    rest = list(it)
    rng_between = ember.get_rng_state()
    after_pass = list(s)  # the pass after it

    ember.manual_seed(999)  # a different process: nothing shared but the saved state
    s2 = make(ember.Generator().manual_seed(0) if own_generator else None)
    s2.load_state_dict(state)
    before = ember.get_rng_state().tolist()
    assert list(s2) == first + rest
    assert ember.get_rng_state().tolist() == before  # replaying drew nothing from it
    if own_generator:
        assert list(s2) == after_pass  # the generator continued exactly
    else:
        ember.set_rng_state(rng_between)
        assert list(s2) == after_pass  # the next pass draws its seed afresh


def test_sampler_state_between_passes():
    g = ember.Generator().manual_seed(3)
    s = RandomSampler(range(10), generator=g)
    list(s)
    state = s.state_dict()  # no pass in progress: describes the next one
    nxt = list(s)
    s2 = RandomSampler(range(10), generator=ember.Generator())
    s2.load_state_dict(state)
    assert list(s2) == nxt
    assert RandomSampler(range(3)).state_dict() == {"generator": None}


def test_custom_sampler_subclass():
    class Evens(Sampler[int]):
        def __init__(self, n):
            self.n = n

        def __iter__(self):
            return iter(range(0, self.n, 2))

        def __len__(self):
            return (self.n + 1) // 2

    assert list(BatchSampler(Evens(9), 2, False)) == [[0, 2], [4, 6], [8]]


def _check_partition(n, replicas, drop_last, shuffle, seed=0, epoch=0):
    parts = []
    for rank in range(replicas):
        s = DistributedSampler(
            range(n),
            num_replicas=replicas,
            rank=rank,
            shuffle=shuffle,
            seed=seed,
            drop_last=drop_last,
        )
        s.set_epoch(epoch)
        parts.append(list(s))
        assert len(parts[-1]) == len(s)
    return parts


@pytest.mark.parametrize("n,replicas", [(10, 3), (12, 4), (5, 8), (1, 2), (17, 2)])
@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("shuffle", [False, True])
def test_distributed_sampler_partition_matches_torch(n, replicas, drop_last, shuffle):
    pytest.importorskip("torch")
    from torch.utils.data.distributed import DistributedSampler as TorchDS

    ours = _check_partition(n, replicas, drop_last, shuffle)
    theirs = [
        list(TorchDS(range(n), num_replicas=replicas, rank=r, shuffle=shuffle, drop_last=drop_last))
        for r in range(replicas)
    ]
    assert [len(p) for p in ours] == [len(p) for p in theirs]  # equal lengths, as torch
    flat, tflat = [i for p in ours for i in p], [i for p in theirs for i in p]
    assert len(flat) == len(tflat)
    if drop_last:
        assert len(set(flat)) == len(flat)  # disjoint, the tail dropped
    else:
        assert set(flat) == set(range(n))  # every sample covered, padded by repetition
        counts = collections.Counter(flat)
        assert sorted(collections.Counter(counts.values()).items()) == sorted(
            collections.Counter(collections.Counter(tflat).values()).items()
        )
    if not shuffle:
        assert ours == theirs  # no randomness: identical to torch


def test_distributed_sampler_epochs_and_seed():
    a = _check_partition(20, 2, False, True, epoch=0)
    b = _check_partition(20, 2, False, True, epoch=1)
    c = _check_partition(20, 2, False, True, seed=5, epoch=0)
    assert a != b and a != c and a == _check_partition(20, 2, False, True, epoch=0)
    s = DistributedSampler(range(20), num_replicas=2, rank=1)
    s.set_epoch(4)
    s2 = DistributedSampler(range(20), num_replicas=2, rank=1)
    s2.load_state_dict(s.state_dict())
    assert list(s2) == list(s)


def test_distributed_sampler_errors_without_process_group():
    with pytest.raises(
        ValueError,
        match=r"Invalid rank 2, rank should be in the interval "
        r"\[0, 1\]",
    ):
        DistributedSampler(range(4), num_replicas=2, rank=2)
    with pytest.raises(RuntimeError, match="pass num_replicas= and rank= explicitly"):
        DistributedSampler(range(4))
