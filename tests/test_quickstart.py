"""docs/quickstart.md, run as a new user runs it: each `$ command` of its console blocks, with
what it prints checked against the output the page shows (numbers and `...` may differ).

CI runs the steps that need no Ray cluster (the README's main job, which is step 4, has its own
test in test_readme.py); EMBER_FULL_TESTS=1 runs the whole page in a fresh virtual environment,
install step included.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

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


def _run(cmd: str, cwd: Path, bindir: str) -> str:
    env = {
        **os.environ,
        "PATH": bindir + os.pathsep + os.environ["PATH"],
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
    }
    r = subprocess.run(
        cmd, shell=True, cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    out = r.stdout + r.stderr
    expect_error = "error" in " ".join(_shown_for(cmd))
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


def test_steps_without_ray(tmp_path):
    """Steps 2, 3 and 6: one process, the doctor and a bad argument, as a user sees them."""
    cwd = _workdir(tmp_path)
    bindir = os.path.dirname(sys.executable)
    outputs = {}
    for cmd, shown in _steps()[1:]:
        if _needs_ray(cmd):
            continue
        outputs[cmd] = _run(cmd, cwd, bindir)
        _check_shown(shown, outputs[cmd])
    mlp = next(out for cmd, out in outputs.items() if "digits_mlp" in cmd)
    assert float(re.search(r"test accuracy ([\d.]+)%", mlp).group(1)) >= 90.0, mlp
    assert (tmp_path / "runs" / "mlp" / "checkpoint.pt").exists()


@pytest.mark.full
def test_whole_page_in_a_fresh_venv(tmp_path):
    """Every command on the page, install included, in a new virtual environment."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    bindir = str(venv / "bin")
    cwd = _workdir(tmp_path / "work") if (tmp_path / "work").mkdir() is None else None
    steps = _steps()
    install = steps[0][0].replace('".[examples]"', f'"{ROOT}[examples]"')
    _run(install, cwd, bindir)
    try:
        for cmd, shown in steps[1:]:
            _check_shown(shown, _run(cmd, cwd, bindir))
    finally:
        subprocess.run(
            "ray stop --force",
            shell=True,
            cwd=cwd,
            capture_output=True,
            env={**os.environ, "PATH": bindir + os.pathsep + os.environ["PATH"]},
        )
