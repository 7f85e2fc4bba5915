"""The snippets of docs/profiling.md and docs/checkpointing.md run as written."""

from __future__ import annotations

import pathlib
import re

import pytest

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs"


@pytest.mark.parametrize("name", ["profiling.md", "checkpointing.md"])
def test_snippets_run(name, capsys):
    blocks = re.findall(r"```python\n(.*?)```", (DOCS / name).read_text(), re.S)
    assert blocks
    for code in blocks:
        exec(compile(code, name, "exec"), {})
    if name == "profiling.md":
        out = capsys.readouterr().out
        assert "ember::linear" in out and "Self CPU time total" in out
