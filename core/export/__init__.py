"""ember.export: torch.export's API on ember — capture a Module as an ExportedProgram (an fx
graph with its weights lifted to inputs), with dynamic dimensions, and save it to one safe
file that loads without the model's class (docs/export.md)."""

from . import _packed_rnn  # noqa: F401  (registers the packed-sequence nodes as loadable)
from ._export import export
from ._recorder import ExportError
from ._serialize import load, save
from .decompositions import default_decompositions
from .dynamic_shapes import Dim, ShapesCollection
from .exported_program import ExportedProgram
from .graph_signature import (
    ConstantArgument,
    ExportGraphSignature,
    InputKind,
    InputSpec,
    OutputKind,
    OutputSpec,
    TensorArgument,
)

__all__ = [
    "ConstantArgument",
    "Dim",
    "ExportError",
    "ExportGraphSignature",
    "ExportedProgram",
    "InputKind",
    "InputSpec",
    "OutputKind",
    "OutputSpec",
    "ShapesCollection",
    "TensorArgument",
    "default_decompositions",
    "export",
    "load",
    "save",
]
