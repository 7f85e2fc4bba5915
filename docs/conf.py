"""Sphinx configuration of ember's documentation site: the guides in docs/*.md and an API
reference generated from the docstrings.

Build it (warnings are errors, so a public name without a docstring or a broken cross-reference
fails the build)::

    pip install -e ".[docs]"
    sphinx-build -W --keep-going -b html docs docs/_build/html

The API reference covers exactly the namespaces in ``API_NAMESPACES``; extending it to another
namespace is one line there, once every public name of that namespace has a docstring. A public
constant's docstring is the ``#:`` comment above its assignment (in whichever ember module makes
it).
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import textwrap
import typing

from sphinx.domains.python import PythonDomain
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
# Not here: ember.backends (only submodules of flags), ember.distributed.elastic (ember has none).
API_NAMESPACES = [
    "ember",
    "ember.autograd",
    "ember.autograd.functional",
    "ember.autograd.graph",
    "ember.autograd.forward_ad",
    "ember.amp",
    "ember.cuda",
    "ember.linalg",
    "ember.fft",
    "ember.special",
    "ember.sparse",
    "ember.overrides",
    "ember.signal.windows",
    "ember.random",
    "ember.quasirandom",
    "ember.testing",
    "ember.distributions",
    "ember.distributions.constraints",
    "ember.distributions.transforms",
    "ember.nn",
    "ember.nn.functional",
    "ember.nn.init",
    "ember.nn.utils",
    "ember.nn.utils.rnn",
    "ember.nn.utils.parametrize",
    "ember.nn.utils.parametrizations",
    "ember.nn.parallel",
    "ember.optim",
    "ember.optim.lr_scheduler",
    "ember.optim.swa_utils",
    "ember.utils.data",
    "ember.utils.checkpoint",
    "ember.utils.tensorboard",
    "ember.hub",
    "ember.profiler",
    "ember.func",
    "ember.fx",
    "ember.export",
    "ember.jit",
    "ember.onnx",
    "ember.ao.quantization",
    "ember.distributed",
    "ember.distributed.train",
    "ember.distributed.fsdp",
    "ember.distributed.tensor",
    "ember.distributed.tensor.parallel",
    "ember.distributed.pipelining",
    "ember.distributed.checkpoint",
    "ember.distributed.optim",
    "ember.distributed.algorithms.join",
    "ember.distributed.nn",
    "ember.distributed.nn.functional",
    "ember.serve",
    "ember.models",
    "ember.vision",
    "ember.vision.transforms",
    "ember.vision.transforms.v2",
    "ember.vision.transforms.functional",
    "ember.vision.models",
    "ember.vision.models.quantization",
    "ember.vision.models.video",
    "ember.vision.models.optical_flow",
    "ember.vision.models.feature_extraction",
    "ember.vision.datasets",
    "ember.backends",
    "ember.backends.cpu",
    "ember.backends.cuda",
    "ember.backends.cudnn",
    "ember.backends.mkldnn",
    "ember.backends.mps",
    "ember.backends.openmp",
    "ember.backends.opt_einsum",
    "ember.utils.data.datasets",
    "ember.utils.benchmark",
    "ember.utils.hooks",
    "ember.nn.utils.prune",
    "ember.distributed.elastic.multiprocessing.errors",
    "ember.nested",
    "ember.library",
    "ember.nn.attention",
    "ember.nn.attention.flex_attention",
    "ember.nn.attention.bias",
    "ember.futures",
    "ember.distributed.rpc",
    "ember.distributed.rpc.functions",
    "ember.distributed.autograd",
    "ember.utils.flop_counter",
    "ember.utils.module_tracker",
    "ember.utils.dlpack",
    "ember.utils.weak",
    "ember.mps",
    "ember.xpu",
    "ember.fx.experimental.proxy_tensor",
]

# Documented by a hand-written page (api/tensor.rst), not by the generated one.
_HAND_WRITTEN = {"ember.Tensor", "ember.Size"}

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
    # a public name inside a private module (a type hint's ember.distributed._runtime._opctx.X)
    (r"py:.*", r"ember\.(\w+\.)*_\w+\..*"),
    (r"py:.*", r"ember\..*\.T(_co|_contra)?"),
]
# Referenced from covered pages but not yet documented anywhere (known gaps, to remove as they
# get a page): torch has them as torch.utils.hooks.RemovableHandle and
# torch.fx.subgraph_rewriter.Match.
nitpick_ignore = [
    ("py:class", "ember.optim._step_hooks.RemovableHandle"),
    ("py:class", "ember.fx.subgraph_rewriter.Match"),
    # the namedtuple base of PackedSequence, shown by show-inheritance
    ("py:class", "ember.nn.utils.rnn.PackedSequence_"),
    # the v2 helpers' return types (get_bounding_boxes, get_keypoints): ember.vision.tv_tensors
    # has no API page yet (docs/vision.md describes it)
    ("py:class", "ember.vision.tv_tensors.BoundingBoxes"),
    ("py:class", "ember.vision.tv_tensors.KeyPoints"),
]

# Public names a namespace serves lazily from its module ``__getattr__``: dir() does not list
# them, so public_names() would miss them (``ember.compile`` imports the compiler on first use).
_LAZY_PUBLIC = {"ember": ["compile"]}

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
        names += [n for n in _LAZY_PUBLIC.get(modname, []) if n not in names]
    # An underscore name in __all__ is PyTorch's too (flex_attention's _score_mod_signature, a
    # type alias): private all the same, with no page.
    return [n for n in names if not n.startswith("_") and not inspect.ismodule(getattr(mod, n))]


def _home_namespaces() -> dict[int, str]:
    """For each class public in several covered namespaces (``ember.distributed.Trainer`` is
    ``ember.distributed.train.Trainer``), the one namespace that documents it in full: the
    longest that contains the module defining it, else the first listed. Documenting a class
    twice registers its canonical name twice, which Sphinx reports as a duplicate."""
    seen: dict[int, list[tuple[str, str]]] = {}
    for modname in API_NAMESPACES:
        mod = importlib.import_module(modname)
        for name in public_names(modname):
            obj = getattr(mod, name)
            if inspect.isclass(obj):
                seen.setdefault(id(obj), []).append((modname, obj.__module__))
    home = {}
    for key, places in seen.items():
        owners = [m for m, defined in places if (defined + ".").startswith(m + ".")]
        home[key] = max(owners, key=len) if owners else places[0][0]
    return home


def _data_doc(modname: str, name: str, obj) -> str | None:
    """The documentation comment (``#:`` above, or a string below the assignment) of the data
    ``obj`` public as ``modname.name``, from whichever ember module (or module of ``modname``)
    binds it under that name. autodoc
    looks only in the module it is told, and for an object without its own docstring (a dict,
    a timedelta) it shows the type's docstring, so the gate would pass on ``dict``'s."""
    from sphinx.errors import PycodeError
    from sphinx.pycode import ModuleAnalyzer

    # An object (not a plain value) may be documented under another name: ember.bool is
    # ember.backend.dtype.bool_.
    by_identity = not isinstance(obj, (int, float, str, bytes, tuple, type(None)))
    # Modules most likely to define it first (the module of its class, the namespace itself):
    # parsing every module that imports ember.float32 takes seconds.
    first = [getattr(type(obj), "__module__", ""), modname]
    modules = [(m, sys.modules.get(m)) for m in first] + list(sys.modules.items())
    for defining, mod in modules:
        if mod is None or not (
            defining.startswith("ember.") or (defining + ".").startswith(modname + ".")
        ):
            continue
        if getattr(mod, name, None) is obj:
            names = [name]
        elif by_identity:
            names = [k for k, v in list(vars(mod).items()) if v is obj]
        else:
            continue
        if not names:
            continue
        try:
            docs = ModuleAnalyzer.for_module(defining).find_attr_docs()
        except PycodeError:
            continue
        for key in names:
            lines = docs.get(("", key))
            if lines and any(line.strip() for line in lines):
                return "\n".join(lines)
    return None


def _write_api_pages(app) -> None:
    """One page per namespace of ``API_NAMESPACES``, written into the gitignored api/_generated."""
    os.makedirs(_GENERATED, exist_ok=True)
    home = _home_namespaces()
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
            if f"{modname}.{name}" in _HAND_WRITTEN:
                continue
            if inspect.isclass(obj) and home.get(id(obj), modname) != modname:
                # Documented in full on its home page; this name stays a reference target.
                parts.append(
                    f".. py:class:: {name}\n   :module: {modname}\n\n"
                    f"   The same class as :class:`{home[id(obj)]}.{name}`.\n"
                )
            elif inspect.isclass(obj):
                parts.append(f".. autoclass:: {modname}.{name}\n   :members:\n")
            elif callable(obj):
                parts.append(f".. autofunction:: {modname}.{name}\n")
            else:
                doc = _data_doc(modname, name, obj)
                if doc is None:
                    _logger.warning(
                        "data %s.%s has no docstring (a #: comment above its assignment)",
                        modname,
                        name,
                        type="ember",
                        subtype="nodoc",
                    )
                    doc = ""
                body = textwrap.indent(doc, "   ")
                parts.append(f".. py:data:: {name}\n   :module: {modname}\n\n{body}\n")
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
    covered = parent in API_NAMESPACES or parent == "ember.Tensor"  # and its methods (api/tensor)
    if what != "module" and covered and not any(s.strip() for s in lines):
        _logger.warning("%s %s has no docstring", what, name, type="ember", subtype="nodoc")


def _ignore_type_variables(app, domain, node) -> bool | None:
    """A type hint naming a TypeVar (``ember.nn.utils.fusion.ConvT``) is not a broken
    reference: type variables have no page. Returning True silences the warning."""
    modname, _, attr = node.get("reftarget", "").rpartition(".")
    if not modname.startswith("ember"):
        return None
    try:
        obj = getattr(importlib.import_module(modname), attr)
    except (ImportError, AttributeError):
        return None
    return True if isinstance(obj, typing.TypeVar) else None


class _IndexedPythonDomain(PythonDomain):
    """Sphinx's Python domain with an index for its "fuzzy" lookups.

    A type in a field list (``:type x: int``, from ``autodoc_typehints = "description"``) is
    looked up in search mode 1; a name that is not ``module.name`` (``int``, ``Tensor``) then
    scans every registered object for a ``.name`` suffix: ~4,900 objects for each of ~13,800
    such references, 10-20 % of the build's CPU time. Every name search mode 1
    reads ends with ``.name`` (or is ``name``), so answering it from only those objects, in
    their registration order, gives the same matches.
    """

    _narrowed: dict | None = None
    _index: dict | None = None
    _indexed_len = -1

    @property
    def objects(self) -> dict:
        if self._narrowed is not None:
            return self._narrowed
        return self.data.setdefault("objects", {})

    def _ending_with(self, name: str) -> dict:
        everything = self.data.setdefault("objects", {})
        if self._index is None or self._indexed_len != len(everything):
            self._index = {}
            for fullname, entry in everything.items():
                last = fullname.rpartition(".")[2]
                self._index.setdefault(last, {})[fullname] = entry
            self._indexed_len = len(everything)
        suffix = "." + name
        same_last = self._index.get(name.rpartition(".")[2], {})
        return {k: v for k, v in same_last.items() if k == name or k.endswith(suffix)}

    def find_obj(self, env, modname, classname, name, type, searchmode=0):
        if searchmode != 1 or not name:
            return super().find_obj(env, modname, classname, name, type, searchmode)
        self._narrowed = self._ending_with(name.removesuffix("()"))
        try:
            return super().find_obj(env, modname, classname, name, type, searchmode)
        finally:
            self._narrowed = None


def setup(app):
    app.add_domain(_IndexedPythonDomain, override=True)
    app.connect("builder-inited", _write_api_pages)
    app.connect("autodoc-process-docstring", _require_docstring)
    app.connect("warn-missing-reference", _ignore_type_variables)
    return {"parallel_read_safe": True}
