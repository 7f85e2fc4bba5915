"""Idioms of a fourth batch of pytorch/tutorials programs (the "Learn the Basics" series and
recipes) that stopped an ``import ember as torch`` port, each a small program of our own with
the same idiom, checked against torch where torch can run it: ``torchvision.io.read_image``
in a custom ``Dataset`` (data_tutorial), ``prof.export_memory_timeline`` (profiler recipe),
``torch.fx.experimental.optimization.fuse``, ``torch.jit.trace`` with a list of example
inputs and ``torch.jit.enable_onednn_fusion`` (tuning guide), and ``CausalBias`` as a tensor
subclass (scaled_dot_product_attention tutorial)."""

from __future__ import annotations

import gzip
import importlib
import json
import os

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")
LIBS = {"ember": ember, "torch": torch}


def _np(t):
    return t.detach().cpu().numpy()


# ---- data_tutorial: a Dataset reading image files with read_image -------------------------
def test_read_image_in_a_custom_dataset(tmp_path):
    from PIL import Image

    from ember.utils.data import DataLoader, Dataset
    from ember.vision.io import ImageReadMode, read_image

    rng = np.random.default_rng(0)
    rows = []
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (8, 10, 3), dtype=np.uint8)).save(
            tmp_path / f"{i}.png"
        )
        rows.append((f"{i}.png", i % 3))

    class ImageFiles(Dataset):
        def __init__(self, rows, img_dir, transform=None):
            self.rows, self.img_dir, self.transform = rows, img_dir, transform

        def __len__(self):
            return len(self.rows)

        def __getitem__(self, idx):
            name, label = self.rows[idx]
            image = read_image(os.path.join(self.img_dir, name))
            return (self.transform(image) if self.transform else image), label

    ds = ImageFiles(rows, str(tmp_path), transform=lambda im: im.float() / 255)
    x, y = next(iter(DataLoader(ds, batch_size=4)))
    assert tuple(x.shape) == (4, 3, 8, 10) and x.dtype == ember.float32
    assert y.tolist() == [0, 1, 2, 0]
    # the pixels are the file's, channels first, uint8
    img = read_image(str(tmp_path / "0.png"))
    assert img.dtype == ember.uint8
    np.testing.assert_array_equal(
        _np(img), np.asarray(Image.open(tmp_path / "0.png")).transpose(2, 0, 1)
    )
    gray = read_image(str(tmp_path / "0.png"), ImageReadMode.GRAY)
    assert tuple(gray.shape) == (1, 8, 10)


def test_image_files_round_trip_through_encode_and_decode(tmp_path):
    from ember.vision import io

    img = ember.randint(0, 256, (3, 6, 5)).to(ember.uint8)
    io.write_png(img, str(tmp_path / "a.png"))
    assert ember.equal(io.read_image(str(tmp_path / "a.png")), img)
    data = io.read_file(str(tmp_path / "a.png"))
    assert data.dtype == ember.uint8 and data.dim() == 1
    assert ember.equal(io.decode_png(data), img)
    rgba = io.decode_image(data, mode=io.ImageReadMode.RGB_ALPHA)
    assert tuple(rgba.shape) == (4, 6, 5) and int(rgba[3].min()) == 255
    io.write_jpeg(img, str(tmp_path / "a.jpg"), quality=95)
    assert tuple(io.read_image(str(tmp_path / "a.jpg")).shape) == (3, 6, 5)
    with pytest.raises(TypeError, match="uint8"):
        io.write_png(img.float(), str(tmp_path / "b.png"))
    with pytest.raises(ValueError, match="1 or 3 channels"):
        io.encode_jpeg(ember.zeros(4, 2, 2, dtype=ember.uint8))


