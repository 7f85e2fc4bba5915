"""``convert``: replace each observer by a ``quantize_per_tensor`` (where a float value enters
a quantized region) or by nothing (where it watched a quantized op's output), swap observed
modules for int8 ones, lower add / mul / cat / average pools to ``quantized_ops``, and
dequantize wherever a float consumer (or the output) reads a quantized value."""

from __future__ import annotations

import copy

import numpy as np

from .... import quantized as _q
from ....fx import GraphModule
from ....tensor import Tensor
from ...nn.quantized.modules.utils import hoist_qparams
from ..fake_quantize import FakeQuantizeBase
from ..observer import ObserverBase
from ..quantization_mappings import get_default_static_quant_module_mappings
from ..quantize import _uncalibrated
from . import quantized_ops
from .patterns import METHOD_FUNCTIONS, SHARE_FUNCTIONS
from .prepare import OBSERVER_PREFIX

__all__ = ["convert"]

_LOWER_BINARY = {
    ("add", False): quantized_ops.add,
    ("add", True): quantized_ops.add_relu,
    ("mul", False): quantized_ops.mul,
    ("mul", True): quantized_ops.mul_relu,
}


def _lowered_share(node, modules):
    """The quantized replacement of an average pool (others run on the codes as they are)."""
    from .... import nn
    from ....nn import functional as F

    if node.op == "call_module":
        mod = modules[node.target]
        if type(mod) is nn.ReLU6:  # clamps at the code of 6.0, so it needs the quantized module
            return "swap_relu6", None, None
        if type(mod) is nn.AdaptiveAvgPool2d:
            return quantized_ops.adaptive_avg_pool2d, (node.args[0], mod.output_size), {}
        if type(mod) is nn.AvgPool2d:
            if mod.ceil_mode or not mod.count_include_pad or mod.divisor_override:
                raise NotImplementedError(
                    f"convert_fx: AvgPool2d '{node.target}' with ceil_mode / count_include_pad="
                    f"False / divisor_override has no quantized lowering; give it a None qconfig"
                )
            return (
                quantized_ops.avg_pool2d,
                (node.args[0], mod.kernel_size, mod.stride, mod.padding),
                {},
            )
    if node.op == "call_function" and node.target in SHARE_FUNCTIONS:
        if node.target is F.adaptive_avg_pool2d:
            return quantized_ops.adaptive_avg_pool2d, node.args, node.kwargs
        if node.target is F.avg_pool2d:
            return quantized_ops.avg_pool2d, node.args, node.kwargs
        if node.target in METHOD_FUNCTIONS:
            return METHOD_FUNCTIONS[node.target], node.args, node.kwargs
    return None


def _scope(node) -> str:
    """The path of the module whose forward made ``node`` (a module call: that module)."""
    if node.op == "call_module":
        return node.target
    stack = [p for p, _ in node.meta.get("nn_module_stack", {}).values() if p]
    return stack[-1] if stack else ""


