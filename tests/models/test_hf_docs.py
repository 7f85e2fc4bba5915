"""The example of docs/models.md runs as written."""

import pathlib
import re

import pytest

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "models.md"


def test_models_docs_example_runs(capsys):
    pytest.importorskip("tokenizers")
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) == 1, "docs/models.md lost its example"
    scope = {"__name__": "__doc__"}
    exec(compile(blocks[0], "docs/models.md[python block 0]", "exec"), scope)
    assert tuple(scope["ids"].shape) == (2, 7) and tuple(scope["sampled"].shape) == (2, 7)
    assert scope["loss"].item() > 0
    printed = capsys.readouterr().out
    assert "DynamicCache(layers=2, seq_length=3)" in printed
