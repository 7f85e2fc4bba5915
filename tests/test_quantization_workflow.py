"""The eager-mode workflow end to end against torch: fuse, prepare, calibrate, convert; QAT;
quantize_dynamic; state_dict round trip; and the errors that name the module path."""

import io

import numpy as np
import pytest

import ember
from ember.ao import quantization as eq

torch = pytest.importorskip("torch")
tq = pytest.importorskip("torch.ao.quantization")

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")


def _net(nn, stubs):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.quant, self.dequant = stubs.QuantStub(), stubs.DeQuantStub()
            self.conv = nn.Conv2d(1, 4, 3, padding=1)
            self.bn = nn.BatchNorm2d(4)
            self.relu = nn.ReLU()
            self.pool = nn.MaxPool2d(2)
            self.flat = nn.Flatten()
            self.fc1 = nn.Linear(64, 16)
            self.relu1 = nn.ReLU()
            self.fc2 = nn.Linear(16, 5)

        def forward(self, x):
            x = self.pool(self.relu(self.bn(self.conv(self.quant(x)))))
            return self.dequant(self.fc2(self.relu1(self.fc1(self.flat(x)))))

    return Net()


def _pair(seed=0):
    torch.manual_seed(seed)
    t = _net(torch.nn, tq)
    with torch.no_grad():
        t.bn.running_mean.uniform_(-0.2, 0.2)
        t.bn.running_var.uniform_(0.5, 2.0)
        t.bn.weight.uniform_(0.5, 1.5)
    e = _net(ember.nn, eq)
    e.load_state_dict({k: ember.tensor(v.detach().numpy()) for k, v in t.state_dict().items()})
    return t.eval(), e.eval()


def _batches(n=4, seed=1):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((8, 1, 8, 8)).astype(np.float32) for _ in range(n)]


def _static(model, mod, fuse, qconfig):
    m = fuse(model, [["conv", "bn", "relu"], ["fc1", "relu1"]])
    m.qconfig = qconfig
    p = mod.prepare(m)
    for x in _batches():
        p(torch.from_numpy(x) if mod is tq else ember.tensor(x))
    return mod.convert(p)


@pytest.mark.parametrize("backend", ["x86", "fbgemm", "qnnpack"])
def test_static_ptq_matches_torch(backend):
    t, e = _pair()
    tqm = _static(t, tq, tq.fuse_modules, tq.get_default_qconfig(backend))
    eqm = _static(e, eq, eq.fuse_modules, eq.get_default_qconfig(backend))
    assert [type(m).__name__ for m in eqm.children()] == [type(m).__name__ for m in tqm.children()]
    assert eqm.quant.scale.item() == pytest.approx(tqm.quant.scale.item(), rel=1e-6)
    assert eqm.quant.zero_point.item() == tqm.quant.zero_point.item()
    for name in ("conv", "fc1", "fc2"):
        assert getattr(eqm, name).scale == pytest.approx(getattr(tqm, name).scale, rel=1e-5)
        assert getattr(eqm, name).zero_point == getattr(tqm, name).zero_point
        np.testing.assert_array_equal(
            getattr(eqm, name).weight().int_repr().numpy(),
            getattr(tqm, name).weight().int_repr().numpy(),
        )
    assert set(eqm.state_dict()) == set(tqm.state_dict())
    x = torch.from_numpy(_batches(1, seed=7)[0])
    if backend == "qnnpack":
        # 8-bit activations: torch runs them on fbgemm here, whose int16 pair sums saturate
        # (why x86 / fbgemm default to reduce_range); check ember against exact integer math
        qx = tqm.quant(x)
        acc = torch.nn.functional.conv2d(
            qx.int_repr().double() - qx.q_zero_point(),
            tqm.conv.weight().int_repr().double(),
            padding=1,
        )
        ws = tqm.conv.weight().q_scale()  # qnnpack's weights: per tensor
        y = acc * (qx.q_scale() * ws) + tqm.conv.bias().detach().reshape(1, -1, 1, 1)
        ref = torch.clamp(
            torch.round(y / tqm.conv.scale) + tqm.conv.zero_point, tqm.conv.zero_point, 255
        )
        out = eqm.conv(eqm.quant(ember.tensor(x.numpy()))).int_repr().numpy()
        assert np.abs(out - ref.numpy()).max() <= 1
        return
    ty = tqm(x).numpy()
    ey = eqm(ember.tensor(x.numpy())).numpy()
    # The same integer pipeline, code for code. Only the final dequantize may round
    # differently: torch's AVX-512 kernel computes scale * q - scale * zp with a fused
    # multiply-add (its AVX2 path, and ember, (q - zp) * scale), a few ulps of scale * zp.
    s = tqm.fc2.scale
    np.testing.assert_array_equal(np.rint(ey / s), np.rint(ty / s))
    np.testing.assert_allclose(ey, ty, rtol=0, atol=1e-4 * s)


