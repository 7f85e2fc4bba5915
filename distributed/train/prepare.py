"""``prepare_model`` and ``prepare_data_loader``: make single-process code data-parallel."""

from __future__ import annotations

import os

import ember
from ember.utils.data import DataLoader, DistributedSampler, RandomSampler


def _device():
    if os.environ.get("CUDA_VISIBLE_DEVICES") and ember.cuda.is_available():
        # The worker group names each worker's GPU; a torchrun-style launch has LOCAL_RANK.
        index = os.environ.get("EMBER_DEVICE_INDEX", os.environ.get("LOCAL_RANK", "0"))
        return ember.device("cuda", int(index))
    return ember.device("cpu")


def use_worker_device():
    """Make this worker's GPU CuPy's current device, where new arrays are allocated (a no-op
    on CPU workers)."""
    dev = _device()
    if dev.type == "cuda":
        ember.cuda.set_device(dev)
    return dev


def get_device():
    """The device this worker trains on: its GPU (``cuda:LOCAL_RANK`` unless workers share
    GPUs through fractional ``resources_per_worker``), else the CPU."""
    return _device()


def prepare_model(
    model,
    move_to_device: bool = True,
    parallel_strategy: str | None = None,
    parallel_strategy_kwargs: dict | None = None,
):
    """Move ``model`` to this worker's device and wrap it for data parallelism.

    The strategy defaults to the Trainer's (``"ddp"``); with one worker the model is returned
    unwrapped, as in Ray Train.
    """
    from .. import distributed_c10d as pg
    from ..parallel.ddp import DistributedDataParallel
    from . import session

    if move_to_device:
        model = model.to(use_worker_device())
    strategy = parallel_strategy
    if strategy is None:
        s = session._SESSION
        strategy = getattr(s, "strategy", "ddp") if s is not None else "ddp"
    if not pg.is_initialized() or pg.get_world_size() == 1:
        return model
    if strategy == "ddp":
        return DistributedDataParallel(model, **(parallel_strategy_kwargs or {}))
    if strategy in ("zero1", "zero2"):  # build the optimizer over the returned model
        from ..optim import ZeroDataParallel

        return ZeroDataParallel(model, stage=int(strategy[-1]), **(parallel_strategy_kwargs or {}))
    if strategy == "fsdp":
        from ..fsdp import FullyShardedDataParallel

        kwargs = {"sync_module_states": True, **(parallel_strategy_kwargs or {})}
        return FullyShardedDataParallel(model, **kwargs)
    raise ValueError(f"prepare_model: unknown parallel strategy {strategy!r}")


class _DistributedSampler(DistributedSampler):
    """``prepare_data_loader``'s sampler: a DistributedSampler that knows whether the user has
    called ``set_epoch`` (even with the value the loader would have set)."""

    user_set_epoch = False

    def set_epoch(self, epoch: int) -> None:
        self.user_set_epoch = True
        super().set_epoch(epoch)


class _PreparedDataLoader(DataLoader):
    """A DataLoader over this rank's shard that moves batches to the worker's device.

    The sampler's epoch: once the user calls ``loader.sampler.set_epoch(epoch)`` (PyTorch's and
    Ray Train's idiom), the user's epoch is the one used, on this pass and every later one, so a
    run resumed from ``(model, optimizer, epoch)`` reshuffles exactly as the uninterrupted run
    did. Until then the loader advances the epoch itself on every pass (Ray Train would reuse
    epoch 0's order), and ``load_state_dict`` restores it.
    """

    def __init__(self, *args, device=None, **kwargs):
        super().__init__(*args, **kwargs)
        self._device = device
        # The epoch the loader itself last gave the sampler: a sampler epoch that differs from
        # it at the start of a pass was set by the user.
        self._epoch_given = getattr(self.sampler, "epoch", None)
        self._user_sets_epoch = False

    def load_state_dict(self, state_dict: dict) -> None:
        # The sampler's epoch follows the loader's: a state saved between epochs names the next
        # epoch for the loader but still the finished one for the sampler.
        if isinstance(self.sampler, DistributedSampler):
            state_dict = dict(state_dict, sampler={"epoch": int(state_dict["epoch"])})
        super().load_state_dict(state_dict)

    def __iter__(self):
        sampler = self.sampler
        if hasattr(sampler, "set_epoch") and not self._user_sets_epoch:
            if (
                getattr(sampler, "user_set_epoch", False)
                or getattr(sampler, "epoch", self._epoch_given) != self._epoch_given
            ):
                self._user_sets_epoch = True  # the user's set_epoch wins from now on
            else:
                # a new shuffle each pass, the same on resume
                if isinstance(sampler, _DistributedSampler):
                    DistributedSampler.set_epoch(sampler, self._epoch)  # not the user's call
                else:
                    sampler.set_epoch(self._epoch)
                self._epoch_given = self._epoch
        it = super().__iter__()
        if self._device is None or self._device.type == "cpu":
            return it
        return (_to_device(b, self._device) for b in it)


def _to_device(batch, device):
    if isinstance(batch, ember.Tensor):
        return batch.to(device)
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    return batch


def prepare_data_loader(
    data_loader: DataLoader, add_dist_sampler: bool = True, move_to_device: bool = True
) -> DataLoader:
    """Rebuild ``data_loader`` so each rank sees its own shard (a DistributedSampler that
    shuffles when the original did) and batches land on the worker's device."""
    from .. import distributed_c10d as pg

    world = pg.get_world_size() if pg.is_initialized() else 1
    rank = pg.get_rank() if pg.is_initialized() else 0
    sampler = data_loader.sampler
    if add_dist_sampler and world > 1 and not isinstance(sampler, DistributedSampler):
        if data_loader.batch_sampler is not None and data_loader.batch_size is None:
            raise ValueError(
                "prepare_data_loader cannot shard a loader built with a custom "
                "batch_sampler; shard the dataset yourself or pass "
                "add_dist_sampler=False"
            )
        sampler = _DistributedSampler(
            data_loader.dataset,
            num_replicas=world,
            rank=rank,
            shuffle=isinstance(data_loader.sampler, RandomSampler),
        )
    kwargs = dict(
        batch_size=data_loader.batch_size,
        num_workers=data_loader.num_workers,
        collate_fn=data_loader.collate_fn,
        pin_memory=data_loader.pin_memory,
        drop_last=data_loader.drop_last,
        timeout=data_loader.timeout,
        worker_init_fn=data_loader.worker_init_fn,
        generator=data_loader.generator,
        persistent_workers=data_loader.persistent_workers,
        prefetch_factor=data_loader.prefetch_factor,
    )
    device = _device() if move_to_device else None
    if data_loader._dataset_kind_iterable:
        # an IterableDataset shards itself (by rank, and by get_worker_info() in workers)
        return _PreparedDataLoader(data_loader.dataset, device=device, **kwargs)
    if data_loader.batch_size is None:  # a custom batch_sampler, kept as it is
        for k in ("batch_size", "drop_last"):
            kwargs.pop(k)
        return _PreparedDataLoader(
            data_loader.dataset, batch_sampler=data_loader.batch_sampler, device=device, **kwargs
        )
    return _PreparedDataLoader(data_loader.dataset, sampler=sampler, device=device, **kwargs)
