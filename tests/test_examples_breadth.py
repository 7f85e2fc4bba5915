"""Idioms from pytorch/examples programs (siamese_network, gcn) that behaved unlike PyTorch in an
``import ember as torch`` port, each checked against torch: binary cross-entropy on
probabilities of exactly 0 or 1, and arithmetic that yields inf / nan (``1 / row_sums`` with empty
rows, then ``x[x == inf] = 0``), which PyTorch computes without a warning."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")


def _runtime_warnings(fn):
    """Run fn; return (its result, the RuntimeWarnings it raised). The "always" filter is
    appended, so filters already in force (ember's own) still come first."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.filterwarnings("always", category=RuntimeWarning, append=True)
        out = fn()
    return out, [w for w in caught if issubclass(w.category, RuntimeWarning)]


@pytest.mark.parametrize("weighted", [False, True])
def test_bce_on_saturated_probabilities_matches_torch_silently(weighted):
    # siamese_network: a sigmoid output that rounds to exactly 1.0 (or 0.0) in float32
    x = np.array([0.0, 1.0, 0.5, 1.0, 0.0], np.float32)
    t = np.array([1.0, 1.0, 0.0, 0.0, 0.0], np.float32)
    w = np.array([1.0, 2.0, 0.5, 1.0, 3.0], np.float32) if weighted else None

    def run(lib):
        xt = lib.tensor(x, requires_grad=True)
        wt = lib.tensor(w) if w is not None else None
        loss = lib.nn.BCELoss(weight=wt)(xt, lib.tensor(t))
        loss.backward()
        return loss.detach().numpy(), xt.grad.numpy()

    (e_loss, e_grad), caught = _runtime_warnings(lambda: run(ember))
    t_loss, t_grad = run(torch)
    assert caught == []
    np.testing.assert_allclose(e_loss, t_loss, rtol=1e-6)
    np.testing.assert_allclose(e_grad, t_grad, rtol=1e-6)


def test_bce_is_silent_even_when_warnings_are_errors():
    # the clamp at -100 is PyTorch's contract, not an accident worth a warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss = ember.nn.functional.binary_cross_entropy(
            ember.tensor([1.0, 0.0]), ember.tensor([0.0, 1.0])
        )
    assert loss.item() == pytest.approx(100.0)


_EXPRS = {
    "rdiv": lambda T, a: 1 / a,
    "zero_by_zero": lambda T, a: a / a,
    "log": lambda T, a: T.log(a),
    "sqrt_negative": lambda T, a: T.sqrt(a - 1),
    "rsqrt": lambda T, a: T.rsqrt(a),
    "reciprocal": lambda T, a: a.reciprocal(),
}


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # pytest resets the import's filter
@pytest.mark.parametrize("name", sorted(_EXPRS))
def test_inf_and_nan_results_match_torch(name):
    a = np.array([0.0, 2.0, 0.0, 4.0], np.float32)
    got = _EXPRS[name](ember, ember.tensor(a)).numpy()
    want = _EXPRS[name](torch, torch.tensor(a)).numpy()
    np.testing.assert_array_equal(got, want)  # inf and nan in the same places


def _gcn_row_normalisation(lib):
    # gcn/main.py: scale rows by 1 / row-sum, zeroing the rows that sum to 0
    feats = np.array([[1, 0, 1], [0, 0, 0], [2, 1, 1]], np.int32)
    f = lib.FloatTensor(feats)
    scale = 1 / lib.sum(f, dim=1)
    scale[scale == float("inf")] = 0
    deg = lib.sqrt(1 / lib.sum(lib.eye(3) + f @ f.T, dim=1))
    return (lib.diag(scale) @ f).numpy(), deg.numpy()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # pytest resets the import's filter
def test_gcn_row_normalisation_idiom_matches_torch():
    got, got_deg = _gcn_row_normalisation(ember)
    want, want_deg = _gcn_row_normalisation(torch)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    np.testing.assert_allclose(got_deg, want_deg, rtol=1e-6)


_SILENT_SCRIPT = """
import numpy as np, ember
a = np.array([0.0, 2.0, 0.0, 4.0], np.float32)
for fn in (lambda x: 1 / x, lambda x: x / x, ember.log, lambda x: ember.sqrt(x - 1), ember.rsqrt,
           lambda x: x.reciprocal()):
    x = ember.tensor(a, requires_grad=True)
    fn(x).sum().backward()  # the backward passes divide by zero too
f = ember.tensor([[1.0, 0.0], [0.0, 0.0]])
scale = 1 / ember.sum(f, dim=1)
scale[scale == float("inf")] = 0
try:
    np.log(np.zeros(1))
except RuntimeWarning:
    print("user numpy still warns")
"""


def test_inf_and_nan_arithmetic_is_silent_in_a_script():
    # As a user's script meets it: RuntimeWarnings made errors on the command line, so any
    # warning from ember's frames would fail the run; NumPy called by the user keeps warning.
    # (A subprocess, because pytest restores the warning filters an import installs.)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    run = subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", "-c", _SILENT_SCRIPT],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "user numpy still warns"


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # pytest resets the import's filter
def test_porting_examples_doc_snippet_runs():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "docs", "porting_examples.md"), encoding="utf-8") as f:
        text = f.read()
    snippet = text.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(snippet, "docs/porting_examples.md", "exec"), {})
