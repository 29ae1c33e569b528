"""tdvae_minipacman: the table of figure 2 of Gregor et al. (ICLR 2019) -- test ELBO and
importance-sampled negative log-likelihood of the sequential TD-VAE, a filtering model
(q(z_t | z_{t-1}, b_t)) and a mean-field model (q(z_t | b_t)) on partially observed
mini-Pacman.

The paper's values are in a table embedded as an image that we could not read; its text
says TD-VAE does best and the mean-field model worst.  Our data are our own mini-Pacman
(papers/tdvae/minipacman.py: fixed 15 x 19 maze, 5 x 5 egocentric window with wall / food
/ ghost channels, a persistent random walk collecting the data), so only the ordering is
comparable, not the numbers.

Protocol.  One run per seed (``registry sweep tdvae_minipacman --seeds 0-2`` for the cpu
profile's three): simulate that seed's training and test sequences, then train
the three models -- the same sizes, one latent layer, Bernoulli decoder, and the same
initial weights for the modules they share (belief LSTM, p_B, p_T, decoder) -- with Adam on
their own per-step losses (TD-VAE: the sequential bound, eq. 6 with t2 = t1 + 1; the others:
the sequential ELBO with analytic per-step KL).  Every model is scored on one shared test
set under the generative model the three share (z_0 ~ p_B(b_0), z_t ~ p_T(z_t | z_{t-1}),
x_t ~ p_D(x_t | z_t)), with its own inference network as the proposal: the ELBO is the mean
log weight, the log-likelihood the log mean exp of ``samples`` weights.

Metrics, all in nats per time step (per observed 75-bit window; times ``length`` for per
sequence) and "lower is better": ``<model>/nll`` (importance-sampled -log p(x)) and
``<model>/neg_elbo`` (-ELBO >= nll); ``seed<k>/<model>/...`` the same, named by the run's
seed; ``frac_seeds/<a>_beats_<b>/<score>``, 1 if model a scores below model b, else 0 (the
report counts the seeds); ``seed<k>/gap/<b>_minus_<a>/nll`` and ``_se``, the NLL gap paired
over test sequences and its standard error; ``baseline/marginal_nll``, independent
per-bit Bernoulli frequencies of the training windows, as a floor of what "learned
nothing" costs.
"""

from __future__ import annotations

import math
import statistics

import gin
import torch

from common.device import WallTimer
from common.context import RunContext
from common.train import count_parameters
from papers.tdvae import figures
from papers.tdvae import method as M
from papers.tdvae import minipacman as P
from papers.tdvae import minipacman_figures as PF
from papers.tdvae.experiment import PAPER, fit
from registry import register

MODELS = (("tdvae", M.TDVAE), ("filtering", M.Filtering), ("mean_field", M.MeanField))
ORDER = (("tdvae", "filtering"), ("filtering", "mean_field"), ("tdvae", "mean_field"))
SCORES = ("nll", "neg_elbo")


@gin.configurable(module="tdvae")
def minipacman_setup(train_sequences=10000, test_sequences=500, length=20,
                     keep=0.8, chase=0.5, burn_in=0, steps=6000, batch=64, lr=1e-3, d_belief=64,
                     z_dim=16, d_hidden=64, samples=100, examples=6, rollout_from=8):
    """Defaults are the cpu profile.  Each run's --seed draws its own training and test
    sequences and initial weights (a sweep runs several seeds); ``keep`` and
    ``chase`` are the simulator's policy and ghost parameters (see minipacman.py);
    ``samples`` importance samples per test sequence; ``examples`` test sequences saved for
    the figures, with TD-VAE rollouts from the belief after ``rollout_from`` observations."""
    if length <= rollout_from:
        raise ValueError(f"rollout_from ({rollout_from}) must be below the length ({length})")
    return {"train_sequences": train_sequences, "test_sequences": test_sequences,
            "length": length, "keep": keep, "chase": chase, "burn_in": burn_in, "steps": steps,
            "batch": batch, "lr": lr, "d_belief": d_belief, "z_dim": z_dim, "d_hidden": d_hidden,
            "samples": samples, "examples": examples, "rollout_from": rollout_from}


def marginal_nll(x_train: torch.Tensor, x_test: torch.Tensor) -> float:
    """Per-step NLL of the test windows under independent Bernoulli bits whose frequencies
    are those of the training windows (add-one smoothed)."""
    p = (x_train.flatten(0, 1).sum(0) + 1) / (x_train.shape[0] * x_train.shape[1] + 2)
    logp = x_test * torch.log(p) + (1 - x_test) * torch.log1p(-p)
    return -logp.sum(-1).mean().item()


@register("tdvae_minipacman", paper=PAPER, claims_file="claims_minipacman.toml",
          figures=[PF.scores, PF.observations, PF.rollouts, figures.training_loss])
