"""PowerSGD gradient compression for DDP (PyTorch's
``torch.distributed.algorithms.ddp_comm_hooks.powerSGD_hook``; Vogels et al., NeurIPS 2019).

Each gradient matrix ``M`` (n x m, a parameter's gradient viewed as ``(shape[0], -1)``) is
replaced by a rank-``r`` approximation ``P Q^T`` that the ranks agree on by allreducing only
``P`` (n x r) and ``Q`` (m x r): one power-iteration step per training step,

    P = M Q;  allreduce(P);  orthogonalize(P);  Q = M^T P;  allreduce(Q) / world;  M ~ P Q^T.

* ``start_powerSGD_iter``: the first iterations run the plain averaging allreduce.
* ``min_compression_rate``: a matrix is compressed only when ``(n + m) r`` times this is less
  than ``n m``; the others (biases, small layers) are averaged by one allreduce of their
  concatenation.
* error feedback: what compression lost on this rank (its input minus its approximation) is
  added to the bucket's next gradients.
* warm start: ``Q`` is kept from one iteration to the next (one more power-iteration step on
  the previous estimate) instead of being drawn anew; it is drawn from ``state.rng`` (a NumPy
  ``RandomState(random_seed)``) seeding PyTorch's CPU generator, so every rank, and torch's
  own hook, draws the same matrix.

``batched_powerSGD_hook`` compresses the whole bucket as one square matrix instead (zero-padded
to the next square): fewer, larger products, a coarser approximation.

The arithmetic runs on the bucket's arrays (NumPy or CuPy), in the bucket's dtype.

A bucket's three allreduces (the uncompressed tensors, P, Q) run within the hook's call, one
after the other, and the hook returns a completed future. PyTorch chains them in the future's
callbacks; here a collective issued from a callback (on the communication thread) would take
its place in the group's op sequence after whatever the main thread issued meanwhile (the next
bucket's), which differs between ranks and makes them disagree (measured: a collective
mismatch on the first compressed step of a 2-bucket model).
"""

from __future__ import annotations

import logging
import math

import numpy as np

import ember
from ember import _interop
from ember.backend import get_array_module

from ... import collectives
from ...distributed_c10d import get_world_size
from ...work import Future
from ..grad_bucket import GradBucket
from . import default_hooks
from ._torch_rng import TorchCPUGenerator

__all__ = ["PowerSGDState", "powerSGD_hook", "batched_powerSGD_hook"]

logger = logging.getLogger(__name__)


def _orthogonalize(matrices, epsilon: float = 0) -> None:
    """Orthonormalize the columns of each matrix of a ``(batch, n, r)`` array in place
    (``r <= n``): Gram-Schmidt for ``r <= 2`` or half precision, else a QR factorization."""
    if matrices.ndim != 3 or matrices.shape[2] > matrices.shape[1]:
        raise ValueError(
            f"_orthogonalize: expected (batch, n, r) with r <= n, got {tuple(matrices.shape)}"
        )
    xp = get_array_module(matrices)
    rank = matrices.shape[2]
    if rank <= 2 or matrices.dtype not in (np.float32, np.float64):
        _orthogonalize_gram_schmidt(matrices, epsilon)
        return
    for k in range(matrices.shape[0]):
        matrices[k] = xp.linalg.qr(matrices[k])[0]


def _orthogonalize_gram_schmidt(matrices, epsilon: float = 0) -> None:
    xp = get_array_module(matrices)
    cols = matrices.shape[2]
    for i in range(cols):
        col = matrices[:, :, i : i + 1]
        norm = xp.sqrt(xp.sum(col * col, axis=1, keepdims=True))
        # epsilon guards a column of zeros (vanishing gradients); without it such a column
        # becomes NaN, as in PyTorch
        col /= norm + epsilon if epsilon else norm
        if i + 1 < cols:
            rest = matrices[:, :, i + 1 :]
            rest -= xp.sum(col * rest, axis=1, keepdims=True) * col


def _should_compress(rows: int, cols: int, rank: int, min_compression_rate: float) -> tuple:
    """``(compress?, numel uncompressed, numel compressed)`` for an ``rows x cols`` matrix."""
    uncompressed, compressed = rows * cols, (rows + cols) * rank
    return compressed * min_compression_rate < uncompressed, uncompressed, compressed


def _report_compression_stats(bucket: GradBucket, state: PowerSGDState) -> None:
    if bucket.is_last() and state.iter >= state.next_stats_report:
        stats = state.compression_stats()
        logger.info(
            "Compression stats: iter %s, total before compression %s, total after "
            "compression %s, rate %s",
            state.iter,
            stats[1],
            stats[2],
            stats[0],
        )
        state.next_stats_report = state.iter + state.compression_stats_logging_frequency


