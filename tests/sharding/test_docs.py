"""The runnable examples of docs/sharding.md run (two real ranks; mixed precision on one)."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_docs_example_runs(tmp_path):
    text = (ROOT / "docs" / "sharding.md").read_text()
    code = re.findall(r"```python\n(.*?)```", text, flags=re.S)[0]
    script = tmp_path / "sharding_example.py"
    script.write_text(code)
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "optimizer state" in proc.stdout and "0.bias" in proc.stdout


def test_docs_mixed_precision_example_runs(tmp_path):
    text = (ROOT / "docs" / "sharding.md").read_text()
    code = re.findall(r"```python\n(.*?)```", text, flags=re.S)[1]
    assert "MixedPrecision" in code
    script = tmp_path / "mixed_precision_example.py"
    script.write_text(code)
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split("\n")[0] == "ember.bfloat16 {ember.float32} {ember.float32}"
