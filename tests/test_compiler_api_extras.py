"""torch.compiler's smaller public functions on ember, side by side with torch's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ember


def _probe_module(fw, seen):
    class Probe(fw.nn.Module):
        def forward(self, x):
            seen.append((fw.compiler.is_compiling(), fw.compiler.is_exporting()))
            fw._dynamo.graph_break()  # non-strict export runs it as plain Python
            return x + 1

    return Probe()


def test_is_exporting_and_is_compiling_inside_export_as_torch():
    for fw in (ember, torch):
        seen = []
        probe = _probe_module(fw, seen)
        probe(fw.ones(2))
        ep = fw.export.export(probe, (fw.ones(2),))
        assert seen == [(False, False), (True, True)], fw.__name__
        assert ep.module()(fw.ones(2)).tolist() == [2.0, 2.0]
        assert not fw.compiler.is_exporting()


def test_default_backend_and_list_backends():
    assert ember.compiler.get_default_backend() == "ember"
    assert ember.compiler.list_backends() == ["ember", "inductor"]
    assert {"eager", "aot_eager"} <= set(ember.compiler.list_backends(exclude_tags=()))
    assert "inductor" in torch.compiler.list_backends()
    seen = []

    def backend(gm, example_inputs):
        seen.append(len(example_inputs))
        return gm.forward

    ember.compiler.set_default_backend(backend)
    try:
        f = ember.compile(lambda x: x.sin() * 2)
        assert f(ember.ones(3)).tolist() == pytest.approx([2 * np.sin(1.0)] * 3)
        assert seen == [1]  # the default backend compiled it
    finally:
        ember.compiler.set_default_backend(None)
    assert ember.compiler.get_default_backend() == "ember"
    with pytest.raises(ValueError, match="unknown backend 'nope'"):
        ember.compiler.set_default_backend("nope")


def test_wrap_numpy_matches_torch():
    def stats(a, pair):
        return a @ pair[0], {"s": np.sum(a), "b": pair[1] * 2}

    data = np.arange(6.0, dtype=np.float32).reshape(2, 3)
    results = []
    for fw in (ember, torch):
        f = fw.compiler.wrap_numpy(stats)
        prod, extra = f(fw.tensor(data), (fw.ones(3, 1), fw.tensor([1.0])))
        assert isinstance(prod, fw.Tensor) and isinstance(extra["b"], fw.Tensor)
        assert isinstance(extra["s"], np.generic)  # NumPy scalars stay scalars
        results.append((prod.tolist(), float(extra["s"]), extra["b"].tolist()))
    assert results[0] == results[1]


def test_nested_compile_region_and_substitute_in_graph():
    @ember.compiler.nested_compile_region
    def block(x):
        return ember.relu(x) + 1

    @ember.compiler.nested_compile_region(max_reuse_entries=2)
    def other(x):
        return x * 3

    f = ember.compile(lambda x: other(block(x)) + block(-x), fullgraph=True)
    x = ember.randn(5)
    assert np.allclose(
        f(x).numpy(), (3 * (np.maximum(x.numpy(), 0) + 1)) + np.maximum(-x.numpy(), 0) + 1
    )

    def original(x, y=1):
        return x + y

    for fw in (ember, torch):
        with pytest.raises(TypeError, match="Signature mismatch"):
            fw.compiler.substitute_in_graph(original)(lambda x: x)

    @ember.compiler.substitute_in_graph(original)
    def polyfill(x, y=1):
        return x + y

    assert polyfill(2) == 3 and polyfill.__torch_dynamo_original__ is original


def test_cudagraph_mark_step_begin_in_a_reduce_overhead_loop():
    model = ember.nn.Linear(4, 2)
    step = ember.compile(model, mode="reduce-overhead")
    opt = ember.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    for _ in range(3):
        ember.compiler.cudagraph_mark_step_begin()
        loss = step(ember.ones(8, 4)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[2] < losses[0]
