"""The row bands ``flex_attention`` computes one at a time: which query rows, which key
columns, and which positions may attend in each (from the block mask and ``mask_mod``)."""

from __future__ import annotations

from ._mods import _eval_mask

_MIN_ROWS = 128  # query rows per band at least (block masks with small blocks are grouped)


def _band_plan(xp, block_mask, L, S, rows_hint):
    """Yield (r0, r1, cols, keep) per band of query rows: ``cols`` None (every key) or an int
    array of the key positions computed, ``keep`` None or a (partial, full) pair of bool maps
    [Bm, Hm, rows, len(cols)] (None when no block of the band is of that kind)."""
    if block_mask is None:
        for r0 in range(0, L, rows_hint):
            yield r0, min(r0 + rows_hint, L), None, None
        return
    partial, full = block_mask._block_maps()
    qbs, kvbs = block_mask.BLOCK_SIZE
    per_band = max(1, _MIN_ROWS // qbs)
    nq = partial.shape[-2]
    for qb0 in range(0, nq, per_band):
        qb1 = min(qb0 + per_band, nq)
        r0, r1 = qb0 * qbs, min(qb1 * qbs, L)
        if r0 >= r1:
            break
        p = partial[..., qb0:qb1, :]
        f = None if full is None else full[..., qb0:qb1, :]
        used = p.any(axis=(0, 1, 2)) if f is None else (p | f).any(axis=(0, 1, 2))
        blocks = xp.nonzero(used)[0]
        if len(blocks) == 0:
            yield r0, r1, xp.zeros(0, dtype=xp.int64), None
            continue
        cols = (blocks[:, None] * kvbs + xp.arange(kvbs)).reshape(-1)
        cols = cols[cols < S]
        col_block = cols // kvbs

        def expand(m, r0=r0, r1=r1, col_block=col_block):
            if m is None or not m[..., col_block].any():
                return None
            return xp.repeat(m[..., col_block], qbs, axis=-2)[..., : r1 - r0, :]

        if len(cols) == S:
            cols = None
        yield r0, r1, cols, (expand(p), expand(f))


def _allowed(xp, keep, mask_mod, B, H, r0, r1, kv_pos):
    """The bool array of positions that may attend in this band (None: all of them):
    full blocks, and partial blocks where the mask_mod says so."""
    if keep is None:
        return None
    partial, full = keep
    if partial is None:
        if full is None or bool(full.all()):
            return None
        return full
    if mask_mod is not None:
        partial = partial & _eval_mask(mask_mod, B, H, xp.arange(r0, r1), kv_pos, xp)
    return partial if full is None else partial | full
