"""``ReduceOp`` (PyTorch's names) and the NumPy ufunc that carries out each."""

from __future__ import annotations

import enum

import numpy as np


class ReduceOp(enum.IntEnum):
    """How ``all_reduce``, ``reduce`` and ``reduce_scatter`` combine the ranks' tensors."""

    SUM = 0
    AVG = 1
    PRODUCT = 2
    MIN = 3
    MAX = 4
    BAND = 5
    BOR = 6
    BXOR = 7
    PREMUL_SUM = 8

    def __repr__(self) -> str:
        return f"<RedOpType.{self.name}: {self.value}>"


# PyTorch also exposes the enum type as ``ReduceOp.RedOpType``.
ReduceOp.RedOpType = ReduceOp  # type: ignore[attr-defined]

_UFUNC = {
    ReduceOp.SUM: np.add,
    ReduceOp.AVG: np.add,  # then divided by the number of ranks
    ReduceOp.PRODUCT: np.multiply,
    ReduceOp.MIN: np.minimum,
    ReduceOp.MAX: np.maximum,
    ReduceOp.BAND: np.bitwise_and,
    ReduceOp.BOR: np.bitwise_or,
    ReduceOp.BXOR: np.bitwise_xor,
}


class Reduction:
    """A validated ``ReduceOp`` for one dtype: ``fn(a, b, out=a)`` plus the AVG division."""

    __slots__ = ("op", "fn", "avg")

    def __init__(self, op, dtype: np.dtype) -> None:
        try:
            op = ReduceOp(op)
        except ValueError:
            raise ValueError(
                f"unknown reduce op {op!r}; use ReduceOp.SUM, AVG, PRODUCT, MIN, "
                "MAX, BAND, BOR or BXOR"
            ) from None
        if op not in _UFUNC:
            raise ValueError(f"ReduceOp.{op.name} is not supported by ember's collectives")
        kind = np.dtype(dtype).kind
        if op == ReduceOp.AVG and kind not in "fcV":
            raise TypeError(f"ReduceOp.AVG needs a floating-point tensor, got {dtype}")
        if op in (ReduceOp.BAND, ReduceOp.BOR, ReduceOp.BXOR) and kind not in "biu":
            raise TypeError(f"ReduceOp.{op.name} needs an integer or bool tensor, got {dtype}")
        if op in (ReduceOp.MIN, ReduceOp.MAX) and kind == "c":
            raise TypeError(f"ReduceOp.{op.name} is not defined for complex tensors")
        self.op, self.fn, self.avg = op, _UFUNC[op], op == ReduceOp.AVG

    def without_avg(self) -> Reduction:
        """The same combination without the final division (for multi-stage algorithms)."""
        plain = object.__new__(Reduction)
        plain.op, plain.fn, plain.avg = self.op, self.fn, False
        return plain

    def finish(self, arr: np.ndarray, n: int) -> None:
        """Apply AVG's scaling in place (no-op for the other ops): a multiplication by
        ``1 / n``, as FSDP and ZeRO average gradients, so DDP agrees with them bitwise."""
        if self.avg and n > 1 and arr.size:
            np.multiply(arr, 1.0 / n, out=arr, casting="unsafe")
