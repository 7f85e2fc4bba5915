"""``ember.nn.attention.flex_attention``: attention with a user score_mod and a block mask.

``flex_attention(q, k, v, score_mod, block_mask)`` computes
``softmax(score_mod(q k^T * scale, b, h, q_idx, kv_idx) masked by block_mask) v``.
PyTorch compiles the two user functions into a fused kernel; ember runs them eagerly, once
per band of query rows, on broadcast index tensors (``b`` (B,1,1,1), ``h`` (1,H,1,1),
``q_idx`` (1,1,rows,1), ``kv_idx`` (1,1,1,cols)), as ordinary ember tensor code. So:

- autograd flows through the score_mod: a learned bias captured by the closure gets its
  gradient (PyTorch's CPU flex_attention has no backward; ember's has);
- key blocks the block mask leaves empty for a whole band are never gathered or computed
  (causal: about half the work; a sliding window: a band of it), and full blocks skip the
  mask_mod;
- only one band of scores is live at a time, so memory grows with ``rows x KV_LEN``, not
  ``Q_LEN x KV_LEN``; in training too: backward recomputes each band's scores from q/k/v and
  the saved log-sum-exp (``_flex_grad.py``), as flash attention does.

Rows with no key to attend to give zeros (and ``lse = -inf``), as in PyTorch.
"""

from __future__ import annotations

import math
from enum import Enum
from typing import NamedTuple, TypedDict

from ...backend.device import get_array_module
from ...ops.attention import scaled_dot_product_attention as _sdpa
from ...tensor import Tensor
from ._block_mask import BlockMask, _sliced_mask_mod_error, create_block_mask
from ._flex_bands import _MIN_ROWS, _allowed, _band_plan  # noqa: F401 (_flex_grad imports them here)
from ._mods import (
    _call_mod,
    _index,
    _is_score_mod,
    _mask_mod_signature,
    _score_mod_signature,
    and_masks,
    create_mask,
    noop_mask,
    or_masks,
)

__all__ = [
    "BlockMask",
    "flex_attention",
    "AuxOutput",
    "AuxRequest",
    "FlexKernelOptions",
    "create_block_mask",
    "create_mask",
    "or_masks",
    "and_masks",
    "noop_mask",
    "_score_mod_signature",
    "_mask_mod_signature",
]

# torch's default block size for create_block_mask (transformers imports the name)
_DEFAULT_SPARSE_BLOCK_SIZE = 128
_BAND_ELEMENTS = 1 << 22  # scores per band (B * H * rows * cols) when no block mask is given


class FlexKernelOptions(TypedDict, total=False):
    """Tuning options of PyTorch's generated kernels; accepted and ignored by ember."""

    BLOCK_M: int
    BLOCK_N: int
    num_warps: int
    num_stages: int
    PRESCALE_QK: bool
    ROWS_GUARANTEED_SAFE: bool
    BLOCKS_ARE_CONTIGUOUS: bool
    OUTPUT_LOGSUMEXP: bool
    FORCE_USE_FLEX_ATTENTION: bool
    BACKEND: str


class AuxRequest(NamedTuple):
    """Which auxiliary outputs ``flex_attention(..., return_aux=...)`` returns."""

    lse: bool = False
    max_scores: bool = False


class AuxOutput(NamedTuple):
    """Auxiliary outputs of ``flex_attention``; ``None`` where not requested."""

    lse: Tensor | None = None
    max_scores: Tensor | None = None


def _identity(score, b, h, q_idx, kv_idx):
    return score


class _ModificationType(Enum):
    """Whether a user function is a score_mod (5 arguments) or a mask_mod (4)."""

    SCORE_MOD = 1
    MASK_MOD = 2
    UNKNOWN = 3


def _get_mod_type(fn) -> _ModificationType:
    """The kind of ``fn``, by its count of positional arguments without defaults."""
    try:
        return _ModificationType.SCORE_MOD if _is_score_mod(fn) else _ModificationType.MASK_MOD
    except AssertionError:
        return _ModificationType.UNKNOWN


