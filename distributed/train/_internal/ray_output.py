"""Ray's own output, kept out of a job's: written to the run's log file, shown when verbose.

Ray speaks on the driver's terminal in three ways, none of them the job's:

- its Python logger (``ray`` and children: the token-authentication notice on every start,
  "Started a local Ray instance", Tune's and Train's notes);
- lines its system processes send to the driver (``(raylet) ...``, ``(autoscaler) ...``);
- lines in its logger's format (``2026-01-01 12:00:00,123  WARNING file.py:85 -- ...``) that
  Ray code inside a worker writes to the worker's stderr, which Ray relays to the driver.

:class:`RayOutput` sends all three to ``log_path`` and, unless verbose, nowhere else; errors
(``ERROR`` and up) from the logger still reach the terminal. The job's own lines (what workers
print) pass unchanged. ``EMBER_VERBOSE=1`` (or ``--verbose`` on the command line) shows Ray's
lines as Ray would.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading

# Ray's logger format, as a worker's relayed stderr line shows it
_RAY_LOG_LINE = re.compile(
    r"^\s*(?:\x1b\[[0-9;]*m)?(?:"
    # Ray's Python logger: 2026-01-01 12:00:00,123\tWARNING worker.py:85 -- ...
    r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+\s+(?:DEBUG|INFO|WARNING|ERROR|CRITICAL)\s+\S+\.py:\d+ -- "
    # Ray's C++ core: [2026-01-01 12:00:00,123 W 123 456] core_worker.cc:85: ...
    r"|\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [DIWEF] \d+ \d+\] \S+\.cc:\d+"
    # abseil's raw log of the C++ core: [mutex.cc : 452] RAW: ...
    r"|\[\S+\.cc ?: ?\d+\] RAW: "
    r")"
)
_FORMAT = "%(asctime)s\t%(levelname)s %(filename)s:%(lineno)s -- %(message)s"  # Ray's own
_HANDLER = "ray_print_logs"  # the name Ray's driver registers its relay under
RAY_LOG = os.path.join("logs", "ray.log")  # in a run directory
_active: list[RayOutput] = []  # installed, not yet closed


def routing() -> bool:
    """True while a :class:`RayOutput` is installed (``ensure_ray`` then keeps Ray's notices)."""
    return bool(_active)


def verbose_from_env() -> bool:
    """``EMBER_VERBOSE`` set to anything but ``""``/``0``."""
    return os.environ.get("EMBER_VERBOSE", "") not in ("", "0")


def is_ray_line(line: str) -> bool:
    """True for a line in one of Ray's log formats (what Ray's code logs inside a worker)."""
    return bool(_RAY_LOG_LINE.match(line))


class _Terminal(logging.Filter):
    """On Ray's terminal handlers: let a record through only when verbose, or an error."""

    def __init__(self, owner: RayOutput):
        super().__init__()
        self.owner = owner

    def filter(self, record: logging.LogRecord) -> bool:
        return self.owner.verbose or record.levelno >= logging.ERROR


class RayOutput:
    """Route Ray's output: ``install()`` before ``ray.init`` (the notices come during it),
    ``relay_installed()`` after it (the driver's log relay exists from then), ``close()`` at
    the end. ``log_path``: the file (its directory is made when the first line arrives);
    ``verbose``: also show Ray's lines on the terminal (default: ``EMBER_VERBOSE``)."""

    def __init__(self, log_path: str, verbose: bool | None = None):
        self.log_path = os.path.abspath(log_path)
        self.verbose = verbose_from_env() if verbose is None else bool(verbose)
        self.lines = 0  # how many of Ray's lines went to the file
        self._lock = threading.Lock()
        self._file = None
        self._filter = _Terminal(self)
        self._file_handler: logging.Handler | None = None
        self._relay = None  # Ray's own relay function, which ours replaced

    # ---- the log file -------------------------------------------------------------------
    def write(self, text: str) -> None:
        """Append lines to the log file (opened on first use)."""
        if not text:
            return
        with self._lock:
            if self._file is None:
                os.makedirs(os.path.dirname(self.log_path), exist_ok=True)
                self._file = open(self.log_path, "a", buffering=1)
            self._file.write(text if text.endswith("\n") else text + "\n")
            self.lines += text.count("\n") or 1

    # ---- Ray's Python logger ------------------------------------------------------------
    def install(self) -> RayOutput:
        import ray  # noqa: F401 - importing Ray sets its logger's terminal handler up

        from .ray_cluster import keep_auth_notice

        keep_auth_notice()  # it goes to the file like every other Ray line
        if self not in _active:
            _active.append(self)
        logger = logging.getLogger("ray")
        for h in logger.handlers:
            if _is_terminal(h) and self._filter not in h.filters:
                h.addFilter(self._filter)
        if self._file_handler is None:
            self._file_handler = _FileHandler(self)
            self._file_handler.setFormatter(logging.Formatter(_FORMAT))
            logger.addHandler(self._file_handler)
        return self

    # ---- the driver's relay of worker and system-process lines --------------------------
    def relay_installed(self) -> bool:
        """Put ours in front of Ray's relay (once ``ray.init`` made it); False without one
        (``log_to_driver=False``, or a Ray client connection)."""
        try:
            from ray._private.worker import global_worker_stdstream_dispatcher as disp
        except ImportError:
            return False
        with disp._lock:
            ray_relay = dict(disp.handlers).get(_HANDLER)
        if ray_relay is None or ray_relay == self._relay_data:
            return ray_relay is not None
        self._relay = ray_relay
        disp.remove_handler(_HANDLER)
        disp.add_handler(_HANDLER, self._relay_data)
        return True

    def _relay_data(self, data: dict) -> None:
        pid = data.get("pid")
        if isinstance(pid, str) and not pid.isdigit():  # raylet, gcs_server, autoscaler, ...
            lines = data.get("lines", [])
            if pid == "autoscaler":  # its status dumps: only the events Ray itself would show
                from ray._private.worker import filter_autoscaler_events

                lines = list(filter_autoscaler_events(lines))
            self.write("".join(f"({pid}) {line}\n" for line in lines))
            if self.verbose:
                self._relay(data)
            return
        lines = data.get("lines", [])
        ray_lines = [line for line in lines if is_ray_line(line)]
        if ray_lines:
            self.write("".join(f"(pid={pid}) {line}\n" for line in ray_lines))
            if not self.verbose:
                data = dict(data, lines=[line for line in lines if not is_ray_line(line)])
                if not data["lines"]:
                    return
        self._relay(data)

    # ---- undo ---------------------------------------------------------------------------
    def close(self) -> None:
        if self in _active:
            _active.remove(self)
        logger = logging.getLogger("ray")
        for h in logger.handlers:
            if self._filter in h.filters:
                h.removeFilter(self._filter)
        if self._file_handler is not None:
            logger.removeHandler(self._file_handler)
            self._file_handler = None
        if self._relay is not None:
            try:
                from ray._private.worker import global_worker_stdstream_dispatcher as disp

                with disp._lock:
                    ours = dict(disp.handlers).get(_HANDLER) == self._relay_data
                if ours:
                    disp.remove_handler(_HANDLER)
                    disp.add_handler(_HANDLER, self._relay)
            except ImportError:
                pass
            self._relay = None
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


class _FileHandler(logging.Handler):
    def __init__(self, owner: RayOutput):
        super().__init__(logging.DEBUG)
        self.owner = owner

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.owner.write(self.format(record))
        except Exception:  # noqa: BLE001 - logging must never break the job
            self.handleError(record)


def _is_terminal(handler: logging.Handler) -> bool:
    stream = getattr(handler, "stream", None)
    return isinstance(handler, logging.StreamHandler) and (
        stream in (sys.stderr, sys.stdout, sys.__stderr__, sys.__stdout__)
        or not isinstance(handler, logging.FileHandler)
    )
