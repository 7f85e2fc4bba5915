"""``RemoteModule``: a module that lives on another RPC worker (PyTorch's
``torch.distributed.nn.api.remote_module.RemoteModule``).

``RemoteModule("ps/cpu", nn.EmbeddingBag, args=(100, 16))`` builds the module on worker ``ps``
(``rpc.remote``) and keeps an ``RRef`` to it; ``forward`` runs it there over ``rpc_sync``
(``forward_async``: ``rpc_async``), so inside a ``dist_autograd.context()`` gradients flow
back to the remote parameters. ``remote_parameters()`` gives ``RRef``s for a
``DistributedOptimizer``. As in PyTorch, the local object has no parameters of its own: the
methods that would act on them raise, and it pickles only inside RPC messages (to hand the
same remote module to another worker).
"""

from __future__ import annotations

from typing import Any

import ember
from ember.futures import Future
from ember.nn import Module

from ... import rpc
from ...rpc import _agent, _wire

__all__ = ["RemoteModule"]

_PARSE_ERROR = (
    "Could not parse remote_device: {}. The valid format is '<workername>/<device>' or "
    "'rank:<rank>/<device>' or '<device>'"
)


def _parse_remote_device(remote_device: str) -> tuple[str | int, str]:
    """``"worker/device"``, ``"rank:N/device"`` or ``"worker"`` -> ``(worker or rank, device)``
    (PyTorch's ``_remote_device`` rules; a RemoteModule needs a worker)."""
    if not isinstance(remote_device, str):
        raise TypeError(f"Invalid type for remote_device: {type(remote_device)}")
    fields = remote_device.split("/")
    if len(fields) == 2:
        worker, device = fields
    elif len(fields) == 1:
        if _is_device(fields[0]):
            raise ValueError(
                f"RemoteModule needs a worker in remote_device, got {remote_device!r} (a local "
                "device); use '<workername>/<device>' or 'rank:<rank>/<device>'"
            )
        worker, device = fields[0], "cpu"
    else:
        raise ValueError(_PARSE_ERROR.format(remote_device))
    if not worker or not _is_device(device):
        raise ValueError(_PARSE_ERROR.format(remote_device))
    parts = worker.split(":")
    if len(parts) == 2:
        if parts[0] != "rank" or not parts[1].isdigit():
            raise ValueError(_PARSE_ERROR.format(remote_device))
        return int(parts[1]), str(ember.device(device))
    if len(parts) > 2:
        raise ValueError(_PARSE_ERROR.format(remote_device))
    return worker, str(ember.device(device))


def _is_device(text: str) -> bool:
    try:
        ember.device(text)
    except Exception:
        return False
    return True


# ---- run on the owner ------------------------------------------------------------------------
def _create_module(module_cls, args, kwargs, device):
    module = module_cls(*args, **kwargs)
    if not isinstance(module, Module):
        raise ValueError(
            "Expect `module_cls(*args, **kwargs)` returns an instance of <class nn.Module>, "
            f"but it returns an instance of {type(module)}."
        )
    return module.to(device)


def _param_rrefs(module_rref, recurse: bool) -> list:
    return [rpc.RRef(p) for p in module_rref.local_value().parameters(recurse)]


def _remote_forward(module_rref, args, kwargs):
    return module_rref.local_value().forward(*args, **kwargs)


def _remote_mode(module_rref, mode: bool) -> None:
    module_rref.local_value().train(mode)


def _raise_not_supported(name: str) -> None:
    hint = ". Please use ``remote_parameters`` instead." if name == "parameters" else ""
    raise ValueError(f"Method ``{name}`` not supported for RemoteModule{hint}")


