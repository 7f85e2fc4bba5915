"""Idioms MONAI (1.6.1) reaches in torch when it runs on ember, each a small program of our own
checked against torch (MONAI is not a test dependency; docs/porting_examples.md records the
programs run through it):

- names read at import or by ``set_determinism``: ``torch.serialization.DEFAULT_PROTOCOL``,
  ``torch.utils.data._utils.collate.np_str_obj_array_pattern``, ``torch.utils.model_zoo``,
  the ``torch.backends.__allow_nonbracketed_mutation()`` context manager;
- a ``Tensor`` subclass carrying an affine and a metadata dict through ops (its own
  ``__torch_function__``), batched by ``collate`` with a per-type ``collate_fn_map`` entry whose
  function calls ``collate_tensor_fn`` (the batch must stay the subclass), and decollated;
- a soft Dice + cross-entropy loss on one-hot labels, trained with Adam on a small 3-D net;
- sliding-window inference with a Gaussian importance map over overlapping patches.
"""

from __future__ import annotations

import importlib
import itertools
import pickle
import re

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")
LIBS = {"ember": ember, "torch": torch}


def _np(t):
    return t.detach().cpu().numpy()


def _collate_mod(T):
    return importlib.import_module(T.__name__ + ".utils.data._utils.collate")


# ---- names read at import --------------------------------------------------------------------


def test_import_time_names_match_torch():
    import torch.serialization  # noqa: F401  (torch's submodules load lazily)

    assert ember.serialization.DEFAULT_PROTOCOL == torch.serialization.DEFAULT_PROTOCOL == 2
    pat = _collate_mod(ember).np_str_obj_array_pattern
    assert isinstance(pat, re.Pattern)
    for dt in ("<U3", "|S2", "|O", "<f4", "<i8", "|b1"):
        want = _collate_mod(torch).np_str_obj_array_pattern.search(dt) is not None
        assert (pat.search(dt) is not None) == want, dt
    from ember.hub import load_state_dict_from_url
    from ember.utils import model_zoo

    assert model_zoo.load_url is load_state_dict_from_url


def test_backends_allow_nonbracketed_mutation():
    # MONAI's set_determinism: set cudnn flags inside torch's private guard
    guard = getattr(ember.backends, "__allow_nonbracketed_mutation")
    old = (ember.backends.cudnn.deterministic, ember.backends.cudnn.benchmark)
    try:
        with guard():
            ember.backends.cudnn.deterministic = True
            ember.backends.cudnn.benchmark = False
        assert ember.backends.cudnn.deterministic is True
    finally:
        ember.backends.cudnn.deterministic, ember.backends.cudnn.benchmark = old
    assert getattr(ember.backends, "__allow_nonbracketed_mutation_flag") is True


# ---- a Tensor subclass carrying an affine through ops, collation and decollation -------------


def _meta_class(T):
    class Meta(T.Tensor):
        """An image with an affine and a metadata dict, as MONAI's MetaTensor carries them."""

        @staticmethod
        def __new__(cls, x, affine=None, meta=None):
            return T.as_tensor(x).as_subclass(cls)

        def __init__(self, x, affine=None, meta=None):
            self.affine = T.eye(4, dtype=T.float64) if affine is None else affine
            self.meta = dict(meta or {})
            self.is_batch = False

        @classmethod
        def __torch_function__(cls, func, types, args=(), kwargs=None):
            ret = super().__torch_function__(func, types, args, kwargs or {})
            flat = list(args) + [a for a in args if isinstance(a, (list, tuple)) for a in a]
            src = next((a for a in flat if isinstance(a, Meta) and hasattr(a, "meta")), None)
            outs = ret if isinstance(ret, (list, tuple)) else [ret]
            for r in outs:
                if isinstance(r, Meta) and not hasattr(r, "meta") and src is not None:
                    # results made by as_subclass never ran __init__: copy the source's metadata
                    r.affine, r.meta, r.is_batch = src.affine, dict(src.meta), src.is_batch
            return ret

    return Meta


