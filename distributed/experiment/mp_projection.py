"""The spec section ``projection.model_parallel`` and the curves it adds: projected scaling
efficiency of TP, PP and TP × DP (see parallel_cost.py) on every projected interconnect, the
calibrated links of this machine first, from the same compute model as the data-parallel
curves.

    projection:
      model_parallel:          # the GPT the workload stands for
        vocab: 1000
        d_model: 128
        heads: 4
        layers: 8
        seq: 64
        strategies: [tp, pp, tpdp]
        tp: 2                  # the TP degree of tpdp (its dp degree: workers / tp)
        microbatches: 8
        schedule: 1f1b         # gpipe, 1f1b or interleaved
        virtual: 1             # stages per rank of the interleaved schedule

A worker count a strategy cannot use is left out of its curve (efficiency NaN): TP over more
ranks than heads or a ``d_model`` it does not divide, PP over a count that does not divide the
layers, TP × DP over a count that ``tp`` does not divide.
"""

from __future__ import annotations

import math

from .parallel_cost import SCHEDULES, GPTShape, step_parts

MP_STRATEGIES = ("tp", "pp", "tpdp")
_SHAPE_KEYS = ("vocab", "d_model", "heads", "layers", "seq")
DEFAULTS = {
    "strategies": list(MP_STRATEGIES),
    "tp": 2,
    "microbatches": 8,
    "schedule": "1f1b",
    "virtual": 1,
}


def check(section, src: str) -> dict | None:
    """The validated section with defaults filled in (None stays None)."""
    from .spec import SpecError, _fail, _int

    key = "projection.model_parallel"
    if section is None:
        return None
    if not isinstance(section, dict):
        _fail(src, key, f"must be a mapping with {', '.join(_SHAPE_KEYS)}, got {section!r}")
    allowed = (*_SHAPE_KEYS, *DEFAULTS)
    for k in section:
        if k not in allowed:
            raise SpecError(f"{src}: unknown key '{key}.{k}' (allowed here: {', '.join(allowed)})")
    out = {**DEFAULTS, **section}
    for k in _SHAPE_KEYS:
        if k not in section:
            _fail(src, key, f"is missing {k!r}")
        _int(src, f"{key}.{k}", out[k], 1)
    if out["d_model"] % out["heads"]:
        _fail(src, f"{key}.d_model", f"{out['d_model']} is not divisible by heads {out['heads']}")
    if not isinstance(out["strategies"], list) or not out["strategies"]:
        _fail(src, f"{key}.strategies", f"must be a non-empty list from {MP_STRATEGIES}")
    for s in out["strategies"]:
        if s not in MP_STRATEGIES:
            _fail(src, f"{key}.strategies", f"values must be among {MP_STRATEGIES}, got {s!r}")
    for k in ("tp", "microbatches", "virtual"):
        _int(src, f"{key}.{k}", out[k], 1)
    if out["schedule"] not in SCHEDULES:
        _fail(src, f"{key}.schedule", f"must be one of {SCHEDULES}, got {out['schedule']!r}")
    return out


def shape_of(mp: dict, batch: int) -> GPTShape:
    return GPTShape(*(mp[k] for k in _SHAPE_KEYS), batch=batch)


def usable(strategy: str, mp: dict, n: int) -> bool:
    """Whether ``strategy`` can run on ``n`` workers for this model."""
    if strategy == "tp":
        return mp["heads"] % n == 0
    if strategy == "pp":
        return mp["layers"] % n == 0
    t = mp["tp"]
    return n % t == 0 and mp["heads"] % t == 0


def step(strategy: str, mp: dict, n: int, batch: int, compute, ic) -> float:
    """Seconds of one step of ``strategy`` on ``n`` workers for a global batch of ``batch``
    sequences; ``compute`` gives one worker's compute time for a number of samples."""
    return step_parts(
        strategy,
        shape_of(mp, batch),
        n,
        ic,
        compute(batch),
        tp=mp["tp"] if strategy == "tpdp" else None,
        microbatches=mp["microbatches"],
        schedule=mp["schedule"],
        virtual=mp["virtual"],
    )["step"]


def efficiency(strategy: str, mp: dict, n: int, batch: float, scaling: str, compute, ic) -> float:
    """Throughput on ``n`` workers over ``n`` times one worker's (NaN where unusable).

    ``batch``: per worker under weak scaling (the global batch grows with n), global under
    strong scaling (the same for every n)."""
    if not usable(strategy, mp, n):
        return math.nan
    b1 = int(batch)
    bn = int(batch * n) if scaling == "weak" else b1
    if strategy == "pp" and bn < mp["microbatches"]:
        return math.nan
    t1 = compute(b1)
    tn = step(strategy, mp, n, bn, compute, ic)
    return (bn / tn) / (n * b1 / t1)


def add_curves(an, spec, ns: list[int], links: list) -> None:
    """Add ``(link name, strategy) -> [(n, efficiency)]`` for the model-parallel strategies
    to ``an.curves`` (``an``: the Analysis being projected)."""
    mp = spec["projection"].get("model_parallel")
    if not mp:
        return
    g = spec["grid"]
    scaling, batch = g["scaling"][0], g["batch_size"][0]
    compute = an.projection_model.compute.compute
    for ic in links:
        for strategy in mp["strategies"]:
            an.curves[(ic.name, strategy)] = [
                (n, efficiency(strategy, mp, n, batch, scaling, compute, ic)) for n in ns
            ]
