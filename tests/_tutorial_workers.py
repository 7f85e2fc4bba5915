"""Process targets for tests/test_tutorial_idioms.py, in a module that imports only ember so a
``spawn``-ed child starts quickly (the test module imports torch)."""

import ember


def hogwild_worker(model):
    """Three SGD steps (momentum 0.5) on a constant gradient of 1 for every weight."""
    opt = ember.optim.SGD(model.parameters(), lr=0.1, momentum=0.5)
    for _ in range(3):
        opt.zero_grad()
        model(ember.ones(1, 2)).sum().backward()
        opt.step()
