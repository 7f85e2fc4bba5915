"""The spec's Ray Tune sections, ``search:`` and ``scheduler:``, checked before anything runs.

    search:
      space:                      # a trial parameter -> a value or one Tune search space
        lr: {loguniform: [1.0e-4, 1.0e-1]}
        workers: {grid_search: [1, 2]}
        batch_size: {choice: [16, 32]}
      num_samples: 2              # samples of the random spaces (grid_search multiplies them)
      max_concurrent_trials: 2    # null: as many as the cluster's resources allow
      metric: loss                # what the scheduler and the best trial read
      mode: min
      report_every: 5             # timed steps between a trial's reports (the scheduler's clock)
      algorithm: basic            # basic (grid and random sampling) | optuna (needs optuna)
      seed: null                  # the optuna sampler's seed (null: the spec's seed)
    scheduler:
      name: asha                  # fifo | asha | median_stopping
      grace_period: 1
      reduction_factor: 2

Grid axes not named in ``space`` take the ``grid:`` section's values (a grid search over them).
``algorithm: optuna`` samples the space with Optuna's TPE instead; it takes no grid search, so
every searched axis must be a ``choice`` or a range, and the grid a single point.
"""

from __future__ import annotations

import copy

# the parameters a trial takes: the grid's axes and the optimizer's settings
GRID_PARAMS = ("workers", "strategy", "backend", "batch_size", "scaling", "bucket_cap_mb")
PARAMS = GRID_PARAMS + ("lr", "momentum", "optimizer")
# space kind -> how many arguments it takes (None: a non-empty list of values)
SPACES = {"grid_search": None, "choice": None, "uniform": 2, "loguniform": 2, "randint": 2}
SEARCH_DEFAULTS = {
    "space": {},
    "num_samples": 1,
    "max_concurrent_trials": None,
    "metric": "loss",
    "mode": "min",
    "report_every": 5,
    "algorithm": "basic",
    "seed": None,
}
ALGORITHMS = ("basic", "optuna")
SCHEDULERS = {
    "fifo": {},
    "asha": {"grace_period": 1, "max_t": None, "reduction_factor": 2},
    "median_stopping": {"grace_period": 1, "min_samples_required": 3},
}
METRICS = ("loss", "samples_per_s", "step_ms")


def _err(source: str, key: str, msg: str):
    from .spec import SpecError

    return SpecError(f"{source}: {key!r} {msg}")


def _unknown(source: str, path: str, allowed) -> Exception:
    from .spec import SpecError

    return SpecError(f"{source}: unknown key {path!r} (allowed here: {', '.join(allowed)})")


def check_tune_sections(d: dict, src: str) -> None:
    """Validate ``d['search']`` and ``d['scheduler']`` in place (defaults filled in)."""
    search, sched = d["search"], d["scheduler"]
    if search is None:
        if sched is not None:
            raise _err(src, "scheduler", "needs a 'search:' section (the Ray Tune sweep)")
        return
    if not isinstance(search, dict):
        raise _err(src, "search", f"must be a mapping, got {search!r}")
    out = copy.deepcopy(SEARCH_DEFAULTS)
    for k, v in search.items():
        if k not in out:
            raise _unknown(src, f"search.{k}", out)
        out[k] = v
    if not isinstance(out["space"], dict):
        raise _err(src, "search.space", f"must be a mapping of parameters, got {out['space']!r}")
    for name, value in out["space"].items():
        if name not in PARAMS:
            raise _unknown(src, f"search.space.{name}", PARAMS)
        _check_space(src, f"search.space.{name}", value)
    for k, lo in (("num_samples", 1), ("report_every", 1)):
        v = out[k]
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise _err(src, f"search.{k}", f"must be an integer >= {lo}, got {v!r}")
    mc = out["max_concurrent_trials"]
    if mc is not None and (isinstance(mc, bool) or not isinstance(mc, int) or mc < 1):
        raise _err(
            src, "search.max_concurrent_trials", f"must be null or an integer >= 1, got {mc!r}"
        )
    if out["metric"] not in METRICS:
        raise _err(src, "search.metric", f"must be one of {METRICS}, got {out['metric']!r}")
    if out["mode"] not in ("min", "max"):
        raise _err(src, "search.mode", f"must be 'min' or 'max', got {out['mode']!r}")
    if out["algorithm"] not in ALGORITHMS:
        raise _err(
            src, "search.algorithm", f"must be one of {ALGORITHMS}, got {out['algorithm']!r}"
        )
    seed = out["seed"]
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise _err(src, "search.seed", f"must be null or an integer, got {seed!r}")
    if out["algorithm"] == "optuna":
        _check_optuna(src, d, out)
    d["search"] = out
    d["scheduler"] = _check_scheduler(src, sched)


