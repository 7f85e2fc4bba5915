"""FX graph mode quantization (prepare_fx / prepare_qat_fx / convert_fx / fuse_fx) against
torch 2.13's quantize_fx on the same float weights and calibration data."""

import re

import numpy as np
import pytest

import ember
from ember.ao import quantization as eq
from ember.ao.quantization import quantize_fx as eqfx
from ember.ao.quantization.fx import quantized_ops as Q

torch = pytest.importorskip("torch")
tq = pytest.importorskip("torch.ao.quantization")
tqfx = pytest.importorskip("torch.ao.quantization.quantize_fx")

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")


def _mlp(lib):
    nn, F = lib.nn, lib.nn.functional

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.relu = nn.Linear(12, 16), nn.ReLU()
            self.fc2, self.fc3 = nn.Linear(16, 16), nn.Linear(16, 4)

        def forward(self, x):
            x = self.relu(self.fc1(x))
            x = F.relu(self.fc2(x))
            return self.fc3(x)

    return MLP()


def _cnn(lib):
    nn, F = lib.nn, lib.nn.functional

    class CNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.bn1, self.relu1 = (
                nn.Conv2d(1, 4, 3, padding=1),
                nn.BatchNorm2d(4),
                nn.ReLU(),
            )
            self.conv2, self.bn2 = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)
            self.pool, self.avg = nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(2)
            self.fc = nn.Linear(16, 3)

        def forward(self, x):
            x = self.relu1(self.bn1(self.conv1(x)))
            x = F.relu(x + self.bn2(self.conv2(x)))  # residual add + relu
            x = lib.flatten(self.avg(self.pool(x)), 1)
            return self.fc(x)

    return CNN()


def _acts(lib):
    nn = lib.nn
    return nn.Sequential(
        nn.Linear(6, 8),
        nn.Hardswish(),
        nn.LeakyReLU(0.1),
        nn.ReLU6(),
        nn.Dropout(),
        nn.Linear(8, 3),
    )


def _pair(build, seed=0):
    torch.manual_seed(seed)
    t = build(torch)
    with torch.no_grad():
        for m in t.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    e = build(ember)
    e.load_state_dict({k: ember.tensor(v.numpy()) for k, v in t.state_dict().items()})
    return t.eval(), e.eval()


def _data(shape, n, seed):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(np.float32) for _ in range(n)]


def _calibrated(build, shape, tmap, emap, seed=0):
    t, e = _pair(build, seed)
    ex = np.zeros((1,) + shape[1:], np.float32)
    tp = tqfx.prepare_fx(t, tmap, (torch.from_numpy(ex),))
    ep = eqfx.prepare_fx(e, emap, (ember.tensor(ex),))
    for x in _data(shape, 3, seed + 1):
        tp(torch.from_numpy(x))
        ep(ember.tensor(x))
    return tp, ep


def _assert_qparams_equal(tp, ep):
    names = [
        n
        for n, _ in tp.named_modules(remove_duplicate=False)
        if n.startswith("activation_post_process_")
    ]
    assert names and names == [
        n
        for n, _ in ep.named_modules(remove_duplicate=False)
        if n.startswith("activation_post_process_")
    ]
    for n in names:
        ts, tz = tp.get_submodule(n).calculate_qparams()
        es, ez = ep.get_submodule(n).calculate_qparams()
        assert ez.numpy().item() == int(tz), n
        # inputs are bit-identical; after a layer, float conv / GEMM summation order can move
        # an observed min / max by one float32 ulp
        np.testing.assert_allclose(es.numpy().item(), float(ts), rtol=3e-7, err_msg=n)


def _codes(out, scale, zp):
    return np.rint(out / scale) + zp


def _assign_names(code):
    return re.findall(r"^\s+(\w+) = ", code, re.M)


