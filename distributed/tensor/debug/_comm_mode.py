"""``CommDebugMode``: count the collectives a block of code issues, per module and pass.

PyTorch's mode intercepts the dispatcher; ember has no dispatcher, so the mode listens where
the work happens instead: every collective reports itself (``collectives._observers``), keyed
as PyTorch keys it (``ember.ops.c10d_functional.all_reduce`` for DTensor's communication,
``ember.ops.c10d.allreduce_`` for a direct ``dist.all_reduce``; see ``.._funcol``), and
``DTensor.__torch_function__`` reports the DTensor operations it runs (their input shapes,
placements and mesh), which the tables show at ``noise_level >= 1``. Module attribution
follows forward hooks common to all modules and, in backward, gradient hooks on each module's
outputs, as PyTorch's module tracker does.
"""

from __future__ import annotations

import json
import re
import weakref
from collections import defaultdict
from typing import Any

from ... import collectives as _collectives
from .. import _funcol
from .._api import DTensor

__all__ = ["CommDebugMode"]

# operations the tables leave out below noise level 3 (no communication, no math)
_TRIVIAL_OPS = {"detach", "t", "view", "to", "contiguous", "transpose"}

# the mode whose operations DTensor.__torch_function__ reports (innermost active one)
_ACTIVE: list = []


def _note_dtensor_op(func, args, kwargs) -> None:
    """Called by ``DTensor.__torch_function__`` while a mode is active."""
    if _ACTIVE:
        _ACTIVE[-1]._note_op(getattr(func, "__name__", repr(func)), (*args, *kwargs.values()))


def _grad_tensors(value) -> list:
    import ember
    from ember.utils._pytree import tree_leaves

    out = []
    for t in tree_leaves(value):
        if isinstance(t, DTensor):
            t = t._local_tensor
        if isinstance(t, ember.Tensor) and t.requires_grad:
            out.append(t)
    return out


class _CommModeModuleTracker:
    """Which module runs (``name``), the module tree and each module's parameters."""

    def __init__(self) -> None:
        self.module_helper_dict: dict[str, dict] = {}
        self.module_parameters_dict: dict[str, dict] = {}
        self.module_parents_dict: dict[str, set] = {}
        self.parent_dict: dict[str, list] = {}
        self.sharding_dict: dict[str, Any] = {}
        self.name = "Global"
        self._names: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._stack: list[str] = ["Global"]
        self._handles: list = []
        self._hooked: weakref.WeakSet = weakref.WeakSet()

    @property
    def is_bw(self) -> bool:
        from ember._interop import in_backward

        return in_backward()

    def _mod_name(self, mod) -> str:
        name = self._names.get(mod)
        if name is None:  # first seen as a root: its class name; children below it
            name = self._names[mod] = type(mod).__name__
        for child_name, child in mod.named_children():
            self._names.setdefault(child, f"{name}.{child_name}")
        return name

    def _pre_hook(self, mod, args) -> None:
        if self.is_bw:  # a forward rerun inside backward (activation checkpointing)
            return
        name = self.name = self._mod_name(mod)
        parents = self.module_parents_dict.setdefault(name, {*self._stack, name})
        info = self.module_helper_dict.setdefault(name, {})
        kind = type(mod)
        info["module_type"] = f"class '{kind.__module__}.{kind.__qualname__}'"
        info["depth"] = len(parents) - 1
        for pname, p in mod.named_parameters(recurse=False):
            value = p.as_dtensor() if hasattr(p, "as_dtensor") else p.data
            self.module_parameters_dict.setdefault(name, {})[pname] = value
            if isinstance(value, DTensor):
                self.sharding_dict[f"{name}.{pname}"] = value.placements
                info.setdefault("parameters", {})[pname] = str(value.placements)
        children = self.parent_dict.setdefault(self._stack[-1], [])
        if name not in children:
            children.append(name)
        self._stack.append(name)
        if mod not in self._hooked:
            # the module's own last forward hook ends its forward: hooks registered before it
            # (a parallel style's output redistribution) still count as the module's
            self._hooked.add(mod)
            self._handles.append(mod.register_forward_hook(self._post_hook))

    def _post_hook(self, mod, args, output) -> None:
        if self.is_bw:
            return
        name = self._mod_name(mod)
        if self._stack[-1] == name:
            self._stack.pop()
        self.name = self._stack[-1]
        tensors = _grad_tensors(output)
        if tensors:  # the outputs' first gradient: this module's backward begins

            def enter_bw(_grad, name=name) -> None:
                # a parent returning its child's output fires on the same gradient after the
                # child: the innermost module keeps the name
                if not self.name.startswith(name + "."):
                    self.name = name

            from ember.autograd.graph import register_multi_grad_hook

            self._handles.append(register_multi_grad_hook(tensors, enter_bw, mode="any"))

    def __enter__(self) -> None:
        from ember.nn.modules.module import register_module_forward_pre_hook

        for d in (
            self.module_helper_dict,
            self.module_parameters_dict,
            self.module_parents_dict,
            self.parent_dict,
            self.sharding_dict,
        ):
            d.clear()
        self.module_helper_dict["Global"] = {"depth": 0}
        self.module_parents_dict["Global"] = set()
        self._stack, self.name = ["Global"], "Global"
        self._handles = [register_module_forward_pre_hook(self._pre_hook)]

    def __exit__(self, *args) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._hooked = weakref.WeakSet()

    def print_paramater_info(self) -> None:  # PyTorch's spelling
        print(self.module_parameters_dict)

    def print_sharding_info(self) -> None:
        for key, value in self.sharding_dict.items():
            print(f"{key}: {value}")


