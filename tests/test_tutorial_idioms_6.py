"""Idioms of a sixth batch of pytorch/tutorials programs (the beginner series: introyt, blitz,
pytorch_with_examples, nlp, leaf vs non-leaf, pinmem_nonblock, hyperparameter tuning with Ray
Tune) run with ``import ember as torch``, each a small program of our own with the same idiom,
checked against torch where torch can run it: the printed text of tensors (rows wrapped and
suffixes placed as torch's), ``torch.return_types`` reprs, graph walks through
``grad_fn.next_functions``, a custom Function's node name, CPU pinned-memory idioms, FashionMNIST
and CIFAR-10 stand-ins trained with ``SummaryWriter`` logging, and a Tune sweep with ASHA and
checkpoints."""

from __future__ import annotations

import math
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from _tutorial_tune_worker import Net, cifar, train_cifar

import ember
from ember import nn
from ember.vision import datasets, transforms

torch = pytest.importorskip("torch")


def _same_text(make):
    """``make(lib)`` prints the same text under ember and torch (``ember.`` for ``torch.``)."""
    assert str(make(ember)) == str(make(torch)).replace("torch.", "ember.")


# ---- printed tensors (tensors_deeper, autogradyt, leaf vs non-leaf) --------------------------
_RNG = np.random.default_rng(0)
_ARRAYS = [
    _RNG.random(s).astype(np.float32) * k
    for s in [(1, 20), (2, 20), (2, 2, 20), (20,), (2000,), (100, 100), (3, 1000), (11, 11, 11)]
    for k in (1, 100)
]


@pytest.mark.parametrize("i", range(len(_ARRAYS)))
def test_rows_wrap_and_summaries_print_as_torch(i):
    a = _ARRAYS[i]  # (a matrix row wraps at the width torch computes for its indent)
    _same_text(lambda lib: lib.tensor(a))
    _same_text(lambda lib: lib.tensor((a * 1000).astype(np.int64)))
    _same_text(lambda lib: lib.tensor(a > 0.5))


def test_suffixes_wrap_and_complex_default_dtype_as_torch():
    a = np.linspace(0, 2 * math.pi, 25, dtype=np.float32)  # autogradyt's linspace
    _same_text(lambda lib: lib.tensor(a, requires_grad=True))
    _same_text(lambda lib: lib.sin(lib.tensor(a, requires_grad=True)))
    _same_text(lambda lib: lib.tensor(a[:20].reshape(1, 20), requires_grad=True))
    _same_text(lambda lib: lib.tensor([[1.5 + 2j, 3 - 1.25j]]))
    _same_text(lambda lib: lib.tensor([1 + 2j, 3 - 1j], dtype=lib.complex128))


def test_return_types_print_one_field_a_line():
    m = [[3.0, 0.0], [0.0, 2.0]]
    _same_text(lambda lib: lib.svd(lib.tensor(m)))
    _same_text(lambda lib: lib.linalg.eigh(lib.tensor(m)))
    _same_text(lambda lib: lib.frexp(lib.tensor([8.0, 0.75])))


def test_relu_gradient_of_a_dead_unit_is_plus_zero():
    # leaf-vs-nonleaf tutorial: b.grad printed ``0.0000`` where a negative gradient meets relu
    def grads(lib):
        w = lib.tensor([[0.5, -0.5], [0.25, 0.75], [1.0, -1.0]], requires_grad=True)
        b = lib.tensor([[0.1, 0.2]], requires_grad=True)
        z = lib.ones(1, 3) @ w + b
        z.retain_grad()
        lib.nn.functional.mse_loss(lib.relu(z), lib.ones(1, 2)).backward()
        return f"{b.grad} {z.grad}"

    _same_text(grads)
    assert "-0.0000" not in grads(ember)


