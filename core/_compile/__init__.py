"""``ember.compile``: capture a Module or function as an ember.fx graph and run it planned.

See docs/compile.md. The pieces: ``_capture`` (a strict ember.fx trace: graph breaks),
``_frame`` (guards, the cache of compiled entries, recompilation, eager fallback) and
``_executor`` (the graph as one straight-line Python function; buffer reuse without autograd).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from ._capture import GraphBreak, Unsupported, is_compiling
from ._frame import CompiledFunction, config

__all__ = [
    "OptimizedModule",
    "Unsupported",
    "compile",
    "compile_forward",
    "config",
    "is_compiling",
]

_BACKENDS = ("ember", "inductor", "eager", "aot_eager")
_MODES = (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def _module_base():
    from ember.nn import Module

    return Module


class OptimizedModule(_module_base()):
    """A compiled Module (torch._dynamo.eval_frame.OptimizedModule).

    The original module is the submodule ``_orig_mod``, so ``state_dict`` keys carry the
    ``_orig_mod.`` prefix as torch's do; other attributes are read from it.
    """

    def __init__(self, mod, compiled: CompiledFunction) -> None:
        super().__init__()
        self._orig_mod = mod
        object.__setattr__(self, "_compiled", compiled)

    def forward(self, *args, **kwargs):
        return self._compiled(*args, **kwargs)

    @property
    def dynamo_ctx(self) -> Callable[[Callable], Callable]:
        """torch's ``OptimizedModule.dynamo_ctx``: compiles a function with this module's
        settings (Lightning's ``from_compiled`` compiles the step methods with it)."""
        return functools.partial(compile, **self.__dict__.get("_compile_opts", {}))

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["_orig_mod"], name)

    def __repr__(self) -> str:
        return f"OptimizedModule(\n  (_orig_mod): {self._orig_mod!r}\n)"


def _check(fullgraph, dynamic, backend, mode, options) -> None:
    if not isinstance(fullgraph, bool):
        raise TypeError(f"compile(): fullgraph must be a bool, got {type(fullgraph).__name__}")
    if dynamic not in (None, True, False):
        raise TypeError(f"compile(): dynamic must be None, True or False, got {dynamic!r}")
    if not callable(backend) and backend not in _BACKENDS:
        raise ValueError(
            f"compile(): unknown backend {backend!r}; expected one of "
            f"{', '.join(map(repr, _BACKENDS))} or a callable(gm, example_inputs)"
        )
    if mode not in _MODES:
        raise RuntimeError(
            f"Unrecognized mode={mode!r}, should be one of: {', '.join(m for m in _MODES if m)}"
        )
    if mode is not None and options is not None:
        raise RuntimeError(
            "Either mode or options can be specified, but both can't be specified at the same time."
        )
    if options is not None and not isinstance(options, dict):
        raise TypeError(f"compile(): options must be a dict, got {type(options).__name__}")


def _compiled_class(dynamic: bool | None) -> type:
    # torch's automatic dynamic for Python numbers (specialize_int / specialize_float False):
    # an int or float argument is baked in first and, when a later call brings another value,
    # becomes a graph input after one recompile (a Lightning step's batch_idx compiles twice,
    # not once per batch); dynamic=False specializes on every value, as torch's
    if dynamic is False:
        return CompiledFunction
    from ._piece import PieceFunction

    return PieceFunction


def compile(
    model: Callable | None = None,
    *,
    fullgraph: bool = False,  # noqa: A001
    dynamic: bool | None = None,
    backend: str | Callable | None = None,
    mode: str | None = None,
    options: dict[str, Any] | None = None,
    disable: bool = False,
) -> Any:
    """Compile a Module or function (torch.compile).

    Args:
        model: a Module (returns an :class:`OptimizedModule`) or a function; ``None`` returns a
            decorator.
        fullgraph: raise :class:`Unsupported` at the first graph break instead of running that
            call signature eagerly.
        dynamic: ``True`` compiles shape-generic graphs at once; ``False`` specializes on the
            sizes (Python ints while capturing) and recompiles for every new shape; ``None``
            (default) specializes, and after one recompile goes shape-generic where ember's
            symbolic sizes can express the code (otherwise it keeps specializing).
        backend: ``None`` takes ``ember.compiler.get_default_backend()`` (``"ember"`` unless
            set); ``"ember"`` (``"inductor"``: the same) runs the planned executor; ``"eager"``
            (``"aot_eager"``) runs the captured graph with no optimisation; a callable gets
            ``(GraphModule, example_inputs)`` and returns the function to run.
        mode: ``"reduce-overhead"`` replays calls with autograd off on CUDA inputs as a CUDA
            graph (CuPy stream capture, static input buffers); elsewhere, and for the other
            modes, the same executor runs.
        options: backend options (accepted, unused by the built-in backends).
        disable: return ``model`` unchanged.
    """
    if backend is None:
        from ember.compiler import get_default_backend

        backend = get_default_backend()
    _check(fullgraph, dynamic, backend, mode, options)
    if model is None:

        def decorator(fn):
            return compile(
                fn,
                fullgraph=fullgraph,
                dynamic=dynamic,
                backend=backend,
                mode=mode,
                options=options,
                disable=disable,
            )

        return decorator
    if not callable(model):
        raise TypeError(f"compile(): expected a Module or a callable, got {type(model).__name__}")
    if disable or getattr(model, "_ember_eager_kernel", False):
        # a function that is already its own kernel (flex_attention) compiles to itself
        return model
    Module = _module_base()
    if isinstance(model, OptimizedModule):
        model = model._orig_mod
    inner = _data_parallel_inner(model)
    if inner is not None:
        return OptimizedModule(
            model,
            _WrapperCompiled(
                model, inner, fullgraph=fullgraph, dynamic=dynamic, backend=backend, mode=mode
            ),
        )
    if isinstance(model, Module):
        om = OptimizedModule(
            model,
            _compiled_class(dynamic)(
                model, fullgraph=fullgraph, dynamic=dynamic, backend=backend, mode=mode
            ),
        )
        opts = dict(fullgraph=fullgraph, dynamic=dynamic, backend=backend, mode=mode)
        object.__setattr__(om, "_compile_opts", opts)
        return om
    if isinstance(model, CompiledFunction):
        model = model._root
    compiled = _compiled_class(dynamic)(
        model, fullgraph=fullgraph, dynamic=dynamic, backend=backend, mode=mode
    )

    @functools.wraps(model)
    def compiled_fn(*args, **kwargs):
        return compiled(*args, **kwargs)

    compiled_fn._ember_compiled = compiled
    compiled_fn._torchdynamo_orig_callable = model
    return compiled_fn


