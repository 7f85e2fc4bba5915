"""The non-reentrant half of ``ember.utils.checkpoint`` and the RNG capture both variants use.

A checkpointed region runs under a saved-tensor hook pair (``_Frame.pack`` / ``unpack``) that
keeps a small ``_Placeholder`` per saved array; the first unpack in backward reruns the region
(with the first run's RNG state) and hands the recomputed arrays out in saved order. The public
functions and ``CheckpointError`` stay in ``checkpoint.py``, which re-exports these names.
"""

from __future__ import annotations

import contextlib

from ..amp.autocast_mode import with_current_autocast
from ..autograd import enable_grad
from ..autograd.graph import saved_tensors_hooks
from ..random import default_generator
from ..tensor import Tensor


# ---- RNG capture ------------------------------------------------------------------------------
def _capture_rng():
    """Snapshot the default generator for a later replay. The CUDA generator (lazily seeded
    from the NumPy state) is dropped so the first run and the replay both seed it afresh from
    the same state: CuPy generators cannot be copied, NumPy states can."""
    state = default_generator.get_state()
    default_generator.set_state(state)  # resets the CUDA generator; same NumPy stream
    return state


@contextlib.contextmanager
def _replay_rng(state):
    """Run the recomputation from ``state``; afterwards the generator is back where it was."""
    g = default_generator
    outer = (g.get_state(), g._cp)
    g.set_state(state)
    try:
        yield
    finally:
        g.set_state(outer[0])
        g._cp = outer[1]


# ---- non-reentrant ----------------------------------------------------------------------------
class _Placeholder:
    """What a checkpointed op keeps instead of a saved array: its position and metadata."""

    __slots__ = ("frame", "index", "shape", "dtype")

    def __init__(self, frame, index, shape, dtype):
        self.frame, self.index, self.shape, self.dtype = frame, index, shape, dtype


class _Frame:
    """One checkpointed call: how to rerun it and the arrays its rerun produced."""

    def __init__(self, fn, args, kwargs, rng_state, recompute_ctx_fn, check, debug):
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.rng_state = rng_state
        self.recompute_ctx_fn = recompute_ctx_fn
        self.check, self.debug = check, debug
        self.meta: list = []  # (shape, dtype) per saved array of the first run
        self.recomputed: dict = {}

    def pack(self, t: Tensor) -> _Placeholder:
        ph = _Placeholder(self, len(self.meta), t._data.shape, t._data.dtype)
        self.meta.append((ph.shape, ph.dtype))
        return ph

    def unpack(self, ph: _Placeholder):
        if ph.index not in self.recomputed:
            self._recompute()
        # popped: each array is held only until the backward op that needs it has run
        return self.recomputed.pop(ph.index)

    def _recompute(self) -> None:
        from .checkpoint import detach_variable  # (checkpoint.py imports this module)

        got: list = []

        def pack(t):
            got.append(t._data)
            return t

        args = detach_variable(tuple(self.args))
        rng = (
            _replay_rng(self.rng_state) if self.rng_state is not None else contextlib.nullcontext()
        )
        with rng, enable_grad(), self.recompute_ctx_fn, saved_tensors_hooks(pack, lambda x: x):
            self.fn(*args, **self.kwargs)
        self._verify(got)
        self.recomputed = dict(enumerate(got))

    def _verify(self, got: list) -> None:
        if not self.check:
            return
        from .checkpoint import CheckpointError  # the public class stays in checkpoint.py

        new = [(a.shape, a.dtype) for a in got]
        if len(new) != len(self.meta):
            raise CheckpointError(
                "ember.utils.checkpoint: A different number of tensors was saved during the "
                f"original forward and recomputation.\nNumber of tensors saved during forward: "
                f"{len(self.meta)}\nNumber of tensors saved during recomputation: {len(new)}"
                + self._debug_tip(new)
            )
        bad = [(i, m, n) for i, (m, n) in enumerate(zip(self.meta, new)) if m != n]
        if bad:
            lines = "\n".join(
                f"tensor at position {i}:\nsaved metadata: "
                f"{{'shape': {tuple(m[0])}, 'dtype': {m[1]}}}\nrecomputed "
                f"metadata: {{'shape': {tuple(n[0])}, 'dtype': {n[1]}}}"
                for i, m, n in bad
            )
            raise CheckpointError(
                "ember.utils.checkpoint: Recomputed values for the following tensors have "
                "different metadata than during the forward pass.\n" + lines + self._debug_tip(new)
            )

    def _debug_tip(self, new: list) -> str:
        if not self.debug:
            return (
                "\nTo see which ops saved them, rerun with checkpoint(..., debug=True) or "
                "inside set_checkpoint_debug_enabled(True)."
            )
        first = "\n".join(f"  {i}: {tuple(s)} {d}" for i, (s, d) in enumerate(self.meta))
        second = "\n".join(f"  {i}: {tuple(s)} {d}" for i, (s, d) in enumerate(new))
        return (
            f"\nSaved during the original forward:\n{first}\nSaved during the "
            f"recomputation:\n{second}"
        )


def _checkpoint_without_reentrant(
    fn, args, kwargs, preserve_rng_state, context_fn, determinism_check, debug
):
    forward_ctx, recompute_ctx = context_fn()
    rng_state = _capture_rng() if preserve_rng_state else None
    # the recomputation in backward runs under the forward's autocast state, as torch's
    frame = _Frame(
        with_current_autocast(fn),
        args,
        kwargs,
        rng_state,
        recompute_ctx,
        determinism_check == "default",
        debug,
    )
    with forward_ctx, saved_tensors_hooks(frame.pack, frame.unpack):
        return fn(*args, **kwargs)
