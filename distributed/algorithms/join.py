"""Uneven inputs: PyTorch's ``torch.distributed.algorithms.join`` (``Join``, ``Joinable``,
``JoinHook``).

Inside ``with Join([model, ...]):`` each rank runs its own number of iterations. Every iteration
of a rank that still has inputs starts with an all-reduce of ``1`` (``notify_join_context``,
made by the first joinable). A rank whose inputs ran out waits in ``Join.__exit__``: it
all-reduces ``0`` to count the ranks still training and, while any are, runs each joinable's
``JoinHook.main_hook``, which makes the same collectives an iteration of the others makes
(DDP's hook: all-reduces of zero gradient buckets). When the count reaches zero, every rank runs
the ``post_hook``\\s (DDP's: the last rank to join broadcasts its final model).
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from typing import Any, NamedTuple

import ember

from .. import collectives
from .._runtime import _state
from ..distributed_c10d import get_rank

__all__ = ["Join", "Joinable", "JoinHook"]

# PyTorch warns once a joined rank has shadowed this many iterations of the others
_WARN_THRESHOLD = 1000


class JoinHook:
    """What a joined rank does for one joinable: ``main_hook`` once per iteration the other
    ranks still run, ``post_hook(is_last_joiner)`` once after all ranks have joined."""

    def main_hook(self) -> None:
        """Shadow the collectives of one training iteration of the ranks not yet joined."""

    def post_hook(self, is_last_joiner: bool) -> None:
        """Run once all ranks have joined; ``is_last_joiner`` says whether this rank was among
        the last to join."""


class _JoinConfig(NamedTuple):
    enable: bool
    throw_on_early_termination: bool
    is_first_joinable: bool

    @staticmethod
    def construct_disabled_join_config() -> _JoinConfig:
        return _JoinConfig(enable=False, throw_on_early_termination=False, is_first_joinable=False)


class Joinable(ABC):
    """A class whose per-iteration collectives a joined rank can shadow (PyTorch's
    ``Joinable``): it gives a ``join_hook``, the ``join_device`` and ``join_process_group``
    of its collectives, and calls ``Join.notify_join_context(self)`` at each iteration."""

    @abstractmethod
    def __init__(self) -> None:
        super().__init__()
        self._join_config = _JoinConfig.construct_disabled_join_config()

    @abstractmethod
    def join_hook(self, **kwargs) -> JoinHook:
        """The hook a joined rank runs for this joinable (``kwargs``: from ``Join``)."""

    @property
    @abstractmethod
    def join_device(self) -> Any:
        """The device of the join context's collective tensors."""

    @property
    @abstractmethod
    def join_process_group(self) -> Any:
        """The process group of the join context's collectives."""


class Join:
    """Context manager for training with uneven inputs across ranks (PyTorch's ``Join``).

    Args:
        joinables: the ``Joinable`` objects of the training loop (e.g. a DDP model and a
            ``ZeroRedundancyOptimizer``); all use one process group. The first one makes the
            per-iteration notification.
        enable: ``False`` makes the context do nothing (the inputs are known to be even).
        throw_on_early_termination: raise on every rank as soon as one rank runs out of inputs,
            instead of shadowing its collectives.
        **kwargs: passed to each joinable's ``join_hook`` (e.g.
            ``divide_by_initial_world_size`` for DDP).
    """

    def __init__(
        self,
        joinables: list[Joinable],
        enable: bool = True,
        throw_on_early_termination: bool = False,
        **kwargs,
    ) -> None:
        joinables = list(joinables)
        if len(joinables) == 0:
            raise ValueError("The join context manager requires at least one joinable")
        for j in joinables:
            if not isinstance(j, Joinable):
                raise TypeError(f"Join expects Joinable objects, got {type(j).__name__}")
            if not hasattr(j, "_join_config"):
                raise RuntimeError(
                    f"Check that the {type(j).__name__} constructor calls the "
                    "``Joinable`` constructor"
                )
        self._joinables = joinables
        self._join_hooks = [j.join_hook(**kwargs) for j in joinables]
        self._enable = enable
        self._throw_on_early_termination = throw_on_early_termination
        self._set_joinable_configs()
        self._extract_dist_info()

    def _set_joinable_configs(self) -> None:
        for i, j in enumerate(self._joinables):
            j._join_config = _JoinConfig(
                enable=self._enable,
                throw_on_early_termination=self._throw_on_early_termination,
                is_first_joinable=i == 0,
            )

    def _extract_dist_info(self) -> None:
        def world_if_none(g):  # None and ``group.WORLD`` are the same group
            return _state.group.WORLD if g is None else g

        group, device = self._joinables[0].join_process_group, None
        for j in self._joinables:
            if world_if_none(j.join_process_group) is not world_if_none(group):
                raise ValueError("Using join context manager with multiple process groups")
            if device is None:
                device = j.join_device
        self._process_group = group
        self._rank = get_rank(group)
        self._device = device

    def __enter__(self) -> Join:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            # an exception goes straight up: the other ranks will time out in their
            # collectives, which name this rank as missing
            if not self._enable or exc_type is not None:
                return
            is_last_joiner, i = True, 0
            while self._get_num_nonjoined_procs() > 0:
                if i == _WARN_THRESHOLD:
                    warnings.warn(
                        f"Detected uneven input skew of greater than {_WARN_THRESHOLD}"
                        ". This means that rank "
                        f"{self._rank} has at least "
                        f"{_WARN_THRESHOLD} fewer inputs than other currently-active "
                        "ranks. This level of skew could lead to performance "
                        "degradation during training.",
                        stacklevel=2,
                    )
                if self._throw_on_early_termination:
                    self._notify_procs_to_terminate()
                for hook in self._join_hooks:
                    hook.main_hook()
                is_last_joiner = False
                i += 1
            for hook in self._join_hooks:
                hook.post_hook(is_last_joiner)
        finally:
            # (a choice: PyTorch leaves the joinables' configs enabled after the context;
            # disabling them spares later iterations the notification all-reduce)
            for j in self._joinables:
                j._join_config = _JoinConfig.construct_disabled_join_config()

    def _get_num_nonjoined_procs(self) -> int:
        count = ember.zeros(1, device=self._device)
        collectives.all_reduce(count, group=self._process_group)
        return int(count.item())

    def _notify_procs_to_terminate(self) -> None:
        ones = ember.ones(1, device=self._device)
        collectives.all_reduce(ones, group=self._process_group)
        raise RuntimeError(f"Rank {self._rank} exhausted all inputs.")

    @staticmethod
    def notify_join_context(joinable: Joinable):
        """Tell the join context that this rank has not joined yet: the first joinable calls
        this at the start of each iteration. Returns the async all-reduce's work (its result:
        ``work.result()[0]``, the number of ranks not joined) or ``None`` outside an enabled
        context."""
        if not hasattr(joinable, "_join_config"):
            raise RuntimeError(
                f"Check that the {type(joinable).__name__} constructor calls "
                "the ``Joinable`` constructor"
            )
        config = joinable._join_config
        if not config.is_first_joinable or not config.enable:
            return None
        device, group = joinable.join_device, joinable.join_process_group
        ones = ember.ones(1, device=device)
        work = collectives.all_reduce(ones, group=group, async_op=True)
        if config.throw_on_early_termination:
            zeros = ember.zeros(1, device=device)
            collectives.all_reduce(zeros, group=group)
            if zeros.item():
                raise RuntimeError(
                    "Detected at least one rank that exhausted inputs. Throwing across all ranks."
                )
        return work
