"""``mode="reduce-overhead"``: replay a compiled call as a CUDA graph (CuPy stream capture).

Why: a captured graph of N kernels launches with one ``cudaGraphLaunch`` instead of N Python
and CuPy calls (~10 us each, docs/gpu.md). As torch's cudagraph trees do, the runner owns
static input buffers: each call copies the arguments into them, replays the graph, and returns
the static outputs (overwritten by the next replay, as torch's are unless cloned).

Where it applies: the compiled entry runs with autograd off (``no_grad``/``inference_mode``;
recording an autograd graph is host work a replay would skip), every tensor argument is a
CuPy array on the current device, and the graph contains no host synchronisation (a capture
that fails for any reason disables the runner for that entry, which then runs as usual). On
the CPU, or with autograd on, ``reduce-overhead`` runs the ordinary executor: results are the
same in every case. This path has not been run on a device in this repository's CI.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

__all__ = ["CUDAGraphRunner", "applies"]

WARMUP_CALLS = 2  # eager runs before capture (cuBLAS handles, allocator pools, kernel caches)


def _is_cupy(a: Any) -> bool:
    return type(a).__module__.split(".")[0] == "cupy"


def applies(values: list) -> bool:
    """Whether a call with these arguments may be replayed as a CUDA graph."""
    from ember import Tensor, is_grad_enabled

    if is_grad_enabled():
        return False
    tensors = [v for v in values if isinstance(v, Tensor)]
    return bool(tensors) and all(_is_cupy(t._data) for t in tensors)


class CUDAGraphRunner:
    """Wraps a compiled entry's function: warm up, capture once, then replay."""

    def __init__(self, fn: Callable) -> None:
        self.fn = fn
        self.calls = 0
        self.graph = None
        self.failed = False
        self._static_in: list = []
        self._static_out: Any = None
        self._stream = None

    def __call__(self, *values: Any) -> Any:
        if self.failed or not applies(list(values)):
            return self.fn(*values)
        if self.graph is None:
            self.calls += 1
            if self.calls <= WARMUP_CALLS:
                return self.fn(*values)
            if not self._capture(values):
                return self.fn(*values)
        return self._replay(values)

    # ---- device work (pragma: no cover: needs a GPU) ----------------------------------
    def _capture(self, values: tuple) -> bool:  # pragma: no cover
        import cupy

        from ember import Tensor

        try:
            self._static_in = [
                Tensor._wrap(v._data.copy()) if isinstance(v, Tensor) else v for v in values
            ]
            self._stream = cupy.cuda.Stream(non_blocking=True)
            with self._stream:
                self._stream.begin_capture()
                try:
                    self._static_out = self.fn(*self._static_in)
                finally:
                    self.graph = self._stream.end_capture()
            return True
        except Exception as e:  # a host sync, an unsupported call: run as usual from now on
            self.failed, self.graph = True, None
            warnings.warn(
                f"ember.compile(mode='reduce-overhead'): CUDA graph capture failed "
                f"({type(e).__name__}: {e}); running without CUDA graphs",
                stacklevel=3,
            )
            return False

    def _replay(self, values: tuple) -> Any:  # pragma: no cover
        from ember import Tensor

        for static, v in zip(self._static_in, values):
            if isinstance(v, Tensor) and (v.shape != static.shape or v.dtype != static.dtype):
                return self.fn(*values)  # guards keep shapes fixed; be safe regardless
        with self._stream:  # the copies, then the replay, in order on the capture stream
            for static, v in zip(self._static_in, values):
                if isinstance(v, Tensor):
                    static._data[...] = v._data
            self.graph.launch(stream=self._stream)
        self._stream.synchronize()  # later work on other streams reads the static outputs
        return self._static_out
