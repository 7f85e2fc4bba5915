"""Idioms of eriklindernoren/PyTorch-GAN met by an ``import ember as torch`` port, each a small
program of our own with the same idiom, checked against torch: the ``Tensor = torch.cuda.FloatTensor
if cuda else torch.Tensor`` cast (``imgs.type(Tensor)``), old programs' ``loss.data[0]`` on a 0-dim
loss, ``Variable(Tensor(np.random.normal(...)))`` noise through a GAN step, the WGAN-GP gradient
penalty (``autograd.grad(..., create_graph=True)``), and softmax-GAN's optimizer step between two
backward passes over one graph."""

from __future__ import annotations

import numpy as np
import pytest

import ember
import ember.nn as enn
from ember.autograd import Variable

torch = pytest.importorskip("torch")


def _np(t):
    return t.detach().cpu().numpy()


def _copy_weights(src, dst):
    dst.load_state_dict({k: ember.tensor(_np(v)) for k, v in src.state_dict().items()})


def _errors(fw, fn):
    try:
        fn(fw)
    except Exception as exc:  # noqa: BLE001 - the message is what is compared
        return type(exc).__name__, str(exc)
    return None


# ---- srgan / esrgan: ``Tensor = torch.cuda.FloatTensor if cuda else torch.Tensor`` ---------------
@pytest.mark.parametrize("dtype", ["uint8", "int64", "float64", "float32"])
def test_type_with_the_tensor_class_casts_to_the_default_type(dtype):
    cuda = False
    data = np.arange(6, dtype=dtype).reshape(2, 3)
    for fw in (ember, torch):
        Tensor = fw.cuda.FloatTensor if cuda else fw.Tensor
        imgs = {"lr": fw.tensor(data), "hr": fw.tensor(data * 2)}
        lr = Variable(imgs["lr"].type(Tensor)) if fw is ember else imgs["lr"].type(Tensor)
        assert str(lr.dtype).split(".")[1] == "float32"
        assert lr.device.type == "cpu"
        np.testing.assert_array_equal(_np(lr), data.astype(np.float32))
    prev = ember.get_default_dtype()
    ember.set_default_dtype(ember.float64)
    try:  # the class stands for the default tensor type, whatever it is now
        assert ember.tensor(data).type(ember.Tensor).dtype == ember.float64
    finally:
        ember.set_default_dtype(prev)


def test_type_refusal_names_the_class():
    ours = _errors(ember, lambda fw: fw.arange(3).type(dict))
    assert ours == _errors(torch, lambda fw: fw.arange(3).type(dict))
    assert ours == ("ValueError", "invalid type: 'dict'")


@pytest.mark.parametrize("arg", [float, int, bool, "float", "torch.float32", np.float32, 3])
def test_type_refuses_python_types_and_dtype_names(arg):
    # `.type` is not `.to`: a Python type or a dtype's name is no tensor type (torch 2.13)
    ours = _errors(ember, lambda fw: fw.ones(2).type(arg))
    assert ours == _errors(torch, lambda fw: fw.ones(2).type(arg))


# ---- began: ``(d_loss_real + torch.abs(diff)).data[0]`` on a 0-dim loss -------------------------
@pytest.mark.parametrize(
    "index",
    [
        lambda fw: fw.tensor(1.5).data[0],
        lambda fw: fw.abs(fw.tensor(-1.5)).mean()[0],
        lambda fw: fw.tensor(1.5)[0:1],
        lambda fw: fw.tensor(1.5)[[0]],
        lambda fw: fw.zeros(2, 3)[0, 1, 2],
        lambda fw: fw.tensor(1.5).__setitem__(0, 2.0),
    ],
)
def test_indexing_a_0_dim_tensor_errors_as_torch(index):
    ours, theirs = _errors(ember, index), _errors(torch, index)
    assert theirs is not None and ours == theirs
    # the item() hint is what a port of a PyTorch 0.3 program needs
    ember_loss = ember.tensor(0.25)
    with pytest.raises(IndexError, match=r"Use `tensor.item\(\)` in Python"):
        ember_loss.data[0]
    assert ember_loss.item() == 0.25


# ---- gan.py / wgan_gp.py: steps from the same weights and the same NumPy noise -------------------
def _mlp(fw, sizes, out_act):
    layers = []
    for a, b in zip(sizes[:-2], sizes[1:-1]):
        layers += [fw.nn.Linear(a, b), fw.nn.BatchNorm1d(b, 0.8)]
        layers.append(fw.nn.LeakyReLU(0.2, inplace=True))
    layers.append(fw.nn.Linear(sizes[-2], sizes[-1]))
    if out_act:
        layers.append(out_act(fw))
    return fw.nn.Sequential(*layers)


class _SGD:
    def __init__(self, fw, params, lr=0.05):
        self.fw, self.params, self.lr = fw, list(params), lr

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    def step(self):
        with self.fw.no_grad():
            for p in self.params:
                p.sub_(self.lr * p.grad)


