"""The PyTorch idioms fastai 2.8 builds on, in small programs of our own, checked against
PyTorch (fastai itself is not imported).

fastai subclasses ``Tensor`` (``TensorBase``, ``TensorImage``, ``TensorCategory``) with a
``__torch_function__`` that copies the first subclass argument's ``__dict__`` onto every
subclass result; its ``DataLoader`` builds torch's private iterator classes itself, over a
duck-typed loader that carries torch's attribute names; ``fastai.torch_imports`` and its fp16
utilities import ``torch.utils.data._utils.collate`` and ``torch._utils``; its vision learner
keys a table by every torchvision VGG builder.
"""

from __future__ import annotations

import itertools
import pickle
import warnings

import pytest
import torch

import ember

LIBS = [torch, ember]


# ---- a TensorBase-style subclass: type and metadata through ops ---------------------------


def _tensor_base(lib):
    class TensorBase(lib.Tensor):
        def __new__(cls, x, **kwargs):
            res = lib.as_tensor(x).as_subclass(cls)
            res.__dict__.update(kwargs)
            return res

        @classmethod
        def __torch_function__(cls, func, types, args=(), kwargs=None):
            res = super().__torch_function__(func, types, args, kwargs or {})
            # fastai's _find_args: the metadata of the first subclass argument is copied on
            metas = [a for a in args if isinstance(a, TensorBase) and a.__dict__]
            if metas:
                outs = res if isinstance(res, (tuple, list)) else [res]
                for r in outs:
                    if isinstance(r, TensorBase):
                        r.__dict__.update(metas[0].__dict__)
            return res

    class TensorImage(TensorBase):
        pass

    class TensorMask(TensorBase):
        pass

    return TensorBase, TensorImage, TensorMask


def _subclass_run(lib):
    TensorBase, TensorImage, TensorMask = _tensor_base(lib)
    img = TensorImage(lib.arange(12.0).reshape(1, 3, 2, 2), img_size=(2, 2))
    mask = TensorMask(lib.zeros(2, 2, dtype=lib.int64), codes=["bg", "fg"])
    base = TensorBase(lib.ones(1))
    results = {
        "add": img + 1,
        "rmul": 2 * img,
        "mixed": img + base,  # the more derived class wins
        "method": img.float().flip(-1),
        "index": img[0, :, 0],
        "F": lib.nn.functional.relu(img - 5),
        "cat": lib.cat([img, img]),
        "chunk": img.chunk(3, dim=1),
        "mask_eq": mask == 0,
        "reduce": img.mean(),
        "new": img.new_ones(2),
        "as_subclass": lib.ones(2).as_subclass(TensorImage),
    }
    out = {}
    for k, v in results.items():
        first = v[0] if isinstance(v, tuple) else v
        out[k] = (
            type(v).__name__,
            type(first).__name__,
            dict(getattr(first, "__dict__", {})),
            first.detach().to(lib.float64).sum().item(),
        )
    # the leaf keeps its class and gets a plain .grad; pickling keeps class and metadata
    leaf = TensorImage(lib.ones(2, 2), img_size=(2, 2)).requires_grad_()
    (leaf * 3).sum().backward()
    out["grad"] = (type(leaf).__name__, leaf.grad.tolist())
    return out, (TensorBase, TensorImage, TensorMask)


def test_tensor_base_subclass_keeps_type_and_metadata_like_torch():
    got = {lib.__name__: _subclass_run(lib)[0] for lib in LIBS}
    assert got["ember"] == got["torch"]
    assert got["ember"]["add"][2] == {"img_size": (2, 2)}
    assert got["ember"]["mask_eq"][:3] == ("TensorMask", "TensorMask", {"codes": ["bg", "fg"]})


# module-level classes (pickle finds them by name)
_EmberBase, EmberImage, _EmberMask = _tensor_base(ember)
_EmberBase.__qualname__ = _EmberBase.__name__ = "_EmberBase"
EmberImage.__qualname__ = EmberImage.__name__ = "EmberImage"


def test_subclass_pickle_keeps_class_and_metadata():
    img = EmberImage(ember.arange(6.0).reshape(2, 3), img_size=(2, 3))
    back = pickle.loads(pickle.dumps(img))
    assert type(back) is EmberImage
    assert back.img_size == (2, 3)
    assert back.tolist() == img.tolist()


# ---- fastai's DataLoader: torch's iterator classes over a duck-typed loader ----------------


def _fake_loader(lib, batches, num_workers):
    kind = lib.utils.data.dataloader._DatasetKind

    class FakeLoader:  # the attributes fastai's _FakeLoader gives torch's iterators
        _IterableDataset_len_called, _auto_collation, drop_last, in_order = None, False, False, True
        generator, prefetch_factor, pin_memory_device = None, 2, ""
        dataset_kind = _dataset_kind = kind.Iterable
        multiprocessing_context = None

        def __init__(self):
            self.dataset, self.num_workers = self, num_workers
            self.pin_memory, self.timeout, self.persistent_workers = False, 0, False
            self.worker_init_fn = None
            self._index_sampler = itertools.count()  # fastai's Inf.count
            self.collate_fn = lambda b: b  # batches arrive already collated

        def _get_shared_seed(self):
            return None

        def __iter__(self):
            return iter(batches)

    return FakeLoader()


