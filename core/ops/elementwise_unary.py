"""Elementwise unary math (exp, log, sqrt, trigonometry, tanh, sigmoid, relu, abs): one Function
per op, forward and backward side by side, plus the helpers the elementwise families share.
"""

from __future__ import annotations

import numpy as np

from ..autograd import function as _fn
from ..autograd.function import Function
from ..backend.dtype import get_default_dtype
from ..tensor import Tensor
from ._docs import unary_doc
from ._kernel_split import split_call
from .act_kernels import compiled, flat_compiled, sigmoid_grad
from .convert import nhwc_elementwise, to_dtype_op


# ---- complex gradients (PyTorch's convention: grad * conj(d out / d in)) ---------------------
def _cplx(grad) -> bool:
    return getattr(grad, "_data", grad).dtype.kind == "c"


def _cj(x):
    """The conjugate of a saved operand (array, tensor or Python number) or None."""
    if x is None:
        return None
    return x.conj() if hasattr(x, "conj") else x.conjugate()


# ---- unary math ---------------------------------------------------------------------------
class Exp(Function):
    @staticmethod
    def forward(ctx, x):
        out = ctx.xp.exp(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        return grad * (_cj(out) if _cplx(grad) else out)


class Log(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return ctx.xp.log(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad / (_cj(x) if _cplx(grad) else x)


class Log1p(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return ctx.xp.log1p(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad / (x + 1)


class Expm1(Function):
    @staticmethod
    def forward(ctx, x):
        out = ctx.xp.expm1(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        return grad * (out + 1)


class Sqrt(Function):
    @staticmethod
    def forward(ctx, x):
        out = ctx.xp.sqrt(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        return grad / (2 * (_cj(out) if _cplx(grad) else out))


class Rsqrt(Function):
    @staticmethod
    def forward(ctx, x):
        out = 1 / ctx.xp.sqrt(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        return grad * -0.5 * out * out * out


class Sin(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return ctx.xp.sin(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * ctx.xp.cos(_cj(x) if _cplx(grad) else x)


class Cos(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return ctx.xp.cos(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return -grad * ctx.xp.sin(_cj(x) if _cplx(grad) else x)


class Tanh(Function):
    @staticmethod
    def forward(ctx, x):
        out = ctx.xp.tanh(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        out = _cj(out) if _cplx(grad) else out
        return grad * (1 - out * out)


# below this many elements NumPy's passes cost less than a compiled call's set-up
_COMPILED_MIN = 1024


class Sigmoid(Function):
    @staticmethod
    def forward(ctx, x):
        # 1 / (1 + exp(-x)), as PyTorch: exact to the last bits in the negative tail
        # (sigmoid(-34) = 1.9e-15; (1 + tanh(x/2)) / 2 cancels to 0 there, and
        # x-transformers' / diffusion schedules' sqrt(sigmoid(log_snr)) then divide by it);
        # exp(-x) = inf gives 0 with no branch
        kern = compiled(ctx.xp, x) if x.size >= _COMPILED_MIN else None
        if kern is not None:  # one pass, the vectorised exp of the compiled activations
            out = flat_compiled(kern, "sigmoid", x, False)[0]
        else:
            out = ctx.xp.exp(-x)
            out += 1
            out = ctx.xp.reciprocal(out, out=out) if out.ndim else 1 / out  # 0-d: NumPy scalar
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        # (double backward hands Tensors here: they take the expression below)
        fast = type(out) is np.ndarray and out.size >= _COMPILED_MIN
        kern = compiled(ctx.xp, out) if fast else None
        res = sigmoid_grad(kern, grad, out) if kern is not None else None
        return res if res is not None else grad * out * (1 - out)


_SAME_SIZE_INT = {2: np.int16, 4: np.int32, 8: np.int64}  # Relu.backward's select
_RELU_COMPILED_MIN = 1 << 14  # (below it NumPy's passes are as fast as a kernel call)
# Relu saves its live mask, not its float output, on the compiled path (False: the output, as
# before session 25; an A/B switch for measuring)
RELU_LIVE_MASK = True


def _relu_kernels(xp, x):
    """``_numba_act`` for a C-contiguous float32/float64 NumPy array of ``_RELU_COMPILED_MIN``
    elements or more (other layouts keep NumPy's, which keeps channels_last), else None."""
    if type(x) is not np.ndarray or x.size < _RELU_COMPILED_MIN or not x.flags.c_contiguous:
        return None
    return compiled(xp, x)


class Relu(Function):
    """ReLU; backward reads only which outputs are live (``> 0`` or NaN). A large compiled ReLU
    whose gradient is wanted saves that as a byte mask (``_numba_act.relu_forward_live``), not
    its float output: the output usually dies with the next op (a max pool keeps its argmax
    offsets, not its input), and the mask is a quarter of its size (the cnn workload's first
    ReLU: 6.1 -> 1.5 MiB alive through the backward of everything above it). :func:`relu`
    keeps PyTorch's check that the output was not modified in place before backward."""

    @staticmethod
    def forward(ctx, x):
        kern = _relu_kernels(ctx.xp, x)
        if kern is not None:  # NumPy's maximum runs ~4 ns an element here (torch's ~1.3)
            out = np.empty_like(x)
            xf, of = x.reshape(-1), out.reshape(-1)
            if (
                RELU_LIVE_MASK
                and getattr(ctx, "needs_input_grad", (False,))[0]
                and not _fn._extras[0]
            ):
                # (not under saved-tensor hooks, anomaly mode: they see the float output)
                live = np.empty(x.shape, dtype=bool)
                lf = live.reshape(-1)
                split_call(
                    kern.relu_forward_live,
                    xf.size,
                    1,
                    lambda lo, hi: (xf[lo:hi], of[lo:hi], lf[lo:hi]),
                )
                ctx.save_for_backward(live)
                return out
            split_call(kern.relu_forward, xf.size, 1, lambda lo, hi: (xf[lo:hi], of[lo:hi]))
        else:
            out = ctx.xp.maximum(x, 0)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        if getattr(ctx._saved[0], "dtype", None) == np.bool_:  # the live mask (compiled forward)
            return _relu_backward_live(ctx, out, grad)
        # a select, not a product: a negative gradient at a dead unit is 0., not -0. (torch);
        # torch's rule is threshold_backward's ``out <= 0 ? 0 : grad``, so a NaN output (a NaN
        # input) passes its gradient through, as +inf does
        kern = _relu_kernels(ctx.xp, out)
        if (
            kern is not None
            and type(grad) is np.ndarray
            and grad.dtype == out.dtype
            and grad.shape == out.shape
            and grad.flags.c_contiguous
        ):  # the select in one compiled pass (three NumPy passes below)
            res = np.empty_like(grad)
            of, gf, rf = out.reshape(-1), grad.reshape(-1), res.reshape(-1)
            split_call(
                kern.relu_backward, of.size, 1, lambda lo, hi: (of[lo:hi], gf[lo:hi], rf[lo:hi])
            )
            return res
        it = None
        if type(grad).__module__ == "numpy" and grad.dtype.kind == "f":  # not CuPy, a Tensor
            it = _SAME_SIZE_INT.get(grad.dtype.itemsize)
        if it is None or grad.shape != out.shape or not out.ndim:  # (0-d: NumPy scalars)
            return ctx.xp.where(out <= 0, 0, grad)
        # the same select as a bitwise AND with an all-ones / all-zeros mask (-1 / 0): NumPy's
        # where branches per element and mispredicts on ReLU's random pattern (1 M float32:
        # 1.15 ms -> 0.13 ms here; bit for bit where's, NaN / inf / -0. gradients included);
        # (out <= 0) - 1 is 0 where the unit is dead and -1 (all ones) elsewhere, NaN included
        dead = out <= 0
        if grad.flags.c_contiguous and not dead.flags.c_contiguous:
            # a channels_last output meets a row-major gradient (ember's backward kernels):
            # the bool mask goes row-major first, a byte per element, so the wide passes
            # below run in one layout (32 x 32 x 32^2 float32: 2.04 -> 0.75 ms)
            dead = np.ascontiguousarray(dead)
        mask = np.subtract(dead.view(np.int8), 1, dtype=it)
        # into the mask: one full-size temporary fewer at the peak of a CNN's backward (h4)
        return np.bitwise_and(grad.view(it), mask, out=mask).view(grad.dtype)


class Abs(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return ctx.xp.abs(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        if _cplx(x):  # x / |x| (0 at 0), spelled so that double backward sees x in it
            a = ctx.xp.abs(x)
            return grad * x / ctx.xp.where(a == 0, 1, a) * (a != 0)
        return grad * ctx.xp.sign(x)


# ---- public functions ---------------------------------------------------------------------
def _floatify(x):
    """Math on integer tensors happens in the default float dtype, as in PyTorch."""
    if isinstance(x, Tensor) and x._data.dtype.kind not in "fcV":
        if x.is_quantized:  # its op decides (ember._quantized_ops): not a cast of the codes
            return x
        return to_dtype_op(x, get_default_dtype())
    return x


def _unary(cls, summary: str):
    def op(input):
        return cls.apply(_floatify(input))

    op.__name__ = cls.__name__.lower()
    op.__doc__ = unary_doc(summary)
    return op


exp = _unary(Exp, "The exponential e^x of each element.")


log = _unary(Log, "The natural logarithm ln(x) of each element (NaN below 0, -inf at 0).")


log1p = _unary(Log1p, "ln(1 + x) of each element, accurate for small x.")


expm1 = _unary(Expm1, "e^x - 1 of each element, accurate for small x.")


sqrt = _unary(Sqrt, "The square root of each element (NaN below 0).")


rsqrt = _unary(Rsqrt, "The reciprocal square root 1 / sqrt(x) of each element.")


sin = _unary(Sin, "The sine of each element (radians).")


cos = _unary(Cos, "The cosine of each element (radians).")


tanh = _unary(Tanh, "The hyperbolic tangent of each element.")


def sigmoid(input):
    # channels_last in, channels_last out (torch's): its compiled kernel reads row-major
    return nhwc_elementwise(Sigmoid.apply, _floatify(input))


sigmoid.__doc__ = unary_doc("The logistic sigmoid 1 / (1 + e^-x) of each element.")


def _relu_backward_live(ctx, live, grad):
    """ReLU's backward from its live mask: ``grad`` where live, else 0, bitwise
    ``where(out <= 0, 0, grad)``."""
    if ctx._tensor_mode:  # double backward: tensors
        return ctx.xp.where(live, grad, 0)
    kern = _relu_kernels(ctx.xp, grad)
    if (
        kern is not None
        and grad.dtype.kind == "f"
        and grad.shape == live.shape
        and grad.flags.c_contiguous
    ):
        res = np.empty_like(grad)
        lf, gf, rf = live.reshape(-1), grad.reshape(-1), res.reshape(-1)
        split_call(
            kern.relu_backward_live, gf.size, 1, lambda lo, hi: (lf[lo:hi], gf[lo:hi], rf[lo:hi])
        )
        return res
    it = _SAME_SIZE_INT.get(grad.dtype.itemsize) if type(grad) is np.ndarray else None
    if it is None or grad.dtype.kind != "f" or grad.shape != live.shape:
        return np.where(live, grad, 0)
    # the select as a bitwise AND with an all-ones / all-zeros mask, as Relu.backward does
    mask = np.negative(np.ascontiguousarray(live).view(np.int8), dtype=it)
    return np.bitwise_and(grad.view(it), mask, out=mask).view(grad.dtype)


def relu(input):
    """``max(input, 0)`` elementwise; see :class:`ember.nn.ReLU`."""
    out = Relu.apply(input)
    node = out.grad_fn
    if type(node) is Relu and node._versions is None and node._saved:
        # the node saved its live mask: the mask stands for the output, so an in-place change
        # of the output before backward is the error it is for PyTorch (which saves the output)
        counter = out._version_counter
        node._versions = [(counter, counter[0], 0)]
    return out


def abs(input):
    """The absolute value of each element (the magnitude for complex input, a real tensor)."""
    return Abs.apply(input)
