"""einops' layers on ``ember.nn.Module``: ``Rearrange``, ``Reduce``, ``EinMix``.

An ember program reaches them as ``einops.layers.torch`` (the rule is in _einops.py) or through
``einops``' backend (``get_backend(t).layers()``). The pattern handling is einops' own mixins;
only the module base and the parameters are ember's, as in einops' torch layers.
"""

from __future__ import annotations

from typing import Any

from einops.layers import RearrangeMixin, ReduceMixin
from einops.layers._einmix import _EinmixMixin

import ember
from ember import nn

__all__ = ["EinMix", "Rearrange", "Reduce"]


class Rearrange(RearrangeMixin, nn.Module):
    r"""``einops.rearrange(input, pattern, **axes_lengths)`` as a layer.

    Example::

        >>> to_patches = Rearrange("b c (h p1) (w p2) -> b (h w) (p1 p2 c)", p1=4, p2=4)
        >>> to_patches(ember.randn(2, 3, 8, 8)).shape
        ember.Size([2, 4, 48])
    """

    def forward(self, input: ember.Tensor) -> ember.Tensor:
        return self._apply_recipe(input)


class Reduce(ReduceMixin, nn.Module):
    r"""``einops.reduce(input, pattern, reduction, **axes_lengths)`` as a layer.

    Example::

        >>> pool = Reduce("b c (h 2) (w 2) -> b c h w", "max")
        >>> pool(ember.randn(1, 3, 4, 4)).shape
        ember.Size([1, 3, 2, 2])
    """

    def forward(self, input: ember.Tensor) -> ember.Tensor:
        return self._apply_recipe(input)


class EinMix(_EinmixMixin, nn.Module):
    r"""einops' ``EinMix``: an einsum of the input with a learned weight (plus bias).

    Example::

        >>> mix = EinMix("b t c -> b t d", weight_shape="c d", bias_shape="d", c=8, d=4)
        >>> mix(ember.randn(2, 5, 8)).shape
        ember.Size([2, 5, 4])
    """

    def _create_parameters(self, weight_shape, weight_bound, bias_shape, bias_bound) -> None:
        self.weight = nn.Parameter(ember.zeros(weight_shape).uniform_(-weight_bound, weight_bound))
        if bias_shape is not None:
            self.bias = nn.Parameter(ember.zeros(bias_shape).uniform_(-bias_bound, bias_bound))
        else:
            self.bias = None

    def _create_rearrange_layers(
        self,
        pre_reshape_pattern: str | None,
        pre_reshape_lengths: dict[str, Any] | None,
        post_reshape_pattern: str | None,
        post_reshape_lengths: dict[str, Any] | None,
    ) -> None:
        self.pre_rearrange = None
        if pre_reshape_pattern is not None:
            self.pre_rearrange = Rearrange(pre_reshape_pattern, **(pre_reshape_lengths or {}))
        self.post_rearrange = None
        if post_reshape_pattern is not None:
            self.post_rearrange = Rearrange(post_reshape_pattern, **(post_reshape_lengths or {}))

    def forward(self, input: ember.Tensor) -> ember.Tensor:
        if self.pre_rearrange is not None:
            input = self.pre_rearrange(input)
        result = ember.einsum(self.einsum_pattern, input, self.weight)
        if self.bias is not None:
            result = result + self.bias
        if self.post_rearrange is not None:
            result = self.post_rearrange(result)
        return result
