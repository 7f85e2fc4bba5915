"""The idioms Opacus (differential privacy) and Captum (attribution) programs use, written small
and compared with PyTorch (these tests do not import opacus or captum; see the "Opacus and
Captum" section of docs/porting_examples.md).

Covers: per-sample gradients from forward hooks (activations) and full backward hooks
(backprops) on a module called once per time step, which pair up only when the engine runs
nodes in PyTorch's order; per-sample gradients by ``func.vmap(func.grad(...))`` over
``functional_call``; a DP-SGD step (per-sample clipping, Gaussian noise from a seeded
generator, Poisson sampling); ``autograd.grad`` to a layer's output and then, on the same
graph, from that output to the input (Captum's neuron attributions); integrated gradients by
hand; and the torch names these libraries import.
"""

from __future__ import annotations

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")


def _np(t):
    return t.detach().numpy()


def _weights(seed: int = 0):
    rs = np.random.RandomState(seed)
    return {
        "ih_w": rs.randn(6, 4).astype(np.float32) * 0.5,
        "ih_b": rs.randn(6).astype(np.float32) * 0.1,
        "hh_w": rs.randn(6, 6).astype(np.float32) * 0.5,
        "hh_b": rs.randn(6).astype(np.float32) * 0.1,
        "x": rs.randn(5, 3, 4).astype(np.float32),  # (T, B, D)
    }


def _rnn_per_sample_by_hooks(lib, w):
    """Opacus' hooks mode on a cell whose Linear layers run once per step: a forward hook keeps
    each call's input, a full backward hook pops the latest one (LIFO) and forms
    ``einsum('bo,bi->boi')``; the per-step pairs only match when backward runs the calls in
    reverse creation order."""
    nn = lib.nn
    ih, hh = nn.Linear(4, 6), nn.Linear(6, 6)
    with lib.no_grad():
        for m, k in ((ih, "ih"), (hh, "hh")):
            m.weight.copy_(lib.from_numpy(w[k + "_w"]))
            m.bias.copy_(lib.from_numpy(w[k + "_b"]))
    acts: dict = {ih: [], hh: []}
    sample = {ih: 0, hh: 0}
    order = []

    def fwd(m, inp, out):
        acts[m].append(inp[0].detach())

    def bwd(m, grad_in, grad_out):
        a = acts[m].pop()
        sample[m] = sample[m] + lib.einsum("bo,bi->boi", grad_out[0], a)
        order.append("ih" if m is ih else "hh")

    for m in (ih, hh):
        m.register_forward_hook(fwd)
        m.register_full_backward_hook(bwd)
    xs = lib.from_numpy(w["x"]).unbind(0)
    h = lib.zeros(3, 6)
    for t in range(len(xs)):
        h = lib.tanh(ih(xs[t]) + hh(h))
    h.pow(2).sum().backward()
    return order, _np(sample[ih]), _np(sample[hh]), _np(ih.weight.grad), _np(hh.weight.grad)


@pytest.mark.filterwarnings("ignore:Full backward hook is firing")  # (the input needs no grad)
def test_backward_hooks_run_in_torch_order_per_sample_grads_by_hooks():
    w = _weights()
    got, want = _rnn_per_sample_by_hooks(ember, w), _rnn_per_sample_by_hooks(torch, w)
    assert got[0] == want[0]  # hh, ih, hh, ih, ... as PyTorch's engine runs them
    for g, t in zip(got[1:], want[1:]):
        np.testing.assert_allclose(g, t, rtol=1e-5, atol=1e-6)
    # the per-sample gradients sum to the batch gradient
    np.testing.assert_allclose(got[1].sum(0), got[3], rtol=1e-5, atol=1e-6)


def _mlp(lib, seed: int = 0):
    rs = np.random.RandomState(seed)
    m = lib.nn.Sequential(lib.nn.Linear(6, 5), lib.nn.Tanh(), lib.nn.Linear(5, 3))
    with lib.no_grad():
        for p in m.parameters():
            p.copy_(lib.from_numpy(rs.randn(*p.shape).astype(np.float32) * 0.4))
    return m


def _per_sample_by_vmap(lib, x, y):
    """Opacus' functorch mode: grad of one sample's loss over functional_call, vmapped."""
    model = _mlp(lib)
    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss_one(p, xi, yi):
        out = lib.func.functional_call(model, p, (xi.unsqueeze(0),))
        return lib.nn.functional.cross_entropy(out, yi.unsqueeze(0))

    g = lib.func.vmap(lib.func.grad(loss_one), in_dims=(None, 0, 0))(
        params, lib.from_numpy(x), lib.from_numpy(y)
    )
    return {k: _np(v) for k, v in g.items()}


