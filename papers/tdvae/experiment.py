"""The TD-VAE experiments: the noisy harmonic oscillator (figure 4, with a quantitative
check), the belief probe of section 5.3, moving MNIST (figure 3) and mini-Pacman
(the figure 2 table)."""

from __future__ import annotations

import math

import gin
import torch

from common.context import RunContext
from common.device import WallTimer
from common.train import batches, count_parameters, train_epoch, train_steps
from papers.tdvae import data as D
from papers.tdvae import figures
from papers.tdvae import method as M
from registry import Paper, register

PAPER = Paper(
    title="Temporal Difference Variational Auto-Encoder",
    authors="Karol Gregor, George Papamakarios, Frederic Besse, Lars Buesing, Theophane Weber",
    venue="ICLR 2019", arxiv="1806.03107")


def fit(ctx: RunContext, key: str, model, batch_fn, loss_fn, steps: int, lr: float, chunks: int = 20,
        clip: float = 10.0) -> list:
    """Adam on ``loss_fn(model, batch_fn(generator), generator, step)`` for ``steps``
    updates (gradient norm clipped at ``clip``), through ``common.train.train_steps``;
    resumable in ``chunks``; returns the loss history (one row per chunk, the means
    over its steps: one host sync per chunk)."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = ctx.generator(f"{key}/train")
    state = {"history": []}
    loop = ctx.resumable(key, {"model": model, "opt": opt, "gen": gen}, state)
    per_chunk = max(1, steps // chunks)
    bar = ctx.progress(total=chunks * per_chunk, desc=key)

    def step_fn(step):
        return loss_fn(model, batch_fn(gen), gen, step)

    for chunk in loop.epochs(chunks):
        bar.n = chunk * per_chunk
        with WallTimer(ctx.device) as t:
            means = train_steps(model, opt, step_fn, per_chunk, start=chunk * per_chunk,
                                autocast=ctx.autocast, clip_grad_norm=clip)
        bar.update(per_chunk)
        row = {"step": (chunk + 1) * per_chunk, **means, "seconds": t.seconds}
        state["history"].append(row)
        ctx.log(f"[{key}] step {row['step']}/{chunks * per_chunk}: loss {row['loss']:.3f} "
                f"({row['seconds']:.0f} s)")
    bar.close()
    model.eval()
    return state["history"]


# ---------------------------------------------------------------- oscillator (figure 4)

@gin.configurable(module="tdvae")
def oscillator_setup(train_sequences=20000, test_sequences=200, probe_sequences=2000, length=200, t1=60,
                     jumps=(20, 100), roll=20, samples=4, steps=20000, batch=64, pairs=4, lr=1e-3,
                     skips=((0.8, 1, 10), (0.2, 1, 120)), d_belief=64, z_dims=(4, 4), d_hidden=64,
                     transition_layers=1, sequential_steps=0, ramp_steps=0):
    """The paper's setup where given (length 200, the skip mixture, t1 = 60, jumps of 20 and
    100 then 20 steps of 1, two latent layers, decoder reading the first latent component);
    sizes and steps are ours.  Our curriculum (not in the paper): ``sequential_steps``
    updates with dt = 1 only, then the largest skip of every mixture component grows
    linearly to its full value over ``ramp_steps`` updates."""
    return dict(train_sequences=train_sequences, test_sequences=test_sequences, probe_sequences=probe_sequences,
                length=length, t1=t1, jumps=tuple(jumps), roll=roll, samples=samples, steps=steps, batch=batch,
                pairs=pairs, lr=lr, skips=[tuple(s) for s in skips], d_belief=d_belief, z_dims=tuple(z_dims),
                d_hidden=d_hidden, transition_layers=transition_layers, sequential_steps=sequential_steps,
                ramp_steps=ramp_steps)


def skip_schedule(skips, step: int, sequential_steps: int, ramp_steps: int):
    """The skip mixture at an update: dt = 1 during the first ``sequential_steps``, then each
    component's upper end grows linearly from 1 to its value over ``ramp_steps``."""
    if step < sequential_steps:
        return [(1.0, 1, 1)]
    frac = 1.0 if ramp_steps <= 0 else min(1.0, (step - sequential_steps + 1) / ramp_steps)
    return [(p, lo, max(lo, int(lo + frac * (hi - lo) + 0.5))) for p, lo, hi in skips]


