"""The Tensor: an array (numpy or cupy) plus autograd state.

Math methods and operators are bound from the one table in ``core/_tensor_methods.py``; this
file holds what is intrinsic to a tensor: attributes, autograd entry points, conversions.
"""

from __future__ import annotations

import warnings

import numpy as np

from .autograd import function as _function
from .backend.device import CPU, as_device, device_of
from .backend.dtype import from_numpy_dtype, to_dtype
from .backend.meta import MetaArray

# torch's words: reading ``.grad`` of a non-leaf that does not retain it is almost always a
# mistake (the leaf was meant), so it warns
_NON_LEAF_GRAD = (
    "The .grad attribute of a Tensor that is not a leaf Tensor is being accessed. Its .grad "
    "attribute won't be populated during autograd.backward(). If you indeed want the .grad "
    "field to be populated for a non-leaf Tensor, use .retain_grad() on the non-leaf Tensor. "
    "If you access the non-leaf Tensor by mistake, make sure you access the leaf Tensor "
    "instead."
)


class Size(tuple):
    """``tensor.shape``: a tuple with PyTorch's ``numel()``."""

    def numel(self) -> int:
        n = 1
        for s in self:
            n *= s
        return n

    def __repr__(self) -> str:
        return f"ember.Size([{', '.join(str(s) for s in self)}])"

    # slicing, concatenation and repetition stay Sizes, as in torch
    def __getitem__(self, i):
        r = tuple.__getitem__(self, i)
        return Size(r) if type(i) is slice else r

    def __add__(self, other):
        return Size(tuple.__add__(self, tuple(other)))

    def __radd__(self, other):
        return Size(tuple(other) + tuple(self))

    def __mul__(self, n):
        return Size(tuple.__mul__(self, n))

    __rmul__ = __mul__


_new = object.__new__


