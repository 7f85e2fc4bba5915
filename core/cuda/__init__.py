"""``ember.cuda``: CUDA devices, memory, streams and random state, through CuPy.

Without CUDA every function behaves as in PyTorch's CPU build: queries that have an answer
return it (``is_available()`` is False, ``device_count()`` 0, ``memory_allocated()`` 0), and
those that need a device raise (``current_device()``, ``synchronize()``, ``Stream()`` ...).
"""

from __future__ import annotations

from .._legacy_types import make_types as _make_types
from ..backend.device import device_count, is_available
from . import memory, nccl, nvtx, profiler, random, streams
from ._lazy import cupy_or_raise as _cupy
from ._lazy import device_index as _device_index
from ._lazy import has_cuda as _has_cuda
from .memory import (
    empty_cache,
    get_per_process_memory_fraction,
    host_memory_stats,
    host_memory_stats_as_nested_dict,
    list_gpu_processes,
    max_memory_allocated,
    max_memory_cached,
    max_memory_reserved,
    mem_get_info,
    memory_allocated,
    memory_cached,
    memory_reserved,
    memory_snapshot,
    memory_stats,
    memory_stats_as_nested_dict,
    memory_summary,
    reset_accumulated_memory_stats,
    reset_max_memory_allocated,
    reset_max_memory_cached,
    reset_peak_memory_stats,
    set_per_process_memory_fraction,
)
from .random import (
    get_rng_state,
    get_rng_state_all,
    initial_seed,
    manual_seed,
    manual_seed_all,
    seed,
    seed_all,
    set_rng_state,
    set_rng_state_all,
)
from .streams import (
    Event,
    ExternalStream,
    Stream,
    StreamContext,
    current_stream,
    default_stream,
    set_stream,
    stream,
)

globals().update(_make_types("cuda", "ember.cuda"))  # ember.cuda.FloatTensor, ...

has_half = True
has_magma = False


from .._sym import OutOfMemoryError  # noqa: E402,F401  (torch.cuda.OutOfMemoryError is torch's)


class CudaError(RuntimeError):
    """A CUDA runtime error code, with the driver's message."""

    def __init__(self, code: int) -> None:
        msg = f"CUDA error {code}"
        if _has_cuda():  # pragma: no cover - GPU
            msg = _cupy().cuda.runtime.getErrorString(code).decode()
        super().__init__(f"{msg} ({code})")


class DeferredCudaCallError(Exception):
    """A CUDA call queued before initialisation failed."""


def check_error(res: int) -> None:
    """Raise :class:`CudaError` when the CUDA runtime result code ``res`` is not 0 (success)."""
    if res != 0:
        raise CudaError(res)


def is_initialized() -> bool:
    """True once a CUDA device is usable (CuPy loaded and a device found)."""
    return _has_cuda()


def init() -> None:
    """Initialise CUDA (raises without it, as PyTorch)."""
    _cupy()


def current_device() -> int:
    """The index of the current CUDA device. Without CUDA it raises, as PyTorch's CPU build does."""
    return _cupy().cuda.Device().id


def set_device(device) -> None:
    """Make ``device`` current (a negative index is ignored, as in PyTorch)."""
    idx = _device_index(device) if not (isinstance(device, int) and device < 0) else -1
    if idx >= 0:
        _cupy().cuda.Device(idx).use()


def synchronize(device=None) -> None:
    """Wait for all work on ``device`` (default: the current one) to finish."""
    cp = _cupy()
    with cp.cuda.Device(_device_index(device)):  # pragma: no cover - GPU
        cp.cuda.runtime.deviceSynchronize()


class device:
    """``with ember.cuda.device(i):`` runs the block with CUDA device ``i`` current
    (``-1``/``None``: a no-op, also without CUDA)."""

    def __init__(self, device):
        self.idx = (
            -1 if device is None else (device if isinstance(device, int) else _device_index(device))
        )
        self.prev_idx = -1

    def __enter__(self):
        if self.idx >= 0:
            cp = _cupy()  # pragma: no cover - GPU
            self.prev_idx = cp.cuda.Device().id
            cp.cuda.Device(self.idx).use()

    def __exit__(self, *exc):
        if self.prev_idx >= 0:  # pragma: no cover - GPU
            _cupy().cuda.Device(self.prev_idx).use()
        return False


