"""Idioms of an eighth batch of pytorch/tutorials programs (the newer intermediate pages and
the saving/loading recipes), each a small program of our own with the same idiom, checked
against torch from the same initial weights where torch can run it: ``DataLoader(in_order=
False)`` and ``__getitems__`` (data loading optimization), ``R[-1, 0] = torch.tensor([x])``
and a model in shared memory trained from a forked process (A3C), ``Tensor.record_stream``
(the prefetcher), the pages' conv model, the quadric layer, the ``nn.RNN`` name
classifier with batched losses and ``clip_grad_norm_``, bfloat16 CPU autocast with
``GradScaler("cpu")``, ``WeightedRandomSampler`` with float64 weights and a weighted
``NLLLoss`` (imbalanced data), and a custom batch sampler with a per-molecule collate over a
``ConcatDataset`` (customize data loading)."""

from __future__ import annotations

import ctypes
import math
import time

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")
LIBS = {"ember": ember, "torch": torch}


@pytest.fixture(autouse=True, scope="module")
def _torch_one_thread():
    # torch's default thread pool oversubscribes the shared CI cores (a step of the small
    # transformer: 0.85 s at the default, 4 ms at one thread)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _np(t):
    return t.detach().cpu().numpy()


def _copy_weights(e_model, t_model):
    e_model.load_state_dict({k: ember.tensor(_np(v)) for k, v in t_model.state_dict().items()})


# ---- data loading optimization: in_order=False, __getitems__ ------------------------------
class _SlowFirst(ember.utils.data.Dataset):
    """Item 0 takes a while, so with two workers the other worker's batches come first."""

    def __len__(self):
        return 6

    def __getitem__(self, i):
        if i == 0:
            time.sleep(0.4)
        return i


class _Batched(ember.utils.data.Dataset):
    def __init__(self):
        self.calls = 0

    def __len__(self):
        return 10

    def __getitem__(self, i):  # pragma: no cover - __getitems__ is used instead
        raise AssertionError("the loader should call __getitems__")

    def __getitems__(self, indices):
        return [(ember.full((2,), float(i)), i) for i in indices]


def test_dataloader_in_order_false_serves_batches_as_they_arrive():
    from ember.utils.data import DataLoader

    ds = _SlowFirst()
    kw = dict(batch_size=1, num_workers=2, prefetch_factor=2)
    ordered = [int(b) for b in DataLoader(ds, **kw)]
    assert ordered == list(range(6))
    loader = DataLoader(ds, in_order=False, persistent_workers=True, **kw)
    assert loader.in_order is False
    for _ in range(2):  # a second epoch on the same (persistent) workers
        got = [int(b) for b in loader]
        assert sorted(got) == list(range(6))  # every batch once
        assert got[0] != 0  # the slow batch did not hold the others back
    # num_workers=0 ignores the flag, as torch's single-process loader does
    single = DataLoader(ds, batch_size=2, in_order=False)
    assert [b.tolist() for b in single] == [[0, 1], [2, 3], [4, 5]]


class _SlowWorkerStream(ember.utils.data.IterableDataset):
    """Worker 0's first item is slow; each worker yields its own share of 0..9."""

    def __iter__(self):
        info = ember.utils.data.get_worker_info()
        for i in range(info.id, 10, info.num_workers):
            if i == 0:
                time.sleep(0.6)
            yield i


def test_in_order_false_hands_new_work_to_the_free_worker():
    from ember.utils.data import DataLoader

    kw = dict(batch_size=None, num_workers=2)
    assert [int(v) for v in DataLoader(_SlowWorkerStream(), **kw)] == list(range(10))
    got = [int(v) for v in DataLoader(_SlowWorkerStream(), in_order=False, **kw)]
    # as in torch: the busy worker keeps only its share of the prefetch, the free one
    # takes the rest and its items come first
    assert sorted(got) == list(range(10)) and all(v % 2 for v in got[:4])