@pytest.mark.parametrize("num_workers", [0, 1])
def test_private_iterators_take_a_duck_typed_loader_like_torch(num_workers):
    got = {}
    for lib in LIBS:
        mod = lib.utils.data.dataloader
        cls = mod._SingleProcessDataLoaderIter
        if num_workers:
            cls = mod._MultiProcessingDataLoaderIter
        batches = [(lib.arange(3.0) + i, lib.tensor(i)) for i in range(4)]
        it = cls(_fake_loader(lib, batches, num_workers))
        got[lib.__name__] = [(x.tolist(), y.item()) for x, y in it]
    assert got["ember"] == got["torch"]
    assert len(got["ember"]) == 4


class _Stream(ember.utils.data.IterableDataset):
    def __iter__(self):
        return iter(range(3))


def test_dataset_kind_of_a_real_loader():
    kind = ember.utils.data.dataloader._DatasetKind
    assert (kind.Map, kind.Iterable) == (0, 1)
    data = ember.utils.data
    assert data.DataLoader(data.TensorDataset(ember.ones(3)))._dataset_kind == kind.Map
    assert data.DataLoader(_Stream())._dataset_kind == kind.Iterable


# ---- torch's private import paths -------------------------------------------------------


def test_private_collate_path_is_the_public_module():
    from ember.utils.data._utils.collate import default_collate, default_convert

    assert default_collate is ember.utils.data.default_collate
    assert default_convert is ember.utils.data.default_convert
    assert default_collate([ember.ones(2), ember.zeros(2)]).shape == (2, 2)


def test_flatten_dense_tensors_matches_torch():
    vals = [[[1.0, 2.0], [3.0, 4.0]], [5.0, 6.0, 7.0]]
    flat = {}
    for lib in LIBS:
        ts = [lib.tensor(v) for v in vals]
        f = lib._utils._flatten_dense_tensors(ts)
        parts = lib._utils._unflatten_dense_tensors(f * 2, ts)
        flat[lib.__name__] = (f.tolist(), [p.tolist() for p in parts])
    assert flat["ember"] == flat["torch"]
    with pytest.raises(ValueError, match="flat has 2 elements"):
        ember._utils._unflatten_dense_tensors(ember.ones(2), [ember.ones(3)])


# ---- Tensor.set_: fastai's HSV transforms write their result back with x.set_(...) -----


def _set_run(lib):
    src = lib.arange(6.0)
    a = lib.zeros(3)
    same = a.set_(src) is a
    src[0] = 9.0  # shared memory
    b = lib.zeros(1).set_(src, 1, (2, 2), (1, 2))
    c = lib.zeros(1).set_(src.untyped_storage(), 2, (3,))
    d = lib.zeros(2).set_()
    _, _, TensorMask = _tensor_base(lib)
    m = TensorMask(lib.zeros(2), codes=["x"])
    m.set_(lib.stack((src[:1], src[1:2]), dim=1))
    return same, a.tolist(), b.tolist(), c.tolist(), tuple(d.shape), type(m).__name__, m.tolist()


def test_set_shares_memory_like_torch():
    assert _set_run(ember) == _set_run(torch)
    leaf = ember.zeros(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        leaf.set_(ember.ones(3))
    with pytest.raises(RuntimeError, match="source has dtype ember.int64"):
        ember.zeros(3).set_(ember.ones(3, dtype=ember.int64))
    with pytest.raises(RuntimeError, match="need 10 elements; the storage holds 6"):
        ember.zeros(3).set_(ember.arange(6.0), 0, (10,))


# ---- every torchvision VGG builder ------------------------------------------------------


def test_vgg13_bn_and_vgg19_bn_have_torchvisions_layout():
    from ember.vision import models

    with warnings.catch_warnings(), ember.device("meta"):  # the layout, no 130M-value init
        warnings.simplefilter("ignore")
        v13, v19 = models.vgg13_bn(), models.vgg19_bn(pretrained=False)
    # torchvision's parameter counts (its checkpoints' layouts)
    assert sum(p.numel() for p in v13.parameters()) == 133053736
    assert sum(p.numel() for p in v19.parameters()) == 143678248
    assert sum(isinstance(m, ember.nn.BatchNorm2d) for m in v19.features) == 16
    # torchvision's weights entries (loaded from the hub cache; nothing downloads here)
    w13, w19 = models.VGG13_BN_Weights.verify("IMAGENET1K_V1"), models.VGG19_BN_Weights.DEFAULT
    assert w13.meta["num_params"] == 133053736 and w19.meta["num_params"] == 143678248
    assert w13.url.endswith("vgg13_bn-abd245e5.pth") and w19.url.endswith("vgg19_bn-c79401a0.pth")


def test_doc_snippet_runs():
    import os

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "docs", "porting_examples.md"), encoding="utf-8") as f:
        section = f.read().split("## fastai", 1)[1]
    snippet = section.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(snippet, "docs/porting_examples.md", "exec"), {})
