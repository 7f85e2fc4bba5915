"""``mode="reduce-overhead"`` with autograd on: the forward and the backward as CUDA graphs.

torch.cuda.make_graphed_callables' scheme, applied to a compiled entry. After warm-up calls the
runner captures two graphs on static buffers: the forward (the executor with autograd on, which
also records the autograd graph whose saved tensors the backward reads), and the backward
(``autograd.grad`` of the captured outputs with respect to the static inputs that require grad
and the module's parameters, from a static incoming gradient, packed into one flat buffer per
dtype). A call then is one autograd Function (:class:`_Replay`): its forward copies the inputs
in, replays the forward graph and returns copies of the outputs; its backward copies the
incoming gradient in, replays the backward graph, copies the flat gradient buffer once, and
hands out disjoint views of that copy, which the engine lets each parameter take as its
``.grad`` without a further copy (``engine.owned_bases``).

Nothing a caller holds is ever overwritten: outputs and gradients are fresh copies. What stays
static (the graphs read it by address) is guarded each call: a replaced parameter or buffer
array recaptures; a call made while the previous replay still waits for its backward (two
forwards before one backward) runs the ordinary executor, since a replay would overwrite the
saved tensors that backward needs; a backward of a replay that a later call has overwritten
raises. A failed capture runs the ordinary executor, with the same results.

Random numbers (dropout) are captured too: CuPy's Generator keeps its state on the device, and
each replay's kernels advance it, so a replay draws exactly what the eager call in its place
would have drawn (capture itself executes nothing).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from ..autograd import engine
from ..autograd.function import Function
from . import _cudagraph as _cg

__all__ = ["TrainingGraphRunner"]

RECAPTURE_LIMIT = 4


def _xp(a: Any) -> Any:
    """numpy or cupy: the module of an array."""
    import sys

    return sys.modules[type(a).__module__.split(".")[0]]


class TrainingGraphRunner:
    """A compiled entry's function, run as forward/backward CUDA graphs with autograd on."""

    def __init__(self, fn: Callable, params: list, state: list, skip: str | None = None):
        self.fn = fn
        self.params = params  # leaves whose gradients the backward graph computes
        self.state = state  # every parameter and buffer: the graphs read their arrays
        self.reason = skip or ""
        self.failed = skip is not None
        self.calls = 0
        self.captures = 0
        self._backend = None
        self.graph = None  # (forward graph, backward graph) once captured
        self._gen = 0  # forward replays so far: a backward checks its replay is the latest
        self._last: Any = None  # weakref to the latest replay's autograd node
        self._owned: Any = None

    # ---- dispatch -----------------------------------------------------------------------
    def _applies(self, values: tuple) -> bool:
        from ember import Tensor, is_grad_enabled

        if not is_grad_enabled():
            return False
        arrays = [v._data for v in values if isinstance(v, Tensor)]
        arrays += [p._data for p in self.params[:1]]
        if not arrays:
            return False
        if self._backend is None:
            if not _cg._is_cupy(arrays[0]) and _cg.make_backend is _cg._DEFAULT_BACKEND:
                return False
            self._backend = _cg.make_backend()
        return all(self._backend.accepts(a) for a in arrays)

    def __call__(self, *values: Any) -> Any:
        if self.failed or not self._applies(values):
            return self.fn(*values)
        if self.graph is not None and self._stale():
            if self.captures >= RECAPTURE_LIMIT:
                return self._disable("parameters or buffers keep being replaced")
            self.graph, self.calls = None, 0
        last = self._last() if self._last is not None else None
        if last is not None and not last.done:
            return self.fn(*values)  # a replay now would overwrite that backward's inputs
        if self.graph is None:
            self.calls += 1
            if self.calls <= _cg.WARMUP_CALLS or not self._capture(values):
                return self.fn(*values)
        from ember import Tensor

        tensors = [v for v in values if isinstance(v, Tensor)]
        for s, t in zip(self._static_in, tensors):
            if t.shape != s.shape or t.dtype != s.dtype:
                return self.fn(*values)  # guards keep shapes fixed; be safe regardless
        outs = _Replay.apply(self, *tensors, *self.params)
        outs = outs if isinstance(outs, tuple) else (outs,)
        return _cg.rebuild(self._out_spec, list(outs))

    def _stale(self) -> bool:
        return any(t._data is not a for t, a in zip(self.state, self._state_arrays)) or any(
            p.requires_grad is not r for p, r in zip(self.params, self._requires)
        )

    def _disable(self, reason: str) -> None:
        self.failed, self.graph, self.reason = True, None, reason
        import warnings

        warnings.warn(
            f"ember.compile(mode='reduce-overhead'): {reason}; running without CUDA graphs",
            stacklevel=4,
        )

    # ---- capture -------------------------------------------------------------------------
    def _capture(self, values: tuple) -> bool:
        from ember import Tensor, autograd

        self.captures += 1
        self._state_arrays = [t._data for t in self.state]
        self._requires = [p.requires_grad for p in self.params]
        static_values = [
            Tensor._wrap(v._data.copy()).requires_grad_(v.requires_grad)
            if isinstance(v, Tensor)
            else v
            for v in values
        ]
        self._static_in = [v for v in static_values if isinstance(v, Tensor)]
        targets = [s for s in self._static_in if s.requires_grad]
        targets += [p for p in self.params if p.requires_grad]
        self._target_pos = [i for i, s in enumerate(self._static_in) if s.requires_grad]
        n_in = len(self._static_in)
        self._target_pos += [n_in + i for i, p in enumerate(self.params) if p.requires_grad]

        def forward():
            out = self.fn(*static_values)
            tensors = _cg.flat_tensors(out)
            if tensors is None:
                raise TypeError(f"outputs of type {type(out).__name__} are not graphed")
            self._live = [t for t in tensors if t.requires_grad]  # read by backward()
            return (out, tensors), [t._data for t in tensors]

        def backward():
            grads = autograd.grad(
                self._live, targets, self._gouts, retain_graph=True, allow_unused=True
            )
            layout, flats = [], {}
            for i, g in enumerate(grads):
                if g is not None:
                    parts = flats.setdefault(g.dtype, [])
                    layout.append((i, g.dtype, sum(p.size for p in parts), tuple(g.shape)))
                    parts.append(g._data.reshape(-1))
            bufs = {dt: _xp(parts[0]).concatenate(parts) for dt, parts in flats.items()}
            return (layout, bufs), list(bufs.values())

        try:
            fwd, (out, tensors) = self._backend.capture(forward)
            self._out_spec, self._static_out = out, [t._data for t in tensors]
            self._diff = [i for i, t in enumerate(tensors) if t.requires_grad]
            self._gouts = [Tensor._wrap(_xp(t._data).zeros_like(t._data)) for t in self._live]
            bwd, (self._layout, self._flat) = self._backend.capture(backward)
        except Exception as e:  # a host sync, an unsupported op or output: no graphs
            self._disable(f"CUDA graph capture failed ({type(e).__name__}: {e})")
            return False
        self.graph = (fwd, bwd)
        return True