def test_getitems_batches_with_workers():
    from ember.utils.data import DataLoader

    batches = list(DataLoader(_Batched(), batch_size=4, num_workers=2, shuffle=False))
    assert [b[1].tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert batches[0][0].shape == (4, 2) and batches[2][0][:, 0].tolist() == [8.0, 9.0]


def test_record_stream_needs_a_cuda_tensor():
    # the prefetcher calls it only on CUDA tensors; on the CPU it is an error, not a no-op
    with pytest.raises(RuntimeError, match="record_stream expects a CUDA tensor"):
        ember.zeros(2).record_stream(None)


# ---- A3C: returns written into a (T, 1) tensor, a shared model updated from a child --------
@pytest.mark.parametrize("grad", [False, True])
def test_setitem_drops_leading_unit_dims_of_the_value(grad):
    outs = {}
    for name, lib in LIBS.items():
        v = lib.tensor([0.5], requires_grad=grad)
        R = lib.zeros(4, 1)
        R[-1, 0] = 1.0 + 0.9 * v  # the A3C tutorial's bootstrap value, shape (1,)
        for i in range(-2, -5, -1):
            R[i, 0] = 1.0 + 0.9 * R[i + 1, 0]
        R[0] = lib.ones(1, 1, 1) * 7  # more leading ones than the row has dims
        R[1:3, 0] = lib.tensor([[2.0, 3.0]])
        outs[name] = _np(R)
        if grad:
            R.sum().backward()
            outs[name + "_grad"] = _np(v.grad)
    np.testing.assert_allclose(outs["ember"], outs["torch"], rtol=1e-6)
    if grad:
        np.testing.assert_allclose(outs["ember_grad"], outs["torch_grad"], rtol=1e-6)
    with pytest.raises(RuntimeError, match=r"expand\(.*size=\[\]\)"):
        ember.zeros(2, 2)[0, 0] = ember.ones(2)  # a real mismatch: torch's expand error


def _a3c_worker(shared, steps, counter):
    local = _ActorCritic()
    opt = ember.optim.RMSprop(shared.parameters(), lr=1e-2, momentum=0.9)
    for _ in range(steps):
        local.load_state_dict(shared.state_dict())
        loss = local(ember.randn(5, 4)).pow(2).mean()
        opt.zero_grad()
        local.zero_grad()
        loss.backward()
        for p_glo, p_loc in zip(shared.parameters(), local.parameters()):
            p_glo.grad = p_loc.grad  # the tutorial hands the local gradients to the shared model
        opt.step()
        with counter.get_lock():
            counter.value += 1


class _ActorCritic(ember.nn.Module):
    def __init__(self):
        super().__init__()
        from collections import OrderedDict

        self.bottom = ember.nn.Sequential(
            OrderedDict([("layer_0", ember.nn.Linear(4, 8)), ("relu_0", ember.nn.ReLU())])
        )
        self.add_module("bottom", self.bottom)
        self.value_layer_ = ember.nn.Linear(8, 1)

    def forward(self, x):
        return self.value_layer_(self.bottom(x))


def test_shared_memory_model_trained_from_forked_processes():
    import multiprocessing

    mp = ember.multiprocessing
    ember.manual_seed(0)
    shared = _ActorCritic()
    shared.share_memory()
    assert all(p.is_shared() for p in shared.parameters())
    before = shared.value_layer_.weight.detach().clone()
    counter = mp.Value(ctypes.c_int, 0)
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_a3c_worker, args=(shared, 3, counter)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert [p.exitcode for p in procs] == [0, 0]
    assert counter.value == 6
    assert not ember.equal(shared.value_layer_.weight, before)  # the children's steps landed


# ---- the data-loading tutorials' conv model (its transformer encoder is tested elsewhere) ---
def _small_conv_model(lib):
    nn = lib.nn

    class SmallConvModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(3, 8, kernel_size=7, stride=4, padding=3),
                nn.ReLU(),
                nn.Conv2d(8, 16, kernel_size=3, stride=2, padding=1),
                nn.ReLU(),
                nn.AdaptiveAvgPool2d((3, 3)),
            )
            self.classifier = nn.Linear(16, 10)

        def forward(self, x):
            x = self.features(x)
            B, C, H, W = x.shape
            x = x.view(B, C, H * W).permute(0, 2, 1)  # (B, tokens, C), as the page feeds it on
            return self.classifier(x.mean(dim=1))

    return SmallConvModel()


