"""``ember.utils.flop_counter``: count the FLOPs of the matmuls, einsums, convolutions and
attention an ember program runs (PyTorch's ``torch.utils.flop_counter.FlopCounterMode``).

While a counter is active, ember's op entry point (``Function.apply``) and the engine's
per-node backward call tell it about every op through the profiler's observer hooks
(``ember.profiler._record.add_observer``); with no counter active ops pay nothing. Each op is
counted with PyTorch's formula under the name of the aten op PyTorch would dispatch
(``"aten.mm"``, ``"aten.addmm"``, ``"aten.bmm"``, ``"aten.convolution"``, ...). A backward node
counts the products its gradients need (``needs_input_grad``), as PyTorch's backward ops do.

Differences from PyTorch, by design: scaled dot-product attention is counted with PyTorch's
attention formula on every device (PyTorch on CPU runs a kernel its counter has no formula
for, so it reports 0 there); backward FLOPs are credited to the modules whose forward created
them (PyTorch's backward module tracking is approximate).
"""

from __future__ import annotations

import weakref
from collections import defaultdict
from math import prod

from ..profiler import _record
from .module_tracker import ModuleTracker

__all__ = ["FlopCounterMode", "register_flop_formula", "get_suffix_str"]

MM, ADDMM, BMM = "aten.mm", "aten.addmm", "aten.bmm"
CONV, CONV_BW = "aten.convolution", "aten.convolution_backward"
SDPA = "aten._scaled_dot_product_flash_attention"
SDPA_BW = "aten._scaled_dot_product_flash_attention_backward"


def mm_flop(a_shape, b_shape) -> int:
    """FLOPs of ``(m, k) @ (k, n)``: ``2 m k n``."""
    m, k = a_shape
    return 2 * m * k * b_shape[-1]


def bmm_flop(a_shape, b_shape) -> int:
    """FLOPs of ``(b, m, k) @ (b, k, n)``."""
    b, m, k = a_shape
    return 2 * b * m * k * b_shape[-1]


def conv_flop_count(x_shape, w_shape, out_shape, transposed: bool = False) -> int:
    """PyTorch's convolution count: ``2 * batch * c_out * c_in/groups * prod(kernel) * prod(
    spatial)``, the spatial size taken from the output (the input for a transposed conv)."""
    conv_shape = (x_shape if transposed else out_shape)[2:]
    c_out, c_in, *kernel = w_shape
    return 2 * prod(conv_shape) * prod(kernel) * x_shape[0] * c_out * c_in


def conv_backward_flop(grad_shape, x_shape, w_shape, transposed: bool, mask) -> int:
    def t(shape):
        return [shape[1], shape[0], *shape[2:]]

    n = 0
    if mask[0]:  # grad_input: the transposed convolution of grad_out with the weight
        n += conv_flop_count(grad_shape, w_shape, x_shape, not transposed)
    if mask[1]:  # grad_weight: a convolution of the input with grad_out
        if transposed:
            n += conv_flop_count(t(grad_shape), t(x_shape), t(w_shape), False)
        else:
            n += conv_flop_count(t(x_shape), t(grad_shape), t(w_shape), False)
    return n


def sdpa_flop_count(bh: int, s_q: int, s_k: int, d_q: int, d_v: int) -> int:
    """``q @ k^T`` and ``p @ v`` over ``bh`` (batch x query heads) heads."""
    return bmm_flop((bh, s_q, d_q), (bh, d_q, s_k)) + bmm_flop((bh, s_q, s_k), (bh, s_k, d_v))


def sdpa_backward_flop_count(bh: int, s_q: int, s_k: int, d_q: int, d_v: int) -> int:
    """PyTorch's fused attention backward: the scores recomputed, then four products."""
    return (
        bmm_flop((bh, s_q, d_q), (bh, d_q, s_k))
        + bmm_flop((bh, s_q, d_v), (bh, d_v, s_k))
        + bmm_flop((bh, s_k, s_q), (bh, s_q, d_v))
        + bmm_flop((bh, s_q, s_k), (bh, s_k, d_q))
        + bmm_flop((bh, d_q, s_q), (bh, s_q, s_k))
    )


