"""Size on disk and latency, measured the same way for float and quantized models."""

from __future__ import annotations

import io
import time

import ember


def size_on_disk(model) -> int:
    """Bytes of ``ember.save(model.state_dict())`` (quantized weights are stored as int8)."""
    buf = io.BytesIO()
    ember.save(model.state_dict(), buf)
    return len(buf.getvalue())


def latency_ms(model, x, repeats: int = 20) -> float:
    """Median milliseconds of one forward pass under ``ember.no_grad()``."""
    times = []
    with ember.no_grad():
        model(x)  # warm up
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    times.sort()
    return 1e3 * times[len(times) // 2]


def row(name: str, acc: float, size: int, lat1: float, lat64: float) -> str:
    return f"{name:<22} {100 * acc:7.2f}% {size / 1024:9.1f} KiB {lat1:9.3f} ms {lat64:9.3f} ms"


HEADER = f"{'model':<22} {'accuracy':>8} {'size':>13} {'batch 1':>12} {'batch 64':>12}"
