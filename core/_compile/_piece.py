"""A piece of a function split at a graph break (``_resume.py``): the compiled function that
runs the code before or after the break.

Its arguments include the Python values computed before the break, such as a float from
``.item()`` that the code after it reads. Like torch (``specialize_float`` and
``specialize_int`` False, automatic dynamic), a piece specializes on such an ``int``/``float``
first (the value is baked into the graph and keyed by value) and, when a later call brings
another value for it, recompiles once with the scalar as a graph input keyed by its type,
so further values reuse that graph. Where the code branches on the value (the symbolic
capture breaks), the piece goes back to specializing on it.
"""

from __future__ import annotations

from typing import Any

from ._frame import CompiledFunction

__all__ = ["PieceFunction"]

_NUMBERS = (int, float)  # not bool: ``type(True) is bool``


class PieceFunction(CompiledFunction):
    """A :class:`CompiledFunction` whose ``int``/``float`` arguments go symbolic after one
    recompile on their value (module docstring)."""

    def reset(self) -> None:
        super().reset()
        self._sym_scalars: frozenset[str] = frozenset()
        self._sym_failed = False

    def _key(self, values: list, dynamic: bool) -> tuple:
        key = super()._key(values, dynamic)
        if not self._sym_scalars:
            return key
        grad, training, args = key
        args = tuple(
            ("S", type(v)) if n in self._sym_scalars and type(v) in _NUMBERS else a
            for n, v, a in zip(self._sig.parameters, values, args)
        )
        return grad, training, args

    def _miss(self, key: tuple, values: list, bound: Any) -> Any:
        changed = self._changed_scalars(key, values) if not self._sym_failed else set()
        if not changed:
            return super()._miss(key, values, bound)
        self._sym_scalars = self._sym_scalars | changed
        key = self._key(values, self._dynamic_shapes)
        hit = self._lookup(key, values)
        if hit is not None:
            return hit
        entry = super()._miss(key, values, bound)
        if entry is None or entry.break_reason is None:
            return entry
        # the code needs the value (control flow on it): specialize on it again, as torch does
        self._cache.pop(key, None)
        self.entries.remove(entry)
        self.break_reasons.remove(entry.break_reason)
        self._compiles -= 1
        self._sym_scalars, self._sym_failed = frozenset(), True
        return super()._miss(self._key(values, self._dynamic_shapes), values, bound)

    def _changed_scalars(self, key: tuple, values: list) -> set[str]:
        """The numeric arguments whose value alone differs from a compiled key's."""
        grad, training, args = key
        names = list(self._sig.parameters)
        for old_grad, old_training, old in self._cache:
            if (old_grad, old_training) != (grad, training) or len(old) != len(args):
                continue
            diff = [i for i, (a, b) in enumerate(zip(old, args)) if a != b]
            if diff and all(type(values[i]) in _NUMBERS for i in diff):
                return {names[i] for i in diff}
        return set()