# ---- per op class: (forward key, forward flops, backward key, backward flops) --------------
def _shape(a) -> tuple:
    return tuple(getattr(a, "_data", a).shape)


def _matmul(args, out, needs):
    a, b = _shape(args[0]), _shape(args[1])
    if len(b) == 2:  # (.., m, k) @ (k, n): PyTorch folds the leading dims into one mm
        n = mm_flop((prod(a[:-1]), a[-1]), b)
        key = MM
    else:
        batch = prod(_shape(out)[:-2])
        n = bmm_flop((batch, a[-2], a[-1]), (batch, b[-2], b[-1]))
        key = BMM
    return key, n, key, n * sum(needs[:2])


def _linear(args, out, needs):
    x, w = _shape(args[0]), _shape(args[1])
    n = mm_flop((prod(x[:-1]), x[-1]), (w[1], w[0]))
    return (ADDMM if args[2] is not None else MM), n, MM, n * sum(needs[:2])


def _addmm(args, out, needs):
    # the ``addmm`` of ``linear``'s decomposition under a dispatch mode (_dispatch_decomp.py)
    n = mm_flop(_shape(args[1]), _shape(args[2]))
    return ADDMM, n, MM, n * sum(needs[1:3])


def _conv(transposed: bool):
    def count(args, out, needs):
        x, w, y = _shape(args[0]), _shape(args[1]), _shape(out)
        if transposed:  # ember stores the transpose's weight as (c_in, c_out/groups, k..)
            n = conv_flop_count(x, w, y, True)
        else:
            n = conv_flop_count(x, w, y, False)
        bw = conv_backward_flop(y, x, w, transposed, needs[:2])
        return CONV, n, CONV_BW, bw

    return count


def _heads(shape, rep: int = 1):
    """(batch x heads, seq, dim) of an attention operand laid out (..., seq, dim)."""
    return prod(shape[:-2]) * rep, shape[-2], shape[-1]


def _sdpa(args, out, needs):
    q, k, v = _shape(args[0]), _shape(args[1]), _shape(args[2])
    bh, s_q, d_q = _heads(q)
    s_k, d_v = k[-2], v[-1]
    return (
        SDPA,
        sdpa_flop_count(bh, s_q, s_k, d_q, d_v),
        SDPA_BW,
        sdpa_backward_flop_count(bh, s_q, s_k, d_q, d_v) if any(needs[:3]) else 0,
    )


