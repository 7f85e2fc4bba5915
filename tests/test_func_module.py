"""ember.func with modules against torch.func: functional_call, stack_module_state, and the
tutorials' patterns that need no vmap (gradients and Hessians of MLP losses, model
ensembling, Hessian-vector products, a neural tangent kernel)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from test_func import assert_tree_close

import ember
import ember.func as ef

torch = pytest.importorskip("torch")
tf = pytest.importorskip("torch.func")

RNG = np.random.default_rng(1)
XB = RNG.standard_normal((5, 3))
YB = np.array([0, 1, 1, 0, 1])


def mlp(m):
    return m.nn.Sequential(m.nn.Linear(3, 4), m.nn.Tanh(), m.nn.Linear(4, 2)).double()


def models():
    r"""A torch MLP and an ember MLP holding the same float64 weights."""
    torch.manual_seed(0)
    t = mlp(torch)
    e = mlp(ember)
    e.load_state_dict({k: ember.tensor(v.detach().numpy()) for k, v in t.state_dict().items()})
    return {"torch": t, "ember": e}


def env(m):
    return (ember, ef) if m == "ember" else (torch, tf)


def loss_fn(m, F, model):
    def loss(params, x, y):
        out = F.functional_call(model, params, (x,))
        return m.nn.functional.cross_entropy(out, y)

    return loss


def _params(model):
    return {k: v.detach() for k, v in model.named_parameters()}


PATTERNS = {
    "grad_params": lambda m, F, model, x, y: F.grad(loss_fn(m, F, model))(_params(model), x, y),
    "grad_and_value_params": lambda m, F, model, x, y: F.grad_and_value(loss_fn(m, F, model))(
        _params(model), x, y
    ),
    "grad_input": lambda m, F, model, x, y: F.grad(loss_fn(m, F, model), argnums=1)(
        _params(model), x, y
    ),
    "hessian_params": lambda m, F, model, x, y: F.hessian(loss_fn(m, F, model))(
        _params(model), x, y
    ),
    "jacrev_outputs": lambda m, F, model, x, y: F.jacrev(
        lambda p: F.functional_call(model, p, (x,))
    )(_params(model)),
    "jacfwd_outputs": lambda m, F, model, x, y: F.jacfwd(lambda p: F.functional_call(model, p, x))(
        _params(model)
    ),
    "hvp_params": lambda m, F, model, x, y: F.jvp(
        lambda p: F.grad(loss_fn(m, F, model))(p, x, y),
        (_params(model),),
        ({k: v * 0.5 + 1 for k, v in _params(model).items()},),
    )[1],
}


@pytest.mark.parametrize("name", list(PATTERNS))
def test_mlp_patterns_match_torch(name):
    ms = models()
    res = {}
    for fw in ("ember", "torch"):
        m, F = env(fw)
        res[fw] = PATTERNS[name](m, F, ms[fw], m.tensor(XB), m.tensor(YB))
        # pure: the module's parameters kept their values and got no .grad
        assert all(p.grad is None for p in ms[fw].parameters())
    assert_tree_close(res["ember"], res["torch"])
    for k, v in ms["ember"].state_dict().items():
        np.testing.assert_array_equal(v.numpy(), ms["torch"].state_dict()[k].numpy())


def _ntk(m, F, model, x1, x2):
    r"""The neural-tangent-kernel tutorial's Jacobian contraction, for two tiny inputs."""
    params = _params(model)

    def f(p, x):
        return F.functional_call(model, p, (x,))

    j1 = [j.flatten(2) for j in F.jacrev(f)(params, x1).values()]
    j2 = [j.flatten(2) for j in F.jacrev(f)(params, x2).values()]
    return m.stack([m.einsum("Naf,Mbf->NMab", a, b) for a, b in zip(j1, j2)]).sum(0)


def test_neural_tangent_kernel_matches_torch():
    ms = models()
    got = _ntk(ember, ef, ms["ember"], ember.tensor(XB[:2]), ember.tensor(XB[2:4]))
    want = _ntk(torch, tf, ms["torch"], torch.tensor(XB[:2]), torch.tensor(XB[2:4]))
    assert tuple(got.shape) == (2, 2, 2, 2)
    assert_tree_close(got, want)


