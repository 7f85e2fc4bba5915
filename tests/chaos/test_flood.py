"""Chaos: a local flood of silent connections and bad-token handshakes against a training job.

Two ranks train with DDP over the socket data plane; in alternate phases a local process holds
silent connections open on rank 0's data listener and on the store and opens bad-token
connections in a loop (``flood.py``). The flood must cost rank 0 (which hosts the store and is
attacked) at most 10 % of its training throughput in steps per CPU-second, the job must finish,
and its logs carry a bounded number of refusal lines (issue #28). CI runs a short case; the
longer, higher-rate one carries ``full``.
"""

from __future__ import annotations

import pytest
from flood import run_flood


# CI's short case guards against a gross regression (a thread per handshake measured 0.68-0.76
# here); the target, at most 10 % lost, is asserted on the longer case: on a machine shared with
# other jobs the CPU time of a 60-step phase moves by +-10 % on its own.
@pytest.mark.parametrize(
    "phases, steps, rate, floor",
    [(4, 60, 100.0, 0.75), pytest.param(8, 150, 100.0, 0.9, marks=pytest.mark.full)],
)
def test_flood_costs_at_most_ten_percent(phases, steps, rate, floor):
    for _attempt in range(2):  # CPU time per phase moves with the machine's other load: once more
        out = run_flood(phases=phases, steps=steps, silent=32, rate=rate, store_rate=5.0)
        assert out.returncodes == [0, 0], out.logs
        if out.cpu_ratio >= floor:
            break
    assert out.attempts > 0 and out.store_calls > 0  # the flood really ran
    # steps per CPU-second of rank 0, flooded phases against the quiet ones of the same run
    assert out.cpu_ratio >= floor, (out.quiet, out.flooded)
    # the first 10 refusals in full, then one counting line per minute at most (per process)
    assert 1 <= out.refusal_lines <= 2 * (10 + 2), out.logs
