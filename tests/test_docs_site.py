"""The documentation site builds with warnings as errors: every public name of the namespaces in
``docs/conf.py``'s ``API_NAMESPACES`` has a docstring and every ``ember.*`` reference resolves."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("sphinx")
pytest.importorskip("myst_parser")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")


def _sphinx(srcdir: str, outdir: str, *extra: str, env=None) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "sphinx",
        "-W",
        "--keep-going",
        "-q",
        "-b",
        "dummy",
        *extra,
        srcdir,
        outdir,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)


def test_api_reference_builds_without_warnings(tmp_path):
    # The API pages only, with the dummy builder (reads, resolves references, writes nothing):
    # the guides and the HTML writing double the time and are not what this gate checks.
    proc = _sphinx(
        DOCS, str(tmp_path), "-D", "root_doc=api/index", "-D", "exclude_patterns=_build,*.md"
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "WARNING" not in proc.stderr and "ERROR" not in proc.stderr, proc.stderr[-4000:]


def test_gate_fails_on_missing_docstring_and_broken_reference(tmp_path):
    # A namespace with an undocumented public function and a reference to an ember name that does
    # not exist: the same conf.py must fail on both.
    pkg = tmp_path / "pkg"
    (pkg / "emberdocprobe").mkdir(parents=True)
    (pkg / "emberdocprobe" / "__init__.py").write_text(
        textwrap.dedent('''
        """A probe namespace."""
        __all__ = ["documented", "undocumented"]
        def documented(x):
            """Returns x; see :func:`ember.no_such_function`."""
            return x
        def undocumented(x):
            return x
        ''')
    )
    src = tmp_path / "src"
    (src / "api").mkdir(parents=True)
    # The real conf.py, run from a scratch source dir (it writes the pages next to itself).
    (src / "conf.py").write_text(f"exec(open({os.path.join(DOCS, 'conf.py')!r}).read())\n")
    (src / "index.rst").write_text(
        "Probe\n=====\n\n.. toctree::\n   :glob:\n\n   api/_generated/*\n"
    )
    env = dict(
        os.environ,
        EMBER_DOCS_NAMESPACES="emberdocprobe",
        PYTHONPATH=os.pathsep.join([str(pkg), ROOT, os.environ.get("PYTHONPATH", "")]),
    )
    proc = _sphinx(str(src), str(tmp_path / "out"), env=env)
    assert proc.returncode != 0
    assert "emberdocprobe.undocumented has no docstring" in proc.stderr, proc.stderr[-2000:]
    assert "ember.no_such_function" in proc.stderr, proc.stderr[-2000:]
    assert "emberdocprobe.documented has no docstring" not in proc.stderr
