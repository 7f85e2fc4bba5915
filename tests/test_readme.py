"""The README's two set-up commands and CI's script must agree."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _readme_commands():
    text = (ROOT / "README.md").read_text()
    return re.findall(r"^    \$ (.+)$", text, flags=re.M)


def test_readme_has_two_setup_commands():
    cmds = _readme_commands()
    assert len(cmds) >= 2
    assert cmds[0].startswith("pip install -e . && python ")
    assert cmds[1].startswith('pip install -e ".[test,parity]"')


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert _readme_commands()[1] in ci.splitlines()


def test_main_job_script_exists():
    script = _readme_commands()[0].split(" python ", 1)[1].split()[0]
    assert (ROOT / script).is_file()
