"""Normalisation layers on rows holding non-finite values match PyTorch, forward and gradients.

Regression: the compiled (numba) row kernel was built with full ``fastmath``; ``1 / sqrt(inf)``
then became a reciprocal-sqrt estimate plus a Newton step (NaN, not 0), so ``rms_norm`` of a
row holding +inf gave an all-NaN row where PyTorch gives 0 for the finite elements.
"""

from __future__ import annotations

import numpy as np
import pytest

import ember
from ember.ops import norm_rows

torch = pytest.importorskip("torch")

# NumPy's "invalid value" warnings from the NumPy kernels (ember's own filter is reset by pytest)
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

INF, NAN = float("inf"), float("nan")
ROWS = {
    "pinf": [1.0, INF, 2.0, 3.0],
    "ninf": [1.0, -INF, 2.0, 3.0],
    "nan": [1.0, NAN, 2.0, 3.0],
    "both_inf": [INF, -INF, 1.0, 2.0],
    "zeros": [0.0, 0.0, 0.0, 0.0],
}


def _run(lib, kind: str, row, dtype: str, affine: bool):
    """Forward and every gradient of one normalisation over ``[row, finite row]``."""
    dt = getattr(lib, dtype)
    x = lib.tensor([row, [1.0, 2.0, 3.0, 4.0]], dtype=dt, requires_grad=True)
    w = b = None
    if affine:
        w = lib.tensor([0.5, 1.5, -1.0, 2.0], dtype=dt, requires_grad=True)
        b = lib.tensor([0.1, 0.2, 0.3, 0.4], dtype=dt, requires_grad=True)
    F = lib.nn.functional
    if kind == "rms":
        y = F.rms_norm(x, (4,), w, eps=1e-6)
        b = None
    elif kind == "layer":
        y = F.layer_norm(x, (4,), w, b)
    else:
        y = F.group_norm(x.reshape(2, 4, 1), 2, w, b).reshape(2, 4)
    y.backward(lib.tensor([[1.0, -2.0, 3.0, 0.5], [0.3, 0.2, 0.1, -1.0]], dtype=dt))
    out = {"y": y, "grad_x": x.grad, "grad_w": w.grad if w is not None else None}
    out["grad_b"] = b.grad if b is not None else None
    return {k: v.detach().numpy() for k, v in out.items() if v is not None}


@pytest.fixture(params=["compiled", "numpy"])
def kernel_path(request, monkeypatch):
    """Run on the numba row kernels (when installed) and on the NumPy ones."""
    if request.param == "numpy":
        monkeypatch.setattr(norm_rows, "_numba", False)
    return request.param


@pytest.mark.parametrize("kind", ["rms", "layer", "group"])
@pytest.mark.parametrize("row", list(ROWS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_norm_nonfinite_matches_torch(kernel_path, kind, row, dtype):
    for affine in (False, True):
        want = _run(torch, kind, ROWS[row], dtype, affine)
        got = _run(ember, kind, ROWS[row], dtype, affine)
        assert want.keys() == got.keys()
        for key in want:
            t, e = want[key], got[key]
            assert np.array_equal(np.isnan(t), np.isnan(e)), (key, affine, t, e)
            np.testing.assert_allclose(
                np.nan_to_num(e, nan=0.0), np.nan_to_num(t, nan=0.0), rtol=1e-4, atol=1e-5
            )


def test_rms_norm_module_inf_row():
    """The reported case: ``nn.RMSNorm`` on a row with +inf keeps 0 for the finite elements."""
    x = [[1.0, INF, 2.0, 3.0]]
    got = ember.nn.RMSNorm(4)(ember.tensor(x)).detach().numpy()
    want = torch.nn.RMSNorm(4)(torch.tensor(x)).detach().numpy()
    np.testing.assert_array_equal(got, want)
    assert got[0, 0] == 0.0 and np.isnan(got[0, 1])
