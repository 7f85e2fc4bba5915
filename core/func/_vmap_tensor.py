"""Batched tensors for ``vmap``: a tensor that carries its batch dims in front.

A batched tensor is an ordinary :class:`~ember.Tensor` whose array holds the *physical* data:
one leading dim per vmap level it is batched over (ascending level order), then the dims of one
sample (its *logical* shape, which ``shape``/``dim``/``size`` report). Its class records the
levels (``_levels``): one slot-free subclass of Tensor per levels tuple, so a tensor moves
between its batched and plain views by ``__class__`` assignment. That keeps autograd identity
intact (leaves, ``grad_fn`` edges and version counters are the same object), which is what lets
``grad``, ``vjp`` and ``jacrev`` run unchanged under ``vmap``.

Every op reached with a batched argument goes through a *batching rule* (``_vmap_rules.py``
and its siblings) that rewrites the call into one call of the op on the physical arrays (for
example ``sum(x, dim=d)`` becomes ``sum(x_phys, dim=d + k)``). Rules are found
(``_vmap_dispatch.py``) through the methods of the batched classes and, while a vmap runs,
through ember's public namespaces (``ember``, ``ember.nn.functional``, ``ember.linalg``,
``ember.special``, ``ember.fft``) and Tensor's methods, which are patched for the duration. An
op reached any other way with a batched argument is stopped in ``Function.apply`` with an error
naming it (never a silent per-sample loop).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from ..tensor import Size, Tensor

__all__ = [
    "BatchedTensor",
    "levels_of",
    "is_batched",
    "batched_class",
    "wrap",
    "active_levels",
    "level_size",
    "unwrapped",
    "align",
    "lift",
    "match_levels",
    "rewrap",
    "grad",
]

# Active vmap levels, outermost first: (level id, batch size, randomness).
_STACK: list[tuple[int, int, str]] = []
_COUNTER = [0]
# Set while autograd's engine runs (see ``grad``): backward formulas compute on the physical
# arrays, so batched tensors reached there (saved inputs, cotangents) behave as plain ones.
_PHYS = [False]


class BatchedTensor(Tensor):
    """Base of the per-levels batched classes (see the module docstring)."""

    __slots__ = ()
    _levels: tuple[int, ...] = ()

    # ---- the logical view ----------------------------------------------------------------
    @property
    def shape(self) -> Size:
        return Size(self._data.shape[0 if _PHYS[0] else len(self._levels) :])

    def size(self, dim: int | None = None):
        shape = self.shape
        if dim is None:
            return shape
        n = max(len(shape), 1)
        if not -n <= dim < n:
            raise IndexError(
                f"Dimension out of range (expected to be in range of [{-n}, "
                f"{n - 1}], but got {dim})"
            )
        return shape[dim]

    def dim(self) -> int:
        return self._data.ndim - (0 if _PHYS[0] else len(self._levels))

    ndimension = dim

    @property
    def ndim(self) -> int:
        return self._data.ndim - (0 if _PHYS[0] else len(self._levels))

    def numel(self) -> int:
        return Size(self.shape).numel()

    nelement = numel

    def __len__(self) -> int:
        if self.dim() == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __iter__(self):
        return iter(self.unbind(0))

    def __repr__(self) -> str:
        sizes = [level_size(lv) for lv in self._levels]
        return (
            f"BatchedTensor(levels={self._levels}, batch_sizes={sizes}, "
            f"logical_shape={list(self.shape)}, physical={Tensor.__repr__(_plain(self))})"
        )

    __hash__ = Tensor.__hash__

    # ---- data-dependent Python control flow cannot be batched ------------------------------
    def _no_data(self, *args, **kwargs):
        raise RuntimeError(
            "vmap: It looks like you're attempting to use a Tensor in some data-dependent "
            "control flow (item(), tolist(), numpy(), bool() or a Python conversion of a batched "
            "tensor). We don't support that yet; please shout over at "
            "ember's issue tracker if you need it."
        )

    item = tolist = numpy = __bool__ = __float__ = __int__ = __index__ = _no_data


_CLASSES: dict[tuple[int, ...], type] = {}


def batched_class(levels: tuple[int, ...]) -> type:
    cls = _CLASSES.get(levels)
    if cls is None:
        cls = _CLASSES[levels] = type(
            "BatchedTensor",
            (BatchedTensor,),
            {"__slots__": (), "_levels": levels, "__module__": __name__},
        )
    return cls


def levels_of(x: Any) -> tuple[int, ...]:
    return getattr(type(x), "_levels", ()) if isinstance(x, Tensor) else ()


def is_batched(x: Any) -> bool:
    return isinstance(x, BatchedTensor) and bool(type(x)._levels)


def wrap(t: Any, levels: tuple[int, ...]) -> Any:
    """``t`` (a plain physical tensor, or a tuple/list/namedtuple of them) seen as batched over
    ``levels``."""
    if isinstance(t, Tensor):
        t.__class__ = batched_class(levels) if levels else Tensor
        return t
    if isinstance(t, tuple):
        items = [wrap(o, levels) for o in t]
        return type(t)(*items) if hasattr(t, "_fields") else type(t)(items)
    if isinstance(t, list):
        return [wrap(o, levels) for o in t]
    return t


def _plain(t: Tensor) -> Tensor:
    """A plain handle on ``t``'s physical data, for printing only."""
    p = Tensor._wrap(t._data)
    return p


