"""``Dim``: named dynamic dimensions, and the input guards an ExportedProgram checks."""

from __future__ import annotations

import inspect
import sys
from typing import Any

__all__ = ["Dim", "ShapesCollection", "normalize_dynamic_shapes", "InputGuards"]

_INF = sys.maxsize


class _DimHint:
    """``Dim.AUTO`` / ``Dim.DYNAMIC`` / ``Dim.STATIC`` markers (torch.export.Dim's hints)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __repr__(self) -> str:
        return f"Dim.{self.kind}"


class Dim:
    """A named dynamic dimension with an inclusive range: ``Dim("batch", min=1, max=64)``.

    The same ``Dim`` object given for two dimensions declares them equal.
    """

    AUTO = _DimHint("AUTO")
    DYNAMIC = _DimHint("DYNAMIC")
    STATIC = _DimHint("STATIC")

    def __init__(self, name: str, *, min: int | None = None, max: int | None = None) -> None:
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"Dim: name must be a Python identifier, got {name!r}")
        lo = 0 if min is None else min
        hi = _INF if max is None else max
        if not (isinstance(lo, int) and isinstance(hi, int)) or lo < 0 or hi < lo:
            raise ValueError(f"Dim {name!r}: need 0 <= min <= max, got min={min}, max={max}")
        self.__name__ = name
        self.min = lo
        self.max = hi

    def __repr__(self) -> str:
        hi = "inf" if self.max == _INF else self.max
        return f"Dim({self.__name__!r}, min={self.min}, max={hi})"

    def to_json(self) -> dict:
        return {
            "name": self.__name__,
            "min": self.min,
            "max": None if self.max == _INF else self.max,
        }

    # derived dims (torch.export's ``dx + 1``, ``2 * dx``): an affine function of one Dim
    def _affine(self, mul: int, add: int) -> _DerivedDim:
        if not isinstance(mul, int) or not isinstance(add, int) or mul < 1:
            raise TypeError(
                f"a derived Dim is a * {self.__name__} + b with ints a >= 1 and b; got "
                f"a={mul!r}, b={add!r}"
            )
        return _DerivedDim(self, mul, add)

    def __add__(self, other: int) -> _DerivedDim:
        return self._affine(1, other)

    __radd__ = __add__

    def __sub__(self, other: int) -> _DerivedDim:
        return self._affine(1, -other if isinstance(other, int) else other)

    def __mul__(self, other: int) -> _DerivedDim:
        return self._affine(other, 0)

    __rmul__ = __mul__


class _DerivedDim(Dim):
    """``mul * root + add`` for a root :class:`Dim` (``Dim("dx") + 1``): its size follows the
    root's, so the guards check that one root value explains every dim derived from it."""

    def __init__(self, root: Dim, mul: int, add: int) -> None:
        if isinstance(root, _DerivedDim):  # (2 * dx) + 1: compose into one affine map
            root, mul, add = root.root, root.mul * mul, root.add * mul + add
        self.root, self.mul, self.add = root, mul, add
        self.__name__ = (f"{mul} * " if mul != 1 else "") + root.__name__
        if add:
            self.__name__ += f" {'+' if add > 0 else '-'} {abs(add)}"
        self.min = mul * root.min + add
        self.max = _INF if root.max == _INF else mul * root.max + add
        if self.min < 0:
            raise ValueError(
                f"derived Dim {self.__name__!r} can be negative: {root!r} needs min >= "
                f"{-(add // mul)}"
            )

    def __repr__(self) -> str:
        return self.__name__

    def _affine(self, mul: int, add: int) -> _DerivedDim:
        return _DerivedDim(self, mul, add)

    def to_json(self) -> dict:
        return {**super().to_json(), "root": self.root.to_json(), "mul": self.mul, "add": self.add}


class ShapesCollection(dict):
    """torch.export.ShapesCollection's role: ``dynamic_shapes`` keyed by input name."""


def normalize_dynamic_shapes(
    fn, args: tuple, kwargs: dict, dynamic_shapes: Any
) -> dict[str, dict[int, Dim]]:
    """``fn`` is a Module's unbound ``forward``. ``dynamic_shapes`` (dict by argument name,
    or tuple/list in argument order) ->
    ``{input name: {dim index: Dim}}``; checks the example inputs fit every range."""
    from ember import Tensor

    if dynamic_shapes is None:
        return {}
    sig = inspect.signature(fn)
    params = list(sig.parameters.values())[1:]  # fn is the unbound forward: drop self
    try:
        bound = inspect.Signature(params).bind(*args, **kwargs).arguments
    except TypeError as e:
        raise TypeError(f"example inputs do not match forward's signature: {e}") from None
    if isinstance(dynamic_shapes, (tuple, list)):
        names = list(bound)
        if len(dynamic_shapes) != len(names):
            raise ValueError(
                f"dynamic_shapes has {len(dynamic_shapes)} entries but the model "
                f"was given {len(names)} inputs ({', '.join(names)})"
            )
        dynamic_shapes = dict(zip(names, dynamic_shapes))
    if not isinstance(dynamic_shapes, dict):
        raise TypeError(
            "dynamic_shapes must be a dict keyed by input name, or a tuple/list in "
            f"input order, got {type(dynamic_shapes).__name__}"
        )
    out: dict[str, dict[int, Dim]] = {}
    auto = 0
    for name, spec in dynamic_shapes.items():
        if name not in bound:
            raise ValueError(
                f"dynamic_shapes names {name!r}, which is not an input of the "
                f"model (inputs: {', '.join(bound)})"
            )
        if spec is None:
            continue
        value = bound[name]
        if not isinstance(value, Tensor):
            raise ValueError(f"dynamic_shapes[{name!r}]: input {name!r} is not a Tensor")
        if isinstance(spec, (tuple, list)):
            spec = dict(enumerate(spec))
        if not isinstance(spec, dict):
            raise TypeError(
                f"dynamic_shapes[{name!r}] must map dim index -> Dim, got {type(spec).__name__}"
            )
        dims: dict[int, Dim] = {}
        for i, d in spec.items():
            if d is None or d is Dim.STATIC:
                continue
            if not isinstance(i, int) or not -value.ndim <= i < value.ndim:
                raise ValueError(
                    f"dynamic_shapes[{name!r}]: dim {i!r} is out of range for a "
                    f"{value.ndim}-d input"
                )
            if isinstance(d, _DimHint):  # AUTO / DYNAMIC: an unnamed, unbounded dim
                d = Dim(f"_{name}_dim{i % value.ndim}_{auto}")
                auto += 1
            if not isinstance(d, Dim):
                raise TypeError(f"dynamic_shapes[{name!r}][{i}] must be a Dim, got {d!r}")
            size = value.shape[i]
            if not d.min <= size <= d.max:
                raise ValueError(
                    f"example input {name!r} has size {size} at dim {i}, outside "
                    f"the range [{d.min}, {d.max}] of {d!r}"
                )
            dims[i % value.ndim] = d
        if dims:
            out[name] = dims
    return out


