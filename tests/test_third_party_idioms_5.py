"""Idioms from third-party programs (batch 5: karpathy/autoresearch, bentrevett's tutorials,
eriklindernoren/PyTorch-GAN), in programs of our own.

Each test mirrors what one program does and checks ember against torch where torch runs it.
"""

from __future__ import annotations

import numpy as np
import pytest

import ember
import ember.nn.functional as F

torch = pytest.importorskip("torch")


# --- autoresearch prepare.py: a pre-allocated loader buffer with factory keywords ------------


def test_factory_layout_and_pin_memory_keywords():
    # ``torch.empty(2 * B * T, dtype=torch.long, pin_memory=...)`` and ``layout=`` on factories
    for mod in (ember, torch):
        buf = mod.empty(2 * 3 * 4, dtype=mod.long, pin_memory=False)
        rows = buf[:12].view(3, 4)
        rows.copy_(mod.arange(12, layout=mod.strided).view(3, 4))
        assert buf[:12].tolist() == list(range(12))
        z = mod.zeros(2, 3, layout=mod.strided, pin_memory=False)
        assert mod.zeros_like(z, pin_memory=False).shape == (2, 3)
        assert mod.full((2,), 1.5, layout=None).tolist() == [1.5, 1.5]
        assert mod.rand(2, pin_memory=False).shape == (2,)
        assert mod.randint(5, (3,), layout=mod.strided).dtype == mod.int64
        assert mod.eye(2, pin_memory=False).sum().item() == 2.0
        assert mod.zeros(3, layout=mod.sparse_coo)._nnz() == 0
        with pytest.raises(RuntimeError):  # only empty sparse tensors are made
            mod.rand(3, layout=mod.sparse_coo)
    # a CPU-only build has no pinned allocator: torch's words
    for mod in (ember, torch):
        with pytest.raises(RuntimeError, match="pin_memory=True requires a CUDA"):
            mod.empty(4, pin_memory=True)
    with pytest.raises(TypeError, match=r"zeros\(\): argument 'layout' must be torch.layout"):
        ember.zeros(2, layout=3)


# --- autoresearch train.py: fused AdamW with 0-dim float32 hyper-parameter tensors ------------


def test_lerp_takes_a_zero_dim_weight_of_another_dtype():
    def adamw_step(mod, p, grad, exp_avg, exp_avg_sq, step_t, lr_t, beta1_t, beta2_t, eps_t):
        exp_avg.lerp_(grad, 1 - beta1_t)
        exp_avg_sq.lerp_(grad.square(), 1 - beta2_t)
        denom = (exp_avg_sq / (1 - beta2_t**step_t)).sqrt() + eps_t
        p.add_(exp_avg / denom, alpha=-(lr_t / (1 - beta1_t**step_t)).item())
        return p

    rng = np.random.default_rng(0)
    g = rng.standard_normal((4, 3)).astype(np.float32)
    out = {}
    for mod in (ember, torch):
        bf = mod.bfloat16
        p = mod.zeros(4, 3, dtype=bf)
        grad = mod.tensor(g).to(bf)
        scalars = [mod.tensor(v, dtype=mod.float32) for v in (1.0, 0.1, 0.8, 0.95, 1e-10)]
        state = (mod.zeros_like(p), mod.zeros_like(p))
        out[mod] = adamw_step(mod, p, grad, *state, *scalars).float().numpy()
        # a 0-dim weight of any dtype counts as a scalar; a 1-D one must match
        w = mod.zeros(3).lerp(mod.ones(3), mod.tensor(0.25, dtype=mod.float64))
        assert w.dtype == mod.float32 and w.tolist() == [0.25] * 3
        with pytest.raises(RuntimeError, match="expected dtype"):
            mod.zeros(3, dtype=bf).lerp(mod.ones(3, dtype=bf), mod.tensor([0.5]))
    np.testing.assert_allclose(out[ember], out[torch], rtol=1e-2)
    assert F is not None


