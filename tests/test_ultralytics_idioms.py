"""The PyTorch idioms ultralytics 8.4 (YOLO) builds on, in small programs of our own, checked
against PyTorch (ultralytics itself is not imported).

ultralytics' checkpoints (``yolov8n.pt``, ``last.pt``) pickle whole models; its ``DFL`` head
writes ``conv.weight.data[:] = nn.Parameter(...)`` into a frozen weight; ``model.info()``
counts FLOPs with thop, which keys rules on torch's private module bases
(``nn.modules.padding._ReflectionPadNd``, ``nn.modules.pooling._AdaptiveAvgPoolNd``) and its
functional products on ``torch.matmul`` / ``torch.Tensor.matmul`` seen by a
``TorchFunctionMode``; ``init_seeds`` sets ``torch.utils.deterministic``; its
``InfiniteDataLoader`` swaps in a repeating batch sampler and keeps one ``_get_iterator()`` for
all epochs; its task-aligned assigner calls ``torch.arange(end=n)``; ``fuse()`` folds batch
norm into convolutions by hand and ``ModelEMA`` averages a deep copy of the model.
"""

from __future__ import annotations

import copy
import io
import math
import sys
import types
import warnings

import numpy as np
import pytest
import torch

import ember

LIBS = [torch, ember]


def _np(t):
    return t.detach().numpy()


# ---- thop's rule tables: torch's private module bases -------------------------------------


@pytest.mark.parametrize(
    "path, members",
    [
        ("padding._ReflectionPadNd", ["ReflectionPad1d", "ReflectionPad2d", "ReflectionPad3d"]),
        ("padding._ReplicationPadNd", ["ReplicationPad1d", "ReplicationPad2d"]),
        ("padding._CircularPadNd", ["CircularPad1d", "CircularPad2d", "CircularPad3d"]),
        ("padding._ConstantPadNd", ["ConstantPad2d", "ZeroPad2d"]),
        ("pooling._MaxUnpoolNd", ["MaxUnpool1d", "MaxUnpool2d", "MaxUnpool3d"]),
        ("pooling._AdaptiveAvgPoolNd", ["AdaptiveAvgPool1d", "AdaptiveAvgPool2d"]),
        ("pooling._AdaptiveMaxPoolNd", ["AdaptiveMaxPool2d", "AdaptiveMaxPool3d"]),
        ("batchnorm._NormBase", ["BatchNorm2d", "InstanceNorm2d"]),
        ("dropout._DropoutNd", ["Dropout", "Dropout2d"]),
    ],
)
def test_private_module_bases_as_torch(path, members):
    # a rule table keyed by the private bases resolves each layer through its MRO, as thop does
    for lib in LIBS:
        mod, name = path.split(".")
        base = getattr(getattr(lib.nn.modules, mod), name)
        for m in members:
            assert issubclass(getattr(lib.nn, m), base), (lib.__name__, m, path)
    # and no family claims another's layers (an adaptive max pool is not an average one)
    for lib in LIBS:
        avg = lib.nn.modules.pooling._AdaptiveAvgPoolNd
        assert not issubclass(lib.nn.AdaptiveMaxPool2d, avg)
        assert not issubclass(lib.nn.ReplicationPad2d, lib.nn.modules.padding._ReflectionPadNd)
    assert ember.nn.modules.pooling.FractionalMaxPool2d is ember.nn.FractionalMaxPool2d


