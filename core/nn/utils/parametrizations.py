"""``ember.nn.utils.parametrizations``: weight norm, spectral norm and orthogonal matrices as
parametrizations (:func:`ember.nn.utils.parametrize.register_parametrization`), PyTorch's
``torch.nn.utils.parametrizations``."""

from __future__ import annotations

from enum import Enum, auto

from ...autograd.grad_mode import no_grad
from ...backend.finfo import np_finfo
from ...tensor import Tensor
from .. import functional as F
from ..module import Module
from . import parametrize
from .spectral_norm import _randn, _to_matrix
from .weight_norm import _norm_except_dim, _weight_norm

__all__ = ["orthogonal", "spectral_norm", "weight_norm"]


# ---- weight norm -----------------------------------------------------------------------------
class _WeightNorm(Module):
    def __init__(self, dim: int | None = 0) -> None:
        super().__init__()
        self.dim = -1 if dim is None else dim

    def forward(self, weight_g: Tensor, weight_v: Tensor) -> Tensor:
        return _weight_norm(weight_v, weight_g, self.dim)

    def right_inverse(self, weight: Tensor):
        return _norm_except_dim(weight, 2, self.dim), weight


def weight_norm(module: Module, name: str = "weight", dim: int | None = 0) -> Module:
    r"""Apply weight normalization to a parameter in the given module.

    .. math:: \mathbf{w} = g \dfrac{\mathbf{v}}{\|\mathbf{v}\|}

    The magnitude ``g`` and direction ``v`` live at
    ``parametrizations.<name>.original0`` and ``original1``; checkpoints of the hook-based
    :func:`ember.nn.utils.weight_norm` (``<name>_g``, ``<name>_v``) load into it.

    Args:
        module (Module): containing module.
        name (str, optional): name of weight parameter.
        dim (int, optional): dimension over which to compute the norm (``None``: the whole
            tensor).

    Returns:
        The original module with the weight-norm parametrization.
    """
    parametrize.register_parametrization(module, name, _WeightNorm(dim), unsafe=True)

    def _weight_norm_compat_hook(
        state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ) -> None:
        g_key, v_key = f"{prefix}{name}_g", f"{prefix}{name}_v"
        if g_key in state_dict and v_key in state_dict:
            state_dict[f"{prefix}parametrizations.{name}.original0"] = state_dict.pop(g_key)
            state_dict[f"{prefix}parametrizations.{name}.original1"] = state_dict.pop(v_key)

    module._register_load_state_dict_pre_hook(_weight_norm_compat_hook)
    return module


# ---- spectral norm ---------------------------------------------------------------------------
class _SpectralNorm(Module):
    def __init__(
        self, weight: Tensor, n_power_iterations: int = 1, dim: int = 0, eps: float = 1e-12
    ) -> None:
        super().__init__()
        ndim = weight.ndim
        if dim >= ndim or dim < -ndim:
            raise IndexError(
                "Dimension out of range (expected to be in range of "
                f"[-{ndim}, {ndim - 1}] but got {dim})"
            )
        if n_power_iterations <= 0:
            raise ValueError(
                "Expected n_power_iterations to be positive, but got "
                f"n_power_iterations={n_power_iterations}"
            )
        self.dim = dim if dim >= 0 else dim + ndim
        self.eps = eps
        if ndim > 1:
            self.n_power_iterations = n_power_iterations
            weight_mat = self._reshape_weight_to_matrix(weight)
            h, w = weight_mat.shape
            with no_grad():
                self.register_buffer("_u", F.normalize(_randn(h, weight), dim=0, eps=eps))
                self.register_buffer("_v", F.normalize(_randn(w, weight), dim=0, eps=eps))
            # start from a good estimate of the top singular vectors
            self._power_method(weight_mat, 15)

    def _reshape_weight_to_matrix(self, weight: Tensor) -> Tensor:
        return _to_matrix(weight, self.dim)

    def _power_method(self, weight_mat: Tensor, n_power_iterations: int) -> None:
        with no_grad():
            for _ in range(n_power_iterations):
                self._u.copy_(F.normalize(weight_mat.mv(self._v), dim=0, eps=self.eps))
                self._v.copy_(F.normalize(_mH(weight_mat).mv(self._u), dim=0, eps=self.eps))

    def forward(self, weight: Tensor) -> Tensor:
        if weight.ndim == 1:
            return F.normalize(weight, dim=0, eps=self.eps)
        weight_mat = self._reshape_weight_to_matrix(weight)
        if self.training:
            self._power_method(weight_mat, self.n_power_iterations)
        u, v = self._u.clone(), self._v.clone()
        sigma = (u.conj() if u.is_complex() else u).dot(weight_mat.mv(v))  # vdot
        return weight / sigma

    def right_inverse(self, value: Tensor) -> Tensor:
        return value


