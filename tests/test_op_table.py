"""The op table's drivers: forward vs NumPy, float64 gradcheck and gradgradcheck, and
hypothesis-drawn broadcasting shapes for the binary elementwise ops.

Forward tolerances: float32 results are compared with a float64 NumPy reference of the same
input values at each record's ``rtol``/``atol`` (default rtol 1.3e-6, atol 1e-5, torch's
float32 defaults); float64 results at rtol 1e-10, atol 1e-12. Integer and bool results must be
exact. Gradients: central differences in float64 (``ember.autograd.gradcheck`` defaults,
eps 1e-6, atol 1e-5, rtol 1e-3).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from op_support import (
    Arg,
    all_samples,
    flat_outputs,
    framework_inputs,
    grad_samples,
    make_array,
    reference_inputs,
    sample_arrays,
    sample_id,
    to_numpy,
)
from op_table import OPS, OPS_BY_NAME

import ember
from ember.autograd import gradcheck, gradgradcheck


def _check_against_reference(spec, i, dtype, device=None):
    arrays = sample_arrays(spec, i)
    kwargs = spec.samples[i].kwargs
    inputs = framework_inputs(ember, arrays, float_dtype=dtype, device=device)
    outs = flat_outputs(spec.call(ember, *inputs, **kwargs))
    refs = flat_outputs(spec.ref(*reference_inputs(arrays), **kwargs))
    assert len(outs) == len(refs), f"{spec.name}: {len(outs)} outputs, reference {len(refs)}"
    for k, (out, ref) in enumerate(zip(outs, refs)):
        assert isinstance(out, ember.Tensor), f"{spec.name}: output {k} is {type(out)}"
        got, want = to_numpy(out), np.asarray(ref)
        assert got.shape == want.shape, f"{spec.name} output {k}: {got.shape} vs {want.shape}"
        if got.dtype.kind in "fc":
            if got.dtype == np.float64:
                np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
            else:
                np.testing.assert_allclose(got, want, rtol=spec.rtol, atol=spec.atol)
        else:
            assert want.dtype.kind not in "fc", f"{spec.name}: int result, float reference"
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("pair", all_samples(OPS), ids=sample_id)
def test_forward_matches_numpy(pair, dtype):
    spec, i = pair
    _check_against_reference(spec, i, dtype)


def _grad_inputs(spec, i):
    arrays = sample_arrays(spec, i)
    inputs = framework_inputs(ember, arrays, float_dtype=np.float64, requires_grad=True)
    kwargs = spec.samples[i].kwargs
    return inputs, (lambda *xs: spec.call(ember, *xs, **kwargs))


@pytest.mark.parametrize("pair", grad_samples(OPS), ids=sample_id)
def test_gradcheck(pair):
    spec, i = pair
    inputs, fn = _grad_inputs(spec, i)
    assert gradcheck(fn, inputs)


@pytest.mark.parametrize("pair", grad_samples(OPS, "gradgrad"), ids=sample_id)
def test_gradgradcheck(pair):
    spec, i = pair
    inputs, fn = _grad_inputs(spec, i)
    assert gradgradcheck(fn, inputs)


# ---- hypothesis: broadcasting shapes for the binary elementwise ops ------------------------
BINARY = [spec for spec in OPS if spec.binary]


def _arg_kinds(spec):
    """The Arg specs of the op's first sample: their kinds keep values in the op's domain."""
    a, b = spec.samples[0].args[:2]
    return a, b


def _sum_to(g: np.ndarray, shape: tuple) -> np.ndarray:
    """NumPy un-broadcasting: what the engine must do at every edge."""
    lead = g.ndim - len(shape)
    g = g.sum(axis=tuple(range(lead))) if lead else g
    axes = tuple(k for k, n in enumerate(shape) if n == 1 and g.shape[k] != 1)
    return g.sum(axis=axes, keepdims=True) if axes else g


@pytest.mark.parametrize("name", [spec.name for spec in BINARY])
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    shapes=hnp.mutually_broadcastable_shapes(
        num_shapes=2, min_dims=0, max_dims=4, min_side=0, max_side=3
    ),
    seed=st.integers(0, 2**31 - 1),
)
def test_binary_broadcasting(name, shapes, seed):
    spec = OPS_BY_NAME[name]
    rng = np.random.default_rng(seed)
    ka, kb = _arg_kinds(spec)
    (sa, sb), out_shape = shapes.input_shapes, shapes.result_shape
    arrays = [
        make_array(Arg(sa, ka.kind, "float64"), rng),
        make_array(Arg(sb, kb.kind, "float64"), rng),
    ]
    a, b = framework_inputs(ember, arrays, requires_grad=spec.grad)
    out = spec.call(ember, a, b)
    want = spec.ref(*arrays)
    assert tuple(out.shape) == out_shape == np.shape(want)
    np.testing.assert_allclose(to_numpy(out), want, rtol=1e-10, atol=1e-12)
    if not spec.grad or not out.requires_grad:
        return
    # Gradients through broadcasting equal the un-broadcast gradients of the op applied to
    # explicitly expanded copies (where the engine has nothing to un-broadcast).
    g = rng.standard_normal(out_shape)
    wrt = [t for t in (a, b) if t.requires_grad]
    grads = dict(zip(map(id, wrt), ember.autograd.grad(out, wrt, ember.tensor(g))))
    full = [ember.tensor(np.broadcast_to(x, out_shape).copy(), requires_grad=True) for x in arrays]
    spec.call(ember, *full).backward(ember.tensor(g))
    for t, f, shape in zip((a, b), full, (sa, sb)):
        if not t.requires_grad:
            continue
        grad = grads[id(t)]
        assert tuple(grad.shape) == shape
        np.testing.assert_allclose(
            to_numpy(grad), _sum_to(to_numpy(f.grad), shape), rtol=1e-10, atol=1e-12
        )


# ---- coverage of the issue's op list, and the GPU run of the table ------------------------
ISSUE_2_OPS = """
add sub mul div floor_divide remainder pow matmul neg abs exp log log1p expm1 sqrt rsqrt sin cos
tanh sigmoid relu clamp sign floor ceil round rpow maximum minimum where lerp eq ne lt le gt ge
logical_and logical_or logical_xor logical_not sum mean prod max_all max_dim min_dim amax amin
argmax argmin var std norm logsumexp cumsum cumprod all any reshape view permute transpose squeeze
unsqueeze flatten unflatten expand expand_as repeat cat stack split chunk flip roll tril triu
narrow pad getitem_basic getitem_int_tensor getitem_mask getitem_mixed setitem_basic
setitem_index setitem_mask gather scatter scatter_add index_select index_add masked_fill
masked_select take_along_dim mm bmm einsum outer linalg_norm
""".split()


def test_table_covers_the_issue_ops():
    missing = [name for name in ISSUE_2_OPS if name not in OPS_BY_NAME]
    assert not missing, f"ops of issue 2 without a record in tests/op_table.py: {missing}"


def test_every_record_has_a_reference_and_samples():
    for spec in OPS:
        assert spec.ref is not None and spec.samples, spec.name


@pytest.mark.gpu
@pytest.mark.parametrize("pair", all_samples(OPS), ids=sample_id)
def test_forward_on_gpu(pair):
    spec, i = pair
    _check_against_reference(spec, i, np.float32, device="cuda")


@pytest.mark.gpu
@pytest.mark.parametrize("pair", grad_samples(OPS), ids=sample_id)
def test_backward_on_gpu(pair):
    """float64 gradients on CUDA equal the CPU's (which gradcheck verifies above)."""
    spec, i = pair
    arrays = sample_arrays(spec, i)
    kwargs = spec.samples[i].kwargs
    grads = []
    for device in ("cpu", "cuda"):
        inputs = framework_inputs(
            ember, arrays, float_dtype=np.float64, requires_grad=True, device=device
        )
        outs = [o for o in flat_outputs(spec.call(ember, *inputs, **kwargs)) if o.requires_grad]
        rng = np.random.default_rng(0)
        loss = sum(
            (o * ember.tensor(rng.standard_normal(tuple(o.shape)), device=device)).sum()
            for o in outs
        )
        wrt = [t for t in inputs if isinstance(t, ember.Tensor) and t.requires_grad]
        got = ember.autograd.grad(loss, wrt, allow_unused=True)  # expand_as's other is unused
        grads.append([None if g is None else to_numpy(g) for g in got])
    for k, (cpu, gpu) in enumerate(zip(*grads)):
        if cpu is None or gpu is None:
            assert cpu is None and gpu is None, f"input {k}: a gradient on one device only"
            continue
        np.testing.assert_allclose(gpu, cpu, rtol=1e-9, atol=1e-12, err_msg=f"input {k}")
