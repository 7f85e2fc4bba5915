"""What runs inside a DataLoader worker process, and the pieces both sides share.

Seeding: a worker is seeded with ``base_seed + worker_id`` (ember's default generator, Python's
``random``, NumPy's global generator) before ``worker_init_fn`` runs, as in PyTorch. On top of
that, right before fetching batch ``i`` of an epoch, the worker re-seeds the same three
generators from ``(base_seed, i)``. A batch's random augmentations therefore depend only on the
epoch's base seed and the batch's position, not on which worker fetched it, how many workers
there are, or what the worker did before. That is what lets a DataLoader restored with
``load_state_dict`` produce exactly the batches of the run it resumes.
"""

from __future__ import annotations

import os
import random
import sys
import traceback
from dataclasses import dataclass
from typing import Any

import numpy as np

from ... import random as _random
from ._transport import Sender

_WATCHDOG_S = 2.0  # how often an idle worker checks that the main process is still there
_MASK64 = (1 << 64) - 1


class WorkerInfo:
    """What :func:`get_worker_info` returns inside a worker: ``id``, ``num_workers``, ``seed``
    and ``dataset`` (this worker's copy)."""

    id: int
    num_workers: int
    seed: int
    dataset: Any
    __initialized = False

    def __init__(self, **kwargs) -> None:
        for k, v in kwargs.items():
            setattr(self, k, v)
        self.__keys = tuple(kwargs.keys())
        self.__initialized = True

    def __setattr__(self, key, val) -> None:
        if self.__initialized:
            raise RuntimeError(f"Cannot assign attributes to {self.__class__.__name__} objects")
        super().__setattr__(key, val)

    def __repr__(self) -> str:
        items = [f"{k}={getattr(self, k)}" for k in self.__keys]
        return f"{self.__class__.__name__}({', '.join(items)})"


_worker_info: WorkerInfo | None = None


def get_worker_info() -> WorkerInfo | None:
    """Information about the current DataLoader worker, or ``None`` in the main process.

    Use it in ``IterableDataset.__iter__`` or ``worker_init_fn`` to give each worker its own
    share of the data::

        info = get_worker_info()
        if info is not None:
            start = info.id  # and step by info.num_workers
    """
    return _worker_info


class KeyErrorMessage(str):
    """A str whose repr is itself, so a re-raised KeyError shows the traceback readably."""

    def __repr__(self) -> str:
        return self


class ExceptionWrapper:
    """An exception caught in a worker, carried to the main process with its traceback."""

    def __init__(self, exc_info=None, where: str = "in background") -> None:
        if exc_info is None:
            exc_info = sys.exc_info()
        self.exc_type = exc_info[0]
        self.exc_msg = "".join(traceback.format_exception(*exc_info))
        self.where = where

    def reraise(self):
        """Raise the worker's exception (its type, with the worker's traceback as message)."""
        msg = f"Caught {self.exc_type.__name__} {self.where}.\nOriginal {self.exc_msg}"
        if self.exc_type is KeyError:
            msg = KeyErrorMessage(msg)
        try:
            exception = self.exc_type(msg)
        except Exception:
            # The type needs other constructor arguments: keep the message, lose the type.
            raise RuntimeError(msg) from None
        raise exception


@dataclass(frozen=True)
class IterableDatasetStopIteration:
    """A worker's IterableDataset copy is exhausted."""

    worker_id: int


@dataclass(frozen=True)
class ResumeIteration:
    """Start a new epoch in a persistent worker, with this epoch's base seed."""

    seed: int


def _mix(x: int) -> int:
    # splitmix64's finaliser: nearby inputs give unrelated 64-bit outputs.
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def batch_seed(base_seed: int, index: int) -> int:
    """The seed for batch ``index`` of an epoch whose base seed is ``base_seed``."""
    return _mix(_mix(base_seed & _MASK64) ^ index) & ((1 << 63) - 1)


def _generate_state(base_seed: int, worker_id: int) -> list[int]:
    r"""PyTorch's NumPy seed words for worker ``worker_id`` of a loader seeded ``base_seed``:
    four uint32 from NumPy's ``SeedSequence`` of ``(worker_id, low and high 32 bits of
    base_seed, 0)`` (libraries such as tensordict seed NumPy with it)."""
    entropy = [int(worker_id), int(base_seed) & 0xFFFFFFFF, (int(base_seed) & _MASK64) >> 32, 0]
    return np.random.SeedSequence(entropy).generate_state(4).tolist()


def seed_all(seed: int) -> None:
    """Seed ember's default generator, ``random`` and NumPy's global generator."""
    random.seed(seed)
    _random.manual_seed(seed)
    # Python's random.seed(int) and NumPy's MT19937 seeded with the same 32-bit words would
    # produce the very same stream: give NumPy a different key.
    key = _mix(seed ^ 0x5EED)
    np.random.seed([key & 0xFFFFFFFF, key >> 32])


