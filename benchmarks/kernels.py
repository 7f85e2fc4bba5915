"""Kernel shape sweep (issue 23): forward + backward time of each hot op family, ember vs torch.

    python benchmarks/kernels.py                       # every family, 1 and 2 threads (~12 min)
    python benchmarks/kernels.py --quick               # a few shapes per family
    python benchmarks/kernels.py --family conv,norm --threads 1 --repeat 7
    python benchmarks/kernels.py --family conv --json conv.json
    python benchmarks/kernels.py --device cuda         # CuPy against torch on the GPU

Both frameworks run in one process and alternate shape by shape (ember round, torch round, ...),
so a load spike on the shared machine hits both; each time is the best of ``--repeat`` rounds.
Threads: ``threadpoolctl`` limits NumPy's BLAS/OpenMP pools and ``torch.set_num_threads`` torch's.
``--clock cpu`` (the default at 1 thread) times with ``time.process_time``, which a busy machine
disturbs far less than wall time; at 2 threads the default is wall time (``perf_counter``), since
process time adds the threads' work up instead of measuring the latency they buy; there each
round starts after a rest (``PAUSE``), so that no pool's idle workers still spin in it.

Each family's table gives ms per forward+backward for ember and torch, their ratio, the geomean
ratio and the worst shape. The targets (issue 23): geomean <= 1.0 per family at 1 thread,
<= 1.1 at 2 threads, worst shape <= 1.5.

``--device cuda`` runs the same grid on the GPU (ember on CuPy against torch on CUDA, both in
this process): every round ends in a device synchronisation and is timed by the wall clock, and
``--threads`` is ignored (one table per family). It needs CuPy with a GPU and a CUDA build of
torch, and says which is missing otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np  # noqa: E402
from _common import table  # noqa: E402

# ---- the grid --------------------------------------------------------------------------------
# Each case: (name, builder, quick?) where builder(lib, rng) returns (fn, inputs): ``fn(*inputs)``
# is the forward whose output is back-propagated with a fixed random gradient. ``lib`` is ember
# or torch: the two share PyTorch's API, so one builder serves both.


# The device the builders put their tensors and modules on ("cpu" or "cuda"): set by
# ``measure`` around each build, read through ``_t`` / ``_on``.
_DEVICE = ["cpu"]


def _on(lib, a):
    """``a`` (a NumPy array) as a tensor of ``lib`` on the sweep's device."""
    return lib.tensor(a, device=_DEVICE[0])


def _t(lib, rng, shape, grad=True, scale=1.0):
    a = (rng.standard_normal(shape) * scale).astype(np.float32)
    return lib.tensor(a, requires_grad=grad, device=_DEVICE[0])


