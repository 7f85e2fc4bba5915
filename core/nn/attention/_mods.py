"""The user-function side of ``ember.nn.attention.flex_attention``: mask_mod / score_mod
helpers (``noop_mask``, ``and_masks``, ``or_masks``, ``create_mask``) and how ember runs them.

A mod is ordinary tensor code. ember evaluates it once over broadcast index tensors (``b``
(B,1,1,1), ``h`` (1,H,1,1), ``q_idx`` (1,1,Q,1), ``kv_idx`` (1,1,1,KV)) instead of per
element, so captured tensors indexed by ``q_idx`` etc. just work. A mod that only makes sense
element by element (it indexes a gathered row by position, or calls ``dot``) fails that way
and is then run under ``ember.func.vmap``, PyTorch's own semantics.
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Callable

from ...backend.device import get_array_module
from ...tensor import Tensor

__all__ = ["create_mask", "and_masks", "or_masks", "noop_mask"]

_score_mod_signature = Callable[[Tensor, Tensor, Tensor, Tensor, Tensor], Tensor]
_mask_mod_signature = Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]


def noop_mask(batch: Tensor, head: Tensor, token_q: Tensor, token_kv: Tensor) -> Tensor:
    """A mask_mod that lets every query attend to every key."""
    return batch.new_ones((), dtype=_bool())


def _bool():
    import ember

    return ember.bool


def and_masks(*mask_mods: _mask_mod_signature) -> _mask_mod_signature:
    """A mask_mod that is the intersection (logical and) of ``mask_mods``."""
    if not all(callable(m) for m in mask_mods):
        raise RuntimeError(f"All inputs should be callable mask_mods: {mask_mods}")

    def and_mask(b, h, q_idx, kv_idx):
        result = b.new_ones((), dtype=_bool())
        for mod in mask_mods:
            result = result & mod(b, h, q_idx, kv_idx)
        return result

    return and_mask


def or_masks(*mask_mods: _mask_mod_signature) -> _mask_mod_signature:
    """A mask_mod that is the union (logical or) of ``mask_mods``."""
    if not all(callable(m) for m in mask_mods):
        raise RuntimeError(f"All inputs should be callable mask_mods: {mask_mods}")

    def or_mask(b, h, q_idx, kv_idx):
        result = b.new_zeros((), dtype=_bool())
        for mod in mask_mods:
            result = result | mod(b, h, q_idx, kv_idx)
        return result

    return or_mask


def _is_score_mod(fn) -> bool:
    """A score_mod takes 5 positional arguments, a mask_mod 4 (PyTorch's rule)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    n = sum(1 for p in params if p.kind in kinds and p.default is inspect.Parameter.empty)
    if n not in (4, 5):
        raise AssertionError(f"mod_fn must take 4 (mask_mod) or 5 (score_mod) arguments, got {n}")
    return n == 5


def _index(xp, values, axis: int) -> Tensor:
    """``values`` (an int array) as an int64 index tensor laid along ``axis`` of 4 dims."""
    shape = [1, 1, 1, 1]
    shape[axis] = -1
    return Tensor._wrap(xp.asarray(values, dtype=xp.int64).reshape(shape))


# mods that only run element by element (they index a gathered row by position, call dot, ...)
_needs_vmap: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _call_mod(fn, score, b, h, q, kv):
    """``fn([score,] b, h, q_idx, kv_idx)`` over the (B, H, Q, KV) grid of the 4-D index
    tensors ``b, h, q, kv`` (see ``_index``). First as one broadcast call; a mod that fails so
    runs under ``ember.func.vmap`` per element, PyTorch's own semantics (slower)."""
    pre = () if score is None else (score,)
    try:
        vmapped = fn in _needs_vmap
    except TypeError:  # not weak-referenceable
        vmapped = False
    if not vmapped:
        try:
            return fn(*pre, b, h, q, kv)
        except Exception as err:
            first = err
        try:
            out = _vmapped(fn, pre, b, h, q, kv)
        except Exception:
            raise first from None
        try:
            _needs_vmap[fn] = True
        except TypeError:
            pass
        return out
    return _vmapped(fn, pre, b, h, q, kv)


def _vmapped(fn, pre, b, h, q, kv):
    from ...func import vmap

    f = fn
    n = len(pre)
    for axis in (3, 2, 1, 0):  # innermost first: kv_idx, q_idx, h, b
        dims = [0] * n + [None] * 4
        dims[n + axis] = 0
        f = vmap(f, in_dims=tuple(dims))
    return f(*pre, b.reshape(-1), h.reshape(-1), q.reshape(-1), kv.reshape(-1))


def _eval_mask(mask_mod, B, H, q_idx, kv_idx, xp):
    """The bool array ``mask_mod(b, h, q_idx, kv_idx)`` broadcast over the index grids
    (``B``/``H`` ints, ``q_idx``/``kv_idx`` int arrays); its shape may keep size-1 dims."""
    import ember

    b = _index(xp, xp.arange(B), 0)
    h = _index(xp, xp.arange(H), 1)
    q = _index(xp, q_idx, 2)
    kv = _index(xp, kv_idx, 3)
    with ember.no_grad():
        out = _call_mod(mask_mod, None, b, h, q, kv)
    if not isinstance(out, Tensor):
        return xp.asarray(bool(out))
    data = out._data
    if data.dtype != bool:
        raise RuntimeError(f"mask_mod must return a bool tensor, got {out.dtype}")
    return data


def _xp_for(device):
    import ember

    return get_array_module(ember.empty(0, device=device)._data)


def create_mask(
    mod_fn: _score_mod_signature | _mask_mod_signature,
    B: int | None,
    H: int | None,
    Q_LEN: int,
    KV_LEN: int,
    device=None,
) -> Tensor:
    """The dense (B, H, Q_LEN, KV_LEN) bool mask of a mask_mod, or of a score_mod (False
    where it gives ``-inf``). ``B``/``H`` ``None`` mean 1 (the mask broadcasts)."""
    import ember

    B, H = B or 1, H or 1
    xp = _xp_for(device)
    if _is_score_mod(mod_fn):
        b = _index(xp, xp.arange(B), 0)
        h = _index(xp, xp.arange(H), 1)
        q = _index(xp, xp.arange(Q_LEN), 2)
        kv = _index(xp, xp.arange(KV_LEN), 3)
        with ember.no_grad():
            score = ember.zeros(B, H, Q_LEN, KV_LEN, device=device)
            out = _call_mod(mod_fn, score, b, h, q, kv)
        mask = ~xp.isneginf(out._data)
    else:
        mask = _eval_mask(mod_fn, B, H, xp.arange(Q_LEN), xp.arange(KV_LEN), xp)
    return Tensor._wrap(xp.ascontiguousarray(xp.broadcast_to(mask, (B, H, Q_LEN, KV_LEN))))
