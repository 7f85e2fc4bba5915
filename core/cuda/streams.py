"""``ember.cuda.Stream`` / ``Event`` / ``stream()``: CUDA streams and events through CuPy.

ember's CUDA kernels run on CuPy's current stream, so ``with ember.cuda.stream(s):`` really
moves work onto ``s``. Without CUDA, construction fails as in PyTorch's CPU build, and
``stream(None)`` is a no-op context.
"""

from __future__ import annotations

from ._lazy import cupy_or_raise, device_index, has_cuda

__all__ = [
    "Stream",
    "Event",
    "ExternalStream",
    "StreamContext",
    "stream",
    "current_stream",
    "default_stream",
    "set_stream",
]


class Stream:
    """A CUDA stream on ``device`` (``priority``: lower is higher priority, 0 by default)."""

    def __init__(self, device=None, priority: int = 0, **kwargs):
        if not has_cuda():
            raise RuntimeError("ember.cuda.Stream requires CUDA support")
        cp = cupy_or_raise()  # pragma: no cover - GPU
        self.device_index = device_index(device)
        with cp.cuda.Device(self.device_index):
            self._cp = kwargs.get("_cupy") or cp.cuda.Stream(non_blocking=True, priority=priority)
        self.priority = priority

    @classmethod
    def _wrap(cls, cp_stream, index: int) -> Stream:  # pragma: no cover - GPU
        s = cls.__new__(cls)
        s._cp, s.device_index, s.priority = cp_stream, index, 0
        return s

    @property
    def cuda_stream(self) -> int:
        return int(self._cp.ptr)

    @property
    def device(self):
        from ..backend.device import device

        return device("cuda", self.device_index)

    def query(self) -> bool:
        return bool(self._cp.done)

    def synchronize(self) -> None:
        self._cp.synchronize()

    def wait_event(self, event: Event) -> None:
        self._cp.wait_event(event._cp)

    def wait_stream(self, stream: Stream) -> None:
        self.wait_event(stream.record_event())

    def record_event(self, event: Event | None = None) -> Event:
        event = Event() if event is None else event
        event.record(self)
        return event

    def __enter__(self):
        self._ctx = StreamContext(self)
        return self._ctx.__enter__()

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)

    def __eq__(self, other) -> bool:
        return isinstance(other, Stream) and self.cuda_stream == other.cuda_stream

    def __hash__(self) -> int:
        return hash((self.cuda_stream, self.device_index))

    def __repr__(self) -> str:
        return (
            f"<ember.cuda.Stream device=cuda:{self.device_index} cuda_stream={self.cuda_stream:#x}>"
        )


class ExternalStream(Stream):
    """A stream allocated elsewhere (``stream_ptr``: a ``cudaStream_t``)."""

    def __init__(self, stream_ptr: int, device=None, **kwargs):
        cp = cupy_or_raise()
        idx = device_index(device)  # pragma: no cover - GPU
        super().__init__(idx, _cupy=cp.cuda.ExternalStream(stream_ptr, idx))


class Event:
    """A CUDA event: mark a point in a stream, wait for it, time between two."""

    def __init__(
        self, enable_timing: bool = False, blocking: bool = False, interprocess: bool = False
    ):
        if not has_cuda():
            raise RuntimeError("ember.cuda.Event requires CUDA support")
        cp = cupy_or_raise()  # pragma: no cover - GPU
        self._cp = cp.cuda.Event(
            block=blocking, disable_timing=not enable_timing, interprocess=interprocess
        )

    def record(self, stream: Stream | None = None) -> None:
        self._cp.record(None if stream is None else stream._cp)

    def wait(self, stream: Stream | None = None) -> None:
        (current_stream() if stream is None else stream).wait_event(self)

    def query(self) -> bool:
        return bool(self._cp.done)

    def synchronize(self) -> None:
        self._cp.synchronize()

    def elapsed_time(self, end_event: Event) -> float:
        """Milliseconds between this event and ``end_event`` (both recorded, timing on)."""
        return float(cupy_or_raise().cuda.get_elapsed_time(self._cp, end_event._cp))

    @property
    def cuda_event(self) -> int:
        return int(self._cp.ptr)


def current_stream(device=None) -> Stream:
    """The current :class:`Stream` of a device (default: the current device). Without CUDA it
    raises, as PyTorch's CPU build does.
    """
    cp = cupy_or_raise()
    idx = device_index(device)  # pragma: no cover - GPU
    with cp.cuda.Device(idx):
        return Stream._wrap(cp.cuda.get_current_stream(), idx)


def default_stream(device=None) -> Stream:
    """The default (null) :class:`Stream` of a device. Without CUDA it raises, as PyTorch's CPU
    build does.
    """
    cp = cupy_or_raise()
    return Stream._wrap(cp.cuda.Stream.null, device_index(device))  # pragma: no cover - GPU


def set_stream(stream: Stream | None) -> None:
    """Make ``stream`` current (None: a no-op, as in PyTorch)."""
    if stream is None:
        return
    stream._cp.use()  # pragma: no cover - GPU


_held: list = []  # (event, array) pairs that Tensor.record_stream keeps referenced


def _hold_until_done(stream: Stream, array) -> None:
    """Keep ``array`` referenced until the work queued on ``stream`` so far has finished, so
    its memory cannot return to CuPy's pool (and be handed out again) while ``stream`` still
    reads it: ``Tensor.record_stream``, used by prefetchers that copy on a side stream."""
    if not isinstance(stream, Stream):
        raise TypeError(
            f"record_stream(): expected an ember.cuda.Stream, got {type(stream).__name__}"
        )
    _held[:] = [(e, a) for e, a in _held if not e.query()]  # pragma: no cover - GPU
    _held.append((stream.record_event(), array))  # pragma: no cover - GPU


class StreamContext:
    """Run the block with ``stream`` current (``None``: a no-op, also without CUDA)."""

    def __init__(self, stream: Stream | None):
        self.stream = stream
        self._prev = None

    def __enter__(self):
        if self.stream is None:
            return None
        cp = cupy_or_raise()  # pragma: no cover - GPU
        self._prev = cp.cuda.get_current_stream()
        self.stream._cp.use()
        return self.stream

    def __exit__(self, *exc):
        if self._prev is not None:  # pragma: no cover - GPU
            self._prev.use()
            self._prev = None
        return False


def stream(stream: Stream | None) -> StreamContext:
    """``with ember.cuda.stream(s):`` runs CUDA work of the block on ``s``."""
    return StreamContext(stream)
