"""``LazyModuleMixin``: modules whose parameter shapes are inferred from the first input."""

from __future__ import annotations

from ..parameter import is_lazy


class LazyModuleMixin:
    r"""Mixin for modules that create their parameters on the first ``forward``.

    The module holds ``UninitializedParameter`` placeholders; a forward pre-hook calls
    ``initialize_parameters(*args)`` on the first call, after which the module becomes
    ``cls_to_become`` (e.g. ``LazyLinear`` becomes ``Linear``). Loading a state_dict into an
    uninitialized module materializes the parameters with the checkpoint's shapes.
    """

    cls_to_become = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._load_hook = self._register_load_state_dict_pre_hook(self._lazy_load_hook)
        self._initialize_hook = self.register_forward_pre_hook(
            self._infer_parameters, with_kwargs=True
        )

    def has_uninitialized_params(self) -> bool:
        return any(is_lazy(p) for p in self._parameters.values()) or any(
            is_lazy(b) for b in self._buffers.values()
        )

    def initialize_parameters(self, *args, **kwargs) -> None:
        raise NotImplementedError(
            f"initialize_parameters is not implemented for {type(self).__name__}"
        )

    def _lazy_load_hook(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ) -> None:
        for name, param in list(self._parameters.items()) + list(self._buffers.items()):
            key = prefix + name
            if key in state_dict and param is not None and is_lazy(param):
                param.materialize(tuple(state_dict[key].shape))

    def _finish_init(self) -> None:
        self._initialize_hook.remove()
        self._load_hook.remove()
        del self._initialize_hook
        del self._load_hook
        if self.cls_to_become is not None:
            self.__class__ = self.cls_to_become

    def _infer_parameters(self, module, args, kwargs=None) -> None:
        module.initialize_parameters(*args, **(kwargs or {}))
        if module.has_uninitialized_params():
            raise RuntimeError(f"module {self._get_name()} has not been fully initialized")
        module._finish_init()

    def _replicate_for_data_parallel(self):
        raise RuntimeError(
            "Modules with uninitialized parameters can't be used with "
            "`DataParallel`. Run a dummy forward pass to correctly initialize "
            "the modules"
        )
