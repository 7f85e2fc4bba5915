"""ember.load of files written by torch.save (zip and legacy formats), ember.save in torch's
zip format read by torch.load(weights_only=True), the restricted unpickler and safe globals."""

import collections
import io
import os
import pickle
import zipfile

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")

FORMATS = {"zip": True, "legacy": False}
DTYPES = [
    "float32",
    "float64",
    "float16",
    "bfloat16",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "bool",
    "complex64",
    "complex128",
    "uint16",
    "uint32",
    "uint64",
]


def _np(t):
    """A NumPy copy of a torch or ember tensor (bfloat16 compared as float32)."""
    if isinstance(t, torch.Tensor):
        t = t.detach()
        return (t.float() if t.dtype == torch.bfloat16 else t).numpy().copy()
    a = t.detach().numpy() if hasattr(t, "detach") else np.asarray(t)
    return a.astype(np.float32) if a.dtype.name == "bfloat16" else a.copy()


def _torch_tensors():
    g = torch.Generator().manual_seed(0)
    out = {}
    for name in DTYPES:
        dt = getattr(torch, name)
        if dt.is_complex:
            t = torch.randn(2, 3, generator=g, dtype=dt)
        elif dt.is_floating_point:
            t = torch.randn(2, 3, generator=g).to(dt)
        elif dt == torch.bool:
            t = torch.rand(2, 3, generator=g) > 0.5
        else:
            t = torch.randint(0, 100, (2, 3), generator=g).to(dt)
        out[name] = t
    return out


def _torch_roundtrip(obj, fmt, **kwargs):
    buf = io.BytesIO()
    torch.save(obj, buf, _use_new_zipfile_serialization=FORMATS[fmt])
    buf.seek(0)
    return ember.load(buf, **kwargs)


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_dtype(fmt):
    src = _torch_tensors()
    got = _torch_roundtrip(src, fmt)
    for name, t in src.items():
        assert got[name].dtype is getattr(ember, name), name
        np.testing.assert_array_equal(_np(got[name]), _np(t))


@pytest.mark.parametrize("fmt", FORMATS)
def test_views_shared_storage_and_strides(fmt):
    base = torch.arange(24.0).reshape(4, 6)
    src = {
        "base": base,
        "t": base.t(),
        "slice": base[1:, ::2],
        "row": base[2],
        "expand": torch.arange(3.0).expand(4, 3),
        "same": base,
    }
    got = _torch_roundtrip(src, fmt)
    for key in ("base", "t", "slice", "row", "expand"):
        assert tuple(got[key].shape) == tuple(src[key].shape)
        np.testing.assert_array_equal(_np(got[key]), _np(src[key]))
    assert got["same"] is got["base"]  # one object under two keys stays one object
    assert got["t"].stride() == src["t"].stride() and got["slice"].stride() == (6, 2)
    got["base"][2, 4] = -1.0  # views of one storage still share memory
    assert got["t"][4, 2].item() == -1.0 and got["slice"][1, 2].item() == -1.0
    assert got["row"][4].item() == -1.0


@pytest.mark.parametrize("fmt", FORMATS)
def test_nested_containers_and_primitives(fmt):
    src = {
        "cfg": {"lr": 0.1, "betas": (0.9, 0.99), "name": "run", "n": None, "flag": True},
        "od": collections.OrderedDict(b=torch.ones(2), a=[torch.zeros(1), {"x": 3}]),
        "size": torch.Size([2, 3]),
        "dtype": torch.bfloat16,
        "dev": torch.device("cpu"),
        "bytes": b"\x00\xff",
        "set": {1, 2},
        "complex": 1 + 2j,
        "inf": float("inf"),
    }
    got = _torch_roundtrip(src, fmt)
    assert got["cfg"] == src["cfg"]
    assert type(got["od"]) is collections.OrderedDict and list(got["od"]) == ["b", "a"]
    np.testing.assert_array_equal(_np(got["od"]["a"][0]), [0.0])
    assert got["od"]["a"][1] == {"x": 3}
    assert got["size"] == ember.Size([2, 3]) and isinstance(got["size"], ember.Size)
    assert got["dtype"] is ember.bfloat16 and got["dev"] == ember.device("cpu")
    assert (got["bytes"], got["set"], got["complex"], got["inf"]) == (
        b"\x00\xff",
        {1, 2},
        1 + 2j,
        float("inf"),
    )


