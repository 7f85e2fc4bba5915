"""Training-step speed of the DESIGN.md §7 workloads, ember vs PyTorch in the same run.

    python benchmarks/engine.py                 # all workloads, 1 and 2 threads
    python benchmarks/engine.py --workloads mlp cnn --threads 1 --steps 20
    python benchmarks/engine.py --device cuda    # CuPy against torch on the GPU
    python benchmarks/engine.py --amp bf16       # + autocast (fp16: + GradScaler) vs float32

Each (framework, threads) pair runs in its own subprocess, since BLAS thread pools are fixed at
import. A step is forward + cross-entropy + backward + Adam(lr=1e-3). Targets (issue 3): ratio
<= 1.5 on mlp and transformer, <= 2.5 on cnn and lstm. With ``--device cuda`` each step ends
in a device synchronisation, so the time is the GPU's as well as the host's. With ``--amp``
each workload also runs under ``autocast`` (and a ``GradScaler`` for fp16), and the table gives
step time and peak memory of both modes, counted from before a workload's first step: on the
GPU the allocator's peak, on the CPU the process's peak RSS (Linux VmHWM, reset per workload).

On the CPU the plain table also gives each framework's step memory (Linux; ``--no-memory``
skips it): the peak RSS of one steady-state step over the RSS just before it, after the timed
steps and a ``malloc_trim(0)`` in both processes. Absolute RSS would be unfair: torch's import
maps several hundred MiB of libraries that ember does not load, and ember compiles its numba
kernels during the first step; both sit in the baseline. The trim returns the free heap each
allocator keeps (ember keeps its high-water mark on purpose, ``core/backend/_malloc.py``), so
what the step faults in again counts for both: the parameters' gradients (freed by a
``zero_grad`` before the baseline), the saved activations, the temporaries of forward, backward
and Adam at their peak. The parameters and Adam's state are in the baseline of both.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from ember.distributed.experiment.workloads import build

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import positive_int  # noqa: E402

WORKLOADS = ("mlp", "cnn", "lstm", "transformer")  # DESIGN.md §7 (the builder lives in ember)


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def _peak_start(lib, device: str) -> float:
    """Reset the peak-memory counter; return the baseline (MiB) peaks are measured from."""
    if device == "cuda":
        lib.cuda.reset_peak_memory_stats()
        return lib.cuda.memory_allocated() / 2**20
    try:  # Linux: writing 5 to clear_refs resets VmHWM, the peak RSS
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _rss_mib()
    except OSError:
        return float("nan")


def _peak_end(lib, device: str, base: float) -> float:
    if device == "cuda":
        return lib.cuda.max_memory_allocated() / 2**20 - base
    try:
        with open("/proc/self/status") as f:
            hwm = next(int(line.split()[1]) for line in f if line.startswith("VmHWM"))
        return hwm / 1024 - base
    except (OSError, StopIteration):
        return float("nan")


def _malloc_trim() -> None:
    """Hand glibc's free heap back to the OS (both frameworks, before a step-memory baseline)."""
    import ctypes

    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def step_memory_mib(step, opt, repeat: int = 5) -> float:
    """Peak RSS (MiB) of one call of ``step`` over the RSS just before it, after freeing the
    gradients and trimming the free heap (see the module docstring), the median of ``repeat``
    steps; NaN where Linux's VmHWM reset is unavailable."""
    import gc

    peaks = []
    for _ in range(repeat):  # glibc's reuse of the trimmed heap varies: the median of a few
        opt.zero_grad()
        gc.collect()
        _malloc_trim()
        base = _peak_start(None, "cpu")
        step()
        peaks.append(_peak_end(None, "cpu", base))
    return sorted(peaks)[len(peaks) // 2]


def run_child(
    framework: str,
    threads: int,
    workloads: list[str],
    steps: int,
    device: str = "cpu",
    batch: int | None = None,
    amp: str | None = None,
    mode: str | None = None,
    memory: bool = False,
) -> dict:
    """Inside a subprocess: ms/step per workload (median of ``steps`` after warm-up); with
    ``amp`` (``"bf16"``/``"fp16"``) the steps run under autocast and ``<name>/peak_mib`` is
    added; with ``memory`` (plain float32 on the CPU) ``<name>/step_mib``, the peak RSS growth
    of one more step (:func:`step_memory_mib`)."""
    import contextlib
    import time

    import numpy as np

    if framework.startswith("torch"):  # "torch", or "torch+compile" (--compile)
        import torch as lib

        lib.set_num_threads(threads)
    else:
        import ember as lib
    lib.manual_seed(0)
    sync = lib.cuda.synchronize if device == "cuda" else (lambda: None)
    amp_dtype = {"bf16": lib.bfloat16, "fp16": lib.float16}.get(amp)
    out = {}
    for name in workloads:
        model, x, y, loss_fn = build(lib, name, batch)
        model.to(device)
        x, y = x.to(device), y.to(device)
        opt = lib.optim.Adam(model.parameters(), lr=1e-3)
        model.train()
        if framework.endswith("+compile"):  # --compile: ember.compile / torch.compile
            model = lib.compile(model, mode=mode)
            t0 = time.perf_counter()
            opt.zero_grad()
            loss_fn(model(x), y).backward()
            opt.step()
            sync()
            out[name + "/compile_s"] = time.perf_counter() - t0  # first step: capture + codegen

        # fp16 needs loss scaling; bf16 has float32's range and trains without it
        scaler = lib.amp.GradScaler(device) if amp == "fp16" else None

        def region():
            return (
                lib.autocast(device, dtype=amp_dtype)
                if amp_dtype is not None
                else contextlib.nullcontext()
            )

        def step(model=model, opt=opt, x=x, y=y, loss_fn=loss_fn, scaler=scaler):
            opt.zero_grad()
            with region():
                loss = loss_fn(model(x), y)
            if scaler is None:
                loss.backward()
                opt.step()
            else:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            sync()

        base = _peak_start(lib, device) if amp is not None else 0.0
        try:
            step()
        except RuntimeError as exc:  # e.g. torch's oneDNN has no bf16 LSTM on some CPUs
            if amp is None:
                raise
            out[name] = out[name + "/peak_mib"] = None
            out[name + "/error"] = str(exc).splitlines()[0][:48]
            continue
        for _ in range(2):
            step()
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        out[name] = float(np.median(times) * 1e3)
        if memory and amp is None and device == "cpu":
            out[name + "/step_mib"] = step_memory_mib(step, opt)
        if framework == "ember+compile" and mode == "reduce-overhead":
            fns = [e.fn for e in model._compiled.entries if e.fn is not None]
            runner = fns[-1] if fns else None  # was the step replayed as CUDA graphs?
            graphed = getattr(runner, "graph", None) is not None
            out[name + "/graphs"] = "yes" if graphed else getattr(runner, "reason", "") or "no"
        if amp is not None:  # from before the first step: activations, grads, Adam state
            out[name + "/peak_mib"] = _peak_end(lib, device, base)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=WORKLOADS)
    ap.add_argument("--threads", nargs="+", type=positive_int, default=[1, 2])
    ap.add_argument("--steps", type=positive_int, default=15)
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument(
        "--batch", type=positive_int, help="batch size (default: each workload's §7 batch)"
    )
    ap.add_argument(
        "--amp",
        choices=("bf16", "fp16", "off"),
        help="also run each workload under autocast in this dtype; compare with "
        "float32 (step time and peak memory)",
    )
    ap.add_argument(
        "--compile",
        action="store_true",
        help="ember.compile vs eager ember, torch eager and torch.compile",
    )
    ap.add_argument(
        "--mode",
        choices=("default", "reduce-overhead"),
        default="default",
        help="with --compile: the compile mode of both frameworks (reduce-overhead: CUDA graphs)",
    )
    ap.add_argument(
        "--no-memory",
        action="store_true",
        help="skip the step-memory columns (peak RSS growth of one step, CPU only)",
    )
    ap.add_argument("--json", help="write the results here too")
    ap.add_argument("--_child", nargs=2, metavar=("FRAMEWORK", "THREADS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._child:
        fw, th = args._child[0], int(args._child[1])
        print(
            json.dumps(
                run_child(
                    fw,
                    th,
                    args.workloads,
                    args.steps,
                    args.device,
                    args.batch,
                    args.amp,
                    args.mode,
                    memory=not args.no_memory,
                )
            )
        )
        return
    if args.amp == "off":
        raise SystemExit("--amp off is internal; give bf16 or fp16")
    if args.amp:
        return _amp_main(args)
    if args.compile:
        return _compile_main(args)
    from _common import table

    results = {}
    for threads in args.threads:
        env = dict(os.environ)
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(threads)
        for fw in ("ember", "torch"):
            cmd = [
                sys.executable,
                __file__,
                "--_child",
                fw,
                str(threads),
                "--steps",
                str(args.steps),
                "--device",
                args.device,
                "--workloads",
                *args.workloads,
            ]
            if args.batch:
                cmd += ["--batch", str(args.batch)]
            if args.no_memory:
                cmd += ["--no-memory"]
            r = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if r.returncode != 0:
                raise SystemExit(f"{fw} with {threads} thread(s) failed:\n{r.stderr}")
            results[(fw, threads)] = json.loads(r.stdout.strip().splitlines()[-1])
    rows = []
    memory = not args.no_memory and args.device == "cpu"
    for threads in args.threads:
        for name in args.workloads:
            re_, rt = results[("ember", threads)], results[("torch", threads)]
            e, t = re_[name], rt[name]
            row = [name, threads, f"{e:.1f}", f"{t:.1f}", f"{e / t:.2f}"]
            if memory:
                me, mt = re_[name + "/step_mib"], rt[name + "/step_mib"]
                row += [f"{me:.1f}", f"{mt:.1f}", f"{me / mt:.2f}" if mt > 0 else "-"]
            rows.append(row)
    header = ["workload", "threads", "ember ms/step", "torch ms/step", "ratio"]
    if memory:
        header += ["ember step MiB", "torch step MiB", "MiB ratio"]
    print(f"device: {args.device}")
    print(table(rows, header))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({f"{k[0]}/{k[1]}": v for k, v in results.items()}, f, indent=2)


def _compile_main(args) -> None:
    """``--compile``: eager and compiled ember, torch eager and torch.compile, each in its own
    subprocess; ratios are to torch eager. A framework that fails shows its error instead."""
    from _common import table

    fws = ("ember", "ember+compile", "torch", "torch+compile")
    results = {}
    for threads in args.threads:
        env = dict(os.environ)
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(threads)
        for fw in fws:
            cmd = [
                sys.executable,
                __file__,
                "--_child",
                fw,
                str(threads),
                "--steps",
                str(args.steps),
                "--device",
                args.device,
                "--workloads",
                *args.workloads,
            ]
            cmd += ["--batch", str(args.batch)] if args.batch else []
            cmd += ["--mode", args.mode]
            r = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if r.returncode != 0:
                if fw == "torch+compile":  # inductor needs a C++ compiler; report, go on
                    print(f"torch.compile failed: {r.stderr.strip().splitlines()[-1:]}")
                    results[(fw, threads)] = {}
                    continue
                raise SystemExit(f"{fw} with {threads} thread(s) failed:\n{r.stderr}")
            results[(fw, threads)] = json.loads(r.stdout.strip().splitlines()[-1])
    rows = []
    for threads in args.threads:
        for name in args.workloads:
            ms = {fw: results[(fw, threads)].get(name) for fw in fws}
            first = {fw: results[(fw, threads)].get(name + "/compile_s") for fw in fws}
            t = ms["torch"]

            def f(v, fmt="{:.1f}"):
                return "-" if v is None else fmt.format(v)

            rows.append(
                [
                    name,
                    threads,
                    f(ms["ember"]),
                    f(ms["ember+compile"]),
                    f(t),
                    f(ms["torch+compile"]),
                    f(ms["ember+compile"] and ms["ember+compile"] / t, "{:.2f}"),
                    f(ms["ember"] / t, "{:.2f}"),
                    f(ms["ember+compile"] and ms["ember"] / ms["ember+compile"], "{:.2f}"),
                    f(first["ember+compile"], "{:.2f}"),
                    f(first["torch+compile"], "{:.2f}"),
                ]
            )
    print(
        f"device: {args.device}; mode: {args.mode}; ratios to torch eager; "
        "first step = capture + compile (s)"
    )
    for name in args.workloads:
        for threads in args.threads:
            graphs = results[("ember+compile", threads)].get(name + "/graphs")
            if graphs is not None:
                print(f"  ember CUDA graphs, {name}: {graphs}")
    print(
        table(
            rows,
            [
                "workload",
                "threads",
                "ember ms",
                "ember.compile ms",
                "torch ms",
                "torch.compile ms",
                "compiled/torch",
                "eager/torch",
                "compile speed-up",
                "ember 1st s",
                "torch 1st s",
            ],
        )
    )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({f"{k[0]}/{k[1]}": v for k, v in results.items()}, fh, indent=2)


def _amp_main(args) -> None:
    """``--amp``: float32 and autocast runs of each framework, each in its own subprocess."""
    from _common import table

    results = {}
    for threads in args.threads:
        env = dict(os.environ)
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(threads)
        for fw in ("ember", "torch"):
            for mode in ("fp32", args.amp):
                cmd = [
                    sys.executable,
                    __file__,
                    "--_child",
                    fw,
                    str(threads),
                    "--steps",
                    str(args.steps),
                    "--device",
                    args.device,
                    "--workloads",
                    *args.workloads,
                ]
                cmd += ["--batch", str(args.batch)] if args.batch else []
                # "off": the plain float32 step, its peak memory measured the same way
                cmd += ["--amp", mode] if mode != "fp32" else ["--amp", "off"]
                r = subprocess.run(cmd, capture_output=True, text=True, env=env)
                if r.returncode != 0:
                    raise SystemExit(f"{fw} {mode} with {threads} thread(s) failed:\n{r.stderr}")
                results[(fw, threads, mode)] = json.loads(r.stdout.strip().splitlines()[-1])
    rows = []
    for threads in args.threads:
        for name in args.workloads:
            for fw in ("ember", "torch"):
                f32, low = results[(fw, threads, "fp32")], results[(fw, threads, args.amp)]
                if low[name] is None:
                    rows.append(
                        [
                            name,
                            threads,
                            fw,
                            f"{f32[name]:.1f}",
                            "failed",
                            "-",
                            f"{f32[name + '/peak_mib']:.1f}",
                            low[name + "/error"],
                        ]
                    )
                    continue
                rows.append(
                    [
                        name,
                        threads,
                        fw,
                        f"{f32[name]:.1f}",
                        f"{low[name]:.1f}",
                        f"{f32[name] / low[name]:.2f}",
                        f"{f32[name + '/peak_mib']:.1f}",
                        f"{low[name + '/peak_mib']:.1f}",
                    ]
                )
    print(f"device: {args.device}, amp: {args.amp}")
    print(
        table(
            rows,
            [
                "workload",
                "threads",
                "framework",
                "fp32 ms/step",
                f"{args.amp} ms/step",
                "speed-up",
                "fp32 peak MiB",
                f"{args.amp} peak MiB",
            ],
        )
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"/".join(map(str, k)): v for k, v in results.items()}, f, indent=2)


if __name__ == "__main__":
    main()