def _vmap_for_bhqkv(fn, prefix, suffix=(), out_dims=0, group_dim=False):
    """``fn`` over 1-D ``b, h, q_idx, kv_idx`` index tensors (after ``len(prefix)`` leading
    arguments such as the scores): PyTorch vmaps it per element; here the indices are laid
    along dims 0..3 and broadcast, which gives the same (B, H, Q, KV) result."""

    def wrapped(*args):
        n = len(prefix)
        b, h, q, kv = args[n : n + 4]
        grids = (
            b.view(-1, 1, 1, 1),
            h.view(1, -1, 1, 1),
            q.view(1, 1, -1, 1),
            kv.view(1, 1, 1, -1),
        )
        if n > 1 or len(args) > n + 4:
            out = fn(*args[:n], *grids, *args[n + 4 :])
        else:
            out = _call_mod(fn, args[0] if n else None, *grids)
        shape = (b.numel(), h.numel(), q.numel(), kv.numel())
        return out.expand(shape) if isinstance(out, Tensor) else out

    return wrapped


def _validate(query, key, value, block_mask, enable_gqa):
    for name, t in (("query", query), ("key", key), ("value", value)):
        if not isinstance(t, Tensor):
            raise TypeError(f"flex_attention: {name} must be a Tensor, got {type(t).__name__}")
    if query.is_nested or key.is_nested or value.is_nested:
        # torch 2.13 dropped jagged inputs (and create_nested_block_mask); same error
        raise NotImplementedError(
            "flex_attention does not support NestedTensor inputs, including "
            "torch.compile(flex_attention) with jagged NestedTensor inputs. "
            "Convert inputs to dense tensors before calling flex_attention."
        )
    if query.dim() != 4 or key.dim() != 4 or value.dim() != 4:
        raise NotImplementedError("NYI: query, key, and value must be 4D tensors")
    if not query.is_floating_point():
        raise RuntimeError(f"flex_attention: expected a floating dtype, got {query.dtype}")
    if not (query.dtype == key.dtype == value.dtype):
        raise ValueError(
            "Expected query, key, and value to have the same dtype, but got query.dtype: "
            f"{query.dtype}, key.dtype: {key.dtype}, and value.dtype: {value.dtype} instead."
        )
    if query.device != key.device or query.device != value.device:
        raise ValueError(
            "Expected query, key, and value to have the same device type, but got "
            f"query.device: {query.device}, key.device: {key.device}, and value.device: "
            f"{value.device} instead."
        )
    if query.size(-1) != key.size(-1):
        raise ValueError(
            "Expect query and key/value to have the same embedding dimension but got "
            f"E={query.size(-1)} and E={key.size(-1)}."
        )
    if key.size(-2) != value.size(-2) or key.size(1) != value.size(1):
        raise ValueError(
            f"Expect key and value to agree in heads and length, got {tuple(key.shape)} "
            f"and {tuple(value.shape)}"
        )
    Hq, Hkv = query.size(1), key.size(1)
    if not enable_gqa and Hq != Hkv:
        raise ValueError(
            "Expect query and key/value to have the same number of heads but got "
            f"Hq={Hq} and Hkv={Hkv}. Try setting enable_gqa=True for GQA."
        )
    if enable_gqa and Hq % Hkv != 0:
        raise ValueError(
            "Expect number of query heads to be a multiple of kv heads for GQA but got "
            f"Hq={Hq} and Hkv={Hkv}."
        )
    Bq, Bkv = query.size(0), key.size(0)
    if Bq != Bkv and Bkv != 1:
        if block_mask is None or block_mask.kv_num_blocks.size(0) != Bq:
            raise ValueError(
                "Expect query and key/value to have the same batch size, or block_mask and "
                f"query to have the same batch size, but got Bq={Bq}, Bkv={Bkv}."
            )
    if block_mask is None:
        return
    if not isinstance(block_mask, BlockMask):
        raise TypeError(f"block_mask must be a BlockMask, got {type(block_mask).__name__}")
    if block_mask.mask_mod is _sliced_mask_mod_error:
        raise RuntimeError("Cannot use mask_mod from a sliced BlockMask")
    bq, bkv = block_mask.shape[-2:]
    L, S = query.size(-2), key.size(-2)
    if (L, S) != (bq, bkv):
        hint = (
            "As the block mask was created for a smaller length than you're using it for, "
            "you likely need to create a new block mask."
            if L > bq or S > bkv
            else "You can either 1. create a new block mask with the correct length, or 2. "
            "'adjust' the existing block mask to the correct length by calling "
            "block_mask._adjust(q_len, kv_len)."
        )
        raise ValueError(
            f"block_mask was created for block_mask.shape={block_mask.shape} but got "
            f"q_len={L} and kv_len={S}. {hint}"
        )
    mb, mh = block_mask.kv_indices.shape[:2]
    if mb not in (1, Bq) or mh not in (1, Hq):
        raise ValueError(
            f"block_mask of batch/heads ({mb}, {mh}) does not broadcast to the query's ({Bq}, {Hq})"
        )


