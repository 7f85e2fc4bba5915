"""Spectral normalization (Miyato et al., 2018, https://arxiv.org/abs/1802.05957),
PyTorch's hook-based ``torch.nn.utils.spectral_norm``: ``W_SN = W / sigma(W)`` with
``sigma`` estimated by power iteration before every forward (in training mode).

The module keeps ``<name>_orig`` (parameter), ``<name>_u`` and ``<name>_v`` (buffers), as
PyTorch's state dicts do.
"""

from __future__ import annotations

from typing import Any, TypeVar

from ...autograd.grad_mode import no_grad
from ...tensor import Tensor
from .. import functional as F
from ..module import Module
from ..parameter import Parameter, UninitializedParameter
from ._reparam_hooks import _check_unhooked, _remove_hook

__all__ = [
    "SpectralNorm",
    "SpectralNormLoadStateDictPreHook",
    "SpectralNormStateDictHook",
    "spectral_norm",
    "remove_spectral_norm",
]


def _randn(n: int, like: Tensor) -> Tensor:
    from ...creation import randn

    return randn(n, dtype=like.dtype, device=like.device)


def _to_matrix(weight: Tensor, dim: int) -> Tensor:
    """``weight`` as a matrix with dimension ``dim`` as its rows."""
    if dim != 0:
        weight = weight.permute(dim, *[d for d in range(weight.dim()) if d != dim])
    return weight.reshape(weight.size(0), -1)


def _power_iteration(
    weight_mat: Tensor, u: Tensor, v: Tensor, n: int, eps: float, v_first: bool
) -> None:
    """``n`` power-iteration steps on the buffers ``u``, ``v`` (updated in place)."""
    with no_grad():
        for _ in range(n):
            if v_first:
                v.copy_(F.normalize(weight_mat.t().mv(u), dim=0, eps=eps))
                u.copy_(F.normalize(weight_mat.mv(v), dim=0, eps=eps))
            else:
                u.copy_(F.normalize(weight_mat.mv(v), dim=0, eps=eps))
                v.copy_(F.normalize(weight_mat.t().mv(u), dim=0, eps=eps))


class SpectralNorm:
    """The forward pre-hook that sets ``module.<name> = <name>_orig / sigma``."""

    _version: int = 1
    name: str
    dim: int
    n_power_iterations: int
    eps: float

    def __init__(
        self, name: str = "weight", n_power_iterations: int = 1, dim: int = 0, eps: float = 1e-12
    ) -> None:
        self.name = name
        self.dim = dim
        if n_power_iterations <= 0:
            raise ValueError(
                "Expected n_power_iterations to be positive, but got "
                f"n_power_iterations={n_power_iterations}"
            )
        self.n_power_iterations = n_power_iterations
        self.eps = eps

    def reshape_weight_to_matrix(self, weight: Tensor) -> Tensor:
        return _to_matrix(weight, self.dim)

    def compute_weight(self, module: Module, do_power_iteration: bool) -> Tensor:
        weight = getattr(module, self.name + "_orig")
        u = getattr(module, self.name + "_u")
        v = getattr(module, self.name + "_v")
        weight_mat = self.reshape_weight_to_matrix(weight)
        if do_power_iteration:
            _power_iteration(weight_mat, u, v, self.n_power_iterations, self.eps, True)
            # clones: the buffers change in place at the next forward, while this
            # forward's graph still needs these values
            u, v = u.clone(), v.clone()
        sigma = u.dot(weight_mat.mv(v))
        return weight / sigma

    def remove(self, module: Module) -> None:
        with no_grad():
            weight = self.compute_weight(module, do_power_iteration=False)
        delattr(module, self.name)
        delattr(module, self.name + "_u")
        delattr(module, self.name + "_v")
        delattr(module, self.name + "_orig")
        module.register_parameter(self.name, Parameter(weight.detach()))

    def __call__(self, module: Module, inputs: Any) -> None:
        setattr(module, self.name, self.compute_weight(module, module.training))

    @staticmethod
    def apply(
        module: Module, name: str, n_power_iterations: int, dim: int, eps: float
    ) -> SpectralNorm:
        _check_unhooked(module, SpectralNorm, name, "spectral_norm")
        fn = SpectralNorm(name, n_power_iterations, dim, eps)
        weight = module._parameters[name]
        if weight is None:
            raise ValueError(f"`SpectralNorm` cannot be applied as parameter `{name}` is None")
        if isinstance(weight, UninitializedParameter):
            raise ValueError(
                "The module passed to `SpectralNorm` can't have uninitialized parameters. Make "
                "sure to run the dummy forward before applying spectral normalization"
            )
        with no_grad():
            h, w = fn.reshape_weight_to_matrix(weight).shape
            u = F.normalize(_randn(h, weight), dim=0, eps=fn.eps)
            v = F.normalize(_randn(w, weight), dim=0, eps=fn.eps)
        delattr(module, fn.name)
        module.register_parameter(fn.name + "_orig", weight)
        # a plain attribute until the first forward replaces it (PyTorch does the same)
        setattr(module, fn.name, weight.detach())
        module.register_buffer(fn.name + "_u", u)
        module.register_buffer(fn.name + "_v", v)
        module.register_forward_pre_hook(fn)
        module._register_state_dict_hook(SpectralNormStateDictHook(fn))
        module._register_load_state_dict_pre_hook(SpectralNormLoadStateDictPreHook(fn))
        return fn


