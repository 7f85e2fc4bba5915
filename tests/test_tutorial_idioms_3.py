"""Idioms of a third batch of pytorch/tutorials programs that stopped an ``import ember as
torch`` port, each a small program of our own with the same idiom, checked against torch:
meta-device shape inference on a huge input (reasoning_about_shapes), ``torch.Tensor([0])``
as a float accumulator and the deprecated ``add_(alpha, other)`` overloads (char_rnn
generation), ``Timer`` with an indented ``setup`` and ``Language`` (timer_quick_start),
derived ``Dim`` s and ``torch._check`` (torch_export_tutorial), ``Module.compile()``,
``torch._logging.set_logs`` and ``config.cache_size_limit`` (torch_compile_tutorial),
``once_differentiable`` with extra ``None`` gradients (custom_function_conv_bn),
``torch.utils.swap_tensors`` (swap_tensors recipe), and the spatial transformer's
``affine_grid`` / ``grid_sample``."""

from __future__ import annotations

import logging
import time
import warnings

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")
LIBS = {"ember": ember, "torch": torch}


def _np(t):
    return t.detach().cpu().numpy()


# ---- meta device: shapes of a conv on a 2**10 x 3 x 2**16 x 2**16 input --------------------
def test_meta_conv_on_a_huge_input_infers_the_shape_quickly():
    conv = ember.nn.Conv2d(3, 5, 2, device="meta")
    t_large = ember.rand(2**10, 3, 2**16, 2**16, device="meta")
    start = time.perf_counter()
    out = conv(t_large)
    assert time.perf_counter() - start < 2.0  # no terabyte im2col buffer
    assert out.device.type == "meta" and tuple(out.shape) == (1024, 5, 65535, 65535)


def _hook_shapes(lib):
    class Net(lib.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = lib.nn.Conv2d(3, 6, 5)
            self.pool = lib.nn.MaxPool2d(2, 2)
            self.fc1 = lib.nn.Linear(6 * 14 * 14, 10)

        def forward(self, x):
            return self.fc1(lib.flatten(self.pool(lib.relu(self.conv1(x))), 1))

    shapes = []
    with lib.device("meta"):
        net = Net()
        inp = lib.randn((64, 3, 32, 32))
    for _, layer in net.named_modules():
        layer.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape)))
    net(inp)
    return shapes


def test_meta_forward_hooks_see_torchs_shapes():
    assert _hook_shapes(ember) == _hook_shapes(torch)


# ---- char_rnn_generation: torch.Tensor([0]) accumulates float losses ----------------------
@pytest.mark.parametrize("data", [[0], [True, False], [[1, 2], [3, 4]], (5,)])
def test_legacy_tensor_constructor_is_float32(data):
    assert ember.Tensor(data).dtype == ember.float32
    assert torch.Tensor(data).dtype == torch.float32
    np.testing.assert_array_equal(_np(ember.Tensor(data)), _np(torch.Tensor(data)))


def _accumulated_loss(lib):
    crit = lib.nn.NLLLoss()
    out = lib.log_softmax(lib.tensor([[0.5, 1.5, -1.0]]), dim=1)
    loss = lib.Tensor([0])
    for target in (0, 2):
        loss += crit(out, lib.tensor([target]))
    return loss


def test_float_accumulator_takes_losses_like_torch():
    np.testing.assert_allclose(_np(_accumulated_loss(ember)), _np(_accumulated_loss(torch)), 1e-6)


# ---- the deprecated number-first overloads: p.data.add_(-lr, p.grad.data) -----------------
def _deprecated_overloads(lib):
    x = lib.zeros(3)
    a, b = lib.tensor([1.0, 2.0, 3.0]), lib.tensor([2.0, 4.0, 8.0])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = [
            x.clone().add_(-0.5, a),
            x.clone().sub_(2, a),
            x.clone().addcmul_(0.5, a, b),
            x.clone().addcdiv_(-1, a, b),
            lib.add(x, 3, a),
            lib.addcmul(x, 2, a, b),
        ]
    assert any(issubclass(w.category, UserWarning) for w in caught)
    return out