def _mha_core(args, out, needs):
    a, b, c = (_shape(x) if x is not None else None for x in args[:3])
    num_heads, need_weights, batch_first, layout = args[5], args[8], args[11], args[12]
    if layout == "qkv":
        e = a[-1] // 3
        q, k, v = a[:-1] + (e,), a[:-1] + (e,), a[:-1] + (e,)
    elif layout == "q_kv":
        q, k, v = a, b[:-1] + (b[-1] // 2,), b[:-1] + (b[-1] // 2,)
    else:
        q, k, v = a, b, c
    batch = 1 if len(q) < 3 else (q[0] if batch_first else q[1])
    s_q, s_k = prod(q[:-1]) // batch, prod(k[:-1]) // batch
    bh = batch * num_heads
    d_q, d_v = q[-1] // num_heads, v[-1] // num_heads
    fw = sdpa_flop_count(bh, s_q, s_k, d_q, d_v)
    if need_weights:  # PyTorch's math path: two bmm forward, four in backward
        return BMM, fw, BMM, 2 * fw if any(needs[:3]) else 0
    return (
        SDPA,
        fw,
        SDPA_BW,
        sdpa_backward_flop_count(bh, s_q, s_k, d_q, d_v) if any(needs[:3]) else 0,
    )


def _einsum(args, out, needs):
    # PyTorch contracts two operands with one bmm (letters only one operand has and the output
    # lacks are summed first) and runs an outer product without a contracted letter as a mul;
    # three or more operands follow a contraction path: not counted here.
    ops = args[1:]
    if len(ops) != 2:
        return None
    from ..ops.linalg import _parse_einsum

    shapes = [_shape(o) for o in ops]
    (ia, ib), io = _parse_einsum(args[0], shapes)
    size = {c: n for letters, shape in zip((ia, ib), shapes) for c, n in zip(letters, shape)}
    a, b, o = set(ia), set(ib), set(io)
    if not (a & b) - o:
        return None
    n = 2 * prod(size[c] for c in (a & b) | ((a | b) & o))
    return BMM, n, BMM, n * sum(needs[1:3])


_FORMULAS: dict = {}


def _load_formulas() -> dict:
    if not _FORMULAS:
        from .._dispatch_decomp import Addmm
        from ..ops.attention import MultiHeadAttentionCore, ScaledDotProductAttention
        from ..ops.conv import Conv, ConvTranspose
        from ..ops.linalg import Einsum, Matmul
        from ..ops.nn_ops import Linear

        _FORMULAS.update(
            {
                Addmm: _addmm,
                Matmul: _matmul,
                Einsum: _einsum,
                Linear: _linear,
                Conv: _conv(False),
                ConvTranspose: _conv(True),
                ScaledDotProductAttention: _sdpa,
                MultiHeadAttentionCore: _mha_core,
            }
        )
    return _FORMULAS


def register_flop_formula(op_class: type):
    r"""Decorator: count ``op_class`` (an ``ember.autograd.Function`` subclass) with the
    decorated ``formula(args, out, needs_input_grad) -> (key, flops, backward_key,
    backward_flops)`` or ``None`` (not counted). ``args`` are the op's arguments (tensors
    where it was given tensors), ``out`` its output."""

    def wrap(formula):
        _load_formulas()[op_class] = formula
        return formula

    return wrap


# ---- the counter --------------------------------------------------------------------------
def get_suffix_str(number: int) -> str:
    """The unit suffix (``""``, ``"K"``, ``"M"``, ``"B"``, ``"T"``) that
    :class:`FlopCounterMode`'s table shows ``number`` in.

    Example::

        >>> ember.utils.flop_counter.get_suffix_str(123_456_789)
        'M'
    """
    suffixes = ["", "K", "M", "B", "T"]
    return suffixes[max(0, min(len(suffixes) - 1, (len(str(number)) - 2) // 3))]


def _with_suffix(number: int, suffix: str) -> str:
    return f"{number / 1000 ** ['', 'K', 'M', 'B', 'T'].index(suffix):.3f}{suffix}"


def _percent(num: int, denom: int) -> str:
    return "0%" if denom == 0 else f"{num / denom:.2%}"


class FlopCounterMode:
    r"""A context manager counting the FLOPs of the ops run inside it, per module.

    Args:
        mods (Module or list, optional): accepted for PyTorch compatibility and unused
            (modules are found as they run).
        depth (int): how deep the printed table goes into the module hierarchy. Default: 2.
        display (bool): print the table on exit. Default: ``True``.
        custom_mapping (dict, optional): ``{op_class: formula}``, as
            :func:`register_flop_formula`, for this counter only.

    Example::

        >>> model = ember.nn.Linear(8, 4)
        >>> with FlopCounterMode(display=False) as fc:
        ...     model(ember.randn(2, 8)).sum().backward()
        >>> fc.get_total_flops()  # 2*2*8*4 forward + the weight gradient's mm
        256
    """

    def __init__(self, mods=None, depth: int = 2, display: bool = True, custom_mapping=None):
        self.flop_counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.depth = depth
        self.display = display
        self.custom_mapping = dict(custom_mapping or {})
        self.mod_tracker = ModuleTracker()
        self._pending: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._active = False

    def get_total_flops(self) -> int:
        """All FLOPs counted (the ``"Global"`` entry)."""
        return sum(self.flop_counts["Global"].values())

    def get_flop_counts(self) -> dict[str, dict[str, int]]:
        """``{module name: {op name: flops}}``; ``"Global"`` holds every op."""
        return {k: dict(v) for k, v in self.flop_counts.items()}

    def get_table(self, depth: int | None = None) -> str:
        """The counts as a text table (module, FLOP, % of the total), down to ``depth``."""
        depth = self.depth if depth is None else depth
        depth = 999999 if depth is None else depth
        total = self.get_total_flops()
        suffix = get_suffix_str(total)
        subsumed = False

        def rows_of(name: str, level: int) -> list:
            nonlocal subsumed
            flops = sum(self.flop_counts[name].values())
            subsumed |= flops >= total
            pad = " " * level
            rows = [[pad + name, _with_suffix(flops, suffix), _percent(flops, total)]]
            for op, n in self.flop_counts[name].items():
                rows.append([pad + " - " + op, _with_suffix(n, suffix), _percent(n, total)])
            return rows

        rows: list = []
        for name in sorted(self.flop_counts):
            if name == "Global" or name.count(".") + 1 > depth:
                continue
            rows.extend(rows_of(name, name.count(".")))
        if "Global" in self.flop_counts and not subsumed:
            rows = rows_of("Global", 0) + [[" " + r[0], *r[1:]] for r in rows]
        if not rows:
            rows = [["Global", "0", "0%"]]
        header = ["Module", "FLOP", "% Total"]
        widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(3)]
        line = "  ".join("-" * w for w in widths)

        def fmt(r):
            return "  ".join([r[0].ljust(widths[0]), *(r[i].rjust(widths[i]) for i in (1, 2))])

        return "\n".join([fmt(header), line, *map(fmt, rows)])

    # ---- the observer side (called from ember.profiler._record's hooks) -----------------
    def _formula(self, cls):
        f = self.custom_mapping.get(cls)
        return f if f is not None else _load_formulas().get(cls)

    def _add(self, key: str, flops: int, parents) -> None:
        for p in parents:
            self.flop_counts[p][key] += flops

    def on_apply(self, cls, args, out) -> None:
        """The profiler's observer hook after an op ran: count its forward FLOPs (and note
        its backward's). Called by ember, not by users."""
        formula = self._formula(cls)
        if formula is None:
            return
        first = out[0] if type(out) is tuple else out
        node = getattr(first, "grad_fn", None)
        needs = getattr(node, "needs_input_grad", None) or (False,) * len(args)
        counted = formula(args, first, needs)
        if counted is None:
            return
        key, flops, bw_key, bw_flops = counted
        parents = set(self.mod_tracker.parents)
        self._add(key, flops, parents)
        if node is not None and bw_flops:
            self._pending[node] = (bw_key, bw_flops, parents)

    def on_backward(self, node, create_graph: bool) -> None:
        """The profiler's observer hook when ``node``'s backward runs: count the backward
        FLOPs noted by :meth:`on_apply`. Called by ember, not by users."""
        pending = self._pending.pop(node, None)
        # with create_graph the backward runs ops through Function.apply: counted there
        if pending is not None and not create_graph:
            self._add(*pending)

    # ---- context manager ---------------------------------------------------------------
    def __enter__(self) -> FlopCounterMode:
        if self._active:
            raise RuntimeError("FlopCounterMode is not reentrant: this counter is already active")
        self.flop_counts.clear()
        self._pending = weakref.WeakKeyDictionary()
        self.mod_tracker.__enter__()
        _record.add_observer(self)
        self._active = True
        return self

    def __exit__(self, *args) -> None:
        _record.remove_observer(self)
        self.mod_tracker.__exit__()
        self._active = False
        self._pending = weakref.WeakKeyDictionary()
        if self.display:
            print(self.get_table(self.depth))
