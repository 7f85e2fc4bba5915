"""The backward engine: iterative topological traversal, one un-broadcast per edge.

Gradients travel as raw arrays; with ``create_graph=True`` they travel as tensors and every
backward runs on tensors (``ctx.xp`` becomes ember's differentiable array namespace), so the
backward pass is itself recorded and can be differentiated again.
"""

from __future__ import annotations

import sys as _sys
from heapq import heappop as _heappop
from heapq import heappush as _heappush

import numpy as _np_module
from numpy import asarray as _np_asarray
from numpy import generic as _np_generic
from numpy import ndarray as _np_ndarray

from ..backend import _cupy
from . import anomaly_mode as _anomaly
from . import function as _fn
from . import grad_mode
from ._engine_hooks import _needed, _run_post_hooks, _run_pre_hooks
from .function import Function


def _unbroadcast(g, shape, xp):
    """Sum ``g`` down to ``shape`` (the engine's one un-broadcasting step)."""
    if g.shape == shape:
        return g
    extra = g.ndim - len(shape)
    if extra < 0:
        return xp.broadcast_to(g, shape)
    axes = tuple(range(extra)) + tuple(
        i + extra for i, n in enumerate(shape) if n == 1 and g.shape[i + extra] != 1
    )
    if axes:
        g = xp.sum(g, axis=axes, keepdims=True)
    if extra:
        g = xp.reshape(g, shape)
    return g


def _collect(roots):
    """Dependency counts of every node reachable from the roots (iterative DFS)."""
    deps: dict[int, int] = {}
    # one entry per node: outputs of one node (split, unbind) may all be roots
    if len(roots) == 1:  # (a loss: no dict and set built for one root)
        stack = [roots[0]] if isinstance(roots[0], Function) else []
    else:
        stack = list({id(r): r for r in roots if isinstance(r, Function)}.values())
    root_ids = [id(r) for r in stack] if len(stack) < 2 else {id(r) for r in stack}
    while stack:
        node = stack.pop()
        for e in node._edges:
            if e is None:
                continue
            tgt = e[0]
            k = id(tgt)
            n = deps.get(k)
            if n is None:  # first reached: walk below it (roots are on the stack already)
                deps[k] = 1
                if isinstance(tgt, Function) and k not in root_ids:
                    stack.append(tgt)
            else:
                deps[k] = n + 1
    return deps


_callbacks: list = []  # (depth of the backward that queued it, callback)
# How many backward passes are running inside one another: a reentrant backward (the reentrant
# checkpoint's) runs inside the outer one, and only the callbacks queued by a pass run at its end.
_depth = [0]

# Gradient destinations. A leaf Parameter may carry ``_grad_dest``: an array of its shape and
# dtype (a view of DDP's bucket) that its first gradient of a backward should land in. Before
# a node's backward the engine passes such arrays as ``node.grad_out``; ops that can write
# their result there (Linear) do, and the leaf then takes that array as its ``.grad`` without a
# copy. Counted, so that training without destinations never looks for them.
grad_destination_users = 0


def _grad_outs(node, deps, buffers):
    """Destinations for ``node``'s input gradients: only for a leaf whose whole gradient this
    node produces (its one producer, on one edge), so nothing else adds into the array."""
    outs = None
    edges = node._edges
    for i, e in enumerate(edges):
        if e is None:
            continue
        leaf = e[0]
        dest = getattr(leaf, "_grad_dest", None)
        if dest is None or leaf.grad is not None or leaf._hooks:
            continue
        k = id(leaf)
        if (
            deps.get(k) == 1
            and k not in buffers
            and sum(1 for f in edges if f is not None and f[0] is leaf) == 1
        ):
            if outs is None:
                outs = [None] * len(edges)
            outs[i] = dest
    return outs


def queue_callback(callback) -> None:
    """Run ``callback()`` once the current backward pass has finished (PyTorch's
    ``Variable._execution_engine.queue_callback``); used by DDP to finish its reductions."""
    # (queued outside any backward: it runs at the end of the next one)
    _callbacks.append((max(_depth[0], 1), callback))


def _add(a, b):
    if a is None:
        return b
    s = a + b
    return _np_asarray(s) if isinstance(s, _np_generic) else s  # 0-d sums become scalars


