"""A bigram character model of names, counted then trained, makemore-style.

Idioms: a count matrix filled by ``N[ix1, ix2] += 1``, ``torch.Generator().manual_seed``,
``torch.multinomial(..., replacement=True, generator=g)``, ``F.one_hot(...).float()``,
``probs[torch.arange(n), ys].log().mean()``, ``W.grad = None``, ``W.data += -lr * W.grad`` and
``keepdims=True`` reductions.
"""

import argparse

import ember as torch
import ember.nn.functional as F

NAMES = (
    "emma olivia ava isabella sophia charlotte mia amelia harper evelyn abigail emily "
    "elizabeth mila ella avery sofia camila aria scarlett victoria madison luna grace "
    "chloe penelope layla riley zoey nora lily eleanor hannah lillian addison aubrey"
).split()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    chars = sorted(set("".join(NAMES)))
    stoi = {s: i + 1 for i, s in enumerate(chars)}
    stoi["."] = 0
    itos = {i: s for s, i in stoi.items()}
    V = len(stoi)

    N = torch.zeros((V, V), dtype=torch.int32)
    xs, ys = [], []
    for w in NAMES:
        chs = ["."] + list(w) + ["."]
        for ch1, ch2 in zip(chs, chs[1:]):
            N[stoi[ch1], stoi[ch2]] += 1
            xs.append(stoi[ch1])
            ys.append(stoi[ch2])
    P = (N + 1).float()
    P /= P.sum(1, keepdims=True)
    g = torch.Generator().manual_seed(2147483647)
    samples = []
    for _ in range(3):
        ix, out = 0, []
        while True:
            ix = torch.multinomial(P[ix], num_samples=1, replacement=True, generator=g).item()
            if ix == 0:
                break
            out.append(itos[ix])
        samples.append("".join(out))
    xs, ys = torch.tensor(xs), torch.tensor(ys)
    n = xs.nelement()
    count_nll = -P[xs, ys].log().mean()
    print(f"counting model nll={count_nll.item():.4f} samples={samples}")

    W = torch.randn((V, V), generator=g, requires_grad=True)
    for k in range(args.steps):
        xenc = F.one_hot(xs, num_classes=V).float()
        probs = (xenc @ W).exp()
        probs = probs / probs.sum(1, keepdims=True)
        loss = -probs[torch.arange(n), ys].log().mean() + 0.01 * (W**2).mean()
        W.grad = None
        loss.backward()
        W.data += -50 * W.grad
        if k % 20 == 0:
            print(f"step {k} loss {loss.item():.4f}")
    print(f"final loss {loss.item():.4f} counting {count_nll.item():.4f}")
    print("done")


if __name__ == "__main__":
    main()