def _count_flops(lib, model, x):
    """A thop-style counter of our own: module rules looked up through the MRO plus
    functional products seen by a TorchFunctionMode, keyed by functions taken at setup."""
    nn = lib.nn

    def conv(m, y):
        k = m.weight[0].numel()
        return y.numel() * k

    rules = {
        nn.Conv2d: conv,
        nn.Linear: lambda m, y: y.numel() * m.in_features,
        nn.modules.pooling._AdaptiveAvgPoolNd: lambda m, y: 0,
        nn.modules.padding._ReflectionPadNd: lambda m, y: 0,
        nn.modules.batchnorm._NormBase: lambda m, y: 2 * y.numel(),
    }
    functional = {
        lib.matmul: lambda a, y: y.numel() * a[0].shape[-1],
        lib.Tensor.matmul: lambda a, y: y.numel() * a[0].shape[-1],
    }
    total = [0, 0]

    def hook(m, args, y):
        for t in type(m).__mro__:
            if t in rules:
                total[0] += rules[t](m, y)
                return

    class Counter(lib.overrides.TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            y = func(*args, **(kwargs or {}))
            rule = functional.get(func)
            if rule is not None:
                total[1] += rule(args, y)
            return y

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    with lib.no_grad(), Counter():
        model(x)
    for h in handles:
        h.remove()
    return total


def _attn_model(lib):
    nn = lib.nn

    class Attn(nn.Module):
        def __init__(self):
            super().__init__()
            self.pad = nn.ReflectionPad2d(1)
            self.conv = nn.Conv2d(3, 8, 3)
            self.bn = nn.BatchNorm2d(8)
            self.pool = nn.AdaptiveAvgPool2d(4)
            self.fc = nn.Linear(8, 8)

        def forward(self, x):
            t = self.pool(self.bn(self.conv(self.pad(x)))).flatten(2).transpose(1, 2)
            q = self.fc(t)
            attn = (q @ t.transpose(1, 2)).softmax(-1)  # an operator: Tensor.matmul
            return lib.matmul(attn, t)

    return Attn()


def test_flops_counter_tables_as_torch():
    counts = []
    for lib in LIBS:
        lib.manual_seed(0)
        counts.append(_count_flops(lib, _attn_model(lib).eval(), lib.ones(1, 3, 8, 8)))
    assert counts[0] == counts[1]
    assert counts[1][1] > 0  # the functional products were found by the import-time keys


def _seen_by_mode(lib):
    keyed = {lib.Tensor.matmul: "m", lib.add: "a"}  # taken before any mode is entered
    seen = []

    class M(lib.overrides.TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            seen.append((keyed.get(func), func is lib.Tensor.matmul or func is lib.add))
            return func(*args, **(kwargs or {}))

    a = lib.ones(2, 2)
    with M():
        a @ a
        lib.add(a, a)
    return seen


def test_function_mode_func_identity_inside_and_outside():
    # ``func`` compares equal to (and hashes as) the function taken before any mode, and is
    # ``torch.Tensor.matmul`` evaluated inside the mode
    for lib in LIBS:
        assert _seen_by_mode(lib) == [("m", True), ("a", True)], lib.__name__


# ---- DFL: a frozen weight filled through .data --------------------------------------------


def test_write_through_data_keeps_frozen_weight_frozen():
    res = []
    for lib in LIBS:
        conv = lib.nn.Conv2d(16, 1, 1, bias=False).requires_grad_(False)
        x = lib.arange(16, dtype=lib.float)
        conv.weight.data[:] = lib.nn.Parameter(x.view(1, 16, 1, 1))
        trainable = sum(p.numel() for p in conv.parameters() if p.requires_grad)
        d = conv.weight.detach()
        res.append(
            (conv.weight.requires_grad, conv.weight.grad_fn is None, trainable, d._base is None)
        )
        assert _np(conv.weight).ravel().tolist() == list(range(16))
    assert res[0] == res[1] == (False, True, 0, True)


def test_detach_then_view_write_goes_to_the_detached_tensor():
    for lib in LIBS:
        w = lib.zeros(4, 4)
        d = w.detach()
        v = d[0]
        v[:] = lib.ones(4, requires_grad=True)
        assert not w.requires_grad and d.requires_grad, lib.__name__
        assert float(w.sum()) == 4.0


# ---- init_seeds, the assigner's arange ----------------------------------------------------


def test_deterministic_fill_uninitialized_memory():
    for lib in LIBS:
        det = lib.utils.deterministic
        old = det.fill_uninitialized_memory
        try:
            assert old is True
            det.fill_uninitialized_memory = False
            assert det.fill_uninitialized_memory is False
            with pytest.raises(RuntimeError, match="expected a bool"):
                det.fill_uninitialized_memory = 1
        finally:
            det.fill_uninitialized_memory = old


def test_arange_keyword_end():
    for kw in [dict(end=5), dict(start=2, end=7), dict(start=1, end=2, step=0.25)]:
        assert np.array_equal(_np(torch.arange(**kw)), _np(ember.arange(**kw))), kw
        assert torch.arange(**kw).dtype == torch.int64 or "step" in kw
    assert ember.arange(end=5, dtype=ember.int64)[..., None].shape == (5, 1)
    with pytest.raises(TypeError, match="end"):
        ember.arange()


# ---- InfiniteDataLoader: a repeating batch sampler and one iterator -------------------------


def _infinite_loader(lib):
    dl = lib.utils.data

    class RepeatSampler:
        def __init__(self, sampler):
            self.sampler = sampler

        def __iter__(self):
            while True:
                yield from iter(self.sampler)

    class InfiniteLoader(dl.DataLoader):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            object.__setattr__(self, "batch_sampler", RepeatSampler(self.batch_sampler))
            self.iterator = None

        def __len__(self):
            return len(self.batch_sampler.sampler)

        def __iter__(self):
            if self.iterator is None:
                self.iterator = self._get_iterator()
            for _ in range(len(self)):
                yield next(self.iterator)

    return InfiniteLoader


def test_infinite_dataloader_get_iterator_as_torch():
    out = []
    for lib in LIBS:
        lib.manual_seed(0)
        ds = lib.utils.data.TensorDataset(lib.arange(10))
        loader = _infinite_loader(lib)(ds, batch_size=4, shuffle=True, num_workers=0)
        epochs = [[b[0].tolist() for b in loader] for _ in range(3)]
        assert [len(e) for e in epochs] == [3, 3, 3]
        out.append(epochs)
    assert out[0] == out[1]  # same shuffles under the same seed, across epochs


# ---- pickled whole models (yolov8n.pt, last.pt) ---------------------------------------------


def _blocks_module(lib):
    """A stand-in for ``ultralytics.nn.modules``: the same importable name holds classes built on
    torch when torch saves and on ember when ember loads (as an import hook makes it)."""
    nn = lib.nn

    class ConvBNAct(nn.Module):
        default_act = nn.SiLU()

        def __init__(self, c1, c2, k=1, s=1):
            super().__init__()
            self.conv = nn.Conv2d(c1, c2, k, s, k // 2, bias=False)
            self.bn = nn.BatchNorm2d(c2)
            self.act = self.default_act

        def forward(self, x):
            return self.act(self.bn(self.conv(x)))

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = nn.Sequential(
                ConvBNAct(3, 8, 3, 2),
                nn.MaxPool2d(3, 1, 1),
                ConvBNAct(8, 8, 3),
                nn.Upsample(None, 2, "nearest"),
            )
            self.heads = nn.ModuleList([nn.Conv2d(8, 4, 1), nn.Conv2d(8, 2, 1)])
            self.register_buffer("stride", lib.tensor([8.0]))

        def forward(self, x):
            y = self.model(x)
            return lib.cat([h(y) for h in self.heads], 1)

    mod = types.ModuleType("_ultra_idiom_blocks")
    for cls in (ConvBNAct, Tiny):
        cls.__module__ = mod.__name__
        cls.__qualname__ = cls.__name__
        setattr(mod, cls.__name__, cls)
    return mod


def test_load_whole_model_pickled_by_torch(monkeypatch):
    mod_t = _blocks_module(torch)
    monkeypatch.setitem(sys.modules, mod_t.__name__, mod_t)
    torch.manual_seed(0)
    model = mod_t.Tiny()
    model(torch.randn(2, 3, 16, 16))  # train-mode step: running stats move
    model.eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        want = model(x)
    buf = io.BytesIO()
    torch.save({"model": model, "epoch": 3, "date": "2026"}, buf)

    mod_e = _blocks_module(ember)
    monkeypatch.setitem(sys.modules, mod_e.__name__, mod_e)
    buf.seek(0)
    with pytest.warns(UserWarning, match="arbitrary"):
        ckpt = ember.load(buf, weights_only=False)
    m = ckpt["model"]
    assert isinstance(m, mod_e.Tiny) and isinstance(m.model[1], ember.nn.MaxPool2d)
    assert isinstance(m.model[0].act, ember.nn.SiLU) and ckpt["epoch"] == 3
    assert "BatchNorm2d(8, eps=1e-05" in repr(m)
    with ember.no_grad():
        got = m(ember.from_numpy(x.numpy()))
    np.testing.assert_allclose(_np(got), _np(want), rtol=1e-4, atol=1e-5)
    # and it trains on: the parameters are leaves that require grad
    m.train()
    m(ember.randn(2, 3, 16, 16)).sum().backward()
    assert m.model[0].conv.weight.grad is not None

    # a torch global ember lacks is still refused with its name
    from ember._torch_pickle import _ember_counterpart

    assert _ember_counterpart("torch.nn.modules.conv", "Conv2d") is ember.nn.Conv2d
    assert _ember_counterpart("torch.nn.modules.nonexistent", "NoSuchLayer") is None


def test_ember_pickled_whole_model_round_trip(tmp_path, monkeypatch):
    mod_e = _blocks_module(ember)
    monkeypatch.setitem(sys.modules, mod_e.__name__, mod_e)
    ember.manual_seed(0)
    m = mod_e.Tiny().eval()
    x = ember.randn(1, 3, 16, 16)
    ember.save({"model": m, "ema": copy.deepcopy(m)}, tmp_path / "last.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the trusted-load warning
        ck = ember.load(tmp_path / "last.pt", weights_only=False)
    with ember.no_grad():
        np.testing.assert_array_equal(_np(ck["model"](x)), _np(m(x)))
        np.testing.assert_array_equal(_np(ck["ema"](x)), _np(m(x)))


# ---- fuse(): conv + batch norm folded by hand ----------------------------------------------


def _fuse_conv_and_bn(lib, conv, bn):
    fused = (
        lib.nn.Conv2d(
            conv.in_channels,
            conv.out_channels,
            kernel_size=conv.kernel_size,
            stride=conv.stride,
            padding=conv.padding,
            dilation=conv.dilation,
            groups=conv.groups,
            bias=True,
        )
        .requires_grad_(False)
        .to(conv.weight.device)
    )
    w_conv = conv.weight.view(conv.out_channels, -1)
    w_bn = lib.diag(bn.weight.div(lib.sqrt(bn.eps + bn.running_var)))
    fused.weight.copy_(lib.mm(w_bn, w_conv).view(fused.weight.shape))
    b_conv = (
        lib.zeros(conv.weight.shape[0], device=conv.weight.device)
        if conv.bias is None
        else conv.bias
    )
    b_bn = bn.bias - bn.weight.mul(bn.running_mean).div(lib.sqrt(bn.running_var + bn.eps))
    fused.bias.copy_(lib.mm(w_bn, b_conv.reshape(-1, 1)).reshape(-1) + b_bn)
    return fused


def test_conv_bn_fusion_by_hand_as_torch():
    outs, flags = [], []
    for lib in LIBS:
        lib.manual_seed(0)
        conv = lib.nn.Conv2d(4, 6, 3, 2, 1, groups=2, bias=False)
        bn = lib.nn.BatchNorm2d(6)
        x = lib.randn(2, 4, 9, 9)
        bn.train()
        bn(conv(x))  # move the running statistics
        bn.eval()
        fused = _fuse_conv_and_bn(lib, conv, bn)
        with lib.no_grad():
            ref, got = bn(conv(x)), fused(x)
        np.testing.assert_allclose(_np(got), _np(ref), rtol=1e-4, atol=1e-5)
        # copy_ of a grad-requiring value made the frozen weight part of the graph, in both
        flags.append((fused.weight.requires_grad, fused.weight.grad_fn is not None))
        outs.append(_np(got))
        # ultralytics 8.4's fuse: torch.nn.utils.fusion on the conv's own parameters
        w, b = lib.nn.utils.fusion.fuse_conv_bn_weights(
            conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias
        )
        conv.weight, conv.bias = w, b
        conv.requires_grad_(False)
        with lib.no_grad():
            np.testing.assert_allclose(_np(conv(x)), _np(ref), rtol=1e-4, atol=1e-5)
        assert isinstance(conv.bias, lib.nn.Parameter) and not conv.bias.requires_grad
    np.testing.assert_allclose(outs[1], outs[0], rtol=1e-4, atol=1e-5)
    assert flags[0] == flags[1]


# ---- ModelEMA: a deep copy updated from the training model --------------------------------


def test_model_ema_of_deepcopy_as_torch():
    results = []
    for lib in LIBS:
        lib.manual_seed(0)
        model = lib.nn.Sequential(lib.nn.Conv2d(3, 4, 3), lib.nn.BatchNorm2d(4), lib.nn.SiLU())
        ema = copy.deepcopy(model).eval()
        for p in ema.parameters():
            p.requires_grad_(False)
        opt = lib.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        updates = 0
        for _ in range(3):
            loss = model(lib.randn(2, 3, 6, 6)).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            updates += 1
            d = 0.9999 * (1 - math.exp(-updates / 2000))
            with lib.no_grad():
                msd = model.state_dict()
                for k, v in ema.state_dict().items():
                    if v.dtype.is_floating_point:
                        v *= d
                        v += (1 - d) * msd[k].detach()
        assert all(not p.requires_grad for p in ema.parameters())
        assert ema[0].weight.data_ptr() != model[0].weight.data_ptr()
        results.append({k: _np(v).copy() for k, v in ema.state_dict().items()})
    for k in results[0]:
        np.testing.assert_allclose(results[1][k], results[0][k], rtol=1e-5, atol=1e-6, err_msg=k)


# ---- classify_augmentations: torchvision's random draws under the same seed ------------------


def _torchvision_draws(n_crops: int):
    """torchvision's documented draws, made with torch: RandomResizedCrop.get_params,
    RandomHorizontalFlip, ColorJitter.get_params, RandomCrop.get_params."""
    out = []
    height = width = 64
    area = height * width
    log_ratio = torch.log(torch.tensor((3 / 4, 4 / 3)))
    for _ in range(n_crops):
        for _ in range(10):
            target_area = area * torch.empty(1).uniform_(0.08, 1.0).item()
            aspect = torch.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1])).item()
            w = int(round(math.sqrt(target_area * aspect)))
            h = int(round(math.sqrt(target_area / aspect)))
            if 0 < w <= width and 0 < h <= height:
                i = torch.randint(0, height - h + 1, size=(1,)).item()
                j = torch.randint(0, width - w + 1, size=(1,)).item()
                out.append(("crop", i, j, h, w))
                break
        out.append(("flip", bool(torch.rand(1) < 0.5)))
        order = torch.randperm(4).tolist()
        factors = [torch.empty(1).uniform_(lo, hi).item() for lo, hi in [(0.6, 1.4)] * 3]
        out.append(("jitter", order, *factors, torch.empty(1).uniform_(-0.015, 0.015).item()))
        i = torch.randint(0, 64 - 32 + 1, size=(1,)).item()
        out.append(("rcrop", i, torch.randint(0, 64 - 32 + 1, size=(1,)).item()))
    return out


def _ember_draws(n_crops: int):
    T = pytest.importorskip("ember.vision.transforms")
    img = ember.zeros(3, 64, 64)
    out = []
    for _ in range(n_crops):
        out.append(("crop", *T.RandomResizedCrop.get_params(img, (0.08, 1.0), (3 / 4, 4 / 3))))
        out.append(("flip", T.RandomHorizontalFlip(0.5)(img) is not img))
        order, *factors = T.ColorJitter.get_params(
            (0.6, 1.4), (0.6, 1.4), (0.6, 1.4), (-0.015, 0.015)
        )
        out.append(("jitter", list(order), *factors))
        out.append(("rcrop", *T.RandomCrop.get_params(img, (32, 32))[:2]))
    return out


def test_vision_transform_draws_follow_torchvision():
    torch.manual_seed(0)
    want = _torchvision_draws(5)
    ember.manual_seed(0)
    got = _ember_draws(5)
    assert got == want


# ---- the predictor: a generator under @torch.inference_mode() ------------------------------


def _mode_seen_by_generator(lib, deco, outer):
    w = lib.ones(2, requires_grad=True)

    @deco
    def stream():
        for _ in range(2):
            got = yield (w * 2).requires_grad, lib.is_grad_enabled()
            if got == "stop":
                return "done"

    with outer():
        seen = list(stream())
        g = stream()
        next(g)
        with pytest.raises(StopIteration) as stop:
            g.send("stop")
        still = lib.is_grad_enabled()
    return seen, stop.value.value, still


@pytest.mark.parametrize(
    "make", ["inference_mode", "no_grad", "enable_grad", "set_grad_enabled_false"]
)
def test_grad_mode_decorates_generators_as_torch(make):
    res = []
    for lib in LIBS:
        deco = (
            lib.set_grad_enabled(False)
            if make == "set_grad_enabled_false"
            else getattr(lib, make)()
        )
        outer = lib.no_grad if make == "enable_grad" else lib.enable_grad
        res.append(_mode_seen_by_generator(lib, deco, outer))
    assert res[0] == res[1]
    assert res[1][0][0][0] == (make == "enable_grad")


def test_doc_snippet_runs():
    import os

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "docs", "porting_examples.md"), encoding="utf-8") as f:
        section = f.read().split("## ultralytics", 1)[1]
    snippet = section.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(snippet, "docs/porting_examples.md", "exec"), {})
