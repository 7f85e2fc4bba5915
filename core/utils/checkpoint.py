"""``ember.utils.checkpoint``: activation checkpointing (PyTorch's ``torch.utils.checkpoint``).

A checkpointed region keeps none of the tensors its ops save for backward; backward runs the
region again to get them back, trading compute for memory.

Two variants, as PyTorch's:

* **non-reentrant** (the default here, and PyTorch's recommendation): the region runs once with
  a saved-tensor hook pair that stores a small placeholder instead of each saved array. When
  backward first unpacks a placeholder, the region is recomputed (with the RNG state of the
  first run) and the recomputed arrays are handed out in the order they were saved. Keyword
  arguments, nested checkpoints, ``context_fn`` and ``autograd.grad`` all work.
* **reentrant** (``use_reentrant=True``): the region runs under ``no_grad`` inside one autograd
  ``Function``; its backward recomputes the region with grad enabled and backpropagates through
  that subgraph.

RNG: with ``preserve_rng_state=True`` the default generator's state (CPU and CUDA draws alike;
ember's CUDA draws are seeded from it) is captured before the first run and restored for the
recomputation, so dropout masks are identical; the generator outside the region is left where
the first run left it.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Callable, Iterable
from typing import Any

from ..amp.autocast_mode import with_current_autocast
from ..autograd import Function, enable_grad, grad_mode
from ..autograd import backward as _autograd_backward
from ..random import default_generator
from ..tensor import Tensor
from ._checkpoint_frame import (  # noqa: F401  (re-exported)
    _capture_rng,
    _checkpoint_without_reentrant,
    _Frame,
    _Placeholder,
    _replay_rng,
)

__all__ = [
    "checkpoint",
    "checkpoint_sequential",
    "CheckpointError",
    "CheckpointFunction",
    "noop_context_fn",
    "detach_variable",
    "check_backward_validity",
    "set_checkpoint_debug_enabled",
    "set_checkpoint_early_stop",
    "get_device_states",
    "set_device_states",
    "DefaultDeviceType",
    "CheckpointPolicy",
    "SelectiveCheckpointContext",
    "create_selective_checkpoint_contexts",
]

_DETERMINISM_CHECKS = ("default", "none")
_debug_enabled: list = [None]  # None: use each call's `debug` argument


class CheckpointError(RuntimeError):
    """The recomputation saved different tensors than the first run."""


class CheckpointPolicy(enum.Enum):
    """Selective-checkpoint policies (accepted for PyTorch compatibility)."""

    MUST_SAVE = 0
    PREFER_SAVE = 1
    MUST_RECOMPUTE = 2
    PREFER_RECOMPUTE = 3


class DefaultDeviceType:
    """The device type whose RNG state checkpointing preserves (ember: one generator)."""

    _default_device_type = "cuda"

    @staticmethod
    def set_device_type(device: str = "cuda") -> None:
        DefaultDeviceType._default_device_type = device

    @staticmethod
    def get_device_type() -> str:
        return DefaultDeviceType._default_device_type


def noop_context_fn() -> tuple[
    contextlib.AbstractContextManager, contextlib.AbstractContextManager
]:
    """The default ``context_fn``: no context around the first run or the recomputation."""
    return contextlib.nullcontext(), contextlib.nullcontext()


class SelectiveCheckpointContext:
    """What a selective-checkpoint policy function receives first: ``is_recompute`` is
    ``True`` during the recomputation."""

    def __init__(self, *, is_recompute: bool) -> None:
        self.is_recompute = is_recompute


def create_selective_checkpoint_contexts(
    policy_fn_or_list: Callable | list, allow_cache_entry_mutation: bool = False
) -> tuple[contextlib.AbstractContextManager, contextlib.AbstractContextManager]:
    r"""The ``context_fn`` pair for selective activation checkpointing.

    PyTorch saves the outputs of the ops the policy marks ``MUST_SAVE``/``PREFER_SAVE`` and
    recomputes the rest. Ember recomputes the whole region (every op is treated as
    ``PREFER_RECOMPUTE``): the values and gradients are the same, only the memory/compute
    trade differs. The policy is validated, not consulted.

    Args:
        policy_fn_or_list (Callable or List): a function ``(ctx, op, *args, **kwargs) ->
            CheckpointPolicy`` or a list of ops to save.
        allow_cache_entry_mutation (bool, optional): accepted for PyTorch compatibility.

    Returns:
        Two context managers, for the first run and for the recomputation.
    """
    if not (callable(policy_fn_or_list) or isinstance(policy_fn_or_list, (list, tuple))):
        raise TypeError(
            "create_selective_checkpoint_contexts: policy_fn_or_list must be a callable or a "
            f"list of ops, got {type(policy_fn_or_list).__name__}"
        )
    return contextlib.nullcontext(), contextlib.nullcontext()


def detach_variable(inputs: tuple) -> tuple:
    """Detached copies of the tensors in ``inputs`` keeping their ``requires_grad``."""
    if not isinstance(inputs, tuple):
        raise RuntimeError(
            "Only tuple of tensors is supported. Got Unsupported input type: "
            f"{type(inputs).__name__}"
        )
    out = []
    for x in inputs:
        if isinstance(x, Tensor):
            d = x.detach()
            d.requires_grad = x.requires_grad
            out.append(d)
        else:
            out.append(x)
    return tuple(out)


def check_backward_validity(inputs: Iterable[Any]) -> None:
    """Warn when no tensor input requires grad (the checkpointed region gets no gradient)."""
    if not any(isinstance(x, Tensor) and x.requires_grad for x in inputs):
        import warnings

        warnings.warn(
            "None of the inputs have requires_grad=True. Gradients will be None", stacklevel=3
        )


def set_checkpoint_debug_enabled(enabled: bool | None):
    """Context manager overriding every checkpoint's ``debug`` flag (``None``: per call)."""

    @contextlib.contextmanager
    def _ctx():
        prev = _debug_enabled[0]
        _debug_enabled[0] = enabled
        try:
            yield
        finally:
            _debug_enabled[0] = prev

    return _ctx()


