"""``DebugMode`` (torch.utils._debug_mode.DebugMode): a log of the ops a block runs.

torch's DebugMode is a dispatch mode and logs ATen ops (``aten::mm(t: f32[8, 8], ...)``).
ember has no dispatcher below its functions, so this one is a TorchFunctionMode
(core/_function_mode.py) and logs the ember functions and Tensor methods the program calls,
one level deep (``ember::mm(t: f32[8, 8], t: f32[8, 8])  ->  t: f32[8, 8]``): what ``F.linear``
does inside is not listed. A compiled call inside the mode runs eagerly, so eager and compiled
runs give the same log (the tutorial's way of finding where two runs diverge). Supported:
``record_output``, ``record_ids``, ``record_stack_trace``, ``record_nn_module`` (``[nn.Mod]``
markers), ``log_tensor_hashes`` (``"norm"``: the 1-norm) and ``dispatch_hooks(log_hook=...)``.
"""

from __future__ import annotations

import contextlib
import traceback
from collections.abc import Callable, Iterator
from typing import Any

from ember._function_mode import TorchFunctionMode

__all__ = ["DebugMode"]

_HASH: list[tuple[Any, bool]] = []  # (hash_fn, hash_inputs) of active log_tensor_hashes blocks
_LOG_HOOKS: list[Callable] = []
_CORE = __file__.rsplit("/utils/", 1)[0]


def _is_tensor(x: Any) -> bool:
    from ember import Tensor

    return isinstance(x, Tensor)


def _norm(t: Any) -> float:
    return float(t.detach().double().abs().sum()) if t.numel() else 0.0


def _hash(x: Any, fns: Any) -> Any:
    if isinstance(x, (list, tuple)):
        return type(x)(_hash(v, fns) for v in x)
    if not _is_tensor(x):
        return None
    if isinstance(fns, str):
        return _HASHERS[fns](x)
    return tuple(_HASHERS[f](x) for f in fns)


_HASHERS = {"norm": _norm}


class _Call:
    __slots__ = ("name", "args", "kwargs", "output", "depth", "log", "stack", "module")

    def __init__(self, name: str, args: tuple, kwargs: dict, depth: int) -> None:
        self.name, self.args, self.kwargs, self.depth = name, args, kwargs, depth
        self.output, self.log, self.stack, self.module = None, {}, None, None


