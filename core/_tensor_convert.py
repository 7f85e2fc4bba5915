"""Tensor conversions and the Python protocol, bound onto :class:`~ember.tensor.Tensor`.

Device and dtype conversions (``to``, ``cuda``, ``cpu``, ``type``, ``float``, ... ``bool``), the
way out to NumPy and Python (``numpy``, ``__array__``, ``item``, ``tolist``) and the Python
protocol (``len``, ``iter``, ``bool``, ``float``, ``int``, ``index``, ``complex``, ``repr``,
pickling, ``deepcopy``). They are intrinsic to a tensor, so ``core/tensor.py`` copies them into
the class at its end (the class stays complete whenever ``ember.tensor`` is importable); they are
written in a holder class only so that methods named ``float`` / ``int`` / ``bool`` / ``type``
do not shadow the builtins the other bodies call.
"""

from __future__ import annotations

import numpy as np

from .backend.device import CPU, as_device
from .backend.dtype import to_dtype
from .backend.meta import MetaArray


def _grad_enabled() -> bool:
    from .autograd import grad_mode

    return grad_mode._state.enabled


class _TensorConversions:
    """Not a base class: its functions are copied onto ``Tensor`` by ``core/tensor.py``."""

    # ---- conversions -------------------------------------------------------------------
    def numpy(self, *, force: bool = False) -> np.ndarray:
        """The NumPy array behind this CPU tensor (shared memory)."""
        # as in PyTorch, only while grad mode is on (a saved-tensor pack hook runs without it)
        if self.requires_grad and not force and _grad_enabled():
            raise RuntimeError(
                "Can't call numpy() on Tensor that requires grad. Use tensor.detach().numpy() "
                "instead."
            )
        if type(self._data) is not np.ndarray:
            if not force:
                raise TypeError(
                    f"can't convert {self.device} device type tensor to numpy. Use Tensor.cpu() "
                    "to copy the tensor to host memory first."
                )
            return self._data.get()
        return self._data

    def __array__(self, dtype=None, copy=None):
        a = self._data if type(self._data) is np.ndarray else self._data.get()
        return a if dtype is None else a.astype(dtype, copy=False)

    def item(self):
        """The value of a one-element tensor as a Python number."""
        if self._data.size != 1:
            raise RuntimeError(
                f"a Tensor with {self._data.size} elements cannot be converted to Scalar"
            )
        return self._data.reshape(()).item()

    def tolist(self):
        """The elements as (nested) Python lists of Python numbers."""
        d = self._data if type(self._data) is np.ndarray else self._data.get()
        return d.tolist()

    def to(self, *args, **kwargs) -> Tensor:
        """``to(device)``, ``to(dtype)``, ``to(device, dtype)``, ``to(other)``; differentiable."""
        layout = kwargs.pop("memory_format", None)
        dev, dt, copy = _parse_to(args, kwargs)
        from .ops import convert

        out = convert.to(self, dev, dt, copy)
        if layout is not None and convert._channels_last_rank(layout):
            out = convert.to_channels_last(out, layout)  # NHWC strides, as torch's
        elif layout is not None and layout is _contiguous_format():
            out = convert.contiguous(out)
        return out

    def cuda(self, device=None, non_blocking: bool = False) -> Tensor:
        """A copy on a CUDA device (the current one, or ``device``); ``self`` if already there."""
        return self.to(
            "cuda"
            if device is None
            else as_device(device if not isinstance(device, int) else f"cuda:{device}")
        )

    def cpu(self) -> Tensor:
        """A copy in host memory; ``self`` if already there."""
        return self.to(CPU)

    def type(self, dtype=None):
        if dtype is None:
            return f"ember.{self.dtype.name}"
        return self.to(to_dtype(dtype))

    def type_as(self, other: Tensor) -> Tensor:
        """This tensor converted to ``other``'s dtype."""
        return self.to(other.dtype)

    def float(self) -> Tensor:
        """``self.to(ember.float32)``."""
        return self.to(to_dtype("float32"))

    def double(self) -> Tensor:
        """``self.to(ember.float64)``."""
        return self.to(to_dtype("float64"))

    def half(self) -> Tensor:
        """``self.to(ember.float16)``."""
        return self.to(to_dtype("float16"))

    def bfloat16(self) -> Tensor:
        """``self.to(ember.bfloat16)``."""
        return self.to(to_dtype("bfloat16"))

    def long(self) -> Tensor:
        """``self.to(ember.int64)``."""
        return self.to(to_dtype("int64"))

    def int(self) -> Tensor:
        """``self.to(ember.int32)``."""
        return self.to(to_dtype("int32"))

    def short(self) -> Tensor:
        """``self.to(ember.int16)``."""
        return self.to(to_dtype("int16"))

    def byte(self) -> Tensor:
        """``self.to(ember.uint8)``."""
        return self.to(to_dtype("uint8"))

    def bool(self) -> Tensor:
        """``self.to(ember.bool)``."""
        return self.to(to_dtype("bool"))

    # ---- Python protocol ---------------------------------------------------------------
    def __len__(self) -> int:
        if self._data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self._data.shape[0]

    def __iter__(self):
        if self._data.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self._data.shape[0]))

    def __bool__(self) -> bool:
        if self._data.size != 1:
            raise RuntimeError("Boolean value of Tensor with more than one value is ambiguous")
        return bool(self._data.reshape(()))

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __index__(self) -> int:
        if self._data.dtype.kind not in "iub" or self._data.size != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self.item())

    def __complex__(self) -> complex:
        return complex(self.item())

    def __repr__(self) -> str:
        from ._repr import tensor_repr

        return tensor_repr(self)

    def __reduce_ex__(self, protocol):
        # Pickling (multiprocessing, Ray, save with weights_only=False): data to CPU, no graph.
        data = self._data if type(self._data) in (np.ndarray, MetaArray) else self._data.get()
        if type(self) is not Tensor or self.__dict__:
            # a subclass (or a tensor given attributes) comes back as itself with its
            # attributes (PyTorch's _rebuild_from_type_v2); classes with state of their own
            # override this
            plain = _rebuild(data, self.requires_grad, str(self.device))
            return (_rebuild_subclass, (type(self), plain, _extra_state(self)))
        return (_rebuild, (data, self.requires_grad, str(self.device)))

    def __deepcopy__(self, memo):
        if self.grad_fn is not None:
            raise RuntimeError(
                "Only Tensors created explicitly by the user (graph leaves) support the deepcopy "
                "protocol at the moment."
            )
        # the class's own __new__ does not run (its signature is the subclass's business)
        t = _make_subclass(type(self), Tensor._wrap(self._data.copy()))
        t.requires_grad = self.requires_grad
        if self.grad is not None:
            t.grad = self.grad.__deepcopy__(memo)
        if type(self) is not Tensor or self.__dict__:
            import copy

            for k, v in _extra_state(self).items():
                object.__setattr__(t, k, copy.deepcopy(v, memo))
        memo[id(self)] = t
        return t


def _contiguous_format():
    from ._torch_misc import contiguous_format

    return contiguous_format


# Imported last, after the class above exists: ``core/tensor.py`` imports this module at its end,
# so either module may be imported first without meeting a half-initialised other.
from ._tensor_subclass import _extra_state, _make_subclass, _rebuild_subclass  # noqa: E402
from .tensor import Tensor, _parse_to, _rebuild  # noqa: E402
