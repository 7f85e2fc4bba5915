"""ember.serve's Python API: deploy / predict / status / shutdown on Ray Serve."""

from __future__ import annotations

import os
import re
from typing import Any

from ._handler import detect_kind, digest

DEFAULT_MAX_REQUEST_BYTES = 8 * 1024 * 1024
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


# Ray / Ray Serve settings for a local Ray that ember serve starts itself. They are read when
# Ray's processes start, so they only apply to a Ray started after serve_env() was applied.
# Measured on 2 cores (benchmarks/serve.py, docs/serve.md): GET /healthz through the proxy
# 9.8 ms -> 4.2 ms p50 and fewer CPU-ms per request, mostly from the gRPC proxy->replica path.
SERVE_ENV = {
    # Proxy -> replica over Serve's gRPC transport instead of Ray actor calls (the default
    # path also makes the replica call back into the proxy for every request body).
    "RAY_SERVE_USE_GRPC_BY_DEFAULT": "1",
    "RAY_SERVE_PROXY_USE_GRPC": "1",
    # Run user code on the replica's own event loop: no cross-thread hand-off per request
    # (ember's batch runs on its own inference thread anyway). Not
    # RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP=0: it would also apply to handles in this process,
    # and those then refuse to work outside an event loop (serve.predict from plain code).
    "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
    # Buffer request-path log lines instead of a flush per line (errors still flush at once).
    "RAY_SERVE_REQUEST_PATH_LOG_BUFFER_SIZE": "1000",
    # Ray starts its workers (proxy, replicas) at nice 15; on a shared machine that starves
    # the serving path behind any other process, so serve at normal priority.
    "RAY_worker_niceness": "0",
}


def serve_env() -> dict:
    """Apply :data:`SERVE_ENV` to ``os.environ`` (values already set win) and return it.

    Call before ``ray.init`` when starting a Ray for serving yourself; ``deploy`` does this
    when it starts the local Ray."""
    for k, v in SERVE_ENV.items():
        os.environ.setdefault(k, v)
    return {k: os.environ[k] for k in SERVE_ENV}


def _ensure_ray(address: str | None, num_cpus: int | None = None) -> None:
    import ray

    if ray.is_initialized():
        return
    if address in (None, "", "local"):
        serve_env()
    kwargs: dict[str, Any] = {"ignore_reinit_error": True, "log_to_driver": False}
    if address not in (None, "", "local"):
        kwargs["address"] = address
    elif num_cpus is not None:
        kwargs["num_cpus"] = num_cpus
    ray.init(**kwargs)


def _ensure_serve(host: str, port: int) -> None:
    from ray import serve

    # Serve's HTTP proxy is started once per cluster; later deploys reuse it (and its port).
    # Access logs off: Serve writes a line per request in the proxy and in the replica,
    # CPU on the request path; errors and handler tracebacks are still logged.
    serve.start(
        http_options={"host": host, "port": int(port)}, logging_config={"enable_access_log": False}
    )


def _build_spec(
    model_or_path: Any, name: str | None, version: str | None, input_dtype: str | None
) -> dict:
    if isinstance(model_or_path, (str, os.PathLike)):
        path = os.fspath(model_or_path)
        kind = detect_kind(path)
        if kind == "handler":
            file, cls = path.rsplit(":", 1)
            if not os.path.exists(file):
                raise FileNotFoundError(f"ember serve: no such handler file: {file!r}")
            with open(file, encoding="utf-8") as f:
                source = f.read()
            spec = {
                "kind": kind,
                "handler_source": source,
                "handler_file": os.path.abspath(file),
                "handler_class": cls,
                "model_dir": os.path.dirname(os.path.abspath(file)),
            }
            default_name, ver = cls.lower(), digest(source.encode())
        else:
            with open(path, "rb") as f:
                data = f.read()
            spec = {
                "kind": kind,
                "artifact": data,
                "model_dir": os.path.dirname(os.path.abspath(path)),
            }
            default_name = os.path.splitext(os.path.basename(path))[0]
            ver = digest(data)
    else:
        import ember

        obj = model_or_path
        if isinstance(obj, ember.export.ExportedProgram):
            import io

            buf = io.BytesIO()
            ember.export.save(obj, buf)
            spec = {"kind": "export", "artifact": buf.getvalue()}
            ver = digest(spec["artifact"])
        elif isinstance(obj, ember.nn.Module):
            spec = {"kind": "module", "model_obj": obj}
            ver = "module"
        else:
            raise TypeError(
                f"ember.serve.deploy expects a path, an ExportedProgram or an "
                f"ember.nn.Module, got {type(obj).__name__}"
            )
        default_name = type(obj).__name__.lower()
    name = name or re.sub(r"[^A-Za-z0-9_.-]", "-", default_name)
    if not _NAME.match(name):
        raise ValueError(
            f"ember serve: invalid name {name!r} (letters, digits, '_', '.', '-'; "
            "at most 64 characters)"
        )
    spec.update(name=name, version=version or ver, input_dtype=input_dtype)
    return spec


