"""Distributed checkpoints in one process: the file format, reading only what is needed,
bad input, async saves, and the docs' example."""

from __future__ import annotations

import json
import pathlib
import re

import dcp_cases as cases
import numpy as np
import pytest

import ember
import ember.distributed.checkpoint as dcp
from ember.distributed.checkpoint.state_dict import get_state_dict

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "checkpointing.md"


def _piece(arr: np.ndarray, offset: int, shape) -> dict:
    return {
        "kind": "ember.shard",
        "local_shard": ember.tensor(arr),
        "offset": offset,
        "shape": shape,
    }


def test_round_trip_plain_model_adam(tmp_path):
    want = cases.save_alone(str(tmp_path / "ck"))
    got = cases.load_alone(str(tmp_path / "ck"))
    assert sorted(got) == sorted({**want, "step": 2})
    for k, v in want.items():
        assert np.array_equal(got[k], v) if isinstance(v, np.ndarray) else got[k] == v, k
    md = json.loads((tmp_path / "ck" / ".metadata").read_text())
    assert md["tensors"]["model.0.weight"]["size"] == [7, 5]
    assert md["tensors"]["optim.state.0.weight.exp_avg"]["chunks"][0]["file"] == "__0_0.distcp"
    assert md["objects"]["optim.param_groups"][0]["betas"] == {"__tuple__": [0.9, 0.999]}


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "int64"])
def test_pieces_boxes_and_dtypes(tmp_path, dtype):
    full = ember.arange(30).reshape(6, 5).to(getattr(ember, dtype))
    dcp.save({"w": full, "n": {"k": [1, 2.5, None]}}, checkpoint_id=tmp_path / "ck")
    flat = full.to(ember.float32).numpy().reshape(-1)
    # an FSDP piece: elements [7, 18) of the flattened tensor, read from a 2-d chunk
    piece = _piece(np.zeros(11, np.float32), 7, [6, 5])
    sd = {"w": piece, "n": None}
    dcp.load(sd, checkpoint_id=tmp_path / "ck")
    assert np.array_equal(sd["w"]["local_shard"].numpy(), flat[7:18])
    assert sd["n"] == {"k": [1, 2.5, None]}
    whole = {"w": ember.zeros(6, 5, dtype=getattr(ember, dtype))}
    dcp.load(whole, checkpoint_id=str(tmp_path / "ck"))
    assert ember.equal(whole["w"], full)


def test_flat_chunks_reassemble_into_boxes(tmp_path):
    """Pieces saved by "ranks" of a flat layout, read back as whole tensors and other pieces."""
    from ember.distributed.checkpoint.state_dict_loader import _read_region
    from ember.distributed.checkpoint.state_dict_saver import _describe, _plan

    full = np.arange(24, dtype=np.float32).reshape(4, 6)
    bounds = [(0, 5), (5, 13), (13, 24)]  # three ranks' pieces of the flattened tensor
    descs, arrays = [], []
    for a, b in bounds:
        arr, desc, _ = _describe({"w": _piece(full.reshape(-1)[a:b].copy(), a, [4, 6])})
        descs.append(desc)
        arrays.append(arr)
    md, assign = _plan(descs, {}, 3, "test")
    assert [c.file for c in md.state_dict_metadata["w"].chunks] == [
        f"__{r}_0.distcp" for r in range(3)
    ]
    writer = dcp.FileSystemWriter(tmp_path / "ck")
    _, staging = writer.begin()
    for r, arr in enumerate(arrays):
        writer.write_rank(staging, r, {assign[k][1]: v for k, v in arr.items()})
    writer.finish(staging, md)
    reader = dcp.FileSystemReader(tmp_path / "ck")
    meta = reader.read_metadata().state_dict_metadata["w"]
    assert np.array_equal(_read_region(reader, "w", meta, ("box", [0, 0], [4, 6])), full)
    assert np.array_equal(_read_region(reader, "w", meta, ("box", [1, 2], [2, 3])), full[1:3, 2:5])
    assert np.array_equal(_read_region(reader, "w", meta, ("flat", 3, 20)), full.reshape(-1)[3:20])


def test_shape_mismatch_names_tensor_and_loads_nothing(tmp_path):
    ember.manual_seed(0)
    dcp.save({"a": ember.randn(3), "b": ember.randn(4, 2)}, checkpoint_id=tmp_path / "ck")
    a, b = ember.zeros(3), ember.zeros(2, 4)
    with pytest.raises(RuntimeError, match=r"size mismatch for b: .*\(4, 2\).*\(2, 4\)"):
        dcp.load({"a": a, "b": b}, checkpoint_id=tmp_path / "ck")
    assert not a.numpy().any()  # "a" matched but was not loaded either
    with pytest.raises(RuntimeError, match="Missing key in checkpoint state_dict: c"):
        dcp.load({"a": a, "c": ember.zeros(1)}, checkpoint_id=tmp_path / "ck")
    with pytest.raises(FileNotFoundError, match="not a distributed checkpoint"):
        dcp.load({"a": a}, checkpoint_id=tmp_path / "nothing")
    with pytest.raises(ValueError, match="chunks of 'w' .* hold 3 elements.* not 6"):
        dcp.save({"w": _piece(np.zeros(3, np.float32), 0, [2, 3])}, checkpoint_id=tmp_path / "x")
    with pytest.raises(ValueError, match="TypeError: cannot store a object"):
        dcp.save({"o": object()}, checkpoint_id=tmp_path / "y")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]  # failed saves left nothing


def test_async_save_snapshots_state(tmp_path):
    model = cases.make_model()
    opt = ember.optim.Adam(model.parameters(), lr=1e-2)
    msd, osd = get_state_dict(model, opt)
    before = model[0].weight.detach().numpy().copy()
    fut = dcp.async_save({"model": msd, "optim": osd}, checkpoint_id=tmp_path / "ck")
    with ember.no_grad():
        model[0].weight.add_(1.0)  # training goes on while the files are written
    md = fut.result(timeout=60)
    assert md.state_dict_metadata["model.0.weight"].size == [7, 5]
    sd = {"model": {"0.weight": ember.zeros(7, 5)}}
    dcp.load(sd, checkpoint_id=tmp_path / "ck")
    assert np.array_equal(sd["model"]["0.weight"].numpy(), before)


def test_docs_example_runs():
    text = DOC.read_text()
    section = text[text.index("## Distributed checkpoints") :]
    block = re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)
    exec(compile(block, str(DOC), "exec"), {})
