"""The idioms Stable-Baselines3 programs rely on, each against PyTorch under the same seed.

Stable-Baselines3 2.9.2 (with gymnasium 1.4.0) runs on ember with ``torch`` resolved to ember
(docs/porting_examples.md, "Stable-Baselines3"); with the same ``seed=`` its PPO, A2C, DQN and
SAC runs match torch's update for update. These tests are small programs of our own with the
same idioms, without importing SB3 or gymnasium: a seeded rollout that samples actions from a
``Categorical`` policy and the PPO update that follows, a tanh-squashed Gaussian (SAC) actor /
critic / entropy update with a polyak-averaged target network (``_foreach_mul_`` /
``_foreach_add_``), the distributions' seeded draws, and a saved policy zip of ``state_dict`` /
optimizer files loaded with ``weights_only=True``, across the two frameworks.
"""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")


def _close(e, t, rtol=1e-5, atol=1e-6):
    np.testing.assert_allclose(np.asarray(e), np.asarray(t), rtol=rtol, atol=atol)


# ---- Categorical: torch's multinomial draw ---------------------------------------------------
@pytest.mark.parametrize(
    "logits_shape, sample_shape",
    [((6, 2), ()), ((5, 3), (4,)), ((4,), (2, 3)), ((2, 3, 5), ())],
)
def test_categorical_sample_draws_match_torch(logits_shape, sample_shape):
    """SB3's discrete policies act by ``Categorical(logits=...).sample()``: torch draws it as
    ``multinomial(probs_2d, n, True).T``, so the same seed must pick the same actions."""
    logits = np.random.default_rng(0).standard_normal(logits_shape).astype(np.float32)
    out = []
    for lib in (ember, torch):
        lib.manual_seed(3)
        d = lib.distributions.Categorical(logits=lib.tensor(logits))
        draws = [d.sample(sample_shape).numpy() for _ in range(4)]
        d = lib.distributions.Categorical(probs=lib.tensor(logits).softmax(-1))
        draws.append(d.sample(sample_shape).numpy())
        out.append(np.stack(draws))
    assert out[0].shape == out[1].shape and out[0].dtype == np.int64
    np.testing.assert_array_equal(out[0], out[1])


def test_categorical_empty_sample_shape_raises_like_torch():
    for lib in (ember, torch):
        d = lib.distributions.Categorical(logits=lib.zeros(3, 2))
        with pytest.raises(RuntimeError, match="n_sample <= 0"):
            d.sample((0,))
        with pytest.raises(RuntimeError, match="n_sample <= 0"):
            lib.multinomial(lib.ones(2), 0, True)


# ---- a seeded PPO rollout and update ---------------------------------------------------------
def _ppo_program(lib):
    """A tiny actor-critic: orthogonal init, a rollout sampling actions under ``no_grad``, then
    PPO's clipped objective over shuffled minibatches with ``clip_grad_norm_``."""
    nn, F = lib.nn, lib.nn.functional
    lib.manual_seed(0)
    pi = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 2))
    vf = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))
    for m, gain in ((pi[0], 2**0.5), (pi[2], 0.01), (vf[0], 2**0.5), (vf[2], 1.0)):
        nn.init.orthogonal_(m.weight, gain=gain)
        m.bias.data.fill_(0.0)
    params = [*pi.parameters(), *vf.parameters()]
    opt = lib.optim.Adam(params, lr=3e-3, eps=1e-5)
    obs = lib.as_tensor(np.random.default_rng(1).standard_normal((32, 4)).astype(np.float32))
    acts, old_logp, values = [], [], []
    with lib.no_grad():
        for t in range(32):
            d = lib.distributions.Categorical(logits=pi(obs[t : t + 1]))
            a = d.sample()
            acts.append(a)
            old_logp.append(d.log_prob(a))
            values.append(vf(obs[t : t + 1]).flatten())
    actions, old_logp, values = lib.cat(acts), lib.cat(old_logp), lib.cat(values)
    returns = (actions == (obs[:, 0] > 0).long()).float()
    adv_all = returns - values
    losses = []
    for _ in range(3):
        for idx in lib.randperm(32).split(16):
            d = lib.distributions.Categorical(logits=pi(obs[idx]))
            logp = d.log_prob(actions[idx])
            ratio = lib.exp(logp - old_logp[idx])
            adv = adv_all[idx]
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
            pg = -lib.min(adv * ratio, adv * lib.clamp(ratio, 0.8, 1.2)).mean()
            vloss = F.mse_loss(returns[idx], vf(obs[idx]).flatten())
            loss = pg + 0.5 * vloss - 0.01 * d.entropy().mean()
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(params, 0.5)
            opt.step()
            losses.append(loss.item())
    return actions.numpy(), losses, [p.detach().numpy() for p in params]


