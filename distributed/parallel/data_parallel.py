"""DataParallel, PyTorch's behaviour: one process drives several devices.

Every forward scatters the inputs over ``device_ids`` (tensors chunked along ``dim`` as
``Tensor.chunk`` does; lists, tuples and dicts recursively; anything else handed to every
replica), replicates the module on each device with differentiable copies of its parameters,
runs the replicas in threads (each inside its CuPy device context) and gathers the outputs on
``output_device``. Backward sums each replica's parameter gradient into the original parameter,
so the gradients are those of one big batch.

Buffers follow PyTorch: the replica on the module's own device (``device_ids[0]``) shares the
module's buffer tensors, so in-place updates there (BatchNorm's running statistics and
``num_batches_tracked``) are kept; the other replicas work on copies that are dropped after
forward. Replicas keep their parameter copies in ``_parameters`` (PyTorch moves them to plain
attributes) so modules that read ``_parameters`` directly, such as the RNNs, run on replicas.

The functions (``replicate``, ``scatter``, ``parallel_apply``, ``gather``, ``data_parallel``)
accept ``ember.device`` objects, the CPU included (a CPU replica works on copies), so the
machinery runs and is tested without GPUs; ``DataParallel`` itself takes the multi-device path
only for several CUDA devices.
"""

from __future__ import annotations

import operator
import threading
import warnings
from collections.abc import Sequence
from itertools import chain
from typing import Any

import ember
from ember import _interop
from ember.backend import _cupy
from ember.backend.device import device
from ember.nn import Module
from ember.utils.data._worker import ExceptionWrapper

from ._dp_functions import _as_device, _Broadcast, _Copy, _move, _on, _shared_first

__all__ = [
    "DataParallel",
    "data_parallel",
    "gather",
    "parallel_apply",
    "replicate",
    "scatter",
    "scatter_kwargs",
]


# ---- devices ----------------------------------------------------------------------------------
def _cuda_index(d) -> int:
    dev = _as_device(d)
    if dev.type != "cuda":
        raise ValueError(f"Expected a cuda device, but got: {dev}")
    return dev.index


# ---- replicate ----------------------------------------------------------------------------------
def _replica_shell(module: Module) -> Module:
    """A shallow copy of ``module`` (same attributes, hooks and training flag) whose parameter,
    buffer and child tables are refilled by ``replicate``."""
    custom = getattr(module, "_replicate_for_data_parallel", None)
    replica = custom() if custom is not None else object.__new__(type(module))
    if custom is None:
        state = module.__dict__.copy()
        state["_is_replica"] = True
        object.__setattr__(replica, "__dict__", state)
    for table in ("_parameters", "_buffers", "_modules"):
        object.__setattr__(replica, table, {})
    return replica


def replicate(network: Module, devices: Sequence, detach: bool = False) -> list[Module]:
    r"""Copies of ``network``, one per device in ``devices``.

    Parameters are copied differentiably (unless ``detach``): backward sums every replica's
    gradient into the original parameter. The first replica on the parameters' own device
    shares their memory and the module's buffer tensors, as in PyTorch.
    """
    devices = [_as_device(d) for d in devices]
    if not devices:
        return []
    copies: dict[int, tuple] = {}
    for p in network.parameters():
        copies[id(p)] = _Broadcast.apply(p.detach() if detach else p, devices)
    for b in network.buffers():
        if b.requires_grad and not detach:
            copies[id(b)] = _Broadcast.apply(b, devices)
        else:
            copies[id(b)] = tuple(
                _shared_first(
                    b,
                    devices,
                    b.device,
                    lambda t, d: _interop.wrap(_move(_interop.array_of(t), d, copy=True)),
                )
            )

    modules = list(network.modules())
    index = {id(m): i for i, m in enumerate(modules)}
    shells = [[_replica_shell(m) for m in modules] for _ in devices]
    for i, m in enumerate(modules):
        for j, replicas in enumerate(shells):
            r = replicas[i]
            for key, child in m._modules.items():
                r._modules[key] = None if child is None else replicas[index[id(child)]]
            for key, p in m._parameters.items():
                r._parameters[key] = None if p is None else copies[id(p)][j]
            for key, b in m._buffers.items():
                r._buffers[key] = None if b is None else copies[id(b)][j]
    return [replicas[0] for replicas in shells]