@pytest.mark.parametrize(
    "build,shape,backend",
    [
        (_mlp, (16, 12), "x86"),
        (_acts, (16, 6), "x86"),
        (_cnn, (8, 1, 8, 8), "x86"),
        (_cnn, (8, 1, 8, 8), "qnnpack"),
    ],
)
def test_prepare_convert_matches_torch(build, shape, backend):
    tp, ep = _calibrated(
        build,
        shape,
        tq.get_default_qconfig_mapping(backend),
        eq.get_default_qconfig_mapping(backend),
    )
    # same observers at the same places, with the same names, sharing and qparams
    assert _assign_names(ep.code) == _assign_names(tp.code)
    _assert_qparams_equal(tp, ep)
    prev = torch.backends.quantized.engine
    torch.backends.quantized.engine = backend
    try:
        tqm = tqfx.convert_fx(tp)
    finally:
        torch.backends.quantized.engine = prev
    eqm = eqfx.convert_fx(ep)

    def qmods(gm):  # ember lowers the average pool to a function and swaps in a quantized
        # ReLU6 (torch's float ReLU6 module runs on quantized tensors as it is)
        return [
            (n, m._get_name().replace("QuantizedReLU6", "ReLU6"))
            for n, m in gm.named_children()
            if type(m).__name__ != "AdaptiveAvgPool2d"
        ]

    assert qmods(eqm) == qmods(tqm)
    # same state_dict keys (conv1_input_scale_0, fc.scale, ...), except that ember's quantized
    # Hardswish / LeakyReLU (modules '1' and '2' of _acts) keep scale / zero_point out of it
    skip = ("1.", "2.") if build is _acts else ()
    assert {k for k in eqm.state_dict() if not k.startswith(skip)} == {
        k for k in tqm.state_dict() if not k.startswith(skip)
    }
    x = _data((64,) + shape[1:], 1, 7)[0]
    to, eo = tqm(torch.from_numpy(x)).numpy(), eqm(ember.tensor(x)).numpy()
    last = list(tqm.children())[-1]
    tc = _codes(to, last.scale, last.zero_point)
    ec = _codes(eo, list(eqm.children())[-1].scale, list(eqm.children())[-1].zero_point)
    if backend == "x86":
        np.testing.assert_array_equal(ec, tc)  # measured: every output code equal
    else:  # qnnpack's requantization rounds differently: measured 1 of 192 codes off by one
        assert np.abs(ec - tc).max() <= 1 and (ec != tc).mean() < 0.05


def test_converted_code_is_readable():
    _, ep = _calibrated(
        _cnn, (8, 1, 8, 8), tq.get_default_qconfig_mapping(), eq.get_default_qconfig_mapping()
    )
    eqm = eqfx.convert_fx(ep)
    code = eqm.code
    assert "activation_post_process" not in code
    assert re.search(
        r"quantize_per_tensor\(x, conv1_input_scale_0, conv1_input_zero_point_0, "
        r"ember.quint8\)",
        code,
    )
    assert "quantized_ops.add_relu(conv1, conv2, _scale_0, _zero_point_0)" in code
    assert "quantized_ops.adaptive_avg_pool2d(pool, 2)" in code
    assert re.search(r"= fc\.dequantize\(\)", code)
    assert code.count("dequantize()") == 1
    assert ep.code.count("activation_post_process") > 0  # the prepared module is untouched
    # the generated code is what runs
    assert ember.allclose(eqm(ember.ones(2, 1, 8, 8)), eqm(ember.ones(2, 1, 8, 8)))


def test_qconfig_mapping_keeps_parts_float():
    tmap = tq.QConfigMapping().set_global(tq.default_qconfig).set_module_name("fc3", None)
    emap = eq.QConfigMapping().set_global(eq.default_qconfig).set_module_name("fc3", None)
    tp, ep = _calibrated(_mlp, (16, 12), tmap, emap)
    assert _assign_names(ep.code) == _assign_names(tp.code)
    _assert_qparams_equal(tp, ep)
    tqm, eqm = tqfx.convert_fx(tp), eqfx.convert_fx(ep)
    assert type(eqm.fc3) is ember.nn.Linear and "fc3 = self.fc3(dequantize" in eqm.code
    x = _data((32, 12), 1, 5)[0]
    np.testing.assert_allclose(
        eqm(ember.tensor(x)).detach().numpy(), tqm(torch.from_numpy(x)).detach().numpy(), atol=1e-5
    )


