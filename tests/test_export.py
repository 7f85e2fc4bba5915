"""ember.export: capture, signature (vs torch.export), Dim guards, safe save/load."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import ember
import ember.nn as nn
import ember.nn.functional as F
from ember.export import Dim, ExportError, export, load, save

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def WithState(lib):
    """Parameters, a persistent and a non-persistent buffer, a plain tensor attribute."""

    class WithState(lib.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = lib.nn.Linear(4, 3)
            self.register_buffer("rm", lib.zeros(3))
            self.register_buffer("nb", lib.ones(3), persistent=False)
            self.c = lib.ones(3)

        def forward(self, x):
            return self.fc(x) + self.rm + self.nb * self.c, x

    return WithState()


def _specs(sig):
    return [(s.kind.name, s.arg.name, s.target, s.persistent) for s in sig.input_specs], [
        (s.kind.name, s.arg.name) for s in sig.output_specs
    ]


def test_signature_matches_torch():
    torch = pytest.importorskip("torch")
    tep = torch.export.export(WithState(torch), (torch.randn(2, 4),))
    ep = export(WithState(ember), (ember.randn(2, 4),))
    assert _specs(ep.graph_signature) == _specs(tep.graph_signature)
    assert list(ep.state_dict) == list(tep.state_dict)
    assert sorted(ep.constants) == sorted(tep.constants)
    assert ep.graph_signature.user_inputs == tep.graph_signature.user_inputs
    assert ep.graph_signature.buffers == tep.graph_signature.buffers
    with pytest.raises(RuntimeError) as te:
        tep(torch.randn(2, 4))
    with pytest.raises(RuntimeError) as e:
        ep(ember.randn(2, 4))
    assert str(e.value) == str(te.value)


class Seq(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(20, 8)
        self.lstm = nn.LSTM(8, 8, batch_first=True)
        self.enc = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
        self.head = nn.Linear(8, 5)

    def forward(self, tokens):
        h, _ = self.lstm(self.emb(tokens))
        return self.head(self.enc(h)).log_softmax(-1)


class TinyGPT(nn.Module):
    """Token + position embeddings, a causal 2-layer encoder stack (deep-copied layers)."""

    def __init__(self) -> None:
        super().__init__()
        self.tok = nn.Embedding(20, 8)
        self.pos = nn.Embedding(7, 8)
        layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
        self.blocks = nn.TransformerEncoder(layer, 2)
        self.head = nn.Linear(8, 20)
        self.register_buffer("mask", ember.triu(ember.full((7, 7), float("-inf")), 1))

    def forward(self, idx):
        t = idx.size(1)
        h = self.tok(idx) + self.pos(ember.arange(t))
        return self.head(self.blocks(h, mask=self.mask[:t, :t]))


class CNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2)
        )
        self.fc = nn.Linear(4 * 3 * 3, 3)

    def forward(self, x):
        return self.fc(self.body(x).view(x.size(0), -1))


@pytest.mark.parametrize(
    "make,example,other",
    [
        (CNN, lambda: ember.randn(2, 1, 6, 6), lambda: ember.randn(5, 1, 6, 6)),
        (Seq, lambda: ember.randint(0, 20, (2, 7)), lambda: ember.randint(0, 20, (3, 7))),
        (TinyGPT, lambda: ember.randint(0, 20, (2, 7)), lambda: ember.randint(0, 20, (4, 7))),
    ],
)
def test_module_matches_eager_at_other_batch(make, example, other, tmp_path):
    ember.manual_seed(0)
    m = make().eval()
    ep = export(m, (example(),), dynamic_shapes=({0: Dim("batch", min=1, max=16)},))
    assert all(n.op != "call_module" for n in ep.graph.nodes)
    x = other()
    with ember.no_grad():
        want = m(x)
    assert ember.allclose(ep.module()(x), want, atol=1e-5)
    save(ep, tmp_path / "m.ember")
    assert ember.allclose(load(tmp_path / "m.ember").module()(x), want, atol=1e-5)


def test_dim_guards():
    m = WithState(ember)
    b = Dim("batch", min=2, max=8)
    ep = export(m, (ember.randn(3, 4),), dynamic_shapes={"x": {0: b}})
    assert ep.range_constraints == {"batch": (2, 8)}
    mod = ep.module()
    assert mod(ember.randn(8, 4))[0].shape == (8, 3)
    for bad, msg in [
        ((9, 4), r"x.size\(\)\[0\] in \[2, 8\].*Dim 'batch'.*got 9"),
        ((1, 4), r"Dim 'batch'.*got 1"),
        ((3, 5), r"x.size\(\)\[1\] == 4.*static; got 5"),
        ((3, 4, 1), r"x.dim\(\) == 2"),
    ]:
        with pytest.raises(AssertionError, match=msg):
            mod(ember.randn(*bad))
    with pytest.raises(ValueError, match="outside the range"):
        export(m, (ember.randn(9, 4),), dynamic_shapes={"x": {0: b}})
    with pytest.raises(ValueError, match="not an input"):
        export(m, (ember.randn(3, 4),), dynamic_shapes={"y": {0: b}})
    with pytest.raises(ValueError, match="min <= max"):
        Dim("bad", min=5, max=2)


class TwoIn(nn.Module):
    def forward(self, a, b):
        return a + b


def test_shared_dim_must_agree():
    n = Dim("n")
    ep = export(TwoIn(), (ember.ones(3), ember.ones(3)), dynamic_shapes={"a": {0: n}, "b": {0: n}})
    assert ep.module()(ember.ones(5), ember.ones(5)).shape == (5,)
    with pytest.raises(AssertionError, match="both are Dim 'n'"):
        ep.module()(ember.ones(5), ember.ones(4))


class Branchy(nn.Module):
    def forward(self, x):
        if x.sum() > 0:
            return x * 2
        return x


class Loop(nn.Module):
    def forward(self, x):
        out = x[:, 0]
        for t in range(1, x.size(1)):
            out = out + x[:, t]
        return out


def test_data_dependent_control_flow_is_an_error():
    with pytest.raises(ExportError, match=r"Python boolean.*test_export.py:\d+: if x.sum"):
        export(Branchy(), (ember.ones(2),))
    # a Python loop over a static size is fine; over a dynamic one it cannot be captured
    ep = export(Loop(), (ember.ones(2, 3),))
    assert ember.allclose(ep.module()(ember.full((2, 3), 2.0)), ember.full((2,), 6.0))
    with pytest.raises(ExportError, match="Constraints violated.*'T'"):
        export(Loop(), (ember.ones(2, 3),), dynamic_shapes={"x": {1: Dim("T")}})
    with pytest.raises(ValueError, match="instance of `ember.nn.Module`"):
        export(lambda x: x, (ember.ones(2),))
    with pytest.raises(ValueError, match="tuple of example positional inputs"):
        export(Loop(), ember.ones(2, 3))


def test_run_decompositions():
    class M(nn.Module):
        def forward(self, x):
            return F.relu(x).exp()

    ep = export(M(), (ember.randn(4),))
    ep2 = ep.run_decompositions({F.relu: lambda x: ember.clamp(x, min=0)})
    targets = [n.target for n in ep2.graph.nodes if n.op == "call_function"]
    assert ember.clamp in targets and F.relu not in targets and ember.exp in targets
    assert not [n for n in ep2.graph.nodes if n.op == "call_method"]
    x = ember.randn(4)
    assert ember.allclose(ep2.module()(x), ep.module()(x))


def _archive_bytes(ep) -> bytes:
    buf = io.BytesIO()
    save(ep, buf)
    return buf.getvalue()


def _rewrite(data: bytes, member: str, fn) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as zin, zipfile.ZipFile(out, "w") as zout:
        for name in zin.namelist():
            blob = zin.read(name)
            zout.writestr(name, fn(blob) if name == member else blob)
    return out.getvalue()


def test_bad_files_raise_before_running():
    data = _archive_bytes(export(WithState(ember), (ember.randn(2, 4),)))
    assert load(io.BytesIO(data)).module()(ember.ones(2, 4))[0].shape == (2, 3)
    with pytest.raises(ValueError, match="truncated or corrupted"):
        load(io.BytesIO(data[: len(data) // 2]))
    tampered = _rewrite(data, "export/graph.json", lambda b: b.replace(b"linear", b"relu"))
    with pytest.raises(ValueError, match="does not match its checksum"):
        load(io.BytesIO(tampered))
    newer = _rewrite(
        data, "export/header.json", lambda b: b.replace(b'"version": 1', b'"version": 99')
    )
    with pytest.raises(ValueError, match="format version 99"):
        load(io.BytesIO(newer))
    other = io.BytesIO()
    with zipfile.ZipFile(other, "w") as z:
        z.writestr("data.pkl", b"not a program")
    with pytest.raises(ValueError, match="not an ember.export archive"):
        load(io.BytesIO(other.getvalue()))
    jit_file = io.BytesIO()
    ember.jit.save(ember.jit.trace(nn.Linear(2, 2), ember.ones(1, 2)), jit_file)
    with pytest.raises(ValueError, match="saved by ember.jit.save; load it with ember.jit.load"):
        load(io.BytesIO(jit_file.getvalue()))


@pytest.mark.parametrize("attack", ["attrgetter", "getattr_dunder", "dunder_method", "save"])
def test_archive_cannot_name_unsafe_code(attack, tmp_path):
    """A well-formed file (checksums right) whose graph reaches for non-tensor code."""
    import operator

    from ember.export._archive import write_archive
    from ember.fx import Graph

    g = Graph()
    x = g.placeholder("x")
    if attack == "attrgetter":
        y = g.call_function(operator.attrgetter, ("__class__",))
    elif attack == "getattr_dunder":
        y = g.call_function(getattr, (x, "__class__"))
    elif attack == "dunder_method":
        y = g.call_method("__reduce_ex__", (x, 2))
    else:
        y = g.call_function(ember.save, (x, str(tmp_path / "pwned")))
    g.output(y)
    sig = {
        "inputs": [{"kind": "USER_INPUT", "name": "x", "target": None, "persistent": None}],
        "outputs": [],
    }
    buf = io.BytesIO()
    write_archive(
        buf, "export", g, {"signature": sig, "guards": [], "state_dict": [], "constants": []}, {}
    )
    with pytest.raises(ValueError, match="not"):
        load(io.BytesIO(buf.getvalue()))
    assert not (tmp_path / "pwned").exists()


def test_deploy_in_fresh_process(tmp_path):
    """train.py saves both artifacts; predict.py (no access to Net) reproduces the logits."""
    env = {**os.environ, "PYTHONPATH": ROOT}
    ex = os.path.join(ROOT, "examples", "export")
    subprocess.run(
        [sys.executable, os.path.join(ex, "train.py"), str(tmp_path)],
        check=True,
        env=env,
        capture_output=True,
        timeout=240,
    )
    expected = np.load(tmp_path / "expected.npy")
    for name in ("model.ember_export", "model.ember_jit"):
        out = tmp_path / f"{name}.npy"
        r = subprocess.run(
            [
                sys.executable,
                "-I",
                os.path.join(ex, "predict.py"),
                str(tmp_path / name),
                str(tmp_path / "inputs.npy"),
                str(out),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
            cwd=tmp_path,
        )
        assert r.returncode == 0, r.stderr
        np.testing.assert_allclose(np.load(out), expected, atol=1e-5)


class _CausalBlock(nn.Module):
    """A decoder-only block in the char-GPT idiom: the causal mask is built from the input's
    length with ``nn.Transformer.generate_square_subsequent_mask``."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(11, 8)
        layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
        self.enc = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)

    def forward(self, ids):
        t = ids.shape[1]
        mask = nn.Transformer.generate_square_subsequent_mask(t, device=ids.device)
        return self.enc(self.emb(ids), mask=mask, is_causal=True)


def test_mask_from_input_length_exports_and_traces():
    ember.manual_seed(0)
    m = _CausalBlock().eval()
    ids, longer = ember.randint(0, 11, (2, 5)), ember.randint(0, 11, (2, 7))
    ep = export(m, (ids,), dynamic_shapes={"ids": {1: Dim("seq", max=16)}})
    traced = ember.jit.trace(m, (ids,))
    with ember.no_grad():
        np.testing.assert_allclose(ep.module()(longer).numpy(), m(longer).numpy(), atol=1e-6)
        np.testing.assert_allclose(traced(ids).numpy(), m(ids).numpy(), atol=1e-6)
