"""``visualize_sharding``: which device holds which block of a 1-d or 2-d DTensor."""

from __future__ import annotations

import math

import numpy as np

from .._api import DTensor, _local_pieces, _shard_order

__all__ = ["visualize_sharding"]


def _blocks(dtensor: DTensor) -> list[tuple[tuple[int, int], tuple[int, int], int]]:
    """``((row lo, row hi), (col lo, col hi), rank)`` per rank, inclusive bounds (a 1-d tensor
    is one column)."""
    mesh = dtensor.device_mesh
    ranks = np.asarray(mesh.mesh.tolist() if hasattr(mesh.mesh, "tolist") else mesh.mesh)
    out = []
    for coord, rank in np.ndenumerate(ranks):
        steps, local = _local_pieces(dtensor.shape, mesh, dtensor.placements, coord)
        offset = [0] * dtensor.ndim
        for i in _shard_order(dtensor.placements):
            if steps[i] is not None:
                dim, _, bounds = steps[i]
                offset[dim] += bounds[coord[i]][0]
        shape = list(local) if dtensor.ndim == 2 else [local[0], 1]
        offset = offset if dtensor.ndim == 2 else [offset[0], 0]
        if 0 in shape:  # an empty piece holds no block
            continue
        rows = (offset[0], offset[0] + shape[0] - 1)
        cols = (offset[1], offset[1] + shape[1] - 1)
        out.append((rows, cols, int(rank)))
    return out


def _table(blocks, device_kind: str) -> str:
    row_ranges = sorted({b[0] for b in blocks})
    col_ranges = sorted({b[1] for b in blocks})
    cells = [["" for _ in col_ranges] for _ in row_ranges]
    for rows, cols, rank in blocks:
        r, c = row_ranges.index(rows), col_ranges.index(cols)
        cells[r][c] = f"{cells[r][c]},{rank}" if cells[r][c] else f"{device_kind}:{rank}"
    header = [""] + [f"Col {lo}-{hi}" for lo, hi in col_ranges]
    body = [[f"Row {lo}-{hi}", *cells[i]] for i, (lo, hi) in enumerate(row_ranges)]
    widths = [max(len(r[j]) for r in [header, *body]) for j in range(len(header))]

    def line(row) -> str:
        return "  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(r) for r in body)])


def visualize_sharding(dtensor: DTensor, header: str = "", use_rich: bool = False) -> None:
    """Print which device holds which block of a 1-d or 2-d ``dtensor``, once (on the rank at
    coordinate 0 of every mesh dimension), as a table of ``Row lo-hi`` x ``Col lo-hi`` cells
    naming the devices (``cpu:0``; several ranks for replicated blocks). Empty tensors print
    nothing. ``use_rich`` is accepted for PyTorch's signature; the table is plain text."""
    if not isinstance(dtensor, DTensor):
        raise TypeError(f"visualize_sharding: expected a DTensor, got {type(dtensor).__name__}")
    if math.prod(dtensor.shape) == 0:
        return
    if dtensor.ndim >= 3:
        raise RuntimeError("visualize sharding supports only 1D or 2D DTensor")
    coord = dtensor.device_mesh.get_coordinate()
    if coord is None or any(c != 0 for c in coord):
        return
    if header:
        print(header)
    print(_table(_blocks(dtensor), dtensor.device_mesh.device_type))
