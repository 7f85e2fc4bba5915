"""Activation checkpointing for wrapped models: ``checkpoint_wrapper`` and
``apply_activation_checkpointing`` (PyTorch's
``torch.distributed.algorithms._checkpoint.checkpoint_wrapper``).

Used with FSDP as in PyTorch: wrap the model in FSDP first, then call
``apply_activation_checkpointing(model, check_fn=lambda m: isinstance(m, Block))``; each block
inside its FSDP unit is wrapped, so the unit's pre-backward hook gathers the parameters before
the recomputation reads them. State-dict keys keep their unwrapped names.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from functools import partial
from typing import Any

from ember.nn import Module
from ember.utils.checkpoint import checkpoint as _checkpoint

__all__ = [
    "CheckpointImpl",
    "CheckpointWrapper",
    "checkpoint_wrapper",
    "apply_activation_checkpointing",
    "CHECKPOINT_WRAPPED_MODULE",
    "CHECKPOINT_PREFIX",
]

CHECKPOINT_WRAPPED_MODULE = "_checkpoint_wrapped_module"
CHECKPOINT_PREFIX = CHECKPOINT_WRAPPED_MODULE + "."


class CheckpointImpl(enum.Enum):
    """How ``checkpoint_wrapper`` recomputes activations: ``REENTRANT`` or ``NO_REENTRANT``,
    the two implementations of :func:`ember.utils.checkpoint.checkpoint` (``use_reentrant``)."""

    REENTRANT = enum.auto()
    NO_REENTRANT = enum.auto()


class CheckpointWrapper(Module):
    """Runs the wrapped module's forward under :func:`ember.utils.checkpoint.checkpoint`."""

    def __init__(
        self,
        mod: Module,
        checkpoint_impl: CheckpointImpl = CheckpointImpl.NO_REENTRANT,
        checkpoint_fn: Callable | None = None,
        **checkpoint_fn_kwargs,
    ) -> None:
        super().__init__()
        if not isinstance(mod, Module):
            raise TypeError(f"checkpoint_wrapper expects an nn.Module, got {type(mod).__name__}")
        if not isinstance(checkpoint_impl, CheckpointImpl):
            raise TypeError(f"checkpoint_impl must be a CheckpointImpl, got {checkpoint_impl!r}")
        self._checkpoint_wrapped_module = mod
        self.checkpoint_impl = checkpoint_impl
        if checkpoint_fn is None:
            self.checkpoint_fn = partial(
                _checkpoint,
                use_reentrant=checkpoint_impl is CheckpointImpl.REENTRANT,
                **checkpoint_fn_kwargs,
            )
        else:
            self.checkpoint_fn = partial(checkpoint_fn, **checkpoint_fn_kwargs)
        # state_dict keys without the wrapper's prefix, as PyTorch's
        self._register_state_dict_hook(_strip_prefix)
        self._register_load_state_dict_pre_hook(_add_prefix, with_module=True)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules[CHECKPOINT_WRAPPED_MODULE], name)

    def __getitem__(self, key):
        return self._modules[CHECKPOINT_WRAPPED_MODULE].__getitem__(key)

    def forward(self, *args, **kwargs):
        return self.checkpoint_fn(self._checkpoint_wrapped_module, *args, **kwargs)

    def named_parameters(self, *args, **kwargs):
        for name, p in super().named_parameters(*args, **kwargs):
            yield name.replace(CHECKPOINT_PREFIX, ""), p


def _strip_prefix(module, state_dict, prefix, local_metadata):
    for key in list(state_dict.keys()):
        if key.startswith(prefix + CHECKPOINT_PREFIX):
            state_dict[prefix + key[len(prefix) + len(CHECKPOINT_PREFIX) :]] = state_dict.pop(key)
    return state_dict


def _add_prefix(module, state_dict, prefix, *args):
    for key in list(state_dict.keys()):
        if key.startswith(prefix) and not key.startswith(prefix + CHECKPOINT_PREFIX):
            state_dict[prefix + CHECKPOINT_PREFIX + key[len(prefix) :]] = state_dict.pop(key)


def checkpoint_wrapper(
    module: Module,
    checkpoint_impl: CheckpointImpl = CheckpointImpl.NO_REENTRANT,
    checkpoint_fn: Callable | None = None,
    **checkpoint_fn_kwargs,
) -> CheckpointWrapper:
    """Wrap ``module`` so its forward is activation-checkpointed."""
    return CheckpointWrapper(module, checkpoint_impl, checkpoint_fn, **checkpoint_fn_kwargs)


def apply_activation_checkpointing(
    model: Module,
    checkpoint_wrapper_fn: Callable = checkpoint_wrapper,
    check_fn: Callable[[Module], bool] = lambda _: True,
    auto_wrap_policy: Callable | None = None,
) -> None:
    """Wrap, in place, each submodule of ``model`` for which ``check_fn`` (or
    ``auto_wrap_policy``, an FSDP wrap policy) says yes, with ``checkpoint_wrapper_fn``.
    ``model`` itself is never wrapped; wrapped modules are not descended into."""
    if auto_wrap_policy is not None:
        policy = auto_wrap_policy

        def check_fn(m, policy=policy):  # noqa: F811 - the policy decides instead
            return bool(policy(m, False, 0)) if callable(policy) else False

    def visit(parent: Module) -> None:
        for name, child in list(parent._modules.items()):
            if child is None or isinstance(child, CheckpointWrapper):
                continue
            if check_fn(child):
                setattr(parent, name, checkpoint_wrapper_fn(child))
            else:
                visit(child)

    visit(model)