# ---- graph walks and node names (autogradyt, pytorch_with_examples) --------------------------
def test_reflected_mul_and_add_keep_the_tensor_first():
    def chain(lib):
        a = lib.linspace(0.0, 1.0, steps=5, requires_grad=True)
        d = 2 * lib.sin(a) + 1  # d.grad_fn -> Mul -> Sin -> AccumulateGrad
        fn = d.grad_fn.next_functions[0][0].next_functions[0][0].next_functions[0][0]
        return fn.name().split("::")[-1], fn.variable is a, (3 + a).grad_fn.next_functions[1]

    assert chain(ember) == chain(torch)


@pytest.mark.parametrize(
    "index",
    ["[0]", "[0][0:3]", "[:]", "[0, :]", "[:, 0]", "[0, 1:3]", "[None]", "[..., 1]", "[[0, 1]]"],
)
def test_indexing_nodes_are_named_as_torch(index):
    names = [
        eval(f"(lib.ones(4, 5, requires_grad=True) * 1){index}").grad_fn.name()
        for lib in (ember, torch)
    ]
    assert names[0] == names[1]


def test_custom_function_node_is_named_without_a_number():
    class Legendre3(ember.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return 0.5 * (5 * x**3 - 3 * x)

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return grad * 1.5 * (5 * x**2 - 1)

    y = Legendre3.apply(ember.tensor([0.5], requires_grad=True))
    assert repr(y) == "tensor([-0.4375], grad_fn=<Legendre3Backward>)"
    assert repr(y.grad_fn).startswith("<ember.autograd.function.Legendre3Backward object at")
    assert (y * 2).grad_fn.name() == "MulBackward0"


def test_polynomial_fits_match_torch():
    # pytorch_with_examples: Flatten(0, 1) on x.unsqueeze(-1).pow(p), MSELoss(sum), manual
    # updates under no_grad; the same start gives the same coefficients
    def fit(lib):
        x = lib.linspace(-math.pi, math.pi, 200)
        xx = x.unsqueeze(-1).pow(lib.tensor([1, 2, 3]))
        model = lib.nn.Sequential(lib.nn.Linear(3, 1), lib.nn.Flatten(0, 1))
        with lib.no_grad():
            model[0].weight.copy_(lib.tensor([[0.1, -0.1, 0.05]]))
            model[0].bias.zero_()
        loss_fn = lib.nn.MSELoss(reduction="sum")
        for _ in range(100):
            loss = loss_fn(model(xx), lib.sin(x))
            model.zero_grad()
            loss.backward()
            with lib.no_grad():
                for param in model.parameters():
                    param -= 1e-5 * param.grad
        return np.concatenate([model[0].bias.detach().numpy(), model[0].weight.detach().numpy()[0]])

    np.testing.assert_allclose(fit(ember), fit(torch), atol=1e-4)


def test_autograd_functional_and_profiler_table():
    fa = ember.autograd.functional
    ft = torch.autograd.functional
    x, v = np.array([0.5, -1.0, 2.0], np.float32), np.array([0.1, 1.0, 1e-4], np.float32)

    def cube(t):
        return (t**3).sum()

    for name in ("hvp", "vhp"):
        e = getattr(fa, name)(cube, ember.tensor(x), ember.tensor(v))
        t = getattr(ft, name)(cube, torch.tensor(x), torch.tensor(v))
        np.testing.assert_allclose(e[1].numpy(), t[1].numpy(), rtol=1e-6)
    e = fa.jacobian(lambda a, b: 2 * a.exp() + 3 * b, (ember.tensor(x), ember.tensor(v)))
    t = ft.jacobian(lambda a, b: 2 * a.exp() + 3 * b, (torch.tensor(x), torch.tensor(v)))
    np.testing.assert_allclose(e[0].numpy(), t[0].numpy(), rtol=1e-6)
    z = ember.ones(2, 3, requires_grad=True)
    with ember.autograd.profiler.profile(use_cuda=False) as prf:
        for _ in range(20):
            z = (z / 2) * 3
    table = prf.key_averages().table(sort_by="self_cpu_time_total")
    assert "Self CPU time total" in table and table.count("::mul") == table.count("::div") == 1


# ---- pinned memory on a CPU-only machine (pinmem_nonblock) -----------------------------------
def test_pin_memory_without_an_accelerator_as_torch():
    for lib in (ember, torch):
        t = lib.ones(3)
        assert not t.is_pinned() and t.to("cpu", non_blocking=True) is t and t.cpu() is t
        with pytest.raises(RuntimeError, match="Cannot access accelerator device"):
            t.pin_memory()
        with pytest.raises(RuntimeError, match="no pinned memory allocator"):
            lib.randn(10, pin_memory=True)
        out = lib.zeros(3)
        out.copy_(lib.ones(3), non_blocking=True)
        assert out.tolist() == [1.0, 1.0, 1.0]


# ---- FashionMNIST stand-in + SummaryWriter (trainingyt, tensorboardyt) -----------------------
def _idx_files(root, n=48):
    raw = Path(root, "FashionMNIST", "raw")
    raw.mkdir(parents=True)
    rng = np.random.default_rng(1)
    y = rng.integers(0, 10, n).astype(np.uint8)
    img = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
    for i, c in enumerate(y):  # a learnable rule: a bright bar whose row is the class
        img[i, 2 + 2 * c : 4 + 2 * c] = 250
    for prefix in ("train", "t10k"):
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(
            struct.pack(">IIII", 2051, n, 28, 28) + img.tobytes()
        )
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, n) + y.tobytes())


