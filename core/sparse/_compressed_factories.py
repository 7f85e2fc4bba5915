"""The sparse compressed factories (``ember.sparse_csr_tensor``, ``sparse_csc_tensor``,
``sparse_bsr_tensor``, ``sparse_bsc_tensor``, ``sparse_compressed_tensor``) with PyTorch's
invariant checks and messages, and ``check_sparse_tensor_invariants``."""

from __future__ import annotations

from ..backend.device import get_array_module
from ..tensor import Tensor
from ._compressed import (
    BLOCK_LAYOUTS,
    COMPRESSED_LAYOUTS,
    ROW_LAYOUTS,
    SparseCompressedTensor,
    sparse_bsc,
    sparse_bsr,
    sparse_csc,
    sparse_csr,
)


class check_sparse_tensor_invariants:
    """Turn the checks of sparse tensor construction on or off (PyTorch's
    ``torch.sparse.check_sparse_tensor_invariants``): a context manager, a decorator, or
    ``enable()``/``disable()``/``is_enabled()``. ember checks compressed tensors unless a
    factory is given ``check_invariants=False``; the flag is kept for torch's API."""

    _enabled = False

    @staticmethod
    def is_enabled() -> bool:
        return check_sparse_tensor_invariants._enabled

    @staticmethod
    def enable() -> None:
        check_sparse_tensor_invariants._enabled = True

    @staticmethod
    def disable() -> None:
        check_sparse_tensor_invariants._enabled = False

    def __init__(self, enable: bool = True) -> None:
        self.state = bool(enable)
        self.saved_state = None

    def __enter__(self):
        if self.saved_state is not None:
            raise RuntimeError("This context manager instance is already activated.")
        self.saved_state = check_sparse_tensor_invariants._enabled
        check_sparse_tensor_invariants._enabled = self.state
        return self

    def __exit__(self, *exc) -> None:
        check_sparse_tensor_invariants._enabled = self.saved_state
        self.saved_state = None

    def __call__(self, func):
        def wrapper(*args, **kwargs):
            with check_sparse_tensor_invariants(self.state):
                return func(*args, **kwargs)

        return wrapper


# ---- the factories ----------------------------------------------------------------------
_NAMES = {  # compressed, plain, compressed dim, plain dim
    "sparse_csr": ("crow_indices", "col_indices", "rows", "cols"),
    "sparse_bsr": ("crow_indices", "col_indices", "rows", "cols"),
    "sparse_csc": ("ccol_indices", "row_indices", "cols", "rows"),
    "sparse_bsc": ("ccol_indices", "row_indices", "cols", "rows"),
}


def _index_tensor(x, name: str, device) -> Tensor:
    from ..creation import tensor as _tensor

    t = x if isinstance(x, Tensor) else _tensor(x, device=device)
    if t.layout.name != "strided":
        raise TypeError(f"{name} must be a strided tensor, got layout {t.layout}")
    if t.dtype.name not in ("int32", "int64"):
        raise RuntimeError(f"{name} must be an int32 or int64 tensor, but got {t.dtype}")
    if device is not None and t.device != t.device.__class__(device):
        t = t.to(device)
    return t.detach()


def _fail(cond: str) -> RuntimeError:
    return RuntimeError(f"`{cond}` is not satisfied.")


