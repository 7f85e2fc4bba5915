"""Fit a random degree-4 polynomial with one Linear layer and a hand-written SGD step.

Idioms: module-level tensors, ``'{:+.2f}'.format(tensor)`` (str.format on purpose: it reaches
``Tensor.__format__``), ``x.mm``, ``.item()`` in a Python float expression, ``torch.no_grad``
parameter updates with ``add_``, ``itertools.count`` with a convergence break, and an argparse
flag for the step budget.
"""

import argparse
from itertools import count

import ember as torch
import ember.nn.functional as F

DEGREE = 4


def features(x):
    x = x.unsqueeze(1)
    return torch.cat([x**i for i in range(1, DEGREE + 1)], 1)


def describe(W, b):
    text = "y = "
    for i, w in enumerate(W):
        text += "{:+.2f} x^{} ".format(w, i + 1)  # noqa: UP032
    return text + "{:+.2f}".format(b[0])  # noqa: UP032


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-steps", type=int, default=2000)
    args = parser.parse_args()
    torch.manual_seed(3)
    w_target = torch.randn(DEGREE, 1) * 5
    b_target = torch.randn(1) * 5

    def batch(n=32):
        x = features(torch.randn(n))
        return x, x.mm(w_target) + b_target.item()

    fc = torch.nn.Linear(w_target.size(0), 1)
    for step in count(1):
        x, y = batch()
        fc.zero_grad()
        loss = F.smooth_l1_loss(fc(x), y)
        loss.backward()
        with torch.no_grad():
            for p in fc.parameters():
                p.add_(-0.1 * p.grad)
        if loss.item() < 1e-3 or step >= args.max_steps:
            break
    print("Loss: {:.6f} after {} batches".format(loss.item(), step))  # noqa: UP032
    print("==> Learned function:\t" + describe(fc.weight.view(-1), fc.bias))
    print("==> Actual function:\t" + describe(w_target.view(-1), b_target))
    err = (fc.weight.view(-1) - w_target.view(-1)).abs().max()
    print(f"max coefficient error {err:.3f}")
    print("done")


if __name__ == "__main__":
    main()
