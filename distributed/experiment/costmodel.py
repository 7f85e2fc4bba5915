"""The α-β cost model: latency α (seconds per message step), inverse bandwidth β (seconds per
byte) and a compute rate, calibrated from measured collective and compute times, predicting the
step time and scaling efficiency of each strategy at any worker count.

Collectives are bandwidth-optimal rings over ``n`` ranks on a buffer of ``S`` bytes:

    allreduce       2(n-1)·α + 2(n-1)/n · S·β
    all-gather       (n-1)·α +  (n-1)/n · S·β
    reduce-scatter   (n-1)·α +  (n-1)/n · S·β

and each strategy's step issues, on the gradient size S (ZeRO/FSDP as in their papers):

    ddp     allreduce of the gradients                      (2(n-1)/n · S per rank on the wire)
    zero1   allreduce of the gradients + all-gather of the updated parameters   (3(n-1)/n · S)
    zero2   reduce-scatter of the gradients + all-gather of the parameters      (2(n-1)/n · S)
    fsdp    2 all-gathers of the parameters (forward, backward) + reduce-scatter (3(n-1)/n · S)

The gradient collectives of ddp, zero1 and zero2 go out in buckets (``messages`` of them, each
paying its own latency); parameter all-gathers and FSDP's collectives count as one message per
kind (one wrapped unit).

A step takes ``data + compute + exposed``, where ``exposed = max(0, comm - o·compute)``: a
fraction ``o`` of the compute time (backward, mostly) can hide communication. ``o`` is calibrated
per strategy from the measured exposed communication (0 where nothing was measured).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

# strategy -> ((collective, how many per step, bucketed?), ...)
STRATEGY_COLLECTIVES = {
    "ddp": (("allreduce", 1, True),),
    "zero1": (("allreduce", 1, True), ("allgather", 1, False)),
    "zero2": (("reduce_scatter", 1, True), ("allgather", 1, False)),
    "fsdp": (("allgather", 2, False), ("reduce_scatter", 1, False)),
}
BUCKETED = ("ddp", "zero1", "zero2")
_FIRST_BUCKET_BYTES = 1 << 20  # DDP's first bucket is 1 MiB


@dataclass(frozen=True)
class Interconnect:
    """A link described by α (s) and β (s/byte)."""

    name: str
    alpha: float
    beta: float

    @classmethod
    def from_figures(cls, name: str, bandwidth_gbit: float, latency_us: float) -> Interconnect:
        """From a bandwidth in Gbit/s and a latency in µs."""
        return cls(name, latency_us * 1e-6, 8.0 / (bandwidth_gbit * 1e9))

    @property
    def bandwidth_gbps(self) -> float:
        """Bandwidth in GB/s (10⁹ bytes per second)."""
        return math.inf if self.beta == 0 else 1e-9 / self.beta


def ring_steps(kind: str, n: int) -> int:
    """Message steps of a ring collective over ``n`` ranks."""
    if kind == "allreduce":
        return 2 * (n - 1)
    if kind in ("allgather", "reduce_scatter"):
        return n - 1
    raise ValueError(f"unknown collective {kind!r}")


def volume_factor(kind: str, n: int) -> float:
    """Bytes each rank sends, per byte of buffer (the NCCL-tests bus-bandwidth factor)."""
    return ring_steps(kind, n) / n


def collective_time(kind: str, n: int, nbytes: float, ic: Interconnect, messages: int = 1) -> float:
    """α-β time of ``kind`` on ``nbytes`` split into ``messages`` separate collectives."""
    if n <= 1 or nbytes <= 0:
        return 0.0
    return messages * ring_steps(kind, n) * ic.alpha + volume_factor(kind, n) * nbytes * ic.beta


def comm_time(
    strategy: str, n: int, grad_bytes: float, ic: Interconnect, messages: int = 1
) -> float:
    """Communication time of one step of ``strategy`` (none of it hidden); ``messages`` is
    the number of buckets the gradient collective is split into."""
    return sum(
        count * collective_time(kind, n, grad_bytes, ic, messages if bucketed else 1)
        for kind, count, bucketed in _phases(strategy)
    )


def wire_bytes(strategy: str, n: int, grad_bytes: float) -> float:
    """Bytes each rank sends per step under ``strategy``."""
    if n <= 1:
        return 0.0
    return sum(count * volume_factor(kind, n) * grad_bytes for kind, count, _ in _phases(strategy))


def ddp_buckets(grad_bytes: float, bucket_cap_mb: float | None) -> int:
    """How many allreduces DDP issues per step: with the default cap (None) a 1 MiB first
    bucket, then 25 MiB ones; with an explicit cap, buckets of that size (PyTorch's rule)."""
    if bucket_cap_mb is None:
        rest = max(0.0, grad_bytes - _FIRST_BUCKET_BYTES)
        return 1 + math.ceil(rest / (25 * (1 << 20)))
    return max(1, math.ceil(grad_bytes / (bucket_cap_mb * (1 << 20))))


def _phases(strategy: str):
    try:
        return STRATEGY_COLLECTIVES[strategy]
    except KeyError:
        raise ValueError(
            f"unknown strategy {strategy!r}; the model knows {tuple(STRATEGY_COLLECTIVES)}"
        ) from None


# ---- calibration ----------------------------------------------------------------------------
def _nonneg_lstsq(a: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least squares with non-negative coefficients (exact for these 2-column problems: the
    best of the unconstrained fit and every fit with some coefficients pinned at 0)."""
    k = a.shape[1]
    best, best_err = np.zeros(k), float(np.sum(y**2))
    for mask in range(1, 1 << k):
        cols = [j for j in range(k) if mask >> j & 1]
        coef, *_ = np.linalg.lstsq(a[:, cols], y, rcond=None)
        if np.any(coef < 0):
            continue
        full = np.zeros(k)
        full[cols] = coef
        err = float(np.sum((a @ full - y) ** 2))
        if err < best_err - 1e-30:
            best, best_err = full, err
    return best


def fit_alpha_beta(samples, name: str = "measured") -> Interconnect:
    """α and β from allreduce timings ``[(n, nbytes, seconds), ...]`` (ring model, least
    squares in relative terms so small and large messages count alike)."""
    rows = [(n, s, t) for n, s, t in samples if n > 1 and t > 0]
    if not rows:
        raise ValueError("no allreduce timings with more than one worker to calibrate α and β")
    a = np.array([[2 * (n - 1), 2 * (n - 1) / n * s] for n, s, _ in rows], dtype=float)
    y = np.array([t for *_, t in rows], dtype=float)
    w = 1.0 / y  # relative error
    coef = _nonneg_lstsq(a * w[:, None], y * w)
    return Interconnect(name, float(coef[0]), float(coef[1]))


@dataclass
class ComputeModel:
    """Per-worker time of a step's compute (``fixed + per_sample·b``) and data loading."""

    fixed_s: float
    per_sample_s: float
    data_per_sample_s: float = 0.0

    def compute(self, batch: float) -> float:
        return self.fixed_s + self.per_sample_s * batch

    def data(self, batch: float) -> float:
        return self.data_per_sample_s * batch

    @property
    def rate(self) -> float:
        """Samples per second per worker, at large batches."""
        return math.inf if self.per_sample_s == 0 else 1.0 / self.per_sample_s

    @classmethod
    def fit(cls, samples, data_samples=()) -> ComputeModel:
        """From ``[(batch, compute_seconds), ...]`` (and ``[(batch, data_seconds), ...]``): a
        line through the points when batches differ, else through the origin."""
        samples = list(samples)
        if not samples:
            raise ValueError("no compute timings to calibrate the compute rate")
        batches = {b for b, _ in samples}
        if len(batches) == 1:
            fixed, per = 0.0, float(np.mean([t / b for b, t in samples]))
        else:
            a = np.array([[1.0, b] for b, _ in samples])
            fixed, per = _nonneg_lstsq(a, np.array([t for _, t in samples]))
        data = [t / b for b, t in data_samples]
        return cls(float(fixed), float(per), float(np.mean(data)) if data else 0.0)


@dataclass
class CostModel:
    """Step time and scaling efficiency of each strategy, from calibrated parts."""

    compute: ComputeModel
    overlap: dict = field(default_factory=dict)  # strategy -> fraction of compute hiding comm

    def step(
        self,
        strategy: str,
        n: int,
        batch: float,
        grad_bytes: float,
        ic: Interconnect,
        messages: int = 1,
    ) -> dict:
        """The parts of one step (seconds): data, compute, comm, exposed, step."""
        comp = self.compute.compute(batch)
        data = self.compute.data(batch)
        comm = comm_time(strategy, n, grad_bytes, ic, messages)
        exposed = max(0.0, comm - self.overlap.get(strategy, 0.0) * comp)
        return {
            "data": data,
            "compute": comp,
            "comm": comm,
            "exposed": exposed,
            "step": data + comp + exposed,
        }

    def efficiency(
        self,
        strategy: str,
        n: int,
        batch: float,
        scaling: str,
        grad_bytes: float,
        ic: Interconnect,
        messages: int = 1,
    ) -> float:
        """Throughput at ``n`` workers over ``n`` times the 1-worker throughput.

        ``batch`` is per worker under weak scaling and global under strong scaling."""
        per = batch if scaling == "weak" else batch / n
        base_batch = batch
        t1 = self.step(strategy, 1, base_batch, grad_bytes, ic, messages)["step"]
        tn = self.step(strategy, n, per, grad_bytes, ic, messages)["step"]
        return (n * per / tn) / (n * base_batch / t1)

    def fit_overlap(self, strategy: str, points) -> float:
        """``o`` from measured multi-worker points ``[(n, compute_seconds, grad_bytes, messages,
        exposed_seconds, interconnect), ...]``: the mean share of each point's compute that hid
        the predicted communication (clipped to [0, 1]); 0 without multi-worker points.
        """
        fr = []
        for n, comp, grad_bytes, messages, exposed, ic in points:
            if n <= 1 or comp <= 0:
                continue
            comm = comm_time(strategy, n, grad_bytes, ic, messages)
            fr.append(min(1.0, max(0.0, (comm - exposed) / comp)))
        o = float(np.mean(fr)) if fr else 0.0
        self.overlap[strategy] = o
        return o
