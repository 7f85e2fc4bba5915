"""Chaos: SIGKILL in the middle of ``ember.save``, several times in a row.

After every kill the file loads, bit for bit, as the last version whose save finished; the next
save removes every temp file the killed writers left (safetensors' own ``.tmpXXXXXX`` included:
it is written inside the writer's private ``.partial`` directory). CI runs three kills while the
file is being written (16 MiB, ~2 s); kills at random points of a larger save carry ``full``.
See savekill.py and benchmarks/chaos.py, which prints the table in docs/failure_modes.md.
"""

from __future__ import annotations

import os

import pytest
from savekill import run_save_kills


def test_kills_while_writing_keep_previous_and_leak_nothing():
    out = run_save_kills(kills=3, size_mb=16, when="writing")
    assert out.errors == []
    assert out.mid_save == 3  # every kill hit a save in progress
    assert out.versions == [0, 0, 0] and out.unloadable == 0
    assert out.stale_after_kills > 0  # the killed writers did leave temp files...
    assert out.leaked_bytes == 0  # ...and the next save removed them all


@pytest.mark.full
@pytest.mark.parametrize("seed", [0, 1])
def test_kills_at_random_points(seed):
    out = run_save_kills(kills=10, size_mb=128, seed=seed)
    assert out.errors == [] and out.unloadable == 0
    assert out.leaked_bytes == 0
    assert out.versions == sorted(out.versions)  # never back to an older version


def test_docs_snippet_runs():
    path = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "failure_modes.md")
    section = open(path).read().split("## Chaos suite", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(code, "docs/failure_modes.md", "exec"), {})
