"""``ember.compiler`` (torch.compiler): reset, disable, is_compiling / is_exporting,
allow_in_graph, set_stance, the default backend, wrap_numpy, nested_compile_region,
substitute_in_graph, cudagraph_mark_step_begin, save_cache_artifacts / load_cache_artifacts."""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
import logging
from collections.abc import Callable
from typing import Any

__all__ = [
    "allow_in_graph",
    "assume_constant_result",
    "cudagraph_mark_step_begin",
    "disable",
    "get_default_backend",
    "is_compiling",
    "is_dynamo_compiling",
    "is_exporting",
    "list_backends",
    "load_cache_artifacts",
    "nested_compile_region",
    "reset",
    "save_cache_artifacts",
    "set_default_backend",
    "set_stance",
    "substitute_in_graph",
    "wrap_numpy",
]


def reset() -> None:
    """Drop every compiled graph of every ``ember.compile`` object; the next calls recompile."""
    from ember._compile._frame import reset_all

    reset_all()


def _capturing() -> bool:
    # ember.compile's own capture (not export): where graph breaks and stances apply
    from ember._compile._capture import is_compiling as _is

    return _is()


def is_compiling() -> bool:
    """True while ember.compile captures a graph or ember.export traces a program (code may
    take a trace-friendly path), as torch's."""
    return _capturing() or _exporting[0] > 0


is_dynamo_compiling = is_compiling

_exporting = [0]  # ember.export's capture depth (core/export/_export.py)


def is_exporting() -> bool:
    """True while ``ember.export.export`` traces a program."""
    return _exporting[0] > 0


def disable(
    fn: Callable | None = None, recursive: bool = True, *, reason: str | None = None
) -> Any:
    """Run ``fn`` eagerly: a compiled region calling it breaks its graph there.

    Given an ``ember.compile`` result, returns the original callable. Usable as
    ``@ember.compiler.disable`` or ``@ember.compiler.disable(reason=...)``.
    """
    if fn is None:
        return functools.partial(disable, recursive=recursive, reason=reason)
    from ember._compile import OptimizedModule
    from ember._compile._capture import GraphBreak, _user_line

    if isinstance(fn, OptimizedModule):
        return fn._orig_mod
    orig = getattr(fn, "_torchdynamo_orig_callable", None)
    if orig is not None:
        return orig
    if not callable(fn):
        raise TypeError(f"disable: expected a callable, got {type(fn).__name__}")
    name = getattr(fn, "__qualname__", repr(fn))

    @functools.wraps(fn)
    def eager_only(*args, **kwargs):
        if _capturing():
            why = f" ({reason})" if reason else ""
            raise GraphBreak(f"call to {name}, marked ember.compiler.disable{why}", _user_line())
        return fn(*args, **kwargs)

    eager_only._ember_compile_disabled = True
    return eager_only


def allow_in_graph(fn: Callable) -> Callable:
    """Record calls to ``fn`` (a module-level function) as one graph node instead of tracing
    into it; at run time the node calls ``fn`` itself."""
    from ember._compile._capture import _allowed_in_graph

    if not callable(fn):
        raise TypeError(f"allow_in_graph: expected a callable, got {type(fn).__name__}")
    if fn not in _allowed_in_graph:
        _allowed_in_graph.append(fn)
    return fn


def assume_constant_result(fn: Callable) -> Callable:
    """Mark ``fn`` as returning a constant for the compiler to fold (torch's hint for Dynamo).

    ember's capture runs Python functions as they are, so ``fn`` comes back unchanged."""
    if not callable(fn):
        raise TypeError(f"assume_constant_result: expected a callable, got {type(fn).__name__}")
    return fn


