"""Every sharding strategy trains to DDP's parameters (10 steps, Adam and SGD + momentum) on
1, 2 and 3 real ranks, and the measured memory per rank follows the ZeRO formulas. FSDP with
MixedPrecision(bfloat16) on 2 ranks trains to a one-process reference doing the same casts."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sharding_procs import run_ranks
from sharding_worker import MP_CONFIGS, OPTIMIZERS, STRATEGIES

ATOL = 1e-5  # float32; in practice the strategies match DDP to the last bit here


def _load(folder, world):
    return [dict(np.load(folder / f"parity-rank{r}.npz")) for r in range(world)]


@pytest.mark.parametrize("world", [1, 2, 3])
def test_strategies_match_ddp(sharding_run, world):
    ranks = _load(sharding_run(world), world)
    arrays = ranks[0]
    for oname in OPTIMIZERS:
        ref = {k.split("/", 2)[2]: v for k, v in arrays.items() if k.startswith(f"{oname}/ddp/")}
        assert len(ref) == 12, sorted(ref)  # 2 linears + 2 x (linear, layernorm), w and b
        for sname in STRATEGIES:
            got = {
                k.split("/", 2)[2]: v
                for k, v in arrays.items()
                if k.startswith(f"{oname}/{sname}/")
            }
            assert sorted(got) == sorted(ref), (oname, sname)
            for k in ref:
                np.testing.assert_allclose(
                    got[k],
                    ref[k],
                    rtol=0,
                    atol=ATOL,
                    err_msg=f"{oname} {sname} {k} on {world} ranks",
                )
    init = {k: v for k, v in arrays.items() if "/ddp/" in k}
    assert any(np.abs(v).sum() > 0 for v in init.values())
    for r, other in enumerate(ranks[1:], 1):  # every rank ends with the same parameters
        for k, v in arrays.items():
            np.testing.assert_array_equal(other[k], v, err_msg=f"rank {r} differs on {k}")


def test_memory_report_follows_formulas(sharding_run):
    world = 2
    rep = json.loads((sharding_run(world) / "memory-rank0.json").read_text())
    psi = rep["numel"]
    pad = 4 * 4 * world * 4  # at most (world - 1) padding elements per flat buffer, 4 buffers

    def close(measured, formula, slack=pad + 256):  # slack: padding and 0-d step tensors
        assert formula <= measured <= formula + slack, (measured, formula)

    ddp, z1, z1w, z2, z3 = (
        rep[k] for k in ("ddp", "zero1", "zero1_wrapper", "zero2", "fsdp_full_shard")
    )
    close(ddp["parameters"], 4 * psi)
    close(ddp["gradients"], 4 * psi)
    close(ddp["optimizer_state"], 8 * psi)
    close(ddp["communication_buffers"], 4 * psi)  # DDP's buckets
    close(z1["parameters"], 4 * psi)
    close(z1["gradients"], 4 * psi)
    close(z1["optimizer_state"], 8 * psi // world)
    close(z1w["parameters"], 4 * psi)
    close(z1w["gradients"], 4 * psi)
    close(z1w["optimizer_state"], 8 * psi // world)
    close(z2["parameters"], 4 * psi)
    close(z2["gradients"], 4 * psi // world)
    close(z2["optimizer_state"], 8 * psi // world)
    close(z3["parameters"], 4 * psi // world)
    close(z3["gradients"], 4 * psi // world)
    close(z3["optimizer_state"], 8 * psi // world)
    assert rep["fsdp_resident_after_step"] == 0
    for r in (z1w, z2, z3):
        assert r["communication_buffers"] == 0  # nothing in flight between steps


# ---- mixed precision: MixedPrecision(param_dtype=bfloat16, ...) on 2 real ranks ----------
BF16_RTOL = 2.0**-8  # half a bfloat16 ulp; in practice FSDP matches its reference exactly


@pytest.fixture(scope="module")
def mp_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("mixed_precision")
    run_ranks(2, "mixed_precision", out)
    ranks = [dict(np.load(out / f"mixed_precision-rank{r}.npz")) for r in range(2)]
    infos = [json.loads((out / f"mixed_precision-rank{r}.json").read_text()) for r in range(2)]
    return ranks, infos


def _part(arrays, prefix):
    return {k[len(prefix) + 1 :]: v for k, v in arrays.items() if k.startswith(prefix + "/")}


@pytest.mark.parametrize("name", sorted(MP_CONFIGS))
def test_mixed_precision_dtypes(mp_run, name):
    for info in mp_run[1]:
        seen = info[name]
        assert seen["out"] == ["ember.bfloat16"]  # forward computed in param_dtype
        assert seen["param"] == ["ember.float32"]  # the sharded master parameters stay fp32
        low = name == "bf16_keep_low"  # keep_low_precision_grads: the grad stays in bf16
        assert seen["grad"] == ["ember.bfloat16" if low else "ember.float32"]
        assert seen["state_dict"] == ["ember.float32"]  # parameters and the cast buffer
        assert seen["buffer_in_module"] == "ember.bfloat16"


@pytest.mark.parametrize("name", sorted(MP_CONFIGS))
def test_mixed_precision_matches_reference(mp_run, name):
    """The fp32 parameters after 4 SGD steps equal a one-process run doing the same casts."""
    ranks = mp_run[0]
    init = _part(ranks[0], "init")
    for r, arrays in enumerate(ranks):
        got, ref = _part(arrays, f"{name}/fsdp"), _part(arrays, f"{name}/ref")
        assert sorted(got) == sorted(ref) == sorted(init) and len(got) == 13
        for k in ref:
            if k == "stat":  # the buffer: cast to bf16 in the module, saved back as fp32
                np.testing.assert_array_equal(got[k], np.float32(1.1015625))
                continue
            np.testing.assert_allclose(
                got[k], ref[k], rtol=BF16_RTOL, atol=1e-6, err_msg=f"{name} {k} on rank {r}"
            )
            assert got[k].dtype == np.float32
        assert any(np.abs(got[k] - init[k]).max() > 1e-3 for k in got)  # it trained
    for k, v in _part(ranks[0], name).items():  # both ranks end with the same parameters
        np.testing.assert_array_equal(_part(ranks[1], name)[k], v, err_msg=f"{name} {k}")


def test_mixed_precision_casts_change_the_result(mp_run):
    """bf16 compute differs from fp32 training, and bf16 reductions from fp32 ones."""
    a = mp_run[0][0]
    fp32, bf16 = _part(a, "fp32/fsdp"), _part(a, "bf16/fsdp")
    red32 = _part(a, "bf16_reduce_fp32/fsdp")
    w = [k for k in fp32 if k != "stat"]
    assert max(np.abs(bf16[k] - fp32[k]).max() for k in w) > 1e-4
    assert max(np.abs(bf16[k] - red32[k]).max() for k in w) > 1e-5
