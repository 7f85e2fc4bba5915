"""PyTorch's ``torch.distributed.algorithms._checkpoint`` path (activation checkpointing
wrappers); the implementation lives in ``ember.distributed.fsdp._checkpoint_wrapper``."""
