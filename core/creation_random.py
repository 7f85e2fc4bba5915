"""The random factories (``rand``, ``randn``, ``randint``, ``randperm``, their ``_like`` forms,
``normal``, ``bernoulli``, ``multinomial``): draws from ember's generators (``ember.random``)
as NumPy or CuPy arrays. Re-exported by :mod:`ember.creation`, which holds the deterministic
factories and the helpers both use."""

from __future__ import annotations

import math

import numpy as np

from . import _factory_kwargs
from .backend.device import CPU, default_device, get_array_module
from .backend.dtype import get_default_dtype, int64, to_dtype
from .creation import _size
from .random import gen_for, torch_stream
from .tensor import Tensor

_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)


def _shape_arg(size, size_kw) -> tuple:
    """:func:`ember.creation._size` for the common spellings (``rand(2, 3)``, ``rand((2, 3))``),
    without its generic checks; anything else goes through it."""
    if size_kw is None:
        dims = size[0] if len(size) == 1 and type(size[0]) in (tuple, list) else size
        for s in dims:
            if type(s) is not int or s < 0:
                return _size(size, size_kw)
        return tuple(dims)
    return _size(size, size_kw)


def _rand_make(
    draw,
    size,
    dtype,
    device,
    requires_grad,
    generator,
    size_kw=None,
    layout=None,
    pin=False,
    name="rand",
):
    dev = device or default_device()
    xp = np if dev is CPU else get_array_module(dev)
    d = to_dtype(dtype) if dtype is not None else get_default_dtype()
    g = gen_for(generator, xp)
    dnp = d.np
    if dnp.kind == "c":  # torch fills the real view (..., 2): its own stream's numbers
        return _complex_draw(draw, g, xp, d, _size(size, size_kw), generator, requires_grad, name)
    # float32 or float64 draws; other float types are drawn in float32 and rounded, as torch's
    draw_dtype = _F64 if dnp == _F64 else _F32
    if name == "randn" and dnp.itemsize == 2 and xp is np:
        draw_dtype = dnp  # torch's half normal_ draws its uniforms block by block
    arr = draw(g, _shape_arg(size, size_kw), draw_dtype)
    if arr.dtype != dnp:
        arr = arr.astype(dnp)
    t = Tensor._wrap(arr)
    if layout is not None or pin:  # PyTorch's factory keywords (core/_factory_kwargs.py)
        t = _factory_kwargs.apply(t, layout, pin, name)
    return t.requires_grad_(True) if requires_grad else t


def _complex_draw(draw, g, xp, d, shape, generator, requires_grad, name) -> Tensor:
    """``rand`` / ``randn`` of a complex dtype: torch draws the real and imaginary parts as
    consecutive numbers of the real view, and ``randn`` is ``normal_(0, 1/sqrt(2))`` on it
    (unit variance in all)."""
    comp = np.float64 if d.np == np.complex128 else np.float32
    full = (*shape, 2)
    stream = torch_stream(generator, xp)
    if name == "randn" and stream is not None:
        # torch scales by 1 / sqrt(2), one ulp below 0.5**0.5 in float64
        arr = stream.normal_fill(full, comp, 0.0, 1 / math.sqrt(2))
    elif name == "randn":
        arr = g.standard_normal(full, dtype=comp) * comp(1 / math.sqrt(2))
    else:
        arr = draw(g, full, comp)
    arr = xp.ascontiguousarray(arr.astype(comp, copy=False)).view(d.np)[..., 0]
    t = Tensor._wrap(arr)
    return t.requires_grad_(True) if requires_grad else t


def rand(
    *sizes,
    size=None,
    generator=None,
    dtype=None,
    device=None,
    requires_grad=False,
    layout=None,
    pin_memory=False,
) -> Tensor:
    """Uniform on [0, 1); the shape as integers, one sequence, or ``size=``."""
    return _rand_make(
        lambda g, s, dt: g.random(s, dtype=dt),
        sizes,
        dtype,
        device,
        requires_grad,
        generator,
        size,
        layout,
        pin_memory,
        "rand",
    )


def randn(
    *sizes,
    size=None,
    generator=None,
    dtype=None,
    device=None,
    requires_grad=False,
    layout=None,
    pin_memory=False,
) -> Tensor:
    """Standard normal; the shape as integers, one sequence, or ``size=``."""
    return _rand_make(
        lambda g, s, dt: g.standard_normal(s, dtype=dt),
        sizes,
        dtype,
        device,
        requires_grad,
        generator,
        size,
        layout,
        pin_memory,
        "randn",
    )


