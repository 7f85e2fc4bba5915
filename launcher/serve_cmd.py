"""``ember serve PATH`` / ``ember serve status`` / ``ember serve shutdown`` (docs/serve.md)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time

from ._ray_output import add_verbose_args, routed_ray_output

_ACTIONS = ("status", "shutdown")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "serve",
        help="serve a model over HTTP on Ray Serve",
        description="ember serve PATH: put an ember.export / ember.jit artifact, an .onnx file "
        "or a handler 'file.py:ClassName' behind POST /NAME/predict. "
        "`ember serve status` lists deployments; `ember serve shutdown [--name N]` "
        "removes one (or stops Serve).",
    )
    p.add_argument(
        "target",
        metavar="PATH|status|shutdown",
        help="the artifact or handler to serve, or the action status / shutdown",
    )
    p.add_argument("--name", help="deployment name (default: the file's stem)")
    p.add_argument("--route-prefix", help="URL prefix (default: /NAME)")
    p.add_argument("--host", default="127.0.0.1", help="address the HTTP proxy binds to")
    p.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
    scale = p.add_mutually_exclusive_group()
    scale.add_argument("--replicas", type=int, default=1, help="number of replicas")
    scale.add_argument(
        "--autoscale", metavar="MIN:MAX", help="autoscale between MIN and MAX replicas"
    )
    p.add_argument(
        "--autoscaling-config",
        metavar="JSON",
        help="more of Ray Serve's autoscaling_config for --autoscale, e.g. "
        '\'{"target_ongoing_requests": 4, "upscale_delay_s": 5, '
        "\"downscale_delay_s\": 60}' (Ray's defaults: 2, 30 s, 600 s)",
    )
    p.add_argument("--max-batch-size", type=int, default=32, help="server-side batch limit")
    p.add_argument(
        "--batch-wait-ms", type=float, default=5.0, help="how long a batch waits to fill (ms)"
    )
    p.add_argument(
        "--max-request-bytes",
        type=int,
        default=8 * 1024 * 1024,
        help="reject larger request bodies with HTTP 413",
    )
    p.add_argument("--input-dtype", help="cast JSON inputs to this dtype (e.g. float32, int64)")
    p.add_argument(
        "--pad-sequences",
        action="store_true",
        help="batch requests of different lengths (dim 1) by right-padding with "
        "zeros; only for causal models",
    )
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument(
        "--address",
        default=None,
        help="Ray cluster to join (auto or ray://...); default: an embedded local "
        "Ray for PATH, 'auto' for status/shutdown",
    )
    p.add_argument(
        "--blocking",
        action="store_true",
        help="stay in the foreground until Ctrl-C (always so with an embedded Ray)",
    )
    add_verbose_args(p, "serve")
    p.set_defaults(func=run_serve)


def parse_autoscale(text: str) -> dict:
    try:
        lo, hi = (int(v) for v in text.split(":"))
    except ValueError:
        raise ValueError(f"--autoscale expects MIN:MAX (two integers), got {text!r}") from None
    if lo < 0 or hi < max(lo, 1):
        raise ValueError(f"--autoscale needs 0 <= MIN <= MAX and MAX >= 1, got {text!r}")
    return {"min_replicas": lo, "max_replicas": hi, "initial_replicas": max(lo, 1)}


def parse_autoscaling_config(text: str) -> dict:
    """``--autoscaling-config``: a JSON object of Ray Serve autoscaling_config fields."""
    try:
        cfg = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(
            f"--autoscaling-config is not valid JSON ({e.msg} at column {e.colno}): {text!r}"
        ) from None
    if not isinstance(cfg, dict):
        raise ValueError(f"--autoscaling-config expects a JSON object, got {text!r}")
    return cfg


def autoscaling_from_args(args: argparse.Namespace) -> dict | None:
    """Ray Serve's autoscaling_config from ``--autoscale`` and ``--autoscaling-config``."""
    autoscaling = parse_autoscale(args.autoscale) if args.autoscale else None
    if args.autoscaling_config:
        if autoscaling is None:
            raise ValueError("--autoscaling-config needs --autoscale MIN:MAX")
        extra = parse_autoscaling_config(args.autoscaling_config)
        for key in ("min_replicas", "max_replicas"):
            if key in extra:
                raise ValueError(f"--autoscaling-config: set {key} with --autoscale MIN:MAX")
        autoscaling.update(extra)
    return autoscaling