def run_backward(
    tensors,
    grad_tensors,
    retain_graph: bool,
    create_graph: bool,
    inputs=None,
    allow_unused: bool = False,
    accumulate: bool = True,
    split: list | None = None,
):
    """Backpropagate from ``tensors``; accumulate into leaves or, with ``inputs``, return grads.

    ``inputs`` (for ``autograd.grad``): tensors whose gradients are captured and returned;
    nothing is accumulated into ``.grad`` then. ``split`` (with ``inputs``): the input half of
    a split backward (``_split``); nodes that also feed weights are appended to this list.
    """
    Tensor = _fn.Tensor
    roots = []
    buffers: dict[int, list] = {}
    # The caller's gradient arrays must not become a leaf's .grad without a copy.
    seen_leaf_arrays: set[int] = {id(g._data) for g in grad_tensors}
    for t, g in zip(tensors, grad_tensors):
        if not t.requires_grad:
            raise RuntimeError(
                "element 0 of tensors does not require grad and does not have a grad_fn"
            )
        target = t.grad_fn if t.grad_fn is not None else t
        roots.append(target)
        g = g if create_graph else g._data
        if isinstance(target, Function):
            buf = buffers.setdefault(id(target), [None] * len(target._outputs_meta))
            buf[t._output_nr] = _add(buf[t._output_nr], g)
        else:
            buffers[id(target)] = _add(buffers.get(id(target)), g)

    capture: dict[int, int] | None = None  # id(leaf) or (id(node), out_nr) -> index in inputs
    captured = None
    needed = runs = None
    if inputs is not None:
        capture, captured = {}, [None] * len(inputs)
        for i, t in enumerate(inputs):
            key = id(t) if t.grad_fn is None else (id(t.grad_fn), t._output_nr)
            capture[key] = i
        targets = {id(t) if t.grad_fn is None else id(t.grad_fn) for t in inputs}
        # a target node itself runs only if another target lies below it (PyTorch's engine
        # stops at an input: Captum differentiates a layer's output, then below it)
        runs = _needed(roots, targets)
        needed = runs | targets

    deps = _collect(roots)
    # The ready queue is PyTorch's: a heap on creation order, the latest-created node first;
    # leaves (PyTorch's AccumulateGrad, sequence number "infinity") go before any node.
    ready = []
    if len(roots) == 1:
        if id(roots[0]) not in deps:
            _push(ready, roots[0])
    else:
        for r in {id(r): r for r in roots if deps.get(id(r), 0) == 0}.values():
            _push(ready, r)
    # The plain case -- no gradient capture, no split, no graph of the backward, the engine's
    # own _call_backward (not a profiler's, a dispatch mode's or fx's) -- calls each node's
    # backward inline: the helper's call and its checks cost ~1 us a node on small ops.
    plain = (
        not create_graph
        and capture is None
        and split is None
        and _call_backward is _plain_call_backward
        and not grad_destination_users
    )
    plain_acc = plain and accumulate
    grad_prop = Tensor.__dict__["grad"]  # (a subclass with its own .grad takes _deliver_leaf)
    prev_mode = grad_mode._state.enabled
    grad_mode._state.enabled = create_graph
    cuda_prev = None  # the caller's CUDA device once backward has switched devices
    _depth[0] += 1
    depth = _depth[0]
    try:
        while ready:
            node = _heappop(ready)[2]
            if not isinstance(node, Function):
                g = buffers.pop(id(node), None)
                if g is not None:
                    if type(g) is not _np_ndarray:
                        cuda_prev = _follow_device(g, create_graph, cuda_prev)
                    elif plain_acc and not node._hooks and not node._post_acc_hooks:
                        # the usual step after the first: add into the leaf's .grad in place
                        # (what _deliver_leaf does, without its call and checks)
                        cur = node._grad
                        if (
                            cur is not None
                            and not cur.requires_grad
                            and type(cur._data) is _np_ndarray
                            and type(node).grad is grad_prop
                        ):
                            cur._data += g
                            continue
                    _deliver_leaf(
                        node, g, create_graph, capture, captured, accumulate, seen_leaf_arrays
                    )
                continue
            grads = buffers.pop(id(node), None)
            edges = node._edges
            if grads is None:
                results = None
            elif plain and node._pre_hooks is None and node.xp is _np_module and not node._meta:
                if node._materialize and (grads[0] is None or len(grads) > 1):
                    if any(g is None for g in grads):
                        grads = [
                            _zeros(node, i, False) if g is None else g for i, g in enumerate(grads)
                        ]
                results = type(node).backward(node, *grads)
                if type(results) is not tuple:
                    results = (results,)
                if len(results) != len(edges):
                    results = _check_count(node, results)
                if _anomaly._state[0]:
                    _anomaly.check_backward(node, results)
            else:
                if node._pre_hooks is not None or capture is not None:
                    grads = _run_pre_hooks(node, grads, create_graph, capture, captured)
                # A node that received no gradient at all passes none on (nothing to compute).
                if runs is None or id(node) in runs:
                    if node.xp is not _np_module:
                        g0 = next((g for g in grads if g is not None), None)
                        cuda_prev = _follow_device(g0, create_graph, cuda_prev)
                    if split is not None:
                        from ._split import input_half

                        results = input_half(node, grads, needed, split)
                    elif (
                        grad_destination_users
                        and accumulate
                        and capture is None
                        and not create_graph
                    ):
                        node.grad_out = _grad_outs(node, deps, buffers)
                        try:
                            results = _call_backward(node, grads, create_graph)
                        finally:
                            # only for this call: a graph kept alive afterwards (the last loss)
                            # must not keep DDP's buckets referenced
                            node.grad_out = None
                    else:
                        results = _call_backward(node, grads, create_graph)
                else:
                    results = None
            if results is not None and node._post_hooks:
                results = _run_post_hooks(node, results, grads, create_graph)
            if not retain_graph and (runs is None or id(node) in runs):
                node._saved = None  # (autograd.grad frees only the part of the graph it ran)
            i = -1
            for e in edges:
                i += 1
                if e is None:
                    continue
                tgt, out_nr, shape, dtype = e
                k = id(tgt)
                g = results[i] if results is not None else None
                is_node = isinstance(tgt, Function)
                if g is not None:
                    if type(g) is not _np_ndarray and isinstance(g, _np_generic):
                        g = _np_asarray(g)  # NumPy ufuncs turn 0-d results to scalars
                    if g.shape != shape:
                        g = _unbroadcast(g, shape, node.xp if not create_graph else _tensor_xp())
                    if g.dtype != dtype:
                        g = g.astype(dtype) if not create_graph else g.to(_dtype_of(dtype))
                    if is_node:
                        buf = buffers.get(k)
                        if buf is None:
                            buf = buffers[k] = [None] * len(tgt._outputs_meta)
                        cur = buf[out_nr]
                        buf[out_nr] = g if cur is None else _add(cur, g)
                    else:
                        cur = buffers.get(k)
                        buffers[k] = g if cur is None else _add(cur, g)
                n = deps[k] - 1
                deps[k] = n
                if n == 0:
                    _heappush(ready, (-tgt._seq if is_node else _LEAF_KEY, _tiebreak(), tgt))
    finally:
        grad_mode._state.enabled = prev_mode
        if cuda_prev is not None:
            _cupy.cupy.cuda.runtime.setDevice(cuda_prev)
        _depth[0] -= 1
        if _callbacks:
            callbacks = [cb for d, cb in _callbacks if d >= depth]
            _callbacks[:] = [(d, cb) for d, cb in _callbacks if d < depth]
        else:
            callbacks = ()
    for cb in callbacks:  # e.g. DDP waits for its last gradient buckets here
        cb()
    if captured is None:
        return None
    out = []
    for g in captured:
        if g is None and not allow_unused:
            raise RuntimeError(
                "One of the differentiated Tensors appears to not have been used in the graph. "
                "Set allow_unused=True if this is the desired behavior."
            )
        out.append(None if g is None else (g if create_graph else Tensor._wrap(g)))
    return tuple(out)


