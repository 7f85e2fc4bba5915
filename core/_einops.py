"""einops on ember tensors: when ember's backend and layers reach einops (docs/einops.md).

einops finds the backend for a tensor in ``einops._backends.get_backend``: it walks the
subclasses of ``AbstractBackend`` and instantiates those whose ``framework_name`` is a key of
``sys.modules``. So ember's backend (``_einops_backend.EmberBackend``, ``framework_name =
"ember"``) only has to exist as a subclass once ``einops._backends`` has run. Defining it needs
einops itself, which costs ~30 ms to import, and ``import ember`` must not pay that when a
program never uses einops. Two cases, both handled by :func:`install` (called once by
``ember/__init__``):

* einops was imported before ember: ``einops._backends`` is in ``sys.modules`` and the
  subclass is defined at once.
* otherwise a finder at the front of ``sys.meta_path`` waits for ``einops._backends``: it asks
  the finders after it for the real spec and wraps its loader so that the subclass is defined
  right after the module has run (a post-import hook; einops has no registration call). For
  every other import the finder costs one string comparison and returns ``None``.

The same finder decides what ``einops.layers.torch`` is. That module imports the real
``torch`` and subclasses ``torch.nn.Module``; a real-torch program must keep getting exactly
that. The rule: ember serves its own layers (``_einops_layers``: ``Rearrange``, ``Reduce`` and
``EinMix`` on ``ember.nn.Module``) under that name only when the program is an ember program by
a test that cannot misfire for torch users: ``sys.modules["torch"]`` is ember itself, or
``torch`` is not installed. When real torch is installed and the program says
``import ember as torch``, it gets einops' torch layers; ember's ``Module`` adopts them where
they enter a model (attribute, ``Sequential``, ``ModuleList``, ``add_module``): see
:func:`adopt_torch_layer`. That import loads torch (seconds); ``einops.layers.ember``, which the
finder always serves (einops' own naming, ``einops.layers.<framework>``; einops has no such
module), gives ember's layers without it.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

from ._post_import import AfterExecLoader, spec_from_later_finders

_BACKENDS = "einops._backends"
_TORCH_LAYERS = "einops.layers.torch"
_EMBER_LAYERS = "einops.layers.ember"  # einops' naming: einops.layers.<framework>


def _register_backend() -> None:
    from . import _einops_backend  # noqa: F401  (defining the subclass is the registration)


def is_ember_program() -> bool:
    r"""True when ``einops.layers.torch`` should be ember's layers (see the module docstring)."""
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        return torch is None or torch is sys.modules.get("ember")
    return importlib.util.find_spec("torch") is None


class _EmberLayersLoader:
    """Makes ``einops.layers.torch`` a module of ember's ``Rearrange``, ``Reduce``, ``EinMix``."""

    def create_module(self, spec):
        return None  # the default module object

    def exec_module(self, module) -> None:
        from . import _einops_layers

        for name in _einops_layers.__all__:
            setattr(module, name, getattr(_einops_layers, name))
        module.__all__ = list(_einops_layers.__all__)


class _EinopsFinder:
    """A ``sys.meta_path`` finder that only answers for the einops modules named above."""

    @classmethod
    def find_spec(cls, fullname: str, path=None, target=None):
        if fullname == _BACKENDS:
            spec = spec_from_later_finders(cls, fullname, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = AfterExecLoader(spec.loader, lambda _module: _register_backend())
            return spec
        if fullname == _EMBER_LAYERS or (fullname == _TORCH_LAYERS and is_ember_program()):
            return importlib.util.spec_from_loader(fullname, _EmberLayersLoader())
        return None


def install() -> None:
    r"""Register ember with einops now (einops already imported) or when einops is imported."""
    if _BACKENDS in sys.modules:
        _register_backend()
    if _EinopsFinder not in sys.meta_path:
        sys.meta_path.insert(0, _EinopsFinder)


def adopt_torch_layer(value: Any) -> Any:
    r"""ember's twin of an einops layer built on real torch, or ``None`` for anything else.

    Called by ``ember.nn.Module`` where a non-ember module enters a model. A program that says
    ``import ember as torch`` beside an installed torch gets einops' torch layers from
    ``einops.layers.torch``; they hold no state but their pattern (and, for ``EinMix``, weights,
    which are copied), so ember rebuilds each one as its own layer. Only these three classes
    of that module are recognised; anything else keeps ember's usual ``TypeError``.
    """
    cls = type(value)
    if cls.__module__ != _TORCH_LAYERS:
        return None
    from . import _einops_layers as layers
    from .creation import from_numpy

    name = cls.__name__
    if name == "Rearrange":
        twin = layers.Rearrange(value.pattern, **value.axes_lengths)
    elif name == "Reduce":
        twin = layers.Reduce(value.pattern, value.reduction, **value.axes_lengths)
    elif name == "EinMix":
        twin = layers.EinMix(
            value.pattern, value.weight_shape, value.bias_shape, **value.axes_lengths
        )
        state = value.state_dict()
        twin.load_state_dict({k: from_numpy(v.detach().cpu().numpy()) for k, v in state.items()})
    else:
        return None
    twin.train(value.training)
    return twin