def test_ppo_rollout_and_update_match_torch():
    (ea, el, ep), (ta, tl, tp) = _ppo_program(ember), _ppo_program(torch)
    np.testing.assert_array_equal(ea, ta)  # the same actions, step for step
    assert len(set(ea.tolist())) == 2
    _close(el, tl, rtol=1e-4, atol=1e-6)
    for e, t in zip(ep, tp):
        _close(e, t, rtol=1e-4, atol=1e-5)


# ---- SAC: tanh-squashed Gaussian actor, twin update, polyak target ----------------------------
def _sac_program(lib):
    nn, F = lib.nn, lib.nn.functional
    lib.manual_seed(1)
    body = nn.Sequential(nn.Linear(3, 16), nn.ReLU())
    mu_head, log_std_head = nn.Linear(16, 2), nn.Linear(16, 2)
    q = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 1))
    q_targ = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 1))
    q_targ.load_state_dict(q.state_dict())
    q_targ.requires_grad_(False)
    actor_params = [*body.parameters(), *mu_head.parameters(), *log_std_head.parameters()]
    log_alpha = lib.log(lib.ones(1) * 1.0).requires_grad_(True)
    opt_a = lib.optim.Adam(actor_params, lr=3e-3)
    opt_q = lib.optim.Adam(q.parameters(), lr=3e-3)
    opt_e = lib.optim.Adam([log_alpha], lr=3e-3)
    rng = np.random.default_rng(2)
    obs, nxt = (lib.as_tensor(rng.standard_normal((64, 3)).astype(np.float32)) for _ in "ab")
    rew = lib.as_tensor(rng.standard_normal((64, 1)).astype(np.float32))

    def act(o):
        h = body(o)
        log_std = lib.clamp(log_std_head(h), -20, 2)
        d = lib.distributions.Normal(mu_head(h), log_std.exp())
        u = d.rsample()
        a = lib.tanh(u)
        # SB3's TanhBijector correction: log(1 - tanh(u)^2 + eps)
        logp = d.log_prob(u).sum(dim=1) - lib.log(1 - a**2 + 1e-6).sum(dim=1)
        return a, logp.reshape(-1, 1)

    out, draws = [], []
    for _ in range(3):
        a, logp = act(obs)
        draws.append(a.detach().numpy())
        ent_loss = -(log_alpha * (logp + 2.0).detach()).mean()
        opt_e.zero_grad()
        ent_loss.backward()
        opt_e.step()
        alpha = lib.exp(log_alpha.detach())
        with lib.no_grad():
            na, nlogp = act(nxt)
            target = rew + 0.99 * (q_targ(lib.cat([nxt, na], dim=1)) - alpha * nlogp)
        q_loss = 0.5 * F.mse_loss(q(lib.cat([obs, a.detach()], dim=1)), target)
        opt_q.zero_grad()
        q_loss.backward()
        opt_q.step()
        actor_loss = (alpha * logp - q(lib.cat([obs, a], dim=1))).mean()
        opt_a.zero_grad()
        actor_loss.backward()
        opt_a.step()
        with lib.no_grad():  # SB3's polyak_update
            tp, sp = list(q_targ.parameters()), list(q.parameters())
            lib._foreach_mul_(tp, 1 - 0.05)
            lib._foreach_add_(tp, sp, alpha=0.05)
        out.append([ent_loss.item(), q_loss.item(), actor_loss.item()])
    return np.array(out), np.stack(draws), [p.numpy() for p in q_targ.parameters()]


