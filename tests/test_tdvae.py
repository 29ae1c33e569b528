"""TD-VAE: log-densities, no look-ahead in the belief, pair sampling, a known-answer test of
the importance-sampled likelihood, learning on a tiny batch, rollouts."""

import math

import pytest
import torch
from torch import distributions as dist

from papers.tdvae import method as M


def test_gaussian_log_prob_and_kl_match_torch_distributions():
    g = torch.Generator().manual_seed(0)
    x, mu, ls = (torch.randn(5, 3, generator=g) for _ in range(3))
    mu_p, ls_p = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    ref = dist.Independent(dist.Normal(mu, ls.exp()), 1)
    ref_p = dist.Independent(dist.Normal(mu_p, ls_p.exp()), 1)
    torch.testing.assert_close(M.gaussian_log_prob(x, mu, ls), ref.log_prob(x))
    torch.testing.assert_close(M.gaussian_kl(mu, ls, mu_p, ls_p), dist.kl_divergence(ref, ref_p))
    xb = torch.randint(0, 2, (5, 3), generator=g).float()
    torch.testing.assert_close(M.bernoulli_log_prob(xb, mu),
                               dist.Independent(dist.Bernoulli(logits=mu), 1).log_prob(xb))


def test_hierarchy_log_prob_matches_its_sampler():
    torch.manual_seed(0)
    h = M.Hierarchy(6, (3, 2), 16)
    c = torch.randn(4, 6)
    z, logp = h.sample(c, torch.Generator().manual_seed(1))
    torch.testing.assert_close(h.log_prob(z, c), logp)


def test_belief_does_not_look_ahead():
    torch.manual_seed(0)
    model = M.TDVAE(3, d_belief=16, z_dims=(4, 2), d_hidden=16, d_pre=16)
    x = torch.randn(2, 12, 3)
    y = x.clone()
    y[:, 7:] = torch.randn(2, 5, 3) * 10  # alter observations x_8..x_12
    bx, by = model.belief(x), model.belief(y)
    assert bx.shape == (2, 13, 16)
    torch.testing.assert_close(bx[:, :8], by[:, :8])  # b_0..b_7 have read x_1..x_7 only
    assert not torch.allclose(bx[:, 8], by[:, 8])
    torch.testing.assert_close(bx[:, 0], torch.zeros(2, 16))


def test_sample_pairs_respects_ranges():
    g = torch.Generator().manual_seed(0)
    skips = [(0.8, 1, 10), (0.2, 1, 120)]
    t1, t2 = M.sample_pairs(500, 200, 4, skips, g)
    dt = t2 - t1
    assert t1.shape == (500, 4) and (t1 >= 0).all() and (t2 <= 200).all() and (dt >= 1).all()
    assert dt.max() <= 120 and dt.max() > 10
    frac_long = (dt > 10).float().mean().item()  # 0.2 * 110 / 120 of the draws
    assert abs(frac_long - 0.2 * 110 / 120) < 0.03
    with pytest.raises(ValueError, match="does not fit"):
        M.sample_pairs(2, 5, 1, [(1.0, 6, 8)], g)


def _linear_gaussian(model, m0=0.3, s0=0.8, s=0.5):
    """Turn a model with z_dim 1 and the read-first decoder into the random walk
    z_0 ~ N(m0, s0^2), z_t = z_{t-1} + N(0, s^2), x_t = z_t + N(0, obs_std^2)."""
    with torch.no_grad():
        def const(block, mean, std):
            for lin in (block.mu, block.logsig):
                lin.weight.zero_()
            block.mu.bias.fill_(mean)
            block.logsig.bias.zero_()
            raw0 = block(torch.zeros(1, block.gate.in_features))[1].item()  # log-std at raw = 0
            # solve 4.5 tanh((raw + 1.5) / 4.5) - 1.5 = log std for raw
            block.logsig.bias.fill_(4.5 * math.atanh((math.log(std) + 1.5) / 4.5) - 1.5)
            assert abs(block(torch.zeros(1, block.gate.in_features))[1].item() - math.log(std)) < 1e-5, raw0
        const(model.p_b.blocks[0], m0, s0)  # b_0 = 0: the prior on z_0 depends on the biases only
        const(model.p_t, 0.0, s)  # residual mean: z_t = z_{t-1} + 0


