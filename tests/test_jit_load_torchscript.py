"""``ember.jit.load`` of TorchScript archives written by PyTorch (``torch.jit.save`` of
scripted and traced modules and functions), compared with ``torch.jit.load`` of the same
file: outputs, state_dict keys and values, gradients, train/eval, errors."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

import ember
import ember.jit as jit

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    import warnings

    import _torchscript_models as models

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's TracerWarnings about its own modules
        return models.write_all(tmp_path_factory.mktemp("torchscript"))


def _e(t):
    return ember.tensor(t.detach().numpy()) if isinstance(t, torch.Tensor) else t


def _np(t):
    return np.asarray(t.detach().numpy())


def _flat(o):
    if isinstance(o, (tuple, list)):
        return [y for z in o for y in _flat(z)]
    return [o]


def _close(got, want, tol=1e-6):
    g, w = _flat(got), _flat(want)
    assert len(g) == len(w)
    for a, b in zip(g, w):
        np.testing.assert_allclose(_np(a), _np(b), rtol=1e-5, atol=tol)


NAMES = [
    "mlp_script", "mlp_trace", "cnn_script", "cnn_trace", "resblock_script", "resblock_trace",
    "lstm_trace", "gru_trace", "transformer_script", "transformer_trace", "ctrl_script",
    "function",
]  # fmt: skip


@pytest.mark.parametrize("name", NAMES)
def test_outputs_and_state_dict_match_torch(archives, name):
    path, tm, inputs = archives[name]
    em = jit.load(path)
    tm.eval()
    em.eval()
    want = tm(*inputs)
    got = em(*[_e(x) for x in inputs])
    _close(got, want)
    tsd, esd = tm.state_dict(), em.state_dict()
    assert list(esd) == list(tsd)
    for k in tsd:
        np.testing.assert_array_equal(_np(esd[k]), _np(tsd[k]))
    assert [n for n, _ in em.named_modules()] == [n for n, _ in tm.named_modules()]
    assert [n for n, _ in em.named_parameters()] == [n for n, _ in tm.named_parameters()]


def test_control_flow_branches(archives):
    path, tm, _ = archives["ctrl_script"]
    em = jit.load(path)
    for x in (torch.randn(3, 6), -torch.ones(3, 6) * 5):
        for mode in (0, 1):
            _close(em(_e(x), mode), tm(x, mode))
    _close(em(_e(x), mode=1), tm(x, mode=1))
    assert em.scales == [0.5, 2.0] and em.k == 3
    assert [k for k, _ in em.named_buffers()] == ["offset"]


def test_scripted_function_arguments(archives):
    path, tm, (x, y, _) = archives["function"]
    em = jit.load(path)
    _close(em(_e(x), _e(y), 3), tm(x, y, 3))
    assert "def forward" in em.code


def test_train_mode_batchnorm_and_dropout(archives):
    path, tm, (x,) = archives["cnn_script"]
    em = jit.load(path)
    tm.train()
    em.train()
    tm.drop.eval()  # dropout's random mask differs between frameworks: compare BN alone
    em.drop.eval()
    assert em.training and em.bn.training and not em.drop.training
    _close(em(_e(x)), tm(x), 1e-5)
    _close(em.bn.running_mean, tm.bn.running_mean)
    _close(em.bn.running_var, tm.bn.running_var)
    assert int(em.bn.num_batches_tracked) == int(tm.bn.num_batches_tracked) == 1
    em.drop.train()
    h = ember.ones(200, 8)
    assert (em.drop(h) == 0).any() and not (em.drop.eval()(h) == 0).any()


@pytest.mark.parametrize("name", ["mlp_script", "cnn_trace", "lstm_trace", "transformer_script"])
def test_gradients_flow_like_torch(archives, name):
    path, tm, inputs = archives[name]
    em = jit.load(path)
    tm.eval()
    em.eval()
    xs = [x.clone().requires_grad_(True) for x in inputs]
    exs = [_e(x).requires_grad_(True) for x in xs]
    sum(o.sum() * (i + 1) for i, o in enumerate(_flat(tm(*xs)))).backward()
    sum(o.sum() * (i + 1) for i, o in enumerate(_flat(em(*exs)))).backward()
    for (n, tp), (m, ep) in zip(tm.named_parameters(), em.named_parameters()):
        assert n == m and isinstance(ep, ember.nn.Parameter)
        np.testing.assert_allclose(_np(ep.grad), _np(tp.grad), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(_np(exs[0].grad), _np(xs[0].grad), rtol=1e-4, atol=1e-5)


def test_fine_tune_a_loaded_model(archives):
    path, _, (x,) = archives["mlp_script"]
    em = jit.load(path)
    opt = ember.optim.SGD(em.parameters(), lr=0.5)
    target = ember.tensor([0, 1])
    losses = []
    for _ in range(5):
        opt.zero_grad()
        loss = ember.nn.functional.nll_loss(em(_e(x)), target)
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < losses[0]


def test_extra_files_and_map_location(archives):
    path, _, (x,) = archives["mlp_script"]
    extra = {"meta.json": "", "absent.txt": ""}
    em = jit.load(path, map_location="cpu", _extra_files=extra)
    assert extra == {"meta.json": b'{"classes": 3}', "absent.txt": b""}
    assert all(p.device.type == "cpu" for p in em.parameters())
    seen = []
    jit.load(path, map_location=lambda t, loc: seen.append(loc))
    assert seen and set(seen) == {"cpu"}
    with open(path, "rb") as fh:  # a file object, at any position of a stream
        buf = io.BytesIO(fh.read())
    _close(jit.load(buf)(_e(x)), archives["mlp_script"][1](x))


def test_module_api(archives):
    path, tm, (x,) = archives["cnn_script"]
    em = jit.load(path)
    assert em.original_name == "CNN" and em.c1.original_name == "Conv2d"
    assert "RecursiveScriptModule(original_name=Conv2d)" in repr(em)
    assert "def forward" in em.code
    em64 = em.to(ember.float64).eval()
    out = em64(_e(x).to(ember.float64))
    assert out.dtype == ember.float64
    with pytest.raises(NotImplementedError, match="state_dict"):
        em.save(io.BytesIO())
    # the archive's own checks run, with torch's exception types and messages
    with pytest.raises(ValueError, match=r"expected 4D input \(got 2D input\)"):
        em.bn(ember.randn(2, 8))


def _rewrite(path, tmp_path, edit):
    """A copy of the archive with ``edit(name, bytes) -> bytes`` applied to its records."""
    out = tmp_path / "edited.pt"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            dst.writestr(info.filename, edit(info.filename, src.read(info)))
    return str(out)


def test_missing_operator_names_op_file_and_line(archives, tmp_path):
    path, _, (x,) = archives["mlp_trace"]

    def edit(name, data):
        return data.replace(b"torch.tanh(", b"torch.frobnicate(") if name.endswith(".py") else data

    em = jit.load(_rewrite(path, tmp_path, edit))
    with pytest.raises(NotImplementedError, match=r"torch\.frobnicate .*code/__torch__.*line"):
        em(_e(x))


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda n, d: d[: len(d) // 2] if n.endswith("data.pkl") else d, "data.pkl"),
        # every code file (torch's ___torch_mangle_N names depend on what the process traced)
        (lambda n, d: b"def forward(:\n" if n.endswith(".py") else d, "not valid"),
        (lambda n, d: d.replace(b"    return", b"    import os\n    return"), "import"),
        (
            lambda n, d: d.replace(b"torch.tanh(", b"x.__class__(") if n.endswith(".py") else d,
            "__class__",
        ),  # fmt: skip
        (lambda n, d: b"99" if n.endswith("/version") else d, "version"),
        (
            lambda n, d: d.replace(b"Sequential", b"Sequentiax") if n.endswith(".pkl") else d,
            "does not define",
        ),  # fmt: skip
    ],
)
def test_corrupted_archive_raises_clear_error(archives, tmp_path, edit, match):
    path, _, (x,) = archives["mlp_trace"]
    safe_before = ember.serialization.get_safe_globals()
    with pytest.raises(RuntimeError, match=match):
        jit.load(_rewrite(path, tmp_path, edit))
    assert ember.serialization.get_safe_globals() == safe_before
    _close(jit.load(path)(_e(x)), archives["mlp_trace"][1](x))  # nothing else changed


def test_truncated_archive(archives, tmp_path):
    path, _, _ = archives["mlp_trace"]
    data = open(path, "rb").read()
    bad = tmp_path / "cut.pt"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises((RuntimeError, ValueError), match="truncated|not|zip"):
        jit.load(str(bad))


def test_ember_load_refuses_with_the_jit_hint(archives):
    path, tm, (x,) = archives["mlp_script"]
    with pytest.raises(RuntimeError, match="ember.jit.load"):
        ember.load(path)
    with pytest.warns(UserWarning, match="TorchScript archive"):
        em = ember.load(path, weights_only=False)
    _close(em(_e(x)), tm(x))


def test_ember_archives_still_load(tmp_path):
    m = ember.nn.Sequential(ember.nn.Linear(3, 2), ember.nn.ReLU())
    x = ember.randn(4, 3)
    buf = io.BytesIO()
    jit.save(jit.trace(m, x), buf)
    buf.seek(0)
    np.testing.assert_allclose(_np(jit.load(buf)(x)), _np(m(x)), rtol=1e-6)


@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_fast_path_without_grad(tmp_path, norm_first):
    # eval + no_grad: TorchScript's TransformerEncoderLayer calls the fused
    # aten::_transformer_encoder_layer_fwd; with grad, its regular path
    torch.manual_seed(0)
    tel = torch.nn.TransformerEncoderLayer(
        8, 2, 16, batch_first=True, norm_first=norm_first, activation="gelu"
    ).eval()
    path = str(tmp_path / "tel.pt")
    torch.jit.save(torch.jit.script(tel), path)
    tm, em = torch.jit.load(path).eval(), jit.load(path).eval()
    x = torch.randn(2, 5, 8)
    pad = torch.tensor([[False] * 5, [False] * 3 + [True] * 2])
    causal = torch.nn.Transformer.generate_square_subsequent_mask(5)
    for kw in ({}, {"src_key_padding_mask": pad}, {"src_mask": causal}):
        ekw = {k: _e(v) for k, v in kw.items()}
        with torch.no_grad():
            want = tm(x, **kw)
        with ember.no_grad():
            got = em(_e(x), **ekw)
        keep = (
            ~pad[..., None].expand(2, 5, 8) if kw.get("src_key_padding_mask") is not None else ...
        )
        np.testing.assert_allclose(_np(got)[keep], _np(want)[keep], rtol=1e-5, atol=1e-6)
        _close(em(_e(x), **ekw), tm(x, **kw))