class _Converter:
    def __init__(self, gm, info):
        self.gm, self.graph, self.info = gm, gm.graph, info
        self.modules = dict(gm.named_modules(remove_duplicate=False))
        self.quantized: set = set()
        self.dequantized: dict = {}
        self.attr_count: dict[str, int] = {}
        self.swapped: set[str] = set()

    def is_observer(self, node) -> bool:
        return (
            node.op == "call_module"
            and node.target.startswith(OBSERVER_PREFIX)
            and isinstance(self.modules.get(node.target), (ObserverBase, FakeQuantizeBase))
        )

    def qparams(self, obs_node):
        obs = self.modules[obs_node.target]
        if _uncalibrated(obs):
            src = obs_node.args[0]
            users = ", ".join(f"'{u.name}'" for u in obs_node.users) or "the output"
            raise RuntimeError(
                f"convert_fx: observer '{obs_node.target}' ({type(obs).__name__}, watching "
                f"node '{src.name}', read by {users}) has seen no data, so it has no scale / "
                f"zero point. Run calibration batches through the prepared model before "
                f"convert_fx, or check that node '{src.name}' is on the forward path."
            )
        scale, zp = hoist_qparams(obs)
        return scale, zp, obs.dtype

    def attrs(self, prefix: str, scale: float, zp: int, before):
        k = self.attr_count.get(prefix, 0)
        self.attr_count[prefix] = k + 1
        names = (f"{prefix}scale_{k}", f"{prefix}zero_point_{k}")
        self.gm.register_buffer(names[0], Tensor(np.array(scale, np.float32)))
        self.gm.register_buffer(names[1], Tensor._wrap(np.array(zp, np.int64)))
        with self.graph.inserting_before(before):
            return self.graph.get_attr(names[0]), self.graph.get_attr(names[1])

    def output_observer(self, node):
        return next((u for u in node.users if self.is_observer(u)), None)

    def run(self):
        mapping = get_default_static_quant_module_mappings()
        for node in list(self.graph.nodes):
            if node.graph is None:  # erased on the way
                continue
            if self.is_observer(node):
                self.observer(node)
                continue
            kind = self.info["kinds"].get(node.name)
            if node.name in self.info.get("runtime", {}):  # mixed mapping: a dynamic module
                self.float_consumer(node)
                self.runtime_module(node)
            elif kind == "weighted":
                self.weighted(node, mapping)
            elif kind in ("add", "mul"):
                self.binary(node, kind)
            elif kind == "cat":
                node.target, node.kwargs = quantized_ops.cat, dict(node.kwargs)
                self.quantized.add(node)
            elif kind == "share" and node.args and node.args[0] in self.quantized:
                low = _lowered_share(node, self.modules)
                if low is not None and low[0] == "swap_relu6":
                    from ...nn.quantized import ReLU6

                    qmod = ReLU6.from_float(self.modules[node.target])
                    self.gm.add_submodule(node.target, qmod)
                    self.modules[node.target] = qmod
                elif low is not None:
                    fn, args, kwargs = low[0], tuple(low[1]), dict(low[2])
                    with self.graph.inserting_before(node):
                        new = (
                            self.graph.call_method(fn, args, kwargs)
                            if isinstance(fn, str)
                            else self.graph.call_function(fn, args, kwargs)
                        )
                    node.replace_all_uses_with(new)
                    self.graph.erase_node(node)
                    new.name, node = node.name, new  # torch keeps the float node's name
                self.quantized.add(node)
            elif kind != "fused_relu":
                self.float_consumer(node)

    def runtime_module(self, node):
        """Swap a module under a dynamic / weight-only qconfig for its dynamic version (float
        in, float out: ``float_consumer`` has dequantized its input)."""
        if node.target in self.swapped:
            return
        from ..quantization_mappings import get_default_dynamic_quant_module_mappings

        mod = self.modules[node.target]
        qmod = get_default_dynamic_quant_module_mappings()[type(mod)].from_float(mod)
        self.gm.add_submodule(node.target, qmod)
        self.modules[node.target] = qmod
        self.swapped.add(node.target)

    def observer(self, node):
        src = node.args[0]
        if node.target in self.info.get("runtime_observers", ()):  # quantizes at run time
            node.replace_all_uses_with(src)
            self.graph.erase_node(node)
            return
        if src in self.quantized:
            self.qparams(node)  # still refuse an uncalibrated one
            node.replace_all_uses_with(src)
            self.graph.erase_node(node)
            return
        scale, zp, dtype = self.qparams(node)
        s, z = self.attrs(self._qparams_prefix(src, node), scale, zp, node)
        with self.graph.inserting_before(node):
            q = self.graph.call_function(_q.quantize_per_tensor, (src, s, z, dtype))
        node.replace_all_uses_with(q)
        self.graph.erase_node(node)
        self.quantized.add(q)

    def _qparams_prefix(self, src, obs_node) -> str:
        """torch's names for the qparams of a value entering a quantized region:
        ``<consumer>_input_`` for a model input or the output of a node without a qconfig,
        else ``<scope>_``, the path of the module that made the value ("" at the top)."""
        float_nodes = self.info.get("float_nodes")
        if src.op == "placeholder" or (float_nodes is not None and src.name in float_nodes):
            user = next(iter(obs_node.users), None)
            if user is None:
                return f"{src.name}_input_"
            name = _scope(user).replace(".", "_") if user.op == "call_module" else user.name
            return f"{name}_input_"
        if float_nodes is None:  # a graph prepared before these names: the older rule
            return f"{src.name}_"
        return f"{_scope(src).replace('.', '_')}_"

    def weighted(self, node, mapping):
        mod = self.modules[node.target]
        obs_node = self.output_observer(node)
        if obs_node is None or node.args[0] not in self.quantized:
            raise RuntimeError(
                f"convert_fx: node '{node.name}' ({type(mod).__name__}) lost its "
                f"observers; was the prepared graph edited?"
            )
        if node.target in self.swapped:  # a module called twice: swapped at its first call
            self.quantized.add(node)
            return
        if type(mod) not in mapping:
            raise RuntimeError(
                f"convert_fx: module '{node.target}' ({type(mod).__name__}) has "
                f"no quantized version in the static quantization mapping"
            )
        self.qparams(obs_node)
        mod.activation_post_process = self.modules[obs_node.target]
        qmod = mapping[type(mod)].from_float(mod)
        del mod.activation_post_process
        self.gm.add_submodule(node.target, qmod)
        self.modules[node.target] = qmod
        self.swapped.add(node.target)
        self.quantized.add(node)

    def binary(self, node, kind):
        relu = next(iter(node.users)) if len(node.users) == 1 else None
        fused = relu is not None and self.info["kinds"].get(relu.name) == "fused_relu"
        last = relu if fused else node
        scale, zp, _ = self.qparams(self.output_observer(last))
        s, z = self.attrs("_", scale, zp, node)
        with self.graph.inserting_before(node):
            new = self.graph.call_function(
                _LOWER_BINARY[(kind, fused)], (node.args[0], node.args[1], s, z)
            )
        last.replace_all_uses_with(new)
        if fused:
            self.graph.erase_node(relu)
        self.graph.erase_node(node)
        if not fused:
            new.name = node.name  # torch's names: "add" stays "add"; add + relu is "add_relu"
        self.quantized.add(new)

    def float_consumer(self, node):
        for a in list(node.all_input_nodes):
            if a not in self.quantized:
                continue
            if a not in self.dequantized:
                with self.graph.inserting_after(a):
                    self.dequantized[a] = self.graph.call_method("dequantize", (a,))
            node.replace_input_with(a, self.dequantized[a])


def convert(graph_module):
    info = getattr(graph_module, "_ember_fx_quant", None)
    if not isinstance(graph_module, GraphModule) or info is None:
        what = type(graph_module).__name__
        if isinstance(graph_module, GraphModule):
            what += " that prepare_fx did not make (no observers)"
        raise TypeError(
            f"convert_fx: expected the GraphModule returned by prepare_fx / "
            f"prepare_qat_fx, got a {what}"
        )
    if info.get("dynamic"):
        from ._dynamic import convert_dynamic

        return convert_dynamic(graph_module)
    gm = copy.deepcopy(graph_module)
    _Converter(gm, info).run()
    for m in gm.modules():
        if "qconfig" in m.__dict__:
            del m.__dict__["qconfig"]
    gm.graph.lint()
    # observers can sit under several names (shared ones), which named_modules() lists once
    for name in [n for n, _ in gm.named_children() if n.startswith(OBSERVER_PREFIX)]:
        delattr(gm, name)
    for name in list(gm._modules):
        if name.startswith(OBSERVER_PREFIX):
            del gm._modules[name]
    gm.delete_all_unused_submodules()
    gm.recompile()
    del gm._ember_fx_quant
    return gm