@pytest.mark.parametrize("cls", [M.TDVAE, M.Filtering, M.MeanField])
def test_importance_sampled_likelihood_known_answer(cls):
    """In a linear-Gaussian special case log p(x_1:T) is a Gaussian density; every model's
    importance-sampling estimate (its own learned-network proposal, untrained) must
    converge to it, and its ELBO must lie below."""
    torch.manual_seed(0)
    obs, m0, s0, s, T = 0.4, 0.3, 0.8, 0.5, 3
    model = cls(1, d_belief=8, z_dims=(1,), d_hidden=8, d_pre=8, read_first=True, obs_std=obs)
    _linear_gaussian(model, m0, s0, s)
    x = torch.tensor([[[0.5], [1.1], [0.2]], [[-0.4], [0.0], [0.9]]])
    idx = torch.arange(1, T + 1, dtype=torch.float)
    cov = s0 ** 2 + torch.minimum(idx[:, None], idx[None, :]) * s ** 2 + obs ** 2 * torch.eye(T)
    exact = dist.MultivariateNormal(torch.full((T,), m0), cov).log_prob(x[..., 0])
    elbo, ll = M.importance_nll(model, x, 40000, torch.Generator().manual_seed(2))
    torch.testing.assert_close(ll, exact, atol=0.05, rtol=0)
    assert (elbo < exact).all()


