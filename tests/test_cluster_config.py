"""Cluster configs: the shipped ones validate (also through Ray's own preparation), and bad
ones are rejected with the file, the key and the reason. Nothing here starts Ray."""

from __future__ import annotations

import copy
import glob
import os
import subprocess
import sys

import pytest
import yaml

from ember.launcher import auth
from ember.launcher.config import ConfigError, load, validate
from ember.launcher.hosts import Host, is_this_machine, ssh_argv
from ember.launcher.local_cluster import build_hosts, plan

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(glob.glob(os.path.join(ROOT, "cluster_configs", "*.yaml")))


def _raw(name: str) -> dict:
    with open(os.path.join(ROOT, "cluster_configs", name)) as f:
        return yaml.safe_load(f)


def _problems(raw, path="bad.yaml") -> list:
    with pytest.raises(ConfigError) as info:
        validate(raw, path)
    assert path in str(info.value)
    return info.value.problems


def _ember(*args, cwd=ROOT):
    return subprocess.run(
        [sys.executable, "-m", "ember.launcher.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def test_the_expected_configs_ship():
    names = {os.path.basename(p) for p in CONFIGS}
    assert {
        "local.yaml",
        "local-multinode.yaml",
        "aws-gpu.yaml",
        "gcp-gpu.yaml",
        "kuberay-raycluster.yaml",
    } <= names


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_shipped_configs_pass_ember_and_ray_checks(path):
    cfg = load(path)  # ember's checks, Ray's schema, Ray's prepare_config / KubeRay conversion
    assert cfg.name
    assert cfg.ember["workers_per_node"] >= 1
    assert cfg.max_nodes() is None or cfg.max_nodes() >= 1


def test_config_kinds_and_launchers():
    assert load(os.path.join(ROOT, "cluster_configs", "local.yaml")).ember["embedded"] is True
    aws = load(os.path.join(ROOT, "cluster_configs", "aws-gpu.yaml"))
    assert (aws.provider, aws.ember["launcher"], aws.max_nodes()) == ("aws", "ray", 5)
    assert "ember" not in aws.ray_config()
    kr = load(os.path.join(ROOT, "cluster_configs", "kuberay-raycluster.yaml"))
    assert (kr.kind, kr.name, kr.ember["gpus_per_worker"]) == ("kuberay", "ember-gpu", 1)
    assert kr.ember["backend"] == "nccl"


# ---------------------------------------------------------------- Ray's keys


def test_unknown_top_level_key_names_key_and_suggests():
    raw = _raw("aws-gpu.yaml")
    raw["max_worker"] = 3
    assert _problems(raw) == [("max_worker", "unknown key (did you mean 'max_workers'?)")]


def test_wrong_types_are_reported_with_the_value():
    raw = _raw("aws-gpu.yaml")
    raw["max_workers"] = "four"
    raw["setup_commands"] = "pip install ember"
    problems = dict(_problems(raw))
    assert problems["max_workers"] == "expected an integer, got 'four' (str)"
    assert problems["setup_commands"].startswith("expected a list of strings")


def test_nested_keys_are_checked_with_rays_schema():
    raw = _raw("aws-gpu.yaml")
    raw["available_node_types"]["gpu_worker"]["resourcse"] = {}
    raw["auth"]["ssh_usr"] = "me"
    problems = dict(_problems(raw))
    assert problems["available_node_types.gpu_worker.resourcse"].startswith(
        "unknown key (did you mean 'resources'"
    )
    assert "ssh_user" in problems["auth.ssh_usr"]


def test_provider_keys_of_builtin_providers():
    raw = _raw("gcp-gpu.yaml")
    raw["provider"]["regoin"] = "us-central1"
    assert _problems(raw) == [
        ("provider.regoin", "unknown key for the 'gcp' provider (did you mean 'region'?)")
    ]


def test_negative_resources_and_bad_worker_counts():
    raw = _raw("aws-gpu.yaml")
    raw["available_node_types"]["gpu_worker"]["resources"]["GPU"] = -1
    assert _problems(raw)[0][0] == "available_node_types.gpu_worker.resources.GPU"
    raw = _raw("aws-gpu.yaml")
    raw["available_node_types"]["gpu_worker"]["min_workers"] = 6
    problems = dict(_problems(raw))
    assert (
        "min_workers=6 is larger than max_workers=4"
        in problems["available_node_types.gpu_worker.min_workers"]
    )
    assert "smaller than the sum" in problems["max_workers"]


def test_head_node_type_must_exist():
    raw = _raw("aws-gpu.yaml")
    raw["head_node_type"] = "hed"
    ((key, reason),) = _problems(raw)
    assert key == "head_node_type" and "did you mean 'head'" in reason


def test_missing_required_keys():
    problems = dict(_problems({"ember": {}}))
    assert problems["cluster_name"] == "required key is missing"
    assert problems["provider"] == "required key is missing"


# ---------------------------------------------------------------- the ember section


def test_ember_section_unknown_keys_and_choices_all_reported():
    raw = _raw("aws-gpu.yaml")
    raw["ember"].update(backend="ncl", workers_per_nod=2)
    raw["ember"]["token"]["ray_auth"] = "yes"
    problems = dict(_problems(raw))
    assert len(problems) == 3
    assert "did you mean 'nccl'" in problems["ember.backend"]
    assert "did you mean 'workers_per_node'" in problems["ember.workers_per_nod"]
    assert "inherit, token, disabled" in problems["ember.token.ray_auth"]


def test_ember_numbers_are_range_checked():
    raw = _raw("local.yaml")
    raw["ember"].update(workers_per_node=0, cpus_per_worker=-1, ray_port=70000)
    problems = dict(_problems(raw))
    assert problems["ember.workers_per_node"] == "expected an integer >= 1, got 0 (int)"
    assert problems["ember.cpus_per_worker"] == "expected a number >= 0, got -1 (int)"
    assert problems["ember.ray_port"].startswith("expected a port number")


def test_cloud_provider_cannot_use_embers_launcher():
    raw = _raw("aws-gpu.yaml")
    raw["ember"]["launcher"] = "ember"
    ((key, reason),) = _problems(raw)
    assert key == "ember.launcher" and "must be 'ray'" in reason


# ---------------------------------------------------------------- impossible resources


def test_more_workers_per_node_than_any_node_type_fits():
    raw = _raw("aws-gpu.yaml")
    raw["ember"]["workers_per_node"] = 4  # 4 x (4 CPU, 1 GPU); g5.xlarge offers 4 CPU, 1 GPU
    ((key, reason),) = _problems(raw)
    assert key == "ember.workers_per_node"
    assert "16 CPU, 4 GPU per node" in reason and "4 CPU, 1 GPU" in reason


def test_local_host_too_small_for_workers_per_node():
    raw = _raw("local-multinode.yaml")
    raw["ember"]["hosts"]["192.168.10.1"]["num_cpus"] = 3  # 2 workers x 2 CPUs need 4
    ((key, reason),) = _problems(raw)
    assert key == "ember.hosts.192.168.10.1"
    assert "offers 3 CPU" in reason and "need 4 CPU per node" in reason


def test_gpus_requested_where_nodes_have_none():
    raw = _raw("local-multinode.yaml")
    raw["ember"]["gpus_per_worker"] = 1
    raw["ember"]["node"]["num_gpus"] = 0
    problems = _problems(raw)
    assert all("2 GPU" in reason for _, reason in problems) and len(problems) == 3


def test_kuberay_group_too_small():
    raw = _raw("kuberay-raycluster.yaml")
    raw["metadata"]["annotations"]["ember.dev/gpus-per-worker"] = "2"
    ((key, reason),) = _problems(raw)
    assert key == "ember.workers_per_node" and "2 GPU per node" in reason


# ---------------------------------------------------------------- the local provider


def test_local_provider_host_list_checks():
    raw = _raw("local-multinode.yaml")
    raw["provider"]["worker_ips"] = ["192.168.10.2", "192.168.10.2"]
    raw["ember"]["hosts"]["192.168.10.9"] = {"num_cpus": 8}
    problems = dict(_problems(raw))
    assert "listed more than once: ['192.168.10.2']" in problems["provider.worker_ips"]
    assert "not one of the cluster's hosts" in problems["ember.hosts.192.168.10.9"]


def test_local_provider_rejects_what_embers_launcher_cannot_honour():
    raw = _raw("local-multinode.yaml")
    raw["available_node_types"] = {}
    raw["head_start_ray_commands"] = ["ray stop", "ray start --head"]
    raw["file_mounts"] = {"/data": "./data"}
    problems = dict(_problems(raw))
    assert "ember.hosts" in problems["available_node_types"]
    assert "ember down" in problems["head_start_ray_commands"]
    assert "launcher: ray" in problems["file_mounts"]


def test_temp_dir_too_long_for_rays_sockets():
    raw = _raw("local-multinode.yaml")
    raw["ember"]["temp_dir"] = "/tmp/" + "x" * 30
    problems = _problems(raw)
    assert len(problems) == 3  # one per host
    assert all("unix sockets" in reason for _, reason in problems)


# ---------------------------------------------------------------- KubeRay manifests


def test_kuberay_manifest_checks():
    raw = _raw("kuberay-raycluster.yaml")
    raw["spec"]["workerGroupSpecs"][0]["replicas"] = 7
    raw["spec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] = 0
    raw["spec"]["workerGroupSpec"] = []
    raw["metadata"]["annotations"]["ember.dev/backnd"] = "grpc"
    problems = dict(_problems(raw))
    assert "outside [minReplicas=0, maxReplicas=4]" in problems["spec.workerGroupSpecs[0].replicas"]
    assert "must be a string" in problems["spec.headGroupSpec.rayStartParams.num-cpus"]
    assert "did you mean 'workerGroupSpecs'" in problems["spec.workerGroupSpec"]
    assert "did you mean 'backend'" in problems["metadata.annotations.ember.dev/backnd"]


# ---------------------------------------------------------------- files and the CLI


def test_file_problems(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load(str(tmp_path / "missing.yaml"))
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a YAML mapping"):
        load(str(tmp_path / "list.yaml"))
    (tmp_path / "broken.yaml").write_text("cluster_name: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load(str(tmp_path / "broken.yaml"))


def test_cli_rejects_a_bad_config_before_starting_anything(tmp_path):
    raw = _raw("local.yaml")
    raw["ember"]["workers_per_nod"] = 2
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw))
    for args in (
        ["up", str(bad)],
        ["down", str(bad)],
        ["status", str(bad)],
        ["launch", "--cluster", str(bad), "x.py"],
    ):
        r = _ember(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert f"{bad}: ember.workers_per_nod: unknown key" in r.stderr


def test_cli_dry_run_shows_the_plan_for_every_shipped_config(capsys, monkeypatch):
    from ember.launcher.cli import main

    monkeypatch.chdir(ROOT)
    for path in CONFIGS:  # in this process: a subprocess per config cost ~2 s each
        assert main(["up", "--dry-run", path]) == 0, capsys.readouterr().err
        assert "valid" in capsys.readouterr().out
    r = _ember("up", "--dry-run", "cluster_configs/local-multinode.yaml")  # the real command
    assert "worker 192.168.10.3 (ssh)" in r.stdout
    assert "--address=192.168.10.1:6379" in r.stdout
    assert (
        "kubectl apply -f"
        in _ember("up", "--dry-run", "cluster_configs/kuberay-raycluster.yaml").stdout
    )


def test_launch_refuses_more_nodes_than_the_cluster_has():
    r = _ember(
        "launch",
        "--cluster",
        "cluster_configs/local-multinode.yaml",
        "--nnodes",
        "4",
        "examples/quickstart.py",
    )
    assert r.returncode != 0
    assert "--nnodes 4 but the cluster" in r.stderr and "at most 3 node(s)" in r.stderr


# ---------------------------------------------------------------- hosts, commands, tokens


def test_ray_start_commands_for_head_and_workers():
    steps = plan(load(os.path.join(ROOT, "cluster_configs", "local-multinode.yaml")))
    (head, head_setup, head_cmd), (worker, _, worker_cmd) = steps[0], steps[1]
    assert head.role == "head" and head.ip == "192.168.10.1" and head.ssh
    assert head_setup and "import ember" in head_setup[0]
    assert "--head" in head_cmd and "--dashboard-host=192.168.10.1" in head_cmd
    assert (
        "--num-cpus=4" in head_cmd
        and "--temp-dir=/tmp/ember-ray/multinode-192.168.10.1" in head_cmd
    )
    assert "--address=192.168.10.1:6379" in worker_cmd and "--num-cpus=8" in worker_cmd
    assert worker.temp_dir != head.temp_dir


def test_how_hosts_are_reached():
    assert is_this_machine("127.0.0.1")
    assert not is_this_machine("192.0.2.254")  # TEST-NET-1, never this machine
    argv = ssh_argv("10.0.0.5", {"ssh_user": "ubuntu", "ssh_private_key": "~/.ssh/k"})
    assert argv[-1] == "ubuntu@10.0.0.5" and os.path.expanduser("~/.ssh/k") in argv
    host = Host("10.0.0.5", "worker", "/tmp/t", ssh=argv, env={"A": "1 2"})
    remote = host.argv(["ray", "start", '--resources={"x": 1}'])
    assert remote[:-1] == argv and remote[-1] == "env 'A=1 2' ray start '--resources={\"x\": 1}'"
    local = Host("10.78.0.1", "head", "/tmp/t", prefix=["ip", "netns", "exec", "ns"])
    assert local.argv(["ray", "start"]) == ["ip", "netns", "exec", "ns", "ray", "start"]
    raw = _raw("local.yaml")
    hosts = build_hosts(validate(raw, "local.yaml", ray_check=False))
    assert len(hosts) == 1 and hosts[0].ssh is None and not hosts[0].prefix


def test_token_handling(tmp_path, monkeypatch):
    settings = copy.deepcopy(load(os.path.join(ROOT, "cluster_configs", "local.yaml")).ember)
    assert auth.ray_auth_env(settings) == {}
    token_file = tmp_path / "sub" / "token"
    settings["token"].update(ray_auth="token", ray_token_path=str(token_file))
    token = auth.ensure_local_token(settings)
    assert len(token) == 64 and token_file.read_text() == token
    assert oct(token_file.stat().st_mode & 0o777) == "0o600"
    assert auth.ensure_local_token(settings) == token  # kept, not regenerated
    assert auth.ray_auth_env(settings) == {
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(token_file),
    }
    assert auth.job_env(settings) == {"EMBER_BACKEND": "auto"}
    settings["token"]["job"] = "env"
    monkeypatch.delenv("EMBER_TOKEN", raising=False)
    with pytest.raises(SystemExit, match="EMBER_TOKEN is not set"):
        auth.job_env(settings)
    monkeypatch.setenv("EMBER_TOKEN", "s3cret")
    assert auth.job_env(settings)["EMBER_TOKEN"] == "s3cret"
    cmd = auth.remote_token_command({"token": {"ray_token_path": "~/.ray/auth_token"}})
    assert cmd[:2] == ["sh", "-c"] and '"$HOME"/.ray/auth_token' in cmd[2]
