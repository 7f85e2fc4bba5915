"""Idioms from aladdinpersson/Machine-Learning-Collection (ML/Pytorch), in programs of our own.

Each test mirrors what one of its programs does (TensorBoard tags with spaces, torchvision's
``googlenet`` fine-tuned as a classifier, a from-scratch mAP over Python lists of boxes, ...)
and checks ember against torch where torch can run it.
"""

from __future__ import annotations

import warnings
from collections import Counter

import numpy as np
import pytest

import ember
import ember.nn as nn
import ember.nn.functional as F

torch = pytest.importorskip("torch")


# --- pytorch_tensorboard_.py: tags are written as given ---------------------------------------


def _tags(logdir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    tags = acc.Tags()
    return {k: sorted(tags[k]) for k in ("scalars", "histograms", "images")}, acc


def _log(writer_cls, logdir, mod):
    w = writer_cls(str(logdir))
    for step in range(3):
        w.add_scalar("Training loss", mod.tensor(2.0 - step), global_step=step)
        w.add_scalar("Training Accuracy", 0.25 * step, global_step=step)
    w.add_histogram("fc1 weight", mod.arange(12.0))
    w.add_image("mnist images", mod.zeros(1, 8, 8))
    w.close()


def test_summary_writer_keeps_tags_with_spaces_like_torch(tmp_path):
    pytest.importorskip("tensorboard")
    from torch.utils.tensorboard import SummaryWriter as TorchWriter

    from ember.utils.tensorboard import SummaryWriter

    _log(SummaryWriter, tmp_path / "e", ember)
    _log(TorchWriter, tmp_path / "t", torch)
    (got, acc), (want, _) = _tags(tmp_path / "e"), _tags(tmp_path / "t")
    assert got == want
    assert got["scalars"] == ["Training Accuracy", "Training loss"]
    assert [e.value for e in acc.Scalars("Training loss")] == [2.0, 1.0, 0.0]

    # tensorboardX used directly still cleans its tags (ember's writer scopes the change)
    import tensorboardX

    with tensorboardX.SummaryWriter(str(tmp_path / "x")) as w:
        w.add_scalar("a b", 1.0, 0)
    assert _tags(tmp_path / "x")[0]["scalars"] == ["a_b"]


# --- pytorch_resnet.py: `self.softmax(1)` for `self.softmax(x)` ---------------------------------


def test_softmax_of_a_non_tensor_names_the_argument_like_torch():
    with pytest.raises(TypeError) as want:
        torch.softmax(1, 1)
    with pytest.raises(TypeError, match=r"must be Tensor, not int") as got:
        nn.Softmax(dim=1)(1)
    assert str(got.value) == str(want.value)
    with pytest.raises(TypeError, match=r"log_softmax\(\): argument 'input'"):
        F.log_softmax([1.0], 0)


def test_cross_entropy_of_a_tuple_names_the_argument_like_torch():
    with pytest.raises(TypeError) as want:
        torch.nn.CrossEntropyLoss()((torch.ones(2, 3),), torch.tensor([0, 1]))
    with pytest.raises(TypeError) as got:
        nn.CrossEntropyLoss()((ember.ones(2, 3),), ember.tensor([0, 1]))
    assert str(got.value) == str(want.value)
    with pytest.raises(TypeError, match=r"argument 'target' \(position 2\) must be Tensor"):
        F.cross_entropy(ember.ones(2, 3), [0, 1])


# --- custom_dataset.py: torchvision.models.googlenet as a small classifier ----------------------


def test_googlenet_builds_like_torchvision_and_trains():
    from ember.vision import models

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = models.googlenet(pretrained=False, aux_logits=False)
    # torchvision's counts: 6,624,904 without the auxiliary heads, 13,004,888 with them
    assert sum(p.numel() for p in net.parameters()) == 6624904
    assert models.GoogLeNet_Weights.DEFAULT.meta["num_params"] == 6624904
    keys = net.state_dict().keys()
    for k in ("conv1.conv.weight", "conv1.bn.running_var", "inception3a.branch3.1.conv.weight"):
        assert k in keys
    assert net.inception3a.branch3[1].conv.kernel_size == (3, 3)  # torchvision's 3x3 here
    assert net.conv1.bn.eps == 0.001 and net.aux1 is None

    ember.manual_seed(0)
    opt = ember.optim.Adam(net.parameters(), lr=1e-3)
    x, y = ember.randn(2, 3, 16, 16), ember.tensor([0, 1])
    for _ in range(1):
        loss = nn.CrossEntropyLoss()(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert np.isfinite(loss.item()) and net.fc.weight.grad is not None

    with pytest.warns(FutureWarning, match="default weight initialization"):
        aux = models.GoogLeNet(num_classes=5)
    assert sum(p.numel() for p in models.GoogLeNet(init_weights=False).parameters()) == 13004888
    out = aux(ember.randn(2, 3, 16, 16))
    assert isinstance(out, models.GoogLeNetOutputs)
    assert [tuple(o.shape) for o in out] == [(2, 5)] * 3
    aux.eval()
    assert tuple(aux(ember.randn(1, 3, 15, 15)).shape) == (1, 5)  # torchvision's min_size


def test_googlenet_transform_input_is_imagenet_normalisation():
    from ember.vision import models

    net = models.GoogLeNet(aux_logits=False, transform_input=True, init_weights=False)
    x = ember.rand(1, 3, 4, 4)
    mean = np.array([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1)
    std = np.array([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1)
    # ImageNet-normalised input -> pixels -> the (p - 0.5) / 0.5 the checkpoint was trained on
    want = ((x.numpy() * std + mean) - 0.5) / 0.5
    np.testing.assert_allclose(net._transform_input(x).numpy(), want, rtol=1e-5, atol=1e-6)


# --- object_detection/metrics: IoU, NMS, mAP over Python lists ----------------------------------


def _iou(mod, a, b):
    # midpoint boxes (..., 4) -> IoU (..., 1), with `abs(tensor)` and `.clamp(0)`
    a1, a2 = a[..., 0:2] - a[..., 2:4] / 2, a[..., 0:2] + a[..., 2:4] / 2
    b1, b2 = b[..., 0:2] - b[..., 2:4] / 2, b[..., 0:2] + b[..., 2:4] / 2
    lo, hi = mod.max(a1, b1), mod.min(a2, b2)
    inter = (hi - lo).clamp(0).prod(-1, keepdim=True)
    area = abs((a2 - a1).prod(-1, keepdim=True)) + abs((b2 - b1).prod(-1, keepdim=True))
    return inter / (area - inter + 1e-6)


def _map(mod, preds, truths, n_classes):
    aps = []
    for c in range(n_classes):
        dets = sorted([d for d in preds if d[1] == c], key=lambda d: d[2], reverse=True)
        gts = [g for g in truths if g[1] == c]
        seen = {k: mod.zeros(v) for k, v in Counter(g[0] for g in gts).items()}
        tp, fp = mod.zeros(len(dets)), mod.zeros(len(dets))
        for i, d in enumerate(dets):
            best, best_j = 0, None
            for j, g in enumerate([g for g in gts if g[0] == d[0]]):
                iou = _iou(mod, mod.tensor(d[3:]), mod.tensor(g[3:]))
                if iou > best:
                    best, best_j = iou, j
            if best > 0.5 and seen[d[0]][best_j] == 0:
                tp[i] = 1
                seen[d[0]][best_j] = 1
            else:
                fp[i] = 1
        tp_c, fp_c = mod.cumsum(tp, dim=0), mod.cumsum(fp, dim=0)
        precisions = mod.cat((mod.tensor([1]), mod.divide(tp_c, tp_c + fp_c + 1e-6)))
        recalls = mod.cat((mod.tensor([0]), tp_c / (len(gts) + 1e-6)))
        aps.append(mod.trapz(precisions, recalls))
    return sum(aps) / len(aps)


def test_mean_average_precision_over_lists_matches_torch():
    rng = np.random.default_rng(0)

    def box():
        return [*rng.uniform(0.2, 0.8, 2).tolist(), *rng.uniform(0.05, 0.4, 2).tolist()]

    truths = [[i, int(rng.integers(3)), 1.0, *box()] for i in range(5) for _ in range(3)]
    preds = [
        [t[0], t[1], float(rng.random())] + [v + float(rng.uniform(-0.05, 0.05)) for v in t[3:]]
        for t in truths
    ] + [
        [int(rng.integers(5)), int(rng.integers(3)), float(rng.random()), *box()] for _ in range(8)
    ]
    got, want = _map(ember, preds, truths, 3), _map(torch, preds, truths, 3)
    assert got.dtype == ember.float32 and want.dtype == torch.float32
    assert abs(got.item() - want.item()) < 1e-6 and 0 < got.item() < 1


# --- pytorch_std_mean.py: per-channel statistics accumulated from 0 -----------------------------


def test_channel_mean_std_accumulated_from_python_zero_matches_torch():
    data = np.random.default_rng(1).random((3, 4, 3, 5, 5)).astype(np.float32)

    def stats(mod):
        s, sq, n = 0, 0, 0
        for batch in data:
            x = mod.tensor(batch)
            s += mod.mean(x, dim=[0, 2, 3])
            sq += mod.mean(x**2, dim=[0, 2, 3])
            n += 1
        mean = s / n
        return mean.numpy(), ((sq / n - mean**2) ** 0.5).numpy()

    for g, w in zip(stats(ember), stats(torch)):
        np.testing.assert_allclose(g, w, rtol=1e-6)


# --- GANs/4. WGAN-GP: gradient penalty through a LeakyReLU critic (double backward) -----------


def _critic(mod):
    return mod.nn.Sequential(
        mod.nn.Conv2d(1, 4, 4, 2, 1),
        mod.nn.LeakyReLU(0.2),
        mod.nn.Conv2d(4, 8, 4, 2, 1, bias=False),
        mod.nn.InstanceNorm2d(8, affine=True),
        mod.nn.LeakyReLU(0.2),
        mod.nn.Conv2d(8, 1, 4, 2, 0),
    )


def _critic_loss(mod, critic, real, fake, alpha):
    real, fake = mod.tensor(real), mod.tensor(fake, requires_grad=True)
    mixed = real * mod.tensor(alpha).repeat(1, 1, 16, 16) + fake * (1 - mod.tensor(alpha))
    scores = critic(mixed)
    (grad,) = mod.autograd.grad(
        inputs=mixed,
        outputs=scores,
        grad_outputs=mod.ones_like(scores),
        create_graph=True,
        retain_graph=True,
    )
    gp = mod.mean((grad.view(grad.shape[0], -1).norm(2, dim=1) - 1) ** 2)
    loss = -(critic(real).mean() - critic(fake).mean()) + 10 * gp
    critic.zero_grad()
    loss.backward()
    grads = [p.grad.numpy() for p in critic.parameters()] + [fake.grad.numpy()]
    return gp.item(), grads


def test_wgan_gp_penalty_and_double_backward_match_torch_in_float64():
    torch.manual_seed(0)
    ct = _critic(torch).double()
    ce = _critic(ember).double()
    ce.load_state_dict({k: ember.tensor(v.numpy()) for k, v in ct.state_dict().items()})
    rng = np.random.default_rng(0)
    real, fake = rng.standard_normal((2, 2, 1, 16, 16))
    alpha = rng.random((2, 1, 1, 1))
    gp_e, grads_e = _critic_loss(ember, ce, real, fake, alpha)
    gp_t, grads_t = _critic_loss(torch, ct, real, fake, alpha)
    assert abs(gp_e - gp_t) <= 1e-12 * abs(gp_t)
    for g, w in zip(grads_e, grads_t):
        np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-14)


@pytest.mark.parametrize("slope", [0.2, 2.0, -0.5])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_leaky_relu_gradient_with_create_graph_is_torchs_exactly(slope, dtype):
    # the backward on tensors (create_graph) once rounded the slope to float32, and a slope
    # outside [0, 1] made a float32 input's output float64
    x = np.random.default_rng(0).standard_normal(7).astype(dtype)
    x[0] = 0.0
    w = np.random.default_rng(1).standard_normal(7).astype(dtype)
    out = {}
    for mod in (ember, torch):
        xt = mod.tensor(x, requires_grad=True)
        y = mod.nn.functional.leaky_relu(xt, slope)
        (g,) = mod.autograd.grad((y * mod.tensor(w)).sum(), xt, create_graph=True)
        out[mod.__name__] = (str(y.dtype).split(".")[-1], y.detach().numpy(), g.detach().numpy())
    assert out["ember"][0] == out["torch"][0] == dtype
    np.testing.assert_array_equal(out["ember"][1], out["torch"][1])
    np.testing.assert_array_equal(out["ember"][2], out["torch"][2])
