"""The idioms of torchvision's ``references/`` training scripts, as programs of our own run
on ember and on torch side by side (the scripts themselves ran on ember outside CI: see
``docs/vision.md``, "torchvision's references/"): ``SmoothedValue`` statistics, an EMA over
``AveragedModel``, ``split_normalization_params``, MixUp / CutMix under ``RandomChoice``, a
``SequentialLR`` warmup resumed from a checkpoint, a grouped batch sampler, the detection
collate and ``reduce_dict``, ``coco_utils.py``'s COCO index calls, ``setup_for_distributed``.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import sys
from collections import defaultdict, deque

import numpy as np
import pytest
import torch

import ember


def _close(a, b, tol: float = 1e-6) -> None:
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


# ---- MetricLogger / SmoothedValue -------------------------------------------------------------


def _smoothed_stats(lib, values, window: int):
    # the SmoothedValue idiom: a deque window, statistics through tensors
    d = deque(maxlen=window)
    total = count = 0
    for v in values:
        d.append(v)
        total += v
        count += 1
    return (
        lib.tensor(list(d)).median().item(),
        lib.tensor(list(d), dtype=lib.float32).mean().item(),
        total / count,
        max(d),
    )


@pytest.mark.parametrize("window", [4, 5, 20])
def test_smoothed_value_statistics(window):
    values = [0.5, 2.0, 1.25, 3.0, 0.75, 4.5, 2.5, 1.0]
    _close(_smoothed_stats(ember, values, window), _smoothed_stats(torch, values, window))


# ---- ExponentialMovingAverage over AveragedModel ----------------------------------------------


def _ema_class(lib):
    class ExponentialMovingAverage(lib.optim.swa_utils.AveragedModel):
        def __init__(self, model, decay, device="cpu"):
            def ema_avg(avg_model_param, model_param, num_averaged):
                return decay * avg_model_param + (1 - decay) * model_param

            super().__init__(model, device, ema_avg, use_buffers=True)

    return ExponentialMovingAverage


def _small_net(lib):
    nn = lib.nn
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 4 * 4, 3))  # fmt: skip


def _copy_weights(src: torch.nn.Module, dst: ember.nn.Module) -> None:
    dst.load_state_dict({k: ember.tensor(v.numpy()) for k, v in src.state_dict().items()})


def test_ema_over_averaged_model_matches_torch():
    torch.manual_seed(0)
    t_net, e_net = _small_net(torch), _small_net(ember)
    _copy_weights(t_net, e_net)
    x = np.random.RandomState(0).rand(2, 3, 6, 6).astype(np.float32)
    t_ema, e_ema = _ema_class(torch)(t_net, 0.9), _ema_class(ember)(e_net, 0.9)
    for _step in range(3):
        for lib, net in ((torch, t_net), (ember, e_net)):
            net.train()
            net(lib.tensor(x)).sum().backward()  # updates BatchNorm's running stats
            with lib.no_grad():
                for p in net.parameters():
                    p.sub_(0.1 * p.grad)
                    p.grad = None
        t_ema.update_parameters(t_net)
        e_ema.update_parameters(e_net)
    assert int(e_ema.n_averaged) == int(t_ema.n_averaged) == 3
    t_sd, e_sd = t_ema.module.state_dict(), e_ema.module.state_dict()
    assert list(t_sd) == list(e_sd)
    for k in t_sd:
        _close(e_sd[k].numpy(), t_sd[k].numpy(), 1e-5)
    t_ema.eval(), e_ema.eval()
    with torch.no_grad(), ember.no_grad():
        _close(e_ema(ember.tensor(x)).numpy(), t_ema(torch.tensor(x)).numpy(), 1e-5)


# ---- split_normalization_params (--norm-weight-decay) ----------------------------------------


def _norm_net(lib):
    nn = lib.nn

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(lib.ones(1))  # a parameter of a module with children
            self.conv = nn.Conv2d(4, 4, 1)
            self.gn = nn.GroupNorm(2, 4)
            self.inorm = nn.InstanceNorm2d(4, affine=True)

    net = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), Block(),
                        nn.Flatten(), nn.LayerNorm(16), nn.Linear(16, 2))  # fmt: skip
    net[0].weight.requires_grad_(False)  # frozen parameters are left out of both lists
    return net


def test_split_normalization_params():
    from ember.vision.ops._utils import split_normalization_params

    net = _norm_net(ember)
    names = {id(p): n for n, p in net.named_parameters()}
    norm, other = split_normalization_params(net)
    assert [names[id(p)] for p in norm] == [
        "1.weight", "1.bias", "2.gn.weight", "2.gn.bias", "2.inorm.weight", "2.inorm.bias",
        "4.weight", "4.bias",
    ]  # fmt: skip
    assert [names[id(p)] for p in other] == ["2.scale", "2.conv.weight", "2.conv.bias",
                                             "5.weight", "5.bias"]  # fmt: skip
    norm, other = split_normalization_params(net, norm_classes=[ember.nn.LayerNorm])
    assert [names[id(p)] for p in norm] == ["4.weight", "4.bias"]
    with pytest.raises(ValueError, match="is not a subclass of nn.Module"):
        split_normalization_params(net, norm_classes=[int])
    # the references' use: weight decay 0 for the normalization parameters
    opt = ember.optim.SGD([{"params": other}, {"params": norm, "weight_decay": 0.0}], lr=0.1,
                          weight_decay=1e-4)  # fmt: skip
    assert [g["weight_decay"] for g in opt.param_groups] == [1e-4, 0.0]


# ---- RandomMixup / RandomCutmix under RandomChoice -------------------------------------------


def _mix_batch(lib, batch, target, num_classes, alpha, cutmix: bool):
    # the RandomMixup / RandomCutmix idiom: a Dirichlet(alpha, alpha) draw, a rolled batch,
    # one-hot targets mixed with the same weight
    if target.ndim == 1:
        target = lib.nn.functional.one_hot(target, num_classes=num_classes).to(dtype=batch.dtype)
    batch, target = batch.clone(), target.clone()
    batch_rolled, target_rolled = batch.roll(1, 0), target.roll(1, 0)
    lam = float(lib._sample_dirichlet(lib.tensor([alpha, alpha]))[0])
    if cutmix:
        h, w = batch.shape[-2:]
        r_x, r_y = lib.randint(w, (1,)), lib.randint(h, (1,))
        ratio = 0.5 * float(np.sqrt(1.0 - lam))
        r_w_half, r_h_half = int(ratio * w), int(ratio * h)
        x1, y1 = int(lib.clamp(r_x - r_w_half, min=0)), int(lib.clamp(r_y - r_h_half, min=0))
        x2, y2 = int(lib.clamp(r_x + r_w_half, max=w)), int(lib.clamp(r_y + r_h_half, max=h))
        batch[:, :, y1:y2, x1:x2] = batch_rolled[:, :, y1:y2, x1:x2]
        lam = float(1.0 - (x2 - x1) * (y2 - y1) / (w * h))
    else:
        batch_rolled.mul_(1.0 - lam)
        batch.mul_(lam).add_(batch_rolled)
    target_rolled.mul_(1.0 - lam)
    target.mul_(lam).add_(target_rolled)
    return batch, target


@pytest.mark.parametrize("cutmix", [False, True])
def test_mixup_cutmix_idiom_matches_torch(cutmix):
    x = np.random.RandomState(1).rand(4, 3, 8, 8).astype(np.float32)
    y = np.array([0, 2, 1, 2])
    torch.manual_seed(5)
    ember.manual_seed(5)
    for _ in range(3):
        tb, tt = _mix_batch(torch, torch.tensor(x), torch.tensor(y), 3, 1.0, cutmix)
        eb, et = _mix_batch(ember, ember.tensor(x), ember.tensor(y), 3, 1.0, cutmix)
        _close(eb.numpy(), tb.numpy())
        _close(et.numpy(), tt.numpy())


def test_random_choice_passes_every_argument():
    # the classification references build RandomChoice([RandomMixUp, RandomCutMix]) and call
    # it on (images, targets) in their collate function
    from ember.utils.data import default_collate
    from ember.vision import transforms

    def swap(images, targets):
        return targets, images

    choice = transforms.RandomChoice([swap])
    batch = default_collate([(ember.ones(2), 0), (ember.zeros(2), 1)])
    out = choice(*batch)
    assert out[0].tolist() == [0, 1] and out[1].shape == (2, 2)
    assert transforms.RandomChoice([lambda v: v + 1])(1) == 2


# ---- SequentialLR warmup, checkpoint resume ---------------------------------------------------


def _scheduler(lib, opt):
    sched = lib.optim.lr_scheduler
    warmup = sched.LinearLR(opt, start_factor=0.01, total_iters=2)
    main = sched.CosineAnnealingLR(opt, T_max=4, eta_min=0.0)
    return sched.SequentialLR(opt, schedulers=[warmup, main], milestones=[2])


def _lrs(lib, steps, resume_at=None):
    param = lib.nn.Parameter(lib.zeros(2))
    opt = lib.optim.SGD([param], lr=0.5, momentum=0.9)
    sched = _scheduler(lib, opt)
    lrs = []
    for epoch in range(steps):
        param.grad = lib.ones(2)
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
        if epoch == resume_at:
            buf = io.BytesIO()
            ckpt = {"optimizer": opt.state_dict(), "lr_scheduler": sched.state_dict(),
                    "epoch": epoch, "args": argparse.Namespace(lr=0.5)}  # fmt: skip
            lib.save(ckpt, buf)
            buf.seek(0)
            # the references resume with weights_only=True: the args need allow-listing
            with lib.serialization.safe_globals([argparse.Namespace]):
                ckpt = lib.load(buf, map_location="cpu", weights_only=True)
            param = lib.nn.Parameter(param.detach().clone())
            opt = lib.optim.SGD([param], lr=0.5, momentum=0.9)
            sched = _scheduler(lib, opt)
            opt.load_state_dict(ckpt["optimizer"])
            sched.load_state_dict(ckpt["lr_scheduler"])
            assert ckpt["args"].lr == 0.5
    return lrs, param.detach().numpy()


def test_sequential_lr_warmup_and_resume_match_torch():
    t_lrs, t_param = _lrs(torch, 7)
    e_lrs, e_param = _lrs(ember, 7)
    _close(e_lrs, t_lrs, 1e-12)
    _close(e_param, t_param)
    r_lrs, r_param = _lrs(ember, 7, resume_at=2)
    _close(r_lrs, t_lrs, 1e-12)
    _close(r_param, t_param)


def test_default_restore_location_map_location():
    # classification/utils.py: map_location=lambda s, _: default_restore_location(s, "cpu")
    buf = io.BytesIO()
    ember.save({"model": {"w": ember.arange(3.0)}}, buf)
    buf.seek(0)
    out = ember.load(
        buf,
        map_location=lambda s, _: ember.serialization.default_restore_location(s, "cpu"),
        weights_only=True,
    )
    assert out["model"]["w"].tolist() == [0.0, 1.0, 2.0]
    t = ember.ones(2)
    assert ember.serialization.default_restore_location(t, "cpu") is t
    with pytest.raises(TypeError, match="map_location"):
        ember.serialization.default_restore_location(t, 1.5)


def _grouped_batches(lib, group_ids, batch_size, seed):
    sampler_mod = lib.utils.data.sampler

    class GroupedBatchSampler(sampler_mod.BatchSampler):
        # batches of indices from one aspect-ratio group, in the sampler's order; the
        # groups' leftovers come last, largest first
        def __init__(self, sampler, group_ids, batch_size):
            if not isinstance(sampler, sampler_mod.Sampler):
                raise ValueError("sampler should be a Sampler")
            self.sampler, self.group_ids, self.batch_size = sampler, group_ids, batch_size

        def __iter__(self):
            buffers = defaultdict(list)
            for idx in self.sampler:
                group = buffers[self.group_ids[idx]]
                group.append(idx)
                if len(group) == self.batch_size:
                    yield list(group)
                    group.clear()
            for rest in sorted(buffers.values(), key=len, reverse=True):
                if rest:
                    yield rest

    g = lib.Generator().manual_seed(seed)

    sampler = lib.utils.data.RandomSampler(range(len(group_ids)), generator=g)
    return list(iter(GroupedBatchSampler(sampler, group_ids, batch_size)))


def test_grouped_batch_sampler_idiom_matches_torch():
    group_ids = [0, 1, 0, 2, 1, 0, 0, 2, 1, 1, 2]
    for seed in (0, 3):
        e = _grouped_batches(ember, group_ids, 2, seed)
        assert e == _grouped_batches(torch, group_ids, 2, seed)
        assert sorted(itertools.chain(*e)) == list(range(len(group_ids)))
        assert all(len({group_ids[i] for i in b}) == 1 for b in e)


def test_model_zoo_reexports_tqdm():
    # references/detection/group_by_aspect_ratio.py: from torch.utils.model_zoo import tqdm
    from ember.utils.model_zoo import tqdm

    with tqdm(total=3, file=io.StringIO()) as bar:
        bar.update(3)
    assert bar.n == 3


# ---- detection collate, reduce_dict -----------------------------------------------------------


def _collate(batch):
    return tuple(zip(*batch))


class _DetDataset:
    def __len__(self):
        return 4

    def __getitem__(self, i):
        img = ember.full((3, 4 + i, 5), float(i))
        boxes = ember.tensor([[0.0, 0.0, 2.0, 2.0 + i]])
        return img, {"boxes": boxes, "labels": ember.tensor([i % 2 + 1]), "image_id": i}


def test_detection_collate_keeps_images_and_targets_apart():
    loader = ember.utils.data.DataLoader(_DetDataset(), batch_size=3, collate_fn=_collate)
    images, targets = next(iter(loader))
    assert [tuple(im.shape) for im in images] == [(3, 4, 5), (3, 5, 5), (3, 6, 5)]
    assert [t["image_id"] for t in targets] == [0, 1, 2]
    assert targets[2]["boxes"].tolist() == [[0.0, 0.0, 2.0, 4.0]]


def test_reduce_dict_single_process():
    # reduce_dict: nothing to do without a process group; else stack, all_reduce, average
    import ember.distributed as dist

    losses = {"loss_box_reg": ember.tensor(0.5), "loss_classifier": ember.tensor(1.5)}
    assert not (dist.is_available() and dist.is_initialized())
    dist.init_process_group("gloo", init_method="tcp://127.0.0.1:0", world_size=1, rank=0)
    try:
        with ember.inference_mode():
            values = ember.stack([losses[k] for k in sorted(losses)], dim=0)
            dist.all_reduce(values)
            values /= dist.get_world_size()
        assert dict(zip(sorted(losses), values.tolist())) == {"loss_box_reg": 0.5,
                                                              "loss_classifier": 1.5}  # fmt: skip
    finally:
        dist.destroy_process_group()


def _coco_json(tmp_path):
    from PIL import Image

    (tmp_path / "img").mkdir()
    images, anns = [], []
    for i in range(3):
        Image.fromarray(np.zeros((8, 10, 3), np.uint8)).save(tmp_path / "img" / f"{i}.jpg")
        images.append({"id": i + 1, "file_name": f"{i}.jpg", "height": 8, "width": 10})
    for aid, (img, cat, area, crowd) in enumerate(
        [(1, 1, 20.0, 0), (1, 3, 4.0, 1), (2, 3, 50.0, 0)], start=1
    ):
        anns.append({"id": aid, "image_id": img, "category_id": cat, "area": area,
                     "iscrowd": crowd, "bbox": [0, 0, 2, 2]})  # fmt: skip
    cats = [{"id": 1, "name": "person", "supercategory": "p"},
            {"id": 3, "name": "car", "supercategory": "v"}]  # fmt: skip
    path = tmp_path / "ann.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return tmp_path / "img", path


def test_coco_detection_index_calls_of_coco_utils(tmp_path, monkeypatch):
    # CI has no pycocotools: the dataset's own index answers pycocotools' calls
    monkeypatch.setitem(sys.modules, "pycocotools", None)
    monkeypatch.setitem(sys.modules, "pycocotools.coco", None)
    from ember.vision.datasets import CocoDetection

    root, ann = _coco_json(tmp_path)
    ds = CocoDetection(str(root), str(ann))
    coco = ds.coco
    assert coco.getAnnIds(imgIds=1, iscrowd=None) == [1, 2]
    assert coco.getAnnIds(imgIds=[1, 2], iscrowd=False) == [1, 3]
    assert coco.getAnnIds(catIds=[3]) == [2, 3]
    assert coco.getAnnIds(areaRng=[5, 30]) == [1]
    assert coco.getAnnIds() == [1, 2, 3] and coco.getAnnIds(imgIds=3) == []
    assert sorted(coco.getImgIds(catIds=[3])) == [1, 2]
    assert sorted(coco.getImgIds()) == [1, 2, 3]
    assert coco.getCatIds(catNms=["car"]) == [3] and coco.getCatIds() == [1, 3]
    assert coco.loadCats(3)[0]["name"] == "car"
    # _coco_remove_images_without_annotations' idiom
    keep = [i for i, img_id in enumerate(ds.ids)
            if coco.loadAnns(coco.getAnnIds(imgIds=img_id, iscrowd=None))]  # fmt: skip
    assert keep == [0, 1]
    img, target = ds[1]
    assert img.size == (10, 8) and [a["id"] for a in target] == [3]


_PRINT_SCRIPT = """
import builtins, sys, types
import ember

utils = types.ModuleType("utils")
sys.modules["utils"] = utils
exec('''
import builtins
def setup_for_distributed(is_master):
    builtin_print = builtins.print
    def print(*args, **kwargs):
        force = kwargs.pop("force", False)
        if is_master or force:
            builtin_print(*args, **kwargs)
    builtins.print = print
''', utils.__dict__)
utils.setup_for_distributed(True)
import numba  # its first import, as ember's compiled kernels make it lazily later
print("ok", "numba" in sys.modules, builtins.print.__module__)
"""


def test_numba_import_survives_setup_for_distributed_print():
    # the references' setup_for_distributed replaces builtins.print by a function of their
    # utils module; numba, imported lazily afterwards, checked print against that module
    import subprocess

    pytest.importorskip("numba")
    out = subprocess.run([sys.executable, "-c", _PRINT_SCRIPT], capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["ok", "True", "utils"]
