"""The one-process example of docs/gpu.md runs as written (on the CPU where there is no GPU)."""

import pathlib
import re

DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "gpu.md"


def test_gpu_docs_example_runs(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) == 3, "docs/gpu.md lost an example"
    monkeypatch.chdir(tmp_path)
    exec(compile(blocks[0], "docs/gpu.md[python block 0]", "exec"), {"__name__": "__doc__"})
    loss, device = capsys.readouterr().out.split()
    assert float(loss) > 0 and device == "cpu"
