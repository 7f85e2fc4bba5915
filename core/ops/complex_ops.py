"""Complex tensors: real/imag views, view_as_real/view_as_complex, conj, angle, polar, complex.

Gradients follow PyTorch's convention: the gradient of a real loss ``L`` with respect to a
complex ``z = x + iy`` is ``dL/dx + i dL/dy`` (the conjugate Wirtinger derivative times two), so
a holomorphic op ``f`` back-propagates ``grad * conj(f'(z))`` and a real op of ``z`` reads the
gradient's real part for ``x`` and its imaginary part for ``y``.
"""

from __future__ import annotations

import math

from .._torch_function import torch_function_dispatch
from ..autograd.function import Function
from ..backend.dtype import get_default_dtype
from ..tensor import Tensor
from ._util import scalar_type_name

# the complex dtype of a float dtype (NumPy names)
_TO_COMPLEX = {"float16": "complex64", "float32": "complex64", "float64": "complex128"}


def _is_complex(t) -> bool:
    return (t._data if isinstance(t, Tensor) else t).dtype.kind == "c"


# ---- helpers usable on raw arrays and, in double backward, on tensors ------------------------
def conj_any(x):
    """conj of an array (no copy when real) or of a tensor (differentiable)."""
    return conj(x) if isinstance(x, Tensor) else x.conj()


def real_any(x):
    if isinstance(x, Tensor):
        return real(x)
    return x.real if x.dtype.kind == "c" else x


def imag_any(x):
    return imag(x) if isinstance(x, Tensor) else x.imag


# ---- Functions ------------------------------------------------------------------------------
class Conj(Function):
    @staticmethod
    def forward(ctx, x):
        return x.conj()

    @staticmethod
    def backward(ctx, grad):
        return conj_any(grad)


class Real(Function):
    _view_of = 0

    @staticmethod
    def forward(ctx, x):
        return x.real

    @staticmethod
    def backward(ctx, grad):
        return grad * (1 + 0j)


class Imag(Function):
    _view_of = 0

    @staticmethod
    def forward(ctx, x):
        return x.imag

    @staticmethod
    def backward(ctx, grad):
        return grad * 1j


class ViewAsReal(Function):
    _view_of = 0

    @staticmethod
    def forward(ctx, x):
        xp = ctx.xp
        if not x.flags.c_contiguous:
            x = xp.ascontiguousarray(x)
        return x.reshape(x.shape + (1,)).view(x.real.dtype)

    @staticmethod
    def backward(ctx, grad):
        return grad[..., 0] + grad[..., 1] * 1j


class ViewAsComplex(Function):
    _view_of = 0

    @staticmethod
    def forward(ctx, x):
        if not x.flags.c_contiguous:
            x = ctx.xp.ascontiguousarray(x)
        return x.view(_TO_COMPLEX[x.dtype.name])[..., 0]

    @staticmethod
    def backward(ctx, grad):
        if isinstance(grad, Tensor):
            return view_as_real(grad)
        return ctx.xp.stack([grad.real, grad.imag], axis=-1)


class Complex(Function):
    @staticmethod
    def forward(ctx, re, im):
        return re + im * 1j

    @staticmethod
    def backward(ctx, grad):
        return real_any(grad), imag_any(grad)


class Angle(Function):
    @staticmethod
    def forward(ctx, x):
        xp = ctx.xp
        ctx.save_for_backward(x)
        if x.dtype.kind == "c":
            return xp.angle(x)
        # real input: 0 for x >= 0, pi for x < 0, NaN stays NaN
        return xp.where(x < 0, math.pi, 0).astype(x.dtype) + x * 0

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        if not _is_complex(x):
            return grad * 0
        # d angle = Im(dz / z): the gradient is i z / |z|^2 times grad (0 at z == 0)
        a2 = real_any(x * conj_any(x))
        safe = a2 + (a2 == 0)
        return grad * 1j * x / safe * (a2 != 0)


# ---- public functions -----------------------------------------------------------------------
def is_complex(input: Tensor) -> bool:
    return input._data.dtype.kind == "c"


def conj(input: Tensor) -> Tensor:
    """The complex conjugate (materialised: ember has no lazy conjugate bit)."""
    return Conj.apply(input) if _is_complex(input) else input


def conj_physical(input: Tensor) -> Tensor:
    """The complex conjugate of each element (a copy; ember has no lazy conjugate bit). For
    real tensors, a copy.
    """
    return Conj.apply(input) if _is_complex(input) else input.clone()


def resolve_conj(input: Tensor) -> Tensor:
    """``input`` itself: ember conjugates eagerly, so there is no conjugate bit to resolve."""
    return input


def resolve_neg(input: Tensor) -> Tensor:
    """``input`` itself: ember has no lazy negative bit to resolve."""
    return input


def is_conj(input: Tensor) -> bool:
    """Always False: ember has no lazy conjugate bit (:meth:`Tensor.conj` computes)."""
    return False


