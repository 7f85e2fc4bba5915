"""The participating side of PyTorch's ``__torch_function__`` protocol (see ``ember.overrides``).

A function decorated with :func:`torch_function_dispatch` hands the call to
``type(arg).__torch_function__`` when one of its tensor arguments is not an ``ember.Tensor``
but an object whose type defines ``__torch_function__`` (``DTensor``, a user's tensor-like
class). The check is made on the first ``n`` positional arguments only (the tensors), with an
exact-type test first, so an ordinary call pays one ``type(x) is Tensor`` per argument.

That bounded list (the functions tensor-parallel model code calls on DTensors that are not
Tensor methods; docs/api.md, "ember.overrides") dispatches any overloading type. The rest of
``ember.nn.functional`` and the ``ember.*`` functions with an ``out=`` or autocast wrapper
dispatch tensor-like objects that are not Tensors (:func:`tensor_like_dispatch`, and the same
test fused into those wrappers, on every argument as in torch: ``_out_arg.py``,
``amp/_state.py``): a wrapper of its own costs
a call frame, ~8% of ``F.relu`` on a small tensor (measured), one exact-type test in a wrapper
that exists anyway costs under 1%; the hottest plain functions (``F.relu``, ``F.embedding``)
test inline. Core never imports ``ember.distributed``: the DTensor side lives in
``distributed/tensor/_torch_function.py``. The rest of the public ``ember.*`` functions that
take tensors get a wrapper generated with their own signature (:func:`namespace_dispatch`,
installed by ``core/__init__.py``): one exact-type test per tensor parameter, ~0.05 us a call
(~0.1 us where a ``*shape`` is repacked) where a generic ``*args`` wrapper costs ~0.2 us.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable

from . import _numpy_names
from .overrides import _overloads, _tensor_like, handle_torch_function
from .tensor import Tensor

__all__ = [
    "torch_function_dispatch",
    "tensor_like_dispatch",
    "install_tensor_like_dispatch",
    "install_namespace_dispatch",
]


def torch_function_dispatch(n: int = 1, *, sequence: bool = False) -> Callable:
    """Make the decorated function participate in ``__torch_function__``: its first ``n``
    positional arguments are the relevant ones (with ``sequence=True``, the first argument is
    a list of tensors, as for ``cat``/``stack``, and its items are)."""

    def decorate(fn: Callable) -> Callable:
        ren = _numpy_names.renamer(fn)  # NumPy's axis=/keepdims=, or None
        if sequence:

            @functools.wraps(fn)
            def wrapper(*args, **kwargs):
                if ren is not None and kwargs:
                    ren(kwargs)
                if args:
                    seq = args[0]
                    if isinstance(seq, (list, tuple)):
                        for x in seq:
                            # plain tensors leave at the exact-type test (the hot path)
                            if type(x) is not Tensor and _overloads(x):
                                return handle_torch_function(
                                    wrapper._ember_public_api, seq, *args, **kwargs
                                )
                return fn(*args, **kwargs)

        elif n == 1:

            @functools.wraps(fn)
            def wrapper(*args, **kwargs):
                if ren is not None and kwargs:
                    ren(kwargs)
                if args and type(args[0]) is not Tensor and _overloads(args[0]):
                    return handle_torch_function(
                        wrapper._ember_public_api, args[:1], *args, **kwargs
                    )
                return fn(*args, **kwargs)

        else:

            @functools.wraps(fn)
            def wrapper(*args, **kwargs):
                if ren is not None and kwargs:
                    ren(kwargs)
                for x in args[:n]:
                    if type(x) is not Tensor and _overloads(x):
                        return handle_torch_function(
                            wrapper._ember_public_api, args[:n], *args, **kwargs
                        )
                return fn(*args, **kwargs)

        if ren is not None:
            wrapper._ember_numpy_names = fn
        wrapper.__wrapped__ = fn
        # what __torch_function__ is handed as ``func``: the function users call, which an
        # outer wrapper (``_out_arg.with_out``) replaces with itself (``func is torch.stack``)
        wrapper._ember_public_api = wrapper
        wrapper.__ember_torch_function__ = True  # listed by overrides.get_overridable_functions
        wrapper._ember_any_type = True  # (Tensor subclasses too, whatever the thread's switch)
        return wrapper

    return decorate


def tensor_like_dispatch(fn: Callable, n: int = 1) -> Callable:
    """``fn`` handing the call to ``__torch_function__`` when one of its first ``n`` positional
    arguments is a tensor-like object that is not a Tensor (see the module docstring)."""

    ren = _numpy_names.renamer(fn)  # NumPy's axis=/keepdims=, or None

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if ren is not None and kwargs:
            ren(kwargs)
        for x in args[:n]:
            if type(x) is not Tensor and _tensor_like(x):
                return handle_torch_function(wrapper, args[:n], *args, **kwargs)
        return fn(*args, **kwargs)

    if ren is not None:
        wrapper._ember_numpy_names = fn
    wrapper.__ember_torch_function__ = True
    return wrapper


def install_tensor_like_dispatch(
    namespace: dict, names, inline=(), relevant: dict | None = None
) -> None:
    """Wrap each function ``names`` in ``namespace`` with :func:`tensor_like_dispatch` (those
    already participating are left alone); ``inline`` ones test in their own body and are only
    marked; ``relevant`` gives ``n`` per name (default 1)."""
    relevant = relevant or {}
    for name in names:
        fn = namespace.get(name)
        if not callable(fn) or isinstance(fn, type) or getattr(fn, "__ember_torch_function__", 0):
            continue
        if name in inline:
            fn.__ember_torch_function__ = True
        else:
            namespace[name] = tensor_like_dispatch(fn, relevant.get(name, 1))


# ---- the rest of the public namespace (``ember.reshape``, ``transpose``, ``where`` ...) -------
# Each function that takes tensors gets a wrapper generated with the function's own signature:
# no ``*args``/``**kwargs`` packing, one exact-type test per tensor parameter. A generic
# ``*args, **kwargs`` wrapper costs ~0.19 us a call here, the generated one ~0.04 us.

# parameters that hold tensors (or, as ``*tensors``, sequences of them); annotations naming
# ``Tensor`` count too
_TENSOR_PARAMS = frozenset(
    "input other tensor tensors self t x y A B L b LU_data LU_pivots count prob elements "
    "test_elements the_template indices values condition mask index src source weight "
    "tensor1 tensor2 vec vec1 vec2 mat mat1 mat2 batch1 batch2 operands LU LD pivots tau".split()
)
# ember.* functions that PyTorch does not dispatch either (torch.overrides'
# get_ignored_functions(): factories, state, dtype queries, ...)
IGNORED = frozenset(
    "arange as_strided as_tensor asarray broadcast_shapes can_cast cond empty empty_permuted "
    "empty_strided eye fill from_numpy frombuffer full is_tensor linspace logspace normal ones "
    "promote_types rand rand_like randint randint_like randn randn_like randperm range "
    "result_type scalar_tensor set_default_tensor_type set_warn_always sparse_coo_tensor "
    "sparse_csr_tensor sparse_csc_tensor sparse_bsr_tensor sparse_bsc_tensor "
    "sparse_compressed_tensor tensor tril_indices triu_indices typename vander zeros".split()
)
_EMPTY = inspect.Parameter.empty


def _seq_overloads(seq) -> bool:
    """A tensor-like among ``seq`` (a ``*tensors`` tuple, or a list/tuple of tensors given as
    its one item)."""
    for x in seq:
        if type(x) is not Tensor:
            if type(x) in (list, tuple):
                if _seq_overloads(x):
                    return True
            elif _tensor_like(x):
                return True
    return False


def _flat(values) -> list:
    out = []
    for v in values:
        if type(v) in (list, tuple):
            out.extend(_flat(v))
        else:
            out.append(v)
    return out


def _dispatch(public, relevant, pos, var, kw, varkw):
    """Hand the call to ``__torch_function__`` with the arguments as given: trailing positional
    and keyword-only arguments that are their defaults (the same object) are left out."""
    pos_defaults, kw_defaults = public._ember_defaults
    n = len(pos)
    if not var:
        while n and pos[n - 1] is pos_defaults[n - 1]:
            n -= 1
    kwargs = {k: v for k, v in kw.items() if v is not kw_defaults[k]}
    kwargs.update(varkw)
    return handle_torch_function(public, _flat(relevant), *pos[:n], *var, **kwargs)


class _Ref:
    """A default shown by name in the generated ``def`` line (the value lives in its globals)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