def test_module_and_optimizer_state_dict_resume_training():
    torch.manual_seed(0)
    tm = torch.nn.Sequential(
        torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2)
    )
    topt = torch.optim.Adam(tm.parameters(), lr=1e-2)
    x = torch.randn(5, 4)
    for _ in range(3):
        topt.zero_grad()
        tm(x).pow(2).sum().backward()
        topt.step()
    ckpt = _torch_roundtrip(
        {"model": tm.state_dict(), "optim": topt.state_dict(), "epoch": 3}, "zip"
    )
    em = ember.nn.Sequential(
        ember.nn.BatchNorm1d(4), ember.nn.Linear(4, 3), ember.nn.Tanh(), ember.nn.Linear(3, 2)
    )
    em.load_state_dict(ckpt["model"])
    eopt = ember.optim.Adam(em.parameters(), lr=1e-2)
    eopt.load_state_dict(ckpt["optim"])
    assert ckpt["epoch"] == 3
    ex = ember.tensor(x.numpy())
    for _ in range(2):  # both continue from the same optimizer state
        topt.zero_grad()
        tm(x).pow(2).sum().backward()
        topt.step()
        eopt.zero_grad()
        em(ex).pow(2).sum().backward()
        eopt.step()
    for (k, v), (k2, v2) in zip(tm.state_dict().items(), em.state_dict().items()):
        assert k == k2
        np.testing.assert_allclose(_np(v2), _np(v), rtol=1e-5, atol=1e-6, err_msg=k)


def test_parameters_and_mmap(tmp_path):
    p = torch.nn.Parameter(torch.randn(3, 2))
    q = torch.nn.Parameter(torch.ones(2), requires_grad=False)
    path = tmp_path / "params.pt"
    torch.save({"p": p, "q": q, "again": p}, path)
    for mmap in (None, True):
        got = ember.load(path, mmap=mmap)
        assert isinstance(got["p"], ember.nn.Parameter) and got["p"].requires_grad
        assert isinstance(got["q"], ember.nn.Parameter) and not got["q"].requires_grad
        assert got["again"] is got["p"]
        np.testing.assert_array_equal(_np(got["p"]), _np(p))
    with ember.no_grad():
        got["p"][0, 0] = 5.0  # a copy-on-write map: the file is unchanged
    np.testing.assert_array_equal(_np(ember.load(path)["p"]), _np(p))
    with pytest.raises(ValueError, match="file path"):
        ember.load(io.BytesIO(path.read_bytes()), mmap=True)


@pytest.mark.parametrize("dtypes", [DTYPES[:8], DTYPES[8:]], ids=["floats-ints", "rest"])
def test_torch_reads_ember_zip(tmp_path, dtypes):
    src = {
        name: ember.tensor(_np(t)).to(getattr(ember, name))
        for name, t in _torch_tensors().items()
        if name in dtypes
    }
    base = ember.arange(12.0).reshape(3, 4)
    param = ember.nn.Parameter(ember.randn(2, 2))
    src.update(
        base=base,
        view=base[1:, ::2],
        t=base.t(),
        scalar=ember.tensor(2.5),
        p=param,
        p2=param,
        nested={
            "size": ember.Size([1, 2]),
            "dt": ember.int64,
            "dev": ember.device("cpu"),
            "list": [1, (2.0, "x")],
        },
    )
    path = tmp_path / "ember.pt"
    ember.save(src, path, _use_new_zipfile_serialization=True)
    got = torch.load(path, weights_only=True)
    for name in dtypes:
        assert got[name].dtype == getattr(torch, name)
        np.testing.assert_array_equal(_np(got[name]), _np(src[name]))
    np.testing.assert_array_equal(got["view"].numpy(), _np(base)[1:, ::2])
    assert got["t"].stride() == (1, 4) and got["scalar"].item() == 2.5
    assert isinstance(got["p"], torch.nn.Parameter) and got["p2"] is got["p"]
    assert got["nested"] == {
        "size": torch.Size([1, 2]),
        "dt": torch.int64,
        "dev": torch.device("cpu"),
        "list": [1, (2.0, "x")],
    }
    got["base"][2, 0] = -3.0  # views were written as views of one storage
    assert got["view"][1, 0].item() == -3.0 and got["t"][0, 2].item() == -3.0
    again = ember.load(path)  # and ember reads its own zip files back
    np.testing.assert_array_equal(_np(again["view"]), _np(base)[1:, ::2])
    assert torch.load(path, weights_only=True, mmap=True)["view"].shape == (2, 2)