class MapDatasetFetcher:
    def __init__(self, dataset, auto_collation: bool, collate_fn, drop_last: bool) -> None:
        self.dataset = dataset
        self.auto_collation = auto_collation
        self.collate_fn = collate_fn
        getitems = getattr(dataset, "__getitems__", None)
        self.getitems = getitems if callable(getitems) else None

    def fetch(self, index):
        if self.auto_collation:
            if self.getitems is not None:
                data = self.getitems(index)
            else:
                data = [self.dataset[i] for i in index]
        else:
            data = self.dataset[index]
        return self.collate_fn(data)


class IterableDatasetFetcher:
    def __init__(self, dataset, auto_collation: bool, collate_fn, drop_last: bool) -> None:
        self.dataset_iter = iter(dataset)
        self.auto_collation = auto_collation
        self.collate_fn = collate_fn
        self.drop_last = drop_last
        self.ended = False

    def fetch(self, index):
        if self.ended:
            raise StopIteration
        if self.auto_collation:
            data = []
            for _ in index:
                try:
                    data.append(next(self.dataset_iter))
                except StopIteration:
                    self.ended = True
                    break
            if not data or (self.drop_last and len(data) < len(index)):
                raise StopIteration
        else:
            data = next(self.dataset_iter)
        return self.collate_fn(data)


def make_fetcher(iterable: bool, dataset, auto_collation, collate_fn, drop_last):
    cls = IterableDatasetFetcher if iterable else MapDatasetFetcher
    return cls(dataset, auto_collation, collate_fn, drop_last)


def worker_loop(
    iterable: bool,
    dataset,
    task_conn,
    result_conn,
    auto_collation: bool,
    collate_fn,
    drop_last: bool,
    base_seed: int,
    init_fn,
    worker_id: int,
    num_workers: int,
    shm_prefix: str | None,
    parent_pid: int,
) -> None:
    """The body of worker ``worker_id``: fetch the batches the main process asks for.

    Tasks arrive on ``task_conn`` as ``(epoch, index_in_epoch, indices)``, ``ResumeIteration``
    or ``None`` (exit); every task is answered on ``result_conn`` with
    ``(epoch, index_in_epoch, batch | ExceptionWrapper | IterableDatasetStopIteration)``.
    """
    global _worker_info
    try:
        seed = base_seed + worker_id
        seed_all(seed)
        _worker_info = WorkerInfo(id=worker_id, num_workers=num_workers, seed=seed, dataset=dataset)
        where = f"in DataLoader worker process {worker_id}"
        init_exception = None
        fetcher = None
        try:
            if init_fn is not None:
                init_fn(worker_id)
            fetcher = make_fetcher(iterable, dataset, auto_collation, collate_fn, drop_last)
        except Exception:
            init_exception = ExceptionWrapper(where=where)
        sender = Sender(result_conn, shm_prefix)
        iteration_end = False
        while True:
            if not task_conn.poll(_WATCHDOG_S):
                if os.getppid() != parent_pid:
                    break  # the main process is gone; nobody will ask for more
                continue
            try:
                task = task_conn.recv()
            except (EOFError, OSError):
                break
            if task is None:
                break
            if isinstance(task, ResumeIteration):
                base_seed = task.seed
                iteration_end = False
                if init_exception is None:
                    try:
                        fetcher = make_fetcher(
                            iterable, dataset, auto_collation, collate_fn, drop_last
                        )
                    except Exception:
                        init_exception = ExceptionWrapper(where=where)
                continue
            epoch, idx, index = task
            if init_exception is not None:
                data, init_exception = init_exception, None
            elif iteration_end:
                data = IterableDatasetStopIteration(worker_id)
            else:
                seed_all(batch_seed(base_seed, idx))
                try:
                    data = fetcher.fetch(index)
                except StopIteration:
                    if not iterable:
                        data = ExceptionWrapper(where=where)
                    else:
                        data = IterableDatasetStopIteration(worker_id)
                        iteration_end = True
                except Exception:
                    data = ExceptionWrapper(where=where)
            try:
                sender.send((epoch, idx, data))
            except (BrokenPipeError, ConnectionResetError):
                break
            except Exception:  # the batch (or the exception's type) cannot be pickled
                if isinstance(data, ExceptionWrapper):
                    data.exc_type = RuntimeError  # keep the worker's traceback, lose the type
                else:
                    data = ExceptionWrapper(where=where)
                sender.send((epoch, idx, data))
            del data
    except KeyboardInterrupt:
        pass  # the main process gets the interrupt too and shuts the workers down
    finally:
        for conn in (task_conn, result_conn):
            try:
                conn.close()
            except OSError:
                pass
