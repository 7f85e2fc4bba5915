"""Activation modules: thin wrappers over ``nn.functional`` with PyTorch's ``extra_repr``."""

from __future__ import annotations

from ...creation import empty
from ...tensor import Tensor
from .. import functional as F
from .. import init
from ..module import Module
from ..parameter import Parameter
from .utils import _functional

__all__ = [
    "ReLU",
    "ReLU6",
    "LeakyReLU",
    "PReLU",
    "RReLU",
    "ELU",
    "SELU",
    "CELU",
    "GELU",
    "SiLU",
    "Mish",
    "Sigmoid",
    "Tanh",
    "Hardtanh",
    "Hardsigmoid",
    "Hardswish",
    "Softplus",
    "Softsign",
    "Softmax",
    "LogSoftmax",
    "Softmin",
    "Softmax2d",
    "Threshold",
    "Tanhshrink",
    "Hardshrink",
    "Softshrink",
    "LogSigmoid",
    "GLU",
]


class _Inplace(Module):
    """An activation with only an ``inplace`` flag."""

    _fn = None

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace

    def forward(self, input: Tensor) -> Tensor:
        return type(self)._fn(input, inplace=self.inplace)

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class _Plain(Module):
    """An activation without arguments."""

    _fn = None

    def forward(self, input: Tensor) -> Tensor:
        return type(self)._fn(input)


class ReLU(_Inplace):
    r""":math:`\max(0, x)`."""

    _fn = _functional("relu")


class SELU(_Inplace):
    r"""Scaled ELU with the self-normalising constants."""

    _fn = _functional("selu")


class SiLU(_Inplace):
    r""":math:`x \sigma(x)`."""

    _fn = _functional("silu")


class Mish(_Inplace):
    r""":math:`x \tanh(\text{softplus}(x))`."""

    _fn = _functional("mish")


class Hardsigmoid(_Inplace):
    r""":math:`\text{relu6}(x + 3) / 6`."""

    _fn = _functional("hardsigmoid")

    def extra_repr(self) -> str:
        return ""


class Hardswish(_Inplace):
    r""":math:`x \cdot \text{relu6}(x + 3) / 6`."""

    _fn = _functional("hardswish")

    def extra_repr(self) -> str:
        return ""


class Sigmoid(_Plain):
    """Applies the logistic sigmoid ``1 / (1 + exp(-x))`` elementwise."""

    _fn = _functional("sigmoid")


class Tanh(_Plain):
    """Applies the hyperbolic tangent elementwise."""

    _fn = _functional("tanh")


class Softsign(_Plain):
    """Applies ``x / (1 + |x|)`` elementwise."""

    _fn = _functional("softsign")


class Tanhshrink(_Plain):
    """Applies ``x - tanh(x)`` elementwise."""

    _fn = _functional("tanhshrink")


class LogSigmoid(_Plain):
    """Applies ``log(sigmoid(x))`` elementwise."""

    _fn = _functional("logsigmoid")


class LeakyReLU(Module):
    r""":math:`x` for :math:`x > 0`, else :math:`\text{negative\_slope} \cdot x`."""

    def __init__(self, negative_slope: float = 1e-2, inplace: bool = False) -> None:
        super().__init__()
        self.negative_slope = negative_slope
        self.inplace = inplace

    def forward(self, input: Tensor) -> Tensor:
        return F.leaky_relu(input, self.negative_slope, self.inplace)

    def extra_repr(self) -> str:
        inplace = ", inplace=True" if self.inplace else ""
        return f"negative_slope={self.negative_slope}{inplace}"