class InputGuards:
    """The shape facts an exported program was captured under, checked on every call."""

    def __init__(self, inputs: list[dict]) -> None:
        # one record per user input: {"name", "shape" | None, "dims": {i: Dim json}, "dtype"}
        self.inputs = inputs

    @classmethod
    def build(
        cls, names: list[str], values: list[Any], dims: dict[str, dict[int, Dim]]
    ) -> InputGuards:
        from ember import Tensor

        recs = []
        for n, v in zip(names, values):
            shape = list(v.shape) if isinstance(v, Tensor) else None
            rec = {
                "name": n,
                "shape": shape,
                "dims": {str(i): d.to_json() for i, d in dims.get(n, {}).items()},
            }
            if isinstance(v, Tensor):  # what a caller (ember serve) should convert JSON to
                rec["dtype"] = str(v.dtype).removeprefix("ember.")
            recs.append(rec)
        return cls(recs)

    def to_json(self) -> list[dict]:
        return self.inputs

    def check(self, values: list[Any]) -> None:
        """Raise AssertionError naming the input and dim that breaks a guard."""
        from ember import Tensor

        if len(values) != len(self.inputs):
            raise TypeError(
                f"the exported program takes {len(self.inputs)} inputs "
                f"({', '.join(r['name'] for r in self.inputs)}), got {len(values)}"
            )
        seen: dict[str, tuple[str, int, int]] = {}
        for rec, v in zip(self.inputs, values):
            name, shape = rec["name"], rec["shape"]
            if shape is None:
                continue
            if not isinstance(v, Tensor):
                raise TypeError(f"input {name!r} must be a Tensor, got {type(v).__name__}")
            if v.ndim != len(shape):
                raise AssertionError(
                    f"Guard failed: {name}.dim() == {len(shape)} (input "
                    f"{name!r} was exported as {len(shape)}-d, got "
                    f"{v.ndim}-d)"
                )
            for i, want in enumerate(shape):
                got = v.shape[i]
                d = rec["dims"].get(str(i))
                if d is None:
                    if got != want:
                        raise AssertionError(
                            f"Guard failed: {name}.size()[{i}] == {want} (dim {i} of input "
                            f"{name!r} is static; got {got}. Mark it dynamic with a Dim in "
                            "dynamic_shapes to allow other sizes)"
                        )
                    continue
                lo, hi = d["min"], d["max"]
                if got < lo or (hi is not None and got > hi):
                    rng = f"[{lo}, {'inf' if hi is None else hi}]"
                    raise AssertionError(
                        f"Guard failed: {name}.size()[{i}] in {rng} (dim {i} of input "
                        f"{name!r} is Dim {d['name']!r} with range {rng}; got {got})"
                    )
                # every dim of one root Dim (itself or derived, a * root + b) must agree on
                # the root's value
                root, mul, add = d.get("root", d), d.get("mul", 1), d.get("add", 0)
                value, rest = divmod(got - add, mul)
                if rest:
                    raise AssertionError(
                        f"Guard failed: {name}.size()[{i}] == {d['name']} (dim {i} of input "
                        f"{name!r}; got {got}, which is not {d['name']} for an integer "
                        f"{root['name']})"
                    )
                prev = seen.setdefault(root["name"], (name, i, value, d["name"]))
                if prev[2] != value and prev[3] == d["name"]:  # one Dim at both places
                    raise AssertionError(
                        f"Guard failed: {name}.size()[{i}] == {prev[0]}.size()[{prev[1]}] "
                        f"(both are Dim {d['name']!r}; got {got} and {prev[2]})"
                    )
                if prev[2] != value:
                    raise AssertionError(
                        f"Guard failed: {name}.size()[{i}] == {d['name']} (dim {i} of input "
                        f"{name!r} is {d['name']!r} and dim {prev[1]} of {prev[0]!r} is "
                        f"{prev[3]!r}: they give {root['name']} = {value} and {prev[2]})"
                    )
