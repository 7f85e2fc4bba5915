"""THE table binding Tensor methods and operators to ops (DESIGN.md §3: one line per method).

Out-of-place methods call the op with the tensor first; ``name_`` methods are the in-place
variants built by ``ops.inplace.make_inplace`` over the out-of-place op.
"""

from __future__ import annotations

from . import creation, creation_ext, ops  # (creation_ext: shape_ext)
from ._tensor_method_docs import METHOD_DOCS
from .ops import inplace
from .tensor import Tensor


def _r(fn):
    """Reflected operator: ``other OP self``."""
    return lambda self, other: fn(other, self)


def _softmax(name):
    def method(self, dim, dtype=None):
        from .nn import functional  # (nn loads lazily)

        return getattr(functional, name)(self, dim, dtype=dtype)

    method.__name__ = name
    return method


def _functional(name):
    """A method spelling of ``nn.functional.<name>`` (``x.hardshrink(0.5)``, ``x.prelu(w)``)."""

    def method(self, *args, **kwargs):
        from .nn import functional  # (nn loads lazily)

        return getattr(functional, name)(self, *args, **kwargs)

    method.__name__ = name
    return method


def _fill_random(draw):
    def method(self, *args, generator=None, **kwargs):
        inplace.check_inplace(self)
        src = draw(self, *args, generator=generator, **kwargs)
        self._data[...] = src._data
        self._version_counter[0] += 1
        return self

    return method


def _uniform(self, a=0.0, b=1.0, *, generator=None):
    return (
        creation.rand(self.shape, generator=generator, dtype=self.dtype, device=self.device)
        * (b - a)
        + a
    )


def _normal(self, mean=0.0, std=1.0, *, generator=None):
    return (
        creation.randn(self.shape, generator=generator, dtype=self.dtype, device=self.device) * std
        + mean
    )


def _bernoulli(self, p=0.5, *, generator=None):
    return creation.bernoulli(self, p, generator=generator)


def _random(self, low=0, high=None, *, generator=None):
    if high is None:
        low, high = 0, low if low else 2**24
    return creation.randint(
        low, high, self.shape, generator=generator, dtype=self.dtype, device=self.device
    )


def _max(self, dim=None, keepdim=False):
    return ops.max(self, dim, keepdim)


def _min(self, dim=None, keepdim=False):
    return ops.min(self, dim, keepdim)