def test_deprecated_number_first_overloads_match_torch():
    for e, t in zip(_deprecated_overloads(ember), _deprecated_overloads(torch)):
        np.testing.assert_allclose(_np(e), _np(t), rtol=1e-6)


def test_deprecated_overload_needs_a_number_first():
    x = ember.zeros(2)
    with pytest.raises(TypeError, match="alpha"):
        ember.add(x, x, x)


# ---- timer_quick_start ------------------------------------------------------------------------
def test_timer_dedents_setup_and_knows_language():
    from ember.utils.benchmark import Language, Timer

    m = Timer(
        "x * y",
        """
        x = torch.ones((128,))
        y = torch.ones((1,))
        """,
    ).blocked_autorange(min_run_time=0.01)
    assert m.median > 0
    assert Timer("x", "x = 1", language=Language.PYTHON).timeit(10).median >= 0
    with pytest.raises(ValueError, match="Python statements only"):
        Timer("x * y;", "auto x = torch::ones({128});", language=Language.CPP)
    with pytest.raises(NotImplementedError, match="Callgrind"):
        Timer("pass").collect_callgrind()


# ---- torch_export_tutorial: derived dims and torch._check -----------------------------------
def _derived_dim_program(lib):
    class Shifted(lib.nn.Module):
        def forward(self, x, y):
            return x + y[1:]

    dx = lib.export.Dim("dx", min=3, max=6)
    return lib.export.export(
        Shifted(), (lib.randn(5), lib.randn(6)), dynamic_shapes={"x": (dx,), "y": (dx + 1,)}
    )


def test_derived_dim_guards_follow_torch():
    for lib in (ember, torch):
        ep = _derived_dim_program(lib)
        assert tuple(ep.module()(lib.randn(4), lib.randn(5)).shape) == (4,)
        with pytest.raises(Exception):  # noqa: B017 - torch: AssertionError, ember's too
            ep.module()(lib.randn(4), lib.randn(6))
    ep = _derived_dim_program(ember)
    assert ep.range_constraints == {"dx": (3, 6)}
    with pytest.raises(AssertionError, match="dx \\+ 1"):
        ep.module()(ember.randn(4), ember.randn(6))
    with pytest.raises(AssertionError, match="range"):
        ep.module()(ember.randn(7), ember.randn(8))


def test_scaled_dims_and_bad_derivations():
    Dim = ember.export.Dim
    d = Dim("d", min=1, max=8)
    assert ((2 * d + 1).min, (2 * d + 1).max, repr(2 * d + 1)) == (3, 17, "2 * d + 1")

    class Halves(ember.nn.Module):
        def forward(self, x, y):
            return x.repeat(2) + y

    ep = ember.export.export(
        Halves(), (ember.ones(3), ember.ones(6)), dynamic_shapes={"x": (d,), "y": (2 * d,)}
    )
    assert tuple(ep.module()(ember.ones(4), ember.ones(8)).shape) == (8,)
    with pytest.raises(AssertionError):
        ep.module()(ember.ones(4), ember.ones(9))
    with pytest.raises(TypeError, match="derived Dim"):
        d * 1.5
    with pytest.raises(ValueError, match="negative"):
        Dim("e") - 1


