"""Batching rules of random ops: dropout and random creation honour vmap's ``randomness``
("error" raises, "different" draws per sample, "same" draws once for the whole batch).
"""

from __future__ import annotations

from ..tensor import Tensor
from ._vmap_dispatch import ALWAYS, RULES
from ._vmap_tensor import _STACK, align, level_size, levels_of, merge_levels, unwrapped, wrap


def _em():
    import ember

    return ember


_RANDOM_ERROR = (
    "vmap: called random operation while in randomness error mode. Please either "
    "use the 'same' or 'different' randomness flags on vmap or perform the "
    "randomness operations outside of vmap"
)


def _random_levels() -> tuple[int, ...]:
    """The active levels over which random values differ; raises in "error" mode."""
    if any(r == "error" for _, _, r in _STACK):
        raise RuntimeError(_RANDOM_ERROR)
    return tuple(lv for lv, _, r in _STACK if r == "different")


def dropout_rule(orig, args, kwargs):
    names = ("input", "p", "training", "inplace")
    a = dict(zip(names, args))
    a.update(kwargs)
    x, p, training = a["input"], a.get("p", 0.5), a.get("training", True)
    if not training or p == 0:
        return x
    if a.get("inplace"):
        raise RuntimeError("vmap: in-place dropout is not supported; use inplace=False")
    diff = _random_levels()
    if not diff:  # "same": one mask for every sample
        ones = _em().ones(x.shape, dtype=x.dtype, device=x.device)
        return x * orig(ones, p, True)
    target = merge_levels(levels_of(x), diff)
    with unwrapped(x) as lv:
        q = align(x, lv.get(id(x), ()), target, expand=True)
        out = orig(q, p, True)
    return wrap(out, target)


def _creation(orig, args, kwargs, size_pos: int):
    diff = _random_levels()
    if not diff:
        return orig(*args, **kwargs)
    batch = tuple(level_size(lv) for lv in diff)
    args = list(args)
    if "size" in kwargs:
        kwargs = dict(kwargs, size=batch + tuple(kwargs["size"]))
    else:
        rest = args[size_pos:]
        size = (
            tuple(rest[0]) if len(rest) == 1 and isinstance(rest[0], (tuple, list)) else tuple(rest)
        )
        args = args[:size_pos] + [batch + size]
    return wrap(orig(*args, **kwargs), diff)


def rand_rule(orig, args, kwargs):
    return _creation(orig, args, kwargs, 0)


def randint_rule(orig, args, kwargs):
    if "size" in kwargs:
        return _creation(orig, args, kwargs, len(args))
    n = len(args) - 1  # randint(high, size) or randint(low, high, size)
    return _creation(orig, args, kwargs, n)


def random_like_rule(orig, args, kwargs):
    """rand_like, randn_like, randint_like, bernoulli, poisson, normal(mean, std): elementwise
    draws whose samples differ per batch element with "different"."""
    diff = _random_levels()
    ts = [a for a in list(args) + list(kwargs.values()) if isinstance(a, Tensor)]
    if not ts:  # normal(0.0, 1.0, size)
        return _creation(orig, args, kwargs, len(args) - 1 if "size" not in kwargs else 0)
    have = merge_levels(*(levels_of(t) for t in ts))
    if not diff:
        if have and getattr(orig, "__name__", "").endswith("_like"):
            x = args[0]  # only its logical shape, dtype and device matter: one draw
            like = _em().empty(tuple(x.shape), dtype=x.dtype, device=x.device)
            return orig(like, *args[1:], **kwargs)
        if have:
            raise RuntimeError(
                "vmap: randomness='same' with a batched argument to a random op "
                "is not supported (each sample would need its own parameters "
                "but one draw)"
            )
        return orig(*args, **kwargs)
    target = merge_levels(have, diff)
    nd = max(t.dim() for t in ts)
    with unwrapped(args, kwargs) as lv:

        def fix(a):
            return (
                align(a, lv.get(id(a), ()), target, nd, expand=True) if isinstance(a, Tensor) else a
            )

        out = orig(*[fix(a) for a in args], **{n: fix(v) for n, v in kwargs.items()})
    return wrap(out, target)


def install() -> None:
    for name in ("dropout", "dropout1d", "dropout2d", "dropout3d"):
        RULES[name] = RULES["nn.functional." + name] = dropout_rule
    for name in ("rand", "randn"):
        RULES[name] = rand_rule
        ALWAYS.add(name)
    RULES["randint"] = randint_rule
    ALWAYS.add("randint")
    for name in (
        "rand_like",
        "randn_like",
        "randint_like",
        "bernoulli",
        "poisson",
        "normal",
        "multinomial",
    ):
        RULES[name] = random_like_rule
        ALWAYS.add(name)