def test_qat_prepare_train_convert():
    t, e = _pair(3)
    t.train()
    e.train()
    tf = tq.fuse_modules_qat(t, [["conv", "bn", "relu"], ["fc1", "relu1"]])
    ef = eq.fuse_modules_qat(e, [["conv", "bn", "relu"], ["fc1", "relu1"]])
    tf.qconfig = tq.get_default_qat_qconfig("x86")
    ef.qconfig = eq.get_default_qat_qconfig("x86")
    tp, ep = tq.prepare_qat(tf), eq.prepare_qat(ef)
    assert [type(m).__name__ for m in ep.children()] == [type(m).__name__ for m in tp.children()]
    assert set(ep.state_dict()) == set(tp.state_dict())
    x = _batches(1, seed=9)[0]
    ty = tp(torch.from_numpy(x))
    ey = ep(ember.tensor(x))
    np.testing.assert_allclose(ey.detach().numpy(), ty.detach().numpy(), atol=1e-4)
    ty.square().mean().backward()
    ey.square().mean().backward()
    np.testing.assert_allclose(ep.conv.weight.grad.numpy(), tp.conv.weight.grad.numpy(), atol=1e-4)
    opt = ember.optim.SGD(ep.parameters(), lr=0.1)
    for xb in _batches(3, seed=11):
        opt.zero_grad()
        ep(ember.tensor(xb)).square().mean().backward()
        opt.step()
    ep.eval()
    eqm = eq.convert(ep)
    assert type(eqm.conv).__name__ == "ConvReLU2d" and eqm.conv._get_name() == "QuantizedConvReLU2d"
    fq = ep(ember.tensor(x)).detach().numpy()
    qy = eqm(ember.tensor(x)).numpy()
    assert np.abs(fq - qy).max() <= 3 * eqm.fc2.scale  # the int8 model follows its QAT model


def test_quantize_dynamic_swaps_and_shrinks():
    model = ember.nn.Sequential(ember.nn.Linear(64, 128), ember.nn.ReLU(), ember.nn.Linear(128, 10))
    qm = eq.quantize_dynamic(model, {ember.nn.Linear}, dtype=ember.qint8)
    assert [m._get_name() for m in qm.children()] == [
        "DynamicQuantizedLinear",
        "ReLU",
        "DynamicQuantizedLinear",
    ]
    assert qm[0].weight().int_repr().numpy().dtype == np.int8  # 1 byte per weight
    x = ember.randn(5, 64)
    assert np.abs(qm(x).numpy() - model(x).detach().numpy()).max() < 0.05
    with pytest.raises(NotImplementedError, match="float16"):
        eq.quantize_dynamic(model, dtype=ember.float16)