def _meta_program(T):
    Meta = _meta_class(T)
    cm = _collate_mod(T)

    def collate_meta(batch, *, collate_fn_map=None):
        out = cm.collate_tensor_fn(batch)  # must stay a Meta: the stack goes through the subclass
        out.meta = cm.default_collate([b.meta for b in batch])
        out.affine = T.stack([b.affine for b in batch])
        out.is_batch = True
        return out

    fmap = dict(cm.default_collate_fn_map)
    fmap[Meta] = collate_meta
    rng = np.random.default_rng(0)
    samples = []
    for i in range(4):
        img = Meta(
            rng.standard_normal((1, 6, 5)).astype(np.float32),
            affine=T.diag(T.tensor([1.0 + i, 2.0, 1.5, 1.0], dtype=T.float64)),
            meta={"filename": f"im{i}.nii", "spacing": 1.0 + i},
        )
        # ops keep the subclass and the metadata
        y = T.flip(img * 2.0 + 1.0, dims=[1])[:, 1:5]
        assert type(y) is Meta and y.meta["filename"] == f"im{i}.nii"
        samples.append({"img": y, "label": i % 2})
    loader = T.utils.data.DataLoader(
        samples, batch_size=2, collate_fn=lambda b: cm.collate(b, collate_fn_map=fmap)
    )
    res = []
    for batch in loader:
        img = batch["img"]
        assert type(img).__name__ == "Meta" and img.is_batch
        assert tuple(img.affine.shape) == (2, 4, 4)
        res += [_np(img), _np(img.affine), _np(img.meta["spacing"]), _np(batch["label"])]
        res.append(np.array(img.meta["filename"]))
        # decollate: per-item views with the item's own affine
        for j in range(img.shape[0]):
            item = img[j]
            item.affine, item.meta = img.affine[j], {"filename": img.meta["filename"][j]}
            item.is_batch = False
            res.append(_np(T.nn.functional.avg_pool1d(item, 2) + item.affine[0, 0].float()))
        # a reduction of the batch is still a Meta carrying the batch's metadata
        s = img.sum(dim=(1, 2, 3))
        assert type(s).__name__ == "Meta" and s.meta["filename"] == img.meta["filename"]
    return res


def test_meta_subclass_ops_collate_decollate_match_torch():
    ours, ref = _meta_program(ember), _meta_program(torch)
    assert len(ours) == len(ref)
    for a, b in zip(ours, ref):
        if a.dtype.kind in "US":
            assert a.tolist() == b.tolist()
        else:
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_collate_plain_tensors_stay_plain():
    cm = _collate_mod(ember)
    out = cm.collate_tensor_fn([ember.ones(2), ember.zeros(2)])
    assert type(out) is ember.Tensor and out.tolist() == [[1.0, 1.0], [0.0, 0.0]]


# ---- soft Dice + CE on a small 3-D net, Adam ------------------------------------------------


def _dice_ce(T, logits, labels, eps=1e-5):
    F = T.nn.functional
    prob = T.softmax(logits, dim=1)
    onehot = F.one_hot(labels[:, 0].long(), logits.shape[1]).permute(0, 4, 1, 2, 3).float()
    dims = (2, 3, 4)
    inter = (prob * onehot).sum(dims)
    denom = prob.sum(dims) + onehot.sum(dims)
    dice = 1.0 - (2.0 * inter + eps) / (denom + eps)
    return dice.mean() + F.cross_entropy(logits, labels[:, 0].long())


class _HandAdam:
    """torch.optim.Adam's update (defaults betas=(0.9, 0.999), eps=1e-8) written out."""

    def __init__(self, params, lr, betas=(0.9, 0.999), eps=1e-8):
        self.params, self.lr, self.betas, self.eps, self.t = params, lr, betas, eps, 0
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self):
        self.t += 1
        b1, b2 = self.betas
        for p, m, v in zip(self.params, self.m, self.v):
            m.mul_(b1).add_(p.grad, alpha=1 - b1)
            v.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
            denom = (v.sqrt() / (1 - b2**self.t) ** 0.5).add_(self.eps)
            p.addcdiv_(m, denom, value=-self.lr / (1 - b1**self.t))


