"""``vmap`` over a custom op: its ``register_vmap`` rule, else once per sample, stacked.

A custom op is opaque (often a NumPy or PIL kernel), so there is no batching rule to derive;
like torch's fallback for operators without one, the batch is looped in Python. Correct for
any op whose kernel is per-sample; its cost is one kernel call per sample.
"""

from __future__ import annotations

from typing import Any

__all__ = ["loop_over_batch"]


def loop_over_batch(op, values: list) -> Any:
    import ember
    from ember.func import _vmap_tensor as vt

    if op.schema.mutated_args:
        raise RuntimeError(
            f"vmap: {op.qualname} mutates its inputs; vmap over a mutating custom op is not "
            "supported (make it functional, or call it outside vmap)"
        )
    all_levels = []
    for v in values:
        if isinstance(v, (list, tuple)):
            all_levels += [vt.levels_of(e) for e in v]
        else:
            all_levels.append(vt.levels_of(v))
    target = vt.merge_levels(*all_levels)
    sizes = tuple(vt.level_size(lv) for lv in target)
    n = 1
    for s in sizes:
        n *= s

    def flat(t):  # physical, every target level present, batch dims flattened into one
        if not isinstance(t, ember.Tensor):
            return t
        lv = vt.levels_of(t)
        with vt.unwrapped(t):
            p = vt.align(t, lv, target, expand=True)
            return p.reshape((n,) + tuple(p.shape[len(target) :]))

    flats = [[flat(e) for e in v] if isinstance(v, (list, tuple)) else flat(v) for v in values]
    if op.vmap_rule is not None:
        return _run_rule(op, values, flats, n, sizes, target)

    def sample(v, i):
        if isinstance(v, list):
            return [sample(e, i) for e in v]
        return v[i] if isinstance(v, ember.Tensor) else v

    outs = [op.call(tuple(sample(v, i) for v in flats), {}) for i in range(n)]
    first = outs[0]

    def stack(items):
        t = ember.stack(items)
        return vt.wrap(t.reshape(sizes + tuple(t.shape[1:])), target)

    if isinstance(first, tuple):
        return tuple(stack([o[k] for o in outs]) for k in range(len(first)))
    return stack(outs)


class VmapInfo:
    """What a ``register_vmap`` rule learns about the vmap: ``batch_size``, ``randomness``."""

    def __init__(self, batch_size: int, randomness: str) -> None:
        self.batch_size, self.randomness = batch_size, randomness


def _run_rule(op, values, flats, n, sizes, target) -> Any:
    """Every vmap level is flattened into dim 0 of size ``n``: the rule sees ``in_dims`` 0
    for batched tensors and None for the rest, and returns ``(output, out_dims)``."""
    import ember
    from ember.func import _vmap_tensor as vt

    def batched(v):
        if isinstance(v, (list, tuple)):
            return any(vt.levels_of(e) for e in v)
        return bool(vt.levels_of(v))

    in_dims = tuple(0 if batched(v) else None for v in values)
    args = [f if d == 0 else v for f, v, d in zip(flats, values, in_dims, strict=True)]
    info = VmapInfo(n, vt.level_randomness(target[-1]))
    result = op.vmap_rule(info, in_dims, *args)
    if not (isinstance(result, tuple) and len(result) == 2):
        raise RuntimeError(
            f"{op.qualname}: the register_vmap rule must return (output, out_dims), got "
            f"{type(result).__name__}"
        )
    out, out_dims = result

    def place(o, d):
        if not isinstance(o, ember.Tensor):
            return o
        if d is None:
            o = o.unsqueeze(0).expand((n,) + tuple(o.shape))
        elif d != 0:
            o = o.movedim(d, 0)
        return vt.wrap(o.reshape(sizes + tuple(o.shape[1:])), target)

    if isinstance(out, tuple):
        dims = out_dims if isinstance(out_dims, tuple) else (out_dims,) * len(out)
        return tuple(place(o, d) for o, d in zip(out, dims, strict=True))
    return place(out, out_dims)