def rollout_errors(model, test: dict, t1: int, dt: int, roll: int, samples: int, generator, **means) -> dict:
    """Jump dt from the belief at t1, roll ``roll`` steps of 1, fit a sinusoid to the
    roll + 1 decoded points; errors against the true oscillator (relative frequency and
    amplitude, absolute phase in radians, and the fitted / true amplitude) per (sequence,
    sample).  ``means``: model.rollout's mean_belief / mean_transition."""
    jumps = [dt] + [1] * roll
    pred, _ = model.rollout(test["x"], t1, jumps, generator, samples, **means)  # (n, S, roll+1, 1)
    n = pred.shape[0]
    y = pred[..., 0].reshape(n * samples, roll + 1)
    w_fit, a_fit, phi_fit = D.fit_sinusoid(y)
    pos, u = test["pos"][:, t1 - 1], test["u"][:, t1 - 1]  # the state after x_t1
    w, amp = test["omega"], torch.sqrt(pos ** 2 + u ** 2)
    theta = torch.atan2(pos, u) + w * dt  # true phase at t1 + dt: pos = A sin(theta)
    rep = lambda t: t.repeat_interleave(samples)  # noqa: E731
    truth = D.noiseless_continuation(pos, u, w, dt + roll)[:, dt - 1:]  # (n, roll + 1)
    return {"freq": ((w_fit - rep(w)).abs() / rep(w)),
            "amp": ((a_fit - rep(amp)).abs() / rep(amp)), "amp_ratio": a_fit / rep(amp),
            "phase": D.wrap(phi_fit - rep(theta)).abs(),
            "rmse": ((pred[..., 0] - truth[:, None]) ** 2).mean(-1).sqrt().reshape(-1),
            "pred": pred[..., 0], "truth": truth}


def latent_probe(model, probe: dict, t: int, generator=None) -> tuple[dict, dict]:
    """What the belief b_t, the mean of p_B(z | b_t) and a sample z ~ p_B(z | b_t) -- what a
    rollout starts from -- encode of the oscillator's state (position, u = velocity / omega)
    and of its frequency: held-out R^2 of linear maps, fit on the first half of the probe
    sequences and scored on the second.  A mean can carry a variable that its sample drowns
    in the belief's noise; the sample's R^2 is what reaches the rollouts.  Also returns, per
    latent dimension, the spread of the mean across sequences and the belief's std (the
    spread of one sample per sequence around its mean)."""
    b = belief_at(model, probe["x"], t)
    with torch.no_grad():
        bd = b.to(next(model.parameters()).device)
        z_mean, z_sample = model.p_b.mean(bd).cpu(), model.p_b.sample(bd, generator)[0].cpu()
    half = len(b) // 2
    targets = {"pos": probe["pos"][:, t - 1], "u": probe["u"][:, t - 1], "omega": probe["omega"]}
    r2 = {f"probe/{name}_{k}_r2": M.linear_r2(f[:half], y[:half], f[half:], y[half:])
          for name, f in (("b", b), ("z", z_mean), ("zs", z_sample)) for k, y in targets.items()}
    return r2, {"mean_spread": z_mean.std(0).tolist(), "belief_std": (z_sample - z_mean).std(0).tolist()}


def oscillator_model(cfg: dict):
    """The oscillator's TD-VAE for an oscillator_setup() dict (the decoder reads z's first component)."""
    return M.TDVAE(1, d_belief=cfg["d_belief"], z_dims=tuple(cfg["z_dims"]), d_hidden=cfg["d_hidden"],
                   d_pre=cfg["d_hidden"], read_first=True, obs_std=D.OBS_NOISE, dt_scale=10.0,
                   transition_layers=cfg["transition_layers"])


