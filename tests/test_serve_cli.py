"""`ember serve` argument handling and artifact detection (no Ray started)."""

import os
import shlex

import pytest

import ember
import ember.nn as nn
from ember.launcher.cli import main
from ember.launcher.serve_cmd import parse_autoscale, parse_autoscaling_config
from ember.serve import detect_kind


def test_parse_autoscale():
    assert parse_autoscale("1:4") == {"min_replicas": 1, "max_replicas": 4, "initial_replicas": 1}
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


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["serve", "missing.ep"], "no such file: 'missing.ep'"),
        (["serve", "x.ep", "--replicas", "0"], "--replicas must be >= 1"),
        (["serve", "x.ep", "--autoscale", "5:2"], "--autoscale"),
        (["serve", "x.ep", "--autoscaling-config", "{}"], "needs --autoscale MIN:MAX"),
        (["serve", "x.ep", "--autoscale", "1:2", "--autoscaling-config", "{bad"], "not valid JSON"),
        (
            ["serve", "x.ep", "--autoscale", "1:2", "--autoscaling-config", '{"max_replicas": 3}'],
            "set max_replicas with --autoscale",
        ),
    ],
)
def test_cli_bad_arguments_exit_2(argv, needle, capsys):
    assert main(argv) == 2
    assert needle in capsys.readouterr().err


def test_parse_autoscaling_config():
    assert parse_autoscaling_config('{"upscale_delay_s": 1}') == {"upscale_delay_s": 1}
    with pytest.raises(ValueError, match="JSON object"):
        parse_autoscaling_config("[1, 2]")


@pytest.mark.parametrize(
    "cfg,needle",
    [
        (
            {"min_replicas": 1, "max_replicas": 2, "upscale_delay": 1},
            "unknown key 'upscale_delay' \\(did you mean 'upscale_delay_s'",
        ),
        (
            {"min_replicas": 1, "max_replicas": 2, "downscale_delay_s": -1},
            "autoscaling_config.downscale_delay_s: .*greater than or equal to 0 \\(got -1\\)",
        ),
    ],
)
def test_autoscaling_config_errors_name_the_key(tmp_path, cfg, needle):
    pytest.importorskip("ray.serve")
    from ember import serve

    # checked before the artifact is read and before any Ray is started
    with pytest.raises(ValueError, match=needle):
        serve.deploy(str(tmp_path / "never-read.onnx"), autoscaling_config=cfg)


SERVE_CONFIG = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    "cluster_configs",
    "serve-local.yaml",
)


def test_serve_cluster_config_and_its_commands():
    from ember.launcher.cli import build_parser
    from ember.launcher.cluster import head_address
    from ember.launcher.config import load
    from ember.launcher.local_cluster import build_hosts
    from ember.launcher.serve_cmd import autoscaling_from_args
    from ember.serve._api import SERVE_ENV, _check_autoscaling

    cfg = load(SERVE_CONFIG)  # ember's checks, Ray's schema and Ray's prepare_config
    assert all(h.env == SERVE_ENV for h in build_hosts(cfg))  # every node's `ray start` env
    with open(SERVE_CONFIG) as f:
        commands = [shlex.split(line[1:]) for line in f if line.startswith("#   ember ")]
    verbs = [c[1] for c in commands]
    assert verbs[0] == "up" and verbs[-1] == "down" and verbs.count("serve") >= 3, verbs
    assert commands[0][2] == commands[-1][2] == "cluster_configs/serve-local.yaml"
    parser = build_parser()
    for argv in commands:
        if argv[1] != "serve":
            continue
        args = parser.parse_args(argv[1:])  # exits (SystemExit) on an unknown option
        assert args.address == head_address(cfg) == "127.0.0.1:6380"
        autoscaling = autoscaling_from_args(args)
        if autoscaling is not None:
            pytest.importorskip("ray.serve")
            assert _check_autoscaling(autoscaling)["max_replicas"] == 4


def test_benchmark_cells_and_cpu_accounting():
    import importlib.util
    import time

    path = os.path.join(os.path.dirname(SERVE_CONFIG), "..", "benchmarks", "serve.py")
    spec = importlib.util.spec_from_file_location("bench_serve", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    args = bench.main.__globals__["argparse"].Namespace(variants=["handle", "sweep"])
    cells = bench._cells(args)
    assert [c[1] for c in cells[:2]] == ["handle", "handle"] and len(cells) == 7
    assert all(c[1] == "http" and c[2] == 1 and len(c[3]) == 1 for c in cells[2:])

    def spin() -> dict:  # 0.2 s of CPU in this process, the "client"
        t0 = time.process_time()
        while time.process_time() - t0 < 0.2:
            pass
        return {}

    out = bench._measured(spin, {"server": [os.getpid()]}, n=10)
    # both roles are this process here: ~20 ms per request each (clock ticks: 10 ms)
    assert 15 <= out["cpu_ms_client"] <= 40 and 15 <= out["cpu_ms_server"] <= 40, out
    assert bench._cpu_s(2**22 + 7) == 0.0  # a pid that does not exist