def compile_forward(module: Any, **kwargs: Any) -> Callable:
    """``module.compile(**kwargs)``: the compiled forward installed on the instance. The
    module itself is the compiled root (its parameters are bound, its graph is shared with
    other modules of its structure); its ``__call__`` and hooks stay eager around it."""
    if kwargs.pop("disable", False):
        return functools.partial(type(module).forward, module)
    opts = {k: kwargs.pop(k) for k in ("fullgraph", "dynamic", "backend", "mode") if k in kwargs}
    options = kwargs.pop("options", None)
    if kwargs:
        raise TypeError(f"compile() got an unexpected keyword argument {next(iter(kwargs))!r}")
    _check(
        opts.get("fullgraph", False),
        opts.get("dynamic"),
        opts.get("backend", "ember"),
        opts.get("mode"),
        options,
    )
    return _CompiledForward(module, opts)


class _CompiledForward:
    """The forward ``module.compile()`` installs. A deep copy or an unpickled copy of the
    module gets a forward compiled for *itself* (a plain closure would keep running the
    original module's parameters); the compiled function is made at the first call."""

    def __init__(self, module: Any, opts: dict) -> None:
        from ._capture_util import signature_of

        self._module, self._opts, self._compiled = module, opts, None
        functools.update_wrapper(self, type(module).forward)
        del self.__wrapped__  # the signature is the bound one, without ``self``
        self.__signature__ = signature_of(module)

    @property
    def _ember_compiled(self) -> CompiledFunction:
        if self._compiled is None:
            self._compiled = _InnerCompiled(self._module, **self._opts)
        return self._compiled

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return (self._compiled or self._ember_compiled)(*args, **kwargs)

    def __deepcopy__(self, memo: dict) -> _CompiledForward:
        import copy

        # the module being copied is in the memo already (deepcopy records it first)
        mod = memo.get(id(self._module))
        if mod is None:
            mod = copy.deepcopy(self._module, memo)
        return _CompiledForward(mod, dict(self._opts))

    def __reduce__(self) -> tuple:
        return _CompiledForward, (self._module, self._opts)


# DDP and FSDP keep their forward eager (buffer broadcasts, bucket renewal, all-gathers and
# reshards are per-call side effects a trace would run once); the module they wrap is compiled.
# Named, not imported: core never imports ember.distributed (docs/architecture.md).
_DATA_PARALLEL = {
    ("ember.distributed.parallel.ddp", "DistributedDataParallel"): "module",
    (
        "ember.distributed.fsdp.fully_sharded_data_parallel",
        "FullyShardedDataParallel",
    ): "_fsdp_wrapped_module",
}


def _data_parallel_inner(model: Any) -> Any:
    for cls in type(model).__mro__:
        attr = _DATA_PARALLEL.get((cls.__module__, cls.__name__))
        if attr is not None:
            return getattr(model, attr)
    return None


class _InnerCompiled(CompiledFunction):
    """The compiled forward of a module inside DDP/FSDP, installed as that module's
    ``forward`` while the wrapper runs: the module's ``__call__`` (and its hooks) stays eager,
    and the eager fallback calls the class's ``forward`` (the instance's is this object)."""

    def __init__(self, root: Any, **kw: Any) -> None:
        super().__init__(root, **kw)
        self._hookable = None  # hooks run in the module's __call__, around this forward

    def _eager(self, args: tuple, kwargs: dict) -> Any:
        return type(self._root).forward(self._root, *args, **kwargs)


class _WrapperCompiled:
    """``ember.compile(DistributedDataParallel(m))`` (or FSDP): the wrapper's forward runs
    eagerly and calls ``m``'s compiled forward; attributes (``entries``, ``break_reasons``,
    ``reset``) are the inner compiled function's, for ``explain``."""

    def __init__(self, wrapper: Any, inner: Any, **kw: Any) -> None:
        self._wrapper, self._inner = wrapper, inner
        self._fn = _InnerCompiled(inner, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["_fn"], name)

    def __call__(self, *args, **kwargs):
        d = self._inner.__dict__
        if "forward" in d:  # re-entered (or the user installed a forward): leave it alone
            return self._wrapper(*args, **kwargs)
        d["forward"] = self._fn
        try:
            return self._wrapper(*args, **kwargs)
        finally:
            d.pop("forward", None)


def _compiled_of(obj: Any) -> CompiledFunction | None:
    if isinstance(obj, OptimizedModule):
        return obj._compiled
    return getattr(obj, "_ember_compiled", None)


GraphBreak = GraphBreak  # re-exported for ember._dynamo