def spectral_norm(
    module: Module,
    name: str = "weight",
    n_power_iterations: int = 1,
    eps: float = 1e-12,
    dim: int | None = None,
) -> Module:
    r"""Apply spectral normalization to a parameter in the given module.

    .. math:: \mathbf{W}_{SN} = \dfrac{\mathbf{W}}{\sigma(\mathbf{W})}

    ``sigma`` is estimated with one (``n_power_iterations``) power-iteration step per
    access in training mode; the vectors are the buffers ``parametrizations.<name>[0]._u``
    and ``_v``. In eval mode they are left as they are.

    Args:
        module (nn.Module): containing module.
        name (str, optional): name of weight parameter. Default: ``"weight"``.
        n_power_iterations (int, optional): power iterations per access.
        eps (float, optional): epsilon for numerical stability in calculating norms.
        dim (int, optional): dimension corresponding to number of outputs (default ``0``,
            ``1`` for ``ConvTranspose{1,2,3}d``).

    Returns:
        The original module with a new parametrization registered to the weight.
    """
    weight = getattr(module, name, None)
    if not isinstance(weight, Tensor):
        raise ValueError(f"Module '{module}' has no parameter or buffer with name '{name}'")
    if dim is None:
        from ..modules.conv import ConvTranspose1d, ConvTranspose2d, ConvTranspose3d

        dim = 1 if isinstance(module, (ConvTranspose1d, ConvTranspose2d, ConvTranspose3d)) else 0
    parametrize.register_parametrization(
        module, name, _SpectralNorm(weight, n_power_iterations, dim, eps)
    )
    return module


# ---- orthogonal ------------------------------------------------------------------------------
class _OrthMaps(Enum):
    matrix_exp = auto()
    cayley = auto()
    householder = auto()


def _eye(n: int, like: Tensor) -> Tensor:
    from ...creation import eye

    return eye(n, dtype=like.dtype, device=like.device)


def _mH(x: Tensor) -> Tensor:
    return x.mT.conj() if x.is_complex() else x.mT


def _diagonal(x: Tensor) -> Tensor:
    """The main diagonals of a batch of matrices (differentiable)."""
    m = min(x.size(-2), x.size(-1))
    return (x[..., :m, :m] * _eye(m, x)).sum(-1)


def _is_orthogonal(q: Tensor) -> bool:

    n, k = q.size(-2), q.size(-1)
    eps = 10.0 * n * float(np_finfo(q._data.dtype).eps)
    return bool(((_mH(q) @ q) - _eye(k, q)).abs().max() <= eps)


def _make_orthogonal(a: Tensor) -> Tensor:
    """The Q factor of a tall ``a = QR`` with ``diag(R)`` non-negative."""
    from ... import linalg

    q, r = linalg.qr(a)
    d = _diagonal(r)
    return q * (d.sgn() if d.is_complex() else d.sign()).unsqueeze(-2)


