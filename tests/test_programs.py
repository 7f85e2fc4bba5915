"""The conformance corpus: whole PyTorch-style programs in tests/programs/, each written with
``import ember as torch`` and run here as a user runs it (a subprocess, its own argv), checked
on what it prints."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PROGRAMS = ROOT / "tests" / "programs"
TEXT = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"


def _run(name, *args, cwd):
    out = subprocess.run(
        [sys.executable, str(PROGRAMS / name), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, f"{name} failed:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}"
    assert out.stdout.rstrip().endswith("done"), out.stdout[-2000:]
    return out.stdout


def _floats(pattern, text):
    """Every match of a one-group pattern, as floats."""
    return [float(v) for v in re.findall(pattern, text)]


@pytest.fixture
def text_file():
    if not TEXT.exists():
        pytest.skip(f"needs {TEXT} (the shared data folder beside the checkout)")
    return str(TEXT)


def test_char_gpt(tmp_path, text_file):
    out = _run(
        "char_gpt.py",
        "--data",
        text_file,
        "--steps",
        "25",
        "--out",
        str(tmp_path / "ckpt.pt"),
        cwd=tmp_path,
    )
    first, last = (
        float(v) for v in re.search(r"first loss ([\d.]+) last loss ([\d.]+)", out).groups()
    )
    assert last < first - 0.3, out
    assert re.search(r"sample: .{41}", out, flags=re.S), out


def test_char_gpt_names_a_missing_data_file(tmp_path):
    out = subprocess.run(
        [sys.executable, str(PROGRAMS / "char_gpt.py"), "--data", str(tmp_path / "nope.txt")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0 and "no text file at" in out.stderr


def test_poly_regression(tmp_path):
    out = _run("poly_regression.py", "--max-steps", "3000", cwd=tmp_path)
    (err,) = _floats(r"max coefficient error ([\d.]+)", out)
    assert err < 0.3, out
    assert re.search(r"Learned function:\s+y = [+-]\d+\.\d\d x\^1 ", out), out


def test_bigram_names(tmp_path):
    out = _run("bigram_names.py", "--steps", "40", cwd=tmp_path)
    losses = _floats(r"step \d+ loss ([\d.]+)", out)
    assert losses[-1] < losses[0], out
    assert re.search(r"samples=\['\w*', '\w*', '\w*'\]", out), out


def test_word_lm(tmp_path, text_file):
    out = _run(
        "word_lm.py",
        "--data",
        text_file,
        "--epochs",
        "2",
        "--save",
        str(tmp_path / "lm.pt"),
        cwd=tmp_path,
    )
    ppl = _floats(r"valid ppl\s+([\d.]+)", out)
    assert ppl[-1] < ppl[0], out
    (reloaded,) = _floats(r"reloaded ppl ([\d.]+)", out)
    assert reloaded == pytest.approx(min(ppl), rel=1e-3), out


def test_digits_classifier(tmp_path):
    pytest.importorskip("sklearn")
    out = _run("digits_classifier.py", "--epochs", "3", cwd=tmp_path)
    acc, top2 = [
        float(v) for v in re.search(r"test accuracy ([\d.]+) top-2 ([\d.]+)", out).groups()
    ]
    assert acc > 0.9 and top2 >= acc, out