def randint(
    low=None,
    high=None,
    size=None,
    *,
    generator=None,
    dtype=None,
    device=None,
    requires_grad=False,
    layout=None,
    pin_memory=False,
) -> Tensor:
    """Integers drawn uniformly from ``[low, high)``.

    ``randint(high, size)`` draws from ``[0, high)``. The same seed gives PyTorch's numbers
    (``core/_mt_stream.py``).

    Args:
        low: the lowest value (or ``high`` when ``high`` is omitted).
        high: one above the highest value.
        size: the shape (a sequence).
        generator: the generator to draw from (default: the default generator).
        dtype: the dtype (default ``int64``).
        device: where the tensor is created.
        requires_grad: whether autograd records operations on the result.
    """
    if size is None and isinstance(high, (tuple, list)):  # randint(high, size), torch's overload
        low, high, size = 0, low, high
    if low is None:  # randint(high=n, size=...) (pykeen's negative sampler)
        low = 0
    elif high is None:
        low, high = 0, low
    if size is None:
        raise TypeError("randint() missing required argument 'size'")
    return _rand_make(
        lambda g, s, dt: g.integers(low, high, s),
        tuple(size),
        dtype or int64,
        device,
        requires_grad,
        generator,
        layout=layout,
        pin=pin_memory,
        name="randint",
    )


def randperm(
    n,
    *,
    generator=None,
    dtype=None,
    device=None,
    requires_grad=False,
    layout=None,
    pin_memory=False,
) -> Tensor:
    """A random permutation of the integers ``0 .. n - 1``; the same seed gives PyTorch's
    permutation (``core/_mt_stream.py``).

    Args:
        n: the number of integers.
        generator: the generator to draw from.
        dtype: the dtype (default ``int64``).
        device: where the tensor is created.
        requires_grad: whether autograd records operations on the result.
    """
    n = n.__index__() if isinstance(n, Tensor) else n  # torch takes a 0-dim integer tensor
    return _rand_make(
        lambda g, s, dt: g.permutation(n),
        (),
        dtype or int64,
        device,
        requires_grad,
        generator,
        layout=layout,
        pin=pin_memory,
        name="randperm",
    )


def rand_like(
    input,
    *,
    generator=None,
    dtype=None,
    device=None,
    requires_grad=False,
    layout=None,
    pin_memory=False,
    memory_format=None,
):
    """Uniform samples in ``[0, 1)`` with the shape of ``input`` (its dtype and device unless
    given); see :func:`ember.rand`. ``memory_format`` is accepted for PyTorch's signature
    (ember tensors are always contiguous).
    """
    return rand(
        input._data.shape,
        generator=generator,
        dtype=dtype or input.dtype,
        device=device or input.device,
        requires_grad=requires_grad,
        layout=layout,
        pin_memory=pin_memory,
    )


def randn_like(
    input,
    *,
    generator=None,
    dtype=None,
    device=None,
    requires_grad=False,
    layout=None,
    pin_memory=False,
    memory_format=None,
):
    """Standard normal samples with the shape of ``input`` (its dtype and device unless given);
    see :func:`ember.randn`. ``memory_format`` is accepted for PyTorch's signature.
    """
    return randn(
        input._data.shape,
        generator=generator,
        dtype=dtype or input.dtype,
        device=device or input.device,
        requires_grad=requires_grad,
        layout=layout,
        pin_memory=pin_memory,
    )


def randint_like(
    input,
    low=0,
    high=None,
    *,
    generator=None,
    dtype=None,
    device=None,
    requires_grad=False,
    layout=None,
    pin_memory=False,
    memory_format=None,
):
    """Integers from ``[low, high)`` (``[0, low)`` when ``high`` is omitted) with the shape of
    ``input`` (its dtype and device unless given); see :func:`randint`. As in PyTorch,
    ``randint_like(p, high=2)`` draws from ``[0, 2)`` (AdaHessian's Rademacher vectors);
    ``memory_format`` is accepted for PyTorch's signature.
    """
    if high is None:
        low, high = 0, low
    return randint(
        low,
        high,
        input._data.shape,
        generator=generator,
        dtype=dtype or input.dtype,
        device=device or input.device,
        requires_grad=requires_grad,
        layout=layout,
        pin_memory=pin_memory,
    )


