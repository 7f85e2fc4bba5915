"""The documentation site builds with warnings as errors: every public name of the namespaces in
``docs/conf.py``'s ``API_NAMESPACES`` has a docstring and every ``ember.*`` reference resolves."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import importlib.util
import inspect
import io
import os
import re
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("sphinx")
pytest.importorskip("myst_parser")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")


def _conf():
    """docs/conf.py as a module (its API_NAMESPACES, public_names and _data_doc)."""
    spec = importlib.util.spec_from_file_location("ember_docs_conf", os.path.join(DOCS, "conf.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _sphinx(srcdir: str, outdir: str, *extra: str, env=None) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "sphinx",
        "-W",
        "--keep-going",
        "-q",
        # Reading is parallel-safe (conf.py says so): on CI's 2 cores the 50 namespaces read
        # in about half the wall time.
        "-j",
        "auto",
        "-b",
        "dummy",
        *extra,
        srcdir,
        outdir,
    ]
    # The limit is for a hung build; under a loaded machine the full build takes minutes.
    return subprocess.run(cmd, capture_output=True, text=True, timeout=1200, env=env)


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
        __all__ = ["documented", "undocumented", "DOCUMENTED_VALUE", "UNDOCUMENTED_VALUE"]
        def documented(x):
            """Returns x; see :func:`ember.no_such_function`."""
            return x
        def undocumented(x):
            return x
        #: The documented constant.
        DOCUMENTED_VALUE = {"a": 1}
        UNDOCUMENTED_VALUE = {"b": 2}
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
    # Data: a #: comment is its docstring; without one the gate fails (autodoc would show
    # dict's docstring instead).
    assert "emberdocprobe.UNDOCUMENTED_VALUE has no docstring" in proc.stderr, proc.stderr[-2000:]
    assert "emberdocprobe.DOCUMENTED_VALUE has no docstring" not in proc.stderr


def _slot_doc(cls, name: str) -> str | None:
    """A slot's docstring: its value in a dict ``__slots__`` (what help() and Sphinx show)."""
    slots = getattr(cls, "__slots__", ())
    return slots.get(name) if isinstance(slots, dict) else None


def test_every_covered_public_name_has_a_docstring():
    # The gate without Sphinx's build: the names the reference lists, each with a docstring.
    conf = _conf()
    missing = []
    for modname in conf.API_NAMESPACES:
        mod = importlib.import_module(modname)
        for name in conf.public_names(modname):
            obj = getattr(mod, name)
            if inspect.isclass(obj) or callable(obj):
                doc = (obj.__doc__ or "").strip()
                # a dataclass's generated docstring is its signature, not documentation
                documented = bool(doc) and not (
                    dataclasses.is_dataclass(obj) and doc.startswith(f"{obj.__name__}(")
                )
            else:
                documented = conf._data_doc(modname, name, obj) is not None
            if not documented:
                missing.append(f"{modname}.{name}")
    import ember

    for name in dir(ember.Tensor):  # api/tensor.rst documents its public members too
        if not name.startswith("_") and not (inspect.getdoc(getattr(ember.Tensor, name)) or ""):
            if not (_slot_doc(ember.Tensor, name) or "").strip():
                missing.append(f"ember.Tensor.{name}")
    assert not missing, missing
    assert {"ember", "ember.linalg", "ember.distributed", "ember.models"} <= set(
        conf.API_NAMESPACES
    )


@pytest.mark.parametrize(
    "name, summary",
    [
        ("exp", "The exponential e^x of each element."),  # a generated unary op
        ("eq", "Elementwise ``input == other``."),  # a generated comparison
        ("special.bessel_j0", "The Bessel function of the first kind of order 0"),
        ("special.hermite_polynomial_h", "The physicists' Hermite polynomial H_n(x)"),
        ("add", "``input + alpha * other``"),  # written in place
    ],
)
def test_help_shows_the_docstring(name, summary):
    import pydoc

    import ember

    obj = ember
    for part in name.split("."):
        obj = getattr(obj, part)
    assert summary in pydoc.render_doc(obj, renderer=pydoc.plaintext)


def test_api_md_snippet_runs():
    text = open(os.path.join(DOCS, "api.md")).read()
    section = text[text.index("## The API reference") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "docs/api.md", "exec"), {})
    assert "Returns:" in out.getvalue() and "solution X of A X = B" in out.getvalue()
