"""``Trainer``: runs a training function on N Ray actors as one data-parallel job.

The driver starts a worker group, sets up the process group in every worker, runs the user's
function, collects ``report`` calls (rank 0's metrics; every rank's checkpoint files), persists
checkpoints, and on a worker failure restarts the whole group from the latest checkpoint when
its failure policy (``failure_policy.py``: ``FailureConfig.max_failures``) says so.
"""

from __future__ import annotations

import os
import queue
import threading
import time

from ._attempt_end import (  # noqa: F401  (_describe: re-exported from its old home)
    _describe,
    _Grow,
    _watch_tasks,
    _WorkerFailure,
    first_error,
    primary_failure,
)
from ._internal.hang_watch import Beat, HangWatch
from ._trainer_output import _TrainerOutput
from ._worker_entry import _worker_main
from .checkpoint import Checkpoint
from .config import RunConfig, ScalingConfig, check_strategy
from .data import DataConfig, check_datasets
from .failure_policy import FailureDecision, TrainingFailure, create_failure_policy
from .live import LiveTable
from .result import CheckpointManager, Result


class TrainingFailedError(RuntimeError):
    """Training failed on a worker and no restarts were left; the message holds the worker's
    own traceback, its rank and node, and how many failures occurred."""


class Trainer(_TrainerOutput):
    """Data-parallel training on Ray, Ray Train's shape.

    Args:
        train_loop_per_worker: ``fn(config)`` (or ``fn()``) run in every worker.
        train_loop_config: the dict passed to it.
        scaling_config: number of workers and their resources.
        run_config: name, storage path, failure and checkpoint settings.
        strategy: what ``prepare_model`` wraps the model with: "ddp" (the default), "zero1"
            / "zero2" (``ZeroDataParallel``) or "fsdp" (``FullyShardedDataParallel``); with
            the sharded ones, build the optimizer over the prepared model's parameters.
        backend: the collective backend ("auto" picks shared memory / gRPC / NCCL per peer);
            None runs the workers without a process group.
        resume_from_checkpoint: a Checkpoint to start from (``get_checkpoint()`` returns it).
        ray_address: connect to an existing cluster; None starts (or reuses) a local Ray.
        collective_timeout: seconds before a stuck collective raises.
        datasets: ``{name: ray.data.Dataset}``; each worker reads its shard with
            ``get_dataset_shard(name)`` (see ``data.py``).
        dataset_config: how the datasets are split (``DataConfig``; all of them by default).

    Example::

        def train(config):
            model = ember.distributed.prepare_model(Net())
            ...
            ember.distributed.report({"loss": loss.item()})

        result = Trainer(train, scaling_config=ScalingConfig(num_workers=2)).fit()
    """

    def __init__(
        self,
        train_loop_per_worker,
        train_loop_config: dict | None = None,
        scaling_config: ScalingConfig | None = None,
        run_config: RunConfig | None = None,
        strategy: str = "ddp",
        backend: str = "auto",
        resume_from_checkpoint: Checkpoint | None = None,
        ray_address: str | None = None,
        collective_timeout: float = 300.0,
        datasets: dict | None = None,
        dataset_config: DataConfig | None = None,
    ):
        if not callable(train_loop_per_worker):
            raise TypeError("train_loop_per_worker must be callable")
        self.fn = train_loop_per_worker
        self.config = train_loop_config
        self.scaling = scaling_config or ScalingConfig()
        self.run_config = run_config or RunConfig()
        self.strategy = check_strategy(strategy)
        self.backend = backend
        self.resume_from = resume_from_checkpoint
        self.ray_address = ray_address
        self.collective_timeout = collective_timeout
        self._restore_dir: str | None = None
        self.datasets = check_datasets(datasets)
        self.dataset_config = dataset_config or DataConfig()
        # set by ember experiment's Tune trials: keep the worker processes for the next trial
        # that the same (reused) trial actor runs (WorkerGroup's reuse/keep)
        self._reuse_workers = False
        # elastic runs: how long an attempt waits for room for ScalingConfig's min workers
        self.elastic_wait_s = float(os.environ.get("EMBER_ELASTIC_WAIT_S", "60"))

    @classmethod
    def restore(
        cls, path: str, train_loop_per_worker, train_loop_config: dict | None = None, **kwargs
    ) -> Trainer:
        """Continue an interrupted run from its directory: ``fit()`` starts from the run's
        latest checkpoint and appends to its metrics history."""
        if not os.path.exists(os.path.join(path, "ember_run_state.json")):
            raise FileNotFoundError(
                f"Trainer.restore: {path!r} is not an ember run directory "
                "(no ember_run_state.json; was a checkpoint ever reported?)"
            )
        trainer = cls(train_loop_per_worker, train_loop_config, **kwargs)
        trainer._restore_dir = os.path.abspath(path)
        return trainer

    # ---- driver --------------------------------------------------------------------------
    def fit(self) -> Result:
        import ray

        from ._internal.ray_cluster import ensure_ray
        from ._internal.ray_output import RAY_LOG, RayOutput

        if self._restore_dir is not None:
            run_dir = self._restore_dir
            name = os.path.basename(run_dir)
        else:
            name = self.run_config.name or f"ember_train_{time.strftime('%Y-%m-%d_%H-%M-%S')}"
            run_dir = _fresh_dir(self.run_config.run_dir(name))
        # Ray's own notices and log lines go to the run's logs/ray.log, not the job's output
        # (EMBER_VERBOSE=1 shows them too)
        ray_out = RayOutput(os.path.join(run_dir, RAY_LOG)).install()
        try:
            ensure_ray(self.ray_address, self.scaling)
            ray_out.relay_installed()
            return self._fit(ray, run_dir, name)
        finally:
            ray_out.close()

    def _fit(self, ray, run_dir: str, name: str) -> Result:
        manager = CheckpointManager(run_dir, self.run_config.checkpoint_config)
        self._history: list[dict] = (
            Result.from_path(run_dir).metrics_history if self._restore_dir is not None else []
        )
        self._writer = self._tensorboard(run_dir)
        from ember.utils.progress import progress

        # On a terminal: a live table of the ranks (live.py); elsewhere one line per report.
        self._want_live = bool(self.run_config.verbose) and LiveTable.wanted()
        self._live: LiveTable | None = None
        self._bar = (
            progress(desc=name, unit="report", disable=None)
            if self.run_config.verbose and not self._want_live
            else None
        )
        policy = create_failure_policy(self.run_config.failure_config)
        start_ckpt = manager.latest_checkpoint() or self.resume_from
        self._world_sizes: list[int] = []  # each attempt's group size (elastic runs vary)
        try:
            while True:
                try:
                    self._run_attempt(ray, run_dir, name, manager, start_ckpt)
                    break
                except _Grow as g:
                    # a membership change, not a failure: max_failures is not charged
                    start_ckpt = manager.latest_checkpoint() or self.resume_from
                    self._log(
                        f"room for {g.room} more worker(s) at a checkpoint boundary; "
                        f"growing the group of {g.current} from {start_ckpt}"
                    )
                except _WorkerFailure as f:
                    failure = TrainingFailure(f.rank, f.node, f.pid, f.detail)
                    if policy.make_decision(failure) is FailureDecision.RAISE:
                        raise TrainingFailedError(
                            f"Training failed on rank {f.rank} (node {f.node}, pid {f.pid}); "
                            f"{policy.failures} failure(s) with max_failures="
                            f"{policy.failure_config.max_failures}. The worker's error:\n"
                            f"{f.detail}"
                        ) from None
                    start_ckpt = manager.latest_checkpoint() or self.resume_from
                    self._log(
                        f"worker rank {f.rank} failed ({policy.describe()}); "
                        f"restarting the group from {start_ckpt or 'scratch'}"
                    )
        finally:
            if self._writer is not None:
                self._writer.close()
            if self._bar is not None:
                self._bar.close()
            if self._live is not None:
                self._live.close()
        return Result(
            metrics=self._history[-1] if self._history else None,
            checkpoint=manager.latest_checkpoint(),
            path=run_dir,
            metrics_history=list(self._history),
            best_checkpoints=manager.best(),
        )

    def _run_attempt(self, ray, run_dir, name, manager, start_ckpt) -> None:
        from ._internal.worker_group import WorkerGroup
        from .reports import open_inbox

        if self.scaling.elastic:
            group = self._form_elastic_group(WorkerGroup)
        else:
            group = WorkerGroup(
                self.scaling.num_workers,
                self.scaling.bundle(),
                self.scaling.placement_strategy,
                reuse=self._reuse_workers,
            )
        self._world_sizes.append(group.num_workers)
        events: queue.Queue = queue.Queue()
        inbox = open_inbox(events, group.token)
        clean = False
        try:
            ckpt_ref = [ray.put(start_ckpt.pack())] if start_ckpt is not None else None
            # Every attempt splits the datasets anew: a restarted group reads fresh iterators.
            shards = (
                self.dataset_config.configure(self.datasets, group.num_workers, group.bundle)
                if self.datasets
                else [None] * group.num_workers
            )
            refs = group.execute_async_per_rank(
                _worker_main,
                shards,
                self.fn,
                self.config,
                inbox.client(),
                ckpt_ref,
                self.backend,
                self.strategy,
                run_dir,
                name,
                self.collective_timeout,
                hang_timeout=self.run_config.failure_config.worker_hang_timeout_s,
            )
            if self._want_live:
                if self._live is not None:
                    self._live.close()  # the previous attempt's table stays above
                self._live = LiveTable([info.node_ip for info in group.infos])
            self._monitor(ray, group, refs, events, inbox, manager)
            clean = True
        finally:
            group.shutdown(keep=clean and self._reuse_workers)
            inbox.close()

    def _form_elastic_group(self, worker_group_cls):
        """The largest group in ``num_workers=(min, max)`` that the cluster has room for."""
        from ._internal.elastic import form_group, place_or_raise

        sc = self.scaling
        group = form_group(
            lambda n, t: place_or_raise(
                worker_group_cls, n, sc.bundle(), sc.placement_strategy, place_timeout=t
            ),
            sc.bundle(),
            sc.placement_strategy,
            sc.min_workers,
            sc.max_workers,
            wait_s=self.elastic_wait_s,
            log=self._log,
        )
        previous = self._world_sizes[-1] if self._world_sizes else None
        if previous is not None and previous != group.num_workers:
            self._log(
                f"elastic group re-formed with {group.num_workers} worker(s) (was {previous})"
            )
        return group

    def _room_to_grow(self, group) -> int:
        """How many more workers would fit now (0 unless elastic and below max)."""
        sc = self.scaling
        if not sc.elastic or group.num_workers >= sc.max_workers:
            return 0
        from ._internal.elastic import free_slots

        mine = {info.node_id for info in group.infos}
        exclude = mine if sc.placement_strategy == "STRICT_SPREAD" else ()
        room = free_slots(sc.bundle(), sc.placement_strategy, exclude_nodes=exclude)
        return min(room, sc.max_workers - group.num_workers)

    def _monitor(self, ray, group, refs, events, inbox, manager) -> None:
        """Take reports and the workers' ends as they come (no polling: see ``reports.py``)."""
        from .reports import queued_reports

        pending: dict[int, dict[int, tuple]] = {}
        n = len(refs)
        hang_timeout = self.run_config.failure_config.worker_hang_timeout_s
        watch = None if hang_timeout is None else HangWatch(hang_timeout, group.infos, inbox)
        wake = 1.0 if watch is None else min(1.0, watch.interval)
        threading.Thread(
            target=_watch_tasks, args=(ray, refs, events), daemon=True, name="ember-trainer-watch"
        ).start()
        remaining = n
        while remaining:
            try:
                # (a timeout, so that the driver still answers Ctrl-C promptly)
                kind, what = events.get(timeout=wake)
            except queue.Empty:
                kind = what = None
                if self._live is not None:
                    self._live.draw()  # the "last report" ages move on
            if watch is not None:
                if kind == "beat" or isinstance(what, Beat):
                    watch.take(what)
                hung = watch.check()
                if hung is not None:
                    inbox.flush()
                    for item in queued_reports(events):
                        self._take(item, pending, manager, n)
                    raise _WorkerFailure(*hung)
            if kind is None or kind == "beat" or isinstance(what, Beat):
                continue
            if kind == "report":
                if self._take(what, pending, manager, n) and self.scaling.elastic:
                    room = self._room_to_grow(group)
                    if room:
                        raise _Grow(n, room)  # at this checkpoint boundary
                continue
            remaining -= 1
            failed = first_error(ray, refs, [what])
            if self._live is not None:
                self._live.finished(refs.index(what), ok=failed is None)
            if failed is not None:
                # keep what was reported before the failure (the checkpoint to resume from);
                # the inbox stays open until the group is shut down, so that the healthy ranks'
                # report() calls do not fail and pass for the root cause
                inbox.flush()
                for item in queued_reports(events):
                    self._take(item, pending, manager, n)
                raise primary_failure(ray, group, refs, failed) from None
        # every report() has returned, so every report was queued before its worker's end
        inbox.close()
        for item in queued_reports(events):
            self._take(item, pending, manager, n)

    def _take(self, item, pending, manager, n) -> bool:
        """File one rank's report; once every rank has reported an iteration, record it.
        True when that recorded a checkpoint (a boundary an elastic group may grow at)."""
        rank, it, metrics, blob = item
        if self._live is not None:
            self._live.report(rank, it, metrics)
        pending.setdefault(it, {})[rank] = (metrics, blob)
        if len(pending[it]) < n:
            return False
        reports = pending.pop(it)
        metrics = dict(reports[0][0])
        blobs = [b for _, b in sorted((r, v[1]) for r, v in reports.items()) if b is not None]
        if blobs:
            ckpt = manager.add(blobs, metrics)
            metrics["checkpoint_dir_name"] = os.path.basename(ckpt.path)
        self._record(metrics, manager.run_dir)
        return bool(blobs)


def _fresh_dir(path: str) -> str:
    """``path``, or ``path_1``, ``path_2``... when a run already lives there (never mixed)."""
    candidate, n = path, 0
    while os.path.exists(candidate) and os.listdir(candidate):
        n += 1
        candidate = f"{path}_{n}"
    return candidate