METHODS = {
    # operators
    "__add__": ops.add,
    "__radd__": _r(ops.add),
    "__sub__": ops.sub,
    "__rsub__": _r(ops.sub),
    "__mul__": ops.mul,
    "__rmul__": _r(ops.mul),
    "__truediv__": ops.div,
    "__rtruediv__": _r(ops.div),
    "__floordiv__": ops.floor_divide,
    "__rfloordiv__": _r(ops.floor_divide),
    "__mod__": ops.remainder,
    "__rmod__": _r(ops.remainder),
    "__pow__": ops.pow,
    "__rpow__": _r(ops.pow),
    "__matmul__": ops.matmul,
    "__rmatmul__": _r(ops.matmul),
    "__neg__": ops.neg,
    "__pos__": lambda self: self,
    "__abs__": ops.abs,
    "__invert__": ops.bitwise_not,
    "__and__": ops.bitwise_and,
    "__or__": ops.bitwise_or,
    "__xor__": ops.bitwise_xor,
    "__rand__": _r(ops.bitwise_and),
    "__ror__": _r(ops.bitwise_or),
    "__rxor__": _r(ops.bitwise_xor),
    "__eq__": ops.eq,
    "__ne__": ops.ne,
    "__lt__": ops.lt,
    "__le__": ops.le,
    "__gt__": ops.gt,
    "__ge__": ops.ge,
    "__getitem__": ops.getitem,
    "__setitem__": ops.setitem,
    # elementwise math
    "add": ops.add,
    "sub": ops.sub,
    "subtract": ops.sub,
    "mul": ops.mul,
    "multiply": ops.mul,
    "div": ops.div,
    "divide": ops.div,
    "true_divide": ops.div,
    "floor_divide": ops.floor_divide,
    "remainder": ops.remainder,
    "pow": ops.pow,
    "neg": ops.neg,
    "negative": ops.neg,
    "abs": ops.abs,
    "exp": ops.exp,
    "log": ops.log,
    "log1p": ops.log1p,
    "expm1": ops.expm1,
    "sqrt": ops.sqrt,
    "rsqrt": ops.rsqrt,
    "sin": ops.sin,
    "cos": ops.cos,
    "tanh": ops.tanh,
    "sigmoid": ops.sigmoid,
    "relu": ops.relu,
    "clamp": ops.clamp,
    "clip": ops.clamp,
    "sign": ops.sign,
    "floor": ops.floor,
    "ceil": ops.ceil,
    "round": ops.round,
    "trunc": ops.trunc,
    "frac": ops.frac,
    "square": ops.square,
    "reciprocal": ops.reciprocal,
    "maximum": ops.maximum,
    "minimum": ops.minimum,
    "where": lambda self, cond, other: ops.where(cond, self, other),
    "lerp": ops.lerp,
    "clamp_min": lambda self, m: ops.clamp(self, min=m),
    "clamp_max": lambda self, m: ops.clamp(self, max=m),
    # comparisons and logic
    "eq": ops.eq,
    "ne": ops.ne,
    "lt": ops.lt,
    "le": ops.le,
    "gt": ops.gt,
    "ge": ops.ge,
    "equal": ops.equal,
    "isclose": ops.isclose,
    "allclose": ops.allclose,
    "logical_and": ops.logical_and,
    "logical_or": ops.logical_or,
    "logical_xor": ops.logical_xor,
    "logical_not": ops.logical_not,
    "isnan": ops.isnan,
    "isinf": ops.isinf,
    "isfinite": ops.isfinite,
    # reductions
    "sum": ops.sum,
    "mean": ops.mean,
    "prod": ops.prod,
    "max": _max,
    "min": _min,
    "amax": ops.amax,
    "amin": ops.amin,
    "argmax": ops.argmax,
    "argmin": ops.argmin,
    "var": ops.var,
    "std": ops.std,
    "norm": ops.norm,
    "logsumexp": ops.logsumexp,
    "softmax": _softmax("softmax"),
    "log_softmax": _softmax("log_softmax"),
    "cumsum": ops.cumsum,
    "cumprod": ops.cumprod,
    "all": ops.all,
    "any": ops.any,
    "count_nonzero": ops.count_nonzero,
    # shape
    "reshape": ops.reshape,
    "view": ops.view,
    "view_as": ops.view_as,
    "reshape_as": ops.reshape_as,
    "permute": ops.permute,
    "transpose": ops.transpose,
    "swapaxes": ops.transpose,
    "swapdims": ops.transpose,
    "t": ops.t,
    "movedim": ops.movedim,
    "moveaxis": ops.movedim,
    "squeeze": ops.squeeze,
    "unsqueeze": ops.unsqueeze,
    "flatten": ops.flatten,
    "unflatten": ops.unflatten,
    "expand": ops.expand,
    "expand_as": ops.expand_as,
    "broadcast_to": ops.broadcast_to,
    "repeat": ops.repeat,
    "tile": ops.tile,
    "split": ops.split,
    "chunk": ops.chunk,
    "tensor_split": ops.tensor_split,
    "unbind": ops.unbind,
    "flip": ops.flip,
    "fliplr": ops.fliplr,
    "flipud": ops.flipud,
    "roll": ops.roll,
    "tril": ops.tril,
    "triu": ops.triu,
    "narrow": ops.narrow,
    "contiguous": ops.contiguous,
    "clone": ops.clone,
    # indexing
    "gather": ops.gather,
    "scatter": ops.scatter,
    "scatter_add": ops.scatter_add,
    "index_select": ops.index_select,
    "index_add": ops.index_add,
    "masked_fill": ops.masked_fill,
    "masked_select": ops.masked_select,
    "take_along_dim": ops.take_along_dim,
    "nonzero": ops.nonzero,
    "argwhere": ops.argwhere,
    # linear algebra
    "matmul": ops.matmul,
    "mm": ops.mm,
    "bmm": ops.bmm,
    "mv": ops.mv,
    "dot": ops.dot,
    "outer": ops.outer,
    "ger": ops.outer,
    # <sorting>
    "sort": ops.sort,
    "argsort": ops.argsort,
    "msort": ops.msort,
    "topk": ops.topk,
    "kthvalue": ops.kthvalue,
    "median": ops.median,
    "nanmedian": ops.nanmedian,
    "mode": ops.mode,
    "unique": ops.unique,
    "unique_consecutive": ops.unique_consecutive,
    "bincount": ops.bincount,
    "histc": ops.histc,
    "histogram": ops.histogram,
    "cummax": ops.cummax,
    "cummin": ops.cummin,
    "logcumsumexp": ops.logcumsumexp,
    "nansum": ops.nansum,
    "nanmean": ops.nanmean,
    "quantile": ops.quantile,
    "nanquantile": ops.nanquantile,
    "aminmax": ops.aminmax,
    "diff": ops.diff,
    "cov": ops.cov,
    "corrcoef": ops.corrcoef,
    "dist": ops.dist,
    "renorm": ops.renorm,
    # </sorting>
    # <math>
    "lgamma": ops.lgamma,
    "digamma": ops.digamma,
    "polygamma": lambda self, n: ops.polygamma(n, self),
    "erf": ops.erf,
    "erfc": ops.erfc,
    "erfinv": ops.erfinv,
    "i0": ops.i0,
    "logit": ops.logit,
    "sinc": ops.sinc,
    "xlogy": ops.xlogy,
    "mvlgamma": ops.mvlgamma,
    "igamma": ops.igamma,
    "igammac": ops.igammac,
    "tan": ops.tan,
    "asin": ops.asin,
    "acos": ops.acos,
    "atan": ops.atan,
    "sinh": ops.sinh,
    "cosh": ops.cosh,
    "asinh": ops.asinh,
    "acosh": ops.acosh,
    "atanh": ops.atanh,
    "arcsin": ops.asin,
    "arccos": ops.acos,
    "arctan": ops.atan,
    "arcsinh": ops.asinh,
    "arccosh": ops.acosh,
    "arctanh": ops.atanh,
    "atan2": ops.atan2,
    "arctan2": ops.atan2,
    "exp2": ops.exp2,
    "log2": ops.log2,
    "log10": ops.log10,
    "logaddexp": ops.logaddexp,
    "logaddexp2": ops.logaddexp2,
    "hypot": ops.hypot,
    "copysign": ops.copysign,
    "nextafter": ops.nextafter,
    "ldexp": ops.ldexp,
    "frexp": ops.frexp,
    "fmod": ops.fmod,
    "fmax": ops.fmax,
    "fmin": ops.fmin,
    "float_power": ops.float_power,
    "float_power_": ops.math_extra.float_power_,
    "heaviside": ops.heaviside,
    "gcd": ops.gcd,
    "lcm": ops.lcm,
    "deg2rad": ops.deg2rad,
    "rad2deg": ops.rad2deg,
    "nan_to_num": ops.nan_to_num,
    "signbit": ops.signbit,
    "sgn": ops.sgn,
    "isneginf": ops.isneginf,
    "isposinf": ops.isposinf,
    "isreal": ops.isreal,
    "positive": ops.positive,
    "fix": ops.fix,
    "absolute": ops.abs,
    "addcmul": ops.addcmul,
    "addcdiv": ops.addcdiv,
    "bitwise_and": ops.bitwise_and,
    "bitwise_or": ops.bitwise_or,
    "bitwise_xor": ops.bitwise_xor,
    "bitwise_not": ops.bitwise_not,
    "bitwise_left_shift": ops.bitwise_left_shift,
    "bitwise_right_shift": ops.bitwise_right_shift,
    "__lshift__": ops.bitwise_left_shift,
    "__rshift__": ops.bitwise_right_shift,
    "__rlshift__": _r(ops.bitwise_left_shift),
    "__rrshift__": _r(ops.bitwise_right_shift),
    "__ilshift__": inplace.make_inplace(ops.bitwise_left_shift, "__ilshift__"),
    "__irshift__": inplace.make_inplace(ops.bitwise_right_shift, "__irshift__"),
    "__iand__": inplace.make_inplace(ops.bitwise_and, "__iand__"),
    "__ior__": inplace.make_inplace(ops.bitwise_or, "__ior__"),
    "__ixor__": inplace.make_inplace(ops.bitwise_xor, "__ixor__"),
    "greater": ops.gt,
    "greater_equal": ops.ge,
    "less": ops.lt,
    "less_equal": ops.le,
    "not_equal": ops.ne,
    # </math>
    # <linalg_ext>
    "det": ops.det,
    "logdet": ops.logdet,
    "slogdet": ops.slogdet,
    "inverse": ops.inverse,
    "pinverse": ops.pinverse,
    "svd": ops.svd,
    "qr": ops.qr,
    "cholesky": ops.cholesky,
    "cholesky_solve": ops.cholesky_solve,
    "cholesky_inverse": ops.cholesky_inverse,
    "lu_solve": ops.lu_solve,
    "triangular_solve": ops.triangular_solve,
    "geqrf": ops.geqrf,
    "orgqr": ops.orgqr,
    "ormqr": ops.ormqr,
    "matrix_power": ops.matrix_power,
    "matrix_exp": ops.matrix_exp,
    "cross": ops.cross,
    "kron": ops.kron,
    "inner": ops.inner,
    "vdot": ops.vdot,
    "addmv": ops.addmv,
    "addr": ops.addr,
    "addbmm": ops.addbmm,
    "addmm": ops.addmm,
    "baddbmm": ops.baddbmm,
    "trace": ops.trace,
    "adjoint": ops.adjoint,
    "lu": ops.lu,
    "lstsq": ops.lu_ops.tensor_lstsq,
    "eig": ops.lu_ops.tensor_eig,
    "conj": ops.conj,
    "conj_physical": ops.conj_physical,
    "resolve_conj": ops.resolve_conj,
    "resolve_neg": ops.resolve_neg,
    "is_conj": ops.is_conj,
    "is_neg": ops.is_neg,
    "angle": ops.angle,
    "real": ops.complex_ops.real_property,
    "imag": ops.complex_ops.imag_property,
    "mH": ops.complex_ops.mH_property,
    "H": ops.complex_ops.H_property,
    "solve": ops.lu_ops.tensor_solve,
    "stft": ops.stft,
    "istft": ops.istft,
    # </linalg_ext>
    # <shape_ext>
    "diag": ops.diag,
    "diag_embed": ops.diag_embed,
    "diagflat": ops.diagflat,
    "diagonal": ops.diagonal,
    "diagonal_scatter": ops.diagonal_scatter,
    "fill_diagonal_": ops.shape_ext_views.fill_diagonal_,
    "select": ops.select,
    "select_scatter": ops.select_scatter,
    "slice_scatter": ops.slice_scatter,
    "as_strided": ops.as_strided,
    "as_strided_": ops.as_strided_,
    "as_strided_scatter": ops.as_strided_scatter,
    "unfold": ops.shape_ext_views.unfold,
    "rot90": ops.rot90,
    "ravel": ops.ravel,
    "hsplit": ops.hsplit,
    "vsplit": ops.vsplit,
    "dsplit": ops.dsplit,
    "split_with_sizes": ops.split_with_sizes,
    "unsafe_chunk": ops.unsafe_chunk,
    "unsafe_split": ops.unsafe_split,
    "unsafe_split_with_sizes": ops.unsafe_split_with_sizes,
    "narrow_copy": ops.narrow_copy,
    "repeat_interleave": ops.repeat_interleave,
    "sum_to_size": ops.shape_ext.sum_to_size,
    "squeeze_": ops.shape_ext.squeeze_,
    "unsqueeze_": ops.shape_ext.unsqueeze_,
    "t_": ops.shape_ext.t_,
    "transpose_": ops.shape_ext.transpose_,
    "swapaxes_": ops.shape_ext.swapaxes_,
    "swapdims_": ops.shape_ext.swapdims_,
    "scatter_reduce": ops.scatter_reduce,
    "index_put": ops.index_put,
    "index_copy": ops.index_copy,
    "index_fill": ops.index_fill,
    "index_reduce": ops.index_reduce,
    "masked_scatter": ops.masked_scatter,
    "put": ops.put,
    "take": ops.take,
    "new_tensor": creation_ext.new_tensor,
    "new_empty": creation_ext.new_empty,
    "new_zeros": creation_ext.new_zeros,
    "new_ones": creation_ext.new_ones,
    "new_full": creation_ext.new_full,
    "new_empty_strided": creation_ext.new_empty_strided,
    "new": creation_ext.new,
    "resize_": creation_ext.resize_,
    "resize_as_": creation_ext.resize_as_,
    "resize": creation_ext.resize,
    "resize_as": creation_ext.resize_as,
    "apply_": creation_ext.apply_,
    "map_": creation_ext.map_,
    "exponential_": creation_ext.exponential_,
    "geometric_": creation_ext.geometric_,
    "cauchy_": creation_ext.cauchy_,
    "log_normal_": creation_ext.log_normal_,
    "bernoulli": creation.bernoulli,
    "multinomial": creation.multinomial,
    # </shape_ext>
    # <misc>
    # (dunders and protocol attributes: core/_tensor_protocol.py)
    **__import__("ember._tensor_protocol", fromlist=["METHODS"]).METHODS,
    "hardshrink": _functional("hardshrink"),
    "prelu": _functional("prelu"),
    # </misc>
    # in place
    "copy_": inplace.copy_,
    "zero_": inplace.zero_,
    "fill_": inplace.fill_,
    "uniform_": _fill_random(_uniform),
    "normal_": _fill_random(_normal),
    "bernoulli_": _fill_random(_bernoulli),
    "random_": _fill_random(_random),
}