@contextlib.contextmanager
def set_checkpoint_early_stop(enable: bool):
    """Accepted for PyTorch compatibility: ember always recomputes the whole region."""
    yield


def get_device_states(*args) -> tuple[list, list]:
    """The RNG states a checkpoint captures: ember has one generator for all devices."""
    return ["default"], [default_generator.get_state()]


def set_device_states(devices: list, states: list, *, device_type: str | None = None) -> None:
    """Restore the random-number state captured by :func:`get_device_states`.

    ember has one generator for every device, so ``devices`` is not used: each state of ``states``
    is loaded into the default generator.

    Args:
        devices: the devices :func:`get_device_states` returned (ignored).
        states: the generator states :func:`get_device_states` returned.
        device_type: accepted for PyTorch's signature; ignored.
    """
    for state in states:
        default_generator.set_state(state)


# ---- reentrant --------------------------------------------------------------------------------
class CheckpointFunction(Function):
    """The reentrant variant: run ``fn`` without a graph; rebuild it in backward."""

    supports_double_backward = False

    @staticmethod
    def forward(ctx, run_function, preserve_rng_state, *arrays):
        ctx.run_function = with_current_autocast(run_function)  # recompute as it ran
        ctx.rng_state = _capture_rng() if preserve_rng_state else None
        ctx.inputs = arrays
        ctx.is_tensor = [hasattr(a, "__array_namespace__") for a in arrays]
        ctx.requires = ctx.needs_input_grad[2:]
        args = [Tensor._wrap(a) if t else a for a, t in zip(arrays, ctx.is_tensor)]
        with grad_mode.no_grad():
            out = run_function(*args)
        ctx.single = isinstance(out, Tensor)
        outs = (out,) if ctx.single else tuple(out)
        if not all(isinstance(o, Tensor) for o in outs):
            raise TypeError(
                "checkpoint(use_reentrant=True) supports functions returning a "
                "tensor or a tuple of tensors; use use_reentrant=False for others"
            )
        return outs[0]._data if ctx.single else tuple(o._data for o in outs)

    @staticmethod
    def backward(ctx, *grads):
        if ctx.inputs is None:
            raise RuntimeError(
                "When use_reentrant=True, torch.utils.checkpoint is incompatible with .grad() "
                "or passing an `inputs` parameter to .backward(); use use_reentrant=False."
            )
        args = []
        for a, t, r in zip(ctx.inputs, ctx.is_tensor, ctx.requires):
            if t:
                x = Tensor._wrap(a)
                x.requires_grad = r
                args.append(x)
            else:
                args.append(a)
        rng = _replay_rng(ctx.rng_state) if ctx.rng_state is not None else contextlib.nullcontext()
        with rng, enable_grad():
            out = ctx.run_function(*args)
        outs = (out,) if isinstance(out, Tensor) else tuple(out)
        pairs = [
            (o, Tensor._wrap(g)) for o, g in zip(outs, grads) if o.requires_grad and g is not None
        ]
        if not pairs:
            raise RuntimeError(
                "none of output has requires_grad=True, this checkpoint() is not necessary"
            )
        _autograd_backward([o for o, _ in pairs], [g for _, g in pairs])
        return (None, None) + tuple(
            (x.grad._data if x.grad is not None else None) if isinstance(x, Tensor) else None
            for x in args
        )


