"""ember's functions as class attributes of a ``Module`` subclass stay plain functions.

``torch.tanh``, ``torch.cat``, ``F.gelu`` and most of torch's functions are builtins, which do
not bind as methods: ``class Block(nn.Module): act = torch.tanh`` and then ``self.act(x)`` calls
``tanh(x)``. ember's functions are Python functions, which bind (``tanh(self, x)``, a
``TypeError``). So a ``Module`` subclass whose class body holds one of ember's public functions
gets it wrapped in ``staticmethod`` when the class is made: one look at the class's own
attributes, nothing per call. (torch's Python-level functions, such as ``F.relu``, would bind;
unbinding them too only turns torch's error into a working call.) Classes that are not modules
keep Python's rule.
"""

from __future__ import annotations

import sys
from types import FunctionType

# the namespaces users take functions from as ``torch.X`` / ``F.X``
_NAMESPACES = ("ember", "ember.nn.functional", "ember.special", "ember.linalg", "ember.fft")
_public: dict[int, FunctionType] | None = None


def _public_functions() -> dict[int, FunctionType]:
    global _public
    if _public is None:
        found: dict[int, FunctionType] = {}
        for name in _NAMESPACES:
            module = sys.modules.get(name)
            if module is None:  # not imported yet: nobody took a function from it
                continue
            for value in vars(module).values():
                if type(value) is FunctionType:
                    found[id(value)] = value
        if "ember.fft" not in sys.modules:  # built before ember finished importing: retry
            return found
        _public = found
    return _public


class UnbindPublicFunctions:
    """Mixin for ``Module``: see the module docstring."""

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if (cls.__module__ or "").startswith("ember."):  # ember's own modules: written for ember
            return
        public = None
        for name, value in list(vars(cls).items()):
            if type(value) is not FunctionType or not (value.__module__ or "").startswith("ember"):
                continue
            if public is None:
                public = _public_functions()
            if public.get(id(value)) is value:
                setattr(cls, name, staticmethod(value))
