"""``nn.Container``: PyTorch's deprecated base class of containers (a Module built from
keyword arguments)."""

from __future__ import annotations

import warnings
from typing import Any

from ..module import Module

__all__ = ["Container"]


class Container(Module):
    r"""Deprecated: a :class:`Module` whose children are the keyword arguments."""

    def __init__(self, **kwargs: Any) -> None:
        warnings.warn(
            "`nn.Container` is deprecated. All of its functionality is now "
            "implemented in `nn.Module`. Subclass that instead.",
            FutureWarning,
            stacklevel=2,
        )
        super().__init__()
        for key, value in kwargs.items():
            self.add_module(key, value)
