"""The backward engine's helpers off its hot loop: the node set ``autograd.grad`` runs, and
the tensor / node hooks around a node's backward (kept apart from ``engine.py`` for size;
re-exported there under the same names)."""

from __future__ import annotations

from numpy import asarray as _np_asarray
from numpy import generic as _np_generic

from . import function as _fn
from .function import Function


def _needed(roots, targets: set[int]) -> set[int]:
    """Nodes from which some target is reachable (only those run for ``autograd.grad``)."""
    needed: set[int] = set()
    order = []
    stack = [r for r in roots if isinstance(r, Function)]
    seen = {id(r) for r in stack}
    while stack:  # first a plain DFS to list the nodes, then propagate in reverse order
        node = stack.pop()
        order.append(node)
        for e in node._edges:
            if e is not None and isinstance(e[0], Function) and id(e[0]) not in seen:
                seen.add(id(e[0]))
                stack.append(e[0])
    changed = True
    while changed:  # a fixed point; graphs are DAGs so this settles in a few sweeps
        changed = False
        for node in reversed(order):
            if id(node) in needed:
                continue
            for e in node._edges:
                if e is not None and (id(e[0]) in targets or id(e[0]) in needed):
                    needed.add(id(node))
                    changed = True
                    break
    return needed


def _run_pre_hooks(node, grads, create_graph, capture, captured):
    grads = list(grads)
    for out_nr, g in enumerate(grads):
        if g is None:
            continue
        hooks = node._pre_hooks.get(out_nr) if node._pre_hooks is not None else None
        if hooks:
            # one gradient tensor for the hooks in turn until one returns a new one, as in
            # PyTorch (Captum's LRP sets an attribute on it in one hook, reads it in another)
            gt = g if create_graph else _fn.Tensor._wrap(g)
            for hook in list(hooks):
                r = hook(gt)
                if r is not None:
                    gt = r
                    g = r if create_graph else r._data
            grads[out_nr] = g
        if capture is not None:
            idx = capture.get((id(node), out_nr))
            if idx is not None:
                captured[idx] = g
    return grads


def _run_post_hooks(node, results, grads, create_graph):
    """Node hooks (``grad_fn.register_hook``): ``hook(grad_inputs, grad_outputs)`` may return
    new grad_inputs. Trailing non-tensor arguments of the op (a conv's stride, ...) have no
    slot, so the tuple is torch's (a conv's is ``(input, weight, bias)``)."""
    edges = node._edges
    n = len(edges)
    while n and edges[n - 1] is None:
        n -= 1

    def wrap(a):
        if a is None or create_graph:
            return a
        return _fn.Tensor._wrap(_np_asarray(a) if isinstance(a, _np_generic) else a)

    grad_inputs = tuple(
        None if edges[i] is None or results[i] is None else wrap(results[i]) for i in range(n)
    )
    grad_outputs = tuple(wrap(g) for g in grads)
    for hook in list(node._post_hooks):
        r = hook(grad_inputs, grad_outputs)
        if r is None:
            continue
        r = tuple(r) if isinstance(r, (tuple, list)) else (r,)
        if len(r) > len(grad_inputs) and all(g is None for g in r[len(grad_inputs) :]):
            r = r[: len(grad_inputs)]  # torch counts a Python number as an input (no grad)
        if len(r) != len(grad_inputs):
            name = getattr(hook, "__name__", repr(hook))
            raise RuntimeError(
                f"hook '{name}' has returned an incorrect number of values "
                f"(got {len(r)}, but expected {len(grad_inputs)})"
            )
        grad_inputs = r
    new = list(results)
    for i, g in enumerate(grad_inputs):
        if edges[i] is not None:
            new[i] = None if g is None else (g if create_graph else g._data)
    return tuple(new)