def test_squashed_gaussian_sac_update_and_polyak_match_torch():
    (el, ed, et), (tl, td, tt) = _sac_program(ember), _sac_program(torch)
    # float32 normals of 16+ elements agree with torch's to a few ulps
    _close(ed, td, rtol=1e-5, atol=1e-6)
    _close(el, tl, rtol=1e-4, atol=1e-6)
    for e, t in zip(et, tt):
        _close(e, t, rtol=1e-4, atol=1e-6)


# ---- the distributions' seeded draws ----------------------------------------------------------
_DRAWS = {
    "Normal.sample (5, float32)": lambda D, lib: D.Normal(lib.zeros(5), 1.0).sample(),
    "Normal.rsample (64x2)": lambda D, lib: D.Normal(lib.zeros(64, 2), lib.ones(64, 2)).rsample(),
    "Normal (float64)": lambda D, lib: D.Normal(lib.zeros(20, dtype=lib.float64), 2.0).sample(),
    "Independent(Normal)": lambda D, lib: D.Independent(D.Normal(lib.zeros(4, 3), 1.0), 1).sample(),
    "Uniform": lambda D, lib: D.Uniform(lib.zeros(7), 2.0).sample((2,)),
    "Laplace": lambda D, lib: D.Laplace(lib.zeros(7), 2.0).sample(),
    "Exponential": lambda D, lib: D.Exponential(lib.ones(7)).sample(),
    "Bernoulli": lambda D, lib: D.Bernoulli(probs=lib.full((3, 9), 0.4)).sample(),
    "Gumbel": lambda D, lib: D.Gumbel(lib.zeros(5), 1.0).sample(),
    "Geometric": lambda D, lib: D.Geometric(probs=lib.full((6,), 0.3)).sample(),
    "Multinomial": lambda D, lib: D.Multinomial(10, probs=lib.tensor([0.2, 0.3, 0.5])).sample((3,)),
    "OneHotCategorical": lambda D, lib: D.OneHotCategorical(logits=lib.zeros(2, 3)).sample((4,)),
    "MultivariateNormal": lambda D, lib: D.MultivariateNormal(lib.zeros(3), lib.eye(3)).sample(
        (6,)
    ),
}


@pytest.mark.parametrize("name", list(_DRAWS))
def test_distribution_draws_match_torch_under_one_seed(name):
    """Normal (DiagGaussian), Bernoulli (MultiBinary) and friends draw torch's numbers from
    torch's CPU stream, in the parameters' own dtype."""
    out = []
    for lib in (ember, torch):
        lib.manual_seed(0)
        out.append(_DRAWS[name](lib.distributions, lib).numpy())
        out.append(lib.rand(3).numpy())  # the stream is left where torch leaves it
    assert out[0].dtype == out[2].dtype
    _close(out[0], out[2], rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(out[1], out[3])


# ---- a saved policy zip -----------------------------------------------------------------------
def _policy(lib):
    lib.manual_seed(4)
    nn = lib.nn
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))


def _train_step(lib, model, opt, x):
    loss = model(x).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.item()


