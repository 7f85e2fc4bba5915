"""Flop counters' idioms, run on ember and on torch 2.13 and compared: a dispatch-mode counter
keyed on ATen op packets (ptflops' ``backend="aten"``: docs/torch_dispatch.md) and a walker
over ``jit._get_trace_graph``'s nodes with module scopes (fvcore's ``FlopCountAnalysis``:
docs/porting_examples.md, "fvcore and ptflops' aten backend")."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")


def _models(lib):
    nn = lib.nn

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(4, 4, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(4)
            self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
            self.relu = nn.ReLU()

        def forward(self, x):
            return self.relu(self.conv2(self.relu(self.bn1(self.conv1(x)))) + x)

    class Attn(nn.Module):  # a stack times a matrix, and two 4-D stacks
        def __init__(self):
            super().__init__()
            self.qkv = nn.Linear(8, 24)
            self.proj = nn.Linear(8, 8, bias=False)

        def forward(self, x):
            q, k, v = (t.view(2, 3, 2, 4).transpose(1, 2) for t in self.qkv(x).chunk(3, -1))
            a = (q @ k.transpose(-1, -2)).softmax(-1) @ v
            return self.proj(a.transpose(1, 2).reshape(2, 3, 8)) @ lib.ones(8, 5)

    class Square(lib.autograd.Function):  # a user's Function: one prim::PythonOp in torch
        @staticmethod
        def forward(ctx, x, scale):
            ctx.save_for_backward(x)
            return x * x * scale

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return 2 * x * grad, None

    class Resize(nn.Module):  # ops torch runs as one ATen op and ember composes
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.inorm = nn.InstanceNorm2d(4, affine=True)
            self.gn = nn.GroupNorm(2, 4)
            self.up = nn.Upsample(scale_factor=2, mode="nearest")
            self.inorm2 = nn.InstanceNorm2d(4, track_running_stats=True)
            self.up2 = nn.Upsample(size=(9, 11), mode="bilinear")

        def forward(self, x):
            y = self.inorm2(self.up(self.gn(self.inorm(self.conv(x)))))
            y = self.up2(Square.apply(y, 0.5))
            y = lib.nn.functional.interpolate(y, scale_factor=0.5, mode="bicubic")
            return lib.nn.functional.interpolate(y, size=(3, 3), mode="nearest-exact")

    return {
        "resize": (Resize(), (2, 3, 5, 6)),
        "mlp": (nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)), (5, 6)),
        "cnn": (
            nn.Sequential(
                nn.Conv2d(3, 4, 3, stride=2),
                nn.BatchNorm2d(4),
                nn.ConvTranspose2d(4, 2, 3, stride=2, output_padding=1),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
                nn.Linear(2, 3),
            ),
            (2, 3, 9, 9),
        ),
        "block": (Block(), (2, 4, 6, 6)),
        "attn": (Attn(), (2, 3, 8)),
    }


def _build(lib, name):
    lib.manual_seed(0)
    model, shape = _models(lib)[name]
    return model.eval(), lib.randn(*shape)


# ---- a dispatch-mode counter, the way ptflops' aten backend writes one ----------------------
def _prod(s) -> int:
    return math.prod(int(d) for d in s)


def _dispatch_counter(lib):
    if lib is torch:
        from torch.utils._python_dispatch import TorchDispatchMode
    else:
        from ember.utils._python_dispatch import TorchDispatchMode
    aten = lib.ops.aten

    def mm(args, out):
        return _prod(args[0].shape) * args[1].shape[-1]

    def addmm(args, out):
        n, k = args[1].shape
        return n * k * args[2].shape[1] + n * args[2].shape[1]

    def conv(args, out):
        x, w, b, transposed = args[0], args[1], args[2], args[6]
        spatial = (x.shape if transposed else out.shape)[2:]
        bias = _prod(out.shape[1:]) * x.shape[0] if b is not None else 0
        return x.shape[0] * _prod(w.shape) * _prod(spatial) + bias

    # deep-copied, as ptflops does: the packets must survive it as the same keys
    table = copy.deepcopy({aten.mm: mm, aten.bmm: mm, aten.addmm: addmm, aten.convolution: conv})

    class Count(TorchDispatchMode):
        def __init__(self):  # no super().__init__(), as ptflops
            self.counts, self.ops = {}, []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            packet = func._overloadpacket
            self.ops.append(func.__name__)
            if packet in table:
                key = packet.__name__
                self.counts[key] = self.counts.get(key, 0) + table[packet](args, out)
            return out

    return Count


@pytest.mark.parametrize("name", ["mlp", "cnn", "block", "attn"])
def test_dispatch_counter_matches_torch(name):
    got = {}
    for lib in (ember, torch):
        model, x = _build(lib, name)
        with _dispatch_counter(lib)() as c:
            out = model(x)
        gemm = [op for op in c.ops if op.split(".")[0] in ("t", "mm", "addmm", "bmm", "view")]
        got[lib.__name__] = (c.counts, gemm, out.detach().numpy())
    e, t = got["ember"], got["torch"]
    assert e[0] == t[0] and sum(e[0].values()) > 0
    if name in ("mlp", "cnn"):  # the same op sequence around the products
        assert e[1] == t[1]
    np.testing.assert_allclose(e[2], t[2], rtol=1e-4, atol=1e-5)


def test_decomposed_linear_trains_like_the_fused_op():
    """Under a mode the decomposition records its own graph; gradients equal the fused op's."""
    grads = []
    for counting in (False, True):
        model, x = _build(ember, "attn")
        x.requires_grad_(True)
        if counting:
            with _dispatch_counter(ember)() as c:
                model(x).square().sum().backward()
            assert "addmm_backward.default" in c.ops and "convolution" not in c.counts
        else:
            model(x).square().sum().backward()
        grads.append([x.grad.numpy()] + [p.grad.numpy() for p in model.parameters()])
    for a, b in zip(*grads, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# ---- a trace-graph walker, the way fvcore's JitModelAnalysis writes one ---------------------
def _graph_counts(lib, model, x):
    """FLOPs per module scope and per op kind of the traced graph (fvcore's formulas)."""

    def push(name):
        def hook(mod, inputs):
            state = lib._C._get_tracing_state()
            if state:
                state.push_scope(name)

        return hook

    def pop(mod, inputs, outputs):
        state = lib._C._get_tracing_state()
        if state:
            state.pop_scope()

    handles = []
    for name, mod in model.named_modules():
        handles += [mod.register_forward_pre_hook(push(name)), mod.register_forward_hook(pop)]
    graph, _ = lib.jit._get_trace_graph(model, (x,))
    for h in handles:
        h.remove()

    def shape(v):
        return v.type().sizes() if v.isCompleteTensor() else None

    by_scope, by_kind = {}, {}
    for node in graph.nodes():
        ins, outs = list(node.inputs()), list(node.outputs())
        kind = node.kind()
        if kind == "aten::linear":
            xs, ws = shape(ins[0]), shape(ins[1])
            n = _prod(xs) * ws[0]
        elif kind == "aten::_convolution":
            xs, ws, ys = shape(ins[0]), shape(ins[1]), shape(outs[0])
            transposed = ins[6].toIValue()
            assert isinstance(transposed, bool)
            n = xs[0] * _prod(ws) * _prod((xs if transposed else ys)[2:])
        elif kind == "aten::matmul":
            n = _prod(shape(ins[0])) * shape(ins[1])[-1]
        elif kind == "aten::batch_norm":
            assert ins[5].toIValue() is False  # training
            n = _prod(shape(ins[0])) * (2 if shape(ins[1]) is not None else 1)
        elif kind in ("aten::instance_norm", "aten::group_norm"):  # the affine input: 1, 2
            affine = shape(ins[1 if kind == "aten::instance_norm" else 2]) is not None
            n = _prod(shape(ins[0])) * (5 if affine else 4)
        elif kind == "aten::upsample_nearest2d":
            n = _prod(shape(outs[0]))
        elif kind == "aten::upsample_bilinear2d":
            n = 4 * _prod(shape(outs[0]))
        elif kind == "prim::PythonOp":
            kind, n = f"{kind}.{node.pyname()}", 1
        else:
            continue
        by_kind[kind] = by_kind.get(kind, 0) + n
        scope = node.scopeName().split("/")[-1]
        by_scope[scope] = by_scope.get(scope, 0) + n
    return by_scope, by_kind


@pytest.mark.parametrize("name", ["mlp", "cnn", "block", "attn", "resize"])
def test_trace_graph_walker_matches_torch(name):
    got = {}
    for lib in (ember, torch):
        model, x = _build(lib, name)
        got[lib.__name__] = _graph_counts(lib, model, x)
    assert got["ember"] == got["torch"]
    assert sum(got["ember"][1].values()) > 0


def test_trace_graph_objects():
    model, x = _build(ember, "cnn")
    graph, out = ember.jit._get_trace_graph(model, x)
    assert ember.allclose(out, model(x))
    nodes = list(graph.nodes())
    conv = graph.findAllNodes("aten::_convolution")
    assert len(conv) == 2 and conv[0].inputsSize() == 13
    assert conv[0].input().node() is None and conv[0].input().debugName() == "input"
    assert conv[0].output().type().sizes() == [2, 4, 4, 4]
    assert list(conv[0].output().uses()) == [graph.findAllNodes("aten::batch_norm")[0]]
    assert [v.debugName() for v in graph.inputs()][:2] == ["input", "self.0.weight"]
    stride = list(conv[0].inputs())[3]
    assert stride.node().kind() == "prim::ListConstruct" and stride.toIValue() is None
    assert [v.toIValue() for v in stride.node().inputs()] == [2, 2]
    assert "aten::linear" in str(graph) and nodes[-1].kind() == "aten::linear"
    assert ember._C._get_tracing_state() is None


def _op_nodes(graph) -> list:
    """(kind, pyname, input types, output sizes, constants) of each op (no constants, lists)."""
    out = []
    for n in graph.nodes():
        if n.kind() in ("prim::Constant", "prim::ListConstruct"):
            continue
        kinds = [v.type().kind() if v.isCompleteTensor() else str(v.type()) for v in n.inputs()]
        kinds = ["List" if k.endswith("[]") or k.startswith("List") else k for k in kinds]
        sizes = [v.type().sizes() for v in n.outputs()]
        consts = [v.toIValue() for v in n.inputs() if not v.isCompleteTensor()]
        out.append(
            (n.kind(), n.pyname() if n.kind() == "prim::PythonOp" else "", kinds, sizes, consts)
        )
    return out


def test_trace_graph_one_node_ops_match_torch():
    # interpolate, instance_norm and a user's Function are one node each, argued as torch's
    got = {}
    for lib in (ember, torch):
        model, x = _build(lib, "resize")
        got[lib.__name__] = _op_nodes(lib.jit._get_trace_graph(model, (x,))[0])
    assert got["ember"] == got["torch"]
    kinds = [k for k, *_ in got["ember"]]
    assert kinds.count("aten::instance_norm") == 2 and "prim::PythonOp" in kinds
    assert "aten::upsample_bicubic2d" in kinds and "aten::_upsample_nearest_exact2d" in kinds


def test_docs_one_node_snippet_runs(capsys):
    from pathlib import Path

    text = (Path(__file__).parents[1] / "docs" / "porting_examples.md").read_text()
    section = text.split("## fvcore and ptflops' aten backend", 1)[1].split("\n## ", 1)[0]
    code = next(c for c in section.split("```python\n")[1:] if "class Square" in c)
    code = code.split("```", 1)[0]
    exec(compile(code, "porting_examples.md", "exec"), {})
    want = [line[2:] for line in code.splitlines() if line.startswith("# [")]
    assert capsys.readouterr().out.splitlines() == want
