"""Idioms HuggingFace ``transformers`` (4.57) reaches in torch when its models run on ember,
each a small program of our own checked against torch (transformers itself is not a
dependency; docs/porting_examples.md records the models run through it):

- the 4-D attention mask built by vmapping a mask function four times over (batch, head, q,
  kv) index tensors, with ``q_idx.new_ones((), dtype=bool)`` and a padding mask indexed by the
  batched indices, inside ``TransformGetItemToIndex()``;
- names read at import: ``flex_attention._DEFAULT_SPARSE_BLOCK_SIZE``, ``float8_e4m3fn``;
- ``save_pretrained``'s tied-weight detection through ``untyped_storage()`` (safetensors'
  ``storage_ptr``/``storage_size``), and ``from_pretrained``'s safetensors read path:
  ``UntypedStorage.from_file`` sliced, ``asarray(..., dtype=uint8).view(dtype=...)``;
- attributes set on buffers (``buffer._is_hf_initialized = True``), kept by deepcopy and
  pickle.
"""

from __future__ import annotations

import copy
import importlib
import pickle

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")
LIBS = {"ember": ember, "torch": torch}


def _np(t):
    return t.detach().cpu().numpy()


# ---- the vmapped attention mask ---------------------------------------------------------
def _mask_program(lib, TransformGetItemToIndex):
    padding = lib.tensor([[True, True, False, True, True], [False, False, True, True, True]])

    def causal(b, h, q, kv):
        return kv <= q

    def pad(b, h, q, kv):
        return padding[b, kv]

    def both(b, h, q, kv):
        # transformers' and_masks: start from a 0-d True made from a batched index
        out = q.new_ones((), dtype=lib.bool)
        for fn in (causal, pad):
            out = out & fn(b, h, q, kv).to(out.device)
        return out

    fn = both
    for dims in [(None, None, None, 0), (None, None, 0, None), (None, 0, None, None)]:
        fn = lib.vmap(fn, in_dims=dims, out_dims=0)
    fn = lib.vmap(fn, in_dims=(0, None, None, None), out_dims=0)
    with TransformGetItemToIndex():
        return fn(lib.arange(2), lib.arange(1), lib.arange(2, 5), lib.arange(5))


def test_vmapped_mask_function_matches_torch():
    from ember._dynamo._trace_wrapped_higher_order_op import TransformGetItemToIndex

    got = _mask_program(ember, TransformGetItemToIndex)
    # torch's own run needs torch._dynamo (seconds to import); the same mask by broadcasting
    padding = torch.tensor([[True, True, False, True, True], [False, False, True, True, True]])
    b, q, kv = torch.arange(2), torch.arange(2, 5), torch.arange(5)
    want = (kv[None, None, None, :] <= q[None, None, :, None]) & padding[b][:, None, None, :]
    assert tuple(got.shape) == tuple(want.shape) == (2, 1, 3, 5)
    assert got.dtype == ember.bool
    np.testing.assert_array_equal(_np(got), _np(want))


@pytest.mark.parametrize("name", ["new_zeros", "new_ones", "new_empty"])
def test_new_factories_on_batched_tensors(name):
    def f(lib):
        def g(x):
            y = getattr(x, name)((2,), dtype=lib.float32)
            if name == "new_empty":
                y = y.zero_()
            return x.float() + y.sum()

        return lib.vmap(g)(lib.arange(6).reshape(3, 2))

    np.testing.assert_array_equal(_np(f(ember)), _np(f(torch)))

    def h(lib):
        return lib.vmap(lambda x: x.new_full((2,), 7.0) * x)(lib.ones(3, 2))

    np.testing.assert_array_equal(_np(h(ember)), _np(h(torch)))


def test_names_transformers_imports():
    from torch.nn.attention import flex_attention as tf

    from ember.nn.attention import flex_attention as ef

    assert ef._DEFAULT_SPARSE_BLOCK_SIZE == tf._DEFAULT_SPARSE_BLOCK_SIZE
    str_to_dtype = {"F8_E4M3": ember.float8_e4m3fn, "BF16": ember.bfloat16}  # its table
    assert str_to_dtype["F8_E4M3"].is_floating_point and ember.float8_e4m3fn.itemsize == 1


