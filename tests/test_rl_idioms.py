"""The idioms torchrl programs rely on, each against PyTorch under the same seed.

torchrl 0.14.1 (with tensordict 0.15.3 and gymnasium 1.4.0) runs on ember with ``torch``
resolved to ember (docs/porting_examples.md, "torchrl"): its environments, transforms,
collectors, replay buffers and the PPO / DQN / SAC / DDPG / TD3 losses give torch's numbers.
These tests are small programs of our own with the same idioms, without importing torchrl or
gymnasium: a collector's trajectory-id update (``masked_scatter`` on 0-d tensors), the target
network check of torchrl's updaters (``is_set_to``), a meta-device parameter pickled to a
collector's workers, the names torchrl imports, the segment
trees ember serves for torchrl's compiled extension (prioritized replay), and a seeded PPO
update with GAE, a clipped objective over a one-hot categorical and a tanh-normal policy, and a
DQN step with a soft-updated target, compared with torch.
"""

from __future__ import annotations

import pickle
import sys
import warnings

import numpy as np
import pytest

import ember
from ember import _torchrl_ext

torch = pytest.importorskip("torch")


def _close(e, t, rtol=1e-5, atol=1e-6):
    np.testing.assert_allclose(np.asarray(e), np.asarray(t), rtol=rtol, atol=atol)


# ---- a collector's trajectory ids: masked_scatter on 0-d tensors -----------------------------
@pytest.mark.parametrize("ishape, mshape", [((), ()), ((), (1,)), ((1,), ()), ((3,), (3,))])
def test_masked_scatter_zero_dim_like_torch(ishape, mshape):
    """torchrl's collector writes new trajectory ids with ``traj_ids.masked_scatter(sop, new)``
    where a single env gives 0-d ids and a 0-d mask."""
    out = []
    for lib in (ember, torch):
        x = lib.zeros(ishape, dtype=lib.int64)
        m = lib.ones(mshape, dtype=lib.bool)
        r = x.masked_scatter(m, lib.tensor([4, 5, 6]))
        out.append((tuple(r.shape), r.tolist()))
    assert out[0] == out[1]


# ---- torchrl's target-network updaters: is_set_to ---------------------------------------------
def test_is_set_to_like_torch():
    """``SoftUpdate`` / ``HardUpdate`` check ``target.is_set_to(source.data)`` on each pair."""
    answers = []
    for lib in (ember, torch):
        a = lib.zeros(3, 4)
        p = lib.nn.Parameter(a)
        cases = [a.view(3, 4), a[1:], a.clone(), a.t(), a.data, p.data, a.view(12)]
        answers.append([a.is_set_to(c) for c in cases] + [p.is_set_to(a)])
    assert answers[0] == answers[1]
    assert answers[0][0] and not answers[0][2]


# ---- multi-process collectors: a meta-device copy of the policy is pickled to the workers -----
def test_meta_parameter_pickles_like_torch():
    out = []
    for lib in (ember, torch):
        p = lib.nn.Parameter(lib.zeros(2, 3, device="meta"))
        q = pickle.loads(pickle.dumps(p))
        out.append((type(q).__name__, q.device.type, tuple(q.shape), q.requires_grad))
    assert out[0] == out[1] == ("Parameter", "meta", (2, 3), True)


# ---- the names torchrl imports ----------------------------------------------------------------
def test_torchrl_imported_names():
    from ember.nn.parameter import _ParameterMeta

    assert type(ember.nn.Parameter) is _ParameterMeta
    assert str(ember.FloatType.get()) == str(torch.FloatType.get()) == "float"
    assert ember.IntType.get() is ember.IntType.get()
    # PrioritizedSampler's dtype check: the type never equals a dtype
    assert ember.float64 not in (ember.float, ember.FloatType, ember.float32)
    # the collectors' RRef check (torchrl/_utils.py)
    assert not isinstance(ember.zeros(1), ember._C._distributed_rpc.PyRRef)