# ---- profiler recipe: export_memory_timeline ------------------------------------------------
def test_export_memory_timeline_formats(tmp_path):
    from ember.profiler import ProfilerActivity, profile

    model = ember.nn.Sequential(ember.nn.Linear(64, 256), ember.nn.ReLU(), ember.nn.Linear(256, 8))
    x = ember.randn(32, 64)
    with profile(
        activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True
    ) as prof:
        model(x)  # the output is dropped inside the profiled range: its memory comes back
    prof.export_memory_timeline(str(tmp_path / "t.json"))
    times, sizes = json.load(open(tmp_path / "t.json"))
    assert len(times) == len(sizes) > 2 and times == sorted(times)
    assert all(len(row) == 9 for row in sizes)  # PyTorch's leading slot + 8 categories
    held = [row[8] for row in sizes]  # everything is in the "Unknown" category
    assert max(held) >= 32 * 256 * 4 and held[-1] == 0
    prof.export_memory_timeline(str(tmp_path / "t.raw.json.gz"))
    raw = json.load(gzip.open(tmp_path / "t.raw.json.gz", "rt"))
    assert {e[1] for e in raw} == {2, 4}  # CREATE and DESTROY, PyTorch's action values
    assert sum(e[2] for e in raw if e[1] == 2) == sum(e[2] for e in raw if e[1] == 4)
    prof.export_memory_timeline(str(tmp_path / "t.html"))
    assert "data:image/png;base64," in open(tmp_path / "t.html").read()


@pytest.mark.parametrize("lib", ["ember", "torch"])
def test_export_memory_timeline_needs_the_three_flags(lib, tmp_path):
    mod = ember if lib == "ember" else torch
    with mod.profiler.profile(activities=[mod.profiler.ProfilerActivity.CPU]) as prof:
        mod.ones(3) + 1
    with pytest.raises(ValueError, match="record_shapes=True, profile_memory=True, with_stack"):
        prof.export_memory_timeline(str(tmp_path / "t.json"))


# ---- tuning guide: fx.experimental.optimization.fuse, jit.trace on a list ------------------
def _conv_bn_net(lib):
    return lib.nn.Sequential(
        lib.nn.Conv2d(3, 4, 3, bias=False),
        lib.nn.BatchNorm2d(4),
        lib.nn.ReLU(),
        lib.nn.Flatten(),
        lib.nn.Linear(4 * 6 * 6, 5),
        lib.nn.BatchNorm1d(5),
    )


def test_fx_optimization_fuse_folds_batchnorms_as_torch():
    import torch.fx.experimental.optimization as t_opt

    import ember.fx.experimental.optimization as e_opt

    t_net = _conv_bn_net(torch)
    with torch.no_grad():  # non-trivial running statistics
        for bn in (t_net[1], t_net[5]):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
    e_net = _conv_bn_net(ember)
    e_net.load_state_dict({k: ember.tensor(_np(v)) for k, v in t_net.state_dict().items()})
    with pytest.raises(AssertionError, match="Fusion only for eval"):
        e_opt.fuse(e_net)
    t_net.eval()
    e_net.eval()
    t_fused, e_fused = t_opt.fuse(t_net), e_opt.fuse(e_net)
    kinds = [type(m).__name__ for m in e_fused.modules()]
    assert "BatchNorm2d" not in kinds and "BatchNorm1d" not in kinds
    assert [type(m).__name__ for m in e_net.modules()].count("BatchNorm2d") == 1  # not inplace
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    out = _np(e_fused(ember.tensor(x)))
    np.testing.assert_allclose(out, _np(t_fused(torch.tensor(x))), atol=1e-5)
    np.testing.assert_allclose(out, _np(e_net(ember.tensor(x))), atol=1e-5)


@pytest.mark.parametrize("lib", ["ember", "torch"])
def test_jit_trace_takes_a_list_of_example_inputs(lib):
    mod = LIBS[lib]
    net = mod.nn.Sequential(mod.nn.Linear(4, 3)).eval()
    sample_input = [mod.rand(2, 4)]
    traced = mod.jit.freeze(mod.jit.trace(net, sample_input))
    with mod.no_grad():
        assert mod.allclose(traced(*sample_input), net(*sample_input))

    def add(x, y):
        return x + y

    traced_add = mod.jit.trace(add, [mod.ones(2), mod.ones(2)])
    assert traced_add(mod.ones(2), mod.full((2,), 2.0)).tolist() == [3.0, 3.0]


def test_enable_onednn_fusion_is_a_kept_switch():
    assert ember.jit.onednn_fusion_enabled() is torch.jit.onednn_fusion_enabled() is False
    ember.jit.enable_onednn_fusion(True)
    try:
        assert ember.jit.onednn_fusion_enabled() is True
    finally:
        ember.jit.enable_onednn_fusion(False)
    with pytest.raises(TypeError, match="bool"):
        ember.jit.enable_onednn_fusion("yes")


# ---- scaled_dot_product_attention tutorial: causal biases are tensors -----------------------


