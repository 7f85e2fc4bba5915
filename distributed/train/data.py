"""Ray Data under the Trainer: ``Trainer(datasets=...)``, ``DataConfig`` and
``get_dataset_shard`` with Ray Train's semantics, yielding ember tensors.

The driver splits each dataset named in ``DataConfig.datasets_to_split`` with
``Dataset.streaming_split(world_size, equal=True)``: one ``DataIterator`` per worker, fed by one
streaming execution, so that within an epoch the workers see disjoint rows and together every
row (``equal=True`` keeps the batch counts equal for DDP; it drops at most ``world_size - 1``
rows when the count does not divide). Each new pass over an iterator is a new epoch: the
dataset's pipeline (``map_batches``, ``random_shuffle``, ...) runs again on the cluster's CPUs
while the workers train. Datasets not split are read whole by every worker.

Ray Data is optional (``pip install 'ray[data]'``); nothing here imports it until a Trainer is
given datasets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

import ember

from . import session


class DataConfig:
    """How the Trainer hands its ``datasets`` to the workers (Ray Train's ``DataConfig``).

    Args:
        datasets_to_split: ``"all"`` (the default) or the names of the datasets to split across
            workers; the others are read whole by every worker (e.g. a validation set).
        execution_options: Ray Data ``ExecutionOptions`` applied to every dataset (resource
            limits, ``preserve_order``, ...).
        enable_progress_bars: Ray Data's per-operator progress bars (off by default: they
            interleave with the training output of every worker).
    """

    def __init__(
        self,
        datasets_to_split: str | list[str] = "all",
        execution_options=None,
        enable_progress_bars: bool = False,
    ) -> None:
        if datasets_to_split != "all" and not (
            isinstance(datasets_to_split, (list, tuple))
            and all(isinstance(n, str) for n in datasets_to_split)
        ):
            raise TypeError(
                "DataConfig: datasets_to_split must be 'all' or a list of dataset "
                f"names, got {datasets_to_split!r}"
            )
        self.datasets_to_split = datasets_to_split
        self.execution_options = execution_options
        self.enable_progress_bars = enable_progress_bars
        self._bases: dict[int, tuple] = {}

    def configure(
        self,
        datasets: dict[str, Any],
        world_size: int,
        worker_resources: dict[str, float] | None = None,
    ) -> list[dict[str, Any]]:
        """One ``{name: DataIterator}`` per rank (called by the Trainer on the driver).

        ``worker_resources`` is one Trainer worker's bundle (``{"CPU": 1, "GPU": 0}``): the
        workers' share is excluded from what Ray Data schedules, as Ray Train does.
        """
        split = set(datasets) if self.datasets_to_split == "all" else set(self.datasets_to_split)
        unknown = sorted(split - set(datasets))
        if unknown:
            raise ValueError(
                f"DataConfig: datasets_to_split names {unknown}, but the Trainer "
                f"was given datasets {sorted(datasets)}"
            )
        per_rank: list[dict[str, Any]] = [{} for _ in range(world_size)]
        for name, ds in datasets.items():
            ctx = ds.context
            ctx.enable_progress_bars = self.enable_progress_bars
            ctx.execution_options = self._ingest_options(
                ctx.execution_options, world_size, worker_resources
            )
            if name in split:
                for rank, it in enumerate(ds.streaming_split(world_size, equal=True)):
                    per_rank[rank][name] = DataIterator(it)
            else:
                whole = DataIterator(ds.iterator())
                for rank in range(world_size):
                    per_rank[rank][name] = whole
        return per_rank

    def _ingest_options(self, current, world_size: int, worker_resources: dict | None):
        """Ray Data's ``ExecutionOptions`` for one dataset, less the Trainer workers' CPUs/GPUs.

        Ray Data sizes its budget from the cluster's total resources, the CPUs the workers'
        placement group holds included: without the exclusion it plans map tasks for CPUs it
        cannot get, and its backpressure budgets are off by that share.
        """
        import copy

        # The options this config produced before (a restarted attempt, or datasets sharing one
        # context) map back to what they were made from, so the exclusion is applied once.
        base = self._bases.get(id(current), (None, current))[1]
        if self.execution_options is not None:
            base = self.execution_options
        opts = copy.deepcopy(base)
        held = worker_resources or {}
        cpu, gpu = held.get("CPU", 0) * world_size, held.get("GPU", 0) * world_size
        if cpu or gpu:
            import warnings

            from ray.data import ExecutionResources

            # Ray 2.60 marks exclude_resources deprecated (to go after January 2027) but its
            # own Train DataConfig still sets it, and Ray Data does not take a placement
            # group's share out of its budget by itself: keep it, quietly, while Ray has it.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                opts.exclude_resources = opts.exclude_resources.add(
                    ExecutionResources(cpu=cpu, gpu=gpu)
                )
        self._bases[id(opts)] = (opts, base)  # (kept alive, so that its id stays unique)
        return opts


def check_datasets(datasets: dict | None) -> dict:
    """The Trainer's ``datasets`` argument, validated on the driver."""
    if datasets is None:
        return {}
    if not isinstance(datasets, dict):
        raise TypeError(
            f"Trainer: datasets must be a dict of name -> ray.data.Dataset, got "
            f"{type(datasets).__name__}"
        )
    try:
        from ray.data import Dataset
    except ImportError as e:
        raise ImportError("Trainer(datasets=...) needs Ray Data: pip install 'ray[data]'") from e
    for name, ds in datasets.items():
        if not isinstance(name, str) or not isinstance(ds, Dataset):
            raise TypeError(
                f"Trainer: datasets[{name!r}] must be a ray.data.Dataset under a "
                f"str name, got {type(ds).__name__}"
            )
    return dict(datasets)


