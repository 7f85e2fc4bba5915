"""``ember.distributed.nn.api``: PyTorch's ``torch.distributed.nn.api`` path."""