def flex_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    score_mod: _score_mod_signature | None = None,
    block_mask: BlockMask | None = None,
    scale: float | None = None,
    enable_gqa: bool = False,
    return_lse: bool = False,
    kernel_options: FlexKernelOptions | None = None,
    *,
    return_aux: AuxRequest | None = None,
):
    r"""Attention with a programmable score modification and a block-sparse mask.

    Args:
        query: (B, Hq, L, E). key: (B, Hkv, S, E). value: (B, Hkv, S, Ev).
        score_mod: ``score_mod(score, b, h, q_idx, kv_idx) -> score``, applied to the scaled
            scores before the softmax (written with tensor ops; it may capture tensors).
        block_mask: a :class:`BlockMask` from :func:`create_block_mask`; ``None`` attends
            everywhere.
        scale: the score scale, ``1 / sqrt(E)`` by default.
        enable_gqa: let ``Hq`` be a multiple of ``Hkv`` (grouped-query attention).
        return_lse: also return the log-sum-exp of the scores, (B, Hq, L) (deprecated in
            PyTorch for ``return_aux=AuxRequest(lse=True)``).
        kernel_options: tuning options of PyTorch's kernels, ignored.
        return_aux: an :class:`AuxRequest`; returns ``(out, AuxOutput(...))``.

    Returns:
        out (B, Hq, L, Ev), or ``(out, lse)`` / ``(out, AuxOutput)`` as asked.
    """
    import ember

    _validate(query, key, value, block_mask, enable_gqa)
    if return_lse and return_aux is not None:
        raise ValueError(
            "Cannot specify both return_lse and return_aux. return_lse is deprecated, please "
            "use return_aux=AuxRequest(lse=True) instead."
        )
    if kernel_options is not None and not isinstance(kernel_options, dict):
        raise TypeError(f"kernel_options must be a dict, got {type(kernel_options).__name__}")
    if score_mod is not None and not callable(score_mod):
        raise TypeError(f"score_mod must be callable, got {type(score_mod).__name__}")
    want_lse = return_lse or (return_aux is not None and return_aux.lse)
    want_max = return_aux is not None and return_aux.max_scores
    B, Hq, L, E = query.shape
    S, Ev = key.size(-2), value.size(-1)
    sc = 1.0 / math.sqrt(E) if scale is None else float(scale)
    out_dtype = query.dtype
    if query.dtype in (ember.float16, ember.bfloat16):  # softmax statistics in float32
        query, key, value = query.float(), key.float(), value.float()
    if key.size(0) != B:
        key, value = key.expand(B, -1, -1, -1), value.expand(B, -1, -1, -1)
    if key.size(1) != Hq:
        rep = Hq // key.size(1)
        key, value = key.repeat_interleave(rep, dim=1), value.repeat_interleave(rep, dim=1)
    xp = get_array_module(query._data)
    rows_hint = max(1, min(L, _BAND_ELEMENTS // max(1, B * Hq * S)))
    mask_mod = None if block_mask is None else block_mask.mask_mod
    if mask_mod is noop_mask:
        mask_mod = None
    grads = any(t.requires_grad for t in (query, key, value)) and ember.is_grad_enabled()
    if grads and not (want_lse or want_max):
        # training: one node whose backward recomputes each band's scores (_flex_grad.py)
        from ._flex_grad import flex_train

        out = flex_train(query, key, value, score_mod, block_mask, mask_mod, sc, rows_hint, xp)
        return (out.to(out_dtype), AuxOutput()) if return_aux is not None else out.to(out_dtype)
    b_idx = _index(xp, xp.arange(B), 0)
    h_idx = _index(xp, xp.arange(Hq), 1)
    neg_inf = float("-inf")
    # without a score_mod or statistics, the fused op (analytic backward; empty rows give
    # zeros) computes each band; otherwise the scores go through the user's tensor code
    fused = score_mod is None and not want_lse and not want_max
    outs, lses, maxes = [], [], []
    for r0, r1, cols, keep in _band_plan(xp, block_mask, L, S, rows_hint):
        rows = r1 - r0
        if cols is not None and len(cols) == 0:  # nothing to attend to in this band
            outs.append(ember.zeros(B, Hq, rows, Ev, dtype=query.dtype, device=query.device))
            lses.append(ember.full((B, Hq, rows), neg_inf, device=query.device))
            maxes.append(lses[-1])
            continue
        q = query[:, :, r0:r1]
        if cols is None:
            k, v, kv_pos = key, value, xp.arange(S)
        elif int(cols[-1]) - int(cols[0]) + 1 == len(cols):  # one run of keys: a view
            c0, c1 = int(cols[0]), int(cols[-1]) + 1
            k, v, kv_pos = key[:, :, c0:c1], value[:, :, c0:c1], cols
        else:
            idx = Tensor._wrap(xp.asarray(cols, dtype=xp.int64))
            k, v, kv_pos = key.index_select(2, idx), value.index_select(2, idx), cols
        if fused:  # no score_mod, no statistics: ember's fused attention op per band
            allowed = _allowed(xp, keep, mask_mod, B, Hq, r0, r1, kv_pos)
            mask = None if allowed is None else Tensor._wrap(allowed)
            outs.append(_sdpa(q, k, v, mask, 0.0, False, sc))
            continue
        s = ember.matmul(q, k.transpose(-2, -1)) * sc
        if score_mod is not None:
            q_idx = _index(xp, xp.arange(r0, r1), 2)
            kv_idx = _index(xp, kv_pos, 3)
            s = _call_mod(score_mod, s, b_idx, h_idx, q_idx, kv_idx)
            if not isinstance(s, Tensor):
                raise TypeError(f"score_mod must return a Tensor, got {type(s).__name__}")
            if tuple(s.shape) != (B, Hq, rows, len(kv_pos)):
                s = s.expand(B, Hq, rows, len(kv_pos))
        allowed = _allowed(xp, keep, mask_mod, B, Hq, r0, r1, kv_pos)
        if allowed is not None:
            s = ember.where(Tensor._wrap(allowed), s, neg_inf)
        # row maximum as a constant shift (softmax is invariant to it); empty rows shift by 0
        m = xp.max(s._data, axis=-1, keepdims=True)
        m_safe = xp.where(xp.isneginf(m), 0, m).astype(m.dtype)
        p = (s - Tensor._wrap(m_safe)).exp()
        denom = p.sum(-1, keepdim=True)
        nonempty = Tensor._wrap(denom._data > 0)
        denom = ember.where(nonempty, denom, 1.0)
        outs.append(ember.matmul(p, v) / denom)
        if want_lse:
            lse = denom.log() + Tensor._wrap(m_safe)
            lses.append(ember.where(nonempty, lse, neg_inf).squeeze(-1))
        if want_max:
            maxes.append(Tensor._wrap(m[..., 0]))
    out = outs[0] if len(outs) == 1 else ember.cat(outs, dim=2)
    out = out.to(out_dtype)
    lse = None
    if want_lse:
        lse = lses[0] if len(lses) == 1 else ember.cat(lses, dim=2)
    if return_aux is not None:
        mx = None
        if want_max:
            mx = maxes[0] if len(maxes) == 1 else ember.cat(maxes, dim=2)
        return out, AuxOutput(lse=lse, max_scores=mx)
    if return_lse:
        return out, lse
    return out


# ``ember.compile(flex_attention)`` returns flex_attention itself: PyTorch compiles it into a
# fused kernel, and ember's eager implementation is that kernel. (Inside a compiled model the
# call is one opaque graph node, its closures constants: core/_compile/_capture.py.)
flex_attention._ember_eager_kernel = True