# ---- scatter / gather ---------------------------------------------------------------------------
def _is_namedtuple(obj) -> bool:
    return isinstance(obj, tuple) and hasattr(obj, "_asdict") and hasattr(obj, "_fields")


def _scatter_tensor(t, devices, dim):
    pieces = ember.chunk(t, len(devices), dim)  # may be fewer than the devices (small batch)
    return tuple(p if p.device == d else _Copy.apply(p, d) for p, d in zip(pieces, devices))


def scatter(inputs, target_gpus: Sequence, dim: int = 0):
    r"""Split ``inputs`` over ``target_gpus``: tensors in chunks along ``dim``; tuples, lists,
    namedtuples and dicts recursively; other objects referenced once per device. The result has
    one entry per chunk, so fewer entries than devices when a batch is smaller."""
    devices = [_as_device(d) for d in target_gpus]

    def scatter_map(obj):
        if isinstance(obj, ember.Tensor):
            return _scatter_tensor(obj, devices, dim)
        if _is_namedtuple(obj):
            return [type(obj)(*args) for args in zip(*map(scatter_map, obj))]
        if isinstance(obj, tuple) and len(obj) > 0:
            return list(zip(*map(scatter_map, obj)))
        if isinstance(obj, list) and len(obj) > 0:
            return [list(i) for i in zip(*map(scatter_map, obj))]
        if isinstance(obj, dict) and len(obj) > 0:
            return [type(obj)(i) for i in zip(*map(scatter_map, obj.items()))]
        return [obj for _ in devices]

    return scatter_map(inputs)


def scatter_kwargs(
    inputs: tuple, kwargs: dict | None, target_gpus: Sequence, dim: int = 0
) -> tuple[tuple, tuple]:
    r"""``scatter`` for positional and keyword arguments, padded to the same number of replicas."""
    scattered_inputs = scatter(inputs, target_gpus, dim) if inputs else []
    scattered_kwargs = scatter(kwargs, target_gpus, dim) if kwargs else []
    if len(scattered_inputs) < len(scattered_kwargs):
        scattered_inputs.extend(() for _ in range(len(scattered_kwargs) - len(scattered_inputs)))
    elif len(scattered_kwargs) < len(scattered_inputs):
        scattered_kwargs.extend({} for _ in range(len(scattered_inputs) - len(scattered_kwargs)))
    return tuple(scattered_inputs), tuple(scattered_kwargs)


def _gather_tensors(tensors, target: device, dim: int):
    if dim == 0 and all(t.dim() == 0 for t in tensors):
        warnings.warn(
            "Was asked to gather along dimension 0, but all input tensors were "
            "scalars; will instead unsqueeze and return a vector.",
            stacklevel=3,
        )
        tensors = [t.reshape(1) for t in tensors]
    moved = [t if t.device == target else _Copy.apply(t, target) for t in tensors]
    with _on(target):
        return ember.cat(moved, dim)


def gather(outputs: Sequence, target_device, dim: int = 0):
    r"""Concatenate the replicas' ``outputs`` on ``target_device`` along ``dim`` (differentiably),
    recursing into dicts, namedtuples and other sequences."""
    target = _as_device(target_device)

    def gather_map(outs):
        out = outs[0]
        if isinstance(out, ember.Tensor):
            return _gather_tensors(outs, target, dim)
        if out is None:
            return None
        if isinstance(out, dict):
            if not all(len(out) == len(d) for d in outs):
                raise ValueError("All dicts must have the same number of keys")
            return type(out)((k, gather_map([d[k] for d in outs])) for k in out)
        if _is_namedtuple(out):
            return type(out)._make(map(gather_map, zip(*outs, strict=True)))
        return type(out)(map(gather_map, zip(*outs, strict=True)))

    return gather_map(outputs)


# ---- parallel_apply -----------------------------------------------------------------------------
def _first_tensor(obj):
    if isinstance(obj, ember.Tensor):
        return obj
    if isinstance(obj, dict):
        obj = list(obj.values())
    if isinstance(obj, (list, tuple)):
        for o in obj:
            t = _first_tensor(o)
            if t is not None:
                return t
    return None


