"""`ember serve` argument handling and artifact detection (no Ray started)."""

import pytest

import ember
import ember.nn as nn
from ember.launcher.cli import main
from ember.launcher.serve_cmd import parse_autoscale
from ember.serve import detect_kind


def test_parse_autoscale():
    assert parse_autoscale("1:4") == {"min_replicas": 1, "max_replicas": 4,
                                      "initial_replicas": 1}
    for bad in ("4", "a:b", "3:1", "-1:2"):
        with pytest.raises(ValueError, match="--autoscale"):
            parse_autoscale(bad)


def test_detect_kind(tmp_path):
    m = nn.Linear(3, 2)
    ember.export.save(ember.export.export(m, (ember.randn(1, 3),)), tmp_path / "a.ep")
    ember.jit.save(ember.jit.trace(m, ember.randn(1, 3)), tmp_path / "a.pt")
    (tmp_path / "h.py").write_text("class H: pass\n")
    (tmp_path / "junk.bin").write_bytes(b"not a model")
    assert detect_kind(str(tmp_path / "a.ep")) == "export"
    assert detect_kind(str(tmp_path / "a.pt")) == "jit"
    assert detect_kind(str(tmp_path / "h.py") + ":H") == "handler"
    with pytest.raises(ValueError, match="neither"):
        detect_kind(str(tmp_path / "junk.bin"))
    with pytest.raises(FileNotFoundError, match="no such file"):
        detect_kind(str(tmp_path / "missing.ep"))


@pytest.mark.parametrize("argv,needle", [
    (["serve", "missing.ep"], "no such file: 'missing.ep'"),
    (["serve", "x.ep", "--replicas", "0"], "--replicas must be >= 1"),
    (["serve", "x.ep", "--autoscale", "5:2"], "--autoscale"),
])
def test_cli_bad_arguments_exit_2(argv, needle, capsys):
    assert main(argv) == 2
    assert needle in capsys.readouterr().err
