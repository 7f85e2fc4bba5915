"""The ONNX graph under construction: values, constants and operator emission.

A traced value is one of three things while the graph is lowered:

* a :class:`Sym` — an ONNX tensor computed at run time (it carries the example value seen when
  the model ran on the export inputs, and the axes that vary under ``dynamic_axes``);
* an ember ``Tensor`` — a constant (a weight, or anything computed from weights only), written
  as an initializer when an operator needs it;
* a plain Python value (int, float, tuple, None, ...) known at export time.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import OnnxExporterError


class Sym:
    """A run-time ONNX value: its name, the example value and the axes that vary."""

    __slots__ = ("name", "ex", "dyn")

    def __init__(self, name: str, ex: Any, dyn: Any = False) -> None:
        self.name = name
        self.ex = ex  # ember Tensor, numpy array or Python number from the example run
        self.dyn = dyn  # tensors: frozenset of varying axes; scalars: bool

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def shape(self) -> tuple:
        return tuple(getattr(self.ex, "shape", ()))

    @property
    def np_dtype(self) -> np.dtype:
        return _np_of(self.ex).dtype

    def __repr__(self) -> str:
        return f"Sym({self.name}, shape={self.shape})"


def _np_of(v: Any) -> np.ndarray:
    """The numpy array of an example/constant value (ember Tensor, array or number)."""
    from ember import Tensor

    if isinstance(v, Tensor):
        v = v.detach()
        if getattr(v, "dtype", None) is not None and str(v.dtype) == "ember.bfloat16":
            v = v.float()
        return np.asarray(v.cpu().numpy())
    if isinstance(v, np.ndarray):
        return v
    if isinstance(v, bool):
        return np.asarray(v)
    if isinstance(v, int):
        return np.asarray(v, dtype=np.int64)
    if isinstance(v, float):
        return np.asarray(v, dtype=np.float32)
    return np.asarray(v)


def is_sym(v: Any) -> bool:
    return isinstance(v, Sym)


def any_sym(v: Any) -> bool:
    if isinstance(v, Sym):
        return True
    if isinstance(v, (list, tuple)):
        return any(any_sym(e) for e in v)
    if isinstance(v, dict):
        return any(any_sym(e) for e in v.values())
    if isinstance(v, slice):
        return any_sym(v.start) or any_sym(v.stop) or any_sym(v.step)
    return False


class Ctx:
    """Collects ONNX nodes and initializers; every helper returns value names or Syms."""

    def __init__(self, opset: int) -> None:
        from onnx import helper, numpy_helper

        self.helper = helper
        self.numpy_helper = numpy_helper
        self.opset = opset
        self.nodes: list = []
        self.initializers: list = []
        self._names: set[str] = set()
        self._const_cache: dict[tuple, str] = {}
        self._const_values: dict[str, np.ndarray] = {}  # small constants, for _opsets
        self.module_path = ""  # the module whose node is being lowered (for error messages)
        self.ex: Any = None  # the example value of the node being lowered
        self.tensor_hints: dict[int, str] = {}  # id(weight) -> its attribute path
        self._tensor_names: dict[int, tuple[Any, str]] = {}
        self.param_names: list[str] = []  # initializers that hold the model's weights

    # ---- names, nodes, constants -----------------------------------------------------------
    def fresh(self, base: str) -> str:
        base = "".join(c if c.isalnum() or c in "_./" else "_" for c in base) or "v"
        name, i = base, 0
        while name in self._names:
            i += 1
            name = f"{base}_{i}"
        self._names.add(name)
        return name

    def reserve(self, name: str) -> str:
        if name in self._names:
            raise OnnxExporterError(f"duplicate ONNX value name {name!r}")
        self._names.add(name)
        return name

    def op(
        self, op_type: str, inputs: list, n_out: int = 1, domain: str = "", _raw=False, **attrs: Any
    ):
        """Emit one node; ``inputs`` may mix names, Syms, constants ('' = omitted input).
        Below opset 15 the node is rewritten to the opset's form (``_opsets``) unless
        ``_raw`` (a node already in that form)."""
        attrs = {k: v for k, v in attrs.items() if v is not None}
        if self.opset < 15 and not domain and not _raw:  # forms that changed since: see _opsets
            from ._opsets import adapt

            out = adapt(self, op_type, list(inputs), n_out, attrs)
            if out is not None:
                return out
        names = [
            "" if i is None or (isinstance(i, str) and i == "") else self.name_of(i) for i in inputs
        ]
        while names and names[-1] == "":
            names.pop()
        outs = [self.fresh(op_type.lower()) for _ in range(n_out)]
        self.nodes.append(
            self.helper.make_node(
                op_type,
                names,
                outs,
                domain=domain or None,
                name=self.fresh("n_" + op_type),
                **attrs,
            )
        )
        return outs[0] if n_out == 1 else outs

    def name_of(self, v: Any, dtype: Any = None) -> str:
        """The ONNX name of a value: Syms by name, constants as initializers."""
        if isinstance(v, str):
            return v
        if isinstance(v, Sym):
            return v.name
        from ember import Tensor

        if isinstance(v, Tensor) and dtype is None:
            hit = self._tensor_names.get(id(v))
            if hit is not None and hit[0] is v:
                return hit[1]
            hint = self.tensor_hints.get(id(v))
            name = self.const(v, name=self.fresh(hint) if hint else None)
            if hint:
                self.param_names.append(name)
            self._tensor_names[id(v)] = (v, name)
            return name
        return self.const(v, dtype)

    def const(self, v: Any, dtype: Any = None, name: str | None = None) -> str:
        arr = _np_of(v)
        if dtype is not None:
            arr = arr.astype(dtype)
        if arr.dtype == np.float64:
            arr = arr.astype(np.float32)
        key = None
        if arr.size <= 16 and name is None:
            key = (arr.dtype.str, arr.shape, arr.tobytes())
            if key in self._const_cache:
                return self._const_cache[key]
        nm = name if name is not None else self.fresh("const")
        self.initializers.append(self.numpy_helper.from_array(arr.copy(order="C"), nm))
        if key is not None:
            self._const_cache[key] = nm
        if arr.dtype == np.int64 and arr.ndim <= 1:  # axes / sizes that _opsets may need
            self._const_values[nm] = arr
        return nm

    def const_value(self, v: Any) -> np.ndarray | None:
        """The value of a small constant (an initializer name made by ``const``, a constant
        tensor or array); None for run-time values."""
        if isinstance(v, str):
            return self._const_values.get(v)
        if isinstance(v, Sym) or v is None:
            return None
        return _np_of(v)

    def out_dtype(self) -> np.dtype:
        """The numpy dtype of the node being lowered (from its example value)."""
        ex = self.ex[0] if isinstance(self.ex, (tuple, list)) else self.ex
        return _np_of(ex).dtype

    def ints(self, values) -> str:
        return self.const(np.asarray(list(values), dtype=np.int64))

    # ---- small composite helpers -----------------------------------------------------------
    def cast(self, x: Any, np_dtype) -> str:
        from onnx import helper

        return self.op("Cast", [x], to=helper.np_dtype_to_tensor_dtype(np.dtype(np_dtype)))

    def reduce(self, op_type: str, x: Any, axes, keepdims: bool) -> str:
        """ReduceX over ``axes`` (None = all), with the opset's axes form (attr or input)."""
        kd = int(bool(keepdims))
        if axes is None:
            return self.op(op_type, [x], keepdims=kd)
        axes = [int(a) for a in axes]
        if op_type == "ReduceSum" or self.opset >= 18:
            return self.op(op_type, [x, self.ints(axes)], keepdims=kd)
        return self.op(op_type, [x], keepdims=kd, axes=axes)

    def unsqueeze(self, x: Any, axes) -> str:
        return self.op("Unsqueeze", [x, self.ints(axes)])

    def squeeze(self, x: Any, axes=None) -> str:
        return self.op("Squeeze", [x] + ([self.ints(axes)] if axes is not None else []))

    def shape_of(self, x: Any, start: int | None = None, end: int | None = None) -> str:
        kw = {}
        if start is not None:
            kw["start"] = start
        if end is not None:
            kw["end"] = end
        return self.op("Shape", [x], **kw)

    def dim(self, x: Any, axis: int) -> str:
        """Size of ``axis`` of ``x`` as a 1-element int64 tensor."""
        return self.op("Gather", [self.shape_of(x), self.ints([axis])], axis=0)

    def shape_tensor(self, dims) -> str:
        """A 1-D int64 shape from a list of ints and int Syms (scalars or 1-element)."""
        dims = list(dims)
        if not any(isinstance(d, Sym) for d in dims):
            return self.ints([int(d) for d in dims])
        parts = []
        static: list[int] = []
        for d in dims:
            if isinstance(d, Sym):
                if static:
                    parts.append(self.ints(static))
                    static = []
                piece = d.name
                if d.np_dtype != np.int64:
                    piece = self.cast(piece, np.int64)
                parts.append(self.op("Reshape", [piece, self.ints([1])]))
            else:
                static.append(int(d))
        if static:
            parts.append(self.ints(static))
        return self.op("Concat", parts, axis=0) if len(parts) > 1 else parts[0]
