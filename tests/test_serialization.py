"""ember.save / ember.load / save_safetensors / load_safetensors."""

from __future__ import annotations

import collections
import io
import json
import os
import pathlib
import pickle

import numpy as np
import pytest
import safetensors
import safetensors.numpy

import ember

DTYPES = [
    ember.float32,
    ember.float64,
    ember.float16,
    ember.int64,
    ember.int32,
    ember.int16,
    ember.int8,
    ember.uint8,
    ember.bool,
    ember.complex64,
    ember.complex128,
]
if ember.bfloat16 is not None:
    DTYPES.append(ember.bfloat16)


def _sample(dt, shape=(3, 4)):
    vals = np.arange(int(np.prod(shape)), dtype=np.float64).reshape(shape) - 5
    if dt is ember.bool:
        return ember.tensor(vals > 0)
    if dt.is_complex:
        return ember.tensor(vals + 1j * (vals * 2 + 1), dtype=dt)
    return ember.tensor(vals, dtype=dt)


def _same(a, b):
    assert type(a) is type(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(np.asarray(a._data), np.asarray(b._data))


def _roundtrip(obj, tmp_path, **load_kw):
    path = tmp_path / "obj.pt"
    ember.save(obj, path)
    return ember.load(path, **load_kw)


# ---- tensors -------------------------------------------------------------------------------
@pytest.mark.parametrize("dt", DTYPES, ids=lambda d: d.name)
def test_dtypes_and_shapes_roundtrip(dt, tmp_path):
    tensors = {
        "2d": _sample(dt),
        "0d": _sample(dt, ()),
        "empty": _sample(dt, (0, 3)),
        "5d": _sample(dt, (2, 1, 3, 1, 2)),
    }
    out = _roundtrip(tensors, tmp_path)
    assert out["0d"].shape == ()
    for k in tensors:
        _same(out[k], tensors[k])


def test_non_contiguous_tensors(tmp_path):
    base = ember.arange(60, dtype=ember.float32).reshape(3, 4, 5)
    views = {
        "T": base.permute(2, 0, 1),
        "step": base[:, ::2, 1::2],
        "col": base[:, 1],
        # flip copies (as torch's); its transpose is a non-contiguous view of that copy
        "flip": ember.flip(base, [0]).transpose(1, 2),
    }
    assert not any(v.is_contiguous() for v in views.values())
    out = _roundtrip(views, tmp_path)
    for k, v in views.items():
        _same(out[k], v)


def test_requires_grad_and_parameter_roundtrip(tmp_path):
    nn = pytest.importorskip("ember.nn")
    p = nn.Parameter(ember.randn(2, 3))
    frozen = nn.Parameter(ember.randn(2), requires_grad=False)
    leaf = ember.randn(4, requires_grad=True)
    out = _roundtrip({"p": p, "frozen": frozen, "leaf": leaf, "plain": ember.ones(2)}, tmp_path)
    assert type(out["p"]) is nn.Parameter and out["p"].requires_grad
    assert type(out["frozen"]) is nn.Parameter and not out["frozen"].requires_grad
    assert type(out["leaf"]) is ember.Tensor and out["leaf"].requires_grad and out["leaf"].is_leaf
    assert not out["plain"].requires_grad
    np.testing.assert_array_equal(out["p"].detach().numpy(), p.detach().numpy())


def test_shared_tensors_stay_shared(tmp_path):
    """Same Tensor object twice -> one object; two tensors on one array -> one shared array."""
    w = ember.randn(3, 3)
    alias = w.detach()  # another Tensor on the same array (what state_dict of tied weights gives)
    twin = w.clone()  # equal values, separate storage: must stay separate
    out = _roundtrip({"a": w, "b": w, "alias": alias, "twin": twin, "list": [w, alias]}, tmp_path)
    assert out["a"] is out["b"] is out["list"][0]
    assert out["alias"] is out["list"][1] and out["alias"] is not out["a"]
    out["a"].add_(1.0)
    np.testing.assert_array_equal(out["alias"].numpy(), out["a"].numpy())
    np.testing.assert_array_equal(out["twin"].numpy(), w.numpy())  # unchanged


def test_shared_data_is_stored_once(tmp_path):
    w = ember.zeros(1000)
    ember.save({"a": w, "b": w, "c": w.detach()}, tmp_path / "one.pt")
    ember.save({"a": w}, tmp_path / "single.pt")
    assert os.path.getsize(tmp_path / "one.pt") < os.path.getsize(tmp_path / "single.pt") + 500


# ---- structures ----------------------------------------------------------------------------
def test_checkpoint_structure_roundtrip_preserves_types(tmp_path):
    model = collections.OrderedDict(
        weight=ember.randn(4, 3), bias=ember.zeros(4), steps=ember.tensor(7)
    )
    optim = {
        "state": {0: {"step": ember.tensor(3.0), "exp_avg": ember.ones(4, 3)}, 1: {}},
        "param_groups": [
            {
                "lr": 1e-3,
                "betas": (0.9, 0.999),
                "eps": 1e-8,
                "amsgrad": False,
                "weight_decay": 0,
                "params": [0, 1],
                "foreach": None,
            }
        ],
    }
    ckpt = {
        "model": model,
        "optimizer": optim,
        "epoch": 5,
        "loss": 0.125,
        "best": float("inf"),
        "nan": float("nan"),
        "name": "run-1",
        "big": 2**80,
        "neg": -3,
        "flag": True,
        "none": None,
        "tuple": (1, (2.5, "x")),
        "set": {1, 2},
        "fs": frozenset({"a"}),
        "bytes": b"\x00\xff",
        "ba": bytearray(b"ab"),
        "complex": 1 - 2j,
        "dtype": ember.float16,
        "device": ember.device("cpu"),
        "size": ember.Size([2, 3]),
        "np": np.arange(6, dtype=np.int32).reshape(2, 3),
        "np_scalar": np.float32(0.5),
        "rng": ember.get_rng_state(),
        "empty": {},
        "empty_list": [],
        "unicode": "ß∂ƒ",
    }
    out = _roundtrip(ckpt, tmp_path)
    assert type(out["model"]) is collections.OrderedDict
    assert list(out["model"]) == ["weight", "bias", "steps"]
    for k in model:
        _same(out["model"][k], model[k])
    assert set(out["optimizer"]["state"]) == {0, 1}  # int keys stay ints
    _same(out["optimizer"]["state"][0]["exp_avg"], optim["state"][0]["exp_avg"])
    assert out["optimizer"]["param_groups"] == optim["param_groups"]
    assert type(out["optimizer"]["param_groups"][0]["betas"]) is tuple
    for k in (
        "epoch",
        "loss",
        "best",
        "name",
        "big",
        "neg",
        "flag",
        "none",
        "tuple",
        "set",
        "fs",
        "bytes",
        "ba",
        "complex",
        "dtype",
        "device",
        "size",
        "empty",
        "empty_list",
        "unicode",
    ):
        assert out[k] == ckpt[k] and type(out[k]) is type(ckpt[k]), k
    assert np.isnan(out["nan"])
    np.testing.assert_array_equal(out["np"], ckpt["np"])
    assert out["np"].dtype == np.int32
    assert type(out["np_scalar"]) is np.float32 and out["np_scalar"] == 0.5
    ember.set_rng_state(out["rng"])  # the restored RNG state is usable


def test_bare_tensor_and_scalars(tmp_path):
    t = ember.randn(5)
    _same(_roundtrip(t, tmp_path), t)
    assert _roundtrip(3, tmp_path) == 3
    assert _roundtrip(None, tmp_path) is None


def test_large_structure_outside_the_header(tmp_path):
    obj = {"history": [float(i) / 7 for i in range(150_000)], "t": ember.ones(3)}
    out = _roundtrip(obj, tmp_path)
    assert out["history"] == obj["history"]


# ---- safety: weights_only ------------------------------------------------------------------
class _Model:
    def __init__(self):
        self.weight = ember.randn(2, 2)
        self.name = "m"


class _Exploit:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_arbitrary_objects_need_weights_only_false(tmp_path):
    m = _Model()
    ember.save({"model": m, "epoch": 1}, tmp_path / "m.pt")
    with pytest.raises(pickle.UnpicklingError, match="weights_only=False") as info:
        ember.load(tmp_path / "m.pt")
    assert "m.pt" in str(info.value) and "_Model" in str(info.value)
    out = ember.load(tmp_path / "m.pt", weights_only=False)
    assert isinstance(out["model"], _Model) and out["epoch"] == 1
    np.testing.assert_array_equal(out["model"].weight.numpy(), m.weight.numpy())


def test_weights_only_load_never_runs_code(tmp_path):
    marker = tmp_path / "pwned"
    ember.save({"x": _Exploit(marker)}, tmp_path / "evil.pt")
    with pytest.raises(pickle.UnpicklingError):
        ember.load(tmp_path / "evil.pt")
    assert not marker.exists()
    ember.load(tmp_path / "evil.pt", weights_only=False)  # trusted: the pickle does run
    assert marker.exists()


def test_pickle_module_with_weights_only_is_refused(tmp_path):
    ember.save({"a": 1}, tmp_path / "a.pt")
    with pytest.raises(RuntimeError, match="explicit pickle_module"):
        ember.load(tmp_path / "a.pt", pickle_module=pickle, weights_only=True)
    assert ember.load(tmp_path / "a.pt", pickle_module=pickle, weights_only=False) == {"a": 1}
    # as torch.load: a pickle_module without weights_only means weights_only=False
    assert ember.load(tmp_path / "a.pt", pickle_module=pickle) == {"a": 1}


def test_self_referencing_container_is_pickled(tmp_path):
    cyc = [ember.ones(1)]
    cyc.append(cyc)
    ember.save(cyc, tmp_path / "c.pt")
    # containers are allowed under weights_only=True, cycles included (as torch.load)
    for weights_only in (True, False):
        out = ember.load(tmp_path / "c.pt", weights_only=weights_only)
        assert out[1] is out


def test_module_pickle_keeps_parameters(tmp_path):
    nn = pytest.importorskip("ember.nn")
    if not hasattr(nn, "Linear"):
        pytest.skip("nn.Linear not written yet")
    lin = nn.Linear(3, 2)
    ember.save(lin, tmp_path / "lin.pt")
    with pytest.raises(pickle.UnpicklingError, match="weights_only=False"):
        ember.load(tmp_path / "lin.pt")
    got = ember.load(tmp_path / "lin.pt", weights_only=False)
    assert type(got.weight) is nn.Parameter
    x = ember.randn(4, 3)
    np.testing.assert_array_equal(got(x).detach().numpy(), lin(x).detach().numpy())


# ---- file-like objects and paths -----------------------------------------------------------
def test_file_like_objects():
    buf = io.BytesIO()
    t = ember.randn(3)
    ember.save({"t": t}, buf)
    ember.save([1, "two"], buf)  # two payloads in one stream, read back one at a time
    buf.seek(0)
    _same(ember.load(buf)["t"], t)
    assert ember.load(buf) == [1, "two"]
    assert buf.read() == b""


def test_str_and_pathlike_paths(tmp_path):
    ember.save({"a": 1}, str(tmp_path / "s.pt"))
    assert ember.load(str(tmp_path / "s.pt")) == {"a": 1}
    assert ember.load(tmp_path / "s.pt") == {"a": 1}


def test_missing_file_and_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError):
        ember.load(tmp_path / "nope.pt")
    with pytest.raises(RuntimeError, match="Parent directory .* does not exist"):
        ember.save({"a": 1}, tmp_path / "no" / "dir" / "x.pt")