# ---- prioritized replay: the segment trees of torchrl._torchrl --------------------------------
@pytest.mark.parametrize("cls", ["SumSegmentTreeFp32", "SumSegmentTreeFp64"])
def test_sum_segment_tree_against_brute_force(cls):
    rng = np.random.default_rng(0)
    tree = getattr(_torchrl_ext, cls)(37)
    dt = tree._np_dtype
    assert (tree.size, tree.capacity, len(tree), tree.identity_element) == (37, 64, 37, 0.0)
    leaves = np.zeros(37, dt)
    for _ in range(5):
        idx = rng.integers(0, 30, 9)
        val = rng.random(9).astype(dt) + 0.1
        tree[ember.tensor(idx)] = ember.tensor(val)  # tensors, duplicates: the last one wins
        leaves[idx] = val
    tree.update(np.array([31, 32]), 2.5)  # one value for many indices
    leaves[[31, 32]] = 2.5
    tree[5] = 0.75
    leaves[5] = 0.75
    np.testing.assert_array_equal(tree[ember.arange(37)].numpy(), leaves)
    assert tree.at(5) == 0.75 and isinstance(tree[np.array([1, 2])], np.ndarray)
    for lo, hi in [(0, 37), (0, 30), (3, 17), (12, 13), (20, 36)]:
        _close(tree.query(lo, hi), leaves[lo:hi].sum(dtype=np.float64), rtol=1e-6)
    q = tree.query(ember.tensor([0, 3]), ember.tensor([37, 17]))
    assert isinstance(q, ember.Tensor) and q.dtype == ember.tensor(leaves).dtype
    total = tree.query(0, 37)
    mass = (rng.random(200) * total).astype(dt)
    prefix = np.cumsum(leaves, dtype=np.float64)
    got = tree.scan_lower_bound(ember.tensor(mass)).numpy()
    want = np.searchsorted(prefix, mass.astype(np.float64), side="left")
    assert (got == want).mean() > 0.98  # ties at a boundary may round apart from the cumsum
    assert np.abs(prefix[got] - prefix[want]).max() <= 1e-5 * total
    assert tree.scan_lower_bound(total * 2) == 37  # beyond the total: size
    assert tree.scan_lower_bound(np.array([0.0]))[0] == np.flatnonzero(leaves)[0]
    clone = pickle.loads(pickle.dumps(tree))
    np.testing.assert_array_equal(clone._values, tree._values)


def test_min_segment_tree():
    tree = _torchrl_ext.MinSegmentTreeFp32(10)
    assert tree.identity_element == float(np.finfo(np.float32).max)
    tree[ember.arange(10)] = ember.arange(10, 0, -1).float()
    tree[3] = 0.5
    assert tree.query(0, 10) == 0.5 and tree.query(4, 10) == 1.0 and tree.query(0, 3) == 8.0


def test_torchrl_extension_finder_answers_only_for_ember(monkeypatch):
    finder = _torchrl_ext._TorchrlExtFinder
    assert finder in sys.meta_path
    monkeypatch.setitem(sys.modules, "torch", torch)
    assert finder.find_spec("torchrl._torchrl") is None  # real torch: torchrl's own module
    monkeypatch.setitem(sys.modules, "torch", ember)
    assert finder.find_spec("torchrl.envs") is None
    spec = finder.find_spec("torchrl._torchrl")
    module = spec.loader.create_module(spec)
    with pytest.warns(UserWarning, match="linked against libtorch"):
        spec.loader.exec_module(module)
    assert module.SumSegmentTreeFp32 is _torchrl_ext.SumSegmentTreeFp32
    assert not hasattr(module, "CudaSumSegmentTreeFp32")  # torchrl falls back without these


# ---- a PPO update: GAE, clipped objective, entropy, smooth-L1 critic ---------------------------
def _gae(lib, reward, value, next_value, done, gamma=0.99, lmbda=0.95):
    """torchrl's ``generalized_advantage_estimate``: a reverse scan over time."""
    not_done = (~done).to(value.dtype)
    delta = reward + gamma * next_value * not_done - value
    adv = lib.zeros_like(delta)
    running = lib.zeros_like(delta[0])
    for t in range(delta.shape[0] - 1, -1, -1):
        running = delta[t] + gamma * lmbda * not_done[t] * running
        adv[t] = running
    return adv, adv + value


