"""The PyTorch idioms of config-driven training runners (mmengine 0.10's ``Runner``) in small
programs of our own, checked against PyTorch (mmengine is not imported).

mmengine imports ``torch.nn.modules.conv._ConvTransposeMixin``, ``torch._utils._take_tensors``
and ``torch.distributed.fsdp.api.LocalOptimStateDictConfig``; its checkpoints pickle its own
objects (the message hub's ``HistoryBuffer``), so resuming under torch >= 2.6 needs
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` (or ``add_safe_globals``), which ``ember.load`` honours
as ``torch.load`` does. The program is a runner's loop: modules built from dict configs through
a registry, ``train_step`` with parsed losses, an optimizer wrapper with gradient accumulation
and clipping, warmup + cosine schedulers that rewrite ``param_group["lr"]`` per iteration, a
validation metric per epoch, a checkpoint per epoch and a resume from it.
"""

from __future__ import annotations

import math
import pickle
import warnings

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")
LIBS = [torch, ember]


# ---- the import surface ---------------------------------------------------------------------


def test_mmengine_import_names():
    from ember.distributed.fsdp.api import LocalOptimStateDictConfig, OptimStateDictConfig
    from ember.nn.modules.conv import _ConvTransposeMixin, _ConvTransposeNd

    assert issubclass(_ConvTransposeMixin, _ConvTransposeNd)
    assert issubclass(LocalOptimStateDictConfig, OptimStateDictConfig)
    assert not LocalOptimStateDictConfig().offload_to_cpu
    # buckets of one type each, at most size_limit bytes, in order: as torch's
    specs = [(4, "float32"), (4, "float64"), (8, "float32"), (2, "float32"), (3, "float64")]
    specs += [(20, "float32"), (1, "int64")]
    groups = []
    for lib in LIBS:
        ts = [lib.zeros(n, dtype=getattr(lib, dt)) for n, dt in specs]
        groups.append(
            [[tuple(t.shape) for t in chunk] for chunk in lib._utils._take_tensors(ts, 40)]
        )
    assert groups[0] == groups[1]


class _Buffer:  # an object of the runner's own, pickled into the checkpoint
    def __init__(self, values):
        self.values = list(values)


@pytest.mark.parametrize("lib", LIBS, ids=["torch", "ember"])
def test_weights_only_environment_switches(lib, tmp_path, monkeypatch):
    path = str(tmp_path / "ckpt.pth")
    lib.save({"state": lib.ones(2), "hub": _Buffer([1.0, 2.0])}, path)
    monkeypatch.delenv("TORCH_FORCE_WEIGHTS_ONLY_LOAD", raising=False)
    monkeypatch.delenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", raising=False)
    with pytest.raises(pickle.UnpicklingError):
        lib.load(path)  # weights_only defaults to True
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.warns(UserWarning, match="TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"):
        ck = lib.load(path)
    assert ck["hub"].values == [1.0, 2.0]
    with pytest.raises(pickle.UnpicklingError):
        lib.load(path, weights_only=True)  # an explicit argument wins over the switch
    monkeypatch.setenv("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(RuntimeError, match="Only one of"):
        lib.load(path)
    monkeypatch.delenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
    with pytest.raises(pickle.UnpicklingError):
        lib.load(path, weights_only=False)  # forced on, whatever the call says
    monkeypatch.delenv("TORCH_FORCE_WEIGHTS_ONLY_LOAD")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert lib.load(path, pickle_module=pickle)["hub"].values == [1.0, 2.0]


# ---- a runner's loop ------------------------------------------------------------------------


class _Registry:
    """``Registry.build(dict(type=..., **kwargs))``: the class named by ``type``, built with the
    rest of the dict (nested configs built by the class itself)."""

    def __init__(self):
        self._classes = {}

    def register_module(self, name=None):
        def deco(cls):
            self._classes[name or cls.__name__] = cls
            return cls

        return deco

    def build(self, cfg, **defaults):
        cfg = dict(cfg)
        return self._classes[cfg.pop("type")](**defaults, **cfg)


def _make_model(T, registry):
    nn, F = T.nn, T.nn.functional

    @registry.register_module()
    class ToyBlock(nn.Module):
        def __init__(self, dim, hidden):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, 3)
            self.norm = nn.LayerNorm(hidden)

        def forward(self, x):
            return self.fc2(F.gelu(self.norm(self.fc1(x))))

    @registry.register_module()
    class ToyNet(nn.Module):  # a BaseModel: forward(inputs, labels, mode)
        def __init__(self, block):
            super().__init__()
            self.block = registry.build(block)
            rs = np.random.RandomState(1)
            with T.no_grad():
                for p in self.parameters():
                    p.copy_(T.tensor(rs.randn(*p.shape).astype(np.float32) * 0.3))

        def forward(self, inputs, labels, mode="tensor"):
            logits = self.block(inputs)
            if mode == "loss":
                ce = F.cross_entropy(logits, labels)
                return {"loss_cls": ce, "loss_l2": 1e-3 * logits.pow(2).mean(), "acc": ce * 0}
            return logits.argmax(-1)

    return registry.build(dict(type="ToyNet", block=dict(type="ToyBlock", dim=8, hidden=16)))


