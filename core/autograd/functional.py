"""``ember.autograd.functional``: vjp, jvp, jacobian, hessian, hvp (PyTorch's signatures)."""

from __future__ import annotations

from .grad_mode import enable_grad


def _grad(*args, **kwargs):
    from . import grad  # the package imports this module; resolve at call time

    return grad(*args, **kwargs)


def _tuple(x):
    return (tuple(x), True) if isinstance(x, (tuple, list)) else ((x,), False)


def _prepare(inputs, create_graph):
    return tuple(
        x if (create_graph and x.requires_grad) else x.detach().requires_grad_(True) for x in inputs
    )


def _zeros_like(t):
    from ..creation import zeros_like

    return zeros_like(t)


def vjp(func, inputs, v=None, create_graph=False, strict=False):
    """(func(inputs), v^T J)."""
    inputs, is_tuple = _tuple(inputs)
    with enable_grad():
        xs = _prepare(inputs, create_graph)
        out = func(*xs)
        outs, out_tuple = _tuple(out)
        vs = _tuple(v)[0] if v is not None else (None,) * len(outs)
        grads = _grad(outs, xs, vs, create_graph=create_graph, allow_unused=True)
    grads = tuple(_zeros_like(x) if g is None else g for x, g in zip(xs, grads))
    if not create_graph:
        out = tuple(o.detach() for o in outs) if out_tuple else outs[0].detach()
    return out, grads if is_tuple else grads[0]


def jvp(func, inputs, v=None, create_graph=False, strict=False):
    """(func(inputs), J v) through the double-vjp trick."""
    inputs, is_tuple = _tuple(inputs)
    vs = _tuple(v)[0] if v is not None else tuple(_ones_like(x) for x in inputs)
    with enable_grad():
        xs = _prepare(inputs, create_graph)
        outs, out_tuple = _tuple(func(*xs))
        us = tuple(_zeros_like(o).requires_grad_(True) for o in outs)
        g = _grad(outs, xs, us, create_graph=True, allow_unused=True)
        pairs = [(gi, vi) for gi, vi in zip(g, vs) if gi is not None]
        jv = _grad(
            [p[0] for p in pairs],
            us,
            [p[1] for p in pairs],
            create_graph=create_graph,
            allow_unused=True,
        )
    jv = tuple(_zeros_like(o) if j is None else j for o, j in zip(outs, jv))
    outs_r = outs if create_graph else tuple(o.detach() for o in outs)
    return (outs_r if out_tuple else outs_r[0]), (jv if out_tuple else jv[0])


def _ones_like(t):
    from ..creation import ones_like

    return ones_like(t)


def _check_strategy(strategy, vectorize, what="strategy"):
    if strategy not in ("forward-mode", "reverse-mode"):
        raise ValueError(
            f'Expected {what} to be either "forward-mode" or "reverse-mode". Got {strategy!r}'
        )
    if strategy == "forward-mode" and not vectorize:
        raise NotImplementedError(
            'torch.autograd.functional.jacobian: `strategy="forward-mode"` '
            "is only implemented together with `vectorize=True`."
        )


def _vectorized(transform, func, inputs, create_graph):
    """``ember.func``'s vectorized ``jacrev``/``jacfwd``/``hessian`` (one vmapped pass over the
    standard basis) in this module's conventions: inputs as a tensor or a tuple of them."""
    from ..func._common import detach_tree

    inputs_t, is_tuple = _tuple(inputs)
    argnums = tuple(range(len(inputs_t))) if is_tuple else 0
    if create_graph:
        with enable_grad():
            return transform(func, argnums)(*inputs_t)
    return detach_tree(transform(func, argnums)(*(x.detach() for x in inputs_t)))


def jacobian(
    func, inputs, create_graph=False, strict=False, vectorize=False, strategy="reverse-mode"
):
    """Jacobian of func at inputs: shape output.shape + input.shape (nested for tuples).

    ``vectorize=True`` computes every row in one batched pass (``ember.func.jacrev``, or
    ``jacfwd`` with ``strategy="forward-mode"``) instead of one backward pass per row.
    """
    from ..ops import reshape, stack

    _check_strategy(strategy, vectorize)
    if vectorize:
        from .. import func as _func

        transform = _func.jacfwd if strategy == "forward-mode" else _func.jacrev
        return _vectorized(transform, func, inputs, create_graph)
    inputs, is_tuple = _tuple(inputs)
    with enable_grad():
        xs = _prepare(inputs, create_graph)
        outs, out_tuple = _tuple(func(*xs))
        rows = []
        for o in outs:
            per_input = [[] for _ in xs]
            flat = reshape(o, (-1,))
            for k in range(flat.numel()):
                gs = _grad(
                    [flat[k]], xs, retain_graph=True, create_graph=create_graph, allow_unused=True
                )
                for i, (x, g) in enumerate(zip(xs, gs)):
                    per_input[i].append(_zeros_like(x) if g is None else g)
            jac = tuple(
                reshape(stack(cols), tuple(o.shape) + tuple(x.shape))
                if cols
                else _zeros_like(x).reshape(tuple(o.shape) + tuple(x.shape))
                for x, cols in zip(xs, per_input)
            )
            rows.append(jac if is_tuple else jac[0])
    return tuple(rows) if out_tuple else rows[0]


def hessian(
    func,
    inputs,
    create_graph=False,
    strict=False,
    vectorize=False,
    outer_jacobian_strategy="reverse-mode",
):
    """Hessian of a scalar func: the jacobian of its gradient (``vectorize=True``: both
    Jacobians in batched passes, as ``ember.func.hessian``)."""
    _check_strategy(outer_jacobian_strategy, vectorize, "outer_jacobian_strategy")
    if vectorize:
        from .. import func as _func

        outer = _func.jacfwd if outer_jacobian_strategy == "forward-mode" else _func.jacrev

        def transform(f, argnums):
            return outer(_func.jacrev(f, argnums), argnums)

        return _vectorized(transform, func, inputs, create_graph)
    inputs_t, is_tuple = _tuple(inputs)

    def grad_fn(*xs):
        out = func(*xs)
        gs = _grad([out], xs, create_graph=True, allow_unused=True)
        gs = tuple(_zeros_like(x) if g is None else g for x, g in zip(xs, gs))
        return gs if is_tuple else gs[0]

    return jacobian(grad_fn, inputs_t if is_tuple else inputs_t[0], create_graph=create_graph)


def vhp(func, inputs, v=None, create_graph=False, strict=False):
    """(func(inputs), v^T H)."""
    inputs, is_tuple = _tuple(inputs)
    vs = _tuple(v)[0]
    with enable_grad():
        xs = _prepare(inputs, True)
        out = func(*xs)
        gs = _grad([out], xs, create_graph=True, allow_unused=True)
        pairs = [(g, vi) for g, vi in zip(gs, vs) if g is not None]
        res = _grad(
            [p[0] for p in pairs],
            xs,
            [p[1] for p in pairs],
            create_graph=create_graph,
            allow_unused=True,
        )
    res = tuple(_zeros_like(x) if r is None else r for x, r in zip(xs, res))
    return out.detach(), res if is_tuple else res[0]


hvp = vhp  # the Hessian is symmetric for twice-differentiable functions
