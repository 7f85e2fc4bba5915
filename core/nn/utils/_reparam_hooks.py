"""What the hook-based reparametrizations (``weight_norm``, ``spectral_norm``) share: one
forward pre-hook object of their class per parameter name, found by kind and name."""

from __future__ import annotations

from ..module import Module

__all__: list[str] = []


def _check_unhooked(module: Module, kind: type, name: str, what: str) -> None:
    """Raise if ``module`` already has a ``kind`` hook for parameter ``name``."""
    for hook in module._forward_pre_hooks.values():
        if isinstance(hook, kind) and hook.name == name:
            raise RuntimeError(f"Cannot register two {what} hooks on the same parameter {name}")


def _remove_hook(module: Module, kind: type, name: str, what: str):
    """Undo and unregister ``module``'s ``kind`` hook for parameter ``name``; return it."""
    for k, hook in module._forward_pre_hooks.items():
        if isinstance(hook, kind) and hook.name == name:
            hook.remove(module)
            del module._forward_pre_hooks[k]
            return hook
    raise ValueError(f"{what} of '{name}' not found in {module}")