@register("tdvae_oscillator", paper=PAPER, claims_file="claims_oscillator.toml",
          figures=[figures.oscillator_rollouts, figures.oscillator_errors, figures.oscillator_latent_probe,
                   figures.training_loss])
def run_oscillator(ctx: RunContext) -> dict:
    """Noisy harmonic oscillator: jumpy rollouts from t1 = 60 at dt = 20 and 100 (figure 4), scored by a sinusoid fit."""
    cfg = oscillator_setup()
    train = D.oscillator(cfg["train_sequences"], cfg["length"], ctx.generator("train data"))
    test = D.oscillator(cfg["test_sequences"], cfg["length"], ctx.generator("test data"))
    ctx.log(f"oscillator: {cfg['train_sequences']} training and {cfg['test_sequences']} test sequences of "
            f"{cfg['length']} steps; omega ~ U{D.OMEGA}, amplitude ~ U{D.AMPLITUDE}, noise process "
            f"{D.PROCESS_NOISE} / observation {D.OBS_NOISE}")
    model = oscillator_model(cfg).to(ctx.device)
    x_train = train["x"].to(ctx.device)

    def batch_fn(gen):
        return x_train[torch.randint(0, len(x_train), (cfg["batch"],), generator=gen).to(x_train.device)]

    def loss_fn(model, x, gen, step):
        skips = skip_schedule(cfg["skips"], step, cfg["sequential_steps"], cfg["ramp_steps"])
        return model.loss(x, skips, cfg["pairs"], gen)

    with WallTimer(ctx.device) as t:
        history = fit(ctx, "tdvae", model, batch_fn, loss_fn, cfg["steps"], cfg["lr"])
    metrics = {"params": count_parameters(model), "train_minutes": t.seconds / 60}
    with torch.no_grad():
        metrics["test_loss"] = model.loss(test["x"], cfg["skips"], 16, ctx.generator("test loss"))[0].item()
    r2, per_dim = latent_probe(model, D.oscillator(cfg["probe_sequences"], cfg["t1"], ctx.generator("probe data")),
                               cfg["t1"], ctx.generator("probe samples"))
    metrics.update(r2)
    ctx.save_json("latent_probe", per_dim)
    ctx.log("per latent dimension (lowest layer first): spread of the belief's mean across sequences "
            + " ".join(f"{v:.3f}" for v in per_dim["mean_spread"]) + "; belief std "
            + " ".join(f"{v:.3f}" for v in per_dim["belief_std"]))
    ctx.log("linear R^2 at t1 from the belief b / the mean of p_B(z | b) / a sample of it: " + ", ".join(
        f"{k} {metrics[f'probe/b_{k}_r2']:.2f} / {metrics[f'probe/z_{k}_r2']:.2f} / {metrics[f'probe/zs_{k}_r2']:.2f}"
        for k in ("pos", "u", "omega")))
    saved = {"x": test["x"][:8, :, 0]}
    for dt in cfg["jumps"]:
        err = rollout_errors(model, test, cfg["t1"], dt, cfg["roll"], cfg["samples"], ctx.generator(f"rollout {dt}"))
        for k in ("freq", "amp", "phase", "rmse"):
            metrics[f"dt{dt}/{k}_median"] = err[k].median().item()
            metrics[f"dt{dt}/{k}_mean"] = err[k].mean().item()
        saved[f"dt{dt}/pred"], saved[f"dt{dt}/truth"] = err["pred"][:8], err["truth"][:8]
        saved[f"dt{dt}/errors"] = torch.stack([err["freq"], err["amp"], err["phase"]])
        ctx.log(f"dt = {dt}: median relative frequency error {metrics[f'dt{dt}/freq_median']:.3f}, amplitude "
                f"{metrics[f'dt{dt}/amp_median']:.3f}, phase {metrics[f'dt{dt}/phase_median']:.2f} rad")
    # reference points: the sinusoid fit on the truth itself, and a random phase
    w, a, phi = D.fit_sinusoid(saved[f"dt{cfg['jumps'][0]}/truth"])
    metrics["fit_on_truth_freq_error"] = ((w - test["omega"][:8]).abs() / test["omega"][:8]).max().item()
    metrics["random_phase_error"] = math.pi / 2
    ctx.save_tensors("oscillator", saved)
    ctx.save_json("history", {"tdvae": history})
    ctx.save_json("config", {**cfg, "omega": D.OMEGA, "amplitude": D.AMPLITUDE,
                             "process_noise": D.PROCESS_NOISE, "obs_noise": D.OBS_NOISE})
    return metrics