class device_of(device):
    """``with ember.cuda.device_of(t):`` makes ``t``'s device current (no-op for a CPU tensor)."""

    def __init__(self, obj):
        super().__init__(obj.get_device() if obj.is_cuda else -1)


def get_device_properties(device=None):
    """The device's properties: ``name``, ``major``, ``minor``, ``total_memory``,
    ``multi_processor_count``, ... (attribute access)."""
    cp = _cupy()
    p = cp.cuda.runtime.getDeviceProperties(_device_index(device))  # pragma: no cover - GPU
    return _DeviceProperties(p)  # pragma: no cover


class _DeviceProperties:  # pragma: no cover - GPU
    def __init__(self, p: dict):
        name = p["name"]
        self.name = name.decode() if isinstance(name, bytes) else str(name)
        self.major, self.minor = int(p["major"]), int(p["minor"])
        self.total_memory = int(p["totalGlobalMem"])
        self.multi_processor_count = int(p["multiProcessorCount"])
        self.is_integrated = int(p.get("integrated", 0))
        self.is_multi_gpu_board = int(p.get("isMultiGpuBoard", 0))
        self.L2_cache_size = int(p.get("l2CacheSize", 0))
        self.max_threads_per_multi_processor = int(p.get("maxThreadsPerMultiProcessor", 0))
        self.warp_size = int(p.get("warpSize", 32))
        self.gcnArchName = ""

    def __repr__(self) -> str:
        return (
            f"_CudaDeviceProperties(name='{self.name}', major={self.major}, "
            f"minor={self.minor}, total_memory={self.total_memory // 1024**2}MB, "
            f"multi_processor_count={self.multi_processor_count})"
        )


def get_device_name(device=None) -> str:
    """The name of a CUDA device (default: the current one)."""
    return get_device_properties(device).name


def get_device_capability(device=None) -> tuple[int, int]:
    """The compute capability ``(major, minor)`` of a CUDA device (default: the current one)."""
    p = get_device_properties(device)
    return p.major, p.minor


def is_bf16_supported(including_emulation: bool = True) -> bool:
    """bfloat16 on CUDA: native from compute capability 8.0, emulated before (False without
    CUDA)."""
    if not is_available():
        return False
    return including_emulation or get_device_capability()[0] >= 8  # pragma: no cover - GPU


def is_tf32_supported() -> bool:
    """Whether the current device computes in TF32 (compute capability 8.0 or newer); False without
    CUDA.
    """
    return is_available() and get_device_capability()[0] >= 8


def get_arch_list() -> list[str]:
    """The architectures the CUDA kernels are built for: CuPy compiles at run time for the
    device in use."""
    if not is_available():
        return []
    major, minor = get_device_capability()  # pragma: no cover - GPU
    return [f"sm_{major}{minor}"]  # pragma: no cover


def get_gencode_flags() -> str:
    """The ``-gencode`` flags of :func:`get_arch_list`'s architectures, as one string."""
    return " ".join(
        f"-gencode compute={a.replace('sm', 'compute')},code={a}" for a in get_arch_list()
    )


def ipc_collect() -> None:
    """A no-op kept for PyTorch's API (CuPy frees IPC memory itself). Without CUDA it raises, as
    PyTorch's CPU build does.
    """
    _cupy()


def can_device_access_peer(device, peer_device) -> bool:
    """Whether ``device`` can read the memory of ``peer_device`` directly (CUDA peer access)."""
    cp = _cupy()
    return bool(
        cp.cuda.runtime.deviceCanAccessPeer(  # pragma: no cover - GPU
            _device_index(device), _device_index(peer_device)
        )
    )


_sync_debug_mode = 0


def get_sync_debug_mode() -> int:
    """The value :func:`set_sync_debug_mode` recorded (CuPy has no synchronization checker). Without
    CUDA it raises, as PyTorch's CPU build does.
    """
    _cupy()
    return _sync_debug_mode  # pragma: no cover - GPU


def set_sync_debug_mode(debug_mode: int | str) -> None:
    """Recorded only: CuPy has no synchronisation checker."""
    global _sync_debug_mode
    _cupy()
    modes = {"default": 0, "warn": 1, "error": 2}  # pragma: no cover - GPU
    _sync_debug_mode = modes.get(debug_mode, debug_mode)  # pragma: no cover


