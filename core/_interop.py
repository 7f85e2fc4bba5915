"""The contract between ``ember`` (core) and the code built on it (``ember.distributed``).

Distributed code moves tensors' storage between processes, writes received bytes into tensors
in place and steers where autograd accumulates gradients. Those needs reach below the public
``Tensor`` API, and this module is the one place where they do: ``distributed/`` calls these
functions instead of touching ``Tensor``'s private attributes or the autograd engine's
globals (``tests/test_layering.py`` checks that). Core may change its internals freely as
long as these functions keep their meaning.

* ``array_of(t)``: the array (NumPy or CuPy) holding ``t``'s values; shares memory with ``t``.
* ``wrap(array)``: a tensor viewing ``array`` (no copy, no checks: the hot path).
* ``bump_version(t)``: record that ``t`` was written in place behind autograd's back (a
  collective wrote received data into it), so autograd's saved-tensor checks see the write.
* ``version(t)``: ``t``'s version counter (PyTorch's ``t._version``).
* ``set_array(t, array)``: make ``t`` hold ``array`` (FSDP swaps a parameter's storage).
* ``set_grad_destination(param, array)``: the array ``param``'s next gradient should be
  written into (a view of DDP's bucket), or ``None``; ``use_grad_destinations(+1/-1)``
  counts the users, so that the engine only looks for destinations while someone sets them.
* ``queue_engine_callback(fn)``: run ``fn()`` once the current backward pass has finished.
* ``functional_override(name, fn)``: within a block, ``nn.functional.<name>`` goes through ``fn``.
* ``run_post_accumulate_grad_hooks(param)``: run the hooks of
  ``param.register_post_accumulate_grad_hook`` after code outside the engine set its ``.grad``
  (FSDP, whose reduced gradient shard lands after the backward pass).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from .autograd import engine as _engine
from .tensor import Tensor

__all__ = [
    "array_of",
    "wrap",
    "bump_version",
    "version",
    "set_array",
    "set_grad_destination",
    "use_grad_destinations",
    "queue_engine_callback",
    "in_backward",
    "run_post_accumulate_grad_hooks",
    "functional_override",
]


def array_of(tensor: Tensor) -> Any:
    """The NumPy/CuPy array holding ``tensor``'s values (shared, not a copy)."""
    if not isinstance(tensor, Tensor):
        raise TypeError(f"array_of: expected a Tensor, got {type(tensor).__name__}")
    return tensor._data


def wrap(array: Any) -> Tensor:
    """A tensor (no grad, version 0) viewing ``array`` without a copy."""
    return Tensor._wrap(array)


def bump_version(tensor: Tensor) -> None:
    """Count an in-place write into ``tensor`` that did not go through a tensor op."""
    tensor._version_counter[0] += 1


def version(tensor: Tensor) -> int:
    """How many in-place writes ``tensor``'s storage has seen (PyTorch's ``t._version``)."""
    return tensor._version_counter[0]


def set_array(tensor: Tensor, array: Any) -> None:
    """Make ``tensor`` hold ``array`` (same shape semantics as assigning ``.data``, without
    the checks); its version counter is kept."""
    tensor._data = array


def set_grad_destination(param: Tensor, array: Any | None) -> None:
    """Ask autograd to write ``param``'s next gradient straight into ``array`` (same shape and
    dtype as ``param``; ``None``: no destination). Only honoured while
    ``use_grad_destinations`` counts a user."""
    if array is not None and tuple(array.shape) != tuple(param._data.shape):
        raise ValueError(
            f"set_grad_destination: the destination has shape {tuple(array.shape)},"
            f" the parameter {tuple(param._data.shape)}"
        )
    param._grad_dest = array


def use_grad_destinations(delta: int) -> None:
    """``+1`` when a module starts setting gradient destinations, ``-1`` when it stops."""
    if delta not in (1, -1):
        raise ValueError(f"use_grad_destinations: delta must be +1 or -1, got {delta!r}")
    _engine.grad_destination_users += delta


def queue_engine_callback(callback: Callable[[], None]) -> None:
    """Run ``callback()`` once the current backward pass has finished (outside a backward:
    at the end of the next one); PyTorch's ``Variable._execution_engine.queue_callback``."""
    if not callable(callback):
        raise TypeError(f"queue_engine_callback: expected a callable, got {callback!r}")
    _engine.queue_callback(callback)


def in_backward() -> bool:
    """Whether the autograd engine is running a backward pass now (PyTorch:
    ``torch._C._current_graph_task_id() != -1``); observers use it to tell a forward rerun
    inside backward (activation checkpointing) from a real forward."""
    return _engine._depth[0] > 0


def run_post_accumulate_grad_hooks(param: Tensor) -> None:
    """Run ``param``'s post-accumulate-grad hooks (``register_post_accumulate_grad_hook``), as
    the engine does after accumulating a leaf's gradient: for gradients written outside the
    engine (FSDP sets a parameter's ``.grad`` once its reduction has finished)."""
    if not isinstance(param, Tensor):
        raise TypeError(
            f"run_post_accumulate_grad_hooks: expected a Tensor, got {type(param).__name__}"
        )
    hooks = param._post_acc_hooks
    if hooks:
        for hook in list(hooks):
            hook(param)


@contextlib.contextmanager
def functional_override(name: str, override: Callable[..., Any]) -> Iterator[None]:
    """Within the block, ``ember.nn.functional.<name>(*args, **kwargs)`` calls
    ``override(plain, *args, **kwargs)``, where ``plain`` is the function it replaced (the
    override passes through what it does not handle). Restored on exit, also on error. For
    tensor types outside core that take over a functional op in a scope (DTensor's
    ``loss_parallel`` and ``cross_entropy``), as PyTorch's DTensor dispatch does."""
    from . import nn as _nn

    functional = _nn.functional
    plain = getattr(functional, name, None)
    if not callable(plain):
        raise AttributeError(f"functional_override: ember.nn.functional has no function {name!r}")

    def dispatch(*args: Any, **kwargs: Any) -> Any:
        return override(plain, *args, **kwargs)

    setattr(functional, name, dispatch)
    try:
        yield
    finally:
        setattr(functional, name, plain)
