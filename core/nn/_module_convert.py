"""Module's device and dtype conversions (``to``, ``cuda``, ``float``...), as a mixin."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from ..autograd import grad_mode
from ..backend.dtype import to_dtype
from ..tensor import Tensor, _parse_to
from .parameter import is_lazy

if TYPE_CHECKING:
    from .module import Module


class _ConvertMixin:
    """``_apply`` and everything built on it; parameters keep their identity."""

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> Module:
        if recurse:
            for module in self.children():
                module._apply(fn)
        with grad_mode.no_grad():
            for param in self._parameters.values():
                if param is None:
                    continue
                if is_lazy(param):
                    probe = fn(Tensor._wrap(np.empty((0,), param._lazy_dtype.np)))
                    param._lazy_device, param._lazy_dtype = probe.device, probe.dtype
                    continue
                # Parameters keep their identity (optimizers hold them): swap the data only.
                param.data = fn(param)
                if param.grad is not None:
                    param.grad.data = fn(param.grad)
            for key, buf in self._buffers.items():
                if buf is not None:
                    self._buffers[key] = fn(buf)
        return self

    def to(self, *args, **kwargs) -> Module:
        r"""Move and/or cast parameters and buffers: ``to(device)``, ``to(dtype)``,
        ``to(device, dtype)``, ``to(tensor)``. Only floating-point tensors change dtype."""
        layout = kwargs.get("memory_format")  # torch: applied to the 4-D / 5-D tensors
        device, dtype, _ = _parse_to(args, dict(kwargs))
        if dtype is not None and not (dtype.is_floating_point or dtype.is_complex):
            raise TypeError(
                "nn.Module.to only accepts floating point or complex dtypes, but got "
                f"desired dtype={dtype}"
            )

        def convert(t: Tensor) -> Tensor:
            if t.is_meta and device is not None and str(device) != "meta":
                raise NotImplementedError(
                    "Cannot copy out of meta tensor; no data! Please use "
                    "ember.nn.Module.to_empty() instead of ember.nn.Module.to() when moving "
                    "module from meta to a different device."
                )
            keep = dtype is None or not (t.is_floating_point() or t.is_complex())
            fmt = layout if layout is not None and t.dim() in (4, 5) else None
            return t.to(device=device, dtype=None if keep else dtype, memory_format=fmt)

        return self._apply(convert)

    def cuda(self, device=None) -> Module:
        return self._apply(lambda t: t.cuda(device))

    def cpu(self) -> Module:
        return self._apply(lambda t: t.cpu())

    def type(self, dst_type) -> Module:
        dt = to_dtype(dst_type)
        return self._apply(lambda t: t.to(dt))

    def _cast_floats(self, name: str) -> Module:
        dt = to_dtype(name)
        return self._apply(lambda t: t.to(dt) if t.is_floating_point() else t)

    def float(self) -> Module:
        return self._cast_floats("float32")

    def double(self) -> Module:
        return self._cast_floats("float64")

    def half(self) -> Module:
        return self._cast_floats("float16")

    def bfloat16(self) -> Module:
        return self._cast_floats("bfloat16")

    def to_empty(self, *, device=None, recurse: bool = True) -> Module:
        from ..creation import empty_like

        return self._apply(lambda t: empty_like(t, device=device), recurse=recurse)

    def share_memory(self) -> Module:
        """Move parameters and buffers to shared memory (``Tensor.share_memory_``): forked or
        ``spawn``-ed processes that receive the module then update the same weights (Hogwild)."""
        return self._apply(lambda t: t.share_memory_() if t.is_cpu else t)
