"""``grad``, ``grad_and_value``, ``vjp``, ``jvp``, ``linearize`` and ``functionalize``
(PyTorch's ``torch.func`` signatures and errors)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from ..autograd import grad_mode
from ..creation import ones_like
from ..tensor import Tensor
from ._common import Level, detach_tree, normalize_argnums
from ._forward import ForwardGraph, check_tangent
from ._pytree import tree_flatten, tree_unflatten

__all__ = ["grad", "grad_and_value", "vjp", "jvp", "linearize", "functionalize"]


def grad_and_value(
    func: Callable, argnums: int | tuple[int, ...] = 0, has_aux: bool = False
) -> Callable:
    r"""Return a function computing ``(gradient, value)`` of ``func``.

    ``func`` must return a scalar (0-dim) tensor, or ``(scalar, aux)`` when ``has_aux``. The
    gradient is taken with respect to the positional arguments at ``argnums`` (each may be a
    pytree of tensors: tuples, lists, dicts); it is one pytree for an int ``argnums`` and a
    tuple of them for a tuple.

    Args:
        func (Callable): the function to differentiate.
        argnums (int or Tuple[int]): which positional arguments to differentiate.
        has_aux (bool): ``func`` returns ``(output, aux)``; aux is returned, not
            differentiated.

    Returns:
        Callable: ``(grad, value)``, or ``(grad, (value, aux))`` with ``has_aux``.

    Example::

        >>> x = ember.randn(3)
        >>> g, v = grad_and_value(lambda x: (x ** 2).sum())(x)   # g == 2 * x
    """
    api = "grad_and_value(f)(*args)"

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any):
        nums = normalize_argnums(argnums, len(args))
        level = Level()
        args, lifted = level.lift_args(args, nums)
        out, aux = level.call(func, args, kwargs, has_aux, api)
        if not isinstance(out, Tensor):
            raise RuntimeError(f"{api}: Expected f(*args) to return a Tensor, got {type(out)}")
        if out.dim() != 0:
            raise RuntimeError(
                f"{api}: Expected f(*args) to return a scalar Tensor, got tensor with "
                f"{out.dim()} dims. Maybe you wanted to use the vjp or jacrev APIs instead?"
            )
        flat_in = [x for leaves, _ in lifted for x in leaves]
        cg = level.needs_graph([out])
        grads = level.vjp([out], flat_in, [ones_like(out)], create_graph=cg)
        trees, k = [], 0
        for leaves, spec in lifted:
            trees.append(tree_unflatten(grads[k : k + len(leaves)], spec))
            k += len(leaves)
        g = trees[0] if isinstance(argnums, int) else tuple(trees)
        value = out if cg else out.detach()
        if has_aux:
            return g, (value, aux if cg else detach_tree(aux))
        return g, value

    return wrapper


def grad(func: Callable, argnums: int | tuple[int, ...] = 0, has_aux: bool = False) -> Callable:
    r"""Return a function computing the gradient of ``func`` (see :func:`grad_and_value`).

    Returns:
        Callable: the gradient, or ``(gradient, aux)`` with ``has_aux``.

    Example::

        >>> x = ember.randn(3)
        >>> ember.func.grad(lambda x: x.sin().sum())(x)            # == x.cos()
        >>> ember.func.grad(ember.func.grad(lambda x: x.sin()))(ember.tensor(1.0))  # -sin(1)
    """
    gv = grad_and_value(func, argnums, has_aux)

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any):
        g, value = gv(*args, **kwargs)
        return (g, value[1]) if has_aux else g

    return wrapper


def _live(tensors: list) -> bool:
    r"""Whether grad mode is on now and some of ``tensors`` require grad."""
    return grad_mode.is_grad_enabled() and any(t.requires_grad for t in tensors)


def vjp(func: Callable, *primals: Any, has_aux: bool = False):
    r"""Run ``func(*primals)`` and return its output and a function for vector-Jacobian
    products.

    ``vjp_fn(cotangents)`` takes cotangents of the output's structure and shapes and returns a
    tuple with one gradient pytree per primal; it can be called many times.

    Args:
        func (Callable): the function; it returns a pytree of tensors.
        *primals: its positional arguments (pytrees of tensors).
        has_aux (bool): ``func`` returns ``(output, aux)``.

    Returns:
        ``(output, vjp_fn)``, or ``(output, vjp_fn, aux)`` with ``has_aux``.
    """
    api = "vjp(f, *primals)"
    level = Level()
    args, lifted, spec_p = level.lift_tree(primals)
    out, flat_o, spec_o, aux = level.call_flat(func, args, {}, has_aux, api)
    cg_out = level.needs_graph(flat_o)

    def vjp_fn(cotangents: Any, *, retain_graph: bool = True, create_graph: bool | None = None):
        flat_c, spec_c = tree_flatten(cotangents)
        if spec_c != spec_o:
            raise RuntimeError(
                "Expected pytree structure of cotangents to be the same as pytree structure of "
                f"outputs to the function. cotangents: {spec_c}, primal output: {spec_o}"
            )
        for i, (o, c) in enumerate(zip(flat_o, flat_c)):
            if not isinstance(c, Tensor):
                raise ValueError(f"Thing passed to transform API must be Tensor, got {type(c)}")
            if c.shape != o.shape:
                raise RuntimeError(
                    f"Mismatch in shape: grad_output[{i}] has a shape of "
                    f"{c.shape} and output[{i}] has a shape of {o.shape}."
                )
        flat_c = [c if c.dtype == o.dtype else c.to(o.dtype) for o, c in zip(flat_o, flat_c)]
        if create_graph is None:
            # decided at call time too: a vjp_fn made under no_grad (a custom Function's
            # backward) that an enclosing transform calls with cotangents requiring grad must
            # stay differentiable in them (torchopt's implicit differentiation nests so)
            create_graph = cg_out or level.needs_graph([], *flat_c) or _live(flat_c)
        grads = level.vjp(
            flat_o, lifted, flat_c, create_graph=create_graph, retain_graph=retain_graph
        )
        return tree_unflatten(grads, spec_p)

    out_r = out if cg_out else detach_tree(out)
    if has_aux:
        return out_r, vjp_fn, (aux if cg_out else detach_tree(aux))
    return out_r, vjp_fn


def _forward(func: Callable, primals: tuple, api: str, has_aux: bool):
    level = Level()
    flat_p = tree_flatten(primals)[0]
    args, lifted, spec_p = level.lift_tree(primals)
    out, flat_o, spec_o, aux = level.call_flat(func, args, {}, has_aux, api)
    return level, flat_p, spec_p, ForwardGraph(level, lifted, flat_o), out, spec_o, aux


def jvp(
    func: Callable, primals: tuple, tangents: tuple, *, strict: bool = False, has_aux: bool = False
):
    r"""Return ``func(*primals)`` and its Jacobian-vector product with ``tangents``.

    Args:
        func (Callable): the function; it returns a pytree of tensors.
        primals (tuple): its positional arguments (pytrees of tensors).
        tangents (tuple): one tangent per primal tensor, of the same structure and shapes.
        strict (bool): not supported (as in PyTorch).
        has_aux (bool): ``func`` returns ``(output, aux)``.

    Returns:
        ``(output, jvp_out)``, or ``(output, jvp_out, aux)`` with ``has_aux``.

    Example::

        >>> x, v = ember.randn(3), ember.randn(3)
        >>> out, jv = jvp(ember.sin, (x,), (v,))   # jv == x.cos() * v
    """
    api = "jvp(f, primals, tangents)"
    if strict:
        raise RuntimeError(f"{api}: strict=True is not supported.")
    if not isinstance(primals, tuple):
        raise RuntimeError(
            f"{api}: Expected primals to be a tuple. E.g. it should be valid to call f(*primals)."
        )
    flat_p, spec_p = tree_flatten(primals)
    flat_t, spec_t = tree_flatten(tangents)
    if spec_p != spec_t:
        raise RuntimeError(
            f"{api}: Expected primals and tangents to have the same python structure. For "
            "example, if primals is a tuple of 3 tensors, tangents also must be. Got primals "
            f"with structure {spec_p} and tangents with structure {spec_t}"
        )
    if not flat_p:
        raise RuntimeError(f"{api}: Expected primals to contain at least one Tensor.")
    for p in flat_p:
        if not isinstance(p, Tensor):
            raise ValueError(f"Thing passed to transform API must be Tensor, got {type(p)}")
    flat_t = [check_tangent(p, t, api) for p, t in zip(flat_p, flat_t)]
    level, _, _, fg, out, spec_o, aux = _forward(func, primals, api, has_aux)
    cg = fg.needs_graph(flat_t)
    jv = tree_unflatten(fg.jvp(flat_t, create_graph=cg), spec_o)
    keep = level.needs_graph(tree_flatten(out)[0])
    out_r = out if keep else detach_tree(out)
    if has_aux:
        return out_r, jv, (aux if keep else detach_tree(aux))
    return out_r, jv


def linearize(func: Callable, *primals: Any):
    r"""Return ``func(*primals)`` and a function ``jvp_fn(*tangents)`` computing the
    Jacobian-vector product at ``primals``: the backward record is made once and each call
    costs one pass through it (cheaper than repeated :func:`jvp` calls).

    Example::

        >>> x = ember.randn(3)
        >>> out, jvp_fn = linearize(ember.sin, x)
        >>> jvp_fn(ember.ones(3))   # == x.cos()
    """
    api = "linearize(f, *primals)"
    level, flat_p, spec_p, fg, out, spec_o, _ = _forward(func, primals, api, False)

    def jvp_fn(*tangents: Any):
        flat_t, spec_t = tree_flatten(tangents)
        if spec_t != spec_p:
            raise RuntimeError(
                f"Expected the tangents {spec_t} to have the same argspec as the primals {spec_p}"
            )
        for i, (p, t) in enumerate(zip(flat_p, flat_t)):
            if not isinstance(t, Tensor):
                raise ValueError(f"Thing passed to transform API must be Tensor, got {type(t)}")
            if t.shape != p.shape:
                raise RuntimeError(
                    f"tangent:{i} with shape {t.shape} in flattened pytree "
                    f"doesn't match the shape {p.shape} of the corresponding "
                    "primal."
                )
        flat_t = [t if t.dtype == p.dtype else t.to(p.dtype) for p, t in zip(flat_p, flat_t)]
        return tree_unflatten(fg.jvp(flat_t, create_graph=fg.needs_graph(flat_t)), spec_o)

    keep = level.needs_graph(tree_flatten(out)[0])
    return (out if keep else detach_tree(out)), jvp_fn


_REMOVE = ("mutations", "mutations_and_views")


def functionalize(func: Callable, *, remove: str = "mutations") -> Callable:
    r"""Return ``func`` as a function without observable mutation (PyTorch's
    ``torch.func.functionalize``).

    PyTorch rewrites in-place and view ops to out-of-place ones for tracing, while keeping the
    program's observable behaviour (mutated inputs are still updated). ember's transforms run
    eagerly on the autograd graph, which already handles in-place ops, so the returned function
    calls ``func`` unchanged: same outputs, same input mutations.

    Args:
        func (Callable): the function.
        remove (str): ``'mutations'`` or ``'mutations_and_views'`` (both are accepted).
    """
    if remove not in _REMOVE:
        raise RuntimeError(
            f"functionalize(f, remove='mutations'): received invalid argument for remove="
            f"{remove}. Valid options are:\n     remove='mutations': all inplace and out= "
            "operators will be removed from the program, and replaced with their out-of-place "
            "equivalents.\n     remove='mutations_and_views': In addition to the above, all "
            "aliasing operators {view} will be replaced with their non-aliasing counterparts, "
            "{view}_copy.\n"
        )

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any):
        return func(*args, **kwargs)

    return wrapper
