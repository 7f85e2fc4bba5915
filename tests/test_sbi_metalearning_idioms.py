"""Idioms sbi (0.27), torchopt (0.7), learn2learn (0.2) and higher (0.2) reach in torch when
they run on ember, each a small program of our own checked against torch (none of the
libraries is a dependency; docs/porting_examples.md "sbi, torchopt, learn2learn, higher"
records what was run through them):

- a custom ``autograd.Function`` returning non-tensors (a flag, a type, a string, numbers)
  among its outputs: ``apply`` hands them back as they are and ``backward`` gets ``None`` for
  them (torchopt's implicit gradients return ``output_is_tensor`` and ``type(output)``);
- implicit differentiation: a Function whose ``backward`` (grad mode off) builds
  ``torch.func.vjp`` of the optimality condition and solves ``A^T u = -v`` with conjugate
  gradients through a *nested* ``vjp`` of that ``vjp_fn`` (torchopt's ``custom_root``);
- ``randint`` / ``random_`` spans of 2**28 and more draw torch's 64-bit values (sbi seeds
  its slice-sampler chains from ``randint(high=2**31)``);
- ``torch.utils.tensorboard.writer`` reached through a module alias (sbi imports it so) and
  ``torch.distributed.autograd.is_available()`` (torchopt checks it on import);
- the meta-learning loops: a MAML inner loop with ``create_graph`` updates of cloned
  parameters, a differentiable inner Adam with a learnable learning rate, a functional Adam
  over ``torch.func.functional_call`` parameters;
- neural posterior estimation's pieces: a z-scored masked affine autoregressive flow trained
  with Adam and gradient clipping, and NRE's contrastive classifier loss over
  ``multinomial``-chosen atoms.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import math
import sys

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")
LIBS = {"ember": ember, "torch": torch}


def _np(t):
    return t.detach().cpu().numpy()


def _sine_task(lib, i, n=20):
    g = lib.Generator().manual_seed(100 + i)
    amp = 0.1 + 4.9 * lib.rand(1, generator=g)
    phase = math.pi * lib.rand(1, generator=g)
    x = 10 * lib.rand(n, 1, generator=g) - 5
    return x, amp * lib.sin(x + phase)


# ---- a Function with non-tensor outputs ----------------------------------------------------
def _passthrough_program(lib):
    seen = []

    class Solve(lib.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            out = (x * 3,)
            return (*out, None, True, type(out), "tag", 7, 2.5)

        @staticmethod
        def backward(ctx, g, *rest):
            seen.append(rest)
            return g * 3

    x = lib.tensor([1.0, -2.0], requires_grad=True)
    y, aux, is_tensor, kind, tag, n, f = Solve.apply(x)
    y.sum().backward()
    return (aux, is_tensor, kind, tag, n, f), seen, _np(x.grad)


def test_function_returns_non_tensor_outputs_as_they_are():
    e = _passthrough_program(ember)
    t = _passthrough_program(torch)
    assert e[0] == t[0] == (None, True, tuple, "tag", 7, 2.5)
    assert e[1] == t[1] == [(None,) * 6]
    np.testing.assert_array_equal(e[2], t[2])


# ---- implicit differentiation through a nested vjp -----------------------------------------
def _cg(matvec, b, iters=20):
    x = b * 0
    r = b - matvec(x)
    p = r
    rs = (r * r).sum()
    for _ in range(iters):
        if rs.item() < 1e-20:
            break
        ap = matvec(p)
        alpha = rs / (p * ap).sum()
        x = x + alpha * p
        r = r - alpha * ap
        rs_new = (r * r).sum()
        p = r + (rs_new / rs) * p
        rs = rs_new
    return x


def _implicit_ridge_program(lib):
    g = lib.Generator().manual_seed(1)
    X = lib.randn(20, 3, generator=g)
    Y = lib.randn(20, generator=g)

    def optimality(w, lam):  # gradient of the ridge objective: zero at the solution
        return X.T @ (X @ w - Y) + lam * w

    class RidgeSolution(lib.autograd.Function):
        @staticmethod
        def forward(ctx, lam):
            a = X.T @ X + lam * lib.eye(3)
            w = lib.linalg.solve(a, X.T @ Y)
            ctx.save_for_backward(w.detach(), lam.detach())
            return w

        @staticmethod
        def backward(ctx, grad_w):
            w, lam = ctx.saved_tensors
            # built with grad mode off (inside backward), then differentiated again below
            _, vjp_w = lib.func.vjp(lambda w_: optimality(w_, lam), w)

            def matvec(u):  # A^T u with A = d optimality / d w
                return vjp_w(u)[0]

            def normal_matvec(u):  # A^T A u: a vjp of matvec itself (torchopt's normal CG)
                out, vjp_m = lib.func.vjp(matvec, u)
                return vjp_m(out)[0]

            rhs = lib.func.vjp(matvec, -grad_w)[1](-grad_w)[0]  # A (-v)
            u = _cg(normal_matvec, rhs)
            _, vjp_lam = lib.func.vjp(lambda lam_: optimality(w, lam_), lam)
            return vjp_lam(u)[0]

    lam = lib.tensor(0.5, requires_grad=True)
    w = RidgeSolution.apply(lam)
    w.sum().backward()
    return _np(w), lam.grad.item()


def test_implicit_gradient_through_nested_vjp():
    e = _implicit_ridge_program(ember)
    t = _implicit_ridge_program(torch)
    np.testing.assert_allclose(e[0], t[0], rtol=1e-5)
    assert e[1] == pytest.approx(t[1], rel=1e-4)
    assert abs(t[1]) > 1e-3  # a gradient, not the zeros ember returned before


def _nested_vjp_under_no_grad(lib):
    a = lib.tensor([[2.0, 1.0], [0.0, 3.0]])
    w = lib.tensor([1.0, -1.0])
    with lib.no_grad():
        _, vjp_fn = lib.func.vjp(lambda w_: a @ w_, w)
        y = lib.tensor([1.0, 1.0])
        out, vjp_outer = lib.func.vjp(lambda u: vjp_fn(u)[0], y)
        grad = lib.func.grad(lambda u: vjp_fn(u)[0].sum())(y)
    return _np(out), _np(vjp_outer(out)[0]), _np(grad)


def test_vjp_fn_made_under_no_grad_is_differentiable_in_its_cotangent():
    for a, b in zip(_nested_vjp_under_no_grad(ember), _nested_vjp_under_no_grad(torch)):
        np.testing.assert_allclose(a, b)


# ---- torch's random stream for wide integer spans ------------------------------------------
@pytest.mark.parametrize("span", [2**16, 2**28 - 1, 2**28, 2**31 - 1, 2**31, 2**33 + 3])
def test_randint_wide_spans_draw_torchs_values(span):
    out = {}
    for name, lib in LIBS.items():
        lib.manual_seed(3)
        a = lib.randint(high=span, size=(4,)).tolist()
        b = lib.randint(-5, span - 5, (3,), dtype=lib.int32 if span <= 2**31 else lib.int64)
        c = lib.empty(3, dtype=lib.float64).random_(0, span)
        out[name] = (a, b.tolist(), c.tolist())
    assert out["ember"] == out["torch"]


def test_randint_seeds_numpy_chains_as_torch():
    # sbi's slice sampler: one seed per chain from randint(high=2**31), then np.random.seed
    draws = {}
    for name, lib in LIBS.items():
        lib.manual_seed(0)
        seeds = lib.randint(high=2**31, size=(2,))
        row = []
        for s in seeds:
            np.random.seed(s)
            row.append(np.random.rand())
        draws[name] = row
    assert draws["ember"] == draws["torch"]


# ---- import paths sbi and torchopt use -----------------------------------------------------
class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers ``embalias`` and ``embalias.X`` with ``ember`` / ``ember.X`` (how the
    libraries were run: ``torch`` resolved to ember by such a finder)."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] != "embalias":
            return None
        return importlib.util.spec_from_loader(name, self)

    def create_module(self, spec):
        return importlib.import_module("ember" + spec.name[len("embalias") :])

    def exec_module(self, module):
        pass


def test_tensorboard_writer_through_an_alias():
    pytest.importorskip("tensorboard")
    finder = _Alias()
    sys.meta_path.insert(0, finder)
    try:
        writer = importlib.import_module("embalias.utils.tensorboard.writer")
        summary = importlib.import_module("embalias.utils.tensorboard.summary")
    finally:
        sys.meta_path.remove(finder)
        for k in [k for k in sys.modules if k.split(".")[0] == "embalias"]:
            del sys.modules[k]
    from ember.utils.tensorboard import SummaryWriter

    assert writer.SummaryWriter is SummaryWriter
    assert callable(summary.hparams)


def test_distributed_autograd_is_available():
    import ember.distributed.autograd as dist_autograd

    assert dist_autograd.is_available() is torch.distributed.autograd.is_available()


# ---- meta-learning loops -------------------------------------------------------------------
def _maml_program(lib, first_order):
    lib.manual_seed(0)
    model = lib.nn.Sequential(lib.nn.Linear(1, 32), lib.nn.ReLU(), lib.nn.Linear(32, 1))
    outer = lib.optim.Adam(model.parameters(), lr=1e-2)
    names = [n for n, _ in model.named_parameters()]
    out = []
    for it in range(2):
        outer.zero_grad()
        total = 0.0
        for t in range(2):
            x, y = _sine_task(lib, it * 2 + t)
            fast = list(model.parameters())
            for _ in range(2):  # learn2learn's clone() / adapt(): create_graph updates
                loss = lib.nn.functional.mse_loss(
                    lib.func.functional_call(model, dict(zip(names, fast)), (x[:10],)), y[:10]
                )
                grads = lib.autograd.grad(loss, fast, create_graph=not first_order)
                fast = [p - 0.01 * g for p, g in zip(fast, grads)]
            q = lib.nn.functional.mse_loss(
                lib.func.functional_call(model, dict(zip(names, fast)), (x[10:],)), y[10:]
            )
            q.backward()
            total += q.item()
        norm = sum(p.grad.norm() ** 2 for p in model.parameters()).sqrt().item()
        outer.step()
        out.append((total, norm))
    return np.array(out)


@pytest.mark.parametrize("first_order", [False, True])
def test_maml_inner_loop(first_order):
    np.testing.assert_allclose(
        _maml_program(ember, first_order), _maml_program(torch, first_order), rtol=2e-5
    )


def _differentiable_adam_program(lib):
    # higher's DifferentiableAdam / torchopt's MetaAdam: the inner step is part of the graph,
    # so the outer loss is differentiable in the initial weights and the learning rate
    lib.manual_seed(0)
    net = lib.nn.Sequential(lib.nn.Linear(3, 8), lib.nn.Tanh(), lib.nn.Linear(8, 1))
    g = lib.Generator().manual_seed(7)
    x = lib.randn(16, 3, generator=g)
    y = lib.randn(16, 1, generator=g)
    lr = lib.tensor(0.05, requires_grad=True)
    names = [n for n, _ in net.named_parameters()]
    params = list(net.parameters())
    m = [lib.zeros_like(p) for p in params]
    v = [lib.zeros_like(p) for p in params]
    b1, b2, eps = 0.9, 0.999, 1e-8
    for step in range(1, 4):
        loss = lib.nn.functional.mse_loss(
            lib.func.functional_call(net, dict(zip(names, params)), (x,)), y
        )
        grads = lib.autograd.grad(loss, params, create_graph=True)
        m = [b1 * mi + (1 - b1) * gi for mi, gi in zip(m, grads)]
        v = [b2 * vi + (1 - b2) * gi * gi for vi, gi in zip(v, grads)]
        params = [
            p - lr * (mi / (1 - b1**step)) / ((vi / (1 - b2**step)).sqrt() + eps)
            for p, mi, vi in zip(params, m, v)
        ]
    meta = lib.nn.functional.mse_loss(
        lib.func.functional_call(net, dict(zip(names, params)), (x,)), y
    )
    meta.backward()
    return meta.item(), lr.grad.item(), _np(net[0].weight.grad)


def test_differentiable_adam_with_learnable_lr():
    e = _differentiable_adam_program(ember)
    t = _differentiable_adam_program(torch)
    assert e[0] == pytest.approx(t[0], rel=1e-5)
    assert e[1] == pytest.approx(t[1], rel=1e-4)
    np.testing.assert_allclose(e[2], t[2], rtol=1e-4, atol=1e-6)


def _functional_adam_program(lib):
    # torchopt.adam(): init / update / apply_updates over a dict of torch.func parameters
    lib.manual_seed(0)
    net = lib.nn.Sequential(lib.nn.Linear(1, 16), lib.nn.ReLU(), lib.nn.Linear(16, 1))
    params = {k: p.detach() for k, p in net.named_parameters()}
    mu = {k: lib.zeros_like(p) for k, p in params.items()}
    nu = {k: lib.zeros_like(p) for k, p in params.items()}
    x, y = _sine_task(lib, 0)
    losses = []
    for step in range(1, 5):

        def loss_fn(p):
            return lib.nn.functional.mse_loss(lib.func.functional_call(net, p, (x,)), y)

        grads, loss = lib.func.grad_and_value(loss_fn)(params)
        mu = {k: mu[k].mul(0.9).add(grads[k], alpha=0.1) for k in params}
        nu = {k: nu[k].mul(0.999).addcmul(grads[k], grads[k], value=0.001) for k in params}
        params = {
            k: params[k]
            - 1e-2 * (mu[k] / (1 - 0.9**step)) / (lib.sqrt(nu[k] / (1 - 0.999**step)) + 1e-8)
            for k in params
        }
        losses.append(loss.item())
    return np.array(losses)


def test_functional_adam_over_func_params():
    np.testing.assert_allclose(
        _functional_adam_program(ember), _functional_adam_program(torch), rtol=1e-5
    )


# ---- neural posterior / ratio estimation pieces --------------------------------------------
def _box_uniform_data(lib, n=200):
    lib.manual_seed(0)
    prior = lib.distributions.Independent(
        lib.distributions.Uniform(-2 * lib.ones(2), 2 * lib.ones(2)), 1
    )
    theta = prior.sample((n,))
    noise = 0.1 * lib.randn_like(theta)
    x = theta + noise + 0.1 * lib.stack([theta[:, 0] * theta[:, 1], theta[:, 0] ** 2], 1)
    return prior, theta, x


def _maf_program(lib):
    # a 2-d masked autoregressive affine flow (one MADE-like layer per dimension order),
    # z-scored inputs, trained on log p(theta | x) with Adam and clip_grad_norm_ as sbi's NPE
    prior, theta, x = _box_uniform_data(lib)
    x_mean, x_std = x.mean(0), x.std(0)
    lib.manual_seed(1)

    class Layer(lib.nn.Module):
        def __init__(self, flip):
            super().__init__()
            self.flip = flip
            self.first = lib.nn.Linear(2, 2)  # dim 0 conditioned on x only
            self.second = lib.nn.Sequential(
                lib.nn.Linear(3, 16), lib.nn.Tanh(), lib.nn.Linear(16, 2)
            )

        def forward(self, t, c):
            if self.flip:
                t = t.flip(-1)
            s0, m0 = self.first(c).chunk(2, -1)
            s1, m1 = self.second(lib.cat([t[:, :1], c], -1)).chunk(2, -1)
            shift = lib.cat([m0, m1], -1)
            log_scale = lib.tanh(lib.cat([s0, s1], -1))
            z = (t - shift) * lib.exp(-log_scale)
            return z, -log_scale.sum(-1)

    layers = lib.nn.ModuleList([Layer(False), Layer(True)])
    opt = lib.optim.Adam(layers.parameters(), lr=5e-3)
    std_normal = lib.distributions.Normal(0.0, 1.0)
    losses = []
    for _ in range(3):
        perm = lib.randperm(len(theta))
        for i in range(0, len(theta), 50):
            idx = perm[i : i + 50]
            c = (x[idx] - x_mean) / x_std
            z, logdet = theta[idx], 0
            for layer in layers:
                z, ld = layer(z, c)
                logdet = logdet + ld
            loss = -(std_normal.log_prob(z).sum(-1) + logdet).mean()
            opt.zero_grad()
            loss.backward()
            lib.nn.utils.clip_grad_norm_(layers.parameters(), max_norm=5.0)
            opt.step()
            losses.append(loss.item())
    return np.array(losses)


def test_masked_affine_flow_training():
    np.testing.assert_allclose(_maf_program(ember), _maf_program(torch), rtol=2e-5)


def _nre_program(lib):
    # NRE-A: each theta paired with its x (label 1) and with one other theta chosen by
    # multinomial (label 0), a LayerNorm MLP classifier, BCE of the sigmoid
    prior, theta, x = _box_uniform_data(lib, 100)
    lib.manual_seed(2)
    net = lib.nn.Sequential(
        lib.nn.Linear(4, 16), lib.nn.LayerNorm(16), lib.nn.ReLU(), lib.nn.Linear(16, 1)
    )
    opt = lib.optim.Adam(net.parameters(), lr=1e-3)
    n = 50
    probs = lib.ones(n, n) * (1 - lib.eye(n)) / (n - 1)
    losses = []
    for i in range(0, 100, n):
        th, xx = theta[i : i + n], x[i : i + n]
        choice = lib.multinomial(probs, num_samples=1, replacement=False)
        atoms = lib.cat((th[:, None, :], th[choice]), dim=1).reshape(2 * n, -1)
        rep_x = xx.repeat_interleave(2, dim=0)
        logits = net(lib.cat([atoms, rep_x], -1))
        labels = lib.ones(2 * n)
        labels[1::2] = 0.0
        loss = lib.nn.BCELoss()(lib.sigmoid(logits).squeeze(), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with lib.no_grad():
        log_ratio = net(lib.cat([theta[:3], x[:1].expand(3, 2)], -1)).squeeze(-1)
        potential = log_ratio + prior.log_prob(theta[:3])
    return np.array(losses), _np(potential), _np(choice).ravel()


def test_nre_contrastive_classifier():
    e = _nre_program(ember)
    t = _nre_program(torch)
    np.testing.assert_array_equal(e[2], t[2])  # the same atoms: torch's multinomial stream
    np.testing.assert_allclose(e[0], t[0], rtol=1e-5)
    # the last Linear's bias gets a zero gradient in exact arithmetic (balanced labels), which
    # Adam turns into full steps of rounding noise: the potentials agree to ~1e-3
    np.testing.assert_allclose(e[1], t[1], atol=5e-3)
