"""Samplers: the order in which a DataLoader visits a map-style dataset.

Random samplers draw from ember generators (``core/random.py``), so ``ember.manual_seed`` makes
shuffling reproducible. Those without a generator of their own do what PyTorch's do: at the
start of each pass they draw a fresh seed from the default generator and build a private
generator from it.

Resumable samplers have ``state_dict()`` / ``load_state_dict()``. While a pass is in progress
the state describes that pass (the generator state it started from); between passes it describes
the next one. After ``load_state_dict`` the next ``iter()`` replays exactly the pass that was
saved, without touching the default generator, so a run restarted from a checkpoint that also
restored its global RNG state draws the same numbers as the run that was never interrupted.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence, Sized
from typing import Any, Generic, TypeVar

import numpy as np

from ... import random as _random
from ...tensor import Tensor

__all__ = [
    "Sampler",
    "SequentialSampler",
    "RandomSampler",
    "SubsetRandomSampler",
    "WeightedRandomSampler",
    "BatchSampler",
    "DistributedSampler",
]

T_co = TypeVar("T_co", covariant=True)

# Samples drawn with replacement are drawn this many at a time (as PyTorch does).
_CHUNK = 32


class Sampler(Generic[T_co]):
    """Base class: subclasses implement ``__iter__`` over dataset indices (and usually
    ``__len__``)."""

    def __init__(self, data_source: Sized | None = None) -> None:
        pass

    def __iter__(self) -> Iterator[T_co]:
        raise NotImplementedError


class SequentialSampler(Sampler[int]):
    """Indices ``0 .. len(data_source) - 1`` in order."""

    def __init__(self, data_source: Sized) -> None:
        self.data_source = data_source

    def __iter__(self) -> Iterator[int]:
        return iter(range(len(self.data_source)))

    def __len__(self) -> int:
        return len(self.data_source)


class _GeneratorPasses:
    """Per-pass generator handling shared by the random samplers (see the module docstring)."""

    generator: Any

    def _start_pass(self, own_seed: bool = True) -> np.random.Generator:
        """The NumPy generator for a new pass; records the state the pass starts from.

        Without a generator, a pass draws from a private generator seeded from the default one
        (``own_seed``, as torch's ``RandomSampler``) or from the default generator itself (as
        torch's ``SubsetRandomSampler``); a replayed pass uses a private copy either way."""
        pending = getattr(self, "_pending_state", None)
        self._pending_state = None
        if self.generator is not None:
            if pending is not None:
                self.generator.set_state(pending)
            gen = self.generator
        elif pending is None and not own_seed:
            gen = _random.default_generator
        else:
            gen = _random.Generator()
            if pending is not None:
                gen.set_state(pending)
            else:  # torch's seed: torch.empty((), dtype=torch.int64).random_()
                gen.manual_seed(_random.seed_draw())
        self._pass_state = gen.get_state()
        self._in_pass = True
        return gen.numpy()

    def _end_pass(self) -> None:
        self._in_pass = False

    def state_dict(self) -> dict:
        """The generator state of the pass in progress, or of the next pass when none is."""
        if getattr(self, "_in_pass", False):
            return {"generator": self._pass_state.clone()}
        if getattr(self, "_pending_state", None) is not None:
            return {"generator": self._pending_state.clone()}
        if self.generator is not None:
            return {"generator": self.generator.get_state()}
        return {"generator": None}  # the next pass draws its seed from the default generator

    def load_state_dict(self, state_dict: dict) -> None:
        """Make the next ``iter()`` replay the pass described by ``state_dict``."""
        if "generator" not in state_dict:
            raise KeyError(
                f"{type(self).__name__}.load_state_dict: missing key 'generator' "
                f"(got keys {sorted(state_dict)})"
            )
        self._in_pass = False
        self._pending_state = state_dict["generator"]


def _check_positive_int(name: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} should be a positive integer value, but got {name}={value}")


def _check_bool(name: str, value, error: type[Exception] = ValueError) -> None:
    if not isinstance(value, bool):
        raise error(f"{name} should be a boolean value, but got {name}={value}")


class RandomSampler(_GeneratorPasses, Sampler[int]):
    """Random indices: a permutation, or ``num_samples`` draws with replacement.

    Args:
        data_source: dataset to sample from.
        replacement: draw with replacement (default ``False``).
        num_samples: number of indices per pass, default ``len(data_source)``. Without
            replacement a larger value chains several permutations.
        generator: an ``ember.Generator`` (default: a per-pass seed from the default generator).
    """

    def __init__(
        self,
        data_source: Sized,
        replacement: bool = False,
        num_samples: int | None = None,
        generator=None,
    ) -> None:
        self.data_source = data_source
        self.replacement = replacement
        self._num_samples = num_samples
        self.generator = generator
        _check_bool("replacement", replacement, TypeError)
        _check_positive_int("num_samples", self.num_samples)

    @property
    def num_samples(self) -> int:
        # data_source may change size between passes, so this is computed each time.
        return len(self.data_source) if self._num_samples is None else self._num_samples

    def __iter__(self) -> Iterator[int]:
        n = len(self.data_source)
        gen = self._start_pass()
        if self.replacement:
            return self._emit_drawn(gen, n, self.num_samples)
        return self._emit_permutations(gen, n, self.num_samples)

    def _emit_drawn(self, gen, n: int, count: int) -> Iterator[int]:
        # drawn lazily, _CHUNK at a time: memory stays constant whatever num_samples (1e12 ok)
        for start in range(0, count, _CHUNK):
            yield from gen.integers(0, n, size=min(_CHUNK, count - start)).tolist()
        self._end_pass()

    def _emit_permutations(self, gen, n: int, count: int) -> Iterator[int]:
        # one permutation of the dataset in memory at a time
        for _ in range(count // n):
            yield from gen.permutation(n).tolist()
        # (drawn even when nothing of it is used, as torch's: a given generator ends where
        # torch's would)
        yield from gen.permutation(n)[: count % n].tolist()
        self._end_pass()

    def __len__(self) -> int:
        return self.num_samples


class SubsetRandomSampler(_GeneratorPasses, Sampler[int]):
    """The given ``indices`` in a random order, without replacement."""

    def __init__(self, indices: Sequence[int], generator=None) -> None:
        self.indices = indices
        self.generator = generator

    def __iter__(self) -> Iterator[int]:
        perm = self._start_pass(own_seed=False).permutation(len(self.indices))
        return self._emit([self.indices[i] for i in perm.tolist()])

    def _emit(self, order: list[int]) -> Iterator[int]:
        yield from order
        self._end_pass()

    def __len__(self) -> int:
        return len(self.indices)


class WeightedRandomSampler(_GeneratorPasses, Sampler[int]):
    """Indices ``0 .. len(weights) - 1`` drawn with probabilities proportional to ``weights``.

    Args:
        weights: a 1-D sequence of non-negative weights (they need not sum to one).
        num_samples: number of indices per pass.
        replacement: draw with replacement (default ``True``); without it an index appears once.
        generator: an ``ember.Generator``.
    """

    def __init__(
        self, weights: Sequence[float], num_samples: int, replacement: bool = True, generator=None
    ) -> None:
        _check_positive_int("num_samples", num_samples)
        _check_bool("replacement", replacement)
        w = np.asarray(weights._data if isinstance(weights, Tensor) else weights, dtype=np.float64)
        if w.ndim != 1:
            raise ValueError(
                f"weights should be a 1d sequence but given weights have shape {tuple(w.shape)}"
            )
        if (w < 0).any() or not np.isfinite(w).all() or w.sum() <= 0:
            raise RuntimeError(
                "invalid multinomial distribution (weights must be finite, "
                "non-negative and not all zero)"
            )
        if not replacement and num_samples > int((w > 0).sum()):
            raise RuntimeError(
                "cannot sample n_sample > prob_dist.size(-1) samples without replacement"
            )
        self.weights = Tensor._wrap(w)
        self.num_samples = num_samples
        self.replacement = replacement
        self.generator = generator

    def __iter__(self) -> Iterator[int]:
        w = self.weights._data
        # torch's: multinomial from the default generator itself (no per-pass seed)
        gen = self._start_pass(own_seed=False)
        if self.replacement and self.num_samples > 1:
            return self._emit_drawn(gen, w)
        draws = gen.multinomial(w[None], self.num_samples, self.replacement)[0]
        return self._emit(draws.tolist())

    def _emit_drawn(self, gen, w: np.ndarray) -> Iterator[int]:
        # inverse-CDF draws, _CHUNK at a time: memory is the weights' whatever num_samples
        cdf = np.cumsum(w)
        cdf /= cdf[-1]
        last = w.shape[0] - 1
        for start in range(0, self.num_samples, _CHUNK):
            u = gen.random(min(_CHUNK, self.num_samples - start))
            # the first bucket whose cumulative weight reaches u, as torch's binary search
            yield from np.minimum(np.searchsorted(cdf, u, side="left"), last).tolist()
        self._end_pass()

    def _emit(self, order: list[int]) -> Iterator[int]:
        yield from order
        self._end_pass()

    def __len__(self) -> int:
        return self.num_samples


class BatchSampler(Sampler[list[int]]):
    """Group the indices of ``sampler`` into lists of ``batch_size``.

    Example::

        >>> list(BatchSampler(SequentialSampler(range(10)), batch_size=3, drop_last=False))
        [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    """

    def __init__(
        self, sampler: Sampler[int] | Iterable[int], batch_size: int, drop_last: bool
    ) -> None:
        _check_positive_int("batch_size", batch_size)
        _check_bool("drop_last", drop_last)
        self.sampler = sampler
        self.batch_size = batch_size
        self.drop_last = drop_last

    def __iter__(self) -> Iterator[list[int]]:
        # The sampler's pass starts now (not at the first next()), so a resumable sampler's
        # state describes this pass as soon as iter() returns.
        return self._batches(iter(self.sampler))

    def _batches(self, it: Iterator[int]) -> Iterator[list[int]]:
        bs = self.batch_size
        while True:
            batch = [i for _, i in zip(range(bs), it)]
            if len(batch) == bs or (batch and not self.drop_last):
                yield batch
            if len(batch) < bs:
                return

    def __len__(self) -> int:
        if self.drop_last:
            return len(self.sampler) // self.batch_size  # type: ignore[arg-type]
        return (len(self.sampler) + self.batch_size - 1) // self.batch_size  # type: ignore

    def state_dict(self) -> dict:
        return _sampler_state(self.sampler)

    def load_state_dict(self, state_dict: dict) -> None:
        _load_sampler_state(self.sampler, state_dict)


def _sampler_state(sampler) -> dict:
    fn = getattr(sampler, "state_dict", None)
    return fn() if callable(fn) else {}


def _load_sampler_state(sampler, state: dict) -> None:
    fn = getattr(sampler, "load_state_dict", None)
    if callable(fn) and state:
        fn(state)


class DistributedSampler(Sampler[int]):
    """Restrict sampling to one replica's share of the dataset (PyTorch's DistributedSampler).

    ``num_replicas`` and ``rank`` may be given explicitly, so no process group is needed; when
    omitted they come from the initialised default process group of ``ember.distributed``.
    Every replica shuffles with the same seed (``seed + epoch``), so the shares are disjoint;
    without ``drop_last`` the permutation is padded by repeating its head until it divides
    evenly, with ``drop_last`` its tail is dropped. Call :meth:`set_epoch` before each epoch
    for a different order every epoch.
    """

    def __init__(
        self,
        dataset: Sized,
        num_replicas: int | None = None,
        rank: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        if num_replicas is None or rank is None:
            world, me = _default_group_rank()
            num_replicas = world if num_replicas is None else num_replicas
            rank = me if rank is None else rank
        if not isinstance(num_replicas, int) or num_replicas <= 0:
            raise ValueError(f"num_replicas should be a positive integer, but got {num_replicas}")
        if rank >= num_replicas or rank < 0:
            raise ValueError(
                f"Invalid rank {rank}, rank should be in the interval [0, {num_replicas - 1}]"
            )
        self.dataset = dataset
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self.drop_last = drop_last
        n = len(dataset)
        if self.drop_last and n % self.num_replicas != 0:
            # Drop the tail so every replica gets the same number of samples.
            self.num_samples = math.ceil((n - self.num_replicas) / self.num_replicas)
        else:
            self.num_samples = math.ceil(n / self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas
        self.shuffle = shuffle
        self.seed = seed

    def __iter__(self) -> Iterator[int]:
        n = len(self.dataset)
        if self.shuffle:
            g = _random.Generator().manual_seed(self.seed + self.epoch)
            indices = g.numpy().permutation(n).tolist()
        else:
            indices = list(range(n))
        if not self.drop_last:
            padding_size = self.total_size - len(indices)
            if padding_size <= len(indices):
                indices += indices[:padding_size]
            else:
                indices += (indices * math.ceil(padding_size / len(indices)))[:padding_size]
        else:
            indices = indices[: self.total_size]
        if len(indices) != self.total_size:
            raise AssertionError(
                f"DistributedSampler: dataset length changed to {n} after the "
                f"sampler was built for {self.total_size}"
            )
        return iter(indices[self.rank : self.total_size : self.num_replicas])

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch: with ``shuffle=True`` each epoch has its own order (same on all
        replicas)."""
        self.epoch = epoch

    def state_dict(self) -> dict:
        return {"epoch": self.epoch}

    def load_state_dict(self, state_dict: dict) -> None:
        self.epoch = int(state_dict["epoch"])


def _default_group_rank() -> tuple[int, int]:
    """(world size, rank) of ember.distributed's default group, imported only when needed."""
    try:
        import ember.distributed as dist  # lazy: core never imports it at module level

        initialised = dist.is_available() and dist.is_initialized()
    except Exception:  # the distributed layer missing or broken: same answer as uninitialised
        initialised = False
    if not initialised:
        raise RuntimeError(
            "DistributedSampler: num_replicas and rank were not given and the default process "
            "group has not been initialized; pass num_replicas= and rank= explicitly or call "
            "ember.distributed.init_process_group() first"
        )
    return dist.get_world_size(), dist.get_rank()
