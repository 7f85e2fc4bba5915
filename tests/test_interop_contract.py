"""The contract between core and ``ember.distributed`` (``ember._interop``): its functions do
what they say, and ``distributed/`` uses them instead of ``Tensor``'s private attributes, the
autograd engine's globals, or assignments into core's modules (docs/architecture.md, "The
core <-> distributed contract")."""

from __future__ import annotations

import ast
import pathlib

import numpy as np
import pytest

import ember
from ember import _interop

ROOT = pathlib.Path(__file__).resolve().parent.parent
DISTRIBUTED = ROOT / "distributed"
# Tensor internals that only core (and ember._interop) may touch
PRIVATE = {"_data", "_version_counter", "_grad_dest", "_wrap", "_output_nr", "_post_acc_hooks"}
# Files not moved to the contract yet, with their count of private accesses: the count may
# only go down (move a file, then lower or remove its entry). Nothing new may be added.
NOT_YET_MOVED: dict[str, int] = {}


def _is_module(name: str) -> bool:
    """Whether ``ember.x.y`` names a core module (by its file: nothing is imported)."""
    path = ROOT.joinpath("core", *name.split(".")[1:])
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _core_module_names(imports: list) -> set[str]:
    """Names these import statements bind to a core module (``import ember``,
    ``from ember.x import y`` where ``y`` is a module), ``ember.distributed`` excluded."""
    names = set()
    for node in imports:
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "ember" and not a.name.startswith("ember.distributed"):
                    names.add(a.asname or "ember")
        elif (
            node.level == 0
            and node.module
            and node.module.split(".")[0] == "ember"
            and not node.module.startswith("ember.distributed")
        ):
            for a in node.names:
                full = f"{node.module}.{a.name}"
                if full != "ember._interop" and _is_module(full):
                    names.add(a.asname or a.name)
    return names


def _root(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _violations(path: pathlib.Path, base: pathlib.Path = DISTRIBUTED) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    nodes = list(ast.walk(tree))  # (one walk: it is most of the scan's time)
    modules = _core_module_names([n for n in nodes if isinstance(n, (ast.Import, ast.ImportFrom))])
    found, rel = [], path.relative_to(base)
    for node in nodes:
        where = f"{rel}:{getattr(node, 'lineno', 0)}"
        # (``self._data`` is an object's own state, e.g. the KV store's dict)
        if (
            isinstance(node, ast.Attribute)
            and node.attr in PRIVATE
            and not (isinstance(node.value, ast.Name) and node.value.id == "self")
        ):
            found.append(f"{where}: .{node.attr}")
        elif (
            isinstance(node, ast.ImportFrom)
            and node.module in ("ember.autograd.engine",)
            or isinstance(node, ast.ImportFrom)
            and node.module == "ember.autograd"
            and any(a.name == "engine" for a in node.names)
        ):
            found.append(f"{where}: imports the autograd engine")
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                if isinstance(t, ast.Attribute) and _root(t) in modules:
                    found.append(f"{where}: assigns {ast.unparse(t)} (a core module's global)")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "setattr"
            and node.args
            and _root(node.args[0]) in modules
        ):
            found.append(f"{where}: setattr on a core module")
    return found


def _scan() -> dict[str, list[str]]:
    out = {}
    for path in sorted(DISTRIBUTED.rglob("*.py")):
        hits = _violations(path)
        if hits:
            out[str(path.relative_to(DISTRIBUTED))] = hits
    return out


def test_distributed_reaches_core_only_through_the_contract():
    scan = _scan()
    new = {f: hits for f, hits in scan.items() if f not in NOT_YET_MOVED}
    assert not new, (
        "distributed/ reaches into core's internals; use ember._interop "
        "(docs/architecture.md):\n" + "\n".join(h for v in new.values() for h in v)
    )
    grown = {
        f: (len(h), NOT_YET_MOVED[f])
        for f, h in scan.items()
        if f in NOT_YET_MOVED and len(h) > NOT_YET_MOVED[f]
    }
    assert not grown, f"more private accesses than allowed (found, allowed): {grown}"
    # an entry for a file that has been moved (or is gone) must be lowered or removed
    stale = {
        f: (len(scan.get(f, [])), n) for f, n in NOT_YET_MOVED.items() if len(scan.get(f, [])) < n
    }
    assert not stale, f"lower NOT_YET_MOVED for these (found, listed): {stale}"


