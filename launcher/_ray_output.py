"""``--verbose`` and ``--log-dir``: where Ray's own output goes for a CLI command.

By default Ray's notices (the token-authentication warning on every start, ``(raylet)`` and
``(autoscaler)`` lines, Ray's log lines relayed from workers) go only to ``LOG_DIR/ray.log``;
``--verbose`` (or ``EMBER_VERBOSE=1``) also shows them on the terminal. See
``ember.distributed.train._internal.ray_output``.
"""

from __future__ import annotations

import contextlib
import os
import time


def default_log_dir(command: str) -> str:
    """``~/ember_results/<command>_<time>/logs``, beside the Trainer's run directories."""
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    return os.path.join(os.path.expanduser("~"), "ember_results", f"{command}_{stamp}", "logs")


def add_verbose_args(p, command: str) -> None:
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also show Ray's own log lines (startup notices, raylet and autoscaler messages) "
        "on the terminal; they always go to LOG_DIR/ray.log. EMBER_VERBOSE=1 does the same",
    )
    p.add_argument(
        "--log-dir",
        metavar="LOG_DIR",
        help=f"where Ray's own log lines go (default ~/ember_results/{command}_<time>/logs)",
    )


@contextlib.contextmanager
def routed_ray_output(args, command: str):
    """Ray's output routed for the command's lifetime; yields the RayOutput (call its
    ``relay_installed()`` once Ray is initialised)."""
    from ember.distributed.train._internal.ray_output import RayOutput

    log_dir = args.log_dir or default_log_dir(command)
    out = RayOutput(os.path.join(log_dir, "ray.log"), verbose=True if args.verbose else None)
    out.install()
    try:
        yield out
    finally:
        out.close()
