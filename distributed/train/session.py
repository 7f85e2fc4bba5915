"""What a training function sees inside a worker: ``report``, ``get_checkpoint``,
``get_context`` (Ray Train's names)."""

from __future__ import annotations

import os
import shutil
import tempfile

from .._runtime import _progress
from .checkpoint import Checkpoint, unpack_into


class TrainContext:
    """This worker's place in the job."""

    def __init__(
        self, rank, local_rank, world_size, local_world_size, node_rank, trial_dir, experiment_name
    ):
        self._rank, self._local_rank, self._world_size = rank, local_rank, world_size
        self._local_world_size, self._node_rank = local_world_size, node_rank
        self._trial_dir, self._name = trial_dir, experiment_name

    def get_world_rank(self) -> int:
        """This worker's rank among all workers of the run."""
        return self._rank

    def get_local_rank(self) -> int:
        """This worker's rank among the workers on its node."""
        return self._local_rank

    def get_world_size(self) -> int:
        """The number of workers in the run."""
        return self._world_size

    def get_local_world_size(self) -> int:
        """The number of workers on this worker's node."""
        return self._local_world_size

    def get_node_rank(self) -> int:
        """The rank of this worker's node (nodes ordered as the worker group placed them)."""
        return self._node_rank

    def get_trial_dir(self) -> str:
        """The run's directory, where reported checkpoints are kept."""
        return self._trial_dir

    def get_trial_name(self) -> str:
        """The run's name (``RunConfig.name``); the same as :meth:`get_experiment_name`."""
        return self._name

    def get_experiment_name(self) -> str:
        """The run's name (``RunConfig.name``)."""
        return self._name


class _Session:
    def __init__(self, context: TrainContext, inbox, checkpoint_blob, iteration: int):
        self.context = context
        self.inbox = inbox  # a client of the driver's inbox (reports.py)
        self.iteration = iteration
        self._tmp = None
        self.checkpoint = None
        if checkpoint_blob is not None:
            self._tmp = tempfile.mkdtemp(prefix="ember_restore_")
            self.checkpoint = unpack_into([checkpoint_blob], os.path.join(self._tmp, "ckpt"))

    def report(self, metrics: dict, checkpoint: Checkpoint | None = None) -> None:
        _progress.stamp()  # this rank is not hung (the Trainer's hang watch)
        self.iteration += 1
        # The packed files go by value: once put() returns the driver holds them, so a
        # checkpoint survives this worker dying right after reporting it (an object this worker
        # put into Ray's store would die with it).
        blob = checkpoint.pack() if checkpoint is not None else None
        self.inbox.put((self.context.get_world_rank(), self.iteration, dict(metrics), blob))

    def close(self) -> None:
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)


# One training session per worker process (module-global, so threads the user starts see it).
_SESSION: _Session | None = None


def _current() -> _Session:
    s = _SESSION
    if s is None:
        raise RuntimeError(
            "this function must be called inside a training function run by "
            "ember.distributed.Trainer (no training session is active in this process)"
        )
    return s


def report(metrics: dict, checkpoint: Checkpoint | None = None) -> None:
    """Send ``metrics`` (and optionally a checkpoint) to the driver. Every worker must call it
    the same number of times; the driver keeps rank 0's metrics and merges all ranks'
    checkpoint files into one checkpoint directory."""
    if not isinstance(metrics, dict):
        raise TypeError(f"report() expects a dict of metrics, got {type(metrics).__name__}")
    _current().report(metrics, checkpoint)


def get_checkpoint() -> Checkpoint | None:
    """The latest checkpoint when the run (re)started, or None on a fresh start."""
    return _current().checkpoint


def get_context() -> TrainContext:
    """The :class:`~ember.distributed.train.TrainContext` of the running worker: its world rank,
    local rank, world size, node rank and the run's name.

    Call it inside the training function that a
    :class:`~ember.distributed.train.Trainer` runs.
    """
    return _current().context


def _activate(session: _Session | None) -> None:
    global _SESSION
    _SESSION = session
