"""The README's two set-up commands and CI's script must agree."""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _readme_commands():
    text = (ROOT / "README.md").read_text()
    return re.findall(r"^    \$ (.+)$", text, flags=re.M)


def test_readme_has_two_setup_commands():
    cmds = _readme_commands()
    assert len(cmds) >= 2
    assert cmds[0].startswith('pip install -e ".[examples]" && ember launch ')
    assert cmds[1].startswith('pip install -e ".[test,parity]"')


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert _readme_commands()[1] in ci.splitlines()


def test_main_job_script_exists():
    script = [w for w in _readme_commands()[0].split() if w.endswith(".py")][0]
    assert (ROOT / script).is_file()


def _python_blocks():
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


@pytest.mark.parametrize("index", range(len(_python_blocks())))
def test_readme_python_snippets_run(index, tmp_path, monkeypatch, request):
    code = _python_blocks()[index]
    if "ember.distributed" in code:
        request.getfixturevalue("ray_session")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"README.md[python block {index}]", "exec"), {"__name__": "__readme__"})


def test_main_job_runs(tmp_path):
    """The README's main job (after its install step) trains and prints a final accuracy."""
    import subprocess
    import sys

    cmd = _readme_commands()[0].split(" && ", 1)[1]
    argv = cmd.split()
    assert argv[0] == "ember"
    r = subprocess.run(
        [sys.executable, "-m", "ember.launcher.cli", *argv[1:], "--out", str(tmp_path / "run")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    # One line per epoch from rank 0, then the summary: accuracy, speed, where the files went.
    epochs = re.findall(r"epoch +(\d+)/10 .*test accuracy ([0-9.]+)", r.stdout)
    assert [int(e) for e, _ in epochs] == list(range(1, 11)), r.stdout
    summary = re.search(r"test accuracy ([0-9.]+) \(2 workers, 10 epochs, \d+ steps/s", r.stdout)
    assert summary and r.stdout.index(summary.group(0)) > r.stdout.index("epoch 10/10"), r.stdout
    assert float(summary.group(1)) >= 0.95, r.stdout
    assert re.search(r"checkpoint \S+model\.pt; TensorBoard logs", r.stdout), r.stdout
    assert "opt out" not in r.stdout + r.stderr  # Ray's token-auth notice is not shown