def _noise(noise_level: int) -> tuple[bool, bool, bool, bool]:
    """(DTensor operations, module data, other operations, trivial operations) shown."""
    if not isinstance(noise_level, int) or noise_level < 0:
        raise ValueError(f"noise_level must be an int >= 0, got {noise_level!r}")
    return noise_level > 0, noise_level > 0, noise_level > 1, noise_level > 2


class CommDebugMode:
    r"""A context manager that counts the collectives issued inside it.

    DTensor's communication counts under PyTorch's functional-collective keys
    (``ember.ops.c10d_functional.all_reduce``, ``.all_gather_into_tensor``,
    ``.reduce_scatter_tensor``), direct collectives under the c10d keys
    (``ember.ops.c10d.allreduce_``, ``._allgather_base_``, ``.broadcast_`` ...). Counts are per
    process (this rank's calls).

    Example::

        >>> comm_mode = CommDebugMode()
        >>> with comm_mode:
        ...     model(inp).sum().backward()
        >>> comm_mode.get_comm_counts()[ember.ops.c10d_functional.all_reduce]
        >>> print(comm_mode.generate_comm_debug_tracing_table(noise_level=0))
    """

    def __init__(self) -> None:
        self.comm_counts: dict[Any, int] = defaultdict(int)
        self.comm_module_counts: dict[str, dict] = {}
        self.comm_module_operation_counts: dict[str, dict] = {}
        self.comm_registry = {*_funcol.FUNCOL.values(), *_funcol.C10D.values()}
        self.advanced_module_tracker = _CommModeModuleTracker()

    # ---- recording ---------------------------------------------------------------------
    def _ops_of(self, name: str) -> list:
        entry = self.comm_module_operation_counts.setdefault(name, {"operations_list": []})
        return entry["operations_list"]

    def _note_op(self, op_name: str, args) -> None:
        tracker = self.advanced_module_tracker
        op = {
            "name": op_name,
            "input_shape": [],
            "input_sharding": [],
            "device_mesh": "",
            "is_bw": tracker.is_bw,
            "is_activation_checkpointing": False,
        }
        for a in args:
            if isinstance(a, DTensor):
                op["input_shape"].append(a.shape)
                op["input_sharding"].append(a.placements)
                op["device_mesh"] = str(a.device_mesh)
        self._ops_of(tracker.name).append(op)

    def _on_collective(self, ember_name: str) -> None:
        key = _funcol.key_of(ember_name)
        if key is None:
            return
        tracker = self.advanced_module_tracker
        self.comm_counts[key] += 1
        which = "backward" if tracker.is_bw else "forward"
        owners = {tracker.name, *tracker.module_parents_dict.get(tracker.name, ())}
        owners.add("Global")
        for fqn in owners:
            counts = self.comm_module_counts.setdefault(
                fqn, {"forward": defaultdict(int), "backward": defaultdict(int)}
            )
            counts[which][key] += 1
        self._note_op(str(key), ())

    def __enter__(self) -> CommDebugMode:
        self.comm_counts.clear()
        self.comm_module_counts.clear()
        self.comm_module_counts["Global"] = {
            "forward": defaultdict(int),
            "backward": defaultdict(int),
        }
        self.comm_module_operation_counts.clear()
        self.advanced_module_tracker.__enter__()
        _collectives._observers.append(self._on_collective)
        _ACTIVE.append(self)
        return self

    def __exit__(self, *args) -> None:
        _ACTIVE.remove(self)
        _collectives._observers.remove(self._on_collective)
        self.advanced_module_tracker.__exit__()

    # ---- queries -----------------------------------------------------------------------
    def get_total_counts(self) -> int:
        """The number of collectives counted."""
        return sum(self.comm_counts.values())

    def get_comm_counts(self) -> dict[Any, int]:
        """Counts keyed by collective (``ember.ops.c10d_functional.all_reduce`` ...)."""
        return self.comm_counts

    def get_parameter_info(self) -> dict[str, dict[str, Any]]:
        """``{module fqn: {parameter name: value}}`` for the modules that ran (DTensor values
        for distributed parameters)."""
        return self.advanced_module_tracker.module_parameters_dict

    def get_sharding_info(self) -> dict[str, Any]:
        """``{"Module.sub.weight": placements}`` for the DTensor parameters seen."""
        return self.advanced_module_tracker.sharding_dict

    def __repr__(self) -> str:
        return f"CommDebugMode(get_total_counts()={self.get_total_counts()})"

    # ---- reports -----------------------------------------------------------------------
    def _operations(self, fqn: str, noise_level: int) -> tuple[list, list]:
        dtensor_ops, _, other_ops, trivial = _noise(noise_level)
        if not dtensor_ops:
            return [], []
        ops = self.comm_module_operation_counts.get(fqn, {"operations_list": []})
        keep = [
            op
            for op in ops["operations_list"]
            if (other_ops or op["input_shape"]) and (trivial or op["name"] not in _TRIVIAL_OPS)
        ]
        return [op for op in keep if not op["is_bw"]], [op for op in keep if op["is_bw"]]

    def generate_comm_debug_tracing_table(self, noise_level: int = 3) -> str:
        """The module tree with each module's collective counts per pass; from
        ``noise_level`` 1 the module types, parameter placements and DTensor operations, from
        2 the other operations (collectives), 3 everything."""
        _, module_data, _, _ = _noise(noise_level)
        tracker = self.advanced_module_tracker
        table = ""
        for fqn, info in tracker.module_helper_dict.items():
            depth = info["depth"]
            indent = "  " * (2 * depth)
            table += f"{indent}{fqn}\n"
            if module_data and "module_type" in info:
                table += f"{indent}*module type: {info['module_type']}\n"
            if module_data and "parameters" in info:
                table += f"{indent}*Parameter List\n"
                for pname, placement in info["parameters"].items():
                    table += f"{indent} *{pname}: {placement}\n"
            c_indent, o_indent = "  " * (2 * depth + 2), "  " * (2 * depth + 3)
            counts = self.comm_module_counts.get(fqn, {"forward": {}, "backward": {}})
            fwd_ops, bwd_ops = self._operations(fqn, noise_level)
            for title, colls, ops in (
                ("FORWARD PASS", counts["forward"], fwd_ops),
                ("BACKWARD PASS", counts["backward"], bwd_ops),
            ):
                if not colls and not ops:
                    continue
                table += f"{indent}  {title}\n"
                for coll, n in colls.items():
                    table += f"\033[1;33m{c_indent}*{coll}: {n}\033[0m\n"
                for op in ops:
                    table += f"\033[1;33m{c_indent}**{op['name']}\033[0m\n"
                    if op["input_shape"]:
                        table += f"\033[1;31m{o_indent}shape: {op['input_shape']}\033[0m\n"
                        table += f"\033[1;31m{o_indent}sharding: {op['input_sharding']}\033[0m\n"
                        table += f"\033[1;31m{o_indent}device mesh: {op['device_mesh']}\033[0m\n"
        return table

    def log_comm_debug_tracing_table_to_file(
        self, file_name: str = "comm_mode_log.txt", noise_level: int = 3
    ) -> None:
        """Write ``generate_comm_debug_tracing_table(noise_level)`` (without colors) to
        ``file_name``."""
        table = re.sub(
            r"\x1B\[[0-?]*[ -/]*[@-~]", "", self.generate_comm_debug_tracing_table(noise_level)
        )
        with open(file_name, "w") as f:
            f.write(table)

    def generate_json_dump(
        self, file_name: str = "comm_mode_log.json", noise_level: int = 3
    ) -> None:
        """Write the module tree as JSON (PyTorch's layout: ``fqn``, ``module_type``,
        ``parameters``, ``children``, ``collectives_forward``/``_backward``,
        ``operations_forward``/``_backward``/``_checkpointing``) to ``file_name``."""
        _, module_data, _, _ = _noise(noise_level)
        tracker = self.advanced_module_tracker

        def op_json(op: dict) -> dict:
            return {
                **op,
                "input_shape": [str(s) for s in op["input_shape"]],
                "input_sharding": [str(s) for s in op["input_sharding"]],
            }

        def node(fqn: str) -> dict:
            info = tracker.module_helper_dict.get(fqn, {})
            counts = self.comm_module_counts.get(fqn, {"forward": {}, "backward": {}})
            fwd, bwd = self._operations(fqn, noise_level)
            return {
                "fqn": fqn,
                "module_type": info.get("module_type", "") if module_data else "",
                "parameters": list(info.get("parameters", {}).items()) if module_data else [],
                "children": [node(c) for c in tracker.parent_dict.get(fqn, [])],
                "collectives_forward": [(str(k), n) for k, n in counts["forward"].items()],
                "collectives_backward": [(str(k), n) for k, n in counts["backward"].items()],
                "operations_forward": [op_json(o) for o in fwd],
                "operations_backward": [op_json(o) for o in bwd],
                "operations_checkpointing": [],
            }

        with open(file_name, "w") as f:
            json.dump(node("Global"), f, indent=4)
