"""``ember.cuda.memory``: the CUDA caching allocator's statistics, through CuPy's memory pool.

"Allocated" is the bytes CuPy's pool has handed out, "reserved" the bytes it holds from the
driver. CuPy keeps no peaks, so peaks are the highest values seen by these functions (each call
refreshes them). Without CUDA the counters read 0 and the stats are empty, as in PyTorch's CPU
build.
"""

from __future__ import annotations

import collections

from ._lazy import cupy_or_raise, device_index, has_cuda

__all__ = [
    "memory_allocated",
    "max_memory_allocated",
    "memory_reserved",
    "max_memory_reserved",
    "memory_cached",
    "max_memory_cached",
    "reset_peak_memory_stats",
    "reset_max_memory_allocated",
    "reset_max_memory_cached",
    "reset_accumulated_memory_stats",
    "empty_cache",
    "mem_get_info",
    "memory_stats",
    "memory_stats_as_nested_dict",
    "memory_summary",
    "memory_snapshot",
    "set_per_process_memory_fraction",
    "get_per_process_memory_fraction",
    "list_gpu_processes",
    "host_memory_stats",
    "host_memory_stats_as_nested_dict",
]

_peaks: dict[int, list[int]] = {}  # device -> [peak allocated, peak reserved]


def _pool_bytes(device) -> tuple[int, int]:
    """(allocated, reserved) bytes of CuPy's default pool; (0, 0) without CUDA."""
    if not has_cuda():
        return 0, 0
    cp = cupy_or_raise()  # pragma: no cover - GPU
    idx = device_index(device)  # pragma: no cover
    with cp.cuda.Device(idx):  # pragma: no cover
        pool = cp.get_default_memory_pool()
        used, total = int(pool.used_bytes()), int(pool.total_bytes())
    peak = _peaks.setdefault(idx, [0, 0])  # pragma: no cover
    peak[0], peak[1] = max(peak[0], used), max(peak[1], total)  # pragma: no cover
    return used, total  # pragma: no cover


def memory_allocated(device=None) -> int:
    """Bytes of GPU memory occupied by tensors on ``device``."""
    return _pool_bytes(device)[0]


def memory_reserved(device=None) -> int:
    """Bytes of GPU memory held by the caching allocator on ``device``."""
    return _pool_bytes(device)[1]


def max_memory_allocated(device=None) -> int:
    """The peak of :func:`memory_allocated` since the start or the last peak reset, in bytes; 0
    without CUDA.
    """
    if not has_cuda():
        return 0
    _pool_bytes(device)  # pragma: no cover - GPU
    return _peaks[device_index(device)][0]  # pragma: no cover


def max_memory_reserved(device=None) -> int:
    """The peak of :func:`memory_reserved` since the start or the last peak reset, in bytes; 0
    without CUDA.
    """
    if not has_cuda():
        return 0
    _pool_bytes(device)  # pragma: no cover - GPU
    return _peaks[device_index(device)][1]  # pragma: no cover


memory_cached = memory_reserved  # deprecated PyTorch names
max_memory_cached = max_memory_reserved


def reset_peak_memory_stats(device=None) -> None:
    """Restart the peaks from the current values."""
    cupy_or_raise()
    idx = device_index(device)  # pragma: no cover - GPU
    _peaks.pop(idx, None)  # pragma: no cover
    _pool_bytes(idx)  # pragma: no cover


reset_max_memory_allocated = reset_peak_memory_stats
reset_max_memory_cached = reset_peak_memory_stats


def reset_accumulated_memory_stats(device=None) -> None:
    """No accumulated counters are kept beyond the peaks; resets those."""
    reset_peak_memory_stats(device)


def empty_cache() -> None:
    """Return the pool's unused blocks to the driver (a no-op without CUDA)."""
    if has_cuda():  # pragma: no cover - GPU
        cp = cupy_or_raise()
        cp.get_default_memory_pool().free_all_blocks()
        cp.get_default_pinned_memory_pool().free_all_blocks()


def mem_get_info(device=None) -> tuple[int, int]:
    """(free, total) bytes of device memory, from the driver."""
    cp = cupy_or_raise()
    with cp.cuda.Device(device_index(device)):  # pragma: no cover - GPU
        free, total = cp.cuda.runtime.memGetInfo()
    return int(free), int(total)  # pragma: no cover