# ---- float8 storage dtypes ----------------------------------------------------------------
@pytest.mark.parametrize("name", ["float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz"])
def test_float8_cast_round_trip_matches_torch(name):
    x = np.array([1.3, 300.0, -2.7, 0.01, 0.0], np.float32)
    e = ember.tensor(x).to(getattr(ember, name))
    t = torch.tensor(x).to(getattr(torch, name))
    assert e.element_size() == t.element_size() == 1
    np.testing.assert_array_equal(_np(e.float()), _np(t.float()))
    with pytest.raises(RuntimeError, match="Promotion for Float8 Types is not supported"):
        e + ember.tensor(x)


# ---- storages -----------------------------------------------------------------------------
def _tied_groups(lib, sd):
    # safetensors' / transformers' grouping of tensors that share memory
    groups = {}
    for name, t in sd.items():
        s = t.untyped_storage()
        groups.setdefault((s.data_ptr(), s.nbytes()), []).append(name)
    return sorted(sorted(v) for v in groups.values())


def test_untyped_storage_finds_tied_weights():
    def sd(lib):
        emb = lib.nn.Embedding(10, 4)
        head = lib.nn.Linear(4, 10, bias=False)
        head.weight = emb.weight  # tie_weights()
        m = lib.nn.ModuleDict({"wte": emb, "lm_head": head, "ln": lib.nn.LayerNorm(4)})
        return m.state_dict()

    assert _tied_groups(ember, sd(ember)) == _tied_groups(torch, sd(torch))
    for lib in (ember, torch):
        base = lib.arange(12.0)
        view = base.view(3, 4)[1:, 1:]
        assert view.untyped_storage().data_ptr() == base.untyped_storage().data_ptr()
        assert view.untyped_storage().nbytes() == 48 and len(view.untyped_storage()) == 48
    assert ember.arange(12.0)[5:].storage_offset() == torch.arange(12.0)[5:].storage_offset()


def test_storage_from_file_read_path(tmp_path):
    # safe_open(framework="pt"): map the file, slice each tensor's bytes, reinterpret them
    arrays = [np.arange(6, dtype=np.float32).reshape(2, 3), np.array([7, -8], np.int64)]
    raw = b"".join(a.tobytes() for a in arrays)
    path = tmp_path / "blob.bin"
    path.write_bytes(raw)
    outs = {}
    for name, lib in LIBS.items():
        st = lib.UntypedStorage.from_file(str(path), shared=False, nbytes=len(raw)).untyped()
        assert st.nbytes() == len(raw)
        a = lib.asarray(st[0:24], dtype=lib.uint8).view(dtype=lib.float32).reshape([2, 3])
        b = lib.asarray(st[24:40], dtype=lib.uint8).view(dtype=lib.int64).reshape([2])
        outs[name] = (_np(a), _np(b))
    for got, want in zip(outs["ember"], outs["torch"]):
        np.testing.assert_array_equal(got, want)


def test_view_dtype_with_other_element_size_matches_torch():
    for lib in LIBS.values():
        t = lib.arange(8, dtype=lib.uint8)
        assert t.view(lib.int16).tolist() == [256, 770, 1284, 1798]
        assert t.view(2, 4).view(dtype=lib.int32).shape == (2, 1)
        assert t.view(lib.int64).view(lib.uint8).tolist() == list(range(8))
    for bad in (
        lambda lib: lib.arange(8, dtype=lib.uint8)[:6].view(lib.int32),
        lambda lib: lib.arange(8, dtype=lib.uint8).view(2, 4).t().view(lib.int16),
        lambda lib: lib.arange(8, dtype=lib.uint8)[0].view(lib.int16),
    ):
        msgs = []
        for lib in (ember, torch):
            with pytest.raises(RuntimeError) as err:
                bad(lib)
            msgs.append(str(err.value))
        assert msgs[0] == msgs[1]


# ---- attributes on tensors ----------------------------------------------------------------
def test_attributes_on_buffers_survive_copies():
    for lib in (ember, torch):
        m = lib.nn.BatchNorm1d(3)
        for t in list(m.buffers()) + list(m.parameters()):
            t._is_hf_initialized = True  # _initialize_missing_keys
        m2 = copy.deepcopy(m)
        assert all(getattr(b, "_is_hf_initialized", False) for b in m2.buffers())
        x = lib.ones(2)
        x.tag = {"k": 1}
        y = pickle.loads(pickle.dumps(x))
        assert y.tag == {"k": 1} and type(y) is type(x) and y.tolist() == [1.0, 1.0]
        assert not hasattr(lib.ones(2), "tag")


