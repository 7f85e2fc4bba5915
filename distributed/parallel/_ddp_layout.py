"""DDP's bucket layout: which parameters share a bucket, and the flat storage the buckets are
views of (shared memory on one host, see ``_ddp_storage.py``). A mixin of
``DistributedDataParallel``; it reads the DDP's ``_params``, ``process_group``, ``world_size``
and ``bucket_bytes_cap``.
"""

from __future__ import annotations

import functools
import mmap

import numpy as np

import ember
from ember import _interop

from .. import collectives
from .._runtime._state import resolve_group
from ..reduce_op import ReduceOp
from ._ddp_storage import Bucket as _Bucket
from ._ddp_storage import SharedStorage

# PyTorch's first bucket is small (1 MiB) so that the first allreduce starts early.
_FIRST_BUCKET_BYTES = 1024 * 1024


class BucketLayout:
    """Builds and slices the buckets of a ``DistributedDataParallel``."""

    def _build_buckets(self, order: list[int], first_small: bool) -> list[_Bucket]:
        buckets, current, size = [], [], 0
        cap = _FIRST_BUCKET_BYTES if first_small else self.bucket_bytes_cap
        key = None
        for i in order:
            p = self._params[i]
            a = _interop.array_of(p)
            k = (a.dtype, type(a))
            if current and (size + a.nbytes > cap or k != key):
                buckets.append(current)
                current, size, cap = [], 0, self.bucket_bytes_cap
            current.append(i)
            size += a.nbytes
            key = k
        if current:
            buckets.append(current)
        # The buckets of one kind of array are consecutive views of one storage, so that
        # without overlap all of them are reduced by one allreduce.
        self._sizes = [
            sum(_interop.array_of(self._params[i]).size for i in idxs) for idxs in buckets
        ]
        kinds: dict = {}
        for b, idxs in enumerate(buckets):
            p0 = _interop.array_of(self._params[idxs[0]])
            kinds.setdefault((p0.dtype, type(p0)), []).append(b)
        self._members = list(kinds.values())
        # each kind's storage goes where its first parameter is (its GPU, for CuPy arrays)
        self._storages, self._shared = self._allocate_storages(
            [
                (
                    key,
                    sum(self._sizes[b] for b in members),
                    _interop.array_of(self._params[buckets[members[0]][0]]),
                )
                for key, members in kinds.items()
            ]
        )
        self._bucket_of = {i: b for b, idxs in enumerate(buckets) for i in idxs}
        self._buckets = [_Bucket(idxs, [self._params[i] for i in idxs]) for idxs in buckets]
        self._pools = [
            SharedStorage(
                root,
                functools.partial(self._slices, k),
                functools.partial(self._new_block, root.size, root.dtype),
            )
            if shared
            else None
            for k, (root, shared) in enumerate(zip(self._storages, self._shared))
        ]
        self._slice_buckets()
        return self._buckets

    def _slices(self, k: int, storage) -> list:
        """Per bucket of storage kind ``k``: its range of ``storage`` and the parameters'
        views of that range."""
        out, start = [], 0
        for b in self._members[k]:
            bucket = self._buckets[b]
            flat = storage[start : start + self._sizes[b]]
            out.append(
                (
                    flat,
                    [
                        flat[lo:hi].reshape(_interop.array_of(p).shape)
                        for p, lo, hi in zip(bucket.params, bucket.offsets, bucket.offsets[1:])
                    ],
                )
            )
            start += self._sizes[b]
        return out

    def _new_block(self, count: int, dtype):
        return resolve_group(self.process_group).shared_block(count, dtype)

    def _slice_buckets(self, private: bool = True) -> None:
        """Point every bucket's ``flat`` (and its per-parameter ``views``) at its range of its
        storage (shared storage: the current block's cached views; private storage only when
        ``private``). Parameters of shared-memory storage get their view as gradient
        destination: ops that can (Linear) write the gradient straight into the bucket (no
        copy-in), since the storage is handed to the gradients afterwards (``_finalize``)."""
        for k, (storage, pool) in enumerate(zip(self._storages, self._pools)):
            if pool is None and not private:
                continue
            slices = pool.current.slices if pool is not None else self._slices(k, storage)
            for b, (flat, views) in zip(self._members[k], slices):
                bucket = self._buckets[b]
                bucket.flat, bucket.views = flat, views
                for p, view in zip(bucket.params, views):
                    _interop.set_grad_destination(p, view if pool is not None else None)

    def _allocate_storages(self, kinds: list) -> tuple[list, list]:
        """Zeroed flat storage per ``((dtype, array type), count, sample array)`` (on the
        sample's device), and whether each is in shared memory. When all ranks are on this
        host, host storage lives in shared memory (``_shm_arena.py``), where the allreduce
        reads and writes the ranks' buckets in place. Every rank must agree on that, so a rank
        that got no room makes all use private memory."""
        pg = resolve_group(self.process_group)
        blocks: list = []
        if self.world_size > 1 and pg.comm is not None and pg.comm.arena is not None:
            blocks = [
                pg.shared_block(n, dtype) for (dtype, kind), n, _ in kinds if kind is np.ndarray
            ]
            ok = ember.tensor([int(all(b is not None for b in blocks))])
            collectives.all_reduce(ok, op=ReduceOp.MIN, group=self.process_group)
            blocks = blocks if int(ok.item()) else []
            if blocks and not getattr(self, "_release_registered", False):
                pg.world.on_close(self._release_shared)
                self._release_registered = True
        shared_blocks = iter(blocks)
        storages, shared = [], []
        for (dtype, kind), n, sample in kinds:
            if kind is np.ndarray and blocks:
                flat = next(shared_blocks)
                flat[...] = 0  # touches the pages now rather than in the first step
            elif kind is np.ndarray:
                flat = np.zeros(n, dtype=dtype)
            else:
                with sample.device:  # a CuPy array: its storage on its GPU
                    flat = ember.backend.get_array_module(sample).zeros(n, dtype=dtype)
            storages.append(flat)
            shared.append(kind is np.ndarray and bool(blocks))
        return storages, shared

    def _release_shared(self) -> None:
        """The process group is being destroyed: move every shared-memory storage, and the
        gradients that are views of shared memory (of the current blocks, or of blocks
        dropped when the buckets were rebuilt), into private memory, so that the arena's
        pages go back to ``/dev/shm`` even while this DDP (or its module) lives on
        (issue #28)."""
        for k, pool in enumerate(self._pools):
            if pool is None:
                continue
            storage = self._storages[k]
            self._storages[k] = (storage if storage is not None else pool.root).copy()
            self._pools[k] = None
            self._shared[k] = False
        for p in self._params:
            _interop.set_grad_destination(p, None)
            if p.grad is not None and _in_shared_memory(_interop.array_of(p.grad)):
                p.grad = _interop.wrap(_interop.array_of(p.grad).copy())
        self._slice_buckets()
        self._handed = False


def _in_shared_memory(arr) -> bool:
    """Whether ``arr`` is a view of a memory map (the arena's blocks are)."""
    while isinstance(getattr(arr, "base", None), np.ndarray):
        arr = arr.base
    base = getattr(arr, "base", None)
    return isinstance(base.obj if isinstance(base, memoryview) else base, mmap.mmap)
