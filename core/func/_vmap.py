"""``vmap``: vectorizing map (PyTorch's ``torch.func.vmap``) by batching rules.

``vmap(f)(xs)`` runs ``f`` once, on batched tensors (``_vmap_tensor.py``) whose ops go through
batching rules (``_vmap_rules.py``, ``_vmap_nn.py``): no Python loop over the samples. Levels
nest (``vmap(vmap(f))``) and compose with ``grad``/``vjp``/``jacrev``/``jacfwd``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from ..tensor import Tensor
from . import (
    _vmap_adv,
    _vmap_extra,
    _vmap_index,
    _vmap_matmul,
    _vmap_modules,
    _vmap_more,
    _vmap_nn,
    _vmap_random,
    _vmap_rules,
)
from ._pytree import tree_flatten, tree_unflatten
from ._vmap_dispatch import enter_level, exit_level, install_methods, patched
from ._vmap_tensor import levels_of, unwrapped, wrap

__all__ = ["vmap"]

_vmap_rules.install()
_vmap_index.install()
_vmap_matmul.install()
_vmap_nn.install()
_vmap_random.install()
_vmap_extra.install()
_vmap_modules.install()
_vmap_more.install()
_vmap_adv.install()
install_methods()

_RANDOMNESS = ("error", "different", "same")


def _flat_dims(dims: Any, tree: Any, what: str) -> list:
    """``dims`` (an int/None prefix of ``tree``'s structure) as one entry per leaf."""
    if dims is None or (isinstance(dims, int) and not isinstance(dims, bool)):
        return [dims] * len(tree_flatten(tree)[0])
    if (
        isinstance(dims, (tuple, list))
        and isinstance(tree, (tuple, list))
        and len(dims) == len(tree)
    ):
        return [d for sub, t in zip(dims, tree) for d in _flat_dims(sub, t, what)]
    if isinstance(dims, dict) and isinstance(tree, dict) and set(dims) == set(tree):
        return [d for key in tree for d in _flat_dims(dims[key], tree[key], what)]
    raise ValueError(
        f"vmap: {what}={dims!r} is not compatible with the structure of the "
        f"{'inputs' if what == 'in_dims' else 'outputs'} ({type(tree).__name__} "
        f"{_structure(tree)}); give an int, None, or a matching pytree prefix"
    )


def _structure(tree: Any) -> str:
    if isinstance(tree, (tuple, list)):
        return "(" + ", ".join(_structure(t) for t in tree) + ")"
    if isinstance(tree, dict):
        return "{" + ", ".join(f"{k!r}: {_structure(v)}" for k, v in tree.items()) + "}"
    return "*"


def _check_dims(dims: Any, what: str) -> None:
    if dims is None or (isinstance(dims, int) and not isinstance(dims, bool)):
        return
    if isinstance(dims, (tuple, list)):
        for d in dims:
            _check_dims(d, what)
        return
    if isinstance(dims, dict):
        for d in dims.values():
            _check_dims(d, what)
        return
    raise ValueError(
        f"vmap: expected {what} to be int or a (potentially nested) tuple matching "
        f"the structure of inputs, got: {type(dims)}."
    )


def vmap(
    func: Callable,
    in_dims: Any = 0,
    out_dims: Any = 0,
    randomness: str = "error",
    *,
    chunk_size: int | None = None,
) -> Callable:
    r"""Vectorizing map: ``vmap(func)`` maps ``func`` over a dim of its inputs.

    ``func`` is written for one sample; the returned function takes inputs with an extra
    (batch) dim and returns outputs with one, as if ``func`` were applied to each sample and the
    results stacked, but computed in one pass of batched ops (batching rules), not a loop.

    Args:
        func (Callable): a function of tensors (pytrees of tensors) returning tensors.
        in_dims (int, None or pytree): per input, the dim to map over; ``None`` passes that
            input to every sample unchanged. A tuple gives one entry per positional argument,
            each an int/None or a pytree matching that argument. Keyword arguments are never
            mapped. Default: 0.
        out_dims (int, None or pytree): where the mapped dim goes in each output. Default: 0.
        randomness (str): random ops inside ``func``: ``"error"`` (default) raises,
            ``"different"`` draws independently per sample, ``"same"`` draws once for all.
        chunk_size (int, optional): map at most this many samples per pass (memory against
            speed); ``None`` maps all at once.

    Returns:
        Callable: the batched function.

    Example::

        >>> x = ember.randn(8, 3)
        >>> ember.func.vmap(ember.dot, in_dims=(0, None))(x, ember.ones(3)).shape
        ember.Size([8])
    """
    if not callable(func):
        raise RuntimeError(f"vmap: func must be callable, got {type(func)}")
    if randomness not in _RANDOMNESS:
        raise RuntimeError(
            f"Only allowed values for randomness are 'error', 'different', or "
            f"'same'. Got {randomness}"
        )
    if chunk_size is not None and (
        isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size <= 0
    ):
        raise ValueError(f"vmap: chunk_size should be None or greater than 0. (got {chunk_size})")
    _check_dims(in_dims, "in_dims")
    _check_dims(out_dims, "out_dims")

    @functools.wraps(func)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        # the stages are looked up on torch._functorch.vmap's module at each call, as
        # PyTorch's are: libraries (tensordict) replace them to batch their own containers
        from .._functorch import vmap as stages

        size, flat_dims, flat_args, spec = stages._process_batched_inputs(in_dims, args, func)
        if chunk_size is None or chunk_size >= size:
            return _run(func, flat_args, flat_dims, spec, kwargs, size, out_dims, randomness)
        return _chunked(
            func, flat_args, flat_dims, spec, kwargs, size, out_dims, randomness, chunk_size
        )

    return wrapped


def _get_name(func: Any) -> str:
    return getattr(func, "__name__", repr(func))


def _process_batched_inputs(in_dims: Any, args: tuple, func: Callable) -> tuple:
    """``(batch_size, flat_in_dims, flat_args, args_spec)`` of vmap's positional inputs
    (``torch._functorch.vmap._process_batched_inputs``)."""
    if not args:
        raise ValueError(
            "vmap(f)(): got no inputs. vmap maps over positional inputs; "
            "keyword arguments are passed to every sample unchanged"
        )
    if isinstance(in_dims, (tuple, list)):
        if len(in_dims) != len(args):
            raise ValueError(
                f"vmap: in_dims is not compatible with the structure of "
                f"`inputs`. in_dims has {len(in_dims)} entries but there are "
                f"{len(args)} inputs (in_dims={in_dims!r})"
            )
        flat_dims = [d for sub, a in zip(in_dims, args) for d in _flat_dims(sub, a, "in_dims")]
    else:
        flat_dims = _flat_dims(in_dims, args, "in_dims")
    flat_args, spec = tree_flatten(args)
    return _batch_size(flat_args, flat_dims), flat_dims, flat_args, spec


def _batch_size(flat_args: list, flat_dims: list) -> int:
    sizes = []
    for a, d in zip(flat_args, flat_dims):
        if d is None:
            continue
        if not isinstance(a, Tensor):
            raise ValueError(
                f"vmap: Got in_dim={d} for an input but the input is of type "
                f"{type(a)}. We cannot vmap over non-Tensor arguments, please use "
                "None as the respective in_dim"
            )
        n = a.dim()
        if not -n <= d < n:
            raise ValueError(
                f"vmap: Got in_dim={d} for some input, but that input is a Tensor "
                f"of dimensionality {n} so expected in_dim to satisfy "
                f"-{n} <= in_dim < {n}."
            )
        sizes.append(a.shape[d])
    if not sizes:
        raise ValueError(
            "vmap: at least one input must be mapped (in_dims are all None or "
            "there are no tensor inputs)"
        )
    if len(set(sizes)) != 1:
        raise ValueError(
            f"vmap: Expected all tensors to have the same size in the mapped "
            f"dimension, got sizes {sizes} for the mapped dimension"
        )
    return sizes[0]


def _run(func, flat_args, flat_dims, spec, kwargs, size, out_dims, randomness):
    from .._functorch import vmap as stages

    level = enter_level(size, randomness)
    try:
        inputs = stages._create_batched_inputs(flat_dims, flat_args, level, spec)
        out = patched(func)(*inputs, **kwargs)
        return stages._unwrap_batched(out, out_dims, level, size, func)
    finally:
        exit_level()


def _add_batch_dim(a: Tensor, d: int, level: int) -> Tensor:
    """``a`` seen as batched over its dim ``d`` at vmap level ``level`` (an alias of ``a``)."""
    levels = levels_of(a)
    k = len(levels)
    d = d + a.dim() if d < 0 else d
    with unwrapped(a):
        p = a.movedim(d + k, k) if d else a.view_as(a)  # an alias: a stays unbatched
    return wrap(p, levels + (level,))


def _create_batched_inputs(flat_dims: list, flat_args: list, level: int, spec: Any) -> Any:
    """The inputs ``func`` sees: each mapped leaf batched at ``level``, unflattened."""
    inputs = [a if d is None else _add_batch_dim(a, d, level) for a, d in zip(flat_args, flat_dims)]
    return tree_unflatten(inputs, spec)


def _unwrap_batched(out: Any, out_dims: Any, level: int, size: int, func: Callable) -> Any:
    """``func``'s outputs with the batch dim of ``level`` moved to ``out_dims``."""
    flat_out, ospec = tree_flatten(out)
    if (
        isinstance(out_dims, (tuple, list))
        and len(out_dims) == 1
        and not isinstance(out, (tuple, list))
    ):
        flat_od = [out_dims[0]]
    else:
        flat_od = _flat_dims(out_dims, out, "out_dims")
    name = _get_name(func)
    results = [_unbatch(o, od, level, size, name) for o, od in zip(flat_out, flat_od)]
    return tree_unflatten(results, ospec)


def _unbatch(o: Any, od: Any, level: int, size: int, name: str) -> Any:
    """``o`` with the batch dim of ``level`` at ``od`` (expanded if ``o`` does not depend on
    the mapped inputs); ``torch._functorch.vmap._maybe_remove_batch_dim``."""
    if not isinstance(o, Tensor):
        if od is None:
            return o
        raise ValueError(
            f"vmap: `{name}` must only return Tensors, "
            f"got type {type(o)}. Did you mean to set out_dims= to None for output?"
        )
    levels = levels_of(o)
    if level not in levels:
        if od is None:
            return o
        x = o.unsqueeze(od)  # the same value for every sample: expand along the new dim
        shape = list(x.shape)
        shape[od] = size
        return x.expand(shape)
    if od is None:
        raise ValueError(
            "vmap: out_dims=None for an output that depends on the mapped inputs "
            "(it differs per sample); give an int out_dim"
        )
    j = levels.index(level)
    rest = tuple(lv for lv in levels if lv != level)
    nd = o.dim() + 1
    if not -nd <= od < nd:
        raise ValueError(
            f"vmap: out_dim={od} is out of range for an output with {o.dim()} "
            f"dims per sample (expected -{nd} <= out_dim < {nd})"
        )
    dest = (od + nd if od < 0 else od) + len(rest)
    with unwrapped(o):
        p = o.movedim(j, dest) if j != dest else o.view_as(o)
    return wrap(p, rest)


def _chunked(func, flat_args, flat_dims, spec, kwargs, size, out_dims, randomness, chunk):
    import ember  # ember.cat: patched while an outer vmap runs

    cat = ember.cat
    pieces = []
    for start in range(0, size, chunk):
        n = min(chunk, size - start)
        part = [a if d is None else a.narrow(d, start, n) for a, d in zip(flat_args, flat_dims)]
        pieces.append(_run(func, part, flat_dims, spec, kwargs, n, out_dims, randomness))
    flat0, ospec = tree_flatten(pieces[0])
    if (
        isinstance(out_dims, (tuple, list))
        and len(out_dims) == 1
        and len(flat0) == 1
        and not isinstance(pieces[0], (tuple, list))
    ):
        flat_od = [out_dims[0]]
    else:
        flat_od = _flat_dims(out_dims, pieces[0], "out_dims")
    flats = [tree_flatten(p)[0] for p in pieces]
    merged = []
    for i, od in enumerate(flat_od):
        merged.append(flats[0][i] if od is None else cat([f[i] for f in flats], od))
    return tree_unflatten(merged, ospec)
