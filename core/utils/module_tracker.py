"""``ember.utils.module_tracker``: which modules are running (PyTorch's ``ModuleTracker``)."""

from __future__ import annotations

import logging
import weakref

from ..autograd import engine as _engine
from ..autograd.graph import register_multi_grad_hook
from ..nn._module_hooks import register_module_forward_hook, register_module_forward_pre_hook
from ..tensor import Tensor
from ._pytree import tree_leaves

__all__ = ["ModuleTracker"]

logger = logging.getLogger(__name__)


class ModuleTracker:
    r"""A context manager that tracks the ``nn.Module`` hierarchy while code runs.

    ``parents`` is the set of fully qualified names of the modules whose forward (or backward)
    is running; it always holds ``"Global"``. A module first seen as the root is named by its
    class (``"MLP"``), its submodules by their path below it (``"MLP.fc1"``). ``is_bw`` is
    ``True`` while a backward pass runs.

    Example::

        >>> mod = ember.nn.Linear(2, 2)
        >>> with ModuleTracker() as tracker:
        ...     mod.register_forward_hook(lambda m, i, o: print(tracker.parents))
        ...     _ = mod(ember.rand(2, 2))
        {'Global', 'Linear'}
    """

    def __init__(self) -> None:
        self.parents: set[str] = {"Global"}
        self._known_modules: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._seen_modules: weakref.WeakSet = weakref.WeakSet()
        self._has_callback = False
        self._hooks: list = []

    @property
    def is_bw(self) -> bool:
        """Whether a backward pass is running."""
        return _engine._depth[0] > 0

    def _maybe_set_engine_callback(self) -> None:
        if self._has_callback:
            return

        def callback() -> None:  # the backward pass ended: only "Global" is running
            self.parents = {"Global"}
            self._has_callback = False

        _engine.queue_callback(callback)
        self._has_callback = True

    def _get_mod_name(self, mod) -> str:
        if mod not in self._known_modules:
            self._known_modules[mod] = type(mod).__name__
        name = self._known_modules[mod]
        if mod not in self._seen_modules:
            for child_name, child in mod.named_children():
                self._known_modules[child] = f"{name}.{child_name}"
                self._get_mod_name(child)
            self._seen_modules.add(mod)
        return name

    def _enter(self, name: str, is_bw: bool) -> None:
        if is_bw:
            self._maybe_set_engine_callback()
        if name in self.parents:
            logger.info("Module hierarchy tracking: %s entered twice", name)
        self.parents.add(name)

    def _exit(self, name: str, is_bw: bool) -> None:
        if name in self.parents:
            self.parents.remove(name)
        else:
            logger.info("Module hierarchy tracking: exiting %s, which was never entered", name)

    def _grad_tensors(self, tree) -> list:
        return [t for t in tree_leaves(tree) if isinstance(t, Tensor) and t.requires_grad]

    def _fw_pre_hook(self, mod, args) -> None:
        name = self._get_mod_name(mod)
        self._enter(name, False)
        tensors = self._grad_tensors(args)
        if tensors:  # the inputs' gradients are the module's backward ending
            fn = lambda *_: self._exit(name, True)  # noqa: E731
            self._hooks.append(register_multi_grad_hook(tensors, fn, mode="any"))

    def _fw_post_hook(self, mod, args, output) -> None:
        name = self._get_mod_name(mod)
        self._exit(name, False)
        tensors = self._grad_tensors(output)
        if tensors:  # the outputs' gradients are the module's backward starting
            fn = lambda *_: self._enter(name, True)  # noqa: E731
            self._hooks.append(register_multi_grad_hook(tensors, fn, mode="any"))

    def __enter__(self) -> ModuleTracker:
        self._fw_pre_handle = register_module_forward_pre_hook(self._fw_pre_hook)
        self._fw_post_handle = register_module_forward_hook(self._fw_post_hook)
        return self

    def __exit__(self, *args) -> None:
        self._fw_pre_handle.remove()
        self._fw_post_handle.remove()
        for h in self._hooks:
            h.remove()
        self._hooks.clear()