@pytest.mark.parametrize("lib", ["ember", "torch"])
def test_causal_bias_is_a_tensor_subclass(lib):
    mod = LIBS[lib]
    bias = importlib.import_module(f"{lib}.nn.attention.bias")
    upper_left, lower_right = bias.causal_upper_left(2, 5), bias.causal_lower_right(2, 5)
    assert type(upper_left) is type(lower_right) and type(upper_left).__name__ == "CausalBias"
    assert issubclass(type(upper_left), mod.Tensor)
    assert repr(lower_right).replace(" ", "") == (
        "tensor([[True,True,True,True,False],\n[True,True,True,True,True]])"
    )


def test_causal_bias_attention_matches_torch():
    from torch.nn.attention.bias import causal_lower_right as t_lr

    from ember.nn.attention.bias import causal_lower_right as e_lr

    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((2, 2, n, 8)).astype(np.float32) for n in (3, 7, 7))
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    eq, ek, ev = (ember.tensor(a, requires_grad=True) for a in (q, k, v))
    t_out = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, t_lr(3, 7))
    e_out = ember.nn.functional.scaled_dot_product_attention(eq, ek, ev, e_lr(3, 7))
    np.testing.assert_allclose(_np(e_out), _np(t_out), atol=1e-5)
    t_out.sum().backward()
    e_out.sum().backward()
    for e, t in ((eq, tq), (ek, tk), (ev, tv)):
        np.testing.assert_allclose(_np(e.grad), _np(t.grad), atol=1e-5)


# ---- benchmark recipe: Fuzzer inputs, Measurement repr, Compare with env rows ---------------
def _fuzz(lib):
    bm = importlib.import_module(f"{lib}.utils.benchmark")
    fuzzer = bm.Fuzzer(
        parameters=[
            bm.FuzzedParameter("k0", minval=1, maxval=10000, distribution="loguniform"),
            bm.FuzzedParameter("k1", minval=1, maxval=10000, distribution="loguniform"),
        ],
        tensors=[
            bm.FuzzedTensor(
                "x",
                size=("k0", "k1"),
                min_elements=128,
                max_elements=100000,
                probability_contiguous=0.6,
            )
        ],
        seed=0,
    )
    cases = []
    for tensors, props, params in fuzzer.take(6):
        x = tensors["x"]
        cases.append((params, tuple(x.shape), x.is_contiguous(), props["x"]["is_contiguous"]))
    return cases


def test_fuzzer_draws_torchs_parameters_for_a_seed():
    assert _fuzz("ember") == _fuzz("torch")


def test_fuzzer_custom_distribution_and_alias():
    # (torch 2.13's FuzzedParameter refuses every normalized dict: its check is inverted)
    bm = ember.utils.benchmark
    p = bm.FuzzedParameter("k1", distribution={bm.ParameterAlias("k0"): 0.5, 7: 0.5})
    fuzzer = bm.Fuzzer(
        parameters=[bm.FuzzedParameter("k0", minval=1, maxval=4, distribution="uniform"), p],
        tensors=[bm.FuzzedTensor("x", size=("k0", "k1"), probability_contiguous=1.0)],
        seed=1,
    )
    for tensors, _, params in fuzzer.take(8):
        assert params["k1"] in (params["k0"], 7)
        assert tuple(tensors["x"].shape) == (params["k0"], params["k1"])
    with pytest.raises(ValueError, match="sum to 1"):
        bm.FuzzedParameter("k", distribution={1: 0.3, 2: 0.3})


@pytest.mark.parametrize("lib", ["ember", "torch"])
def test_measurement_repr_and_compare_layout(lib):
    bm = importlib.import_module(f"{lib}.utils.benchmark")
    m = bm.Timer(
        stmt="f(x)",
        setup="y = 1",
        globals={"x": 3, "f": abs},
        label="Abs",
        sub_label="int",
    ).timeit(10)
    lines = repr(m).splitlines()
    assert lines[1:3] == ["Abs: int", "setup: y = 1"]
    assert lines[-1] == "  1 measurement, 10 runs , 1 thread"
    ms = [
        bm.Timer("f(x)", globals={"x": 3, "f": abs}, label="t", description=d, env=env).timeit(5)
        for env in ("A", "long env B")
        for d in ("c1", "c2")
    ]
    out = str(bm.Compare(ms)).splitlines()
    assert out[2].startswith("1 threads: ---")
    assert out[3].startswith("  (A)           f(x)  |") and out[4].startswith(
        "  (long env B)  f(x)  |"
    )
