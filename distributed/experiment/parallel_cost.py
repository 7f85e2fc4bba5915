"""α-β cost of the model-parallel strategies, tensor (TP), pipeline (PP) and TP × DP, next to
DP and FSDP, on a GPT-shaped model (token + position embedding, ``layers`` pre-norm blocks of
attention and a 4× MLP with bias-free linears, final norm, untied head), from the same link
constants (:class:`~.costmodel.Interconnect`) that calibrate the data-parallel strategies.

Bytes come from the model's shape (float32 unless ``dtype_bytes`` says otherwise); A is one
activation of the batch a TP group runs, ``batch × seq × d_model × dtype_bytes``:

    tp     6·L allreduces of A over the t ranks per step: per block the attention output and
           fc2 (rowwise) in forward, the input gradients of q, k, v and fc1 (colwise) in
           backward (a fused qkv makes it 4·L: ``allreduces_per_block``)
    pp     per micro-batch, each of the p−1 cuts sends the activation forward and its gradient
           back (A/m each), plus a shape header per stage and step; the schedule idles
           ``bubble = (p−1)/(v·m+p−1)`` of the step (GPipe and 1F1B: v = 1; interleaved: v
           stages per rank)
    tpdp   TP over t ranks on batch/d, then each rank allreduces its local gradients (its
           shards of the block linears and the replicated rest) over the d data-parallel ranks
    dp     DDP's buckets (1 MiB, then 25 MiB, reverse parameter order), one allreduce each
    fsdp   per unit (token embedding, each block, head) two all-gathers and a reduce-scatter;
           the root's parameters (position embedding, final norm) one all-gather and one
           reduce-scatter

An allreduce of S bytes over n ranks runs as ember's runtime does: a ring (2(n−1) steps,
2(n−1)/n·S sent per rank) above ``SMALL_BYTES``, and below it a direct exchange (S to each of
the n−1 peers). A point-to-point send costs α + S·β.

Compute (forward + backward) is a share of ``compute_s``, the whole model's compute for the
global batch on one rank: TP divides the blocks' FLOPs by t (the embeddings, norms and head
stay replicated); a pipeline stage runs its blocks (the last also the head) and the step is
its compute stretched by the bubble. The optimizer step costs ``optim_s`` per parameter
held, as a share of the whole model's.
"""

from __future__ import annotations

from dataclasses import dataclass

from .costmodel import Interconnect, collective_time, ring_steps, volume_factor

# ember's allreduce exchanges buffers up to this size directly (distributed/_runtime/
# _algorithms.py SMALL_BYTES, the default of EMBER_SMALL_BYTES)
SMALL_BYTES = 64 << 10
PP_HEADER_BYTES = 64 * 8  # a stage sends its output's shape (64 int64) once per step
TP_ALLREDUCES_PER_BLOCK = 6
SCHEDULES = ("gpipe", "1f1b", "interleaved")
STRATEGIES = ("dp", "fsdp", "tp", "pp", "tpdp")


@dataclass(frozen=True)
class GPTShape:
    """The shape of a GPT that the model-parallel byte counts and FLOP shares depend on."""

    vocab: int
    d_model: int
    heads: int
    layers: int
    seq: int
    batch: int  # sequences per step, over all ranks
    dtype_bytes: int = 4

    def __post_init__(self):
        for k in ("vocab", "d_model", "heads", "layers", "seq", "batch", "dtype_bytes"):
            v = getattr(self, k)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"GPTShape.{k} must be a positive integer, got {v!r}")
        if self.d_model % self.heads:
            raise ValueError(
                f"GPTShape: d_model {self.d_model} is not divisible by heads {self.heads}"
            )

    def activation_bytes(self, batch: int | None = None) -> int:
        """One activation (batch × seq × d_model) of ``batch`` sequences (default: all)."""
        return (self.batch if batch is None else batch) * self.seq * self.d_model * self.dtype_bytes

    @property
    def block_linear_params(self) -> int:
        """Parameters of one block's linears (q, k, v, o: d²; fc1, fc2: 4d²), which TP shards."""
        return 12 * self.d_model**2

    @property
    def params(self) -> int:
        d, v = self.d_model, self.vocab
        blocks = self.layers * (self.block_linear_params + 4 * d)  # + two LayerNorms
        return v * d + self.seq * d + blocks + 2 * d + d * v

    def tp_local_params(self, t: int) -> int:
        """Parameters one rank holds under TP over ``t`` ranks."""
        return self.params - self.layers * self.block_linear_params * (t - 1) // t

    # FLOPs per token of the forward pass (backward: twice that, the same shares)
    @property
    def block_flops(self) -> int:
        return 2 * self.block_linear_params + 4 * self.seq * self.d_model  # + QKᵀ and AV

    @property
    def head_flops(self) -> int:
        return 2 * self.d_model * self.vocab

    @property
    def block_share(self) -> float:
        """The blocks' share of the model's FLOPs."""
        blocks = self.layers * self.block_flops
        return blocks / (blocks + self.head_flops)


