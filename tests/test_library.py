"""ember.library custom operators, ember.ops.<ns>, and make_fx (docs/custom_ops.md).

The ops here are this file's own small programs in the idioms of PyTorch's custom-op tutorial
(NumPy kernels, a mutating kernel, a crop with a registered backward); torch.library runs the
same definitions where the comparison is about behaviour (results, opcheck outcomes, schemas).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

import ember
from ember import library
from ember.library._opcheck import OpCheckError

torch = pytest.importorskip("torch")


# ---- the ops under test, defined once per process -----------------------------------------
@library.custom_op("embt::np_sin", mutates_args=())
def np_sin(x: ember.Tensor) -> ember.Tensor:
    return ember.from_numpy(np.sin(x.numpy()))


@np_sin.register_fake
def _(x):
    return ember.empty_like(x)


def _sin_setup(ctx, inputs, output):
    ctx.save_for_backward(inputs[0])


def _sin_backward(ctx, grad):
    (x,) = ctx.saved_tensors
    return grad * x.cos()


np_sin.register_autograd(_sin_backward, setup_context=_sin_setup)


@library.custom_op("embt::np_sin_out", mutates_args={"out"}, device_types="cpu")
def np_sin_out(x: ember.Tensor, out: ember.Tensor) -> None:
    np.sin(x.numpy(), out=out.numpy())


@library.custom_op("embt::window", mutates_args=())
def window(img: ember.Tensor, box: Sequence[int]) -> ember.Tensor:
    x0, y0, x1, y1 = box
    return ember.from_numpy(img.numpy()[:, y0:y1, x0:x1].copy())


@window.register_fake
def _(img, box):
    x0, y0, x1, y1 = box
    return img.new_empty(img.shape[0], y1 - y0, x1 - x0)


def _window_backward(ctx, grad):
    g = grad.new_zeros(ctx.shape)
    x0, y0 = ctx.box[:2]
    g[:, y0 : y0 + grad.shape[1], x0 : x0 + grad.shape[2]] = grad
    return g, None


def _window_setup(ctx, inputs, output):
    ctx.shape, ctx.box = inputs[0].shape, inputs[1]


window.register_autograd(_window_backward, setup_context=_window_setup)


@library.custom_op("embt::sneaky", mutates_args=())  # writes into x without saying so
def sneaky(x: ember.Tensor) -> ember.Tensor:
    x.numpy()[...] += 1
    return ember.from_numpy(x.numpy().copy())


@sneaky.register_fake
def _(x):
    return ember.empty_like(x)


@library.custom_op("embt::wrong_fake", mutates_args=())
def wrong_fake(x: ember.Tensor) -> ember.Tensor:
    return ember.from_numpy(x.numpy().sum(0))


@wrong_fake.register_fake
def _(x):
    return ember.empty_like(x)  # wrong: the kernel reduces dim 0


@library.custom_op("embt::no_grad_rule", mutates_args=())
def no_grad_rule(x: ember.Tensor) -> ember.Tensor:
    return ember.from_numpy(np.exp(x.numpy()))


# ---- calling, schemas, ember.ops ----------------------------------------------------------
def test_call_and_ops_namespace():
    x = ember.randn(5)
    want = np.sin(x.numpy())
    for fn in (np_sin, ember.ops.embt.np_sin, ember.ops.embt.np_sin.default):
        np.testing.assert_allclose(fn(x).numpy(), want, rtol=1e-6)
    assert str(ember.ops.embt.np_sin.default) == "embt.np_sin.default"
    assert str(np_sin._schema) == "embt::np_sin(Tensor x) -> Tensor"
    assert "np_sin" in list(ember.ops.embt)
    with pytest.raises(AttributeError, match="no operator embt::missing"):
        ember.ops.embt.missing  # noqa: B018
    with pytest.raises(TypeError, match="embt::np_sin"):
        np_sin(x, x)
    with pytest.raises(TypeError, match="must be a Tensor"):
        np_sin([1.0])
    from ember.ops import view_copies  # an unimported submodule is never shadowed

    assert view_copies.__name__ == "ember.ops.view_copies"


def test_aten_namespace():
    a, b = ember.randn(2, 3), ember.randn(3, 4)
    aten = ember.ops.aten
    np.testing.assert_allclose(aten.mm.default(a, b).numpy(), (a @ b).numpy(), rtol=1e-6)
    np.testing.assert_allclose(aten.add.Tensor(a, a).numpy(), (2 * a).numpy(), rtol=1e-6)
    assert (aten.relu.default(a).numpy() >= 0).all()
    with pytest.raises(AttributeError, match="no op named 'not_an_op'"):
        aten.not_an_op  # noqa: B018


def test_schema_inference_matches_torch():
    def f(
        ts: Sequence[ember.Tensor | None],
        s: int | float | bool,
        x: ember.Tensor,
        out: ember.Tensor,
        n: int,
        alpha: float = 1.0,
        ys: Sequence[int] | None = None,
    ) -> tuple[ember.Tensor, ember.Tensor]:
        pass

    def tf(
        ts: Sequence[torch.Tensor | None],
        s: int | float | bool,
        x: torch.Tensor,
        out: torch.Tensor,
        n: int,
        alpha: float = 1.0,
        ys: Sequence[int] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        pass

    ours = library.infer_schema(f, mutates_args={"out"})
    theirs = torch.library.infer_schema(tf, mutates_args={"out"})
    assert ours == theirs


@pytest.mark.parametrize(
    "schema,match",
    [
        ("(Tensor x, foo y) -> Tensor", "unknown type 'foo'"),
        ("(Tensor x) -> Blah", "unknown type 'Blah'"),
        ("(Tensor x, int x) -> Tensor", "duplicate argument name 'x'"),
        ("Tensor x -> Tensor", "cannot parse schema"),
    ],
)
def test_bad_schemas(schema, match):
    with pytest.raises(ValueError, match=match):
        library.define("embt::bad_schema", schema)


def test_define_errors():
    with pytest.raises(RuntimeError, match="already defined"):
        library.define("embt::np_sin", "(Tensor x) -> Tensor")
    with pytest.raises(ValueError, match="namespace::name"):
        library.custom_op("no_namespace", mutates_args=())
    with pytest.raises(ValueError, match="type annotation"):
        library.custom_op("embt::unannotated", lambda x: x, mutates_args=())


def test_library_define_impl_fragment():
    lib = library.Library("embt_lib", "DEF")
    try:
        lib.define("scale(Tensor x, float alpha=2.0) -> Tensor")
        lib.impl("scale", lambda x, alpha=2.0: ember.from_numpy(x.numpy() * alpha), "CPU")
        lib.impl("scale", lambda x, alpha=2.0: ember.empty_like(x), "Meta")
        x = ember.ones(3)
        assert ember.ops.embt_lib.scale(x).tolist() == [2.0, 2.0, 2.0]
        assert ember.ops.embt_lib.scale(x, alpha=3.0).tolist() == [3.0, 3.0, 3.0]
        assert ember.ops.embt_lib.scale(ember.empty(4, device="meta")).shape == (4,)
        with pytest.raises(RuntimeError, match="already has a DEF library"):
            library.Library("embt_lib", "DEF")
        frag = library.Library("embt_lib", "FRAGMENT")
        frag.define("cube(Tensor x) -> Tensor")
        frag.impl("cube", lambda x: x * x * x, "CompositeImplicitAutograd")
        frag._defined += []  # owned by lib's namespace below
        y = ember.tensor([2.0], requires_grad=True)
        ember.ops.embt_lib.cube(y).sum().backward()  # composite: autograd through its ops
        assert y.grad.tolist() == [12.0]
        with pytest.raises(NotImplementedError, match="no kernel registered for device type"):
            lib.define("nokernel(Tensor x) -> Tensor")
            ember.ops.embt_lib.nokernel(x)
        with pytest.raises(ValueError, match="unknown dispatch key"):
            lib.impl("scale", lambda x: x, "Bogus")
        frag._destroy()
    finally:
        lib._destroy()
    with pytest.raises(AttributeError):
        ember.ops.embt_lib.scale  # noqa: B018


def test_module_level_register_functions():
    library.define("embt::twice", "(Tensor x) -> Tensor")
    library.impl("embt::twice", "cpu", lambda x: ember.from_numpy(x.numpy() * 2))
    library.register_fake("embt::twice", lambda x: ember.empty_like(x))
    library.register_autograd("embt::twice", lambda ctx, g: g * 2)
    x = ember.ones(2, requires_grad=True)
    ember.ops.embt.twice(x).sum().backward()
    assert x.grad.tolist() == [2.0, 2.0]
    assert library.opcheck("embt::twice", (ember.randn(3, requires_grad=True),))


# ---- autograd, meta, vmap ----------------------------------------------------------------
def test_autograd_and_gradcheck():
    x = ember.randn(4, dtype=ember.float64, requires_grad=True)
    np_sin(x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.cos(x.detach().numpy()))
    assert ember.autograd.gradcheck(np_sin, (x,))
    img = ember.randn(2, 6, 6, requires_grad=True)
    window(img, [1, 2, 4, 5]).sum().backward()
    assert img.grad.sum().item() == 2 * 3 * 3
    assert img.grad[:, 2:5, 1:4].sum().item() == 18


def test_missing_autograd_raises_on_backward():
    x = ember.randn(3, requires_grad=True)
    y = no_grad_rule(x)
    with pytest.raises(
        RuntimeError, match="backward through embt.no_grad_rule.default but no autograd"
    ):
        y.sum().backward()


def test_meta_device():
    out = window(ember.empty(3, 10, 10, device="meta"), [0, 0, 4, 6])
    assert out.device.type == "meta" and tuple(out.shape) == (3, 6, 4)
    with pytest.raises(RuntimeError, match="no fake .meta. implementation"):
        no_grad_rule(ember.empty(2, device="meta"))


def test_mutating_op_and_version_counter():
    x, out = ember.randn(4), ember.zeros(4)
    v = out._version
    assert np_sin_out(x, out) is None
    np.testing.assert_allclose(out.numpy(), np.sin(x.numpy()), rtol=1e-6)
    assert out._version > v


def test_vmap_loops_over_the_batch():
    x = ember.randn(3, 4, dtype=ember.float64)
    np.testing.assert_allclose(ember.func.vmap(np_sin)(x).numpy(), np.sin(x.numpy()))
    g = ember.func.vmap(ember.func.grad(lambda t: np_sin(t).sum()))(x)
    np.testing.assert_allclose(g.numpy(), np.cos(x.numpy()))


# ---- opcheck -----------------------------------------------------------------------------
def test_opcheck_passes_good_ops():
    ok = {k: "SUCCESS" for k in library._opcheck.DEFAULT_TEST_UTILS}
    assert library.opcheck(np_sin, (ember.randn(3, requires_grad=True),)) == ok
    assert library.opcheck(window, (ember.randn(2, 5, 5), [0, 1, 3, 4])) == ok
    assert library.opcheck(np_sin_out, (ember.randn(2, 3), ember.empty(2, 3))) == ok
    assert library.opcheck(np_sin_out, (ember.randn(0, 3), ember.empty(0, 3))) == ok
    x64 = ember.randn(2, 4, 4, dtype=ember.float64, requires_grad=True)
    res = library.opcheck(window, (x64, [0, 1, 3, 4]), test_utils="test_gradcheck")
    assert res == {"test_gradcheck": "SUCCESS"}


def test_opcheck_catches_bad_registrations():
    with pytest.raises(OpCheckError, match="mutated its input 'x'"):
        library.opcheck(sneaky, (ember.randn(3),), test_utils="test_schema")
    with pytest.raises(OpCheckError, match=r"fake kernel gives \(2, 3\)"):
        library.opcheck(wrong_fake, (ember.randn(2, 3),), test_utils="test_faketensor")
    with pytest.raises(OpCheckError, match="no autograd formula"):
        library.opcheck(no_grad_rule, (ember.randn(3, requires_grad=True),))
    res = library.opcheck(no_grad_rule, (ember.randn(3),), raise_exception=False)
    assert isinstance(res["test_faketensor"], Exception)  # no fake kernel at all
    with pytest.raises(ValueError, match="unknown test_utils"):
        library.opcheck(np_sin, (ember.randn(3),), test_utils="test_nothing")


# ---- torch.library on the same definitions -----------------------------------------------
def _torch_ops():
    if hasattr(torch.ops, "embt_ref") and hasattr(torch.ops.embt_ref, "window"):
        return torch.ops.embt_ref

    @torch.library.custom_op("embt_ref::window", mutates_args=())
    def twindow(img: torch.Tensor, box: Sequence[int]) -> torch.Tensor:
        x0, y0, x1, y1 = box
        return torch.from_numpy(img.numpy()[:, y0:y1, x0:x1].copy())

    @twindow.register_fake
    def _(img, box):
        x0, y0, x1, y1 = box
        return img.new_empty(img.shape[0], y1 - y0, x1 - x0)

    def bwd(ctx, grad):
        g = grad.new_zeros(ctx.shape)
        x0, y0 = ctx.box[:2]
        g[:, y0 : y0 + grad.shape[1], x0 : x0 + grad.shape[2]] = grad
        return g, None

    def setup(ctx, inputs, output):
        ctx.shape, ctx.box = inputs[0].shape, inputs[1]

    twindow.register_autograd(bwd, setup_context=setup)

    @torch.library.custom_op("embt_ref::sneaky", mutates_args=())
    def tsneaky(x: torch.Tensor) -> torch.Tensor:
        x.numpy()[...] += 1
        return torch.from_numpy(x.numpy().copy())

    @tsneaky.register_fake
    def _(x):
        return torch.empty_like(x)

    return torch.ops.embt_ref


@pytest.mark.full  # torch's first custom-op call imports its compiler stack (~10 s)
def test_parity_with_torch_library():
    tops = _torch_ops()
    data = np.random.default_rng(0).standard_normal((3, 8, 8)).astype(np.float32)
    box = [1, 2, 6, 7]
    xt = torch.tensor(data, requires_grad=True)
    xe = ember.tensor(data, requires_grad=True)
    yt, ye = tops.window(xt, box), window(xe, box)
    np.testing.assert_array_equal(yt.detach().numpy(), ye.detach().numpy())
    (yt * yt).sum().backward()
    (ye * ye).sum().backward()
    np.testing.assert_allclose(xt.grad.numpy(), xe.grad.numpy(), rtol=1e-6)
    # opcheck outcomes agree: the good op passes, the undeclared mutation fails test_schema
    # (torch's test_aot_dispatch_dynamic costs seconds of AOT compilation: left out here)
    quick = ("test_schema", "test_autograd_registration", "test_faketensor")
    t_ok = torch.library.opcheck(tops.window.default, (torch.tensor(data), box), test_utils=quick)
    e_ok = library.opcheck(window, (ember.tensor(data), box), test_utils=quick)
    assert t_ok == e_ok == dict.fromkeys(quick, "SUCCESS")
    t_bad = torch.library.opcheck(
        tops.sneaky.default, (torch.randn(3),), test_utils="test_schema", raise_exception=False
    )
    e_bad = library.opcheck(
        sneaky, (ember.randn(3),), test_utils="test_schema", raise_exception=False
    )
    assert t_bad["test_schema"] != "SUCCESS" and e_bad["test_schema"] != "SUCCESS"


def test_custom_ops_doc_runs(capsys):
    import pathlib
    import re

    doc = pathlib.Path(__file__).resolve().parents[1] / "docs" / "custom_ops.md"
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(), flags=re.S)
    assert len(blocks) == 1, "docs/custom_ops.md lost its example"
    exec(compile(blocks[0], "docs/custom_ops.md", "exec"), {"__name__": "__doc__"})
    out = capsys.readouterr().out
    assert "demo::numpy_sin(Tensor x) -> Tensor" in out
    assert "ember.ops.demo.numpy_sin.default(arg0_1)" in out