def _cond_program(lib):
    class Branchy(lib.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = lib.nn.Linear(4, 4)

        def forward(self, x):
            def true_fn(x):
                return self.lin(x).relu(), x + 1

            def false_fn(x):
                return self.lin(x).sigmoid(), x - 1

            return lib.cond(x.mean() > 0, true_fn, false_fn, (x,))

    lib.manual_seed(0)
    mod = Branchy()
    with lib.no_grad():
        mod.lin.weight.copy_(lib.arange(16, dtype=lib.float32).reshape(4, 4) / 10 - 0.8)
        mod.lin.bias.fill_(0.1)
    dims = {"x": {0: lib.export.Dim("batch")}}
    return mod, lib.export.export(mod, (lib.randn(2, 4),), dynamic_shapes=dims)


def test_cond_in_export_follows_the_predicate_like_torch(tmp_path):
    (emod, eep), (_, tep) = _cond_program(ember), _cond_program(torch)
    ember.export.save(eep, str(tmp_path / "cond.pt2"))
    loaded = ember.export.load(str(tmp_path / "cond.pt2"))
    for sign in (1.0, -1.0):
        x = np.full((3, 4), sign, np.float32) * np.linspace(0.5, 1.0, 4, dtype=np.float32)
        want = tep.module()(torch.tensor(x))
        for got in (
            eep.module()(ember.tensor(x)),
            loaded.module()(ember.tensor(x)),
            emod(ember.tensor(x)),
        ):
            for g, w in zip(got, want):
                np.testing.assert_allclose(_np(g), _np(w), rtol=1e-6)


def test_cond_branches_must_match_when_traced():
    class Bad(ember.nn.Module):
        def forward(self, x):
            return ember.cond(x.sum() > 0, lambda x: x, lambda x: (x, x), [x])

    with pytest.raises(RuntimeError, match="same structure"):
        ember.export.export(Bad(), (ember.ones(2),))


def test_cond_under_symbolic_trace_keeps_both_paths():
    class Signed(ember.nn.Module):
        def forward(self, x):
            return ember.cond(x.sum() > 0, lambda x: x.cos(), lambda x: x.sin(), [x])

    gm = ember.fx.symbolic_trace(Signed())
    for x in (ember.ones(3), -ember.ones(3)):
        np.testing.assert_allclose(_np(gm(x)), _np(Signed()(x)), rtol=1e-6)


@pytest.mark.parametrize(
    "name, error",
    [
        ("_check", RuntimeError),
        ("_check_index", IndexError),
        ("_check_value", ValueError),
        ("_check_type", TypeError),
        ("_check_not_implemented", NotImplementedError),
    ],
)
def test_check_family_raises_torchs_errors(name, error):
    for lib in (ember, torch):
        getattr(lib, name)(True)
        with pytest.raises(error, match="custom"):
            getattr(lib, name)(False, lambda: "custom message")
    with pytest.raises(TypeError, match="bool"):
        ember._check(1)


def test_check_on_item_in_export_names_the_data_dependence():
    class DataDependent(ember.nn.Module):
        def forward(self, x, y):
            ember._check(y.item() >= 3)
            return x.cos()

    from ember.export._recorder import ExportError

    with pytest.raises(ExportError, match="data"):
        ember.export.export(DataDependent(), (ember.ones(2), ember.tensor([4])))


# ---- torch_compile_tutorial -------------------------------------------------------------------
def test_module_compile_in_place_keeps_the_module():
    ember.manual_seed(0)
    mod = ember.nn.Sequential(ember.nn.Linear(3, 3), ember.nn.ReLU(), ember.nn.Linear(3, 1))
    x = ember.randn(4, 3)
    want = mod(x)
    keys = list(mod.state_dict())
    assert mod.compile() is None
    assert isinstance(mod, ember.nn.Sequential) and list(mod.state_dict()) == keys
    out = mod(x)
    np.testing.assert_allclose(_np(out), _np(want), rtol=1e-6)
    out.sum().backward()
    assert mod[0].weight.grad is not None


def test_set_logs_reports_graph_breaks_and_resets(capsys):
    def bar(a, b):
        if b.sum() < 0:
            b = b * -1
        return a * b

    ember._logging.set_logs(graph_breaks=True, recompiles=True)
    try:
        ember.compile(bar)(ember.ones(3), ember.ones(3))
    finally:
        ember._logging.set_logs()
    err = capsys.readouterr().err
    assert "Graph break in" in err and "bar" in err and "b.sum() < 0" in err
    ember.compile(bar)(ember.ones(3), ember.ones(3))
    assert "Graph break" not in capsys.readouterr().err
    ember._logging.set_logs(dynamic=logging.INFO, output_code=True)  # torch's names: accepted
    ember._logging.set_logs()
    with pytest.raises(ValueError, match="unknown log"):
        ember._logging.set_logs(no_such_log=True)


def test_cache_size_limit_is_recompile_limit():
    config = ember._dynamo.config
    before = config.recompile_limit
    try:
        config.cache_size_limit = 3
        assert config.recompile_limit == 3 and config.cache_size_limit == 3
    finally:
        config.recompile_limit = before


# ---- custom_function_conv_bn: once_differentiable, extra None gradients ---------------------
def _fused_conv_bn(lib):
    F = lib.nn.functional
    from_mod = lib.autograd.function

    def bn_forward(x, eps):
        s, var = x.sum(dim=(0, 2, 3)), x.var(unbiased=True, dim=(0, 2, 3))
        mean = s / (x.numel() / x.size(1))
        return (x - mean[None, :, None, None]) / (var.sqrt() + eps)[None, :, None, None]

    class Fused(lib.autograd.Function):
        @staticmethod
        def forward(ctx, x, w, eps=1e-3):
            ctx.save_for_backward(x, w)
            ctx.eps = eps
            return bn_forward(F.conv2d(x, w), eps)

        @staticmethod
        @from_mod.once_differentiable
        def backward(ctx, grad_out):
            x, w = ctx.saved_tensors
            # recompute (the tutorial's point), then differentiate the composite locally
            with lib.enable_grad():
                xd, wd = x.detach().requires_grad_(), w.detach().requires_grad_()
                gx, gw = lib.autograd.grad(
                    bn_forward(F.conv2d(xd, wd), ctx.eps), (xd, wd), grad_out
                )
            return gx, gw, None, None, None  # more Nones than inputs: allowed

    rng = np.random.default_rng(0)
    x = lib.tensor(rng.random((2, 3, 5, 5)), requires_grad=True)
    w = lib.tensor(rng.random((4, 3, 3, 3)), requires_grad=True)
    out = Fused.apply(x, w, 1e-3)
    (out * lib.arange(out.numel(), dtype=out.dtype).reshape(out.shape)).sum().backward()
    assert not lib.is_grad_enabled() or out.requires_grad
    return out, x.grad, w.grad


def test_once_differentiable_with_extra_none_grads_matches_torch():
    for e, t in zip(_fused_conv_bn(ember), _fused_conv_bn(torch)):
        np.testing.assert_allclose(_np(e), _np(t), rtol=1e-6, atol=1e-8)


def test_fewer_gradients_than_inputs_still_raises():
    class Short(ember.autograd.Function):
        @staticmethod
        def forward(ctx, a, b):
            return a * b

        @staticmethod
        def backward(ctx, g):
            return (g,)

    a = ember.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="incorrect number of gradients"):
        Short.apply(a, a).sum().backward()


