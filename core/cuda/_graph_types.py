"""``ember.cuda.CUDAGraph``, ``ember.cuda.graph`` and ``graph_pool_handle``: user-level CUDA
graph capture on CuPy (torch.cuda.graphs).

Capture runs on a side stream into a private CuPy memory pool (as ``ember.compile``'s
``mode="reduce-overhead"`` runners do, core/_compile/_cudagraph.py): the arrays the captured
work allocates stay owned by that pool, so a replay writes into the same memory, and the
tensors made during capture are the graph's static outputs. ``replay()`` launches the graph on
the current stream. Without CUDA (CuPy and a device) constructing one raises, as torch's CPU
build does. Written against CuPy's stream-capture API and not yet run on a device (no GPU was
available to the session that wrote it).
"""

from __future__ import annotations

from typing import Any

__all__ = ["CUDAGraph", "graph", "graph_pool_handle"]

_MODES = {"global": "streamCaptureModeGlobal", "thread_local": "streamCaptureModeThreadLocal",
          "relaxed": "streamCaptureModeRelaxed"}  # fmt: skip


def _cupy() -> Any:
    from . import is_available

    if not is_available():
        raise RuntimeError(
            "CUDA graphs need a CUDA device and CuPy; none is available (torch's CPU build "
            "refuses them too)"
        )
    import cupy

    return cupy


def graph_pool_handle() -> Any:
    """A memory pool several graphs may share (pass it as ``pool=``)."""
    return _cupy().cuda.MemoryPool()


class CUDAGraph:
    """A captured CUDA graph: ``capture_begin()`` ... ``capture_end()``, then ``replay()``."""

    def __init__(self, keep_graph: bool = False) -> None:
        self._cupy = _cupy()
        self._graph: Any = None
        self._pool: Any = None
        self._scopes: list = []

    def capture_begin(self, pool: Any = None, capture_error_mode: str = "global") -> None:
        """Start capturing the work queued on this thread's current stream."""
        if self._graph is not None or self._scopes:
            raise RuntimeError("This CUDAGraph already holds a capture; call reset() first")
        if capture_error_mode not in _MODES:
            raise ValueError(
                f"capture_error_mode must be one of {sorted(_MODES)}, got {capture_error_mode!r}"
            )
        cupy = self._cupy
        self._pool = pool if pool is not None else cupy.cuda.MemoryPool()
        cupy.cuda.get_current_stream().synchronize()  # inputs written before are visible
        stream = cupy.cuda.Stream(non_blocking=True)
        scopes = [cupy.cuda.using_allocator(self._pool.malloc), stream]
        for s in scopes:
            s.__enter__()
        self._scopes = scopes
        mode = getattr(cupy.cuda.runtime, _MODES[capture_error_mode])
        stream.begin_capture(mode=mode)

    def capture_end(self) -> None:
        """End the capture started by :meth:`capture_begin`."""
        if not self._scopes:
            raise RuntimeError("capture_end() without capture_begin()")
        allocator, stream = self._scopes
        try:
            self._graph = stream.end_capture()
        finally:
            self._scopes = []
            stream.__exit__(None, None, None)
            allocator.__exit__(None, None, None)

    def replay(self) -> None:
        """Launch the captured work on the current stream."""
        if self._graph is None:
            raise RuntimeError("replay() needs a captured graph (capture_begin/capture_end)")
        self._graph.launch(stream=self._cupy.cuda.get_current_stream())

    def reset(self) -> None:
        """Drop the captured graph (its pool's memory is freed with the last reference)."""
        self._graph = None

    def pool(self) -> Any:
        """The memory pool of this graph's allocations (to share with another capture)."""
        return self._pool

    def enable_debug_mode(self) -> None:
        """Accepted for torch's API; CuPy graphs keep no debug dump."""

    def debug_dump(self, debug_path: str) -> None:
        raise NotImplementedError("ember.cuda.CUDAGraph.debug_dump: CuPy graphs have no dump")


class graph:  # noqa: N801 -- torch's name
    """``with ember.cuda.graph(g):``: capture the block's CUDA work into ``g`` (``stream=`` is
    accepted; the capture runs on a side stream of its own)."""

    def __init__(self, cuda_graph: CUDAGraph, pool: Any = None, stream: Any = None,
                 capture_error_mode: str = "global") -> None:  # fmt: skip
        if not isinstance(cuda_graph, CUDAGraph):
            raise TypeError(f"graph() expects a CUDAGraph, got {type(cuda_graph).__name__}")
        self.cuda_graph, self.pool, self.mode = cuda_graph, pool, capture_error_mode

    def __enter__(self) -> None:
        self.cuda_graph.capture_begin(pool=self.pool, capture_error_mode=self.mode)

    def __exit__(self, *exc: Any) -> None:
        self.cuda_graph.capture_end()
