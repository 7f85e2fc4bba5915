"""A backward split in two halves, for zero-bubble pipeline schedules.

The **input half** computes only the gradients of given inputs (a pipeline stage's received
activations, needed at once by the previous stage). A node on the way that also feeds weights
(an edge to a parameter, or to nodes that lead only to parameters) is run with those edges
masked off in ``needs_input_grad``, and is stashed with the gradient it received. The **weight
half**, run later to fill the pipeline's idle time, runs each stashed node again for its masked
edges only and back-propagates the results to the parameters, which accumulate ``.grad`` as
in an ordinary backward (hooks included). Every node's gradient is computed once: the two
halves together cost what one backward costs (Qi et al. 2024, "Zero Bubble Pipeline
Parallelism"; torch.distributed.pipelining's ``stage_backward_input``/``_weight``).
"""

from __future__ import annotations

from typing import Any

from . import engine, grad_mode

__all__ = ["backward_input", "backward_weight"]


def input_half(node: Any, grads: list, needed: set, stash: list) -> tuple:
    """Run ``node``'s backward for its edges towards the inputs; stash it if weights hang off
    it (called by the engine for every node the input half runs)."""
    needs = node.needs_input_grad
    weight = [
        e is not None and needs[i] and id(e[0]) not in needed for i, e in enumerate(node._edges)
    ]
    if not any(weight):
        return engine._call_backward(node, grads, False)
    stash.append((node, list(grads), weight))
    node.needs_input_grad = tuple(n and not w for n, w in zip(needs, weight))
    try:
        results = engine._call_backward(node, grads, False)
    finally:
        node.needs_input_grad = needs
    return tuple(None if w else r for r, w in zip(results, weight))


def backward_input(roots: list, grads: list, inputs: list) -> tuple[tuple, list]:
    """Gradients of ``inputs`` (None where unused) from ``roots`` with incoming ``grads``, and
    the stash the weight half needs. The graph is kept for the weight half."""
    stash: list = []
    got = engine.run_backward(
        roots, grads, retain_graph=True, create_graph=False, inputs=inputs,
        allow_unused=True, split=stash,
    )  # fmt: skip
    return got, stash


def backward_weight(stash: list) -> None:
    """Accumulate the parameters' gradients of a stashed input half into their ``.grad``."""
    from ..tensor import Tensor

    handles, seeds = [], []
    prev = grad_mode._state.enabled
    grad_mode._state.enabled = False
    try:
        for node, grads, weight in stash:
            needs = node.needs_input_grad
            node.needs_input_grad = tuple(n and w for n, w in zip(needs, weight))
            try:
                results = engine._call_backward(node, grads, False)
            finally:
                node.needs_input_grad = needs
            for e, w, g in zip(node._edges, weight, results):
                if not w or g is None:
                    continue
                tgt, out_nr, shape, dtype = e
                g = engine._np_asarray(g) if isinstance(g, engine._np_generic) else g
                if g.shape != shape:
                    g = engine._unbroadcast(g, shape, node.xp)
                if g.dtype != dtype:
                    g = g.astype(dtype)
                if isinstance(tgt, Tensor):  # a parameter: the root is the leaf itself
                    handles.append(tgt)
                else:  # a node that leads only to parameters: a handle on its output
                    h = Tensor._wrap(g)
                    h.requires_grad, h.grad_fn, h._output_nr = True, tgt, out_nr
                    handles.append(h)
                seeds.append(Tensor._wrap(g))
    finally:
        grad_mode._state.enabled = prev
    if handles:
        engine.run_backward(handles, seeds, retain_graph=False, create_graph=False)
