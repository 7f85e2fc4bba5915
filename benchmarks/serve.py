"""ember serve (Ray Serve, batching, 1 and 2 replicas) against the baseline a user would write:
the same model in PyTorch behind FastAPI + uvicorn in one process, no batching.

Same payloads (JSON nested lists) for both; a bounded asyncio load generator (aiohttp) sends a
fixed number of requests with 1/8/32 concurrent clients and reports requests/s, p50 and p99.

    python benchmarks/serve.py                      # mlp and gpt, concurrency 1,8,32
    python benchmarks/serve.py --models mlp --requests 200 --json out.json
    python benchmarks/serve.py --models mlp --variants all --concurrency 1,32   # the sweep

Variants (``--variants``): ``http`` (ember serve over Serve's HTTP proxy, 1 and 2 replicas),
``handle`` (the same deployment called from this driver through its DeploymentHandle with a
NumPy array: no HTTP proxy, no JSON), ``direct`` (Ray Serve's experimental direct ingress,
RAY_SERVE_ENABLE_DIRECT_INGRESS=1: the replica serves HTTP on its own port, 30000 up, and the
client talks to it without the proxy; set for the whole run, so run it on its own), and
``sweep`` (HTTP, 1 replica, one knob changed each:
max_ongoing_requests, max_batch_size, batch wait). Every cell also reports the CPU time per
request of each process (from /proc: client, server or Serve's proxy / replicas / controller),
which is what bounds throughput on a small machine.

Models: ``mlp`` is DESIGN §7's Linear(784,512)-ReLU-Linear(512,256)-ReLU-Linear(256,10), one
row per request; ``gpt`` is the char GPT of examples/char_gpt.py (vocab 65, block 64, d 128,
2 layers), one 64-token sequence per request, full logits back. Each server gets one thread
per replica (torch.set_num_threads(1); Ray gives a 1-CPU replica OMP_NUM_THREADS=1).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from functools import partial

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _common import choice_list, int_at_least, nonneg_int, positive_int  # noqa: E402
from _serve_load import (  # noqa: E402, F401  (re-exported: the old names stay here)
    _TICK,
    _cpu_s,
    _direct_port,
    _load,
    _load_handle,
    _measured,
    _run,
    _serve_pids,
    _wait_http,
)

MODELS = ("mlp", "gpt")
VARIANTS = ("http", "handle", "direct", "sweep")


# -- models -------------------------------------------------------------------------------
def ember_model(kind: str):
    import ember
    from ember import nn

    ember.manual_seed(0)
    if kind == "mlp":
        return nn.Sequential(
            nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 10)
        ).eval()
    sys.path.insert(0, os.path.join(HERE, "..", "examples"))
    from char_gpt import CharGPT

    class ServableGPT(CharGPT):
        """CharGPT with its causal mask precomputed, so export records a slice, not a call
        that takes symbolic sizes."""

        def __init__(self, *a, **k) -> None:
            super().__init__(*a, **k)
            mask = nn.Transformer.generate_square_subsequent_mask(self.block_size)
            self.register_buffer("causal", mask, persistent=False)

        def forward(self, x):
            t = x.shape[1]
            h = self.drop(self.tok(x) + self.pos.weight[:t])
            return self.head(self.blocks(h, mask=self.causal[:t, :t], is_causal=True))

    return ServableGPT(65, 64).eval()


def torch_model(kind: str, weights: dict):
    import torch
    from torch import nn

    if kind == "mlp":
        m = nn.Sequential(
            nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 10)
        )
    else:

        class GPT(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.tok, self.pos = nn.Embedding(65, 128), nn.Embedding(64, 128)
                self.drop = nn.Dropout(0.1)
                layer = nn.TransformerEncoderLayer(
                    128, 4, 512, 0.1, activation="gelu", batch_first=True, norm_first=True
                )
                self.blocks = nn.TransformerEncoder(
                    layer, 2, norm=nn.LayerNorm(128), enable_nested_tensor=False
                )
                self.head = nn.Linear(128, 65)

            def forward(self, x):
                t = x.shape[1]
                h = self.drop(self.tok(x) + self.pos.weight[:t])
                mask = nn.Transformer.generate_square_subsequent_mask(t)
                return self.head(self.blocks(h, mask=mask, is_causal=True))

        m = GPT()
    m.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
    return m.eval()


def payload(kind: str) -> dict:
    import numpy as np

    rng = np.random.default_rng(0)
    if kind == "mlp":
        return {"inputs": rng.standard_normal((1, 784)).astype(np.float32).round(4).tolist()}
    return {"inputs": rng.integers(0, 65, (1, 64)).tolist()}


# -- the baseline server (run as a subprocess) -----------------------------------------------
def baseline_server(kind: str, weights_path: str, port: int) -> None:
    import numpy as np
    import torch
    import uvicorn
    from fastapi import FastAPI

    torch.set_num_threads(1)
    with np.load(weights_path) as f:
        model = torch_model(kind, dict(f))
    app = FastAPI()

    @app.post("/predict")
    def predict(body: dict) -> dict:  # sync: FastAPI runs it in its thread pool
        x = torch.tensor(body["inputs"])
        with torch.inference_mode():
            y = model(x)
        return {"outputs": y.tolist()}

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def _int_list(text: str) -> list:
    return [positive_int(c) for c in text.split(",")]


def _port(text: str) -> int:
    port = int_at_least(1)(text)
    if port > 65534:  # PORT + 1 serves the baseline
        raise argparse.ArgumentTypeError(f"must be a TCP port below 65535, got {port}")
    return port


def _nonneg_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _cells(args) -> list:
    """(label, path, replicas, deploy() overrides) of each ember serve configuration."""
    cells = []
    if "http" in args.variants:
        cells += [("ember serve x1", "http", 1, {}), ("ember serve x2", "http", 2, {})]
    if "handle" in args.variants:
        cells += [("ember handle x1", "handle", 1, {}), ("ember handle x2", "handle", 2, {})]
    if "direct" in args.variants:
        cells += [("ember direct x1", "direct", 1, {})]
    if "sweep" in args.variants:
        cells += [
            ("x1 max_ongoing=8", "http", 1, {"max_ongoing_requests": 8}),
            ("x1 max_ongoing=256", "http", 1, {"max_ongoing_requests": 256}),
            ("x1 batch 8", "http", 1, {"max_batch_size": 8}),
            ("x1 wait 0 ms", "http", 1, {"batch_wait_timeout_s": 0.0}),
            ("x1 wait 5 ms", "http", 1, {"batch_wait_timeout_s": 0.005}),
        ]
    return cells


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--models",
        type=choice_list(MODELS),
        default="mlp,gpt",
        help=f"comma-separated, from {', '.join(MODELS)}; default mlp,gpt",
    )
    p.add_argument(
        "--concurrency",
        type=_int_list,
        default="1,8,32",
        help="comma-separated client concurrency levels; default 1,8,32",
    )
    p.add_argument(
        "--requests",
        type=nonneg_int,
        default=0,
        help="requests per cell (default: 300 for mlp, 64 for gpt)",
    )
    p.add_argument(
        "--port",
        type=_port,
        default=18600,
        help="HTTP port of the deployment (the baseline server takes PORT+1)",
    )
    p.add_argument("--max-batch-size", type=positive_int, default=32)
    # 1 ms, not deploy()'s 5 ms default: with one inference thread per replica, batches form
    # while the previous batch computes, so a longer wait only adds latency at low load.
    p.add_argument("--batch-wait-ms", type=_nonneg_float, default=1.0)
    p.add_argument(
        "--variants",
        type=choice_list(VARIANTS),
        default="http",
        help=f"comma-separated, from {', '.join(VARIANTS)} or all; default http",
    )
    p.add_argument("--json", help="write the results here too")
    p.add_argument(
        "--baseline-server", nargs=3, metavar=("MODEL", "WEIGHTS", "PORT"), help=argparse.SUPPRESS
    )
    args = p.parse_args(argv)
    if args.baseline_server:
        baseline_server(
            args.baseline_server[0], args.baseline_server[1], int(args.baseline_server[2])
        )
        return 0

    import numpy as np
    import ray

    import ember
    from ember import serve
    from ember.export import Dim, export

    levels = args.concurrency
    if "direct" in args.variants:  # read by Serve's processes when they start
        os.environ["RAY_SERVE_ENABLE_DIRECT_INGRESS"] = "1"
        # no 30 s drain for an external load balancer between cells (there is none)
        os.environ["RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"] = "0"
    serve.serve_env()  # the Ray Serve settings ember serve uses for a Ray it starts
    for attempt in range(3):  # Ray's raylet gets a fixed 30 s to start: a busy machine can miss it
        try:
            ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
            break
        except Exception as e:  # a bare Exception from Ray
            if "timed out during startup" not in str(e) or attempt == 2:
                raise
            ray.shutdown()
    rows = []
    tmp = tempfile.mkdtemp(prefix="ember-serve-bench-")
    try:
        for kind in args.models:
            n = args.requests or (300 if kind == "mlp" else 64)
            model = ember_model(kind)
            x = ember.randn(2, 784) if kind == "mlp" else ember.randint(0, 65, (2, 64))
            ep = export(model, (x,), dynamic_shapes=({0: Dim("batch", min=1, max=4096)},))
            art = os.path.join(tmp, f"{kind}.ep")
            ember.export.save(ep, art)
            wpath = os.path.join(tmp, f"{kind}.npz")
            np.savez(wpath, **{k: v.detach().numpy() for k, v in model.state_dict().items()})
            body = payload(kind)
            # the baseline first, alone on the machine
            bport = args.port + 1
            proc = subprocess.Popen(
                [
                    sys.executable,
                    os.path.abspath(__file__),
                    "--baseline-server",
                    kind,
                    wpath,
                    str(bport),
                ],
                env={**os.environ, "OMP_NUM_THREADS": "1"},
            )
            try:
                _wait_http(f"http://127.0.0.1:{bport}/healthz")
                for c in levels:
                    run = partial(_run, _load(f"http://127.0.0.1:{bport}/predict", body, c, n))
                    r = _measured(run, {"server": [proc.pid]}, n)
                    rows.append({"model": kind, "server": "torch+FastAPI", "c": c, **r})
                    print(rows[-1], flush=True)
            finally:
                proc.terminate()
                proc.wait(timeout=30)
            for label, path, reps, knobs in _cells(args):
                name = f"{kind}{len(rows)}"
                opts = {
                    "max_batch_size": args.max_batch_size,
                    "batch_wait_timeout_s": args.batch_wait_ms / 1000.0,
                    **knobs,
                }
                handle = serve.deploy(art, name=name, num_replicas=reps, port=args.port, **opts)
                pids = _serve_pids(name)
                if path != "handle":
                    pids.pop("controller")  # idle here; its ~constant cost muddles per-request
                for c in levels:
                    if path in ("http", "direct"):
                        port = args.port if path == "http" else _direct_port(name, pids)
                        url = f"http://127.0.0.1:{port}/{name}/predict"
                        run = partial(_run, _load(url, body, c, n))
                    else:
                        x = np.asarray(
                            body["inputs"], dtype=np.float32 if kind == "mlp" else np.int64
                        )
                        run = partial(_run, _load_handle(handle, x, c, n))
                    r = _measured(run, {k: v for k, v in pids.items() if k != "controller"}, n)
                    rows.append({"model": kind, "server": label, "c": c, **r})
                    print(rows[-1], flush=True)
                serve.shutdown(name)
    finally:
        serve.shutdown()
        ray.shutdown()
    print(
        "\n| model | server | clients | req/s | p50 ms | p99 ms | errors | load | CPU ms/request |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        cpu = ", ".join(f"{k[7:]} {v:.1f}" for k, v in r.items() if k.startswith("cpu_ms_"))
        print(
            f"| {r['model']} | {r['server']} | {r['c']} | {r['rps']:.1f} | "
            f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['errors']} | {r['load']:.1f} | "
            f"{cpu} |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
