"""``@record`` (``ember.distributed.elastic.multiprocessing.errors``): the error file it writes
has torch's layout, and real torchrun reports a decorated ember script's exception as the root
cause of the job's failure."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from ember.distributed.elastic.multiprocessing.errors import (
    ChildFailedError,
    ProcessFailure,
    record,
)


def _boom():
    raise ValueError("boom 42")


def test_error_file_has_torchs_layout(tmp_path, monkeypatch):
    torch_errors = pytest.importorskip("torch.distributed.elastic.multiprocessing.errors")
    files = {}
    for name, deco in (("ember", record), ("torch", torch_errors.record)):
        files[name] = tmp_path / f"{name}.json"
        monkeypatch.setenv("TORCHELASTIC_ERROR_FILE", str(files[name]))
        with pytest.raises(ValueError, match="boom 42"):
            deco(_boom)()
    got, want = (json.loads(files[k].read_text()) for k in ("ember", "torch"))
    assert got["message"]["message"] == want["message"]["message"] == "ValueError: boom 42"
    assert set(got["message"]["extraInfo"]) == set(want["message"]["extraInfo"])
    assert "in _boom" in got["message"]["extraInfo"]["py_callstack"]
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_exits_and_no_error_file(tmp_path, monkeypatch):
    monkeypatch.delenv("TORCHELASTIC_ERROR_FILE", raising=False)
    with pytest.raises(ValueError):
        record(_boom)()  # nothing to write to: re-raised only
    assert record(lambda: sys.exit(0))() is None
    monkeypatch.setenv("TORCHELASTIC_ERROR_FILE", str(tmp_path / "e.json"))
    with pytest.raises(SystemExit) as info:
        record(lambda: sys.exit(3))()
    assert info.value.code == 3 and not (tmp_path / "e.json").exists()
    failure = ChildFailedError(
        "train.py", {1: ProcessFailure(0, 11, 1), 0: ProcessFailure(0, 10, 2)}
    )
    assert failure.get_first_failure()[0] == 0 and "rank(s) 0, 1" in str(failure)


def test_torchrun_names_the_decorated_scripts_exception(tmp_path):
    torchrun = shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun (the parity extra) is not installed")
    script = tmp_path / "job.py"
    script.write_text(
        textwrap.dedent(
            """
            from ember.distributed.elastic.multiprocessing.errors import record

            @record
            def main():
                raise RuntimeError("the data shard is missing")

            main()
            """
        )
    )
    r = subprocess.run(
        [torchrun, "--nproc-per-node", "1", str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert r.returncode != 0
    root = r.stderr[r.stderr.index("Root Cause") :]
    assert "RuntimeError: the data shard is missing" in root, r.stderr[-3000:]
