"""``opcheck``: test that a custom operator's registrations agree with its kernel.

Each check runs the op for real (torch.library.opcheck's test names):

- ``test_schema``: inputs are compared before/after the call; an input the kernel changed
  that the schema does not mark ``Tensor(a!)`` (``mutates_args``) fails, as does a return
  that disagrees with the schema.
- ``test_autograd_registration``: inputs require grad but no backward is registered.
- ``test_faketensor``: the fake kernel on meta copies of the inputs gives the real outputs'
  shapes and dtypes.
- ``test_aot_dispatch_dynamic``: the op traced by ``make_fx`` is one node and replays to the
  eager result.
- ``test_gradcheck`` (ember's addition, not in the default set, as torch's opcheck does not
  judge gradients): the registered backward passes a float64 gradient check
  (``ember.autograd.gradcheck``; a random-direction check for inputs too large for a full
  Jacobian). Kernels that round (PIL's uint8 images) fail it legitimately.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["opcheck", "OpCheckError"]

DEFAULT_TEST_UTILS = (
    "test_schema",
    "test_autograd_registration",
    "test_faketensor",
    "test_aot_dispatch_dynamic",
)
_ALL_TESTS = DEFAULT_TEST_UTILS + ("test_gradcheck",)
_FULL_JACOBIAN_LIMIT = 64  # elements: above it, the directional check


class OpCheckError(Exception):
    """An ``opcheck`` test failed (the message names the test and what disagreed)."""


def _map(v: Any, fn) -> Any:
    import ember

    if isinstance(v, ember.Tensor):
        return fn(v)
    if isinstance(v, (list, tuple)):
        return type(v)(_map(e, fn) for e in v)
    if isinstance(v, dict):
        return {k: _map(e, fn) for k, e in v.items()}
    return v


def _clone(v: Any) -> Any:
    return _map(v, lambda t: t.detach().clone().requires_grad_(t.requires_grad))


def _flat_tensors(v: Any) -> list:
    out: list = []
    _map(v, out.append)
    return out


def _check_schema(op, args, kwargs) -> None:
    import ember

    before = _map(_clone((args, kwargs)), lambda t: t.detach())
    work = _clone((args, kwargs))
    with ember.no_grad():
        out = op.call(tuple(work[0]), dict(work[1]))
    values = op.bind(tuple(work[0]), dict(work[1]))
    ref = op.bind(tuple(before[0]), dict(before[1]))
    for a, new, old in zip(op.schema.arguments, values, ref, strict=True):
        for t_new, t_old in zip(_flat_tensors(new), _flat_tensors(old), strict=True):
            same = np.array_equal(t_new.detach().cpu().numpy(), t_old.cpu().numpy(), equal_nan=True)
            if not same and not a.is_write:
                raise OpCheckError(
                    f"test_schema: {op.qualname} mutated its input {a.name!r}, but the schema "
                    f"does not say so; add {a.name!r} to mutates_args (schema: {op.schema})"
                )
    rets = op.schema.returns
    outs = [] if out is None else list(out) if isinstance(out, tuple) else [out]
    if len(outs) != len(rets) and not (len(rets) == 1 and rets[0].type.endswith("[]")):
        raise OpCheckError(
            f"test_schema: {op.qualname} returned {len(outs)} value(s), the schema says "
            f"{len(rets)} ({op.schema})"
        )
    for r, o in zip(rets, outs, strict=False):
        if r.type == "Tensor" and not isinstance(o, ember.Tensor):
            raise OpCheckError(
                f"test_schema: {op.qualname} returned {type(o).__name__} where the schema "
                f"says Tensor ({op.schema})"
            )
        if isinstance(o, ember.Tensor):
            for t in _flat_tensors((args, kwargs)):
                if o is t:
                    raise OpCheckError(
                        f"test_schema: {op.qualname} returned one of its inputs; custom ops "
                        "must return new tensors (clone it)"
                    )


def _check_autograd_registration(op, args, kwargs) -> None:
    if not any(t.requires_grad for t in _flat_tensors((args, kwargs))):
        return
    if op.backward is None and op.composite is None:
        raise OpCheckError(
            f"test_autograd_registration: {op.qualname} was given inputs that require grad "
            "but has no autograd formula; register one with register_autograd (or pass "
            "inputs that do not require grad)"
        )


def _check_fake(op, args, kwargs, real_out) -> None:
    meta = _map((args, kwargs), lambda t: t.detach().to("meta"))
    try:
        fake_out = op.call(tuple(meta[0]), dict(meta[1]))
    except OpCheckError:
        raise
    except Exception as e:
        raise OpCheckError(f"test_faketensor: {op.qualname} failed on meta inputs: {e}") from e
    reals, fakes = _flat_tensors(real_out), _flat_tensors(fake_out)
    if len(reals) != len(fakes):
        raise OpCheckError(
            f"test_faketensor: the fake kernel of {op.qualname} returned {len(fakes)} "
            f"tensor(s), the real kernel {len(reals)}"
        )
    for i, (r, f) in enumerate(zip(reals, fakes, strict=True)):
        if tuple(r.shape) != tuple(f.shape) or r.dtype != f.dtype:
            raise OpCheckError(
                f"test_faketensor: output {i} of {op.qualname}: the fake kernel gives "
                f"{tuple(f.shape)} {f.dtype}, the real kernel {tuple(r.shape)} {r.dtype}"
            )
        if f.device.type != "meta":
            raise OpCheckError(
                f"test_faketensor: the fake kernel of {op.qualname} returned a tensor on "
                f"{f.device}, not on meta: build outputs from the inputs (x.new_empty(...), "
                "ember.empty_like(x))"
            )


def _check_traced(op, args, kwargs, real_out) -> None:
    import ember
    from ember.fx.experimental.proxy_tensor import make_fx

    if op.schema.mutated_args:
        return  # replaying a mutating op writes into the caller's tensors again

    def call(*a):
        return op.overload(*a, **kwargs)

    flat_args = _clone(tuple(args))
    gm = make_fx(call)(*flat_args)
    if not any(n.target is op.overload for n in gm.graph.nodes):
        raise OpCheckError(f"test_aot_dispatch_dynamic: {op.qualname} is not a node of its trace")
    with ember.no_grad():
        again = gm(*_clone(tuple(args)))
    for r, g in zip(_flat_tensors(real_out), _flat_tensors(again), strict=True):
        if not np.allclose(r.detach().cpu().numpy(), g.detach().cpu().numpy(), equal_nan=True):
            raise OpCheckError(
                f"test_aot_dispatch_dynamic: the traced {op.qualname} replays to other values"
            )


def _gradcheck(op, args, kwargs) -> None:
    import ember
    from ember.autograd.gradcheck import gradcheck

    diff = [
        i
        for i, a in enumerate(args)
        if isinstance(a, ember.Tensor) and a.requires_grad and a.dtype == ember.float64
    ]
    if not diff or op.backward is None and op.composite is None:
        return
    base = [a.detach() if isinstance(a, ember.Tensor) else a for a in args]

    def f(*xs):
        full = list(base)
        for i, x in zip(diff, xs, strict=True):
            full[i] = x
        out = op.overload(*full, **kwargs)
        return out[0] if isinstance(out, tuple) else out

    xs = [args[i].detach().clone().requires_grad_() for i in diff]
    if sum(x.numel() for x in xs) <= _FULL_JACOBIAN_LIMIT:
        try:
            gradcheck(f, tuple(xs))
        except Exception as e:
            raise OpCheckError(f"test_gradcheck: gradcheck failed: {e}") from e
        return
    # u . J v two ways: backward of u, dotted with v, against a central difference along v
    rng = np.random.default_rng(0)
    vs = [ember.from_numpy(rng.standard_normal(tuple(x.shape))) for x in xs]
    out = f(*xs)
    u = ember.from_numpy(rng.standard_normal(tuple(out.shape)))
    grads = ember.autograd.grad(out, xs, u, allow_unused=True)
    analytic = sum(float((g * v).sum()) for g, v in zip(grads, vs, strict=True) if g is not None)
    eps = 1e-6
    with ember.no_grad():
        plus = f(*[x.detach() + eps * v for x, v in zip(xs, vs, strict=True)])
        minus = f(*[x.detach() - eps * v for x, v in zip(xs, vs, strict=True)])
    numeric = float(((plus - minus) / (2 * eps) * u).sum())
    if not np.isclose(analytic, numeric, rtol=1e-3, atol=1e-5):
        raise OpCheckError(
            f"test_gradcheck: the backward of {op.qualname} disagrees with finite "
            f"differences along a random direction (analytic {analytic}, numeric {numeric})"
        )


def opcheck(
    op: Any,
    args: tuple | list,
    kwargs: dict | None = None,
    *,
    test_utils: str | tuple | list = DEFAULT_TEST_UTILS,
    raise_exception: bool = True,
    atol: float | None = None,
    rtol: float | None = None,
) -> dict[str, str]:
    """Run the named checks on ``op(*args, **kwargs)``; returns ``{test: "SUCCESS"}`` or, with
    ``raise_exception=False``, the exception of each failed test in its place."""
    from . import _resolve

    o = _resolve(op)
    if not isinstance(args, (tuple, list)):
        raise TypeError(f"opcheck: args must be a tuple or list, got {type(args).__name__}")
    kwargs = dict(kwargs or {})
    names = (test_utils,) if isinstance(test_utils, str) else tuple(test_utils)
    unknown = [n for n in names if n not in _ALL_TESTS]
    if unknown:
        raise ValueError(f"opcheck: unknown test_utils {unknown}; known: {_ALL_TESTS}")
    args = tuple(args)
    real_out = o.call(tuple(_clone(args)), dict(_clone(kwargs)))
    results: dict[str, Any] = {}
    for name in names:
        try:
            if name == "test_schema":
                _check_schema(o, args, kwargs)
            elif name == "test_autograd_registration":
                _check_autograd_registration(o, args, kwargs)
            elif name == "test_faketensor":
                _check_fake(o, args, kwargs, real_out)
            elif name == "test_gradcheck":
                _gradcheck(o, args, kwargs)
            else:
                _check_traced(o, args, kwargs, real_out)
            results[name] = "SUCCESS"
        except Exception as e:
            if raise_exception:
                if isinstance(e, OpCheckError):
                    raise
                raise OpCheckError(f"opcheck({o.qualname}): {name} failed: {e}") from e
            results[name] = e
    return results
