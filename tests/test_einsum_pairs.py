"""Two-operand einsum as one batched matrix product (core/ops/einsum_pairs.py): every index
role (batch, contracted, free, summed alone), ellipses, scalars and the fallbacks agree with
NumPy's einsum, and gradients with torch.einsum."""

from __future__ import annotations

import numpy as np
import pytest

import ember
from ember.ops.einsum_pairs import contract

SPECS = [
    "ij,jk->ik",
    "bhid,bhjd->bhij",
    "bhij,bhjd->bhid",
    "bid,bjd->bij",
    "ij,kj->ik",
    "i,i->",
    "i,j->ij",
    "bi,bi->b",
    "ijk,k->ij",
    "abc,cd->dba",  # output permuted
    "aij,jk->ki",  # 'a' summed in the first operand alone
    "ij,jkl->il",  # 'k' summed in the second operand alone
    "...ij,...jk->...ik",
    "b...d,bd->b...",
    ",ij->ij",  # a scalar operand
    "ii,ij->j",  # a diagonal: NumPy's einsum
    "ij,jk",  # implicit output
]


def _operands(rng, spec, dtype=np.float64):
    lhs = spec.split("->")[0].split(",")
    sizes = {c: 2 + (ord(c) % 4) for c in "abcdhijkl"}
    ops = []
    for t in lhs:
        shape = []
        for c in t.replace("...", "E"):
            shape += [3, 2] if c == "E" else [sizes[c]]
        ops.append(rng.standard_normal(shape).astype(dtype))
    return ops


@pytest.mark.parametrize("spec", SPECS)
def test_forward_matches_numpy(spec):
    rng = np.random.default_rng(0)
    ops = _operands(rng, spec)
    got = ember.einsum(spec, *[ember.tensor(o) for o in ops]).numpy()
    np.testing.assert_allclose(got, np.einsum(spec, *ops), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("spec", ["bhid,bhjd->bhij", "aij,jk->ki", "b...d,bd->b...", "i,i->"])
def test_gradients_match_torch(spec):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    ops = _operands(rng, spec, np.float32)
    xe = [ember.tensor(o, requires_grad=True) for o in ops]
    xt = [torch.tensor(o, requires_grad=True) for o in ops]
    ye, yt = ember.einsum(spec, *xe), torch.einsum(spec, *xt)
    w = rng.standard_normal(tuple(yt.shape)).astype(np.float32)
    (ye * ember.tensor(w)).sum().backward()
    (yt * torch.tensor(w)).sum().backward()
    np.testing.assert_allclose(ye.detach().numpy(), yt.detach().numpy(), rtol=1e-5, atol=1e-5)
    for e, t in zip(xe, xt):
        np.testing.assert_allclose(e.grad.numpy(), t.grad.numpy(), rtol=1e-5, atol=1e-5)


def test_gradcheck_float64():
    rng = np.random.default_rng(2)
    a = ember.tensor(rng.standard_normal((2, 3, 4)), requires_grad=True)
    b = ember.tensor(rng.standard_normal((2, 5, 4)), requires_grad=True)
    assert ember.autograd.gradcheck(lambda x, y: ember.einsum("bid,bjd->bij", x, y), (a, b))


def test_fallbacks():
    rng = np.random.default_rng(3)
    i = np.arange(6).reshape(2, 3)
    np.testing.assert_array_equal(contract(np, ["ij", "kj"], "ik", [i, i]), i @ i.T)
    a = rng.standard_normal((3, 1))  # size 1 against 4: broadcasting is einsum's
    b = rng.standard_normal((4, 4))
    np.testing.assert_allclose(contract(np, ["ij", "jk"], "ik", [a[:, :1], b[:1]]), a @ b[:1])
    a32, a64 = rng.standard_normal((2, 2)).astype(np.float32), rng.standard_normal((2, 2))
    np.testing.assert_allclose(contract(np, ["ij", "jk"], "ik", [a32, a64]), a32 @ a64)