def get_dataset_shard(dataset_name: str | None = None) -> DataIterator:
    """This worker's ``DataIterator`` over the Trainer's dataset ``dataset_name`` (may be
    omitted when the Trainer was given exactly one dataset)."""
    shards = getattr(session._current(), "datasets", None) or {}
    if not shards:
        raise KeyError(
            "get_dataset_shard(): the Trainer was given no datasets "
            "(pass Trainer(..., datasets={'train': ds}))"
        )
    if dataset_name is None:
        if len(shards) != 1:
            raise KeyError(f"get_dataset_shard(): name one of the datasets {sorted(shards)}")
        dataset_name = next(iter(shards))
    if dataset_name not in shards:
        raise KeyError(
            f"get_dataset_shard({dataset_name!r}): the Trainer was given the "
            f"datasets {sorted(shards)}"
        )
    return shards[dataset_name]


def _as_tensor(value: np.ndarray, dtype, device) -> Any:
    if value.dtype == object or value.dtype.kind in "USO":
        return value  # strings and ragged objects stay NumPy, as Ray's torch iterator leaves them
    return ember.as_tensor(np.ascontiguousarray(value), dtype=dtype, device=device)


class DataIterator:
    """One worker's view of a dataset (Ray Data's ``DataIterator``, yielding ember tensors).

    Each call of :meth:`iter_ember_batches` or :meth:`iter_batches` is one pass (an epoch).
    """

    def __init__(self, ray_iterator) -> None:
        self._it = ray_iterator

    def iter_batches(self, **kwargs) -> Iterator:
        """Ray Data's ``iter_batches`` (NumPy / pandas / pyarrow batches), unchanged."""
        return self._it.iter_batches(**kwargs)

    def iter_rows(self, **kwargs) -> Iterator:
        return self._it.iter_rows(**kwargs)

    def iter_ember_batches(
        self,
        *,
        prefetch_batches: int = 1,
        batch_size: int | None = 256,
        dtypes: Any = None,
        device: Any = None,
        collate_fn: Callable[[dict[str, np.ndarray]], Any] | None = None,
        drop_last: bool = False,
        local_shuffle_buffer_size: int | None = None,
        local_shuffle_seed: int | None = None,
    ) -> Iterator:
        """Batches as ``{column: ember.Tensor}`` on this worker's device (Ray's
        ``iter_torch_batches`` with ember's tensors).

        On CPU the tensors share memory with Ray's NumPy batches (no copy when the column's
        dtype is already the one asked for); a batch cut from a single block may then be a
        read-only view of the object store, as with Ray's torch batches: clone it before
        writing in place.

        Args:
            prefetch_batches: batches Ray fetches ahead while the step runs.
            batch_size: rows per batch (``None``: whole blocks).
            dtypes: an ember dtype for every column, or ``{column: dtype}``.
            device: where the tensors go; the worker's device by default (its GPU, else CPU).
            collate_fn: turns the NumPy batch dict into what the loop wants (then ``dtypes``
                and ``device`` are left to it).
            drop_last: drop the last batch when it is short.
            local_shuffle_buffer_size, local_shuffle_seed: shuffle rows within a buffer of
                this many rows on the worker (Ray's local shuffle), seeded for determinism.
        """
        if device is None:
            from .prepare import get_device

            device = get_device()
        batches = self._it.iter_batches(
            prefetch_batches=prefetch_batches,
            batch_size=batch_size,
            batch_format="numpy",
            drop_last=drop_last,
            local_shuffle_buffer_size=local_shuffle_buffer_size,
            local_shuffle_seed=local_shuffle_seed,
        )
        for batch in batches:
            if collate_fn is not None:
                yield collate_fn(batch)
                continue
            if not isinstance(batch, dict):  # a single-column dataset may come as an array
                batch = {"data": batch}
            yield {
                k: _as_tensor(v, dtypes.get(k) if isinstance(dtypes, dict) else dtypes, device)
                for k, v in batch.items()
            }

    def stats(self) -> str:
        return self._it.stats()

    def __repr__(self) -> str:
        return f"DataIterator({self._it!r})"