def test_fashion_mnist_training_logs_scalars_images_graph_and_embedding(tmp_path):
    from ember.utils.tensorboard import SummaryWriter
    from ember.vision.utils import make_grid

    _idx_files(tmp_path)
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))])
    train_set = datasets.FashionMNIST(str(tmp_path), train=True, transform=tf, download=True)
    loader = ember.utils.data.DataLoader(train_set, batch_size=4, shuffle=True)
    images, labels = next(iter(loader))
    writer = SummaryWriter(str(tmp_path / "runs" / "fashion"))
    writer.add_image("Four Fashion-MNIST Images", make_grid(images))
    model, loss_fn = Net(), nn.CrossEntropyLoss()
    opt = ember.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    best_vloss = 1_000_000.0
    for epoch in range(2):
        model.train(True)
        for i, (inputs, labels) in enumerate(loader):
            opt.zero_grad()
            loss = loss_fn(model(inputs), labels)
            loss.backward()
            opt.step()
            writer.add_scalar("Loss/train", loss.item(), epoch * len(loader) + i)
        model.train(False)
        running_vloss = 0.0
        for i, (vinputs, vlabels) in enumerate(loader):  # noqa: B007 - i counts the steps
            running_vloss += loss_fn(model(vinputs), vlabels)  # a tensor (with its graph)
        avg_vloss = running_vloss / (i + 1)
        writer.add_scalars("Training vs. Validation Loss", {"Validation": avg_vloss}, epoch + 1)
        if avg_vloss < best_vloss:  # a 0-d tensor against a float
            best_vloss = avg_vloss
            ember.save(model.state_dict(), tmp_path / f"model_{epoch}")
    writer.add_graph(model, images)
    perm = ember.randperm(len(train_set.data))
    imgs, labs = train_set.data[perm][:20], train_set.targets[perm][:20]
    writer.add_embedding(
        imgs.view(-1, 28 * 28), metadata=[str(int(c)) for c in labs], label_img=imgs.unsqueeze(1)
    )
    writer.close()
    run = tmp_path / "runs" / "fashion"
    assert (run / "projector_config.pbtxt").exists() and (
        run / "00000" / "default" / "sprite.png"
    ).exists()
    assert any(
        p.name.startswith("events")
        for p in (run / "Training vs. Validation Loss_Validation").iterdir()
    )
    assert Net().load_state_dict(ember.load(tmp_path / "model_0")).missing_keys == []