def allreduce_sent(n: int, nbytes: float) -> float:
    """Bytes each rank sends in one allreduce of ``nbytes`` over ``n`` ranks."""
    if n <= 1 or nbytes <= 0:
        return 0.0
    if nbytes <= SMALL_BYTES:
        return (n - 1) * nbytes
    return volume_factor("allreduce", n) * nbytes


def allreduce_time(n: int, nbytes: float, ic: Interconnect) -> float:
    """α-β time of one allreduce as ember runs it (ring, or direct below ``SMALL_BYTES``)."""
    if n <= 1 or nbytes <= 0:
        return 0.0
    if nbytes <= SMALL_BYTES:
        return (n - 1) * (ic.alpha + nbytes * ic.beta)
    assert ring_steps("allreduce", n) == 2 * (n - 1)
    return collective_time("allreduce", n, nbytes, ic)


def p2p_time(nbytes: float, ic: Interconnect) -> float:
    return ic.alpha + nbytes * ic.beta


def bubble(p: int, m: int, schedule: str = "1f1b", v: int = 1) -> float:
    """Idle share of a pipeline step: (p−1)/(m+p−1) for GPipe and 1F1B, (p−1)/(v·m+p−1) for
    the interleaved schedule with ``v`` stages per rank (ideal, for m ≥ p)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown pipeline schedule {schedule!r}; choose from {SCHEDULES}")
    if p < 1 or m < 1 or v < 1:
        raise ValueError(f"pipeline needs p, m, v >= 1, got p={p}, m={m}, v={v}")
    if schedule != "interleaved":
        v = 1
    return (p - 1) / (v * m + p - 1)


def wire_bytes(
    strategy: str,
    shape: GPTShape,
    n: int,
    tp: int | None = None,
    microbatches: int = 1,
    allreduces_per_block: int = TP_ALLREDUCES_PER_BLOCK,
) -> float:
    """Bytes each rank sends per step (mean over ranks) under one of ``STRATEGIES`` (``tp``:
    the TP degree of ``tpdp``, whose dp degree is n / tp)."""
    if n <= 1:
        return 0.0
    layers = shape.layers
    if strategy == "dp":
        return sum(allreduce_sent(n, b) for b in ddp_buckets(param_bytes(shape)))
    if strategy == "fsdp":
        units, root = fsdp_units(shape)
        f = volume_factor("allgather", n)
        return 3 * f * sum(units) + 2 * f * root
    if strategy == "tp":
        return allreduces_per_block * layers * allreduce_sent(n, shape.activation_bytes())
    if strategy == "pp":
        return (2 * (n - 1) * shape.activation_bytes() + (n - 1) * PP_HEADER_BYTES) / n
    if strategy == "tpdp":
        t, d = _tpdp_degrees(n, tp)
        act = shape.activation_bytes() / d
        tp_bytes = allreduces_per_block * layers * allreduce_sent(t, act)
        return tp_bytes + _dp_grad_sent(shape, t, d)
    raise ValueError(f"unknown strategy {strategy!r}; choose from {STRATEGIES}")


def _tpdp_degrees(n: int, tp: int | None) -> tuple[int, int]:
    if tp is None or tp < 1 or n % tp:
        raise ValueError(f"tpdp needs a TP degree that divides the {n} ranks, got tp={tp!r}")
    return tp, n // tp


def param_bytes(shape: GPTShape, t: int = 1) -> list[int]:
    """Bytes of each parameter one rank holds, in registration order, under TP over ``t``
    ranks (``t = 1``: the whole model): tok, pos, per block (ln1 weight and bias, q, k, v, o,
    ln2 weight and bias, fc1, fc2), ln_f weight and bias, head."""
    d, v, b = shape.d_model, shape.vocab, shape.dtype_bytes
    block = [d, d] + [d * d // t] * 4 + [d, d] + [4 * d * d // t] * 2
    return [x * b for x in [v * d, shape.seq * d] + block * shape.layers + [d, d, d * v]]


def ddp_buckets(sizes: list[int]) -> list[int]:
    """DDP's buckets (PyTorch's rule): parameters in reverse order, a 1 MiB first bucket, then
    25 MiB ones; a bucket closes when the next parameter would overflow it."""
    out, cur, cap = [], 0, 1 << 20
    for b in reversed(sizes):
        if cur and cur + b > cap:
            out.append(cur)
            cur, cap = 0, 25 << 20
        cur += b
    return out + ([cur] if cur else [])


def fsdp_units(shape: GPTShape) -> tuple[list[int], int]:
    """(bytes of each FSDP unit: token embedding, each block, head; bytes left to the root:
    position embedding and final norm) for the benchmark's wrapping."""
    sizes = param_bytes(shape)
    per_block = sum(sizes[2:12])
    return [sizes[0], *[per_block] * shape.layers, sizes[-1]], sizes[1] + sizes[-3] + sizes[-2]


