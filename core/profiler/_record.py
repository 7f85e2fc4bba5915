"""Recording: one active recorder per process, fed by hooks at the central op paths.

While a profiler records, ``Function.apply`` (every differentiable op), the engine's per-node
backward call and the no-grad builders of ``ops.function_free`` are timed. The hooks are
installed by swapping those entry points when recording starts and restoring them when it
stops, so ops pay nothing while no profiler records (the no-grad builders read one flag).
"""

from __future__ import annotations

import os
import threading
import time
import traceback
import weakref

from ..autograd import engine as _engine
from ..autograd.function import Function
from ..ops import function_free as _free
from . import _annotations

_perf = time.perf_counter_ns
_EMBER_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Event kinds, as the Chrome trace's "cat".
CPU_OP, USER_ANNOTATION, BACKWARD = "cpu_op", "user_annotation", "cpu_op"


class RawEvent:
    """One timed range; the profiler turns these into ``FunctionEvent``s when it stops."""

    __slots__ = ("name", "cat", "t0", "t1", "tid", "shapes", "mem", "stack", "cuda")

    def __init__(self, name, cat, t0, t1, tid, shapes=None, mem=0, stack=None, cuda=None):
        self.name, self.cat, self.t0, self.t1, self.tid = name, cat, t0, t1, tid
        self.shapes, self.mem, self.stack, self.cuda = shapes, mem, stack, cuda


class Recorder:
    """What one recording session keeps: its options and the events so far."""

    def __init__(
        self, record_shapes: bool, profile_memory: bool, with_stack: bool, use_cuda: bool
    ) -> None:
        self.record_shapes = record_shapes
        self.profile_memory = profile_memory
        self.with_stack = with_stack
        self.use_cuda = use_cuda
        self.events: list[RawEvent] = []
        # (perf ns, +/-bytes, device) per op output made / freed (export_memory_timeline)
        self.mem_events: list[tuple[int, int, str]] = []
        self.wall0 = time.time_ns()
        self.perf0 = _perf()

    def add(self, name, cat, t0, t1, args, out, cuda=None) -> None:
        shapes = _shapes(args) if self.record_shapes else None
        mem = _nbytes(out) if self.profile_memory else 0
        if mem:
            self._track(out, t1)
        stack = _user_stack() if self.with_stack else None
        self.events.append(
            RawEvent(name, cat, t0, t1, threading.get_native_id(), shapes, mem, stack, cuda)
        )

    def _track(self, out, t1: int) -> None:
        """Record when each output tensor is made and (by a weakref finalizer) freed."""
        append = self.mem_events.append
        for o in out if type(out) is tuple else (out,):
            data = getattr(o, "_data", None)
            if data is None or not data.nbytes:
                continue
            n, dev = int(data.nbytes), str(getattr(o, "device", "cpu"))
            append((t1, n, dev))
            try:
                weakref.finalize(o, _freed, append, n, dev)
            except TypeError:  # not weak-referenceable: counted as never freed
                pass

    def to_us(self, t_ns: int) -> float:
        """A perf-counter time as microseconds since the epoch (the trace's clock)."""
        return (self.wall0 + (t_ns - self.perf0)) / 1000.0


_active: list = [None]  # the recording Recorder, or None
_lock = threading.Lock()


def _shapes(args) -> list:
    return [list(a.shape) if hasattr(a, "_data") else [] for a in args]


def _freed(append, nbytes: int, device: str) -> None:
    append((_perf(), -nbytes, device))


def _nbytes(out) -> int:
    if hasattr(out, "_data"):
        return int(out._data.nbytes)
    if type(out) is tuple:
        return sum(int(o._data.nbytes) for o in out if hasattr(o, "_data"))
    return 0


def _user_stack() -> list[str]:
    """The Python frames of the caller, innermost first, without ember's own frames."""
    frames = [f for f in traceback.extract_stack()[:-3] if not f.filename.startswith(_EMBER_DIR)]
    return [f"{f.filename}({f.lineno}): {f.name}" for f in reversed(frames)]


def _is_cuda(args) -> bool:
    for a in args:
        d = getattr(a, "_data", None)
        if d is not None and type(d).__module__.startswith("cupy"):
            return True
    return False


def _cuda_events():  # pragma: no cover - GPU
    from ..backend import _cupy

    cp = _cupy.cupy
    start, end = cp.cuda.Event(), cp.cuda.Event()
    start.record()
    return start, end


def op_name(cls) -> str:
    """``ember::<snake_case>`` for ember's own ops, the class name for user Functions."""
    name = cls.__name__
    if not cls.__module__.startswith("ember.ops"):
        return name
    out = []
    for i, ch in enumerate(name):
        if (
            ch.isupper()
            and i
            and (not name[i - 1].isupper() or (i + 1 < len(name) and name[i + 1].islower()))
        ):
            out.append("_")
        out.append(ch.lower())
    return "ember::" + "".join(out)


# ---- the hooks --------------------------------------------------------------------------------
_orig_apply = Function.__dict__["apply"]
_orig_call_backward = _engine._call_backward
_names: dict = {}
_observers: list = []  # add_observer: objects told about every op and backward node


