"""ember.jit.script of ember's RNN / LSTM / GRU, MultiheadAttention and Transformer modules:
the scripted module equals eager ember and torch.jit.script of the same torch module (same
weights), keeps rank tests as graph control flow, and loads in a fresh process."""

import json
import subprocess
import sys

import numpy as np
import pytest

import ember
import ember.nn as nn

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")


def _flat(o):
    if isinstance(o, (tuple, list)):
        return [y for x in o for y in _flat(x)]
    return [o]


def _np(t):
    return None if t is None else t.detach().cpu().numpy()


def _pair(name, *args, **kwargs):
    """The torch module and an ember one with the same weights, both in eval mode."""
    torch.manual_seed(0)
    t_mod = getattr(torch.nn, name)(*args, **kwargs).eval()
    e_mod = getattr(nn, name)(*args, **kwargs).eval()
    e_mod.load_state_dict(
        {k: ember.tensor(v.detach().numpy()) for k, v in t_mod.state_dict().items()}
    )
    return e_mod, t_mod


def _check(e_mod, t_mod, inputs, kwargs=None, torch_script=True):
    """ember.jit.script(e_mod) == e_mod == torch.jit.script(t_mod) on ``inputs`` (torch's
    eager module where ``torch_script`` is False)."""
    kwargs = kwargs or {}
    scripted = ember.jit.script(e_mod)
    t_scripted = torch.jit.script(t_mod) if torch_script else t_mod

    def conv(v, lib):
        if isinstance(v, tuple):
            return tuple(conv(e, lib) for e in v)
        return lib.tensor(v) if isinstance(v, np.ndarray) else v

    got = _flat(scripted(*conv(inputs, ember), **{k: conv(v, ember) for k, v in kwargs.items()}))
    eager = _flat(e_mod(*conv(inputs, ember), **{k: conv(v, ember) for k, v in kwargs.items()}))
    with torch.no_grad():
        want = _flat(
            t_scripted(*conv(inputs, torch), **{k: conv(v, torch) for k, v in kwargs.items()})
        )
    assert len(got) == len(eager)
    for g, e in zip(got, eager):
        np.testing.assert_allclose(_np(g), _np(e), rtol=1e-6, atol=1e-6)
    for g, w in zip(got, want):  # torch's need_weights output may be there when ours is None
        if g is not None and w is not None:
            np.testing.assert_allclose(_np(g), _np(w), rtol=1e-4, atol=1e-5)
    return scripted


R = np.random.default_rng(0)


def _x(*shape):
    return R.normal(size=shape).astype(np.float32)


RNN_CASES = {
    "lstm_2layer_batch_first": ("LSTM", (4, 8, 2), {"batch_first": True}, (_x(2, 3, 4),)),
    "lstm_bidir_proj_hx": (
        "LSTM",
        (4, 8, 2),
        {"bidirectional": True, "proj_size": 3},
        (_x(5, 2, 4), (_x(4, 2, 3), _x(4, 2, 8))),
    ),
    "lstm_unbatched": ("LSTM", (4, 8), {}, (_x(5, 4),)),
    "gru_hx": ("GRU", (4, 8, 2), {}, (_x(3, 2, 4), _x(2, 2, 8))),
    "rnn_relu_bidir": (
        "RNN",
        (4, 8),
        {"nonlinearity": "relu", "bidirectional": True},
        (_x(3, 2, 4),),
    ),
    "lstm_cell_hx": ("LSTMCell", (4, 8), {}, (_x(2, 4), (_x(2, 8), _x(2, 8)))),
    "lstm_cell_unbatched": ("LSTMCell", (4, 8), {}, (_x(4),)),
    "gru_cell_hx": ("GRUCell", (4, 8), {}, (_x(2, 4), _x(2, 8))),
    "rnn_cell_relu": ("RNNCell", (4, 8), {"nonlinearity": "relu"}, (_x(2, 4),)),
}


@pytest.mark.parametrize("case", list(RNN_CASES))
def test_script_rnn_matches_eager_and_torch(case):
    name, args, kwargs, inputs = RNN_CASES[case]
    # torch 2.13's torch.jit.script(nn.LSTM / GRU / RNN) returns a module without a
    # ``forward`` (its overloads are not compiled), so torch's eager module is the reference
    # there; the cells script in torch
    scripted = _check(*_pair(name, *args, **kwargs), inputs, torch_script=name.endswith("Cell"))
    if name.endswith("Cell"):  # the cell's fused step is a node that loads back
        import io

        buf = io.BytesIO()
        ember.jit.save(scripted, buf)
        buf.seek(0)
        e_in = tuple(
            ember.tensor(a) if isinstance(a, np.ndarray) else tuple(ember.tensor(b) for b in a)
            for a in inputs
        )
        for g, e in zip(_flat(ember.jit.load(buf)(*e_in)), _flat(scripted(*e_in))):
            np.testing.assert_allclose(_np(g), _np(e), rtol=1e-6)


def test_scripted_lstm_keeps_rank_branches():
    # the rank test stays in the graph (as TorchScript's): one scripted module takes
    # batched and unbatched inputs, with and without (h0, c0)
    e_mod, t_mod = _pair("LSTM", 4, 6)
    scripted = ember.jit.script(e_mod)
    for inp in [(_x(3, 2, 4),), (_x(3, 4),), (_x(3, 2, 4), (_x(1, 2, 6), _x(1, 2, 6)))]:
        e_in = tuple(
            ember.tensor(a) if isinstance(a, np.ndarray) else tuple(ember.tensor(b) for b in a)
            for a in inp
        )
        for g, e in zip(_flat(scripted(*e_in)), _flat(e_mod(*e_in))):
            np.testing.assert_allclose(_np(g), _np(e), rtol=1e-6, atol=1e-6)
    with pytest.raises(RuntimeError, match="input_size"):
        scripted(ember.randn(3, 2, 5))