class set_stance:  # noqa: N801 -- torch's name; a function, context manager and decorator
    """Change how every ``ember.compile`` object behaves, without recompiling
    (torch.compiler.set_stance).

    Args:
        stance: ``"default"``; ``"force_eager"`` (run the original functions);
            ``"eager_on_recompile"`` (use compiled code that fits, run eagerly where a call would
            recompile); ``"fail_on_recompile"`` (raise where a call would recompile);
            ``"eager_then_compile"`` / ``"aot_eager_then_compile"`` (each compiled object runs
            its first call eagerly).
        skip_guard_eval_unsafe: accepted; ember always checks its guards.
        force_backend: not supported (ember has one compiler backend); must be ``None``.

    Called plainly it sets the stance until the next call; as a context manager it restores
    the previous stance on exit; as a decorator the stance holds while the function runs.
    Changing the stance inside a compiled region raises ``AssertionError`` ("Attempt to trace
    forbidden callable"), as torch does.
    """

    def __init__(
        self,
        stance: str = "default",
        *,
        skip_guard_eval_unsafe: bool = False,
        force_backend: Any = None,
    ) -> None:
        from ember._compile import _stance
        from ember._compile._capture import ForbiddenCallable

        if _capturing():  # torch: an AssertionError that ends the compile (no graph break)
            raise ForbiddenCallable(set_stance)
        if force_backend is not None:
            raise NotImplementedError(
                "set_stance: force_backend is not supported by ember.compile (one backend)"
            )
        self.stance = stance
        self.skip_guard_eval_unsafe = skip_guard_eval_unsafe
        self.prev = _stance.swap(stance)

    def __enter__(self) -> set_stance:
        from ember._compile import _stance

        _stance.swap(self.stance)
        return self

    def __exit__(self, *exc: Any) -> None:
        from ember._compile import _stance

        _stance.swap(self.prev)

    def __call__(self, fn: Callable) -> Callable:
        from ember._compile import _stance

        if not callable(fn):
            raise TypeError(f"set_stance: expected a function to decorate, got {fn!r}")
        _stance.swap(self.prev)  # as a decorator it holds only while fn runs
        stance = self.stance

        @functools.wraps(fn)
        def with_stance(*args: Any, **kwargs: Any) -> Any:
            from ember._compile._capture import ForbiddenCallable

            if _capturing():
                raise ForbiddenCallable(fn)
            prev = _stance.swap(stance)
            try:
                return fn(*args, **kwargs)
            finally:
                _stance.swap(prev)

        return with_stance


# ---- the default backend, backends, and the decorators of torch.compiler --------------------
_default_backend: list = ["ember"]
_DEBUG_BACKENDS = ("eager", "aot_eager")


def set_default_backend(backend: str | Callable | None) -> None:
    """The backend ``ember.compile`` uses when none is given (``None`` restores ``"ember"``)."""
    from ember._compile import _check

    backend = "ember" if backend is None else backend
    _check(False, None, backend, None, None)  # an unknown name fails here, naming the choices
    _default_backend[0] = backend


def get_default_backend() -> str | Callable:
    """The backend ``ember.compile`` uses when none is given."""
    return _default_backend[0]


def list_backends(exclude_tags: tuple[str, ...] | None = ("debug", "experimental")) -> list[str]:
    """The backend names ``ember.compile`` accepts (``"inductor"`` is ember's own executor
    under torch's name); ``"eager"`` and ``"aot_eager"`` carry the ``debug`` tag."""
    from ember._compile import _BACKENDS

    skip = set(exclude_tags or ())
    return sorted(b for b in _BACKENDS if not ("debug" in skip and b in _DEBUG_BACKENDS))


def cudagraph_mark_step_begin() -> None:
    """Mark the start of a training or inference step for ``mode="reduce-overhead"``.

    torch's cudagraph trees use the mark to know that the previous step's outputs may be
    overwritten. ember's CUDA-graph runners overwrite their static outputs on every replay
    whether or not a step is marked (clone an output to keep it), so there is nothing to
    record; the call is accepted so that such training loops run unchanged."""


def wrap_numpy(fn: Callable) -> Callable:
    """Turn a function on NumPy arrays into one on tensors: tensor arguments (nested in
    lists, tuples and dicts too) arrive as arrays, array results return as tensors on the
    first tensor argument's device. Under ``ember.compile`` the call is a graph break (the
    arrays are host data)."""
    import numpy as np

    from ember.tensor import Tensor
    from ember.utils._pytree import tree_map

    @functools.wraps(fn)
    def on_tensors(*args: Any, **kwargs: Any) -> Any:
        device = []

        def to_np(v: Any) -> Any:
            if isinstance(v, Tensor):
                device.append(v.device)
                return v.detach().cpu().numpy()
            return v

        args, kwargs = tree_map(to_np, (args, kwargs))
        out = fn(*args, **kwargs)

        def to_tensor(v: Any) -> Any:
            if isinstance(v, np.ndarray):  # (NumPy scalars stay scalars, as torch's)
                import ember

                t = ember.from_numpy(v)
                return t.to(device[0]) if device else t
            return v

        return tree_map(to_tensor, out)

    return on_tensors