# ---- accelerate (Trainer's backend) -------------------------------------------------------
def test_accelerate_import_paths():
    from ember._dynamo.eval_frame import OptimizedModule
    from ember.distributed.parallel.ddp import DistributedDataParallel as DDP
    from ember.nn.parallel.distributed import DistributedDataParallel

    assert DistributedDataParallel is DDP
    # the submodule path resolves while the package attribute stays torch's function
    from ember.nn.parallel.data_parallel import DataParallel  # noqa: F401

    assert callable(ember.nn.parallel.data_parallel)
    assert callable(torch.nn.parallel.data_parallel)
    m = ember.nn.Linear(2, 2)
    assert isinstance(ember.compile(m), OptimizedModule) and not isinstance(m, OptimizedModule)
    # accelerate probes other frameworks' device names; torch answers False, never raises
    for lib in (ember, torch):
        assert (lib.device("cpu") == "npu") is False


def _wrapped_optimizer_losses(lib):
    class Wrapped(lib.optim.Optimizer):
        # accelerate's AcceleratedOptimizer: an Optimizer subclass that never calls
        # Optimizer.__init__ and forwards to the optimizer it wraps
        def __init__(self, optimizer):
            self.optimizer = optimizer

        @property
        def param_groups(self):
            return self.optimizer.param_groups

        @property
        def state(self):
            return self.optimizer.state

        def zero_grad(self, set_to_none=True):
            self.optimizer.zero_grad(set_to_none=set_to_none)

        def step(self, closure=None):
            self.optimizer.step(closure)

    lib.manual_seed(0)
    model = lib.nn.Linear(3, 1)
    with lib.no_grad():
        model.weight.copy_(lib.tensor([[0.5, -0.25, 0.125]]))
        model.bias.fill_(0.1)
    opt = Wrapped(lib.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))
    x = lib.tensor([[1.0, 2.0, 3.0], [-1.0, 0.5, 2.0]])
    losses = []
    for _ in range(3):
        loss = model(x).pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    return losses


def test_optimizer_wrapper_without_optimizer_init():
    counts = {}
    for name, lib in LIBS.items():
        calls = []
        optimizer_module = importlib.import_module(f"{lib.__name__}.optim.optimizer")
        handle = optimizer_module.register_optimizer_step_pre_hook(
            lambda opt, args, kwargs, calls=calls: calls.append(type(opt).__name__)
        )
        try:
            counts[name] = (_wrapped_optimizer_losses(lib), calls)
        finally:
            handle.remove()
    np.testing.assert_allclose(counts["ember"][0], counts["torch"][0], rtol=1e-6)
    # a global hook runs once per step, for the wrapped optimizer only (as torch's)
    assert counts["ember"][1] == counts["torch"][1] == ["SGD"] * 3


def test_numpy_names_for_dim_and_keepdim():
    # generate()'s beam search and resize_token_embeddings write NumPy's keyword names
    def prog(lib):
        x = lib.tensor([[True, False, True], [True, True, True]])
        w = lib.tensor([[1.0, 2.0, 4.0], [3.0, -1.0, 0.5]])
        return [
            lib.all(x, axis=-1, keepdims=True),
            lib.any(x, axis=-2),
            lib.mean(w, axis=0),
            lib.std(w, axis=0),
            lib.amax(w, axis=1, keepdims=True),
        ]

    for got, want in zip(prog(ember), prog(torch)):
        assert tuple(got.shape) == tuple(want.shape)
        np.testing.assert_allclose(_np(got), _np(want), rtol=1e-6)
    with pytest.raises(TypeError, match="alias"):
        ember.all(ember.ones(2), dim=0, axis=0)


def test_empty_list_index_and_static_cache_hint():
    # NoRepeatNGramLogitsProcessor: ``scores[i, banned_tokens] = -inf`` with no banned tokens
    for lib in (ember, torch):
        scores = lib.zeros(2, 5)
        scores[0, []] = -float("inf")
        assert scores.sum().item() == 0.0
        assert tuple(scores[0, []].shape) == (0,) and tuple(scores[[]].shape) == (0, 5)
    # StaticCache marks its key/value buffers for CUDA graphs; a no-op hint here
    from ember._dynamo import mark_static_address

    mark_static_address(ember.zeros(2, 3))
    with pytest.raises(TypeError, match="expects a tensor"):
        mark_static_address([1, 2])
