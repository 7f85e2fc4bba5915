"""``profile.export_memory_timeline``: the memory held by op outputs over a recorded cycle.

PyTorch's version sorts every allocation into a category (parameter, activation, gradient,
...) from its Kineto trace. ember's recorder sees the tensors that ops return and, through a
weakref finalizer on each, when they are freed; that is the whole timeline here, and every byte
is in PyTorch's last category, "Unknown". Tensors made before the cycle (parameters, inputs)
are not in it. The file formats are PyTorch's, so its readers work on ember's files.
"""

from __future__ import annotations

import base64
import gzip
import io
import json

# PyTorch's categories, in its order; ember fills only the last (None: "Unknown").
_CATEGORIES = (
    "PARAMETER",
    "OPTIMIZER_STATE",
    "INPUT",
    "TEMPORARY",
    "ACTIVATION",
    "GRADIENT",
    "AUTOGRAD_DETAIL",
    None,
)
_UNKNOWN = len(_CATEGORIES) - 1
_CREATE, _DESTROY = 2, 4  # PyTorch's Action values


def _events(mem_events, stop_ns: int, device: str, to_us) -> list[tuple[int, int]]:
    """(time in us, +/-bytes) of one device within the cycle, in time order."""
    out = [(int(to_us(t)), n) for t, n, d in list(mem_events) if d == device and t <= stop_ns]
    return sorted(out, key=lambda e: e[0])


def timeline(mem_events, stop_ns: int, device: str, to_us) -> list:
    """``[times, sizes]``: a row of bytes per category (PyTorch's leading 0 slot first)
    at each time something was made or freed."""
    times: list[int] = []
    sizes: list[list[int]] = []
    for t, n in _events(mem_events, stop_ns, device, to_us):
        if not times or t != times[-1]:
            times.append(t)
            sizes.append(sizes[-1].copy() if sizes else [0] * (len(_CATEGORIES) + 1))
        sizes[-1][_UNKNOWN + 1] += n
    return [times, sizes]


def raw(mem_events, stop_ns: int, device: str, to_us) -> list:
    """``(time, action, bytes, category)`` per event, as PyTorch's ``.raw.json.gz`` (whose
    times are nanoseconds; the ``[times, sizes]`` form's are microseconds)."""
    return [
        (t, _CREATE if n > 0 else _DESTROY, abs(n), _UNKNOWN)
        for t, n in _events(mem_events, stop_ns, device, lambda ns: to_us(ns) * 1000)
    ]


def _html(times_sizes, device: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    times, sizes = times_sizes
    t = np.asarray(times or [0], dtype=float)
    t = (t - t.min()) / 1e3
    held = np.asarray([row[_UNKNOWN + 1] for row in sizes] or [0]) / 1024**3
    fig = plt.figure(figsize=(20, 12), dpi=80)
    axes = fig.gca()
    axes.fill_between(t, 0, held, color="grey", alpha=0.7, step="post")
    fig.legend(["Unknown (op outputs)"])
    axes.set_xlabel("Time (ms)")
    axes.set_ylabel("Memory (GB)")
    axes.set_title(f"{device}: memory held by op outputs (max {held.max():.4f} GiB)")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    encoded = base64.b64encode(buf.getvalue()).decode("utf-8")
    return (
        '<html>\n<head><meta charset="utf-8" /><title>Memory Timeline HTML</title></head>\n'
        f"<body>\n  <img src='data:image/png;base64,{encoded}'>\n</body>\n</html>\n"
    )


def export(prof, path: str, device: str | None) -> None:
    """Write ``path`` as ``.html`` (a plot), ``.raw.json.gz`` (raw events), ``.json.gz`` or
    ``.json`` (``[times, sizes]``), as PyTorch's ``export_memory_timeline``."""
    import ember

    missing = [f"{k}=True" for k in ("record_shapes", "profile_memory", "with_stack")]
    missing = [m for m in missing if not getattr(prof, m.split("=")[0])]
    if missing:
        raise ValueError(f"{', '.join(missing)} required for memory profiling.")
    rec = getattr(prof, "_mem_rec", None)
    if rec is None:
        raise RuntimeError("export_memory_timeline: no recorded cycle yet (run the profiler first)")
    if device is None:
        device = "cuda:0" if ember.cuda.is_available() else "cpu"
    device = str(ember.device(device))
    if device == "cuda":  # ember.device("cuda") has no index; a tensor's device does
        device = "cuda:0"
    mem_events, stop_ns, to_us = rec
    if path.endswith(".html"):
        doc = _html(timeline(mem_events, stop_ns, device, to_us), device)
        with open(path, "w") as f:
            f.write(doc)
        return
    if path.endswith("raw.json.gz"):
        data = raw(mem_events, stop_ns, device, to_us)
    else:
        data = timeline(mem_events, stop_ns, device, to_us)
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "wt") as f:
        json.dump(data, f)