def parallel_apply(
    modules: Sequence[Module],
    inputs: Sequence[Any],
    kwargs_tup: Sequence[dict] | None = None,
    devices: Sequence | None = None,
) -> list[Any]:
    r"""Run ``modules[i](*inputs[i], **kwargs_tup[i])`` for every ``i`` in threads, each inside
    the context of ``devices[i]`` (or the device of its first tensor input). An exception in a
    replica is raised again here, naming the replica. An element of ``inputs`` that is not a
    list or tuple is the one positional argument."""
    n = len(modules)
    if len(inputs) != n:
        raise AssertionError(
            f"The number of modules {n} is not equal to the number of inputs {len(inputs)}"
        )
    if kwargs_tup is None:
        kwargs_tup = ({},) * n
    elif len(kwargs_tup) != n:
        raise AssertionError(
            f"The number of modules {n} is not equal to the number of kwargs_tup {len(kwargs_tup)}"
        )
    if devices is None:
        devices = [None] * n
    elif len(devices) != n:
        raise AssertionError(
            f"The number of modules {n} is not equal to the number of devices {len(devices)}"
        )
    devices = [None if d is None else _as_device(d) for d in devices]
    grad_enabled = ember.is_grad_enabled()
    results: dict[int, Any] = {}
    lock = threading.Lock()

    def worker(i, module, input, kwargs, dev):
        ember.set_grad_enabled(grad_enabled)  # grad mode is per thread
        try:
            if dev is None:
                t = _first_tensor(input)
                if t is None:
                    raise RuntimeError(
                        "no device was provided and no tensor input was found; "
                        "device cannot be resolved"
                    )
                dev = t.device
            where = f"on device {dev.index if dev.type == 'cuda' else dev}"
            with _on(dev):
                output = module(
                    *(input if isinstance(input, (list, tuple)) else (input,)), **kwargs
                )
            with lock:
                results[i] = output
        except Exception:
            with lock:
                results[i] = ExceptionWrapper(
                    where=f"in replica {i}" + (f" {where}" if dev is not None else "")
                )

    if n > 1:
        threads = [
            threading.Thread(target=worker, args=args)
            for args in zip(range(n), modules, inputs, kwargs_tup, devices)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    elif n == 1:
        worker(0, modules[0], inputs[0], kwargs_tup[0], devices[0])
    outputs = []
    for i in range(n):
        output = results[i]
        if isinstance(output, ExceptionWrapper):
            output.reraise()
        outputs.append(output)
    return outputs


# ---- the functional form and the module ---------------------------------------------------------
def _check_on(module: Module, src: device) -> None:
    for t in chain(module.parameters(), module.buffers()):
        if t.device != src:
            raise RuntimeError(
                "module must have its parameters and buffers on device "
                f"{src} (device_ids[0]) but found one of them on device: "
                f"{t.device}"
            )


def data_parallel(
    module: Module,
    inputs,
    device_ids: Sequence | None = None,
    output_device=None,
    dim: int = 0,
    module_kwargs: dict | None = None,
):
    r"""Evaluate ``module(*inputs, **module_kwargs)`` in parallel over ``device_ids`` (the
    functional form of :class:`DataParallel`). ``device_ids`` may name CPU devices too."""
    if not isinstance(inputs, tuple):
        inputs = (inputs,) if inputs is not None else ()
    if device_ids is None:
        if not ember.cuda.is_available():
            raise RuntimeError("device type could not be determined")
        device_ids = list(range(ember.cuda.device_count()))
    devices = [_as_device(d) for d in device_ids]
    output = devices[0] if output_device is None else _as_device(output_device)
    _check_on(module, devices[0])
    inputs, module_kwargs = scatter_kwargs(inputs, module_kwargs, devices, dim)
    if not inputs and not module_kwargs:  # no arguments: run once, on the first device
        inputs, module_kwargs = ((),), ({},)
    if len(devices) == 1:
        return module(*inputs[0], **module_kwargs[0])
    used = devices[: len(inputs)]
    replicas = replicate(module, used)
    outputs = parallel_apply(replicas, inputs, module_kwargs, used)
    return gather(outputs, output, dim)


def _check_balance(device_ids: list[int]) -> None:
    """PyTorch's warning when one GPU has under 75% of another's memory or multiprocessors."""
    runtime = _cupy.require_cupy().cuda.runtime
    props = [runtime.getDeviceProperties(i) for i in device_ids]
    for key in ("totalGlobalMem", "multiProcessorCount"):
        values = [p[key] for p in props]
        lo, lo_val = min(enumerate(values), key=operator.itemgetter(1))
        hi, hi_val = max(enumerate(values), key=operator.itemgetter(1))
        if lo_val / hi_val < 0.75:
            warnings.warn(
                f"There is an imbalance between your GPUs. You may want to exclude GPU "
                f"{device_ids[lo]} which has less than 75% of the memory or cores of GPU "
                f"{device_ids[hi]}. You can do so by setting the device_ids argument to "
                "DataParallel, or by setting the CUDA_VISIBLE_DEVICES environment variable.",
                stacklevel=3,
            )
            return


class DataParallel(Module):
    r"""Data parallelism over the CUDA devices of one process (PyTorch's ``nn.DataParallel``).

    Each forward splits the inputs along ``dim`` over ``device_ids`` (default: all GPUs),
    replicates ``module`` on each, runs the replicas in threads and gathers the outputs on
    ``output_device`` (default ``device_ids[0]``); backward sums the replicas' gradients into
    ``module``'s parameters. The module must be on ``device_ids[0]``. Without CUDA the wrapper
    simply calls the module; with one device it moves the module and the inputs there.

    ``state_dict()`` has no ``module.`` prefix; ``load_state_dict`` accepts keys with or
    without it. A module returning a scalar gives a vector, one entry per replica.

    Example::

        >>> net = ember.nn.DataParallel(model.to("cuda:0"), device_ids=[0, 1])
        >>> out = net(x)  # x may be anywhere, the CPU included
    """

    def __init__(
        self, module: Module, device_ids: Sequence | None = None, output_device=None, dim: int = 0
    ) -> None:
        super().__init__()
        self.module = module
        if not ember.cuda.is_available():
            self.device_ids = []
            return
        if device_ids is None:
            device_ids = list(range(ember.cuda.device_count()))
        if output_device is None:
            output_device = device_ids[0]
        self.dim = dim
        self.device_ids = [_cuda_index(d) for d in device_ids]
        self.output_device = _cuda_index(output_device)
        self.src_device_obj = device("cuda", self.device_ids[0])
        _check_balance(self.device_ids)
        if len(self.device_ids) == 1:
            self.module.to(self.src_device_obj)

    def forward(self, *inputs, **kwargs):
        if not self.device_ids:
            return self.module(*inputs, **kwargs)
        _check_on(self.module, self.src_device_obj)
        inputs, module_kwargs = self.scatter(inputs, kwargs, self.device_ids)
        if not inputs and not module_kwargs:  # no arguments: run once, on device_ids[0]
            inputs, module_kwargs = ((),), ({},)
        if len(self.device_ids) == 1:
            return self.module(*inputs[0], **module_kwargs[0])
        replicas = self.replicate(self.module, self.device_ids[: len(inputs)])
        outputs = self.parallel_apply(replicas, inputs, module_kwargs)
        return self.gather(outputs, self.output_device)

    def replicate(self, module: Module, device_ids: Sequence) -> list[Module]:
        return replicate(module, device_ids, not ember.is_grad_enabled())

    def scatter(self, inputs: tuple, kwargs: dict | None, device_ids: Sequence):
        return scatter_kwargs(inputs, kwargs, device_ids, dim=self.dim)

    def parallel_apply(self, replicas: Sequence[Module], inputs, kwargs) -> list[Any]:
        return parallel_apply(replicas, inputs, kwargs, self.device_ids[: len(replicas)])

    def gather(self, outputs, output_device):
        return gather(outputs, output_device, dim=self.dim)

    # ---- state dict without the "module." surprise (as DistributedDataParallel) -------------
    def state_dict(self, *args, **kwargs):
        return self.module.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, **kwargs):
        from .ddp import _strip_module_prefix  # ddp imports this module

        return self.module.load_state_dict(
            _strip_module_prefix(state_dict), strict=strict, **kwargs
        )