def test_per_sample_grads_by_func_vmap():
    rs = np.random.RandomState(1)
    x, y = rs.randn(7, 6).astype(np.float32), rs.randint(0, 3, 7)
    got, want = _per_sample_by_vmap(ember, x, y), _per_sample_by_vmap(torch, x, y)
    assert got.keys() == want.keys()
    for k in got:
        assert got[k].shape == (7, *want[k].shape[1:])
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6)


def _per_sample_by_expanded_weights(lib, x, y, reduction):
    """Opacus' ``grad_sample_mode="ew"``: ``call_for_per_sample_grads`` runs the module and
    the backward fills ``param.grad_sample`` (``param.grad`` stays None)."""
    from importlib import import_module

    call = import_module(lib.__name__ + ".nn.utils._per_sample_grad").call_for_per_sample_grads
    model = _mlp(lib)
    out = call(model, batch_size=len(x), loss_reduction=reduction)(lib.from_numpy(x))
    lib.nn.functional.cross_entropy(out, lib.from_numpy(y), reduction=reduction).backward()
    assert all(p.grad is None for p in model.parameters())
    return [_np(p.grad_sample) for p in model.parameters()]


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_per_sample_grads_by_call_for_per_sample_grads(reduction):
    rs = np.random.RandomState(1)
    x, y = rs.randn(7, 6).astype(np.float32), rs.randint(0, 3, 7)
    got = _per_sample_by_expanded_weights(ember, x, y, reduction)
    want = _per_sample_by_expanded_weights(torch, x, y, reduction)
    for g, t in zip(got, want):
        np.testing.assert_allclose(g, t, rtol=1e-5, atol=1e-6)
    from ember.nn.utils._per_sample_grad import call_for_per_sample_grads

    with pytest.raises(RuntimeError, match="loss_reduction"):
        call_for_per_sample_grads(_mlp(ember), loss_reduction="none")


def _dp_sgd(lib, steps: int = 4):
    """A DP-SGD loop by hand: Poisson-sampled batches, per-sample clipping to norm C, summed,
    plus N(0, (sigma C)^2) noise from a seeded generator, divided by the expected batch."""
    rs = np.random.RandomState(2)
    xall, yall = rs.randn(40, 6).astype(np.float32), rs.randint(0, 3, 40)
    model = _mlp(lib)
    names = [k for k, _ in model.named_parameters()]
    gen = lib.Generator().manual_seed(11)
    lib.manual_seed(5)
    sample_rate, clip, sigma, lr = 0.25, 1.0, 1.1, 0.5
    losses = []
    for _ in range(steps):
        mask = lib.rand(40) < sample_rate  # Poisson sampling (Opacus' DPDataLoader)
        idx = mask.nonzero().flatten().numpy()
        if len(idx) == 0:
            continue
        params = {k: v.detach() for k, v in model.named_parameters()}

        def loss_one(p, xi, yi):
            out = lib.func.functional_call(model, p, (xi.unsqueeze(0),))
            return lib.nn.functional.cross_entropy(out, yi.unsqueeze(0))

        xb, yb = lib.from_numpy(xall[idx]), lib.from_numpy(yall[idx])
        gs = lib.func.vmap(lib.func.grad(loss_one), in_dims=(None, 0, 0))(params, xb, yb)
        norms = lib.stack([gs[k].flatten(1).norm(2, dim=1) for k in names], 1).norm(2, dim=1)
        factor = (clip / (norms + 1e-6)).clamp(max=1.0)
        with lib.no_grad():
            for k, p in model.named_parameters():
                summed = lib.einsum("i,i...->...", factor, gs[k])
                noise = lib.normal(0.0, sigma * clip, size=p.shape, generator=gen)
                p -= lr * (summed + noise) / (sample_rate * 40)
            losses.append(float(lib.nn.functional.cross_entropy(model(xb), yb)))
    return np.array(losses), [_np(p) for p in model.parameters()]


def test_dp_sgd_clip_and_noise_matches_torch_under_one_seed():
    (gl, gw), (tl, tw) = _dp_sgd(ember), _dp_sgd(torch)
    assert len(gl) == len(tl) > 0  # the same Poisson batches
    np.testing.assert_allclose(gl, tl, rtol=1e-4, atol=1e-5)
    for g, t in zip(gw, tw):
        np.testing.assert_allclose(g, t, rtol=1e-4, atol=1e-5)


