"""The fine-tuning examples (examples/finetune/) run at tiny size on 2 Trainer workers.

Each example is imported as a module and its ``main`` runs in this process, on the session's
shared local Ray (the ``ray_session`` fixture); its functions are pickled by value so the
workers need not import the examples folder. The GPT-2 run's saved directory must load with
ember.models and with transformers, with equal logits.
"""

from __future__ import annotations

import importlib.util
import pickle
from pathlib import Path

import numpy as np
import pytest

import ember

REPO = Path(__file__).resolve().parents[1]
FINETUNE = REPO / "examples" / "finetune"
TEXT = REPO.parent / "shared" / "data" / "tinyshakespeare.txt"
needs_text = pytest.mark.skipif(not TEXT.is_file(), reason=f"needs {TEXT}")


def load_example(name: str):
    import sys

    spec = importlib.util.spec_from_file_location(f"finetune_{name}", FINETUNE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    # The example imports examples/_common.py as `_common`; in the whole suite that name may
    # already be benchmarks/_common.py, so it is loaded fresh from examples/ for the example.
    saved = sys.modules.pop("_common", None)
    sys.path.insert(0, str(FINETUNE.parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(FINETUNE.parent))
        if saved is not None:
            sys.modules["_common"] = saved
        else:
            sys.modules.pop("_common", None)
    return module


@pytest.fixture(scope="module")
def gpt2_example():
    return load_example("gpt2_shakespeare")


@pytest.fixture(scope="module")
def resnet_example():
    return load_example("resnet18_fakedata")


def by_value(ray, module) -> None:
    """Ray's workers unpickle the example's train loop without importing its file."""
    import sys

    sys.modules[module.__name__] = module
    ray.cloudpickle.register_pickle_by_value(module)


GPT2_TINY = [
    "--tiny",
    "--steps",
    "6",
    "--batch-size",
    "4",
    "--block-size",
    "32",
    "--eval-windows",
    "8",
    "--lr",
    "3e-3",
]


@needs_text
@pytest.mark.parametrize("strategy", ["ddp", pytest.param("fsdp", marks=pytest.mark.full)])
def test_gpt2_finetune_saves_a_hugging_face_checkpoint(
    ray_session, gpt2_example, tmp_path, strategy
):
    by_value(ray_session, gpt2_example)
    res = gpt2_example.main([*GPT2_TINY, "--strategy", strategy, "--out", str(tmp_path)])
    assert res["after"] < res["before"]  # fine-tuning lowered the held-out perplexity
    assert res["diff"] == 0.0  # from_pretrained gives back the trained weights exactly

    from ember.models import GPT2LMHeadModel

    ids = np.frombuffer(TEXT.read_bytes()[:40], dtype=np.uint8).astype(np.int64)[None]
    ours = GPT2LMHeadModel.from_pretrained(res["path"])
    base = GPT2LMHeadModel.from_pretrained(tmp_path / "base")
    with ember.no_grad():
        logits = ours(ember.tensor(ids)).logits.numpy()
        assert np.abs(logits - base(ember.tensor(ids)).logits.numpy()).max() > 1e-3  # trained

    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    theirs = transformers.GPT2LMHeadModel.from_pretrained(res["path"]).eval()
    with torch.no_grad():
        expected = theirs(torch.tensor(ids)).logits.numpy()
    np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=1e-4)


def run_error(main, argv, capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--tiny", "--data", "/no/such.txt"], "--data: text file not found: /no/such.txt"),
        (["--tiny", "--workers", "0"], "--workers: must be > 0, got 0"),
        (["--tiny", "--strategy", "zero9"], "invalid choice: 'zero9'"),
        (["--model", "/no/model"], "--model: no config.json in /no/model"),
        ([], "one of the arguments --model --tiny is required"),
    ],
)
def test_gpt2_bad_options_are_named(gpt2_example, capsys, argv, message):
    assert message in run_error(gpt2_example.main, argv, capsys)


@needs_text
def test_gpt2_block_size_over_the_models_positions(gpt2_example, capsys, tmp_path):
    err = run_error(
        gpt2_example.main, ["--tiny", "--block-size", "500", "--out", str(tmp_path)], capsys
    )
    assert "--block-size 500 exceeds the model's n_positions 128" in err


