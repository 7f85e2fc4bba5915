"""What the multi-host runs are checked against: the same small classifier trained in one
process on the whole batch of every step (data-parallel ranks average their halves)."""

from __future__ import annotations

import numpy as np


def single_process_weights(optimizer: str, lr: float, steps: int) -> dict:
    """The state dict after ``steps`` steps of ``ember.optim.<optimizer>(lr=lr)`` on the
    fixed data the multi-host scripts split between their ranks."""
    import ember
    from ember import nn

    ember.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))
    opt = getattr(ember.optim, optimizer)(model.parameters(), lr=lr)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((steps, 16, 8)).astype(np.float32)
    y = rng.integers(0, 3, (steps, 16))
    for step in range(steps):
        loss = nn.functional.cross_entropy(model(ember.tensor(x[step])), ember.tensor(y[step]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {k: v.detach().numpy() for k, v in model.state_dict().items()}