def test_scripted_lstm_gradients_match_eager():
    e_mod, _ = _pair("LSTM", 4, 6, 2)
    x = ember.tensor(_x(3, 2, 4))
    grads = []
    for fn in (ember.jit.script(e_mod), e_mod):
        e_mod.zero_grad()
        out, (h, c) = fn(x)
        (out.sum() + h.sum() * 2 + c.sum()).backward()
        grads.append([p.grad.numpy().copy() for p in e_mod.parameters()])
    for g, e in zip(*grads):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)


ATTN_CASES = {
    "mha": ("MultiheadAttention", (8, 2), {}, (_x(3, 2, 8),) * 3, {}),
    "mha_batch_first_kpm": (
        "MultiheadAttention",
        (8, 2),
        {"batch_first": True},
        (_x(2, 3, 8),) * 3,
        {"key_padding_mask": np.array([[False] * 3, [False, False, True]])},
    ),
    "encoder_layer": ("TransformerEncoderLayer", (8, 2, 16), {"dropout": 0.0}, (_x(4, 2, 8),), {}),
    "decoder_layer_norm_first": (
        "TransformerDecoderLayer",
        (8, 2, 16),
        {"dropout": 0.0, "norm_first": True},
        (_x(3, 2, 8), _x(4, 2, 8)),
        {},
    ),
}


@pytest.mark.parametrize("case", list(ATTN_CASES))
def test_script_attention_matches_eager_and_torch(case):
    name, args, kwargs, inputs, call_kw = ATTN_CASES[case]
    _check(*_pair(name, *args, **kwargs), inputs, call_kw)


def test_script_transformer_with_masks():
    e_mod, t_mod = _pair("Transformer", 8, 2, 1, 1, 16, dropout=0.0, batch_first=True)
    mask = np.triu(np.full((4, 4), -np.inf, dtype=np.float32), 1)
    kpm = np.array([[False] * 5, [False] * 3 + [True] * 2])
    _check(
        e_mod,
        t_mod,
        (_x(2, 5, 8), _x(2, 4, 8)),
        {"tgt_mask": mask, "src_key_padding_mask": kpm, "memory_key_padding_mask": kpm},
    )


class LSTMLanguageModel(nn.Module):
    def __init__(self, vocab: int = 20, dim: int = 8, hidden: int = 16) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.rnn = nn.LSTM(dim, hidden, 2, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, tokens, state: tuple[ember.Tensor, ember.Tensor] | None = None):
        y, state = self.rnn(self.embed(tokens), state)
        return self.head(y), state


class TinyTransformer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.core = nn.Transformer(8, 2, 2, 1, 16, dropout=0.0, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, src, tgt):
        mask = nn.Transformer.generate_square_subsequent_mask(tgt.shape[1])
        return self.head(self.core(src, tgt, tgt_mask=mask))


def test_script_save_load_fresh_process(tmp_path):
    ember.manual_seed(0)
    lm, tt = LSTMLanguageModel().eval(), TinyTransformer().eval()
    s_lm, s_tt = ember.jit.script(lm), ember.jit.script(tt)
    tokens = ember.randint(0, 20, (2, 5))
    src, tgt = ember.randn(2, 5, 8), ember.randn(2, 4, 8)
    logits, state = lm(tokens)
    logits2, _ = lm(tokens, state)  # the state fed back: the Optional path of the graph
    for got, want in [
        (s_lm(tokens)[0], logits),
        (s_lm(tokens, state)[0], logits2),
        (s_tt(src, tgt), tt(src, tgt)),
    ]:
        np.testing.assert_allclose(_np(got), _np(want), rtol=1e-6, atol=1e-6)
    ember.jit.save(s_lm, str(tmp_path / "lm.pt"))
    s_tt.save(str(tmp_path / "tt.pt"))
    for name, arr in [("tok", tokens), ("src", src), ("tgt", tgt)]:
        np.save(tmp_path / f"{name}.npy", arr.numpy())
    # a fresh interpreter without these classes: only the archive and ember
    code = (
        "import json, numpy as np, ember\n"
        "L = lambda n: ember.tensor(np.load(n + '.npy'))\n"
        "lm, tt = ember.jit.load('lm.pt'), ember.jit.load('tt.pt')\n"
        "y, st = lm(L('tok'))\n"
        "y2, _ = lm(L('tok'), st)\n"
        "z = tt(L('src'), L('tgt'))\n"
        "print(json.dumps([t.detach().numpy().tolist() for t in (y, y2, z)]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=str(tmp_path)
    )
    assert out.returncode == 0, out.stderr
    for got, want in zip(json.loads(out.stdout), (logits, logits2, tt(src, tgt))):
        np.testing.assert_allclose(np.asarray(got), _np(want), rtol=1e-5, atol=1e-6)


def test_docs_snippet_runs(tmp_path):
    import pathlib
    import runpy

    pytest.importorskip("onnxruntime")
    text = (pathlib.Path(__file__).parents[1] / "docs" / "jit_modules.md").read_text()
    path = tmp_path / "snippet.py"  # script reads source: the snippet must live in a file
    path.write_text(text.split("```python\n")[1].split("```")[0])
    runpy.run_path(str(path), run_name="__main__")