def test_conv_model_training_steps_match_torch():
    torch.manual_seed(0)
    t_model, e_model = _small_conv_model(torch), _small_conv_model(ember)
    _copy_weights(e_model, t_model)
    x = np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32)
    y = np.array([1, 3, 5, 7])
    res = {}
    for name, lib, model in (("torch", torch, t_model), ("ember", ember, e_model)):
        opt = lib.optim.SGD(model.parameters(), lr=0.1)
        for _ in range(2):
            loss = lib.nn.CrossEntropyLoss()(model(lib.tensor(x)), lib.tensor(y))
            opt.zero_grad()
            loss.backward()
            opt.step()
        res[name] = (loss.item(), _np(model.classifier.weight), _np(model.features[0].weight))
    assert res["ember"][0] == pytest.approx(res["torch"][0], rel=1e-4)
    np.testing.assert_allclose(res["ember"][1], res["torch"][1], atol=1e-5)
    np.testing.assert_allclose(res["ember"][2], res["torch"][2], atol=1e-5)


# ---- quadric layers: y = x^2 A^T + x B^T + b as a drop-in for Linear -----------------------
def _quadric_model(lib):
    nn = lib.nn
    from importlib import import_module

    Parameter = import_module(lib.__name__ + ".nn.parameter").Parameter

    class Quadric(nn.Module):
        def __init__(self, in_features, out_features, bias=True, device=None, dtype=None):
            factory_kwargs = {"device": device, "dtype": dtype}
            super().__init__()
            self.qweight = Parameter(lib.empty((out_features, in_features), **factory_kwargs))
            self.lweight = Parameter(lib.empty((out_features, in_features), **factory_kwargs))
            if bias:
                self.bias = Parameter(lib.empty(out_features, **factory_kwargs))
            else:
                self.register_parameter("bias", None)
            nn.init.kaiming_uniform_(self.qweight, a=math.sqrt(5))
            nn.init.kaiming_uniform_(self.lweight, a=math.sqrt(5))
            if self.bias is not None:
                fan_in, _ = nn.init._calculate_fan_in_and_fan_out(self.lweight)
                nn.init.uniform_(self.bias, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))

        def forward(self, x):
            q = nn.functional.linear(lib.mul(x, x), self.qweight, None)
            return lib.add(q, nn.functional.linear(x, self.lweight, self.bias))

    return nn.Sequential(Quadric(12, 6), nn.ReLU(), Quadric(6, 3, bias=False), nn.LogSoftmax(dim=1))


def test_quadric_layers_train_like_torch():
    torch.manual_seed(1)
    t_model, e_model = _quadric_model(torch), _quadric_model(ember)
    _copy_weights(e_model, t_model)
    assert sum(p.numel() for p in e_model.parameters()) == 12 * 6 * 2 + 6 + 6 * 3 * 2
    x = np.random.default_rng(1).standard_normal((16, 12)).astype(np.float32)
    y = np.arange(16) % 3
    losses = {}
    for name, lib, model in (("torch", torch, t_model), ("ember", ember, e_model)):
        opt = lib.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        out = []
        for _ in range(3):
            loss = lib.nn.NLLLoss()(model(lib.tensor(x)), lib.tensor(y))
            opt.zero_grad()
            loss.backward()
            opt.step()
            out.append(loss.item())
        with lib.inference_mode():
            probs = lib.exp(model(lib.tensor(x[:1]))).numpy()[0]
        losses[name] = out + list(probs)
    np.testing.assert_allclose(losses["ember"], losses["torch"], rtol=1e-5)


