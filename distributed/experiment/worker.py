"""What every worker runs for one point of a sweep (inside the Trainer).

Phases, in this order (all ranks together, a barrier between them):

1. distributed: ``warmup`` untimed steps of the wrapped model (DDP rebuilds its buckets after the
   first), then ``steps`` timed steps: data, forward, backward, optimizer step, with DDP's
   tracer hook and the wire-byte counter on. Memory (the memory report, and the peak RSS) is
   read at the end of this phase, so the later phases cannot raise it.
2. collectives: allreduce of the calibration sizes and of the gradient size (the α-β model's
   data), median of ``iters`` runs each (more than one worker only).
3. compute reference: ``compute_steps`` steps of an identical local model with no collectives,
   while the other ranks do the same, so the cores are as contended as in phase 1. Exposed
   communication is the step time that this compute and data loading do not explain.

Every rank reports; the driver keeps rank 0's report, which carries all ranks' figures.
"""

from __future__ import annotations

import gc
import importlib
import os
import resource
import socket
import statistics
import time

_WARMUP_REF = 2  # untimed steps before the compute reference


def train_point(config: dict) -> None:
    """The Trainer's training function for one point (``config`` from the runner)."""
    from threadpoolctl import threadpool_limits

    from ember.distributed.train import get_context, report

    ctx = get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    with threadpool_limits(limits=max(1, int(config["cpus_per_worker"]))):
        mine = _measure(config, rank, world)
    ranks = _gather(mine, world)
    report({"ranks": ranks} if rank == 0 else {})


def load_user_workload(ref: str):
    """The function named by ``"module:function"``."""
    module, _, attr = ref.partition(":")
    if not module or not attr:
        raise ValueError(f"a user workload is given as 'module:function', got {ref!r}")
    fn = importlib.import_module(module)
    for part in attr.split("."):
        fn = getattr(fn, part)
    if not callable(fn):
        raise TypeError(f"{ref} is not callable")
    return fn


def _workload(config: dict, rank: int, world: int):
    """(model, dataset, loss_fn): the model from the seed shared by all ranks, the data
    (this rank's shard only: ``warmup + steps`` batches) from a per-rank seed."""
    import ember
    from ember.utils.data import TensorDataset

    from . import workloads

    name, seed = config["workload"], config["seed"]
    n = config["per_worker_batch"] * (config["warmup"] + config["steps"])
    if name in workloads.WORKLOADS:
        ember.manual_seed(seed)
        model = workloads.make_model(ember, name)
        ember.manual_seed(seed + 1 + rank)
        x, y = workloads.make_batch(ember, name, n)
        return model, TensorDataset(x, y), workloads.make_loss(ember, name)
    ember.manual_seed(seed)
    fn = load_user_workload(name)
    out = fn(
        {
            "num_samples": n,
            "per_worker_batch": config["per_worker_batch"],
            "seed": seed,
            "rank": rank,
            "world_size": world,
        }
    )
    if not (isinstance(out, (tuple, list)) and len(out) == 3):
        raise TypeError(
            f"user workload {name} must return (model, dataset, loss_fn), got {type(out).__name__}"
        )
    return tuple(out)


def _optimizer(model, config: dict):
    """A plain optimizer over the prepared model's parameters: every strategy shards inside
    its module wrapper (ZeRO-1/2's parameters are this rank's shards), so the optimizer's state
    is sharded with them."""
    import ember

    opt = config["optimizer"]
    if opt["name"] == "adam":
        return ember.optim.Adam(model.parameters(), lr=opt["lr"])
    return ember.optim.SGD(model.parameters(), lr=opt["lr"], momentum=opt["momentum"])


def _prepare(model, strategy: str, bucket_cap_mb: float):
    """The Trainer's ``prepare_model`` with the point's bucket size where the strategy has
    buckets."""
    from ember.distributed.train.prepare import prepare_model

    if strategy in ("ddp", "zero1", "zero2"):
        try:
            return prepare_model(model, parallel_strategy_kwargs={"bucket_cap_mb": bucket_cap_mb})
        except TypeError as e:  # a wrapper without buckets: raised before it did anything
            if "bucket_cap_mb" not in str(e):
                raise
    return prepare_model(model)


def _loader(dataset, batch: int):
    from ember.distributed.train.prepare import prepare_data_loader
    from ember.utils.data import DataLoader

    # each rank built its own shard: no DistributedSampler, but batches go to the device
    return prepare_data_loader(
        DataLoader(dataset, batch_size=batch, shuffle=False, drop_last=True), add_dist_sampler=False
    )


def _batches(loader):
    """The loader's batches, epoch after epoch."""
    while True:
        yield from loader