def run_serve(args: argparse.Namespace) -> int:
    with routed_ray_output(args, "serve"):  # Ray's own lines: LOG_DIR/ray.log (--verbose)
        return _run_serve(args)


def _run_serve(args: argparse.Namespace) -> int:
    try:
        if args.target == "status":
            return _status(args)
        if args.target == "shutdown":
            return _shutdown(args)
        return _deploy(args)
    except (ValueError, TypeError, FileNotFoundError, ImportError, KeyError) as e:
        msg = e.args[0] if e.args and isinstance(e.args[0], str) else str(e)
        msg = msg.removeprefix("ember serve: ")
        print(f"ember serve: {msg}", file=sys.stderr)
        return 2


def _cluster_auth() -> None:
    """Use Ray's auth mode of a cluster known by its address, as `ember status --address`
    does: Ray turns token auth on for an `ember up` head when a token exists, but a driver
    that names an address never does by itself and would be refused."""
    from . import auth

    auth.apply_env(auth.default_env())


def _connect(address: str | None) -> None:
    import ray

    if not ray.is_initialized():
        _cluster_auth()
        ray.init(address=address or "auto", log_to_driver=False)


def _status(args: argparse.Namespace) -> int:
    from ember import serve

    _connect(args.address)
    print(json.dumps(serve.status(), indent=2, sort_keys=True))
    return 0


def _shutdown(args: argparse.Namespace) -> int:
    from ember import serve

    _connect(args.address)
    serve.shutdown(args.name)
    print(f"ember serve: {'removed ' + args.name if args.name else 'Serve stopped'}")
    return 0


def _deploy(args: argparse.Namespace) -> int:
    from ember import serve

    if args.replicas < 1:
        raise ValueError(f"--replicas must be >= 1, got {args.replicas}")
    autoscaling = autoscaling_from_args(args)
    if args.address not in (None, "", "local"):
        import ray

        if not ray.is_initialized():
            _cluster_auth()
    serve.deploy(
        args.target,
        name=args.name,
        route_prefix=args.route_prefix,
        num_replicas=None if autoscaling else args.replicas,
        autoscaling_config=autoscaling,
        max_batch_size=args.max_batch_size,
        batch_wait_timeout_s=args.batch_wait_ms / 1000.0,
        max_request_bytes=args.max_request_bytes,
        input_dtype=args.input_dtype,
        pad_sequences=args.pad_sequences,
        device=args.device,
        host=args.host,
        port=args.port,
        address=args.address,
    )
    name = args.name or _default_name(args.target)
    prefix = args.route_prefix or f"/{name}"
    print(
        f"ember serve: {name} at http://{args.host}:{args.port}{prefix}/predict "
        f"(metadata: {prefix}/metadata, docs: {prefix}/docs)",
        flush=True,
    )
    metrics = _metrics_url()
    if metrics:
        print(f"ember serve: Prometheus metrics (Ray's, Serve's included) at {metrics}", flush=True)
    if args.address and not args.blocking:
        return 0  # the cluster keeps serving after this process exits
    # An embedded Ray lives as long as this process: stay until Ctrl-C / SIGTERM.
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    try:
        while not stop:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    serve.shutdown()
    return 0


def _metrics_url() -> str | None:
    """Where Ray's metrics agent on this machine's node serves Prometheus' text format (every
    Ray process's metrics, Serve's proxy and replicas included); None if Ray does not say."""
    import ray

    try:
        ip = ray.util.get_node_ip_address()
        ports = [
            (n["NodeManagerAddress"], n.get("MetricsExportPort"))
            for n in ray.nodes()
            if n.get("Alive")
        ]
    except Exception:  # noqa: BLE001 - a note, never a reason for serve to fail
        return None
    for host, port in sorted(ports, key=lambda hp: hp[0] != ip):  # this node first
        if port:
            return f"http://{host}:{port}/metrics"
    return None


def _default_name(target: str) -> str:
    import os
    import re

    if ":" in os.path.basename(target) and target.rsplit(":", 1)[0].endswith(".py"):
        stem = target.rsplit(":", 1)[1].lower()
    else:
        stem = os.path.splitext(os.path.basename(target))[0]
    return re.sub(r"[^A-Za-z0-9_.-]", "-", stem)