def _check(cidx, pidx, shape, lay, nb: int, block) -> None:
    """PyTorch's invariants of a compressed tensor, with its messages."""
    cn, pn, cdim, pdim = _NAMES[lay.name]
    xp = get_array_module(cidx)
    n_c = (shape[nb] // block[0]) if cdim == "rows" else (shape[nb + 1] // block[1])
    n_p = (shape[nb + 1] // block[1]) if cdim == "rows" else (shape[nb] // block[0])
    if cidx.shape[-1] != n_c + 1:
        raise RuntimeError(
            f"{cn}.shape[-1] must be equal to the number of {cdim} + 1 (={n_c + 1}), but got "
            f"{cidx.shape[-1]}"
        )
    nnz = pidx.shape[-1]
    if cidx.size and bool((cidx[..., 0] != 0).any()):
        raise _fail(f"{cn}[..., 0] == 0")
    if cidx.size and bool((cidx[..., -1] != nnz).any()):
        raise _fail(f"{cn}[..., -1] == nnz")
    d = xp.diff(cidx, axis=-1)
    if d.size and bool(((d < 0) | (d > n_p)).any()):
        raise _fail(f"0 <= {cn}[..., 1:] - {cn}[..., :-1] <= n{pdim}")
    if pidx.size and bool(((pidx < 0) | (pidx >= n_p)).any()):
        raise _fail(f"0 <= {pn} < n{pdim}")
    if nnz > 1:
        # within one compressed slot the plain indices strictly increase
        c2 = cidx.reshape(-1, n_c + 1)
        comp = xp.repeat(xp.tile(xp.arange(n_c), c2.shape[0]), xp.diff(c2, axis=1).reshape(-1))
        key = comp.reshape(c2.shape[0], nnz) * (n_p + 1) + pidx.reshape(c2.shape[0], nnz)
        if bool((xp.diff(key, axis=1) <= 0).any()):
            raise _fail(
                f"{pn}[..., {cn}[..., i - 1]:{cn}[..., i]] for all i = 1, ..., n{cdim} are "
                "sorted and distinct along the last dimension values"
            )


def sparse_compressed_tensor(
    compressed_indices,
    plain_indices,
    values,
    size=None,
    *,
    dtype=None,
    layout=None,
    device=None,
    pin_memory: bool = False,
    requires_grad: bool = False,
    check_invariants: bool | None = None,
) -> SparseCompressedTensor:
    r"""A sparse tensor in a compressed layout (PyTorch's ``torch.sparse_compressed_tensor``).

    Args:
        compressed_indices: ``(*batch, n_compressed + 1)`` integers: ``crow_indices`` of CSR/BSR,
            ``ccol_indices`` of CSC/BSC; entry ``i + 1`` minus entry ``i`` is the number of
            stored elements in row (column, block row, block column) ``i``.
        plain_indices: ``(*batch, nnz)`` integers: the column (CSR/BSR) or row (CSC/BSC) of
            each stored element, increasing within each compressed slot.
        values: ``(*batch, nnz, *dense)``, or ``(*batch, nnz, R, C, *dense)`` for blocks. A
            tensor that requires grad stays in the graph.
        size: the full size; by default the smallest that holds every index.
        layout: ``ember.sparse_csr``, ``sparse_csc``, ``sparse_bsr`` or ``sparse_bsc``.
        requires_grad: make the result a leaf whose ``.grad`` has its pattern.
        check_invariants: ``False`` skips the index checks (by default they run).
    """
    from ..backend.dtype import to_dtype
    from ..creation import tensor as _tensor

    if layout not in COMPRESSED_LAYOUTS:
        raise RuntimeError(
            "sparse_compressed_tensor expected sparse compressed tensor layout but got "
            f"{'none' if layout is None else layout}"
        )
    cn, pn = _NAMES[layout.name][:2]
    if isinstance(values, Tensor):
        vals = values
        if dtype is not None or device is not None:
            vals = vals.to(device=device, dtype=None if dtype is None else to_dtype(dtype))
    else:
        vals = _tensor(values, dtype=dtype, device=device)
    cidx = _index_tensor(compressed_indices, cn, vals.device)
    pidx = _index_tensor(plain_indices, pn, vals.device)
    # int32 indices (SciPy's) stay int32, as torch keeps them
    nb = cidx.dim() - 1
    if nb < 0 or pidx.dim() != nb + 1:
        raise RuntimeError(
            f"{cn} and {pn} must have the same number of dimensions (at least 1), but got "
            f"{cidx.dim()} and {pidx.dim()}"
        )
    if tuple(cidx.shape[:nb]) != tuple(pidx.shape[:nb]) or tuple(vals.shape[:nb]) != tuple(
        cidx.shape[:nb]
    ):
        raise RuntimeError(
            f"all batch dimensions of {cn}, {pn} and values must be equal, but got "
            f"{list(cidx.shape)}, {list(pidx.shape)} and {list(vals.shape)}"
        )
    nnz = pidx.shape[-1]
    is_block = layout in BLOCK_LAYOUTS
    if vals.dim() < nb + 1 + 2 * is_block or vals.shape[nb] != nnz:
        raise RuntimeError(
            f"values must have shape (*batch, nnz{', R, C' if is_block else ''}, *dense) with "
            f"nnz = {pn}.shape[-1] = {nnz}, but got {list(vals.shape)}"
        )
    block = tuple(vals.shape[nb + 1 : nb + 3]) if is_block else (1, 1)
    dense = tuple(vals.shape[nb + 1 + 2 * is_block :])
    batch = tuple(cidx.shape[:nb])
    rows_c = layout in ROW_LAYOUTS
    if size is None:
        n_c = cidx.shape[-1] - 1
        n_p = int(pidx._data.max()) + 1 if pidx.numel() else 0
        nr, nc = (n_c, n_p) if rows_c else (n_p, n_c)
        shape = batch + (nr * block[0], nc * block[1]) + dense
    else:
        shape = tuple(int(s) for s in size)
        if len(shape) != nb + 2 + len(dense) or shape[:nb] != batch or shape[nb + 2 :] != dense:
            raise RuntimeError(
                f"size {list(shape)} does not match the batch dims {list(batch)} and dense dims "
                f"{list(dense)} of the indices and values"
            )
        if shape[nb] % block[0] or shape[nb + 1] % block[1]:
            raise RuntimeError(
                f"size {list(shape)} must be divisible by the blocksize {block} of the values"
            )
    if check_invariants is not False:
        _check(cidx._data, pidx._data, shape, layout, nb, block)
    if requires_grad:
        vals = vals.detach().requires_grad_(True)
    elif vals.requires_grad:  # a non-leaf alias: gradients reach the caller's values
        vals = vals.view(tuple(vals.shape))
    return SparseCompressedTensor._make(cidx, pidx, vals, shape, layout)


def sparse_csr_tensor(
    crow_indices,
    col_indices,
    values,
    size=None,
    *,
    dtype=None,
    device=None,
    pin_memory: bool = False,
    requires_grad: bool = False,
    check_invariants: bool | None = None,
) -> SparseCompressedTensor:
    """A CSR tensor (``ember.sparse_csr``) from ``crow_indices``, ``col_indices`` and
    ``values`` (PyTorch's ``torch.sparse_csr_tensor``); see :func:`sparse_compressed_tensor`."""
    return sparse_compressed_tensor(
        crow_indices, col_indices, values, size, dtype=dtype, layout=sparse_csr,
        device=device, requires_grad=requires_grad, check_invariants=check_invariants,
    )  # fmt: skip


def sparse_csc_tensor(
    ccol_indices,
    row_indices,
    values,
    size=None,
    *,
    dtype=None,
    device=None,
    pin_memory: bool = False,
    requires_grad: bool = False,
    check_invariants: bool | None = None,
) -> SparseCompressedTensor:
    """A CSC tensor (``ember.sparse_csc``) from ``ccol_indices``, ``row_indices`` and
    ``values`` (PyTorch's ``torch.sparse_csc_tensor``); see :func:`sparse_compressed_tensor`."""
    return sparse_compressed_tensor(
        ccol_indices, row_indices, values, size, dtype=dtype, layout=sparse_csc,
        device=device, requires_grad=requires_grad, check_invariants=check_invariants,
    )  # fmt: skip


def sparse_bsr_tensor(
    crow_indices,
    col_indices,
    values,
    size=None,
    *,
    dtype=None,
    device=None,
    pin_memory: bool = False,
    requires_grad: bool = False,
    check_invariants: bool | None = None,
) -> SparseCompressedTensor:
    """A BSR tensor (``ember.sparse_bsr``): ``values`` is ``(nnz, R, C, *dense)`` blocks at
    block rows ``crow_indices`` and block columns ``col_indices`` (PyTorch's
    ``torch.sparse_bsr_tensor``); see :func:`sparse_compressed_tensor`."""
    return sparse_compressed_tensor(
        crow_indices, col_indices, values, size, dtype=dtype, layout=sparse_bsr,
        device=device, requires_grad=requires_grad, check_invariants=check_invariants,
    )  # fmt: skip


def sparse_bsc_tensor(
    ccol_indices,
    row_indices,
    values,
    size=None,
    *,
    dtype=None,
    device=None,
    pin_memory: bool = False,
    requires_grad: bool = False,
    check_invariants: bool | None = None,
) -> SparseCompressedTensor:
    """A BSC tensor (``ember.sparse_bsc``): ``(nnz, R, C, *dense)`` blocks at block columns
    ``ccol_indices`` and block rows ``row_indices`` (PyTorch's ``torch.sparse_bsc_tensor``);
    see :func:`sparse_compressed_tensor`."""
    return sparse_compressed_tensor(
        ccol_indices, row_indices, values, size, dtype=dtype, layout=sparse_bsc,
        device=device, requires_grad=requires_grad, check_invariants=check_invariants,
    )  # fmt: skip
