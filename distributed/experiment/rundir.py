"""The run directory: one row per point (JSONL is the record, CSV is derived from it), the spec,
and the software and machine each session ran on.

    RUN_DIR/
      spec.yaml           the resolved spec (defaults filled in)
      environment.json    per session: software versions, machine, Ray cluster
      results.jsonl       one JSON object per finished (or failed) point, appended and fsynced
      results.csv         the same rows, flat, rewritten after every point
      timeline/ID.json    Chrome trace of a few steps of point ID, every rank
      report.md, plots/   written by the report

An interrupted sweep resumes: points whose last row says "ok" are skipped. A torn last line
(the process died while writing it) is ignored and that point runs again.
"""

from __future__ import annotations

import csv
import datetime
import io
import json
import os
import platform
import shutil
import socket
from importlib import metadata

from .spec import ExperimentSpec, SpecError

RESULTS_JSONL = "results.jsonl"
RESULTS_CSV = "results.csv"
SPEC_FILE = "spec.yaml"
ENV_FILE = "environment.json"
CSV_COLUMNS = [
    "point_id",
    "status",
    "workers",
    "strategy",
    "backend",
    "scaling",
    "batch_size",
    "per_worker_batch",
    "global_batch",
    "bucket_cap_mb",
    "rep",
    "steps",
    "samples_per_s",
    "scaling_efficiency",
    "step_ms",
    "compute_ms",
    "comm_exposed_ms",
    "data_ms",
    "comm_wait_ms",
    "sent_mib_per_step",
    "grad_mib",
    "n_params",
    "allreduce_grad_ms",
    "busbw_gbps",
    "mem_mib",
    "mem_source",
    "rss_peak_mib",
    "loss",
    "wall_s",
    "load_1m",
    "started",
    "error",
]
# spec keys whose change makes earlier rows incomparable (the grid may grow between sessions)
_RESULT_KEYS = ("workload", "steps", "warmup", "compute_steps", "seed", "optimizer")


class RunDir:
    """A sweep's directory; see the module docstring for its layout."""

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)

    def file(self, *parts: str) -> str:
        return os.path.join(self.path, *parts)

    def prepare(self, spec: ExperimentSpec, fresh: bool = False) -> None:
        """Create the directory (``fresh``: drop earlier results), refuse a spec whose
        measured quantities differ from the one the existing rows came from, save the spec."""
        os.makedirs(self.path, exist_ok=True)
        if fresh:
            for name in (RESULTS_JSONL, RESULTS_CSV, SPEC_FILE, ENV_FILE, "report.md"):
                if os.path.exists(self.file(name)):
                    os.remove(self.file(name))
            for name in ("timeline", "plots"):
                shutil.rmtree(self.file(name), ignore_errors=True)
        old = self.file(SPEC_FILE)
        if os.path.exists(old) and self.rows():
            import yaml

            with open(old) as f:
                before = yaml.safe_load(f) or {}
            changed = [k for k in _RESULT_KEYS if before.get(k) != spec.data.get(k)]
            if changed:
                raise SpecError(
                    f"{self.path} holds results of a spec with different {changed} "
                    f"(was {[before.get(k) for k in changed]}, now "
                    f"{[spec.data.get(k) for k in changed]}); use another output directory or "
                    "start afresh (fresh=True, or --fresh on the command line)"
                )
        _atomic_write(old, spec.to_yaml())

    def add_session(self) -> None:
        """Append this session's software, machine and Ray cluster to environment.json."""
        sessions = self.environment()
        sessions.append(describe_environment())
        _atomic_write(self.file(ENV_FILE), json.dumps(sessions, indent=2) + "\n")

    def environment(self) -> list:
        try:
            with open(self.file(ENV_FILE)) as f:
                return json.load(f)
        except (OSError, ValueError):
            return []

    def rows(self) -> list[dict]:
        """The latest row of every point, in the order points first appeared."""
        latest: dict[str, dict] = {}
        try:
            with open(self.file(RESULTS_JSONL)) as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            return []
        for line in lines:
            try:
                row = json.loads(line)
            except ValueError:
                continue  # a line torn by an interruption: that point runs again
            if isinstance(row, dict) and "point_id" in row:
                latest[row["point_id"]] = row
        return list(latest.values())

    def finished(self) -> set[str]:
        return {r["point_id"] for r in self.rows() if r.get("status") == "ok"}

    def append(self, row: dict) -> None:
        """Record a point (durably) and rewrite the CSV."""
        path = self.file(RESULTS_JSONL)
        torn = False
        if os.path.exists(path) and os.path.getsize(path):
            with open(path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                torn = f.read(1) != b"\n"
        with open(path, "a") as f:
            # after a torn last line, start a new one (else this row would be glued to it)
            f.write(("\n" if torn else "") + json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.write_csv()

    def write_csv(self) -> None:
        rows = with_efficiency(self.rows())
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: "" if r.get(k) is None else r.get(k) for k in CSV_COLUMNS})
        _atomic_write(self.file(RESULTS_CSV), buf.getvalue())


def with_efficiency(rows: list[dict]) -> list[dict]:
    """Rows with ``scaling_efficiency`` = samples/s ÷ (workers × the 1-worker samples/s of the
    same configuration), the baseline averaged over its repetitions. Without a 1-worker row of
    the same strategy and bucket size, any 1-worker row of the same backend, scaling and batch
    serves (every strategy runs the plain model on one worker)."""
    ok = [r for r in rows if r.get("status") == "ok"]

    def base(r, exact):
        keys = ("backend", "scaling", "batch_size") + (
            ("strategy", "bucket_cap_mb") if exact else ()
        )
        vals = [
            b["samples_per_s"] for b in ok if b["workers"] == 1 and all(b[k] == r[k] for k in keys)
        ]
        return sum(vals) / len(vals) if vals else None

    out = []
    for r in rows:
        r = dict(r)
        if r.get("status") == "ok":
            b = base(r, True) or base(r, False)
            r["scaling_efficiency"] = (
                round(r["samples_per_s"] / (r["workers"] * b), 4) if b else None
            )
        out.append(r)
    return out


def describe_environment() -> dict:
    """Software versions, the machine, and the Ray cluster (when Ray is up)."""
    versions = {"python": platform.python_version()}
    for pkg in (
        "ember",
        "numpy",
        "scipy",
        "ray",
        "grpcio",
        "protobuf",
        "matplotlib",
        "pyyaml",
        "cupy-cuda12x",
        "cupy-cuda13x",
    ):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    machine = {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_gb": _memory_gb(),
        "gpus": _gpus(),
        # other work on the machine makes timings noisy: say how busy it was
        "load_average": [round(x, 2) for x in os.getloadavg()]
        if hasattr(os, "getloadavg")
        else None,
    }
    env = {
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
        "versions": versions,
        "machine": machine,
    }
    try:
        import ray

        if ray.is_initialized():
            env["ray"] = {
                "nodes": sum(1 for n in ray.nodes() if n.get("Alive")),
                "resources": ray.cluster_resources(),
            }
    except Exception:  # describing the cluster must never fail a run
        pass
    return env


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gb() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9, 1)
    except (ValueError, OSError, AttributeError):
        return None


def _gpus() -> list:
    try:
        import ember

        if ember.cuda.is_available():
            import cupy

            return [
                cupy.cuda.runtime.getDeviceProperties(i)["name"].decode()
                for i in range(ember.cuda.device_count())
            ]
    except Exception:  # no CUDA here, or a driver that cannot be asked
        pass
    return []


def _atomic_write(path: str, text: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