def is_neg(input: Tensor) -> bool:
    """Always False: ember has no lazy negative bit."""
    return False


def real(input: Tensor) -> Tensor:
    """The real part of a complex tensor (``input`` itself for a real one)."""
    return Real.apply(input) if _is_complex(input) else input


def imag(input: Tensor) -> Tensor:
    """The imaginary part of a complex tensor.

    Raises:
        RuntimeError: ``input`` is not complex.
    """
    if not _is_complex(input):
        raise RuntimeError("imag is not implemented for tensors with non-complex dtypes.")
    return Imag.apply(input)


@torch_function_dispatch()
def view_as_real(input: Tensor) -> Tensor:
    """A complex tensor of shape ``(*)`` as a real tensor of shape ``(*, 2)`` holding the real
    and imaginary parts.
    """
    if not _is_complex(input):
        raise RuntimeError("view_as_real is only supported for complex tensors")
    return ViewAsReal.apply(input)


@torch_function_dispatch()
def view_as_complex(input: Tensor) -> Tensor:
    """A real tensor of shape ``(*, 2)`` as a complex tensor of shape ``(*)``, the last dimension
    holding the real and imaginary parts.
    """
    d = input._data
    if d.dtype.name not in ("float32", "float64", "float16"):
        raise RuntimeError(
            "view_as_complex is only supported for float and double tensors, "
            f"but got a tensor of scalar type: {scalar_type_name(input)}"
        )
    if d.ndim == 0 or d.shape[-1] != 2:
        raise RuntimeError("Tensor must have a last dimension of size 2")
    if d.strides[-1] != d.itemsize:
        raise RuntimeError("Tensor must have a last dimension with stride 1")
    return ViewAsComplex.apply(input)


def angle(input: Tensor) -> Tensor:
    """The argument (phase) of each element in radians, atan2(imag, real); for real input, 0 or pi
    by sign.
    """
    if input._data.dtype.kind in "biu":
        input = input.to(get_default_dtype())
    return Angle.apply(input)


def _check_float_pair(name, a, b):
    for t in (a, b):
        if t._data.dtype.name not in ("float32", "float64", "float16"):
            raise RuntimeError(
                f"Expected both inputs to be Half, Float or Double tensors but "
                f"got {scalar_type_name(a)} and {scalar_type_name(b)}"
            )
    if a._data.dtype != b._data.dtype:
        raise RuntimeError(
            f"Expected object of scalar type {scalar_type_name(a)} but got "
            f"scalar type {scalar_type_name(b)} for second argument"
        )


def complex(real: Tensor, imag: Tensor) -> Tensor:  # noqa: A001 - torch.complex
    """The complex tensor ``real + i * imag``, from two float32 or two float64 tensors of the same
    dtype.
    """
    _check_float_pair("complex", real, imag)
    return Complex.apply(real, imag)


@torch_function_dispatch(2)
def polar(abs: Tensor, angle: Tensor) -> Tensor:  # noqa: A002 - PyTorch's argument names
    """The complex tensor ``abs * (cos(angle) + i sin(angle))`` from magnitudes and phases."""
    _check_float_pair("polar", abs, angle)
    return Complex.apply(abs * angle.cos(), abs * angle.sin())


def _real_setter(self, value):
    from .inplace import copy_

    copy_(real(self), value)


def _imag_setter(self, value):
    from .inplace import copy_

    copy_(imag(self), value)


# ``x.real`` / ``x.imag`` (views, assignable as in PyTorch); ``x.mH`` / ``x.H`` adjoints
real_property = property(real, _real_setter)
imag_property = property(imag, _imag_setter)


def adjoint(input: Tensor) -> Tensor:
    """The conjugate transpose of the last two dims."""
    if input._data.ndim < 2:
        raise RuntimeError(
            "tensor.adjoint() is only supported on matrices or batches of "
            f"matrices. Got {input._data.ndim}-D tensor."
        )
    return conj(input.transpose(-2, -1))


def _mH(self):
    if self._data.ndim < 2:
        raise RuntimeError(
            "tensor.mH is only supported on matrices or batches of matrices. "
            f"Got {self._data.ndim}-D tensor."
        )
    return adjoint(self)


def _H(self):
    if self._data.ndim != 2 and self._data.ndim != 0:
        raise RuntimeError(
            f"tensor.H is only supported on matrices (2-D tensors). Got {self._data.ndim}-D tensor."
        )
    return conj(self.transpose(0, 1)) if self._data.ndim == 2 else self


mH_property = property(_mH)
H_property = property(_H)

__all__ = [
    "adjoint",
    "angle",
    "complex",
    "conj",
    "conj_physical",
    "imag",
    "is_conj",
    "is_neg",
    "polar",
    "real",
    "resolve_conj",
    "resolve_neg",
    "view_as_complex",
    "view_as_real",
    "is_complex",
]
