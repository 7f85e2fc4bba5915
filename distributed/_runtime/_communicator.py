"""``Communicator``: the one entry point of a process group's collectives and messages.

The public collectives (``collectives.py``, ``p2p.py``) validate their arguments, describe
the call and hand this object the arrays of their tensors as they are (NumPy or CuPy, any
layout). It picks the backend for each call:

* NCCL (``_nccl.py``) for CuPy arrays when the group's backend has it: enqueued on the
  current CUDA stream at once, in place on a flat contiguous view;
* otherwise the transport-agnostic algorithms (``_algorithms.py``) over the group's ``Comm``
  on flat host arrays (``_staging.py``; CuPy arrays are staged through host memory), run in
  issue order by the world's executor with a fingerprinted ``OpContext``; an allreduce whose
  buffer lies in the shared-memory arena takes the arena's in-place path
  (``_arena_reduce.py``), a group spread over hosts with several ranks on one of them the
  hierarchical one.

Results land in the arrays given; ``Call.done`` then runs (the public API bumps the tensors'
versions there), on this rank only where its outputs were written.
"""

from __future__ import annotations

from concurrent.futures import Future

import numpy as np

from ..work import Work
from . import _algorithms as alg
from . import _arena_reduce, _nccl
from ._staging import copy_flat, device_flat, device_inplace, on_device, staged, write


class Call:
    """One call of the public API: its name and fingerprint description (``OpContext``),
    whether it is asynchronous, the tensors its ``Work`` keeps alive, and ``done``, run once
    this rank's outputs hold the results."""

    __slots__ = ("name", "desc", "async_op", "outputs", "done")

    def __init__(self, name: str, desc: str, async_op: bool, outputs: list, done) -> None:
        self.name, self.desc, self.async_op = name, desc, async_op
        self.outputs, self.done = outputs, done


def _segments(sizes) -> list[tuple[int, int]]:
    out, start = [], 0
    for n in sizes:
        out.append((start, start + int(n)))
        start += int(n)
    return out


