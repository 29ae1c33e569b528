"""World Models (papers/world_models): the MDN likelihood against a hand computation
with scipy, temperature sampling (tau -> 0 deterministic, tau's effect on weights
and spread), the dream env's step against M's own forward pass, a CMA-ES run on a
controller problem with a known optimum, the paper's parameter counts, the KL floor,
a resumed CMA-ES state, and the real game's wrapper."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest
import torch
from scipy import stats

from papers.world_models import envs as E
from papers.world_models import method as M
from papers.world_models.experiment import Blob

pytestmark = pytest.mark.usefixtures("one_thread")


def test_mdn_log_prob_matches_scipy_mixture():
    g = torch.Generator().manual_seed(0)
    B, Z, K = 3, 4, 5
    logits = torch.randn(B, Z, K, generator=g, dtype=torch.float64)
    logmix = torch.log_softmax(logits, -1)
    mean = torch.randn(B, Z, K, generator=g, dtype=torch.float64)
    logstd = 0.5 * torch.randn(B, Z, K, generator=g, dtype=torch.float64)
    y = torch.randn(B, Z, generator=g, dtype=torch.float64)
    ours = M.mdn_log_prob(logmix, mean, logstd, y).numpy()
    pi = np.exp(logmix.numpy())
    dens = (pi * stats.norm.pdf(y.numpy()[..., None], mean.numpy(), np.exp(logstd.numpy()))).sum(-1)
    np.testing.assert_allclose(ours, np.log(dens), rtol=1e-10, atol=1e-12)


def test_mdn_loss_is_masked_mean_nll_plus_weighted_done_bce():
    torch.manual_seed(0)
    model = M.MDNRNN(z_dim=3, action_dim=1, hidden=8, mixtures=2).double()
    z, a = torch.randn(2, 5, 3, dtype=torch.float64), torch.randn(2, 5, 1, dtype=torch.float64)
    zn = torch.randn(2, 5, 3, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.float64)
    done = torch.tensor([[0, 0, 1, 0, 0], [0, 0, 0, 0, 0]], dtype=torch.float64)
    loss, st = M.mdn_loss(model, z, a, zn, mask, done, done_factor=10.0)
    (logmix, mean, logstd, logit), _ = model(z, a)
    # by hand: per (step, dim) mixture log density, averaged over dims and kept steps
    lp = np.zeros((2, 5))
    for b in range(2):
        for t in range(5):
            for d in range(3):
                w = np.exp(logmix[b, t, d].detach().numpy())
                lp[b, t] += np.log((w * stats.norm.pdf(zn[b, t, d].item(), mean[b, t, d].detach().numpy(),
                                                       np.exp(logstd[b, t, d].detach().numpy()))).sum()) / 3
    m = mask.numpy()
    nll = -(lp * m).sum() / m.sum()
    p = 1 / (1 + np.exp(-logit.detach().numpy()))
    y = done.numpy()
    bce = -(y * np.log(p) + (1 - y) * np.log(1 - p)) * (1 + 9 * y)
    assert st["z_nll"].item() == pytest.approx(nll, rel=1e-9)
    assert loss.item() == pytest.approx(nll + (bce * m).sum() / m.sum(), rel=1e-9)


def _mixture(B=4, Z=6, K=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    logmix = torch.log_softmax(torch.randn(B, Z, K, generator=g), -1)
    return logmix, torch.randn(B, Z, K, generator=g), torch.randn(B, Z, K, generator=g) * 0.3


def test_tau_zero_is_deterministic_and_picks_the_modal_component():
    logmix, mean, logstd = _mixture()
    a = M.sample_next_z(logmix, mean, logstd, 0.0, torch.Generator().manual_seed(1))
    b = M.sample_next_z(logmix, mean, logstd, 0.0, torch.Generator().manual_seed(2))
    modal = mean.gather(-1, logmix.argmax(-1, keepdim=True))[..., 0]
    assert torch.equal(a, b) and torch.equal(a, modal)
    # continuity: a tiny tau gives (almost) the same sample; tau = 1 does not
    c = M.sample_next_z(logmix, mean, logstd, 1e-6, torch.Generator().manual_seed(3))
    assert torch.allclose(c, modal, atol=1e-2)
    d = M.sample_next_z(logmix, mean, logstd, 1.0, torch.Generator().manual_seed(3))
    assert (d - modal).abs().max() > 0.1


def test_tau_sharpens_weights_and_scales_std_by_sqrt_tau():
    n = 40000
    # one component: the spread is exp(logstd) * sqrt(tau)
    logmix = torch.zeros(n, 1, 1)
    mean, logstd = torch.full((n, 1, 1), 2.0), torch.full((n, 1, 1), np.log(0.5))
    for tau in (0.25, 1.0, 1.5):
        z = M.sample_next_z(logmix, mean, logstd, tau, torch.Generator().manual_seed(0))
        assert z.std().item() == pytest.approx(0.5 * np.sqrt(tau), rel=0.03)
        assert z.mean().item() == pytest.approx(2.0, abs=0.02)
    # two well-separated components: frequencies follow softmax(log weights / tau)
    w = torch.tensor([0.8, 0.2])
    logmix = torch.log(w).expand(n, 1, 2).clone()
    mean = torch.tensor([-10.0, 10.0]).expand(n, 1, 2).clone()
    logstd = torch.full((n, 1, 2), -3.0)
    for tau in (0.5, 1.0, 2.0):
        z = M.sample_next_z(logmix, mean, logstd, tau, torch.Generator().manual_seed(1))
        expect = torch.softmax(torch.log(w) / tau, 0)[1].item()
        assert (z > 0).float().mean().item() == pytest.approx(expect, abs=0.01)
    # a per-row tau tensor equals the scalar call row by row
    lm, me, ls = _mixture(B=3)
    taus = torch.tensor([0.0, 0.0, 0.0])
    assert torch.equal(M.sample_next_z(lm, me, ls, taus), M.sample_next_z(lm, me, ls, 0.0))


def test_dream_step_matches_the_forward_pass_of_m():
    torch.manual_seed(0)
    mdn = M.MDNRNN(z_dim=4, action_dim=1, hidden=6, mixtures=3).eval()
    init_mu, init_lv = torch.randn(5, 4), torch.full((5, 4), -30.0)  # (almost) no posterior noise
    env = E.DreamEnv(mdn, init_mu, init_lv, tau=0.0, num_envs=3, max_steps=50,
                     generator=torch.Generator().manual_seed(0))
    obs, _ = env.reset()
    acts = torch.rand(8, 3, 1) * 2 - 1
    zs, obs_seq, dones = [obs[:, :4]], [obs], []
    for t in range(8):
        obs, r, term, trunc, _ = env.step(acts[t])
        zs.append(obs[:, :4])
        obs_seq.append(obs)
        dones.append(term)
    z_in = torch.stack(zs[:-1], 1)
    with torch.no_grad():
        (logmix, mean, logstd, logit), _ = mdn(z_in, acts.transpose(0, 1))
        out, _ = mdn.lstm(torch.cat([z_in, acts.transpose(0, 1)], -1))
    for t in range(8):
        alive = ~torch.stack(dones[:t]).any(0) if t else torch.ones(3, dtype=torch.bool)
        modal = mean[:, t].gather(-1, logmix[:, t].argmax(-1, keepdim=True))[..., 0]
        assert torch.allclose(zs[t + 1][alive], modal[alive], atol=1e-5)
        assert torch.allclose(obs_seq[t + 1][alive, 4 + 6:], out[alive, t], atol=1e-5)  # h
        assert torch.equal(dones[t][alive], (logit[:, t] > 0)[alive])


def test_dream_rows_that_are_done_stay_done_and_earn_nothing():
    torch.manual_seed(0)
    mdn = M.MDNRNN(z_dim=2, action_dim=1, hidden=4, mixtures=2).eval()
    with torch.no_grad():
        mdn.head.bias[-1] = 50.0  # the done logit: every row dies at the first step
    env = E.DreamEnv(mdn, torch.zeros(1, 2), torch.zeros(1, 2), tau=1.0, num_envs=4, max_steps=10)
    ret = E.rollout(env, lambda o: torch.zeros(4, 1), seed=0, max_steps=10)
    assert ret.tolist() == [1.0] * 4


def test_cma_finds_a_known_linear_controller():
    import cma

    g = torch.Generator().manual_seed(0)
    obs = torch.randn(1, 64, 3, generator=g)
    w_star = torch.tensor([0.8, -0.5, 0.3])
    target = torch.tanh(obs @ w_star.view(3, 1))
    es = cma.CMAEvolutionStrategy(np.zeros(3), 0.5, {"popsize": 12, "seed": 1, "verbose": -9})
    for _ in range(60):
        xs = es.ask()
        p = torch.tensor(np.array(xs), dtype=torch.float32)
        acts = M.controller_actions("z", p, obs.expand(len(xs), -1, -1), z_dim=3)  # the whole population at once
        es.tell(xs, ((acts - target) ** 2).mean((1, 2)).tolist())
    assert np.abs(es.result.xfavorite - w_star.numpy()).max() < 0.02


def test_controller_kinds_and_the_papers_parameter_counts():
    assert M.controller_size("zh", 64, 512) == 1088           # paper: 1,088 (Doom)
    assert M.controller_size("z_hidden", 32, 256, 3) == 1443  # paper: 1,443 (CarRacing, hidden layer)
    assert sum(p.numel() for p in M.ConvVAE(64).parameters()) == 4_446_915      # paper: Doom V
    assert sum(p.numel() for p in M.ConvVAE(32).parameters()) == 4_348_547      # paper: CarRacing V
    assert sum(p.numel() for p in M.MDNRNN(64, 1, 512, 5).parameters()) == 1_678_785  # paper: Doom M
    # a linear controller is tanh(W x) on the right inputs, per candidate
    obs = torch.randn(2, 3, 4 + 2 * 5)
    p = torch.randn(2, 14)
    a = M.controller_actions("zh", p, obs, z_dim=4)
    assert torch.allclose(a[1, 2, 0], torch.tanh(obs[1, 2] @ p[1]))
    pz = torch.randn(2, 4)
    assert torch.allclose(M.controller_actions("z", pz, obs, 4)[0, 1, 0], torch.tanh(obs[0, 1, :4] @ pz[0]))
    assert M.controller_actions("z_hidden", torch.randn(2, M.controller_size("z_hidden", 4, 5)), obs, 4).shape == (2, 3, 1)
    assert M.doom_buttons(-0.5) == [1, 0] and M.doom_buttons(0.2) == [0, 0] and M.doom_buttons(0.34) == [0, 1]


def test_kl_is_summed_and_floored_per_frame():
    x = torch.rand(2, 3, 64, 64)
    mu = torch.zeros(2, 8, requires_grad=True)
    logvar = torch.zeros(2, 8, requires_grad=True)
    loss, st = M.vae_loss(x, x.clone(), mu, logvar, kl_tolerance=0.5)
    assert loss.item() == pytest.approx(0.5 * 8)   # zero reconstruction error, KL 0 floored at 4 nats
    loss.backward()
    assert mu.grad.abs().max() == 0                   # below the floor the KL gives no gradient
    mu2 = torch.full((1, 8), 3.0)
    _, st2 = M.vae_loss(x[:1], x[:1], mu2, torch.zeros(1, 8))
    assert st2["kl"].item() == pytest.approx(0.5 * 9 * 8)  # summed over dims: 8 x mu^2 / 2


def test_cma_state_survives_a_checkpoint_round_trip():
    import cma

    def run(split):
        es = cma.CMAEvolutionStrategy(np.zeros(5), 0.3, {"popsize": 6, "seed": 3, "verbose": -9})
        for g in range(6):
            if g == split:
                blob = Blob(es).state_dict()
                fresh = Blob()
                fresh.load_state_dict(blob)
                es = fresh.obj
            xs = es.ask()
            es.tell(xs, [float(np.sum(np.square(np.array(x) - 1))) for x in xs])
        return es.result.xfavorite

    np.testing.assert_array_equal(run(split=-1), run(split=3))


def test_real_game_wrapper_frames_and_a_random_episode(tmp_path):
    job = {"path": str(tmp_path / "ep.npz"), "seed": 5, "max_steps": 40}
    out = E.random_episode(job)
    E.close_games()
    with np.load(job["path"]) as f:
        frames, actions = f["frames"], f["action"]
    assert frames.shape == (out["length"], 64, 64, 3) and frames.dtype == np.uint8
    assert len(actions) == out["length"] <= 40 and np.abs(actions).max() <= 1
    assert frames.std() > 5  # real pictures, not a blank screen
    assert E.random_episode(job) == out  # resumable: an existing file is read, not replayed


def test_sequence_batch_keeps_the_death_step_in_the_done_loss():
    from papers.world_models.experiment import sequence_batch

    eps = [{"action": np.zeros(4, np.float32), "terminated": True},
           {"action": np.zeros(2, np.float32), "terminated": False}]
    lat = [(torch.zeros(4, 3), torch.zeros(4, 3)), (torch.zeros(2, 3), torch.zeros(2, 3))]
    z, a, zn, mz, m, d = sequence_batch(lat, eps, [0, 1], torch.Generator().manual_seed(0))
    assert d.tolist() == [[0, 0, 0, 1], [0, 0, 0, 0]]           # death at the last action; truncation is no death
    assert mz.tolist() == [[1, 1, 1, 0], [1, 0, 0, 0]] and m.tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    torch.manual_seed(0)
    model = M.MDNRNN(3, 1, 4, 2)
    with torch.no_grad():
        model.head.bias[-1] = -5.0
    _, with_death = M.mdn_loss(model, z, a, zn, mz, d, 10.0, done_mask=m)
    _, without = M.mdn_loss(model, z, a, zn, mz, d, 10.0)   # mask_z alone would drop the death step
    assert with_death["done_bce"] > 5 * without["done_bce"]


def test_done_probability_undoes_the_loss_weighting():
    # the weighted cross entropy over a constant rate p is minimised where sigmoid(logit) = f p / (f p + 1 - p)
    p, f = 0.01, 10.0
    logit = torch.linspace(-8, 2, 20001, dtype=torch.float64)
    q = torch.sigmoid(logit)
    loss = -(f * p * torch.log(q) + (1 - p) * torch.log(1 - q))
    best = logit[loss.argmin()]
    assert M.done_probability(best, f).item() == pytest.approx(p, rel=2e-3)
    # sampled deaths in the dream follow that probability
    mdn = M.MDNRNN(z_dim=2, action_dim=1, hidden=4, mixtures=2).eval()
    with torch.no_grad():
        mdn.head.weight[-1] = 0.0
        mdn.head.bias[-1] = float(best)
    env = E.DreamEnv(mdn, torch.zeros(1, 2), torch.zeros(1, 2), tau=1.0, num_envs=4000, max_steps=1,
                     generator=torch.Generator().manual_seed(0), done_mode="sample", done_factor=f)
    env.reset()
    _, _, term, _, _ = env.step(torch.zeros(4000, 1))
    assert term.float().mean().item() == pytest.approx(p, abs=0.006)


def _square_or_die(j):
    if j == 3:
        os.kill(os.getpid(), signal.SIGKILL)  # as the OOM killer, or the VizDoom segfault that once hung CI
    return j * j


def test_parallel_map_keeps_order_and_fails_on_a_dead_worker():
    from registry import ReproError

    assert E.parallel_map(_square_or_die, [0, 1, 2, 4, 5], workers=2) == [0, 1, 4, 16, 25]
    t0 = time.monotonic()
    with pytest.raises(ReproError, match="died"):
        E.parallel_map(_square_or_die, list(range(6)), workers=2)
    assert time.monotonic() - t0 < 30  # raised, not left waiting for the lost job
