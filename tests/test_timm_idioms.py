"""Idioms of timm (pytorch-image-models 1.0.15), which runs with ``torch`` resolved to ember:
our own small programs in its style, checked against torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ember


def _mixup(fw, x, lam):
    # timm's Mixup._mix_batch: the flipped batch is scaled in place, then added in place
    x_flipped = x.flip(0).mul_(1.0 - lam)
    x.mul_(lam).add_(x_flipped)
    return x


def _cutmix(fw, x, box):
    yl, yh, xl, xh = box
    x[:, :, yl:yh, xl:xh] = x.flip(0)[:, :, yl:yh, xl:xh]
    return x


def test_flip_is_a_copy_so_in_place_mixing_matches_torch():
    data = np.random.default_rng(0).standard_normal((4, 3, 6, 6)).astype(np.float32)
    for mix, arg in ((_mixup, 0.7), (_cutmix, (1, 4, 2, 5))):
        ours = mix(ember, ember.tensor(data), arg).numpy()
        theirs = mix(torch, torch.tensor(data), arg).numpy()
        np.testing.assert_allclose(ours, theirs, rtol=1e-6)
    x = ember.arange(4.0)
    x.flip(0).mul_(0)
    assert x.tolist() == [0.0, 1.0, 2.0, 3.0]
    assert x.flip(0).is_contiguous()


def _lion_class(fw):
    from_opt = __import__(f"{fw.__name__}.optim.optimizer", fromlist=["x"])

    class Lion(fw.optim.Optimizer):
        # timm's optimizers: torch.optim.optimizer's private helpers and the capture check
        def __init__(self, params: from_opt.ParamsT, lr=1e-3, betas=(0.9, 0.99), wd=0.0):
            defaults = dict(lr=lr, betas=betas, weight_decay=wd, differentiable=False)
            super().__init__(params, defaults)

        @from_opt._use_grad_for_differentiable
        def step(self, closure=None):
            self._cuda_graph_capture_health_check()
            fused, foreach = from_opt._default_to_fused_or_foreach([], False)
            assert not fused
            for group in self.param_groups:
                b1, b2 = group["betas"]
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    state = self.state[p]
                    if not state:
                        state["exp_avg"] = fw.zeros_like(p)
                    p.mul_(1 - group["lr"] * group["weight_decay"])
                    update = state["exp_avg"].mul(b1).add(p.grad, alpha=1 - b1).sign_()
                    p.add_(update, alpha=-group["lr"])
                    state["exp_avg"].mul_(b2).add_(p.grad, alpha=1 - b2)
            return None

    return Lion


def test_optimizer_written_against_torch_privates_matches_torch():
    rng = np.random.default_rng(1)
    w0, x = rng.standard_normal((3, 4)), rng.standard_normal((5, 4))
    results = []
    for fw in (ember, torch):
        w = fw.tensor(w0, requires_grad=True)
        opt = _lion_class(fw)([w], lr=0.01, wd=0.1)
        for _ in range(4):
            loss = (fw.tensor(x) @ w.T).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            assert not w.requires_grad or not w.grad_fn  # the step recorded no graph
        results.append(w.detach().numpy())
    np.testing.assert_allclose(results[0], results[1], rtol=1e-12)
    assert ember.optim.optimizer._get_capturable_supported_devices() == ["cuda", "xla"]


@pytest.mark.parametrize("batch_norm", ["BatchNorm2d", "SyncBatchNorm"])
def test_freeze_batch_norm_by_module_swap(batch_norm):
    from ember.vision.ops import FrozenBatchNorm2d

    # timm's freeze_batch_norm_2d: walk the children, replace each BN by a frozen copy
    model = ember.nn.Sequential(ember.nn.Conv2d(3, 4, 3), getattr(ember.nn, batch_norm)(4))
    bn = model[1]
    bn.running_mean.copy_(ember.randn(4))
    bn.running_var.copy_(ember.rand(4) + 0.5)
    x = ember.randn(2, 3, 6, 6)
    ref = model.eval()(x)
    for name, child in list(model.named_children()):
        if isinstance(child, ember.nn.modules.batchnorm._BatchNorm):
            frozen = FrozenBatchNorm2d(child.num_features, child.eps)
            frozen.weight.copy_(child.weight.detach())
            frozen.bias.copy_(child.bias.detach())
            frozen.running_mean.copy_(child.running_mean)
            frozen.running_var.copy_(child.running_var)
            setattr(model, name, frozen)
    model.train()  # frozen statistics: training mode changes nothing
    np.testing.assert_allclose(model(x).detach().numpy(), ref.detach().numpy(), atol=1e-5)


def test_nn_modules_submodule_paths_as_torch():
    from torch.nn.modules import utils as tu

    from ember.nn.modules.utils import _pair, _quadruple, consume_prefix_in_state_dict_if_present

    for name in ("batchnorm", "instancenorm", "distance", "channelshuffle", "utils"):
        ours, theirs = getattr(ember.nn.modules, name), getattr(torch.nn.modules, name)
        for n in dir(theirs):
            obj = getattr(theirs, n)
            if getattr(obj, "__module__", None) == theirs.__name__ and not n.startswith("__"):
                assert hasattr(ours, n), f"ember.nn.modules.{name}.{n}"
    assert _pair(3) == tu._pair(3) and _pair([1, 2]) == (1, 2) and _quadruple(0) == (0,) * 4
    sd = {"module.w": 1, "module.b": 2, "other": 3}
    consume_prefix_in_state_dict_if_present(sd, "module.")
    assert sorted(sd) == ["b", "other", "w"]
    assert ember.nn.modules.batchnorm.SyncBatchNorm is ember.nn.SyncBatchNorm


def _gpsa_normalise(fw, a, b):
    # timm's ConViT (GPSA.get_attention): a mix normalised in place by its own sum
    attn = 0.3 * a.softmax(dim=-1) + 0.7 * b.softmax(dim=-1)
    attn /= attn.sum(dim=-1).unsqueeze(-1)
    return attn


def test_in_place_division_by_a_function_of_itself_matches_torch():
    rng = np.random.default_rng(2)
    a0, b0, w = rng.standard_normal((3, 2, 4, 4)), rng.standard_normal((2, 4, 4)), rng.random(4)
    grads = []
    for fw in (ember, torch):
        a = fw.tensor(a0[0], requires_grad=True)
        b = fw.tensor(b0, requires_grad=True)
        (_gpsa_normalise(fw, a, b) @ fw.tensor(w)).square().sum().backward()
        grads.append((a.grad.numpy(), b.grad.numpy()))
    for ours, theirs in zip(*grads):
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)
    a = ember.tensor(a0[1], requires_grad=True)
    b = ember.tensor(b0, requires_grad=True)
    assert ember.autograd.gradgradcheck(lambda p, q: _gpsa_normalise(ember, p, q), (a, b))
