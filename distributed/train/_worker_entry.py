"""What each Trainer worker actor runs: ``_worker_main`` sets up the worker's session, device
and process group, then calls the user's training function (``trainer.py`` ships it to every
rank of the worker group)."""

from __future__ import annotations

import inspect
import os

from ._internal.hang_watch import Beacon, interval_for


def _worker_main(
    fn,
    config,
    inbox,
    ckpt_ref,
    backend,
    strategy,
    trial_dir,
    name,
    timeout,
    datasets=None,
    hang_timeout=None,
):
    """Runs inside each worker actor: session, process group, then the user's function."""
    import ray

    import ember.distributed as dist

    from . import session

    env = os.environ
    ctx = session.TrainContext(
        int(env["RANK"]),
        int(env["LOCAL_RANK"]),
        int(env["WORLD_SIZE"]),
        int(env["LOCAL_WORLD_SIZE"]),
        int(env["NODE_RANK"]),
        trial_dir,
        name,
    )
    blob = ray.get(ckpt_ref[0]) if ckpt_ref else None
    sess = session._Session(ctx, inbox, blob, 0)
    sess.strategy = strategy
    sess.datasets = datasets or {}  # this rank's DataIterators (get_dataset_shard)
    session._activate(sess)
    from datetime import timedelta

    from .prepare import use_worker_device

    use_worker_device()  # the worker's GPU is CuPy's current device, as in Ray Train
    if backend is not None:
        dist.init_process_group(
            backend=backend, init_method="env://", timeout=timedelta(seconds=timeout)
        )
    beacon = None
    if hang_timeout is not None:
        # from here on (a rank hung in the rendezvous is the rendezvous watch's to report)
        beacon = Beacon(inbox, ctx.get_world_rank(), interval_for(hang_timeout)).start()
    try:
        if len(inspect.signature(fn).parameters) == 0:
            return fn()
        return fn(config if config is not None else {})
    finally:
        if beacon is not None:
            beacon.stop()
        session._activate(None)
        sess.close()
        if backend is not None and dist.is_initialized():
            dist.destroy_process_group()
