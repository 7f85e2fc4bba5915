"""opt_einsum on ember tensors: the backend that ``opt_einsum.contract`` finds for them.

opt_einsum picks a backend from the class of the first operand (``type(x).__module__`` up to
the first dot): for torch's tensors that is ``"torch"``, which its ``_aliases`` table maps to
its own ``opt_einsum.backends.torch`` (``tensordot(x, y, axes)`` called as
``torch.tensordot(x, y, dims=axes)``, ``transpose(x, axes)`` as ``x.permute(*axes)``). For
ember's tensors it is ``"ember"``, which is not in that table, so opt_einsum called
``ember.tensordot(x, y, axes=...)`` and ``ember.transpose(x, axes)`` with NumPy's signatures,
which torch's functions do not take (tensorly's ``tl.einsum``, and with it neuraloperator's
factorized spectral convolutions, stopped there). This module is that backend for ember, and
:func:`install` enters it as ``_aliases["ember"]`` in ``opt_einsum.backends.dispatch``:
at once when opt_einsum is already imported, else by a ``sys.meta_path`` finder that runs
after opt_einsum's own loader (the same post-import hook as ``_einops``; for every other
import it costs one string comparison). opt_einsum is not imported by ``import ember``.
"""

from __future__ import annotations

import sys
from typing import Any

from ._post_import import AfterExecLoader, spec_from_later_finders

__all__ = ["einsum", "tensordot", "transpose", "install"]

_DISPATCH = "opt_einsum.backends.dispatch"


def transpose(a, axes):
    """NumPy's ``transpose(a, axes)``: a permutation of all dimensions."""
    return a.permute(*axes)


def einsum(equation: str, *operands, **kwargs):
    """NumPy's variadic ``einsum`` (opt_einsum passes no keyword that torch needs)."""
    from .ops import einsum as _einsum

    return _einsum(equation, *operands)


def tensordot(x, y, axes=2):
    """NumPy's ``tensordot(x, y, axes)`` as ``ember.tensordot(x, y, dims=axes)``."""
    from .ops import tensordot as _tensordot

    return _tensordot(x, y, dims=axes)


def _register(dispatch: Any) -> None:
    aliases = getattr(dispatch, "_aliases", None)
    if isinstance(aliases, dict):
        aliases.setdefault("ember", __name__)


class _OptEinsumFinder:
    """A ``sys.meta_path`` finder that only answers for ``opt_einsum.backends.dispatch``."""

    @classmethod
    def find_spec(cls, fullname: str, path=None, target=None):
        if fullname != _DISPATCH:
            return None
        spec = spec_from_later_finders(cls, fullname, path, target)
        if spec is not None and spec.loader is not None:
            spec.loader = AfterExecLoader(spec.loader, _register)
        return spec


def install() -> None:
    """Register ember with opt_einsum now (already imported) or when it is imported."""
    if _DISPATCH in sys.modules:
        _register(sys.modules[_DISPATCH])
    if _OptEinsumFinder not in sys.meta_path:
        sys.meta_path.insert(0, _OptEinsumFinder)