class _Orthogonal(Module):
    base: Tensor

    def __init__(
        self, weight: Tensor, orthogonal_map: _OrthMaps, *, use_trivialization: bool = True
    ) -> None:
        super().__init__()
        if weight.is_complex() and orthogonal_map == _OrthMaps.householder:
            raise ValueError("The householder parametrization does not support complex tensors.")
        self.shape = weight.shape
        self.orthogonal_map = orthogonal_map
        if use_trivialization:
            self.register_buffer("base", None)

    def forward(self, X: Tensor) -> Tensor:
        from ... import cat, linalg, matrix_exp, zeros

        n, k = X.size(-2), X.size(-1)
        transposed = n < k
        if transposed:
            X = X.mT
            n, k = k, n
        if self.orthogonal_map in (_OrthMaps.matrix_exp, _OrthMaps.cayley):
            X = X.tril()
            if n != k:
                pad = zeros(n, n - k, dtype=X.dtype, device=X.device)
                X = cat([X, pad.expand(*X.shape[:-2], -1, -1)], dim=-1)
            A = X - _mH(X)
            if self.orthogonal_map == _OrthMaps.matrix_exp:
                Q = matrix_exp(A)
            else:
                eye = _eye(n, A)
                Q = linalg.solve(eye - 0.5 * A, eye + 0.5 * A)
            if n != k:
                Q = Q[..., :k]
        else:
            A = X.tril(diagonal=-1)
            tau = 2.0 / (1.0 + (A * A).sum(dim=-2))
            Q = linalg.householder_product(A, tau)
            Q = Q * _diagonal(X).int().unsqueeze(-2)
        if hasattr(self, "base"):
            Q = self.base @ Q
        if transposed:
            Q = Q.mT
        return Q

    def right_inverse(self, Q: Tensor) -> Tensor:
        from ... import cat, eye, randn

        if Q.shape != self.shape:
            raise ValueError(
                f"Expected a matrix or batch of matrices of shape {self.shape}. "
                f"Got a tensor of shape {Q.shape}."
            )
        with no_grad():
            q_init = Q
            n, k = Q.size(-2), Q.size(-1)
            transpose = n < k
            if transpose:
                Q = Q.mT
                n, k = k, n
            if not hasattr(self, "base"):
                if self.orthogonal_map != _OrthMaps.householder:
                    raise NotImplementedError(
                        "It is not possible to assign to the matrix exponential or the Cayley "
                        "parametrizations when use_trivialization=False."
                    )
                A = _householder_reflectors(Q)
                return A.mT if transpose else A
            if n == k:
                Q = Q.clone() if _is_orthogonal(Q) else _make_orthogonal(Q)
            else:  # complete to a square orthogonal matrix with random columns
                N = randn(*(Q.size()[:-2] + (n, n - k)), dtype=Q.dtype, device=Q.device)
                Q = _make_orthogonal(cat([Q, N], dim=-1))
            self.base = Q
            # the original that maps to base itself: -I (the Householder sign convention)
            n0, k0 = q_init.size(-2), q_init.size(-1)
            return -eye(n0, k0, dtype=Q.dtype, device=Q.device).expand(q_init.shape).clone()


def _householder_reflectors(Q: Tensor) -> Tensor:
    """PyTorch's ``geqrf``-based inverse of the Householder map without trivialization: the
    reflectors below the diagonal and the sign of R's diagonal on it."""
    from ... import geqrf

    A, tau = geqrf(Q)
    A = A.clone()
    d = A.diagonal(dim1=-2, dim2=-1)
    flip = 1.0 - 2.0 * (tau == 0.0).to(A.dtype)
    d.copy_(d.sign() * flip)
    return A


def orthogonal(
    module: Module,
    name: str = "weight",
    orthogonal_map: str | None = None,
    *,
    use_trivialization: bool = True,
) -> Module:
    r"""Apply an orthogonal or unitary parametrization to a matrix or a batch of matrices.

    The parametrized ``Q`` has orthonormal columns (``m >= n``) or rows (``m < n``), obtained
    with the matrix exponential or the Cayley map of a skew-symmetric matrix, or with a
    product of Householder reflectors. With ``use_trivialization=True`` (default) a base
    matrix is kept at ``module.parametrizations.<name>[0].base`` (dynamic trivialization).

    Args:
        module (nn.Module): module on which to register the parametrization.
        name (str, optional): name of the tensor to make orthogonal. Default: ``"weight"``.
        orthogonal_map (str, optional): ``"matrix_exp"``, ``"cayley"`` or ``"householder"``.
            Default: ``"matrix_exp"`` if the matrix is square or complex, ``"householder"``
            otherwise.
        use_trivialization (bool, optional): use the dynamic trivialization framework.

    Returns:
        The original module with an orthogonal parametrization registered to the weight.
    """
    weight = getattr(module, name, None)
    if not isinstance(weight, Tensor):
        raise ValueError(f"Module '{module}' has no parameter or buffer with name '{name}'")
    if weight.ndim < 2:
        raise ValueError(
            f"Expected a matrix or batch of matrices. Got a tensor of {weight.ndim} dimensions."
        )
    if orthogonal_map is None:
        orthogonal_map = (
            "matrix_exp"
            if weight.size(-2) == weight.size(-1) or weight.is_complex()
            else "householder"
        )
    orth_enum = getattr(_OrthMaps, orthogonal_map, None)
    if orth_enum is None:
        raise ValueError(
            'orthogonal_map has to be one of "matrix_exp", "cayley", '
            f'"householder". Got: {orthogonal_map}'
        )
    orth = _Orthogonal(weight, orth_enum, use_trivialization=use_trivialization)
    parametrize.register_parametrization(module, name, orth, unsafe=True)
    return module
