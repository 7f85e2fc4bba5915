"""The ``Optimizer`` base class (PyTorch's ``torch.optim.Optimizer``): param groups, per-parameter
state, state dicts in PyTorch's layout, zero_grad and the step hooks.

Updates run on the raw arrays (``p._data``, ``p.grad._data``) with in-place NumPy/CuPy ufuncs,
so a step records no graph and costs no Tensor wrappers; state lives in ``self.state`` as ember
tensors, so ``state_dict()`` holds tensors in PyTorch's layout.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from ..autograd.grad_mode import enable_grad
from ..tensor import Tensor
from ._compat import (  # noqa: F401 (torch.optim.optimizer's names third-party optimizers import)
    ParamsT,
    _default_to_fused_or_foreach,
    _get_capturable_supported_devices,
    _params_t,
    _use_grad_for_differentiable,
    cuda_graph_capture_health_check,
)
from ._functional import _step_tensor, _zeros_state
from ._step_hooks import (  # noqa: F401 (RemovableHandle and the hooks are public here too)
    RemovableHandle,
    _hook_step,
    register_optimizer_step_post_hook,
    register_optimizer_step_pre_hook,
)

__all__ = [
    "Optimizer",
    "required",
    "register_optimizer_step_pre_hook",
    "register_optimizer_step_post_hook",
]


class _RequiredParameter:
    """Singleton marking a hyper-parameter that every param group must give."""

    def __repr__(self) -> str:
        return "<required parameter>"


required = _RequiredParameter()


def _typename(obj) -> str:
    if isinstance(obj, Tensor):
        return "ember.Tensor"
    cls = type(obj)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def _grouped_step(self, closure: Callable[[], Any] | None = None):
    """Perform a single optimization step.

    Args:
        closure (Callable, optional): a closure that re-evaluates the model and returns
            the loss.
    """
    loss = self._eval_closure(closure)
    for group in self.param_groups:
        self._step_group(group)
    return loss


class Optimizer:
    r"""Base class for all optimizers.

    Args:
        params (iterable): an iterable of :class:`ember.Tensor` s, of ``(name, tensor)`` pairs,
            or of :class:`dict` s (parameter groups). Specifies what tensors should be optimized.
        defaults (dict): default values of optimization options (used when a parameter group
            doesn't specify them).

    Subclasses implement ``step``, or ``_step_group(group)`` (the update of one param group,
    after which ``step`` is the usual closure-then-every-group loop); either way ``step`` is
    wrapped automatically with the step pre/post hooks.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "_step_group" in cls.__dict__ and "step" not in cls.__dict__:
            cls.step = _grouped_step  # in the class's own dict, so patching finds it per class
        step = cls.__dict__.get("step")
        if step is not None and not getattr(step, "_ember_hooked", False):
            cls.step = _hook_step(step)

    # Defaults for param-group options that an older pickled optimizer lacks; subclasses
    # list theirs and Optimizer.__setstate__ fills them in.
    _group_setdefaults: dict = {}

    def __init__(self, params: Iterable, defaults: dict[str, Any]) -> None:
        self.defaults = defaults
        self._optimizer_step_pre_hooks: OrderedDict = OrderedDict()
        self._optimizer_step_post_hooks: OrderedDict = OrderedDict()
        self._optimizer_state_dict_pre_hooks: OrderedDict = OrderedDict()
        self._optimizer_state_dict_post_hooks: OrderedDict = OrderedDict()
        self._optimizer_load_state_dict_pre_hooks: OrderedDict = OrderedDict()
        self._optimizer_load_state_dict_post_hooks: OrderedDict = OrderedDict()
        if defaults.get("differentiable", False):
            raise NotImplementedError(
                f"{type(self).__name__}: differentiable=True is not supported by ember (updates "
                "run on raw arrays, outside the autograd graph)"
            )
        if isinstance(params, Tensor):
            raise TypeError(
                "params argument given to the optimizer should be an iterable of Tensors or "
                "dicts, but got " + _typename(params)
            )
        self.state: defaultdict = defaultdict(dict)
        self.param_groups: list[dict[str, Any]] = []
        param_groups = list(params)
        if len(param_groups) == 0:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(param_groups[0], dict):
            param_groups = [{"params": param_groups}]
        for param_group in param_groups:
            self.add_param_group(param_group)

    # ---- pickling and repr -------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        return {"defaults": self.defaults, "state": self.state, "param_groups": self.param_groups}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        for name in (
            "_optimizer_step_pre_hooks",
            "_optimizer_step_post_hooks",
            "_optimizer_state_dict_pre_hooks",
            "_optimizer_state_dict_post_hooks",
            "_optimizer_load_state_dict_pre_hooks",
            "_optimizer_load_state_dict_post_hooks",
        ):
            if name not in self.__dict__:
                setattr(self, name, OrderedDict())
        self.defaults.setdefault("differentiable", False)
        # Options newer than an old pickle get their defaults (per optimizer class).
        for group in self.param_groups:
            for key, value in self._group_setdefaults.items():
                group.setdefault(key, value)
        # Old checkpoints kept "step" as a Python number; the updates expect a 0-d tensor.
        for s in self.state.values():
            if isinstance(s, dict) and "step" in s and not isinstance(s["step"], Tensor):
                s["step"] = _step_tensor(float(s["step"]))

    def __repr__(self) -> str:
        out = self.__class__.__name__ + " ("
        for i, group in enumerate(self.param_groups):
            out += f"\nParameter Group {i}\n"
            for key in sorted(group.keys()):
                if key != "params":
                    out += f"    {key}: {group[key]}\n"
        return out + ")"

    # ---- parameter groups --------------------------------------------------------------
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a param group to the optimizer's ``param_groups`` (e.g. when unfreezing layers).

        Args:
            param_group (dict): the tensors to optimize under ``"params"``, with group-specific
                optimization options.
        """
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group)}")
        params = param_group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, set):
            raise TypeError(
                "optimizer parameters need to be organized in ordered collections, but the "
                "ordering of tensors in sets will change between runs. Please use a list instead."
            )
        else:
            params = list(params)
        tensors, names = [], []
        for p in params:
            if isinstance(p, tuple):
                names.append(p[0])
                tensors.append(p[1])
            else:
                tensors.append(p)
        param_group["params"] = tensors
        if names:
            if len(names) != len(tensors):
                raise ValueError(
                    "all optimizer params should be with/without names. Some param "
                    "names are missing"
                )
            param_group["param_names"] = names

        for p in tensors:
            if not isinstance(p, Tensor):
                raise TypeError(
                    "optimizer can only optimize Tensors, but one of the params is " + _typename(p)
                )
            if not (p.grad_fn is None or p.retains_grad):
                raise ValueError("can't optimize a non-leaf Tensor")

        for name, default in self.defaults.items():
            if default is required and name not in param_group:
                raise ValueError(
                    "parameter group didn't specify a value of required "
                    f"optimization parameter {name}"
                )
            param_group.setdefault(name, default)

        ids = {id(p) for p in tensors}
        if len(ids) != len(tensors):
            import warnings

            warnings.warn(
                "optimizer contains a parameter group with duplicate parameters; in "
                "future, this will cause an error",
                stacklevel=3,
            )
        seen: set[int] = set()
        for group in self.param_groups:
            seen.update(id(p) for p in group["params"])
            if ("param_names" in param_group) != ("param_names" in group):
                txt = "with names" if "param_names" in param_group else "without names"
                raise ValueError(
                    "all optimizer param groups should be with/without names. "
                    f"cannot add param group {txt} to the optimizer"
                )
        if not seen.isdisjoint(ids):
            raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(param_group)

    # ---- gradients and stepping --------------------------------------------------------
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients of all optimized tensors.

        Args:
            set_to_none (bool): set the grads to ``None`` instead of filling them with zeros
                (default: ``True``). Optimizers skip parameters whose grad is ``None``.
        """
        for group in self.param_groups:
            for p in group["params"]:
                g = p.grad
                if g is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    if g.grad_fn is not None:
                        g.detach_()
                    else:
                        g.requires_grad = False
                    g._data[...] = 0
                    g._version_counter[0] += 1

    def step(self, closure: Callable[[], Any] | None = None):
        """Perform a single optimization step (subclasses implement it).

        Args:
            closure (Callable, optional): a closure that re-evaluates the model and returns
                the loss.
        """
        raise NotImplementedError

    def _patch_step_function(self) -> None:
        """torch's step-hook installer, called by optimizers that skip ``Optimizer.__init__``
        (pytorch_optimizer's ``Lookahead``); ember hooks each subclass's ``step`` when the
        class is made, so this only covers a ``step`` assigned to the class later."""
        cls = type(self)
        self._zero_grad_profile_name = f"Optimizer.zero_grad#{cls.__name__}.zero_grad"
        if not getattr(cls.step, "_ember_hooked", False):
            cls.step = _hook_step(cls.step)

    profile_hook_step = staticmethod(_hook_step)

    def _cuda_graph_capture_health_check(self) -> None:
        cuda_graph_capture_health_check(self)

    @staticmethod
    def _eval_closure(closure):
        if closure is None:
            return None
        with enable_grad():
            return closure()

    def _stepped(
        self, group: dict, buffers: Iterable[str] = (), init: Callable[[Tensor], dict] | None = None
    ):
        """The parameters of ``group`` that have a gradient, each as ``(p, state, step)`` after
        its step counter has counted this step (``step`` as a float).

        A parameter's state is made on its first step (PyTorch's lazy state): ``init(p)`` when
        given (the whole state, counter included), else a ``step`` counter and a zero buffer
        for each name in ``buffers``.
        """
        for p in group["params"]:
            if p.grad is None:
                continue
            state = self.state[p]
            if len(state) == 0:
                if init is not None:
                    state.update(init(p))
                else:
                    state["step"] = _step_tensor()
                    for name in buffers:
                        state[name] = _zeros_state(p)
            step_t = state["step"]._data
            step_t += 1
            yield p, state, float(step_t)

    # ---- hooks -------------------------------------------------------------------------
    @staticmethod
    def _register(hooks: OrderedDict, hook: Callable, prepend: bool = False) -> RemovableHandle:
        handle = RemovableHandle(hooks)
        hooks[handle.id] = hook
        if prepend:
            hooks.move_to_end(handle.id, last=False)
        return handle

    def register_step_pre_hook(self, hook: Callable) -> RemovableHandle:
        """Register ``hook(optimizer, args, kwargs) -> None or (new_args, new_kwargs)`` to run
        before ``step``."""
        return self._register(self._optimizer_step_pre_hooks, hook)

    def register_step_post_hook(self, hook: Callable) -> RemovableHandle:
        """Register ``hook(optimizer, args, kwargs) -> None`` to run after ``step``."""
        return self._register(self._optimizer_step_post_hooks, hook)

    def register_state_dict_pre_hook(self, hook: Callable, prepend: bool = False):
        """Register ``hook(optimizer) -> None`` to run before ``state_dict``."""
        return self._register(self._optimizer_state_dict_pre_hooks, hook, prepend)

    def register_state_dict_post_hook(self, hook: Callable, prepend: bool = False):
        """Register ``hook(optimizer, state_dict) -> state_dict or None`` after ``state_dict``."""
        return self._register(self._optimizer_state_dict_post_hooks, hook, prepend)

    def register_load_state_dict_pre_hook(self, hook: Callable, prepend: bool = False):
        """Register ``hook(optimizer, state_dict) -> state_dict or None`` before loading."""
        return self._register(self._optimizer_load_state_dict_pre_hooks, hook, prepend)

    def register_load_state_dict_post_hook(self, hook: Callable, prepend: bool = False):
        """Register ``hook(optimizer) -> None`` to run after ``load_state_dict``."""
        return self._register(self._optimizer_load_state_dict_post_hooks, hook, prepend)

    # ---- state dicts -------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The optimizer's state as a dict, in PyTorch's layout.

        ``"state"`` maps integer parameter ids to each parameter's state (tensors shared with
        the optimizer, not copies); ``"param_groups"`` lists the groups' options with
        ``"params"`` as lists of those ids, numbered in order across the groups.
        """
        for hook in self._optimizer_state_dict_pre_hooks.values():
            hook(self)
        mapping: dict[int, int] = {}
        start = 0

        def pack_group(group):
            nonlocal start
            packed = {k: v for k, v in group.items() if k != "params"}
            for i, p in enumerate(group["params"], start):
                mapping.setdefault(id(p), i)
            packed["params"] = [mapping[id(p)] for p in group["params"]]
            start += len(packed["params"])
            return packed

        param_groups = [pack_group(g) for g in self.param_groups]
        packed_state = {
            (mapping[id(k)] if isinstance(k, Tensor) else k): v for k, v in self.state.items()
        }
        state_dict = {"state": packed_state, "param_groups": param_groups}
        for hook in self._optimizer_state_dict_post_hooks.values():
            result = hook(self, state_dict)
            if result is not None:
                state_dict = result
        return state_dict

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load optimizer state from a dict returned by :meth:`state_dict`.

        State tensors are copied onto each parameter's device (and, except ``"step"``, cast
        to its floating dtype), so the loaded optimizer never aliases the source's state.

        Args:
            state_dict (dict): optimizer state, as returned by :meth:`state_dict`.
        """
        import copy

        state_dict = state_dict.copy()
        for hook in self._optimizer_load_state_dict_pre_hooks.values():
            result = hook(self, state_dict)
            if result is not None:
                state_dict = result
        for key in ("state", "param_groups"):
            if key not in state_dict:
                raise KeyError(f"optimizer state_dict is missing the key {key!r}")
        groups = self.param_groups
        saved_groups = copy.deepcopy(state_dict["param_groups"])
        if len(groups) != len(saved_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        if any(len(g["params"]) != len(s["params"]) for g, s in zip(groups, saved_groups)):
            raise ValueError(
                "loaded state dict contains a parameter group that doesn't match "
                "the size of optimizer's group"
            )
        id_map = dict(
            zip(
                itertools.chain.from_iterable(g["params"] for g in saved_groups),
                itertools.chain.from_iterable(g["params"] for g in groups),
            )
        )

        state: defaultdict = defaultdict(dict)
        for k, v in state_dict["state"].items():
            if k in id_map:
                param = id_map[k]
                state[param] = _cast_state(param, v)
            else:
                state[k] = v

        def update_group(group, new_group):
            new_group["params"] = group["params"]
            if "param_names" in group and "param_names" not in new_group:
                new_group["param_names"] = group["param_names"]
            return new_group

        param_groups = [update_group(g, ng) for g, ng in zip(groups, saved_groups)]
        self.__setstate__({"state": state, "param_groups": param_groups})
        for hook in self._optimizer_load_state_dict_post_hooks.values():
            hook(self)


def _cast_state(param: Tensor, value, key=None):
    """A copy of a state value with its tensors on ``param``'s device (floating ones in its
    dtype, except ``step``, which PyTorch keeps as saved)."""
    if isinstance(value, Tensor):
        dtype = param.dtype if key != "step" and param.is_floating_point() else None
        return value.detach().to(device=param.device, dtype=dtype, copy=True)
    if isinstance(value, dict):
        return {k: _cast_state(param, v, k) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_cast_state(param, v) for v in value)
    return value
