"""The example in docs/trainer.md runs as written."""

import pathlib
import re

import pytest

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "trainer.md"

pytestmark = pytest.mark.usefixtures("ray_session")


def test_docs_example_runs(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert blocks, "docs/trainer.md lost its example"
    monkeypatch.chdir(tmp_path)
    exec(compile(blocks[0], "docs/trainer.md[python block 0]", "exec"), {"__name__": "__doc__"})