def _allreduce(array, group) -> None:
    """Sum ``array`` over the group in place, now (synchronously: see the module's note)."""
    collectives.all_reduce(_interop.wrap(array), group=group)


def _done(buffer: ember.Tensor) -> Future:
    """A completed future of the bucket (written in place behind autograd's back)."""
    _interop.bump_version(buffer)
    fut = Future()
    fut.set_result(buffer)
    return fut


class PowerSGDState:
    """The hyperparameters and the state kept across iterations by ``powerSGD_hook`` and
    ``batched_powerSGD_hook`` (PyTorch's ``PowerSGDState``).

    Args:
        process_group: the group to reduce over (``None``: the default group).
        matrix_approximation_rank: the rank ``r`` of the approximation (1 to 4 usually do).
        start_powerSGD_iter: iterations of plain allreduce before compression starts; must be
            more than 1 when error feedback or warm start is on.
        min_compression_rate: compress a matrix only if this rate is reached.
        use_error_feedback: add the last compression error to the next gradients.
        warm_start: reuse ``P``/``Q`` of the last iteration instead of drawing them anew.
        orthogonalization_epsilon: added to the norms in Gram-Schmidt (0: none).
        random_seed: seed of ``rng``, which seeds each draw of ``Q`` (the same on all ranks).
        compression_stats_logging_frequency: iterations between compression-stats log lines.
        batch_tensors_with_same_shape: compress gradients of equal shape in one batched product.
    """

    __slots__ = [
        "process_group",
        "matrix_approximation_rank",
        "start_powerSGD_iter",
        "min_compression_rate",
        "orthogonalization_epsilon",
        "use_error_feedback",
        "warm_start",
        "batch_tensors_with_same_shape",
        "rng",
        "error_dict",
        "p_memory_dict",
        "q_memory_dict",
        "iter",
        "total_numel_before_compression",
        "total_numel_after_compression",
        "compression_stats_logging_frequency",
        "next_stats_report",
    ]

    def __init__(
        self,
        process_group,
        matrix_approximation_rank: int = 1,
        start_powerSGD_iter: int = 1_000,
        min_compression_rate: float = 2,
        use_error_feedback: bool = True,
        warm_start: bool = True,
        orthogonalization_epsilon: float = 0,
        random_seed: int = 0,
        compression_stats_logging_frequency: int = 10_000,
        batch_tensors_with_same_shape: bool = False,
    ) -> None:
        if not isinstance(matrix_approximation_rank, int) or matrix_approximation_rank < 1:
            raise ValueError(
                "PowerSGDState: matrix_approximation_rank must be a positive int, "
                f"got {matrix_approximation_rank!r}"
            )
        if (use_error_feedback or warm_start) and start_powerSGD_iter <= 1:
            raise ValueError(
                "Expect `start_powerSGD_iter` > 1 if `use_error_feedback` or "
                "`warm_start` is enabled, because PowerSGD can only be applied "
                "after the first two iterations in DDP."
            )
        self.process_group = process_group
        self.matrix_approximation_rank = matrix_approximation_rank
        self.start_powerSGD_iter = start_powerSGD_iter
        self.min_compression_rate = min_compression_rate
        self.use_error_feedback = use_error_feedback
        self.warm_start = warm_start
        self.orthogonalization_epsilon = orthogonalization_epsilon
        self.rng = np.random.RandomState(random_seed)
        self.error_dict: dict = {}
        self.p_memory_dict: dict = {}
        self.q_memory_dict: dict = {}
        self.iter = 0
        self.total_numel_before_compression = 0
        self.total_numel_after_compression = 0
        self.compression_stats_logging_frequency = max(1, compression_stats_logging_frequency)
        self.next_stats_report = 0
        self.batch_tensors_with_same_shape = batch_tensors_with_same_shape

    def __getstate__(self) -> dict:
        # a process group does not pickle: a restored state reduces over the default group
        return {k: getattr(self, k) for k in self.__slots__ if k != "process_group"}

    def __setstate__(self, state: dict) -> None:
        self.process_group = None
        for k, v in state.items():
            setattr(self, k, v)

    def maybe_increase_iter(self, bucket: GradBucket) -> None:
        """Count an iteration when its last bucket has been communicated."""
        if bucket.is_last():
            self.iter += 1
            if self.iter == self.start_powerSGD_iter:
                logger.info("Start to apply PowerSGD after %s iterations.", self.iter)

    def compression_stats(self) -> tuple:
        """``(compress_rate, numel_before_compression, numel_after_compression)`` so far."""
        after = self.total_numel_after_compression
        rate = self.total_numel_before_compression / after if after > 0 else 0
        return rate, self.total_numel_before_compression, after


