"""``DataLoader``: batches from a dataset, in-process or from worker processes, resumable.

Exact resumption: ``loader.state_dict()`` records the epoch, the number of batches served in it,
the sampler's state for that epoch and the workers' base seed; ``load_state_dict`` makes the
next ``iter(loader)`` replay that epoch from the first batch not yet served. For map-style
datasets the skipped batches are skipped at the index level (nothing is loaded); an
IterableDataset has no indices, so its skipped batches are fetched again and discarded. Random
transforms stay exact too: in worker processes every batch is seeded from its position (see
``_worker.py``); with ``num_workers=0`` they draw from the default generator, which a checkpoint
restores with ``ember.set_rng_state``.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

from ... import random as _random
from . import _pin_memory, _worker
from .collate import default_collate, default_convert
from .dataset import Dataset, IterableDataset
from .sampler import (
    BatchSampler,
    RandomSampler,
    Sampler,
    SequentialSampler,
    _load_sampler_state,
    _sampler_state,
)

__all__ = ["DataLoader", "get_worker_info", "default_collate", "default_convert"]

T_co = TypeVar("T_co", covariant=True)
T = TypeVar("T")
# PyTorch's private type aliases, which libraries (Opacus) import for their annotations
_worker_init_fn_t = Callable[[int], None]
_collate_fn_t = Callable[[list[T]], Any]
get_worker_info = _worker.get_worker_info

_STATE_KEYS = ("epoch", "batches_served", "sampler", "base_seed")


class _DatasetKind:
    """torch's dataset-kind tags (``loader._dataset_kind``); fastai's loader sets ``Iterable``."""

    Map = 0
    Iterable = 1


class _InfiniteConstantSampler(Sampler):
    """The 'indices' of an IterableDataset: ``None`` forever (batched into lists of None)."""

    def __iter__(self):
        while True:
            yield None


class DataLoader(Generic[T_co]):
    """Combines a dataset and a sampler and iterates over batches (PyTorch's ``DataLoader``).

    Args:
        dataset: a map-style :class:`Dataset` or an :class:`IterableDataset`.
        batch_size: samples per batch (default 1); ``None`` turns automatic batching off.
        shuffle: reshuffle every epoch (a :class:`RandomSampler` over ``generator``).
        sampler: the order of indices; mutually exclusive with ``shuffle``.
        batch_sampler: yields lists of indices; mutually exclusive with ``batch_size``,
            ``shuffle``, ``sampler`` and ``drop_last``.
        num_workers: worker processes (0 loads in the main process).
        collate_fn: list of samples -> batch (default :func:`default_collate`, or
            :func:`default_convert` without automatic batching).
        pin_memory: copy batches into page-locked host memory (needs CUDA; a warning and no-op
            otherwise).
        drop_last: drop the last incomplete batch.
        timeout: seconds to wait for a batch from the workers (0: forever).
        worker_init_fn: called as ``worker_init_fn(worker_id)`` in each worker after seeding.
        multiprocessing_context: a start method name (``"fork"``, ``"spawn"``,
            ``"forkserver"``) or context; default: the platform's default.
        generator: ``ember.Generator`` for the shuffling order and the workers' base seed.
        prefetch_factor: batches loaded in advance per worker (default 2 with workers).
        persistent_workers: keep the workers alive between epochs.
        pin_memory_device: accepted for compatibility; pinning targets the current CUDA device.

    Workers are seeded like PyTorch's (``base_seed + worker_id``, then ``worker_init_fn``), and
    in addition before every batch from ``(base_seed, batch index)``, so random augmentations
    are reproducible and do not depend on ``num_workers``. Random draws in a dataset should
    use ember's default generator, ``random`` or NumPy's global generator to benefit.

    Resuming mid-epoch::

        checkpoint = {"loader": loader.state_dict(), "rng": ember.get_rng_state(), ...}
        # ... in the restarted process:
        loader.load_state_dict(checkpoint["loader"])
        ember.set_rng_state(checkpoint["rng"])
        for batch in loader:  # the batches the first run had not reached yet
            ...
    """

    dataset: Dataset
    _initialized = False

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int | None = 1,
        shuffle: bool | None = None,
        sampler: Sampler | Iterable | None = None,
        batch_sampler: Sampler | Iterable | None = None,
        num_workers: int = 0,
        collate_fn: Callable | None = None,
        pin_memory: bool = False,
        drop_last: bool = False,
        timeout: float = 0,
        worker_init_fn: Callable[[int], None] | None = None,
        multiprocessing_context=None,
        generator=None,
        *,
        prefetch_factor: int | None = None,
        persistent_workers: bool = False,
        pin_memory_device: str = "",
        in_order: bool = True,
    ) -> None:
        if num_workers < 0:
            raise ValueError(
                "num_workers option should be non-negative; use num_workers=0 to "
                "disable multiprocessing."
            )
        if timeout < 0:
            raise ValueError("timeout option should be non-negative")
        if num_workers == 0 and prefetch_factor is not None:
            raise ValueError(
                "prefetch_factor option could only be specified in multiprocessing."
                "let num_workers > 0 to enable multiprocessing, otherwise set "
                "prefetch_factor to None."
            )
        if num_workers > 0 and prefetch_factor is None:
            prefetch_factor = 2
        elif prefetch_factor is not None and prefetch_factor < 0:
            raise ValueError("prefetch_factor option should be non-negative")
        if persistent_workers and num_workers == 0:
            raise ValueError("persistent_workers option needs num_workers > 0")

        self.dataset = dataset
        self.num_workers = num_workers
        self.prefetch_factor = prefetch_factor
        self.pin_memory = pin_memory
        self.pin_memory_device = pin_memory_device
        self.timeout = timeout
        self.worker_init_fn = worker_init_fn
        self.multiprocessing_context = multiprocessing_context
        # False: with workers, a batch is served as soon as any worker delivers it
        self.in_order = in_order

        if isinstance(dataset, IterableDataset):
            self._dataset_kind_iterable = True
            if isinstance(shuffle, bool) and shuffle:
                raise ValueError(
                    "DataLoader with IterableDataset: expected unspecified shuffle "
                    f"option, but got shuffle={shuffle}"
                )
            if sampler is not None:
                raise ValueError(
                    "DataLoader with IterableDataset: expected unspecified sampler "
                    f"option, but got sampler={sampler}"
                )
            if batch_sampler is not None:
                raise ValueError(
                    "DataLoader with IterableDataset: expected unspecified "
                    f"batch_sampler option, but got batch_sampler={batch_sampler}"
                )
        else:
            self._dataset_kind_iterable = False
            shuffle = bool(shuffle)

        if sampler is not None and shuffle:
            raise ValueError("sampler option is mutually exclusive with shuffle")
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError(
                    "batch_sampler option is mutually exclusive with batch_size, "
                    "shuffle, sampler, and drop_last"
                )
            batch_size = None
            drop_last = False
        elif batch_size is None and drop_last:
            raise ValueError(
                "batch_size=None option disables auto-batching and is mutually "
                "exclusive with drop_last"
            )

        if sampler is None:
            if self._dataset_kind_iterable:
                sampler = _InfiniteConstantSampler()
            elif shuffle:
                sampler = RandomSampler(dataset, generator=generator)
            else:
                sampler = SequentialSampler(dataset)
        if batch_size is not None and batch_sampler is None:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)

        self.batch_size = batch_size
        self.drop_last = drop_last
        self.sampler = sampler
        self.batch_sampler = batch_sampler
        self.generator = generator
        if collate_fn is None:
            collate_fn = default_collate if self._auto_collation else default_convert
        self.collate_fn = collate_fn
        self.persistent_workers = persistent_workers

        if pin_memory and not _pin_memory.cuda_available():
            warnings.warn(
                "'pin_memory' argument is set as true but no accelerator is found, "
                "then device pinned memory won't be used.",
                stacklevel=2,
            )

        self._epoch = 0  # the epoch the next iter() starts (or resumes)
        self._resume: dict | None = None
        self._live: weakref.ref | None = None  # the iterator of the epoch in progress
        self._iterator = None  # kept only with persistent_workers
        self._initialized = True

    def __setattr__(self, attr, val) -> None:
        if self._initialized and attr in (
            "batch_size",
            "batch_sampler",
            "sampler",
            "drop_last",
            "dataset",
            "persistent_workers",
        ):
            raise ValueError(
                f"{attr} attribute should not be set after {self.__class__.__name__} is initialized"
            )
        super().__setattr__(attr, val)

    @property
    def _dataset_kind(self) -> int:
        return _DatasetKind.Iterable if self._dataset_kind_iterable else _DatasetKind.Map

    @property
    def _auto_collation(self) -> bool:
        return self.batch_sampler is not None

    @property
    def _index_sampler(self):
        return self.batch_sampler if self._auto_collation else self.sampler

    def __len__(self) -> int:
        if self._dataset_kind_iterable:
            length = len(self.dataset)  # type: ignore[arg-type]
            if self.batch_size is not None:
                from math import ceil

                length = (
                    length // self.batch_size if self.drop_last else ceil(length / self.batch_size)
                )
            return length
        return len(self._index_sampler)

    def __iter__(self):
        if self.num_workers > 0 and self.persistent_workers:
            plan = self._start_epoch()
            if self._iterator is None:
                from ._multiprocess import MultiProcessingDataLoaderIter

                self._iterator = MultiProcessingDataLoaderIter(self, plan)
            else:
                self._iterator._reset(plan)
            it = self._iterator
        else:
            it = self._get_iterator()
        self._live = weakref.ref(it)
        return it

    def _get_iterator(self):
        """A fresh iterator over the next epoch, as torch's hook of this name (ultralytics'
        ``InfiniteDataLoader`` keeps one for all epochs over a repeating batch sampler)."""
        plan = self._start_epoch()
        if self.num_workers == 0:
            return _SingleProcessDataLoaderIter(self, plan)
        from ._multiprocess import MultiProcessingDataLoaderIter

        return MultiProcessingDataLoaderIter(self, plan)

    def _start_epoch(self) -> _EpochPlan:
        """Begin an epoch: fresh, or the one a loaded state describes."""
        resume, self._resume = self._resume, None
        if resume is not None and resume.get("sampler"):
            _load_sampler_state(self._index_sampler, resume["sampler"])
        epoch = self._epoch
        self._epoch += 1
        # torch draws each pass's base seed (workers or not) before the sampler draws its own; a
        # pass resumed mid-way drew it before the checkpoint, one resumed before its first batch
        # draws it once the sampler's generator is restored
        drawn_seed = _random.seed_draw(self.generator) if resume is None else None
        sampler_iter = iter(self._index_sampler)
        if resume is not None and not int(resume.get("batches_served") or 0):
            drawn_seed = _random.seed_draw(self.generator)
        sampler_state = _sampler_state(self._index_sampler)  # describes this epoch's pass
        base_seed = None if resume is None else resume.get("base_seed")
        if base_seed is None and self.num_workers > 0:
            base_seed = drawn_seed if drawn_seed is not None else _random.seed_draw(self.generator)
        skip = 0 if resume is None else int(resume["batches_served"])
        return _EpochPlan(epoch, sampler_iter, sampler_state, base_seed, skip)

    # ---- exact resumption ----------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The loader's position: ``epoch``, ``batches_served`` in it, the sampler's state for
        it and the workers' ``base_seed``. Save it with the model's checkpoint."""
        it = self._live() if self._live is not None else None
        if it is not None and not it._finished:
            return {
                "epoch": it._epoch,
                "batches_served": it._served,
                "sampler": it._sampler_state,
                "base_seed": it._base_seed,
            }
        if self._resume is not None:
            return dict(self._resume)
        return {
            "epoch": self._epoch,
            "batches_served": 0,
            "sampler": _sampler_state(self._index_sampler),
            "base_seed": None,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a position from :meth:`state_dict`: the next ``iter()`` yields the batches
        that had not been served yet, exactly as the saved run would have."""
        missing = [k for k in _STATE_KEYS if k not in state_dict]
        unexpected = [k for k in state_dict if k not in _STATE_KEYS]
        if missing or unexpected:
            raise KeyError(
                f"DataLoader.load_state_dict: missing keys {missing}, unexpected keys {unexpected}"
            )
        served = int(state_dict["batches_served"])
        if served < 0:
            raise ValueError(
                f"DataLoader.load_state_dict: batches_served must be >= 0, got {served}"
            )
        self._epoch = int(state_dict["epoch"])
        self._resume = dict(state_dict)


class _EpochPlan:
    __slots__ = ("epoch", "sampler_iter", "sampler_state", "base_seed", "skip")

    def __init__(self, epoch, sampler_iter, sampler_state, base_seed, skip) -> None:
        self.epoch = epoch
        self.sampler_iter = sampler_iter
        self.sampler_state = sampler_state
        self.base_seed = base_seed
        self.skip = skip


def _is_iterable(loader) -> bool:
    iterable = getattr(loader, "_dataset_kind_iterable", None)
    if iterable is None:  # a duck-typed loader with torch's attribute names
        iterable = loader._dataset_kind == _DatasetKind.Iterable
    return bool(iterable)


def _foreign_plan(loader) -> _EpochPlan:
    """The epoch of torch's one-argument form, ``_SingleProcessDataLoaderIter(loader)``: fastai
    builds the iterator itself over a duck-typed loader that has torch's attribute names
    (``_index_sampler``, ``_dataset_kind``, ``generator``, ...), never through ``__iter__``."""
    sampler_iter = iter(loader._index_sampler)
    # torch's iterator draws its base seed here, workers or not (the default stream moves on)
    gen = getattr(loader, "generator", None)
    draw = getattr(_random, "seed_draw", None)  # (torch's stream: core/random.py)
    if draw is not None:
        seed = draw(gen)
    else:
        seed = int((gen or _random.default_generator).numpy().integers(0, 2**62))
    base_seed = seed if getattr(loader, "num_workers", 0) > 0 else None
    return _EpochPlan(0, sampler_iter, None, base_seed, 0)


class _BaseDataLoaderIter:
    def __init__(self, loader: DataLoader, plan: _EpochPlan | None = None) -> None:
        self._dataset = loader.dataset
        if plan is None:
            plan = _foreign_plan(loader)
        self._iterable = _is_iterable(loader)
        self._auto_collation = loader._auto_collation
        self._drop_last = loader.drop_last
        self._index_sampler = loader._index_sampler
        self._collate_fn = loader.collate_fn
        self._pin_memory = loader.pin_memory and _pin_memory.cuda_available()
        self._timeout = loader.timeout
        self._start(plan)

    def _start(self, plan: _EpochPlan) -> None:
        self._epoch = plan.epoch
        self._sampler_iter = plan.sampler_iter
        self._sampler_state = plan.sampler_state
        self._base_seed = plan.base_seed
        self._served = 0
        self._finished = False

    def _skip_indices(self, n: int) -> int:
        """Advance a map-style epoch by ``n`` batches without loading them; returns how many
        were skipped (fewer at the end of the epoch)."""
        done = 0
        for _ in range(n):
            if next(self._sampler_iter, _END) is _END:
                break
            done += 1
        self._served = done
        return done

    @property
    def _num_yielded(self) -> int:
        # torch's name for the batches served: speechbrain's SaveableDataLoader checkpoints
        # it, and sets it after fast-forwarding ``_sampler_iter`` on recovery
        return self._served

    @_num_yielded.setter
    def _num_yielded(self, value: int) -> None:
        self._served = int(value)

    def _next_index(self):
        return next(self._sampler_iter)  # may raise StopIteration

    def __iter__(self):
        return self

    def __next__(self):
        if self._finished:
            raise StopIteration
        try:
            data = self._next_data()
        except StopIteration:
            self._finished = True
            raise
        self._served += 1
        if self._pin_memory:
            data = _pin_memory.pin_memory(data)
        return data

    def __len__(self) -> int:
        return len(self._index_sampler)


_END = object()


class _SingleProcessDataLoaderIter(_BaseDataLoaderIter):
    def __init__(self, loader: DataLoader, plan: _EpochPlan | None = None) -> None:
        if plan is None:
            plan = _foreign_plan(loader)
        super().__init__(loader, plan)
        self._fetcher = _worker.make_fetcher(
            self._iterable, self._dataset, self._auto_collation, self._collate_fn, self._drop_last
        )
        if self._iterable:
            for _ in range(plan.skip):  # no indices to skip: replay and discard
                try:
                    self._next_data()
                except StopIteration:
                    self._finished = True
                    break
                self._served += 1
        else:
            self._skip_indices(plan.skip)

    def _next_data(self):
        return self._fetcher.fetch(self._next_index())


def __getattr__(name: str):
    # torch's names for the worker-process iterator (Lightning's CombinedLoader imports it to
    # shut workers down); its module loads multiprocessing, so only on first use
    if name == "_MultiProcessingDataLoaderIter":
        from ._multiprocess import MultiProcessingDataLoaderIter

        return MultiProcessingDataLoaderIter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
