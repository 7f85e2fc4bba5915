"""PyTorch's ``DefaultSavePlanner`` / ``DefaultLoadPlanner``: ember's DCP plans the way they do
by default (flattened nested state dicts, one copy of each replicated tensor, every key loaded),
so passing one with its default options is the same as passing none. Other options and custom
planners are refused by ``save`` / ``load``."""

from __future__ import annotations

__all__ = ["DefaultSavePlanner", "DefaultLoadPlanner"]


class DefaultSavePlanner:
    """``save``'s built-in plan (see the module docstring)."""

    def __init__(
        self,
        flatten_state_dict: bool = True,
        flatten_sharded_tensors: bool = True,
        dedup_replicated_tensors: bool | None = None,
        dedup_save_to_lowest_rank: bool = False,
        enable_plan_caching: bool = False,
    ) -> None:
        self.flatten_state_dict = flatten_state_dict
        self.flatten_sharded_tensors = flatten_sharded_tensors
        self.dedup_replicated_tensors = dedup_replicated_tensors
        self.dedup_save_to_lowest_rank = dedup_save_to_lowest_rank
        self.enable_plan_caching = enable_plan_caching

    def _is_default(self) -> bool:
        # the plan options that change what is written; caching and dedup targets do not
        return self.flatten_state_dict and self.flatten_sharded_tensors


class DefaultLoadPlanner:
    """``load``'s built-in plan (see the module docstring)."""

    def __init__(
        self,
        flatten_state_dict: bool = True,
        flatten_sharded_tensors: bool = True,
        allow_partial_load: bool = False,
    ) -> None:
        self.flatten_state_dict = flatten_state_dict
        self.flatten_sharded_tensors = flatten_sharded_tensors
        self.allow_partial_load = allow_partial_load

    def _is_default(self) -> bool:
        return (
            self.flatten_state_dict and self.flatten_sharded_tensors and not self.allow_partial_load
        )


def check_planner(planner, kind: type, what: str) -> None:
    """Accept ``None`` or a default-option ``kind``; refuse anything else, naming it."""
    # (format_utils.DynamicMetaLoadPlanner plans as the default planner does)
    same = type(planner) is kind or getattr(type(planner), "_plans_as_default", False)
    if planner is None or (same and planner._is_default()):
        return
    if same:
        raise NotImplementedError(f"{what}: only {kind.__name__}'s default options are supported")
    raise NotImplementedError(f"{what}: custom planners are not supported")
