"""Every module imports, every package is listed in pyproject, and core stays light."""

import importlib
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
MAPPING = {
    "core": "ember",
    "distributed": "ember.distributed",
    "launcher": "ember.launcher",
    "protos": "ember.protos",
    "serve": "ember.serve",
    "models": "ember.models",
    "vision": "ember.vision",
}


def _packages():
    out = []
    for folder, name in MAPPING.items():
        for init in sorted((ROOT / folder).rglob("__init__.py")):
            rel = init.parent.relative_to(ROOT / folder)
            out.append(".".join([name, *rel.parts]) if rel.parts else name)
    return out


def _modules():
    out = []
    for folder, name in MAPPING.items():
        for py in sorted((ROOT / folder).rglob("*.py")):
            rel = py.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out.append(".".join([name, *parts]))
    return out


def test_every_package_is_listed_in_pyproject():
    try:
        import tomllib
    except ImportError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    missing = [p for p in _packages() if p not in listed]
    assert not missing, f"add these packages to pyproject.toml: {missing}"


@pytest.mark.parametrize("module", _modules())
def test_module_imports(module):
    importlib.import_module(module)


def test_import_ember_does_not_import_ray_or_grpc():
    code = (
        "import sys, ember; bad = [m for m in ('ray', 'grpc', 'torch', 'ember.distributed') "
        "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_test_module_basenames_are_unique():
    # test folders are not packages: two test files with one basename break collection
    names = [p.name for p in (ROOT / "tests").rglob("test_*.py")]
    dupes = sorted({n for n in names if names.count(n) > 1})
    assert not dupes, f"rename these test files (same basename in two folders): {dupes}"