# --- bentrevett's tutorials: a ``datasets`` ``with_format("torch")`` batch handed to ember ----


def test_a_pytorch_tensor_given_to_ember_is_a_clear_error():
    # the real ``datasets`` library yields torch tensors; ember used to recurse without end
    # through torch's own ``__torch_function__``
    ids = [torch.tensor([1, 2, 3]), torch.tensor([4, 5, 6])]
    with pytest.raises(TypeError, match=r"stack\(\): got a PyTorch tensor \(torch.Tensor\)"):
        ember.stack(ids)
    with pytest.raises(TypeError, match="ember.tensor"):
        ember.nn.Embedding(10, 2)(ids[0])
    # mixed into arithmetic (either side), and padded as a batch of sequences
    with pytest.raises(TypeError, match=r"arithmetic operand: got a PyTorch tensor"):
        ember.ones(3) + ids[0]
    with pytest.raises(TypeError, match=r"got a PyTorch tensor"):
        ember.ones(3, dtype=ember.int64) * ids[0]
    with pytest.raises(TypeError, match=r"got a PyTorch tensor"):
        ember.nn.utils.rnn.pad_sequence(ids, batch_first=True)
    # the conversion the message names works
    batch = ember.stack([ember.tensor(t) for t in ids])
    assert batch.tolist() == [[1, 2, 3], [4, 5, 6]]


# --- bentrevett's image-classification notebooks: torchvision's AlexNet and VGG11-BN ----------


def test_alexnet_and_vgg11_bn_have_torchvisions_layout():
    import warnings

    from ember.vision import models

    # built on the meta device: the layout without initialising 190M parameters
    with warnings.catch_warnings(), ember.device("meta"):
        warnings.simplefilter("ignore")  # the deprecated ``pretrained=`` warns, as torchvision
        net = models.alexnet(pretrained=False)
        bn = models.vgg11_bn()
    # torchvision's parameter counts and state_dict keys (its checkpoints load)
    assert sum(p.numel() for p in net.parameters()) == 61100840
    convs = [k for k in net.state_dict() if k.endswith("weight")]
    assert convs == [
        *(f"features.{i}.weight" for i in (0, 3, 6, 8, 10)),
        *(f"classifier.{i}.weight" for i in (1, 4, 6)),
    ]
    assert models.AlexNet_Weights.DEFAULT.meta["num_params"] == 61100840
    # the notebook swaps the last layer for its 10 classes; small inputs pool to 6 x 6
    net.classifier[-1] = ember.nn.Linear(net.classifier[-1].in_features, 10, device="meta")
    assert net(ember.empty(2, 3, 64, 64, device="meta")).shape == (2, 10)
    assert sum(p.numel() for p in bn.parameters()) == 132868840
    assert isinstance(bn.features[1], ember.nn.BatchNorm2d)


# --- PyTorch-GAN's MNIST-M builder: torchvision's old MNIST attribute names -----------------


def test_mnist_keeps_the_old_train_labels_names(tmp_path):
    import struct

    from ember.vision import datasets

    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    images = np.arange(3 * 28 * 28, dtype=np.uint8).reshape(3, 28, 28)
    for prefix in ("train", "t10k"):
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(
            struct.pack(">IIII", 2051, 3, 28, 28) + images.tobytes()
        )
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(
            struct.pack(">II", 2049, 3) + bytes([4, 0, 7])
        )
    train = datasets.MNIST(str(tmp_path), train=True)
    with pytest.warns(UserWarning, match="train_labels has been renamed targets"):
        assert train.train_labels.tolist() == [4, 0, 7]
    with pytest.warns(UserWarning, match="train_data has been renamed data"):
        assert train.train_data.shape == (3, 28, 28)
    with pytest.warns(UserWarning, match="test_labels has been renamed targets"):
        assert datasets.MNIST(str(tmp_path), train=False).test_labels.dtype == ember.int64
