"""The example of docs/fx.md runs as written."""

import pathlib
import re

DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "fx.md"


def test_fx_docs_example_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) == 1, "docs/fx.md lost its example"
    exec(compile(blocks[0], "docs/fx.md[python block 0]", "exec"), {"__name__": "__doc__"})
    out = capsys.readouterr().out
    assert "fc1 = self.fc1(x)" in out and "relu = ember.nn.functional.relu(fc1)" in out
    assert "('fc1', (2, 16)), ('fc2', (2, 4))" in out