def test_resnet18_fakedata_from_a_state_dict(ray_session, resnet_example, tmp_path, capfd):
    from ember.vision.models import resnet18

    by_value(ray_session, resnet_example)
    ember.manual_seed(1)
    weights = tmp_path / "r18.pt"
    ember.save(resnet18().state_dict(), weights)  # an ImageNet-shaped (1000-class) checkpoint
    m = resnet_example.main(
        [
            "--weights",
            str(weights),
            "--num-classes",
            "4",
            "--train-size",
            "32",
            "--test-size",
            "24",
            "--batch-size",
            "8",
            "--epochs",
            "1",
            "--out",
            str(tmp_path),
        ]
    )
    assert m["test_images"] == 24
    assert round(m["test_acc"] * 24) == pytest.approx(m["test_acc"] * 24)  # k of the 24 images
    assert 0.0 <= m["train_acc"] <= 1.0 and np.isfinite(m["last_loss"])
    assert "new classifier for 4 classes: ['fc.weight', 'fc.bias']" in capfd.readouterr().out


def write_cifar(folder: Path, n_train: int, n_test: int) -> None:
    """CIFAR-format batches with an easy rule: class 1 images are bright, class 0 dark."""
    rng = np.random.default_rng(0)
    folder.mkdir()
    for name, n in (("data_batch_1", n_train), ("test_batch", n_test)):
        labels = rng.integers(0, 2, n)
        data = (rng.integers(0, 80, (n, 3072)) + 170 * labels[:, None]).astype(np.uint8)
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "labels": labels.tolist()}, f)


@pytest.mark.full
def test_resnet18_learns_cifar_format_files(ray_session, resnet_example, tmp_path):
    by_value(ray_session, resnet_example)
    write_cifar(tmp_path / "cifar", 128, 64)
    m = resnet_example.main(
        [
            "--data",
            str(tmp_path / "cifar"),
            "--num-classes",
            "2",
            "--batch-size",
            "16",
            "--epochs",
            "3",
            "--lr",
            "0.02",
            "--out",
            str(tmp_path),
        ]
    )
    assert m["test_images"] == 64
    # It fits the rule (train mode); the test accuracy after 12 steps is not asserted: eval
    # mode uses BatchNorm running statistics that are still far from the data's (momentum 0.1).
    assert m["train_acc"] >= 0.9


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--weights", "/no/r18.pt"], "--weights: file not found: /no/r18.pt"),
        (["--data", "/no/cifar"], "--data: /no/cifar lacks the CIFAR-format files"),
        (["--epochs", "0"], "--epochs: must be > 0, got 0"),
        (["--train-size", "8"], "--train-size 8 is smaller than one step of 2 x 32 images"),
    ],
)
def test_resnet18_bad_options_are_named(resnet_example, capsys, argv, message):
    assert message in run_error(resnet_example.main, argv, capsys)


def test_resnet18_labels_beyond_num_classes(resnet_example, capsys, tmp_path):
    write_cifar(tmp_path / "cifar", 8, 8)
    err = run_error(
        resnet_example.main, ["--data", str(tmp_path / "cifar"), "--num-classes", "1"], capsys
    )
    assert "--num-classes 1: the data has label 1" in err


class _Started(Exception):
    pass


def test_docs_commands_parse(gpt2_example, resnet_example, monkeypatch, tmp_path):
    """The commands docs/models.md shows are valid options of the examples (stopped at fit)."""
    import re
    import shlex

    doc = (REPO / "docs" / "models.md").read_text().split("## Fine-tuning on the cluster")[1]
    block = re.search(r"```bash\n(.*?)```", doc, re.S).group(1).replace("\\\n", " ")
    commands = [
        shlex.split(line.split("#")[0])
        for line in block.splitlines()
        if line.startswith("python examples/finetune/")
    ]
    assert [c[1] for c in commands] == [
        "examples/finetune/gpt2_shakespeare.py",
        "examples/finetune/resnet18_fakedata.py",
    ]

    def stop(fn, config, **kwargs):
        assert kwargs["scaling_config"].num_workers == 2
        raise _Started(config)

    monkeypatch.setattr(gpt2_example.train, "Trainer", stop)
    for module, cmd in zip((gpt2_example, resnet_example), commands):
        argv = [a.replace("/tmp/ft", str(tmp_path)) for a in cmd[2:]]
        if module is gpt2_example and not TEXT.is_file():
            continue
        with pytest.raises(_Started):
            module.main(argv)