def active_levels() -> tuple[int, ...]:
    return tuple(lv for lv, _, _ in _STACK)


def level_size(level: int) -> int:
    for lv, n, _ in _STACK:
        if lv == level:
            return n
    raise RuntimeError(
        f"vmap: a batched tensor of level {level} escaped its vmap (a tensor "
        "created inside vmap was kept and used after it returned)"
    )


def level_randomness(level: int) -> str:
    for lv, _, r in _STACK:
        if lv == level:
            return r
    return "error"


@contextlib.contextmanager
def unwrapped(*trees: Any):
    """Within the block every batched tensor among ``trees`` (nested lists/tuples/dicts) is
    plain (physical); yields ``{id(tensor): levels}``. Classes are restored on exit."""
    seen: dict[int, tuple[Tensor, type]] = {}

    def visit(a):
        if isinstance(a, BatchedTensor):
            if id(a) not in seen:
                seen[id(a)] = (a, type(a))
        elif isinstance(a, (list, tuple)):
            for b in a:
                visit(b)
        elif isinstance(a, dict):
            for b in a.values():
                visit(b)

    for t in trees:
        visit(t)
    levels = {k: cls._levels for k, (_, cls) in seen.items()}
    for t, _ in seen.values():
        t.__class__ = Tensor
    try:
        yield levels
    finally:
        for t, cls in seen.values():
            t.__class__ = cls