def test_fuse_fx_matches_float_and_torch():
    t, e = _pair(_cnn)
    tf, ef = tqfx.fuse_fx(t), eqfx.fuse_fx(e)
    assert _assign_names(ef.code) == _assign_names(tf.code)
    assert [type(m).__name__ for _, m in ef.named_children()] == [
        type(m).__name__ for _, m in tf.named_children()
    ]
    x = _data((4, 1, 8, 8), 1, 3)[0]
    with ember.no_grad(), torch.no_grad():
        np.testing.assert_allclose(
            ef(ember.tensor(x)).numpy(), e(ember.tensor(x)).numpy(), atol=1e-5
        )
        np.testing.assert_allclose(
            ef(ember.tensor(x)).numpy(), tf(torch.from_numpy(x)).numpy(), atol=1e-5
        )


def _qat_net(lib, stubs=None):
    nn = lib.nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            if stubs is not None:
                self.quant, self.dequant = stubs.QuantStub(), stubs.DeQuantStub()
            self.conv, self.bn, self.relu = (
                nn.Conv2d(1, 4, 3, padding=1),
                nn.BatchNorm2d(4),
                nn.ReLU(),
            )
            self.pool, self.flat = nn.MaxPool2d(2), nn.Flatten()
            self.fc1, self.relu1, self.fc2 = nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 5)

        def forward(self, x):
            if stubs is not None:
                x = self.quant(x)
            x = self.pool(self.relu(self.bn(self.conv(x))))
            x = self.fc2(self.relu1(self.fc1(self.flat(x))))
            return self.dequant(x) if stubs is not None else x

    return Net()


def test_qat_matches_torch_and_eager_mode():
    torch.manual_seed(3)
    t = _qat_net(torch)
    state = {k: ember.tensor(v.numpy()) for k, v in t.state_dict().items()}
    e, e_eager = _qat_net(ember), _qat_net(ember, eq)
    e.load_state_dict(state)
    e_eager.load_state_dict(state)
    ex = np.zeros((1, 1, 8, 8), np.float32)
    tp = tqfx.prepare_qat_fx(
        t.train(), tq.get_default_qat_qconfig_mapping("x86"), (torch.from_numpy(ex),)
    )
    ep = eqfx.prepare_qat_fx(
        e.train(), eq.get_default_qat_qconfig_mapping("x86"), (ember.tensor(ex),)
    )
    assert {n: type(m).__name__ for n, m in ep.named_children()} == {
        n: type(m).__name__ for n, m in tp.named_children()
    }  # ConvBnReLU2d, LinearReLU, ...
    assert _assign_names(ep.code) == _assign_names(tp.code)
    x = _data((8, 1, 8, 8), 1, 9)[0]
    ty, ey = tp(torch.from_numpy(x)), ep(ember.tensor(x))
    np.testing.assert_allclose(ey.detach().numpy(), ty.detach().numpy(), atol=1e-4)
    ty.square().mean().backward()
    ey.square().mean().backward()
    np.testing.assert_allclose(ep.conv.weight.grad.numpy(), tp.conv.weight.grad.numpy(), atol=1e-4)
    # train both FX QAT models the same way; eager-mode QAT of the same net alongside
    e_eager.train()
    ef = eq.fuse_modules_qat(e_eager, [["conv", "bn", "relu"], ["fc1", "relu1"]])
    ef.qconfig = eq.get_default_qat_qconfig("x86")
    epe = eq.prepare_qat(ef)
    epe(ember.tensor(x))
    for model in (tp, ep, epe):
        lib = torch if model is tp else ember
        opt = lib.optim.SGD(model.parameters(), lr=0.1)
        for xb in _data((8, 1, 8, 8), 3, 11):
            opt.zero_grad()
            model(lib.tensor(xb)).square().mean().backward()
            opt.step()
        model.eval()
    xn = _data((16, 1, 8, 8), 1, 12)[0]
    xt = ember.tensor(xn)
    with torch.no_grad():
        ty = tp(torch.from_numpy(xn)).numpy()
    fq = ep(xt).detach().numpy()
    np.testing.assert_allclose(fq, ty, atol=1e-3)
    tqm, qfx, qeager = tqfx.convert_fx(tp), eqfx.convert_fx(ep), eq.convert(epe)
    assert qfx.conv._get_name() == "QuantizedConvReLU2d" and "dequantize" in qfx.code
    qy = qfx(xt).numpy()
    # the int8 model follows its fake-quantized QAT model, torch's int8 model, and lands where
    # eager-mode QAT of the same net does (FX adds one fake quantizer after nn.Flatten);
    # measured: 1.0, 1.0 and 1.1 output steps
    step = qfx.fc2.scale
    assert np.abs(qy - fq).max() <= 1.5 * step
    assert np.abs(qy - tqm(torch.from_numpy(xn)).numpy()).max() <= 1.5 * step
    assert np.abs(qy - qeager(xt).numpy()).max() <= 2 * step


