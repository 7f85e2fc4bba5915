"""Idioms PyTorch Lightning (2.6) and torchmetrics (1.9) reach in torch when they run on ember,
each a small program of our own checked against torch where torch can run it (neither library
is a dependency; docs/porting_examples.md records the programs run through them):

- names read at import or per call: ``torch._C._log_api_usage_once``, ``torch._C._TensorMeta``,
  ``torch.ScriptModule``, ``torch.distributed.constants.default_pg_timeout``,
  ``Backend.default_device_backend_map``, ``dataloader._MultiProcessingDataLoaderIter``;
- ``torch._C._nn._parse_to`` in a module mixin that tracks its device and dtype;
- ``torch.PyTorchFileReader`` for lazy checkpoint loading (records read on demand);
- DDP's ``static_graph`` / ``_get_ddp_logging_data()`` and the post-local-SGD comm hook;
- TensorBoard hparams written through ``summary.hparams`` and the writer's file writer;
- ``compiled.dynamo_ctx(method)``: a compiled module's settings applied to its step methods.
"""

from __future__ import annotations

import io
import pickle
import socket
import zipfile
from datetime import timedelta

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")
LIBS = {"ember": ember, "torch": torch}


def test_import_time_names():
    assert ember._C._log_api_usage_once("torchmetrics.metric.Accuracy") is None
    with pytest.raises(TypeError, match="event must be a str"):
        ember._C._log_api_usage_once(3)
    # Lightning annotates with _TensorMeta; it is the metaclass of the tensor classes
    assert isinstance(ember.Tensor, ember._C._TensorMeta)
    assert isinstance(ember.nn.Parameter, ember._C._TensorMeta)
    assert ember.ScriptModule is ember.jit.ScriptModule
    assert ember.ScriptFunction is ember.jit.ScriptFunction
    from torch.distributed import constants as tc

    from ember.distributed.constants import default_pg_nccl_timeout, default_pg_timeout

    assert default_pg_timeout == tc.default_pg_timeout == timedelta(minutes=30)
    assert default_pg_nccl_timeout == default_pg_timeout  # ember's NCCL groups' default too


def test_default_device_backend_map():
    import ember.distributed as dist

    ours = dist.Backend.default_device_backend_map
    for device in ("cpu", "cuda"):
        assert ours[device] == torch.distributed.Backend.default_device_backend_map[device]
    for name in dist.Backend.backend_list:
        dist.Backend(name)  # every listed name is accepted
    assert "cpu" in dist.Backend.backend_capability["gloo"]


PARSE_TO_CASES = [
    (("cpu",), {}),
    (("float64",), {}),
    ((), {"device": "cpu", "dtype": "float16", "non_blocking": True}),
    (("cpu", "bfloat16"), {}),
    (("tensor16",), {}),
    ((), {}),
]


def _arg(lib, a):
    if a == "tensor16":
        return lib.zeros(1, dtype=lib.float16)
    if a in ("float64", "float16", "bfloat16"):
        return getattr(lib, a)
    return a


@pytest.mark.parametrize("args,kwargs", PARSE_TO_CASES)
def test_parse_to_matches_torch(args, kwargs):
    e, t = (
        lib._C._nn._parse_to(
            *(_arg(lib, a) for a in args), **{k: _arg(lib, v) for k, v in kwargs.items()}
        )
        for lib in (ember, torch)
    )
    assert (None if e[0] is None else str(e[0])) == (None if t[0] is None else str(t[0]))
    assert (None if e[1] is None else str(e[1]).split(".")[1]) == (
        None if t[1] is None else str(t[1]).split(".")[1]
    )
    assert e[2:] == t[2:]