def _dp_grad_sent(shape: GPTShape, t: int, d: int) -> float:
    return sum(allreduce_sent(d, x) for x in param_bytes(shape, t))


def step_parts(
    strategy: str,
    shape: GPTShape,
    n: int,
    ic: Interconnect,
    compute_s: float,
    optim_s: float = 0.0,
    tp: int | None = None,
    microbatches: int = 1,
    schedule: str = "1f1b",
    virtual: int = 1,
    allreduces_per_block: int = TP_ALLREDUCES_PER_BLOCK,
) -> dict:
    """The parts of one step (seconds): compute, optim, comm, bubble, step.

    ``compute_s``: forward + backward of the whole model on the global batch on one rank;
    ``optim_s``: the optimizer step over all parameters. No overlap of communication with
    compute is assumed (TP's allreduces sit on the critical path; PP's sends are between
    the stages' work)."""
    if n < 1:
        raise ValueError(f"the number of ranks must be >= 1, got {n}")
    share, params = shape.block_share, shape.params
    if strategy == "dp":
        comm = sum(allreduce_time(n, b, ic) for b in ddp_buckets(param_bytes(shape)))
        return _parts(compute_s / n, optim_s, comm, 0.0)
    if strategy == "fsdp":
        units, root = fsdp_units(shape)
        comm = sum(
            2 * collective_time("allgather", n, u, ic) + collective_time("reduce_scatter", n, u, ic)
            for u in units
        )
        comm += collective_time("allgather", n, root, ic)
        comm += collective_time("reduce_scatter", n, root, ic)
        return _parts(compute_s / n, optim_s / n, comm, 0.0)
    if strategy == "tp":
        comp = compute_s * (share / n + 1 - share)
        opt = optim_s * shape.tp_local_params(n) / params
        comm = allreduces_per_block * shape.layers * allreduce_time(n, shape.activation_bytes(), ic)
        return _parts(comp, opt, comm, 0.0)
    if strategy == "tpdp":
        t, d = _tpdp_degrees(n, tp)
        comp = compute_s * (share / t + 1 - share) / d
        opt = optim_s * shape.tp_local_params(t) / params
        act = shape.activation_bytes() / d
        comm = allreduces_per_block * shape.layers * allreduce_time(t, act, ic)
        comm += sum(allreduce_time(d, x, ic) for x in param_bytes(shape, t))
        return _parts(comp, opt, comm, 0.0)
    if strategy == "pp":
        if shape.layers % n:
            raise ValueError(f"pp: {shape.layers} layers do not split into {n} equal stages")
        m = microbatches
        # the slowest stage is the last: its blocks and the head
        blocks = shape.layers * shape.block_flops
        stage_flops = blocks / n + shape.head_flops
        comp = compute_s * stage_flops / (blocks + shape.head_flops)
        per_layer = shape.block_linear_params + 4 * shape.d_model
        last = shape.layers // n * per_layer + 2 * shape.d_model + shape.d_model * shape.vocab
        opt = optim_s * last / params
        bub = bubble(n, m, schedule, virtual)
        if n == 1:
            return _parts(comp, opt, 0.0, 0.0)
        # every slot of the schedule moves one micro-batch's activation forward and one
        # gradient back across a cut: (m + p − 1) slots (stretched like the compute)
        act = shape.activation_bytes() / m
        slots = m / (1 - bub)
        comm = slots * 2 * p2p_time(act, ic)
        return _parts(comp / (1 - bub), opt, comm, comp * bub / (1 - bub))
    raise ValueError(f"unknown strategy {strategy!r}; choose from {STRATEGIES}")


def _parts(comp: float, opt: float, comm: float, idle: float) -> dict:
    return {"compute": comp, "optim": opt, "comm": comm, "bubble": idle, "step": comp + opt + comm}
