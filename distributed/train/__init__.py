"""``ember.distributed.train``: the Trainer API (Ray Train's shape)."""

from .checkpoint import Checkpoint
from .config import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from .data import DataConfig, DataIterator, get_dataset_shard
from .prepare import get_device, prepare_data_loader, prepare_model
from .result import Result
from .session import TrainContext, get_checkpoint, get_context, report
from .trainer import Trainer, TrainingFailedError

__all__ = [
    "Trainer",
    "TrainingFailedError",
    "ScalingConfig",
    "RunConfig",
    "FailureConfig",
    "CheckpointConfig",
    "Checkpoint",
    "Result",
    "TrainContext",
    "report",
    "get_checkpoint",
    "get_context",
    "prepare_model",
    "prepare_data_loader",
    "get_device",
    "DataConfig",
    "DataIterator",
    "get_dataset_shard",
]
