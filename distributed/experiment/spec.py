"""Experiment specs: a YAML file (or dict) naming a workload and a grid of points to measure.

Every key is checked: an unknown key is an error naming the file and the key's full path, so a
typo (``grid.wokers``) fails before anything runs, not after an hour of sweeping.
"""

from __future__ import annotations

import copy
import itertools
import os
from dataclasses import dataclass

import yaml

from .workloads import WORKLOADS

STRATEGIES = ("ddp", "zero1", "zero2", "fsdp")
SCALING = ("weak", "strong")
PROJECTION_WORKERS = [8, 16, 32, 64, 128, 256, 512, 1024]
# Interconnect figures the projection uses unless the spec gives its own (inputs, not measured):
# 25 Gbit/s Ethernet with kernel TCP, a 100 Gbit/s RDMA fabric, an NVLink-class link.
INTERCONNECTS = [
    {"name": "25GbE", "bandwidth_gbit": 25.0, "latency_us": 25.0},
    {"name": "100Gb RDMA", "bandwidth_gbit": 100.0, "latency_us": 5.0},
    {"name": "NVLink-class", "bandwidth_gbit": 2400.0, "latency_us": 3.0},
]

# The schema: key -> default (a dict is a nested section with its own keys).
_DEFAULTS = {
    "name": None,
    "workload": "mlp",
    "steps": 20,
    "warmup": 3,
    "compute_steps": 10,
    "trace_steps": 3,
    "seed": 0,
    "optimizer": {"name": "adam", "lr": 1e-3, "momentum": 0.0},
    "grid": {
        "workers": [1, 2],
        "strategy": ["ddp"],
        "backend": ["auto"],
        "batch_size": [None],
        "scaling": ["weak"],
        "bucket_cap_mb": [25.0],
    },
    "repetitions": 1,
    "where": {"address": None, "cluster": None, "cpus_per_worker": 1, "use_gpu": False},
    "calibration": {"sizes_kib": [4, 64, 1024], "iters": 5},
    "projection": {
        "workers": PROJECTION_WORKERS,
        "compute_rate": None,
        "interconnects": INTERCONNECTS,
        "model_parallel": None,  # TP / PP / TP x DP curves: see mp_projection.py
    },
    # Ray Tune sections (tune_spec.py checks them); with ``search`` the sweep runs on Tune
    "search": None,
    "scheduler": None,
}
_GRID_AXES = tuple(_DEFAULTS["grid"])
_INTERCONNECT_KEYS = ("name", "bandwidth_gbit", "latency_us")


class SpecError(ValueError):
    """A bad experiment spec; the message names the file and the key."""


@dataclass(frozen=True)
class Point:
    """One measurement: a worker count, a strategy, ... and the repetition index."""

    workers: int
    strategy: str
    backend: str
    batch_size: int
    scaling: str
    bucket_cap_mb: float
    rep: int

    @property
    def per_worker_batch(self) -> int:
        return self.batch_size if self.scaling == "weak" else self.batch_size // self.workers

    @property
    def global_batch(self) -> int:
        return self.per_worker_batch * self.workers

    @property
    def config_id(self) -> str:
        """The point without its repetition index (repetitions share it)."""
        return (
            f"w{self.workers}-{self.strategy}-{self.backend}-{self.scaling}{self.batch_size}"
            f"-cap{self.bucket_cap_mb:g}"
        )

    @property
    def id(self) -> str:
        return f"{self.config_id}-r{self.rep}"


@dataclass
class ExperimentSpec:
    """A validated spec: ``data`` holds every key (defaults filled in), ``source`` the file."""

    data: dict
    source: str = "<dict>"

    @property
    def name(self) -> str:
        return self.data["name"]

    def __getitem__(self, key):
        return self.data[key]

    def points(self) -> list[Point]:
        """The grid in run order: all repetitions of a configuration, worker counts ascending
        within a configuration (so a sweep cut short still has the 1-worker baselines)."""
        g = self.data["grid"]
        out = []
        for strategy, backend, batch, scaling, cap in itertools.product(
            g["strategy"], g["backend"], g["batch_size"], g["scaling"], g["bucket_cap_mb"]
        ):
            for workers in sorted(g["workers"]):
                for rep in range(self.data["repetitions"]):
                    out.append(Point(workers, strategy, backend, batch, scaling, float(cap), rep))
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.data, sort_keys=False)


def load_spec(spec) -> ExperimentSpec:
    """Read and validate a spec from a YAML path, a dict, or an ExperimentSpec."""
    if isinstance(spec, ExperimentSpec):
        return spec
    if isinstance(spec, dict):
        return validate(spec, "<dict>")
    path = os.fspath(spec)
    if not os.path.isfile(path):
        raise SpecError(f"experiment spec {path!r} does not exist")
    with open(path) as f:
        try:
            raw = yaml.safe_load(f)
        except yaml.YAMLError as e:
            raise SpecError(f"{path}: not valid YAML: {e}") from None
    if raw is None:
        raw = {}
    spec = validate(raw, path)
    if spec.data["name"] is None:
        spec.data["name"] = os.path.splitext(os.path.basename(path))[0]
    return spec


def validate(raw: dict, source: str = "<dict>") -> ExperimentSpec:
    """Check ``raw`` against the schema, fill in defaults, and return the spec."""
    if not isinstance(raw, dict):
        raise SpecError(f"{source}: the spec must be a mapping, got {type(raw).__name__}")
    data = copy.deepcopy(_DEFAULTS)
    _merge(data, raw, source, "")
    _check(data, source)
    if data["name"] is None:
        data["name"] = "experiment"
    return ExperimentSpec(data, source)


