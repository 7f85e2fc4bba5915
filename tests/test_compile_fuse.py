"""ember.compile's graph rewrites for training speed: ``lstm(embedding(ids))`` fused
(core/_compile/_fuse_rnn.py). Compiled == eager (and == torch) in values and gradients."""

from __future__ import annotations

import numpy as np
import pytest

import ember
from ember._compile._frame import config
from ember._compile._fuse_rnn import _sum_rows_by_id, embedding_lstm


class CharLSTM(ember.nn.Module):
    def __init__(self, vocab=11, emb=6, hidden=5, batch_first=True, padding_idx=None, num_layers=1):
        super().__init__()
        self.emb = ember.nn.Embedding(vocab, emb, padding_idx=padding_idx)
        self.lstm = ember.nn.LSTM(emb, hidden, num_layers=num_layers, batch_first=batch_first)
        self.head = ember.nn.Linear(hidden, vocab)

    def forward(self, t):
        h, (hn, cn) = self.lstm(self.emb(t))
        return self.head(h), hn, cn


def _fused(compiled) -> bool:
    graph = compiled._compiled.entries[-1].graph
    return any(n.target is embedding_lstm for n in graph.nodes)


def _run(model, ids, compiled):
    f = ember.compile(model) if compiled else model
    out, hn, cn = f(ids)
    loss = out.square().mean() + hn.sum() + 2 * cn.sum()
    loss.backward()
    grads = {
        n: None if p.grad is None else p.grad.numpy().copy() for n, p in model.named_parameters()
    }
    for p in model.parameters():
        p.grad = None
    return f, [out.detach().numpy(), hn.detach().numpy(), cn.detach().numpy()], grads


@pytest.mark.parametrize("batch_first", [True, False])
def test_fused_matches_eager_float64(batch_first):
    ember.manual_seed(0)
    model = CharLSTM(batch_first=batch_first).double()
    ids = ember.randint(0, 11, (3, 7))
    _, want, gwant = _run(model, ids, False)
    f, got, ggot = _run(model, ids, True)
    assert _fused(f)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    for name in gwant:
        # dW_ih and dE are summed per token first (reassociated), everything else is eager's
        np.testing.assert_allclose(ggot[name], gwant[name], rtol=1e-10, atol=1e-14, err_msg=name)


def test_fused_matches_torch():
    torch = pytest.importorskip("torch")
    ember.manual_seed(1)
    model = CharLSTM().double()
    tm = torch.nn.ModuleDict(
        {"emb": torch.nn.Embedding(11, 6), "lstm": torch.nn.LSTM(6, 5, batch_first=True)}
    ).double()
    with torch.no_grad():
        for name, p in tm.named_parameters():
            p.copy_(torch.from_numpy(dict(model.named_parameters())[name].detach().numpy()))
    ids = ember.randint(0, 11, (4, 9))
    f = ember.compile(model)
    h, (hn, cn) = f.lstm(f.emb(ids))  # eager reference path through the same modules
    out, hn_c, cn_c = f(ids)
    assert _fused(f)
    (hn_c.sum() + cn_c.sum() + out.sum()).backward()
    th, (thn, tcn) = tm["lstm"](tm["emb"](torch.from_numpy(ids.numpy())))
    tout = torch.nn.functional.linear(
        th,
        torch.from_numpy(model.head.weight.detach().numpy()),
        torch.from_numpy(model.head.bias.detach().numpy()),
    )
    (thn.sum() + tcn.sum() + tout.sum()).backward()
    np.testing.assert_allclose(hn_c.detach().numpy(), thn.detach().numpy(), atol=1e-12)
    np.testing.assert_allclose(cn_c.detach().numpy(), tcn.detach().numpy(), atol=1e-12)
    for name, p in tm.named_parameters():
        np.testing.assert_allclose(
            dict(model.named_parameters())[name].grad.numpy(),
            p.grad.numpy(),
            rtol=1e-9,
            atol=1e-12,
            err_msg=name,
        )


def test_training_steps_adam_equal_eager():
    def train(compiled):
        ember.manual_seed(2)
        model = CharLSTM(vocab=13, emb=8, hidden=6)
        opt = ember.optim.Adam(model.parameters(), lr=1e-2)
        f = ember.compile(model) if compiled else model
        ids, y = ember.randint(0, 13, (4, 10)), ember.randint(0, 13, (40,))
        losses = []
        for _ in range(3):
            opt.zero_grad()
            loss = ember.nn.functional.cross_entropy(f(ids)[0].reshape(-1, 13), y)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        if compiled:
            assert _fused(f)
        return losses, [p.detach().numpy().copy() for p in model.parameters()]

    (lc, pc), (le, pe) = train(True), train(False)
    np.testing.assert_allclose(lc, le, rtol=1e-6)
    for a, b in zip(pc, pe):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", ["padding_idx", "two_layers", "config_off"])
