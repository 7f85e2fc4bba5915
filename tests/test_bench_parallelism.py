"""benchmarks/parallelism.py: the smallest run's table, and measured wire bytes = the formulas."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "parallelism.py"
COLUMNS = [
    "size",
    "strategy",
    "params",
    "step ms",
    "mem MiB/rank",
    "wire KiB/rank",
    "analytical KiB",
    "meas/anal",
]


def _run(*argv: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(_PATH), *argv], capture_output=True, text=True, timeout=timeout
    )


def test_tiny_dp_and_pp_on_one_host(tmp_path):
    out = tmp_path / "rows.json"
    r = _run("--size", "tiny", "--strategies", "dp,pp", "--steps", "1", "--json", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(out.read_text())
    assert res["columns"] == COLUMNS
    assert [row[:3] for row in res["rows"]] == [["tiny", "dp", 265344], ["tiny", "pp", 265344]]
    header = next(line for line in r.stdout.splitlines() if line.startswith("| size"))
    assert [c.strip() for c in header.strip("|").split("|")] == COLUMNS
    for row in res["rows"]:
        assert float(row[3]) > 0 and float(row[4]) > 0
    (dp_sent, dp_anal), (pp_sent, pp_anal) = res["bytes"]
    # DDP: one allreduce per bucket (1 MiB first bucket, the rest in a second): each byte of
    # gradient crosses the wire 2(n-1)/n = 1.5 times
    assert dp_sent == dp_anal == pytest.approx(1.5 * 4 * 265344, rel=0.01)
    # 1F1B: each of 3 cuts sends the activations (16 x 32 x 64 float32) forward and the
    # gradients back, plus one 512-byte shape header; mean over 4 ranks
    assert pp_sent == pp_anal == (2 * 3 * 16 * 32 * 64 * 4 + 3 * 512) / 4
    # memory per rank: DDP keeps parameters, gradients and Adam's two moments whole (16 bytes
    # per parameter); a pipeline stage keeps its own parameters only
    dp_mem, pp_mem = (float(row[4]) for row in res["rows"])
    assert dp_mem == pytest.approx(16 * 265344 / 2**20, abs=0.01)
    assert pp_mem < dp_mem / 2


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--size", "huge"], "invalid choice: 'huge' (choose from tiny, small, medium"),
        (["--strategies", "dp,zero"], "invalid choice: 'zero' (choose from dp, fsdp, tp, pp"),
        (["--microbatches", "3"], "--microbatches 3 does not divide size tiny's batch of 16"),
        (["--steps", "0"], "must be >= 1, got 0"),
    ],
)
def test_bad_arguments_one_line(argv, message):
    r = _run(*argv, timeout=60)
    assert r.returncode == 2
    assert message in r.stderr.strip().splitlines()[-1]


def test_analytical_formulas():
    sys.path.insert(0, str(_PATH.parent))
    try:
        import parallelism as bench
    finally:
        sys.path.remove(str(_PATH.parent))
    # buckets: reverse order, 1 MiB first, closing before an overflow
    mib = 1 << 20
    assert bench.ddp_buckets([mib // 2, mib // 2, mib // 4, mib // 2]) == [mib // 2 + mib // 4, mib]
    # small buffers go directly to every peer, large ones round the ring
    assert bench.allreduce_bytes(64 << 10, 4) == 3 * (64 << 10)
    assert bench.allreduce_bytes(1 << 20, 4) == 1.5 * (1 << 20)
    # 2 hosts x 2 ranks: reduce to the host leader, allreduce the leaders, broadcast
    assert bench.allreduce_bytes(1 << 20, 4, hosts=2) == 1.75 * (1 << 20)
    assert bench.allreduce_bytes(1 << 10, 4, hosts=2) == 1.5 * (1 << 10)
    cfg = bench.SIZES["tiny"]
    act = 16 * 32 * 64 * 4
    assert bench.analytical("tp", cfg, [4] * 10) == 6 * 4 * 1.5 * act
    # the dp allreduces of tp x dp carry each rank's local pieces: n = 2 sends each once
    assert bench.analytical("tpdp", cfg, [], [100, 200 << 10]) == 6 * 4 * act / 2 + 100 + (
        200 << 10
    )
