"""Finite-difference checks of analytic gradients (float64, central differences)."""

from __future__ import annotations

import numpy as np

from . import function as _fn


def _flat_outputs(out):
    # Every floating output counts, also one that does not require grad: its Jacobian rows are
    # zero analytically and must be zero numerically (a constant first derivative in
    # gradgradcheck, or a graph that was wrongly cut).
    if isinstance(out, (tuple, list)):
        return [o for o in out if isinstance(o, _fn.Tensor) and o._data.dtype.kind in "fc"]
    return [out]


def _numeric_jacobian(fn, inputs, i, eps):
    """Columns: d(all outputs flattened)/d(input i element k), by central differences."""
    x = inputs[i]
    data = x._data
    cols = []
    flat = data.reshape(-1)
    for k in range(flat.size):
        orig = flat[k].item()
        flat[k] = orig + eps
        plus = [o._data.astype(np.float64).reshape(-1).copy() for o in _flat_outputs(fn(*inputs))]
        flat[k] = orig - eps
        minus = [o._data.astype(np.float64).reshape(-1).copy() for o in _flat_outputs(fn(*inputs))]
        flat[k] = orig
        cols.append(np.concatenate([(p - m) / (2 * eps) for p, m in zip(plus, minus)]))
    if not cols:  # an empty input: a (number of outputs) x 0 Jacobian
        n_out = sum(o._data.size for o in _flat_outputs(fn(*inputs)))
        return np.zeros((n_out, 0))
    return np.stack(cols, axis=1)


def _analytic_jacobian(fn, inputs, i):
    from . import grad as _grad

    outs = _flat_outputs(fn(*inputs))
    rows = []
    for o in outs:
        if not o.requires_grad:
            rows.extend(np.zeros(inputs[i]._data.size) for _ in range(o._data.size))
            continue
        for k in range(o._data.size):
            seed = np.zeros(o._data.size, dtype=o._data.dtype)
            seed[k] = 1
            g = _grad(
                [o],
                [inputs[i]],
                [_fn.Tensor._wrap(seed.reshape(o._data.shape))],
                retain_graph=True,
                allow_unused=True,
            )[0]
            rows.append(
                np.zeros(inputs[i]._data.size)
                if g is None
                else np.asarray(g._data, dtype=np.float64).reshape(-1)
            )
    return np.stack(rows, axis=0) if rows else np.zeros((0, inputs[i]._data.size))


def _forward_jacobian(fn, inputs, i):
    """Columns: the forward-mode tangent of every output for a one-hot tangent of input i."""
    from . import forward_ad as fwd

    x = inputs[i]
    cols = []
    for k in range(x._data.size):
        seed = np.zeros(x._data.size, dtype=x._data.dtype)
        seed[k] = 1
        with fwd.dual_level():
            args = list(inputs)
            args[i] = fwd.make_dual(x, _fn.Tensor._wrap(seed.reshape(x._data.shape)))
            col = []
            for o in _flat_outputs(fn(*args)):
                t = fwd.unpack_dual(o).tangent
                size = o._data.size
                col.append(np.zeros(size) if t is None else np.asarray(t._data, np.float64))
        cols.append(np.concatenate([c.reshape(-1) for c in col]) if col else np.zeros(0))
    if not cols:
        n_out = sum(o._data.size for o in _flat_outputs(fn(*inputs)))
        return np.zeros((n_out, 0))
    return np.stack(cols, axis=1)


def gradcheck(
    func,
    inputs,
    *,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    raise_exception: bool = True,
    check_backward_ad: bool = True,
    check_forward_ad: bool = False,
    **_ignored,
) -> bool:
    """Compare analytic gradients with central differences for every input requiring grad:
    reverse mode (``check_backward_ad``, the default) and forward mode (``check_forward_ad``:
    a Function with only ``jvp`` passes ``check_backward_ad=False``, as in torch)."""
    inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    modes = [(_analytic_jacobian, "")] if check_backward_ad else []
    if check_forward_ad:
        modes.append((_forward_jacobian, " computed with forward mode"))
    for i, x in enumerate(inputs):
        if not (isinstance(x, _fn.Tensor) and x.requires_grad):
            continue
        if x._data.dtype != np.float64:
            raise ValueError(f"gradcheck expects float64 inputs; input {i} is {x.dtype}")
        numeric = _numeric_jacobian(func, inputs, i, eps) if modes else None
        for jacobian, how in modes:
            analytic = jacobian(func, inputs, i)
            if analytic.shape != numeric.shape or not np.allclose(
                analytic, numeric, atol=atol, rtol=rtol
            ):
                if not raise_exception:
                    return False
                raise GradcheckError(
                    f"Jacobian{how} mismatch for output 0 with respect to input {i},\n"
                    f"numerical:{numeric}\nanalytical:{analytic}\n"
                )
    return True


def gradgradcheck(
    func,
    inputs,
    grad_outputs=None,
    *,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    raise_exception: bool = True,
    **_ignored,
) -> bool:
    """gradcheck of the first derivative (computed with create_graph=True)."""
    from . import grad as _grad

    inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    diff = [x for x in inputs if isinstance(x, _fn.Tensor) and x.requires_grad]
    outs0 = _flat_outputs(func(*inputs))
    rng = np.random.default_rng(0)
    if grad_outputs is None:
        grad_outputs = [_fn.Tensor._wrap(rng.standard_normal(o._data.shape)) for o in outs0]

    def first_grad(*xs):
        d = [x for x in xs if isinstance(x, _fn.Tensor) and x.requires_grad]
        pairs = [(o, g) for o, g in zip(_flat_outputs(func(*xs)), grad_outputs) if o.requires_grad]
        gs = (
            _grad(
                [o for o, _ in pairs],
                d,
                [g for _, g in pairs],
                create_graph=True,
                allow_unused=True,
            )
            if pairs
            else [None] * len(d)
        )
        # an unused input's gradient is zero (and stays an output, so shapes stay fixed)
        return tuple(
            _fn.Tensor._wrap(np.zeros_like(x._data)) if g is None else g for g, x in zip(gs, d)
        )

    if not diff:
        return True
    return gradcheck(
        first_grad, inputs, eps=eps, atol=atol, rtol=rtol, raise_exception=raise_exception
    )


class GradcheckError(RuntimeError):
    """Raised when analytic and numerical gradients disagree."""
