"""``BlockMask`` and ``create_block_mask`` of ``ember.nn.attention.flex_attention``.

``create_block_mask`` reduces the dense mask to blocks of ``BLOCK_SIZE`` (evaluated a band of
query rows at a time, so a long sequence never holds the whole (Q, KV) mask): a block is
*full* (every position attends: mask_mod need not run), *partial*, or empty (skipped).
The block lists follow PyTorch's layout (``kv_num_blocks``/``kv_indices`` for partial blocks,
``full_kv_*`` for full ones, ``q_*`` the transposed view for the backward).
"""

from __future__ import annotations

from ...backend.device import get_array_module
from ...tensor import Tensor
from ._mods import _eval_mask, _is_score_mod, _mask_mod_signature, _xp_for, noop_mask

__all__ = ["BlockMask", "create_block_mask"]

_EVAL_ELEMENTS = 1 << 24  # positions of the dense mask evaluated at once in create_block_mask


def _ordered(xp, dense):
    """(num_blocks int32 [..., rows], indices int32 [..., rows, cols]): the True columns of
    each row first, ascending, then the others (PyTorch's order)."""
    num = dense.sum(-1).astype(xp.int32)
    idx = xp.argsort((~dense).astype(xp.int8), axis=-1, kind="stable").astype(xp.int32)
    return Tensor._wrap(num), Tensor._wrap(idx)


def _unordered(num: Tensor, idx: Tensor):
    """The dense bool block map of (num_blocks, indices)."""
    num, idx = num._data, idx._data
    xp = get_array_module(idx)
    n = idx.shape[-1]
    valid = xp.arange(n) < num[..., None]  # which entries of idx are in use
    hits = (idx[..., :, None] == xp.arange(n)) & valid[..., :, None]
    return hits.any(-2)


def _block_size(BLOCK_SIZE) -> tuple[int, int]:
    bs = (BLOCK_SIZE, BLOCK_SIZE) if isinstance(BLOCK_SIZE, int) else tuple(BLOCK_SIZE)
    if len(bs) != 2 or not all(isinstance(x, int) and x > 0 for x in bs):
        raise ValueError(f"BLOCK_SIZE must be a positive int or a pair of them, got {BLOCK_SIZE}")
    return bs


def _sliced_mask_mod_error(b, h, q_idx, kv_idx):
    raise RuntimeError(
        "Cannot use mask_mod from a sliced BlockMask. When you slice a BlockMask using [], "
        "the mask_mod attribute is reset. You must set it from the original BlockMask's mask_mod."
    )