def test_cat_shares_one_observer():
    nn = ember.nn

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(8, 2)

        def forward(self, x):
            return self.c(ember.cat([self.a(x), self.b(x)], 1))

    ep = eqfx.prepare_fx(
        M().eval(), eq.QConfigMapping().set_global(eq.default_qconfig), (ember.randn(1, 4),)
    )
    assert (
        ep.activation_post_process_1 is ep.activation_post_process_2 is ep.activation_post_process_3
    )
    x = ember.randn(8, 4)
    ep(x)
    qm = eqfx.convert_fx(ep)
    assert "quantized_ops.cat([a, b], 1)" in qm.code and qm.a.scale == qm.b.scale
    ref = ep(x).detach().numpy()
    assert np.abs(qm(x).numpy() - ref).max() < 0.1


def _tq(x, scale, zp):
    return torch.quantize_per_tensor(torch.from_numpy(x), scale, zp, torch.quint8)


def _eq(x, scale, zp):
    return ember.quantize_per_tensor(ember.tensor(x), scale, zp, ember.quint8)


@pytest.mark.parametrize(
    "op", ["add", "add_relu", "mul", "adaptive_avg_pool2d", "avg_pool2d", "cat"]
)
def test_quantized_ops_match_torch(op):
    rng = np.random.default_rng(1)
    a, b = (rng.standard_normal((2, 3, 7, 6)).astype(np.float32) for _ in range(2))
    ta, tb, ea, eb = _tq(a, 0.02, 120), _tq(b, 0.03, 100), _eq(a, 0.02, 120), _eq(b, 0.03, 100)
    if op in ("add", "add_relu", "mul"):
        t = getattr(torch.ops.quantized, op)(ta, tb, 0.05, 110)
        e = getattr(Q, op)(ea, eb, 0.05, 110)
    elif op == "adaptive_avg_pool2d":
        t = torch.nn.functional.adaptive_avg_pool2d(ta, (3, 4))
        e = Q.adaptive_avg_pool2d(ea, (3, 4))
    elif op == "avg_pool2d":
        t = torch.nn.functional.avg_pool2d(ta, 3, 2, 1)
        e = Q.avg_pool2d(ea, 3, 2, 1)
    else:
        t, e = torch.cat([ta, _tq(b, 0.02, 120)], 1), Q.cat([ea, _eq(b, 0.02, 120)], 1)
    assert (e.q_scale(), e.q_zero_point()) == pytest.approx((t.q_scale(), t.q_zero_point()))
    np.testing.assert_array_equal(e.int_repr().numpy(), t.int_repr().numpy())


