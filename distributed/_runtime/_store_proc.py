"""The store service in a process of its own (issue #28: a flood of calls to the store must
not take rank 0's training thread's GIL).

One helper process per parent process, started at the first store and kept for the parent's
lifetime, hosts every store that parent serves (init/destroy cycles in one process pay the
start-up once). It imports only gRPC, protobuf and the store's own modules: it installs bare
package stubs for ``ember``, ``ember.protos``, ``ember.distributed`` and
``ember.distributed._runtime`` pointing at their directories, so none of the packages'
``__init__`` (the tensor library) runs. Commands come as lines on its stdin (the job token
travels there, never on a command line that ``ps`` shows):

    start HOST PORT WORLD_SIZE TOKEN   ->  ok ID BOUND_PORT | err MESSAGE
    stop ID                            ->  stopped ID

The helper's ``ember.distributed`` log records (refused calls) come back as ``log LEVEL
MESSAGE`` lines, which the parent re-emits on its own logger: they reach the rank's handlers
as before. At end of file on stdin (the parent exited or was killed) it stops every store and
exits: a SIGKILLed rank 0 leaves no store behind.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":  # run as a script: its folder holds _socket.py, which must not
    sys.path.pop(0)  # shadow the standard library's _socket

import os
import queue
import subprocess
import threading
import types

__all__ = ["in_own_process", "spawn"]

_PACKAGES = ("ember", "ember.protos", "ember.distributed", "ember.distributed._runtime")


def in_own_process() -> bool:
    """Whether a master store runs in the helper process (``EMBER_STORE_PROCESS``, default
    on; ``0`` keeps it in the rank's own process)."""
    return os.environ.get("EMBER_STORE_PROCESS", "1").strip().lower() not in ("0", "false", "no")


class _Helper:
    """The parent's side of the helper process: one command at a time."""

    def __init__(self) -> None:
        import ember
        import ember.distributed
        import ember.distributed._runtime
        import ember.protos

        mods = (ember, ember.protos, ember.distributed, ember.distributed._runtime)
        dirs = [list(m.__path__)[0] for m in mods]
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), *dirs],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,  # the store's log lines (refusals) go where the rank's go
            text=True,
        )
        self.pid = os.getpid()
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True, name="ember-store-helper").start()

    def _read(self) -> None:
        import logging

        logger = logging.getLogger("ember.distributed")
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            if line.startswith("log "):
                _, level, message = line.split(" ", 2)
                logger.log(int(level), message.replace("\\n", "\n"))
            else:
                self.lines.put(line)
        self.lines.put(None)  # the helper exited

    def alive(self) -> bool:
        return self.proc.poll() is None and self.pid == os.getpid()

    def call(self, command: str, timeout: float) -> str:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        try:
            reply = self.lines.get(timeout=timeout)
        except queue.Empty:
            reply = None
        if reply is None:
            raise RuntimeError(
                f"the store helper process did not answer within {timeout:g} s "
                f"(exit code {self.proc.poll()}; its errors are on this process's stderr)"
            )
        return reply


_lock = threading.Lock()
_helper: _Helper | None = None


class StoreHandle:
    """One store served by the helper; ``stop`` ends it and frees its port."""

    def __init__(self, helper: _Helper, sid: str) -> None:
        self.helper, self.sid = helper, sid

    def stop(self, grace=None, timeout: float = 10.0) -> None:
        with _lock:
            if self.sid is not None and self.helper.alive():
                self.helper.call(f"stop {self.sid}", timeout)
            self.sid = None


def spawn(host: str, port: int, token: str, world_size: int | None, timeout: float = 60.0):
    """Serve a store in the helper process; returns ``(StoreHandle, bound_port)``."""
    from ..errors import DistNetworkError

    global _helper
    with _lock:
        if _helper is None or not _helper.alive():
            _helper = _Helper()
        if "\n" in token:
            raise ValueError("the job token must not contain a newline")
        command = f"start {host} {int(port)} {int(world_size or 0)} {token}"
        try:
            reply = _helper.call(command, timeout)
        except (OSError, RuntimeError) as e:
            raise DistNetworkError(f"the store could not start: {e}") from None
    kind, _, rest = reply.partition(" ")
    if kind != "ok":
        raise DistNetworkError(rest)
    sid, bound = rest.split()
    return StoreHandle(_helper, sid), int(bound)


def _main(dirs: list[str]) -> None:
    for name, path in zip(_PACKAGES, dirs):
        mod = types.ModuleType(name)
        mod.__path__ = [path]
        sys.modules[name] = mod
    import logging

    from ember.distributed._runtime import _auth
    from ember.distributed._runtime._store_server import serve

    out = threading.Lock()  # replies and log lines share stdout, a line at a time

    def emit(text: str) -> None:
        with out:
            print(text, flush=True)

    class Forward(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            message = record.getMessage().replace("\n", "\\n")
            emit(f"log {record.levelno} {message}")

    logger = logging.getLogger("ember.distributed")
    logger.addHandler(Forward())
    logger.propagate = False
    servers: dict[str, object] = {}
    for n, line in enumerate(sys.stdin):
        cmd, *args = line.rstrip("\n").split(" ", 4)  # the token, last, may hold spaces
        if cmd == "start":
            host, port, world, token = args
            _auth.log_refusal = _auth.new_refusal_log()  # each job's store logs its first N
            try:
                server, bound = serve(host, int(port), token, int(world) or None)
            except Exception as e:  # the parent raises this message
                emit(f"err {e}")
                continue
            servers[str(n)] = server
            emit(f"ok {n} {bound}")
        elif cmd == "stop":
            server = servers.pop(args[0], None)
            if server is not None:
                server.stop(None)
            emit(f"stopped {args[0]}")
    for server in servers.values():  # end of file: the parent is gone
        server.stop(None)


if __name__ == "__main__":
    _main(sys.argv[1:])
