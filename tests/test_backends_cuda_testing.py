"""ember.backends, ember.cuda without a GPU (as torch's CPU build), and ember.testing."""

import numpy as np
import pytest

import ember
from ember.testing import assert_close, make_tensor

no_cuda = pytest.mark.skipif(ember.cuda.is_available(), reason="checks the CPU-only behaviour")


# ---- backends ------------------------------------------------------------------------------
def test_backends_flags_and_availability():
    b = ember.backends
    assert b.cudnn.is_available() == (b.cudnn.version() is not None)
    old = b.cudnn.benchmark
    with b.cudnn.flags(enabled=True, benchmark=True, deterministic=True):
        assert b.cudnn.benchmark and b.cudnn.deterministic
    assert b.cudnn.benchmark == old and not b.cudnn.deterministic
    assert not b.mps.is_available() and not b.mps.is_built()
    assert b.cpu.get_cpu_capability() in (
        "AVX512",
        "AVX2",
        "SVE256",
        "NEON",
        "VSX",
        "ZVECTOR",
        "DEFAULT",
    )
    assert b.quantized.engine in b.quantized.supported_engines
    assert b.mha.get_fastpath_enabled()
    b.mha.set_fastpath_enabled(False)
    assert not b.mha.get_fastpath_enabled()
    b.mha.set_fastpath_enabled(True)


def test_backends_cuda_sdp_toggles():
    c = ember.backends.cuda
    c.enable_flash_sdp(False)
    assert not c.flash_sdp_enabled()
    with pytest.warns(FutureWarning), c.sdp_kernel(enable_flash=True, enable_math=False):
        assert c.flash_sdp_enabled() and not c.math_sdp_enabled()
    assert not c.flash_sdp_enabled() and c.math_sdp_enabled()
    c.enable_flash_sdp(True)
    assert not c.is_flash_attention_available()


def test_backends_module_names_match_torch():
    torch = pytest.importorskip("torch")
    for name in (
        "cpu",
        "cuda",
        "cudnn",
        "mps",
        "mkl",
        "mkldnn",
        "openmp",
        "opt_einsum",
        "nnpack",
        "mha",
        "miopen",
        "cusparselt",
        "kleidiai",
        "quantized",
    ):
        assert hasattr(ember.backends, name) and hasattr(torch.backends, name)
    assert ember.backends.cudnn.enabled == torch.backends.cudnn.enabled


# ---- cuda without a GPU: as torch's CPU build ----------------------------------------------
@no_cuda
def test_cuda_queries_answer_like_torch_cpu_build():
    c = ember.cuda
    assert not c.is_available() and c.device_count() == 0 and not c.is_initialized()
    assert c.memory_allocated() == c.memory_reserved() == c.max_memory_allocated() == 0
    assert c.max_memory_reserved() == 0 and c.memory_cached() == 0
    assert c.memory_stats() == {} and c.memory_stats_as_nested_dict() == {}
    assert c.get_rng_state_all() == [] and c.default_generators == ()
    assert not c.is_bf16_supported() and c.get_arch_list() == [] and c.get_gencode_flags() == ""
    c.empty_cache()
    c.seed()
    c.seed_all()
    c.manual_seed_all(1)
    c.set_rng_state(ember.zeros(2, dtype=ember.uint8))
    with c.device(None), c.stream(None), c.device_of(ember.zeros(1)):
        pass


@no_cuda
@pytest.mark.parametrize(
    "call,error",
    [
        ("current_device()", AssertionError),
        ("synchronize()", AssertionError),
        ("mem_get_info()", AssertionError),
        ("get_device_name()", AssertionError),
        ("get_device_capability()", AssertionError),
        ("get_device_properties(0)", AssertionError),
        ("current_stream()", AssertionError),
        ("get_rng_state()", AssertionError),
        ("initial_seed()", AssertionError),
        ("init()", AssertionError),
        ("Stream()", RuntimeError),
        ("Event()", RuntimeError),
    ],
)
def test_cuda_errors_where_torch_cpu_build_raises(call, error):
    torch = pytest.importorskip("torch")
    with pytest.raises(error):
        eval("torch.cuda." + call, {"torch": torch})
    with pytest.raises(error):
        eval("ember.cuda." + call, {"ember": ember})