class DebugMode(TorchFunctionMode):
    """Record the ember calls made inside the block; ``debug_string()`` prints them."""

    def __init__(
        self,
        *,
        record_torchfunction: bool = True,
        record_faketensor: bool = False,
        record_realtensor: bool = True,
        record_tensor_attributes: list[str] | None = None,
        record_nn_module: bool = False,
        store_original_args: bool = False,
        record_stack_trace: bool = False,
        record_output: bool = True,
        record_ids: bool = False,
    ) -> None:
        self.record_output = record_output
        self.record_ids = record_ids
        self.record_stack_trace = record_stack_trace
        self.record_nn_module = record_nn_module
        self.operators: list[_Call] = []
        self._ids: dict[int, int] = {}
        self._keep: list[Any] = []  # tensors named by id stay alive while the log lives
        self._depth = 0
        self._handles: list[Any] = []
        self._mods: list[tuple[Any, str]] = []

    # ---- recording ----------------------------------------------------------------------
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        call = _Call(_name(func), args, kwargs, self._depth)
        if self.record_stack_trace:
            call.stack = _user_frame()
        if _HASH and _HASH[-1][1]:
            call.log["input_hash"] = (_hash(args, _HASH[-1][0]), {})
        result = func(*args, **kwargs)
        if self.record_output:
            call.output = result
        for hook in _LOG_HOOKS:
            call.log.update(hook(func, types, args, kwargs, result) or {})
        if _HASH:
            call.log["hash"] = _hash(result, _HASH[-1][0])
        self.operators.append(call)
        return result

    def __enter__(self) -> DebugMode:
        if self.record_nn_module:
            from ember.nn.modules.module import (
                register_module_forward_hook,
                register_module_forward_pre_hook,
            )

            self._handles = [
                register_module_forward_pre_hook(self._enter_module),
                register_module_forward_hook(self._exit_module),
            ]
        return super().__enter__()

    def __exit__(self, *exc: Any) -> None:
        super().__exit__(*exc)
        for h in self._handles:
            h.remove()
        self._handles = []

    def _enter_module(self, module: Any, args: Any) -> None:
        # torch's path: the outermost module's class, then attribute names (``Bar.abc.l1``)
        path = type(module).__name__
        if self._mods:
            parent, ppath = self._mods[-1]
            child = next((n for n, m in parent._modules.items() if m is module), None)
            path = f"{ppath}.{child}" if child is not None else path
        call = _Call("", (), {}, self._depth)
        call.module = path
        self.operators.append(call)
        self._mods.append((module, path))
        self._depth += 1

    def _exit_module(self, module: Any, args: Any, output: Any) -> None:
        if self._mods:
            self._mods.pop()
        self._depth = max(0, self._depth - 1)

    # ---- printing -----------------------------------------------------------------------
    def _t(self, x: Any) -> Any:
        if isinstance(x, (list, tuple)):
            inner = ", ".join(str(self._t(v)) for v in x)
            return f"[{inner}]"
        if not _is_tensor(x):
            return repr(x)
        dt = {"float32": "f32", "float64": "f64", "float16": "f16", "bfloat16": "bf16"}.get(
            x.dtype.name, x.dtype.name
        )
        tag = "t"
        if self.record_ids:
            if id(x) not in self._ids:
                self._ids[id(x)] = len(self._ids)
                self._keep.append(x)
            tag = f"t${self._ids[id(x)]}"
        return f"{tag}: {dt}{list(x.shape)}"

    def debug_string(self, show_stack_trace: bool = False) -> str:
        """One line per call: ``ember::name(args)  ->  output  # {log}``, indented by module."""
        lines = []
        for c in self.operators:
            pad = "    " + "  " * c.depth
            if c.module is not None:
                lines.append(f"{pad}[nn.Mod] {c.module}")
                continue
            if show_stack_trace and c.stack:
                lines.append(f"{pad}# {c.stack}")
            parts = [str(self._t(a)) for a in c.args]
            parts += [f"{k}={self._t(v)}" for k, v in c.kwargs.items()]
            line = f"{pad}ember::{c.name}({', '.join(parts)})"
            if self.record_output and c.output is not None:
                line += f"  ->  {self._t(c.output)}"
            if c.log:
                line += f"  # {c.log}"
            lines.append(line)
        return "\n".join(lines)

    # ---- torch's class-level helpers ----------------------------------------------------
    @staticmethod
    @contextlib.contextmanager
    def log_tensor_hashes(hash_fn: Any = "norm", hash_inputs: bool = False) -> Iterator[None]:
        """Add each call's output hash (and, with ``hash_inputs``, its inputs') to the log."""
        for f in [hash_fn] if isinstance(hash_fn, str) else hash_fn:
            if f not in _HASHERS:
                raise ValueError(f"log_tensor_hashes: unknown hash_fn {f!r}; ember has 'norm'")
        _HASH.append((hash_fn, hash_inputs))
        try:
            yield
        finally:
            _HASH.pop()

    @staticmethod
    @contextlib.contextmanager
    def dispatch_hooks(
        log_hook: Callable | None = None, record_hook: Callable | None = None
    ) -> Iterator[None]:
        """``log_hook(func, types, args, kwargs, result)`` returns a dict shown on each line;
        ``record_hook`` is called the same way and its result dropped."""
        hooks = [h for h in (log_hook, record_hook) if h is not None]
        if record_hook is not None:
            hooks[-1] = lambda *a, _h=record_hook: (_h(*a), None)[1]
        _LOG_HOOKS.extend(hooks)
        try:
            yield
        finally:
            for h in hooks:
                _LOG_HOOKS.remove(h)


def _name(func: Any) -> str:
    name = getattr(func, "__name__", None) or repr(func)
    return name.strip("_") if name.startswith("__") else name


def _user_frame() -> str | None:
    for fr in reversed(traceback.extract_stack()[:-2]):
        if not fr.filename.startswith(_CORE) and "contextlib" not in fr.filename:
            return f"File: {fr.filename}:{fr.lineno} in {fr.name}, code: {(fr.line or '').strip()}"
    return None