_tiebreak = __import__("itertools").count().__next__


_LEAF_KEY = -float("inf")


def _push(ready: list, node) -> None:
    # (-sequence number, insertion count, node): a leaf tensor sorts first; nodes of equal
    # sequence number (none recorded) keep insertion order, so the heap never compares nodes
    _heappush(ready, (-node._seq if isinstance(node, Function) else _LEAF_KEY, _tiebreak(), node))


def _follow_device(g, create_graph: bool, prev):
    """Make the device of gradient ``g`` the current CUDA device, when it is a CuPy array.

    CuPy computes (and allocates) on the thread's current device, so a graph spread over
    several GPUs (DataParallel replicas) must run each node where its gradients live. Returns
    the device to restore when backward ends: the caller's, once a switch happened, else None.
    """
    arr = g._data if create_graph else g
    if arr is None or isinstance(arr, _np_ndarray) or _cupy.cupy is None:
        return prev  # NumPy (or meta: an ndarray subclass) arrays: no CUDA device to follow
    runtime = _cupy.cupy.cuda.runtime
    cur = runtime.getDevice()
    want = arr.device.id
    if want == cur:
        return prev
    runtime.setDevice(want)
    return cur if prev is None else prev


def _dtype_of(np_dtype):
    from ..backend.dtype import from_numpy_dtype

    return from_numpy_dtype(np_dtype)


