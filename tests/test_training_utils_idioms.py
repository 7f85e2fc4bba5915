"""The PyTorch idioms of training-utility libraries (pytorch-ignite 0.5, accelerate 1.16,
torchinfo 1.8, ptflops 0.7, thop, schedulefree 1.4, lion-pytorch, pytorch_optimizer 4.1) in
small programs of our own, checked against PyTorch (the libraries are not imported).

ignite reads ``torch.distributed.Backend.MPI`` and imports ``torch.types`` at import time;
torchinfo sizes its inputs with ``sys.getsizeof(t.untyped_storage())``; ptflops keys its ATen
table by ``aten._convolution`` and counts layers by patching ``torch.nn.functional.relu`` /
``avg_pool2d`` (which torch's layers look up at call time; ``ReLU6`` is a ``Hardtanh``);
pytorch_optimizer groups tensors with ``torch.utils._foreach_utils``, uses
``torch._foreach_rsqrt_``, its ``Lookahead`` calls ``Optimizer._patch_step_function`` without
``Optimizer.__init__``, and its Adafactor keeps bfloat16 momentum updated by ``lerp_``.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch

import ember

LIBS = [torch, ember]


def _np(t):
    return t.detach().float().numpy() if t.dtype != ember.float64 else t.detach().numpy()


# ---- ignite: torch.distributed.Backend's names, torch.types ----------------------------


def test_backend_constants_ignite_reads():
    import torch.distributed as tdist

    import ember.distributed as edist

    for name in ("GLOO", "NCCL", "MPI", "UCC", "UNDEFINED"):
        assert getattr(edist.Backend, name) == getattr(tdist.Backend, name)
    with pytest.raises(ValueError, match="Invalid backend"):
        edist.Backend("mpi")


def test_torch_types_aliases():
    import torch.types as tt

    import ember.types as et

    for name in ("Number", "Device", "Storage", "FileLike", "_size", "_int", "_float", "_bool"):
        assert hasattr(et, name) and hasattr(tt, name), name
    assert et._dtype is ember.dtype and et._device is ember.device
    assert isinstance(3.0, et._Number) and isinstance(3.0, tt._Number)


# ---- torchinfo: the size of a storage counts its bytes ---------------------------------


@pytest.mark.parametrize("lib", LIBS, ids=["torch", "ember"])
def test_storage_sizeof_counts_its_bytes(lib):
    def size(n, dtype):
        return sys.getsizeof(lib.zeros(n, dtype=dtype).untyped_storage())

    assert size(1000, lib.float32) - size(10, lib.float32) == 990 * 4
    assert size(100, lib.float64) - size(100, lib.float32) == 400
    # torchinfo's "Input size": the inputs' storages summed (a view counts its whole block)
    x = lib.randn(2, 3, 8, 8)
    assert sys.getsizeof(x[0].untyped_storage()) == sys.getsizeof(x.untyped_storage())


# ---- ptflops: layers call torch.nn.functional at call time --------------------------------


def _counted(lib, names):
    F = lib.nn.functional
    calls, saved = {}, {n: getattr(F, n) for n in names}

    def wrap(name, fn):
        def wrapper(*args, **kwargs):
            calls[name] = calls.get(name, 0) + 1
            return fn(*args, **kwargs)

        return wrapper

    for n, fn in saved.items():
        setattr(F, n, wrap(n, fn))
    return calls, saved


@pytest.mark.parametrize("lib", LIBS, ids=["torch", "ember"])
def test_layers_see_patched_functionals(lib):
    nn = lib.nn
    names = ["relu", "relu6", "hardtanh", "avg_pool2d", "max_pool2d", "adaptive_avg_pool2d"]
    names += ["softmax", "silu", "gelu"]
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.ReLU6(),
        nn.MaxPool2d(2),
        nn.AvgPool2d(2),
        nn.SiLU(),
        nn.GELU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Softmax(-1),
    )
    calls, saved = _counted(lib, names)
    try:
        out = model(lib.randn(2, 3, 8, 8))
    finally:
        for n, fn in saved.items():
            setattr(lib.nn.functional, n, fn)
    assert tuple(out.shape) == (2, 4)
    # ReLU6 is Hardtanh(0, 6): a counter of F.relu6 does not see it
    assert calls == {
        "relu": 1,
        "hardtanh": 1,
        "max_pool2d": 1,
        "avg_pool2d": 1,
        "silu": 1,
        "gelu": 1,
        "adaptive_avg_pool2d": 1,
        "softmax": 1,
    }
    assert isinstance(nn.ReLU6(), nn.Hardtanh)
    assert repr(nn.ReLU6(inplace=True)) == "ReLU6(inplace=True)"


def test_aten_convolution_internal_name():
    rng = np.random.default_rng(0)
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in ((1, 2, 5, 5), (3, 2, 3, 3), 3))
    args = ([2, 1], [1, 0], [1, 1], False, [0, 0], 1, False, False, True, True)
    outs = [
        lib.ops.aten._convolution(lib.tensor(x), lib.tensor(w), lib.tensor(b), *args)
        for lib in LIBS
    ]
    np.testing.assert_allclose(_np(outs[1]), _np(outs[0]), rtol=1e-5, atol=1e-6)


# ---- pytorch_optimizer: _foreach_utils, _foreach_rsqrt_, _patch_step_function -----------


def test_group_tensors_by_device_and_dtype():
    from torch.utils._foreach_utils import _group_tensors_by_device_and_dtype as tg

    from ember.utils._foreach_utils import _group_tensors_by_device_and_dtype as eg

    def lists(lib):
        a = [lib.ones(1), lib.ones(2, dtype=lib.float64), lib.ones(3)]
        return [a, [None, lib.zeros(1, dtype=lib.float64), lib.zeros(3)]]

    def plain(groups):
        return {
            (str(dev), str(dt).split(".")[1]): (
                [[None if t is None else t.tolist() for t in part] for part in parts],
                idx,
            )
            for (dev, dt), (parts, idx) in groups.items()
        }

    assert plain(eg(lists(ember), with_indices=True)) == plain(tg(lists(torch), True))


@pytest.mark.parametrize("name", ["_foreach_rsqrt", "_foreach_max", "_foreach_clone"])
def test_foreach_list_ops(name):
    vals = [[1.0, 4.0], [[2.0, 9.0]]]
    outs = [getattr(lib, name)([lib.tensor(v) for v in vals]) for lib in LIBS]
    for t, e in zip(*outs):
        np.testing.assert_allclose(_np(e), _np(t), rtol=1e-6)
    ts = [ember.tensor(v) for v in vals]
    ember._foreach_rsqrt_(ts)
    np.testing.assert_allclose(_np(ts[0]), [1.0, 0.5])


@pytest.mark.parametrize("lib", LIBS, ids=["torch", "ember"])
def test_wrapper_optimizer_patches_step_without_init(lib):
    from collections import OrderedDict

    class Lookahead(lib.optim.Optimizer):  # pytorch_optimizer's shape: no super().__init__
        def __init__(self, optimizer, k=2, alpha=0.5):
            self.optimizer, self.k, self.alpha = optimizer, k, alpha
            self._optimizer_step_pre_hooks = OrderedDict()
            self._optimizer_step_post_hooks = OrderedDict()
            self._patch_step_function()
            self.param_groups, self.defaults = optimizer.param_groups, optimizer.defaults
            self.state, self.steps = optimizer.state, 0
            self.slow = [p.detach().clone() for g in self.param_groups for p in g["params"]]

        @lib.no_grad()
        def step(self, closure=None):
            loss = self.optimizer.step(closure)
            self.steps += 1
            if self.steps % self.k == 0:
                ps = [p for g in self.param_groups for p in g["params"]]
                for p, s in zip(ps, self.slow):
                    s.add_(p - s, alpha=self.alpha)
                    p.copy_(s)
            return loss

    lib.manual_seed(0)
    w = lib.nn.Parameter(lib.randn(4))
    opt = Lookahead(lib.optim.SGD([w], lr=0.1, momentum=0.9))
    seen = []
    opt.register_step_pre_hook(lambda o, a, k: seen.append(o.steps))
    for _ in range(5):
        opt.zero_grad()
        (w**2).sum().backward()
        opt.step()
    assert seen == [0, 1, 2, 3, 4]
    test_wrapper_optimizer_patches_step_without_init.results[lib.__name__] = w.detach().numpy()
    if len(test_wrapper_optimizer_patches_step_without_init.results) == 2:
        r = test_wrapper_optimizer_patches_step_without_init.results
        np.testing.assert_allclose(r["ember"], r["torch"], rtol=1e-6)


test_wrapper_optimizer_patches_step_without_init.results = {}


# ---- Adafactor's bfloat16 momentum: lerp rounds once, as torch's kernel ------------------


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("weight", [0.1, 0.37, 0.8, 0.999, "tensor"])
def test_lerp_low_precision_bits(dtype, weight):
    rng = np.random.default_rng(0)
    a, b, w = (rng.standard_normal(20000).astype(np.float32) for _ in range(3))
    outs = []
    for lib in LIBS:
        dt = getattr(lib, dtype)
        wt = lib.tensor(np.abs(w) % 1).to(dt) if weight == "tensor" else weight
        x = lib.tensor(a).to(dt)
        y = x.lerp(lib.tensor(b).to(dt), wt)
        x.lerp_(lib.tensor(b).to(dt), wt)
        assert y.dtype == dt and x.dtype == dt
        outs.append((y.float().numpy(), x.float().numpy()))
    np.testing.assert_array_equal(outs[1][0], outs[0][0])
    np.testing.assert_array_equal(outs[1][1], outs[0][1])


def _bf16_momentum_run(lib, steps=6):
    """An Adafactor-style update: float32 parameters, bfloat16 momentum (``lerp_`` of the
    update cast to bfloat16), a factored second moment."""
    lib.manual_seed(0)
    w = lib.nn.Parameter(lib.randn(6, 5))
    x, y = lib.randn(16, 6), lib.randn(16, 5)
    m = lib.zeros(6, 5, dtype=lib.bfloat16)
    row, col = lib.zeros(6), lib.zeros(5)
    for t in range(1, steps + 1):
        w.grad = None
        ((x @ w - y) ** 2).mean().backward()
        with lib.no_grad():
            g2 = w.grad.square().add_(1e-30)
            beta2 = 1.0 - t**-0.8
            row.lerp_(g2.mean(dim=-1), 1.0 - beta2)
            col.lerp_(g2.mean(dim=-2), 1.0 - beta2)
            v = (row / row.mean()).unsqueeze(-1) * col.unsqueeze(0)
            u = w.grad * v.rsqrt()
            u.div_((u.square().mean().sqrt() / 1.0).clamp_min_(1.0))
            m.lerp_(u.to(lib.bfloat16), 0.1)
            w.sub_(m.float(), alpha=0.01)
    return w.detach().numpy(), m.float().numpy()


def test_bf16_momentum_optimizer_matches_torch():
    (wt, mt), (we, me) = (_bf16_momentum_run(lib) for lib in LIBS)
    np.testing.assert_array_equal(me != mt, np.zeros_like(mt, bool))
    np.testing.assert_allclose(we, wt, rtol=1e-6, atol=1e-7)


def test_porting_examples_snippet_runs(capsys):
    """The docs' snippet (docs/porting_examples.md, "pytorch-ignite, accelerate, ...") prints
    what torch prints."""
    import pathlib

    doc = pathlib.Path(__file__).resolve().parents[1] / "docs" / "porting_examples.md"
    head = "\n## pytorch-ignite, accelerate, torchinfo, ptflops, thop, schedulefree, "
    section = doc.read_text().split(head, 1)[1].split("\n## ", 1)[0]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(code, "training-utils-doc", "exec"), {})
    exec(compile(code.replace("ember", "torch"), "training-utils-doc", "exec"), {})
    ours, theirs = capsys.readouterr().out.splitlines()
    assert ours.replace("ember.", "torch.") == theirs
    assert ours == code.rstrip().splitlines()[-1][2:]


# ---- bfloat16 / float16 arithmetic rounded as torch's CPU kernels ------------------------


def _low_pair(dtype, n=4096, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(n) * 3).astype(np.float32) for _ in range(3)]


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_low_precision_mul_div_by_scalar_bits(dtype):
    a, b, _ = _low_pair(dtype)
    progs = [
        lambda x, y: x * 0.37,
        lambda x, y: 0.37 * x,
        lambda x, y: x / 0.37,
        lambda x, y: x.clone().mul_(0.999),
        lambda x, y: x.clone().div_(3.3),
        lambda x, y: x.add(y, alpha=0.37),
        lambda x, y: x.sub(y, alpha=0.01),
        lambda x, y: x.addcmul(y, y, value=0.001),
        lambda x, y: x.addcdiv(y, y.abs() + 0.5, value=-0.37),
        lambda x, y: x + 0.37,  # torch rounds the scalar here: unchanged
    ]
    for prog in progs:
        outs = []
        for lib in LIBS:
            dt = getattr(lib, dtype)
            out = prog(lib.tensor(a).to(dt), lib.tensor(b).to(dt))
            assert out.dtype == dt
            outs.append(out.float().numpy())
        np.testing.assert_array_equal(outs[1], outs[0])


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_low_precision_fused_op_gradients_bits(dtype):
    a, b, c = _low_pair(dtype, seed=1)
    grads = []
    for lib in LIBS:
        dt = getattr(lib, dtype)
        x, y, z = (lib.tensor(v).to(dt).requires_grad_() for v in (a, b, np.abs(c) + 0.5))
        out = x * 0.37 + x.add(y, alpha=0.37) + x.addcmul(y, z, value=0.3)
        out = out + x.addcdiv(y, z, value=0.2) + y / 0.3
        out.backward(lib.tensor(a[::-1].copy()).to(dt))
        grads.append([t.grad.float().numpy() for t in (x, y, z)])
    for e, t in zip(grads[1], grads[0]):
        np.testing.assert_array_equal(e, t)


def _bf16_adamw_run(lib, steps=5):
    """AdamW written out on bfloat16 parameters and state (the update of a bf16 model)."""
    rng = np.random.default_rng(3)
    p = lib.tensor(rng.standard_normal(1024).astype(np.float32)).bfloat16()
    target = lib.tensor(rng.standard_normal(1024).astype(np.float32))
    m, v = lib.zeros_like(p), lib.zeros_like(p)
    lr, b1, b2, eps, wd = 1e-2, 0.9, 0.999, 1e-8, 0.01
    for t in range(1, steps + 1):
        g = (2 * (p.float() - target)).bfloat16()  # elementwise: the same in both
        p.mul_(1 - lr * wd)
        m.lerp_(g, 1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        denom = (v.sqrt() / math.sqrt(1 - b2**t)).add_(eps)
        p.addcdiv_(m, denom, value=-lr / (1 - b1**t))
    return p.float().numpy(), m.float().numpy(), v.float().numpy()


def test_bf16_adamw_program_matches_torch_bits():
    for e, t in zip(_bf16_adamw_run(ember), _bf16_adamw_run(torch)):
        np.testing.assert_array_equal(e, t)