def merge_levels(*level_tuples: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(sorted(set().union(*level_tuples)))


def align(
    t: Tensor,
    levels: tuple[int, ...],
    target: tuple[int, ...],
    nd: int | None = None,
    expand: bool = False,
) -> Tensor:
    """Physical ``t`` (batched over ``levels``) with one dim per level of ``target`` (size 1
    where ``t`` lacks it, or the level's size with ``expand``), then its logical dims padded
    with leading ones to ``nd`` dims."""
    k = len(target)
    logical = t.ndim - len(levels)
    shape = []
    it = iter(t.shape[: len(levels)])
    for lv in target:
        shape.append(next(it) if lv in levels else 1)
    pad = 0 if nd is None else max(nd - logical, 0)
    new = tuple(shape) + (1,) * pad + tuple(t.shape[len(levels) :])
    if new != tuple(t.shape):
        t = t.reshape(new)
    if expand:
        full = tuple(level_size(lv) for lv in target)
        if tuple(t.shape[:k]) != full:
            t = t.expand(full + tuple(t.shape[k:]))
    return t


def lift(x: Tensor) -> Tensor:
    """``x`` batched over every active level (expanded where it is not): a transform's input
    under vmap must be per-sample, so that gradients come back per-sample."""
    if not _STACK or not isinstance(x, Tensor):
        return x
    target = active_levels()
    have = levels_of(x)
    if have == target:
        return x
    with unwrapped(x):
        out = align(x, have, target, expand=True)
        if out is x:
            out = x.view_as(x)
    return wrap(out, target)


def match_levels(c: Tensor, like: Tensor) -> Tensor:
    """Cotangent ``c`` batched as the output ``like`` (expanded over its missing levels)."""
    want = levels_of(like)
    have = levels_of(c)
    if not want or have == want or not isinstance(c, Tensor):
        return c
    if not have and c._data.shape == like._data.shape and c.shape != like.shape:
        return wrap(c.view_as(c), want)  # made by a *_like that saw the physical data
    target = merge_levels(want, have)
    with unwrapped(c):
        out = align(c, have, target, expand=True)
        if out is c:
            out = c.view_as(c)
    return wrap(out, target)


def rewrap(g: Any, like: Any) -> Any:
    """A gradient computed by the engine (plain, physical) for the batched input ``like``."""
    if not isinstance(like, BatchedTensor) or not isinstance(g, Tensor):
        return g
    if type(g) is type(like):
        return g
    if is_batched(g) and set(levels_of(like)) < set(levels_of(g)):
        return g  # batched over more levels than the input (cotangents vmapped over a vjp_fn)
    if g._data.shape == like._data.shape:
        return wrap(g, type(like)._levels)
    # zeros of the logical shape (an unused input): broadcast over the batch
    return wrap(g.expand(like._data.shape), type(like)._levels)


def namespace_op(name: str) -> Callable:
    """``ember.<name>`` looked up at call time, so that it is the batching wrapper while a vmap
    runs (for transforms that call ops on tensors that may be batched)."""

    def op(*args, **kwargs):
        import ember

        return getattr(ember, name)(*args, **kwargs)

    op.__name__ = name
    return op


def grad(outputs: list, inputs: list, grad_outputs: list, **kwargs) -> list:
    """``autograd.grad`` for transforms that may run under vmap: the engine runs on the
    physical arrays, cotangents are batched as their outputs, and each gradient comes back
    batched as its input."""
    from ..autograd import grad as _autograd_grad

    if not _STACK:
        return _autograd_grad(outputs, inputs, grad_outputs, **kwargs)
    extra = _extra_levels(outputs, inputs, grad_outputs)
    if extra:
        return _grad_over_extra(extra, outputs, inputs, grad_outputs, kwargs)
    grad_outputs = [match_levels(c, o) for o, c in zip(outputs, grad_outputs)]
    _PHYS[0] = True
    try:
        res = _autograd_grad(outputs, inputs, grad_outputs, **kwargs)
    finally:
        _PHYS[0] = False
    return [None if g is None else rewrap(g, x) for g, x in zip(res, inputs)]


def grad_in_vmap(outputs: list, inputs: list, grad_outputs: list | None, kwargs) -> tuple | None:
    """``ember.autograd.grad`` called inside a vmap with batched tensors (the vmap recipe's
    ``vmap(lambda v: autograd.grad(y, x, v))(eye)``, a graph recorded outside the vmap): the
    vmap-aware :func:`grad`. ``None`` (the plain engine) unless only cotangents are batched:
    a graph with batched outputs or inputs was recorded inside the vmap, where the engine's
    sums over the batch would not be per-sample gradients (torch refuses those too), and
    :func:`grad` itself calls the engine on the physical arrays."""
    if _PHYS[0] or not _STACK:
        return None
    cots = list(grad_outputs) if grad_outputs else []
    graph = list(outputs) + list(inputs)
    if any(is_batched(t) for t in graph) or not any(is_batched(c) for c in cots):
        return None
    if len(cots) != len(outputs) or any(c is None for c in cots):
        return None  # the engine's own error about the missing grad_outputs
    return tuple(grad(list(outputs), list(inputs), cots, **kwargs))


def _extra_levels(outputs: list, inputs: list, grad_outputs: list) -> tuple[int, ...]:
    """Levels that batch some cotangent but no output or input: the graph was recorded outside
    those vmaps (``vjp_fn = vjp(f, x)[1]`` then ``vmap(vjp_fn)(basis)``), so its backward
    formulas cannot carry them on the physical arrays."""
    have = merge_levels(*(levels_of(c) for c in grad_outputs))
    graph = set(merge_levels(*(levels_of(t) for t in list(outputs) + list(inputs))))
    return tuple(lv for lv in have if lv not in graph)


def _grad_over_extra(extra, outputs, inputs, grad_outputs, kwargs) -> list:
    """:func:`grad` with cotangents batched over ``extra`` levels the graph lacks: one backward
    pass per index of those levels (PyTorch replays its backward formulas under vmap; ember's
    run on arrays, so the extra dims are taken one slice at a time, as ``is_grads_batched``
    does), the results stacked back as batched over ``extra`` plus their own levels."""
    import itertools

    import ember

    sizes = [level_size(lv) for lv in extra]
    combos = list(itertools.product(*(range(n) for n in sizes)))
    retain = kwargs.get("retain_graph")
    if retain is None:
        retain = kwargs.get("create_graph", False)
    per_combo = []
    for k, idx in enumerate(combos):
        pick = dict(zip(extra, idx))
        cots = []
        for c in grad_outputs:
            lv = levels_of(c)
            if not any(v in pick for v in lv):
                cots.append(c)
                continue
            with unwrapped(c):
                key = tuple(pick[v] if v in pick else slice(None) for v in lv)
                piece = c[key]
            cots.append(wrap(piece, tuple(v for v in lv if v not in pick)))
        kw = dict(kwargs, retain_graph=True if k < len(combos) - 1 else retain)
        per_combo.append(grad(outputs, inputs, cots, **kw))
    res = []
    for j in range(len(inputs)):
        gs = [r[j] for r in per_combo]
        if any(g is None for g in gs):
            res.append(None)
            continue
        levs = [levels_of(g) for g in gs]
        own = merge_levels(*levs)
        with unwrapped(*gs):
            phys = [g if lv == own else align(g, lv, own, expand=True) for g, lv in zip(gs, levs)]
            out = ember.stack(phys).reshape(tuple(sizes) + tuple(phys[0].shape))
        # physical dims: extra levels, then own levels, then the sample; sort the levels
        target = merge_levels(extra, own)
        order = [(extra + own).index(lv) for lv in target]
        rest = list(range(len(target), out.dim()))
        res.append(wrap(out.permute(order + rest), target))
    return res
