"""PyTorch parity for every op of the op table, and type promotion against torch.result_type.

Each sample runs in both frameworks on the same float32 values. Tolerances (float32):
- values: each record's ``rtol``/``atol`` (default rtol 1.3e-6, atol 1e-5: torch.testing's
  float32 defaults; 1e-5 relative for reductions whose summation order differs);
- gradients of ``sum(out * g)`` for a random ``g``: the record's ``grad_rtol``/``grad_atol``
  (default 1e-5 / 1e-5).
Shapes, dtypes and ``requires_grad`` of every output must match exactly, and integer/bool
values must be equal.
"""

from __future__ import annotations

import numpy as np
import pytest
from op_support import (
    all_samples,
    flat_outputs,
    framework_inputs,
    sample_arrays,
    sample_id,
    to_numpy,
)
from op_table import OPS

import ember

torch = pytest.importorskip("torch")


def _dtype_name(t) -> str:
    return str(t.dtype).replace("torch.", "") if isinstance(t, torch.Tensor) else t.dtype.name


def _assert_close(got, want, rtol, atol, what):
    got, want = to_numpy(got), to_numpy(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape} vs torch {want.shape}"
    if want.dtype.kind in "fc":
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=what)
    else:
        np.testing.assert_array_equal(got, want, err_msg=what)


@pytest.mark.parametrize("pair", all_samples(OPS), ids=sample_id)
def test_matches_torch(pair):
    spec, i = pair
    arrays = sample_arrays(spec, i)
    kwargs = spec.samples[i].kwargs
    e_in = framework_inputs(ember, arrays, requires_grad=spec.grad)
    t_in = framework_inputs(torch, arrays, requires_grad=spec.grad)
    e_out = flat_outputs(spec.call(ember, *e_in, **kwargs))
    t_out = flat_outputs(spec.call_torch(torch, *t_in, **kwargs))
    assert len(e_out) == len(t_out)
    for k, (e, t) in enumerate(zip(e_out, t_out)):
        what = f"{spec.name}-{i} output {k}"
        assert _dtype_name(e) == _dtype_name(t), f"{what}: dtype {e.dtype} vs torch {t.dtype}"
        _assert_close(e, t, spec.rtol, spec.atol, what)
        assert e.requires_grad == t.requires_grad, f"{what}: requires_grad differs"
    if not spec.grad or not spec.torch_grad:
        return
    # gradients of sum(out * g) with respect to every float input
    pairs = [(e, t) for e, t in zip(e_out, t_out) if t.requires_grad]
    e_wrt = [x for x in e_in if isinstance(x, ember.Tensor) and x.requires_grad]
    t_wrt = [x for x in t_in if isinstance(x, torch.Tensor) and x.requires_grad]
    if not pairs or not t_wrt:
        return
    rng = np.random.default_rng(i)
    gs = [rng.standard_normal(tuple(t.shape)).astype(to_numpy(t).dtype) for _, t in pairs]
    e_grads = ember.autograd.grad(
        [e for e, _ in pairs], e_wrt, [ember.tensor(g) for g in gs], allow_unused=True
    )
    t_grads = torch.autograd.grad(
        [t for _, t in pairs], t_wrt, [torch.from_numpy(g) for g in gs], allow_unused=True
    )
    for k, (x, eg, tg) in enumerate(zip(t_wrt, e_grads, t_grads)):
        eg = np.zeros(tuple(x.shape)) if eg is None else to_numpy(eg)
        tg = np.zeros(tuple(x.shape)) if tg is None else to_numpy(tg)
        _assert_close(eg, tg, spec.grad_rtol, spec.grad_atol, f"{spec.name}-{i} grad {k}")


# ---- type promotion ------------------------------------------------------------------------
DTYPES = [
    "bool",
    "uint8",
    "int8",
    "int16",
    "int32",
    "int64",
    "float16",
    "bfloat16",
    "float32",
    "float64",
]
SHAPES = [((2,), (2,)), ((2,), ()), ((), (2,)), ((), ())]


def _pair(da, db, sa, sb):
    a = np.ones(sa, dtype=np.float32)
    b = np.full(sb, 2, dtype=np.float32)
    e = (ember.tensor(a, dtype=getattr(ember, da)), ember.tensor(b, dtype=getattr(ember, db)))
    t = (torch.from_numpy(a).to(getattr(torch, da)), torch.from_numpy(b).to(getattr(torch, db)))
    return e, t