def test_ember_save_to_stream_and_legacy():
    buf = io.BytesIO()
    ember.save({"w": ember.ones(2)}, buf, _use_new_zipfile_serialization=True)
    buf.seek(0)
    assert torch.equal(torch.load(buf, weights_only=True)["w"], torch.ones(2))
    # the pre-1.6 format (session 22): torch reads it, views still share one storage
    base = ember.arange(6.0).view(2, 3)
    buf = io.BytesIO()
    ember.save({"x": base, "v": base[1:]}, buf, _use_new_zipfile_serialization=False)
    buf.seek(0)
    got = torch.load(buf, weights_only=True)
    assert torch.equal(got["v"], torch.tensor([[3.0, 4.0, 5.0]]))
    assert got["v"].untyped_storage().data_ptr() == got["x"].untyped_storage().data_ptr()


class _Marker:
    def __reduce__(self):
        return (os.system, ("touch ember_pwned_marker",))


class Point:
    def __init__(self, x):
        self.x = x


@pytest.mark.parametrize("fmt", FORMATS)
def test_malicious_pickle_refused_nothing_runs(tmp_path, monkeypatch, fmt):
    monkeypatch.chdir(tmp_path)
    buf = io.BytesIO()
    torch.save(
        {"w": torch.ones(1), "evil": _Marker()}, buf, _use_new_zipfile_serialization=FORMATS[fmt]
    )
    buf.seek(0)
    found = ember.serialization.get_unsafe_globals_in_checkpoint(buf)
    assert found == [f"{os.system.__module__}.system"]
    if fmt == "zip":  # (torch's own lister reads zip files only)
        buf.seek(0)
        assert torch.serialization.get_unsafe_globals_in_checkpoint(buf) == found
    buf.seek(0)
    with pytest.raises(
        pickle.UnpicklingError, match=r"GLOBAL (posix|nt)\.system was not an allowed global"
    ):
        ember.load(buf)
    assert not (tmp_path / "ember_pwned_marker").exists()


def test_safe_globals_and_weights_only_false():
    buf = io.BytesIO()
    torch.save({"pt": Point(3), "w": torch.ones(2)}, buf)
    with pytest.raises(pickle.UnpicklingError, match=f"GLOBAL {__name__}.Point"):
        ember.load(io.BytesIO(buf.getvalue()))
    with ember.serialization.safe_globals([Point]):
        assert Point in ember.serialization.get_safe_globals()
        assert ember.load(io.BytesIO(buf.getvalue()))["pt"].x == 3
    assert Point not in ember.serialization.get_safe_globals()
    ember.serialization.add_safe_globals([(Point, "somewhere.Else")])
    try:
        assert (Point, "somewhere.Else") in ember.serialization.get_safe_globals()
    finally:
        ember.serialization.clear_safe_globals()
    assert ember.serialization.get_safe_globals() == []
    with pytest.warns(UserWarning, match="arbitrary"):
        got = ember.load(io.BytesIO(buf.getvalue()), weights_only=False)
    assert got["pt"].x == 3 and got["w"].tolist() == [1.0, 1.0]
    with pytest.raises(TypeError, match="safe globals"):
        ember.serialization.add_safe_globals(Point)