class PReLU(Module):
    r"""Leaky ReLU with a learned slope (one, or one per channel), initialised to ``init``."""

    def __init__(
        self, num_parameters: int = 1, init: float = 0.25, device=None, dtype=None
    ) -> None:
        self.num_parameters = num_parameters
        super().__init__()
        self.init = init
        self.weight = Parameter(empty(num_parameters, device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.constant_(self.weight, self.init)

    def forward(self, input: Tensor) -> Tensor:
        return F.prelu(input, self.weight)

    def extra_repr(self) -> str:
        return f"num_parameters={self.num_parameters}"


class RReLU(Module):
    r"""Randomized leaky ReLU (random slope in ``[lower, upper]`` while training)."""

    def __init__(
        self, lower: float = 1.0 / 8, upper: float = 1.0 / 3, inplace: bool = False
    ) -> None:
        super().__init__()
        self.lower, self.upper, self.inplace = lower, upper, inplace

    def forward(self, input: Tensor) -> Tensor:
        return F.rrelu(input, self.lower, self.upper, self.training, self.inplace)

    def extra_repr(self) -> str:
        inplace = ", inplace=True" if self.inplace else ""
        return f"lower={self.lower}, upper={self.upper}{inplace}"


class ELU(Module):
    r""":math:`x` for :math:`x > 0`, else :math:`\alpha (e^x - 1)`."""

    def __init__(self, alpha: float = 1.0, inplace: bool = False) -> None:
        super().__init__()
        self.alpha, self.inplace = alpha, inplace

    def forward(self, input: Tensor) -> Tensor:
        return F.elu(input, self.alpha, self.inplace)

    def extra_repr(self) -> str:
        inplace = ", inplace=True" if self.inplace else ""
        return f"alpha={self.alpha}{inplace}"


class CELU(ELU):
    r""":math:`\max(0, x) + \min(0, \alpha (e^{x/\alpha} - 1))`."""

    def forward(self, input: Tensor) -> Tensor:
        return F.celu(input, self.alpha, self.inplace)


class GELU(Module):
    r""":math:`x \Phi(x)`; ``approximate='tanh'`` uses the tanh approximation."""

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        self.approximate = approximate

    def forward(self, input: Tensor) -> Tensor:
        return F.gelu(input, approximate=self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={repr(self.approximate)}"


class Hardtanh(Module):
    r"""Clamp to ``[min_val, max_val]``."""

    def __init__(
        self,
        min_val: float = -1.0,
        max_val: float = 1.0,
        inplace: bool = False,
        min_value: float | None = None,
        max_value: float | None = None,
    ) -> None:
        super().__init__()
        self.min_val = min_val if min_value is None else min_value
        self.max_val = max_val if max_value is None else max_value
        self.inplace = inplace
        if self.max_val <= self.min_val:
            raise AssertionError("max_val must be greater than min_val")

    def forward(self, input: Tensor) -> Tensor:
        return F.hardtanh(input, self.min_val, self.max_val, self.inplace)

    def extra_repr(self) -> str:
        inplace = ", inplace=True" if self.inplace else ""
        return f"min_val={self.min_val}, max_val={self.max_val}{inplace}"


class ReLU6(Hardtanh):
    r""":math:`\min(\max(0, x), 6)`: ``Hardtanh(0, 6)``, as in torch (its forward is
    ``F.hardtanh``, which FLOP counters that patch ``F.relu6`` do not count twice)."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__(0.0, 6.0, inplace)

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class Softplus(Module):
    r""":math:`\frac{1}{\beta} \log(1 + e^{\beta x})`, linear above ``threshold``."""

    def __init__(self, beta: float = 1.0, threshold: float = 20.0) -> None:
        super().__init__()
        self.beta, self.threshold = beta, threshold

    def forward(self, input: Tensor) -> Tensor:
        return F.softplus(input, self.beta, self.threshold)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, threshold={self.threshold}"


class _DimActivation(Module):
    _fn = None

    def __init__(self, dim: int | None = None) -> None:
        super().__init__()
        self.dim = dim

    def __setstate__(self, state) -> None:
        super().__setstate__(state)
        if not hasattr(self, "dim"):
            self.dim = None

    def forward(self, input: Tensor) -> Tensor:
        return type(self)._fn(input, self.dim, _stacklevel=5)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Softmax(_DimActivation):
    r""":math:`e^{x_i} / \sum_j e^{x_j}` along ``dim``."""

    _fn = _functional("softmax")


class LogSoftmax(_DimActivation):
    r"""log of softmax along ``dim``, computed stably."""

    _fn = _functional("log_softmax")


class Softmin(_DimActivation):
    r"""``softmax(-x)`` along ``dim``."""

    _fn = _functional("softmin")


class Softmax2d(Module):
    r"""Softmax over the channels of (N, C, H, W) or (C, H, W) inputs."""

    def forward(self, input: Tensor) -> Tensor:
        if input.dim() not in (3, 4):
            raise ValueError(
                f"Softmax2d: expected input to be 3D or 4D, got {input.dim()}D instead"
            )
        return F.softmax(input, -3, _stacklevel=5)


class Threshold(Module):
    r""":math:`x` where :math:`x > \text{threshold}`, else ``value``."""

    def __init__(self, threshold: float, value: float, inplace: bool = False) -> None:
        super().__init__()
        self.threshold, self.value, self.inplace = threshold, value, inplace

    def forward(self, input: Tensor) -> Tensor:
        return F.threshold(input, self.threshold, self.value, self.inplace)

    def extra_repr(self) -> str:
        inplace = ", inplace=True" if self.inplace else ""
        return f"threshold={self.threshold}, value={self.value}{inplace}"


class Hardshrink(Module):
    """Applies the hard shrinkage function elementwise: ``x`` where ``|x| > lambd``, else 0."""

    def __init__(self, lambd: float = 0.5) -> None:
        super().__init__()
        self.lambd = lambd

    def forward(self, input: Tensor) -> Tensor:
        return F.hardshrink(input, self.lambd)

    def extra_repr(self) -> str:
        return f"{self.lambd}"


class Softshrink(Hardshrink):
    """Applies soft shrinkage elementwise: ``x`` moved towards 0 by ``lambd``, 0 in between."""

    def forward(self, input: Tensor) -> Tensor:
        return F.softshrink(input, self.lambd)


class GLU(Module):
    r"""Gated linear unit over ``dim``."""

    def __init__(self, dim: int = -1) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, input: Tensor) -> Tensor:
        return F.glu(input, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


def __getattr__(name):
    # torch keeps MultiheadAttention in torch.nn.modules.activation; scripts import it from there
    if name == "MultiheadAttention":
        from .attention import MultiheadAttention

        return MultiheadAttention
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
