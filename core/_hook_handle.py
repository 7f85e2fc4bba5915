"""``RemovableHandle``: the handle every ``register_*_hook`` returns (modules, optimizers);
public as ``ember.utils.hooks.RemovableHandle``, as in PyTorch. A leaf module (no ember imports)
so that ``nn`` and ``optim`` can both use it at import time."""

from __future__ import annotations

import itertools
import weakref
from collections import OrderedDict

__all__ = ["RemovableHandle"]

_next_id = itertools.count()


class RemovableHandle:
    r"""A handle that removes a hook from the dict(s) it was registered in.

    Use ``handle.remove()``, or the handle as a context manager.
    """

    def __init__(self, hooks_dict, *, extra_dict=None):
        self.hooks_dict_ref = weakref.ref(hooks_dict)
        self.id = next(_next_id)
        if extra_dict is None:
            extra_dict = []
        elif not isinstance(extra_dict, list):
            extra_dict = [extra_dict]
        self.extra_dict_ref = tuple(weakref.ref(d) for d in extra_dict)

    def remove(self) -> None:
        for ref in (self.hooks_dict_ref, *self.extra_dict_ref):
            d = ref()
            if d is not None and self.id in d:
                del d[self.id]

    def __getstate__(self):
        return (self.hooks_dict_ref(), self.id, tuple(r() for r in self.extra_dict_ref))

    def __setstate__(self, state) -> None:
        hooks, self.id, extras = state
        self.hooks_dict_ref = weakref.ref(OrderedDict() if hooks is None else hooks)
        self.extra_dict_ref = tuple(weakref.ref(d) for d in extras if d is not None)

    def __enter__(self) -> RemovableHandle:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()