class _Replay(Function):  # the forward and backward replays as one autograd node
    supports_double_backward = False

    @staticmethod
    def forward(ctx, runner, *arrays):
        for s, a in zip(runner._static_in, arrays):
            s._data[...] = a
        runner._backend.replay(runner.graph[0])
        runner._gen += 1
        ctx.runner, ctx.gen, ctx.done = runner, runner._gen, False
        runner._last = weakref.ref(ctx)
        outs = tuple(a.copy() for a in runner._static_out)
        diff = set(runner._diff)
        ctx.mark_non_differentiable(*(o for i, o in enumerate(outs) if i not in diff))
        return outs

    @staticmethod
    def backward(ctx, *grads):
        runner = ctx.runner
        if ctx.gen != runner._gen:
            raise RuntimeError(
                "ember.compile(mode='reduce-overhead'): this backward's CUDA graph replay was "
                "overwritten by a later call of the compiled module; run backward before "
                "calling it again (or compile without mode='reduce-overhead')"
            )
        for s, i in zip(runner._gouts, runner._diff):
            g = grads[i]
            if g is None:
                s._data.fill(0)
            else:
                s._data[...] = g
        runner._backend.replay(runner.graph[1])
        ctx.done = True
        fresh = {dt: buf.copy() for dt, buf in runner._flat.items()}
        result = [None] * (len(runner._static_in) + len(runner.params))
        for i, dt, off, shape in runner._layout:
            n = 1
            for s in shape:
                n *= s
            result[runner._target_pos[i]] = fresh[dt][off : off + n].reshape(shape)
        # the views are disjoint and nothing else holds them: leaves may keep them as .grad
        for key in runner._owned or ():
            engine.owned_bases.pop(key, None)
        owned = {id(v.base): v.base for v in result if v is not None and v.base is not None}
        engine.owned_bases.update(owned)
        runner._owned = list(owned)
        return (None, *result)


def training_runner(cf: Any, entry: Any, graph: Any, troot: Any) -> TrainingGraphRunner:
    """The runner of ``cf``'s (``_frame.CompiledFunction``) entry under
    ``mode="reduce-overhead"`` with autograd on; ``skip`` says why it stays the executor."""
    from ember.nn import Parameter

    from ._executor import _resolve_attr

    seen: dict[int, Any] = {}
    for m in cf._modules:
        for t in (*m._parameters.values(), *m._buffers.values()):
            if t is not None:
                seen.setdefault(id(t), t)
    state = list(seen.values())
    params = [t for t in state if isinstance(t, Parameter)]
    skip = None if cf._is_module else "a compiled function (not a Module)"
    bound = {id(o) for _, _, o in entry.attr_guards}
    for n in graph.nodes:
        if skip is None and n.op == "get_attr":
            if id(_resolve_attr(troot, n.target)) not in bound:
                skip = f"{n.target} is a plain tensor attribute, read per call"
    return TrainingGraphRunner(entry.fn, params, state, skip)
