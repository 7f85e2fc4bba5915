"""``torch.nn.utils._named_member_accessor``: read, put and swap a module's tensors by their
dotted names (tensordict's ``to_module`` and functional calls go through ``swap_tensor``).

Like PyTorch's, the setters write ``module._parameters``/``_buffers`` directly, so a plain
tensor may take a parameter's place (the point of a functional call).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ...tensor import Tensor
from ..module import Module

__all__ = ["NamedMemberAccessor", "set_tensor", "swap_submodule", "swap_tensor"]

_MISSING: Any = object()


def _check_name(name: str) -> None:
    if "." in name:
        raise KeyError('tensor name can\'t contain "."')
    if name == "":
        raise KeyError('tensor name can\'t be empty string ""')


def set_tensor(module: Module, name: str, tensor: Tensor) -> None:
    r"""Put ``tensor`` at ``module.<name>`` (``name`` without dots)."""
    swap_tensor(module, name, tensor)


def swap_tensor(
    module: Module, name: str, tensor: Tensor | None, allow_missing: bool = False
) -> Any:
    r"""Put ``tensor`` at ``module.<name>`` (a parameter, buffer or plain attribute; ``name``
    without dots) and return what was there. ``_MISSING`` as ``tensor`` deletes the entry."""
    if not isinstance(module, Module):
        raise TypeError(f"{module} is not an instance of ember.nn.Module")
    if tensor is not _MISSING and tensor is not None and not isinstance(tensor, Tensor):
        raise TypeError(f"{tensor} is not an instance of ember.Tensor")
    _check_name(name)
    for store in (module._parameters, module._buffers):
        if name in store:
            orig = store[name]
            if tensor is _MISSING:
                del store[name]
            else:
                store[name] = tensor
            return orig
    if hasattr(module, name):
        orig = getattr(module, name)
    elif allow_missing:
        orig = _MISSING
    else:
        raise AttributeError(f"{module._get_name()} has no attribute `{name}`")
    if orig is not _MISSING and orig is not None and not isinstance(orig, Tensor):
        raise TypeError(f"attribute `{name}`: {orig} is not an instance of ember.Tensor")
    if tensor is not _MISSING:
        setattr(module, name, tensor)
    elif hasattr(module, name):
        delattr(module, name)
    return orig


def swap_submodule(module: Module, name: str, submodule: Module) -> Module:
    r"""Put ``submodule`` at ``module.<name>`` and return the one that was there."""
    if not isinstance(module, Module):
        raise TypeError(f"{module} is not an instance of ember.nn.Module")
    if not isinstance(submodule, Module):
        raise TypeError(f"{submodule} is not an instance of ember.nn.Module")
    _check_name(name)
    if name not in module._modules:
        raise KeyError(f"submodule {name} does not exist")
    orig = module._modules[name]
    if not isinstance(orig, Module):
        raise TypeError(f"{name} attribute is not an instance of ember.nn.Module")
    module._modules[name] = submodule
    return orig


class NamedMemberAccessor:
    r"""Get, set, delete and swap the tensors of ``module`` by dotted names
    (``"encoder.0.weight"``); submodules are looked up once and cached."""

    def __init__(self, module: Module) -> None:
        if not isinstance(module, Module):
            raise TypeError(f"{module} is not an instance of ember.nn.Module")
        self.module = module
        self.memo: dict[str, Module] = {}

    def get_submodule(self, name: str) -> Module:
        if not name:
            return self.module
        if name in self.memo:
            return self.memo[name]
        prefix, dot, attr = name.rpartition(".")
        parent = self.get_submodule(prefix) if dot else self.module
        try:
            sub = getattr(parent, attr)
        except AttributeError as e:
            raise AttributeError(f"{parent._get_name()} has no attribute `{attr}`") from e
        if not isinstance(sub, Module):
            raise TypeError(f"{sub} is not an instance of ember.nn.Module")
        self.memo[name] = sub
        return sub

    def _split(self, name: str) -> tuple[Module, str]:
        prefix, _, attr = name.rpartition(".")
        return self.get_submodule(prefix), attr

    def swap_submodule(self, path: str, value: Module) -> Module:
        prefix, _, attr = path.rpartition(".")
        return swap_submodule(self.get_submodule(prefix), attr, value)

    def get_tensor(self, name: str) -> Tensor:
        module, attr = self._split(name)
        if not hasattr(module, attr):
            raise AttributeError(f"{module._get_name()} has no attribute `{name}`")
        tensor = getattr(module, attr)
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"{tensor} is not an instance of ember.Tensor")
        return tensor

    def set_tensor(self, name: str, value: Tensor) -> None:
        module, attr = self._split(name)
        set_tensor(module, attr, value)

    def del_tensor(self, name: str) -> None:
        module, attr = self._split(name)
        if not hasattr(module, attr):
            raise AttributeError(f"{module._get_name()} has no attribute `{attr}`")
        delattr(module, attr)

    def swap_tensor(self, name: str, value: Tensor, allow_missing: bool = False) -> Tensor:
        module, attr = self._split(name)
        return swap_tensor(module, attr, value, allow_missing=allow_missing)

    def get_tensors(self, names: Iterable[str]) -> list[Tensor]:
        return [self.get_tensor(n) for n in names]

    def set_tensors(self, names: Iterable[str], values: Iterable[Tensor]) -> None:
        names, values = list(names), list(values)
        if len(names) != len(values):
            raise ValueError(f"got {len(names)} names and {len(values)} values")
        for n, v in zip(names, values):
            self.set_tensor(n, v)

    def set_tensors_dict(self, named_tensors: dict[str, Tensor]) -> None:
        for n, v in named_tensors.items():
            self.set_tensor(n, v)

    def del_tensors(self, names: Iterable[str]) -> None:
        for n in names:
            self.del_tensor(n)

    def swap_tensors(
        self, names: Iterable[str], values: Iterable[Tensor], allow_missing: bool = False
    ) -> list[Tensor]:
        names, values = list(names), list(values)
        if len(names) != len(values):
            raise ValueError(f"got {len(names)} names and {len(values)} values")
        return [self.swap_tensor(n, v, allow_missing) for n, v in zip(names, values)]

    def swap_tensors_dict(
        self, named_tensors: dict[str, Tensor], allow_missing: bool = False
    ) -> tuple[dict[str, Tensor], list[str]]:
        orig, missing = {}, []
        try:
            for n, v in named_tensors.items():
                t = self.swap_tensor(n, v, allow_missing=True)
                if t is _MISSING:
                    missing.append(n)
                orig[n] = t
        except Exception:
            for n, t in orig.items():  # put everything back before raising
                self.swap_tensor(n, t, allow_missing=True)
            raise
        if missing and not allow_missing:
            for n, t in orig.items():
                self.swap_tensor(n, t, allow_missing=True)
            raise RuntimeError(f"Missing key(s): {', '.join(map(repr, missing))}.")
        return orig, missing

    def check_keys(self, keys: Iterable[str]) -> tuple[list[str], list[str]]:
        r"""``(missing, unexpected)`` of ``keys`` against the module's tensor names."""
        keys = set(keys)
        valid = {n for n, _ in self.named_tensors(remove_duplicate=False)}
        return sorted(valid - keys), sorted(keys - valid)

    def named_parameters(self, remove_duplicate: bool = True) -> Iterable[tuple[str, Tensor]]:
        yield from self.module.named_parameters(remove_duplicate=remove_duplicate)

    def named_buffers(self, remove_duplicate: bool = True) -> Iterable[tuple[str, Tensor]]:
        yield from self.module.named_buffers(remove_duplicate=remove_duplicate)

    def named_tensors(self, remove_duplicate: bool = True) -> Iterable[tuple[str, Tensor]]:
        yield from self.named_parameters(remove_duplicate)
        yield from self.named_buffers(remove_duplicate)

    def named_modules(self, remove_duplicate: bool = True) -> Iterable[tuple[str, Module]]:
        yield from self.module.named_modules(remove_duplicate=remove_duplicate)
