"""Checkpoints: save sharded (and full) on 2 ranks, continue identically on 1, 2 and 3."""

from __future__ import annotations

import numpy as np
import pytest
from sharding_procs import run_ranks

ATOL = 2e-5  # float32: sums over 12 samples split 1, 2 or 3 ways round differently


def _arrays(folder, name):
    return dict(np.load(folder / name))


def _part(arrays, prefix):
    return {k[len(prefix) + 1 :]: v for k, v in arrays.items() if k.startswith(prefix + "/")}


def test_sharded_resume_on_same_ranks(ckpt_dir):
    for r in range(2):
        a = _arrays(ckpt_dir, f"ckpt_save-rank{r}.npz")
        cont, res = _part(a, "continued"), _part(a, "resumed")
        assert sorted(cont) == sorted(res) and len(cont) == 12
        for k in cont:
            np.testing.assert_array_equal(res[k], cont[k], err_msg=k)
    files = sorted(p.name for p in (ckpt_dir / "sharded").iterdir())
    assert files == ["index.json", "shard-00000-of-00002.ember", "shard-00001-of-00002.ember"]


@pytest.mark.parametrize("world", [1, 3])
def test_continue_on_other_rank_counts(ckpt_dir, world):
    run_ranks(world, "ckpt_load", ckpt_dir)
    cont = _part(_arrays(ckpt_dir, "ckpt_save-rank0.npz"), "continued")
    for r in range(world):
        a = _arrays(ckpt_dir, f"ckpt_load{world}-rank{r}.npz")
        for form in ("from_sharded", "from_full", "from_resharded"):
            got = _part(a, form)
            assert sorted(got) == sorted(cont), form
            for k in cont:
                np.testing.assert_allclose(
                    got[k], cont[k], rtol=0, atol=ATOL, err_msg=f"{form} {k} on {world} ranks"
                )