class BlockMask:
    """A block-sparse attention mask: which (query block, key block) pairs are computed
    (partial: the mask_mod decides inside; full: all attend), plus the mask_mod itself.

    Build one with :func:`create_block_mask` or :meth:`from_kv_blocks`.
    """

    def __init__(
        self,
        seq_lengths,
        kv_num_blocks,
        kv_indices,
        full_kv_num_blocks,
        full_kv_indices,
        q_num_blocks,
        q_indices,
        full_q_num_blocks,
        full_q_indices,
        BLOCK_SIZE,
        mask_mod,
    ):
        if kv_indices.dim() < 2:
            raise RuntimeError("BlockMask must have at least 2 dimensions")
        self.seq_lengths = tuple(int(s) for s in seq_lengths)
        self.kv_num_blocks = kv_num_blocks
        self.kv_indices = kv_indices
        self.full_kv_num_blocks = full_kv_num_blocks
        self.full_kv_indices = full_kv_indices
        self.q_num_blocks = q_num_blocks
        self.q_indices = q_indices
        self.full_q_num_blocks = full_q_num_blocks
        self.full_q_indices = full_q_indices
        self.BLOCK_SIZE = _block_size(BLOCK_SIZE)
        self.mask_mod = noop_mask if mask_mod is None else mask_mod
        self._maps = None

    @classmethod
    def _from_dense(cls, partial, full, seq_lengths, BLOCK_SIZE, mask_mod, compute_q=True):
        """From bool block maps [B, H, nQ, nKV] (``full`` may be None)."""
        xp = get_array_module(partial)
        kv = _ordered(xp, partial)
        fkv = _ordered(xp, full) if full is not None else (None, None)
        q = _ordered(xp, xp.swapaxes(partial, -1, -2)) if compute_q else (None, None)
        fq = (None, None)
        if compute_q and full is not None:
            fq = _ordered(xp, xp.swapaxes(full, -1, -2))
        mask = cls(seq_lengths, *kv, *fkv, *q, *fq, BLOCK_SIZE, mask_mod)
        mask._maps = (partial, full)
        return mask

    @classmethod
    def from_kv_blocks(
        cls,
        kv_num_blocks: Tensor,
        kv_indices: Tensor,
        full_kv_num_blocks: Tensor | None = None,
        full_kv_indices: Tensor | None = None,
        BLOCK_SIZE: int | tuple[int, int] = 128,
        mask_mod: _mask_mod_signature | None = None,
        seq_lengths: tuple[int, int] | None = None,
        compute_q_blocks: bool = True,
    ) -> BlockMask:
        """A BlockMask from its key/value block lists (the query-side lists are derived)."""
        if kv_indices.dim() < 2:
            raise RuntimeError("BlockMask must have at least 2 dimensions")
        if (full_kv_num_blocks is None) != (full_kv_indices is None):
            raise AssertionError("full_kv_num_blocks and full_kv_indices must be both provided")
        bs = _block_size(BLOCK_SIZE)
        partial = _unordered(kv_num_blocks, kv_indices)
        full = (
            None if full_kv_num_blocks is None else _unordered(full_kv_num_blocks, full_kv_indices)
        )
        if seq_lengths is None:
            seq_lengths = (kv_indices.shape[-2] * bs[0], kv_indices.shape[-1] * bs[1])
        return cls._from_dense(partial, full, seq_lengths, bs, mask_mod, compute_q_blocks)

    def _block_maps(self):
        """(partial, full) bool arrays [B, H, nQ, nKV]; ``full`` may be None."""
        if self._maps is None:
            full = None
            if self.full_kv_num_blocks is not None:
                full = _unordered(self.full_kv_num_blocks, self.full_kv_indices)
            self._maps = (_unordered(self.kv_num_blocks, self.kv_indices), full)
        return self._maps

    def as_tuple(self, flatten: bool = True) -> tuple:
        """The fields as a tuple (PyTorch's order)."""
        bs = self.BLOCK_SIZE if not flatten else (*self.BLOCK_SIZE,)
        return (
            *self.seq_lengths,
            self.kv_num_blocks,
            self.kv_indices,
            self.full_kv_num_blocks,
            self.full_kv_indices,
            self.q_num_blocks,
            self.q_indices,
            self.full_q_num_blocks,
            self.full_q_indices,
            *bs,
            self.mask_mod,
        )

    @property
    def shape(self) -> tuple[int, ...]:
        """``(B, H, Q_LEN, KV_LEN)``: the batch and head sizes and the sequence lengths."""
        *batch, _, _ = self.kv_indices.shape
        return tuple(batch) + self.seq_lengths

    def numel(self) -> int:
        """Elements of the mask, ignoring sparsity."""
        n = 1
        for s in self.shape:
            n *= s
        return n

    def sparsity(self) -> float:
        """The percentage of blocks that are not computed (PyTorch's formula: padding past
        the sequence end counts as computed, so it can be slightly negative)."""
        blocks = int(self.kv_num_blocks.sum().item())
        if self.full_kv_num_blocks is not None:
            blocks += int(self.full_kv_num_blocks.sum().item())
        computed = blocks * self.BLOCK_SIZE[0] * self.BLOCK_SIZE[1]
        return 100 * (1 - computed / self.numel())

    def to_dense(self) -> Tensor:
        """The int32 block map [B, H, nQ, nKV]: 1 where a block is computed."""
        partial, full = self._block_maps()
        dense = partial if full is None else partial | full
        return Tensor._wrap(dense.astype(get_array_module(dense).int32))

    def to_string(self, grid_size=(20, 20), limit: int = 4) -> str:
        """A picture of the block map per (batch, head): █ computed, ░ partly, blank not."""
        import itertools

        import numpy as np

        dense = np.asarray(self.to_dense().cpu().numpy())
        *batch, rows, cols = dense.shape
        if grid_size == -1:
            max_rows, max_cols = rows, cols
        elif isinstance(grid_size, int):
            max_rows = max_cols = grid_size
        else:
            max_rows, max_cols = grid_size
        rstep = max(1, -(-rows // max_rows))
        cstep = max(1, -(-cols // max_cols))
        out = []
        for i, idx in enumerate(itertools.product(*[range(n) for n in batch])):
            if i == limit:
                out.append("...")
                out.append("To print out more, set BlockMask.to_string(limit=N)")
                out.append(
                    "You can also index (BlockMask[batch, head]) to choose a specific batch or head"
                )
                break
            grid = dense[idx]
            text = f"{idx}\n"
            for r in range(0, rows, rstep):
                for c in range(0, cols, cstep):
                    frac = grid[r : r + rstep, c : c + cstep].mean()
                    text += ("█" if frac == 1 else " " if frac == 0 else "░") * 2
                text += "\n"
            out.append(text)
        return "\n".join(out)

    def __str__(self) -> str:
        body = self.to_string().strip()
        return f"BlockMask(shape={self.shape}, sparsity={self.sparsity():.2f}%, \n{body}\n)"

    __repr__ = __str__

    def __getitem__(self, index) -> BlockMask:
        """Slice over batch, head and query-block dims (ints keep their dim, as PyTorch's
        printed shapes show); the mask_mod is reset, as in PyTorch."""
        index = index if isinstance(index, tuple) else (index,)
        index = tuple(slice(i, i + 1) if isinstance(i, int) else i for i in index)
        partial, full = self._block_maps()
        partial = partial[index]
        full = None if full is None else full[index]
        q_len = self.seq_lengths[0]
        if len(index) > 2:
            q_len = partial.shape[-2] * self.BLOCK_SIZE[0]
        return BlockMask._from_dense(
            partial,
            full,
            (q_len, self.seq_lengths[1]),
            self.BLOCK_SIZE,
            _sliced_mask_mod_error,
        )

    def _adjust(self, new_q_len: int, new_kv_len: int) -> BlockMask:
        """Crop to the upper-left (new_q_len, new_kv_len) corner."""
        partial, full = self._block_maps()
        nq = -(-new_q_len // self.BLOCK_SIZE[0])
        nkv = -(-new_kv_len // self.BLOCK_SIZE[1])
        partial = partial[..., :nq, :nkv]
        full = None if full is None else full[..., :nq, :nkv]
        seq = (new_q_len, new_kv_len)
        return BlockMask._from_dense(partial, full, seq, self.BLOCK_SIZE, self.mask_mod)

    def to(self, device) -> BlockMask:
        """This mask with its block tensors on ``device``."""
        partial, full = (Tensor._wrap(m) if m is not None else None for m in self._block_maps())
        partial = partial.to(device)._data
        full = None if full is None else full.to(device)._data
        return BlockMask._from_dense(
            partial, full, self.seq_lengths, self.BLOCK_SIZE, self.mask_mod
        )


def create_block_mask(
    mask_mod: _mask_mod_signature,
    B: int | None,
    H: int | None,
    Q_LEN: int,
    KV_LEN: int,
    device=None,
    BLOCK_SIZE: int | tuple[int, int] = 128,
    _compile: bool = False,
    separate_full_blocks: bool = True,
    **_ignored,
) -> BlockMask:
    """The :class:`BlockMask` of ``mask_mod`` over (B, H, Q_LEN, KV_LEN).

    ``_compile`` is accepted and ignored: the mask_mod is evaluated with broadcast index
    tensors, a band of query rows at a time.

    Args:
        mask_mod: ``mask_mod(b, h, q_idx, kv_idx)``, a bool tensor: True where the query may
            attend to the key.
        B: the batch size; ``None``: 1, broadcast over the batch.
        H: the number of heads; ``None``: 1, broadcast over the heads.
        Q_LEN: the query sequence length.
        KV_LEN: the key/value sequence length.
        device: where the mask is built (default: the default device).
        BLOCK_SIZE: the block size, or ``(query block, key block)``.
        separate_full_blocks: keep the blocks that the mask fully allows apart, so that
            ``flex_attention`` skips evaluating the mask_mod in them.

    Example::

        >>> def causal(b, h, q_idx, kv_idx):
        ...     return q_idx >= kv_idx
        >>> block_mask = create_block_mask(causal, None, None, 256, 256)
        >>> q = ember.randn(1, 2, 256, 16)
        >>> flex_attention(q, q, q, block_mask=block_mask).shape
        ember.Size([1, 2, 256, 16])
    """
    if not callable(mask_mod):
        raise TypeError(f"mask_mod must be callable, got {type(mask_mod).__name__}")
    if _is_score_mod(mask_mod):
        raise AssertionError("create_block_mask requires a mask_mod function (4 arguments)")
    B, H = B or 1, H or 1
    qbs, kvbs = _block_size(BLOCK_SIZE)
    xp = _xp_for(device)
    nq, nkv = -(-Q_LEN // qbs), -(-KV_LEN // kvbs)
    kv_idx = xp.arange(KV_LEN)
    # whole query blocks per band, enough to keep B * H * rows * KV_LEN under the budget
    band = max(1, _EVAL_ELEMENTS // max(1, B * H * KV_LEN * qbs)) * qbs
    any_parts, all_parts = [], []
    for r0 in range(0, nq * qbs, band):
        r1 = min(r0 + band, nq * qbs)
        rows = xp.arange(r0, min(r1, Q_LEN))
        mask = xp.zeros((B, H, r1 - r0, nkv * kvbs), dtype=bool)  # padding is masked
        if len(rows):
            got = _eval_mask(mask_mod, B, H, rows, kv_idx, xp)
            mask[:, :, : len(rows), :KV_LEN] = xp.broadcast_to(got, (B, H, len(rows), KV_LEN))
        blocks = mask.reshape(B, H, (r1 - r0) // qbs, qbs, nkv, kvbs)
        any_parts.append(blocks.any(axis=(3, 5)))
        all_parts.append(blocks.all(axis=(3, 5)))
    any_ = xp.concatenate(any_parts, axis=2)
    all_ = xp.concatenate(all_parts, axis=2)
    if separate_full_blocks:
        partial, full = any_ & ~all_, all_
    else:
        partial, full = any_, None
    return BlockMask._from_dense(partial, full, (Q_LEN, KV_LEN), (qbs, kvbs), mask_mod)