# ---------------------------------------------------------------- belief probe (section 5.3)

@gin.configurable(module="tdvae")
def probe_setup(gaps=(20, 60), d_beliefs=(16, 64), steps=3000, batch=32, pairs=4, lr=1e-3,
                short_skip=10, probe_train=2000, probe_test=1000, z_dims=(8,), d_hidden=32, transition_layers=1,
                sequential_steps=0, ramp_steps=0):
    """The paper: middle segment of 100 steps, mean of 20 runs (here: one run per seed, a
    sweep of 3 seeds at cpu scale, 20 at full); shorter gaps at cpu scale.  TD-VAE's skips: dt ~ U[1, short_skip] w.p. 0.8, U[1, length] w.p.
    0.2 (the oscillator's mixture, stretched to the sequence), optionally after the
    oscillator's curriculum (``sequential_steps``, ``ramp_steps``: see skip_schedule)."""
    return dict(gaps=tuple(gaps), d_beliefs=tuple(d_beliefs), steps=steps, batch=batch,
                pairs=pairs, lr=lr, short_skip=short_skip, probe_train=probe_train, probe_test=probe_test,
                z_dims=tuple(z_dims), d_hidden=d_hidden, transition_layers=transition_layers,
                sequential_steps=sequential_steps, ramp_steps=ramp_steps)


def belief_at(model, x, t: int, chunk: int = 500):
    """The beliefs b_t (having read x_1..x_t) of sequences x, on the CPU."""
    dev = next(model.parameters()).device
    with torch.no_grad():
        return torch.cat([model.belief(x[i:i + chunk, :t].to(dev))[:, t].cpu() for i in range(0, len(x), chunk)])


@register("tdvae_belief_probe", paper=PAPER, claims_file="claims_belief_probe.toml",
          figures=[figures.probe_accuracy])
