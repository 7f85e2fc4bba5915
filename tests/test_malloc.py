"""``import ember`` tunes glibc's malloc so a training step reuses memory instead of re-faulting
it (core/backend/_malloc.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

_PROBE = """
import resource, numpy as np
import ember
from ember.backend import _malloc
x = np.ones(1 << 20, dtype=np.float32)
def step():
    a = x * 2.0  # 4 MiB temporaries, freed every step, as activations are
    b = a + x
    return float(b[0])
step()
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):
    step()
print(_malloc.applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
"""


def _probe(env_extra: dict) -> tuple[str, int]:
    env = {**os.environ, **env_extra}
    out = subprocess.run(
        [sys.executable, "-c", _PROBE],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    ).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_steps_stop_faulting_and_the_tuning_can_be_turned_off():
    applied, faults = _probe({})
    assert applied == "True" and faults < 50  # untuned: ~2,000 per 50 steps (2 x 4 MiB each)
    applied, faults_off = _probe({"EMBER_MALLOC_TUNING": "0"})
    assert applied == "False" and faults_off > 10 * max(faults, 1)