# ---- char-RNN classification (current page): nn.RNN, summed batch loss, clipping ----------
def _char_rnn(lib, n_letters, n_hidden, n_out):
    nn = lib.nn

    class CharRNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.RNN(n_letters, n_hidden)
            self.h2o = nn.Linear(n_hidden, n_out)
            self.softmax = nn.LogSoftmax(dim=1)

        def forward(self, line_tensor):
            rnn_out, hidden = self.rnn(line_tensor)
            return self.softmax(self.h2o(hidden[0]))

    return CharRNN()


def _line_to_tensor(lib, line, letters):
    t = lib.zeros(len(line), 1, len(letters))
    for li, letter in enumerate(line):
        t[li][0][letters.find(letter)] = 1
    return t


def test_char_rnn_batched_training_matches_torch():
    letters = "abcdefgh_"
    names = ["abc", "hgfe", "bad", "cafe", "dig", "egg"]
    labels = [0, 1, 0, 1, 2, 2]
    torch.manual_seed(0)
    t_rnn, e_rnn = _char_rnn(torch, len(letters), 8, 3), _char_rnn(ember, len(letters), 8, 3)
    _copy_weights(e_rnn, t_rnn)
    batches = np.array_split(list(range(6)), 2)  # numpy index arrays, as the page makes them
    res = {}
    for name, lib, rnn in (("torch", torch, t_rnn), ("ember", ember, e_rnn)):
        data = [
            (lib.tensor([lab], dtype=lib.long), _line_to_tensor(lib, n, letters))
            for n, lab in zip(names, labels)
        ]
        opt = lib.optim.SGD(rnn.parameters(), lr=0.2)
        out = []
        for batch in batches:
            batch_loss = 0
            for i in batch:
                label_tensor, text_tensor = data[i]
                batch_loss += lib.nn.NLLLoss()(rnn(text_tensor), label_tensor)
            batch_loss.backward()
            out.append(float(lib.nn.utils.clip_grad_norm_(rnn.parameters(), 0.5)))
            opt.step()
            opt.zero_grad()
            out.append(batch_loss.item() / len(batch))
        top_n, top_i = rnn(data[0][1]).topk(1)
        res[name] = out + [top_i[0].item()]
    np.testing.assert_allclose(res["ember"], res["torch"], rtol=1e-5)


def test_random_split_with_fractions_and_a_default_device():
    ember.set_default_device("cpu")
    try:
        g = ember.Generator(device=ember.get_default_device()).manual_seed(2024)
        train, test = ember.utils.data.random_split(list(range(20)), [0.85, 0.15], generator=g)
    finally:
        ember.set_default_device(None)
    assert (len(train), len(test)) == (17, 3)
    assert sorted(list(train) + list(test)) == list(range(20))


# ---- mixed precision on the CPU: bfloat16 autocast, GradScaler("cpu"), unscale_ + clip ----
def test_bfloat16_cpu_autocast_with_grad_scaler_matches_torch():
    torch.manual_seed(0)
    t_net = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.ReLU(), torch.nn.Linear(16, 8))
    e_net = ember.nn.Sequential(ember.nn.Linear(16, 16), ember.nn.ReLU(), ember.nn.Linear(16, 8))
    _copy_weights(e_net, t_net)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 16)).astype(np.float32)
    y = rng.standard_normal((8, 8)).astype(np.float32)
    res = {}
    for name, lib, net in (("torch", torch, t_net), ("ember", ember, e_net)):
        opt = lib.optim.SGD(net.parameters(), lr=0.01)
        scaler = lib.amp.GradScaler("cpu")
        for _ in range(2):
            with lib.autocast(device_type="cpu", dtype=lib.bfloat16):
                output = net(lib.tensor(x))
                assert output.dtype is lib.bfloat16
                loss = lib.nn.MSELoss()(output, lib.tensor(y))
                assert loss.dtype is lib.float32
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            norm = lib.nn.utils.clip_grad_norm_(net.parameters(), max_norm=0.1)
            scaler.step(opt)
            scaler.update()
            opt.zero_grad()
        res[name] = [loss.item(), float(norm), scaler.get_scale()]
        res[name + "_w"] = _np(net[0].weight)
    # bfloat16 matmuls: both round to 8 bits of mantissa, accumulations may differ a little
    np.testing.assert_allclose(res["ember"], res["torch"], rtol=2e-2)
    np.testing.assert_allclose(res["ember_w"], res["torch_w"], atol=2e-3)


