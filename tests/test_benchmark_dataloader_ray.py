"""benchmarks/dataloader.py --ray-data at its smallest size: Ray Data vs DataLoader feeding 2
real Trainer workers prints and returns one well-formed row per (transform cost, feed).

It starts a Trainer and a Ray Data pipeline per cost (~20 s on 2 cores), so it runs with
EMBER_FULL_TESTS=1; the argument checks run always.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

_DIR = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(_DIR))  # the benchmark imports _common from its folder
    try:
        spec = importlib.util.spec_from_file_location("bench_dataloader", _DIR / "dataloader.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod  # so cloudpickle can ship it to Ray by value
        spec.loader.exec_module(mod)
        yield mod
    finally:
        sys.modules.pop("bench_dataloader", None)
        sys.path.remove(str(_DIR))


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--ray-data", "--costs", "-1"], "must be >= 0"),
        (["--ray-data", "--samples", "64", "--batch-size", "64"], "less than one batch"),
        (["--ray-data", "--trainer-workers", "0"], "must be >= 1"),
        (["--ray-data", "--block-batches", "0"], "must be >= 1"),
    ],
)
def test_bad_arguments_name_what_is_wrong(bench, argv, message, capsys):
    with pytest.raises(SystemExit):
        bench.main(argv)
    assert message in capsys.readouterr().err


def test_transform_cost_scales_and_batches_match_samples(bench):
    img = bench.make_images(1, 8)[0]
    assert bench.costly_transform(img, 0).shape == (3, 8, 8)
    np.testing.assert_allclose(
        bench.costly_transform(img, 0), img.transpose(2, 0, 1).astype(np.float32) / 255.0
    )
    # The Ray Data batch function and the DataLoader dataset run the same per-sample code.
    images, labels = bench.make_images(3, 8), np.arange(3)
    batch = bench.transform_batch({"image": images, "y": labels}, cost=2)
    ds = bench.CostlyImages(images, labels, 2)
    for i in range(3):
        np.testing.assert_array_equal(batch["x"][i], ds[i][0])
        assert ds[i][1] == batch["y"][i]


@pytest.mark.full
def test_smallest_run_table_shape(bench, capsys, ray_session):
    pytest.importorskip("ray.data")
    rows = bench.main(
        [
            "--ray-data",
            "--costs",
            "0",
            "1",
            "--samples",
            "64",
            "--batch-size",
            "16",
            "--workers",
            "0",
            "1",
            "--block-batches",
            "2",
        ]
    )
    text = capsys.readouterr().out
    assert [(r["cost"], r["feed"]) for r in rows] == [
        (c, f) for c in (0, 1) for f in ("DataLoader(0)", "DataLoader(1)", "Ray Data")
    ]
    for r in rows:
        assert r["samples_per_s"] > 0 and math.isfinite(r["samples_per_s"])
        assert r["transform_ms"] > 0
        assert r["cpu_ms"] > 0 and math.isfinite(r["cpu_ms"])
        best = max(
            q["samples_per_s"] for q in rows if q["cost"] == r["cost"] and q["feed"] != "Ray Data"
        )
        assert r["vs_dataloader"] == pytest.approx(r["samples_per_s"] / best)
    lines = [ln for ln in text.splitlines() if ln.startswith("| ")]
    assert [c.strip() for c in lines[0].split("|")[1:-1]] == [
        "cost",
        "transform ms/sample",
        "feed",
        "samples/s",
        "vs best DataLoader",
        "CPU ms/sample",
    ]
    assert len(lines) == 1 + len(rows)
    assert "into 2 Trainer workers" in text