def test_not_fused_when_not_covered(case):
    ember.manual_seed(3)
    model = CharLSTM(
        padding_idx=0 if case == "padding_idx" else None,
        num_layers=2 if case == "two_layers" else 1,
    )
    ids = ember.randint(0, 11, (2, 5))
    prev = config.fuse_embedding_rnn
    config.fuse_embedding_rnn = case != "config_off"
    try:
        f, got, _ = _run(model, ids, True)
    finally:
        config.fuse_embedding_rnn = prev
    assert not _fused(f)
    _, want, _ = _run(model, ids, False)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


def test_runtime_fallbacks():
    ember.manual_seed(4)
    model = CharLSTM()
    f = ember.compile(model)
    with pytest.raises(IndexError, match="index out of range in self"):
        f(ember.tensor([[1, 11]]))
    # frozen embedding: no gradient for it, the LSTM's still right
    model.emb.weight.requires_grad_(False)
    ids = ember.randint(0, 11, (2, 4))
    _, _, g = _run(model, ids, True)
    _, _, want = _run(model, ids, False)
    assert g["emb.weight"] is None
    np.testing.assert_allclose(
        g["lstm.weight_hh_l0"], want["lstm.weight_hh_l0"], rtol=1e-5, atol=1e-7
    )
    with ember.no_grad():  # no autograd: the same values
        np.testing.assert_allclose(f(ids)[0].numpy(), model(ids)[0].numpy(), rtol=1e-5, atol=1e-6)
    calls = []  # a hook on the LSTM: the module runs (the hook too)
    handle = model.lstm.register_forward_hook(lambda m, i, o: calls.append(i[0].shape))
    f(ids)
    handle.remove()
    assert calls == [(2, 4, 6)]


def test_sum_rows_by_id_matches_add_at():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 7, 50)
    rows = rng.standard_normal((50, 9))
    want = np.zeros((8, 9))
    np.add.at(want, ids, rows)
    np.testing.assert_allclose(_sum_rows_by_id(np, ids, rows, 8), want, rtol=1e-12)


# ---- max_pool(relu(x)) -> relu(max_pool(x)) (core/_compile/_reorder.py) ----------------------
class ConvPool(ember.nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.kind = kind
        self.conv = ember.nn.Conv2d(2, 3, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        F = ember.nn.functional
        if self.kind == "module":
            return ember.nn.functional.max_pool2d(ember.relu(y), 2)
        if self.kind == "method_padded_ceil":
            return F.max_pool2d(y.relu(), 3, 2, padding=1, ceil_mode=True)
        if self.kind == "pool1d":
            return F.max_pool1d(F.relu(y.flatten(2)), 3)
        if self.kind == "two_users":
            r = F.relu(y)
            return F.max_pool2d(r, 2).sum() + r.sum()
        return F.max_pool2d(F.relu(y), 2, return_indices=True)[0]  # "indices"


def _moved(f) -> bool:
    nodes = list(f._compiled.entries[-1].graph.nodes)
    pools = [i for i, n in enumerate(nodes) if "max_pool" in getattr(n.target, "__name__", "")]
    return bool(pools) and all(i == 0 or "relu" not in str(nodes[i].args[0]) for i in pools)


@pytest.mark.parametrize(
    "kind, moved",
    [
        ("module", True),
        ("method_padded_ceil", True),
        ("pool1d", True),
        ("two_users", False),
        ("indices", False),
    ],
)
def test_relu_after_max_pool_bitwise(kind, moved):
    ember.manual_seed(5)
    model = ConvPool(kind).double()
    x = ember.randn(2, 2, 7, 7, dtype=ember.float64)
    model(x).square().sum().backward()
    want = [model(x).detach().numpy()] + [p.grad.numpy().copy() for p in model.parameters()]
    for p in model.parameters():
        p.grad = None
    f = ember.compile(model)
    out = f(x)
    out.square().sum().backward()
    got = [out.detach().numpy()] + [p.grad.numpy() for p in model.parameters()]
    assert _moved(f) is moved
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("opt_name", ["SGD", "Adam"])
def test_cnn_training_steps_bitwise_equal_eager(opt_name):
    nn = ember.nn

    def train(compiled):
        ember.manual_seed(6)
        model = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(36, 3),
        ).double()
        opt = (
            ember.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
            if opt_name == "SGD"
            else ember.optim.Adam(model.parameters(), lr=1e-2)
        )
        f = ember.compile(model) if compiled else model
        x, y = ember.randn(5, 1, 6, 6, dtype=ember.float64), ember.randint(0, 3, (5,))
        for _ in range(3):
            opt.zero_grad()
            ember.nn.functional.cross_entropy(f(x), y).backward()
            opt.step()
        if compiled:
            assert _moved(f)
        return [t.detach().numpy().copy() for t in (*model.parameters(), *model.buffers())]

    for a, b in zip(train(True), train(False)):
        np.testing.assert_array_equal(a, b)
