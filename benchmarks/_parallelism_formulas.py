"""benchmarks/parallelism.py's analytical count: the bytes each rank sends per step.

The formulas are in docs/distributed.md ("Parallelism benchmark"); the benchmark prints them
beside the bytes it measures.
"""

from __future__ import annotations

# DDP's bucket rule, one definition for this count and ember experiment's projection
from ember.distributed.experiment.parallel_cost import ddp_buckets

WORLD = 4
SMALL_BYTES = 64 << 10  # ember's collectives exchange buffers up to this size directly
# Allreduces of an activation per block under TP: the attention output and fc2 (rowwise) in
# forward; in backward the input gradient of each colwise linear (q, k, v, fc1), since each
# style wraps the replicated plain-tensor input on its own (Megatron's fused qkv needs 4)
TP_ALLREDUCES = 6
PP_HEADER = 64 * 8  # a pipeline stage sends its output's shape (64 int64) once per step


def allreduce_bytes(nbytes: int, n: int, hosts: int = 1) -> float:
    """Mean bytes a rank sends in one allreduce of ``nbytes`` over ``n`` ranks.

    On one host: a ring (2(n-1)/n x the buffer) above ``SMALL_BYTES``, a direct exchange
    ((n-1) x) at or below it. Over ``hosts`` hosts with several ranks on each, ember reduces
    within each host to its first rank, allreduces across those, and broadcasts back; modelled
    here for 2 ranks per host: per host, the reduce sends 1.5 x (a reduce-scatter, then the
    half to the leader; 1 x when small), the leaders' allreduce 1 x and the broadcast 1 x.
    """
    if n == 1:
        return 0.0
    small = nbytes <= SMALL_BYTES
    if hosts > 1 and n // hosts == 2:
        return ((1.0 if small else 1.5) + 1 + 1) * nbytes / 2
    return (n - 1) * nbytes if small else 2 * (n - 1) / n * nbytes


def analytical(
    strategy: str,
    cfg: dict,
    param_bytes: list[int],
    local_bytes: list[int] | None = None,
    hosts: int = 1,
    n: int = WORLD,
) -> float:
    """Bytes each rank sends per step (mean over the ``n`` ranks), float32.

    G: gradient bytes (= parameter bytes); R: the bytes of the parameters outside every FSDP
    unit (position embedding, final norm), which stay gathered from forward to backward;
    A = batch x seq x d x 4, one activation of the whole batch; L layers. ``local_bytes``: a
    tp x dp rank's parameter bytes (its shards of the block linears), which its dp
    allreduces carry. ``hosts``: 2 with ``--netns`` (its tp and dp groups keep to one host
    or take one rank from each, so only DP's and TP's allreduces change). The formulas are
    in docs/distributed.md ("Parallelism benchmark").
    """
    g = sum(param_bytes)
    act = cfg["batch"] * cfg["seq"] * cfg["d"] * 4
    layers = cfg["layers"]
    if strategy == "dp":  # one allreduce per bucket
        return sum(allreduce_bytes(b, n, hosts) for b in ddp_buckets(param_bytes))
    if strategy == "fsdp":  # per unit: all-gather fwd, all-gather bwd, reduce-scatter
        root = (cfg["seq"] * cfg["d"] + 2 * cfg["d"]) * 4
        return 3 * (n - 1) / n * g - (n - 1) / n * root
    if strategy == "tp":  # per block: 2 rowwise outputs fwd; q, k, v, fc1 input grads bwd
        return TP_ALLREDUCES * layers * allreduce_bytes(act, n, hosts)
    if strategy == "pp":  # each of the p-1 cuts: activations forward, their grads back
        return (2 * (n - 1) * act + (n - 1) * PP_HEADER) / n
    if strategy == "tpdp":  # TP on n/2 ranks over batch/2, then each local grad over dp (2)
        tp = TP_ALLREDUCES * layers * allreduce_bytes(act // 2, n // 2)
        return tp + sum(allreduce_bytes(b, 2) for b in local_bytes)
    raise ValueError(f"unknown strategy {strategy!r}")
