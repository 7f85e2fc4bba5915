"""``ember._tensor_str``: ``torch._tensor_str``'s names over ember's printer (core/_repr.py).

Libraries import ``PRINT_OPTS`` and ``_tensor_str`` from here (PyTorch Geometric's OFF writer
prints positions with ``_tensor_str(pos, indent=0)``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np

from ._repr import PRINT_OPTIONS, _format

__all__ = ["PRINT_OPTS", "get_printoptions", "printoptions"]


class _PrinterOptions:
    """``torch._tensor_str.PRINT_OPTS``: attribute access to the live print options."""

    def __getattr__(self, name: str):
        try:
            return PRINT_OPTIONS[name]
        except KeyError:
            raise AttributeError(f"PRINT_OPTS has no option {name!r}") from None

    def __setattr__(self, name: str, value) -> None:
        if name not in PRINT_OPTIONS:
            raise AttributeError(f"PRINT_OPTS has no option {name!r}")
        PRINT_OPTIONS[name] = value


PRINT_OPTS = _PrinterOptions()


def get_printoptions() -> dict:
    """The current print options, as ``torch._tensor_str.get_printoptions``."""
    return dict(PRINT_OPTIONS)


@contextlib.contextmanager
def printoptions(**kwargs) -> Iterator[None]:
    """Print with ``kwargs`` (``ember.set_printoptions``'s) inside the block, then restore.

    As ``torch._tensor_str.printoptions``; sentence-transformers' model cards print their
    similarity matrices with ``printoptions(precision=4, sci_mode=False)``.
    """
    from ._torch_misc import set_printoptions

    old = get_printoptions()
    set_printoptions(**kwargs)
    try:
        yield
    finally:
        set_printoptions(**old)


def _tensor_str(self, indent: int) -> str:
    """The bracketed values of ``self`` as ``repr`` prints them, rows indented by ``indent``."""
    d = self.detach().cpu().numpy()
    if d.size == 0 and d.ndim:
        return "[]"
    if d.dtype == np.float16 or d.dtype.kind == "V":
        d = d.astype(np.float32)
    return _format(d, " " * indent)