def _check_optuna(src: str, d: dict, search: dict) -> None:
    """Optuna samples every trial's parameters: no grid search in the space, the grid or the
    repetitions (Tune would refuse them only once the sweep starts)."""
    for name, value in search["space"].items():
        if isinstance(value, dict) and "grid_search" in value:
            raise _err(
                src,
                f"search.space.{name}",
                "is a grid_search, which algorithm 'optuna' cannot sample; use "
                f"{{choice: {value['grid_search']!r}}}",
            )
    grid = d.get("grid") or {}
    for axis in GRID_PARAMS:
        values = grid.get(axis)
        if axis not in search["space"] and isinstance(values, list) and len(values) > 1:
            raise _err(
                src,
                f"grid.{axis}",
                f"has {len(values)} values, a grid search that algorithm 'optuna' cannot "
                f"sample; name it in search.space as {{choice: {values!r}}} or keep one value",
            )
    if (d.get("repetitions") or 1) > 1:
        raise _err(
            src,
            "repetitions",
            "must be 1 with algorithm 'optuna' (raise search.num_samples for more trials)",
        )


def _check_space(src: str, key: str, value) -> None:
    if not isinstance(value, dict):
        if isinstance(value, (list, tuple)):
            raise _err(
                src,
                key,
                "takes one value or a space such as {grid_search: [...]}, "
                f"got the list {value!r}",
            )
        return  # a fixed value
    if len(value) != 1:
        raise _err(src, key, f"must name exactly one space of {tuple(SPACES)}, got {value!r}")
    ((kind, args),) = value.items()
    if kind not in SPACES:
        raise _unknown(src, f"{key}.{kind}", SPACES)
    n = SPACES[kind]
    if not isinstance(args, list) or not args or (n is not None and len(args) != n):
        want = "a non-empty list of values" if n is None else "a list [low, high]"
        raise _err(src, f"{key}.{kind}", f"takes {want}, got {args!r}")
    if n is not None:
        if not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args):
            raise _err(src, f"{key}.{kind}", f"bounds must be numbers, got {args!r}")
        lo, hi = args
        if not lo < hi or (kind == "loguniform" and lo <= 0):
            raise _err(
                src,
                f"{key}.{kind}",
                f"needs 0 < low < high for loguniform, low < high otherwise; got {args!r}",
            )


def _check_scheduler(src: str, sched) -> dict:
    if sched is None:
        return {"name": "fifo"}
    if not isinstance(sched, dict):
        raise _err(src, "scheduler", f"must be a mapping, got {sched!r}")
    name = sched.get("name", "fifo")
    if name not in SCHEDULERS:
        raise _err(src, "scheduler.name", f"must be one of {tuple(SCHEDULERS)}, got {name!r}")
    out = {"name": name, **SCHEDULERS[name]}
    for k, v in sched.items():
        if k not in out:
            raise _unknown(src, f"scheduler.{k}", out)
        if (
            k != "name"
            and v is not None
            and (isinstance(v, bool) or not isinstance(v, int) or v < 1)
        ):
            raise _err(src, f"scheduler.{k}", f"must be an integer >= 1, got {v!r}")
        out[k] = v
    return out


def to_tune_space(kind_args) -> object:
    """A checked space (``{kind: args}`` or a value) as a Ray Tune search space object."""
    from ray import tune

    if not isinstance(kind_args, dict):
        return kind_args
    ((kind, args),) = kind_args.items()
    if kind in ("grid_search", "choice"):
        return getattr(tune, kind)(list(args))
    return getattr(tune, kind)(*args)


def make_search_alg(search: dict, seed: int):
    """The Tune searcher ``search.algorithm`` names (None: Tune's basic variant generator)."""
    if search["algorithm"] == "basic":
        return None
    try:
        import optuna  # noqa: F401 - Ray's OptunaSearch needs it; say so before Tune does
    except ImportError:
        from .spec import SpecError

        raise SpecError(
            "search.algorithm 'optuna' needs the optuna package, which is not installed "
            "(pip install optuna)"
        ) from None
    from ray.tune.search.optuna import OptunaSearch

    return OptunaSearch(
        metric=search["metric"],
        mode=search["mode"],
        seed=seed if search["seed"] is None else search["seed"],
    )


def make_scheduler(sched: dict, search: dict, reports: int):
    """The Tune scheduler the section names (None for fifo); ``reports``: how many reports a
    whole trial makes (ASHA's default ``max_t``)."""
    from ray.tune.schedulers import ASHAScheduler, MedianStoppingRule

    kw = {k: v for k, v in sched.items() if k != "name" and v is not None}
    common = {"metric": search["metric"], "mode": search["mode"], "time_attr": "training_iteration"}
    if sched["name"] == "asha":
        kw.setdefault("max_t", reports)
        return ASHAScheduler(**common, **kw)
    if sched["name"] == "median_stopping":
        return MedianStoppingRule(**common, **kw)
    return None