def test_tdvae_loss_decreases_on_a_tiny_oscillator_batch():
    from papers.tdvae.data import oscillator
    torch.manual_seed(0)
    data = oscillator(16, 40, torch.Generator().manual_seed(0))
    x = data["x"]
    model = M.TDVAE(1, d_belief=32, z_dims=(4, 4), d_hidden=32, d_pre=16, read_first=True, dt_scale=10.0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(1)
    skips = [(0.8, 1, 5), (0.2, 1, 20)]

    def eval_loss():
        with torch.no_grad():
            return model.loss(x, skips, 16, torch.Generator().manual_seed(9))[0].item()

    before = eval_loss()
    for _ in range(60):
        loss, _ = model.loss(x, skips, 8, g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert eval_loss() < before - 1.0


def test_gradient_reaches_the_belief_at_t2_through_z_t2():
    torch.manual_seed(0)
    model = M.TDVAE(2, d_belief=8, z_dims=(3,), d_hidden=8, d_pre=8)
    x = torch.randn(1, 6, 2)
    b = model.belief(x).detach().requires_grad_(True)
    terms = model.pair_terms(x, torch.tensor([[1]]), torch.tensor([[4]]), beliefs=b)
    terms["log_p_d"].sum().backward()  # only the reconstruction of x_4 from z_4 ~ p_B(b_4)
    assert b.grad[0, 4].abs().sum() > 0
    assert b.grad[0, [0, 1, 2, 3, 5]].abs().sum() == 0


@pytest.mark.parametrize("cls", [M.TDVAE, M.Filtering, M.MeanField])
def test_sequential_losses_are_finite_and_differentiable(cls):
    torch.manual_seed(0)
    model = cls(10, d_belief=8, z_dims=(3,), d_hidden=8, d_pre=8, decoder="bernoulli")
    x = torch.randint(0, 2, (3, 5, 10)).float()
    loss, stats = model.sequential_loss(x, torch.Generator().manual_seed(0))
    loss.backward()
    assert torch.isfinite(loss) and all(math.isfinite(v) for v in stats.values())
    assert all(p.grad is not None for n, p in model.named_parameters() if n.startswith(("belief", "decoder")))


def _tiny_rollout_setup():
    """A small untrained oscillator TD-VAE, 3 sequences of 30 steps and a jump then unit steps."""
    torch.manual_seed(0)
    model = M.TDVAE(1, d_belief=8, z_dims=(2, 2), d_hidden=8, d_pre=8, read_first=True)
    return model, torch.randn(3, 30, 1), [20] + [1] * 5


def test_rollouts_shapes_and_reproducible():
    model, x, jumps = _tiny_rollout_setup()
    a, za = model.rollout(x, 10, jumps, torch.Generator().manual_seed(5), samples=4)
    b, _ = model.rollout(x, 10, jumps, torch.Generator().manual_seed(5), samples=4)
    assert a.shape == (3, 4, 6, 1) and za.shape == (3, 4, 6, 4)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a[..., 0], za[..., 0])  # read-first decoder
    # altering observations after t = 10 changes nothing
    y = x.clone()
    y[:, 10:] += 5
    c, _ = model.rollout(y, 10, jumps, torch.Generator().manual_seed(5), samples=4)
    torch.testing.assert_close(a, c)


def test_fit_sinusoid_recovers_a_known_sinusoid():
    from papers.tdvae.data import fit_sinusoid, wrap
    k = torch.arange(21, dtype=torch.float)
    w, a, phi = torch.tensor([0.3, 0.5, 0.9]), torch.tensor([0.7, 1.2, 1.0]), torch.tensor([2.5, -1.0, 0.2])
    y = a[:, None] * torch.sin(w[:, None] * k + phi[:, None]) + 0.05
    wf, af, pf = fit_sinusoid(y)
    torch.testing.assert_close(wf, w, atol=2.6e-3, rtol=0)  # the omega grid step is 0.0025
    torch.testing.assert_close(af, a, atol=0.02, rtol=0)
    assert wrap(pf - phi).abs().max() < 0.05


def test_oscillator_state_and_noiseless_continuation_agree():
    from papers.tdvae.data import noiseless_continuation, oscillator
    d = oscillator(5, 50, torch.Generator().manual_seed(0), process_noise=0.0, obs_noise=0.0)
    cont = noiseless_continuation(d["pos"][:, 9], d["u"][:, 9], d["omega"], 30)
    torch.testing.assert_close(cont, d["pos"][:, 10:40], atol=1e-4, rtol=0)
    amp = torch.sqrt(d["pos"] ** 2 + d["u"] ** 2)
    torch.testing.assert_close(amp, d["amplitude"][:, None].expand(5, 50), atol=1e-4, rtol=0)
    torch.testing.assert_close(d["x"][..., 0], d["pos"])


def test_piecewise_frequencies_label_sets_the_last_segment():
    from papers.tdvae.data import fit_sinusoid, piecewise_frequencies
    d = piecewise_frequencies(64, 30, torch.Generator().manual_seed(0), f_pair=(0.25, 0.5), obs_noise=0.0)
    assert d["x"].shape == (64, 70, 1) and d["probe_t"] == 50
    w, _, _ = fit_sinusoid(d["x"][:, 50:, 0])  # the last segment
    expect = torch.where(d["label"].bool(), 0.25, 0.5)
    torch.testing.assert_close(w, expect, atol=3e-3, rtol=0)


def test_moving_digits_and_motion_estimate():
    from papers.tdvae.data import horizontal_motion, moving_digits
    g = torch.Generator().manual_seed(0)
    images = (torch.rand(10, 28, 28, generator=g) > 0.7).float()
    d = moving_digits(images, torch.arange(10), 12, 8, g)
    frames = d["x"].view(12, 8, 28, 28)
    assert set(d["direction"].tolist()) == {-1, 1}
    assert set(d["x"].unique().tolist()) <= {0.0, 1.0}
    for i in range(12):
        assert torch.equal(torch.roll(frames[i, 3], int(d["direction"][i]), -1), frames[i, 4])
    motion = horizontal_motion(frames)
    assert torch.equal(motion, d["direction"][:, None].expand(12, 7))
    assert torch.equal(horizontal_motion(frames[:, ::2]), 2 * d["direction"][:, None].expand(12, 3))


def test_linear_probe_separates_separable_data_and_not_noise():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 5, generator=g)
    y = (x[:, 2] > 0).long()
    assert M.probe_accuracy(x[:300], y[:300], x[300:], y[300:]) > 95
    noise = torch.randint(0, 2, (400,), generator=g)
    assert M.probe_accuracy(x[:300], noise[:300], x[300:], noise[300:]) < 70


