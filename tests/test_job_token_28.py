"""Issue #28 item 2: a job token is always there. With ``EMBER_TOKEN`` unset, ember uses a
per-user generated secret (a private file), so a process without it is refused by the store;
only ``EMBER_INSECURE_NO_TOKEN=1`` gives an open store, with one loud warning."""

from __future__ import annotations

import logging
import os
import stat

import pytest

from ember.distributed import DistStoreError, TCPStore
from ember.distributed._runtime import _auth, _token_file


@pytest.fixture
def no_token(monkeypatch, tmp_path):
    monkeypatch.delenv("EMBER_TOKEN", raising=False)
    monkeypatch.delenv("EMBER_INSECURE_NO_TOKEN", raising=False)
    path = tmp_path / "tok" / "job_token"
    monkeypatch.setenv("EMBER_TOKEN_FILE", str(path))
    return path


def test_token_generated_private_and_stable(no_token):
    token = _auth.job_token()
    assert len(token) == 32 and token == _auth.job_token()
    assert stat.S_IMODE(os.stat(no_token).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(no_token.parent).st_mode) == 0o700


def test_store_refuses_client_without_token_when_unset(no_token):
    """Failed before the fix: with EMBER_TOKEN unset both sides used "" and the stranger was
    let in to read and write the store."""
    master = TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False, timeout=10)
    try:
        master.set("secret", b"weights")
        refused = "refused this process's job token.*need EMBER_TOKEN"
        with pytest.raises(DistStoreError, match=refused):
            TCPStore("127.0.0.1", master.port, timeout=10, token="")
        # a rank of the same user (same token file) gets in
        peer = TCPStore("127.0.0.1", master.port, timeout=10)
        assert peer.get("secret") == b"weights"
    finally:
        del master


def test_insecure_opt_in_warns_once(no_token, monkeypatch, caplog):
    monkeypatch.setenv("EMBER_INSECURE_NO_TOKEN", "1")
    monkeypatch.setattr(_auth, "_warned_no_token", False)
    with caplog.at_level(logging.WARNING, logger="ember.distributed"):
        assert _auth.job_token() == "" and _auth.job_token() == ""
    loud = [r for r in caplog.records if "INSECURE" in r.getMessage()]
    assert len(loud) == 1 and "EMBER_INSECURE_NO_TOKEN" in loud[0].getMessage()
    assert not no_token.exists()


def test_empty_env_token_is_unset(no_token, monkeypatch):
    monkeypatch.setenv("EMBER_TOKEN", "")
    assert _auth.job_token() == no_token.read_text().strip() != ""
    monkeypatch.setenv("EMBER_TOKEN", "given")
    assert _auth.job_token() == "given"


@pytest.mark.parametrize("problem", ["group_readable", "empty"])
def test_unsafe_token_file_refused(no_token, problem):
    no_token.parent.mkdir(mode=0o700)
    no_token.write_text("" if problem == "empty" else "abc\n")
    os.chmod(no_token, 0o644 if problem == "group_readable" else 0o600)
    with pytest.raises(_token_file.TokenFileError, match=str(no_token)):
        _auth.job_token()


def test_unusable_location_names_what_to_set(monkeypatch, tmp_path):
    monkeypatch.delenv("EMBER_TOKEN", raising=False)
    monkeypatch.delenv("EMBER_INSECURE_NO_TOKEN", raising=False)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("EMBER_TOKEN_FILE", str(blocker / "job_token"))  # parent is a file
    with pytest.raises(RuntimeError, match="set EMBER_TOKEN"):
        _auth.job_token()


def test_docs_snippet_runs(no_token):
    here = os.path.dirname(os.path.abspath(__file__))
    text = open(os.path.join(here, "..", "docs", "failure_modes.md")).read()
    section = text.split("## A job token always", 1)[1].split("\n## ", 1)[0]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(code, "docs/failure_modes.md", "exec"), {})
