"""Starting or joining Ray: an embedded local instance by default, or an existing cluster."""

from __future__ import annotations

import logging
import os

_started_here = False


class RayStartError(RuntimeError):
    """Ray could not be started here or joined at an address; the message says which and why."""


class _DropOptOutNotice(logging.Filter):
    """Drops Ray's notice that token authentication is on and how to opt out of it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "opt out" not in record.getMessage()


def _quiet_auth_notice() -> None:
    # A new local Ray turns token authentication on by default (ember keeps it on) and warns
    # about the opt-out on every start, before the job's own output. Only that notice is dropped.
    log = logging.getLogger("ray._private.authentication.authentication_token_setup")
    if not any(isinstance(f, _DropOptOutNotice) for f in log.filters):
        log.addFilter(_DropOptOutNotice())


def keep_auth_notice() -> None:
    """Undo :func:`_quiet_auth_notice` (a RayOutput routes the notice to the run's log)."""
    log = logging.getLogger("ray._private.authentication.authentication_token_setup")
    for f in [f for f in log.filters if isinstance(f, _DropOptOutNotice)]:
        log.removeFilter(f)


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
    kwargs = dict(
        include_dashboard=False, configure_logging=True, logging_level="warning", log_to_driver=True
    )
    if runtime_env:  # the job's own (e.g. a working_dir uploaded to every node)
        kwargs["runtime_env"] = runtime_env
    if address:
        try:
            ray.init(address=address, **kwargs)
        except Exception as e:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, ...
            raise RayStartError(f"could not join the Ray cluster at {address}: {e}") from e
        return False
    need = 0
    if scaling is not None:
        need = getattr(scaling, "max_workers", scaling.num_workers) * scaling.bundle().get("CPU", 1)
    from .ray_output import routing

    if not routing():  # else the notice goes to the run's log (ray_output.RayOutput)
        _quiet_auth_notice()
    # Ray gives its raylet a fixed 30 s to register; a heavily loaded machine can miss that once,
    # so a failed start is cleaned up and tried once more before it is reported.
    for attempt in (1, 2):
        try:
            ray.init(num_cpus=max(os.cpu_count() or 1, int(need) + 1), **kwargs)
            break
        except Exception as e:  # noqa: BLE001 - Ray raises a bare Exception on a start timeout
            ray.shutdown()
            if attempt == 2:
                raise RayStartError(
                    f"could not start a local Ray instance: {e} (start one with `ray start "
                    f"--head` and pass --address auto, or retry when the machine is less "
                    f"loaded)"
                ) from e
    _started_here = True
    return True


def shutdown_if_started() -> None:
    """Stop the local Ray instance if (and only if) ember started it."""
    global _started_here
    import ray

    if _started_here and ray.is_initialized():
        ray.shutdown()
    _started_here = False