def test_shift_invariant_features():
    from papers.tdvae.experiment import shift_invariant_features
    img = torch.rand(2, 28, 28)
    torch.testing.assert_close(shift_invariant_features(img), shift_invariant_features(torch.roll(img, 5, -1)))


def test_skip_schedule_curriculum():
    from papers.tdvae.experiment import skip_schedule
    skips = [(0.8, 1, 10), (0.2, 1, 120)]
    assert skip_schedule(skips, 0, 100, 50) == [(1.0, 1, 1)]
    assert skip_schedule(skips, 99, 100, 50) == [(1.0, 1, 1)]
    mid = skip_schedule(skips, 124, 100, 50)
    assert mid[0][2] == 6 and mid[1][2] == 61
    assert skip_schedule(skips, 150, 100, 50) == skips
    assert skip_schedule(skips, 0, 0, 0) == skips


def test_linear_r2_known_answers():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 5, generator=g)
    y = x @ torch.tensor([0.5, -2.0, 0.0, 1.0, 3.0]) + 0.7
    assert M.linear_r2(x[:200], y[:200], x[200:], y[200:]) > 1 - 1e-9  # exactly linear
    noise = torch.randn(400, generator=g)
    assert M.linear_r2(x[:200], noise[:200], x[200:], noise[200:]) < 0.05  # independent of the features
    half = y + torch.randn(400, generator=g) * y.std()  # signal and noise of equal variance: R^2 about 1/2
    assert 0.35 < M.linear_r2(x[:200], half[:200], x[200:], half[200:]) < 0.65


def test_hierarchy_mean_is_the_top_down_mean():
    torch.manual_seed(0)
    h = M.Hierarchy(6, (3, 2), 16)
    c = torch.randn(4, 6)
    top = h.blocks[1](c)[0]
    low = h.blocks[0](torch.cat([c, top], -1))[0]
    torch.testing.assert_close(h.mean(c), torch.cat([low, top], -1))


def test_rollout_means_are_deterministic_and_default_is_unchanged():
    model, x, jumps = _tiny_rollout_setup()
    a, _ = model.rollout(x, 10, jumps, torch.Generator().manual_seed(5), samples=2)
    b, _ = model.rollout(x, 10, jumps, torch.Generator().manual_seed(5), samples=2, mean_belief=False,
                         mean_transition=False)
    torch.testing.assert_close(a, b)
    c, zc = model.rollout(x, 10, jumps, torch.Generator().manual_seed(5), samples=2, mean_belief=True,
                          mean_transition=True)
    d, _ = model.rollout(x, 10, jumps, torch.Generator().manual_seed(9), samples=2, mean_belief=True,
                         mean_transition=True)
    torch.testing.assert_close(c, d)  # no randomness left
    torch.testing.assert_close(c[:, 0], c[:, 1])
    # by hand: the belief's mean, then the transition's mean at each jump
    z = model.p_b.mean(model.belief(x[:, :10])[:, 10])
    for k, dt in enumerate(jumps):
        z = model.transition(z, float(dt))[0]
        torch.testing.assert_close(zc[:, 0, k], z)


def test_diagnose_reproduces_the_run_metrics():
    """The diagnostic rebuilds the run's model and test set: its paper-protocol row equals
    the run's own metrics."""
    import json

    import registry
    from common import runs
    from papers.tdvae import diagnose

    rec = runs.execute(registry.get("tdvae_oscillator"), profile="smoke", quiet=True)
    metrics = json.loads((rec.path / "metrics.json").read_text())
    metrics = metrics.get("metrics", metrics)
    rows = diagnose.diagnose(rec.path)
    assert len(rows) == 2 * len(diagnose.MODES)
    for r in rows:
        if r["mode"].startswith("sample z, sample p_T"):
            for k in ("freq", "amp", "phase"):
                assert r[k] == pytest.approx(metrics[f"dt{r['dt']}/{k}_median"], abs=1e-6)
