"""Entry points reject bad arguments with ONE argparse line naming the valid values (exit code 2),
never a traceback; benchmarks/collectives.py takes torch.distributed's op spellings."""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "benchmarks"


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def collectives():
    sys.path.insert(0, str(BENCH))  # its `from _common import ...`
    try:
        yield _load(BENCH / "collectives.py", "_bench_collectives")
    finally:
        sys.path.remove(str(BENCH))


BAD = [
    (
        ["benchmarks/collectives.py", "--ops", "all_reducee"],
        "argument --ops: invalid choice: 'all_reducee' (choose from allreduce, all_gather, "
        "reduce_scatter, broadcast; comma-separated, or all)",
    ),
    (
        ["benchmarks/collectives.py", "--impls", "ember,nccl"],
        "argument --impls: invalid choice: 'nccl' (choose from ember, ember-socket, "
        "ember-grpcstream, gloo; comma-separated, or all)",
    ),
    (
        ["benchmarks/collectives.py", "--min-size", "1M", "--max-size", "4K"],
        "--min-size (1 MiB) is larger than --max-size (4 KiB)",
    ),
    (
        ["benchmarks/collectives.py", "--max-size", "lots"],
        "argument --max-size: expected a size in bytes such as 4096, 4K, 64M or 1G, got 'lots'",
    ),
    (
        ["benchmarks/serve.py", "--models", "mlp,bert"],
        "argument --models: invalid choice: 'bert' (choose from mlp, gpt; comma-separated, or all)",
    ),
    (["benchmarks/sharding.py", "--ranks", "1"], "argument --ranks: must be >= 2, got 1"),
    (["benchmarks/ddp_scaling.py", "--steps", "0"], "argument --steps: must be >= 1, got 0"),
    (["examples/ddp_digits.py", "--workers", "0"], "argument --workers: must be > 0, got 0"),
    (
        ["examples/export/predict.py", "missing.ember_export", "x.npy"],
        "MODEL: file not found: missing.ember_export",
    ),
]


@pytest.mark.parametrize("argv,message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_argument_is_one_line(argv, message):
    r = subprocess.run(
        [sys.executable, *argv], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if ": error: " in line]
    script = Path(argv[0]).name
    assert errors == [f"{script}: error: {message}"], r.stderr
    assert r.stderr.splitlines()[-1] == errors[0]  # the last thing the user reads
    assert r.stdout == ""  # nothing ran


def test_collectives_help_lists_choices():
    env = {**os.environ, "COLUMNS": "200"}  # no wrapping inside a name
    r = subprocess.run(
        [sys.executable, "benchmarks/collectives.py", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert r.returncode == 0
    text = " ".join(r.stdout.split())
    assert "allreduce, all_gather, reduce_scatter, broadcast" in text
    assert "ember, ember-socket, ember-grpcstream, gloo" in text


# torch.distributed's function names for the ops, and ember's (NCCL-tests') names
TORCH_SPELLINGS = [
    ("all_reduce", "allreduce"),
    ("all_gather", "all_gather"),
    ("all_gather_into_tensor", "all_gather"),
    ("reduce_scatter", "reduce_scatter"),
    ("reduce_scatter_tensor", "reduce_scatter"),
    ("broadcast", "broadcast"),
]


@pytest.mark.parametrize("torch_name,ours", TORCH_SPELLINGS)
def test_collectives_accepts_torch_spellings(collectives, torch_name, ours):
    torch = pytest.importorskip("torch")
    assert hasattr(torch.distributed, torch_name)  # the spelling is torch's own
    parse = collectives.choice_list(collectives.OPS, collectives.OP_ALIASES)
    assert parse(torch_name) == [ours]
    assert parse(torch_name.upper().replace("_", "-")) == [ours]


def test_collectives_op_lists(collectives):
    parse = collectives.choice_list(collectives.OPS, collectives.OP_ALIASES)
    assert parse("all") == list(collectives.OPS)
    # order kept, repeats (allreduce == all_reduce) dropped
    assert parse("broadcast,all_reduce,allreduce") == ["broadcast", "allreduce"]
    with pytest.raises(argparse.ArgumentTypeError, match="choose from allreduce"):
        parse("alltoall")
    # every canonical name is one the bandwidth formula knows
    for op in collectives.OPS:
        assert collectives.busbw(op, 1 << 20, 1e-3, 2) > 0


@pytest.mark.parametrize(
    "text,expected",
    [("4096", 4096), ("4K", 4096), ("4KiB", 4096), ("1.5M", 3 << 19), ("1g", 1 << 30)],
)
def test_parse_size(collectives, text, expected):
    assert collectives.parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "M", "2", "-4K", "4Q"])
def test_parse_size_rejects(collectives, text):
    with pytest.raises(argparse.ArgumentTypeError):
        collectives.parse_size(text)


def test_number_types(collectives):
    c = _load(BENCH / "_common.py", "_bench_common")
    assert c.positive_int("3") == 3 and c.int_at_least(2)("2") == 2
    assert c.positive_float("0.5") == 0.5
    for fn, bad, msg in (
        (c.positive_int, "0", "must be >= 1"),
        (c.positive_int, "1.5", "expected an integer"),
        (c.positive_float, "nan", "positive number"),
        (c.positive_float, "-1", "positive number"),
    ):
        with pytest.raises(argparse.ArgumentTypeError, match=msg):
            fn(bad)


def test_docs_error_line_is_what_users_see():
    # the example in docs/launcher.md's `ember doctor` section, run
    doc = (REPO / "docs" / "launcher.md").read_text()
    cmd_line = next(line for line in doc.splitlines() if line.startswith("$ python benchmarks/"))
    shown = doc.splitlines()[doc.splitlines().index(cmd_line) + 1]
    r = subprocess.run(
        [sys.executable, *cmd_line.split()[2:]],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and r.stderr.splitlines()[-1] == shown