def _measure(config: dict, rank: int, world: int) -> dict:
    import ember
    from ember.distributed.train.prepare import get_device

    from .tracer import SendCounter, Tracer, ddp_tracing

    device = get_device()
    sync = ember.cuda.synchronize if device.type == "cuda" else (lambda: None)
    strategy = config["strategy"]
    model, dataset, loss_fn = _workload(config, rank, world)
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    grad_bytes = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    model = _prepare(model, strategy, config["bucket_cap_mb"])
    opt = _optimizer(model, config)
    batches = _batches(_loader(dataset, config["per_worker_batch"]))
    model.train()

    def step(tr=None):
        t0 = time.perf_counter()
        x, y = next(batches)
        t1 = time.perf_counter()
        opt.zero_grad()  # first, so that gradients are alive for the memory report after
        loss = loss_fn(model(x), y)
        sync()
        t2 = time.perf_counter()
        loss.backward()
        sync()
        t3 = time.perf_counter()
        opt.step()
        sync()
        t4 = time.perf_counter()
        if tr is not None:
            for name, a, b in (
                ("data", t0, t1),
                ("forward", t1, t2),
                ("backward", t2, t3),
                ("optimizer", t3, t4),
            ):
                tr(name, a, b)
        return loss, t1 - t0, t4 - t0

    for _ in range(config["warmup"]):
        step()
    _barrier(world)
    origin = time.perf_counter()  # every rank leaves the barrier together: a common clock
    tracer = Tracer()
    data_t, step_t, step_ends = [], [], []
    every = config.get("report_every") or 0  # Ray Tune trials: the scheduler's clock
    with ddp_tracing(tracer), SendCounter() as counter:
        for i in range(config["steps"]):
            loss, dt, st = step(tracer)
            data_t.append(dt)
            step_t.append(st)
            step_ends.append(time.perf_counter())
            if every and (i + 1) % every == 0 and i + 1 < config["steps"]:
                _report_progress(loss, i + 1, statistics.median(step_t))
    wall = time.perf_counter() - origin
    last_loss = float(loss.item())
    memory = _memory(model, opt)
    rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    spans = tracer.spans()
    waits = sum(b - a for name, a, b, _, _ in spans if name.startswith("wait bucket"))
    cut = (
        step_ends[min(config["trace_steps"], len(step_ends)) - 1]
        if config["trace_steps"]
        else origin
    )
    timeline = [(n, a - origin, b - origin, lane, nb) for n, a, b, lane, nb in spans if a < cut]
    model = opt = batches = None  # free them before the reference phase
    gc.collect()

    allreduce = _allreduce_samples(config, world, grad_bytes)
    compute_t, ref_data_t = _compute_reference(config, rank, world, loss_fn, sync)
    steps = config["steps"]
    return {
        "rank": rank,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "n_params": n_params,
        "grad_bytes": grad_bytes,
        # medians: a shared machine's stray stalls should not decide the breakdown
        "step_s": statistics.median(step_t),
        "step_mean_s": statistics.fmean(step_t),
        "data_s": statistics.median(data_t),
        "compute_s": statistics.median(compute_t),
        "ref_data_s": statistics.median(ref_data_t),
        "wall_s": wall,
        "comm_wait_s": waits / steps,
        "sent_bytes_per_step": counter.bytes / steps
        if counter.available and world > 1
        else (0.0 if world == 1 else None),
        "memory_bytes": memory["total"] if memory else rss_peak,
        "memory_source": "memory report" if memory else "peak RSS",
        "memory": memory,
        "rss_peak_bytes": rss_peak,
        "loss": last_loss,
        "allreduce": allreduce,
        "timeline": timeline,
    }


def _report_progress(loss, step: int, step_s: float) -> None:
    """An intermediate report (every rank makes it; the Trainer keeps rank 0's), outside the
    timed steps."""
    from ember.distributed.train import report

    report({"loss": float(loss.item()), "step": step, "step_ms": step_s * 1e3})


def _compute_reference(config, rank, world, loss_fn, sync) -> tuple[list, list]:
    """Step times of an identical model with no collectives at all (this rank alone)."""
    from ember.distributed.train.prepare import get_device

    ref, dataset, _ = _workload(config, rank, world)
    ref = ref.to(get_device())
    opt = _optimizer(ref, config)
    batches = _batches(_loader(dataset, config["per_worker_batch"]))
    ref.train()
    _barrier(world)
    compute, data = [], []
    for i in range(_WARMUP_REF + config["compute_steps"]):
        t0 = time.perf_counter()
        x, y = next(batches)
        t1 = time.perf_counter()
        loss = loss_fn(ref(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        sync()
        t2 = time.perf_counter()
        if i >= _WARMUP_REF:
            compute.append(t2 - t1)
            data.append(t1 - t0)
    return compute, data


def _allreduce_samples(config: dict, world: int, grad_bytes: int) -> list:
    """``[[bytes, median seconds], ...]`` of float32 allreduces over the whole group."""
    if world == 1:
        return []
    import ember
    import ember.distributed as dist
    from ember.distributed.train.prepare import get_device

    sizes = sorted({int(k * 1024) for k in config["calibration"]["sizes_kib"]} | {grad_bytes})
    out = []
    for nbytes in sizes:
        t = ember.zeros(max(1, nbytes // 4), device=get_device())
        dist.all_reduce(t)  # warm-up: connections, buffers
        times = []
        for _ in range(config["calibration"]["iters"]):
            dist.barrier()
            t0 = time.perf_counter()
            dist.all_reduce(t)
            if t.device.type == "cuda":
                ember.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        out.append([t.numel() * 4, statistics.median(times)])
    return out


def _memory(model, opt) -> dict | None:
    """Bytes per category (parameters, gradients, optimizer state, communication buffers,
    buffers, total) from ``ember.distributed.memory_report`` when this build has it: counted
    from the arrays alive after the last timed step, not from formulas. None without it (the
    caller falls back to the process's peak RSS)."""
    import ember.distributed as dist

    report = getattr(dist, "memory_report", None)
    if report is None:
        return None
    out = report(model, opt)
    return {k: int(v) for k, v in out.items()} if isinstance(out, dict) and "total" in out else None


def _barrier(world: int) -> None:
    if world > 1:
        import ember.distributed as dist

        dist.barrier()


def _gather(mine: dict, world: int) -> list:
    if world == 1:
        return [mine]
    import ember.distributed as dist

    out = [None] * world
    dist.all_gather_object(out, mine)
    return out


__all__ = ["train_point", "load_user_workload"]
