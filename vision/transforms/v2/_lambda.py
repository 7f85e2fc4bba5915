"""v2's ``Lambda``: torchvision's v2 semantics, which are not v1's. The function runs on each
leaf of the sample whose type is one of ``types`` (every leaf by default: labels, boxes and
plain Python values too), with v2's rule for plain tensors: when the sample holds no image or
video, only the first plain tensor counts; otherwise none does."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ember.tensor import Tensor

from ... import tv_tensors as tv
from .._functional_pil import is_pil
from ._transform import Transform, _flatten

__all__ = ["Lambda"]


class Lambda(Transform):
    """Apply a user-defined function to the leaves of a sample.

    Args:
        lambd: the function, called with one leaf and returning its replacement.
        *types: the leaf types it applies to (``isinstance``); every type when none is given.

    Example::

        >>> t = v2.Lambda(lambda x: x * 2, ember.Tensor)
        >>> t(ember.ones(1, 2, 2), 3)  # the label 3 is no tensor: passed through
    """

    _transformed_types: tuple = (object,)

    def __init__(self, lambd: Callable[[Any], Any], *types: type) -> None:
        self.lambd = lambd
        self.types = types or self._transformed_types

    def forward(self, *inputs):
        sample = inputs if len(inputs) > 1 else inputs[0]
        leaves: list = []
        rebuild = _flatten(sample, leaves)
        # torchvision's rule for plain tensors (Transform._needs_transform_list)
        plain_left = not any(is_pil(x) or isinstance(x, (tv.Image, tv.Video)) for x in leaves)
        out = []
        for x in leaves:
            take = True
            if isinstance(x, Tensor) and not isinstance(x, tv.TVTensor):
                take, plain_left = plain_left, False
            out.append(self.lambd(x) if take and isinstance(x, self.types) else x)
        return rebuild(iter(out))

    def __repr__(self) -> str:
        # torchvision's extra_repr: the function's name, if it has one, and the type names
        name = getattr(self.lambd, "__name__", None)
        extras = ([name] if name else []) + [f"types={[t.__name__ for t in self.types]}"]
        return f"{type(self).__name__}({', '.join(extras)})"
