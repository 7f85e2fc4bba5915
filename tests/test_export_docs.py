"""Run the snippet of docs/export.md."""

from __future__ import annotations

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_docs_snippet_runs():
    with open(os.path.join(ROOT, "docs", "export.md")) as f:
        code = re.findall(r"```python\n(.*?)```", f.read(), re.S)[0]
    exec(compile(code, "docs/export.md", "exec"), {"__name__": "docs_export"})