class Tensor:
    """A multi-dimensional array with autograd, PyTorch's ``torch.Tensor``."""

    # NumPy defers to a tensor's reflected operators (np.float32(2) * t is a tensor)
    __array_priority__ = 1000

    # a dict: the public slots' values are their docstrings (help(), the API reference)
    __slots__ = {
        "_data": "",
        "requires_grad": "Whether autograd records operations on this tensor.",
        "_grad": "",
        "grad_fn": "The autograd node that produced this tensor (``None`` for a leaf).",
        "_output_nr": "",
        "_version_counter": "",
        "_base": "",
        "_hooks": "",
        "_post_acc_hooks": "",
        "__weakref__": "",
        # as torch's, a tensor takes arbitrary attributes (transformers marks buffers with
        # ``_is_hf_initialized``); the dict is only allocated on the first such assignment
        "__dict__": "",
    }

    def __new__(cls, *args, device=None, requires_grad: bool = False):
        # torch.Tensor's legacy constructor, and what a subclass's ``super().__new__(cls, ...)``
        # reaches (core/_tensor_subclass.py); ops and ember.tensor build with Tensor._wrap
        return _legacy_new(cls, args, device, requires_grad)

    # no __init__: as torch.Tensor's, it is object.__init__, which ignores the constructor's
    # arguments once __new__ has built the tensor (a subclass's super().__init__() is fine)

    def __init_subclass__(cls, **kwargs):
        # a user's subclass: methods and operators dispatch to its __torch_function__
        super().__init_subclass__(**kwargs)
        from .overrides import _setup_subclass

        _setup_subclass(cls)

    @staticmethod
    def _wrap(data) -> Tensor:
        """Wrap an array without any checks (the hot path)."""
        t = _new(Tensor)
        t._data = data
        t.requires_grad = False
        t._grad = None
        t.grad_fn = None
        t._output_nr = 0
        t._version_counter = [0]
        t._base = None
        t._hooks = None
        t._post_acc_hooks = None
        return t

    # ---- attributes --------------------------------------------------------------------
    @property
    def grad(self) -> Tensor | None:
        """The accumulated gradient of a leaf after ``backward()`` (``None`` before)."""
        g = self._grad
        if g is None and self.grad_fn is not None and not self.retains_grad:
            warnings.warn(_NON_LEAF_GRAD, UserWarning, stacklevel=2)
        return g

    @grad.setter
    def grad(self, value: Tensor | None) -> None:
        if value is not None:
            if not isinstance(value, Tensor):
                raise TypeError(
                    "assigned grad expected to be a Tensor or None but got grad of type "
                    f"{type(value).__name__}"
                )
            if value._data.shape != self._data.shape and type(self._data) is type(value._data):
                raise RuntimeError(
                    f"attempting to assign a gradient of size '{list(value._data.shape)}' to a "
                    f"tensor of size '{list(self._data.shape)}'. Please ensure that the "
                    "gradient and the tensor are the same size"
                )
        self._grad = value

    @property
    def shape(self) -> Size:
        """The size of each dimension, as an :class:`ember.Size`."""
        return Size(self._data.shape)

    def size(self, dim: int | None = None):
        """The shape (an :class:`ember.Size`), or the size of dimension ``dim``."""
        if dim is None:
            return Size(self._data.shape)
        return self._data.shape[_wrap_dim(dim, self._data.ndim)]

    def dim(self) -> int:
        """The number of dimensions (``ndimension()`` is the same)."""
        return self._data.ndim

    ndimension = dim

    @property
    def ndim(self) -> int:
        """The number of dimensions."""
        return self._data.ndim

    def numel(self) -> int:
        """The number of elements (``nelement()`` is the same)."""
        return int(self._data.size)

    nelement = numel

    @property
    def dtype(self):
        """The element type, an :class:`ember.dtype`."""
        return from_numpy_dtype(self._data.dtype)

    @property
    def device(self):
        """Where the data lives: ``cpu`` (NumPy) or ``cuda:N`` (CuPy)."""
        return CPU if type(self._data) is np.ndarray else device_of(self._data)

    @property
    def is_cuda(self) -> bool:
        """Whether the data is on a CUDA device."""
        return type(self._data) is not np.ndarray and device_of(self._data).type == "cuda"

    @property
    def is_meta(self) -> bool:
        """Whether this is a meta tensor: a shape and a dtype with no data."""
        return type(self._data) is MetaArray

    @property
    def is_leaf(self) -> bool:
        """Whether no recorded operation produced this tensor (``backward()`` fills its
        ``.grad``)."""
        return self.grad_fn is None

    @property
    def _version(self) -> int:
        return self._version_counter[0]

    def element_size(self) -> int:
        """The size of one element in bytes."""
        return self._data.itemsize

    @property
    def itemsize(self) -> int:
        """The size of one element in bytes."""
        return self._data.itemsize

    @property
    def nbytes(self) -> int:
        """The size of the elements in bytes (``numel() * element_size()``)."""
        return int(self._data.nbytes)

    def is_floating_point(self) -> bool:
        """Whether the dtype is a floating-point type (float16/bfloat16/float32/float64, float8)."""
        return self._data.dtype.kind == "f" or self._data.dtype.kind == "V"

    def is_complex(self) -> bool:
        """Whether the dtype is complex."""
        return self._data.dtype.kind == "c"

    def is_contiguous(self, memory_format=None) -> bool:
        """Whether the elements are laid out row-major without gaps (C order), or, for
        ``memory_format=channels_last`` (``channels_last_3d``), NHWC (NDHWC) as torch's."""
        if memory_format is None:
            return bool(self._data.flags.c_contiguous)
        from .ops.convert import _channels_last_rank, is_channels_last

        rank = _channels_last_rank(memory_format)
        return is_channels_last(self, rank) if rank else bool(self._data.flags.c_contiguous)

    def stride(self, dim: int | None = None):
        """The step in elements between neighbours of each dimension, or of dimension ``dim``."""
        d = self._data
        if type(d) is MetaArray:  # no memory behind it: the contiguous strides, as torch's meta
            st, step = [], 1
            for n in reversed(d.shape):
                st.append(step)
                step *= max(n, 1)
            st = tuple(reversed(st))
        else:
            st = tuple(s // d.itemsize for s in d.strides)
        return st if dim is None else st[_wrap_dim(dim, d.ndim)]

    def data_ptr(self) -> int:
        """The address of the first element (host or device memory)."""
        d = self._data
        if type(d) is MetaArray:
            return 0  # no storage (torch: 0 on meta)
        return d.ctypes.data if type(d) is np.ndarray else d.data.ptr

    @property
    def T(self) -> Tensor:
        """The tensor with its dimensions reversed (a view)."""
        from .ops.shape import permute

        return permute(self, tuple(range(self._data.ndim - 1, -1, -1)))

    @property
    def mT(self) -> Tensor:
        """The tensor with its last two dimensions swapped (a view): a batch of transposed
        matrices."""
        from .ops.shape import transpose

        return transpose(self, -2, -1)

    @property
    def data(self) -> Tensor:
        """A tensor sharing storage, detached from the graph."""
        t = self.detach()
        # torch: unlike detach(), ``.data`` has its own version counter, so writes through it
        # escape autograd's in-place check (``p.data.add_(...)`` after a forward that saved p)
        t._version_counter = [0]
        return t

    @data.setter
    def data(self, value: Tensor) -> None:
        self._data = value._data

    # ---- autograd ----------------------------------------------------------------------
    def backward(
        self,
        gradient=None,
        retain_graph: bool | None = None,
        create_graph: bool = False,
        inputs=None,
    ) -> None:
        """Compute gradients of this tensor w.r.t. graph leaves (accumulated into ``.grad``)."""
        # (a module attribute: a function-level ``from .autograd import`` cost ~1 us a call)
        _function._autograd.backward(self, gradient, retain_graph, create_graph, inputs=inputs)

    def register_hook(self, hook):
        """Run ``hook(grad)`` when this tensor's gradient is computed; it may return a new one."""
        if not self.requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
        if self.grad_fn is not None:
            return self.grad_fn.register_prehook(hook, self._output_nr)
        if self._hooks is None:
            self._hooks = []
        self._hooks.append(hook)
        return _function._RemovableHandle(self._hooks, hook)

    def register_post_accumulate_grad_hook(self, hook):
        """Run ``hook(tensor)`` after a leaf's ``.grad`` has been accumulated."""
        if self.grad_fn is not None:
            raise RuntimeError(
                "post accumulate grad hooks cannot be registered on non-leaf tensors"
            )
        if self._post_acc_hooks is None:
            self._post_acc_hooks = []
        self._post_acc_hooks.append(hook)
        return _function._RemovableHandle(self._post_acc_hooks, hook)

    def retain_grad(self) -> None:
        """Keep ``.grad`` for a non-leaf tensor after backward."""
        if not self.requires_grad:
            raise RuntimeError("can't retain_grad on Tensor that has requires_grad=False")
        if self.grad_fn is None or self.retains_grad:
            return
        import weakref

        ref = weakref.ref(self)

        def _retain(g):
            t = ref()
            if t is not None:
                if t.grad is None:
                    t.grad = g.detach() if g.requires_grad else Tensor._wrap(g._data.copy())
                else:
                    t.grad = t.grad + g
            return None

        _retain._ember_retain = True
        self.grad_fn.register_prehook(_retain, self._output_nr)

    @property
    def retains_grad(self) -> bool:
        """Whether :meth:`retain_grad` was called on this non-leaf tensor."""
        fn = self.grad_fn
        if fn is None or fn._pre_hooks is None:
            return False
        hooks = fn._pre_hooks.get(self._output_nr, ())
        return any(getattr(h, "_ember_retain", False) for h in hooks)

    def detach(self) -> Tensor:
        """A tensor sharing this one's data, outside the autograd graph."""
        t = Tensor._wrap(self._data)
        t._version_counter = self._version_counter
        # not an autograd view (torch: ``x.detach()._base is None``): an in-place write of a
        # grad-requiring value into ``w.data`` must not pull ``w`` into the graph (ultralytics'
        # DFL writes ``conv.weight.data[:] = nn.Parameter(...)`` into a frozen weight)
        t._base = None
        return t

    def detach_(self) -> Tensor:
        """Detach this tensor from the graph in place (it becomes a leaf that does not require
        grad)."""
        self.grad_fn = None
        self.requires_grad = False
        return self

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        """Set ``requires_grad`` in place (floating-point and complex leaves only); returns
        ``self``."""
        if requires_grad and not (self.is_floating_point() or self.is_complex()):
            raise RuntimeError("only Tensors of floating point dtype can require gradients")
        if not requires_grad and self.grad_fn is not None:
            raise RuntimeError(
                "you can only change requires_grad flags of leaf variables. If you want to use a "
                "computed variable in a subgraph that doesn't require differentiation use "
                "var_no_grad = var.detach()."
            )
        self.requires_grad = requires_grad
        return self

    __hash__ = object.__hash__


def _rebuild(data, requires_grad, dev):
    t = Tensor._wrap(data)
    if dev != "cpu":
        t = t.to(dev)
    t.requires_grad = requires_grad
    return t


def _wrap_dim(dim: int, ndim: int) -> int:
    n = max(ndim, 1)
    if not -n <= dim < n:
        raise IndexError(
            f"Dimension out of range (expected to be in range of [{-n}, {n - 1}], but got {dim})"
        )
    return dim + n if dim < 0 else dim


def _parse_to(args, kwargs):
    dev = kwargs.pop("device", None)
    dt = kwargs.pop("dtype", None)
    copy = kwargs.pop("copy", False)
    kwargs.pop("non_blocking", None)
    kwargs.pop("memory_format", None)
    if kwargs:
        raise TypeError(f"to() got unexpected keyword arguments {sorted(kwargs)}")
    for a in args:
        if isinstance(a, Tensor):
            dev, dt = a.device, a.dtype
        elif isinstance(a, bool):
            continue  # non_blocking / copy given positionally
        elif a is None:
            continue
        else:
            try:
                dt = to_dtype(a)
            except TypeError:
                dev = a
    return (None if dev is None else as_device(dev)), (None if dt is None else to_dtype(dt)), copy


def is_tensor(obj) -> bool:
    """Whether ``obj`` is an ember :class:`Tensor` (or a subclass, such as ``nn.Parameter``)."""
    return isinstance(obj, Tensor)


_function.Tensor = Tensor
_function._wrap = Tensor._wrap


# Conversions and the Python protocol (core/_tensor_convert.py), copied into the class here so
# that Tensor is complete once this module is; named and documented as if defined above.
from ._tensor_convert import _TensorConversions  # noqa: E402

for _name, _fn in vars(_TensorConversions).items():
    if callable(_fn):
        _fn.__qualname__ = f"Tensor.{_name}"
        setattr(Tensor, _name, _fn)
del _name, _fn

# Subclassing (core/_tensor_subclass.py): ``Tensor._make_subclass`` and ``Tensor.as_subclass``.
from . import _tensor_subclass  # noqa: E402

_legacy_new = _tensor_subclass.legacy_new

Tensor._make_subclass = staticmethod(_tensor_subclass._make_subclass)
Tensor._make_wrapper_subclass = staticmethod(_tensor_subclass._make_wrapper_subclass)
Tensor.as_subclass = _tensor_subclass.as_subclass
Tensor.as_subclass.__qualname__ = "Tensor.as_subclass"
