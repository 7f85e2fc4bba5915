"""Parallel styles (PyTorch's ``torch.distributed.tensor.parallel.style``): how one module's
parameters are sharded and how its inputs and outputs are laid out.

A style shards the module's parameters into ``DTensorParameter``s, registers a forward
pre-hook that turns the inputs into DTensors of the layout the module wants, a forward hook
that lays the output out as asked, and gives the module a forward that computes with
DTensors (ember's ``nn.functional`` runs on plain tensors, so the forward of a parallelized
``Linear``/``Embedding``/``LayerNorm``/``RMSNorm``/``Dropout`` calls ``tensor.ops``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from .... import nn
from .._api import DTensor, distribute_tensor
from ..placement_types import Placement, Replicate, Shard
from ._forwards import forward_for as _forward_for
from ._forwards import install_forward as _install_forward
from ._param import DTensorParameter

__all__ = [
    "ColwiseParallel",
    "ParallelStyle",
    "PrepareModuleInput",
    "PrepareModuleInputOutput",
    "PrepareModuleOutput",
    "RowwiseParallel",
    "SequenceParallel",
]


class ParallelStyle(ABC):
    """Base class of the styles ``parallelize_module`` applies."""

    src_data_rank: int | None = 0

    @abstractmethod
    def _apply(self, module: nn.Module, device_mesh, fqn: str = "") -> nn.Module: ...

    def _validate(self, module: nn.Module, device_mesh, fqn: str = "") -> None:
        """Raise if ``_apply`` would fail (checked for every plan entry before any applies)."""
        return None


# ---- helpers -----------------------------------------------------------------------------------
def _one(layout, what: str) -> Placement | None:
    if layout is None:
        return None
    if isinstance(layout, (tuple, list)):
        if len(layout) != 1:
            raise ValueError(f"{what}: expected one placement for a 1-d mesh, got {layout}")
        layout = layout[0]
    if not isinstance(layout, Placement):
        raise TypeError(f"{what}: expected a Placement, got {layout!r}")
    return layout


def _to_dtensor(x, mesh, layout: Placement, what: str):
    """A DTensor of ``x``: a plain tensor is this rank's piece under ``layout``; a DTensor
    passes as it is (and is redistributed to the desired layout after, as in PyTorch)."""
    if isinstance(x, DTensor):
        return x
    import ember

    if not isinstance(x, ember.Tensor):
        raise TypeError(f"{what}: expected a Tensor or DTensor input, got {type(x).__name__}")
    return DTensor.from_local(x, mesh, (layout,))


def _redistribute(x: DTensor, layout: Placement | None) -> DTensor:
    if layout is None or x.placements == (layout,):
        return x
    return x.redistribute(x.device_mesh, (layout,))


def _shard_param(module, name: str, mesh, placement: Placement, fqn: str, style: str, src):
    """Replace ``module.<name>`` by its DTensor piece (rank ``src``'s values, as PyTorch)."""
    p = getattr(module, name, None)
    if p is None:
        return
    if isinstance(placement, Shard):
        _check_divisible(module, name, p, placement, mesh, fqn, style)
    dt = distribute_tensor(p.detach(), mesh, [placement], src_data_rank=src)
    setattr(module, name, DTensorParameter(dt, requires_grad=p.requires_grad))


def _check_divisible(module, name: str, p, placement: Shard, mesh, fqn: str, style: str):
    dim = placement.dim % p.dim()
    k = mesh.size()
    if p.shape[dim] % k:
        where = f"{fqn}.{name}" if fqn else name
        raise ValueError(
            f"{style}: {type(module).__name__} '{fqn or '<root>'}' parameter '{where}' "
            f"dimension {dim} of size {p.shape[dim]} is not divisible by the mesh size {k}"
        )


# ---- Colwise / Rowwise --------------------------------------------------------------------------
class _LinearStyle(ParallelStyle):
    _default_in: Placement
    _default_out: Placement

    def __init__(
        self,
        *,
        input_layouts: Placement | None = None,
        output_layouts: Placement | None = None,
        use_local_output: bool = True,
    ) -> None:
        name = type(self).__name__
        self.input_layouts = (_one(input_layouts, name) or self._default_in,)
        self.output_layouts = (_one(output_layouts, name) or self._default_out,)
        self.use_local_output = use_local_output

    def _desired_input(self, module) -> Placement:
        raise NotImplementedError

    def _input_layout(self, module) -> Placement:
        return self.input_layouts[0]

    def _params(self, module) -> dict[str, Placement]:
        raise NotImplementedError

    def _validate(self, module: nn.Module, device_mesh, fqn: str = "") -> None:
        name = type(self).__name__
        if not isinstance(module, (nn.Linear, nn.Embedding)):
            raise NotImplementedError(
                f"{name} only supports nn.Linear and nn.Embedding, got "
                f"{type(module).__name__} '{fqn or '<root>'}'"
            )
        for pname, placement in self._params(module).items():
            p = getattr(module, pname, None)
            if p is not None and isinstance(placement, Shard):
                _check_divisible(module, pname, p, placement, device_mesh, fqn, name)

    def _apply(self, module: nn.Module, device_mesh, fqn: str = "") -> nn.Module:
        name = type(self).__name__
        self._validate(module, device_mesh, fqn)
        for pname, placement in self._params(module).items():
            _shard_param(module, pname, device_mesh, placement, fqn, name, self.src_data_rank)
        _install_forward(module, fqn, name)
        desired = self._desired_input(module)
        layout, out_layout = self._input_layout(module), self.output_layouts[0]
        local = self.use_local_output

        def pre_hook(mod, args):
            x = _to_dtensor(args[0], device_mesh, layout, f"{name} '{fqn or '<root>'}'")
            return (_redistribute(x, desired), *args[1:])

        def post_hook(mod, args, out):
            out = _redistribute(out, out_layout)
            return out.to_local() if local else out

        module.register_forward_pre_hook(pre_hook)
        module.register_forward_hook(post_hook)
        return module

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(input_layouts={self.input_layouts}, "
            f"output_layouts={self.output_layouts}, use_local_output={self.use_local_output})"
        )


class ColwiseParallel(_LinearStyle):
    """Shard an ``nn.Linear`` by output features (``weight``/``bias`` ``Shard(0)``) or an
    ``nn.Embedding`` by embedding dim (``Shard(1)``); input ``Replicate()``, output
    ``Shard(-1)`` by default, returned as the local piece when ``use_local_output``.

    Args:
        input_layouts (Placement, optional): the layout of the input when it is a plain
            tensor (the local piece). Default: ``Replicate()``.
        output_layouts (Placement, optional): the output's layout. Default: ``Shard(-1)``.
        use_local_output (bool, optional): return ``to_local()`` of the output. Default: ``True``.
    """

    _default_in = Replicate()
    _default_out = Shard(-1)

    def _desired_input(self, module) -> Placement:
        return Replicate()

    def _params(self, module) -> dict[str, Placement]:
        if isinstance(module, nn.Embedding):
            return {"weight": Shard(1)}
        return {"weight": Shard(0), "bias": Shard(0)}


class RowwiseParallel(_LinearStyle):
    """Shard an ``nn.Linear`` by input features (``weight`` ``Shard(1)``, ``bias``
    replicated) or an ``nn.Embedding`` by vocabulary (``weight`` ``Shard(0)``); input
    ``Shard(-1)`` (``Replicate()`` for an embedding), output ``Replicate()`` by default: the
    partial sums are all-reduced, or reduce-scattered for ``output_layouts=Shard(1)``.

    Args: as for ``ColwiseParallel``.
    """

    _default_in = Shard(-1)
    _default_out = Replicate()

    def __init__(self, *, input_layouts=None, output_layouts=None, use_local_output=True):
        self._embedding_default = input_layouts is None
        super().__init__(
            input_layouts=input_layouts,
            output_layouts=output_layouts,
            use_local_output=use_local_output,
        )

    def _desired_input(self, module) -> Placement:
        return Replicate() if isinstance(module, nn.Embedding) else Shard(-1)

    def _input_layout(self, module) -> Placement:
        # an embedding takes whole index tensors unless told otherwise
        if isinstance(module, nn.Embedding) and self._embedding_default:
            return Replicate()
        return self.input_layouts[0]

    def _params(self, module) -> dict[str, Placement]:
        if isinstance(module, nn.Embedding):
            return {"weight": Shard(0)}
        return {"weight": Shard(1), "bias": Replicate()}


# ---- SequenceParallel ----------------------------------------------------------------------
class SequenceParallel(ParallelStyle):
    """Run a norm or dropout on sequence shards: parameters replicated, input
    ``Shard(sequence_dim)`` (a plain input is taken as this rank's sequence piece), output a
    ``Shard(sequence_dim)`` DTensor (its local piece when ``use_local_output``). The replicated
    parameters' gradients are summed over the mesh in backward.

    Args:
        sequence_dim (int, optional): Default: ``1``.
        use_local_output (bool, optional): Default: ``False``.
    """

    def __init__(self, *, sequence_dim: int = 1, use_local_output: bool = False) -> None:
        self.sequence_dim = sequence_dim
        self.use_local_output = use_local_output

    def _validate(self, module: nn.Module, device_mesh, fqn: str = "") -> None:
        _forward_for(module, fqn, "SequenceParallel")

    def _apply(self, module: nn.Module, device_mesh, fqn: str = "") -> nn.Module:
        _install_forward(module, fqn, "SequenceParallel")
        for pname, _ in list(module.named_parameters(recurse=False)):
            _shard_param(
                module, pname, device_mesh, Replicate(), fqn, "SequenceParallel", self.src_data_rank
            )
        layout, local = Shard(self.sequence_dim), self.use_local_output

        def pre_hook(mod, args):
            x = args[0]
            if isinstance(x, DTensor):
                x = _redistribute(x, Shard(self.sequence_dim % x.ndim))
            else:
                x = DTensor.from_local(x, device_mesh, (layout,))
            return (x, *args[1:])

        def post_hook(mod, args, out):
            return out.to_local() if local else out

        module.register_forward_pre_hook(pre_hook)
        module.register_forward_hook(post_hook)
        return module

    def __repr__(self) -> str:
        return f"SequenceParallel(sequence_dim={self.sequence_dim})"


# ---- PrepareModuleInput / PrepareModuleOutput ----------------------------------------------
def _layouts(layouts, what: str) -> tuple | None:
    if layouts is None:
        return None
    seq = tuple(layouts) if isinstance(layouts, (tuple, list)) else (layouts,)
    for p in seq:
        if p is not None and not isinstance(p, Placement):
            raise TypeError(f"{what}: layouts must be Placements or None, got {p!r}")
    return seq


def _prepare(values, layouts, desired, mesh, use_local: bool, what: str):
    if layouts is None:
        return values
    if desired is None or len(desired) != len(layouts):
        raise ValueError(
            f"{what}: input_layouts {layouts} and desired_input_layouts {desired} "
            "must have the same length"
        )
    if len(values) < len(layouts):
        raise ValueError(
            f"{what}: module got {len(values)} inputs but {len(layouts)} layouts were given"
        )
    out = list(values)
    for i, (have, want) in enumerate(zip(layouts, desired)):
        if have is None:
            continue
        x = _to_dtensor(values[i], mesh, have, what)
        x = _redistribute(x, want)
        out[i] = x.to_local() if use_local else x
    return tuple(out)


class PrepareModuleInput(ParallelStyle):
    """Lay out a module's inputs: each plain tensor input is taken as this rank's piece under
    ``input_layouts[i]`` and redistributed to ``desired_input_layouts[i]`` (``None`` leaves
    that input alone). Keyword inputs likewise with the ``input_kwarg_layouts`` dicts.

    Args:
        input_layouts, desired_input_layouts (Placement | tuple, optional)
        input_kwarg_layouts, desired_input_kwarg_layouts (dict[str, Placement], optional)
        use_local_output (bool, optional): hand the module local pieces. Default: ``False``.
    """

    def __init__(
        self,
        *,
        input_layouts=None,
        desired_input_layouts=None,
        input_kwarg_layouts: dict | None = None,
        desired_input_kwarg_layouts: dict | None = None,
        use_local_output: bool = False,
    ) -> None:
        self.input_layouts = _layouts(input_layouts, "PrepareModuleInput")
        self.desired_input_layouts = _layouts(desired_input_layouts, "PrepareModuleInput")
        self.input_kwarg_layouts = dict(input_kwarg_layouts or {})
        self.desired_input_kwarg_layouts = dict(desired_input_kwarg_layouts or {})
        self.use_local_output = use_local_output

    def _apply(self, module: nn.Module, device_mesh, fqn: str = "") -> nn.Module:
        what = f"PrepareModuleInput '{fqn or '<root>'}'"

        def pre_hook(mod, args, kwargs):
            args = _prepare(
                args,
                self.input_layouts,
                self.desired_input_layouts,
                device_mesh,
                self.use_local_output,
                what,
            )
            for key, have in self.input_kwarg_layouts.items():
                if key in kwargs and have is not None:
                    x = _to_dtensor(kwargs[key], device_mesh, have, what)
                    x = _redistribute(x, self.desired_input_kwarg_layouts.get(key, have))
                    kwargs[key] = x.to_local() if self.use_local_output else x
            return args, kwargs

        module.register_forward_pre_hook(pre_hook, with_kwargs=True)
        return module


class PrepareModuleOutput(ParallelStyle):
    """Lay out a module's outputs: each output (a tensor or a tuple) is taken under
    ``output_layouts[i]`` and redistributed to ``desired_output_layouts[i]``.

    Args:
        output_layouts, desired_output_layouts (Placement | tuple)
        use_local_output (bool, optional): return local pieces. Default: ``True``.
    """

    def __init__(self, *, output_layouts, desired_output_layouts, use_local_output: bool = True):
        self.output_layouts = _layouts(output_layouts, "PrepareModuleOutput")
        self.desired_output_layouts = _layouts(desired_output_layouts, "PrepareModuleOutput")
        self.use_local_output = use_local_output

    def _apply(self, module: nn.Module, device_mesh, fqn: str = "") -> nn.Module:
        what = f"PrepareModuleOutput '{fqn or '<root>'}'"

        def post_hook(mod, args, out):
            single = not isinstance(out, tuple)
            res = _prepare(
                (out,) if single else out,
                self.output_layouts,
                self.desired_output_layouts,
                device_mesh,
                self.use_local_output,
                what,
            )
            return res[0] if single else res

        module.register_forward_hook(post_hook)
        return module


class PrepareModuleInputOutput(ParallelStyle):
    """``PrepareModuleInput`` and ``PrepareModuleOutput`` on one module (PyTorch's
    arguments: the input ones, ``use_local_input``, then the output ones)."""

    def __init__(
        self,
        *,
        input_layouts=None,
        desired_input_layouts=None,
        input_kwarg_layouts: dict | None = None,
        desired_input_kwarg_layouts: dict | None = None,
        use_local_input: bool = False,
        output_layouts,
        desired_output_layouts,
        use_local_output: bool = True,
    ) -> None:
        self.prepare_module_input = PrepareModuleInput(
            input_layouts=input_layouts,
            desired_input_layouts=desired_input_layouts,
            input_kwarg_layouts=input_kwarg_layouts,
            desired_input_kwarg_layouts=desired_input_kwarg_layouts,
            use_local_output=use_local_input,
        )
        self.prepare_module_output = PrepareModuleOutput(
            output_layouts=output_layouts,
            desired_output_layouts=desired_output_layouts,
            use_local_output=use_local_output,
        )

    def _apply(self, module: nn.Module, device_mesh, fqn: str = "") -> nn.Module:
        self.prepare_module_input._apply(module, device_mesh, fqn)
        return self.prepare_module_output._apply(module, device_mesh, fqn)