def _parse_losses(T, losses):
    """BaseModel.parse_losses: the sum of the entries with 'loss' in their name."""
    log_vars = [(k, v.mean()) for k, v in losses.items() if "loss" in k]
    loss = sum(v for _, v in log_vars)
    return loss, {k: v.item() for k, v in log_vars}


class _Schedulers:
    """LinearLR warmup by iteration (``end=4``) then an iteration-based cosine from epoch 1
    (mmengine's ``convert_to_iter_based``): each step rewrites ``group["lr"]`` from
    ``group["initial_lr"]``, which the optimizer's state dict carries into a resume."""

    def __init__(self, opt, iters_per_epoch, t_max_epochs, eta_min):
        self.opt, self.it, self.eta_min = opt, 0, eta_min
        self.begin, self.t_max = iters_per_epoch, t_max_epochs * iters_per_epoch
        for g in opt.param_groups:
            g.setdefault("initial_lr", g["lr"])
        self.apply()

    def factor(self, it):
        warm = 0.1 + 0.9 * min(it, 4) / 4
        if it < self.begin:
            return warm, None
        k = min(it - self.begin, self.t_max)
        return warm, 0.5 * (1 + math.cos(math.pi * k / self.t_max))

    def apply(self):
        warm, cos = self.factor(self.it)
        for g in self.opt.param_groups:
            lr = g["initial_lr"] * warm
            if cos is not None:
                lr = self.eta_min + (lr - self.eta_min) * cos
            g["lr"] = lr

    def step(self):
        self.it += 1
        self.apply()


def _data(n, seed):
    rs = np.random.RandomState(seed)
    x = rs.randn(n, 8).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 1)
    return x, y


def _run(T, opt_name, path, epochs, resume):
    model = _make_model(T, _Registry())
    if opt_name == "sgd":
        opt = T.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
        accumulate, clip = 1, 1.0
    else:
        opt = T.optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.05)
        accumulate, clip = 2, None
    x, y = _data(64, 0)
    vx, vy = _data(32, 1)
    sched = _Schedulers(opt, 4, 4, 1e-4)
    start, record = 0, []
    if resume:
        ck = T.load(path, weights_only=False)
        model.load_state_dict(ck["state_dict"])
        opt.load_state_dict(ck["optimizer"])
        sched.it = ck["meta"]["iter"]
        sched.apply()
        start = ck["meta"]["epoch"]
    for epoch in range(start, epochs):
        model.train()
        for i in range(4):
            sl = slice(16 * i, 16 * i + 16)
            loss, log = _parse_losses(T, model(T.tensor(x[sl]), T.tensor(y[sl]), mode="loss"))
            (loss / accumulate).backward()  # OptimWrapper.update_params
            if (sched.it + 1) % accumulate == 0:
                if clip is not None:
                    T.nn.utils.clip_grad_norm_(model.parameters(), clip)
                opt.step()
                opt.zero_grad()
            record.append((loss.item(), log["loss_cls"], opt.param_groups[0]["lr"]))
            sched.step()
        model.eval()
        with T.no_grad():
            pred = model(T.tensor(vx), T.tensor(vy), mode="predict")
        record.append((100.0 * (pred == T.tensor(vy)).sum().item() / len(vy), 0.0, 0.0))
        T.save(
            {
                "meta": {"epoch": epoch + 1, "iter": sched.it},
                "state_dict": model.state_dict(),
                "optimizer": opt.state_dict(),
                "message_hub": _Buffer(r[0] for r in record),
            },
            path,
        )
    return np.array(record)


@pytest.mark.parametrize("opt_name", ["sgd", "adamw"])
def test_runner_loop_with_resume_matches_torch(opt_name, tmp_path):
    results = []
    for T in LIBS:
        path = str(tmp_path / f"{T.__name__}_{opt_name}.pth")
        first = _run(T, opt_name, path, 3, resume=False)
        resumed = _run(T, opt_name, path, 5, resume=True)
        results.append(np.concatenate([first, resumed]))
    assert results[0].shape == (25, 3)
    np.testing.assert_allclose(results[1], results[0], rtol=2e-6, atol=1e-7)
