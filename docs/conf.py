"""Sphinx configuration of ember's documentation site: the guides in docs/*.md and an API
reference generated from the docstrings.

Build it (warnings are errors, so a public name without a docstring or a broken cross-reference
fails the build)::

    pip install -e ".[docs]"
    sphinx-build -W --keep-going -b html docs docs/_build/html

The API reference covers exactly the namespaces in ``API_NAMESPACES``; extending it to another
namespace is one line there, once every public name of that namespace has a docstring.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys

from sphinx.util import logging

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(_HERE))

project = "ember"
author = "ember contributors"
copyright = "ember contributors"  # noqa: A001  (Sphinx's name)

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "**/__pycache__"]
html_theme = "alabaster"
myst_heading_anchors = 3

# The namespaces the API reference documents, and so the namespaces the docstring gate checks.
# Each one builds clean: every public name has a docstring and every reference resolves.
# Not yet here (public names without a docstring, counted 2026-12-05): ember (333 of 593),
# ember.distributed (10), ember.distributed.train (1),
# ember.ao.quantization (7), ember.models (3, and CONFIG_MAPPING shows dict's docstring).

API_NAMESPACES = [
    "ember.nn",
    "ember.nn.functional",
    "ember.optim",
    "ember.utils.data",
    "ember.func",
    "ember.fx",
    "ember.export",
    "ember.jit",
    "ember.onnx",
    "ember.serve",
    "ember.vision",
]

# EMBER_DOCS_NAMESPACES="ember.fx,ember.jit" builds those only (a quick look at one page).
if os.environ.get("EMBER_DOCS_NAMESPACES"):
    API_NAMESPACES = os.environ["EMBER_DOCS_NAMESPACES"].split(",")

# The docs build imports ember only; nothing here may pull in torch.
autodoc_default_options = {"undoc-members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = True
napoleon_use_rtype = False

# A reference that does not resolve is a warning, and so an error under -W. Checked: every
# reference to an ``ember.*`` name. Not checked: names outside ember (Python's and NumPy's: the
# build runs offline, without their intersphinx inventories), private names (``_Loss`` as a
# base class), type variables, and the prose types of Google-style "Args" (``int, optional``).
nitpicky = True
# "More than one target" is not a broken reference: ``Tensor`` in a signature finds both
# ``ember.Tensor`` and its canonical name ``ember.tensor.Tensor``, the same class.
suppress_warnings = ["ref.python"]
nitpick_ignore_regex = [
    (r"py:.*", r"(?!ember\.).*"),
    (r"py:.*", r".*\._\w*"),
    (r"py:.*", r"ember\..*\.T(_co|_contra)?"),
]
# Referenced from covered pages but not yet documented anywhere (known gaps, to remove as they
# get a page): torch has them as torch.utils.hooks.RemovableHandle and
# torch.fx.subgraph_rewriter.Match.
nitpick_ignore = [
    ("py:class", "ember.optim._step_hooks.RemovableHandle"),
    ("py:class", "ember.fx.subgraph_rewriter.Match"),
]

_GENERATED = os.path.join(_HERE, "api", "_generated")
_logger = logging.getLogger("ember.docs")


def public_names(modname: str) -> list[str]:
    """The public names of ``modname``: its ``__all__``, else the non-underscore attributes that
    its own modules define; submodules excluded (they get their own page when listed)."""
    mod = importlib.import_module(modname)
    names = getattr(mod, "__all__", None)
    if names is None:
        names = []
        for name in dir(mod):
            obj = getattr(mod, name)
            if name.startswith("_") or inspect.ismodule(obj):
                continue
            # Without __all__, dir() also shows what the module imported (typing, numpy,
            # ember.Tensor ...): keep what this namespace's own modules define.
            if ((getattr(obj, "__module__", None) or "") + ".").startswith(modname + "."):
                names.append(name)
    return [n for n in names if not inspect.ismodule(getattr(mod, n))]


def _write_api_pages(app) -> None:
    """One page per namespace of ``API_NAMESPACES``, written into the gitignored api/_generated."""
    os.makedirs(_GENERATED, exist_ok=True)
    wanted = set()
    for modname in API_NAMESPACES:
        title = f"``{modname}``"
        mod = importlib.import_module(modname)
        # One directive per public name: automodule's :members: with :imported-members: also
        # pulls in names the list does not have (Sphinx 9 documented ember.Tensor under
        # ember.nn.functional).
        parts = [f"{title}\n{'=' * len(title)}\n\n.. automodule:: {modname}\n"]
        for name in public_names(modname):
            obj = getattr(mod, name)
            if inspect.isclass(obj):
                parts.append(f".. autoclass:: {modname}.{name}\n   :members:\n")
            elif callable(obj):
                parts.append(f".. autofunction:: {modname}.{name}\n")
            else:
                parts.append(f".. autodata:: {modname}.{name}\n")
        text = "\n".join(parts)
        path = os.path.join(_GENERATED, modname + ".rst")
        wanted.add(path)
        # Rewrite only on change, so an incremental build re-reads only what changed.
        if not os.path.exists(path) or open(path).read() != text:
            with open(path, "w") as f:
                f.write(text)
    for stale in os.listdir(_GENERATED):
        if os.path.join(_GENERATED, stale) not in wanted:
            os.remove(os.path.join(_GENERATED, stale))


def _require_docstring(app, what, name, obj, options, lines) -> None:
    """The gate: a public name of a covered namespace without a docstring is a warning."""
    parent = name.rpartition(".")[0]
    if what != "module" and parent in API_NAMESPACES and not any(s.strip() for s in lines):
        _logger.warning("%s %s has no docstring", what, name, type="ember", subtype="nodoc")


def setup(app):
    app.connect("builder-inited", _write_api_pages)
    app.connect("autodoc-process-docstring", _require_docstring)
    return {"parallel_read_safe": True}
