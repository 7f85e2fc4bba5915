"""The PyTorch idioms of the speech libraries on top of torchaudio (asteroid, speechbrain), in
small programs of our own, checked against PyTorch (the libraries are not imported).

asteroid's filterbanks guard their scripted paths with ``torch._C._is_tracing()``;
speechbrain turns off the JIT's profiling executor at import
(``torch._C._jit_set_profiling_executor(False)``) and its Li-GRU broadcasts its initial
state with ``h_init.broadcast_to(batch, hidden)`` (sizes as separate integers, which only the
method takes). ``tests/test_audio_idioms.py`` holds torchaudio's own idioms.
"""

from __future__ import annotations

import pytest
import torch

import ember

LIBS = [torch, ember]


def _recording(lib, seen):
    def f(x):
        seen.append(lib._C._is_tracing())
        return x * 2

    return f


def test_is_tracing_inside_a_trace():
    # asteroid's script_if_tracing: torch._C._is_tracing() chooses the eager or scripted path
    for lib in LIBS:
        seen = []
        assert lib._C._is_tracing() is False
        lib.jit.trace(_recording(lib, seen), (lib.ones(2),))
        assert seen[0] is True, lib.__name__


def test_jit_profiling_switches_return_the_old_value():
    res = []
    for lib in LIBS:
        c = lib._C
        first = c._jit_set_profiling_executor(False)
        second = c._jit_set_profiling_executor(True)
        mode = c._jit_set_profiling_mode(False)
        c._jit_set_profiling_mode(mode)
        res.append((first, second, mode))
    assert res[0] == res[1]


def test_broadcast_to_method_takes_separate_sizes():
    for lib in LIBS:
        h = lib.arange(3.0).view(1, 3)
        assert tuple(h.broadcast_to(2, 3).shape) == (2, 3)
        assert tuple(h.broadcast_to((2, 3)).shape) == (2, 3)
        assert tuple(h.broadcast_to(size=[2, 3]).shape) == (2, 3)
        assert h.broadcast_to(2, 3)[1].tolist() == [0.0, 1.0, 2.0]
        with pytest.raises(TypeError):
            lib.broadcast_to(h, 2, 3)  # the function takes one sequence
        with pytest.raises(RuntimeError, match="must match the existing size"):
            h.broadcast_to(2, 4)