def run_belief_probe(ctx: RunContext) -> dict:
    """Section 5.3: a linear probe from the belief (before the last segment) to a frequency set 100 steps earlier: TD-VAE vs next-step prediction."""
    cfg = probe_setup()
    seed = ctx.seed  # one seed per run: a sweep (--seeds 0-19 at full) gives each its own record
    metrics, results = {}, []
    for gap in cfg["gaps"]:
        length = 40 + gap
        probe_train = D.piecewise_frequencies(cfg["probe_train"], gap, ctx.generator(f"gap{gap}/probe train"))
        probe_test = D.piecewise_frequencies(cfg["probe_test"], gap, ctx.generator(f"gap{gap}/probe test"))
        t_probe = probe_test["probe_t"]
        skips = [(0.8, 1, cfg["short_skip"]), (0.2, 1, length)]
        for d in cfg["d_beliefs"]:
            for kind in ("tdvae", "next_step"):
                key = f"gap{gap}/d{d}/s{seed}/{kind}"

                def one(gap=gap, d=d, seed=seed, kind=kind, key=key):
                    torch.manual_seed(ctx.seed_for(key))
                    if kind == "tdvae":
                        model = M.TDVAE(1, d_belief=d, z_dims=cfg["z_dims"], d_hidden=cfg["d_hidden"],
                                        d_pre=cfg["d_hidden"], obs_std=D.OBS_NOISE,
                                        dt_scale=float(length) / 4,
                                        transition_layers=cfg["transition_layers"]).to(ctx.device)
                    else:
                        model = M.NextStep(1, d_belief=d, d_pre=cfg["d_hidden"], d_hidden=cfg["d_hidden"],
                                           obs_std=D.OBS_NOISE).to(ctx.device)
                    batch_fn = lambda g: D.piecewise_frequencies(cfg["batch"], gap, g)["x"].to(ctx.device)  # noqa: E731
                    loss_fn = lambda m, x, g, step: m.loss(  # noqa: E731
                        x, skip_schedule(skips, step, cfg["sequential_steps"], cfg["ramp_steps"]), cfg["pairs"], g)
                    with WallTimer(ctx.device) as t:
                        hist = fit(ctx, key, model, batch_fn, loss_fn, cfg["steps"], cfg["lr"], chunks=4)
                        acc = M.probe_accuracy(belief_at(model, probe_train["x"], t_probe),
                                               probe_train["label"],
                                               belief_at(model, probe_test["x"], t_probe),
                                               probe_test["label"])
                    return {"accuracy": acc, "final_loss": hist[-1]["loss"], "seconds": t.seconds}

                r = ctx.once(key, one)
                results.append({"gap": gap, "d_belief": d, "seed": seed, "model": kind, **r})
                ctx.log(f"[{key}] probe accuracy {r['accuracy']:.1f}% ({r['seconds']:.0f} s)")
            for kind in ("tdvae", "next_step"):
                metrics[f"gap{gap}/d{d}/{kind}"] = next(r["accuracy"] for r in results if (
                    r["gap"], r["d_belief"], r["model"]) == (gap, d, kind))
            metrics[f"gap{gap}/d{d}/advantage"] = metrics[f"gap{gap}/d{d}/tdvae"] - metrics[f"gap{gap}/d{d}/next_step"]
    g_lo, g_hi = min(cfg["gaps"]), max(cfg["gaps"])
    d_lo, d_hi = min(cfg["d_beliefs"]), max(cfg["d_beliefs"])
    metrics.update({"long_gap_small": metrics[f"gap{g_hi}/d{d_lo}/advantage"],
                    "short_gap_small": metrics[f"gap{g_lo}/d{d_lo}/advantage"],
                    "long_gap_large": metrics[f"gap{g_hi}/d{d_hi}/advantage"]})
    ctx.save_json("probe", {"results": results, "config": cfg})
    return metrics


# ---------------------------------------------------------------- moving MNIST (figure 3)

@gin.configurable(module="tdvae")
def moving_mnist_setup(length=20, skip=4, steps=20000, batch=32, pairs=4, lr=5e-4, d_belief=128, z_dims=(8, 8),
                       d_hidden=128, test_sequences=500, probe_train=2000, observe=10, roll=10, samples=4,
                       probe_times=(1, 2, 5, 10), classifier_epochs=3):
    """The paper: length 20, dt ~ U[1, 4]; sizes and steps are ours."""
    return dict(length=length, skip=skip, steps=steps, batch=batch, pairs=pairs, lr=lr, d_belief=d_belief,
                z_dims=tuple(z_dims), d_hidden=d_hidden, test_sequences=test_sequences, probe_train=probe_train,
                observe=observe, roll=roll, samples=samples, probe_times=tuple(probe_times),
                classifier_epochs=classifier_epochs)


def shift_invariant_features(frames):
    """|DFT| along the horizontal axis: unchanged by circular horizontal shifts."""
    return torch.fft.rfft(frames, dim=-1).abs().flatten(-2)


