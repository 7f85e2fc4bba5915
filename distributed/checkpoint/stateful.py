"""``Stateful``: PyTorch's ``torch.distributed.checkpoint.stateful`` protocol.

A top-level value of the state dict given to ``save`` / ``load`` that has ``state_dict()`` and
``load_state_dict()`` (an application-state wrapper, a module, an optimizer) is saved as what
its ``state_dict()`` returns; ``load`` fills that state dict in place and hands it back to the
object's ``load_state_dict``.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

__all__ = ["Stateful"]


@runtime_checkable
class Stateful(Protocol):
    """An object DCP checkpoints through its own ``state_dict`` / ``load_state_dict``."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state_dict: dict[str, Any]) -> None: ...


def to_state_dict(state_dict: dict) -> dict:
    """``state_dict`` with each top-level ``Stateful`` replaced by its ``state_dict()``."""
    if not isinstance(state_dict, dict):
        raise TypeError(
            f"the distributed checkpoint's state_dict must be a dict, got "
            f"{type(state_dict).__name__}"
        )
    return {k: v.state_dict() if isinstance(v, Stateful) else v for k, v in state_dict.items()}
