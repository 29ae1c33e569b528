"""world_models_doom: V, M and C for VizDoom Take Cover, C trained entirely inside M's
dream at several temperatures and deployed in the real game (Ha & Schmidhuber,
NeurIPS 2018, §4 and Table 2; the z-only and z + hidden-layer controllers are the
Table 1 ablations, here on Doom).

Stages, each resumable after a kill:
  collect  random-policy episodes in worker processes -> runs/.../checkpoints/rollouts/*.npz
  vae      V on the collected frames (ctx.resumable, checkpoint per chunk of steps)
  encode   V's posterior (mu, logvar) of every frame -> checkpoints/latents.npz
  mdn      M on the latent sequences (ctx.resumable, checkpoint per epoch)
  cma      one CMA-ES (``cma`` package) per controller config, all inside ONE
           batched dream: population x rollouts x configs rows, one LSTM step per
           time step (ctx.resumable, checkpoint per generation)
  eval     each final controller (the search's best candidate) in the dream and in the real
           game over N episodes in worker processes (ctx.once per config)
Reference code read (not copied): hardmaru/WorldModelsExperiments (doomrnn/), ctallec/world-models.
"""

from __future__ import annotations

import io
import math
import os
import pickle
import time

import gin
import numpy as np
import torch

from common import atomic
from common.context import RunContext
from common.stats import bootstrap_ci
from papers.world_models import envs as E
from papers.world_models import figures
from papers.world_models import method as M
from registry import Paper, ReproError, register

PAPER = Paper(
    title="Recurrent world models facilitate policy evolution",
    authors="David Ha and Jürgen Schmidhuber", venue="NeurIPS 2018", arxiv="1803.10122",
    code="https://github.com/hardmaru/WorldModelsExperiments (doomrnn); https://github.com/ctallec/world-models")


@gin.configurable(module="world_models")
def collect(episodes=10000, workers=2, max_steps=2100):
    """Random-policy episodes (the paper: 10,000) collected by ``workers`` processes."""
    return dict(episodes=episodes, workers=workers, max_steps=max_steps)


@gin.configurable(module="world_models")
def vae(z_dim=64, width=1.0, epochs=10, frames=0, batch_size=100, lr=1e-4, kl_tolerance=0.5,
        chunks=10):
    """V: z = 64 for Doom, the paper's channel widths (``width`` scales them), Adam
    1e-4, batch 100, KL floor 0.5 per dim (reference); ``frames`` > 0 trains on that
    many frames drawn from the collection; one checkpoint per 1/``chunks`` of training."""
    return dict(z_dim=z_dim, width=width, epochs=epochs, frames=frames, batch_size=batch_size, lr=lr,
                kl_tolerance=kl_tolerance, chunks=chunks)


@gin.configurable(module="world_models")
def mdn(hidden=512, mixtures=5, epochs=20, batch_size=100, lr=1e-3, grad_clip=1.0, done_factor=10.0,
        heldout=0.1):
    """M: LSTM 512 units (Doom), 5 mixtures, Adam 1e-3, gradients clipped at 1 and
    done positives weighted 10 (reference); whole episodes per sequence; ``heldout``
    fraction of episodes kept out for the M metrics."""
    return dict(hidden=hidden, mixtures=mixtures, epochs=epochs, batch_size=batch_size, lr=lr,
                grad_clip=grad_clip, done_factor=done_factor, heldout=heldout)


@gin.configurable(module="world_models")
def controllers(taus=(0.1, 0.5, 1.0, 1.15, 1.3), ablations=(("z", 1.15), ("z_hidden", 1.15)),
                popsize=64, rollouts=16, generations=200, sigma0=0.1, max_steps=2100, diagonal=False,
                done_mode="threshold", final="best"):
    """C: the linear [z, c, h] controller trained in the dream at every tau of Table 2,
    plus ablations (kind, tau); CMA-ES population 64 x 16 rollouts (paper); dream
    episodes capped at ``max_steps`` during the search; the dream's death by M's done
    logit > 0 ("threshold", the reference) or drawn with M's probability ("sample");
    the controller deployed: the best candidate of the search by its dream fitness
    ("best", as estool's best_param, which the reference evaluates) or the CMA-ES mean ("mean")."""
    configs = [("zh", float(t)) for t in taus] + [(k, float(t)) for k, t in ablations]
    return dict(configs=configs, popsize=popsize, rollouts=rollouts, generations=generations,
                sigma0=sigma0, max_steps=max_steps, diagonal=diagonal, done_mode=done_mode,
                final=final)


