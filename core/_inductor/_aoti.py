"""AOTInductor's Python entry points on ember: compile an exported program into a packaged
artifact, load it back, run it.

torch's AOTInductor generates and compiles C++ into a shared library inside a ``.pt2`` zip.
ember generates no code: the "package" is ember.export's safe archive of the program (fx graph
JSON + safetensors weights + input guards, docs/export.md), so it loads without the model's
class or source and without unpickling, checks the same ``Dim`` ranges on every call and runs
ember's own ops. The file names torch uses (``model.pt2``, ``resnet18_pt2.so``) are kept as
given; the content is ember's archive either way.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["AOTICompiledModel", "aot_compile", "aoti_compile_and_package", "aoti_load_package"]


def _as_program(model, args: tuple | None, kwargs: dict | None, api: str):
    from ember.export import ExportedProgram, export

    if isinstance(model, ExportedProgram):
        return model
    ep = getattr(model, "__dict__", {}).get("_exported_program")
    if ep is not None:  # ExportedProgram.module(): keep the program's dynamic dims
        return ep
    from ember.nn import Module

    if not isinstance(model, Module):
        raise TypeError(
            f"{api} expects an ExportedProgram (from ember.export.export) or a Module, "
            f"got {type(model).__name__}"
        )
    if args is None:
        raise TypeError(f"{api}: a Module needs example inputs (args) to be exported")
    return export(model, tuple(args), kwargs)


def aoti_compile_and_package(
    exported_program,
    _deprecated_unused_args: Any = None,
    _deprecated_unused_kwargs: Any = None,
    *,
    package_path: str | os.PathLike | None = None,
    inductor_configs: dict | None = None,
) -> str:
    """Write ``exported_program`` as a loadable package; returns its path.

    Args:
        exported_program: an ``ExportedProgram`` (``ember.export.export``).
        package_path: where to write it (must end in ``.pt2``, as torch asks); a new file
            in the temporary directory when omitted.
        inductor_configs: Inductor settings, accepted and recorded without effect.
    """
    import tempfile

    from ember.export import ExportedProgram, save

    if not isinstance(exported_program, ExportedProgram):
        raise ValueError(
            "Only ExportedProgram is supported: got "
            f"{type(exported_program).__name__} (export the model with ember.export.export)"
        )
    if package_path is None:
        fd, package_path = tempfile.mkstemp(suffix=".pt2")
        os.close(fd)
    path = os.fspath(package_path)
    if not path.endswith(".pt2"):
        raise ValueError(f"Expect package path to be a file ending in .pt2, got {path!r}")
    save(exported_program, path)
    return path


def aot_compile(gm, args: tuple, kwargs: dict | None = None, *, options: dict | None = None) -> str:
    """torch._inductor.aot_compile: write ``gm`` run on ``args`` as an artifact at
    ``options["aot_inductor.output_path"]`` (a temporary file when absent); returns its path.
    ``gm`` may be ``ExportedProgram.module()`` (its dynamic dims are kept) or any Module."""
    import tempfile

    from ember.export import save

    ep = _as_program(gm, args, kwargs, "aot_compile")
    path = (options or {}).get("aot_inductor.output_path")
    if not path:
        fd, path = tempfile.mkstemp(suffix=".so")
        os.close(fd)
    save(ep, os.fspath(path))
    return os.fspath(path)


class AOTICompiledModel:
    """A loaded package: call it with the program's inputs (``model(*example_inputs)``)."""

    def __init__(self, path: str | os.PathLike, device: Any = None) -> None:
        from ember.export import load

        self.path = os.fspath(path)
        self._program = load(self.path, map_location=device)
        self._module = self._program.module()
        # torch's compiled kernel serves size 1 too where a Dim starts at 2 (the "0/1
        # specialization" min=2 the tutorials use): relax those lower bounds to 1
        import copy

        from ember.export.dynamic_shapes import InputGuards

        recs = copy.deepcopy(self._program._guards.inputs)
        for rec in recs:
            for d in rec.get("dims", {}).values():
                for g in (d, d.get("root")):
                    if isinstance(g, dict) and g.get("min") == 2:
                        g["min"] = 1
        self._guards = InputGuards(recs)

    def __call__(self, *args, **kwargs):
        from ember import Tensor

        n = len(self._program._guards.inputs)
        one = args[0] if len(args) == 1 else None
        if (
            not kwargs
            and isinstance(one, (tuple, list))
            and len(one) == n
            and all(isinstance(t, Tensor) for t in one)
        ):
            args = tuple(one)  # aot_load's runner takes the flat input list too
        if kwargs:
            return self._module(*args, **kwargs)
        from ember.fx import GraphModule

        self._guards.check(list(args))
        return GraphModule.__call__(self._module, *args)

    def get_metadata(self) -> dict[str, str]:
        return {"AOTI_DEVICE_KEY": "cpu", "format": "ember.export"}

    def get_constant_fqns(self) -> list[str]:
        return list(self._program.state_dict)

    def load_constants(
        self, constants_map: dict, *, check_full_update: bool, user_managed: bool = False
    ) -> None:
        """Replace the package's weights by ``constants_map``'s (FQN -> tensor): regional AoT
        compilation packages one block and loads each copy's ``state_dict`` into its own
        loaded package. ``user_managed=True`` shares the given tensors' storage (later in-place
        updates are seen); otherwise the values are copied. ``check_full_update`` requires
        every weight of the package to be given; names the package lacks are ignored."""
        from ember import Tensor, no_grad

        names = self.get_constant_fqns()
        if check_full_update:
            missing = [n for n in names if n not in constants_map]
            if missing:
                raise RuntimeError(f"load_constants: no value given for {missing}")
        for name in names:
            if name not in constants_map:
                continue
            value = constants_map[name]
            prefix, _, leaf = name.rpartition(".")
            owner = self._module.get_submodule(prefix) if prefix else self._module
            current = getattr(owner, leaf)
            if not isinstance(value, Tensor) or (value.shape, value.dtype) != (
                current.shape,
                current.dtype,
            ):
                got = (
                    f"{tuple(value.shape)} {value.dtype}"
                    if isinstance(value, Tensor)
                    else type(value).__name__
                )
                raise RuntimeError(
                    f"load_constants: {name!r} must be a {current.dtype} tensor of shape "
                    f"{tuple(current.shape)}, got {got}"
                )
            with no_grad():
                if user_managed:
                    current.data = value.detach()
                else:
                    current.copy_(value)

    def __repr__(self) -> str:
        return f"AOTICompiledModel({self.path!r})"


def aoti_load_package(
    path: str | os.PathLike, run_single_threaded: bool = False, device_index: int = -1
) -> AOTICompiledModel:
    """Load what :func:`aoti_compile_and_package` wrote."""
    if not os.path.exists(os.fspath(path)):
        raise FileNotFoundError(f"no AOTInductor package at {os.fspath(path)!r}")
    return AOTICompiledModel(path)


def aot_load(so_path: str | os.PathLike, device: Any = None) -> AOTICompiledModel:
    """torch._export.aot_load: load what :func:`aot_compile` wrote, on ``device``."""
    if not os.path.exists(os.fspath(so_path)):
        raise FileNotFoundError(f"no AOTInductor artifact at {os.fspath(so_path)!r}")
    return AOTICompiledModel(so_path, device)
