"""``--verbose`` and ``--log-dir``: where Ray's own output goes for a CLI command.

By default Ray's notices (the token-authentication warning on every start, ``(raylet)`` and
``(autoscaler)`` lines, Ray's log lines relayed from workers) go only to ``LOG_DIR/ray.log``;
``--verbose`` (or ``EMBER_VERBOSE=1``) also shows them on the terminal. See
``ember.distributed.train._internal.ray_output``.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
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


# A line as a Ray driver prints what its log relay got: "(raylet) ...", "(autoscaler +3s) ...",
# "(pid=123) ...", "(Actor pid=123, ip=10.0.0.2) ...", the prefix in colour unless
# RAY_COLOR_PREFIX=0. A submitted job's log holds such lines when its script runs ray.init.
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_RELAYED = re.compile(r"^\((?P<who>[^()]*)\) ?(?P<rest>.*)$", re.S)
_SYSTEM = re.compile(
    r"^(?:raylet|autoscaler|gcs_server|monitor|log_monitor|dashboard\w*|runtime_env\w*)"
    r"(?: \+\S+)?(?:, ip=\S+)?$"
)


def is_ray_job_line(line: str) -> bool:
    """True for Ray's own line in a job's output: one in Ray's log formats, or one that a
    Ray driver relayed from Ray's system processes or from Ray's code in a worker. What the
    job printed (relayed from its workers or not) is False."""
    from ember.distributed.train._internal.ray_output import is_ray_line

    plain = _ANSI.sub("", line)
    m = _RELAYED.match(plain)
    if m:
        if _SYSTEM.match(m.group("who")):
            return True
        if "pid=" in m.group("who"):
            return is_ray_line(m.group("rest"))
    return is_ray_line(plain)


class JobOutput:
    """A job's output on its way to the terminal: Ray's lines (:func:`is_ray_job_line`) go to
    ``ray_out``'s log file and, only when verbose, on to ``sink``; the job's own lines always
    to ``sink``. Text may come in chunks that split lines: a partial last line waits for the
    rest (``flush()`` passes it on at the end)."""

    def __init__(self, ray_out, sink=None):
        self.ray_out = ray_out
        self.sink = sink
        self._partial = ""

    def write(self, text: str) -> None:
        text = self._partial + text
        lines = text.split("\n")
        self._partial = lines.pop()
        self._emit([line + "\n" for line in lines])

    def flush(self) -> None:
        if self._partial:
            rest, self._partial = self._partial, ""
            self._emit([rest])
        (self.sink or sys.stdout).flush()

    def _emit(self, lines: list[str]) -> None:
        shown = []
        for line in lines:
            if is_ray_job_line(line.rstrip("\n")):
                self.ray_out.write(line)
                if not self.ray_out.verbose:
                    continue
            shown.append(line)
        if shown:
            sink = self.sink or sys.stdout  # looked up late: tests and redirections swap it
            sink.write("".join(shown))
            sink.flush()
