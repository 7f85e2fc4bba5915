"""``ExportGraphSignature``: which graph inputs are parameters, buffers, constants or user
inputs, and which outputs are the user's (torch.export.graph_signature's names)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

__all__ = [
    "InputKind",
    "OutputKind",
    "TensorArgument",
    "ConstantArgument",
    "InputSpec",
    "OutputSpec",
    "ExportGraphSignature",
]


class InputKind(enum.Enum):
    """What an input of the exported graph is: a user input, a parameter, a buffer ..."""

    USER_INPUT = 1
    PARAMETER = 2
    BUFFER = 3
    CONSTANT_TENSOR = 4
    CUSTOM_OBJ = 5
    TOKEN = 6


class OutputKind(enum.Enum):
    """What an output of the exported graph is: a user output, a mutated buffer ..."""

    USER_OUTPUT = 1
    LOSS_OUTPUT = 2
    BUFFER_MUTATION = 3
    GRADIENT_TO_PARAMETER = 4
    GRADIENT_TO_USER_INPUT = 5
    USER_INPUT_MUTATION = 6
    TOKEN = 7


@dataclass(frozen=True)
class TensorArgument:
    """A tensor argument of the graph, named by its placeholder or output node."""

    name: str


@dataclass(frozen=True)
class ConstantArgument:
    """A non-tensor constant argument of the graph (an int, float, str, None ...)."""

    name: str
    value: int | float | bool | str | None


@dataclass
class InputSpec:
    """One input of the exported graph: its kind, the argument, and the state it binds (target)."""

    kind: InputKind
    arg: TensorArgument | ConstantArgument
    target: str | None
    persistent: bool | None = None

    def __str__(self) -> str:
        s = f"{self.arg.name}: {self.kind.name}"
        if self.target is not None:
            s += f" target={self.target!r}"
        if self.persistent is not None:
            s += f" persistent={self.persistent}"
        return s

    def to_json(self) -> dict:
        return {
            "kind": self.kind.name,
            "name": self.arg.name,
            "target": self.target,
            "persistent": self.persistent,
        }

    @classmethod
    def from_json(cls, d: dict) -> InputSpec:
        return cls(
            InputKind[d["kind"]], TensorArgument(d["name"]), d["target"], d.get("persistent")
        )


@dataclass
class OutputSpec:
    """One output of the exported graph: its kind, the argument, and the state it updates."""

    kind: OutputKind
    arg: TensorArgument | ConstantArgument
    target: str | None = None

    def __str__(self) -> str:
        return f"{self.arg.name}: {self.kind.name}"

    def to_json(self) -> dict:
        if isinstance(self.arg, ConstantArgument):
            return {"kind": self.kind.name, "name": self.arg.name, "value": self.arg.value}
        return {"kind": self.kind.name, "name": self.arg.name, "target": self.target}

    @classmethod
    def from_json(cls, d: dict) -> OutputSpec:
        arg = ConstantArgument(d["name"], d["value"]) if "value" in d else TensorArgument(d["name"])
        return cls(OutputKind[d["kind"]], arg, d.get("target"))


@dataclass
class ExportGraphSignature:
    """The roles of the graph's placeholders (in order) and outputs."""

    input_specs: list[InputSpec] = field(default_factory=list)
    output_specs: list[OutputSpec] = field(default_factory=list)

    def _targets(self, kind: InputKind) -> tuple[str, ...]:
        return tuple(s.target for s in self.input_specs if s.kind is kind)

    @property
    def parameters(self) -> tuple[str, ...]:
        return self._targets(InputKind.PARAMETER)

    @property
    def buffers(self) -> tuple[str, ...]:
        return self._targets(InputKind.BUFFER)

    @property
    def non_persistent_buffers(self) -> tuple[str, ...]:
        return tuple(
            s.target
            for s in self.input_specs
            if s.kind is InputKind.BUFFER and s.persistent is False
        )

    @property
    def lifted_tensor_constants(self) -> tuple[str, ...]:
        return self._targets(InputKind.CONSTANT_TENSOR)

    @property
    def user_inputs(self) -> tuple[str, ...]:
        return tuple(s.arg.name for s in self.input_specs if s.kind is InputKind.USER_INPUT)

    @property
    def user_outputs(self) -> tuple:
        return tuple(
            s.arg.name if isinstance(s.arg, TensorArgument) else s.arg.value
            for s in self.output_specs
            if s.kind is OutputKind.USER_OUTPUT
        )

    @property
    def inputs_to_parameters(self) -> dict[str, str]:
        return {s.arg.name: s.target for s in self.input_specs if s.kind is InputKind.PARAMETER}

    @property
    def inputs_to_buffers(self) -> dict[str, str]:
        return {s.arg.name: s.target for s in self.input_specs if s.kind is InputKind.BUFFER}

    @property
    def inputs_to_lifted_tensor_constants(self) -> dict[str, str]:
        return {
            s.arg.name: s.target for s in self.input_specs if s.kind is InputKind.CONSTANT_TENSOR
        }

    def __str__(self) -> str:
        lines = [
            "# inputs",
            *map(str, self.input_specs),
            "",
            "# outputs",
            *map(str, self.output_specs),
        ]
        return "\n".join(lines) + "\n"

    def to_json(self) -> dict:
        return {
            "inputs": [s.to_json() for s in self.input_specs],
            "outputs": [s.to_json() for s in self.output_specs],
        }

    @classmethod
    def from_json(cls, d: dict) -> ExportGraphSignature:
        return cls(
            [InputSpec.from_json(x) for x in d["inputs"]],
            [OutputSpec.from_json(x) for x in d["outputs"]],
        )