def _seg_program(T, weights):
    net = T.nn.Sequential(
        T.nn.Conv3d(1, 4, 3, padding=1),
        T.nn.InstanceNorm3d(4, affine=True),
        T.nn.PReLU(),
        T.nn.Conv3d(4, 3, 1),
    )
    net.load_state_dict({k: T.tensor(v) for k, v in weights.items()})
    params = list(net.parameters())
    # torch's Adam imports torch._dynamo on its first step (~6 s); the reference side runs
    # Adam's documented update by hand instead, ember runs its own optimizer
    opt = ember.optim.Adam(params, lr=1e-2) if T is ember else _HandAdam(params, lr=1e-2)
    rng = np.random.default_rng(1)
    x = T.tensor(rng.standard_normal((2, 1, 8, 8, 8)).astype(np.float32))
    y = T.tensor((rng.random((2, 1, 8, 8, 8)) * 3).astype(np.float32)).floor()
    losses = []
    for _ in range(4):
        opt.zero_grad()
        loss = _dice_ce(T, net(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses, [_np(p) for p in net.parameters()]


def test_soft_dice_ce_training_matches_torch():
    torch.manual_seed(0)
    ref_net = torch.nn.Sequential(
        torch.nn.Conv3d(1, 4, 3, padding=1),
        torch.nn.InstanceNorm3d(4, affine=True),
        torch.nn.PReLU(),
        torch.nn.Conv3d(4, 3, 1),
    )
    weights = {k: _np(v) for k, v in ref_net.state_dict().items()}
    (l_e, p_e), (l_t, p_t) = _seg_program(ember, weights), _seg_program(torch, weights)
    np.testing.assert_allclose(l_e, l_t, rtol=1e-5)
    # p[1], the first conv's bias, feeds an instance norm: its true gradient is zero, so Adam
    # steps on rounding noise in both frameworks and the two cannot agree
    for i, (a, b) in enumerate(zip(p_e, p_t)):
        if i != 1:
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


# ---- sliding-window inference with a Gaussian importance map ---------------------------------


def _gaussian_map(T, size, sigma_scale=0.125):
    g = None
    for s in size:
        c = T.arange(s, dtype=T.float32) - (s - 1) / 2.0
        w = T.exp(-(c**2) / (2 * (s * sigma_scale) ** 2))
        g = w if g is None else g[..., None] * w
    return T.clamp(g / g.max(), min=1e-3)


def _starts(n, roi, step):
    s = list(range(0, max(n - roi, 0) + 1, step))
    if s[-1] + roi < n:
        s.append(n - roi)
    return s


def _sliding_window(T, x, roi, sw_batch, net, overlap=0.25):
    imp = _gaussian_map(T, roi)
    steps = [max(int(r * (1 - overlap)), 1) for r in roi]
    spatial = x.shape[2:]
    windows = list(itertools.product(*(_starts(n, r, s) for n, r, s in zip(spatial, roi, steps))))
    out, count = None, T.zeros(spatial)
    for i in range(0, len(windows), sw_batch):
        chunk = windows[i : i + sw_batch]
        sl = [tuple(slice(a, a + r) for a, r in zip(w, roi)) for w in chunk]
        patches = T.cat([x[(slice(None), slice(None)) + s] for s in sl])
        pred = net(patches)
        if out is None:
            out = T.zeros((x.shape[0], pred.shape[1]) + tuple(spatial))
        for k, s in enumerate(sl):
            b = slice(k * x.shape[0], (k + 1) * x.shape[0])
            out[(slice(None), slice(None)) + s] += pred[b] * imp
            count[s] += imp
    return out / count


def test_sliding_window_inference_matches_torch():
    torch.manual_seed(0)
    ref = torch.nn.Sequential(torch.nn.Conv3d(1, 3, 3, padding=1), torch.nn.Sigmoid())
    ours = ember.nn.Sequential(ember.nn.Conv3d(1, 3, 3, padding=1), ember.nn.Sigmoid())
    ours.load_state_dict({k: ember.tensor(_np(v)) for k, v in ref.state_dict().items()})
    x = np.random.default_rng(2).standard_normal((1, 1, 13, 10, 9)).astype(np.float32)
    with torch.no_grad(), ember.no_grad():
        r = _sliding_window(torch, torch.tensor(x), (6, 6, 6), 3, ref)
        e = _sliding_window(ember, ember.tensor(x), (6, 6, 6), 3, ours)
    assert tuple(e.shape) == (1, 3, 13, 10, 9)
    np.testing.assert_allclose(_np(e), _np(r), rtol=1e-5, atol=1e-6)


_EmberMeta = _meta_class(ember)
_EmberMeta.__qualname__ = "_EmberMeta"  # picklable by reference from this module


def test_meta_subclass_pickles_with_metadata():
    # CacheDataset / DataLoader workers move samples between processes by pickling
    m = _EmberMeta(np.arange(6, dtype=np.float32).reshape(2, 3), meta={"k": 1})
    m2 = pickle.loads(pickle.dumps(m))
    assert type(m2) is _EmberMeta and m2.meta == {"k": 1}
    assert m2.tolist() == m.tolist()


# ---- bfloat16 reductions under autocast (a soft Dice in mixed precision) ---------------------


def test_bfloat16_reductions_accumulate_in_float32():
    # ml_dtypes' bfloat16 sum added in bfloat16 and stalled at 256; torch accumulates in float32
    x = np.arange(5000, dtype=np.float32) / 7
    for T in (ember, torch):
        a = T.ones(2, 2, 16, 16, 16, dtype=T.bfloat16)
        assert a.sum().item() == 16384.0 and a.mean().item() == 1.0
        assert a.sum(dim=(2, 3, 4)).flatten().tolist() == [4096.0] * 4
    e, t = ember.tensor(x).to(ember.bfloat16), torch.tensor(x).to(torch.bfloat16)
    assert e.sum().item() == t.sum().item() and e.mean().item() == t.mean().item()
    assert e.sum(0, keepdim=True).dtype == ember.bfloat16
    y = (np.arange(4096, dtype=np.float32) % 13) / 3  # var, std, logsumexp, cumsum likewise
    e, t = ember.tensor(y).to(ember.bfloat16), torch.tensor(y).to(torch.bfloat16)
    for f in (
        lambda a: a.var(),
        lambda a: a.std(),
        lambda a: a.logsumexp(0),
        lambda a: a.cumsum(0)[-1],
    ):
        assert f(e).item() == f(t).item() and f(e).dtype == ember.bfloat16


def test_soft_dice_under_bfloat16_autocast_matches_torch():
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((2, 3, 12, 12, 12)).astype(np.float32)
    labels = rng.integers(0, 3, (2, 1, 12, 12, 12)).astype(np.float32)
    w = rng.standard_normal((3, 3, 1, 1, 1)).astype(np.float32)
    vals = []
    for T in (ember, torch):
        x = T.tensor(logits, requires_grad=True)
        with T.autocast("cpu", dtype=T.bfloat16):
            z = T.nn.functional.conv3d(x, T.tensor(w))  # bfloat16 under autocast
            loss = _dice_ce(T, z, T.tensor(labels))
        loss.backward()
        vals.append((loss.item(), _np(x.grad.float())))
    assert abs(vals[0][0] - vals[1][0]) < 1e-2 * abs(vals[1][0])
    np.testing.assert_allclose(vals[0][1], vals[1][1], atol=2e-2 * np.abs(vals[1][1]).max())