def nested_compile_region(
    fn: Callable | None = None,
    *,
    options: Any = None,
    max_reuse_entries: int = 8,
    reuse_hash_fn: Any = None,
) -> Any:
    """Mark ``fn`` as a region torch compiles once and reuses per call site. ember's capture
    traces a call's ops into the caller's graph, and regional compilation already shares one
    capture between modules of one structure (docs/compile.md), so the region runs as
    written: the decorator returns ``fn`` itself (usable bare or with arguments)."""
    if fn is None:
        return functools.partial(
            nested_compile_region,
            options=options,
            max_reuse_entries=max_reuse_entries,
            reuse_hash_fn=reuse_hash_fn,
        )
    if not callable(fn):
        raise TypeError(f"nested_compile_region: expected a callable, got {type(fn).__name__}")
    return fn


def substitute_in_graph(
    original_fn: Callable,
    *,
    can_constant_fold_through: bool = False,
    skip_signature_check: bool = False,
) -> Callable:
    """Register a Python stand-in for ``original_fn`` (torch uses it to trace C functions).
    ember's capture runs Python functions as they are, so the stand-in is only checked and
    returned: its signature must match ``original_fn``'s unless ``skip_signature_check``."""
    import inspect

    if not callable(original_fn):
        raise TypeError(f"substitute_in_graph expects a function but got {original_fn!r}")

    def register(polyfill: Callable) -> Callable:
        if not skip_signature_check:
            try:
                want, got = inspect.signature(original_fn), inspect.signature(polyfill)
            except (TypeError, ValueError):
                want = got = None
            if want is not None and str(want) != str(got):
                raise TypeError(
                    f"Signature mismatch between {original_fn} and {polyfill}: {want} != {got}"
                )
        polyfill.__torch_dynamo_original__ = original_fn
        polyfill.__torch_dynamo_can_constant_fold_through__ = can_constant_fold_through
        return polyfill

    return register


# ---- compile caching (torch.compiler.save_cache_artifacts / load_cache_artifacts) -----------
# ember keeps no compiled code to carry between processes: a capture is a Python trace plus
# generated Python (milliseconds to tens of milliseconds per graph, and one per module class
# under regional compilation), so there is nothing to restore. The artifacts name what this
# process compiled; loading them checks the format and restores nothing. The TORCHINDUCTOR_*
# cache variables have no effect for the same reason.
_CACHE_MAGIC = b"ember-compile-cache/1\n"


@dataclasses.dataclass
class CacheInfo:
    """What a cache blob holds (torch.compiler._cache.CacheInfo): ``artifacts["ember"]`` lists
    the compiled functions and modules by name."""

    artifacts: dict[str, list[str]] = dataclasses.field(
        default_factory=lambda: collections.defaultdict(list)
    )


def save_cache_artifacts() -> tuple[bytes, CacheInfo] | None:
    """``(bytes, CacheInfo)`` naming what this process compiled, or ``None`` when nothing was
    (torch's return values; see the note above on what ember keeps)."""
    from ember._compile._frame import _REGISTRY

    names = sorted(cf._name() for cf in list(_REGISTRY) if cf.entries)
    if not names:
        return None
    info = CacheInfo()
    info.artifacts["ember"] = names
    return _CACHE_MAGIC + json.dumps({"ember": names}).encode(), info


def load_cache_artifacts(serialized_artifacts: bytes) -> CacheInfo | None:
    """Read a blob from :func:`save_cache_artifacts`: its ``CacheInfo``, or ``None`` (with a
    warning in the log, as torch) when the bytes are not one."""
    if not isinstance(serialized_artifacts, (bytes, bytearray)):
        raise TypeError(
            "load_cache_artifacts: expected bytes, got " + type(serialized_artifacts).__name__
        )
    data = bytes(serialized_artifacts)
    try:
        if not data.startswith(_CACHE_MAGIC):
            raise ValueError("not an ember compile-cache blob")
        names = json.loads(data[len(_CACHE_MAGIC) :])["ember"]
    except (ValueError, KeyError, TypeError) as e:
        logging.getLogger("ember.compiler").warning("Failed to read cache artifacts: %s", e)
        return None
    info = CacheInfo()
    info.artifacts["ember"] = list(names)
    return info
