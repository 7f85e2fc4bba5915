"""How ``ember launch`` relays worker output: pieces end at newlines or carriage returns, so a
progress bar moves on a terminal; elsewhere only finished lines are written."""

from __future__ import annotations

import io

from ember.launcher._worker_io import Printer, split_pieces


def test_split_pieces_keeps_incomplete_text_and_a_trailing_cr():
    assert split_pieces("a\nb\r\nc") == (["a\n", "b\r\n"], "c")
    assert split_pieces("\rbar 1\rbar 2") == (["\r", "bar 1\r"], "bar 2")
    # a final "\r" may be half of "\r\n": it waits for the next chunk
    assert split_pieces("x\r") == ([], "x\r")
    assert split_pieces("x\r" + "\n") == (["x\r\n"], "")
    assert split_pieces("") == ([], "")


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_printer_on_a_terminal_redraws_bars(monkeypatch):
    out, err = _Tty(), _Tty()
    monkeypatch.setattr("sys.stdout", out)
    monkeypatch.setattr("sys.stderr", err)
    p = Printer()
    for piece in ("\r", "bar 10%\r", "bar 50%\r", "bar 100%\n"):
        p.write(0, "err", piece)
    assert err.getvalue() == "[rank0]: bar 10%\r[rank0]: bar 50%\r[rank0]: bar 100%\n"
    p.write(0, "err", "bar 30%\r")
    p.write(1, "out", "hello\n")  # another source: the bar's line is left as it is
    assert err.getvalue().endswith("[rank0]: bar 30%\n")
    assert out.getvalue() == "[rank1]: hello\n"


def test_printer_elsewhere_writes_finished_lines_only(monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    p = Printer()
    for piece in ("\r", "bar 10%\r", "bar 100%\n", "done\n"):
        p.write(2, "err", piece)
    assert err.getvalue() == "[rank2]: bar 100%\n[rank2]: done\n"
