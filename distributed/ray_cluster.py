"""Starting or joining Ray: an embedded local instance by default, or an existing cluster."""

from __future__ import annotations

import os

_started_here = False


def ensure_ray(address: str | None = None, scaling=None, runtime_env: dict | None = None) -> bool:
    """Make sure Ray is initialised; return True when this call started it.

    With no address (and no RAY_ADDRESS), a local Ray is started with enough logical CPUs for
    the requested workers, so that N single-CPU workers fit even on a smaller machine (they then
    share the cores). An existing instance is reused as it is and never stopped by ember.
    """
    global _started_here
    import ray

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS")
    kwargs = dict(include_dashboard=False, configure_logging=True, logging_level="warning",
                  log_to_driver=True)
    if runtime_env:  # the job's own (e.g. a working_dir uploaded to every node)
        kwargs["runtime_env"] = runtime_env
    if address:
        ray.init(address=address, **kwargs)
        return False
    need = 0
    if scaling is not None:
        need = scaling.num_workers * scaling.bundle().get("CPU", 1)
    ray.init(num_cpus=max(os.cpu_count() or 1, int(need) + 1), **kwargs)
    _started_here = True
    return True


def shutdown_if_started() -> None:
    """Stop the local Ray instance if (and only if) ember started it."""
    global _started_here
    import ray

    if _started_here and ray.is_initialized():
        ray.shutdown()
    _started_here = False
