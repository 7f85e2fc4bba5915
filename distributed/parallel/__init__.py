"""The data-parallel wrappers: DistributedDataParallel (with its buckets, join hook and
communication hooks), DataParallel and SyncBatchNorm.

Users reach them under PyTorch's paths (``ember.nn.parallel.DistributedDataParallel``,
``ember.nn.SyncBatchNorm``, ``ember.distributed.DistributedDataParallel``); this floor talks to the
runtime only through the public collectives and core's interop contract (docs/architecture.md).
"""
