"""FSDP(use_orig_params=True) with FSDP.optim_state_dict / optim_state_dict_to_load on 2 ranks:
PyTorch's keys (original parameter names), state per parameter, full on every rank, equal to
torch's AdamW state after the same training; restoring from the full or the sharded form
continues the run exactly."""

from __future__ import annotations

import numpy as np
import pytest
from fsdp_ext_worker import GLOBAL_BATCH, STEPS, batch, init_values, param_groups_spec, results


def _plain_torch_state():
    """torch's AdamW state by parameter name after the same steps on one process (the 2
    ranks' averaged gradient is the full batch's)."""
    torch = pytest.importorskip("torch")
    from torch_fsdp_ext_ref import make_model

    torch.manual_seed(0)
    model = make_model()
    named = list(model.named_parameters())
    groups = param_groups_spec([n for n, _ in named])
    opt = torch.optim.AdamW(
        [{"params": [named[i][1] for i in g["idx"]], **g["opts"]} for g in groups], lr=1e-2
    )
    for s in range(STEPS):
        x, y = batch(s, 0, 1)
        loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y))
        opt.zero_grad()
        loss.backward()
        opt.step()
    names = {id(p): n for n, p in named}
    state = {
        names[id(p)]: {k: v.numpy().copy() for k, v in st.items()} for p, st in opt.state.items()
    }
    rows = [
        f"{g['lr']}|{g['weight_decay']}|{','.join(names[id(p)] for p in g['params'])}"
        for g in opt.param_groups
    ]
    return state, rows


def test_full_optim_state_dict_matches_torch_and_restores(tmp_path_factory):
    assert GLOBAL_BATCH % 2 == 0 and init_values
    want, want_groups = _plain_torch_state()
    runs = results("orig_osd_worker.py", 2, "osd", tmp_path_factory)
    for rank in range(2):
        got = runs[("osd", rank)]
        # torch's layout: keys are the original names, every state entry full-shaped
        keys = sorted(k for k in got if k.startswith("osd/"))
        assert keys == sorted(f"osd/{n}/{k}" for n, st in want.items() for k in st)
        for n, st in want.items():
            for k, v in st.items():
                np.testing.assert_allclose(
                    got[f"osd/{n}/{k}"], v, rtol=1e-5, atol=1e-7, err_msg=f"{n}/{k} rank {rank}"
                )
        assert list(got["groups"]) == want_groups
        # restored from the full and from the sharded form: two more steps land exactly where
        # the uninterrupted run does
        for prefix in ("full", "sharded"):
            for k in (k for k in got if k.startswith("cont/")):
                np.testing.assert_array_equal(got[prefix + k[4:]], got[k], err_msg=prefix + k)


@pytest.mark.full
def test_keys_and_groups_equal_torch_fsdp(tmp_path_factory):
    pytest.importorskip("torch")
    ours = results("orig_osd_worker.py", 2, "osd", tmp_path_factory)
    theirs = results("torch_orig_osd_ref.py", 2, "osd", tmp_path_factory)
    for rank in range(2):
        e, t = ours[("osd", rank)], theirs[("osd", rank)]
        keys = sorted(k for k in t if k.startswith("osd/"))
        assert keys == sorted(k for k in e if k.startswith("osd/"))
        assert list(e["groups"]) == list(t["groups"])
        for k in keys:  # exp_avg: see torch_orig_osd_ref.py
            assert e[k].shape == t[k].shape, k
            if not k.endswith("/exp_avg"):
                np.testing.assert_allclose(e[k], t[k], rtol=1e-5, atol=1e-7, err_msg=k)


@pytest.mark.usefixtures("pg1")
@pytest.mark.parametrize("strategy", ["FULL_SHARD", "NO_SHARD"])
def test_one_rank_state_is_the_unwrapped_optimizers(strategy):
    from fsdp_ext_worker import _ember_model

    import ember
    from ember.distributed.fsdp import FullyShardedDataParallel as FSDP
    from ember.distributed.fsdp import ModuleWrapPolicy, ShardingStrategy, StateDictType

    def groups(model):
        named = list(model.named_parameters())
        spec = param_groups_spec([n for n, _ in named])
        return [{"params": [named[i][1] for i in g["idx"]], **g["opts"]} for g in spec]

    def train(model, opt):
        for s in range(2):
            x, y = batch(s, 0, 1)
            loss = ember.nn.functional.cross_entropy(model(ember.tensor(x)), ember.tensor(y))
            opt.zero_grad()
            loss.backward()
            opt.step()

    plain, block = _ember_model()
    popt = ember.optim.AdamW(groups(plain), lr=1e-2)
    train(plain, popt)
    model = FSDP(
        _ember_model()[0],
        auto_wrap_policy=ModuleWrapPolicy({block}),
        sharding_strategy=ShardingStrategy[strategy],
        use_orig_params=True,
    )
    opt = ember.optim.AdamW(groups(model), lr=1e-2)
    train(model, opt)
    FSDP.set_state_dict_type(model, StateDictType.FULL_STATE_DICT)
    osd = FSDP.optim_state_dict(model, opt)
    names = {id(p): n for n, p in plain.named_parameters()}
    order = [names[id(p)] for g in popt.param_groups for p in g["params"]]  # state dict ids
    assert sorted(osd["state"]) == sorted(names.values())
    for i, st in popt.state_dict()["state"].items():
        n = order[i]
        for k, v in st.items():
            np.testing.assert_allclose(osd["state"][n][k].numpy(), v.numpy(), atol=1e-6)
    assert [p for g in osd["param_groups"] for p in g["params"]] == order
    # back in: the optimizer's own state, slice by slice
    before = opt.state_dict()
    loaded = FSDP.optim_state_dict_to_load(model, opt, osd)
    for i, st in before["state"].items():
        for k, v in st.items():
            np.testing.assert_array_equal(loaded["state"][i][k].numpy(), v.numpy())