def digit_classifier(ctx, images, labels, epochs: int):
    """An MLP on shift-invariant features of binarised digits, to read the identity of
    decoded rollout frames whatever their horizontal position."""
    feats = shift_invariant_features((images > 0.5).float())
    net = torch.nn.Sequential(torch.nn.Linear(feats.shape[1], 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    gen = ctx.generator("digit classifier")
    for _ in range(epochs):
        train_epoch(net, batches(feats, labels, batch_size=128, shuffle=True, generator=gen), opt)
    return net.eval()


@register("tdvae_moving_mnist", paper=PAPER, data=("mnist",), claims_file="claims_moving_mnist.toml",
          figures=[figures.moving_mnist_rollouts, figures.training_loss])
def run_moving_mnist(ctx: RunContext) -> dict:
    """One MNIST digit moving left or right: jumpy rollouts keep identity and direction (figure 3); a belief probe of direction."""
    cfg = moving_mnist_setup()
    train_set, test_set = ctx.dataset("mnist", train=True), ctx.dataset("mnist", train=False)
    x_tr, y_tr = train_set.images[:, 0], train_set.labels
    x_te, y_te = test_set.images[:, 0], test_set.labels
    L = cfg["length"]
    model = M.TDVAE(784, d_belief=cfg["d_belief"], z_dims=cfg["z_dims"], d_hidden=cfg["d_hidden"],
                    d_pre=cfg["d_hidden"], decoder="bernoulli", dt_scale=float(cfg["skip"])).to(ctx.device)
    skips = [(1.0, 1, cfg["skip"])]
    batch_fn = lambda g: D.moving_digits(x_tr, y_tr, cfg["batch"], L, g)["x"].to(ctx.device)  # noqa: E731
    loss_fn = lambda m, x, g, step: m.loss(x, skips, cfg["pairs"], g)  # noqa: E731
    with WallTimer(ctx.device) as t:
        history = fit(ctx, "tdvae", model, batch_fn, loss_fn, cfg["steps"], cfg["lr"])
    metrics = {"params": count_parameters(model), "train_minutes": t.seconds / 60}
    test = D.moving_digits(x_te, y_te, cfg["test_sequences"], L, ctx.generator("test sequences"))
    probe = D.moving_digits(x_tr, y_tr, cfg["probe_train"], L, ctx.generator("probe sequences"))
    with torch.no_grad():
        metrics["test_loss"] = model.loss(test["x"], skips, 16, ctx.generator("test loss"))[0].item()
    # direction from the belief: a linear probe at several times
    for t in cfg["probe_times"]:
        metrics[f"direction_probe_t{t}"] = M.probe_accuracy(
            belief_at(model, probe["x"], t), (probe["direction"] > 0).long(),
            belief_at(model, test["x"], t), (test["direction"] > 0).long())
    # rollouts from the belief after `observe` frames: steps of 1, and jumps of 2
    clf = digit_classifier(ctx, x_tr, y_tr, cfg["classifier_epochs"])
    real = test["x"].view(-1, L, 28, 28)
    with torch.no_grad():
        metrics["identity_real_frames"] = 100.0 * (clf(shift_invariant_features(real[:, cfg["observe"]]))
                                                   .argmax(1) == test["label"]).float().mean().item()
    saved = {"x": test["x"][:6], "direction": test["direction"][:6], "label": test["label"][:6]}
    for jump in (1, 2):
        pred, _ = model.rollout(test["x"], cfg["observe"], [jump] * cfg["roll"], ctx.generator(f"rollout {jump}"),
                                cfg["samples"])
        frames = pred.view(*pred.shape[:3], 28, 28)  # (n, S, roll, 28, 28)
        with torch.no_grad():
            ident = clf(shift_invariant_features((frames > 0.5).float())).argmax(-1)
        metrics[f"jump{jump}/identity"] = 100.0 * (ident == test["label"][:, None, None]).float().mean().item()
        motion = D.horizontal_motion((frames > 0.5).float())  # (n, S, roll - 1)
        want = test["direction"][:, None, None] * jump
        metrics[f"jump{jump}/motion_correct"] = 100.0 * (motion == want).float().mean().item()
        majority = torch.sign(motion.float().sum(-1))
        metrics[f"jump{jump}/direction"] = 100.0 * (majority == test["direction"][:, None]).float().mean().item()
        saved[f"jump{jump}/pred"] = pred[:6]
        ctx.log(f"rollouts with jumps of {jump}: identity {metrics[f'jump{jump}/identity']:.1f}% (classifier on real "
                f"frames {metrics['identity_real_frames']:.1f}%), direction {metrics[f'jump{jump}/direction']:.1f}%, "
                f"per-step shift = {jump} x direction {metrics[f'jump{jump}/motion_correct']:.1f}%")
    ctx.save_tensors("moving_mnist", saved)
    ctx.save_json("history", {"tdvae": history})
    ctx.save_json("config", cfg)
    return metrics
