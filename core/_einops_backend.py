"""einops' backend for ember tensors; importing this module registers it (see _einops.py).

Every operation is an ember op, so einops' functions (rearrange, reduce, repeat, einsum, pack,
unpack) record autograd graphs and stay on the tensor's device (NumPy or CuPy). The methods
mirror einops' torch backend so that results (dtypes, which reductions are refused) match it.
"""

from __future__ import annotations

from einops._backends import AbstractBackend

import ember

_FLOAT_TYPES = (ember.float16, ember.bfloat16, ember.float32, ember.float64)


class EmberBackend(AbstractBackend):
    """einops operations on :class:`ember.Tensor`."""

    framework_name = "ember"

    def is_appropriate_type(self, tensor) -> bool:
        return isinstance(tensor, ember.Tensor)

    def from_numpy(self, x):
        variable = ember.from_numpy(x)
        if self.is_float_type(variable):
            variable.requires_grad_(True)  # as einops' torch backend: leaves for its tests
        return variable

    def to_numpy(self, x):
        return x.detach().cpu().numpy()

    def arange(self, start, stop):
        return ember.arange(start, stop, dtype=ember.int64)

    def shape(self, x):
        return tuple(x.shape)

    def reshape(self, x, shape):
        return x.reshape(shape)

    def transpose(self, x, axes):
        return x.permute(axes)

    def reduce(self, x, operation, reduced_axes):
        axes = tuple(reduced_axes)
        if operation == "min":
            return x.amin(dim=axes)
        if operation == "max":
            return x.amax(dim=axes)
        if operation == "sum":
            return x.sum(dim=axes)
        if operation == "mean":
            return x.mean(dim=axes)
        if operation in ("any", "all", "prod"):
            # one dim at a time, from the last, as torch's backend (these take one dim)
            for axis in sorted(axes, reverse=True):
                x = getattr(x, operation)(dim=axis)
            return x
        raise NotImplementedError(f"Unknown reduction {operation!r} for ember tensors")

    def stack_on_zeroth_dimension(self, tensors: list):
        return ember.stack(tensors)

    def add_axis(self, x, new_position):
        return ember.unsqueeze(x, new_position)

    def add_axes(self, x, n_axes, pos2len):
        # a view with stride 0 along the new axes, as torch's backend (no copy until needed)
        repeats = [-1] * n_axes
        for axis_position, axis_length in pos2len.items():
            x = self.add_axis(x, axis_position)
            repeats[axis_position] = axis_length
        return x.expand(repeats)

    def tile(self, x, repeats):
        return x.repeat(repeats)

    def concat(self, tensors, axis: int):
        return ember.cat(tensors, dim=axis)

    def is_float_type(self, x) -> bool:
        return x.dtype in _FLOAT_TYPES

    def layers(self):
        from . import _einops_layers

        return _einops_layers

    def einsum(self, pattern, *x):
        return ember.einsum(pattern, *x)
