"""``ember.distributed.elastic``: the parts of ``torch.distributed.elastic`` that training
scripts import themselves (``multiprocessing.errors.record``). Elastic membership lives in the
launcher and the Trainer (docs/launcher.md, docs/trainer.md)."""