def _check_state(state, name: str) -> None:
    if not isinstance(state, PowerSGDState):
        raise TypeError(
            f"{name}: the hook state must be a PowerSGDState, got {type(state).__name__}"
        )


def _draw_q(state: PowerSGDState, qs: list, xp, dtype) -> None:
    """Fill each of ``qs`` with normals (torch's CPU generator seeded from ``state.rng``, as
    every rank's state draws the same seed) and orthogonalize it."""
    gen = TorchCPUGenerator(int(state.rng.randint(1_000_000_000)))
    for q in qs:
        q[...] = xp.asarray(gen.randn(q.shape, np.dtype(dtype)))
        _orthogonalize(q, state.orthogonalization_epsilon)


def powerSGD_hook(state: PowerSGDState, bucket: GradBucket) -> Future:
    """Communicate the bucket's gradient matrices as rank-``r`` PowerSGD approximations
    (plain averaging for the first ``state.start_powerSGD_iter`` iterations, and for the
    tensors that would not compress by ``state.min_compression_rate``).

    Example::
        >>> state = PowerSGDState(process_group=None, matrix_approximation_rank=1,
        ...                       start_powerSGD_iter=10, min_compression_rate=0.5)
        >>> ddp_model.register_comm_hook(state, powerSGD_hook)  # doctest: +SKIP
    """
    _check_state(state, "powerSGD_hook")
    group = state.process_group
    buffer = bucket.buffer()
    if state.iter < state.start_powerSGD_iter:
        state.maybe_increase_iter(bucket)
        return default_hooks.allreduce_hook(group, bucket)
    world = get_world_size(group)
    flat = _interop.array_of(buffer)
    xp, dtype, index = get_array_module(flat), flat.dtype, bucket.index()

    flat_before = None
    if state.use_error_feedback:
        if index in state.error_dict:
            flat += state.error_dict[index]
        else:
            state.error_dict[index] = xp.zeros(flat.shape[0], dtype=dtype)
        flat_before = flat.copy()

    to_compress, uncompressed = [], []
    p_size = q_size = 0
    for grad in bucket.gradients():
        g = _interop.array_of(grad)
        matrix = g.reshape(g.shape[0] if g.ndim else 1, -1)
        n, m = matrix.shape
        rank = min(n, m, state.matrix_approximation_rank)
        compress, before, after = _should_compress(n, m, rank, state.min_compression_rate)
        state.total_numel_before_compression += before
        if compress:
            to_compress.append(matrix)
            p_size, q_size = p_size + n * rank, q_size + m * rank
            state.total_numel_after_compression += after
        else:
            uncompressed.append(g)
            state.total_numel_after_compression += before
    _report_compression_stats(bucket, state)
    rest = xp.concatenate([g.reshape(-1) for g in uncompressed]) if uncompressed else None

    fresh = not state.warm_start or index not in state.p_memory_dict
    if fresh:
        state.p_memory_dict[index] = xp.empty(p_size, dtype=dtype)
        state.q_memory_dict[index] = xp.empty(q_size, dtype=dtype)
    p_mem, q_mem = state.p_memory_dict[index], state.q_memory_dict[index]

    # matrices of one shape in one batch (a copy, written back at the end) or one at a time
    # (a view of the bucket: the approximation lands in place)
    by_shape: dict = {}
    for matrix in to_compress:
        by_shape.setdefault(matrix.shape, []).append(matrix)
    batches = []
    for same in by_shape.values():
        if state.batch_tensors_with_same_shape and len(same) > 1:
            batches.append(xp.stack(same))
        else:
            batches.extend(mat[None] for mat in same)
    ps, qs, pi, qi = [], [], 0, 0
    for batch in batches:
        b, n, m = batch.shape
        rank = min(n, m, state.matrix_approximation_rank)
        ps.append(p_mem[pi : pi + b * n * rank].reshape(b, n, rank))
        qs.append(q_mem[qi : qi + b * m * rank].reshape(b, m, rank))
        pi, qi = pi + b * n * rank, qi + b * m * rank

    if fresh:
        _draw_q(state, qs, xp, dtype)
    else:
        for q in qs:
            _orthogonalize(q, state.orthogonalization_epsilon)
    for batch, q, p in zip(batches, qs, ps):
        xp.matmul(batch, q, out=p)

    # (every rank's bucket holds the same shapes: they skip an empty allreduce alike)
    if uncompressed:  # the tensors left uncompressed: averaged
        _allreduce(rest, group)
        rest /= world
        offset = 0
        for g in uncompressed:
            g[...] = rest[offset : offset + g.size].reshape(g.shape)
            offset += g.size
    if batches:
        # P = M Q, summed (not averaged: it is orthogonalized next)
        _allreduce(p_mem, group)
        for p in ps:
            _orthogonalize(p, state.orthogonalization_epsilon)
        # Q = M^T P, averaged
        for batch, p, q in zip(batches, ps, qs):
            xp.matmul(batch.transpose(0, 2, 1), p, out=q)
        _allreduce(q_mem, group)
        q_mem /= world
        # M ~ P Q^T, written into the bucket
        for p, q, batch in zip(ps, qs, batches):
            xp.matmul(p, q.transpose(0, 2, 1), out=batch)
        if state.batch_tensors_with_same_shape:
            for batch in batches:
                if batch.shape[0] > 1:
                    for original, approx in zip(by_shape[batch.shape[1:]], batch):
                        original[...] = approx
    if state.use_error_feedback:
        state.error_dict[index] = flat_before - flat
    if not state.warm_start:
        state.p_memory_dict.clear()
        state.q_memory_dict.clear()
    state.maybe_increase_iter(bucket)
    return _done(buffer)


