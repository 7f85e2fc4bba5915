"""Idioms of a tenth batch of pytorch/tutorials programs (the remaining beginner pages and
recipes), each a small program of our own with the same idiom, checked against torch from the
same initial weights where torch can run it: the former-Torch users' ``nn`` page registers a
``register_backward_hook`` on a convolution and reads ``grad_input`` (the gradients of the
node that made the module's output: input, weight and bias), which rests on
``grad_fn.register_hook``; the VGG-from-scratch page imports ``ImageNet`` beside ``CIFAR100``;
the batch inference page builds ``efficientnet_v2_s`` and its weights' preset; the data
parallelism pages wrap modules in ``nn.DataParallel`` on a CPU-only machine; the hybrid
frontend pages subclass ``torch.jit.ScriptModule`` with ``@torch.jit.script_method``."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")
LIBS = {"ember": ember, "torch": torch}


def _np(t):
    return t.detach().cpu().numpy()


def _copy_weights(e_model, t_model):
    e_model.load_state_dict({k: ember.tensor(_np(v)) for k, v in t_model.state_dict().items()})


# ---- nnft_tutorial: register_backward_hook on a conv layer -------------------------------
def _conv_net(lib):
    nn = lib.nn
    return nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 6, 3), nn.Flatten()
    )


def _run_legacy_hook(lib, net, x):
    seen = []

    def printgradnorm(module, grad_input, grad_output):
        seen.append(
            (
                type(module).__name__,
                [None if g is None else _np(g).copy() for g in grad_input],
                [_np(g).copy() for g in grad_output],
            )
        )

    net[3].register_backward_hook(printgradnorm)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = net(lib.tensor(x))
    out.sum().backward()
    messages = [str(w.message) for w in caught if issubclass(w.category, FutureWarning)]
    return seen, messages


def test_legacy_backward_hook_sees_the_conv_nodes_grad_inputs_as_torch():
    x = np.random.default_rng(0).standard_normal((2, 1, 10, 10)).astype(np.float32)
    t_net = _conv_net(torch)
    e_net = _conv_net(ember)
    _copy_weights(e_net, t_net)
    (t_seen,), t_msgs = _run_legacy_hook(torch, t_net, x)
    (e_seen,), e_msgs = _run_legacy_hook(ember, e_net, x)
    assert e_seen[0] == t_seen[0] == "Conv2d"
    # grad_input: (input, weight, bias) of the convolution's node, as torch's
    assert (
        [g.shape for g in e_seen[1]]
        == [g.shape for g in t_seen[1]]
        == [
            (2, 4, 4, 4),
            (6, 4, 3, 3),
            (6,),
        ]
    )
    for e, t in zip(e_seen[1] + e_seen[2], t_seen[1] + t_seen[2]):
        np.testing.assert_allclose(e, t, rtol=1e-5, atol=1e-6)
    # the hook's node is not the whole module (its weight and bias are other nodes' inputs):
    # torch's deprecation warning, in its words
    assert len(e_msgs) == len(t_msgs) == 1
    assert e_msgs[0] == t_msgs[0]


@pytest.mark.parametrize("name", ["ember", "torch"])
def test_legacy_backward_hook_may_replace_grad_input(name):
    lib = LIBS[name]
    relu = lib.nn.ReLU()
    relu.register_backward_hook(lambda m, gi, go: (gi[0] * 3,))
    x = lib.tensor([-1.0, 2.0, 0.5], requires_grad=True)
    relu(x * 1).sum().backward()  # ReLU's own node is the whole module: no warning
    assert x.grad.tolist() == [0.0, 3.0, 3.0]
    with pytest.raises(RuntimeError, match="Cannot use both regular backward hooks and full"):
        relu.register_full_backward_hook(lambda *a: None)


@pytest.mark.parametrize("name", ["ember", "torch"])
def test_grad_fn_register_hook_sees_and_replaces_grad_inputs(name):
    lib = LIBS[name]
    a = lib.tensor([1.0, 2.0], requires_grad=True)
    b = lib.tensor([3.0, 4.0], requires_grad=True)
    y = a * b
    calls = []

    def hook(grad_inputs, grad_outputs):
        calls.append(([g.tolist() for g in grad_inputs], [g.tolist() for g in grad_outputs]))
        return grad_inputs[0] * 10, grad_inputs[1]

    handle = y.grad_fn.register_hook(hook)
    y.backward(lib.tensor([1.0, 0.5]), retain_graph=True)
    assert calls == [([[3.0, 2.0], [1.0, 1.0]], [[1.0, 0.5]])]
    assert a.grad.tolist() == [30.0, 20.0] and b.grad.tolist() == [1.0, 1.0]
    handle.remove()
    y.backward(lib.tensor([1.0, 0.5]))
    assert a.grad.tolist() == [33.0, 22.0] and len(calls) == 1

    z = (a * 2).sum()
    z.grad_fn.register_hook(lambda gi, go: (gi[0], gi[0]))  # SumBackward0 has one input
    with pytest.raises(RuntimeError, match="returned an incorrect number of values"):
        z.backward()


# ---- Pretraining_Vgg_from_scratch: torchvision.datasets.ImageNet ---------------------------
def _imagenet_root(root: str) -> None:
    from PIL import Image

    meta = ({"n01": ("tench", "Tinca tinca"), "n02": ("goldfish",)}, ["n02", "n01", "n02"])
    ember.save(meta, os.path.join(root, "meta.bin"))
    for split, wnids in (("train", ["n01", "n01", "n02"]), ("val", meta[1])):
        for i, wnid in enumerate(wnids):
            os.makedirs(os.path.join(root, split, wnid), exist_ok=True)
            Image.new("RGB", (6, 5), (40 * i, 0, 0)).save(
                os.path.join(root, split, wnid, f"{split}_{i}.JPEG")
            )


def test_imagenet_reads_torchvisions_layout(tmp_path):
    from ember.vision.datasets import CIFAR100, ImageNet  # the page's import line

    assert CIFAR100 is not None
    _imagenet_root(str(tmp_path))
    val = ImageNet(str(tmp_path), split="val", transform=ember.vision.transforms.ToTensor())
    assert len(val) == 3 and val.split == "val" and val.root == str(tmp_path)
    assert val.wnids == ["n01", "n02"] and val.wnid_to_idx == {"n01": 0, "n02": 1}
    assert val.classes == [("tench", "Tinca tinca"), ("goldfish",)]
    assert val.class_to_idx == {"tench": 0, "Tinca tinca": 0, "goldfish": 1}
    img, target = val[0]
    assert tuple(img.shape) == (3, 5, 6) and target == 0
    assert "Split: val" in repr(val)
    assert [t for _, t in ImageNet(str(tmp_path))] == [0, 0, 1]  # split="train" by default


def test_imagenet_errors_name_what_is_missing(tmp_path):
    from ember.vision.datasets import ImageNet

    with pytest.raises(ValueError, match="Unknown value 'test' for argument split"):
        ImageNet(str(tmp_path), split="test")
    # no meta.bin and no devkit archive to make it from
    with pytest.raises(RuntimeError, match="ILSVRC2012_devkit_t12.tar.gz is not present"):
        ImageNet(str(tmp_path), split="val")
    _imagenet_root(str(tmp_path))
    os.rename(tmp_path / "val", tmp_path / "val_moved")
    with pytest.raises(RuntimeError, match="ILSVRC2012_img_val.tar is not present"):
        ImageNet(str(tmp_path), split="val")


def test_imagenet_devkit_gives_the_leaf_synsets(tmp_path):
    sio = pytest.importorskip("scipy.io")
    from ember.vision.datasets.imagenet import _parse_devkit_folder

    data = tmp_path / "data"
    data.mkdir()
    fields = [("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("gloss", "O")]
    fields.append(("num_children", "O"))
    rows = [(1, "n01", "tench, Tinca tinca", "a fish", 0), (2, "n02", "goldfish", "g", 0)]
    rows.append((3, "n99", "fish", "the parent synset", 2))
    sio.savemat(str(data / "meta.mat"), {"synsets": np.array(rows, dtype=fields)})
    (data / "ILSVRC2012_validation_ground_truth.txt").write_text("2\n1\n2\n")
    wnid_to_classes, val_wnids = _parse_devkit_folder(str(tmp_path))
    assert wnid_to_classes == {"n01": ("tench", "Tinca tinca"), "n02": ("goldfish",)}
    assert val_wnids == ["n02", "n01", "n02"]


# ---- batch_inference_tutorial: efficientnet_v2_s and its weights' preset -----------------
def test_efficientnet_v2_s_has_torchvisions_layout():
    from ember.vision.models import EfficientNet_V2_S_Weights, efficientnet_v2_s

    ember.manual_seed(0)
    model = efficientnet_v2_s()
    # torchvision's published parameter count and module names (its checkpoint loads)
    assert sum(p.numel() for p in model.parameters()) == 21_458_488
    keys = model.state_dict()
    assert len(keys) == 782
    assert tuple(keys["features.1.0.block.0.0.weight"].shape) == (24, 24, 3, 3)  # fused
    assert tuple(keys["features.2.0.block.1.0.weight"].shape) == (48, 96, 1, 1)  # project
    assert tuple(keys["features.4.0.block.2.fc1.weight"].shape) == (16, 256, 1, 1)  # SE
    assert tuple(keys["features.7.0.weight"].shape) == (1280, 256, 1, 1)
    assert model.features[0][1].eps == 1e-3 and model.classifier[0].p == 0.2
    preset = EfficientNet_V2_S_Weights.DEFAULT.transforms()
    assert preset.crop_size == [384] and preset.resize_size == [384]
    assert EfficientNet_V2_S_Weights.DEFAULT.url.endswith("efficientnet_v2_s-dd5fe13b.pth")

    model.eval()
    with ember.inference_mode():
        assert tuple(model(ember.randn(1, 3, 32, 32)).shape) == (1, 1000)
        model.classifier = ember.nn.Identity()  # the page's embedding model
        assert tuple(model(ember.randn(1, 3, 32, 32)).shape) == (1, 1280)
    # a training step through one Fused-MBConv block (expand, project, stochastic depth)
    block = model.features[2][1].train()
    block(ember.randn(2, 48, 8, 8)).sum().backward()
    assert block.block[0][0].weight.grad is not None and block.use_res_connect


# ---- data_parallel_tutorial / parallelism_tutorial: DataParallel without GPUs ------------
@pytest.mark.parametrize("name", ["ember", "torch"])
def test_data_parallel_on_cpu_calls_the_module(name):
    lib = LIBS[name]
    sizes = []

    class Model(lib.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = lib.nn.Linear(5, 2)

        def forward(self, input):
            out = self.fc(input)
            sizes.append((tuple(input.size()), tuple(out.size())))
            return out

    model = lib.nn.DataParallel(Model())
    assert model.device_ids == []
    loader = lib.utils.data.DataLoader(lib.randn(100, 5), batch_size=30)
    outs = [tuple(model(batch).size()) for batch in loader]
    assert outs == [(30, 2)] * 3 + [(10, 2)]
    assert sizes == [((30, 5), (30, 2))] * 3 + [((10, 5), (10, 2))]

    class Outer(lib.nn.Module):  # parallelism_tutorial: one block wrapped
        def __init__(self):
            super().__init__()
            self.block1 = lib.nn.Linear(3, 4)
            self.block2 = lib.nn.DataParallel(lib.nn.Linear(4, 4))

    outer = Outer()
    # a checkpoint saved by torch names the wrapped block's tensors "block2.module.*"
    state = {"block1.weight": lib.ones(4, 3), "block1.bias": lib.zeros(4)}
    state |= {"block2.module.weight": lib.full((4, 4), 2.0), "block2.module.bias": lib.zeros(4)}
    outer.load_state_dict(state)
    assert outer.block2.module.weight.sum().item() == 32.0


# ---- hybrid_frontend pages: the pre-1.2 ScriptModule subclass ------------------------------
def _legacy_script_module(lib):
    class Halve(lib.jit.ScriptModule):
        def __init__(self):
            super().__init__()
            self.scale = lib.nn.Parameter(lib.tensor([2.0]))

        @lib.jit.script_method
        def forward(self, x):
            r = -x
            if lib.fmod(x, 2.0) == 0.0:
                r = x / self.scale
            return r

    return Halve()


@pytest.mark.parametrize("name", ["ember", "torch"])
def test_script_module_subclass_with_script_method(name, tmp_path):
    lib = LIBS[name]
    m = _legacy_script_module(lib)
    assert isinstance(m, lib.jit.ScriptModule) and list(m.state_dict()) == ["scale"]
    assert m(lib.tensor([190.0])).tolist() == [95.0] and m(lib.tensor([3.0])).tolist() == [-3.0]
    # the page prints the compiled graph of each part this way
    assert "fmod" in str(m.__getattr__("forward").graph)
    lib.jit.save(m, str(tmp_path / "m.pt"))
    loaded = lib.jit.load(str(tmp_path / "m.pt"))
    assert loaded(lib.tensor([4.0])).tolist() == [2.0]
    assert loaded(lib.tensor([5.0])).tolist() == [-5.0]