def _merge(into: dict, raw: dict, source: str, prefix: str) -> None:
    for key, value in raw.items():
        path = f"{prefix}{key}"
        if key not in into:
            allowed = ", ".join(into)
            raise SpecError(f"{source}: unknown key {path!r} (allowed here: {allowed})")
        if isinstance(into[key], dict):
            if not isinstance(value, dict):
                raise SpecError(f"{source}: {path!r} must be a mapping, got {value!r}")
            _merge(into[key], value, source, path + ".")
        else:
            into[key] = value


def _fail(source: str, key: str, msg: str):
    raise SpecError(f"{source}: {key!r} {msg}")


def _int(source, key, v, lo=0):
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        _fail(source, key, f"must be an integer >= {lo}, got {v!r}")
    return v


def _num(source, key, v, positive=True):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (positive and v <= 0):
        _fail(source, key, f"must be a {'positive ' if positive else ''}number, got {v!r}")
    return float(v)


def _check(d: dict, src: str) -> None:
    w = d["workload"]
    if not isinstance(w, str) or (w not in WORKLOADS and ":" not in w):
        _fail(src, "workload", f"must be one of {WORKLOADS} or 'module:function', got {w!r}")
    for k, lo in (
        ("steps", 1),
        ("warmup", 0),
        ("compute_steps", 1),
        ("trace_steps", 0),
        ("seed", 0),
        ("repetitions", 1),
    ):
        _int(src, k, d[k], lo)
    opt = d["optimizer"]
    if opt["name"] not in ("adam", "sgd"):
        _fail(src, "optimizer.name", f"must be 'adam' or 'sgd', got {opt['name']!r}")
    _num(src, "optimizer.lr", opt["lr"])
    _num(src, "optimizer.momentum", opt["momentum"], positive=False)
    g = d["grid"]
    for axis in _GRID_AXES:  # a single value is a one-point axis
        if not isinstance(g[axis], list):
            g[axis] = [g[axis]]
        if not g[axis]:
            _fail(src, f"grid.{axis}", "must not be empty")
        if len(set(map(str, g[axis]))) != len(g[axis]):
            _fail(src, f"grid.{axis}", f"has repeated values: {g[axis]}")
    for n in g["workers"]:
        _int(src, "grid.workers", n, 1)
    for s in g["strategy"]:
        if s not in STRATEGIES:
            _fail(src, "grid.strategy", f"values must be among {STRATEGIES}, got {s!r}")
    for b in g["backend"]:
        if not isinstance(b, str):
            _fail(src, "grid.backend", f"values must be backend names, got {b!r}")
    for s in g["scaling"]:
        if s not in SCALING:
            _fail(src, "grid.scaling", f"values must be 'weak' or 'strong', got {s!r}")
    default_batch = None
    if w in WORKLOADS:
        from .workloads import DEFAULT_BATCH

        default_batch = DEFAULT_BATCH[w]
    g["batch_size"] = [default_batch if b is None else b for b in g["batch_size"]]
    for b in g["batch_size"]:
        if b is None:
            _fail(src, "grid.batch_size", "must be given for a user workload")
        _int(src, "grid.batch_size", b, 1)
        if "strong" in g["scaling"]:
            bad = [n for n in g["workers"] if b % n]
            if bad:
                _fail(
                    src,
                    "grid.batch_size",
                    f"{b} (a global batch under strong scaling) "
                    f"does not split evenly over {bad} workers",
                )
    g["bucket_cap_mb"] = [_num(src, "grid.bucket_cap_mb", c) for c in g["bucket_cap_mb"]]
    where = d["where"]
    if where["address"] is not None and where["cluster"] is not None:
        _fail(src, "where", "takes either 'address' or 'cluster', not both")
    _num(src, "where.cpus_per_worker", where["cpus_per_worker"])
    if not isinstance(where["use_gpu"], bool):
        _fail(src, "where.use_gpu", f"must be true or false, got {where['use_gpu']!r}")
    cal = d["calibration"]
    if not isinstance(cal["sizes_kib"], list):
        _fail(src, "calibration.sizes_kib", "must be a list of sizes in KiB")
    for s in cal["sizes_kib"]:
        _num(src, "calibration.sizes_kib", s)
    _int(src, "calibration.iters", cal["iters"], 1)
    _check_projection(d["projection"], src)
    from .tune_spec import check_tune_sections

    check_tune_sections(d, src)


def _check_projection(p: dict, src: str) -> None:
    from .mp_projection import check

    p["model_parallel"] = check(p["model_parallel"], src)
    if not isinstance(p["workers"], list) or not p["workers"]:
        _fail(src, "projection.workers", "must be a non-empty list of worker counts")
    for n in p["workers"]:
        _int(src, "projection.workers", n, 1)
    if p["compute_rate"] is not None:
        _num(src, "projection.compute_rate", p["compute_rate"])
    if not isinstance(p["interconnects"], list):
        _fail(
            src, "projection.interconnects", "must be a list of {name, bandwidth_gbit, latency_us}"
        )
    for i, ic in enumerate(p["interconnects"]):
        key = f"projection.interconnects[{i}]"
        if not isinstance(ic, dict):
            _fail(src, key, "must be a mapping {name, bandwidth_gbit, latency_us}")
        for k in ic:
            if k not in _INTERCONNECT_KEYS:
                raise SpecError(
                    f"{src}: unknown key {key}.{k!r} (allowed here: "
                    f"{', '.join(_INTERCONNECT_KEYS)})"
                )
        for k in _INTERCONNECT_KEYS:
            if k not in ic:
                _fail(src, key, f"is missing {k!r}")
        _num(src, f"{key}.bandwidth_gbit", ic["bandwidth_gbit"])
        _num(src, f"{key}.latency_us", ic["latency_us"], positive=False)
