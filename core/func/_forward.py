"""Forward mode for the transforms: ``J v`` by the double-vjp construction.

For outputs ``y = f(x)``, ``g(u) = J^T u`` is linear in a dummy cotangent ``u``, so
``J v = d/du <g(u), v>``. :class:`ForwardGraph` records ``g(u)`` once (a differentiable
backward); every tangent then costs one backward pass through that record. This is the
construction ``ember.autograd.forward_ad`` uses, so both give the same numbers; it needs the
ops on the path to support double backward.
"""

from __future__ import annotations

from ..autograd import grad_mode
from ..creation import zeros_like
from ..tensor import Tensor
from ._common import Level, zeros
from ._vmap_tensor import grad as vmap_grad
from ._vmap_tensor import rewrap as vmap_rewrap

__all__ = ["ForwardGraph", "check_tangent"]


def check_tangent(primal: Tensor, tangent, api: str) -> Tensor:
    if not isinstance(tangent, Tensor):
        raise ValueError(
            f"{api}: Thing passed to transform API must be Tensor, got {type(tangent)}"
        )
    if tangent.shape != primal.shape:
        raise RuntimeError(
            "Trying to set a forward gradient that has a different size than that of the "
            f"original Tensor, this is not supported. Tensor is of size {list(primal.shape)} "
            f"while the given forward gradient is of size {list(tangent.shape)}."
        )
    if tangent.dtype != primal.dtype:
        tangent = tangent.to(primal.dtype)
    return tangent


class ForwardGraph:
    r"""``u -> J^T u`` recorded for the ``outputs`` of a level over its lifted ``inputs``."""

    def __init__(self, level: Level, inputs: list[Tensor], outputs: list[Tensor]) -> None:
        self.level = level
        self.inputs = inputs
        self.outputs = outputs
        with grad_mode.enable_grad():
            diff = [
                i
                for i, o in enumerate(outputs)
                if o.requires_grad and (o.is_floating_point() or o.is_complex())
            ]
            self.us = {
                i: level.fresh_leaf(vmap_rewrap(zeros_like(outputs[i]), outputs[i])) for i in diff
            }
            if diff:
                g = vmap_grad(
                    [outputs[i] for i in diff],
                    inputs,
                    [self.us[i] for i in diff],
                    create_graph=True,
                    allow_unused=True,
                )
            else:
                g = [None] * len(inputs)
        # an input whose g does not depend on u contributes nothing (J's block is zero)
        self.g = [gi if gi is not None and gi.requires_grad else None for gi in g]

    def needs_graph(self, tangents: list[Tensor]) -> bool:
        r"""Whether ``J v`` must stay differentiable for the caller."""
        return self.level.needs_graph(
            [*self.outputs, *(g for g in self.g if g is not None)], *tangents
        )

    def jvp(self, tangents: list[Tensor | None], create_graph: bool) -> list[Tensor]:
        r"""``J v`` per output; ``None`` tangents count as zero (and cost nothing)."""
        pairs = [(g, t) for g, t in zip(self.g, tangents) if g is not None and t is not None]
        keys = list(self.us)
        res = None
        if pairs and keys:
            with grad_mode.enable_grad():
                res = vmap_grad(
                    [g for g, _ in pairs],
                    [self.us[k] for k in keys],
                    [t for _, t in pairs],
                    retain_graph=True,
                    create_graph=create_graph,
                    allow_unused=True,
                )
        by_out = dict(zip(keys, res)) if res is not None else {}
        return [
            by_out.get(i) if by_out.get(i) is not None else zeros(o.shape, o)
            for i, o in enumerate(self.outputs)
        ]