@pytest.mark.parametrize("db", DTYPES)
@pytest.mark.parametrize("da", DTYPES)
def test_promotion_tensor_pairs(da, db):
    """dim and 0-d tensors of every dtype pair: result_type and the ops' result dtypes."""
    for sa, sb in SHAPES:
        (ea, eb), (ta, tb) = _pair(da, db, sa, sb)
        where = f"{da}{list(sa)} with {db}{list(sb)}"
        assert ember.result_type(ea, eb).name == _dtype_name(
            torch.empty(0, dtype=torch.result_type(ta, tb))
        ), where
        ops = [
            lambda x, y: x + y,
            lambda x, y: x * y,
            lambda x, y: x / y,
            lambda x, y: x == y,
            lambda m_x, y: m_x.maximum(y) if hasattr(m_x, "maximum") else None,
        ]
        for k, op in enumerate(ops):
            assert _dtype_name(op(ea, eb)) == _dtype_name(op(ta, tb)), f"op {k}: {where}"


@pytest.mark.parametrize("scalar", [True, 3, 2.5, 1j], ids=["bool", "int", "float", "complex"])
@pytest.mark.parametrize("da", DTYPES)
def test_promotion_tensor_scalar(da, scalar):
    """Python scalars are weak: they only lift a tensor to a higher category."""
    if isinstance(scalar, complex) and da in ("float16", "bfloat16"):
        pytest.skip("complex32 has no NumPy counterpart")
    for shape in [(2,), ()]:
        (ea, _), (ta, _) = _pair(da, da, shape, shape)
        assert ember.result_type(ea, scalar).name == _dtype_name(
            torch.empty(0, dtype=torch.result_type(ta, scalar))
        ), f"{da}{list(shape)}"
        if not isinstance(scalar, complex):
            for op in (lambda x, s: x + s, lambda x, s: s * x, lambda x, s: x / s):
                assert _dtype_name(op(ea, scalar)) == _dtype_name(op(ta, scalar)), da


def test_promotion_examples():
    """The cases the issue names, spelled out."""
    i64 = ember.tensor([1, 2])
    assert (i64 + 1.5).dtype == ember.float32  # int tensor + float scalar -> default float
    assert (ember.tensor([1], dtype=ember.int32) + ember.tensor([1])).dtype == ember.int64
    # a 0-d tensor does not upcast a dim tensor of the same category ...
    assert (ember.tensor([1.0]) + ember.tensor(1.0, dtype=ember.float64)).dtype == ember.float32
    assert (ember.tensor([1], dtype=ember.int8) + ember.tensor(1000)).dtype == ember.int8
    # ... but does lift it to a higher category
    assert (ember.tensor([1]) + ember.tensor(1.0, dtype=ember.float64)).dtype == ember.float64
    b = ember.tensor([True, False])
    assert (b + b).dtype == ember.bool and (b + b).tolist() == [True, False]
    assert (b * 2).dtype == ember.int64 and (b + 1.0).dtype == ember.float32
    assert (ember.tensor([1, 2]) / ember.tensor([2, 2])).dtype == ember.float32
    assert (ember.tensor([7, -7]) // 2).tolist() == (torch.tensor([7, -7]) // 2).tolist()


def test_contiguity_matches_torch():
    """is_contiguous() and stride() after views, and contiguous() copies only when needed."""
    views = [
        lambda x: x,
        lambda x: x.t(),
        lambda x: x[:, 1:3],
        lambda x: x[::2],
        lambda x: x.unsqueeze(1),
        lambda x: x.t().contiguous(),
        lambda x: x.expand(2, 3, 4),
        lambda x: x[None, :, 2],
        lambda x: x.permute(1, 0).reshape(12),
    ]
    e, t = ember.zeros(3, 4), torch.zeros(3, 4)
    for k, view in enumerate(views):
        ev, tv = view(e), view(t)
        assert ev.is_contiguous() == tv.is_contiguous(), f"view {k}"
        if tv.is_contiguous():
            assert ev.stride() == tv.stride(), f"view {k}"
        c = ev.contiguous()
        assert c.is_contiguous() and (c is ev) == tv.is_contiguous(), f"view {k}"
