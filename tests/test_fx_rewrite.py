"""ember.fx.subgraph_rewriter with patterns of several outputs, against torch.fx on the same
pattern / replacement / model source: the same matches and the same resulting node list."""

import numpy as np
import pytest

import ember
from ember import fx
from ember.fx import subgraph_rewriter as rw

torch = pytest.importorskip("torch")


def _nodes(gm):
    """(op, name, target name, argument names) of every node, in graph order."""

    def arg(a):
        if hasattr(a, "name") and hasattr(a, "op"):
            return a.name
        if isinstance(a, (tuple, list)):
            return tuple(arg(e) for e in a)
        return repr(a)

    return [
        (
            n.op,
            n.name,
            getattr(n.target, "__name__", str(n.target)),
            tuple(arg(a) for a in n.args),
            tuple(sorted((k, arg(v)) for k, v in n.kwargs.items())),
        )
        for n in gm.graph.nodes
    ]


# each case: (model, pattern, replacement) written once over a namespace T (ember or torch)
def _two_outputs(T):
    def model(x, w, v):
        a = T.matmul(x, w)
        y1, y2 = T.relu(a), T.sigmoid(a)
        b = T.matmul(y1 + y2, v)
        z1, z2 = T.relu(b), T.sigmoid(b)
        return z1 * z2 + T.tanh(x)

    def pattern(x, w):
        a = T.matmul(x, w)
        return T.relu(a), T.sigmoid(a)

    def replacement(x, w):
        a = x @ w
        return T.clamp(a, min=0.0), 1.0 / (1.0 + T.exp(-a))

    return model, pattern, replacement


def _returned_inner(T):
    # the pattern returns a value that it also reads (only the last one is an anchor)
    def model(x):
        a = T.relu(x)
        b = a * 2
        return b - a, T.relu(b)

    def pattern(x):
        a = T.relu(x)
        return a, a * 2

    def replacement(x):
        a = T.clamp(x, min=0.0)
        return a, a + a

    return model, pattern, replacement


def _chained(T):
    # a later match reads an output that an earlier replacement produced
    def model(x, y):
        s1, d1 = x + y, x - y
        s2, d2 = s1 + d1, s1 - d1
        return s2 * d2

    def pattern(a, b):
        return a + b, a - b

    def replacement(a, b):
        return T.add(a, b), T.sub(a, b)

    return model, pattern, replacement


CASES = {
    "two_outputs": (_two_outputs, 3),
    "returned_inner": (_returned_inner, 1),
    "chained": (_chained, 2),
}


@pytest.mark.parametrize("case", list(CASES))
def test_multi_output_replace_matches_torch_fx(case):
    build, n_inputs = CASES[case]
    e_model, e_pat, e_rep = build(ember)
    t_model, t_pat, t_rep = build(torch)
    gm, tgm = fx.symbolic_trace(e_model), torch.fx.symbolic_trace(t_model)
    args = [
        np.random.default_rng(k).normal(size=(3, 3)).astype(np.float32) for k in range(n_inputs)
    ]
    ref = gm(*[ember.tensor(a) for a in args])
    matches = rw.replace_pattern(gm, e_pat, e_rep)
    t_matches = torch.fx.subgraph_rewriter.replace_pattern(tgm, t_pat, t_rep)
    assert len(matches) == len(t_matches) >= 1
    assert [m.anchor.name for m in matches] == [m.anchor.name for m in t_matches]
    assert _nodes(gm) == _nodes(tgm)
    gm.graph.lint()
    got = gm(*[ember.tensor(a) for a in args])
    want = tgm(*[torch.tensor(a) for a in args])

    def as_tuple(v):
        return v if isinstance(v, tuple) else (v,)

    for g, r, w in zip(as_tuple(got), as_tuple(ref), as_tuple(want)):
        np.testing.assert_allclose(g.numpy(), r.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-5, atol=1e-6)


def _filtered(T):
    def model(x):
        a, b = T.split(x * 3, 2, dim=0)
        c, d = T.split(x + 1, 2, dim=0)
        return a + b + c + d

    def pattern(x):
        a, b = T.split(x, 2, dim=0)
        return a, b

    def replacement(x):
        return x[:2], x[2:]

    return model, pattern, replacement


@pytest.mark.parametrize("ignore_literals", [False, True])
def test_replace_pattern_with_filters_matches_torch_fx(ignore_literals):
    e_model, e_pat, e_rep = _filtered(ember)
    t_model, t_pat, t_rep = _filtered(torch)

    def only_after_add(match, original_graph, pattern_graph):
        (inp,) = match.placeholder_nodes
        return getattr(inp.target, "__name__", "") == "add"

    gm, tgm = fx.symbolic_trace(e_model), torch.fx.symbolic_trace(t_model)

    def e_pattern_split_3(x):  # a literal that differs from the model's unless ignored
        a, b = ember.split(x, 3, dim=0)
        return a, b

    def t_pattern_split_3(x):
        a, b = torch.split(x, 3, dim=0)
        return a, b

    e_p, t_p = (e_pattern_split_3, t_pattern_split_3) if ignore_literals else (e_pat, t_pat)
    res = rw.replace_pattern_with_filters(
        gm, e_p, e_rep, [only_after_add], ignore_literals=ignore_literals
    )
    t_res = torch.fx.subgraph_rewriter.replace_pattern_with_filters(
        tgm, t_p, t_rep, [only_after_add], ignore_literals=ignore_literals
    )
    assert len(res) == len(t_res) == 1
    assert [n.name for n in res[0].replacements] == [n.name for n in t_res[0].replacements]
    assert _nodes(gm) == _nodes(tgm)
    x = np.arange(4, dtype=np.float32)
    np.testing.assert_allclose(gm(ember.tensor(x)).numpy(), tgm(torch.tensor(x)).numpy())


def test_replace_pattern_errors():
    e_model, e_pat, _ = _two_outputs(ember)
    gm = fx.symbolic_trace(e_model)
    with pytest.raises(ValueError, match="returns 2 values but the replacement returns 1"):
        rw.replace_pattern(gm, e_pat, lambda x, w: ember.matmul(x, w))
    with pytest.raises(ValueError, match="give a replacement or a replacement_callback"):
        rw.replace_pattern_with_filters(gm, e_pat)
    with pytest.raises(TypeError, match="expected a GraphModule"):
        rw.replace_pattern(e_model, e_pat, e_pat)
