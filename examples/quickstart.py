"""Fit a small linear model with ember tensors and autograd (runs in a second on a laptop).

python examples/quickstart.py
"""

import ember


def main() -> None:
    ember.manual_seed(0)
    true_w = ember.tensor([[2.0], [-3.0], [0.5]])
    x = ember.randn(256, 3)
    y = x @ true_w + 0.1 * ember.randn(256, 1)

    w = ember.zeros(3, 1, requires_grad=True)
    b = ember.zeros(1, requires_grad=True)
    for step in range(200):
        loss = ((x @ w + b - y) ** 2).mean()
        loss.backward()
        with ember.no_grad():
            w -= 0.1 * w.grad
            b -= 0.1 * b.grad
        w.grad = None
        b.grad = None
        if step % 50 == 0:
            print(f"step {step:3d}  loss {loss.item():.4f}")
    print("learned w:", w.detach().reshape(-1).tolist())
    assert loss.item() < 0.02, loss.item()


if __name__ == "__main__":
    import argparse

    # no options: --help describes the script, and a stray argument is an error, not ignored
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    main()