def _zip_bytes(obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _rewrite(data: bytes, records: dict) -> bytes:
    """A copy of a zip checkpoint with some records replaced (None: dropped)."""
    src, out = zipfile.ZipFile(io.BytesIO(data)), io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            name = info.filename.split("/", 1)[1]
            body = records.get(name, src.read(info)) if name in records else src.read(info)
            if body is not None:
                dst.writestr(info, body)
    return out.getvalue()


def test_big_endian_checkpoint():
    w = torch.arange(5, dtype=torch.float32)
    data = _zip_bytes({"w": w, "v": w[1:]})
    swapped = w.numpy().astype(">f4").tobytes()
    got = ember.load(io.BytesIO(_rewrite(data, {"byteorder": b"big", "data/0": swapped})))
    np.testing.assert_array_equal(_np(got["w"]), w.numpy())
    np.testing.assert_array_equal(_np(got["v"]), w.numpy()[1:])


def test_truncated_and_unknown_version(tmp_path):
    data = _zip_bytes({"w": torch.randn(64)})
    for cut in (len(data) // 2, len(data) - 10, 30):
        with pytest.raises(RuntimeError, match="truncated|not a valid zip"):
            ember.load(io.BytesIO(data[:cut]))
    buf = io.BytesIO()
    torch.save({"w": torch.randn(64)}, buf, _use_new_zipfile_serialization=False)
    with pytest.raises(RuntimeError, match="truncated"):
        ember.load(io.BytesIO(buf.getvalue()[:-20]))
    with pytest.raises(RuntimeError, match="unknown PyTorch checkpoint format version '99'"):
        ember.load(io.BytesIO(_rewrite(data, {"version": b"99\n"})))
    with pytest.raises(RuntimeError, match="storage record .* is missing"):
        ember.load(io.BytesIO(_rewrite(data, {"data/0": None})))
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(RuntimeError, match="empty"):
        ember.load(empty)


@pytest.fixture
def cuda_tagged():
    """Checkpoints whose storages say "cuda:0" (torch's CPU build tags them so here)."""
    import torch.serialization as ts

    entry = (0, lambda obj: "cuda:0", lambda obj, loc: None)
    ts._package_registry.append(entry)
    ts._package_registry.sort(key=lambda e: e[0])
    try:
        yield lambda fmt: _buffer(fmt)
    finally:
        ts._package_registry.remove(entry)


def _buffer(fmt):
    buf = io.BytesIO()
    torch.save(
        {"w": torch.arange(4.0), "v": torch.arange(4.0)[1:]},
        buf,
        _use_new_zipfile_serialization=FORMATS[fmt],
    )
    return buf.getvalue()


@pytest.mark.parametrize("fmt", FORMATS)
def test_map_location(cuda_tagged, fmt):
    data = cuda_tagged(fmt)
    seen = []

    def fn(storage, location):
        seen.append(location)
        return storage

    for ml in ("cpu", ember.device("cpu"), {"cuda:0": "cpu"}, fn):
        got = ember.load(io.BytesIO(data), map_location=ml)
        assert got["w"].device == ember.device("cpu") and got["v"].tolist() == [1.0, 2.0, 3.0]
    assert seen and set(seen) == {"cuda:0"}
    if not ember.cuda.is_available():
        with pytest.raises(RuntimeError, match="on a CUDA device but ember.cuda.is_available"):
            ember.load(io.BytesIO(data))
        with pytest.raises(RuntimeError, match="CUDA"):
            ember.load(io.BytesIO(_buffer(fmt)), map_location="cuda:0")


def test_bad_input():
    with pytest.raises(TypeError, match="path or a readable"):
        ember.load(12)
    with pytest.raises(TypeError, match="unexpected keyword"):
        ember.load(io.BytesIO(_zip_bytes({})), foo=1)
    with pytest.raises(RuntimeError, match="mmap can only be used"):
        buf = io.BytesIO()
        torch.save({}, buf, _use_new_zipfile_serialization=False)
        path = "legacy_for_mmap.pt"
        try:
            with open(path, "wb") as fh:
                fh.write(buf.getvalue())
            ember.load(path, mmap=True)
        finally:
            os.remove(path)


def test_docs_snippet_runs(tmp_path, monkeypatch):
    import importlib

    path = os.path.join(os.path.dirname(__file__), "..", "docs", "serialization.md")
    with open(path) as fh:
        text = fh.read()
    snippet = text.split("```python\n", 1)[1].split("```", 1)[0]
    # an importable module, so the snippet's own class pickles by name
    (tmp_path / "serialization_doc_snippet.py").write_text(snippet)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("serialization_doc_snippet")