def memory_stats(device=None) -> collections.OrderedDict:
    """PyTorch's flat statistics dict (the keys ember can fill); empty without CUDA."""
    if not has_cuda():
        return collections.OrderedDict()
    used, total = _pool_bytes(device)  # pragma: no cover - GPU
    peak_used, peak_total = _peaks[device_index(device)]  # pragma: no cover
    stats = {}  # pragma: no cover
    for name, cur, peak in (
        ("allocated_bytes", used, peak_used),
        ("reserved_bytes", total, peak_total),
        ("active_bytes", used, peak_used),
        ("inactive_split_bytes", total - used, peak_total),
    ):
        for pool in ("all", "large_pool", "small_pool"):
            v = (cur, peak) if pool != "small_pool" else (0, 0)
            stats[f"{name}.{pool}.current"] = v[0]
            stats[f"{name}.{pool}.peak"] = v[1]
            stats[f"{name}.{pool}.allocated"] = v[1]
            stats[f"{name}.{pool}.freed"] = v[1] - v[0]
    stats.update(
        {
            "num_alloc_retries": 0,
            "num_ooms": 0,
            "num_sync_all_streams": 0,
            "num_device_alloc": 0,
            "num_device_free": 0,
        }
    )
    return collections.OrderedDict(sorted(stats.items()))  # pragma: no cover


def memory_stats_as_nested_dict(device=None) -> dict:
    """The statistics of :func:`memory_stats` nested by the dots of their keys."""
    out: dict = {}
    for key, value in memory_stats(device).items():
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def memory_summary(device=None, abbreviated: bool = False) -> str:
    """A human-readable table of the allocator statistics."""
    stats = memory_stats(device)
    if not stats:
        cupy_or_raise()

    def fmt(n: int) -> str:  # pragma: no cover - GPU
        for unit in ("B", "KiB", "MiB", "GiB"):
            if abs(n) < 1024 or unit == "GiB":
                return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
            n /= 1024
        return str(n)

    lines = [
        "|" + "=" * 75 + "|",  # pragma: no cover - GPU
        "|" + f" ember CUDA memory summary, device ID {device_index(device):<37d}" + "|",
        "|" + "-" * 75 + "|",
        f"| {'Metric':<30}| {'Cur Usage':>20} | {'Peak Usage':>20} |",
    ]
    for label, key in (
        ("Allocated memory", "allocated_bytes"),
        ("Active memory", "active_bytes"),
        ("GPU reserved memory", "reserved_bytes"),
        ("Non-releasable memory", "inactive_split_bytes"),
    ):
        cur, peak = stats[f"{key}.all.current"], stats[f"{key}.all.peak"]
        lines.append(f"| {label:<30}| {fmt(cur):>20} | {fmt(peak):>20} |")
    lines.append("|" + "=" * 75 + "|")
    return "\n".join(lines) + "\n"  # pragma: no cover


def memory_snapshot(mempool_id=None) -> list:
    """PyTorch lists allocator segments; CuPy exposes none, so the list is empty."""
    cupy_or_raise()
    return []  # pragma: no cover - GPU


_fractions: dict[int, float] = {}


def set_per_process_memory_fraction(fraction: float, device=None) -> None:
    """Cap CuPy's pool on ``device`` at ``fraction`` of its memory."""
    cp = cupy_or_raise()
    if not 0 <= fraction <= 1:  # pragma: no cover - GPU
        raise ValueError(f"Invalid fraction value: {fraction}. Allowed range: 0~1")
    idx = device_index(device)  # pragma: no cover
    with cp.cuda.Device(idx):  # pragma: no cover
        cp.get_default_memory_pool().set_limit(fraction=fraction)
    _fractions[idx] = float(fraction)  # pragma: no cover


def get_per_process_memory_fraction(device=None) -> float:
    """The fraction of device memory set by :func:`set_per_process_memory_fraction` (1.0 by
    default).
    """
    cupy_or_raise()
    return _fractions.get(device_index(device), 1.0)  # pragma: no cover - GPU


def list_gpu_processes(device=None) -> str:
    """The processes using ``device``, through pynvml (a hint to install it when missing)."""
    try:
        import pynvml
    except ModuleNotFoundError:
        return "pynvml module not found, please install nvidia-ml-py"
    pynvml.nvmlInit()  # pragma: no cover - needs NVML
    handle = pynvml.nvmlDeviceGetHandleByIndex(device_index(device))
    procs = pynvml.nvmlDeviceGetComputeRunningProcesses(handle)
    lines = [f"GPU:{device_index(device)}"]
    if not procs:
        lines.append("no processes are running")
    for p in procs:
        lines.append(f"process {p.pid:>10d} uses {p.usedGpuMemory / 1024**2:>12.3f} MB GPU memory")
    return "\n".join(lines)


def host_memory_stats() -> collections.OrderedDict:
    """Pinned host memory statistics: CuPy's pinned pool has none to report."""
    return collections.OrderedDict()


def host_memory_stats_as_nested_dict() -> dict:
    """An empty dict: ember keeps no pinned-host-memory statistics."""
    return {}