def _gan_losses(fw, gen_sd, dis_sd, gp: bool, steps=3):
    rng = np.random.RandomState(0)
    generator = _mlp(fw, [8, 16, 32, 36], lambda f: f.nn.Tanh())
    discriminator = fw.nn.Sequential(
        fw.nn.Linear(36, 16), fw.nn.LeakyReLU(0.2, inplace=True), fw.nn.Linear(16, 1)
    )
    if not gp:
        discriminator.append(fw.nn.Sigmoid())
    generator.load_state_dict({k: fw.tensor(v) for k, v in gen_sd.items()})
    discriminator.load_state_dict({k: fw.tensor(v) for k, v in dis_sd.items()})
    Tensor = fw.FloatTensor
    # plain SGD by hand: torch's first optimizer step imports torch._dynamo (~10 s of CI)
    opt_g = _SGD(fw, generator.parameters())
    opt_d = _SGD(fw, discriminator.parameters())
    bce = fw.nn.BCELoss()
    out = []
    for _ in range(steps):
        real = Tensor(rng.uniform(-1, 1, (6, 36)))
        valid = Tensor(real.size(0), 1).fill_(1.0)
        fake = Tensor(real.size(0), 1).fill_(0.0)
        opt_g.zero_grad()
        z = Tensor(rng.normal(0, 1, (real.shape[0], 8)))
        gen_imgs = generator(z)
        g_loss = -fw.mean(discriminator(gen_imgs)) if gp else bce(discriminator(gen_imgs), valid)
        g_loss.backward()
        opt_g.step()
        opt_d.zero_grad()
        if gp:
            alpha = Tensor(rng.random_sample((real.size(0), 1)))
            interpolates = (alpha * real + ((1 - alpha) * gen_imgs.detach())).requires_grad_(True)
            d_interpolates = discriminator(interpolates)
            grad_out = Tensor(real.shape[0], 1).fill_(1.0)
            gradients = fw.autograd.grad(
                outputs=d_interpolates,
                inputs=interpolates,
                grad_outputs=grad_out,
                create_graph=True,
                retain_graph=True,
                only_inputs=True,
            )[0]
            gradients = gradients.view(gradients.size(0), -1)
            penalty = ((gradients.norm(2, dim=1) - 1) ** 2).mean()
            d_loss = -fw.mean(discriminator(real)) + fw.mean(discriminator(gen_imgs.detach()))
            d_loss = d_loss + 10 * penalty
        else:
            real_loss = bce(discriminator(real), valid)
            fake_loss = bce(discriminator(gen_imgs.detach()), fake)
            d_loss = (real_loss + fake_loss) / 2
        d_loss.backward()
        opt_d.step()
        out.append((g_loss.item(), d_loss.item()))
    return out, _np(generator[0].weight)


@pytest.mark.parametrize("gp", [False, True], ids=["gan", "wgan_gp"])
def test_gan_steps_match_torch_from_the_same_weights(gp):
    torch.manual_seed(0)
    t_gen = _mlp(torch, [8, 16, 32, 36], lambda f: f.nn.Tanh())
    t_dis = torch.nn.Sequential(
        torch.nn.Linear(36, 16), torch.nn.LeakyReLU(0.2), torch.nn.Linear(16, 1)
    )
    gen_sd = {k: _np(v) for k, v in t_gen.state_dict().items()}
    dis_sd = {k: _np(v) for k, v in t_dis.state_dict().items()}
    ours, w_ours = _gan_losses(ember, gen_sd, dis_sd, gp)
    theirs, w_theirs = _gan_losses(torch, gen_sd, dis_sd, gp)
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(w_ours, w_theirs, rtol=1e-4, atol=1e-5)


# ---- softmax_gan.py: ``optimizer_D.step()`` between two backward passes over one graph -----------
def test_step_between_backwards_is_refused_as_in_torch():
    def run(fw):
        fw.manual_seed(0)
        D = fw.nn.Sequential(fw.nn.Linear(4, 3), fw.nn.ReLU(), fw.nn.Linear(3, 1))
        opt = _SGD(fw, D.parameters())
        d_real, d_fake = D(fw.randn(5, 4)), D(fw.randn(5, 4))
        Z = fw.sum(fw.exp(-d_real)) + fw.sum(fw.exp(-d_fake))
        d_loss = 0.2 * fw.sum(d_real) + fw.log(Z)
        d_loss.backward(retain_graph=True)
        opt.step()  # updates the weights the graph saved
        g_loss = 0.1 * (fw.sum(d_real) + fw.sum(d_fake)) + fw.log(Z)
        g_loss.backward()

    for fw in (ember, torch):
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            run(fw)


def test_variable_noise_from_numpy_is_float32():
    """``Variable(Tensor(np.random.normal(0, 1, shape)))``: float64 NumPy noise, float32 tensor."""
    noise = np.random.RandomState(1).normal(0, 1, (4, 3))
    z = Variable(ember.FloatTensor(noise))
    assert z.dtype == ember.float32 and not z.requires_grad
    labels = Variable(ember.LongTensor(np.random.RandomState(2).randint(0, 10, 4)))
    assert labels.dtype == ember.int64
    assert isinstance(enn.Embedding(10, 3)(labels), ember.Tensor)