def normal(
    mean=0.0, std=1.0, size=None, *, generator=None, dtype=None, device=None, requires_grad=False
) -> Tensor:
    """Normal samples; ``mean``/``std`` may be tensors (broadcast) or floats with ``size``."""
    if isinstance(mean, Tensor) or isinstance(std, Tensor):
        return _normal_tensors(mean, std, generator)
    if size is None:
        raise TypeError("normal() with float mean and std needs a size")
    xp = get_array_module(device or default_device())
    d = to_dtype(dtype) if dtype is not None else get_default_dtype()
    stream = torch_stream(generator, xp)
    if stream is not None and d.np.kind == "f":  # torch: empty(size).normal_(mean, std)
        draw_dt = np.float64 if d.np == np.float64 else np.float32
        out = Tensor._wrap(stream.normal_fill(tuple(size), draw_dt, mean, std).astype(d.np))
    else:
        z = randn(tuple(size), generator=generator, dtype=dtype, device=device)
        out = Tensor._wrap((z._data * std + mean).astype(z._data.dtype, copy=False))
    return out.requires_grad_(True) if requires_grad else out


def _normal_tensors(mean, std, generator) -> Tensor:
    """torch's ``normal`` with a tensor mean or std: ``normal_(0, std)`` then ``+ mean`` for a
    float std, else ``normal_(0, 1)`` then ``* std + mean``, in the mean's dtype (the std's
    when the mean is a float), each step rounded in that dtype."""
    ref = mean if isinstance(mean, Tensor) else std
    m = mean._data if isinstance(mean, Tensor) else mean
    s = std._data if isinstance(std, Tensor) else std
    if isinstance(std, Tensor) and bool((std._data < 0).any()):
        raise RuntimeError("normal expects all elements of std >= 0.0")
    shape = np.broadcast_shapes(np.shape(m), np.shape(s))
    dt = ref._data.dtype
    xp = get_array_module(ref._data)
    stream = torch_stream(generator, xp)
    scale = float(s) if not isinstance(std, Tensor) else 1.0
    draw_dt = np.float64 if dt == np.float64 else np.float32
    if stream is not None and dt.kind == "f":
        z = stream.normal_fill(shape, draw_dt, 0.0, scale).astype(dt)
    else:
        z = gen_for(generator, xp).standard_normal(shape, dtype=draw_dt).astype(dt) * scale
    if isinstance(std, Tensor):
        z = z * s.astype(dt, copy=False)
    z = (z + (m.astype(dt, copy=False) if isinstance(mean, Tensor) else dt.type(m))).astype(dt)
    return Tensor._wrap(z)


def bernoulli(input, p=None, *, generator=None) -> Tensor:
    """Draw 0 or 1 for each element, 1 with the probability that element gives.

    Args:
        input (Tensor): the probabilities, in [0, 1].
        p: a probability to use for every element instead of ``input``'s values.
        generator: the generator to draw from.

    Returns:
        A tensor of the dtype and shape of ``input``.
    """
    xp = get_array_module(input._data)
    stream = torch_stream(generator, xp)
    if stream is not None:  # torch's draws: one uniform of p's dtype per element, or float64
        if p is None:
            hits = stream.bernoulli_tensor(input._data)
        else:
            hits = stream.bernoulli_scalar(input._data.shape, float(p))
        return Tensor._wrap(hits.astype(input._data.dtype))
    probs = input._data if p is None else p
    u = gen_for(generator, xp).random(input._data.shape)
    return Tensor._wrap((u < probs).astype(input._data.dtype))


def multinomial(input, num_samples, replacement=False, *, generator=None) -> Tensor:
    """Draw category indices from (unnormalised) probability rows."""
    probs = np.asarray(input.detach().cpu()._data, dtype=np.float64)
    if probs.ndim not in (1, 2):
        raise RuntimeError("prob_dist must be 1 or 2 dim")
    if (probs < 0).any() or not np.isfinite(probs).all():
        raise RuntimeError("probability tensor contains either `inf`, `nan` or element < 0")
    rows = probs.reshape(-1, probs.shape[-1])
    if num_samples <= 0:
        raise RuntimeError("cannot sample n_sample <= 0 samples")
    if not replacement and num_samples > rows.shape[1]:
        raise RuntimeError(
            "cannot sample n_sample > prob_dist.size(-1) samples without replacement"
        )
    if (rows.sum(axis=1) <= 0).any():
        raise RuntimeError("invalid multinomial distribution (sum of probabilities <= 0)")
    # torch's draws (core/_mt_stream.py), from the weights in their own dtype
    dt = input._data.dtype if input._data.dtype in (np.float32, np.float64) else np.float32
    weights = np.asarray(input.detach().cpu()._data, dtype=dt).reshape(rows.shape)
    out = gen_for(generator, np).multinomial(weights, num_samples, replacement)
    return Tensor._wrap(out.reshape(probs.shape[:-1] + (num_samples,))).to(input.device)