class RemoteModule(Module):
    """A module created on, and run by, another RPC worker.

    Args:
        remote_device: where the module lives: ``"<workername>/<device>"`` (``"ps/cpu"``),
            ``"rank:<rank>/<device>"``, or ``"<workername>"`` (on its CPU).
        module_cls: the module's class (or a function returning a module), called on the
            remote worker as ``module_cls(*args, **kwargs)``; it must be importable there.
        args, kwargs: its arguments.

    Example::

        >>> remote_linear = RemoteModule("worker1/cpu", nn.Linear, args=(20, 30))
        >>> out = remote_linear(ember.randn(128, 20))           # runs on worker1
        >>> fut = remote_linear.forward_async(ember.randn(128, 20))
    """

    def __init__(
        self,
        remote_device: str,
        module_cls: type[Module],
        args: tuple | None = None,
        kwargs: dict[str, Any] | None = None,
        _module_interface_cls: Any = None,
    ) -> None:
        super().__init__()
        if _agent._agent is None:
            raise AssertionError("RemoteModule only works in RPC.")
        if not callable(module_cls):
            raise TypeError(f"module_cls must be a module class, got {module_cls!r}")
        if args is not None and not isinstance(args, tuple | list):
            raise TypeError(f"RemoteModule args must be a tuple, got {type(args).__name__}")
        if kwargs is not None and not isinstance(kwargs, dict):
            raise TypeError(f"RemoteModule kwargs must be a dict, got {type(kwargs).__name__}")
        self._prepare_init(remote_device)
        # (``_module_interface_cls`` makes PyTorch's module TorchScript-able; ember runs the
        # module in Python either way)
        self.is_scriptable = False
        self.module_rref = rpc.remote(
            self.on,
            _create_module,
            (module_cls, tuple(args or ()), dict(kwargs or {}), self.device),
        )
        # PyTorch waits for the creation only on first use; failing here names the bad class
        self.module_rref._get_future().wait()

    def _prepare_init(self, remote_device: str) -> None:
        on, self.device = _parse_remote_device(remote_device)
        self.on = _agent.current().resolve(on).name  # an unknown worker fails here
        self.is_device_map_set = False

    @staticmethod
    def init_from_module_rref(
        remote_device: str, module_rref: rpc.RRef, _module_interface_cls: Any = None
    ) -> RemoteModule:
        """A ``RemoteModule`` over an existing ``RRef`` to a module (several may share one)."""
        out = RemoteModule.__new__(RemoteModule)
        Module.__init__(out)
        out._prepare_init(remote_device)
        if module_rref.owner().name != out.on:
            raise ValueError(
                f"module_rref is owned by {module_rref.owner().name!r}, but remote_device "
                f"names {out.on!r}"
            )
        out.is_scriptable = False
        out.module_rref = module_rref
        return out

    # ---- the remote module ----------------------------------------------------------------
    def forward(self, *args, **kwargs):
        """Run the remote module's ``forward`` there and return its result."""
        return rpc.rpc_sync(self.on, _remote_forward, (self.module_rref, args, kwargs))

    def forward_async(self, *args, **kwargs) -> Future:
        """``forward`` as an RPC future."""
        return rpc.rpc_async(self.on, _remote_forward, (self.module_rref, args, kwargs))

    def remote_parameters(self, recurse: bool = True) -> list:
        """``RRef``s to the remote module's parameters (for ``DistributedOptimizer``)."""
        return rpc.rpc_sync(self.on, _param_rrefs, args=(self.module_rref, recurse))

    def get_module_rref(self) -> rpc.RRef:
        """The ``RRef`` to the remote module."""
        return self.module_rref

    def train(self, mode: bool = True) -> RemoteModule:
        """Set the remote module's training mode."""
        rpc.rpc_sync(self.on, _remote_mode, (self.module_rref, bool(mode)))
        self.training = bool(mode)
        return self

    def eval(self) -> RemoteModule:
        return self.train(False)

    def __repr__(self) -> str:
        return f"RemoteModule(on={self.on!r}, device={self.device!r})"

    # ---- pickling: only inside RPC messages -------------------------------------------------
    def __reduce__(self):
        if not _wire.in_rpc_pickling():
            raise RuntimeError(
                "Cannot pickle RemoteModule in python pickler. RemoteModule can only be "
                "pickled when using RPC"
            )
        return (_rebuild, (self.on, self.device, self.module_rref, self.training))

    def __getstate__(self):
        raise RuntimeError(
            "Cannot pickle RemoteModule in python pickler. RemoteModule can only be pickled "
            "when using RPC"
        )


def _rebuild(on: str, device: str, module_rref, training: bool) -> RemoteModule:
    out = RemoteModule.__new__(RemoteModule)
    Module.__init__(out)
    out.on, out.device, out.is_device_map_set = on, device, False
    out.is_scriptable = False
    out.module_rref = module_rref
    out.training = training
    return out


# What acts on local parameters, buffers or submodules: a RemoteModule has none (PyTorch's list).
_NOT_SUPPORTED = (
    "register_buffer register_parameter add_module apply cuda ipu xpu cpu type float double "
    "half bfloat16 to register_backward_hook register_forward_pre_hook register_forward_hook "
    "state_dict load_state_dict parameters named_parameters buffers named_buffers children "
    "named_children modules named_modules requires_grad_ zero_grad share_memory"
).split()


def _not_supported(name: str):
    def method(self, *args, **kwargs):
        _raise_not_supported(name)

    method.__name__ = name
    method.__doc__ = f"Not supported for RemoteModule (raises ``ValueError``): ``{name}``."
    return method


for _name in _NOT_SUPPORTED:
    setattr(RemoteModule, _name, _not_supported(_name))
del _name
