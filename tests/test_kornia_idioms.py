"""Idioms of kornia (0.9.0) that stopped it on ``torch`` resolved to ember, each a small program
of our own with the same idiom, compared with torch where torch defines the behaviour: the
names kornia imports or tests at import and call time (``torch.torch``,
``torch._subclasses.fake_tensor.is_fake``, ``get_proxy_mode``, ``torch.complex32``,
``torch.SymInt``, ``torch._assert_async``, autocast state of ``"mps"``), and ``linspace``'s
values, bit for bit: kornia's warps build their sampling grids from ``linspace``, so a value one
ulp off moves a ``nearest`` sample at a tie to the neighbouring pixel. The rest are kornia's
everyday idioms (colour conversion with autograd, separable blur with a custom kernel,
homography by DLT with SVD, perspective warp through ``meshgrid`` + ``grid_sample``, median
blur through ``unfold``)."""

from __future__ import annotations

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")


def _np(t):
    return t.detach().cpu().numpy()


def _both(fn):
    """``fn`` run on ember and on torch (it receives the module as ``T``)."""
    return fn(ember), fn(torch)


# ---- names kornia reaches for --------------------------------------------------------------
def test_torch_torch_is_the_module_itself():
    # kornia annotates with ``torch.torch.Tensor``
    assert ember.torch is ember and ember.torch.Tensor is ember.Tensor
    assert torch.torch is torch


def test_fake_tensor_proxy_mode_and_functorch_probes():
    from ember._subclasses.fake_tensor import is_fake
    from ember.fx.experimental.proxy_tensor import get_proxy_mode, make_fx

    assert not is_fake(ember.ones(2)) and not ember._C._are_functorch_transforms_active()
    assert get_proxy_mode() is None
    seen = []

    def f(x):
        seen.append(get_proxy_mode() is not None)  # a library skips its fast path when traced
        return x * 2

    make_fx(f)(ember.ones(3))
    assert seen == [True] and get_proxy_mode() is None


def test_autocast_state_of_devices_ember_lacks():
    # kornia asks ``torch.is_autocast_enabled(t)`` for t in ("cpu", "cuda", "mps", "xpu")
    for dev in ("mps", "xpu", "hpu", "xla"):
        assert ember.is_autocast_enabled(dev) is torch.is_autocast_enabled(dev) is False
        assert (
            str(ember.get_autocast_dtype(dev))
            == "ember." + str(torch.get_autocast_dtype(dev)).split(".")[1]
        )
    with pytest.raises(RuntimeError, match="unsupported autocast device_type 'mps'"):
        ember.autocast("mps")


def test_assert_async_and_assert():
    def checks(T):
        T._assert_async(T.tensor(3))
        T._assert_async(T.isfinite(T.tensor(1.0)) & (T.tensor(1.0) > 0), "bandwidth")
        errs = []
        for cond, msg in [(T.tensor(False), "sigma must be positive"), (T.tensor(0.0), None)]:
            with pytest.raises(RuntimeError) as e:
                T._assert_async(cond, msg) if msg else T._assert_async(cond)
            errs.append(str(e.value))
        with pytest.raises(RuntimeError, match="more than one value"):
            T._assert_async(T.tensor([1, 1]))
        with pytest.raises(AssertionError, match="no"):
            T._assert(False, "no")
        return errs

    assert _both(checks)[0] == _both(checks)[1]


def test_symbolic_types_and_complex32_are_named():
    def kind(T, n):  # kornia's size check: isinstance(n, (int, torch.SymInt))
        return isinstance(n, (int, T.SymInt)), isinstance(2.0, T.SymFloat), isinstance(n, T.SymBool)

    assert kind(ember, 3) == kind(torch, 3) == (True, False, False)
    with pytest.raises(TypeError, match="cannot be instantiated"):
        ember.SymInt()
    # kornia's dtype fast path: ``dtype not in (torch.float16, ..., torch.complex32, ...)``
    x = ember.ones(2)
    assert x.dtype not in (ember.float16, ember.complex32, ember.complex64)
    assert ember.chalf is ember.complex32 and ember.complex32.is_complex
    assert ember.complex32.itemsize == torch.complex32.itemsize == 4
    with pytest.raises(TypeError, match="complex32 is not supported"):
        ember.zeros(2, dtype=ember.complex32)


