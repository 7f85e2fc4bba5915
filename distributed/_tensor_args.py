"""Argument checks shared by the collectives and point-to-point ops."""

from __future__ import annotations

from ember import _interop
from ember.tensor import Tensor


def _check(t, name: str) -> Tensor:
    if not isinstance(t, Tensor):
        raise TypeError(
            f"Invalid function argument. Expected parameter `{name}` of type "
            f"ember.Tensor but got {type(t)} instead."
        )
    return t


def _check_list(ts, name: str, n: int | None, dtype=None) -> list:
    if not isinstance(ts, (list, tuple)):
        raise TypeError(
            f"Invalid function argument. Expected parameter `{name}` of type "
            f"List[ember.Tensor] but got {type(ts)} instead."
        )
    for i, t in enumerate(ts):
        _check(t, f"{name}[{i}]")
        if dtype is not None and t.dtype is not dtype:
            raise TypeError(
                f"Invalid usage of tensors with different dtypes Found {dtype} and "
                f"{t.dtype} ({name}[{i}])"
            )
    if n is not None and len(ts) != n:
        raise ValueError(f"{name} has {len(ts)} tensors but the group has {n} ranks")
    return list(ts)


def _d(**kw) -> str:
    return "(" + ", ".join(f"{k}={v}" for k, v in kw.items()) + ")"


def _sh(t: Tensor) -> list:
    return list(t.shape)


def _bump(*ts: Tensor) -> None:
    """Count the write of each tensor made behind autograd's back (the collectives' outputs)."""
    for t in ts:
        _interop.bump_version(t)


def _root(pg, rank: int, group_rank, what: str) -> int:
    if group_rank is not None:
        if not 0 <= group_rank < pg.size():
            raise ValueError(f"Invalid group_{what} {group_rank}: the group has {pg.size()} ranks")
        return int(group_rank)
    return pg.group_rank(rank, what)


def _segments(sizes) -> list[tuple[int, int]]:
    out, start = [], 0
    for n in sizes:
        out.append((start, start + int(n)))
        start += int(n)
    return out


def _same_numel(ts: list, like: Tensor, name: str) -> None:
    for i, t in enumerate(ts):
        if t.numel() != like.numel():
            raise ValueError(
                f"{name}[{i}] has {t.numel()} elements, expected "
                f"{like.numel()} like the tensor argument"
            )
