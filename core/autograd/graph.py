"""``ember.autograd.graph``: the graph's nodes and edges, saved-tensor hooks, multi-tensor
gradient hooks and version bumps (PyTorch's ``torch.autograd.graph``).

Graph nodes are ``Function`` instances (a leaf's node is ``AccumulateGrad``); ``Node`` is the
abstract class they register with, so ``isinstance(t.grad_fn, Node)`` holds.

Saved-tensor hooks act when a node is recorded: each array the op saved is passed to
``pack_hook`` (as a tensor) and the node keeps the result; ``unpack_hook`` runs when backward
reads it. Inside ``allow_mutation_on_saved_tensors`` nodes keep private copies of what they
save, so later in-place changes of those tensors no longer affect (or stop) backward.
"""

from __future__ import annotations

import abc
import contextlib
import threading
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from . import anomaly_mode, grad_mode
from . import function as _fn

__all__ = [
    "saved_tensors_hooks",
    "save_on_cpu",
    "disable_saved_tensors_hooks",
    "register_multi_grad_hook",
    "allow_mutation_on_saved_tensors",
    "Node",
    "GradientEdge",
    "get_gradient_edge",
    "increment_version",
]


class Node(abc.ABC):
    """An autograd graph node (``tensor.grad_fn``): ``name()``, ``next_functions``,
    ``register_prehook``."""

    @abc.abstractmethod
    def name(self) -> str:
        """The node's name, e.g. ``MulBackward0``."""

    @property
    @abc.abstractmethod
    def next_functions(self) -> tuple:
        """``(node, output_nr)`` per input of the forward op."""

    @abc.abstractmethod
    def register_prehook(self, fn: Callable) -> Any:
        """Run ``fn(grad)`` before this node's backward; it may return a new gradient."""


Node.register(_fn.Function)
Node.register(_fn._Acc)


class GradientEdge(NamedTuple):
    """An edge of the graph: a node and which of its outputs."""

    node: Any
    output_nr: int


def get_gradient_edge(tensor) -> GradientEdge:
    """The gradient edge that computes ``tensor``'s gradient (usable in ``autograd.grad``'s
    ``inputs`` in PyTorch)."""
    if not tensor.requires_grad:
        raise RuntimeError(
            "It is not possible to get the gradient edge for a Tensor that does "
            "not require gradients"
        )
    if tensor.grad_fn is None:
        return GradientEdge(_fn._Acc(tensor), 0)
    return GradientEdge(tensor.grad_fn, tensor._output_nr)


def increment_version(tensor) -> None:
    """Bump the version counter of ``tensor`` (or of each tensor of an iterable), as an
    in-place op would: nodes that saved it then refuse to run backward."""
    from ..tensor import Tensor

    for t in [tensor] if isinstance(tensor, Tensor) else tensor:
        t._version_counter[0] += 1


# ---- node extras (recorded when a node is made) ----------------------------------------------
_local = threading.local()


def _stack() -> list:
    s = getattr(_local, "hooks", None)
    if s is None:
        s = _local.hooks = []
    return s


_mutation_depth = [0]
_disabled: list = []  # error messages of active disable_saved_tensors_hooks blocks


class _Packed:
    """A saved array after its pack hook; the node unpacks it when backward reads it."""

    __slots__ = ("obj", "unpack", "shape", "dtype")

    def __init__(self, obj, unpack, shape, dtype):
        self.obj, self.unpack, self.shape, self.dtype = obj, unpack, shape, dtype

    def get(self):
        from ..tensor import Tensor

        with grad_mode.no_grad():  # as the pack hook
            out = self.unpack(self.obj)
        return out._data if isinstance(out, Tensor) else out


def _node_extras(ctx) -> None:
    """``Function.apply`` calls this for each new node while any extra is active."""
    if anomaly_mode._state[0]:
        anomaly_mode.record_forward_stack(ctx)
    saved = ctx._saved
    if not saved:
        return
    if _mutation_depth[0]:
        xp = ctx.xp
        ctx._saved = tuple(s.copy() if isinstance(s, xp.ndarray) else s for s in saved)
        ctx._versions = None
        saved = ctx._saved
    hooks = _stack()
    if hooks:
        from ..tensor import Tensor

        pack, unpack = hooks[-1]
        # the pack hook sees a saved input as the input tensor itself, as in PyTorch
        info = getattr(ctx, "_saved_info", None) or ()
        inputs = {
            k: ref
            for k, (kind, ref) in enumerate(info)
            if kind == _fn._SAVED_INPUT and ref._data is saved[k]
        }
        with grad_mode.no_grad():  # PyTorch runs pack hooks with grad mode off
            ctx._saved = tuple(
                _Packed(
                    pack(inputs[k] if k in inputs else Tensor._wrap(s)), unpack, s.shape, s.dtype
                )
                if hasattr(s, "__array_namespace__")
                else s
                for k, s in enumerate(saved)
            )
        ctx._packed = True


