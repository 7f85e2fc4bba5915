"""Idioms from PyTorch's tutorials and pytorch/examples that stopped an ``import ember as torch``
port, each checked against torch: ``out=`` on the functions (the tensors tutorial),
``scatter_`` with a 0-d index (the one-hot ``Lambda`` of the transforms tutorial),
``where(cond, 1, 0)`` (siamese_network), ``x.is_xpu`` (dcgan), ``Dropout2d`` after a
``Linear`` (mnist_rnn), ``torchvision.utils.make_grid`` / ``save_image`` (vae, dcgan) and the
printing of ``-inf`` masks (the transformer tutorial)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")


def _np(t):
    return t.detach().numpy()


def _same_dtype(e, t):
    assert str(e.dtype).split(".")[-1] == str(t.dtype).split(".")[-1]


# ---- out= -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, args",
    [
        ("matmul", ([[1.0, 2.0], [3.0, 4.0]], [[0.5, 1.0], [2.0, 1.0]])),
        ("mul", ([[1.0, 2.0]], [[3.0], [4.0]])),
        ("add", ([1, 2, 3], [4, 5, 6])),
        ("cat", None),
        ("sum", None),
    ],
)
def test_out_keyword_writes_into_the_given_tensor(name, args):
    def call(lib, out):
        if name == "cat":
            return lib.cat([lib.ones(2, 2), lib.zeros(1, 2)], out=out)
        if name == "sum":
            return lib.sum(lib.arange(6.0).reshape(2, 3), 0, out=out)
        return getattr(lib, name)(*(lib.tensor(a) for a in args), out=out)

    dt = {"add": "int64"}.get(name, "float32")
    e_out = ember.empty(0, dtype=getattr(ember, dt))
    t_out = torch.empty(0, dtype=getattr(torch, dt))
    e_ret, t_ret = call(ember, e_out), call(torch, t_out)
    assert e_ret is e_out and t_ret is t_out
    np.testing.assert_array_equal(_np(e_out), t_out.numpy())
    _same_dtype(e_out, t_out)


def test_out_keyword_rules_follow_torch():
    a = ember.ones(2, 2)
    wide = ember.empty(2, 2, dtype=ember.float64)
    assert ember.add(a, a, out=wide) is wide and wide.dtype == ember.float64  # widening: fine
    with pytest.raises(
        RuntimeError, match="result type Float can't be cast to the desired output type Long"
    ):
        ember.add(a, a, out=ember.empty(2, 2, dtype=ember.int64))
    with pytest.warns(
        UserWarning,
        match=r"had shape \[3\], which does not match the required "
        r"output shape \[2, 2\]",
    ):
        resized = ember.add(a, a, out=ember.empty(3))
    assert tuple(resized.shape) == (2, 2)
    g = ember.ones(2, requires_grad=True)
    with pytest.raises(
        RuntimeError,
        match=r"mul\(\): functions with out=\.\.\. arguments "
        "don't support automatic differentiation",
    ):
        ember.mul(g, g, out=ember.empty(2))
    with ember.no_grad():
        np.testing.assert_array_equal(_np(ember.mul(g, g, out=ember.empty(2))), [1.0, 1.0])
    with pytest.raises(TypeError, match="argument 'out' must be Tensor, not list"):
        ember.add(a, a, out=[1])


def test_out_keyword_tuples_and_factories_match_torch():
    x = [[3.0, 1.0, 2.0], [0.0, 5.0, 4.0]]
    outs = {}
    for lib in (ember, torch):
        vals, idx = lib.empty(0), lib.empty(0, dtype=lib.int64)
        r = lib.max(lib.tensor(x), 1, out=(vals, idx))
        assert r.values is vals and r.indices is idx
        s = lib.sort(lib.tensor(x), dim=1, out=(lib.empty(0), lib.empty(0, dtype=lib.int64)))
        a = lib.arange(4, out=lib.empty(0, dtype=lib.int32))  # takes out's dtype
        z = lib.zeros(2, 3, out=lib.empty(0, dtype=lib.float64))
        outs[lib] = (vals.numpy(), idx.numpy(), s.values.numpy(), s.indices.numpy(), a, z)
    for e, t in zip(outs[ember], outs[torch]):
        if isinstance(t, torch.Tensor):
            _same_dtype(e, t)
            e, t = e.numpy(), t.numpy()
        np.testing.assert_array_equal(e, t)


# ---- scatter / gather with a 0-d index ------------------------------------------------------
def test_one_hot_target_transform_with_a_0d_index():
    for y in (0, 3, 9):
        e = ember.zeros(10, dtype=ember.float).scatter_(0, ember.tensor(y), value=1)
        t = torch.zeros(10, dtype=torch.float).scatter_(0, torch.tensor(y), value=1)
        np.testing.assert_array_equal(e.numpy(), t.numpy())
    for lib in (ember, torch):
        g = lib.gather(lib.tensor([5, 6, 7]), 0, lib.tensor(1))
        assert g.dim() == 0 and g.item() == 6
        s = lib.zeros(4).scatter_add(0, lib.tensor(1), lib.tensor(2.0))
        np.testing.assert_array_equal(s.numpy(), [0, 2, 0, 0])
    with pytest.raises(RuntimeError, match="Index tensor must have the same number of dim"):
        ember.zeros(2, 2).scatter_(0, ember.tensor(1), value=1)


# ---- where with two Python scalars ----------------------------------------------------------
@pytest.mark.parametrize("a, b", [(1, 0), (1.0, 0), (True, False), (1, 0.5), (2j, 1)])
def test_where_with_two_scalars(a, b):
    cond = [True, False, True]
    e = ember.where(ember.tensor(cond), a, b)
    t = torch.where(torch.tensor(cond), a, b)
    _same_dtype(e, t)
    np.testing.assert_array_equal(e.numpy(), t.numpy())


def test_where_with_scalars_rejects_other_objects():
    with pytest.raises(TypeError, match="expected input and other to be tensors or numbers"):
        ember.where(ember.tensor([True]), "a", 0)


# ---- device predicates ------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["is_xpu", "is_mps", "is_xla", "is_nested", "is_sparse_csr"])
def test_device_predicates_scripts_test(name):
    assert getattr(ember.ones(2), name) is getattr(torch.ones(2), name) is False


# ---- Dropout2d / Dropout3d outside their ranks ---------------------------------------------
def test_dropout2d_after_linear_drops_elements_with_torchs_warning():
    x = ember.ones(64, 64)
    with pytest.warns(UserWarning, match="Received a 2-D input to dropout2d"):
        y = ember.nn.Dropout2d(0.5)(x).numpy()
    assert set(np.unique(y)) == {0.0, 2.0} and 0 < (y == 0).sum(1).min()  # not whole rows
    with pytest.warns(UserWarning, match="assuming that channel-wise 1D dropout"):
        y3 = ember.nn.functional.dropout2d(ember.ones(4, 16, 9), 0.5).numpy()
    assert np.all((y3 == 0).all(-1) | (y3 == 2).all(-1))  # (N, C, L): whole (n, c) rows
    with pytest.warns(UserWarning, match="Received a 2-D input to dropout3d"):
        z = ember.nn.functional.dropout3d(ember.ones(32, 8), 0.5).numpy()
    assert np.all((z == 0).all(-1) | (z == 2).all(-1))  # unbatched: dim 0 is the channel
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ember.nn.Dropout2d(0.5).eval()(ember.ones(2, 3, 4, 4)).sum().item() == 96


# ---- torchvision.utils --------------------------------------------------------------------------
def _grid_reference(batch, nrow, padding, pad_value):
    n, c, h, w = batch.shape
    cols = min(nrow, n)
    rows = -(-n // cols)
    grid = np.full(
        (c, rows * (h + padding) + padding, cols * (w + padding) + padding),
        pad_value,
        dtype=batch.dtype,
    )
    for k in range(n):
        y, x = divmod(k, cols)
        top, left = y * (h + padding) + padding, x * (w + padding) + padding
        grid[:, top : top + h, left : left + w] = batch[k]
    return grid


@pytest.mark.parametrize("n, channels, nrow, padding", [(10, 1, 4, 2), (3, 3, 8, 0), (6, 3, 2, 1)])
def test_make_grid_tiles_like_torchvision(n, channels, nrow, padding):
    from ember.vision.utils import make_grid

    batch = np.random.default_rng(n).random((n, channels, 5, 4)).astype(np.float32)
    grid = make_grid(ember.tensor(batch), nrow=nrow, padding=padding, pad_value=0.5)
    want = _grid_reference(np.repeat(batch, 3 // channels, axis=1), nrow, padding, 0.5)
    np.testing.assert_array_equal(grid.numpy(), want)
    as_list = make_grid(list(ember.tensor(batch)), nrow=nrow, padding=padding, pad_value=0.5)
    np.testing.assert_array_equal(as_list.numpy(), want)


def test_make_grid_normalize_and_save_image(tmp_path):
    from PIL import Image

    import ember.vision as torchvision

    batch = ember.linspace(-1, 1, 2 * 3 * 4 * 4).reshape(2, 3, 4, 4)
    grid = torchvision.utils.make_grid(batch, normalize=True, padding=0)
    assert float(grid.min()) == 0.0 and float(grid.max()) == 1.0
    assert float(batch.min()) == -1.0  # the caller's images are left alone
    each = torchvision.utils.make_grid(batch, normalize=True, scale_each=True, padding=0)
    assert float(each[:, :, :4].max()) == 1.0 and float(each[:, :, 4:].min()) == 0.0
    clipped = torchvision.utils.make_grid(batch, normalize=True, value_range=(0, 1), padding=0)
    plain = torchvision.utils.make_grid(batch.clamp(0, 1), padding=0)
    np.testing.assert_allclose(clipped.numpy(), plain.numpy(), atol=1e-6)
    path = tmp_path / "grid.png"
    torchvision.utils.save_image(batch * 0.5 + 0.5, path, nrow=1)
    img = np.asarray(Image.open(path))
    assert img.shape == (2 * 4 + 3 * 2, 4 + 2 * 2, 3)  # two rows of 4x4 with 2-pixel padding
    want = (batch[0] * 0.5 + 0.5).mul(255).add(0.5).clamp(0, 255).to(ember.uint8)
    np.testing.assert_array_equal(img[2:6, 2:6].transpose(2, 0, 1), want.numpy())
    with pytest.raises(ValueError, match=r"expected images of shape .* got a tensor of shape"):
        torchvision.utils.make_grid(ember.ones(1, 1, 1, 2, 2))


# ---- printing -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "values",
    [
        [[0.0, float("-inf")], [0.0, 0.0]],
        [100.0, float("inf"), 0.0],
        [0.001, 10000.0, 0.0],
        [1.5, float("nan"), 0.0],
    ],
)
def test_float_printing_widths_match_torch(values):
    assert str(ember.tensor(values)) == str(torch.tensor(values))


# ---- Hogwild: a shared model trained in a spawn-ed process --------------------------------------
def test_share_memory_model_is_updated_by_a_spawned_process():
    from _tutorial_workers import hogwild_worker

    import ember.multiprocessing as mp

    ember.manual_seed(0)
    model = ember.nn.Linear(2, 2)
    assert model.share_memory() is model and model.weight.is_shared()
    before = model.weight.detach().clone().numpy()
    p = mp.get_context("spawn").Process(target=hogwild_worker, args=(model,))
    p.start()
    p.join(120)
    assert p.exitcode == 0
    # SGD with momentum 0.5 on a constant gradient of 1: steps of 0.1, 0.15, 0.175
    np.testing.assert_allclose(model.weight.detach().numpy() - before, -0.425, rtol=1e-5)
    plain = ember.nn.Linear(2, 2)  # not shared: the child trains a copy, as in PyTorch
    snapshot = plain.weight.detach().clone().numpy()
    q = mp.get_context("fork").Process(target=hogwild_worker, args=(plain,))
    q.start()
    q.join(120)
    np.testing.assert_array_equal(plain.weight.detach().numpy(), snapshot)


# ---- torch.utils.benchmark: the statement may name the library ------------------------------
def test_benchmark_timer_statement_sees_torch_without_globals():
    from ember.utils import benchmark

    m = benchmark.Timer(stmt="torch.mm(x, x)", globals={"x": ember.randn(8, 8)}).timeit(5)
    assert m.mean > 0
    assert benchmark.Timer(stmt="ember.ones(2).sum()").timeit(2).mean > 0


def test_porting_doc_snippet_runs():
    import pathlib
    import re

    doc = pathlib.Path(__file__).resolve().parent.parent / "docs" / "porting_scripts.md"
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(), re.S)
    assert blocks
    for code in blocks:
        exec(compile(code, str(doc), "exec"), {})


# ---- autograd.grad: WGAN-GP's only_inputs, and is_grads_batched ---------------------------------
def test_gradient_penalty_with_only_inputs_matches_torch():
    rng = np.random.default_rng(0)
    w1, x = rng.standard_normal((4, 3)), rng.standard_normal((5, 3))
    res = {}
    for lib in (ember, torch):
        weight = lib.tensor(w1, requires_grad=True)
        inp = lib.tensor(x, requires_grad=True)
        out = lib.tanh(inp @ weight.T).sum(1, keepdim=True)
        (g,) = lib.autograd.grad(
            outputs=out,
            inputs=inp,
            grad_outputs=lib.ones_like(out),
            create_graph=True,
            retain_graph=True,
            only_inputs=True,
        )
        ((g.norm(2, dim=1) - 1) ** 2).mean().backward()
        res[lib] = (g.detach().numpy(), weight.grad.numpy())
    for e, t in zip(res[ember], res[torch]):
        np.testing.assert_allclose(e, t, rtol=1e-10)
    with pytest.warns(FutureWarning, match="only_inputs argument is deprecated"):
        a = ember.ones(2, requires_grad=True)
        ember.autograd.grad(a.sum(), a, only_inputs=False)


def test_grad_is_grads_batched_gives_the_jacobian_rows():
    x = np.random.default_rng(1).standard_normal(3)
    got = []
    for lib in (ember, torch):
        a = lib.tensor(x, requires_grad=True)
        (jac,) = lib.autograd.grad(
            lib.sin(a) * a, a, lib.eye(3, dtype=lib.float64), is_grads_batched=True
        )
        got.append(jac.detach().numpy())
    np.testing.assert_allclose(got[0], got[1], rtol=1e-12)