# ---- linspace, bit for bit --------------------------------------------------------------------
@pytest.mark.parametrize("dt", ["float32", "float64", "float16", "bfloat16", "int64", "int32"])
def test_linspace_values_match_torch_bit_for_bit(dt):
    for start, end in [(-1, 1), (0, 1), (-0.9642857, 0.9642857), (-3.3, 7.1), (5, -2), (-7, 9)]:
        for steps in [*range(0, 40), 100, 257, 1000]:
            a = ember.linspace(start, end, steps, dtype=getattr(ember, dt))
            b = torch.linspace(start, end, steps, dtype=getattr(torch, dt))
            if dt == "float64":  # torch's fused multiply-add rounds once: within an ulp
                np.testing.assert_allclose(_np(a), b.numpy(), rtol=0, atol=1e-14)
            else:
                np.testing.assert_array_equal(
                    _np(a.float()), b.float().numpy(), err_msg=f"{start, end, steps}"
                )


def _warp_nearest(T, img, m, h, w):
    """kornia's warp_affine: a normalized grid from linspace + meshgrid, mapped by ``m``,
    sampled with ``nearest``, ``border`` padding (ties land on the same pixel only if the
    linspace values are torch's)."""
    ys, xs = T.meshgrid(T.linspace(-1.0, 1.0, h), T.linspace(-1.0, 1.0, w), indexing="ij")
    gx = m[:, 0, 0, None, None] * xs + m[:, 0, 1, None, None] * ys + m[:, 0, 2, None, None]
    gy = m[:, 1, 0, None, None] * xs + m[:, 1, 1, None, None] * ys + m[:, 1, 2, None, None]
    grid = T.stack([gx, gy], dim=-1)
    F = T.nn.functional
    return F.grid_sample(img, grid, mode="nearest", padding_mode="border", align_corners=True)


def test_affine_warp_nearest_from_linspace_grid():
    rng = np.random.RandomState(0)
    img = rng.rand(2, 3, 24, 32).astype(np.float32)
    m = np.array([[[0.95806456, -0.06129032, -0.25161278], [0.11739132, 0.74347824, -0.07826087]]])
    m = np.repeat(m, 2, 0).astype(np.float32)
    a, b = _both(lambda T: _warp_nearest(T, T.tensor(img), T.tensor(m), 20, 28))
    np.testing.assert_array_equal(_np(a), _np(b))


# ---- kornia's everyday idioms ----------------------------------------------------------------
def _rgb_to_hsv(T, x, eps=1e-8):
    r, g, b = x.unbind(-3)
    mx, argmx = x.max(-3)
    mn = x.min(-3)[0]
    delta = mx - mn
    s = delta / (mx + eps)
    delta = T.where(delta == 0, T.ones_like(delta), delta)
    rc, gc, bc = (mx[..., None, :, :] - x).unbind(-3)
    h = T.stack([bc - gc, 2.0 * delta + rc - bc, 4.0 * delta + gc - rc], -3)
    h = T.gather(h, -3, argmx[..., None, :, :]).squeeze(-3) / delta
    h = (h / 6.0) % 1.0 * 2 * np.pi
    return T.stack([h, s, mx], -3)


def test_rgb_to_hsv_with_gather_and_gradients():
    x0 = np.random.RandomState(1).rand(2, 3, 8, 9).astype(np.float32)

    def run(T):
        x = T.tensor(x0, requires_grad=True)
        y = _rgb_to_hsv(T, x)
        (g,) = T.autograd.grad((y * T.linspace(0, 1, y.numel()).reshape(y.shape)).sum(), x)
        return _np(y), _np(g)

    (ya, ga), (yb, gb) = _both(run)
    np.testing.assert_allclose(ya, yb, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ga, gb, rtol=1e-4, atol=1e-4)