# ---- atomic writes -------------------------------------------------------------------------
def _fail_midway(exc):
    real = safetensors.numpy.serialize_file

    def broken(tensors, filename, metadata=None):
        real(tensors, filename, metadata=metadata)
        with open(filename, "r+b") as fh:  # leave a half-written file behind, then die
            fh.truncate(os.path.getsize(filename) // 2)
        raise exc

    return broken


@pytest.mark.parametrize(
    "exc",
    [OSError(28, "No space left on device"), KeyboardInterrupt()],
    ids=["disk-full", "ctrl-c"],
)
def test_interrupted_save_keeps_the_previous_file(exc, tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    old = {"epoch": 1, "w": ember.randn(100)}
    ember.save(old, path)
    before = path.read_bytes()
    monkeypatch.setattr(safetensors.numpy, "serialize_file", _fail_midway(exc))
    with pytest.raises(type(exc)):
        ember.save({"epoch": 2, "w": ember.randn(100)}, path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["ckpt.pt"]  # no temp file left behind
    out = ember.load(path)
    assert out["epoch"] == 1
    _same(out["w"], old["w"])


def test_save_replaces_and_respects_umask(tmp_path):
    path = tmp_path / "x.pt"
    ember.save({"v": 1}, path)
    ember.save({"v": 2}, path)
    assert ember.load(path) == {"v": 2}
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


# ---- corrupted files -----------------------------------------------------------------------
@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "good.pt"
    ember.save({"w": ember.randn(64, 64), "epoch": 3}, path)
    return path


def test_truncated_file_names_the_file(saved):
    data = saved.read_bytes()
    for cut in (len(data) - 10, len(data) // 2, 100, 5):
        saved.write_bytes(data[:cut])
        with pytest.raises(RuntimeError, match="good.pt.*truncated"):
            ember.load(saved)


def test_truncated_stream():
    buf = io.BytesIO()
    ember.save({"w": ember.randn(10)}, buf)
    with pytest.raises(RuntimeError, match="truncated"):
        ember.load(io.BytesIO(buf.getvalue()[:-3]))


def test_flipped_data_byte_is_caught_by_checksum(saved):
    data = bytearray(saved.read_bytes())
    data[-100] ^= 0x10
    saved.write_bytes(bytes(data))
    with pytest.raises(RuntimeError, match="good.pt.*checksum mismatch"):
        ember.load(saved)


def test_flipped_header_bytes_are_caught(saved):
    data = saved.read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = data[8 : 8 + n].decode()
    # Change a digit inside the JSON structure (still valid JSON): the header CRC catches it.
    i = header.index('\\"epoch\\"')
    tampered = header[:i] + header[i:].replace("3", "4", 1)
    saved.write_bytes(data[:8] + tampered.encode() + data[8 + n :])
    with pytest.raises(RuntimeError, match="good.pt.*header checksum mismatch"):
        ember.load(saved)
    saved.write_bytes(data[:8] + b"[" + data[9:])  # broken JSON
    with pytest.raises(RuntimeError, match="good.pt.*corrupted"):
        ember.load(saved)


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(RuntimeError, match="empty.pt.*empty"):
        ember.load(tmp_path / "empty.pt")
    (tmp_path / "text.pt").write_text("hello, this is not a checkpoint at all")
    with pytest.raises(RuntimeError, match="text.pt.*not a safetensors file"):
        ember.load(tmp_path / "text.pt")


def test_pytorch_zip_checkpoint_is_sniffed_and_loaded(tmp_path):
    # (the formats themselves are tested in test_torch_files.py)
    torch = pytest.importorskip("torch")
    torch.save({"w": torch.ones(2)}, tmp_path / "torch.pt")
    assert ember.load(tmp_path / "torch.pt")["w"].tolist() == [1.0, 1.0]


# ---- map_location --------------------------------------------------------------------------
def test_map_location_cpu_forms(tmp_path):
    t = ember.randn(2, 3)
    ember.save({"t": t, "same": t}, tmp_path / "m.pt")
    for loc in (
        "cpu",
        ember.device("cpu"),
        {"cpu": "cpu"},
        {"cuda:0": "cpu"},
        lambda storage, location: None,
        lambda storage, location: storage,
    ):
        out = ember.load(tmp_path / "m.pt", map_location=loc)
        assert out["t"].device == ember.device("cpu") and out["same"] is out["t"]
        _same(out["t"], t)


def test_map_location_callable_can_replace_tensors(tmp_path):
    ember.save({"a": ember.ones(2), "b": ember.zeros(3, dtype=ember.int64)}, tmp_path / "m.pt")
    seen = []

    def fn(storage, location):
        seen.append((location, storage.dtype))
        return storage * 2 if storage.dtype == ember.float32 else None

    out = ember.load(tmp_path / "m.pt", map_location=fn)
    assert sorted(seen, key=str) == sorted([("cpu", ember.float32), ("cpu", ember.int64)], key=str)
    assert out["a"].tolist() == [2.0, 2.0] and out["b"].tolist() == [0, 0, 0]
    with pytest.raises(TypeError, match="map_location returned"):
        ember.load(tmp_path / "m.pt", map_location=lambda s, loc: s.numpy())


@pytest.fixture
def cuda_file(tmp_path, monkeypatch):
    """A file saved from (pretend) CUDA tensors: the device is recorded, data stays NumPy."""
    with monkeypatch.context() as m:
        m.setattr(ember.Tensor, "device", property(lambda self: ember.device("cuda", 0)))
        ember.save({"w": ember.arange(4.0)}, tmp_path / "gpu.pt")
    return tmp_path / "gpu.pt"


@pytest.mark.skipif(ember.cuda.is_available(), reason="checks the CPU-only errors")
def test_cuda_locations_without_cuda(cuda_file):
    with pytest.raises(RuntimeError, match="on a CUDA device but ember.cuda.is_available"):
        ember.load(cuda_file)  # map_location=None keeps the saved device, as torch does
    with pytest.raises(RuntimeError, match="map_location=ember.device\\('cpu'\\)"):
        ember.load(cuda_file, map_location="cuda")
    for loc in ("cpu", {"cuda:0": "cpu"}, lambda s, loc: s):
        out = ember.load(cuda_file, map_location=loc)
        assert out["w"].device == ember.device("cpu") and out["w"].tolist() == [0, 1, 2, 3]
    locations = []
    with pytest.raises(RuntimeError, match="CUDA"):  # None from the callable: saved device
        ember.load(cuda_file, map_location=lambda s, loc: locations.append(loc))
    assert locations == ["cuda:0"]
    with pytest.raises(RuntimeError, match="CUDA device"):
        ember.load_safetensors(io.BytesIO(b""), device="cuda:1")
    with pytest.raises(TypeError, match="map_location"):
        ember.load(cuda_file, map_location=1.5)


@pytest.mark.gpu
def test_cuda_roundtrip(tmp_path):
    t = ember.randn(3, 3).cuda()
    ember.save({"t": t, "cpu": ember.ones(2)}, tmp_path / "g.pt")
    out = ember.load(tmp_path / "g.pt")
    assert out["t"].is_cuda and not out["cpu"].is_cuda
    np.testing.assert_array_equal(out["t"].cpu().numpy(), t.cpu().numpy())
    out = ember.load(tmp_path / "g.pt", map_location="cpu")
    assert not out["t"].is_cuda
    out = ember.load(tmp_path / "g.pt", map_location={"cpu": "cuda:0"})
    assert out["cpu"].is_cuda and out["t"].is_cuda


# ---- safetensors interchange with PyTorch --------------------------------------------------
def _torch_equal(torch, e, t):
    assert str(t.dtype).replace("torch.", "") == e.dtype.name
    assert tuple(t.shape) == tuple(e.shape)
    te = e.float() if e.dtype == ember.bfloat16 else e
    tt = t.float() if t.dtype == torch.bfloat16 else t
    np.testing.assert_array_equal(tt.numpy(), np.asarray(te._data))


def _state_dict():
    sd = {f"t.{d.name}": _sample(d) for d in DTYPES if d is not ember.complex128}
    sd["scalar"] = ember.tensor(2.5)
    sd["transposed"] = ember.arange(12.0).reshape(3, 4).T
    sd["empty"] = ember.zeros(0, 4)
    return sd


def test_pytorch_reads_ember_safetensors(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file

    sd = _state_dict()
    ember.save_safetensors(sd, tmp_path / "w.safetensors", metadata={"author": "ember"})
    got = load_file(tmp_path / "w.safetensors")
    assert set(got) == set(sd)
    for k in sd:
        _torch_equal(torch, sd[k], got[k])
    with safetensors.safe_open(tmp_path / "w.safetensors", "pt") as f:
        assert f.metadata()["author"] == "ember" and f.metadata()["format"] == "pt"


def test_ember_reads_pytorch_safetensors(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    sd = {
        "w": torch.randn(4, 3, generator=g),
        "b": torch.randn(4, generator=g).half(),
        "bf": torch.randn(2, 2, generator=g).bfloat16(),
        "idx": torch.arange(5),
        "mask": torch.tensor([True, False]),
        "s": torch.tensor(1.5),
        "i32": torch.tensor([1, -2], dtype=torch.int32),
        "u8": torch.tensor([255], dtype=torch.uint8),
    }
    save_file(sd, tmp_path / "t.safetensors")
    got = ember.load_safetensors(tmp_path / "t.safetensors")
    assert set(got) == set(sd)
    for k in sd:
        _torch_equal(torch, got[k], sd[k])
    also = ember.load(tmp_path / "t.safetensors")  # ember.load reads plain files as dicts
    _same(also["w"], got["w"])
    with open(tmp_path / "t.safetensors", "rb") as fh:
        _same(ember.load_safetensors(fh)["bf"], got["bf"])


def test_save_safetensors_order_aliases_and_roundtrip(tmp_path):
    pytest.importorskip("torch")
    from safetensors.torch import load_file

    w = ember.randn(3, 3)
    sd = {"z.weight": w, "a.bias": ember.zeros(3), "m.tied": w.detach()}
    path = tmp_path / "tied.safetensors"
    ember.save_safetensors(sd, path)
    got = ember.load_safetensors(path)
    assert list(got) == list(sd)  # saved order, not safetensors' sorted order
    got["z.weight"].add_(1)
    np.testing.assert_array_equal(got["m.tied"].numpy(), got["z.weight"].numpy())
    tt = load_file(path)  # PyTorch still sees every key
    np.testing.assert_array_equal(tt["m.tied"].numpy(), w.numpy())
    buf = io.BytesIO()
    ember.save_safetensors(sd, buf)
    buf.seek(0)
    assert list(ember.load_safetensors(buf)) == list(sd)


def test_save_safetensors_rejects_bad_input(tmp_path):
    p = tmp_path / "x.safetensors"
    with pytest.raises(TypeError, match=r"state_dict\['b'\] is a list"):
        ember.save_safetensors({"a": ember.ones(1), "b": [1]}, p)
    with pytest.raises(TypeError, match="keys must be str"):
        ember.save_safetensors({1: ember.ones(1)}, p)
    with pytest.raises(TypeError, match="metadata must map str to str"):
        ember.save_safetensors({"a": ember.ones(1)}, p, metadata={"n": 1})
    with pytest.raises(ValueError, match="reserved"):
        ember.save_safetensors({"a": ember.ones(1)}, p, metadata={"ember.order": "x"})
    with pytest.raises(TypeError, match="complex128"):
        ember.save_safetensors({"c": ember.zeros(1, dtype=ember.complex128)}, p)
    assert not p.exists()


def test_load_safetensors_reads_uint16(tmp_path):
    # uint16/32/64 are ember dtypes now (storage types, as in PyTorch), so these load
    safetensors.numpy.save_file({"u": np.arange(2, dtype=np.uint16)}, tmp_path / "u.safetensors")
    u = ember.load_safetensors(tmp_path / "u.safetensors")["u"]
    assert u.dtype == ember.uint16 and u.tolist() == [0, 1]


def test_format_is_readable_safetensors(tmp_path):
    """ember.save files are ordinary safetensors: other tools can list them."""
    ember.save({"w": ember.ones(2, 2), "epoch": 4}, tmp_path / "c.pt")
    with safetensors.safe_open(tmp_path / "c.pt", "np") as f:
        meta = f.metadata()
        assert meta["format"] == "ember" and meta["ember.kind"] == "structure"
        assert json.loads(meta["ember.tensors"])[0]["shape"] == [2, 2]
        (entry,) = f.keys()
        np.testing.assert_array_equal(f.get_tensor(entry), np.ones((2, 2), np.float32))
    with pytest.raises(RuntimeError, match="c.pt.*read it with ember.load"):
        ember.load_safetensors(tmp_path / "c.pt")


# ---- property: any plain structure round-trips exactly ------------------------------------
hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies

_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=8)
    | st.floats(allow_nan=False)
    | st.binary(max_size=8)
    | st.complex_numbers(allow_nan=False, allow_infinity=False)
)
_keys = st.integers() | st.text(max_size=8) | st.tuples(st.integers(), st.text(max_size=3))
_trees = st.recursive(
    _leaves,
    lambda kids: (
        st.lists(kids, max_size=4)
        | st.tuples(kids, kids)
        | st.dictionaries(_keys, kids, max_size=4)
    ),
    max_leaves=20,
)


def _typed(obj):
    """obj with every value tagged by its exact type (== alone says 1 == 1.0 == True)."""
    if isinstance(obj, dict):
        return ("dict", [(_typed(k), _typed(v)) for k, v in obj.items()])
    if isinstance(obj, (list, tuple)):
        return (type(obj).__name__, [_typed(v) for v in obj])
    return (type(obj).__name__, obj)


@hypothesis.settings(max_examples=60, deadline=None)
@hypothesis.given(_trees)
def test_plain_structures_roundtrip(tree):
    buf = io.BytesIO()
    ember.save(tree, buf)
    buf.seek(0)
    assert _typed(ember.load(buf)) == _typed(tree)


def test_pickled_module_loads_with_allowlisted_globals(tmp_path):
    """A whole module saved by ember.save loads under weights_only=True once its classes are
    allowlisted (torch's safe_globals workflow), and is refused naming the class otherwise."""
    import pickle

    m = ember.nn.Sequential(ember.nn.Linear(3, 2), ember.nn.ReLU())
    path = tmp_path / "model.pt"
    ember.save(m, path)
    with pytest.raises(pickle.UnpicklingError, match="ember.nn.modules.container.Sequential"):
        ember.load(path)
    with ember.serialization.safe_globals([ember.nn.Sequential, ember.nn.Linear, ember.nn.ReLU]):
        loaded = ember.load(path)
    x = ember.randn(4, 3)
    assert bool((loaded(x) == m(x)).all())
    assert ember.serialization.get_safe_globals() == []
