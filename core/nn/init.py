"""``nn.init``: in-place initialisers with PyTorch's names, formulas and error messages.

Every function runs without recording a graph and returns the tensor it filled. Random draws
come from ember's generator (``generator=`` or the default one) and make PyTorch's draws: after
the same ``manual_seed`` a model is initialised with torch's weights (bit for bit for uniform
initialisers, to float32 rounding for normal ones; ``core/_mt_stream.py``).
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from ..autograd.grad_mode import no_grad
from ..creation import empty
from ..random import gen_for
from ..tensor import Tensor

__all__ = [
    "calculate_gain",
    "uniform_",
    "normal_",
    "trunc_normal_",
    "constant_",
    "ones_",
    "zeros_",
    "eye_",
    "dirac_",
    "xavier_uniform_",
    "xavier_normal_",
    "kaiming_uniform_",
    "kaiming_normal_",
    "orthogonal_",
    "sparse_",
]


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    r"""The recommended gain for a nonlinearity (PyTorch's table).

    ============ ==========================================
    linear/conv  :math:`1`
    sigmoid      :math:`1`
    tanh         :math:`\frac{5}{3}`
    relu         :math:`\sqrt{2}`
    leaky_relu   :math:`\sqrt{\frac{2}{1 + \text{negative\_slope}^2}}`
    selu         :math:`\frac{3}{4}`
    ============ ==========================================
    """
    linear_fns = [
        "linear",
        "conv1d",
        "conv2d",
        "conv3d",
        "conv_transpose1d",
        "conv_transpose2d",
        "conv_transpose3d",
    ]
    if nonlinearity in linear_fns or nonlinearity == "sigmoid":
        return 1
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            negative_slope = 0.01
        elif not isinstance(param, bool) and isinstance(param, (int, float)):
            negative_slope = param
        else:
            raise ValueError(f"negative_slope {param} not a valid number")
        return math.sqrt(2.0 / (1 + negative_slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"Unsupported nonlinearity {nonlinearity}")


def _shape(tensor: Tensor) -> tuple:
    """The shape ``nn.init`` sees: a DTensor parameter (FSDP2, tensor parallel) holds this
    rank's piece, and its fans, bounds and draws are those of the whole tensor, as torch's
    DTensor parameters report their global shape."""
    shape = getattr(tensor, "_global_shape", None)
    return tuple(tensor.shape) if shape is None else tuple(shape)


def _is_piece(tensor: Tensor) -> bool:
    return getattr(tensor, "_global_shape", None) is not None and hasattr(tensor, "_piece_of")


def _calculate_fan_in_and_fan_out(tensor: Tensor) -> tuple[int, int]:
    dims = tensor.dim()
    if dims < 2:
        raise ValueError(
            "Fan in and fan out can not be computed for tensor with fewer than 2 dimensions"
        )
    shape = _shape(tensor)
    receptive_field_size = 1
    for s in shape[2:]:
        receptive_field_size *= s
    return shape[1] * receptive_field_size, shape[0] * receptive_field_size


def _calculate_correct_fan(tensor: Tensor, mode: str) -> int:
    mode = mode.lower()
    valid_modes = ["fan_in", "fan_out"]
    if mode not in valid_modes:
        raise ValueError(f"Mode {mode} not supported, please use one of {valid_modes}")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return fan_in if mode == "fan_in" else fan_out


def uniform_(tensor: Tensor, a: float = 0.0, b: float = 1.0, generator=None) -> Tensor:
    r"""Fill with values drawn from :math:`\mathcal{U}(a, b)`."""
    with no_grad():
        if _is_piece(tensor) and not tensor.is_meta:
            return _fill_piece(tensor, _whole(tensor).uniform_(a, b, generator=generator))
        return tensor.uniform_(a, b, generator=generator)


def normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0, generator=None) -> Tensor:
    r"""Fill with values drawn from :math:`\mathcal{N}(\text{mean}, \text{std}^2)`."""
    with no_grad():
        if _is_piece(tensor) and not tensor.is_meta:
            return _fill_piece(tensor, _whole(tensor).normal_(mean, std, generator=generator))
        return tensor.normal_(mean, std, generator=generator)


# A DTensor parameter's draw: the whole tensor on every rank (the same numbers everywhere for
# the same seed), then this rank keeps its piece. So the shards are independent draws that
# together equal the unsharded init (torch's DTensor RNG tracker gives that on CUDA), and every
# rank's generator stays in step. Costs one full-size temporary per parameter.
def _whole(tensor: Tensor) -> Tensor:
    return empty(_shape(tensor), dtype=tensor.dtype, device=tensor.device)


def _fill_piece(tensor: Tensor, whole: Tensor) -> Tensor:
    return tensor.copy_(tensor._piece_of(whole))


def _copy_from_host(tensor: Tensor, values: np.ndarray) -> Tensor:
    with no_grad():
        src = Tensor._wrap(values.astype(tensor._data.dtype, copy=False))
        if _is_piece(tensor):
            return _fill_piece(tensor, src)
        return tensor.copy_(src)


def trunc_normal_(
    tensor: Tensor,
    mean: float = 0.0,
    std: float = 1.0,
    a: float = -2.0,
    b: float = 2.0,
    generator=None,
) -> Tensor:
    r"""Fill with a normal distribution truncated to :math:`[a, b]`, by rejection as PyTorch
    2.13 does: redraw out-of-range normals while most of the mass is inside, else uniform
    candidates on :math:`[a, b]` accepted by the density ratio (the same draws as torch's)."""

    def norm_cdf(x):
        return (1.0 + math.erf(x / math.sqrt(2.0))) / 2.0

    if mean < a - 2 * std or mean > b + 2 * std:
        warnings.warn(
            "mean is more than 2 std from [a, b] in nn.init.trunc_normal_. "
            "The distribution of values may be incorrect.",
            stacklevel=2,
        )
    if tensor.is_meta:  # no values to draw (torch: a no-op on the meta device)
        return tensor
    shape = _shape(tensor)
    dt = tensor._data.dtype if tensor._data.dtype in (np.float32, np.float64) else np.float32
    st = gen_for(generator, np)
    f = dt.type  # torch's in-place steps round Python numbers to the tensor's dtype
    if norm_cdf((b - mean) / std) - norm_cdf((a - mean) / std) > 0.3:
        lo, hi = f(a), f(b)
        result = st.normal_fill(shape, dt, mean, std)
        while True:
            rejected = (result < lo) | (result > hi)
            if not rejected.any():
                break
            result = np.where(rejected, st.normal_fill(shape, dt, mean, std), result)
        return _copy_from_host(tensor, result)
    mode = max(a, min(mean, b))
    log_peak = -0.5 * ((mode - mean) / std) ** 2

    def log_ratio(x):  # log pdf(x) - log pdf(mode), in the tensor's dtype
        return ((x - f(mean)) / f(std)) ** 2 * f(-0.5) - f(log_peak)

    result = st.uniform_fill(shape, dt, a, b)
    pending = np.log(st.uniform_fill(shape, dt, 0.0, 1.0)) > log_ratio(result)
    while pending.any():
        candidates = st.uniform_fill(shape, dt, a, b)
        result = np.where(pending, candidates, result)
        accept = np.log(st.uniform_fill(shape, dt, 0.0, 1.0)) > log_ratio(candidates)
        pending = np.where(pending, accept, pending)
    return _copy_from_host(tensor, result)


def constant_(tensor: Tensor, val: float) -> Tensor:
    r"""Fill with the value ``val``."""
    with no_grad():
        return tensor.fill_(val)


def ones_(tensor: Tensor) -> Tensor:
    """Fill ``tensor`` with ones in place, without recording the operation for autograd.

    Args:
        tensor: the tensor to fill.

    Returns:
        ``tensor``.
    """
    return constant_(tensor, 1.0)


def zeros_(tensor: Tensor) -> Tensor:
    """Fill ``tensor`` with zeros in place, without recording the operation for autograd.

    Args:
        tensor: the tensor to fill.

    Returns:
        ``tensor``.
    """
    with no_grad():
        return tensor.zero_()


def eye_(tensor: Tensor) -> Tensor:
    r"""Fill a 2-D tensor with the identity matrix."""
    if tensor.ndimension() != 2:
        raise ValueError("Only tensors with 2 dimensions are supported")
    if tensor.is_meta:
        return tensor
    return _copy_from_host(tensor, np.eye(*_shape(tensor)))


def dirac_(tensor: Tensor, groups: int = 1) -> Tensor:
    r"""Fill a 3/4/5-D tensor with the Dirac delta (identity convolution), per group."""
    dimensions = tensor.ndimension()
    if dimensions not in [3, 4, 5]:
        raise ValueError("Only tensors with 3, 4, or 5 dimensions are supported")
    sizes = _shape(tensor)
    if sizes[0] % groups != 0:
        raise ValueError("dim 0 must be divisible by groups")
    if tensor.is_meta:
        return tensor
    out_chans_per_grp = sizes[0] // groups
    min_dim = min(out_chans_per_grp, sizes[1])
    values = np.zeros(tuple(sizes))
    centre = tuple(s // 2 for s in sizes[2:])
    for g in range(groups):
        for d in range(min_dim):
            values[(g * out_chans_per_grp + d, d) + centre] = 1
    return _copy_from_host(tensor, values)


def xavier_uniform_(tensor: Tensor, gain: float = 1.0, generator=None) -> Tensor:
    r"""Glorot uniform: :math:`\mathcal{U}(-a, a)`, :math:`a = \text{gain} \times
    \sqrt{6 / (\text{fan\_in} + \text{fan\_out})}`."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
    a = math.sqrt(3.0) * std
    return uniform_(tensor, -a, a, generator)


def xavier_normal_(tensor: Tensor, gain: float = 1.0, generator=None) -> Tensor:
    r"""Glorot normal: :math:`\mathcal{N}(0, \text{std}^2)`, :math:`\text{std} = \text{gain}
    \times \sqrt{2 / (\text{fan\_in} + \text{fan\_out})}`."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
    return normal_(tensor, 0.0, std, generator)


def kaiming_uniform_(
    tensor: Tensor,
    a: float = 0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    generator=None,
) -> Tensor:
    r"""He uniform: :math:`\mathcal{U}(-b, b)`, :math:`b = \text{gain} \times
    \sqrt{3 / \text{fan\_mode}}`."""
    if 0 in _shape(tensor):
        warnings.warn("Initializing zero-element tensors is a no-op", stacklevel=2)
        return tensor
    fan = _calculate_correct_fan(tensor, mode)
    gain = calculate_gain(nonlinearity, a)
    bound = math.sqrt(3.0) * gain / math.sqrt(fan)
    return uniform_(tensor, -bound, bound, generator)


def kaiming_normal_(
    tensor: Tensor,
    a: float = 0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    generator=None,
) -> Tensor:
    r"""He normal: :math:`\mathcal{N}(0, \text{std}^2)`, :math:`\text{std} = \text{gain} /
    \sqrt{\text{fan\_mode}}`."""
    if 0 in _shape(tensor):
        warnings.warn("Initializing zero-element tensors is a no-op", stacklevel=2)
        return tensor
    fan = _calculate_correct_fan(tensor, mode)
    std = calculate_gain(nonlinearity, a) / math.sqrt(fan)
    return normal_(tensor, 0.0, std, generator)


def orthogonal_(tensor: Tensor, gain: float = 1, generator=None) -> Tensor:
    r"""Fill with a (semi-)orthogonal matrix (QR of a Gaussian matrix, signs fixed so the
    distribution is uniform); trailing dims are flattened."""
    if tensor.ndimension() < 2:
        raise ValueError("Only tensors with 2 or more dimensions are supported")
    shape = _shape(tensor)
    if 0 in shape or tensor.is_meta:
        return tensor
    rows = shape[0]
    cols = math.prod(shape) // rows
    # torch draws normal_(0, 1) in the tensor's dtype and factors it in that dtype too
    dt = tensor._data.dtype if tensor._data.dtype in (np.float32, np.float64) else np.float32
    flattened = gen_for(generator, np).normal_fill((rows, cols), dt, 0.0, 1.0)
    if rows < cols:
        flattened = flattened.T
    q, r = np.linalg.qr(flattened)
    q = q * np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    return _copy_from_host(tensor, (q * gain).reshape(shape))


def sparse_(tensor: Tensor, sparsity: float, std: float = 0.01, generator=None) -> Tensor:
    r"""Fill a 2-D tensor as a sparse matrix: a ``sparsity`` fraction of each column is zero,
    the rest drawn from :math:`\mathcal{N}(0, \text{std}^2)`."""
    if tensor.ndimension() != 2:
        raise ValueError("Only tensors with 2 dimensions are supported")
    if tensor.is_meta:
        return tensor
    rows, cols = _shape(tensor)
    num_zeros = int(math.ceil(sparsity * rows))
    rng = gen_for(generator, np)
    values = rng.normal(0.0, std, size=(rows, cols))
    for col in range(cols):
        values[rng.permutation(rows)[:num_zeros], col] = 0
    return _copy_from_host(tensor, values)


# ---- deprecated spellings without the trailing underscore (PyTorch keeps them, warning) ------
def _make_deprecate(meth):
    new_name = meth.__name__
    old_name = new_name[:-1]

    def deprecated_init(*args, **kwargs):
        warnings.warn(
            f"`nn.init.{old_name}` is now deprecated in favor of `nn.init.{new_name}`.",
            FutureWarning,
            stacklevel=2,
        )
        return meth(*args, **kwargs)

    deprecated_init.__doc__ = (
        f"{old_name}(...)\n\n    .. warning:: deprecated in favor of "
        f":func:`ember.nn.init.{new_name}`."
    )
    deprecated_init.__name__ = old_name
    return deprecated_init


uniform = _make_deprecate(uniform_)
normal = _make_deprecate(normal_)
constant = _make_deprecate(constant_)
eye = _make_deprecate(eye_)
dirac = _make_deprecate(dirac_)
xavier_uniform = _make_deprecate(xavier_uniform_)
xavier_normal = _make_deprecate(xavier_normal_)
kaiming_uniform = _make_deprecate(kaiming_uniform_)
kaiming_normal = _make_deprecate(kaiming_normal_)
orthogonal = _make_deprecate(orthogonal_)
sparse = _make_deprecate(sparse_)
