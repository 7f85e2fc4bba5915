"""Forward-mode automatic differentiation (PyTorch's ``torch.autograd.forward_ad``).

Inside ``with dual_level():``, ``make_dual(x, v)`` gives a tensor carrying the tangent
``v``; ``unpack_dual(y)`` returns ``y``'s primal and its tangent ``J v``, where ``J`` is the
Jacobian of ``y`` with respect to every dual tensor it depends on.

ember computes tangents from its reverse mode (the "double-vjp" trick): for ``y = f(x)``,
``g(u) = J^T u`` is linear in ``u``, so ``J v = d/du <g(u), v>``: two backward passes through
the recorded graph (a differentiable backward, then its gradient with respect to ``u``).
Dual tensors therefore take part in the autograd graph: ``make_dual`` returns a tensor that
requires grad, and results computed from it have a ``grad_fn`` (under PyTorch they need
not). Tangents are computed when unpacked, exactly (no finite differences); an op whose
backward is not differentiable (no double backward) cannot carry tangents.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, NamedTuple

from . import grad_mode

if TYPE_CHECKING:
    from ..tensor import Tensor

__all__ = [
    "UnpackedDualTensor",
    "enter_dual_level",
    "exit_dual_level",
    "make_dual",
    "unpack_dual",
    "dual_level",
]

_current_level = -1
# per level: id(dual tensor) -> (weak reference to it, its tangent)
_duals: dict[int, dict[int, tuple]] = {}


def enter_dual_level() -> int:
    r"""Enter a new forward-grad level and return its index (nesting is not supported)."""
    global _current_level
    if _current_level >= 0:
        raise RuntimeError("Nested forward mode AD is not supported at the moment")
    _current_level += 1
    _duals[_current_level] = {}
    return _current_level


def exit_dual_level(*, level: int | None = None) -> None:
    r"""Exit a forward-grad level: every tangent of that level is dropped."""
    global _current_level
    level = _current_level if level is None else level
    if level != _current_level:
        raise RuntimeError(
            "Trying to exit a forward AD level that was not the last one that "
            "was created. This is not supported."
        )
    _duals.pop(level, None)
    _current_level = level - 1


def _level(level: int | None) -> int:
    if level is None:
        level = _current_level
    if level < 0 or level not in _duals:
        raise RuntimeError(
            "Trying to create a dual Tensor for forward AD but no level exists, "
            "make sure to enter_dual_level() first."
        )
    return level


def make_dual(tensor: Tensor, tangent: Tensor, *, level: int | None = None) -> Tensor:
    r"""Associate ``tangent`` with ``tensor``: returns a dual tensor (sharing ``tensor``'s
    storage) whose results carry forward gradients, readable with :func:`unpack_dual`.

    Args:
        tensor (Tensor): the primal, floating point or complex.
        tangent (Tensor): the tangent, of the same size.
        level (int, optional): the dual level (default: the current one).
    """
    if level is None and _current_level < 0:
        raise RuntimeError(
            "Trying to create a dual Tensor for forward AD but no level exists, "
            "make sure to enter_dual_level() first."
        )
    level = _level(level)
    if not (tensor.is_floating_point() or tensor.is_complex()):
        raise ValueError(
            f"Expected primal to be floating point or complex, but got: {tensor.dtype}"
        )
    if not (tangent.is_floating_point() or tangent.is_complex()):
        raise ValueError(
            f"Expected tangent to be floating point or complex, but got: {tangent.dtype}"
        )
    if tangent.shape != tensor.shape:
        raise RuntimeError(
            "Trying to set a forward gradient that has a different size than that of the "
            f"original Tensor, this is not supported. Tensor is of size {list(tensor.shape)} "
            f"while the given forward gradient is of size {list(tangent.shape)}."
        )
    with grad_mode.enable_grad():
        # a differentiable alias: reverse mode through ``tensor`` keeps working
        dual = (
            tensor.view_as(tensor) if tensor.requires_grad else tensor.detach().requires_grad_(True)
        )
    table = _duals[level]
    key = id(dual)
    # unpack_dual hands back the tangent itself where its layout is the primal's (PyTorch's
    # `unpack_dual(make_dual(p, t)).tangent is t`), else a copy in the primal's layout
    shown = tangent if tangent.stride() == tensor.stride() else tangent.contiguous()
    if tensor.requires_grad:
        # a view's results reach it only through its grad_fn, which does not keep the tensor
        # alive: ``f(make_dual(p, t))`` with ``p`` requiring grad would lose the tangent as
        # soon as the temporary dies. Held until the level exits (a leaf is held by its graph).
        ref = (lambda d: lambda: d)(dual)
    else:
        ref = weakref.ref(dual, lambda _, k=key, t=table: t.pop(k, None))
    table[key] = (ref, tangent.detach(), shown)
    return dual


class UnpackedDualTensor(NamedTuple):
    r"""What :func:`unpack_dual` returns: the ``primal`` and its ``tangent`` (or ``None``)."""

    primal: Tensor
    tangent: Tensor | None


def unpack_dual(tensor: Tensor, *, level: int | None = None) -> UnpackedDualTensor:
    r"""The primal of ``tensor`` and its tangent (``None`` when it carries none).

    Args:
        tensor (Tensor): a dual tensor, or a result computed from dual tensors.
        level (int, optional): the dual level (default: the current one).
    """
    if level is None:
        level = _current_level
    table = _duals.get(level)
    if not table:
        return UnpackedDualTensor(tensor, None)
    entry = table.get(id(tensor))
    if entry is not None and entry[0]() is tensor:
        return UnpackedDualTensor(tensor.detach(), entry[2])
    return UnpackedDualTensor(tensor, _tangent(tensor, table))


def _tangent(y: Tensor, table: dict) -> Tensor | None:
    """``J v`` of ``y`` over the live dual tensors, by two reverse passes."""
    from ..creation import zeros_like
    from . import grad

    if not y.requires_grad or y.grad_fn is None:
        return None
    if not (y.is_floating_point() or y.is_complex()):
        return None
    duals, tangents = [], []
    for ref, tangent, _ in list(table.values()):
        d = ref()
        if d is not None:
            duals.append(d)
            tangents.append(tangent)
    if not duals:
        return None
    with grad_mode.enable_grad():
        u = zeros_like(y).requires_grad_(True)
        vjps = grad(
            y, duals, grad_outputs=u, retain_graph=True, create_graph=True, allow_unused=True
        )
        total = None
        for g, v in zip(vjps, tangents):
            if g is None:
                continue
            term = (g * v).sum()
            total = term if total is None else total + term
        if total is None or not total.requires_grad:
            # y does not depend on a dual tensor (or only through constant parts)
            return None if total is None else zeros_like(y)
        (jvp,) = grad(total, u, allow_unused=True)
    return zeros_like(y) if jvp is None else jvp.detach()


class dual_level:
    r"""Context manager for forward AD: tangents made by :func:`make_dual` inside it live
    until it exits.

    Example::

        >>> with dual_level():
        ...     inp = make_dual(x, v)
        ...     out = f(inp)
        ...     y, jvp = unpack_dual(out)
    """

    def __enter__(self) -> int:
        return enter_dual_level()

    def __exit__(self, *args) -> None:
        exit_dual_level()