# ---- imbalanced data: WeightedRandomSampler on float64 weights, weighted NLLLoss ----------
def test_weighted_sampler_from_numpy_weights_and_weighted_nll():
    from ember.utils.data import DataLoader, TensorDataset
    from ember.utils.data.sampler import WeightedRandomSampler

    targets = np.array([0] * 4 + [1] * 36)
    _, counts = np.unique(targets, return_counts=True)
    weights = 1.0 / counts
    samples_weights = ember.from_numpy(weights[targets])
    assert samples_weights.dtype is ember.float64
    ember.manual_seed(0)
    sampler = WeightedRandomSampler(samples_weights, num_samples=4000, replacement=True)
    ds = TensorDataset(ember.tensor(targets))
    seen = ember.cat([b[0] for b in DataLoader(ds, batch_size=500, sampler=sampler)])
    assert len(seen) == 4000 and 0.4 < seen.float().mean().item() < 0.6  # classes balanced

    logits = np.random.default_rng(0).standard_normal((6, 4)).astype(np.float32)
    y = np.array([0, 1, 2, 3, 0, 1])
    w = [10.0, 10.0, 1.0, 1.0]
    vals = []
    for lib in (torch, ember):
        lp = lib.nn.functional.log_softmax(lib.tensor(logits), dim=1)
        crit = lib.nn.NLLLoss(weight=lib.cat((lib.tensor(w[:2]), lib.tensor(w[2:]))))
        vals.append(crit(lp, lib.tensor(y)).item())
        confusion = lib.zeros(4, 4)
        for t, p in zip(lib.tensor(y), lp.argmax(1)):
            confusion[t, p] += 1  # 0-d tensors as indices
        vals.extend((confusion.diag() / confusion.sum(1)).tolist())
    assert vals[:5] == pytest.approx(vals[5:], rel=1e-6)


# ---- customize data loading: a batch sampler of chunks per molecule, per-molecule collate --
def _molecule_batches(lib):
    data = lib.utils.data
    default_collate = __import__(
        lib.__name__ + ".utils.data.dataloader", fromlist=["x"]
    ).default_collate
    rng = np.random.default_rng(0)
    molecules = []
    for i, n in enumerate([5, 3, 7]):
        energy = lib.tensor(rng.standard_normal(n))
        xyz = lib.tensor(rng.standard_normal((n, i + 2, 3)))
        molecule_id = lib.full_like(energy, i).type(lib.long)
        molecules.append(data.TensorDataset(molecule_id, xyz, energy))
    ds = data.ConcatDataset(molecules)

    class ChunkSampler:  # a plain object, not a Sampler subclass
        def __iter__(self):
            starts = [0] + ds.cumulative_sizes
            batch = []
            for m, size in enumerate(len(d) for d in ds.datasets):
                batch += [starts[m] + j for j in range(min(size, 4))]
                if m % 2 == 1:
                    yield batch
                    batch = []
            if batch:
                yield batch

        def __len__(self):
            return 2

    def collate(batch):
        by_molecule = {}
        for molecule_id, xyz, energy in batch:
            by_molecule.setdefault(molecule_id.item(), []).append((xyz, energy))
        return {k: default_collate(v) for k, v in by_molecule.items()}

    loader = data.DataLoader(ds, batch_sampler=ChunkSampler(), collate_fn=collate)
    first = [(m.item(), tuple(x.shape), tuple(e.shape)) for m, x, e in list(iter(ds))[:2]]
    return first + [
        (k, tuple(v[0].shape), str(v[1].dtype).split(".")[-1], float(v[1].sum()))
        for b in loader
        for k, v in b.items()
    ]


def test_concat_dataset_with_custom_batch_sampler_and_collate():
    assert _molecule_batches(ember) == _molecule_batches(torch)
