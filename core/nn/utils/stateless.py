"""``functional_call``: run a module with some of its parameters and buffers replaced for one
call (PyTorch's ``torch.nn.utils.stateless``; ``ember.func.functional_call`` is the same
call without the deprecation warning)."""

from __future__ import annotations

import contextlib
import sys
import warnings
from typing import Any

from ...tensor import Tensor
from ..module import Module

__all__ = ["functional_call"]

_MISSING = object()


def _swap_tensor(module: Module, name: str, tensor):
    """Put ``tensor`` at ``module.<name>`` (a dotted path), bypassing the Parameter checks as
    PyTorch does, and return what was there (``_MISSING`` when nothing was)."""
    if tensor is not _MISSING and tensor is not None and not isinstance(tensor, Tensor):
        raise TypeError(f"{tensor} is not an instance of ember.Tensor")
    *path, attr = name.split(".")
    for part in path:
        module = getattr(module, part)
    for store in (module._parameters, module._buffers):
        if attr in store:
            orig = store[attr]
            if tensor is _MISSING:
                del store[attr]
            else:
                store[attr] = tensor
            return orig
    orig = getattr(module, attr, _MISSING)
    if orig is not _MISSING and orig is not None and not isinstance(orig, Tensor):
        raise TypeError(f"attribute `{attr}`: {orig} is not an instance of ember.Tensor")
    if tensor is not _MISSING:
        setattr(module, attr, tensor)
    elif hasattr(module, attr):
        delattr(module, attr)
    return orig


def _untie(module: Module, given: dict[str, Tensor]) -> dict[str, Tensor]:
    """Spread a value given for one name of tied tensors to all the names of that tensor."""
    named = dict(module.named_parameters(remove_duplicate=False))
    named.update(module.named_buffers(remove_duplicate=False))
    by_tensor: dict[int, set[str]] = {}
    for name, t in named.items():
        by_tensor.setdefault(id(t), set()).add(name)
    tied = {n: names for names in by_tensor.values() if len(names) > 1 for n in names}
    out = dict(given)
    for name in [n for n in given if n in tied]:
        names = tied[name]
        values = {id(given[n]) for n in names if n in given}
        if len(values) > 1:
            raise ValueError(
                f"functional_call got multiple values for keys {sorted(names)}, "
                "which are tied. Consider using tie_weights=False"
            )
        for n in names:
            out[n] = given[name]
    return out


@contextlib.contextmanager
def _reparametrize_module(
    module: Module,
    parameters_and_buffers: dict[str, Tensor],
    tie_weights: bool = False,
    strict: bool = False,
):
    values = _untie(module, parameters_and_buffers) if tie_weights else parameters_and_buffers
    if strict:
        valid = {n for n, _ in module.named_parameters(remove_duplicate=False)}
        valid |= {n for n, _ in module.named_buffers(remove_duplicate=False)}
        missing, unexpected = sorted(valid - set(values)), sorted(set(values) - valid)
        msgs = []
        if unexpected:
            msgs.append(f"Unexpected key(s): {', '.join(map(repr, unexpected))}.")
        if missing:
            msgs.append(f"Missing key(s): {', '.join(map(repr, missing))}.")
        if msgs:
            raise RuntimeError(
                "Error(s) in reparametrizing for {}:\n\t{}".format(
                    module._get_name(), "\n\t".join(msgs)
                )
            )
    orig: dict[str, Any] = {}
    try:
        for name, tensor in values.items():
            orig[name] = _swap_tensor(module, name, tensor)
        yield
    finally:
        new = {name: _swap_tensor(module, name, t) for name, t in orig.items()}
        # a module that reassigned a replaced tensor in place: hand the new one back
        parameters_and_buffers.update(
            {k: new[k] for k in parameters_and_buffers if k in new and new[k] is not _MISSING}
        )


def _functional_call(
    module: Module,
    parameters_and_buffers: dict[str, Tensor],
    args=None,
    kwargs: dict[str, Any] | None = None,
    *,
    tie_weights: bool = True,
    strict: bool = False,
):
    # DataParallel lives in ember.distributed: look only if it was ever imported
    dp = sys.modules.get("ember.distributed.parallel.data_parallel")
    if dp is not None and isinstance(module, dp.DataParallel):
        raise RuntimeError("The stateless API can't be used with nn.DataParallel module")
    kwargs = {} if kwargs is None else kwargs
    if args is None:
        args = ()
    elif not isinstance(args, tuple):
        args = (args,)
    with _reparametrize_module(
        module, parameters_and_buffers, tie_weights=tie_weights, strict=strict
    ):
        return module(*args, **kwargs)


def functional_call(
    module: Module,
    parameters_and_buffers: dict[str, Tensor],
    args: Any | tuple | None = None,
    kwargs: dict[str, Any] | None = None,
    *,
    tie_weights: bool = True,
    strict: bool = False,
):
    r"""Perform a functional call on the module by replacing the module parameters and
    buffers with the provided ones.

    .. warning:: Deprecated in PyTorch 2.0; use ``ember.func.functional_call``.

    Args:
        module (nn.Module): the module to call.
        parameters_and_buffers (dict of str and Tensor): the parameters that will be used in
            the module call, keyed by their dotted names.
        args (Any or tuple): positional arguments (a non-tuple is one argument).
        kwargs (dict): keyword arguments.
        tie_weights (bool): a value given for one of several tied names serves them all.
        strict (bool): the given names must be exactly the module's parameters and buffers.

    Returns:
        Any: the result of calling ``module``.
    """
    warnings.warn(
        "`torch.nn.utils.stateless.functional_call` is deprecated as of PyTorch 2.0 "
        "and will be removed in a future version of PyTorch. Please use "
        "`torch.func.functional_call` instead which is a drop-in replacement.",
        FutureWarning,
        stacklevel=2,
    )
    return _functional_call(
        module, parameters_and_buffers, args, kwargs, tie_weights=tie_weights, strict=strict
    )