# ---- swap_tensors recipe ---------------------------------------------------------------------
def test_swap_tensors_like_torch():
    for lib in (ember, torch):
        t1, t2 = lib.arange(2), lib.arange(3)
        lib.utils.swap_tensors(t1, t2)
        assert t1.tolist() == [0, 1, 2] and t2.tolist() == [0, 1]
        mod = lib.nn.Linear(1, 2, bias=False)
        opt = lib.optim.SGD(mod.parameters(), lr=0.1)
        new = lib.nn.Parameter(2 * mod.weight.detach())
        want = _np(new).copy()
        lib.utils.swap_tensors(mod.weight, new)
        assert opt.param_groups[0]["params"][0] is mod.weight
        np.testing.assert_array_equal(_np(mod.weight), want)


def test_swap_tensors_rejects_bad_arguments_and_swaps_a_parameter_with_a_tensor():
    with pytest.raises(TypeError, match="Tensor"):
        ember.utils.swap_tensors(ember.ones(1), 1)
    # plain tensors take attributes as torch's do, so a Parameter and a Tensor swap as in torch
    for fw in (ember, torch):
        p, t = fw.nn.Parameter(fw.ones(1)), fw.zeros(2)
        fw.utils.swap_tensors(p, t)
        assert type(p) is fw.Tensor and p.tolist() == [0.0, 0.0]
        assert type(t) is fw.nn.Parameter and t.tolist() == [1.0] and t.requires_grad