def _refresh() -> None:
    _fn._extras[0] = bool(anomaly_mode._state[0] or _mutation_depth[0] or _stack())


_fn._node_extras = _node_extras
anomaly_mode._on_change = _refresh


class saved_tensors_hooks:
    """Context manager setting a pack / unpack hook pair for the tensors ops save.

    ``pack_hook(tensor) -> Any`` runs when an op saves a tensor for backward;
    ``unpack_hook(packed) -> Tensor`` when backward needs it back (it must return a tensor
    with the original's values, shape and dtype). Hooks nest; the innermost pair applies.
    """

    def __init__(self, pack_hook: Callable[[Any], Any], unpack_hook: Callable[[Any], Any]) -> None:
        self.pack_hook = pack_hook
        self.unpack_hook = unpack_hook

    def __enter__(self) -> None:
        if _disabled:
            raise RuntimeError(_disabled[-1])
        _stack().append((self.pack_hook, self.unpack_hook))
        _refresh()

    def __exit__(self, *args) -> None:
        _stack().pop()
        _refresh()


class save_on_cpu(saved_tensors_hooks):
    """Saved tensors live on the CPU between forward and backward (GPU memory is freed) and
    return to their device when backward needs them.

    Args:
        pin_memory (bool): accepted for PyTorch compatibility (CuPy copies are synchronous
            here).
        device_type (str): the device type of the tensors to offload (default: ``"cuda"``).
    """

    def __init__(self, pin_memory: bool = False, device_type: str = "cuda") -> None:
        def pack(t):
            if t.device.type != device_type:
                return (None, t)
            return (t.device, t.cpu())

        def unpack(packed):
            device, t = packed
            return t if device is None else t.to(device)

        super().__init__(pack, unpack)


@contextlib.contextmanager
def disable_saved_tensors_hooks(error_message: str):
    """Inside this block, entering ``saved_tensors_hooks`` raises ``RuntimeError(
    error_message)`` (for features incompatible with them)."""
    _disabled.append(error_message)
    try:
        yield
    finally:
        _disabled.pop()


@contextlib.contextmanager
def allow_mutation_on_saved_tensors():
    """Inside this block, tensors saved for backward may be modified in place afterwards:
    nodes recorded here keep their own copies of what they save, so backward computes with
    the values of the forward pass (PyTorch clones on mutation; the result is the same)."""
    _mutation_depth[0] += 1
    _refresh()
    try:
        yield
    finally:
        _mutation_depth[0] -= 1
        _refresh()


class _MultiHandle:
    def __init__(self, handles) -> None:
        self.handles = handles

    def remove(self) -> None:
        for h in self.handles:
            h.remove()

    def __enter__(self):
        return self

    def __exit__(self, *args) -> None:
        self.remove()


def register_multi_grad_hook(tensors: Sequence, fn: Callable, *, mode: str = "all"):
    """Register ``fn`` over several tensors' gradients.

    ``mode="all"``: once the backward pass has computed the gradients of the tensors it
    reaches, ``fn(grads)`` runs once with one entry per tensor (``None`` for those not
    reached). ``mode="any"``: ``fn(grad)`` runs with the first of them computed in each
    backward pass. Returns a handle with ``remove()``.
    """
    from .engine import queue_callback

    if mode not in ("all", "any"):
        raise ValueError(f"Expects mode to be one of ('all', 'any') but got {mode}")
    tensors = list(tensors)
    state: dict = {"grads": None, "fired": False}

    def finish() -> None:
        grads, state["grads"], state["fired"] = state["grads"], None, False
        if mode == "all" and grads is not None:
            fn(grads)

    def make_hook(i):
        def hook(grad):
            if state["grads"] is None and not state["fired"]:
                state["grads"] = [None] * len(tensors)
                queue_callback(finish)
            if mode == "any":
                if not state["fired"]:
                    state["fired"] = True
                    fn(grad)
                return None
            # a copy: the engine may later accumulate into this very array (the leaf's .grad)
            state["grads"][i] = grad.clone()
            return None

        return hook

    return _MultiHandle(
        [t.register_hook(make_hook(i)) for i, t in enumerate(tensors) if t.requires_grad]
    )