def test_errors_name_the_node_or_module():
    m = _mlp(ember).eval()
    ep = eqfx.prepare_fx(m, eq.get_default_qconfig_mapping(), (ember.randn(1, 12),))
    with pytest.raises(
        RuntimeError,
        match=r"observer 'activation_post_process_0'.*node 'x'.*"
        r"'fc1'.*seen no data",
    ):
        eqfx.convert_fx(ep)

    class WithNorm(ember.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.norm = ember.nn.Linear(4, 4), ember.nn.LayerNorm(4)

        def forward(self, x):
            return self.norm(self.fc(x))

    bad = eq.get_default_qconfig_mapping().set_module_name("norm", eq.default_qconfig)
    with pytest.raises(ValueError, match=r"module 'norm' \(LayerNorm\).*no quantized version"):
        eqfx.prepare_fx(WithNorm().eval(), bad, (ember.randn(1, 4),))
    typo = eq.get_default_qconfig_mapping().set_module_name("fc9", None)
    with pytest.raises(ValueError, match="names module 'fc9'"):
        eqfx.prepare_fx(WithNorm().eval(), typo, (ember.randn(1, 4),))
    with pytest.raises(TypeError, match="example_inputs must be a tuple"):
        eqfx.prepare_fx(m, eq.get_default_qconfig_mapping(), ember.randn(1, 12))
    with pytest.raises(TypeError, match="returned by prepare_fx"):
        eqfx.convert_fx(ember.fx.symbolic_trace(m))
    with pytest.raises(AssertionError, match="batch norm 'bn1' into 'conv1' in training"):
        eqfx.fuse_fx(_cnn(ember).train())
    # a dynamic qconfig beside static ones is refused in QAT (prepare_fx takes the mix since
    # session 22, tests/test_quantization_s22.py; dynamic ones alone: tests/test_tutorials_s22.py)
    dynamic = eq.get_default_qat_qconfig_mapping().set_object_type(
        ember.nn.Linear, eq.default_dynamic_qconfig
    )
    with pytest.raises(NotImplementedError, match="object type Linear qconfig.*dynamic"):
        eqfx.prepare_qat_fx(m.train(), dynamic, (ember.randn(1, 12),))
    m.eval()

    class Branchy(ember.nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x

    with pytest.raises(
        ember.fx.TraceError, match="prepare_fx: could not symbolically trace Branchy"
    ):
        eqfx.prepare_fx(Branchy(), eq.get_default_qconfig_mapping(), (ember.randn(2),))


def test_docs_snippet_runs():
    import pathlib

    doc = (pathlib.Path(__file__).parents[1] / "docs" / "quantization.md").read_text()
    section = doc[doc.index("## FX graph mode") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    ns = {}
    exec(compile(code, "docs/quantization.md", "exec"), ns)
    assert "add_relu(conv1, conv2" in ns["quantized"].code
    assert tuple(ns["quantized"](ember.randn(3, 1, 8, 8)).shape) == (3, 10)


def _nested(lib):
    nn = lib.nn

    class Inner(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return self.fc(x) + x

    class Outer(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner, self.head = Inner(), nn.Linear(4, 2)

        def forward(self, x):
            y = self.inner(x)
            return self.head(y + y)

    return Outer()


def test_module_name_qconfig_covers_functions_called_inside():
    # set_module_name("inner", None) keeps inner.fc and the `+` inside Inner.forward float
    tmap = tq.QConfigMapping().set_global(tq.default_qconfig).set_module_name("inner", None)
    emap = eq.QConfigMapping().set_global(eq.default_qconfig).set_module_name("inner", None)
    tp, ep = _calibrated(_nested, (16, 4), tmap, emap)
    assert _assign_names(ep.code) == _assign_names(tp.code)
    assert "add = inner_fc + x" in ep.code
    _assert_qparams_equal(tp, ep)
    tqm, eqm = tqfx.convert_fx(tp), eqfx.convert_fx(ep)
    x = _data((8, 4), 1, 4)[0]
    to, eo = tqm(torch.from_numpy(x)).numpy(), eqm(ember.tensor(x)).numpy()
    np.testing.assert_array_equal(
        _codes(eo, eqm.head.scale, eqm.head.zero_point),
        _codes(to, tqm.head.scale, tqm.head.zero_point),
    )
