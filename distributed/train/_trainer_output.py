"""What the Trainer's driver shows and keeps of each recorded iteration: the metrics history
and its ``metrics.jsonl`` lines, TensorBoard scalars, and the console (a live table, a progress
bar or one line per report). ``Trainer`` inherits these from ``_TrainerOutput``."""

from __future__ import annotations

import json
import os
import sys
import time

from .result import _METRICS, _jsonable


class _TrainerOutput:
    """The Trainer's output methods; they use ``run_config``, ``_history``, ``_writer``,
    ``_bar`` and ``_live``, which ``Trainer`` sets up."""

    def _record(self, metrics: dict, run_dir: str) -> None:
        metrics = dict(metrics, training_iteration=len(self._history) + 1, timestamp=time.time())
        self._history.append(metrics)
        with open(os.path.join(run_dir, _METRICS), "a") as f:
            f.write(json.dumps(metrics, default=_jsonable) + "\n")
        if self._writer is not None:
            for k, v in metrics.items():
                if isinstance(v, (int, float)) and k not in ("timestamp",):
                    self._writer.add_scalar(k, v, metrics["training_iteration"])
        if self.run_config.verbose:
            shown = {
                k: v
                for k, v in metrics.items()
                if k not in ("timestamp", "checkpoint_dir_name", "training_iteration")
            }
            if self._live is not None:
                pass  # the live table shows it
            elif self._bar is not None and not self._bar.disabled:
                # a live bar on a terminal: one step per report, the latest metrics after it
                self._bar.update(
                    1, **{k: v for k, v in shown.items() if isinstance(v, (int, float))}
                )
            else:
                text = "  ".join(
                    f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items()
                )
                self._log(f"[iter {metrics['training_iteration']}] {text}")

    def _tensorboard(self, run_dir):
        if not self.run_config.log_to_tensorboard:
            return None
        try:
            from ember.utils.tensorboard import SummaryWriter
        except ImportError:
            return None
        return SummaryWriter(os.path.join(run_dir, "tensorboard"))

    def _log(self, msg: str) -> None:
        bar = getattr(self, "_bar", None)
        live = getattr(self, "_live", None)
        if live is not None:
            live.write(f"(ember trainer) {msg}")  # above the table
        elif bar is not None and not bar.disabled:
            bar.write(f"(ember trainer) {msg}")  # above the live bar, not through it
        else:
            print(f"(ember trainer) {msg}", file=sys.stderr, flush=True)
