"""``Result`` of ``Trainer.fit`` and the checkpoint bookkeeping behind it."""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass, field

from .checkpoint import Checkpoint, unpack_into
from .config import CheckpointConfig

_STATE = "ember_run_state.json"
_METRICS = "metrics.jsonl"


@dataclass
class Result:
    """What a run produced: final metrics, the latest checkpoint, the best ones, history."""

    metrics: dict | None
    checkpoint: Checkpoint | None
    path: str
    metrics_history: list = field(default_factory=list)
    best_checkpoints: list = field(default_factory=list)  # [(Checkpoint, metrics)]
    error: BaseException | None = None

    @property
    def metrics_dataframe(self):
        import pandas as pd  # optional, as in Ray Train

        return pd.DataFrame(self.metrics_history)

    @classmethod
    def from_path(cls, path: str) -> Result:
        """Restore a Result from a run directory written by ``Trainer.fit``."""
        state_file = os.path.join(path, _STATE)
        if not os.path.exists(state_file):
            raise FileNotFoundError(f"{path!r} is not an ember run directory (no {_STATE})")
        with open(state_file) as f:
            state = json.load(f)
        history = []
        mfile = os.path.join(path, _METRICS)
        if os.path.exists(mfile):
            with open(mfile) as f:
                history = [json.loads(line) for line in f if line.strip()]
        ckpts = [
            (Checkpoint(os.path.join(path, c["dir"])), c["metrics"]) for c in state["checkpoints"]
        ]
        latest = state.get("latest")
        return cls(
            metrics=history[-1] if history else None,
            checkpoint=Checkpoint(os.path.join(path, latest)) if latest else None,
            path=path,
            metrics_history=history,
            best_checkpoints=ckpts,
            error=None,
        )


class CheckpointManager:
    """Persists reported checkpoints under the run directory and keeps the best N."""

    def __init__(self, run_dir: str, config: CheckpointConfig):
        self.run_dir = run_dir
        self.config = config
        self.kept: list[tuple[str, dict, int]] = []  # (dir name, metrics, index)
        self.latest: str | None = None
        self.count = 0
        os.makedirs(run_dir, exist_ok=True)
        state_file = os.path.join(run_dir, _STATE)
        if os.path.exists(state_file):  # resuming a run directory
            with open(state_file) as f:
                state = json.load(f)
            self.kept = [(c["dir"], c["metrics"], c["index"]) for c in state["checkpoints"]]
            self.latest = state.get("latest")
            self.count = state.get("count", len(self.kept))

    def latest_checkpoint(self) -> Checkpoint | None:
        return Checkpoint(os.path.join(self.run_dir, self.latest)) if self.latest else None

    def add(self, blobs: list[bytes], metrics: dict) -> Checkpoint:
        name = f"checkpoint_{self.count:06d}"
        ckpt = unpack_into(blobs, os.path.join(self.run_dir, name))
        self.kept.append((name, metrics, self.count))
        self.latest = name
        self.count += 1
        self._prune()
        self._save_state()
        return ckpt

    def _score(self, item) -> float:
        attr = self.config.checkpoint_score_attribute
        if attr is None:
            return item[2]  # recency
        v = item[1].get(attr)
        if v is None:
            return -math.inf
        return v if self.config.checkpoint_score_order == "max" else -v

    def _prune(self) -> None:
        n = self.config.num_to_keep
        if n is None or len(self.kept) <= n:
            return
        ranked = sorted(self.kept, key=self._score, reverse=True)
        keep = ranked[:n]
        # the latest checkpoint always survives: it is what a restart resumes from
        if all(k[0] != self.latest for k in keep):
            keep = keep[:-1] + [k for k in self.kept if k[0] == self.latest]
        for item in self.kept:
            if item not in keep:
                shutil.rmtree(os.path.join(self.run_dir, item[0]), ignore_errors=True)
        self.kept = [k for k in self.kept if k in keep]

    def best(self) -> list:
        return [
            (Checkpoint(os.path.join(self.run_dir, d)), m)
            for d, m, _ in sorted(self.kept, key=self._score, reverse=True)
        ]

    def _save_state(self) -> None:
        state = {
            "checkpoints": [{"dir": d, "metrics": m, "index": i} for d, m, i in self.kept],
            "latest": self.latest,
            "count": self.count,
        }
        tmp = os.path.join(self.run_dir, _STATE + ".tmp")
        with open(tmp, "w") as f:
            json.dump(state, f, default=_jsonable)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, os.path.join(self.run_dir, _STATE))

    def save_state(self) -> None:
        self._save_state()


def _jsonable(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return str(x)