def _ppo_program(lib, continuous):
    lib.manual_seed(0)
    n_obs, n_act, steps = 3, 2, 24
    actor = lib.nn.Sequential(
        lib.nn.Linear(n_obs, 16), lib.nn.Tanh(), lib.nn.Linear(16, 2 * n_act if continuous else 2)
    )
    critic = lib.nn.Sequential(lib.nn.Linear(n_obs, 16), lib.nn.Tanh(), lib.nn.Linear(16, 1))
    params = list(actor.parameters()) + list(critic.parameters())
    opt = lib.optim.Adam(params, lr=3e-3)
    D = lib.distributions

    def dist(obs):
        out = actor(obs)
        if not continuous:
            return D.OneHotCategorical(logits=out)
        loc, scale = out.chunk(2, -1)
        scale = lib.nn.functional.softplus(scale) + 1e-4  # NormalParamExtractor's mapping
        base = D.Independent(D.Normal(loc, scale), 1)
        return D.TransformedDistribution(base, [D.TanhTransform(cache_size=1)])

    obs = lib.randn(steps + 1, n_obs)
    with lib.no_grad():
        d = dist(obs[:-1])
        action = d.sample()
        if continuous:
            action = action.clamp(-0.999, 0.999)
        old_logp = d.log_prob(action)
        value = critic(obs[:-1]).squeeze(-1)
        next_value = critic(obs[1:]).squeeze(-1)
    reward = lib.randn(steps)
    done = lib.zeros(steps, dtype=lib.bool)
    done[10] = True
    adv, target = _gae(lib, reward, value, next_value, done)
    adv = (adv - adv.mean()) / adv.std().clamp_min(1e-8)  # average_gae=True
    losses = []
    for _ in range(3):
        perm = lib.randperm(steps)  # SamplerWithoutReplacement
        for mb in perm.split(8):
            d = dist(obs[mb])
            logp = d.log_prob(action[mb])
            ratio = (logp - old_logp[mb]).exp()
            gain = lib.min(ratio * adv[mb], ratio.clamp(0.8, 1.2) * adv[mb])
            if continuous:  # no closed form: torchrl estimates it from a sample
                entropy = -d.log_prob(d.rsample().clamp(-0.999, 0.999)).mean()
            else:
                entropy = d.entropy().mean()
            v = critic(obs[mb]).squeeze(-1)
            critic_loss = lib.nn.functional.smooth_l1_loss(v, target[mb])
            loss = -gain.mean() - 1e-2 * entropy + critic_loss
            loss.backward()
            norm = lib.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            opt.zero_grad()
            losses.append([loss.item(), float(norm)])
    return action.numpy(), adv.numpy(), np.array(losses), [p.detach().numpy() for p in params]


@pytest.mark.parametrize("continuous", [False, True])
def test_ppo_update_matches_torch(continuous):
    e = _ppo_program(ember, continuous)
    t = _ppo_program(torch, continuous)
    _close(e[0], t[0], atol=1e-6)  # the same seeded actions
    _close(e[1], t[1], rtol=1e-5, atol=1e-5)  # advantages
    _close(e[2], t[2], rtol=1e-4, atol=1e-5)  # losses and gradient norms, 9 minibatches
    for a, b in zip(e[3], t[3]):
        _close(a, b, rtol=1e-4, atol=1e-5)


# ---- a DQN step: greedy values, a target network and a soft update -----------------------------
def _dqn_program(lib):
    lib.manual_seed(1)
    net = lib.nn.Sequential(lib.nn.Linear(4, 16), lib.nn.ReLU(), lib.nn.Linear(16, 2))
    target = lib.nn.Sequential(lib.nn.Linear(4, 16), lib.nn.ReLU(), lib.nn.Linear(16, 2))
    target.load_state_dict(net.state_dict())
    for p in target.parameters():
        p.requires_grad_(False)
    opt = lib.optim.Adam(net.parameters(), lr=1e-3)
    obs, next_obs = lib.randn(32, 4), lib.randn(32, 4)
    action = lib.randint(0, 2, (32,))
    one_hot = lib.nn.functional.one_hot(action, 2)
    reward, done = lib.randn(32), lib.rand(32) < 0.1
    losses = []
    for _ in range(4):
        q = (net(obs) * one_hot).sum(-1)  # the chosen action's value (one-hot action space)
        with lib.no_grad():
            next_q = target(next_obs).max(-1).values
            y = reward + 0.99 * next_q * (~done).float()
        loss = lib.nn.functional.smooth_l1_loss(q, y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        with lib.no_grad():  # SoftUpdate(eps=0.95): target <- 0.95 target + 0.05 net
            for pt, p in zip(target.parameters(), net.parameters()):
                assert not pt.is_set_to(p.data)
                pt.data.lerp_(p.data, 0.05)
        losses.append(loss.item())
    return np.array(losses), [p.numpy() for p in target.parameters()]


def test_dqn_soft_update_matches_torch():
    e, t = _dqn_program(ember), _dqn_program(torch)
    _close(e[0], t[0], rtol=1e-5)
    for a, b in zip(e[1], t[1]):
        _close(a, b, rtol=1e-5)


def test_porting_examples_torchrl_snippet_runs(capsys):
    """The docs' snippet (docs/porting_examples.md, "torchrl") prints the same under torch."""
    import pathlib

    doc = pathlib.Path(__file__).resolve().parents[1] / "docs" / "porting_examples.md"
    section = doc.read_text().split("\n## torchrl\n", 1)[1].split("\n## ", 1)[0]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(code, "torchrl-doc", "exec"), {})
    exec(compile(code.replace("import ember as torch", "import torch"), "torchrl-doc", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert out[:3] == out[3:] == ["4", "True False", "meta float"]


def test_segment_tree_small_example():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tree = _torchrl_ext.SumSegmentTreeFp32(4)
        tree[ember.arange(4)] = ember.tensor([1.0, 0.0, 2.0, 1.0])
        idx = tree.scan_lower_bound(ember.tensor([0.5, 1.5, 3.9]))
    assert idx.tolist() == [0, 2, 3] and tree.query(0, 4) == 4.0