# ---- public entry points ----------------------------------------------------------------------
def checkpoint(
    function: Callable,
    *args,
    use_reentrant: bool | None = None,
    context_fn: Callable[[], tuple] = noop_context_fn,
    determinism_check: str = "default",
    debug: bool = False,
    early_stop: bool = True,
    **kwargs,
):
    r"""Checkpoint a model or part of the model: run ``function(*args, **kwargs)`` without
    keeping its intermediate activations, and recompute them during backward.

    Args:
        function: what to run in the checkpointed region (a module or any callable).
        *args: its positional arguments.
        use_reentrant (bool, optional): ``False`` (also ember's default for ``None``;
            PyTorch 2.13 warns and uses ``True``) selects the saved-tensor-hook variant;
            ``True`` the ``autograd.Function`` one, which needs a tensor input that requires
            grad, supports neither keyword arguments nor ``autograd.grad``.
        preserve_rng_state (bool, keyword): replay the RNG state of the first run in the
            recomputation (dropout masks match). Default ``True``.
        context_fn (Callable, optional): returns two context managers, entered around the
            first run and the recomputation (non-reentrant only).
        determinism_check (str, optional): ``"default"`` compares the shapes and dtypes of
            the recomputed saved tensors with the first run's; ``"none"`` skips it.
        debug (bool, optional): put the saved tensors of both runs in a mismatch error.
        early_stop (bool, optional): accepted for PyTorch compatibility.
        **kwargs: ``preserve_rng_state`` plus keyword arguments for ``function``.

    Returns:
        What ``function(*args, **kwargs)`` returns.
    """
    preserve = kwargs.pop("preserve_rng_state", True)
    if use_reentrant is None:
        use_reentrant = False
    if determinism_check not in _DETERMINISM_CHECKS:
        raise ValueError(
            f"determinism_check should be one of {list(_DETERMINISM_CHECKS)}, "
            f"but got {determinism_check}"
        )
    if not callable(function):
        raise TypeError(f"checkpoint: function must be callable, got {type(function).__name__}")
    if not grad_mode.is_grad_enabled():
        return function(*args, **kwargs)  # no graph: nothing to save, nothing to recompute
    if use_reentrant:
        if context_fn is not noop_context_fn or debug:
            raise ValueError(
                "Passing `context_fn` or `debug` is only supported when use_reentrant=False."
            )
        if kwargs:
            raise ValueError("Unexpected keyword arguments: " + ",".join(kwargs))
        check_backward_validity(args)
        return CheckpointFunction.apply(function, preserve, *args)
    debug = _debug_enabled[0] if _debug_enabled[0] is not None else debug
    return _checkpoint_without_reentrant(
        function, args, kwargs, preserve, context_fn, determinism_check, debug
    )


def checkpoint_sequential(
    functions, segments: int, input, use_reentrant: bool | None = None, **kwargs
):
    r"""Checkpoint a sequential model in ``segments`` chunks: every chunk but the last runs
    under :func:`checkpoint`, so only the chunk boundaries are kept between forward and
    backward.

    Args:
        functions: an ``nn.Sequential`` or a list of modules/functions run in order.
        segments (int): the number of chunks.
        input: the input of the first function.
        use_reentrant (bool, optional): as in :func:`checkpoint`.
        **kwargs: ``preserve_rng_state`` (default ``True``).

    Returns:
        The output of the last function.
    """
    preserve = kwargs.pop("preserve_rng_state", True)
    if kwargs:
        raise ValueError("Unexpected keyword arguments: " + ",".join(kwargs))
    if hasattr(functions, "children") and callable(functions.children):
        functions = list(functions.children())
    functions = list(functions)
    if not isinstance(segments, int) or segments < 1:
        raise ValueError(
            f"checkpoint_sequential: segments must be a positive int, got {segments!r}"
        )
    if segments > len(functions):
        raise ValueError(
            f"checkpoint_sequential: {segments} segments for only {len(functions)} functions"
        )

    def run_function(start, end):
        def forward(x):
            for j in range(start, end + 1):
                x = functions[j](x)
            return x

        return forward

    size = len(functions) // segments
    end = -1
    for start in range(0, size * (segments - 1), size):
        end = start + size - 1
        input = checkpoint(
            run_function(start, end),
            input,
            use_reentrant=use_reentrant,
            preserve_rng_state=preserve,
        )
    return run_function(end + 1, len(functions) - 1)(input)
