"""The compile stance (``ember.compiler.set_stance``, torch.compiler.set_stance).

One process-wide setting read by every ``ember.compile`` object on each call:

- ``"default"``: compile, recompile on guard misses (up to ``config.recompile_limit``).
- ``"force_eager"``: ignore ``ember.compile``; every call runs the original function.
- ``"eager_on_recompile"``: use a cached compiled entry that fits; where a call would
  recompile, run it eagerly instead.
- ``"fail_on_recompile"``: where a call would recompile, raise (torch's message).
- ``"eager_then_compile"`` / ``"aot_eager_then_compile"``: each compiled object runs its first
  call under this stance eagerly and compiles from the second.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

STANCES = (
    "default",
    "force_eager",
    "eager_on_recompile",
    "fail_on_recompile",
    "eager_then_compile",
    "aot_eager_then_compile",
)

_current = "default"


def current() -> str:
    """The stance in force."""
    return _current


def swap(stance: str) -> str:
    """Make ``stance`` current; returns the one it replaced."""
    global _current
    if stance not in STANCES:
        raise ValueError(
            f"set_stance: unknown stance {stance!r}; expected one of "
            f"{', '.join(map(repr, STANCES))}"
        )
    prev, _current = _current, stance
    return prev


def eager_now(cf: Any) -> bool:
    """Whether the compiled object ``cf`` runs this call eagerly, before looking at its cache."""
    if _current == "force_eager":
        return True
    if _current in ("eager_then_compile", "aot_eager_then_compile"):
        if not getattr(cf, "_stance_first_seen", False):
            cf._stance_first_seen = True
            return True
    return False


def eager_on_miss(cf: Any, why: Callable[[], str]) -> bool:
    """Called where ``cf`` would compile a new entry: True runs the call eagerly instead;
    raises under ``"fail_on_recompile"``. A first compile is not a recompile."""
    if cf._compiles == 0 or _current not in ("eager_on_recompile", "fail_on_recompile"):
        return False
    if _current == "eager_on_recompile":
        return True
    raise RuntimeError(
        "Detected recompile when torch.compile stance is 'fail_on_recompile'. "
        f"function name: {cf._name()!r}\n"
        f"    triggered by the following guard failure(s):\n    - {why()}"
    )