def _tracking_module(lib):
    # Lightning's DeviceDtypeModuleMixin: ``to`` reads its arguments with _parse_to and keeps
    # the module's dtype in step with what it was moved to
    class Tracked(lib.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = lib.nn.Linear(3, 2)
            self._dtype = lib.float32

        def to(self, *args, **kwargs):
            device, dtype = lib._C._nn._parse_to(*args, **kwargs)[:2]
            if dtype is not None:
                self._dtype = dtype
            return super().to(*args, **kwargs)

    return Tracked()


def test_device_dtype_mixin_idiom():
    for lib in LIBS.values():
        m = _tracking_module(lib)
        m.to(lib.float64)
        assert m._dtype == lib.float64 and m.lin.weight.dtype == lib.float64
        m.to("cpu", dtype=lib.float16)
        assert m._dtype == lib.float16 and m.lin.weight.dtype == lib.float16
        m.to(lib.zeros(1, dtype=lib.bfloat16))
        assert m._dtype == lib.bfloat16


def _lazy_load(lib, path):
    # Lightning's _lazy_load: unpickle data.pkl, and read a storage record only when a tensor
    # is built (here into NumPy, so the same program runs over either framework's reader)
    reader = lib.PyTorchFileReader(str(path))
    read = []

    class Unpickler(pickle.Unpickler):
        def find_class(self, module, name):
            if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
                return lambda storage, offset, size, stride, *rest: np.lib.stride_tricks.as_strided(
                    storage[offset:], size, tuple(s * storage.itemsize for s in stride)
                ).copy()
            if module == "torch" and name.endswith("Storage"):
                return name
            if module == "collections" and name == "OrderedDict":
                return dict
            return super().find_class(module, name)

        def persistent_load(self, pid):
            _, cls, key, _, _ = pid
            read.append(key)
            dtype = {"FloatStorage": np.float32, "LongStorage": np.int64}[cls]
            return np.frombuffer(reader.get_record(f"data/{key}"), dtype=dtype)

    obj = Unpickler(io.BytesIO(reader.get_record("data.pkl"))).load()
    return obj, read, reader


def test_pytorch_file_reader_matches_torch(tmp_path):
    state = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "i": np.array([4, 5], np.int64)}
    torch.save({k: torch.tensor(v) for k, v in state.items()}, tmp_path / "t.pt")
    ember.save(
        {k: ember.tensor(v) for k, v in state.items()},
        tmp_path / "e.pt",
        _use_new_zipfile_serialization=True,
    )
    for path in (tmp_path / "t.pt", tmp_path / "e.pt"):
        got = {}
        for name, lib in LIBS.items():
            obj, read, reader = _lazy_load(lib, path)
            got[name] = reader
            assert sorted(read) == ["0", "1"]
            for k, v in state.items():
                np.testing.assert_array_equal(obj[k], v)
        e, t = got["ember"], got["torch"]
        assert sorted(e.get_all_records()) == sorted(t.get_all_records())
        assert e.get_record("data.pkl") == t.get_record("data.pkl")
        raw = path.read_bytes()
        for rec in ("data/0", "data/1"):
            assert e.get_record_offset(rec) == t.get_record_offset(rec)
            assert e.get_record_size(rec) == t.get_record_size(rec)
            off = e.get_record_offset(rec)
            assert raw[off : off + e.get_record_size(rec)] == e.get_record(rec)
        assert e.has_record("version") and not e.has_record("nope")
        assert e.serialization_id() == t.serialization_id()
    with pytest.raises(RuntimeError, match="no record named 'nope'"):
        ember.PyTorchFileReader(str(tmp_path / "t.pt")).get_record("nope")
    (tmp_path / "bad.pt").write_bytes(b"not a zip")
    with pytest.raises(RuntimeError, match="not a torch.save archive"):
        ember.PyTorchFileReader(str(tmp_path / "bad.pt"))
    with zipfile.ZipFile(tmp_path / "flat.zip", "w") as z:
        z.writestr("data.pkl", b"x")
    with pytest.raises(RuntimeError, match="no top folder"):
        ember.PyTorchFileReader(tmp_path / "flat.zip")


def test_worker_iterator_shutdown_idiom():
    # Lightning's CombinedLoader: shut a persistent worker iterator down, drop it, iterate again
    from ember.utils.data import DataLoader, TensorDataset
    from ember.utils.data.dataloader import _BaseDataLoaderIter, _MultiProcessingDataLoaderIter

    assert issubclass(_MultiProcessingDataLoaderIter, _BaseDataLoaderIter)
    ds = TensorDataset(ember.arange(8.0))
    assert not isinstance(iter(DataLoader(ds, batch_size=4)), _MultiProcessingDataLoaderIter)
    loader = DataLoader(ds, batch_size=4, num_workers=1, persistent_workers=True)
    first = [b[0].tolist() for b in loader]
    assert isinstance(loader._iterator, _MultiProcessingDataLoaderIter)
    loader._iterator._shutdown_workers()
    loader._iterator = None
    assert [b[0].tolist() for b in loader] == first == [[0, 1, 2, 3], [4, 5, 6, 7]]
    loader._iterator._shutdown_workers()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def one_rank():
    import ember.distributed as dist

    dist.init_process_group(init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1)
    try:
        yield dist
    finally:
        dist.destroy_process_group()


def test_ddp_static_graph_and_logging_data(one_rank):
    from ember.nn.parallel import DistributedDataParallel as DDP

    ddp = DDP(ember.nn.Linear(3, 2))
    assert ddp.static_graph is False
    data = ddp._get_ddp_logging_data()
    # Lightning's DDPStrategy.teardown reads exactly this
    assert not (not ddp.static_graph and data.get("can_set_static_graph"))
    assert data["world_size"] == 1 and data["rank"] == 0 and data["module_name"] == "Linear"
    assert data["backend_name"] == str(one_rank.get_backend())
    ddp._set_static_graph()
    assert ddp.static_graph is True
    assert DDP(ember.nn.Linear(3, 2), static_graph=True)._get_ddp_logging_data()["static_graph"]


