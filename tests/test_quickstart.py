"""docs/quickstart.md, run as a new user runs it: each `$ command` of its console blocks, with
what it prints checked against the output the page shows (numbers and `...` may differ).

Both tests run the page in a fresh virtual environment, as a new user (and CI) would, and check
what users see: the accuracy lines, the doctor's report, the one-line error for a bad argument,
and no line of Ray's own (its token notice, raylet or C++ log lines) in any step's output.

- CI: the venv sees the system's site-packages (pip included) and gets ember by ``pip install
  --no-deps --no-build-isolation -e`` (seconds, no download) in place of the page's install; it
  runs the steps that need no Ray cluster of their own (the README's main job, step 4, has its
  own test in test_readme.py). With EMBER_FULL_TESTS=1 it runs every step.
- EMBER_FULL_TESTS=1 only: a venv from scratch, the page's own ``pip install -e ".[examples]"``
  (ember's dependencies downloaded and installed), then every step.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ember.distributed.train._internal.ray_output import is_ray_line

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "quickstart.md"
_TOKEN = re.compile(r"\.\.\.|\d+(?:\.\d+)?|\s+")


def _steps() -> list[tuple[str, list[str]]]:
    """(command, lines shown after it) for every `$ ` line of the page's console blocks."""
    steps: list[tuple[str, list[str]]] = []
    for block in re.findall(r"```console\n(.*?)```", DOC.read_text(), flags=re.S):
        for line in block.splitlines():
            if line.startswith("$ "):
                steps.append((line[2:], []))
            elif line.strip():
                steps[-1][1].append(line)
    return steps


def _pattern(shown: str) -> re.Pattern:
    """A shown line as a pattern: numbers match any number, `...` anything, spaces any spaces."""
    out, pos = [], 0
    for m in _TOKEN.finditer(shown):
        out.append(re.escape(shown[pos : m.start()]))
        tok = m.group(0)
        out.append(".*" if tok == "..." else r"\s+" if tok.isspace() else r"[\d.]+")
        pos = m.end()
    out.append(re.escape(shown[pos:]))
    return re.compile("".join(out))


def _check_shown(shown: list[str], printed: str) -> None:
    """Every shown line (but a lone `...`) appears in the printed output, in the page's order."""
    lines = printed.splitlines()
    at = 0
    for want in shown:
        if want.strip() == "...":
            continue
        pat = _pattern(want)
        while at < len(lines) and not pat.fullmatch(lines[at].rstrip()):
            at += 1
        assert at < len(lines), f"expected a line like {want!r} in:\n{printed}"
        at += 1


def _run(cmd: str, cwd: Path, bindir: str, timeout: float = 600, page_cmd: str = "") -> str:
    """Run ``cmd`` (``page_cmd``: the page's own spelling of it, when the test rewrote it)."""
    env = {
        **os.environ,
        "PATH": bindir + os.pathsep + os.environ["PATH"],
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",  # stdout line by line, as on a terminal
    }
    # one stream, as a terminal shows it: the lines' order is part of what the page promises
    r = subprocess.run(
        cmd,
        shell=True,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )
    out = r.stdout
    expect_error = "error" in " ".join(_shown_for(page_cmd or cmd))
    assert (r.returncode != 0) == expect_error, f"{cmd} exited {r.returncode}:\n{out}"
    if expect_error:  # one line naming the problem, never a traceback
        assert "Traceback" not in out, out
    return out


def _shown_for(cmd: str) -> list[str]:
    return next(shown for c, shown in _steps() if c == cmd)


def _workdir(tmp_path: Path) -> Path:
    """A directory that looks like the repository's root to the commands, with runs/ in tmp."""
    for name in ("examples", "benchmarks"):
        (tmp_path / name).symlink_to(ROOT / name)
    return tmp_path


def _needs_ray(cmd: str) -> bool:
    return cmd.startswith(("ember launch", "ray ")) or "ddp_digits.py" in cmd


def test_page_lists_every_step():
    cmds = [c for c, _ in _steps()]
    assert cmds[0].startswith("pip install -e"), cmds
    for needed in (
        "examples/quickstart.py",
        "examples/digits_mlp.py",
        "ember launch --workers 2",
        "--resume",
        "ember doctor",
        "--address auto",
        "ray stop",
    ):
        assert any(needed in c for c in cmds), needed