# ---- spatial_transformer: affine_grid + grid_sample ----------------------------------------
def _stn(lib):
    F = lib.nn.functional
    rng = np.random.default_rng(1)
    x = lib.tensor(rng.random((2, 1, 8, 8)).astype(np.float32), requires_grad=True)
    c, s = np.cos(0.3), np.sin(0.3)
    theta = lib.tensor(
        np.array([[[1, 0, 0], [0, 1, 0]], [[c, -s, 0.1], [s, c, -0.2]]], np.float32),
        requires_grad=True,
    )
    grid = F.affine_grid(theta, x.size(), align_corners=False)
    out = F.grid_sample(x, grid, align_corners=False)
    out.square().sum().backward()
    return out, x.grad, theta.grad


def test_spatial_transformer_sampling_matches_torch():
    for e, t in zip(_stn(ember), _stn(torch)):
        np.testing.assert_allclose(_np(e), _np(t), rtol=1e-4, atol=1e-5)


# ---- visualizing_gradients: tensor hooks registered from forward hooks ---------------------
def _gradient_flow(lib):
    def block(norm):
        return lib.nn.Sequential(lib.nn.Linear(6, 6), norm(6), lib.nn.Sigmoid())

    grads = []
    for norm in (lib.nn.Identity, lib.nn.BatchNorm1d):
        model = lib.nn.Sequential(block(norm), block(norm), lib.nn.Linear(6, 3))
        with lib.no_grad():
            for i, p in enumerate(model.parameters()):
                rng = np.random.default_rng(i)
                p.copy_(lib.tensor(rng.uniform(-0.5, 0.5, tuple(p.shape)).astype(np.float32)))
        for name, layer in model.named_modules():
            if any(layer.children()) is False:  # Identity returns its input: two hooks on it

                def fwd(m, args, out, name=name):
                    out.register_hook(lambda g: grads.append((name, float(g.abs().mean()))))

                layer.register_forward_hook(fwd)
        x = lib.tensor(np.random.default_rng(7).standard_normal((5, 6)).astype(np.float32))
        lib.nn.functional.cross_entropy(model(x), lib.tensor([0, 1, 2, 0, 1])).backward()
    return grads


def test_gradient_flow_hooks_fire_in_torchs_order():
    e, t = _gradient_flow(ember), _gradient_flow(torch)
    assert [n for n, _ in e] == [n for n, _ in t]
    np.testing.assert_allclose([g for _, g in e], [g for _, g in t], rtol=1e-5)


# ---- neural_style_tutorial: vgg19 and its weights enum --------------------------------------
def test_vgg19_weights_enum_and_features():
    from ember.vision.models import VGG19_Weights, vgg19

    assert VGG19_Weights.DEFAULT is VGG19_Weights.IMAGENET1K_V1
    assert VGG19_Weights.verify("IMAGENET1K_V1") is VGG19_Weights.IMAGENET1K_V1
    assert VGG19_Weights.DEFAULT.url.endswith("vgg19-dcbb9e9d.pth")
    with ember.device("meta"):  # the architecture only: no 550 MB of float32 to initialise
        cnn = vgg19(weights=None).features.eval()
    convs = [m for m in cnn.children() if isinstance(m, ember.nn.Conv2d)]
    assert len(convs) == 16 and sum(p.numel() for p in cnn.parameters()) == 20024384