@no_cuda
def test_cuda_legacy_types_need_cuda():
    assert not isinstance(ember.zeros(2), ember.cuda.FloatTensor)
    with pytest.raises(TypeError):
        ember.cuda.FloatTensor(2)


# ---- testing -------------------------------------------------------------------------------
def _message(fn, *args, **kwargs):
    with pytest.raises(AssertionError) as info:
        fn(*args, **kwargs)
    return str(info.value)


@pytest.mark.parametrize(
    "case",
    [
        ([1.0, 2.0, 3.0], [1.0, 2.5, 3.0], "float32", {}),
        ([1, 2, 3], [1, 4, 3], "int64", {}),
        ([[1.0, 2.0], [3.0, 4.0]], [[1.0, 2.0], [3.0, 5.0]], "float32", {}),
        (1.0, 1.5, "float32", {}),
        ([0.0, 1.0], [0.5, 1.0], "float64", {"rtol": 0.1, "atol": 0.1}),
    ],
)
def test_assert_close_messages_match_torch(case):
    torch = pytest.importorskip("torch")
    a, b, dt, kw = case
    ours = _message(
        assert_close,
        ember.tensor(a, dtype=getattr(ember, dt)),
        ember.tensor(b, dtype=getattr(ember, dt)),
        **kw,
    )
    theirs = _message(
        torch.testing.assert_close,
        torch.tensor(a, dtype=getattr(torch, dt)),
        torch.tensor(b, dtype=getattr(torch, dt)),
        **kw,
    )
    assert ours == theirs


def test_assert_close_checks_and_nesting():
    x = ember.tensor([1.0, 2.0])
    assert_close(x, x + 1e-7)
    assert "attribute 'shape'" in _message(assert_close, x, ember.zeros(3))
    assert "attribute 'dtype'" in _message(assert_close, x, x.double())
    assert_close(x, x.double(), check_dtype=False)
    assert "item [1]" in _message(assert_close, [x, x], [x, x + 1])
    assert "item ['a']" in _message(assert_close, {"a": 1.0}, {"a": 2.0})
    nan = ember.tensor([float("nan")])
    _message(assert_close, nan, nan)
    assert_close(nan, nan, equal_nan=True)
    assert _message(assert_close, x, x + 1, msg="custom") == "custom"
    assert _message(assert_close, x, x + 1, msg=lambda m: "X" + m).startswith("XTensor-likes")
    with pytest.raises(ValueError, match="no atol"):
        assert_close(x, x, rtol=0)
    with pytest.raises(TypeError, match="No comparison pair"):
        assert_close(x, [1.0, 2.0])
    assert_close(np.array([1.0]), np.array([1.0]))
    with pytest.warns(FutureWarning):
        ember.testing.assert_allclose(x, [1.0, 2.0])


def test_make_tensor():
    t = make_tensor(2, 3, dtype=ember.float32, low=-1, high=1)
    assert t.shape == (2, 3) and t.dtype == ember.float32
    assert float(t.min()) >= -1 and float(t.max()) < 1
    i = make_tensor((50,), dtype=ember.int64, low=0, high=3)
    assert set(i.tolist()) <= {0, 1, 2}
    assert make_tensor(4, 4, dtype=ember.float64, noncontiguous=True).is_contiguous() is False
    z = make_tensor(100, dtype=ember.int32, low=-1, high=2, exclude_zero=True)
    assert 0 not in z.tolist()
    g = make_tensor(3, dtype=ember.float32, requires_grad=True)
    assert g.requires_grad and make_tensor(3, dtype=ember.bool).dtype == ember.bool
    with pytest.raises(ValueError):
        make_tensor(3, dtype=ember.float32, low=2, high=1)