def _layer_then_input_grads(lib):
    """Captum's neuron attributions: ``autograd.grad`` of the output w.r.t. a layer's output
    (kept by a forward hook), no retain_graph; then, on the same graph, the gradient of one
    neuron of that layer w.r.t. the input. The first call must not free the graph below the
    layer (PyTorch's engine stops at the input it was asked for)."""
    m = _mlp(lib)
    kept = []
    m[0].register_forward_hook(lambda mod, i, o: kept.append(o))
    x = lib.from_numpy(np.random.RandomState(3).randn(4, 6).astype(np.float32))
    x.requires_grad_(True)
    out = m(x)
    (g_layer,) = lib.autograd.grad(out[:, 1].unbind(), kept[0])
    (g_in,) = lib.autograd.grad(kept[0][:, 2].sum(), x)
    return _np(g_layer), _np(g_in)


def test_grad_to_layer_output_keeps_the_graph_below_it():
    got, want = _layer_then_input_grads(ember), _layer_then_input_grads(torch)
    for g, t in zip(got, want):
        np.testing.assert_allclose(g, t, rtol=1e-5, atol=1e-6)


def _hooks_share_the_gradient(lib):
    """Captum's LRP: a tensor hook marks the gradient object (``grad.replace_out = ...``) and a
    later hook on the same tensor finds the mark; PyTorch hands the hooks one gradient tensor
    until one of them returns a new one."""
    x = lib.tensor([1.0, -2.0, 3.0], requires_grad=True)
    h = x * 2
    seen = []

    def mark(g):
        g.replace_out = g * 10

    def read(g):
        seen.append(hasattr(g, "replace_out"))
        return g.replace_out if hasattr(g, "replace_out") else None

    def after(g):  # gets the tensor ``read`` returned, unmarked
        seen.append(hasattr(g, "replace_out"))

    for hook in (mark, read, after):
        h.register_hook(hook)
        x.register_hook(hook)
    h.sum().backward()
    return seen, _np(x.grad)


def test_tensor_hooks_see_one_gradient_object():
    got, want = _hooks_share_the_gradient(ember), _hooks_share_the_gradient(torch)
    assert got[0] == want[0] == [True, False, True, False]
    np.testing.assert_allclose(got[1], want[1])


def _integrated_gradients(lib, steps: int = 16):
    """Integrated gradients by hand (Captum's IntegratedGradients, Riemann right rule): the
    scaled inputs in one batch, gradients of the target logit, averaged, times the input
    difference; the convergence delta compares their sum with f(x) - f(baseline)."""
    m = _mlp(lib)
    x = lib.from_numpy(np.random.RandomState(4).randn(2, 6).astype(np.float32))
    base = lib.zeros_like(x)
    alphas = lib.arange(1, steps + 1, dtype=lib.float32) / steps
    scaled = (base + alphas.view(-1, 1, 1) * (x - base)).reshape(-1, 6).requires_grad_(True)
    target = lib.tensor([0, 2]).repeat(steps)
    logits = m(scaled).gather(1, target.view(-1, 1)).sum()
    (g,) = lib.autograd.grad(logits, scaled)
    attr = g.view(steps, 2, 6).mean(0) * (x - base)
    with lib.no_grad():
        fx = m(x).gather(1, lib.tensor([[0], [2]])).flatten()
        fb = m(base).gather(1, lib.tensor([[0], [2]])).flatten()
    delta = attr.sum(1) - (fx - fb)
    return _np(attr), _np(delta)


def test_integrated_gradients_by_hand():
    got, want = _integrated_gradients(ember), _integrated_gradients(torch)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-4, atol=1e-5)


def test_the_torch_names_opacus_and_captum_import():
    # torch.Future (Captum: isinstance(out, torch.Future)) is torch.futures.Future
    assert ember.Future is ember.futures.Future
    assert not isinstance(ember.zeros(1), ember.Future)
    # from torch.utils.data.dataloader import _collate_fn_t (Opacus' annotations)
    # from torch.distributed._tensor.experimental import implicit_replication (Opacus' FSDP)
    from ember.distributed._tensor.experimental import implicit_replication
    from ember.distributed.tensor import _dispatch

    # from torch.nn.parallel.scatter_gather import scatter (Captum's layer ablation)
    from ember.nn.parallel.scatter_gather import gather, scatter  # noqa: F401
    from ember.utils.data.dataloader import _collate_fn_t  # noqa: F401

    assert not _dispatch._IMPLICIT_REPLICATION[0]
    with implicit_replication():
        assert _dispatch._IMPLICIT_REPLICATION[0]
    assert not _dispatch._IMPLICIT_REPLICATION[0]
