"""``ember launch`` end to end: real Ray, real worker processes."""

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.slow


def _launch(tmp_path, body, *args, timeout=180):
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent(body))
    cmd = [sys.executable, "-m", "ember.launcher.cli", "launch", *args, str(script)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=tmp_path)


def test_launch_sets_torchrun_variables_prefixes_output_and_exits_with_the_failing_code(
    tmp_path,
):
    # One launch checks both outcomes (each launch starts its own Ray: ~15 s): every rank sees
    # the torchrun variables and its lines come back prefixed; then rank 1 fails and its exit
    # code becomes the job's. Rank 1 fails only once rank 0 has printed and finished, so rank
    # 0's line is not lost to the stopping of the other workers.
    done = tmp_path / "rank0_done"
    r = _launch(
        tmp_path,
        f"""
        import os, sys, time
        keys = ["RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "NODE_RANK",
                "MASTER_ADDR", "MASTER_PORT"]
        print(" ".join(f"{{k}}={{os.environ[k]}}" for k in keys), flush=True)
        if os.environ["RANK"] == "0":
            open({str(done)!r}, "w").close()
            sys.exit(0)
        deadline = time.monotonic() + 120
        while not os.path.exists({str(done)!r}) and time.monotonic() < deadline:
            time.sleep(0.05)
        sys.exit(7)
    """,
        "--workers",
        "2",
    )
    assert r.returncode == 7, r.stdout + r.stderr
    assert "rank 1 exited with code 7" in r.stderr
    lines = sorted(line for line in r.stdout.splitlines() if line.startswith("[rank"))
    assert len(lines) == 2, r.stdout
    assert lines[0].startswith("[rank0]: RANK=0 LOCAL_RANK=0 WORLD_SIZE=2 LOCAL_WORLD_SIZE=2")
    assert lines[1].startswith("[rank1]: RANK=1 LOCAL_RANK=1 WORLD_SIZE=2")


def test_launch_rejects_bad_arguments(tmp_path):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "ember.launcher.cli",
            "launch",
            "--workers",
            "2",
            "--nnodes",
            "2",
            "x.py",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode != 0 and "either --workers or --nnodes" in r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "ember.launcher.cli", "launch", "missing.py"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert r.returncode != 0 and "script not found: missing.py" in r.stderr
