"""``ember.distributed.tensor.experimental``: PyTorch's experimental DTensor helpers.

Only :func:`implicit_replication` so far (Opacus' FSDP optimizer imports it).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from . import _dispatch

__all__ = ["implicit_replication"]


@contextmanager
def implicit_replication() -> Iterator[None]:
    """Inside this context a plain tensor mixed with DTensors in an operator counts as
    replicated on every mesh dimension (PyTorch's rule: outside it, that mix is an error).
    """
    prev = _dispatch._IMPLICIT_REPLICATION[0]
    _dispatch._IMPLICIT_REPLICATION[0] = True
    try:
        yield
    finally:
        _dispatch._IMPLICIT_REPLICATION[0] = prev
