"""``mode="reduce-overhead"``: replay a compiled call as a CUDA graph (CuPy stream capture).

Why: a captured graph of N kernels launches with one ``cudaGraphLaunch`` instead of N Python
and CuPy calls (~10 us each, docs/gpu.md). As torch's cudagraph trees do, a runner owns static
input buffers: each call copies the arguments into them and replays the graph.

Two runners share one capture backend (:class:`CupyGraphs`): :class:`CUDAGraphRunner` here for
calls with autograd off (it returns the static outputs, overwritten by the next replay, as
torch's are unless cloned), and ``_cudagraph_train.TrainingGraphRunner`` for training calls
(a forward graph and a backward graph behind one autograd Function).

The backend captures on a side stream into a **private memory pool**: a temporary freed during
capture returns to that pool, never to the one eager code allocates from, so a replay cannot
write into memory eager code has since been given. Replays go on the current stream, ordered
with the eager work around them, with no host synchronisation. A capture that fails (a host
synchronisation inside the graph, an unsupported call) disables the runner, which then runs the
ordinary executor: results are the same in every case.

On the CPU the runners run the ordinary executor. Tests drive them with
:class:`EmulatedGraphs`, which "replays" by running the captured function again and copying its
results into the captured arrays: the static-buffer plumbing is then checked without a GPU.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

__all__ = ["CUDAGraphRunner", "CupyGraphs", "EmulatedGraphs", "flat_tensors", "make_backend"]

WARMUP_CALLS = 2  # eager runs before capture (cuBLAS handles, allocator pools, kernel caches)


def _is_cupy(a: Any) -> bool:
    return type(a).__module__.split(".")[0] == "cupy"


class CupyGraphs:  # pragma: no cover - needs a GPU
    """CUDA graphs through CuPy: capture on a side stream into a private pool, replay on the
    current stream."""

    def __init__(self) -> None:
        import cupy

        self._cupy = cupy
        self.pool = cupy.cuda.MemoryPool()
        self.stream = cupy.cuda.Stream(non_blocking=True)

    @staticmethod
    def accepts(array: Any) -> bool:
        return _is_cupy(array)

    def capture(self, fn: Callable[[], tuple[Any, list]]) -> tuple[Any, Any]:
        """Run ``fn`` under stream capture; ``fn`` returns ``(payload, arrays)``: what the
        caller keeps, and the arrays a replay rewrites. Returns ``(graph, payload)``."""
        cupy = self._cupy
        cupy.cuda.get_current_stream().synchronize()  # static inputs are written first
        # relaxed: the pool may cudaMalloc a new block while the stream captures
        mode = getattr(cupy.cuda.runtime, "streamCaptureModeRelaxed", 2)
        with cupy.cuda.using_allocator(self.pool.malloc), self.stream:
            self.stream.begin_capture(mode=mode)
            try:
                payload, _ = fn()
            finally:
                graph = self.stream.end_capture()
        return graph, payload

    def replay(self, graph: Any) -> None:
        graph.launch(stream=self._cupy.cuda.get_current_stream())


class EmulatedGraphs:
    """A stand-in for :class:`CupyGraphs` on any arrays (tests): a replay runs the captured
    function again and copies its arrays into those the capture returned, which is what a real
    replay's kernels do to the static buffers."""

    @staticmethod
    def accepts(array: Any) -> bool:
        return True

    def capture(self, fn: Callable[[], tuple[Any, list]]) -> tuple[Any, Any]:
        import ember

        state = ember.get_rng_state()  # a real capture executes nothing: it draws nothing
        payload, arrays = fn()
        ember.set_rng_state(state)
        return (fn, arrays), payload

    def replay(self, graph: Any) -> None:
        fn, static = graph
        _, arrays = fn()
        for dst, src in zip(static, arrays):
            dst[...] = src


def make_backend() -> Any:
    """The capture backend of a new runner (tests patch this to :class:`EmulatedGraphs`)."""
    return CupyGraphs()


def flat_tensors(out: Any) -> list | None:
    """The tensors of an output that is a Tensor or a (nested) tuple/list of them, in order;
    None for any other structure (such a call is not graphed)."""
    from ember import Tensor

    if isinstance(out, Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        res = []
        for o in out:
            sub = flat_tensors(o)
            if sub is None:
                return None
            res += sub
        return res
    return None


def rebuild(out: Any, tensors: list) -> Any:
    """``out``'s structure with its tensors replaced, in order, by ``tensors``."""
    it = iter(tensors)

    def walk(o):
        if isinstance(o, (tuple, list)):
            return type(o)(walk(e) for e in o)
        return next(it)

    return walk(out)


class CUDAGraphRunner:
    """Wraps a compiled entry's function (autograd off): warm up, capture once, then replay."""

    def __init__(self, fn: Callable) -> None:
        self.fn = fn
        self.calls = 0
        self.graph = None
        self.failed = False
        self.reason = ""
        self._backend = None
        self._static_in: list = []
        self._static_out: Any = None

    def _applies(self, values: tuple) -> bool:
        from ember import Tensor, is_grad_enabled

        if is_grad_enabled():
            return False
        tensors = [v for v in values if isinstance(v, Tensor)]
        if not tensors:
            return False
        if self._backend is None:
            if not _is_cupy(tensors[0]._data) and make_backend is _DEFAULT_BACKEND:
                return False  # CPU data: no graph, and no CuPy import
            self._backend = make_backend()
        return all(self._backend.accepts(t._data) for t in tensors)

    def __call__(self, *values: Any) -> Any:
        if self.failed or not self._applies(values):
            return self.fn(*values)
        if self.graph is None:
            self.calls += 1
            if self.calls <= WARMUP_CALLS:
                return self.fn(*values)
            if not self._capture(values):
                return self.fn(*values)
        return self._replay(values)

    def _capture(self, values: tuple) -> bool:
        from ember import Tensor

        self._static_in = [
            Tensor._wrap(v._data.copy()) if isinstance(v, Tensor) else v for v in values
        ]

        def run():
            out = self.fn(*self._static_in)
            tensors = flat_tensors(out)
            if tensors is None:
                raise TypeError(f"outputs of type {type(out).__name__} are not graphed")
            return out, [t._data for t in tensors]

        try:
            self.graph, self._static_out = self._backend.capture(run)
            return True
        except Exception as e:  # a host sync, an unsupported call: run as usual from now on
            self.disable(e)
            return False

    def disable(self, e: BaseException) -> None:
        self.failed, self.graph = True, None
        self.reason = f"CUDA graph capture failed ({type(e).__name__}: {e})"
        warnings.warn(
            f"ember.compile(mode='reduce-overhead'): {self.reason}; running without CUDA graphs",
            stacklevel=4,
        )

    def _replay(self, values: tuple) -> Any:
        from ember import Tensor

        for static, v in zip(self._static_in, values):
            if isinstance(v, Tensor) and (v.shape != static.shape or v.dtype != static.dtype):
                return self.fn(*values)  # guards keep shapes fixed; be safe regardless
        for static, v in zip(self._static_in, values):
            if isinstance(v, Tensor):
                static._data[...] = v._data
        self._backend.replay(self.graph)
        return self._static_out


_DEFAULT_BACKEND = make_backend
