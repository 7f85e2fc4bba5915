"""``swap_in_optimizer_params_and_state``: run optimizer APIs against other parameters and
state for the duration of a block (PyTorch's ``torch.optim.swap_in_optimizer_params_and_state``)."""

from __future__ import annotations

import contextlib
from collections import defaultdict
from typing import Any

from ..tensor import Tensor
from .optimizer import Optimizer

__all__ = ["swap_in_optimizer_params_and_state"]


def _check(
    optimizer: Optimizer, swapin_parameters: dict[str, Tensor], swapin_optim_state: dict[str, Any]
):
    if not optimizer.state:
        raise RuntimeError(
            "swap_in_optimizer_params_and_state requires initialized optimizer state."
        )
    if not isinstance(swapin_optim_state, dict):
        raise RuntimeError(
            "swap_in_optimizer_params_and_state requires a DCP-style optimizer state_dict."
        )
    state = swapin_optim_state.get("state")
    groups = swapin_optim_state.get("param_groups")
    if (
        not isinstance(state, dict)
        or not isinstance(groups, list)
        or len(groups) != len(optimizer.param_groups)
    ):
        raise RuntimeError(
            "swap_in_optimizer_params_and_state requires the explicit parameter "
            "state to match optimizer.param_groups ordering."
        )
    flat = list(swapin_parameters.values())
    offset, seen, plan = 0, set(), []
    for live, group in zip(optimizer.param_groups, groups):
        ids = list(group.get("params", []))
        if len(ids) != len(live["params"]) or offset + len(ids) > len(flat):
            raise RuntimeError(
                "swap_in_optimizer_params_and_state requires the explicit "
                "parameter state to match optimizer.param_groups ordering."
            )
        seen.update(ids)
        plan.append((live, group, flat[offset : offset + len(ids)]))
        offset += len(ids)
    extra = [k for k in state if k not in seen]
    if extra:
        raise RuntimeError(
            "swap_in_optimizer_params_and_state requires swapin_optim_state['state'] to be "
            "keyed only by packed parameter ids from param_groups[*]['params']; got extra keys "
            f"{extra!r}."
        )
    return state, plan


@contextlib.contextmanager
def swap_in_optimizer_params_and_state(
    optimizer: Optimizer, swapin_parameters: dict[str, Tensor], swapin_optim_state: dict[str, Any]
):
    """Temporarily replace an optimizer's parameters and state, then restore them on exit.

    Unlike ``load_state_dict``, the parameters in ``param_groups`` are swapped too, so
    ``optimizer.step()`` inside the block updates the given tensors (and the state tensors of
    ``swapin_optim_state`` in place).

    Args:
        optimizer: the live optimizer; its state must already be initialized.
        swapin_parameters: tensors to use as parameters, in the order of the optimizer's
            parameters (usually ``model.named_parameters()`` order).
        swapin_optim_state: an ``optimizer.state_dict()``-shaped dict holding the state to
            install (``"state"`` keyed by packed ids, ``"param_groups"`` with those ids and
            the groups' hyper-parameters).
    """
    state, plan = _check(optimizer, swapin_parameters, swapin_optim_state)
    original_state = optimizer.state
    snapshots = [dict(g) for g in optimizer.param_groups]
    try:
        swapped: defaultdict = defaultdict(dict)
        for live, group, params in plan:
            live["params"] = params
            for key, value in group.items():
                if key != "params":
                    live[key] = value
            for p, pid in zip(params, group["params"]):
                swapped[p] = dict(state.get(pid, {}))
        optimizer.state = swapped
        yield
    finally:
        for group, snapshot in zip(optimizer.param_groups, snapshots):
            group.clear()
            group.update(snapshot)
        optimizer.state = original_state
