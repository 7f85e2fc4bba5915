"""Chaos: three SIGKILLs of a worker at random points of one Trainer run (2 workers, a
checkpoint every epoch, resumed with ``get_checkpoint`` and ``sampler.set_epoch``): the run
recovers each time and ends with the weights of an uninterrupted run, bit for bit, leaving no
``/dev/shm`` file and no temp file behind. A Ray job of ~8 restarts' length: ``full``; CI runs
the two-kill case of tests/train/test_recovery.py. See trainkill.py and benchmarks/chaos.py.
"""

from __future__ import annotations

import pytest
from trainkill import run_trainer_kills

pytestmark = [pytest.mark.usefixtures("ray_session"), pytest.mark.slow]


@pytest.mark.full
@pytest.mark.parametrize("seed", [0])
def test_three_kills_in_one_run_recover_bitwise(tmp_path, seed):
    out = run_trainer_kills(kills=3, seed=seed, workdir=str(tmp_path))
    assert len(set(out.kill_at)) == 3
    assert out.error is None, out.error
    assert out.epochs == [0, 1, 2, 3]
    assert out.bitwise_equal
    assert out.leaked_bytes == 0 and out.stray_files == []
