"""Regression tests for issue #28: cases where ember answered silently and PyTorch raises
(integer division by zero, matmul of mixed dtypes, oversized negative padding, hostile
checkpoints), killed saves (stale temp files, sharded re-saves) and SIGTERM to the launcher."""

from __future__ import annotations

import collections
import io
import json
import os
import pickle
import secrets
import signal
import socket
import struct
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest

import ember
import ember.nn.functional as F

torch = pytest.importorskip("torch")
TF = torch.nn.functional


def _same_error(fn_ember, fn_torch):
    """Both raise the same exception type with the same message."""
    with pytest.raises(Exception) as te:
        fn_torch()
    with pytest.raises(type(te.value)) as ee:
        fn_ember()
    assert str(ee.value) == str(te.value)


# ---- integer division and modulo by zero ----------------------------------------------------
_DIVS = {
    "floordiv": lambda m, a, b: a // b,
    "mod": lambda m, a, b: a % b,
    "rfloordiv": lambda m, a, b: 7 // b,
    "rmod": lambda m, a, b: 7 % b,
    "div_floor": lambda m, a, b: m.div(a, b, rounding_mode="floor"),
    "div_trunc": lambda m, a, b: m.div(a, b, rounding_mode="trunc"),
    "fmod": lambda m, a, b: m.fmod(a, b),
    "remainder": lambda m, a, b: m.remainder(a, b),
    "floor_divide_scalar": lambda m, a, b: m.floor_divide(a, 0),
    "fmod_scalar": lambda m, a, b: m.fmod(a, 0),
}


@pytest.mark.parametrize("op", sorted(_DIVS))
@pytest.mark.parametrize("dtype", ["int64", "uint8"])
def test_integer_division_by_zero_raises(op, dtype):
    a, b = np.array([5, 7, 3]), np.array([0, 2, 1])
    fn = _DIVS[op]
    _same_error(
        lambda: fn(
            ember,
            ember.tensor(a, dtype=getattr(ember, dtype)),
            ember.tensor(b, dtype=getattr(ember, dtype)),
        ),
        lambda: fn(
            torch,
            torch.tensor(a, dtype=getattr(torch, dtype)),
            torch.tensor(b, dtype=getattr(torch, dtype)),
        ),
    )


def test_integer_division_in_place_by_zero_leaves_input():
    x = ember.tensor([5, -7, 3])
    with pytest.raises(RuntimeError, match="ZeroDivisionError"):
        x //= ember.tensor([1, 0, 1])
    assert x.tolist() == [5, -7, 3]


@pytest.mark.parametrize("op", ["floordiv", "mod", "div_floor", "div_trunc", "fmod", "remainder"])
def test_division_without_zero_and_float_zero_match_torch(op):
    fn = _DIVS[op]
    a, b = [5, -7, 3, -8], [2, 3, -2, -3]
    got = fn(ember, ember.tensor(a), ember.tensor(b))
    want = fn(torch, torch.tensor(a), torch.tensor(b))
    assert got.tolist() == want.tolist() and str(got.dtype)[6:] == str(want.dtype)[6:]
    # floats never raise: inf / nan as PyTorch
    fz = fn(ember, ember.tensor([1.0, -1.0]), ember.tensor([0.0, 0.0]))
    tz = fn(torch, torch.tensor([1.0, -1.0]), torch.tensor([0.0, 0.0]))
    np.testing.assert_array_equal(fz.numpy(), tz.numpy())


# ---- matmul family with mixed dtypes -------------------------------------------------------
_MM = {
    "i64@f32 2d": (lambda m: m.ones(2, 3, dtype=m.int64) @ m.ones(3, 4)),
    "f32@f64 2d": (lambda m: m.ones(2, 3) @ m.ones(3, 4, dtype=m.float64)),
    "f16@f32 2d": (lambda m: m.ones(2, 3, dtype=m.float16) @ m.ones(3, 4)),
    "i32@i64 2d": (lambda m: m.ones(2, 3, dtype=m.int32) @ m.ones(3, 4, dtype=m.int64)),
    "f32@f64 1d1d": (lambda m: m.ones(3) @ m.ones(3, dtype=m.float64)),
    "f32@f64 2d1d": (lambda m: m.ones(2, 3) @ m.ones(3, dtype=m.float64)),
    "f64@f32 3d1d": (lambda m: m.ones(2, 2, 3, dtype=m.float64) @ m.ones(3)),
    "f32@f64 1d2d": (lambda m: m.ones(3) @ m.ones(3, 4, dtype=m.float64)),
    "f32@f64 3d2d": (lambda m: m.ones(5, 2, 3) @ m.ones(3, 4, dtype=m.float64)),
    "f64@f32 3d3d": (lambda m: m.ones(2, 2, 3, dtype=m.float64) @ m.ones(2, 3, 4)),
    "f32@f64 2d3d": (lambda m: m.ones(2, 3) @ m.ones(2, 3, 4, dtype=m.float64)),
    "mm": (lambda m: m.mm(m.ones(2, 3), m.ones(3, 4, dtype=m.float64))),
    "bmm": (lambda m: m.bmm(m.ones(2, 2, 3, dtype=m.int64), m.ones(2, 3, 4))),
    "mv": (lambda m: m.mv(m.ones(2, 3), m.ones(3, dtype=m.float64))),
    "dot": (lambda m: m.dot(m.ones(3, dtype=m.int64), m.ones(3))),
    "conv2d bias": (
        lambda m: m.nn.functional.conv2d(
            m.ones(1, 1, 4, 4), m.ones(1, 1, 2, 2), m.ones(1, dtype=m.float64)
        )
    ),
    "conv2d weight": (
        lambda m: m.nn.functional.conv2d(m.ones(1, 1, 4, 4), m.ones(1, 1, 2, 2, dtype=m.float64))
    ),
}


