"""The idioms of speechbrain, pytorch-tabular and torchgeo that ember had to learn, in small
programs of our own, checked against PyTorch (the libraries are not imported).

torchgeo builds ``nn.Sequential(v2.CenterCrop(224))`` at import: torchvision's v2 transforms
are ``nn.Module`` s. speechbrain's ``SaveableDataLoader`` checkpoints the position of its
iterator as ``_num_yielded`` and, on recovery, fast-forwards ``_sampler_iter`` and sets
``_num_yielded`` itself.
"""

from __future__ import annotations

import copy
import pickle

import pytest

import ember
from ember.vision.transforms import v2

torch = pytest.importorskip("torch")


def _image(lib, shape=(3, 8, 8)):
    n = 1
    for s in shape:
        n *= s
    return (lib.arange(n, dtype=lib.float32).reshape(shape) * 0.37).sin()


# ---- v2 transforms are nn.Modules ---------------------------------------------------------


def test_v2_transforms_in_nn_sequential():
    mean, std = [0.1, 0.2, 0.3], [0.5, 0.6, 0.7]
    seq = ember.nn.Sequential(v2.CenterCrop((4, 4)), v2.Normalize(mean, std))
    out = seq(_image(ember))
    # torch's side: the same crop and normalisation written with tensor ops
    ref = _image(torch)[:, 2:6, 2:6]
    ref = (ref - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    assert tuple(out.shape) == tuple(ref.shape)
    assert abs(out.numpy() - ref.numpy()).max() < 1e-6
    assert isinstance(v2.RandomResizedCrop(4), ember.nn.Module)
    assert [type(m).__name__ for m in seq.modules()] == ["Sequential", "CenterCrop", "Normalize"]
    assert seq.state_dict() == {}
    seq.eval()
    assert not seq[0].training and not seq[1].training
    assert "training" not in repr(seq[0]) and "CenterCrop(" in repr(seq)


def test_v1_transforms_in_nn_sequential():
    # torchvision's docs compose v1 transforms with nn.Sequential too
    from ember.vision import transforms as T1

    seq = ember.nn.Sequential(T1.CenterCrop(4), T1.Normalize([0.5, 0.5, 0.5], [0.25] * 3))
    ref = (_image(torch)[:, 2:6, 2:6] - 0.5) / 0.25
    assert abs(seq(_image(ember)).numpy() - ref.numpy()).max() < 1e-6
    assert isinstance(T1.RandomCrop(2), ember.nn.Module)
    assert "training" not in repr(seq[1])
    # v2's wrappers keep their v1 transform (now a child Module) and read its settings
    rot = v2.RandomRotation(30)
    assert rot.degrees == [-30.0, 30.0] and isinstance(rot._impl, T1.RandomRotation)
    assert v2.RandomPerspective(0.5, p=0.25).p == 0.25


def test_v2_transform_held_by_a_module_is_a_child():
    class Model(ember.nn.Module):
        def __init__(self):
            super().__init__()
            self.crop = v2.CenterCrop(2)
            self.fc = ember.nn.Linear(12, 1)

    m = Model()
    assert [n for n, _ in m.named_children()] == ["crop", "fc"]
    assert sorted(m.state_dict()) == ["fc.bias", "fc.weight"]
    ml = ember.nn.ModuleList([v2.RandomHorizontalFlip(1.0), v2.RandomVerticalFlip(1.0)])
    x = _image(ember, (1, 3, 3))
    for t in ml:
        x = t(x)
    assert x.tolist() == _image(torch, (1, 3, 3)).flip(-1).flip(-2).tolist()


def test_v2_subclasses_with_and_without_super_init():
    class TorchvisionStyle(v2.Transform):  # calls nn.Module.__init__ first, as torch requires
        def __init__(self, k):
            super().__init__()
            self.k = k

        def transform(self, inpt, params):
            return inpt * self.k

    class Bare(v2.Transform):  # sets attributes without super().__init__()
        _kinds = ("image",)

        def __init__(self, k):
            self.k = k

        def _transform(self, inpt, kind, params):
            return inpt + self.k

    x = _image(ember, (1, 2, 2))
    seq = ember.nn.Sequential(TorchvisionStyle(3.0), Bare(1.0))
    assert seq(x).tolist() == (_image(torch, (1, 2, 2)) * 3.0 + 1.0).tolist()
    assert seq[0].training and seq[1].training


def test_v2_compose_family_is_a_transform():
    x = _image(ember, (1, 4, 4))
    flip = v2.Compose([v2.RandomHorizontalFlip(1.0)])
    assert isinstance(flip, v2.Transform)
    seq = ember.nn.Sequential(flip, v2.RandomApply([v2.RandomVerticalFlip(1.0)], p=0.0))
    assert seq(x).tolist() == _image(torch, (1, 4, 4)).flip(-1).tolist()
    assert v2.RandomChoice([v2.RandomVerticalFlip(1.0)])(x).tolist() == x.flip(-2).tolist()
    assert v2.RandomOrder([v2.RandomVerticalFlip(1.0)])(x).tolist() == x.flip(-2).tolist()
    # DataLoader workers pickle the transforms; copies keep their settings
    for t in (copy.deepcopy(flip), pickle.loads(pickle.dumps(flip))):
        assert t(x).tolist() == x.flip(-1).tolist()


# ---- the DataLoader iterator's _num_yielded ------------------------------------------------


def _saveable_run(lib):
    data = list(range(10))

    def loader():
        gen = lib.Generator().manual_seed(0)
        return lib.utils.data.DataLoader(data, batch_size=3, shuffle=True, generator=gen)

    it = iter(loader())
    first = [next(it).tolist(), next(it).tolist()]
    saved = it._num_yielded
    # recovery: a fresh loader's iterator skips the sampler's first batches without loading
    # them and records how many it skipped
    it2 = iter(loader())
    for _ in range(saved):
        next(it2._sampler_iter)
    it2._num_yielded = saved
    rest = [b.tolist() for b in it2]
    return first, saved, rest, it2._num_yielded


def test_dataloader_iterator_num_yielded_like_torch():
    got = _saveable_run(ember)
    assert got == _saveable_run(torch)
    assert got[1] == 2 and got[3] == 4


# ---- autograd.Function with classmethod forward / backward ----------------------------------


def _entmax_like(lib):
    # pytorch-tabular's sparsemax / entmax15 Functions: ``@classmethod def forward(cls, ctx,
    # X, dim)``; forward must see tensors (``X.max(dim=..., keepdim=True)``)
    class Shifted(lib.autograd.Function):
        @classmethod
        def forward(cls, ctx, X, dim=-1):
            ctx.dim = dim
            max_val, _ = X.max(dim=dim, keepdim=True)
            Y = lib.clamp(X - max_val + 1.0, min=0) ** 2
            ctx.save_for_backward(Y)
            return Y

        @classmethod
        def backward(cls, ctx, dY):
            (Y,) = ctx.saved_tensors
            gppr = Y.sqrt()
            dX = dY * gppr
            q = (dX.sum(ctx.dim) / gppr.sum(ctx.dim)).unsqueeze(ctx.dim)
            return dX - q * gppr, None

    x = lib.tensor([[0.5, 1.0, 0.2], [2.0, 1.5, -1.0]], requires_grad=True)
    y = Shifted.apply(x, 1)
    (y * lib.tensor([[1.0, 2.0, 3.0], [0.5, 0.1, 2.0]])).sum().backward()
    return y.detach().numpy(), x.grad.numpy()


def test_function_with_classmethod_forward_and_backward():
    (y, g), (ry, rg) = _entmax_like(ember), _entmax_like(torch)
    assert abs(y - ry).max() < 1e-6 and abs(g - rg).max() < 1e-6


# ---- einsum without a contracted index: laid out as torch's -------------------------------


@pytest.mark.parametrize(
    "eq, a, b",
    [("nd,bd->bnd", (3, 5), (4, 5)), ("i,j->ji", (3,), (4,)), ("bi,bj->bij", (2, 3), (2, 4))],
)
def test_einsum_broadcast_product_strides_and_view(eq, a, b):
    # pytorch-tabular's DANet: einsum("nd,bd->bnd", mask, x).view(b, -1, 1)
    res = []
    for lib in (torch, ember):
        x = lib.linspace(-1, 1, 12)[: a[-1]].expand(*a).contiguous().requires_grad_()
        y = lib.linspace(0, 2, 12)[: b[-1]].expand(*b).contiguous()
        out = lib.einsum(eq, x, y)
        flat = out.view(out.shape[0], -1, 1)
        (flat.squeeze(-1) * lib.arange(flat.shape[1], dtype=lib.float32)).sum().backward()
        res.append((out.stride(), out.detach().numpy(), x.grad.numpy()))
    (ts, to, tg), (es, eo, eg) = res
    assert ts == es
    assert abs(to - eo).max() < 1e-6 and abs(tg - eg).max() < 1e-5


def test_porting_examples_snippet_runs(capsys):
    import pathlib
    import re

    doc = pathlib.Path(__file__).resolve().parents[1] / "docs" / "porting_examples.md"
    text = doc.read_text(encoding="utf-8")
    section = text[text.index("## speechbrain, pytorch-tabular, torchgeo") :]
    snippet = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    exec(compile(snippet, "docs/porting_examples.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    lines = snippet.splitlines()
    # each print(...) line is followed by a comment holding what it prints
    expected = [b[2:] for a, b in zip(lines, lines[1:]) if a.startswith("print(")]
    assert printed == expected