def _gaussian_blur(T, x, k, sigma):
    # separable kernel, reflect padding, depthwise conv2d with a custom (not learned) weight
    t = T.arange(k, dtype=x.dtype) - (k - 1) / 2
    g = T.exp(-(t**2) / (2 * sigma**2))
    g = g / g.sum()
    c = x.shape[1]
    x = T.nn.functional.pad(x, [k // 2] * 4, mode="reflect")
    x = T.nn.functional.conv2d(x, g.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)
    return T.nn.functional.conv2d(x, g.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)


def _median_blur(T, x, k):
    b, c, h, w = x.shape
    cols = T.nn.functional.unfold(x, k, padding=k // 2).view(b, c, k * k, h, w)
    return cols.median(dim=2)[0]


def test_separable_blur_and_median_through_unfold():
    x0 = np.random.RandomState(2).rand(2, 3, 16, 20).astype(np.float32)

    def run(T):
        x = T.tensor(x0, requires_grad=True)
        y = _gaussian_blur(T, x, 5, 1.5)
        (g,) = T.autograd.grad((y * y).sum(), x)
        return _np(y), _np(g), _np(_median_blur(T, T.tensor(x0), 3))

    for a, b in zip(*_both(run)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def _homography_dlt(T, src, dst):
    # 2N x 9 system, the null vector from the SVD's last right-singular vector
    x, y = src.unbind(-1)
    u, v = dst.unbind(-1)
    o, z = T.ones_like(x), T.zeros_like(x)
    ax = T.stack([-x, -y, -o, z, z, z, u * x, u * y, u], -1)
    ay = T.stack([z, z, z, -x, -y, -o, v * x, v * y, v], -1)
    a = T.cat([ax, ay], -2)
    _, _, vh = T.linalg.svd(a.transpose(-2, -1) @ a)
    h = vh[..., -1, :].view(-1, 3, 3)
    return h / h[:, 2:, 2:]


def _warp_perspective(T, img, hmat, h, w):
    ys, xs = T.meshgrid(T.arange(h, dtype=img.dtype), T.arange(w, dtype=img.dtype), indexing="ij")
    pts = T.stack([xs, ys, T.ones_like(xs)], -1).view(1, -1, 3)
    src = pts @ T.linalg.inv(hmat).transpose(-2, -1)
    src = src[..., :2] / src[..., 2:]
    scale = T.tensor([2.0 / (w - 1), 2.0 / (h - 1)])
    grid = (src * scale - 1).view(-1, h, w, 2)
    return T.nn.functional.grid_sample(img, grid, align_corners=True)


def test_homography_by_dlt_and_perspective_warp():
    rng = np.random.RandomState(3)
    src0 = (rng.rand(2, 6, 2) * 20).astype(np.float32)
    h_true = np.array([[1.1, 0.05, 2.0], [-0.03, 0.95, -1.0], [1e-3, -2e-3, 1.0]], np.float32)
    dst0 = np.concatenate([src0, np.ones((2, 6, 1), np.float32)], -1) @ h_true.T
    dst0 = (dst0[..., :2] / dst0[..., 2:]).astype(np.float32)
    img0 = rng.rand(2, 3, 12, 16).astype(np.float32)

    def run(T):
        hmat = _homography_dlt(T, T.tensor(src0, dtype=T.float64), T.tensor(dst0, dtype=T.float64))
        img = T.tensor(img0, requires_grad=True)
        y = _warp_perspective(T, img, hmat.float(), 12, 16)
        (g,) = T.autograd.grad((y * T.linspace(0, 1, y.numel()).reshape(y.shape)).sum(), img)
        return _np(hmat), _np(y), _np(g)

    (ha, ya, ga), (hb, yb, gb) = _both(run)
    np.testing.assert_allclose(ha, np.broadcast_to(h_true, ha.shape), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(ha, hb, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(ya, yb, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ga, gb, rtol=1e-4, atol=1e-5)


def test_porting_examples_kornia_snippet_runs(capsys):
    import pathlib

    doc = pathlib.Path(__file__).resolve().parents[1] / "docs" / "porting_examples.md"
    section = doc.read_text().split("\n## kornia\n", 1)[1].split("\n## ", 1)[0]
    exec(compile(section.split("```python\n", 1)[1].split("```", 1)[0], "kornia-doc", "exec"), {})
    shape, value = capsys.readouterr().out.rsplit(")", 1)
    assert shape == "(2, 3, 20, 28" and float(value) == torch.linspace(-1, 1, 28)[13].item()
