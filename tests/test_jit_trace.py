"""ember.jit.trace / trace_module / save / load / freeze, with torch.jit.trace's warnings."""

from __future__ import annotations

import io
import warnings

import pytest

import ember
import ember.jit as jit
import ember.nn as nn
import ember.nn.functional as F


def Branchy(lib):
    """Data-dependent branch, a shape-dependent view, a buffer."""

    class Branchy(lib.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = lib.nn.Linear(4, 3)
            self.register_buffer("shift", lib.ones(3))

        def forward(self, x):
            h = self.fc(x).view(x.size(0), -1)
            if x.sum() > 0:
                return h * 2 + self.shift
            return h - self.shift

    return Branchy()


def _tracer_warnings(fn) -> tuple[list[str], Exception | None]:
    err = None
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        try:
            fn()
        except Exception as e:  # noqa: BLE001 -- compared between the frameworks
            err = e
    return [str(x.message).split(".")[0] for x in w if x.category.__name__ == "TracerWarning"], err


def test_warnings_and_check_errors_match_torch():
    torch = pytest.importorskip("torch")
    tm, m = Branchy(torch), Branchy(ember)
    # tracing on the taken branch: one warning at the bool conversion (torch warns it for
    # the trace and again for check_trace's re-trace)
    tw, terr = _tracer_warnings(lambda: torch.jit.trace(tm, (torch.ones(2, 4),)))
    ew, eerr = _tracer_warnings(lambda: jit.trace(m, (ember.ones(2, 4),)))
    assert terr is None and eerr is None
    assert (
        set(ew)
        == set(tw)
        == {"Converting a tensor to a Python boolean might cause the trace to be incorrect"}
    )
    # a check input taking the other branch: outputs differ (warning), graphs differ (error)
    tw, terr = _tracer_warnings(
        lambda: torch.jit.trace(tm, (torch.ones(2, 4),), check_inputs=[(-torch.ones(2, 4),)])
    )
    ew, eerr = _tracer_warnings(
        lambda: jit.trace(m, (ember.ones(2, 4),), check_inputs=[(-ember.ones(2, 4),)])
    )
    assert type(terr).__name__ == type(eerr).__name__ == "TracingCheckError"
    assert str(eerr).startswith("Tracing failed sanity checks!\nERROR: Graphs differed")
    assert str(terr).startswith("Tracing failed sanity checks!\nERROR: Graphs differed")
    want = "Output nr 1"
    assert any(x.startswith(want) for x in tw) and any(x.startswith(want) for x in ew)


def test_trace_follows_the_taken_branch_and_keeps_sizes_symbolic():
    m = Branchy(ember)
    with pytest.warns(jit.TracerWarning):
        t = jit.trace(m, (ember.ones(2, 4),))
    assert isinstance(t, jit.ScriptModule) and isinstance(t, jit.TopLevelTracedModule)
    assert list(t.state_dict()) == list(m.state_dict())
    assert "size" in t.code and "* 2" in t.code and " - " not in t.code
    x = -ember.ones(5, 4)  # the eager model takes the other branch; the trace does not
    with ember.no_grad():
        assert ember.allclose(t(x), m.fc(x) * 2 + m.shift)
        assert not ember.allclose(t(x), m(x))


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        h = F.max_pool2d(F.relu(self.bn(self.conv(x))), 2)
        return self.fc(h.flatten(1))

    def features(self, x):
        return self.conv(x).mean((2, 3))


def _trained_net() -> Net:
    ember.manual_seed(0)
    m = Net()
    m(ember.randn(8, 1, 8, 8))  # move the running statistics off their defaults
    return m.eval()


def test_save_load_round_trip():
    m = _trained_net()
    x = ember.randn(3, 1, 8, 8)
    t = jit.trace(m, ember.randn(2, 1, 8, 8))
    buf = io.BytesIO()
    t.save(buf)
    loaded = jit.load(io.BytesIO(buf.getvalue()))
    assert isinstance(loaded, jit.RecursiveScriptModule) and not loaded.training
    assert sorted(loaded.state_dict()) == sorted(m.state_dict())
    assert set(dict(loaded.named_buffers())) == set(dict(m.named_buffers()))
    with ember.no_grad():
        assert ember.allclose(loaded(x), m(x), atol=1e-6)
    f = jit.trace(lambda a, b: ember.tanh(a) * b, (ember.ones(2), ember.ones(2)))
    buf = io.BytesIO()
    jit.save(f, buf)
    g = jit.load(io.BytesIO(buf.getvalue()))
    assert isinstance(g, jit.ScriptFunction)
    a, b = ember.randn(3), ember.randn(3)
    assert ember.allclose(g(a, b), ember.tanh(a) * b)
    with pytest.raises(TypeError, match="expects a ScriptModule or ScriptFunction"):
        jit.save(m, io.BytesIO())
    with pytest.raises(ValueError, match="truncated or corrupted"):
        jit.load(io.BytesIO(buf.getvalue()[:100]))


def test_freeze_and_optimize_for_inference():
    torch = pytest.importorskip("torch")
    m = _trained_net()
    x = ember.randn(2, 1, 8, 8)
    t = jit.trace(m.train(), x, check_trace=False)
    with pytest.raises(RuntimeError) as err:
        jit.freeze(t)
    tt = torch.jit.trace(torch.nn.Linear(2, 2), torch.ones(1, 2))
    with pytest.raises(RuntimeError) as terr:
        torch.jit.freeze(tt)
    assert str(err.value) == str(terr.value)
    t = jit.trace(m.eval(), x)
    frozen = jit.freeze(t)
    assert not [n for n in frozen.graph.nodes if n.op == "get_attr" and "weight" in n.target]
    assert not list(frozen.parameters())  # weights are constants now
    opt = jit.optimize_for_inference(t)
    assert F.batch_norm not in [n.target for n in opt.graph.nodes]
    with ember.no_grad():
        want = m(x)
        assert ember.allclose(frozen(x), want, atol=1e-5)
        assert ember.allclose(opt(x), want, atol=1e-5)


def test_trace_module_strict_and_nondeterminism():
    m = _trained_net()
    x = ember.randn(2, 1, 8, 8)
    tm = jit.trace_module(m, {"forward": (x,), "features": (x,)})
    with ember.no_grad():
        assert ember.allclose(tm.features(x), m.features(x), atol=1e-6)
        assert ember.allclose(tm(x), m(x), atol=1e-6)
    with pytest.warns(jit.TracerWarning, match="Encountering a list at the output"):
        jit.trace(lambda a: [a, a * 2], (ember.ones(2),))
    drop = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5)).train()
    with pytest.warns(jit.TracerWarning, match="nondeterministic nodes"):
        jit.trace(drop, (ember.ones(2, 4),))
    with pytest.warns(UserWarning, match="already a ScriptModule"):
        assert jit.trace(tm, (x,)) is tm  # already compiled: returned as is
    with pytest.raises(TypeError, match="Module or a function"):
        jit.trace(3, (x,))