def test_the_scan_catches_each_kind_of_reach(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import ember\nfrom ember.autograd import engine\nfrom ember import nn\n"
        "def f(t):\n    a = t._data\n    t._version_counter[0] += 1\n"
        "    ember.Tensor._wrap(a)\n    ember.foo = 1\n    nn.functional.x = 2\n"
        "    setattr(ember.autograd, 'y', 3)\n    engine.grad_destination_users += 1\n"
    )
    kinds = sorted(h.split(": ", 1)[1] for h in _violations(bad, tmp_path))
    assert kinds == sorted(
        [
            "imports the autograd engine",
            "._data",
            "._version_counter",
            "._wrap",
            "assigns ember.foo (a core module's global)",
            "assigns engine.grad_destination_users (a core module's global)",
            "assigns nn.functional.x (a core module's global)",
            "setattr on a core module",
        ]
    )


# ---- the functions themselves ---------------------------------------------------------------
def test_array_of_and_wrap_share_memory():
    t = ember.arange(6.0)
    a = _interop.array_of(t)
    a[0] = 42.0
    assert t[0].item() == 42.0
    w = _interop.wrap(a[2:])
    assert np.shares_memory(_interop.array_of(w), a) and w.shape == (4,)
    assert not w.requires_grad and w.grad_fn is None
    with pytest.raises(TypeError, match="expected a Tensor, got ndarray"):
        _interop.array_of(a)
    other = np.zeros(6, dtype=a.dtype)
    _interop.bump_version(t)
    _interop.set_array(t, other)  # FSDP's storage swap: the version counter stays
    assert _interop.array_of(t) is other and _interop.version(t) == 1 and t.sum().item() == 0


def test_bump_version_is_seen_by_autograd():
    torch = pytest.importorskip("torch")
    x = ember.ones(3, requires_grad=True)
    y = ember.ones(3)
    out = (x * y).sum()  # saves y for backward
    before = _interop.version(y)
    _interop.array_of(y)[...] = 2.0
    _interop.bump_version(y)  # as a collective does after writing received data
    assert _interop.version(y) == before + 1 == y._version
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.backward()
    # torch's check is the same
    tx, ty = torch.ones(3, requires_grad=True), torch.ones(3)
    tout = (tx * ty).sum()
    ty.add_(1)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        tout.backward()


def test_grad_destination_receives_the_gradient():
    lin = ember.nn.Linear(4, 3)
    dest = np.zeros((3, 4), dtype=np.float32)
    _interop.set_grad_destination(lin.weight, dest)
    _interop.use_grad_destinations(1)
    try:
        lin(ember.ones(2, 4)).sum().backward()
    finally:
        _interop.use_grad_destinations(-1)
        _interop.set_grad_destination(lin.weight, None)
    assert _interop.array_of(lin.weight.grad) is dest
    np.testing.assert_allclose(dest, np.full((3, 4), 2.0))
    with pytest.raises(ValueError, match=r"shape \(4,\), the parameter \(3, 4\)"):
        _interop.set_grad_destination(lin.weight, np.zeros(4, dtype=np.float32))
    with pytest.raises(ValueError, match="delta must be"):
        _interop.use_grad_destinations(2)


def test_engine_callback_runs_after_backward():
    x = ember.ones(2, requires_grad=True)
    seen = []

    def hook(grad):
        _interop.queue_engine_callback(lambda: seen.append(("callback", x.grad is not None)))
        seen.append(("hook", None))
        return grad

    x.register_hook(hook)
    (x * 3).sum().backward()
    assert seen == [("hook", None), ("callback", True)]
    with pytest.raises(TypeError, match="expected a callable"):
        _interop.queue_engine_callback(3)


def test_post_accumulate_grad_hooks_run_as_after_backward():
    torch = pytest.importorskip("torch")
    seen, tseen = [], []
    p = ember.nn.Parameter(ember.ones(3))
    p.register_post_accumulate_grad_hook(lambda q: seen.append(q.grad.tolist()))
    (p * 2).sum().backward()  # the engine runs it once
    p.grad = ember.full((3,), 5.0)  # a gradient written outside the engine (FSDP's shard)
    _interop.run_post_accumulate_grad_hooks(p)
    tp = torch.nn.Parameter(torch.ones(3))
    tp.register_post_accumulate_grad_hook(lambda q: tseen.append(q.grad.tolist()))
    (tp * 2).sum().backward()
    assert seen == tseen + [[5.0, 5.0, 5.0]] == [[2.0, 2.0, 2.0], [5.0, 5.0, 5.0]]
    _interop.run_post_accumulate_grad_hooks(ember.ones(2))  # no hooks: nothing to run
    with pytest.raises(TypeError, match="expected a Tensor, got list"):
        _interop.run_post_accumulate_grad_hooks([1.0])
