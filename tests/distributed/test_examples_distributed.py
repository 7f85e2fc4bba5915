"""Regression tests for the stops met running pytorch/examples' distributed programs (and the
single-process ones not run before) with ``import ember as torch`` (docs/porting_examples.md,
"Distributed programs"). Each test is a small program with the example's idiom, not its code.

* FSDP2 ``example.py`` resumes from its DTensor-API checkpoint with
  ``nn.Parameter(distribute_tensor(full, meta.device_mesh, meta.placements))`` and
  ``load_state_dict(..., assign=True)``: ``nn.Parameter`` of a DTensor was a TypeError.
* The same example's ``Transformer.reset_parameters`` leaves the blocks as ``to_empty`` made
  them; a NaN row reaching ``LayerNorm`` raised ``ZeroDivisionError`` from the compiled kernel
  (PyTorch gives NaN).
* fast_neural_style's perceptual loss takes ``vision.models.vgg16(...).features``: absent.
"""

from __future__ import annotations

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")

WORLD = 2


# ---- LayerNorm / RMSNorm on rows with NaN or inf (single process) --------------------------
def _rows():
    nan, inf = float("nan"), float("inf")
    return [[nan, 1.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0], [inf, 1.0, 2.0, 3.0], [5.0, 5.0, 5.0, 5.0]]


def test_layer_norm_non_finite_rows_give_nan_like_torch():
    x = ember.tensor(_rows(), requires_grad=True)
    tx = torch.tensor(_rows(), requires_grad=True)
    y = ember.nn.functional.layer_norm(x, (4,))
    ty = torch.nn.functional.layer_norm(tx, (4,))
    np.testing.assert_allclose(y.detach().numpy(), ty.detach().numpy(), rtol=1e-5, atol=1e-6)
    y.sum().backward()
    ty.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-5, atol=1e-6)
    # the module form and RMSNorm share the kernel: NaN rows stay NaN, the others are exact
    ln = ember.nn.LayerNorm(4)(ember.tensor(_rows()))
    assert np.isnan(ln.detach().numpy()[[0, 2]]).all()
    r = ember.nn.functional.rms_norm(ember.tensor(_rows()), (4,)).numpy()
    tr = torch.nn.functional.rms_norm(torch.tensor(_rows()), (4,)).numpy()
    assert np.isnan(r[0]).all()
    np.testing.assert_allclose(r[[1, 3]], tr[[1, 3]], rtol=1e-5)


# ---- VGG (fast_neural_style) ---------------------------------------------------------------
def test_vgg16_has_torchvisions_layout():
    from ember.vision import models

    with ember.device("meta"):
        v, vb = models.vgg16(), models.vgg16_bn()
    # torchvision's recorded parameter counts (VGG16_Weights / VGG16_BN_Weights meta)
    assert sum(p.numel() for p in v.parameters()) == 138357544
    assert sum(p.numel() for p in vb.parameters()) == 138365992
    assert models.VGG16_Weights.DEFAULT.meta["num_params"] == 138357544
    convs = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    want = [f"features.{i}.{k}" for i in convs for k in ("weight", "bias")]
    want += [f"classifier.{i}.{k}" for i in (0, 3, 6) for k in ("weight", "bias")]
    assert list(v.state_dict()) == want
    assert isinstance(v.features[30], ember.nn.MaxPool2d) and len(v.features) == 31
    assert models.VGG11_Weights.verify("DEFAULT") is models.VGG11_Weights.IMAGENET1K_V1
    assert models.VGG11_Weights.DEFAULT.meta["num_params"] == 132863336


