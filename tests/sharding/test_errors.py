"""Bad input gets clear errors: wrapping twice, parameters changed after wrapping, mismatched
shard checkpoints."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from sharding_worker import Block, make_model

import ember
from ember import nn
from ember.distributed.fsdp import FullyShardedDataParallel as FSDP
from ember.distributed.fsdp import MixedPrecision, ModuleWrapPolicy, StateDictType, checkpoint
from ember.distributed.optim import ZeroDataParallel, ZeroRedundancyOptimizer
from ember.distributed.parallel.ddp import DistributedDataParallel as DDP

pytestmark = pytest.mark.usefixtures("pg1")


# ---- wrapping twice ---------------------------------------------------------------------
def test_fsdp_wrapping_a_module_twice():
    m = make_model()
    FSDP(m)
    with pytest.raises(RuntimeError, match="Sequential is already wrapped"):
        FSDP(m)
    with pytest.raises(RuntimeError, match="already wrapped"):
        ZeroDataParallel(m)


def test_fsdp_wrapping_a_wrapper():
    f = FSDP(make_model())
    with pytest.raises(RuntimeError, match="FullyShardedDataParallel is already wrapped"):
        FSDP(f)


def test_fsdp_and_ddp_together():
    d = DDP(make_model())
    with pytest.raises(RuntimeError, match="DistributedDataParallel"):
        FSDP(d)
    with pytest.raises(RuntimeError, match="DistributedDataParallel"):
        FSDP(d.module)


def test_zero_optimizer_twice_over_the_same_parameters():
    m = make_model()
    ZeroRedundancyOptimizer(m.parameters(), ember.optim.Adam)
    with pytest.raises(RuntimeError, match="already managed by another ZeroRedundancyOptimizer"):
        ZeroRedundancyOptimizer(m.parameters(), ember.optim.SGD, lr=0.1)


def test_zero_optimizer_over_sharded_parameters():
    f = FSDP(make_model())
    with pytest.raises(RuntimeError, match="sharded already"):
        ZeroRedundancyOptimizer(f.parameters(), ember.optim.Adam)


def test_shared_parameter_split_across_units():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = Block(4)
            self.b = Block(4)
            self.b.fc.weight = self.a.fc.weight

        def forward(self, x):
            return self.b(self.a(x))

    with pytest.raises(RuntimeError, match="shared across units"):
        FSDP(Tied(), auto_wrap_policy=ModuleWrapPolicy({Block}))


def test_bad_arguments():
    with pytest.raises(TypeError, match="ShardingStrategy"):
        FSDP(make_model(), sharding_strategy="FULL_SHARD")
    with pytest.raises(NotImplementedError, match="param_init_fn"):
        FSDP(make_model(), param_init_fn=lambda m: None)
    with pytest.raises(ValueError, match="stage must be 1 or 2"):
        ZeroDataParallel(make_model(), stage=3)
    with pytest.raises(TypeError, match="optimizer_class"):
        ZeroRedundancyOptimizer(make_model().parameters(), "adam")
    with pytest.raises(TypeError, match="auto_wrap_policy"):
        FSDP(make_model(), auto_wrap_policy=42)


# ---- parameters changed after wrapping --------------------------------------------------
def test_fsdp_parameter_reassigned_after_wrapping():
    f = FSDP(make_model())
    f.module[0].weight = nn.Parameter(ember.zeros(7, 5))
    with pytest.raises(RuntimeError, match="'weight' of Linear was re-registered after wrapping"):
        f(ember.randn(2, 5))


def test_fsdp_flat_parameter_replaced_after_wrapping():
    f = FSDP(make_model())
    f.to(ember.float64)
    with pytest.raises(RuntimeError, match="flat parameter's data was replaced"):
        f(ember.randn(2, 5, dtype=ember.float64))


def test_zero_optimizer_parameter_replaced():
    m = make_model()
    opt = ZeroRedundancyOptimizer(m.parameters(), ember.optim.Adam)
    m[0].weight.data = m[0].weight.data.clone()
    m(ember.randn(2, 5)).sum().backward()
    with pytest.raises(RuntimeError, match="parameter 0 of group 0 .* was replaced after"):
        opt.step()


def test_zero_state_dict_needs_consolidation():
    opt = ZeroRedundancyOptimizer(make_model().parameters(), ember.optim.Adam)
    with pytest.raises(RuntimeError, match="consolidate_state_dict"):
        opt.state_dict()


# ---- mismatched shard checkpoints -------------------------------------------------------
def _fsdp_adam():
    m = FSDP(make_model(), auto_wrap_policy=ModuleWrapPolicy({Block}))
    return m, ember.optim.Adam(m.parameters())


def test_sharded_checkpoint_on_another_number_of_ranks_is_resharded(ckpt_dir):
    # saved by 2 ranks, loaded by 1: consolidated and loaded in full (not an error any more)
    m, opt = _fsdp_adam()
    checkpoint.load_sharded_checkpoint(str(ckpt_dir / "sharded"), m, opt)
    full = checkpoint.load_full_state_dicts(str(ckpt_dir / "sharded"))
    with FSDP.state_dict_type(m, StateDictType.FULL_STATE_DICT):
        got = m.state_dict()
    assert sorted(got) == sorted(full["model"])
    for k, v in full["model"].items():
        np.testing.assert_array_equal(got[k].numpy(), v.numpy(), err_msg=k)
    assert opt.state  # the optimizer state came along


def test_sharded_state_dict_of_another_rank_count(ckpt_dir):
    shard = ember.load(str(ckpt_dir / "sharded" / "shard-00000-of-00002.ember"))
    m, _ = _fsdp_adam()
    with pytest.raises(
        RuntimeError, match="saved by rank 0 of 2 ranks but is being loaded on rank 0 of 1"
    ):
        m.load_state_dict(shard["model"])


def test_mixed_shard_files(ckpt_dir, tmp_path):
    mixed = tmp_path / "mixed"
    shutil.copytree(ckpt_dir / "sharded", mixed)
    shutil.copy(ckpt_dir / "sharded_b" / "shard-00001-of-00002.ember", mixed)
    with pytest.raises(RuntimeError, match="shard-00001-of-00002.ember belongs to checkpoint"):
        checkpoint.load_full_state_dicts(str(mixed))


def test_missing_shard_file_and_index(ckpt_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(ckpt_dir / "sharded", broken)
    (broken / "shard-00001-of-00002.ember").unlink()
    with pytest.raises(FileNotFoundError, match="shard-00001-of-00002.ember of rank 1 is missing"):
        checkpoint.load_full_state_dicts(str(broken))
    (broken / "index.json").unlink()
    with pytest.raises(FileNotFoundError, match="has no index.json"):
        checkpoint.load_full_state_dicts(str(broken))


def test_shard_pieces_of_another_model():
    a, _ = _fsdp_adam()
    with FSDP.state_dict_type(a, StateDictType.SHARDED_STATE_DICT):
        sd = a.state_dict()
    ember.manual_seed(0)
    other = FSDP(nn.Sequential(nn.Linear(5, 8), Block(8), Block(8), nn.Linear(8, 3)))
    with FSDP.state_dict_type(other, StateDictType.SHARDED_STATE_DICT):
        with pytest.raises(RuntimeError, match="mismatched shard for '0.weight'"):
            other.load_state_dict(sd)
    with pytest.raises(RuntimeError, match="shard 0 of 2 has metadata"):
        checkpoint.consolidate_state_dicts([sd, sd])


# ---- malformed mixed precision ----------------------------------------------------------
@pytest.mark.parametrize(
    "mp, exc, msg",
    [
        (
            "bf16",
            TypeError,
            "mixed_precision must be an ember.distributed.fsdp.MixedPrecision, got str",
        ),
        (
            MixedPrecision(param_dtype=np.float16),
            TypeError,
            "MixedPrecision.param_dtype must be an ember dtype",
        ),
        (
            MixedPrecision(reduce_dtype=ember.int32),
            ValueError,
            "MixedPrecision.reduce_dtype must be a floating-point dtype",
        ),
    ],
)
def test_bad_mixed_precision(mp, exc, msg):
    m = make_model()
    with pytest.raises(exc, match=msg):
        FSDP(m, mixed_precision=mp)
    FSDP(m)  # nothing was changed: the module can still be wrapped
