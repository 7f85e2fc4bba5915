"""The kernel shape sweep (benchmarks/kernels.py) runs and prints well-formed, finite tables."""

import importlib.util
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("threadpoolctl")

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "kernels.py"


@pytest.fixture(scope="module")
def kernels():
    spec = importlib.util.spec_from_file_location("bench_kernels", _PATH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_quick_sweep_tables(kernels, tmp_path, capsys):
    out = tmp_path / "sweep.json"
    kernels.main(
        [
            "--quick",
            "--family",
            "conv,norm",
            "--threads",
            "1",
            "--only",
            "1",
            "--repeat",
            "1",
            "--min-time",
            "0.002",
            "--json",
            str(out),
        ]
    )
    text = capsys.readouterr().out
    res = json.loads(out.read_text())
    assert set(res) == {"conv", "norm"}
    for fam in ("conv", "norm"):
        rows = res[fam]["1"]
        assert len(rows) == 1
        for r in rows:
            assert r["ember_ms"] > 0 and r["torch_ms"] > 0
            assert math.isfinite(r["ratio"])
            assert r["ratio"] == pytest.approx(r["ember_ms"] / r["torch_ms"])
            assert r["shape"] in text
        assert f"## {fam}, 1 thread (cpu time)" in text
    # one geomean line per table, each a finite number
    gm = re.findall(r"geomean ember/torch: ([0-9.]+); worst: ([0-9.]+) \((.+)\)", text)
    assert len(gm) == 2
    assert all(math.isfinite(float(g)) and float(w) >= float(g) - 1e-9 for g, w, _ in gm)
    assert "| shape" in text and "| ember/torch |" in text


def test_cases_build_the_same_problem_for_both(kernels):
    """Every family has quick shapes; a builder gives ember and torch the same inputs, so the
    same forward and gradients (checked on the masked attention and a no-affine norm)."""
    import numpy as np
    import torch

    import ember

    for fam, cases in kernels.FAMILIES.items():
        assert any(q for _, q in cases), fam
    extra = [
        kernels.FAMILIES["attention"][-1][0],  # a bool mask input
        kernels.norm_case("layer", (4, 8), affine=False),
    ]  # absent optional inputs
    for _name, build in extra:
        res = []
        for lib in (ember, torch):
            fn, inputs = build(lib, np.random.default_rng(0))
            out = fn(*inputs)
            out.sum().backward()
            res.append([out.detach().numpy()] + [t.grad.numpy() for t in inputs if t is not None])
        for a, b in zip(*res):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_geomean(kernels):
    assert kernels.geomean([1.0, 4.0]) == pytest.approx(2.0)
    assert math.isnan(kernels.geomean([]))


def test_bad_arguments(kernels):
    with pytest.raises(SystemExit):
        kernels.main(["--family", "convolution"])
    with pytest.raises(ValueError, match="unknown family 'nope'"):
        kernels.run(["nope"], [1])


def test_a_shape_that_raises_is_reported_and_the_sweep_goes_on(kernels, monkeypatch, tmp_path):
    """A failing shape (on a GPU, an op CuPy lacks) gets NaN times and its error; the other
    shapes and families still run, the JSON holds every table so far, and the command exits
    non-zero naming the shape."""

    def broken(lib, rng):
        raise NotImplementedError("no kernel for this\nsecond line")

    fams = {
        "act": [(("broken 2x2", broken), True)] + kernels.FAMILIES["act"][:1],
        "pool": kernels.FAMILIES["pool"][:1],
    }
    monkeypatch.setattr(kernels, "FAMILIES", fams)
    out = tmp_path / "partial.json"
    printed = []
    res = kernels.run(
        ["act", "pool"], [1], repeat=1, min_time=0.002, out=printed.append, json_path=out
    )
    bad, good = res["act"][1]
    assert bad["error"] == "NotImplementedError: no kernel for this"
    assert math.isnan(bad["ratio"]) and math.isfinite(good["ratio"])
    assert len(res["pool"][1]) == 1 and "error" not in res["pool"][1][0]
    assert "error: broken 2x2: NotImplementedError" in printed[0]
    assert f"worst: {good['ratio']:.2f}" in printed[0]  # the failed shape is not the worst
    assert set(json.loads(out.read_text())) == {"act", "pool"}
    assert kernels.errors(res) == ["act/1/broken 2x2: NotImplementedError: no kernel for this"]
    with pytest.raises(SystemExit, match="1 shape\\(s\\) raised"):
        kernels.main(["--family", "act", "--threads", "1", "--repeat", "1", "--min-time", "0.002"])


def test_device_cuda_says_what_is_missing(kernels, capsys):
    """Without CuPy and a GPU (or a CUDA torch), ``--device cuda`` stops before timing anything
    and names what is missing; the library call raises the same reason."""
    import torch

    import ember

    why = kernels.cuda_missing(ember, torch)
    if why is None:
        pytest.skip("this machine has a GPU for both frameworks")
    with pytest.raises(SystemExit):
        kernels.main(["--device", "cuda", "--family", "act"])
    assert f"--device cuda: {why}" in capsys.readouterr().err
    with pytest.raises(RuntimeError, match="--device cuda: "):
        kernels.run(["act"], [1], device="cuda")


def test_builders_follow_the_device(kernels):
    """Each family's builder puts its inputs, module and constant tensors (the batch norm's
    running statistics, the attention mask, the indices) on the sweep's device."""
    import ember

    for fam in ("norm", "attention", "rnn", "embed"):
        for (_name, build), _quick in kernels.FAMILIES[fam][:1] + kernels.FAMILIES[fam][-1:]:
            with kernels._device("meta"):
                fn, inputs = build(ember, np.random.default_rng(0))
            assert all(t.device.type == "meta" for t in inputs if t is not None), fam


@pytest.mark.gpu
def test_quick_sweep_on_the_gpu(kernels, capsys):
    """On a GPU machine: one shape of every family, ember on CuPy against torch on CUDA."""
    import torch

    import ember

    if kernels.cuda_missing(ember, torch):
        pytest.skip(kernels.cuda_missing(ember, torch))
    fams = list(kernels.FAMILIES)
    res = kernels.run(fams, [1], quick=True, repeat=1, min_time=0.002, only=1, device="cuda")
    text = capsys.readouterr().out
    for fam in fams:
        (row,) = res[fam]["cuda"]
        assert row["ember_ms"] > 0 and row["torch_ms"] > 0 and math.isfinite(row["ratio"])
        assert f"## {fam}, cuda (wall time)" in text


def test_docs_snippet_runs():
    """The runnable snippet of docs/kernels.md."""
    import os
    import re

    root = _PATH.parents[1]
    text = (root / "docs" / "kernels.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    cwd = os.getcwd()
    try:
        os.chdir(root)
        exec(compile(code, "docs/kernels.md", "exec"), {})
    finally:
        os.chdir(cwd)