def test_decorators_and_is_tracing():
    seen = []

    class M(nn.Module):
        def forward(self, x):
            seen.append(jit.is_tracing())
            return x + 1

        @jit.ignore
        def helper(self):
            return 1

        @jit.unused
        def old(self):
            return 2

        @jit.export
        def extra(self, x):
            return x

    jit.trace(M(), (ember.ones(2),), check_trace=False)
    assert seen == [True] and not jit.is_tracing() and not jit.is_scripting()
    from ember.jit._decorators import get_modifier

    assert [get_modifier(f) for f in (M.helper, M.old, M.extra, M.forward)] == [
        "ignore",
        "unused",
        "export",
        None,
    ]
    assert get_modifier(jit.ignore(drop=True)(lambda: 0)) == "ignore_and_drop"


class _WithExport(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def forward(self, x):
        return self.lin(x)

    @jit.export
    def version(self):
        return 2.0


def test_freeze_keeps_a_preserved_exported_method_and_drops_the_rest():
    """torch.jit.freeze(m, ["version"]) keeps the exported method on the frozen module;
    without it the method is gone (torch's behaviour, both ways)."""
    torch = pytest.importorskip("torch")
    for mod in (jit, torch.jit):
        cls = _WithExport if mod is jit else _torch_with_export(torch)
        scripted = mod.script(cls().eval())
        assert mod.freeze(scripted, ["version"]).version() == 2.0
        with pytest.raises(AttributeError):
            mod.freeze(scripted).version()


def _torch_with_export(torch):
    class TorchWithExport(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 2)

        def forward(self, x):
            return self.lin(x)

        @torch.jit.export
        def version(self):
            return 2.0

    return TorchWithExport