class SpectralNormLoadStateDictPreHook:
    """Loads checkpoints written before ``<name>_v`` was saved (version < 1): recovers
    ``v`` from ``<name>_orig``, ``<name>`` and ``<name>_u``."""

    def __init__(self, fn: SpectralNorm) -> None:
        self.fn = fn

    def __call__(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ) -> None:
        fn = self.fn
        version = local_metadata.get("spectral_norm", {}).get(fn.name + ".version", None)
        if version is not None and version >= 1:
            return
        key = prefix + fn.name
        if (
            version is None
            and key not in state_dict
            and all(key + s in state_dict for s in ("_orig", "_u", "_v"))
        ):
            return  # a current checkpoint without metadata
        missing = [key + s for s in ("_orig", "", "_u") if key + s not in state_dict]
        if missing:
            if strict:
                missing_keys.extend(missing)
            return
        from ...linalg import pinv

        with no_grad():
            weight_orig = state_dict[key + "_orig"]
            weight = state_dict.pop(key)
            sigma = (weight_orig / weight).mean()
            mat = fn.reshape_weight_to_matrix(weight_orig)
            u = state_dict[key + "_u"]
            v = (pinv(mat.t().mm(mat)) @ mat.t() @ u.unsqueeze(1)).squeeze(1)
            state_dict[key + "_v"] = v * (sigma / u.dot(mat.mv(v)))


class SpectralNormStateDictHook:
    """Records the spectral-norm layout version in the state dict's metadata."""

    def __init__(self, fn: SpectralNorm) -> None:
        self.fn = fn

    def __call__(self, module, state_dict, prefix, local_metadata) -> None:
        meta = local_metadata.setdefault("spectral_norm", {})
        key = self.fn.name + ".version"
        if key in meta:
            raise RuntimeError(f"Unexpected key in metadata['spectral_norm']: {key}")
        meta[key] = self.fn._version


T_module = TypeVar("T_module", bound=Module)


def spectral_norm(
    module: T_module,
    name: str = "weight",
    n_power_iterations: int = 1,
    eps: float = 1e-12,
    dim: int | None = None,
) -> T_module:
    r"""Apply spectral normalization to a parameter in the given module (hook-based form).

    .. math:: \mathbf{W}_{SN} = \dfrac{\mathbf{W}}{\sigma(\mathbf{W})}

    Prefer :func:`ember.nn.utils.parametrizations.spectral_norm`.

    Args:
        module (nn.Module): containing module.
        name (str, optional): name of weight parameter.
        n_power_iterations (int, optional): power iterations per forward.
        eps (float, optional): epsilon for numerical stability in calculating norms.
        dim (int, optional): dimension corresponding to number of outputs (default ``0``,
            ``1`` for ``ConvTranspose{1,2,3}d``).

    Returns:
        The original module with the spectral norm hook.
    """
    if dim is None:
        from ..modules.conv import ConvTranspose1d, ConvTranspose2d, ConvTranspose3d

        dim = 1 if isinstance(module, (ConvTranspose1d, ConvTranspose2d, ConvTranspose3d)) else 0
    SpectralNorm.apply(module, name, n_power_iterations, dim, eps)
    return module


def remove_spectral_norm(module: T_module, name: str = "weight") -> T_module:
    r"""Remove the spectral normalization reparameterization from a module.

    Args:
        module (Module): containing module.
        name (str, optional): name of weight parameter.
    """
    _remove_hook(module, SpectralNorm, name, "spectral_norm")
    for hooks, kind in (
        (module._state_dict_hooks, SpectralNormStateDictHook),
        (module._load_state_dict_pre_hooks, SpectralNormLoadStateDictPreHook),
    ):
        for k, hook in hooks.items():
            if isinstance(hook, kind) and hook.fn.name == name:
                del hooks[k]
                break
    return module