def namespace_dispatch(fn: Callable, name: str | None = None) -> Callable:
    """``fn`` with the ``__torch_function__`` test on its tensor parameters, or ``fn`` itself
    when it takes none (or has no signature)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return fn
    params = list(sig.parameters.values())
    helpers = {"_T": Tensor, "_tl": _tensor_like, "_sq": _seq_overloads, "_go": _dispatch}
    if any(
        p.name in helpers or p.name in ("_fn", "_pub") or p.name.startswith("_d") for p in params
    ):
        return fn
    shown, call, pos, kw, checks, relevant = [], [], [], [], [], []
    var = varkw = None
    pos_defaults, kw_defaults = [], {}
    for i, p in enumerate(params):
        if p.default is not _EMPTY:
            helpers[f"_d{i}"] = p.default
            shown.append(p.replace(default=_Ref(f"_d{i}"), annotation=_EMPTY))
        else:
            shown.append(p.replace(annotation=_EMPTY))
        ann = (
            p.annotation if isinstance(p.annotation, str) else getattr(p.annotation, "__name__", "")
        )
        tensor = p.name in _TENSOR_PARAMS or "Tensor" in str(ann)
        if p.kind is p.VAR_POSITIONAL:
            call.append(f"*{p.name}")
            var = p.name
            if tensor:
                checks.append(f"_sq({p.name})")
                relevant.append(p.name)
            continue
        if p.kind is p.VAR_KEYWORD:
            call.append(f"**{p.name}")
            varkw = p.name
            continue
        if p.kind is p.KEYWORD_ONLY:
            call.append(f"{p.name}={p.name}")
            kw.append(p.name)
            kw_defaults[p.name] = p.default
        else:
            call.append(p.name)
            pos.append(p.name)
            pos_defaults.append(p.default)
        if tensor:
            relevant.append(p.name)
            test = f"type({p.name}) is not _T and _tl({p.name})"
            checks.append(
                f"({p.name} is not None and {test})" if p.default is None else f"({test})"
            )
    if not checks:
        return fn
    name = name or fn.__name__
    # NumPy's axis=/keepdims= for dim/keepdim, resolved before the tests (core/_numpy_names.py)
    pl = None if any(p.name.startswith("_n") for p in params) else _numpy_names.plan(params)
    prologue = ""
    if pl is not None:
        ref = _numpy_names._Refs(helpers)
        shown = _numpy_names.shown(shown, pl, ref)
        helpers.update(_NA=_numpy_names.NA, _both=_numpy_names._both)
        prologue = _numpy_names.prologue(pl, name, ref, _numpy_names.given_call(params))
    head = str(sig.replace(parameters=shown, return_annotation=_EMPTY))
    rel = "(" + "".join(f"{r}, " for r in relevant) + ")"
    src = (
        f"def {name}{head}:\n" + prologue + f"    if {' or '.join(checks)}:\n"
        f"        return _go(_pub, {rel}, ({''.join(f'{a}, ' for a in pos)}), "
        f"{var or '()'}, {{{', '.join(f'{k!r}: {k}' for k in kw)}}}, {varkw or '{}'})\n"
        + (  # one *args item (reshape(x, (2, 3))): passed as is, not repacked (~0.08 us)
            f"    if len({var}) == 1:\n"
            f"        return _fn({', '.join(f'{var}[0]' if c == '*' + var else c for c in call)})\n"
            if var
            else ""
        )
        + f"    return _fn({', '.join(call)})\n"
    )
    helpers["_fn"] = fn
    # warnings raised in the wrapper's frame (a stacklevel=2 inside fn) name fn's module
    helpers["__name__"] = fn.__module__
    exec(compile(src, f"<ember.{name} __torch_function__ wrapper>", "exec"), helpers)
    wrapper = helpers[name]
    helpers["_pub"] = wrapper
    functools.update_wrapper(wrapper, fn)
    del wrapper.__wrapped__  # (the signature is the function's own; see _out_arg.with_out)
    # found where it is public, as torch.reshape (pickle looks functions up by these)
    wrapper.__module__, wrapper.__qualname__ = "ember", name
    wrapper._ember_defaults = (tuple(pos_defaults), kw_defaults)
    if pl is not None:  # help() shows PyTorch's signature, not the aliases' sentinels
        wrapper.__signature__ = sig
        wrapper._ember_numpy_names = fn
    # the op under its public wrapper, as for the out= wrapper: fx, vmap and ember.special
    # map it to the public name
    wrapper._ember_out_wrapped = fn
    wrapper.__ember_torch_function__ = True
    return wrapper


def install_namespace_dispatch(namespace: dict) -> None:
    """Give every public function of ``namespace`` (``ember``) that takes tensors and does not
    participate yet the ``__torch_function__`` test (:func:`namespace_dispatch`)."""
    for name, fn in list(namespace.items()):
        if (
            name.startswith("_")
            or name in IGNORED
            or type(fn) is not type(install_namespace_dispatch)
            or getattr(fn, "__ember_torch_function__", False)
        ):
            continue
        namespace[name] = namespace_dispatch(fn, name)
