"""DTensor's operator methods: ONE table binding names to the propagation rules.

Importing this module (``ember.distributed.tensor`` does) gives ``DTensor`` its arithmetic,
``@``, reductions, softmax, ``masked_fill``, views and a few activations; ``ops`` holds the
functional forms (``linear``, ``embedding``, ``layer_norm``, ``scaled_dot_product_attention``...),
which ember's ``nn.functional`` does not dispatch to by itself.
"""

from __future__ import annotations

from . import _attention, _nn_ops, _pointwise, _torch_function, _view
from ._api import DTensor

__all__: list[str] = []


def _binop(op: str, reverse: bool = False):
    import operator

    fn = {"add": operator.add, "sub": operator.sub, "mul": operator.mul}.get(op, operator.truediv)

    def method(self, other):
        return _pointwise.binary(self, other, op, fn, reverse=reverse)

    method.__name__ = f"__{'r' if reverse else ''}{op}__"
    return method


def _activation(name: str, linear: bool = False):
    def method(self, *args, **kwargs):
        return _pointwise.unary(self, lambda t: getattr(t, name)(*args, **kwargs), linear=linear)

    method.__name__ = name
    return method


def _softmax(fn_name: str):
    def method(self, dim: int, dtype=None):
        return _pointwise.softmax(self, dim, lambda t, d: getattr(t, fn_name)(d, dtype=dtype))

    method.__name__ = fn_name
    return method


def _backward(self, gradient=None, retain_graph=None, create_graph=False) -> None:
    """Backpropagate from this DTensor (a replicated scalar loss, usually): the local piece's
    ``backward``; ``gradient``, if given, is a DTensor of the same layout or a local tensor."""
    if isinstance(gradient, DTensor):
        gradient = gradient.redistribute(self.device_mesh, self.placements).to_local()
    self._local_tensor.backward(gradient, retain_graph=retain_graph, create_graph=create_graph)


def _no_array(self, *args, **kwargs):
    # ember.Tensor's operators convert unknown operands with NumPy; say what is wrong instead
    raise RuntimeError(
        "got mixed ember.Tensor and DTensor operands; convert the tensor with "
        "DTensor.from_local or distribute_tensor first, or use dtensor.to_local()"
    )


def _as_parameter(self, requires_grad: bool = True):
    # ``nn.Parameter(dtensor)`` (core's Parameter asks the type): a DTensorParameter
    from .parallel._param import DTensorParameter

    return DTensorParameter(self, requires_grad)


_METHODS = {
    "__array__": _no_array,
    "_as_parameter": _as_parameter,
    "__add__": _binop("add"),
    "__radd__": _binop("add", reverse=True),
    "__sub__": _binop("sub"),
    "__rsub__": _binop("sub", reverse=True),
    "__mul__": _binop("mul"),
    "__rmul__": _binop("mul", reverse=True),
    "__truediv__": _binop("div"),
    "__rtruediv__": _binop("div", reverse=True),
    "add": _binop("add"),
    "sub": _binop("sub"),
    "mul": _binop("mul"),
    "div": _binop("div"),
    "__neg__": _activation("neg", linear=True),
    "neg": _activation("neg", linear=True),
    "relu": _activation("relu"),
    "tanh": _activation("tanh"),
    "sigmoid": _activation("sigmoid"),
    "exp": _activation("exp"),
    "__matmul__": lambda self, other: _nn_ops.matmul(self, other),
    "matmul": lambda self, other: _nn_ops.matmul(self, other),
    "sum": lambda self, dim=None, keepdim=False: _pointwise.reduce(self, "sum", dim, keepdim),
    "mean": lambda self, dim=None, keepdim=False: _pointwise.reduce(self, "mean", dim, keepdim),
    "softmax": _softmax("softmax"),
    "log_softmax": _softmax("log_softmax"),
    "masked_fill": _attention.masked_fill,
    "contiguous": lambda self, *a, **k: DTensor(
        self._local_tensor.contiguous(), self.device_mesh, self.placements, self._shape
    ),
    "view": _view.reshape,
    "reshape": _view.reshape,
    "transpose": _view.transpose,
    "permute": _view.permute,
    "backward": _backward,
    "requires_grad": property(lambda self: self._local_tensor.requires_grad),
}

_METHODS.update(_torch_function.METHODS)  # __torch_function__ and the dtype methods

for _name, _fn in _METHODS.items():
    setattr(DTensor, _name, _fn)