@gin.configurable(module="world_models")
def evaluation(episodes=100, virtual_rollouts=100, workers=2, max_steps=2100, batch=25):
    """Each final C over ``episodes`` real games (paper: 100) and ``virtual_rollouts``
    dream rollouts, both capped at 2100 steps; real games run ``batch`` at a time per job."""
    return dict(episodes=episodes, virtual_rollouts=virtual_rollouts, workers=workers,
                max_steps=max_steps, batch=batch)


def config_name(kind: str, tau: float) -> str:
    return f"{kind}/tau{tau:g}"


def need(path, what: str, stage: str):
    if not os.path.exists(path):
        raise ReproError(f"{what} missing at {path}: it is produced by stage '{stage}' of this run "
                         f"(resume the run with --resume to recompute it)")


class Blob:
    """A picklable object (a CMA-ES state) behind state_dict/load_state_dict, stored
    as a uint8 tensor so checkpoints stay weights-only loadable."""

    def __init__(self, obj=None):
        self.obj = obj

    def state_dict(self):
        return {"blob": torch.frombuffer(bytearray(pickle.dumps(self.obj)), dtype=torch.uint8)}

    def load_state_dict(self, state):
        self.obj = pickle.loads(state["blob"].numpy().tobytes())


# ----------------------------------------------------------------------------- stages
def stage_collect(ctx: RunContext, cfg: dict) -> dict:
    folder = ctx.run_dir / "checkpoints" / "rollouts"  # a resume cache: not archived by `report`
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [{"path": str(folder / f"ep{i:05d}.npz"), "seed": ctx.seed_for(f"collect/{i}"),
             "max_steps": cfg["max_steps"]} for i in range(cfg["episodes"])]
    t0 = time.perf_counter()
    out = E.parallel_map(E.random_episode, jobs, cfg["workers"],
                         progress=lambda it, total: ctx.progress(it, total=total, desc="collect"))
    E.close_games()  # the games of an in-process (workers = 1) collection
    secs = time.perf_counter() - t0
    lengths = [o["length"] for o in out]
    ctx.log(f"[collect] {len(lengths)} random episodes, {sum(lengths)} frames, mean length "
            f"{np.mean(lengths):.1f} ({secs:.1f} s, {sum(lengths) / secs:.0f} steps/s)")
    return {"lengths": lengths, "files": [os.path.relpath(j["path"], ctx.run_dir) for j in jobs], "seconds": secs}


def load_episodes(paths):
    eps = []
    for p in paths:
        need(p, "rollout file", "collect")
        with np.load(p) as f:
            eps.append({"frames": f["frames"], "action": f["action"], "terminated": bool(f["terminated"])})
    return eps


