"""torch.jit's remaining public names as model libraries use them in eager code: type markers
at class definition, fork/wait, the typed isinstance, and the fusion settings (checked against
torch.jit where torch gives a result)."""

from __future__ import annotations

import typing

# ruff: noqa: UP006, UP035, UP045  (typing.List etc.: the spellings TorchScript programs use)
from typing import Dict, List, Optional, Tuple

import pytest
import torch

import ember


def test_names_torch_jit_has_are_here():
    for name in (
        "Final",
        "Attribute",
        "annotate",
        "interface",
        "fork",
        "wait",
        "Future",
        "isinstance",
        "Error",
        "ScriptWarning",
        "script_if_tracing",
        "strict_fusion",
        "set_fusion_strategy",
        "fuser",
        "optimized_execution",
    ):
        assert hasattr(ember.jit, name), name
    assert issubclass(ember.jit.Error, RuntimeError)


class _Attn(ember.nn.Module):
    # the class-level annotation timm and torchvision write for TorchScript
    fused_attn: ember.jit.Final[bool]

    def __init__(self) -> None:
        super().__init__()
        self.fused_attn = True
        self.scale = ember.jit.Attribute(0.5, float)
        self.proj = ember.nn.Linear(4, 4)

    def forward(self, x):
        acc = ember.jit.annotate(List[ember.Tensor], [])
        acc.append(self.proj(x) * self.scale)
        return acc[0]


def test_markers_leave_eager_code_unchanged():
    m = _Attn()
    x = ember.randn(2, 4)
    np_ref = (x.numpy() @ m.proj.weight.detach().numpy().T + m.proj.bias.detach().numpy()) * 0.5
    assert ember.allclose(m(x), ember.tensor(np_ref), atol=1e-6)
    assert ember.jit.Final is typing.Final


def test_interface_returns_the_class_and_rejects_functions():
    @ember.jit.interface
    class Proto:
        def forward(self, x: ember.Tensor) -> ember.Tensor:
            pass

    assert isinstance(Proto, type)
    with pytest.raises(TypeError, match="decorates a class"):
        ember.jit.interface(lambda: None)


def test_fork_wait_give_the_result_and_deliver_errors():
    fut = ember.jit.fork(lambda a, b: a + b, ember.ones(2), b=ember.ones(2))
    assert isinstance(fut, ember.futures.Future)
    assert ember.jit.wait(fut).tolist() == [2.0, 2.0]
    bad = ember.jit.fork(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        ember.jit.wait(bad)
    with pytest.raises(TypeError, match="expects a Future"):
        ember.jit.wait(3)


@pytest.mark.parametrize(
    "obj, target",
    [
        ([1, 2], List[int]),
        ([1, "a"], List[int]),
        ([], List[str]),
        ({"a": 1}, Dict[str, int]),
        ({"a": "b"}, Dict[str, int]),
        ((1, "x"), Tuple[int, str]),
        ((1, 2), Tuple[int, str]),
        (None, Optional[int]),
        (3, Optional[int]),
        ("3", Optional[int]),
        (3.0, int),
        ([[1], [2, 3]], List[List[int]]),
        ([1.0], list[float]),
    ],
)
def test_typed_isinstance_matches_torch(obj, target):
    assert ember.jit.isinstance(obj, target) == torch.jit.isinstance(obj, target)


def test_typed_isinstance_checks_tensors_and_variadic_tuples():
    assert ember.jit.isinstance([ember.ones(1)], List[ember.Tensor])
    # torch's eager check raises or answers False on Tuple[T, ...]; ember checks each element
    assert ember.jit.isinstance((1, 2, 3), Tuple[int, ...])
    assert not ember.jit.isinstance((1, "2"), Tuple[int, ...])
    assert not ember.jit.isinstance([ember.ones(1), 2], List[ember.Tensor])


def test_fusion_settings_are_accepted_and_checked():
    old = ember.jit.set_fusion_strategy([("DYNAMIC", 3)])
    assert ember.jit.set_fusion_strategy(old) == [("DYNAMIC", 3)]
    with pytest.raises(ValueError, match="STATIC"):
        ember.jit.set_fusion_strategy([("SOMETIMES", 1)])
    with ember.jit.fuser("fuser1"), ember.jit.optimized_execution(False), ember.jit.strict_fusion():
        y = ember.ones(2) * 2
    assert y.tolist() == [2.0, 2.0]
    with pytest.raises(ValueError, match="fuser"):
        with ember.jit.fuser("fuser9"):
            pass


def test_script_if_tracing_runs_eagerly():
    @ember.jit.script_if_tracing
    def double(x):
        return x * 2

    assert double(ember.ones(1)).tolist() == [2.0]


class _Dense(ember.nn.Module):
    # timm's DenseLayer: typed overload declarations, then the implementation
    @ember.jit._overload_method  # noqa: F811
    def forward(self, x: list[ember.Tensor]) -> ember.Tensor:
        pass

    @ember.jit._overload_method
    def forward(self, x: ember.Tensor) -> ember.Tensor:  # noqa: F811
        pass

    def forward(self, x):  # noqa: F811
        if isinstance(x, ember.Tensor):
            x = [x]
        return ember.cat(x, 1)


def test_overload_declarations_leave_the_implementation():
    out = _Dense()([ember.ones(1, 2), ember.zeros(1, 1)])
    assert out.tolist() == [[1.0, 1.0, 0.0]]
    assert _Dense()(ember.ones(1, 2)).shape == (1, 2)


def test_annotations_module_and_hub_names_libraries_import():
    from ember.hub import HASH_REGEX, download_url_to_file, urlparse  # noqa: F401
    from ember.jit.annotations import BroadcastingList2, List, Optional, Tuple  # noqa: F401

    assert HASH_REGEX.search("resnet18-f37072fd.pth").group(1) == "f37072fd"
    assert urlparse("https://x.org/a/b.pth").path == "/a/b.pth"
    assert BroadcastingList2[int] == List[int]
