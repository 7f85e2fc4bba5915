"""einops on ember tensors (core/_einops.py): the functional API and the layers, against
einops on torch; the registration whichever of ember and einops is imported first; and the
``einops.layers.torch`` rule (ember's layers only in ember programs, adoption otherwise)."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

einops = pytest.importorskip("einops")
torch = pytest.importorskip("torch")

from einops import pack, rearrange, reduce, repeat, unpack  # noqa: E402

import ember  # noqa: E402

RNG = np.random.default_rng(0)


def both(shape, dtype=np.float32, grad=True):
    a = RNG.standard_normal(shape).astype(dtype)
    e, t = ember.tensor(a), torch.tensor(a)
    if grad:
        e.requires_grad_(True)
        t.requires_grad_(True)
    return e, t


def close(e, t, atol=1e-5):
    np.testing.assert_allclose(e.detach().numpy(), t.detach().numpy(), rtol=1e-5, atol=atol)


CASES = [
    (rearrange, ("b c (h p) (w q) -> b (h w) (p q c)",), {"p": 2, "q": 2}),
    (rearrange, ("b c h w -> (b h) w c",), {}),
    (rearrange, ("b ... w -> w ... b",), {}),
    (reduce, ("b c (h 2) (w 2) -> b c h w", "max"), {}),
    (reduce, ("b c h w -> b c", "mean"), {}),
    (reduce, ("b c h w -> c", "min"), {}),
    (reduce, ("b c h w -> b 1 h w", "sum"), {}),
    (reduce, ("b c h w -> h w", "prod"), {}),
    (repeat, ("b c h w -> b c h w k",), {"k": 3}),
    (repeat, ("b c h w -> b (c k) h w",), {"k": 2}),
]


@pytest.mark.parametrize("fn,args,kw", CASES, ids=[c[1][0] + str(c[1][1:]) for c in CASES])
def test_functional_matches_torch_with_grads(fn, args, kw):
    e, t = both((2, 3, 4, 4))
    ye, yt = fn(e, *args, **kw), fn(t, *args, **kw)
    assert isinstance(ye, ember.Tensor) and tuple(ye.shape) == tuple(yt.shape)
    close(ye, yt)
    w = RNG.standard_normal(tuple(yt.shape)).astype(np.float32)
    (ye * ember.tensor(w)).sum().backward()
    (yt * torch.tensor(w)).sum().backward()
    close(e.grad, t.grad, atol=1e-4)


def test_bool_and_int_reductions_and_lists():
    m = RNG.random((3, 4)) > 0.5
    for op in ("any", "all"):
        assert reduce(ember.tensor(m), "a b -> a", op).tolist() == (
            reduce(torch.tensor(m), "a b -> a", op).tolist()
        )
    ints = ember.arange(12).reshape(3, 4)
    assert reduce(ints, "a b -> b", "sum").tolist() == [12, 15, 18, 21]
    with pytest.raises(NotImplementedError):  # mean of ints is refused, as on torch
        reduce(ints, "a b -> b", "mean")
    # a list of tensors is stacked first
    out = rearrange([ember.ones(2, 3), ember.zeros(2, 3)], "n a b -> a (n b)")
    assert tuple(out.shape) == (2, 6)
    assert einops.parse_shape(ember.zeros(2, 5), "b t") == {"b": 2, "t": 5}


def test_pack_unpack_and_einsum():
    (a, ta), (b, tb) = both((2, 5)), both((2, 3, 5))
    p, ps = pack([a, b], "b * c")
    tp, tps = pack([ta, tb], "b * c")
    close(p, tp)
    assert [tuple(s) for s in ps] == [tuple(s) for s in tps]
    ua, ub = unpack(p * 2, ps, "b * c")
    (ua.sum() + ub.sum()).backward()
    assert a.grad.tolist() == [[2.0] * 5] * 2
    (x, tx), (w, tw) = both((2, 3, 4)), both((4, 6))
    ye = einops.einsum(x, w, "b t c, c d -> b t d")
    yt = einops.einsum(tx, tw, "b t c, c d -> b t d")
    close(ye, yt)
    ye.sum().backward()
    yt.sum().backward()
    close(w.grad, tw.grad, atol=1e-4)


def test_real_torch_keeps_einops_torch_layers_and_ember_adopts_them():
    from einops.layers.torch import EinMix, Rearrange, Reduce

    # a torch program gets einops' own layers, working on torch tensors
    assert Rearrange.__module__ == "einops.layers.torch"
    assert issubclass(Rearrange, torch.nn.Module)
    torch.manual_seed(0)
    mix = EinMix("b t c -> b t d", weight_shape="c d", bias_shape="d", c=4, d=3)
    tseq = torch.nn.Sequential(
        Rearrange("b c h w -> b (h w) c"), mix, Reduce("b t d -> b d", "max")
    )
    e, t = both((2, 4, 3, 3), grad=False)
    yt = tseq(t)

    # the same layer objects placed into ember models become ember's twins, weights included
    eseq = ember.nn.Sequential(*tseq)
    assert all(isinstance(m, ember.nn.Module) for m in eseq)
    assert type(eseq[0]).__module__ == "ember._einops_layers"
    assert repr(eseq[0]) == "Rearrange('b c h w -> b (h w) c')"
    close(eseq(e), yt)
    holder = ember.nn.Module()
    holder.mix = mix
    holder.stack = ember.nn.ModuleList([Reduce("b t d -> b t", "mean")])
    assert sorted(n for n, _ in holder.named_parameters()) == ["mix.bias", "mix.weight"]
    assert isinstance(holder.stack[0], ember.nn.Module)
    holder.mix = Rearrange("b t d -> b d t")  # replacing a child
    assert isinstance(holder.mix, ember.nn.Module) and not list(holder.parameters())
    with pytest.raises(TypeError, match="is not a Module subclass"):  # other torch modules: no
        ember.nn.Sequential(torch.nn.ReLU())
    # einops.layers.ember: ember's layers whatever is installed
    from einops.layers import ember as ember_layers

    assert ember_layers.Rearrange is type(eseq[0])
    assert issubclass(ember_layers.EinMix, ember.nn.Module)


def test_vit_patch_embedding_trains_a_step_like_torch():
    from einops.layers.torch import Rearrange

    def build(nn):
        return nn.Sequential(
            Rearrange("b c (h p1) (w p2) -> b (h w) (p1 p2 c)", p1=4, p2=4),
            nn.LayerNorm(48),
            nn.Linear(48, 16),
        )

    torch.manual_seed(0)
    tm, em = build(torch.nn), build(ember.nn)
    em.load_state_dict({k: ember.tensor(v.detach().numpy()) for k, v in tm.state_dict().items()})
    cls = RNG.standard_normal((1, 1, 16)).astype(np.float32)
    x = RNG.standard_normal((2, 3, 8, 8)).astype(np.float32)
    losses = []
    for lib, model in ((torch, tm), (ember, em)):
        opt = lib.optim.SGD(model.parameters(), lr=0.1)
        for _ in range(2):
            tokens = model(lib.tensor(x))
            cls_tokens = repeat(lib.tensor(cls), "1 1 d -> b 1 d", b=2)
            h = lib.cat((cls_tokens, tokens), dim=1)
            loss = reduce(h, "b n d -> b", "mean").pow(2).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    np.testing.assert_allclose(losses[2:], losses[:2], rtol=1e-5)


PROGRAM = """
import sys
{pre}
import ember
assert ("einops" in sys.modules) == {einops_loaded}, "import ember must not import einops"
sys.modules["torch"] = {torch_as}  # an ember program: torch absent, or torch is ember
from einops import rearrange
from einops.layers.torch import EinMix, Rearrange
assert Rearrange.__module__ == "ember._einops_layers", Rearrange.__module__
assert issubclass(EinMix, ember.nn.Module)
x = ember.randn(2, 3, 4, requires_grad=True)
m = ember.nn.Sequential(Rearrange("b t c -> b c t"), EinMix("b c t -> b c", weight_shape="t", t=3))
m(x).sum().backward()
assert tuple(x.grad.shape) == (2, 3, 4) and m[1].weight.grad is not None
print("ok", rearrange(x, "b t c -> (b t) c").shape)
"""


@pytest.mark.parametrize(
    "pre,einops_loaded,torch_as",
    [("", False, "None"), ("import einops", True, "ember")],
    ids=["ember-first-no-torch", "einops-first-torch-is-ember"],
)
def test_registration_order_and_ember_programs_get_ember_layers(pre, einops_loaded, torch_as):
    code = PROGRAM.format(pre=pre, einops_loaded=einops_loaded, torch_as=torch_as)
    run = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    assert "ok ember.Size([6, 4])" in run.stdout


def test_docs_snippet_runs():
    import pathlib
    import re

    doc = pathlib.Path(__file__).resolve().parents[1] / "docs" / "einops.md"
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(), re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, str(doc), "exec"), {})