def test_vgg_trunk_matches_torch():
    from ember.vision.models.vgg import make_layers

    ember.manual_seed(0)
    trunk = make_layers([4, "M", 8, 8, "M"], batch_norm=True).eval()
    ref = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1),
        torch.nn.BatchNorm2d(4),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2, 2),
        torch.nn.Conv2d(4, 8, 3, padding=1),
        torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 8, 3, padding=1),
        torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2, 2),
    ).eval()
    ref.load_state_dict({k: torch.from_numpy(v.numpy()) for k, v in trunk.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    got = trunk(ember.tensor(x)).detach().numpy()
    np.testing.assert_allclose(got, ref(torch.from_numpy(x)).detach().numpy(), atol=1e-5)


# ---- FSDP2: resume through nn.Parameter(DTensor) (2 ranks, gloo) ----------------------------
def _tiny_model():
    nn = ember.nn
    return nn.Sequential(
        nn.Embedding(16, 8),
        nn.Sequential(nn.LayerNorm(8), nn.Linear(8, 8)),
        nn.Sequential(nn.LayerNorm(8), nn.Linear(8, 8)),
        nn.Linear(8, 16, bias=False),
    )


def _shard(model):
    from ember.distributed.fsdp import fully_shard

    for block in (model[1], model[2]):
        fully_shard(block)
    fully_shard(model)
    return model


def _trained_one_step():
    """The example's model, sharded, after one Adam step on this rank's tokens (returned too)."""
    import ember.distributed as dist

    ember.manual_seed(0)
    trained = _shard(_tiny_model())
    opt = ember.optim.Adam(trained.parameters(), lr=1e-2)
    tokens = ember.randint(0, 16, (4, 6), generator=ember.Generator().manual_seed(dist.get_rank()))
    trained(tokens).sum().backward()
    opt.step()
    return trained, opt, tokens


def _fsdp2_resume_from_full_state_dict():
    from ember.distributed.tensor import distribute_tensor

    trained, opt, tokens = _trained_one_step()
    # the example's save: every rank gathers, rank 0 would write
    full_sd = {k: v.full_tensor() for k, v in trained.state_dict().items()}

    with ember.device("meta"):
        fresh = _tiny_model()
    _shard(fresh)
    meta_sd = fresh.state_dict()
    sharded = {}
    for name, full in full_sd.items():
        meta = meta_sd[name]
        p = ember.nn.Parameter(distribute_tensor(full, meta.device_mesh, meta.placements))
        assert isinstance(p, ember.nn.Parameter) and p.placements == meta.placements
        sharded[name] = p
    fresh.load_state_dict(sharded, strict=False, assign=True)
    opt2 = ember.optim.Adam(fresh.parameters(), lr=1e-2)  # before any forward, as the example
    out = {"meta_left": [n for n, p in fresh.named_parameters() if p.is_meta]}
    out["same_params"] = all(
        np.array_equal(p.full_tensor().detach().numpy(), full_sd[n].detach().numpy())
        for n, p in fresh.named_parameters()
    )
    out["same_out"] = np.allclose(
        fresh(tokens).detach().numpy(), trained(tokens).detach().numpy(), atol=1e-6
    )
    # it trains on: a step moves the parameters on every rank alike
    before = fresh.state_dict()["3.weight"].full_tensor().numpy().copy()
    fresh(tokens).sum().backward()
    opt2.step()
    after = fresh.state_dict()["3.weight"].full_tensor().numpy()
    out["moved"] = not np.array_equal(after, before)
    return out


def test_parameter_of_dtensor_resumes_fsdp2_model(pools):
    for r in pools(WORLD, "gloo").run(_fsdp2_resume_from_full_state_dict, timeout=90):
        assert r == {
            "meta_left": [],
            "same_params": True,
            "same_out": True,
            "moved": True,
        }


def _fsdp2_dcp_api_resume():
    """The FSDP2 example's ``--dcp-api`` checkpoint: full state dicts from
    ``get_model_state_dict`` / ``get_optimizer_state_dict``, loaded into a model built on the
    meta device with ``broadcast_from_rank0`` (only rank 0 passes the dicts here)."""
    import ember.distributed as dist
    from ember.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    full = StateDictOptions(full_state_dict=True, cpu_offload=True)
    trained, opt, tokens = _trained_one_step()
    opt.zero_grad()
    model_sd = get_model_state_dict(trained, options=full)
    optim_sd = get_optimizer_state_dict(trained, opt, options=full)
    rank0 = dist.get_rank() == 0

    with ember.device("meta"):
        fresh = _tiny_model()
    _shard(fresh)
    load = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
    set_model_state_dict(fresh, model_sd if rank0 else {}, options=load)
    opt2 = ember.optim.Adam(fresh.parameters(), lr=1e-2)
    set_optimizer_state_dict(fresh, opt2, optim_sd if rank0 else {}, options=load)
    # one more step on both: the same losses and parameters
    losses = []
    for model, o in ((trained, opt), (fresh, opt2)):
        loss = model(tokens).sum()
        loss.backward()
        o.step()
        losses.append(loss.item())
    a = get_model_state_dict(trained, options=full)
    b = get_model_state_dict(fresh, options=full)
    return {
        "meta_left": [n for n, p in fresh.named_parameters() if p.is_meta],
        "same_loss": abs(losses[0] - losses[1]) < 1e-5,
        "same_after_step": all(np.allclose(a[k].numpy(), b[k].numpy(), atol=1e-6) for k in a),
    }


def test_dcp_api_full_state_dicts_broadcast_into_meta_model(pools):
    for r in pools(WORLD, "gloo").run(_fsdp2_dcp_api_resume, timeout=90):
        assert r == {"meta_left": [], "same_loss": True, "same_after_step": True}


# ---- FSDP (T5, FSDP1) idioms, with a stand-in model --------------------------------------------
class _Block(ember.nn.Module):
    def __init__(self):
        super().__init__()
        self.ln = ember.nn.LayerNorm(8)
        self.fc = ember.nn.Linear(8, 8)

    def forward(self, x):
        return x + self.fc(self.ln(x))


def _t5_like():
    nn = ember.nn
    return nn.Sequential(nn.Embedding(16, 8), _Block(), _Block(), nn.Linear(8, 16))


def _fsdp1_t5_idioms(ckpt_dir):
    import functools
    import warnings

    import ember.distributed as dist
    import ember.distributed.checkpoint as dist_cp
    from ember.distributed.checkpoint.default_planner import (
        DefaultLoadPlanner,
        DefaultSavePlanner,
    )
    from ember.distributed.fsdp import FullyShardedDataParallel as FSDP
    from ember.distributed.fsdp import LocalStateDictConfig, StateDictType  # noqa: F401
    from ember.distributed.fsdp.wrap import enable_wrap, transformer_auto_wrap_policy, wrap

    policy = functools.partial(transformer_auto_wrap_policy, transformer_layer_cls={_Block})

    def build():
        ember.manual_seed(0)
        return FSDP(_t5_like(), auto_wrap_policy=policy, device_id=ember.device("cpu"))

    out = {}
    # enable_wrap / wrap: wrap() is the identity outside the block
    plain = ember.nn.Linear(2, 2)
    out["wrap_outside"] = wrap(plain) is plain
    with enable_wrap(wrapper_cls=FSDP, device_id=ember.device("cpu")):
        out["wrap_inside"] = type(wrap(ember.nn.Linear(2, 2))).__name__

    model = build()
    opt = ember.optim.AdamW(model.parameters(), lr=1e-2)
    tokens = ember.randint(0, 16, (4, 5), generator=ember.Generator().manual_seed(dist.get_rank()))
    model(tokens).sum().backward()
    opt.step()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        full_osd = FSDP.full_optim_state_dict(model, opt)
    out["warned"] = any(issubclass(w.category, FutureWarning) for w in caught)
    out["rank0_only"] = bool(full_osd) == (dist.get_rank() == 0)
    with FSDP.state_dict_type(model, StateDictType.FULL_STATE_DICT):
        named = FSDP.optim_state_dict(model, opt)
    if dist.get_rank() == 0:
        out["same_as_named"] = sorted(full_osd["state"]) == sorted(named["state"])

    # scatter into a fresh model and optimizer: the next step is the same on both
    fresh = build()
    with FSDP.state_dict_type(model, StateDictType.FULL_STATE_DICT):
        full_sd = model.state_dict()
    with FSDP.state_dict_type(fresh, StateDictType.FULL_STATE_DICT):
        fresh.load_state_dict(full_sd)
    opt2 = ember.optim.AdamW(fresh.parameters(), lr=1e-2)
    opt2.load_state_dict(FSDP.scatter_full_optim_state_dict(full_osd or None, fresh, optim=opt2))
    for m, o in ((model, opt), (fresh, opt2)):
        o.zero_grad()
        m(tokens).sum().backward()
        o.step()
    losses = [m(tokens).sum().item() for m in (model, fresh)]
    out["same_after_scatter"] = abs(losses[0] - losses[1]) < 1e-5

    # the sharded checkpoint through the deprecated DCP entry points and default planners
    with FSDP.state_dict_type(model, StateDictType.SHARDED_STATE_DICT):
        sd = {"model": model.state_dict()}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            dist_cp.save_state_dict(
                sd, dist_cp.FileSystemWriter(ckpt_dir), planner=DefaultSavePlanner()
            )
    other = build()
    with FSDP.state_dict_type(other, StateDictType.SHARDED_STATE_DICT):
        sd = {"model": other.state_dict()}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            dist_cp.load_state_dict(
                sd, dist_cp.FileSystemReader(ckpt_dir), planner=DefaultLoadPlanner()
            )
        other.load_state_dict(sd["model"])
    out["same_after_dcp"] = abs(other(tokens).sum().item() - losses[0]) < 1e-5
    return out


def test_fsdp1_t5_program_idioms(pools, tmp_path):
    got = pools(WORLD, "gloo").run(_fsdp1_t5_idioms, str(tmp_path / "sharded"), timeout=90)
    for rank, r in enumerate(got):
        want = {
            "wrap_outside": True,
            "wrap_inside": "FullyShardedDataParallel",
            "warned": True,
            "rank0_only": True,
            "same_after_scatter": True,
            "same_after_dcp": True,
        }
        if rank == 0:
            want["same_as_named"] = True
        assert r == want


def test_t5_program_imports_and_refusals():
    import ember.cuda.nccl as nccl
    from ember.distributed.algorithms._checkpoint import checkpoint_wrapper as cw
    from ember.distributed.checkpoint.default_planner import DefaultLoadPlanner
    from ember.distributed.fsdp import apply_activation_checkpointing

    assert cw.apply_activation_checkpointing is apply_activation_checkpointing
    # a CPU build: no NCCL (torch's CPU wheel raises too), and the example's bfloat check is
    # short-circuited by torch.version.cuda being None
    assert ember.version.cuda is None
    assert nccl.is_available([ember.zeros(1)]) is False
    with pytest.raises(RuntimeError, match="NCCL is not available"):
        nccl.version()
    with pytest.raises(NotImplementedError, match="use ember.distributed.all_reduce"):
        nccl.all_reduce([ember.zeros(1)])
    with pytest.raises(NotImplementedError, match="default options"):
        ember.distributed.checkpoint.load(
            {}, checkpoint_id="/nonexistent", planner=DefaultLoadPlanner(allow_partial_load=True)
        )
