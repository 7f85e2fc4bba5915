"""The worker side of ``ember launch`` (run the script, forward its output) and the driver side
(print it, prefixed by rank).

Output travels in pieces that end at a newline or at a carriage return, so that a progress bar
(which redraws itself after ``\\r``) moves on the driver's terminal while it runs. Where the
driver's output is not a terminal, only finished lines are written.
"""

from __future__ import annotations

import codecs
import os
import re
import sys

_PIECE = re.compile(r"[^\r\n]*(?:\r\n|\n|\r)")


def split_pieces(buffer: str) -> tuple[list[str], str]:
    """Complete pieces (each ending with ``\\n``, ``\\r\\n`` or ``\\r``) and the rest."""
    pieces = _PIECE.findall(buffer)
    used = sum(map(len, pieces))
    if pieces and pieces[-1].endswith("\r") and used == len(buffer):
        # a "\r" at the very end may be the first half of "\r\n": wait for the next byte
        return pieces[:-1], pieces[-1]
    return pieces, buffer[used:]


def run_child(cmd, cwd, extra_env, queue) -> int:
    """Inside a worker actor: run the script as a child process and stream its output."""
    import signal
    import subprocess
    import threading

    env = dict(os.environ)
    env.update(extra_env)
    rank = int(env.get("RANK", "0"))
    if env.get("EMBER_PROGRESS") == "rank0":  # the driver has a terminal: rank 0 shows bars
        env["EMBER_PROGRESS"] = "1" if rank == 0 else "0"
    if cwd is not None and not os.path.isdir(cwd):
        import ray

        raise FileNotFoundError(
            f"working directory {cwd} does not exist on node {ray.util.get_node_ip_address()}; "
            "pass --working-dir to upload it to every node"
        )

    def die_with_parent():  # the child must not outlive a killed actor
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)

    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=0,
        preexec_fn=die_with_parent if sys.platform == "linux" else None,
    )

    def forward(pipe, stream):
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        rest = ""
        while True:
            chunk = os.read(pipe.fileno(), 65536)
            rest += decoder.decode(chunk, final=not chunk)
            if not chunk:
                break
            pieces, rest = split_pieces(rest)
            if pieces:
                queue.put_nowait_batch([(rank, stream, p) for p in pieces])
        if rest:
            queue.put((rank, stream, rest + "\n"))

    threads = [
        threading.Thread(target=forward, args=(proc.stdout, "out"), daemon=True),
        threading.Thread(target=forward, args=(proc.stderr, "err"), daemon=True),
    ]
    for t in threads:
        t.start()
    code = proc.wait()
    for t in threads:
        t.join(timeout=5)
    return code


class Printer:
    """Writes workers' output pieces to the driver's stdout/stderr, prefixed by rank."""

    def __init__(self, status=None):
        self._open = None  # (rank, stream) of a bar state written without a newline
        self.status = status  # a LaunchStatus table kept under the output, or None

    def drain(self, queue) -> None:
        while not queue.empty():
            for rank, stream, piece in queue.get_nowait_batch(queue.qsize()):
                self.write(rank, stream, piece)

    def write(self, rank: int, stream: str, piece: str) -> None:
        out = sys.stderr if stream == "err" else sys.stdout
        text = piece.rstrip("\r\n")
        if self.status is not None:
            # under the live table only whole lines are written (it shows the progress)
            if piece.endswith("\n"):
                self.status.line(rank, f"[rank{rank}]: {text}", out)
            return
        if self._open is not None and self._open != (rank, stream):
            # another source speaks: leave the bar's line as it is
            other = sys.stderr if self._open[1] == "err" else sys.stdout
            other.write("\n")
            other.flush()
            self._open = None
        lead = "\r" if self._open else ""
        if piece.endswith("\n"):
            self._open = None
            out.write(f"{lead}[rank{rank}]: {text}\n")
        elif text and _isatty(out):  # a progress bar's intermediate state
            self._open = (rank, stream)
            out.write(f"{lead}[rank{rank}]: {text}")
        else:
            return
        out.flush()


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):
        return False