@pytest.mark.parametrize("case", sorted(_MM))
def test_matmul_mixed_dtypes_raise_like_torch(case):
    _same_error(lambda: _MM[case](ember), lambda: _MM[case](torch))


@pytest.mark.parametrize("case", ["i64@f32 2d", "f32@f64 2d"])
def test_linear_mixed_dtypes_raise(case):
    x, w = (
        (ember.ones(2, 3, dtype=ember.int64), ember.ones(4, 3))
        if case.startswith("i64")
        else (ember.ones(2, 3), ember.ones(4, 3, dtype=ember.float64))
    )
    with pytest.raises(RuntimeError, match="same dtype"):
        F.linear(x, w)


def test_matmul_same_dtype_and_autocast_still_work():
    a, b = np.arange(6.0).reshape(2, 3), np.arange(12.0).reshape(3, 4)
    for dt in ("float32", "float64", "int64"):
        got = ember.tensor(a, dtype=getattr(ember, dt)) @ ember.tensor(b, dtype=getattr(ember, dt))
        np.testing.assert_allclose(got.numpy(), a @ b)
    # autocast casts both operands to one dtype first, as PyTorch's autocast kernels do
    with ember.autocast("cpu", dtype=ember.bfloat16):
        out = ember.ones(2, 3) @ ember.ones(3, 4)
    assert out.dtype == ember.bfloat16


# ---- F.pad sizes ---------------------------------------------------------------------------
_PADS = [
    ((-5, 0), "constant"),
    ((-2, -3), "constant"),
    ((-5, 2), "constant"),
    ((-2, -2), "reflect"),
    ((-2, -2), "replicate"),
    ((-5, 0), "circular"),
    ((1.5, 0), "constant"),
    ((True, 0), "constant"),
]


@pytest.mark.parametrize("pad,mode", _PADS)
def test_pad_oversized_negative_raises_like_torch(pad, mode):
    _same_error(
        lambda: F.pad(ember.ones(1, 2, 4), pad, mode=mode),
        lambda: TF.pad(torch.ones(1, 2, 4), pad, mode=mode),
    )


@pytest.mark.parametrize(
    "pad,mode",
    [
        ((-2, -2), "constant"),
        ((-1, 2), "constant"),
        ((-2, -1), "reflect"),
        ((-2, -2), "circular"),
        ((0, 0, -1, 1), "replicate"),
    ],
)
def test_pad_valid_negative_matches_torch(pad, mode):
    x = np.arange(12.0, dtype=np.float32).reshape(1, 3, 4)
    got = F.pad(ember.tensor(x), pad, mode=mode)
    want = TF.pad(torch.tensor(x), pad, mode=mode)
    np.testing.assert_array_equal(got.numpy(), want.numpy())


# ---- ember.load on hostile files -----------------------------------------------------------
class _Mark:
    pass


_MARK = _Mark()


class _Rebuild:
    def __reduce__(self):
        return (
            torch._utils._rebuild_tensor_v2,
            (_MARK, 0, (4,), (1,), False, collections.OrderedDict()),
        )


def _legacy_checkpoint(numel: int, deep: int = 0) -> bytes:
    """A pre-1.6 ``torch.save`` stream declaring a FloatStorage of ``numel`` elements (with 16
    bytes of data), or whose object is ``deep`` nested lists."""

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return (
                ("storage", torch.FloatStorage, "0", "cpu", numel, None) if obj is _MARK else None
            )

    out = io.BytesIO()
    for x in (
        0x1950A86A20F9469CFC6C,
        1001,
        {
            "protocol_version": 1001,
            "little_endian": True,
            "type_sizes": {"short": 2, "int": 4, "long": 4},
        },
    ):
        pickle.dump(x, out, protocol=2)
    if deep:
        out.write(b"\x80\x02" + b"]" * deep + b"a" * (deep - 1) + b".")
        pickle.dump([], out, protocol=2)
    else:
        Pickler(out, protocol=2).dump({"w": _Rebuild()})
        pickle.dump(["0"], out, protocol=2)
        out.write(struct.pack("<q", numel) + b"\0" * 16)
    return out.getvalue()


def _zip_with_huge_record(tmp_path) -> bytes:
    torch.save({"w": torch.ones(4)}, tmp_path / "ok.pt")
    raw = bytearray((tmp_path / "ok.pt").read_bytes())
    at = raw.find(b"PK\x01\x02")
    while at != -1:  # central directory: declare 4 GiB for the storage record
        n = struct.unpack("<H", raw[at + 28 : at + 30])[0]
        if bytes(raw[at + 46 : at + 46 + n]).endswith(b"/data/0"):
            raw[at + 20 : at + 28] = struct.pack("<II", 0xFFFFFFF0, 0xFFFFFFF0)
        at = raw.find(b"PK\x01\x02", at + 4)
    return bytes(raw)


def _safetensors_huge() -> bytes:
    head = json.dumps(
        {
            "x": {"dtype": "F32", "shape": [2**60], "data_offsets": [0, 2**62]},
            "__metadata__": {"format": "ember"},
        }
    ).encode()
    return struct.pack("<Q", len(head)) + head + b"\0" * 16


def _ember_deep() -> bytes:
    from ember import _serialization_io as sio

    meta = {
        "format": "ember",
        "ember.version": "1",
        "ember.kind": "structure",
        "ember.tensors": "[]",
        "ember.structure": "[" * 100_000 + "]" * 100_000,
    }
    buf = io.BytesIO()
    sio.write({"_": np.zeros(1, np.uint8)}, meta, buf)
    return buf.getvalue()


_HOSTILE = {
    "legacy 1 TiB storage": (lambda p: _legacy_checkpoint(2**38), "declares 1099511627776"),
    "legacy 100k-deep": (lambda p: _legacy_checkpoint(0, deep=100_000), "nested too deeply"),
    "zip 4 GiB record": (_zip_with_huge_record, "declares 4294967280 bytes"),
    "safetensors 2^62 bytes": (lambda p: _safetensors_huge(), "truncated or corrupted"),
    "ember 100k-deep": (lambda p: _ember_deep(), "corrupted"),
}


@pytest.mark.parametrize("how", ["path", "file"])
@pytest.mark.parametrize("case", sorted(_HOSTILE))
def test_load_hostile_sizes_and_nesting_give_format_error(tmp_path, case, how):
    make, message = _HOSTILE[case]
    path = tmp_path / "bad.pt"
    path.write_bytes(make(tmp_path))
    with pytest.raises(RuntimeError, match=f"ember: cannot load .*{message}"):
        if how == "path":
            ember.load(path)
        else:
            with open(path, "rb") as fh:
                ember.load(fh)


def test_load_small_legacy_and_zip_still_work(tmp_path):
    path = tmp_path / "legacy.pt"
    path.write_bytes(_legacy_checkpoint(4))
    assert ember.load(path)["w"].tolist() == torch.load(path)["w"].tolist() == [0.0] * 4
    torch.save({"w": torch.arange(3.0)}, tmp_path / "zip.pt")
    with open(tmp_path / "zip.pt", "rb") as fh:
        assert ember.load(fh)["w"].tolist() == [0.0, 1.0, 2.0]
    buf = io.BytesIO()
    ember.save({"a": [ember.ones(2)]}, buf)
    buf.seek(0)
    assert ember.load(buf)["a"][0].tolist() == [1.0, 1.0]


def test_zip_deep_pickle_loads_like_torch(tmp_path):
    # the weights-only unpickler is iterative: a deep (but valid) object loads, as in torch
    path = tmp_path / "deep.pt"
    deep = 100_000
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", b"\x80\x02" + b"]" * deep + b"a" * (deep - 1) + b".")
        z.writestr("archive/version", "3\n")
    obj, n = ember.load(path), 0
    while obj:
        obj, n = obj[0], n + 1
    assert n == deep - 1


# ---- temp files of killed saves ------------------------------------------------------------
HERE = os.path.dirname(os.path.abspath(__file__))


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_next_save_removes_temp_files_of_dead_writers_only(tmp_path):
    from ember import _tempfiles

    host = _tempfiles.host_tag()
    dead = tmp_path / f".model.pt.{host}-{_dead_pid()}.0123456789ab.tmp"
    live = tmp_path / f".model.pt.{host}-{os.getpid()}.0123456789ab.tmp"
    other_host = (
        tmp_path / f".model.pt.{'0' * 8 if host != '0' * 8 else '1' * 8}-"
        f"{_dead_pid()}.0123456789ab.tmp"
    )
    legacy = tmp_path / ".model.pt.0123456789ab.tmp"  # older ember: no writer in the name
    user = tmp_path / "notes.tmp"
    for p in (dead, live, other_host, legacy, user):
        p.write_bytes(b"x" * 100)
    ember.save({"w": ember.ones(2)}, tmp_path / "other.pt")
    assert not dead.exists()
    assert all(p.exists() for p in (live, other_host, legacy, user))
    assert ember.load(tmp_path / "other.pt")["w"].tolist() == [1.0, 1.0]


_KILLED_SAVE = """
import os, signal, sys
import ember
from ember import _serialization_io as sio
write = sio._st_numpy.save_file
def write_then_die(*args, **kwargs):
    write(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)
sio._st_numpy.save_file = write_then_die
ember.save({"w": ember.zeros(1000)}, sys.argv[1])
"""


def test_save_killed_by_sigkill_leaves_old_file_and_next_save_cleans_up(tmp_path):
    target = tmp_path / "model.pt"
    ember.save({"w": ember.ones(3)}, target)
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_SAVE, str(target)], stderr=subprocess.PIPE
    )
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
    left = [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")]
    assert len(left) == 1 and f"-{proc.pid}." in left[0]  # the killed writer's temp dir
    assert ember.load(target)["w"].tolist() == [1.0] * 3  # the previous file is intact
    ember.save({"w": ember.ones(3) * 2}, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]
    assert ember.load(target)["w"].tolist() == [2.0] * 3


# ---- sharded (FSDP) checkpoint re-saved and killed -----------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    "point",
    [
        "index",
        pytest.param("shard", marks=pytest.mark.full),
        pytest.param("aside", marks=pytest.mark.full),
        pytest.param("none", marks=pytest.mark.full),
    ],
)
def test_sharded_resave_killed_keeps_previous_checkpoint(tmp_path, point):
    from ember.distributed.fsdp import checkpoint

    out = tmp_path / "ckpt"
    env = dict(
        os.environ,
        RANK="0",
        LOCAL_RANK="0",
        WORLD_SIZE="1",
        LOCAL_WORLD_SIZE="1",
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(_free_port()),
        EMBER_TOKEN=secrets.token_hex(8),
        OMP_NUM_THREADS="1",
    )
    proc = subprocess.run(
        [sys.executable, os.path.join(HERE, "defects28", "fsdp_resave.py"), str(out), point],
        env=env,
        capture_output=True,
        timeout=180,
    )
    want_rc = 0 if point == "none" else -signal.SIGKILL
    assert proc.returncode == want_rc, proc.stderr.decode()[-3000:]
    full = checkpoint.load_full_state_dicts(str(out))
    assert full["extra"] == {"step": 2 if point == "none" else 1}
    ember.manual_seed(0)  # the worker's model, as first saved; the re-save adds 1 to it
    first = ember.nn.Sequential(ember.nn.Linear(3, 4), ember.nn.Linear(4, 2)).state_dict()
    for name, value in first.items():
        want = value.numpy() + (1.0 if point == "none" else 0.0)
        np.testing.assert_allclose(full["model"][name].numpy(), want, rtol=0, atol=1e-6)
    # the next save (here: a plain process, as after a restart) cleans up what the kill left
    from ember.distributed.fsdp import _swap

    _swap.recover(str(out), checkpoint.INDEX)
    from ember import _tempfiles

    _tempfiles.remove_stale(str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    assert checkpoint.load_full_state_dicts(str(out))["extra"] == full["extra"]


# ---- SIGTERM to `ember launch` -------------------------------------------------------------
_JOB = """
import os, time
open(os.path.join(os.environ["MARKS"], os.environ["RANK"]), "w").write(str(os.getpid()))
print("ready", flush=True)
time.sleep(300)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
def test_sigterm_to_launch_stops_job_cleanly_with_143(tmp_path):
    (tmp_path / "job.py").write_text(_JOB)
    marks = tmp_path / "marks"
    marks.mkdir()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ember.launcher.cli",
            "launch",
            "--workers",
            "1",
            "--env",
            f"MARKS={marks}",
            "job.py",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while not list(marks.iterdir()) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert list(marks.iterdir()), proc.communicate(timeout=60)[1][-3000:]
        time.sleep(0.2)  # the pid file is written before the script's first print
        children = [int(p.read_text()) for p in marks.iterdir()]
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err[-3000:]
    assert "terminated by SIGTERM" in err
    assert "Traceback" not in err and "SIGTERM received" not in err  # no crash dump
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in children)


def test_docs_snippet_runs():
    text = open(os.path.join(HERE, "..", "docs", "failure_modes.md")).read()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(code, "docs/failure_modes.md", "exec"), {})