def test_state_dict_round_trip_and_wrong_target():
    _, e = _pair()
    eqm = _static(e, eq, eq.fuse_modules, eq.get_default_qconfig("x86"))
    buf = io.BytesIO()
    ember.save(eqm.state_dict(), buf)
    buf.seek(0)
    sd = ember.load(buf, weights_only=False)
    _, fresh = _pair(5)
    fresh = eq.fuse_modules(fresh, [["conv", "bn", "relu"], ["fc1", "relu1"]])
    fresh.qconfig = eq.get_default_qconfig("x86")
    fresh = eq.convert(
        eq.prepare(fresh)(ember.randn(2, 1, 8, 8)) and eq.prepare(fresh)
        if False
        else _calibrated(fresh)
    )
    fresh.load_state_dict(sd)
    x = ember.tensor(_batches(1, seed=3)[0])
    np.testing.assert_array_equal(fresh(x).numpy(), eqm(x).numpy())
    _, float_model = _pair()
    with pytest.raises(RuntimeError, match="_packed_params"):
        float_model.load_state_dict(sd)


def _calibrated(model):
    p = eq.prepare(model)
    p(ember.randn(2, 1, 8, 8))
    return p


def test_convert_uncalibrated_names_module():
    _, e = _pair()
    e.qconfig = eq.get_default_qconfig("x86")
    e = eq.fuse_modules(e, [["conv", "bn", "relu"]])
    p = eq.prepare(e)
    # as torch: a warning naming the module, and the observer's default qparams
    with pytest.warns(UserWarning, match=r"module 'quant' \(QuantStub\) has seen no data"):
        q = eq.convert(p)
    assert (float(q.quant.scale), int(q.quant.zero_point)) == (1.0, 0)


def test_convert_unsupported_module_names_path():
    _, e = _pair()
    e.qconfig = eq.default_qconfig  # bn left unfused: no quantized BatchNorm2d in ember
    p = eq.prepare(e)
    p(ember.randn(2, 1, 8, 8))
    with pytest.raises(
        RuntimeError,
        match=r"module 'bn' \(BatchNorm2d\) has a qconfig but no "
        r"quantized version",
    ):
        eq.convert(p)


def test_fuse_errors():
    _, e = _pair()
    e.train()
    with pytest.raises(AssertionError, match="Fusion only for eval"):
        eq.fuse_modules(e, ["conv", "bn"])
    with pytest.raises(AssertionError, match="did not find fuser method"):
        eq.fuse_modules(e.eval(), ["fc1", "conv"])
    with pytest.raises(AttributeError, match="no submodule 'nope'"):
        eq.fuse_modules(e, ["nope", "conv"])


def test_docs_snippet_runs():
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "quantization.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    scope: dict = {}
    exec(compile(code, "docs/quantization.md", "exec"), scope)
    assert scope["qmodel"].conv._get_name() == "QuantizedConvReLU2d"
    assert scope["x"].grad is not None and scope["out"].shape == (4, 5, 32)


def test_aliases_are_the_same_modules():
    import ember.nn.quantized.dynamic as alias_dyn
    import ember.quantization.observer as alias_obs

    assert alias_dyn is ember.ao.nn.quantized.dynamic
    assert alias_obs is ember.ao.quantization.observer
    assert ember.nn.qat.Linear is ember.ao.nn.qat.Linear
    assert ember.quantization.prepare is eq.prepare


def test_digits_example_runs():
    import sys
    from pathlib import Path

    pytest.importorskip("sklearn")
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples" / "quantization"))
    try:
        import _measure
        import digits_ptq_qat as ex
    finally:
        sys.path.pop(0)
    ember.manual_seed(0)
    train_loader, test_loader = ex.data(batch_size=64)
    model = ex.QuantCNN(channels=8)
    ex.train(model, train_loader, 2, 3e-3)
    ptq = ex.static_ptq(model, train_loader, batches=5)
    qat = ex.qat(model, train_loader, epochs=1)
    float_acc, float_size = ex.accuracy(model, test_loader), _measure.size_on_disk(model)
    assert float_acc > 0.75  # two short epochs of a narrow model
    for m in (ptq, qat):
        assert ex.accuracy(m, test_loader) > float_acc - 0.03
        assert _measure.size_on_disk(m) < 0.35 * float_size  # small model: headers count
    assert _measure.latency_ms(ptq, next(iter(test_loader))[0][:1], 2) > 0
