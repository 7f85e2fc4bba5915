"""The fusion pass of FX graph mode: find conv-bn(-relu), conv-relu, linear-relu and
linear-bn chains in a traced graph and replace each by one fused module (eager mode's fuser
methods, so folding and QAT containers are the same)."""

from __future__ import annotations

from .... import nn
from ...quantization.fuse_modules import get_fuser_method
from .patterns import is_relu

__all__ = ["fuse_graph"]

_FIRST = (nn.Conv1d, nn.Conv2d, nn.Linear)
_BN_AFTER = {nn.Conv1d: nn.BatchNorm1d, nn.Conv2d: nn.BatchNorm2d, nn.Linear: nn.BatchNorm1d}
# chains with a fuser method, longest first (linear-bn-relu has none in torch either)
_CHAINS = {
    (nn.Conv1d, nn.BatchNorm1d, nn.ReLU),
    (nn.Conv2d, nn.BatchNorm2d, nn.ReLU),
    (nn.Conv1d, nn.BatchNorm1d),
    (nn.Conv2d, nn.BatchNorm2d),
    (nn.Linear, nn.BatchNorm1d),
    (nn.Conv1d, nn.ReLU),
    (nn.Conv2d, nn.ReLU),
    (nn.Linear, nn.ReLU),
}


def _sole_user(node):
    return next(iter(node.users)) if len(node.users) == 1 else None


def _chain(node, modules):
    """The nodes (and their modules) of the longest fusable chain starting at ``node``."""
    first = modules[node.target]
    nodes, mods = [node], [first]
    nxt = _sole_user(node)
    if (
        nxt is not None
        and nxt.op == "call_module"
        and type(modules.get(nxt.target)) is _BN_AFTER[type(first)]
    ):
        nodes.append(nxt)
        mods.append(modules[nxt.target])
        nxt = _sole_user(nxt)
    if nxt is not None and is_relu(nxt, modules) and nxt.args and nxt.args[0] is nodes[-1]:
        nodes.append(nxt)
        mods.append(modules[nxt.target] if nxt.op == "call_module" else nn.ReLU())
    while len(nodes) > 1 and tuple(type(m) for m in mods) not in _CHAINS:
        nodes.pop()
        mods.pop()
    return nodes, mods


def fuse_graph(gm, is_qat: bool, skip=frozenset()):
    """Fuse in place every chain in ``gm``'s graph whose first module is not in ``skip``
    (module paths whose qconfig is None are not fused, as in torch)."""
    modules = dict(gm.named_modules())
    absorbed: set[str] = set()
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or node.target in skip:
            continue
        if type(modules.get(node.target)) not in _FIRST:
            continue
        nodes, mods = _chain(node, modules)
        if len(nodes) == 1:
            continue
        if not is_qat and any(
            isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) and m.training for m in mods
        ):
            raise AssertionError(
                f"fuse_fx: cannot fold batch norm '{nodes[1].target}' into '{node.target}' in "
                f"training mode; call model.eval() first, or use prepare_qat_fx for QAT"
            )
        fused = get_fuser_method(tuple(type(m) for m in mods))(is_qat, *mods)
        gm.add_submodule(node.target, fused)
        modules[node.target] = fused
        nodes[-1].replace_all_uses_with(node)
        for n in reversed(nodes[1:]):
            if n.op == "call_module":
                absorbed.add(n.target)
            gm.graph.erase_node(n)
    # the fused module holds the absorbed ones, so named_modules() (which skips duplicates)
    # would not list them under their old names: drop those names explicitly
    still_called = {n.target for n in gm.graph.nodes if n.op == "call_module"}
    for target in absorbed - still_called:
        gm.delete_submodule(target)
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm
