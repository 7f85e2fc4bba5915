"""Tensor dunders, protocol attributes and the torch.* surface around the math (family misc)."""

import copy
import pickle
import warnings

import numpy as np
import pytest

import ember


@pytest.fixture
def x():
    return ember.tensor([1.0, 2.0, 3.0])


def test_format_0d_uses_the_value_and_nd_formats_as_str(x):
    assert f"{ember.tensor(1.23456):.3f}" == "1.235"
    assert f"{ember.tensor(7):d}" == "7"
    assert f"{x}" == str(x)
    with pytest.raises(TypeError):
        format(x, ".2f")


def test_numpy_ufuncs_return_tensors_and_array_converts(x):
    out = np.exp(x)
    assert isinstance(out, ember.Tensor)
    np.testing.assert_allclose(out.numpy(), np.exp([1.0, 2.0, 3.0]), rtol=1e-6)
    assert isinstance(np.add(x, 1), ember.Tensor)
    assert np.asarray(x, dtype=np.float64).dtype == np.float64


def test_contains_reversed(x):
    assert 2.0 in x and 5 not in x and ember.tensor(3.0) in x
    with pytest.raises(RuntimeError, match="only supports Tensor or scalar"):
        "a" in x  # noqa: B015
    np.testing.assert_array_equal(reversed(x).numpy(), [3.0, 2.0, 1.0])
    assert reversed(ember.tensor(5)).item() == 5


def test_dlpack_roundtrip_shares_memory(x):
    assert x.__dlpack_device__() == (1, 0)
    a = np.from_dlpack(x)
    a[0] = 10.0
    assert x[0].item() == 10.0
    y = ember.from_dlpack(np.arange(3.0))
    np.testing.assert_array_equal(y.numpy(), [0.0, 1.0, 2.0])
    with pytest.raises(RuntimeError, match="require gradient"):
        ember.ones(2, requires_grad=True).__dlpack__()


def test_predicates_and_attributes(x):
    assert x.is_cpu and not x.is_meta and not x.is_pinned() and x.get_device() == -1
    assert x.layout is ember.strided and ember.get_device(x) == -1
    assert ember.tensor([0.0]).is_nonzero() is False and ember.is_nonzero(ember.tensor([2]))
    with pytest.raises(RuntimeError, match="more than one value"):
        x.is_nonzero()
    with pytest.raises(RuntimeError, match="no values"):
        ember.tensor([]).is_nonzero()
    assert x.is_same_size(ember.zeros(3)) and not ember.is_same_size(x, ember.zeros(2))
    assert x.is_signed() and not ember.tensor([1], dtype=ember.uint8).is_signed()
    assert not x.is_inference() and not x.is_distributed()
    a, b = ember.zeros(4, requires_grad=True).split(2)
    assert (a.output_nr, b.output_nr) == (0, 1)


def test_casts(x):
    assert x.char().dtype == ember.int8
    assert x.cfloat().dtype == ember.complex64 and x.cdouble().dtype == ember.complex128


def test_share_memory_moves_data_to_a_shared_mapping(x):
    assert not x.is_shared()
    assert x.share_memory_() is x and x.is_shared()
    np.testing.assert_array_equal(x.numpy(), [1.0, 2.0, 3.0])


def test_pin_memory_without_cuda_raises_like_torch_cpu(x):
    if ember.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(RuntimeError, match="accelerator"):
        x.pin_memory()


def test_setstate_and_deepcopy(x):
    t = ember.empty(0)
    t.__setstate__((ember.tensor([4.0]), True))
    assert t.requires_grad and t.item() == 4.0
    y = copy.deepcopy(x)
    assert y is not x and ember.equal(x, y)
    assert ember.equal(pickle.loads(pickle.dumps(x)), x)


def test_legacy_types():
    t = ember.FloatTensor(2, 3)
    assert t.shape == (2, 3) and t.dtype == ember.float32
    assert ember.LongTensor([1, 2]).dtype == ember.int64
    assert isinstance(ember.zeros(2), ember.FloatTensor)
    assert not isinstance(ember.zeros(2), ember.DoubleTensor)
    assert ember.typename(ember.zeros(2, dtype=ember.int64)) == "ember.LongTensor"
    assert ember.FloatTensor().numel() == 0


def test_finfo_iinfo_match_torch():
    torch = pytest.importorskip("torch")
    for name in ("float16", "bfloat16", "float32", "float64", "complex64"):
        a, b = ember.finfo(getattr(ember, name)), torch.finfo(getattr(torch, name))
        for f in ("bits", "eps", "max", "min", "tiny", "smallest_normal", "resolution", "dtype"):
            assert getattr(a, f) == getattr(b, f), (name, f)
    for name in ("uint8", "int8", "int32", "int64", "uint16", "uint64"):
        a, b = ember.iinfo(getattr(ember, name)), torch.iinfo(getattr(torch, name))
        assert (a.bits, a.min, a.max, a.dtype) == (b.bits, b.min, b.max, b.dtype)
    assert ember.finfo().dtype == "float32"
    with pytest.raises(TypeError):
        ember.iinfo(ember.float32)


def test_can_cast_and_uint_promotion_match_torch():
    torch = pytest.importorskip("torch")
    names = ["bool", "uint8", "int32", "int64", "float32", "float64", "complex64"]
    for a in names:
        for b in names:
            assert ember.can_cast(getattr(ember, a), getattr(ember, b)) == torch.can_cast(
                getattr(torch, a), getattr(torch, b)
            ), (a, b)
    assert not ember.uint32.is_signed
    with pytest.raises(RuntimeError, match="Promotion for uint16"):
        ember.promote_types(ember.uint16, ember.int32)


def test_constants_and_formats():
    assert ember.pi == np.pi and ember.e == np.e and ember.inf == np.inf
    assert np.isnan(ember.nan) and ember.newaxis is None
    assert repr(ember.channels_last) == "ember.channels_last"
    assert ember.zeros(2, 3).contiguous(memory_format=ember.contiguous_format).is_contiguous()
    assert isinstance(ember.preserve_format, ember.memory_format)
    assert isinstance(ember.strided, ember.layout)


def test_set_printoptions_changes_repr():
    try:
        ember.set_printoptions(precision=2)
        assert repr(ember.tensor([1.12345, 2.0])) == "tensor([1.12, 2.00])"
        ember.set_printoptions(threshold=5, edgeitems=2)
        assert "..." in repr(ember.arange(10.0))
        ember.set_printoptions(profile="default", sci_mode=True)
        assert "e+00" in repr(ember.tensor([1.5]))
    finally:
        ember.set_printoptions(profile="default")
    assert repr(ember.tensor([1.12345])) == "tensor([1.1235])"


def test_global_switches_roundtrip():
    ember.use_deterministic_algorithms(True, warn_only=True)
    try:
        assert ember.are_deterministic_algorithms_enabled()
        assert ember.is_deterministic_algorithms_warn_only_enabled()
        assert ember.get_deterministic_debug_mode() == 1
        ember.set_deterministic_debug_mode("error")
        assert ember.get_deterministic_debug_mode() == 2
    finally:
        ember.set_deterministic_debug_mode(0)
    assert not ember.are_deterministic_algorithms_enabled()
    ember.set_float32_matmul_precision("high")
    assert ember.backends.cuda.matmul.allow_tf32
    ember.backends.cuda.matmul.allow_tf32 = False
    assert ember.get_float32_matmul_precision() == "highest"
    with pytest.raises(RuntimeError):
        ember.set_float32_matmul_precision("low")
    ember.set_anomaly_enabled(True)
    assert ember.is_anomaly_enabled() and ember.is_anomaly_check_nan_enabled()
    ember.set_anomaly_enabled(False)
    assert not ember.is_anomaly_enabled()
    assert not ember.is_inference_mode_enabled()
    with ember.inference_mode():
        assert ember.is_inference_mode_enabled()
    assert ember.set_flush_denormal(True) in (True, False)


def test_version_compare_and_device_modules():
    # the PyTorch API level, so that programs gating on torch.__version__ take their 2.x paths
    assert ember.__version__ >= "2.0" and ember.__version__ < (3, 0)
    assert ember.__version__ == "2.13.0+ember.0.1.0" and ember.version.ember == "0.1.0"
    from importlib.metadata import version

    assert version("ember") == ember.version.ember
    assert ember.version.__version__ == ember.__version__
    assert ember.get_device_module("cpu") is ember.cpu
    assert ember.cpu.device_count() == 1 and ember.cpu.current_device() == "cpu"
    assert ember.accelerator.is_available() == ember.cuda.is_available()
    assert ember.functional.einsum is ember.einsum


def test_fork_rng_restores_the_default_generator():
    ember.manual_seed(0)
    with ember.random.fork_rng():
        ember.rand(3)
    a = ember.rand(3)
    ember.manual_seed(0)
    np.testing.assert_array_equal(a.numpy(), ember.rand(3).numpy())


def _child(i, q):
    q.put(i * 10)


def _fail(i):
    raise ValueError(f"boom {i}")


def test_multiprocessing_spawn_contract():
    mp = ember.multiprocessing
    q = mp.get_context("fork").SimpleQueue()
    assert mp.spawn(_child, args=(q,), nprocs=2, start_method="fork") is None
    assert sorted([q.get(), q.get()]) == [0, 10]
    with pytest.raises(mp.ProcessRaisedException, match="boom 0"):
        mp.spawn(_fail, nprocs=1, start_method="fork")


def test_set_default_device_reaches_the_factories():
    """Factories follow ember.set_default_device; without CUDA a cuda default is accepted and
    the factories then fail as with device="cuda"; None restores cpu."""
    try:
        ember.set_default_device("cuda")
        assert ember.get_default_device() == ember.device("cuda")
        if not ember.cuda.is_available():
            for make in (
                lambda: ember.zeros(2),
                lambda: ember.tensor([1.0]),
                lambda: ember.randn(2),
                lambda: ember.arange(3),
            ):
                with pytest.raises(RuntimeError, match="CUDA is not available"):
                    make()
        else:
            assert ember.zeros(2).device.type == "cuda"
            assert ember.tensor([1.0]).device.type == "cuda"
        # an explicit device and tensors' own placement are untouched
        assert ember.zeros(2, device="cpu").device.type == "cpu"
    finally:
        ember.set_default_device(None)
    assert ember.get_default_device() == ember.device("cpu")
    assert ember.zeros(2).device.type == "cpu"


def test_size_arithmetic_stays_a_size():
    torch = pytest.importorskip("torch")
    for m in (ember, torch):
        s = m.Size([2, 3])
        for r in (s + s, (1,) + s, s + (4,), s[1:], s * 2, 2 * s):
            assert type(r) is m.Size, (m.__name__, r)
        assert s[0] == 2 and type(s[0]) is int
    assert list(ember.Size([2, 3]) + (4,)) == list(torch.Size([2, 3]) + (4,))


def test_torch_spellings_real_scripts_use():
    """randint(high, size) (nanoGPT's get_batch) and nn.modules.activation.MultiheadAttention
    (pytorch/examples' transformer language model)."""
    assert ember.randint(5, (3,)).shape == (3,)
    assert ember.randint(2, 5, (4,)).min() >= 2
    from ember.nn.modules.activation import MultiheadAttention

    assert MultiheadAttention is ember.nn.MultiheadAttention


def test_numpy_subclasses_become_plain_arrays(tmp_path):
    """np.memmap slices (nanoGPT's data loader) work through from_numpy/tensor and stack."""
    np.arange(10, dtype=np.uint16).tofile(tmp_path / "d.bin")
    data = np.memmap(tmp_path / "d.bin", dtype=np.uint16, mode="r")
    x = ember.stack([ember.from_numpy(data[i : i + 3].astype(np.int64)) for i in range(3)])
    assert x.tolist() == [[0, 1, 2], [1, 2, 3], [2, 3, 4]]
    assert (ember.tensor(data[:4]) + 1).tolist() == [1, 2, 3, 4]


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_repr_matches_torch_without_warnings(dtype):
    torch = pytest.importorskip("torch")
    values = [[0.5, -1.25, 3.0], [1e-3, 2.0, 100.0]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a float16 compare with 1e8 once overflowed in the cast
        text = repr(ember.tensor(values, dtype=getattr(ember, dtype)))
    assert text.replace("ember", "torch") == repr(torch.tensor(values, dtype=getattr(torch, dtype)))