def run_minipacman(ctx: RunContext) -> dict:
    """Mini-Pacman (figure 2's table): test ELBO and NLL of TD-VAE vs filtering vs mean-field models."""
    cfg = minipacman_setup()
    seeds = (ctx.seed,)  # one seed per run: a sweep gives each seed its own record
    T = cfg["length"]
    sim = {"keep": cfg["keep"], "chase": cfg["chase"], "burn_in": cfg["burn_in"]}
    test = P.simulate(cfg["test_sequences"], T, ctx.generator("test data"), states=True, **sim)
    x_test = test["obs"].flatten(2).to(ctx.device)
    ctx.log(f"mini-Pacman: {P.HEIGHT} x {P.WIDTH} maze, {len(P.free_cells())} free cells, "
            f"{P.VIEW} x {P.VIEW} window; "
            f"{cfg['train_sequences']} training sequences per seed and {cfg['test_sequences']} test "
            f"sequences of {T} observations; ghost in view in "
            f"{test['obs'][:, :, 2].amax((2, 3)).mean().item():.1%} of test windows, "
            f"{test['caught'].float().mean().item():.2f} catches per test sequence")
    sizes = {"d_belief": cfg["d_belief"], "z_dims": (cfg["z_dim"],), "d_hidden": cfg["d_hidden"],
             "d_pre": cfg["d_hidden"], "decoder": "bernoulli"}
    per_seed, history, metrics, saved = {}, {}, {}, {}
    timer = WallTimer(ctx.device).start()  # synchronised wall-clock of training and evaluation
    for seed in seeds:
        x_train = P.sequences(cfg["train_sequences"], T, ctx.generator(f"s{seed}/train data"),
                              **sim).to(ctx.device)
        if seed == seeds[0]:
            metrics["baseline/marginal_nll"] = marginal_nll(x_train, x_test)

        def batch_fn(gen, x_train=x_train):
            return x_train[torch.randint(0, len(x_train), (cfg["batch"],), generator=gen).to(x_train.device)]

        def loss_fn(model, x, gen, step):
            return model.sequential_loss(x, gen)

        for name, cls in MODELS:
            key = f"s{seed}/{name}"
            torch.manual_seed(ctx.seed_for(f"s{seed}/init"))  # shared modules start identical
            model = cls(P.OBS_DIM, **sizes).to(ctx.device)
            metrics[f"params/{name}"] = count_parameters(model)
            history[key] = fit(ctx, key, model, batch_fn, loss_fn, cfg["steps"], cfg["lr"])

            def evaluate(model=model, key=key):
                elbo, ll = M.importance_nll(model, x_test, cfg["samples"], ctx.generator(f"{key}/eval"))
                return {"nll": -ll.mean().item() / T, "neg_elbo": -elbo.mean().item() / T,
                        "nll_per_sequence": (-ll).tolist()}

            per_seed[key] = ctx.once(f"{key}/eval", evaluate)
            ctx.log(f"[{key}] test nll {per_seed[key]['nll']:.3f}, -elbo {per_seed[key]['neg_elbo']:.3f} "
                    f"nats per step")
            if name == "tdvae" and seed == seeds[0]:
                k = cfg["examples"]
                pred, _ = model.rollout(x_test[:k], cfg["rollout_from"], [1] * (T - cfg["rollout_from"]),
                                        ctx.generator("rollouts"), samples=3)
                saved["rollout"] = pred.view(*pred.shape[:3], 3, P.VIEW, P.VIEW).cpu()
    metrics["train_eval_minutes"] = timer.stop() / 60

    for name, _ in MODELS:
        for score in SCORES:
            vals = [per_seed[f"s{s}/{name}"][score] for s in seeds]
            for s, v in zip(seeds, vals):
                metrics[f"seed{s}/{name}/{score}"] = v
            metrics[f"{name}/{score}"] = statistics.fmean(vals)
    for a, b in ORDER:
        for score in SCORES:
            wins = [per_seed[f"s{s}/{a}"][score] < per_seed[f"s{s}/{b}"][score] for s in seeds]
            metrics[f"frac_seeds/{a}_beats_{b}/{score}"] = sum(wins) / len(wins)
        # paired over test sequences, per seed: mean NLL gap and its standard error (nats per step)
        for s in seeds:
            d = (torch.tensor(per_seed[f"s{s}/{b}"]["nll_per_sequence"])
                 - torch.tensor(per_seed[f"s{s}/{a}"]["nll_per_sequence"])) / T
            metrics[f"seed{s}/gap/{b}_minus_{a}/nll"] = d.mean().item()
            metrics[f"seed{s}/gap/{b}_minus_{a}/nll_se"] = d.std().item() / math.sqrt(len(d))
    ctx.log("test nats per step: " + "; ".join(
        f"{name} nll {metrics[f'{name}/nll']:.3f}, -elbo "
        f"{metrics[f'{name}/neg_elbo']:.3f}" for name, _ in MODELS)
        + f"; marginal baseline {metrics['baseline/marginal_nll']:.3f}")

    k = cfg["examples"]
    saved.update(obs=test["obs"][:k], pac=test["pac"][:k], ghost=test["ghost"][:k],
                 food=test["food"][:k, 0], walls=P.walls())
    ctx.save_tensors("minipacman_examples", saved)
    ctx.save_json("minipacman_scores", {
        "models": [n for n, _ in MODELS], "seeds": list(seeds), "length": T,
        "scores": {key: {s: v[s] for s in SCORES} for key, v in per_seed.items()},
        "baseline_marginal_nll": metrics["baseline/marginal_nll"]})
    ctx.save_json("history", history)
    ctx.save_json("config", cfg)
    return metrics

