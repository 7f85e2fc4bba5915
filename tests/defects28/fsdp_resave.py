"""One rank: save a sharded FSDP checkpoint (extra={"step": 1}), then re-save it (step 2)
and SIGKILL this process at the point named by argv[2]; "none" lets the re-save finish.

Kill points: "shard" (shards written, no index), "index" (complete, not yet moved into
place), "aside" (no atomic exchange: old checkpoint renamed aside, new one not yet in place).
"""

from __future__ import annotations

import os
import signal
import sys

import ember
import ember.distributed as dist
from ember import nn
from ember.distributed.fsdp import FullyShardedDataParallel as FSDP
from ember.distributed.fsdp import _swap, checkpoint


def _die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    out, point = sys.argv[1], sys.argv[2]
    dist.init_process_group()
    ember.manual_seed(0)
    model = FSDP(nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2)))
    checkpoint.save_sharded_checkpoint(out, model, extra={"step": 1})
    with ember.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    if point == "shard":
        save = checkpoint.ember.save
        checkpoint.ember.save = lambda *a, **k: (save(*a, **k), _die())
    elif point == "index":
        _swap.install = _die
    elif point == "aside":
        _swap.exchange = lambda a, b: False
        rename = os.rename

        def rename_then_die(src, dst):
            rename(src, dst)
            if dst.endswith(".old"):
                _die()

        _swap.os.rename = rename_then_die
    checkpoint.save_sharded_checkpoint(out, model, extra={"step": 2})
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