def current_blas_handle() -> int:
    """The cuBLAS handle of the current device, as an integer. Without CUDA it raises, as PyTorch's
    CPU build does.
    """
    _cupy()
    from cupy.cuda import device as _dev  # pragma: no cover - GPU

    return int(_dev.get_cublas_handle())  # pragma: no cover


def current_solver_handle() -> int:
    """The cuSOLVER handle of the current device, as an integer. Without CUDA it raises, as
    PyTorch's CPU build does.
    """
    _cupy()
    from cupy.cuda import device as _dev  # pragma: no cover - GPU

    return int(_dev.get_cusolver_handle())  # pragma: no cover


def get_stream_from_external(data_ptr: int, device=None) -> Stream:
    """Wrap a ``cudaStream_t`` created elsewhere."""
    return ExternalStream(data_ptr, device)


def is_current_stream_capturing() -> bool:
    """Whether CUDA-graph capture is under way on the current stream (ember never captures)."""
    cp = _cupy()
    return bool(cp.cuda.get_current_stream().is_capturing())  # pragma: no cover - GPU


def get_allocator_backend() -> str:
    """ "native": CuPy's pooling allocator plays the role of PyTorch's caching allocator."""
    return "native"


def reset_peak_host_memory_stats() -> None:
    """No-op: CuPy's pinned-memory pool keeps no peak statistics."""


def reset_accumulated_host_memory_stats() -> None:
    """No-op: CuPy's pinned-memory pool keeps no accumulated statistics."""


class cudaStatus:
    """The CUDA runtime status codes ``SUCCESS`` (0) and ``ERROR_NOT_READY`` (34)."""

    SUCCESS: int = 0
    ERROR_NOT_READY: int = 34


def cudart():
    """CuPy's CUDA runtime module (PyTorch returns its cudart binding)."""
    return _cupy().cuda.runtime


def _nvml_handle(device):
    try:
        import pynvml
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            "nvidia-ml-py does not seem to be installed or it can't be imported."
        ) from exc
    pynvml.nvmlInit()  # pragma: no cover - needs NVML
    return pynvml, pynvml.nvmlDeviceGetHandleByIndex(_device_index(device))


def utilization(device=None) -> int:
    """Percent of time a kernel ran over the last sample period (via pynvml)."""
    nv, h = _nvml_handle(device)
    return nv.nvmlDeviceGetUtilizationRates(h).gpu  # pragma: no cover


def memory_usage(device=None) -> int:
    """The percentage of time the device memory was read or written over the last sample period
    (from NVML, through ``pynvml``).
    """
    nv, h = _nvml_handle(device)
    return nv.nvmlDeviceGetUtilizationRates(h).memory  # pragma: no cover


def temperature(device=None) -> int:
    """The GPU temperature in degrees Celsius (from NVML, through ``pynvml``)."""
    nv, h = _nvml_handle(device)
    return nv.nvmlDeviceGetTemperature(h, 0)  # pragma: no cover


def power_draw(device=None) -> int:
    """The GPU power draw in milliwatts (from NVML, through ``pynvml``)."""
    nv, h = _nvml_handle(device)
    return nv.nvmlDeviceGetPowerUsage(h)  # pragma: no cover


def clock_rate(device=None) -> int:
    """The streaming-multiprocessor clock in MHz (from NVML, through ``pynvml``)."""
    nv, h = _nvml_handle(device)
    return nv.nvmlDeviceGetClockInfo(h, 1)  # pragma: no cover


def device_memory_used(device=None) -> int:
    """The device memory in use, in bytes, by every process (from NVML, through ``pynvml``)."""
    nv, h = _nvml_handle(device)
    return nv.nvmlDeviceGetMemoryInfo(h).used  # pragma: no cover


def __getattr__(name):
    if name == "amp":  # torch.cuda.amp: the deprecated spellings (core/cuda/amp.py)
        import importlib

        return importlib.import_module("ember.cuda.amp")
    if name in ("CUDAGraph", "graph", "graph_pool_handle"):  # CuPy capture (_graph_types.py)
        from . import _graph_types

        return getattr(_graph_types, name)
    if name == "_initialized":  # torch's module flag (read by RNG-recording code, e.g. Performer)
        return is_initialized()
    if name == "default_generators":  # one per device, all ember's default generator
        from ..random import default_generator

        return tuple(default_generator for _ in range(device_count()))
    raise AttributeError(f"module 'ember.cuda' has no attribute {name!r}")