# ``x.op_(...)`` and ``x op= y`` for every op whose result has the input's shape.
_INPLACE = [
    "add",
    "sub",
    "mul",
    "div",
    "pow",
    "neg",
    "abs",
    "exp",
    "log",
    "log1p",
    "expm1",
    "sqrt",
    "rsqrt",
    "sin",
    "cos",
    "tanh",
    "sigmoid",
    "relu",
    "clamp",
    "clip",
    "sign",
    "floor",
    "ceil",
    "round",
    "trunc",
    "frac",
    "square",
    "reciprocal",
    "remainder",
    "floor_divide",
    "lerp",
    "clamp_min",
    "clamp_max",
    "masked_fill",
    "index_add",
    "scatter",
    "scatter_add",
    "maximum",
    "minimum",
    "true_divide",
    "multiply",
    "subtract",
    "divide",
    # <sorting>
    "cumsum",
    "cumprod",
    "renorm",
    # </sorting>
    # <math>
    "lgamma",
    "digamma",
    "polygamma",
    "erf",
    "erfc",
    "erfinv",
    "i0",
    "logit",
    "sinc",
    "xlogy",
    "mvlgamma",
    "igamma",
    "igammac",
    "tan",
    "asin",
    "acos",
    "atan",
    "sinh",
    "cosh",
    "asinh",
    "acosh",
    "atanh",
    "arcsin",
    "arccos",
    "arctan",
    "arcsinh",
    "arccosh",
    "arctanh",
    "atan2",
    "arctan2",
    "exp2",
    "log2",
    "log10",
    "hypot",
    "copysign",
    "nextafter",
    "ldexp",
    "fmod",
    "heaviside",
    "gcd",
    "lcm",
    "deg2rad",
    "rad2deg",
    "nan_to_num",
    "sgn",
    "fix",
    "absolute",
    "negative",
    "addcmul",
    "addcdiv",
    "bitwise_and",
    "bitwise_or",
    "bitwise_xor",
    "bitwise_not",
    "bitwise_left_shift",
    "bitwise_right_shift",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "greater",
    "greater_equal",
    "less",
    "less_equal",
    "not_equal",
    "logical_and",
    "logical_or",
    "logical_xor",
    "logical_not",
    # </math>
    # <linalg_ext>
    "addmm",
    "baddbmm",
    "addbmm",
    "addmv",
    "addr",
    "conj_physical",
    # </linalg_ext>
    # <shape_ext>
    "tril",
    "triu",
    "scatter_reduce",
    "index_put",
    "index_copy",
    "index_fill",
    "index_reduce",
    "masked_scatter",
    "put",
    # </shape_ext>
    # <misc>
    # </misc>
]
for _name in _INPLACE:
    METHODS[_name + "_"] = inplace.make_inplace(METHODS[_name], _name + "_")
for _op, _name in [
    ("add", "__iadd__"),
    ("sub", "__isub__"),
    ("mul", "__imul__"),
    ("div", "__itruediv__"),
    ("floor_divide", "__ifloordiv__"),
    ("remainder", "__imod__"),
    ("pow", "__ipow__"),
]:
    METHODS[_name] = METHODS[_op + "_"]
METHODS["__imatmul__"] = ops.matmul

for _name, _fn in METHODS.items():
    if _name in METHOD_DOCS and not (getattr(_fn, "__doc__", None) or "").strip():
        _fn.__doc__ = METHOD_DOCS[_name]
    setattr(Tensor, _name, _fn)
Tensor.__hash__ = object.__hash__  # __eq__ is elementwise; hashing stays by identity