def stage_vae(ctx: RunContext, cfg: dict, frames: np.ndarray) -> M.ConvVAE:
    model = M.ConvVAE(cfg["z_dim"], cfg["width"])
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
    gen = ctx.generator("vae/order")
    noise = ctx.generator("vae/noise")
    n = len(frames) if cfg["frames"] <= 0 else min(cfg["frames"], len(frames))
    steps = max(1, cfg["epochs"] * n // cfg["batch_size"])
    per_chunk = math.ceil(steps / cfg["chunks"])
    state = {"history": []}
    loop = ctx.resumable("vae", {"model": model, "opt": opt, "order": gen, "noise": noise}, state)
    for chunk in loop.epochs(cfg["chunks"]):
        rec, kl = [], []
        for _ in range(per_chunk):
            idx = torch.randint(len(frames), (cfg["batch_size"],), generator=gen)
            x = M.frames_to_tensor(frames[idx.numpy()])
            recon, mu, logvar = model(x, noise)
            loss, s = M.vae_loss(x, recon, mu, logvar, cfg["kl_tolerance"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            rec.append(s["recon"].item())
            kl.append(s["kl"].item())
        state["history"].append({"chunk": chunk, "recon": float(np.mean(rec)), "kl": float(np.mean(kl))})
        ctx.log(f"[vae] chunk {chunk + 1}/{cfg['chunks']}: recon {np.mean(rec):.1f}, kl {np.mean(kl):.1f}")
    model.eval()
    return model, state["history"]


@torch.no_grad()
def stage_encode(ctx: RunContext, model: M.ConvVAE, frames: np.ndarray, starts) -> list:
    path = ctx.run_dir / "checkpoints" / "latents.npz"
    n_eps = len(starts) - 1
    if not path.exists():
        mu, lv = [], []
        for s in ctx.progress(range(0, len(frames), 500), desc="encode"):
            m, v = model.encode(M.frames_to_tensor(frames[s:s + 500]))
            mu.append(m)
            lv.append(v)
        mu, lv = torch.cat(mu).numpy(), torch.cat(lv).numpy()
        mus = [mu[starts[i]:starts[i + 1]] for i in range(n_eps)]
        lvs = [lv[starts[i]:starts[i + 1]] for i in range(n_eps)]
        buf = io.BytesIO()
        np.savez_compressed(buf, **{f"mu{i}": m for i, m in enumerate(mus)},
                            **{f"lv{i}": v for i, v in enumerate(lvs)})
        with atomic.atomic_path(path) as tmp:
            tmp.write_bytes(buf.getvalue())
    with np.load(path) as f:
        return [(torch.from_numpy(f[f"mu{i}"]), torch.from_numpy(f[f"lv{i}"])) for i in range(n_eps)]


def sequence_batch(latents, episodes, idx, gen):
    """Padded batch of whole episodes: z sampled from V's posterior (as the reference
    does per batch), inputs (z_t, a_t), targets z_{t+1}, and the done target at the
    last step of an episode that ended by death."""
    T = max(len(episodes[i]["action"]) for i in idx)
    B, Z = len(idx), latents[0][0].shape[1]
    z_in, z_next = torch.zeros(B, T, Z), torch.zeros(B, T, Z)
    a = torch.zeros(B, T, 1)
    mask_z, mask, done = torch.zeros(B, T), torch.zeros(B, T), torch.zeros(B, T)
    for b, i in enumerate(idx):
        mu, lv = latents[i]
        z = mu + torch.exp(0.5 * lv) * torch.randn(mu.shape, generator=gen)
        L = len(episodes[i]["action"])  # frames 0..L-1, actions 0..L-1
        z_in[b, :L] = z
        a[b, :L, 0] = torch.from_numpy(episodes[i]["action"])
        z_next[b, :L - 1] = z[1:]
        mask_z[b, :L - 1] = 1
        mask[b, :L] = 1
        done[b, L - 1] = float(episodes[i]["terminated"])
    return z_in, a, z_next, mask_z, mask, done


def mdn_eval(model, latents, episodes, idx, cfg, gen):
    with torch.no_grad():
        z, a, zn, mz, m, d = sequence_batch(latents, episodes, idx, gen)
        (logmix, mean, logstd, logit), _ = model(z, a)
        nll = -(M.mdn_log_prob(logmix, mean, logstd, zn).mean(-1) * mz).sum() / mz.sum()
        pred = (logit > 0) & m.bool()
        pos = d.bool()
        recall = (pred & pos).sum().item() / max(1, pos.sum().item())
        false_pos = (pred & ~pos).sum().item() / max(1, (m.bool() & ~pos).sum().item())
        p = M.done_probability(logit, cfg["done_factor"])
        neg = m.bool() & ~pos
        p_pos = p[pos].mean().item() if pos.any() else math.nan
        lift = p_pos / max(p[neg].mean().item(), 1e-12)
    return {"z_nll": nll.item(), "done_recall": recall, "done_false_pos": false_pos,
            "done_p_at_death": p_pos, "done_lift": lift}


def stage_mdn(ctx: RunContext, cfg: dict, z_dim: int, latents, episodes):
    model = M.MDNRNN(z_dim, 1, cfg["hidden"], cfg["mixtures"], predict_done=True)
    # start the done logit at the (weighted) log-odds of the deaths per step, not at 0:
    # deaths are ~1 step in 300, and few optimiser steps would not move a zero bias there
    q = sum(ep["terminated"] for ep in episodes) / sum(len(ep["action"]) for ep in episodes)
    with torch.no_grad():
        model.head.bias[-1] = math.log(max(cfg["done_factor"] * q, 1e-6) / max(1 - q, 1e-6))
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
    gen = ctx.generator("mdn/order")
    n = len(episodes)
    perm = torch.randperm(n, generator=ctx.generator("mdn/split")).tolist()
    n_held = max(1, int(round(cfg["heldout"] * n))) if n > 1 else 0
    held, train = perm[:n_held], perm[n_held:] or perm
    state = {"history": []}
    loop = ctx.resumable("mdn", {"model": model, "opt": opt, "order": gen}, state)
    for epoch in loop.epochs(cfg["epochs"]):
        order = [train[i] for i in torch.randperm(len(train), generator=gen).tolist()]
        # batches of similar lengths (less padding): sort each shuffled block of 8 batches
        bs = cfg["batch_size"]
        losses = []
        for s in range(0, len(order), bs * 8):
            block = sorted(order[s:s + bs * 8], key=lambda i: len(episodes[i]["action"]))
            for b in range(0, len(block), bs):
                z, a, zn, mz, m, d = sequence_batch(latents, episodes, block[b:b + bs], gen)
                # the z term over the steps with a next frame (mz), the done term over every
                # real step (m), which includes the last one, where the done target is 1
                loss, st = M.mdn_loss(model, z, a, zn, mz, d, cfg["done_factor"], done_mask=m)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_value_(model.parameters(), cfg["grad_clip"])
                opt.step()
                losses.append({k: v.item() for k, v in st.items()})
        rec = {k: float(np.mean([l[k] for l in losses])) for k in losses[0]}
        state["history"].append({"epoch": epoch, **rec})
        ctx.log(f"[mdn] epoch {epoch + 1}/{cfg['epochs']}: " + ", ".join(f"{k} {v:.3f}" for k, v in rec.items()))
    model.eval()
    ev = mdn_eval(model, latents, episodes, held or train, cfg, ctx.generator("mdn/eval"))
    ctx.log(f"[mdn] held-out: z nll {ev['z_nll']:.3f}, done recall {ev['done_recall']:.2f}, "
            f"false positives {ev['done_false_pos']:.4f}, P(done) at deaths {ev['done_p_at_death']:.4f} "
            f"= {ev['done_lift']:.1f}x the other steps'")
    return model, state["history"], ev


def make_policy(configs, params, rows):
    """One policy over the joint batch: rows [r0, r1) of each config use its own C."""

    def policy(obs):
        acts = []
        for (kind, _), p, (r0, r1) in zip(configs, params, rows):
            P = p.shape[0]
            o = obs[r0:r1].view(P, (r1 - r0) // P, -1)
            acts.append(M.controller_actions(kind, p, o, Z_DIM[0]).reshape(r1 - r0, -1))
        return torch.cat(acts)

    return policy


Z_DIM = [64]


def joint_dream(mdn_model, init, configs, per_config: int, max_steps: int, gen, dream: dict):
    taus, rows, r = [], [], 0
    for kind, tau in configs:
        taus += [tau] * per_config
        rows.append((r, r + per_config))
        r += per_config
    env = E.DreamEnv(mdn_model, init[0], init[1], torch.tensor(taus), r, max_steps, gen, **dream)
    return env, rows


def stage_cma(ctx: RunContext, cfg: dict, mdn_model, init, z_dim: int, dream: dict):
    import cma

    configs = cfg["configs"]
    P, R = cfg["popsize"], cfg["rollouts"]
    sizes = [M.controller_size(k, z_dim, mdn_model.hidden) for k, _ in configs]
    opts = {"popsize": P, "verbose": -9, "CMA_diagonal": cfg["diagonal"]}
    es = [Blob(cma.CMAEvolutionStrategy(np.zeros(n), cfg["sigma0"],
                                        {**opts, "seed": ctx.seed_for(f"cma/{i}") + 1}))
          for i, n in enumerate(sizes)]
    gen = ctx.generator("cma/dream")
    state = {"history": {config_name(*c): [] for c in configs}, "dream_steps": 0, "seconds": 0.0,
             "best": {config_name(*c): {"fitness": -math.inf, "params": None, "gen": -1} for c in configs}}
    loop = ctx.resumable("cma", {**{f"es{i}": e for i, e in enumerate(es)}, "dream": gen}, state)
    bar = ctx.progress(total=cfg["generations"], desc="cma")
    for g in loop.epochs(cfg["generations"]):
        t0 = time.perf_counter()
        xs = [e.obj.ask() for e in es]
        params = [torch.tensor(np.array(x), dtype=torch.float32) for x in xs]
        env, rows = joint_dream(mdn_model, init, configs, P * R, cfg["max_steps"], gen, dream)
        # rows of a config: candidate-major, R rollouts each
        returns = E.rollout(env, make_policy(configs, params, rows), max_steps=cfg["max_steps"])
        msg = []
        for (kind, tau), e, x, (r0, r1) in zip(configs, es, xs, rows):
            fit = returns[r0:r1].view(P, R).mean(1).numpy().astype(float)
            e.obj.tell(x, (-fit).tolist())
            b = state["best"][config_name(kind, tau)]
            if fit.max() > b["fitness"]:  # the best candidate so far (estool's best_param)
                b.update(fitness=float(fit.max()), params=[float(v) for v in x[int(fit.argmax())]], gen=g)
            h = {"gen": g, "mean": float(fit.mean()), "best": float(fit.max()), "worst": float(fit.min()),
                 "std": float(fit.std()), "sigma": float(e.obj.sigma)}
            state["history"][config_name(kind, tau)].append(h)
            msg.append(f"{config_name(kind, tau)} {h['mean']:.0f}/{h['best']:.0f}")
        state["dream_steps"] += int(returns.sum().item())
        state["seconds"] += time.perf_counter() - t0
        bar.update(1)
        ctx.log(f"[cma] gen {g + 1}/{cfg['generations']} (mean/best): " + ", ".join(msg))
    bar.close()
    if cfg["final"] == "best":
        finals = [torch.tensor(state["best"][config_name(*c)]["params"], dtype=torch.float32) for c in configs]
    else:
        finals = [torch.tensor(e.obj.result.xfavorite, dtype=torch.float32) for e in es]
    return finals, state


def run_all(ctx: RunContext, ccfg, vcfg, mcfg, ctl, ecfg) -> dict:
    torch.set_grad_enabled(True)
    Z_DIM[0] = vcfg["z_dim"]
    metrics = {}
    # ---- collect
    col = ctx.once("collect", lambda: stage_collect(ctx, ccfg))
    episodes = load_episodes([ctx.run_dir / f for f in col["files"]])
    coll = bootstrap_ci(col["lengths"], seed=ctx.seed_for("ci/collect"))
    metrics.update(coll.as_dict("collect/actual_"))  # the collection policy (actions held 1-10 steps)
    metrics["collect/frames"] = int(sum(col["lengths"]))
    metrics["collect/steps_per_second"] = sum(col["lengths"]) / max(col["seconds"], 1e-9)
    # ---- V
    t0 = time.perf_counter()
    frames = np.concatenate([ep["frames"] for ep in episodes])
    starts = np.cumsum([0] + [len(ep["action"]) for ep in episodes])
    for ep in episodes:
        del ep["frames"]  # one copy of the frames in memory: ``frames`` and offsets ``starts``
    vae_model, vae_hist = stage_vae(ctx, vcfg, frames)
    vae_secs = time.perf_counter() - t0
    with torch.no_grad():
        idx = torch.randint(len(frames), (512,), generator=ctx.generator("vae/check")).numpy()
        x = M.frames_to_tensor(frames[idx])
        recon, mu, logvar = vae_model(x, ctx.generator("vae/check_noise"))
        _, s = M.vae_loss(x, recon, mu, logvar, vcfg["kl_tolerance"])
        active = (mu.var(0) > 0.01).sum().item()
    metrics.update({"vae/recon": s["recon"].item(), "vae/kl": s["kl"].item(), "vae/active_dims": active,
                    "vae/params": sum(p.numel() for p in vae_model.parameters())})
    ctx.save_tensors("vae_samples", {"frames": torch.from_numpy(frames[idx[:8]]),
                                     "recon": (recon[:8].permute(0, 2, 3, 1) * 255).round().to(torch.uint8)})
    # ---- encode + M
    t0 = time.perf_counter()
    latents = stage_encode(ctx, vae_model, frames, starts)
    mdn_model, mdn_hist, mdn_ev = stage_mdn(ctx, mcfg, vcfg["z_dim"], latents, episodes)
    mdn_secs = time.perf_counter() - t0
    metrics.update({f"mdn/{k}": v for k, v in mdn_ev.items()})
    metrics["mdn/params"] = sum(p.numel() for p in mdn_model.parameters())
    init = (torch.stack([mu[0] for mu, _ in latents]), torch.stack([lv[0] for _, lv in latents]))
    # ---- C in the dream
    dream = {"done_mode": ctl["done_mode"], "done_factor": mcfg["done_factor"]}
    finals, cstate = stage_cma(ctx, ctl, mdn_model, init, vcfg["z_dim"], dream)
    configs = ctl["configs"]
    # ---- evaluate: dream (one joint batch) and real (worker processes)
    t0 = time.perf_counter()
    Rv = ecfg["virtual_rollouts"]

    def virtual():
        env, rows = joint_dream(mdn_model, init, configs, Rv, ecfg["max_steps"], ctx.generator("eval/dream"), dream)
        ret = E.rollout(env, make_policy(configs, [f[None] for f in finals], rows), max_steps=ecfg["max_steps"])
        return {config_name(*c): ret[r0:r1].tolist() for c, (r0, r1) in zip(configs, rows)}

    virt = ctx.once("eval/virtual", virtual)
    seeds = [10**6 + ctx.seed_for("eval/games") % 10**6 + i for i in range(ecfg["episodes"])]
    shared = {"vae_args": {"z_dim": vcfg["z_dim"], "width": vcfg["width"]}, "vae_state": vae_model.state_dict(),
              "mdn_args": {"z_dim": vcfg["z_dim"], "action_dim": 1, "hidden": mcfg["hidden"],
                           "mixtures": mcfg["mixtures"], "predict_done": True},
              "mdn_state": mdn_model.state_dict(), "max_steps": ecfg["max_steps"]}
    real = {}
    evaluated = configs + [("random", 0.0)]
    finals_all = finals + [torch.zeros(0)]
    todo = [c for c in evaluated if not (ctx.run_dir / "results" / "steps" /
                                       f"eval_real_{config_name(*c).replace('/', '_')}.json").exists()]
    jobs, owners = [], []
    for c, f in zip(evaluated, finals_all):
        if c not in todo:
            continue
        for s in range(0, len(seeds), ecfg["batch"]):
            jobs.append({**shared, "kind": c[0], "params": f.numpy(), "seeds": seeds[s:s + ecfg["batch"]]})
            owners.append(config_name(*c))
    t1 = time.perf_counter()
    outs = E.parallel_map(E.evaluate_episodes, jobs, ecfg["workers"],
                          progress=lambda it, total: ctx.progress(it, total=total, desc="eval real"))
    E.close_games()
    real_secs = time.perf_counter() - t1
    got = {}
    for o, name in zip(outs, owners):
        got.setdefault(name, []).extend(o)
    for c in evaluated:
        name = config_name(*c)
        real[name] = ctx.once(f"eval/real/{name}", lambda: got[name])
    rnd = bootstrap_ci(real["random/tau0"], seed=ctx.seed_for("ci/random"))
    metrics.update(rnd.as_dict("random/actual_"))
    metrics["random/actual_std"] = float(np.std(real["random/tau0"]))
    eval_secs = time.perf_counter() - t0
    for c, f in zip(configs, finals):
        name = config_name(*c)
        v = bootstrap_ci(virt[name], seed=ctx.seed_for(f"ci/v/{name}"))
        a = bootstrap_ci(real[name], seed=ctx.seed_for(f"ci/a/{name}"))
        metrics.update(v.as_dict(f"{name}/virtual_"))
        metrics.update(a.as_dict(f"{name}/actual_"))
        metrics[f"{name}/actual_std"] = float(np.std(real[name]))
        metrics[f"{name}/virtual_std"] = float(np.std(virt[name]))
        metrics[f"{name}/train_final_mean"] = cstate["history"][name][-1]["mean"]
        metrics[f"{name}/train_best"] = cstate["best"][name]["fitness"]
        metrics[f"{name}/params"] = int(f.numel())
        ctx.log(f"[eval] {name}: virtual {v}, actual {a}")
    zh = [f"zh/tau{t:g}" for k, t in configs if k == "zh"]
    best = [n for n in zh if n in ("zh/tau1", "zh/tau1.15")]
    if best:
        metrics["zh/best_of_tau1_1.15/actual_mean"] = max(metrics[f"{n}/actual_mean"] for n in best)
    steps_real = sum(sum(o) for o in outs)
    metrics["eval/real_steps_per_second"] = steps_real / max(real_secs, 1e-9) if jobs else math.nan
    metrics["cma/dream_steps_per_second"] = cstate["dream_steps"] / max(cstate["seconds"], 1e-9)
    # ---- a dream rollout of the tau-1.15 (or first) zh controller, decoded for the figures
    pick = next((i for i, c in enumerate(configs) if c == ("zh", 1.15)), 0)
    with torch.no_grad():
        env = E.DreamEnv(mdn_model, init[0], init[1], configs[pick][1], 1, 64, ctx.generator("dream/show"), **dream)
        obs, _ = env.reset()
        zs = [env.z.clone()]
        for _ in range(63):
            act = M.controller_actions(configs[pick][0], finals[pick][None], obs[None], vcfg["z_dim"])[0]
            obs, _, term, trunc, _ = env.step(act)
            if bool(env.done[0]):
                break
            zs.append(env.z.clone())
        dream = (vae_model.decode(torch.cat(zs)).permute(0, 2, 3, 1) * 255).round().to(torch.uint8)
    ctx.save_tensors("dream", {"frames": dream, "config": torch.tensor(pick)})
    ctx.save_json("history", {"vae": vae_hist, "mdn": mdn_hist, "cma": cstate["history"]})
    ctx.save_json("scores", {"virtual": virt, "real": real, "collect": col["lengths"],
                             "configs": [list(c) for c in configs]})
    timing = {"collect": col["seconds"], "vae": vae_secs, "encode_mdn": mdn_secs, "cma": cstate["seconds"],
              "eval": eval_secs}
    ctx.save_json("timing", timing)
    metrics.update({f"seconds/{k}": v for k, v in timing.items()})
    return metrics


@register("world_models_doom", paper=PAPER,
          figures=[figures.vae_reconstructions, figures.dream_rollout, figures.cma_progress, figures.table2])
def run(ctx: RunContext) -> dict:
    """VizDoom Take Cover: C trained inside M's dream at several temperatures, deployed in the real game."""
    import gymnasium
    import vizdoom

    ctx.log(f"[env] vizdoom {vizdoom.__version__}, gymnasium {gymnasium.__version__}")
    ctx.save_json("environment", {"vizdoom": vizdoom.__version__, "gymnasium": gymnasium.__version__,
                                  "scenario": "take_cover.cfg (vizdoom.scenarios_path)",
                                  "screen": "RES_160X120 RGB24, HUD cropped, resized to 64x64",
                                  "frame_skip": 1, "max_steps": 2100})
    metrics = run_all(ctx, collect(), vae(), mdn(), controllers(), evaluation())
    return metrics
