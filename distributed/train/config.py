"""Trainer configuration objects, Ray Train's shape: ScalingConfig, RunConfig and friends."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

_STRATEGIES = ("ddp", "zero1", "zero2", "fsdp")  # see prepare_model


@dataclass
class ScalingConfig:
    """How many workers and what each one gets.

    Args:
        num_workers: number of training workers (one Ray actor each), or ``(min, max)`` for
            elastic training: ``fit()`` starts as many workers as the cluster has room for
            (at least ``min``, at most ``max``), re-forms a smaller group from the latest
            checkpoint when workers are lost, and grows back toward ``max`` at a checkpoint
            boundary when capacity returns (see ``_internal/elastic.py``).
        use_gpu: give each worker one GPU (``CUDA_VISIBLE_DEVICES`` is set so that
            ``LOCAL_RANK`` indexes the node's devices).
        resources_per_worker: Ray resources per worker, e.g. ``{"CPU": 2}``.
        placement_strategy: "PACK" (default), "SPREAD", "STRICT_PACK" or "STRICT_SPREAD".
    """

    num_workers: int | tuple[int, int] = 1
    use_gpu: bool = False
    resources_per_worker: dict | None = None
    placement_strategy: str = "PACK"

    def __post_init__(self):
        from ._internal.elastic import check_num_workers

        if isinstance(self.num_workers, list):
            self.num_workers = tuple(self.num_workers)
        check_num_workers(self.num_workers)
        strategies = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")
        if self.placement_strategy not in strategies:
            raise ValueError(
                f"ScalingConfig.placement_strategy must be one of {strategies}, "
                f"got {self.placement_strategy!r}"
            )
        for k, v in (self.resources_per_worker or {}).items():
            if not isinstance(v, (int, float)) or v < 0:
                raise ValueError(
                    f"ScalingConfig.resources_per_worker[{k!r}] must be a "
                    f"non-negative number, got {v!r}"
                )

    @property
    def min_workers(self) -> int:
        """The fewest workers a run goes on with (``num_workers`` when it is an int)."""
        n = self.num_workers
        return n[0] if isinstance(n, tuple) else n

    @property
    def max_workers(self) -> int:
        """The most workers a run uses (``num_workers`` when it is an int)."""
        n = self.num_workers
        return n[1] if isinstance(n, tuple) else n

    @property
    def elastic(self) -> bool:
        """True when ``num_workers`` is a ``(min, max)`` range."""
        return isinstance(self.num_workers, tuple)

    def bundle(self) -> dict:
        """The Ray resource bundle of one worker."""
        res = dict(self.resources_per_worker or {})
        res.setdefault("CPU", 1)
        if self.use_gpu:
            res.setdefault("GPU", 1)
        elif res.get("GPU"):
            raise ValueError("resources_per_worker asks for GPUs but use_gpu=False")
        return {k: v for k, v in res.items() if v}


@dataclass
class FailureConfig:
    """``max_failures``: how many times the whole group may restart from the latest
    checkpoint after a worker fails (0: fail at once; -1: retry forever). The Trainer's
    ``failure_policy.DefaultFailurePolicy`` applies it.

    ``worker_hang_timeout_s``: a worker that neither calls ``report()`` nor enters a
    collective for this many seconds is hung: the attempt fails with every rank's Python
    stacks in the error, and restarts or raises per ``max_failures`` (``None``, the default:
    no watch; see ``_internal/hang_watch.py``)."""

    max_failures: int = 0
    worker_hang_timeout_s: float | None = None

    def __post_init__(self):
        if (
            isinstance(self.max_failures, bool)
            or not isinstance(self.max_failures, int)
            or self.max_failures < -1
        ):
            raise ValueError(
                "FailureConfig.max_failures must be an int >= -1 (-1: retry "
                f"forever), got {self.max_failures!r}"
            )
        hang = self.worker_hang_timeout_s
        if hang is not None and (
            isinstance(hang, bool) or not isinstance(hang, (int, float)) or not hang > 0
        ):
            raise ValueError(
                "FailureConfig.worker_hang_timeout_s must be a positive number of seconds "
                f"or None, got {hang!r}"
            )


@dataclass
class CheckpointConfig:
    """Which checkpoints to keep: the ``num_to_keep`` best by ``checkpoint_score_attribute``
    (``checkpoint_score_order`` "max" or "min"), or the most recent when no attribute."""

    num_to_keep: int | None = None
    checkpoint_score_attribute: str | None = None
    checkpoint_score_order: str = "max"

    def __post_init__(self):
        if self.num_to_keep is not None and self.num_to_keep < 1:
            raise ValueError(
                f"CheckpointConfig.num_to_keep must be >= 1 or None, got {self.num_to_keep}"
            )
        if self.checkpoint_score_order not in ("max", "min"):
            raise ValueError(
                "CheckpointConfig.checkpoint_score_order must be 'max' or 'min', "
                f"got {self.checkpoint_score_order!r}"
            )


@dataclass
class RunConfig:
    """Where results go (``storage_path``/``name``) and how failures and checkpoints are handled.

    ``verbose``: 0 silent, 1 a progress line per report (default), 2 every metric.
    """

    name: str | None = None
    storage_path: str | None = None
    failure_config: FailureConfig = field(default_factory=FailureConfig)
    checkpoint_config: CheckpointConfig = field(default_factory=CheckpointConfig)
    verbose: int = 1
    log_to_tensorboard: bool = True

    def run_dir(self, default_name: str) -> str:
        root = self.storage_path or os.path.join(os.path.expanduser("~"), "ember_results")
        return os.path.abspath(os.path.join(root, self.name or default_name))


def check_strategy(strategy: str) -> str:
    if strategy not in _STRATEGIES:
        raise ValueError(f"Trainer strategy must be one of {_STRATEGIES}, got {strategy!r}")
    return strategy