# ---- CIFAR-10 stand-in (blitz cifar10, introyt1, hyperparameter tuning) ----------------------
def _cifar_pickles(root, n=40):
    folder = Path(root, "cifar-10-batches-py")
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2)
    for name in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]:
        y = rng.integers(0, 10, n // 5 if name != "test_batch" else n)
        x = rng.integers(0, 120, (len(y), 3, 32, 32))
        for i, c in enumerate(y):
            x[i, c % 3, (c // 5) * 16 : (c // 5) * 16 + 12] += 130
        entry = {"data": x.reshape(len(y), -1).astype(np.uint8), "labels": [int(c) for c in y]}
        (folder / name).write_bytes(pickle.dumps(entry))
    (folder / "batches.meta").write_bytes(
        pickle.dumps({"label_names": [f"c{i}" for i in range(10)]})
    )


def test_cifar10_training_save_load_and_per_class_accuracy(tmp_path):
    _cifar_pickles(tmp_path)
    loader = ember.utils.data.DataLoader(cifar(str(tmp_path), True), batch_size=4, shuffle=True)
    test_loader = ember.utils.data.DataLoader(cifar(str(tmp_path), False), batch_size=4)
    device = ember.device("cuda:0" if ember.cuda.is_available() else "cpu")
    net = Net(channels=3, side=5).to(device)
    opt = ember.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    for data in loader:
        inputs, labels = data[0].to(device), data[1].to(device)
        opt.zero_grad()
        nn.CrossEntropyLoss()(net(inputs), labels).backward()
        opt.step()
    ember.save(net.state_dict(), tmp_path / "cifar_net.pth")
    net = Net(channels=3, side=5)
    assert str(net.load_state_dict(ember.load(tmp_path / "cifar_net.pth", weights_only=True))) == (
        "<All keys matched successfully>"
    )
    correct_pred, total_pred = {c: 0 for c in range(10)}, {c: 0 for c in range(10)}
    with ember.no_grad():
        for images, labels in test_loader:
            _, predictions = ember.max(net(images), 1)
            for label, prediction in zip(labels, predictions):
                if label == prediction:  # 0-d tensors compared, then used as dict keys / indices
                    correct_pred[int(label)] += 1
                total_pred[[0, 1, 2, 3, 4, 5, 6, 7, 8, 9][label]] += 1
    assert sum(total_pred.values()) == 40 and sum(correct_pred.values()) <= 40


def _tune(tmp_path, trials, epochs):
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    _cifar_pickles(tmp_path)
    space = {
        "l1": tune.choice([8, 16]),
        "lr": tune.loguniform(1e-3, 1e-1),
        "batch_size": 8,
        "epochs": epochs,
    }
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(train_cifar, data_dir=str(tmp_path)), {"cpu": 1}),
        tune_config=tune.TuneConfig(
            metric="loss",
            mode="min",
            num_samples=trials,
            scheduler=ASHAScheduler(max_t=epochs, grace_period=1, reduction_factor=2),
            # one trial at a time in one reused worker: it imports ember once (2 loaded cores)
            max_concurrent_trials=1,
            reuse_actors=True,
        ),
        param_space=space,
        run_config=tune.RunConfig(storage_path=str(tmp_path / "ray_results"), verbose=0),
    )
    best = tuner.fit().get_best_result("loss", "min")
    with best.checkpoint.as_directory() as d:
        state = pickle.loads((Path(d) / "data.pkl").read_bytes())
    net = Net(best.config["l1"], channels=3, side=5)
    net.load_state_dict(state["net_state_dict"])
    # (a trial ASHA stopped early ends on an earlier epoch)
    assert (
        state["epoch"] == best.metrics["training_iteration"] - 1
        and 0.0 <= best.metrics["accuracy"] <= 1.0
    )
    assert net(ember.zeros(1, 3, 32, 32)).shape == (1, 10)


def test_ray_tune_sweep_with_asha_and_checkpoints(ray_session, tmp_path):
    _tune(tmp_path, trials=2, epochs=1)


@pytest.mark.full
def test_ray_tune_sweep_four_trials_two_epochs(ray_session, tmp_path):
    _tune(tmp_path, trials=4, epochs=2)