def _save_zip(lib, model, opt, **kw) -> bytes:
    """SB3's ``save_to_zip_file``: JSON data plus one ``torch.save`` file per state dict."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("data", json.dumps({"n_steps": 3}))
        for name, sd in (
            ("policy.pth", model.state_dict()),
            ("policy.optimizer.pth", opt.state_dict()),
        ):
            with z.open(name, "w", force_zip64=True) as f:
                lib.save(sd, f, **kw)
    return buf.getvalue()


def _load_zip(lib, blob):
    with zipfile.ZipFile(io.BytesIO(blob)) as z:
        data = json.loads(z.read("data"))
        sds = {
            n: lib.load(io.BytesIO(z.read(n)), map_location=lib.device("cpu"), weights_only=True)
            for n in ("policy.pth", "policy.optimizer.pth")
        }
    return data, sds


@pytest.mark.parametrize("writer", ["ember", "torch", "ember-torch-format"])
def test_policy_zip_round_trip_resumes_like_torch(writer):
    """A policy and its Adam state saved into a zip by one framework load with
    ``weights_only=True`` in the other (where its format allows) and training resumes as in
    torch: ember reads torch's files, torch reads ember's written with
    ``_use_new_zipfile_serialization=True``."""
    x = np.random.default_rng(5).standard_normal((6, 4)).astype(np.float32)
    src = ember if writer.startswith("ember") else torch
    kw = {"_use_new_zipfile_serialization": True} if writer == "ember-torch-format" else {}
    model = _policy(src)
    opt = src.optim.Adam(model.parameters(), lr=1e-2)
    _train_step(src, model, opt, src.as_tensor(x))
    blob = _save_zip(src, model, opt, **kw)
    readers = (ember, torch) if writer != "ember" else (ember,)
    results = []
    for lib in readers:
        data, sds = _load_zip(lib, blob)
        assert data == {"n_steps": 3}
        m = _policy(lib)
        m.load_state_dict(sds["policy.pth"])
        o = lib.optim.Adam(m.parameters(), lr=1e-2)
        o.load_state_dict(sds["policy.optimizer.pth"])
        losses = [_train_step(lib, m, o, lib.as_tensor(x)) for _ in range(3)]
        with lib.no_grad():
            act = m(lib.as_tensor(x)).argmax(dim=1).numpy()  # predict(deterministic=True)
        results.append((losses, act, [p.detach().numpy() for p in m.parameters()]))
    ref_model = _policy(torch)  # the whole run in torch, never saved
    ref_opt = torch.optim.Adam(ref_model.parameters(), lr=1e-2)
    ref = [_train_step(torch, ref_model, ref_opt, torch.as_tensor(x)) for _ in range(4)]
    for losses, act, params in results:
        _close(losses, ref[1:], rtol=1e-5)
        np.testing.assert_array_equal(act, ref_model(torch.as_tensor(x)).argmax(dim=1).numpy())
        for p, q in zip(params, ref_model.parameters()):
            _close(p, q.detach().numpy(), rtol=1e-5)


def test_observation_preprocessing_idioms():
    """``get_device("auto")`` on a CPU-only machine, ``as_tensor`` of uint8 images scaled to
    [0, 1] and channels-first, one-hot of Discrete observations."""
    img = np.random.default_rng(6).integers(0, 256, (2, 36, 36, 3), dtype=np.uint8)
    out = []
    for lib in (ember, torch):
        dev = lib.device("cuda")
        if dev.type == lib.device("cuda").type and not lib.cuda.is_available():
            dev = lib.device("cpu")
        assert dev.type == ("cuda" if lib.cuda.is_available() else "cpu")
        t = lib.as_tensor(img, device=dev).permute(0, 3, 1, 2).float() / 255.0
        oh = lib.nn.functional.one_hot(lib.as_tensor(np.array([2, 0])).long(), num_classes=4)
        out.append((t.cpu().numpy(), oh.float().numpy()))
    np.testing.assert_array_equal(out[0][0], out[1][0])
    np.testing.assert_array_equal(out[0][1], out[1][1])


def test_porting_examples_sb3_snippet_runs(capsys):
    """The docs' snippet (docs/porting_examples.md, "Stable-Baselines3") prints torch's actions
    for the same seed."""
    import pathlib

    doc = pathlib.Path(__file__).resolve().parents[1] / "docs" / "porting_examples.md"
    section = doc.read_text().split("\n## Stable-Baselines3\n", 1)[1].split("\n## ", 1)[0]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(code, "sb3-doc", "exec"), {})
    exec(compile(code.replace("import ember as torch", "import torch"), "sb3-doc", "exec"), {})
    ours, theirs = capsys.readouterr().out.splitlines()
    assert ours.replace("ember.", "torch.") == theirs
