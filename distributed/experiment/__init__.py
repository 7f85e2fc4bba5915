"""``ember.distributed.experiment``: scale-out sweeps through the Trainer, with a run directory
(CSV/JSONL rows, spec, environment), a Markdown report with plots, an α-β cost model projecting
scaling efficiency to 8–1024 workers, and Chrome-trace timelines. See docs/experiments.md.

    from ember.distributed import experiment
    result = experiment.run("examples/experiments/mlp_scaling.yaml", out_dir="runs/mlp")
"""

from .costmodel import ComputeModel, CostModel, Interconnect
from .report import write_report
from .runner import ExperimentResult, run
from .spec import ExperimentSpec, Point, SpecError, load_spec
from .tune_runner import tune

__all__ = [
    "run",
    "tune",
    "ExperimentResult",
    "load_spec",
    "ExperimentSpec",
    "Point",
    "SpecError",
    "write_report",
    "CostModel",
    "ComputeModel",
    "Interconnect",
]
