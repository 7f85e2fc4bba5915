"""Every entry point answers ``--help`` with its usage (without running anything) and a bad
argument with one ``error:`` line, never a traceback: each script of benchmarks/ and examples/
(all run in ONE child process, so the imports are paid once), and each ``ember`` subcommand."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Runs each script as `python SCRIPT ARG` would (its folder first on sys.path, as __main__),
# in-process; a script still running after 30 s ran its job instead of answering.
_DRIVER = r"""
import contextlib, io, json, os, runpy, signal, sys

class Ran(BaseException):
    pass

def alarm(signum, frame):
    raise Ran()

signal.signal(signal.SIGALRM, alarm)
results = {}
for script in sys.argv[1:]:
    for arg in ("--help", "--no-such-option"):
        out, err = io.StringIO(), io.StringIO()
        sys.argv = [script, arg]
        sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
        for name in ("_common",):  # benchmarks/ and examples/ each have one
            sys.modules.pop(name, None)
        signal.alarm(30)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                runpy.run_path(script, run_name="__main__")
            code = 0 if arg == "--help" else "returned"
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except Ran:
            code = "still running after 30 s"
        except BaseException as e:
            code = f"{type(e).__name__}: {e}"
        finally:
            signal.alarm(0)
            sys.path.pop(0)
        results[f"{script} {arg}"] = [code, out.getvalue(), err.getvalue()]
print(json.dumps(results))
"""


def _scripts() -> list[str]:
    found = []
    for path in sorted([*REPO.glob("benchmarks/*.py"), *REPO.glob("examples/**/*.py")]):
        if path.name.startswith("_") or 'if __name__ == "__main__":' not in path.read_text():
            continue
        found.append(str(path.relative_to(REPO)))
    return found


SCRIPTS = _scripts()


@pytest.fixture(scope="module")
def answers(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("entry")  # a script that ignored --help writes here
    for d in ("benchmarks", "examples"):
        (cwd / d).symlink_to(REPO / d)
    r = subprocess.run(
        [sys.executable, "-c", _DRIVER, *SCRIPTS],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.splitlines()[-1])


def test_every_script_is_covered():
    names = {Path(s).name for s in SCRIPTS}
    assert {"collectives.py", "serve.py", "ddp_digits_launch.py", "quickstart.py"} <= names
    assert len(SCRIPTS) >= 30


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_and_a_bad_option(answers, script):
    name = Path(script).name
    code, out, err = answers[f"{script} --help"]
    assert code == 0, f"--help: {code}\n{err[-2000:]}"
    assert out.startswith(f"usage: {name}"), out[:300]
    assert "Traceback" not in err
    code, out, err = answers[f"{script} --no-such-option"]
    assert code == 2, f"--no-such-option: {code}\n{err[-2000:]}"
    assert "Traceback" not in err and out == ""
    assert err.splitlines()[-1].startswith(f"{name}: error: "), err


# one bad value per `ember` subcommand, and the one line the user reads
CLI_BAD = [
    (["launch", "--workers", "0", "x.py"], "ember launch: error: argument --workers: must be >= 1"),
    (
        ["launch", "--cpus-per-worker", "-1", "x.py"],
        "ember launch: error: argument --cpus-per-worker: must be >= 0, got -1",
    ),
    (["experiment", "--out"], "ember experiment: error: argument --out: expected one argument"),
    (["up", "missing.yaml"], "ember up: missing.yaml: file not found"),
    (["down", "--grace", "soon", "c.yaml"], "ember down: error: argument --grace: invalid float"),
    (["status", "missing.yaml"], "ember status: missing.yaml: file not found"),
    (
        ["submit", "--working-dir", "no/such/dir", "--", "python", "x.py"],
        "ember submit: --working-dir is not a directory: no/such/dir",
    ),
    (["job", "status"], "ember job status: error: the following arguments are required: ID"),
    (["job", "logs", "-f"], "ember job logs: error: the following arguments are required: ID"),
    (["job", "stop"], "ember job stop: error: the following arguments are required: ID"),
    (["job", "list", "extra"], "ember: error: unrecognized arguments: extra"),
    (["serve", "x.ep", "--replicas", "0"], "ember serve: --replicas must be >= 1, got 0"),
    (["serve", "x.ep", "--device", "tpu"], "ember serve: error: argument --device: invalid choice"),
    (["doctor", "--address", "nohost"], "ember doctor: error: argument --address: expected HOST:"),
]


def _ember(argv: list[str]) -> tuple[int, str, str]:
    from ember.launcher.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:  # a message as the code: Python prints it, exit status 1
            code = e.code
            if isinstance(code, str):
                print(code, file=sys.stderr)
                code = 1
    return code, out.getvalue(), err.getvalue()


def _subcommands() -> list[list[str]]:
    import argparse

    from ember.launcher.cli import build_parser

    found = []

    def walk(parser, prefix):
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            found.append(prefix)
        for action in subs:
            for name, sub in action.choices.items():
                walk(sub, [*prefix, name])

    walk(build_parser(), [])
    return found


@pytest.mark.parametrize("argv,line", CLI_BAD, ids=[" ".join(a) for a, _ in CLI_BAD])
def test_ember_subcommand_bad_value_is_one_line(tmp_path, monkeypatch, argv, line):
    monkeypatch.chdir(tmp_path)
    code, out, err = _ember(argv)
    assert code in (1, 2), (code, err)
    assert "Traceback" not in err and out == ""
    assert err.splitlines()[-1].startswith(line), err


def test_every_ember_subcommand_has_help_and_a_bad_value_case():
    subcommands = _subcommands()
    assert len(subcommands) >= 10
    covered = {tuple(argv[: len(s)]) for argv, _ in CLI_BAD for s in subcommands}
    for sub in subcommands:
        assert tuple(sub) in covered, f"no bad-value case for `ember {' '.join(sub)}`"
        code, out, err = _ember([*sub, "--help"])
        assert code == 0 and out.startswith(f"usage: ember {' '.join(sub)}"), (sub, out, err)