def batched_powerSGD_hook(state: PowerSGDState, bucket: GradBucket) -> Future:
    """PowerSGD on the whole bucket viewed as one square matrix (zero-padded): one ``P`` and
    one ``Q`` of ``ceil(sqrt(numel)) x r`` per bucket, whatever its tensors' shapes.

    Example::
        >>> state = PowerSGDState(process_group=None, matrix_approximation_rank=1)
        >>> ddp_model.register_comm_hook(state, batched_powerSGD_hook)  # doctest: +SKIP
    """
    _check_state(state, "batched_powerSGD_hook")
    group = state.process_group
    buffer = bucket.buffer()
    if state.iter < state.start_powerSGD_iter:
        state.maybe_increase_iter(bucket)
        return default_hooks.allreduce_hook(group, bucket)
    world = get_world_size(group)
    flat = _interop.array_of(buffer)
    xp, dtype, index = get_array_module(flat), flat.dtype, bucket.index()
    length = flat.shape[0]
    side = math.ceil(math.sqrt(length))
    rank = state.matrix_approximation_rank
    state.total_numel_before_compression += length
    state.total_numel_after_compression += side * rank * 2
    _report_compression_stats(bucket, state)

    # the bucket cannot grow in place (it is a view of DDP's storage): a padded copy
    padded = xp.zeros(side * side, dtype=dtype)
    padded[:length] = flat
    padded_before = None
    if state.use_error_feedback:
        if index in state.error_dict:
            padded += state.error_dict[index]
        else:
            state.error_dict[index] = xp.zeros(side * side, dtype=dtype)
        padded_before = padded.copy()
    matrix = padded.reshape(side, side)

    if not state.warm_start or index not in state.p_memory_dict:
        state.p_memory_dict[index] = xp.empty((side, rank), dtype=dtype)
        state.q_memory_dict[index] = xp.empty((side, rank), dtype=dtype)
        gen = TorchCPUGenerator(int(state.rng.randint(1_000_000_000)))
        state.q_memory_dict[index][...] = xp.asarray(gen.randn((side, rank), np.dtype(dtype)))
    p, q = state.p_memory_dict[index], state.q_memory_dict[index]
    # (PyTorch 2.13's own batched hook fails here: its orthogonalization takes only
    # batches of matrices; this is the one-matrix batch it means)
    _orthogonalize(q[None], state.orthogonalization_epsilon)
    xp.matmul(matrix, q, out=p)

    _allreduce(p, group)
    _orthogonalize(p[None], state.orthogonalization_epsilon)
    xp.matmul(matrix.T, p, out=q)
    _allreduce(q, group)
    q /= world
    xp.matmul(p, q.T, out=matrix)
    if state.use_error_feedback:
        state.error_dict[index] = padded_before - padded
    if not state.warm_start:
        state.p_memory_dict.clear()
        state.q_memory_dict.clear()
    flat[...] = padded[:length]
    state.maybe_increase_iter(bucket)
    return _done(buffer)