def _tensor_xp():
    from . import tensor_xp

    return tensor_xp


def _call_backward(node, grads, create_graph):
    if (node._materialize or create_graph) and any(g is None for g in grads):
        grads = [_zeros(node, i, create_graph) if g is None else g for i, g in enumerate(grads)]
    if create_graph:
        if not node.supports_double_backward:
            raise RuntimeError(
                f"{node.name()} does not support higher-order gradients (create_graph=True)"
            )
        prev_xp = node.xp
        node.xp = _tensor_xp()
        node._tensor_mode = True
        try:
            results = type(node).backward(node, *grads)
        finally:
            node.xp = prev_xp
            node._tensor_mode = False
    elif node._meta:
        from ..backend.meta import run

        results = run(type(node).backward, node, grads, {})
    else:
        results = type(node).backward(node, *grads)
    if type(results) is not tuple:
        results = (results,)
    if len(results) != len(node._edges):
        results = _check_count(node, results)
    if _anomaly._state[0]:  # detect_anomaly: NaN in a backward's results raises here
        _anomaly.check_backward(node, results)
    return results


# The engine's own per-node call: run_backward calls backward inline while this is the one in
# place (a profiler, a dispatch mode or fx swaps in its own _call_backward).
_plain_call_backward = _call_backward


def _check_count(node, results):
    """A backward's results of another length than the node's inputs: torch allows extra
    trailing Nones (custom_function_conv_bn); anything else is an error."""
    n = len(node._edges)
    if len(results) > n and all(r is None for r in results[n:]):
        return results[:n]
    raise RuntimeError(
        f"function {node.name()} returned an incorrect number of gradients "
        f"(expected {n}, got {len(results)})"
    )


def _zeros(node, i, create_graph):
    shape, dtype = node._outputs_meta[i]
    z = node.xp.zeros(shape, dtype=dtype)
    return _fn.Tensor._wrap(z) if create_graph else z


def _base_refs(a):
    return _sys.getrefcount(a.base)


# The count of a view's base when that view is its only holder (calibrated, not assumed: it
# depends on the interpreter).
_SOLE_REFS = _base_refs(_np_module.zeros(2).reshape(2, 1))


def _sole_view(g) -> bool:
    """Whether g is a C-contiguous view spanning all of its base array, and nothing but g holds
    that base: no other array can see g's memory, so a leaf may own it without a copy. (A
    reshape of a kernel's fresh output is the usual case: 16 x 64 x 16 x 16 group norm spent
    ~15% of its step copying it.) Any other view of the same memory holds the base too."""
    refs = _base_refs(g)  # first: the name ``base`` below is one more holder
    base = g.base
    return (
        refs <= _SOLE_REFS
        and type(base) is type(g)
        and g.flags.c_contiguous
        and base.flags.c_contiguous
        and g.nbytes == base.nbytes
        and g.flags.writeable  # (an empty broadcast view passes the tests above)
    )


# Arrays whose views leaves may take as their .grad without a copy, by id: a compiled CUDA-graph
# backward (_compile/_cudagraph_train) hands out disjoint views of one fresh buffer it made.
owned_bases: dict = {}


def _deliver_leaf(leaf, g, create_graph, capture, captured, accumulate, seen_arrays):
    Tensor = _fn.Tensor
    hooks = leaf._hooks
    if hooks:
        gt = g if create_graph else Tensor._wrap(g)  # one tensor for all (_run_pre_hooks)
        for hook in list(hooks):
            r = hook(gt)
            if r is not None:
                gt = r
                g = r if create_graph else r._data
    if capture is not None:
        idx = capture.get(id(leaf))
        if idx is not None:
            captured[idx] = g
        return
    if not accumulate:
        return
    if create_graph:
        leaf.grad = g if leaf.grad is None else leaf.grad + g
    else:
        cur = leaf.grad
        if cur is None:
            # Ops may hand the same gradient array to several inputs (add returns ``grad``
            # twice): a leaf must own its .grad so later in-place updates stay local. Its
            # gradient destination is its own (see ``_grad_outs``).
            if (
                id(g) in seen_arrays
                or (
                    g.base is not None
                    and not _sole_view(g)
                    and owned_bases.get(id(g.base)) is not g.base
                )
            ) and g is not getattr(leaf, "_grad_dest", None):
                g = g.copy()
            seen_arrays.add(id(g))
            leaf.grad = Tensor._wrap(g)
        elif cur.requires_grad:
            leaf.grad = cur + Tensor._wrap(g)
        else:
            cur._data += g
    post = leaf._post_acc_hooks
    if post:
        for hook in list(post):
            hook(leaf)
