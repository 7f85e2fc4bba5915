"""Collective bandwidth and latency: ember next to torch.distributed's gloo, in one run.

    python benchmarks/collectives.py                       # same host, 4 KiB .. 256 MiB
    python benchmarks/collectives.py --max-size 64M        # shorter
    python benchmarks/collectives.py --netns               # across two network namespaces (root)

Bus bandwidth follows NCCL-tests: allreduce S/t * 2(n-1)/n, all_gather and reduce_scatter
S/t * (n-1)/n (S: the full, gathered size), broadcast S/t. Latency is the time per call. Each
implementation runs in its own pair of processes, one thread each (BLAS/OpenMP and torch
pinned). On one host ember uses the shared-memory backend; across namespaces it uses the
"grpc" backend (gRPC rendezvous and control, raw-socket data plane). ``--impls`` adds variants:
``ember-socket`` (the network data plane on one host) and ``ember-grpcstream`` (bulk data over
gRPC streams instead of raw sockets).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests" / "distributed"))  # netns.py: the namespace pair
from _common import choice_list, int_at_least, pin_threads, positive_int, table  # noqa: E402

OPS = ("allreduce", "all_gather", "reduce_scatter", "broadcast")
IMPLS = {  # name -> (framework, ember backend, extra environment)
    "ember": ("ember", None, {}),
    "ember-socket": ("ember", "grpc", {}),
    "ember-grpcstream": ("ember", "grpc", {"EMBER_DATA_PLANE": "grpc"}),
    "gloo": ("torch", "gloo", {}),
}


# torch.distributed's names (and its tensor variants) for the ops measured here
OP_ALIASES = {
    "all_reduce": "allreduce",
    "all_gather_into_tensor": "all_gather",
    "reduce_scatter_tensor": "reduce_scatter",
}


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    norm = text.strip().upper().rstrip("IB")
    try:
        n = int(float(norm[:-1]) * units[norm[-1]]) if norm[-1:] in units else int(norm)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a size in bytes such as 4096, 4K, 64M or 1G, got {text!r}"
        ) from None
    if n < 4:
        raise argparse.ArgumentTypeError(f"must be at least 4 bytes (one float32), got {n}")
    return n


def human(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n // size} {unit}"
    return f"{n} B"


def busbw(op: str, nbytes: int, seconds: float, n: int) -> float:
    factor = {
        "allreduce": 2 * (n - 1) / n,
        "all_gather": (n - 1) / n,
        "reduce_scatter": (n - 1) / n,
        "broadcast": 1.0,
    }[op]
    return nbytes / seconds * factor / 1e9


def iterations(nbytes: int) -> int:
    # the same count on every rank: about 64 MiB of traffic per round, 3..200 calls
    return max(3, min(200, (64 << 20) // max(nbytes, 1)))


def op_fn(dist, op: str, full, part):
    return {
        "allreduce": lambda: dist.all_reduce(full),
        "all_gather": lambda: dist.all_gather_into_tensor(full, part),
        "reduce_scatter": lambda: dist.reduce_scatter_tensor(part, full),
        "broadcast": lambda: dist.broadcast(full, src=0),
    }[op]


def measure(dist, fn, iters: int, rounds: int) -> tuple[float, float]:
    """(wall seconds per call of the best of ``rounds`` rounds, CPU seconds per call over all
    rounds). On a shared machine the wall time moves with the other load; the CPU time (user
    + system, this process) does not, so it shows the work an implementation really does."""
    best, c0 = float("inf"), os.times()
    for _ in range(rounds):
        dist.barrier()
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        best = min(best, (time.perf_counter() - t0) / iters)
    c1 = os.times()
    return best, (c1.user - c0.user + c1.system - c0.system) / (rounds * iters)


# ---- worker: one rank of one implementation ------------------------------------------------
def worker(args) -> None:
    framework, backend, _ = IMPLS[args.impl]
    rank, n = args.rank, args.world_size
    init = f"tcp://{args.addr}:{args.port}"
    if framework == "torch":
        import warnings

        import torch

        warnings.filterwarnings("ignore", category=FutureWarning)  # reduce_scatter_tensor
        import torch.distributed as dist

        torch.set_num_threads(1)
        dist.init_process_group("gloo", init_method=init, rank=rank, world_size=n)
        zeros = torch.zeros
    else:
        import ember
        import ember.distributed as dist

        if backend is None:
            backend = "grpc" if args.netns else "shm"
        dist.init_process_group(backend, init_method=init, rank=rank, world_size=n)
        zeros = ember.zeros
    results = []
    for op in args.ops:
        for size in args.sizes:
            elems = max(n, size // 4 // n * n)
            fn = op_fn(dist, op, zeros(elems), zeros(elems // n))
            for _ in range(2):
                fn()
            seconds, cpu = measure(dist, fn, iterations(size), args.rounds)
            results.append({"op": op, "bytes": elems * 4, "seconds": seconds, "cpu": cpu})
    dist.barrier()
    dist.destroy_process_group()
    print(json.dumps(results), flush=True)


# ---- driver ---------------------------------------------------------------------------------
def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_impl(impl: str, args, pair=None) -> list[dict]:
    from netns import ADDRS

    port = free_port()
    addr = ADDRS[0] if pair is not None else "127.0.0.1"
    procs = []
    for rank in range(args.world_size):
        argv = [
            sys.executable,
            str(HERE / "collectives.py"),
            "--worker",
            "--impl",
            impl,
            "--rank",
            str(rank),
            "--world-size",
            str(args.world_size),
            "--addr",
            addr,
            "--port",
            str(port),
            "--ops",
            ",".join(args.ops),
            "--rounds",
            str(args.rounds),
            "--sizes",
            ",".join(str(s) for s in args.sizes),
        ] + (["--netns"] if pair else [])
        env = {
            **os.environ,
            **IMPLS[impl][2],
            "EMBER_TOKEN": os.environ.get("EMBER_TOKEN", "bench-token"),
        }
        if pair is not None:
            # gloo picks its interface from the hostname, which resolves outside the namespace
            env["GLOO_SOCKET_IFNAME"] = pair.dev[rank % 2]
            procs.append(pair.popen(rank % 2, argv, env=env, stdout=subprocess.PIPE, text=True))
        else:
            procs.append(subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True))
    per_rank = []
    for p in procs:
        out, _ = p.communicate(timeout=3600)
        if p.returncode != 0:
            raise RuntimeError(f"{impl} worker failed (exit {p.returncode})")
        per_rank.append(json.loads(out.strip().splitlines()[-1]))
    # the slowest rank's time per measurement, the mean CPU time of the ranks
    return [
        dict(
            rows[0],
            seconds=max(r["seconds"] for r in rows),
            cpu=sum(r["cpu"] for r in rows) / len(rows),
        )
        for rows in zip(*per_rank)
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--min-size",
        type=parse_size,
        default="4K",
        help="smallest message (bytes; K, M, G suffixes), default 4K",
    )
    p.add_argument("--max-size", type=parse_size, default="256M", help="largest, default 256M")
    p.add_argument(
        "--ops",
        type=choice_list(OPS, OP_ALIASES),
        default=",".join(OPS),
        help=f"comma-separated, from {', '.join(OPS)} (torch's all_reduce, ... "
        "accepted) or all; default all",
    )
    p.add_argument(
        "--impls",
        type=choice_list(IMPLS),
        default="ember,gloo",
        help=f"comma-separated, from {', '.join(IMPLS)}; default ember,gloo",
    )
    p.add_argument("--world-size", type=int_at_least(2), default=2, help="ranks (>= 2)")
    p.add_argument(
        "--rounds", type=positive_int, default=3, help="best of this many rounds per size"
    )
    p.add_argument(
        "--repeat",
        type=positive_int,
        default=1,
        help="run every implementation this many times, alternating; keep the best",
    )
    p.add_argument("--netns", action="store_true", help="ranks in two network namespaces")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--impl", help=argparse.SUPPRESS)
    p.add_argument("--rank", type=int, help=argparse.SUPPRESS)
    p.add_argument("--addr", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--sizes", help=argparse.SUPPRESS)
    args = p.parse_args()
    pin_threads(1)
    if args.worker:
        args.sizes = [int(s) for s in args.sizes.split(",")]
        worker(args)
        return
    lo, hi = args.min_size, args.max_size
    if lo > hi:
        p.error(f"--min-size ({human(lo)}) is larger than --max-size ({human(hi)})")
    args.sizes = []
    size = lo
    while size <= hi:
        args.sizes.append(size)
        size *= 4
    impls = args.impls
    pair = None
    if args.netns:
        from netns import NetnsPair

        pair = NetnsPair()
    try:
        results: dict = {}
        for _ in range(args.repeat):  # alternate implementations so load drifts hit all alike
            for impl in impls:
                rows = run_impl(impl, args, pair)
                old = results.setdefault(impl, rows)
                for o, r in zip(old, rows):
                    o["cpu"] = min(o["cpu"], r["cpu"])
                    o["seconds"] = min(o["seconds"], r["seconds"])
    finally:
        if pair is not None:
            pair.close()
    where = "across two network namespaces" if args.netns else "same host"
    print(
        f"\n{args.world_size} ranks, {where}; busbw in GB/s, latency in ms (slowest rank, "
        f"mean per call, best of {args.rounds} rounds x {args.repeat} runs); cpu: ms of CPU "
        "time per call and rank (user + system)\n"
    )
    header = ["op", "size"] + [f"{i} {k}" for i in impls for k in ("busbw", "lat", "cpu")]
    if "gloo" in impls and impls[0] != "gloo":
        header.append(f"{impls[0]}/gloo busbw")
    rows = []
    for k, base in enumerate(results[impls[0]]):
        row = [base["op"], human(base["bytes"])]
        for impl in impls:
            r = results[impl][k]
            row += [
                f"{busbw(r['op'], r['bytes'], r['seconds'], args.world_size):.2f}",
                f"{r['seconds'] * 1e3:.3f}",
                f"{r['cpu'] * 1e3:.2f}",
            ]
        if len(header) > len(row):
            row.append(f"{results['gloo'][k]['seconds'] / base['seconds']:.2f}x")
        rows.append(row)
    print(table(rows, header))


if __name__ == "__main__":
    main()