def test_post_local_sgd_hook(one_rank):
    from ember.distributed.algorithms.ddp_comm_hooks import post_localSGD_hook as pls
    from ember.nn.parallel import DistributedDataParallel as DDP

    x = ember.tensor(np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3))

    def train(hook_state):
        ember.manual_seed(0)
        ddp = DDP(ember.nn.Linear(3, 2))
        if hook_state is not None:
            ddp.register_comm_hook(hook_state, pls.post_localSGD_hook)
        opt = ember.optim.SGD(ddp.parameters(), lr=0.1)
        for _ in range(4):
            opt.zero_grad()
            ddp(x).square().sum().backward()
            opt.step()
        return ddp.module.weight.detach().numpy().copy()

    plain = train(None)
    state = pls.PostLocalSGDState(process_group=None, subgroup=None, start_localSGD_iter=2)
    # one rank: global, subgroup and local averaging all give DDP's gradients
    np.testing.assert_allclose(train(state), plain, rtol=1e-6)
    assert state.iter == 2 and state.subgroup is not None
    local = pls.PostLocalSGDState(None, None, 1, post_local_gradient_allreduce=False)
    np.testing.assert_allclose(train(local), plain, rtol=1e-6)
    assert local.subgroup is None  # never averaged after iteration 1
    with pytest.raises(ValueError, match="start_localSGD_iter"):
        pls.PostLocalSGDState(None, None, -1)


def test_tensorboard_hparams_through_file_writer(tmp_path):
    pytest.importorskip("tensorboardX")
    from torch.utils.tensorboard.summary import hparams as torch_hparams

    from ember.utils.tensorboard import SummaryWriter
    from ember.utils.tensorboard.summary import hparams

    params, metrics = {"lr": 0.05, "hidden": 64, "opt": "adam"}, {"hp_metric": -1}
    ours = hparams(params, metrics)
    theirs = torch_hparams(params, metrics)
    for a, b in zip(ours, theirs):  # the same protobuf bytes TensorBoard reads
        assert a.SerializeToString() == b.SerializeToString()
    with SummaryWriter(tmp_path) as w:  # Lightning's TensorBoardLogger.log_hyperparams
        fw = w._get_file_writer()
        assert fw is w.file_writer
        for s in ours:
            fw.add_summary(s, 0)
        w.add_scalar("hp_metric", -1, 0)
    events = list(tmp_path.glob("events.out.tfevents.*"))
    assert len(events) == 1 and events[0].stat().st_size > 100
    with pytest.raises(TypeError, match="should be dictionaries"):
        hparams([1], metrics)
    from ember.utils.tensorboard.writer import FileWriter
    from ember.utils.tensorboard.writer import SummaryWriter as W2

    assert W2 is SummaryWriter and callable(FileWriter)


def test_dynamo_ctx_compiles_step_methods():
    # Lightning's from_compiled: take the settings of ``torch.compile(module)`` and compile the
    # original module's methods with them, then train the original module
    class Steps(ember.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = ember.nn.Linear(4, 3)

        def forward(self, x):
            return self.lin(x)

        def training_step(self, batch, batch_idx):
            x, y = batch
            return ember.nn.functional.cross_entropy(self(x), y)

    ember.manual_seed(0)
    model = Steps()
    compiled = ember.compile(model, backend="eager")
    assert compiled._orig_mod is model
    step = compiled.dynamo_ctx(model.training_step)
    assert getattr(step, "_ember_compiled", None) is not None
    x = ember.tensor(np.linspace(-1, 1, 20, dtype=np.float32).reshape(5, 4))
    y = ember.tensor([0, 1, 2, 1, 0])
    loss = step((x, y), 0)
    loss.backward()
    eager = ember.nn.functional.cross_entropy(model.lin(x), y)
    np.testing.assert_allclose(loss.item(), eager.item(), rtol=1e-6)
    assert model.lin.weight.grad is not None


def _compiled_step_graphs(fw):
    from importlib import import_module

    counters = import_module(fw.__name__ + "._dynamo.utils").counters
    fw.manual_seed(0)
    lin = fw.nn.Linear(4, 2)

    def training_step(batch, batch_idx, lr):
        x, y = batch
        return fw.nn.functional.mse_loss(lin(x), y) * lr + batch_idx * 0

    step = fw.compile(training_step)
    before = counters["stats"]["unique_graphs"]
    losses = []
    for i in range(6):
        loss = step((fw.ones(3, 4), fw.zeros(3, 2)), i, 0.1 * (i + 1))
        loss.backward()
        losses.append(loss.item())
    return counters["stats"]["unique_graphs"] - before, losses


def test_a_compiled_step_taking_batch_idx_compiles_twice_not_per_batch():
    # torch's automatic dynamic for Python numbers: batch_idx and lr are baked in on the first
    # call and become graph inputs after one recompile (before, ember compiled once per batch
    # until the recompile limit, then ran eagerly)
    import torch

    ours, ours_losses = _compiled_step_graphs(ember)
    theirs, _ = _compiled_step_graphs(torch)
    assert ours == theirs == 2
    assert ours_losses == pytest.approx([v * (i + 1) for i, v in enumerate([ours_losses[0]] * 6)])