class Communicator:
    """The collectives of one process group, on arrays (see the module docstring)."""

    def __init__(self, pg) -> None:
        self.pg = pg
        self.world = pg.world
        self.comm = pg.comm  # collectives' channel
        self.p2p = pg.p2p  # point-to-point channel
        self.nccl = None  # the group's NCCL communicator, built on first use

    # ---- backend choice and execution ---------------------------------------------------------
    def _device(self, *arrays):
        """The group's NCCL communicator when these arrays are CuPy and the backend has
        NCCL; ``None`` to run the host algorithms."""
        cuda = [on_device(a) for a in arrays]
        if not any(cuda):
            return None
        if not all(cuda):
            raise ValueError(
                "all tensors of a collective must be on the same device type (got "
                "both CPU and CUDA tensors)"
            )
        if self.pg.backend not in ("auto", "nccl") or not _nccl.available():
            return None
        if self.nccl is None:
            self.nccl = _nccl.NcclComm(self.pg)
            self.world.nccl.append(self.nccl)  # destroyed with the world
        return self.nccl

    @staticmethod
    def _on_device(call: Call, fn):
        """Enqueue ``fn`` on the current CUDA stream now: later work on that stream (and
        copies to the host) is ordered after it, so the ``Work`` is complete at once."""
        fn()
        call.done()
        if not call.async_op:
            return None
        fut: Future = Future()
        fut.set_result(None)
        return Work(fut, call.outputs)

    def _on_host(self, call: Call, run, timeout: float | None = None):
        """Number the call now (issue order), run ``run(ctx)`` in issue order: inline when
        blocking, on the world's op thread when asynchronous."""
        ctx = self.pg.next_op(call.name, call.desc)
        if timeout is not None:
            ctx.timeout = timeout

        def job():
            run(ctx)

        if call.async_op:
            return Work(self.world.executor.submit(job), call.outputs)
        self.world.executor.run(job)
        return None

    def _scratch(self, key: str, dtype, count: int) -> np.ndarray:
        """A reusable flat host buffer (ops of a process run one at a time)."""
        dtype = np.dtype(dtype)
        nbytes = int(count) * dtype.itemsize
        return self.world.scratch(key, nbytes)[:nbytes].view(dtype)

    def _all_reduce_flat(self, ctx, flat: np.ndarray, red) -> None:
        comm = self.comm
        if comm.size > 1 and flat.nbytes > alg.SMALL_BYTES and _arena_reduce.usable(comm, flat):
            _arena_reduce.all_reduce(comm, ctx, flat, red)
        else:
            alg.all_reduce(comm, ctx, flat, red)

    # ---- reductions ---------------------------------------------------------------------------
    def all_reduce(self, call: Call, arr, red):
        nc = self._device(arr)
        if nc is not None:
            return self._on_device(
                call, lambda: device_inplace(arr, lambda a: nc.all_reduce(a, red.op))
            )
        pg = self.pg

        def run(ctx):
            flat, back = staged(arr)
            ctx.start()
            if pg.hierarchical:
                scratch = self._scratch("reduce", arr.dtype, arr.size)
                alg.hierarchical_all_reduce(self.comm, ctx, flat, red, pg.hosts, scratch)
            else:
                self._all_reduce_flat(ctx, flat, red)
            if back is not None:
                back()
            call.done()

        return self._on_host(call, run)

    def reduce(self, call: Call, arr, red, root: int):
        mine = self.pg.rank() == root
        nc = self._device(arr)
        if nc is not None:
            return self._on_device(
                call, lambda: device_inplace(arr, lambda a: nc.reduce(a, red.op, root))
            )

        def run(ctx):
            flat, back = staged(arr)
            # partial sums elsewhere
            scratch = None if mine else self._scratch("reduce", arr.dtype, arr.size)
            ctx.start()
            alg.reduce(self.comm, ctx, flat, red, root, scratch)
            if mine:
                if back is not None:
                    back()
                call.done()

        return self._on_host(call, run)

    def reduce_scatter(self, call: Call, out, inputs: list, red):
        """``out`` gets the reduction of every member's ``inputs[me]``."""

        def run(ctx):
            src = [staged(a)[0] for a in inputs]  # read only: views will do
            flat, back = staged(out)
            scratch = self._scratch("rs", out.dtype, sum(a.size for a in inputs))
            ctx.start()
            alg.reduce_scatter(self.comm, ctx, src, red, flat, scratch)
            if back is not None:
                back()
            call.done()

        return self._on_host(call, run)

    def reduce_scatter_tensor(self, call: Call, out, inp, red):
        """``inp``: the concatenation of one equal part per member; ``out`` gets part ``me``
        reduced."""
        nc = self._device(out, inp)
        if nc is not None:
            return self._on_device(
                call,
                lambda: device_inplace(
                    out, lambda o: nc.reduce_scatter(device_flat(inp), o, red.op)
                ),
            )
        n = self.pg.size()

        def run(ctx):
            src = alg.views(staged(inp)[0], _segments([out.size] * n))
            flat, back = staged(out)
            scratch = self._scratch("rs", inp.dtype, inp.size)
            ctx.start()
            alg.reduce_scatter(self.comm, ctx, src, red, flat, scratch)
            if back is not None:
                back()
            call.done()

        return self._on_host(call, run)

    # ---- broadcast and gathers ------------------------------------------------------------------
    def broadcast(self, call: Call, arr, root: int):
        nc = self._device(arr)
        if nc is not None:
            return self._on_device(
                call, lambda: device_inplace(arr, lambda a: nc.broadcast(a, root))
            )

        def run(ctx):
            flat, back = staged(arr)
            ctx.start()
            alg.broadcast(self.comm, ctx, flat, root)
            if self.pg.rank() != root:
                if back is not None:
                    back()
                call.done()

        return self._on_host(call, run)

    def all_gather(self, call: Call, outs: list, inp):
        """``outs[i]`` receives member ``i``'s ``inp``."""
        me = self.pg.rank()

        def run(ctx):
            parts = [staged(a) for a in outs]  # receive straight into the outputs
            copy_flat(inp, parts[me][0])
            ctx.start()
            alg.all_gather(self.comm, ctx, [flat for flat, _ in parts])
            for _, back in parts:
                if back is not None:
                    back()
            call.done()

        return self._on_host(call, run)

    def all_gather_into_tensor(self, call: Call, out, inp):
        """``out`` becomes the concatenation, in member order, of every member's ``inp``."""
        nc = self._device(out, inp)
        if nc is not None:
            return self._on_device(
                call, lambda: device_inplace(out, lambda o: nc.all_gather(device_flat(inp), o))
            )
        n, me = self.pg.size(), self.pg.rank()

        def run(ctx):
            flat, back = staged(out)
            parts = alg.views(flat, _segments([inp.size] * n))
            copy_flat(inp, parts[me])
            ctx.start()
            alg.all_gather(self.comm, ctx, parts)
            if back is not None:
                back()
            call.done()

        return self._on_host(call, run)

    def gather(self, call: Call, inp, outs: list | None, root: int):
        """The root's ``outs[i]`` receives member ``i``'s ``inp``."""
        mine = self.pg.rank() == root
        n = self.pg.size()

        def run(ctx):
            send = staged(inp)[0]  # sends copy out before returning: a view will do
            bufs = [np.empty_like(send) for _ in range(n)] if mine else None
            ctx.start()
            alg.gather(self.comm, ctx, send, bufs, root)
            if mine:
                for a, b in zip(outs, bufs):
                    write(a, b)
                call.done()

        return self._on_host(call, run)

    def scatter(self, call: Call, out, parts: list | None, root: int):
        """``out`` on member ``i`` receives the root's ``parts[i]``."""
        mine = self.pg.rank() == root

        def run(ctx):
            flat, back = staged(out)
            sends = [staged(a)[0] for a in parts] if mine else None
            ctx.start()
            alg.scatter(self.comm, ctx, sends, flat, root)
            if back is not None:
                back()
            call.done()

        return self._on_host(call, run)

    def all_to_all(self, call: Call, outs: list, inputs: list):
        """Member ``j``'s ``outs[i]`` receives member ``i``'s ``inputs[j]``."""

        def run(ctx):
            sends = [staged(a)[0] for a in inputs]
            recvs = [np.empty(a.size, dtype=np.dtype(a.dtype)) for a in outs]
            ctx.start()
            alg.all_to_all(self.comm, ctx, sends, recvs)
            for a, r in zip(outs, recvs):
                write(a, r)
            call.done()

        return self._on_host(call, run)

    def all_to_all_single(self, call: Call, out, inp, out_segs: list, in_segs: list):
        """``all_to_all`` on element ranges of flat ``inp`` and ``out`` (one per member)."""

        def run(ctx):
            src = staged(inp)[0]
            dst = np.empty(out.size, dtype=src.dtype)
            ctx.start()
            alg.all_to_all(
                self.comm,
                ctx,
                [src[slice(*s)] for s in in_segs],
                [dst[slice(*s)] for s in out_segs],
            )
            write(out, dst)
            call.done()

        return self._on_host(call, run)

    def barrier(self, call: Call, timeout: float | None = None):
        def run(ctx):
            ctx.start()
            alg.barrier(self.comm, ctx)

        return self._on_host(call, run, timeout)

    # ---- point-to-point (inside a job of ``p2p.py``, with its ``OpContext``) ---------------------
    def send(self, ctx, arr, peer: int, tag: int) -> None:
        """Send ``arr`` to member ``peer``; returns once ``arr`` may be modified."""
        flat, _ = staged(arr)  # sends copy out before returning: no write-back
        ctx.start()
        self.p2p.send(peer, ctx, flat, tag)

    def recv(self, ctx, arr, peer: int | None, tag: int) -> int:
        """Receive into ``arr`` from member ``peer`` (the first with a message on ``tag`` if
        ``None``); returns the member received from."""
        flat, back = staged(arr)
        ctx.start()
        if peer is None:
            me = self.pg.rank()
            peer = self.p2p.wait_any(ctx, [i for i in range(self.pg.size()) if i != me], tag)
        self.p2p.recv_into(peer, ctx, flat, tag)
        if back is not None:
            back()
        return peer
