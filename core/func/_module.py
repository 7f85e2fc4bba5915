"""``functional_call`` and ``stack_module_state``: modules as functions of their state."""

from __future__ import annotations

from typing import Any

from ..nn.module import Module
from ..nn.utils.stateless import _functional_call
from ..ops import stack
from ..tensor import Tensor

__all__ = ["functional_call", "stack_module_state"]


def functional_call(
    module: Module,
    parameter_and_buffer_dicts: dict[str, Tensor] | tuple | list,
    args: Any | tuple | None = None,
    kwargs: dict[str, Any] | None = None,
    *,
    tie_weights: bool = True,
    strict: bool = False,
) -> Any:
    r"""Call ``module`` with its parameters and buffers replaced by the given tensors.

    The module itself is unchanged afterwards; the replacements take part in autograd (and in
    the ``ember.func`` transforms) like any tensor.

    Args:
        module (nn.Module): the module to call.
        parameter_and_buffer_dicts (dict or tuple of dicts): tensors keyed by dotted names
            (``"0.weight"``); several dicts (e.g. ``(params, buffers)``) must not share a key.
        args (Any or tuple): positional arguments (a non-tuple is one argument).
        kwargs (dict): keyword arguments.
        tie_weights (bool): a value given for one name of tied tensors serves all of them.
        strict (bool): the given names must be exactly the module's parameters and buffers.

    Returns:
        Any: the result of calling ``module``.

    Example::

        >>> model = ember.nn.Linear(3, 2)
        >>> params = {k: v.detach() * 2 for k, v in model.named_parameters()}
        >>> y = functional_call(model, params, (ember.randn(4, 3),))
    """
    if isinstance(parameter_and_buffer_dicts, dict):
        merged = parameter_and_buffer_dicts
    elif isinstance(parameter_and_buffer_dicts, (list, tuple)):
        if not all(isinstance(d, dict) for d in parameter_and_buffer_dicts):
            raise ValueError(
                "Expected all elements of parameter_and_buffer_dicts to be dictionaries"
            )
        keys = [k for d in parameter_and_buffer_dicts for k in d]
        dup = sorted({k for k in keys if keys.count(k) > 1})
        if dup:
            raise ValueError(
                f"{dup} appeared in multiple dictionaries; behavior of functional call is ambiguous"
            )
        merged = {k: v for d in parameter_and_buffer_dicts for k, v in d.items()}
    else:
        raise ValueError(
            "Expected parameter_and_buffer_dicts to be a dict, or a list/tuple of "
            f"dicts, but got {type(parameter_and_buffer_dicts)}"
        )
    return _functional_call(module, merged, args, kwargs, tie_weights=tie_weights, strict=strict)


def _stack_leaf(tensors: list[Tensor], name: str) -> Tensor:
    req = [t.requires_grad for t in tensors]
    if any(req) and not all(req):
        raise RuntimeError(f"Expected {name} from each model to have the same .requires_grad")
    out = stack([t.detach() for t in tensors])
    return out.requires_grad_(True) if all(req) else out


def stack_module_state(
    models: list[Module] | tuple[Module, ...],
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    r"""Stack the parameters and buffers of same-class models along a new leading dimension.

    Stacked parameters are new leaves (requiring grad where the models' do), so an optimizer
    can train the ensemble; call one model with ``functional_call(base, (p_i, b_i), x)`` where
    ``p_i = {k: v[i] for k, v in params.items()}``.

    Args:
        models (list of nn.Module): models of one class, all in training or all in eval mode.

    Returns:
        ``(params, buffers)``: dicts from dotted names to stacked tensors.
    """
    models = list(models)
    if not models:
        raise RuntimeError("stack_module_state: Expected at least one model, got 0.")
    if not (all(m.training for m in models) or not any(m.training for m in models)):
        raise RuntimeError(
            "stack_module_state: Expected all models to have the same training/eval mode."
        )
    if any(type(m) is not type(models[0]) for m in models):
        raise RuntimeError("stack_module_state: Expected all models to be of the same class.")
    all_params = [dict(m.named_parameters()) for m in models]
    params = {k: _stack_leaf([p[k] for p in all_params], k) for k in all_params[0]}
    all_buffers = [dict(m.named_buffers()) for m in models]
    buffers = {k: _stack_leaf([b[k] for b in all_buffers], k) for k in all_buffers[0]}
    return params, buffers
