"""PyTorch's deprecated DCP entry points, ``save_state_dict`` / ``load_state_dict`` (positional
storage writer / reader), kept for programs that still call them: they warn, as PyTorch does,
and run :func:`save` / :func:`load`."""

from __future__ import annotations

import warnings

from .state_dict_loader import load
from .state_dict_saver import save

__all__ = ["save_state_dict", "load_state_dict"]


def _coordinator(coordinator_rank: int, what: str) -> None:
    if coordinator_rank != 0:
        raise NotImplementedError(
            f"{what}: coordinator_rank={coordinator_rank} is not supported (rank 0 coordinates)"
        )


def save_state_dict(
    state_dict: dict,
    storage_writer,
    process_group=None,
    coordinator_rank: int = 0,
    no_dist: bool = False,
    planner=None,
):
    """Deprecated: ``save(state_dict, storage_writer=storage_writer, ...)``."""
    warnings.warn(
        "`save_state_dict` is deprecated and will be removed in future versions."
        "Please use `save` instead.",
        FutureWarning,
        stacklevel=2,
    )
    _coordinator(coordinator_rank, "save_state_dict")
    return save(
        state_dict,
        storage_writer=storage_writer,
        planner=planner,
        process_group=process_group,
        no_dist=no_dist,
    )


def load_state_dict(
    state_dict: dict,
    storage_reader,
    process_group=None,
    coordinator_rank: int = 0,
    no_dist: bool = False,
    planner=None,
) -> None:
    """Deprecated: ``load(state_dict, storage_reader=storage_reader, ...)``."""
    warnings.warn(
        "`load_state_dict` is deprecated and will be removed in future versions. "
        "Please use `load` instead.",
        FutureWarning,
        stacklevel=2,
    )
    _coordinator(coordinator_rank, "load_state_dict")
    load(
        state_dict,
        storage_reader=storage_reader,
        planner=planner,
        process_group=process_group,
        no_dist=no_dist,
    )