def _ensemble(m, F, models, x):
    r"""The model-ensembling tutorial without vmap: stack the states, call each slice."""
    params, buffers = F.stack_module_state(models)
    base = copy.deepcopy(models[0])
    outs = [
        F.functional_call(
            base,
            ({k: v[i] for k, v in params.items()}, {k: v[i] for k, v in buffers.items()}),
            (x,),
        )
        for i in range(len(models))
    ]
    loss = m.stack(outs).pow(2).sum()
    grads = m.autograd.grad(loss, list(params.values()))
    return params, buffers, m.stack(outs), dict(zip(params, grads))


def test_model_ensembling_matches_torch():
    res = {}
    torch.manual_seed(0)
    nets = {
        "torch": [
            torch.nn.Sequential(
                torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2)
            ).double()
            for _ in range(3)
        ]
    }
    nets["ember"] = [
        ember.nn.Sequential(
            ember.nn.Linear(3, 4), ember.nn.BatchNorm1d(4), ember.nn.Linear(4, 2)
        ).double()
        for _ in range(3)
    ]
    for e, t in zip(nets["ember"], nets["torch"]):  # the same weights in both
        e.load_state_dict({k: ember.tensor(v.detach().numpy()) for k, v in t.state_dict().items()})
    for fw in ("ember", "torch"):
        m, F = env(fw)
        res[fw] = _ensemble(m, F, nets[fw], m.tensor(XB))
        params, buffers = res[fw][0], res[fw][1]
        assert all(v.requires_grad and v.grad_fn is None for v in params.values())
        assert not any(v.requires_grad for v in buffers.values())
        assert tuple(params["0.weight"].shape) == (3, 4, 3)
        assert all(p.grad is None for n in nets[fw] for p in n.parameters())
    for got, want in zip(res["ember"], res["torch"]):
        if not isinstance(want, dict):
            got, want = {"out": got}, {"out": want}
        assert list(got) == list(want)
        for k in want:
            np.testing.assert_allclose(
                got[k].detach().numpy(), want[k].detach().numpy(), rtol=1e-10, atol=1e-12, err_msg=k
            )


def test_functional_call_dicts_and_strict():
    ms = models()
    for fw in ("ember", "torch"):
        m, F = env(fw)
        model = ms[fw]
        p = {k: v * 2 for k, v in _params(model).items()}
        w, b = (
            {k: v for k, v in p.items() if "weight" in k},
            {k: v for k, v in p.items() if "bias" in k},
        )
        x = m.tensor(XB)
        one = F.functional_call(model, p, (x,))
        two = F.functional_call(model, (w, b), x, strict=True)
        np.testing.assert_allclose(one.detach().numpy(), two.detach().numpy())
        ms[fw + "_out"] = one
        with pytest.raises(RuntimeError, match="Missing key"):
            F.functional_call(model, w, (x,), strict=True)
    np.testing.assert_allclose(
        ms["ember_out"].detach().numpy(), ms["torch_out"].detach().numpy(), rtol=1e-12
    )


def _lin_pair(m):
    a, b = m.nn.Linear(2, 2), m.nn.Linear(2, 2)
    b.bias.requires_grad_(False)
    return [a, b]


def _modes(m):
    a, b = m.nn.Linear(2, 2), m.nn.Linear(2, 2)
    return [a, b.eval()]


ERRORS = {
    "dup_keys": lambda m, F: F.functional_call(
        m.nn.Linear(2, 2), ({"weight": m.ones(2, 2)}, {"weight": m.ones(2, 2)}), (m.ones(2),)
    ),
    "bad_dicts": lambda m, F: F.functional_call(m.nn.Linear(2, 2), 3, (m.ones(2),)),
    "stack_empty": lambda m, F: F.stack_module_state([]),
    "stack_classes": lambda m, F: F.stack_module_state([m.nn.Linear(2, 2), m.nn.ReLU()]),
    "stack_modes": lambda m, F: F.stack_module_state(_modes(m)),
    "stack_requires_grad": lambda m, F: F.stack_module_state(_lin_pair(m)),
}


@pytest.mark.parametrize("name", list(ERRORS))
def test_module_errors_match_torch(name):
    msgs = []
    for m, F in ((ember, ef), (torch, tf)):
        with pytest.raises(Exception) as info:
            ERRORS[name](m, F)
        msgs.append((type(info.value).__name__, str(info.value)))
    assert msgs[0] == msgs[1]


def test_docs_snippets_run():
    import pathlib
    import re

    text = (pathlib.Path(__file__).parents[1] / "docs" / "func.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) == 2
    for code in blocks:
        exec(compile(code, "docs/func.md", "exec"), {})