def _profiled_apply(cls, *args, **kwargs):
    rec = _active[0]
    if rec is None:  # only observers (or a thread still inside an op when recording stopped)
        out = _orig_apply.__func__(cls, *args, **kwargs)
        for obs in _observers:
            obs.on_apply(cls, args, out)
        return out
    cuda = _cuda_events() if rec.use_cuda and _is_cuda(args) else None
    t0 = _perf()
    out = _orig_apply.__func__(cls, *args, **kwargs)
    t1 = _perf()
    if cuda is not None:  # pragma: no cover - GPU
        cuda[1].record()
    name = _names.get(cls)
    if name is None:
        name = _names[cls] = op_name(cls)
    rec.add(name, CPU_OP, t0, t1, args, out, cuda)
    for obs in _observers:
        obs.on_apply(cls, args, out)
    return out


def _profiled_call_backward(node, grads, create_graph):
    for obs in _observers:
        obs.on_backward(node, create_graph)
    rec = _active[0]
    if rec is None:
        return _orig_call_backward(node, grads, create_graph)
    cuda = _cuda_events() if rec.use_cuda and node.xp.__name__ == "cupy" else None
    t0 = _perf()
    out = _orig_call_backward(node, grads, create_graph)
    t1 = _perf()
    if cuda is not None:  # pragma: no cover - GPU
        cuda[1].record()
    rec.add("autograd::engine::evaluate_function: " + node.name(), BACKWARD, t0, t1, (), None, cuda)
    return out


def _profiled_nograd(name, t0, args, out) -> None:
    rec = _active[0]
    if rec is not None:
        rec.add("ember::" + name, CPU_OP, t0, _perf(), args, out)


def start(rec: Recorder) -> None:
    with _lock:
        if _active[0] is not None:
            raise RuntimeError(
                "Profiler is already enabled: ember records with one profiler "
                "at a time (stop the running one first)"
            )
        _active[0] = rec
        _install(True)
        _free._profile_hook[0] = _profiled_nograd
        _annotations.install(True)


def stop(rec: Recorder) -> None:
    with _lock:
        if _active[0] is not rec:
            return
        _free._profile_hook[0] = None
        _active[0] = None
        _install(bool(_observers))
        _annotations.install(False)


# While a __torch_dispatch__ mode is entered (core/_dispatch.py), its (apply, call_backward)
# pair sits outside these hooks and runs ops through apply_inner / call_backward_inner.
_outer: list = [None]


def apply_inner(cls, *args, **kwargs):
    """``Function.apply`` beneath an outer hook: recorded when a profiler or observer is on."""
    if _active[0] is not None or _observers:
        return _profiled_apply(cls, *args, **kwargs)
    return _orig_apply.__func__(cls, *args, **kwargs)


def call_backward_inner(node, grads, create_graph):
    if _active[0] is not None or _observers:
        return _profiled_call_backward(node, grads, create_graph)
    return _orig_call_backward(node, grads, create_graph)


def note_apply(cls, args, out, t0: int | None) -> None:
    """Record an op an outer hook ran itself (its forward, as a dispatch mode's autograd node
    does), ``t0`` its start time: for the profiler and the observers."""
    rec = _active[0]
    if rec is not None and t0 is not None:
        name = _names.get(cls)
        if name is None:
            name = _names[cls] = op_name(cls)
        rec.add(name, CPU_OP, t0, _perf(), args, out)
    for obs in _observers:
        obs.on_apply(cls, args, out)


def set_outer(hooks) -> None:
    """Install ``hooks`` (``(apply classmethod, call_backward)``) outside the recording hooks,
    or remove them (``None``)."""
    with _lock:
        _outer[0] = hooks
        _install(_active[0] is not None or bool(_observers))


def _install(on: bool) -> None:
    """Swap the hooked entry points in (``on``) or restore the originals (caller holds _lock)."""
    if _outer[0] is not None:  # a dispatch mode's hooks stay outermost; they call ours
        Function.apply, _engine._call_backward = _outer[0]
        return
    if on:
        Function.apply = classmethod(_profiled_apply)
        _engine._call_backward = _profiled_call_backward
    else:
        Function.apply = _orig_apply
        _engine._call_backward = _orig_call_backward


def add_observer(obs) -> None:
    """Have ``obs.on_apply(cls, args, out)`` called after every ``Function.apply`` and
    ``obs.on_backward(node, create_graph)`` before every backward node runs, until
    :func:`remove_observer` (``ember.utils.flop_counter`` uses this); ops pay nothing while
    no observer is registered and no profiler records."""
    with _lock:
        _observers.append(obs)
        _install(True)


def remove_observer(obs) -> None:
    with _lock:
        if obs in _observers:
            _observers.remove(obs)
        _install(bool(_observers) or _active[0] is not None)


def is_recording() -> bool:
    return _active[0] is not None


def push_range(name: str):
    """Open a user range (``record_function``); returns a token for :func:`pop_range`."""
    rec = _active[0]
    if rec is None:
        return None
    return rec, _perf()


def pop_range(token, name: str, args=()) -> None:
    if token is None:
        return
    rec, t0 = token
    if _active[0] is rec:
        rec.add(name, USER_ANNOTATION, t0, _perf(), args, None)