def _venv(tmp_path: Path, from_scratch: bool) -> tuple[str, Path]:
    """(the venv's bin directory, the working directory), ember installed in the venv."""
    venv = tmp_path / "venv"
    # fast: the system's pip and setuptools too (a venv's own old setuptools cannot build)
    flags = [] if from_scratch else ["--system-site-packages", "--without-pip"]
    subprocess.run([sys.executable, "-m", "venv", *flags, str(venv)], check=True, timeout=300)
    bindir = str(venv / "bin")
    (tmp_path / "work").mkdir()
    cwd = _workdir(tmp_path / "work")
    if from_scratch:  # the page's own install command, ember's dependencies and all
        page = _steps()[0][0]
        install = page.replace('".[examples]"', f'"{ROOT}[examples]"')
        # 8-11 min seen on a loaded 2-core machine
        _run(install, cwd, bindir, timeout=1500, page_cmd=page)
    else:  # fast: the dependencies come from the system's site-packages
        subprocess.run(
            [f"{bindir}/python", "-m", "pip", "install", "-q", "--no-deps"]
            + ["--no-build-isolation", "-e", str(ROOT)],
            check=True,
            timeout=300,
            capture_output=True,
        )
    return bindir, cwd


def _no_ray_lines(cmd: str, out: str) -> None:
    """Ray's own lines stay in the run's logs/ray.log (shown with --verbose), not here (the
    page's own ``ray start`` / ``ray stop`` are Ray's commands: they print Ray's lines)."""
    if cmd.split()[0] == "ray":
        return
    ray = [line for line in out.splitlines() if is_ray_line(line) or "opt out" in line]
    assert not ray, f"{cmd} printed Ray's own lines:\n" + "\n".join(ray)


def _check_what_users_see(outputs: dict[str, str], bindir: str, tmp_path: Path) -> None:
    mlp = next(out for cmd, out in outputs.items() if "digits_mlp" in cmd)
    assert float(re.search(r"test accuracy ([\d.]+)%", mlp).group(1)) >= 90.0, mlp
    assert (tmp_path / "runs" / "mlp" / "checkpoint.pt").exists()
    doctor = outputs["ember doctor"]
    for field in ("Python:", "numpy:", "ray:", "grpcio:", "Ray auth mode:", "/dev/shm:"):
        assert re.search(rf"^{re.escape(field)} +\S", doctor, flags=re.M), (field, doctor)
    assert re.search(r"^Open-file limit: +\d+", doctor, flags=re.M), doctor
    assert re.search(r"^Network ns: +\S", doctor, flags=re.M), doctor
    # the venv's own `ember`, not the system's
    assert f"ember: {bindir}/ember" in doctor, doctor
    bad = next(out for cmd, out in outputs.items() if "--ops" in cmd)
    errors = [line for line in bad.splitlines() if "error:" in line]
    assert len(errors) == 1 and "invalid choice: 'alltoall'" in errors[0], bad


@pytest.mark.parametrize(
    "from_scratch",
    [
        pytest.param(False, id="system-site"),
        # a real install of ember's dependencies (Ray, gRPC, ...) takes minutes
        pytest.param(True, marks=[pytest.mark.full, pytest.mark.timeout(1800)], id="from-scratch"),
    ],
)
def test_quickstart_in_a_fresh_venv(tmp_path, from_scratch):
    """The page's commands in a new virtual environment; without EMBER_FULL_TESTS only the
    steps that need no Ray cluster (see the module's docstring)."""
    everything = from_scratch or os.environ.get("EMBER_FULL_TESTS", "") not in ("", "0")
    bindir, cwd = _venv(tmp_path, from_scratch)
    outputs = {}
    try:
        for cmd, shown in _steps()[1:]:
            if _needs_ray(cmd) and not everything:
                continue
            outputs[cmd] = _run(cmd, cwd, bindir)
            _check_shown(shown, outputs[cmd])
            _no_ray_lines(cmd, outputs[cmd])
    finally:
        if everything:
            subprocess.run(
                "ray stop --force",
                shell=True,
                cwd=cwd,
                capture_output=True,
                env={**os.environ, "PATH": bindir + os.pathsep + os.environ["PATH"]},
            )
    _check_what_users_see(outputs, bindir, cwd)
    if everything:
        launch = next(out for cmd, out in outputs.items() if cmd.startswith("ember launch --w"))
        acc = re.search(r"\[rank0\]: test accuracy ([\d.]+) \(2 workers", launch)
        assert acc and float(acc.group(1)) >= 0.95, launch