def conv_case(nd, n, c_in, c_out, size, k, stride=1, groups=1):
    def build(lib, rng):
        F = lib.nn.functional
        x = _t(lib, rng, (n, c_in) + (size,) * nd)
        w = _t(lib, rng, (c_out, c_in // groups) + (k,) * nd, scale=0.1)
        b = _t(lib, rng, (c_out,))
        conv = getattr(F, f"conv{nd}d")
        return (lambda x, w, b: conv(x, w, b, stride=stride, padding=k // 2, groups=groups)), (
            x,
            w,
            b,
        )

    dw = "dw" if groups > 1 and groups == c_in else (f"g{groups}" if groups > 1 else "")
    name = f"{nd}d n{n} {c_in}->{c_out} {size}^{nd} k{k} s{stride} {dw}".rstrip()
    return name, build


def norm_case(kind, shape, affine=True):
    def build(lib, rng):
        F = lib.nn.functional
        x = _t(lib, rng, shape)
        c = shape[1] if kind in ("batch", "group") else shape[-1]
        w = _t(lib, rng, (c,)) if affine else None
        b = _t(lib, rng, (c,)) if affine else None
        if kind == "batch":
            rm, rv = _on(lib, np.zeros(c, np.float32)), _on(lib, np.ones(c, np.float32))
            return (lambda x, w, b: F.batch_norm(x, rm, rv, w, b, training=True)), (x, w, b)
        if kind == "layer":
            return (lambda x, w, b: F.layer_norm(x, (c,), w, b)), (x, w, b)
        if kind == "group":
            return (lambda x, w, b: F.group_norm(x, 8, w, b)), (x, w, b)
        return (lambda x, w: F.rms_norm(x, (c,), w)), (x, w)

    return f"{kind} {'x'.join(map(str, shape))}{'' if affine else ' no-affine'}", build


def act_case(kind, shape):
    def build(lib, rng):
        F = lib.nn.functional
        fn = {
            "gelu": F.gelu,
            "silu": F.silu,
            "softmax": lambda x: F.softmax(x, -1),
            "log_softmax": lambda x: F.log_softmax(x, -1),
        }[kind]
        return fn, (_t(lib, rng, shape),)

    return f"{kind} {'x'.join(map(str, shape))}", build


def attn_case(b, heads, seq, dim, causal=False, masked=False):
    def build(lib, rng):
        F = lib.nn.functional
        q, k, v = (_t(lib, rng, (b, heads, seq, dim)) for _ in range(3))
        mask = None
        if masked:  # a boolean padding-style mask, broadcast over heads
            keep = np.ones((b, 1, seq, seq), dtype=bool)
            keep[..., seq - seq // 4 :] = False
            mask = _on(lib, keep)
        return (
            lambda q, k, v: F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, is_causal=causal
            )
        ), (q, k, v)

    tag = " causal" if causal else (" masked" if masked else "")
    return f"b{b} h{heads} L{seq} d{dim}{tag}", build


def rnn_case(kind, n, seq, feat, hidden, layers=1, bidir=False):
    def build(lib, rng):
        lib.manual_seed(0)
        mod = getattr(lib.nn, kind)(
            feat, hidden, num_layers=layers, bidirectional=bidir, batch_first=True
        ).to(_DEVICE[0])
        x = _t(lib, rng, (n, seq, feat))
        return (lambda x: mod(x)[0]), (x,)

    return f"{kind} n{n} T{seq} {feat}->{hidden} L{layers}{' bi' if bidir else ''}", build


def embed_case(kind, n, vocab, dim=0):
    def build(lib, rng):
        F = lib.nn.functional
        idx = _on(lib, rng.integers(0, vocab, size=n).astype(np.int64))
        if kind == "embedding":
            w = _t(lib, rng, (vocab, dim))
            return (lambda w: F.embedding(idx, w)), (w,)
        logits = _t(lib, rng, (n, vocab))
        return (lambda z: F.cross_entropy(z, idx)), (logits,)

    return (
        f"embedding n{n} V{vocab} d{dim}" if kind == "embedding" else f"cross_entropy n{n} V{vocab}"
    ), build


def pool_case(kind, shape, k=2, stride=2):
    def build(lib, rng):
        F = lib.nn.functional
        fn = {
            "max": lambda x: F.max_pool2d(x, k, stride),
            "avg": lambda x: F.avg_pool2d(x, k, stride),
            "adaptive_avg": lambda x: F.adaptive_avg_pool2d(x, 1),
        }[kind]
        return fn, (_t(lib, rng, shape),)

    return f"{kind}_pool {'x'.join(map(str, shape))} k{k} s{stride}", build


# (case, in --quick) per family
FAMILIES = {
    "conv": [
        (conv_case(2, 8, 3, 16, 32, 3), True),
        (conv_case(2, 8, 16, 16, 32, 3), True),
        (conv_case(2, 8, 16, 32, 32, 3, stride=2), False),
        (conv_case(2, 8, 64, 64, 16, 3), False),
        (conv_case(2, 8, 128, 128, 8, 3), False),
        (conv_case(2, 4, 256, 256, 7, 3), False),
        (conv_case(2, 2, 512, 512, 7, 3), False),
        (conv_case(2, 8, 64, 256, 16, 1), True),
        (conv_case(2, 2, 3, 64, 224, 7, stride=2), False),
        (conv_case(2, 8, 32, 32, 32, 5), False),
        (conv_case(2, 8, 64, 64, 16, 3, groups=64), True),
        (conv_case(1, 8, 64, 64, 128, 3), False),
        (conv_case(1, 8, 128, 128, 64, 5), False),
        (conv_case(3, 2, 16, 32, 16, 3), False),
        # output channels not a multiple of 64; more than twice the input channels (session 22)
        (conv_case(2, 8, 64, 96, 16, 3), False),
        (conv_case(2, 8, 32, 128, 8, 3), False),
    ],
    "norm": [
        (norm_case("batch", (32, 16, 32, 32)), True),
        (norm_case("batch", (16, 128, 14, 14), affine=False), False),
        (norm_case("layer", (64, 128, 512)), True),
        (norm_case("layer", (256, 1024), affine=False), False),
        (norm_case("group", (16, 64, 16, 16)), False),
        (norm_case("rms", (64, 128, 512)), True),
        (norm_case("rms", (256, 1024), affine=False), False),
    ],
    "act": [
        (act_case("gelu", (64, 128, 512)), True),
        (act_case("silu", (64, 128, 512)), False),
        (act_case("softmax", (64, 8, 128, 128)), True),
        (act_case("log_softmax", (512, 10000)), False),
    ],
    "attention": [
        (attn_case(8, 4, 128, 32), True),
        (attn_case(8, 8, 256, 64, causal=True), False),
        (attn_case(4, 1, 512, 128), False),
        (attn_case(2, 16, 1024, 64, causal=True), False),
        (attn_case(1, 4, 2048, 16, causal=True), False),
        (attn_case(8, 4, 128, 32, masked=True), True),
        # large batches run in chunks on one BLAS thread each (ops/attention_chunks.py)
        (attn_case(256, 8, 128, 64), False),
        (attn_case(256, 8, 128, 64, causal=True), False),
    ],
    "rnn": [
        (rnn_case("LSTM", 32, 64, 64, 128), True),
        (rnn_case("GRU", 32, 64, 128, 256, layers=2), False),
        (rnn_case("RNN", 32, 64, 64, 64), False),
        (rnn_case("LSTM", 16, 32, 256, 512, bidir=True), False),
        (rnn_case("LSTM", 8, 32, 1024, 1024, layers=4), False),
    ],
    "embed": [
        (embed_case("embedding", 4096, 50, 64), True),
        (embed_case("embedding", 4096, 50000, 256), False),
        (embed_case("cross_entropy", 512, 50), True),
        (embed_case("cross_entropy", 256, 50000), False),
    ],
    "pool": [
        (pool_case("max", (16, 32, 64, 64)), True),
        (pool_case("avg", (16, 32, 64, 64)), False),
        (pool_case("max", (16, 64, 56, 56), k=3, stride=2), False),
        (pool_case("adaptive_avg", (32, 512, 7, 7), k=1, stride=1), False),
    ],
}


# ---- timing -----------------------------------------------------------------------------------
def _step_fn(lib, build, seed=0):
    """A closure running one forward + backward; grads of the inputs are cleared each time."""
    rng = np.random.default_rng(seed)
    fn, inputs = build(lib, rng)
    leaves = [t for t in inputs if t is not None]  # None: an absent optional (no affine)
    out = fn(*inputs)
    gout = _on(lib, rng.standard_normal(tuple(out.shape)).astype(np.float32))

    def step():
        for t in leaves:
            t.grad = None
        fn(*inputs).backward(gout)

    return step


def _calibrate(step, clock, min_time, sync=None):
    number = 1
    while True:
        dt = _round(step, clock, number, sync) * number
        if dt >= min_time or number >= 1 << 12:
            return number
        number = max(number * 2, int(number * min_time / max(dt, 1e-6)))


def _round(step, clock, number, sync=None):
    t0 = clock()
    for _ in range(number):
        step()
    if sync is not None:  # the GPU's queued work is part of the round
        sync()
    return (clock() - t0) / number


# Seconds of rest before each timed round at 2+ threads: a pool's idle workers spin after its
# last parallel call (measured here, CPU burnt while the process slept: OpenBLAS 0.3.31 ~100
# ms of a core, torch's OpenMP ~10 ms, numba's TBB ~3 ms), and without the rest they ran into
# the other library's round: torch's 2-thread conv 512->512 on 2 x 7^2 took 35 ms after
# ember's OpenBLAS round, 8 ms after a rest (session 23, docs/kernels.md)
PAUSE = 0.15


@contextlib.contextmanager
def _device(device):
    """The builders' tensors and modules go to ``device`` inside the block."""
    prev, _DEVICE[0] = _DEVICE[0], device
    try:
        yield
    finally:
        _DEVICE[0] = prev


def measure(libs, build, threads, repeat, clock, min_time, pause=0.0, device="cpu"):
    """Best-of-``repeat`` seconds per step for each lib, rounds alternating between libs,
    each after ``pause`` seconds of sleep; on ``device`` "cuda" each round ends in a
    synchronisation of that lib's device."""
    from threadpoolctl import threadpool_limits

    prev = {k: lib.get_num_threads() for k, lib in libs.items()}
    sync = {k: lib.cuda.synchronize if device == "cuda" else None for k, lib in libs.items()}
    try:
        with threadpool_limits(limits=threads), _device(device):
            for lib in libs.values():
                # ember's also sizes the compiled kernels' split (ops/_kernel_split.py)
                lib.set_num_threads(threads)
            steps = {k: _step_fn(lib, build) for k, lib in libs.items()}
            numbers = {}
            for k, s in steps.items():
                s()  # warm-up (caches, lazy imports, kernel compilation)
                numbers[k] = _calibrate(s, clock, min_time, sync[k])
            best = {k: float("inf") for k in steps}
            for _ in range(repeat):
                for k, s in steps.items():
                    time.sleep(pause)
                    best[k] = min(best[k], _round(s, clock, numbers[k], sync[k]))
    finally:  # the process's thread counts as they were (the sweep runs inside the tests too)
        for k, lib in libs.items():
            lib.set_num_threads(prev[k])
    return best


def geomean(xs):
    xs = [x for x in xs if x > 0 and math.isfinite(x)]
    return math.exp(sum(map(math.log, xs)) / len(xs)) if xs else float("nan")


def cuda_missing(ember, torch) -> str | None:
    """Why the sweep cannot run on the GPU (ember's CuPy or torch's CUDA absent), or None."""
    if not ember.cuda.is_available():
        return "ember.cuda.is_available() is False (ember's GPU backend needs CuPy and a GPU)"
    if not torch.cuda.is_available():
        return f"torch {torch.__version__} has no CUDA device (the anchor needs a CUDA build)"
    return None


def run(
    families,
    threads_list,
    quick=False,
    repeat=3,
    clock="auto",
    min_time=0.05,
    only=None,
    out=print,
    device="cpu",
    json_path=None,
):
    """Sweep; returns {family: {threads: [{"shape", "ember_ms", "torch_ms", "ratio"}]}} (on
    the GPU one table per family, under the key "cuda"). A shape whose step raises gets NaN
    times and an ``"error"`` entry, and the sweep goes on (a GPU run is one try); with
    ``json_path`` the results so far are written there after every table."""
    import torch

    import ember

    libs = {"ember": ember, "torch": torch}
    if device == "cuda":
        why = cuda_missing(ember, torch)
        if why is not None:
            raise RuntimeError(f"--device cuda: {why}")
        threads_list = ["cuda"]
    result = {}
    for fam in families:
        if fam not in FAMILIES:
            raise ValueError(f"unknown family {fam!r}; choose from {', '.join(FAMILIES)}")
        cases = [c for c, q in FAMILIES[fam] if q or not quick]
        if only is not None:
            cases = cases[:only]
        result[fam] = {}
        for th in threads_list:
            gpu = th == "cuda"
            clk = "wall" if gpu else (clock if clock != "auto" else ("cpu" if th == 1 else "wall"))
            timer = time.process_time if clk == "cpu" else time.perf_counter
            nt, pause = (1, 0) if gpu else (th, PAUSE if th > 1 else 0)
            rows = []
            for name, build in cases:
                err = None
                try:
                    best = measure(libs, build, nt, repeat, timer, min_time, pause, device=device)
                except Exception as exc:  # noqa: BLE001 - reported in the table and the JSON
                    best = {"ember": float("nan"), "torch": float("nan")}
                    err = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
                row = {
                    "shape": name,
                    "ember_ms": best["ember"] * 1e3,
                    "torch_ms": best["torch"] * 1e3,
                    "ratio": best["ember"] / best["torch"],
                }
                rows.append(row if err is None else {**row, "error": err})
            result[fam][th] = rows
            out(format_table(fam, th, clk, rows))
            if json_path:
                Path(json_path).write_text(json.dumps(result, indent=1))
    return result


def errors(result) -> list[str]:
    """``"family/threads/shape: error"`` for every shape of ``run``'s result that raised."""
    return [
        f"{fam}/{th}/{r['shape']}: {r['error']}"
        for fam, by_threads in result.items()
        for th, rows in by_threads.items()
        for r in rows
        if "error" in r
    ]


def format_table(fam, threads, clock, rows):
    body = [
        [r["shape"], f"{r['ember_ms']:.3f}", f"{r['torch_ms']:.3f}", f"{r['ratio']:.2f}"]
        for r in rows
    ]
    timed = [r for r in rows if math.isfinite(r["ratio"])]
    worst = max(timed, key=lambda r: r["ratio"]) if timed else None
    where = "cuda" if threads == "cuda" else f"{threads} thread{'s' if threads > 1 else ''}"
    head = f"\n## {fam}, {where} ({clock} time)\n"
    foot = f"\ngeomean ember/torch: {geomean([r['ratio'] for r in rows]):.2f}; " + (
        f"worst: {worst['ratio']:.2f} ({worst['shape']})" if worst else "worst: n/a"
    )
    foot += "".join(f"\nerror: {r['shape']}: {r['error']}" for r in rows if "error" in r)
    return head + table(body, ["shape", "ember ms", "torch ms", "ember/torch"]) + foot


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--family",
        default=",".join(FAMILIES),
        help=f"comma-separated subset of {','.join(FAMILIES)}",
    )
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    ap.add_argument("--quick", action="store_true", help="a few shapes per family")
    ap.add_argument("--only", type=int, default=None, help="at most this many shapes per family")
    ap.add_argument("--repeat", type=int, default=3, help="rounds per shape (best is kept)")
    ap.add_argument("--min-time", type=float, default=0.05, help="seconds per timed round")
    ap.add_argument("--clock", choices=("auto", "cpu", "wall"), default="auto")
    ap.add_argument("--json", default=None, help="also write the results to this file")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    a = ap.parse_args(argv)
    try:
        threads = [int(t) for t in a.threads.split(",")]
    except ValueError:
        ap.error(f"--threads expects integers like 1,2, got {a.threads!r}")
    if any(t < 1 for t in threads):
        ap.error(f"--threads must be positive, got {a.threads!r}")
    fams = [f.strip() for f in a.family.split(",") if f.strip()]
    bad = [f for f in fams if f not in FAMILIES]
    if bad:
        ap.error(f"unknown family {', '.join(bad)}; choose from {', '.join(FAMILIES)}")
    if a.device == "cuda":
        import torch

        import ember

        why = cuda_missing(ember, torch)
        if why is not None:
            ap.error(f"--device cuda: {why}")
    res = run(
        fams,
        threads,
        a.quick,
        a.repeat,
        a.clock,
        a.min_time,
        a.only,
        device=a.device,
        json_path=a.json,
    )
    bad = errors(res)
    if bad:
        sys.exit(f"{len(bad)} shape(s) raised:\n" + "\n".join(bad))


if __name__ == "__main__":
    main()