def _check_autoscaling(cfg: Any) -> dict:
    """Ray Serve's own validation of ``autoscaling_config``, with errors naming the field; Ray
    ignores unknown keys, so a misspelt delay would silently keep its default: reject them."""
    import difflib

    from ray.serve.config import AutoscalingConfig

    if not isinstance(cfg, dict):
        raise TypeError(f"autoscaling_config must be a dict, got {type(cfg).__name__}")
    fields = set(AutoscalingConfig.model_fields)
    for key in cfg:
        if key not in fields:
            near = difflib.get_close_matches(str(key), sorted(fields), n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ValueError(f"autoscaling_config: unknown key {key!r}{hint}")
    try:
        AutoscalingConfig(**cfg)
    except ValueError as e:  # pydantic's ValidationError
        errs = getattr(e, "errors", lambda: [])()
        if errs:
            err = errs[0]
            where = ".".join(str(p) for p in err.get("loc", ())) or "value"
            raise ValueError(
                f"autoscaling_config.{where}: {err.get('msg')} (got {err.get('input')!r})"
            ) from None
        raise ValueError(f"autoscaling_config: {e}") from None
    return dict(cfg)


def _application(
    model_or_path: Any,
    name: str | None = None,
    *,
    route_prefix: str | None = None,
    num_replicas: int | str | None = 1,
    autoscaling_config: dict | None = None,
    max_batch_size: int = 32,
    batch_wait_timeout_s: float = 0.005,
    max_ongoing_requests: int | None = None,
    ray_actor_options: dict | None = None,
    version: str | None = None,
    device: str = "cpu",
    input_dtype: str | None = None,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    pad_sequences: bool = False,
):
    """Validate deploy's arguments and bind the Serve application: ``(app, name, prefix)``."""
    if max_batch_size < 1:
        raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
    if batch_wait_timeout_s < 0:
        raise ValueError(f"batch_wait_timeout_s must be >= 0, got {batch_wait_timeout_s}")
    if max_request_bytes < 1:
        raise ValueError(f"max_request_bytes must be >= 1, got {max_request_bytes}")
    if device not in ("cpu", "cuda") and not str(device).startswith("cuda:"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    if route_prefix is not None and not route_prefix.startswith("/"):
        raise ValueError(f"route_prefix must start with '/', got {route_prefix!r}")
    if autoscaling_config is not None:
        autoscaling_config = _check_autoscaling(autoscaling_config)
    spec = _build_spec(model_or_path, name, version, input_dtype)
    spec.update(
        device=device,
        max_batch_size=max_batch_size,
        batch_wait_ms=batch_wait_timeout_s * 1000.0,
        max_request_bytes=max_request_bytes,
        pad_sequences=bool(pad_sequences),
    )
    from ._deployment import EmberModel  # imports Ray Serve: only once the arguments are good

    actor_opts = dict(ray_actor_options or {})
    if str(device).startswith("cuda"):
        actor_opts.setdefault("num_gpus", 1)
    actor_opts.setdefault("num_cpus", 1)
    # Serve queues at most max_ongoing_requests per replica: leave room for full batches.
    opts: dict[str, Any] = {
        "name": spec["name"],
        "ray_actor_options": actor_opts,
        "logging_config": {"enable_access_log": False},
        "max_ongoing_requests": max_ongoing_requests or max(2 * max_batch_size, 8),
    }
    if autoscaling_config is not None:
        opts["autoscaling_config"] = autoscaling_config
    else:
        opts["num_replicas"] = num_replicas
    return (EmberModel.options(**opts).bind(spec), spec["name"], route_prefix or f"/{spec['name']}")


def deploy(
    model_or_path: Any,
    name: str | None = None,
    *,
    route_prefix: str | None = None,
    num_replicas: int | str | None = 1,
    autoscaling_config: dict | None = None,
    max_batch_size: int = 32,
    batch_wait_timeout_s: float = 0.005,
    max_ongoing_requests: int | None = None,
    ray_actor_options: dict | None = None,
    version: str | None = None,
    device: str = "cpu",
    input_dtype: str | None = None,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    pad_sequences: bool = False,
    host: str = "127.0.0.1",
    port: int = 8000,
    address: str | None = None,
):
    """Deploy a model behind ``http://host:port/<name>/predict`` and return its handle.

    ``model_or_path`` is an ``ember.export.save`` / ``ember.jit.save`` file, an ``.onnx``
    file, a handler ``"file.py:ClassName"``, an ExportedProgram or an ember Module.
    Redeploying a name rolls its replicas over to the new artifact (Ray Serve's rolling
    update); ``version`` defaults to the artifact's content hash. Requests are batched
    server-side up to ``max_batch_size`` (waiting at most ``batch_wait_timeout_s``). Starts
    a local Ray unless one is initialized or ``address`` names a cluster; Serve's HTTP proxy
    binds ``host:port`` once per cluster. ``pad_sequences=True`` lets requests that differ
    only in dim 1 share a forward pass, right-padded with zeros (right for causal models,
    whose outputs at real positions do not see later ones). Returns the ``DeploymentHandle``
    (``handle.infer.remote(inputs).result()``).
    """
    from ray import serve

    app, name, prefix = _application(
        model_or_path,
        name,
        route_prefix=route_prefix,
        num_replicas=num_replicas,
        autoscaling_config=autoscaling_config,
        max_batch_size=max_batch_size,
        batch_wait_timeout_s=batch_wait_timeout_s,
        max_ongoing_requests=max_ongoing_requests,
        ray_actor_options=ray_actor_options,
        version=version,
        device=device,
        input_dtype=input_dtype,
        max_request_bytes=max_request_bytes,
        pad_sequences=pad_sequences,
    )
    _ensure_ray(address)
    _ensure_serve(host, port)
    return serve.run(app, name=name, route_prefix=prefix, blocking=False)


def deploy_many(
    targets: list[dict], *, host: str = "127.0.0.1", port: int = 8000, address: str | None = None
) -> list:
    """Deploy several models at once (their replicas start in parallel). Each target is a
    dict of :func:`deploy`'s arguments with the model under ``"model"``."""
    from ray import serve

    runs = []
    for t in targets:
        t = dict(t)
        if "model" not in t:
            raise ValueError("deploy_many: each target needs a 'model' entry")
        app, name, prefix = _application(t.pop("model"), **t)
        runs.append(serve.RunTarget(target=app, name=name, route_prefix=prefix))
    _ensure_ray(address)
    _ensure_serve(host, port)
    return serve.run_many(runs, blocking=False)


def predict(name: str, inputs: Any) -> dict:
    """Run ``inputs`` (NumPy array, nested list or b64 object) through deployment ``name``
    via its handle; returns ``{"outputs", "model", "version", "batch_size"}``."""
    from ray import serve

    try:
        handle = serve.get_app_handle(name)
    except Exception as e:  # Ray raises RayServeException for an unknown application
        raise KeyError(f"ember serve: no deployment named {name!r} ({e})") from None
    return handle.infer.remote(inputs).result()


def status() -> dict:
    """``{app: {"status", "deployments": {name: {"status", "status_trigger", "replicas"}}}}``;
    ``replicas`` counts replicas by state (``{"RUNNING": 2, "STOPPING": 1}``)."""
    from ray import serve

    out = {}
    for app_name, st in serve.status().applications.items():
        deps = {
            d: {
                "status": str(getattr(ds.status, "value", ds.status)),
                # how it got there: UPSCALE_COMPLETED / DOWNSCALE_COMPLETED / AUTOSCALING...
                "status_trigger": str(getattr(ds.status_trigger, "value", ds.status_trigger)),
                "replicas": {str(getattr(k, "value", k)): n for k, n in ds.replica_states.items()},
            }
            for d, ds in st.deployments.items()
        }
        out[app_name] = {"status": str(getattr(st.status, "value", st.status)), "deployments": deps}
    return out


def shutdown(name: str | None = None) -> None:
    """Delete deployment ``name``, or stop Ray Serve altogether when ``name`` is None."""
    from ray import serve

    if name is None:
        serve.shutdown()
    else:
        serve.delete(name)
