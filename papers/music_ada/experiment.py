"""music_ada_synthpiano: autoregressive discrete autoencoders (VQ-VAE and argmax AE) vs an
unconditional WaveNet on SynthPiano, the stand-in for the paper's piano recordings
(Dieleman, van den Oord & Simonyan, NeurIPS 2018, §3-4).

Stages (each resumable: training loops checkpoint per chunk, evaluations are ``ctx.once``):

1. SynthPiano train and held-out pieces (data.py), rendered by FluidSynth, 8-bit mu-law.
2. Level-1 ADAs with hop 8, one per quantiser (VQ-VAE, AMAE), same encoder/decoder and
   steps; code usage (perplexity, dead codes) on held-out crops after every chunk.
3. Decoder-uses-codes check: held-out NLL given the true codes vs given the same codes
   shuffled in time.
4. The unconditional WaveNet baselines: a family with growing receptive fields (one per
   entry of ``model.uncond_dilations``; at cpu the same layer count, so the same cost per
   sample), same steps and batch; the last (longest receptive field) is "the" baseline
   of the ADA-vs-WaveNet claims.
5. Level 2: an AMAE ADA over the level-1 AMAE codes (hop 8 again: 64 audio samples per
   top code), and an unconditional WaveNet prior over the level-2 codes.
6. Samples (cached generation): the hierarchy top-down (prior -> level-2 decoder ->
   level-1 decoder) and every unconditional WaveNet (batched in one cached loop by
   ``method.generate_many``), ``sample.n`` x ``sample.seconds`` each;
   the long-range metrics of structure.py on them and on held-out real excerpts.
"""

from __future__ import annotations

import math
import time

import gin
import torch

from common.context import RunContext
from common.device import WallTimer
from common.train import count_parameters, train_steps
from papers.music_ada import data as D
from papers.music_ada import figures
from papers.music_ada import method as M
from papers.music_ada import structure as S
from registry import Paper, register

PAPER = Paper(
    title="The challenge of realistic music generation: modelling raw audio at scale",
    authors="Sander Dieleman, Aaron van den Oord, Karen Simonyan",
    venue="NeurIPS 2018", arxiv="1806.10474")

LN2 = math.log(2)


@gin.configurable(module="music_ada")
def data(source="synth", pieces=400, heldout=40, seconds=40.0, sr=16000, data_seed=0, folder=""):
    """SynthPiano (``source = "synth"``: ``pieces`` + ``heldout`` pieces of ~``seconds``
    s, rendered at ``sr``; the dataset seed is fixed across run seeds) or a folder of
    piano recordings (``source = "folder"``; the last 10% of files are held out)."""
    return dict(source=source, pieces=pieces, heldout=heldout, seconds=seconds, sr=sr,
                data_seed=data_seed, folder=folder)


@gin.configurable(module="music_ada")
def model(codes=256, dim=64, enc_channels=128, downsamples=3, residual=64, skip=128,
          decoder_dilations=(1, 2, 4, 8, 16, 32) * 2, uncond_dilations=((1, 2, 4, 8, 16, 32) * 5, (1, 2, 4, 8, 16, 32, 64, 128) * 3 + (1, 2, 4, 8, 16, 32),
                            (1, 2, 4, 8, 16, 32, 64, 128, 256, 512) * 3),
          codes2=256, l2_dilations=(1, 2, 4, 8, 16, 32) * 2, prior_dilations=(1, 2, 4, 8, 16, 32, 64, 128) * 2,
          beta=0.25, diversity=0.1, audio_scalar_input=True):
    """Level-1 ADA (hop 2**downsamples) and the unconditional WaveNets (one per entry of
    ``uncond_dilations``: growing receptive fields; the last is the sampled baseline);
    level-2 ADA over level-1 codes and its prior.  ``diversity``: AMAE diversity-loss
    weight (times 1/K; the paper's value was not found: 0.1 chosen over 1.0 by held-out
    NLL in one development run, see claims.toml).  ``audio_scalar_input``: audio WaveNets
    (level-1 decoders, unconditional WaveNets) add the companded amplitude times a learned
    vector to their input embedding (faster learning at few updates; claims.toml)."""
    return dict(codes=codes, dim=dim, enc_channels=enc_channels, downsamples=downsamples,
                residual=residual, skip=skip, decoder_dilations=tuple(decoder_dilations),
                uncond_dilations=tuple(tuple(u) for u in uncond_dilations), codes2=codes2,
                l2_dilations=tuple(l2_dilations), prior_dilations=tuple(prior_dilations),
                beta=beta, diversity=diversity, audio_scalar_input=audio_scalar_input)


@gin.configurable(module="music_ada")
def train(steps=20000, batch=16, crop=8192, steps2=20000, crop2=2048, lr=3e-4, chunks=20,
          eval_crops=32):
    """Adam; level-1 models on ``batch`` random audio crops of ``crop`` samples; level-2
    ADA and prior on crops of ``crop2`` codes for ``steps2`` updates."""
    return dict(steps=steps, batch=batch, crop=crop, steps2=steps2, crop2=crop2, lr=lr,
                chunks=chunks, eval_crops=eval_crops)


@gin.configurable(module="music_ada")
def sample(n=8, seconds=25.0, clip_seconds=3.0, temperature=1.0, min_lag=10.0, key_window=5.0):
    """``n`` samples of ``seconds`` per model (batched, cached generation); short clips
    of ``clip_seconds`` are kept for spectrograms and WAV files."""
    return dict(n=n, seconds=seconds, clip_seconds=clip_seconds, temperature=temperature, min_lag=min_lag,
                key_window=key_window)


def load_data(ctx: RunContext, cfg: dict) -> dict:
    if cfg["source"] == "folder":
        d = D.load_folder(cfg["folder"], cfg["sr"])
        k = max(1, len(d["audio"]) // 10)
        tr, ho = d["audio"][:-k] or d["audio"], d["audio"][-k:]
        renderer = d["renderer"]
    else:
        d = D.synth_piano(cfg["pieces"] + cfg["heldout"], cfg["seconds"], cfg["sr"], cfg["data_seed"],
                          progress=ctx.progress)
        tr, ho = d["audio"][: cfg["pieces"]], d["audio"][cfg["pieces"]:]
        renderer = d["renderer"]
    if renderer == "additive":
        ctx.log("WARNING: FluidSynth or the soundfont is missing: SynthPiano rendered by the additive fallback")
    to_q = lambda arrs: [D.mu_law_encode(torch.from_numpy(a)) for a in arrs]  # noqa: E731
    return {"train": torch.cat(to_q(tr)), "heldout": to_q(ho), "renderer": renderer,
            "seconds": sum(len(a) for a in tr) / cfg["sr"]}


def fit(ctx: RunContext, key: str, net, loss_fn, batch_fn, steps: int, lr: float, chunks: int,
        monitor=None) -> list:
    """Adam on ``loss_fn(net, batch)`` in ``chunks`` resumable chunks; ``monitor(net)``
    adds a row of held-out statistics after each chunk."""
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    gen = ctx.generator(f"{key}/train")
    state = {"history": []}
    loop = ctx.resumable(key, {"model": net, "opt": opt, "gen": gen}, state)
    per = max(1, steps // chunks)
    for chunk in loop.epochs(chunks):
        c0 = time.process_time()
        with WallTimer(ctx.device) as t:
            means = train_steps(net, opt, lambda step: loss_fn(net, batch_fn(gen)), per,
                                start=chunk * per, clip_grad_norm=10.0)
        row = {"step": (chunk + 1) * per, **means, "seconds": t.seconds, "cpu_seconds": time.process_time() - c0}
        if monitor is not None:
            net.eval()
            row.update(monitor(net))
        state["history"].append(row)
        ctx.log(f"[{key}] step {row['step']}/{chunks * per}: " + ", ".join(
            f"{k} {v:.3f}" for k, v in row.items() if isinstance(v, float) and not k.endswith("seconds"))
            + f" ({row['seconds']:.0f} s)")
    net.eval()
    return state["history"]


def ada_loss(net, x):
    return net.loss(x)


def wavenet_loss(net, x):
    nll = net.nll(x)
    return nll, {"nll": nll.detach()}


def shuffle_time(idx: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    perm = torch.rand(idx.shape, generator=generator).argsort(1)
    return idx.gather(1, perm)


def heldout_crops(heldout: list, length: int, n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` crops of ``length``, cycling through the held-out pieces."""
    out = []
    for i in range(n):
        a = heldout[i % len(heldout)]
        s = int(torch.randint(0, a.numel() - length, (1,), generator=generator))
        out.append(a[s:s + length])
    return torch.stack(out)


def make_ada(classes: int, quantiser: str, m: dict, codes: int, dilations) -> M.ADA:
    return M.ADA(classes, quantiser, codes, dim=m["dim"], enc_channels=m["enc_channels"],
                 downsamples=m["downsamples"], residual=m["residual"], skip=m["skip"],
                 dilations=dilations, beta=m["beta"], diversity=m["diversity"],
                 scalar_input=classes == 256 and m["audio_scalar_input"])


def usage_monitor(x_eval):
    def monitor(net):
        idx = net.encode(x_eval)
        u = M.code_usage(idx, net.codes)
        nll = net.nll_given(x_eval, idx).mean().item() / LN2
        return {"perplexity": u["perplexity"], "dead": float(u["dead"]), "heldout_bits": nll}
    return monitor


def codes_check(net, x_eval, generator) -> dict:
    idx = net.encode(x_eval)
    true = net.nll_given(x_eval, idx) / LN2
    shuf = net.nll_given(x_eval, shuffle_time(idx, generator)) / LN2
    u = M.code_usage(idx, net.codes)
    return {"bits_true": true.mean().item(), "bits_shuffled": shuf.mean().item(),
            "perplexity": u["perplexity"], "dead": u["dead"], "histogram": u["histogram"]}


def encode_all(net, x: torch.Tensor, chunk: int = 65536) -> torch.Tensor:
    """Codes of a long 1-D sequence, encoded in chunks (the tail shorter than a chunk is dropped)."""
    chunk = min(chunk, x.numel() // net.hop * net.hop)
    n = x.numel() // chunk * chunk
    return net.encode(x[:n].view(-1, chunk))


@register("music_ada_synthpiano", paper=PAPER, data=(),
          figures=[figures.code_usage, figures.spectrograms, figures.long_range, figures.training_curves],
          description="ADA hierarchy (VQ-VAE / AMAE) vs unconditional WaveNet on SynthPiano (FluidSynth-rendered)")
def run(ctx: RunContext) -> dict:
    """VQ-VAE vs AMAE code usage, decoder-uses-codes NLL gap, and long-range structure of
    samples from a 2-level ADA hierarchy vs an unconditional WaveNet."""
    torch.set_grad_enabled(True)
    dcfg, m, tcfg, scfg = data(), model(), train(), sample()
    sr = dcfg["sr"]
    d = load_data(ctx, dcfg)
    x_train, heldout = d["train"], d["heldout"]
    ctx.log(f"data: {d['seconds'] / 60:.1f} min of training audio at {sr} Hz ({d['renderer']}), "
            f"{len(heldout)} held-out pieces")
    x_eval = heldout_crops(heldout, tcfg["crop"], tcfg["eval_crops"], ctx.generator("eval"))
    audio_batch = lambda g: D.crops(x_train, tcfg["crop"], tcfg["batch"], g)  # noqa: E731
    metrics: dict = {"fluidsynth": float(d["renderer"] == "fluidsynth"),
                     "train_minutes": d["seconds"] / 60}
    histories, results, seconds = {}, {}, {}

    # ---- level 1: VQ-VAE and AMAE ADAs
    adas = {}
    for q in ("vq", "amae"):
        net = make_ada(256, q, m, m["codes"], m["decoder_dilations"]).to(ctx.device)
        t0 = time.process_time()
        histories[q] = fit(ctx, f"ada_{q}", net, ada_loss, audio_batch, tcfg["steps"], tcfg["lr"],
                           tcfg["chunks"], monitor=usage_monitor(x_eval))
        seconds[q] = sum(r["seconds"] for r in histories[q])
        adas[q] = net
        res = ctx.once(f"codes_check_{q}", lambda: codes_check(net, x_eval, ctx.generator(f"shuffle/{q}")))
        results[q] = res
        metrics.update({f"{q}/bits_true": res["bits_true"], f"{q}/bits_shuffled": res["bits_shuffled"],
                        f"{q}/bits_gap": res["bits_shuffled"] - res["bits_true"],
                        f"{q}/perplexity": res["perplexity"], f"{q}/dead_codes": res["dead"],
                        f"{q}/params": count_parameters(net)})
        metrics[f"{q}/perplexity_min_late"] = min(r["perplexity"] for r in histories[q][len(histories[q]) // 2:])

    # ---- unconditional WaveNets (growing receptive fields; the last is sampled)
    unconds, uncond_info, cpu_sec = [], [], []
    for j, dil in enumerate(m["uncond_dilations"]):
        net = M.WaveNet(256, m["residual"], m["skip"], dil, scalar_input=m["audio_scalar_input"]).to(ctx.device)
        key = f"uncond{j}"
        histories[key] = fit(ctx, key, net, wavenet_loss, audio_batch, tcfg["steps"], tcfg["lr"], tcfg["chunks"])
        seconds[key] = sum(r["seconds"] for r in histories[key])
        cpu_sec.append(sum(r.get("cpu_seconds", r["seconds"]) for r in histories[key]))
        with torch.no_grad():
            bits = net.nll(x_eval).item() / LN2
        metrics[f"{key}/bits"] = bits
        metrics[f"{key}/receptive_field_ms"] = 1000 * net.receptive_field / sr
        metrics[f"{key}/params"] = count_parameters(net)
        metrics[f"{key}/train_cpu_seconds"] = cpu_sec[-1]
        uncond_info.append({"key": key, "bits": bits, "receptive_field_ms": 1000 * net.receptive_field / sr,
                            "layers": len(dil)})
        unconds.append(net)
    uncond = unconds[-1]
    # the receptive-field family should cost about the same per sample (same layer count)
    metrics["cost/uncond_cpu_spread"] = max(cpu_sec) / max(1e-9, min(cpu_sec))

    # ---- level 2 (AMAE over the level-1 AMAE codes) and the top prior
    l1 = adas["amae"]
    c1 = encode_all(l1, x_train).flatten()
    c1_eval = l1.encode(x_eval)  # (E, crop / hop)
    code_batch = lambda g: D.crops(c1, tcfg["crop2"], tcfg["batch"], g)  # noqa: E731
    l2 = make_ada(m["codes"], "amae", m, m["codes2"], m["l2_dilations"]).to(ctx.device)
    histories["l2"] = fit(ctx, "ada_l2", l2, ada_loss, code_batch, tcfg["steps2"], tcfg["lr"], tcfg["chunks"],
                          monitor=usage_monitor(c1_eval))
    seconds["l2"] = sum(r["seconds"] for r in histories["l2"])
    res = ctx.once("codes_check_l2", lambda: codes_check(l2, c1_eval, ctx.generator("shuffle/l2")))
    results["l2"] = res
    metrics.update({"l2/bits_true": res["bits_true"], "l2/bits_shuffled": res["bits_shuffled"],
                    "l2/perplexity": res["perplexity"], "l2/dead_codes": res["dead"]})
    c2 = encode_all(l2, c1, 8192).flatten()
    prior = M.WaveNet(m["codes2"], m["residual"], m["skip"], m["prior_dilations"]).to(ctx.device)
    crop_p = max(tcfg["crop2"] // l2.hop, 2 * prior.receptive_field)
    histories["prior"] = fit(ctx, "prior", prior, wavenet_loss,
                             lambda g: D.crops(c2, min(crop_p, c2.numel() // 2), tcfg["batch"], g),
                             tcfg["steps2"], tcfg["lr"], tcfg["chunks"])
    seconds["prior"] = sum(r["seconds"] for r in histories["prior"])
    metrics["prior/train_bits"] = histories["prior"][-1]["nll"] / LN2
    metrics["prior/receptive_field_s"] = prior.receptive_field * l1.hop * l2.hop / sr
    hier_params = count_parameters(l1) + count_parameters(l2) + count_parameters(prior)
    metrics["hierarchy/params"] = hier_params
    metrics["cost/params_ratio"] = metrics[f"uncond{len(m['uncond_dilations']) - 1}/params"] / hier_params
    metrics["cost/train_seconds_ratio"] = seconds[f"uncond{len(m['uncond_dilations']) - 1}"] / (
        seconds["amae"] + seconds["l2"] + seconds["prior"])
    ctx.log(f"codes per level: {c1.numel()} level-1, {c2.numel()} level-2; hierarchy {hier_params} params, "
            f"unconditional {metrics['cost/params_ratio']:.2f}x of it")

    # ---- samples and long-range metrics
    steps = int(scfg["seconds"] * sr)
    hop_total = l1.hop * l2.hop
    n = scfg["n"]

    def sample_all():
        gen = ctx.generator("sample")
        t0 = time.perf_counter()
        top = prior.generate(n, math.ceil(steps / hop_total), generator=gen, temperature=scfg["temperature"])
        mid = l2.decoder.generate(n, math.ceil(steps / l1.hop), l2.quantiser.embed_codes(top), generator=gen,
                                  temperature=scfg["temperature"])
        wav_ada = l1.decoder.generate(n, steps, l1.quantiser.embed_codes(mid), generator=gen,
                                      temperature=scfg["temperature"], progress=lambda r: ctx.progress(r, desc="ADA sample"))
        t_ada = time.perf_counter() - t0
        t0 = time.perf_counter()
        prog = lambda r: ctx.progress(r, desc="WaveNet samples")  # noqa: E731
        if len({len(u.dilations) for u in unconds}) == 1:  # one batched loop for the whole family
            wav_uncs = list(M.generate_many(unconds, n, steps, generator=gen, temperature=scfg["temperature"],
                                            progress=prog))
        else:
            wav_uncs = [u.generate(n, steps, generator=gen, temperature=scfg["temperature"], progress=prog)
                        for u in unconds]
        wav_unc = wav_uncs[-1]
        t_unc = time.perf_counter() - t0
        # reconstructions: held-out excerpts -> level-1 codes -> decoder sample
        clip = int(scfg["clip_seconds"] * sr)
        real_clip = heldout_crops(heldout, clip, 2, ctx.generator("clips"))
        rec = {}
        for q, net in adas.items():
            rec[q] = net.decoder.generate(2, clip, net.quantiser.embed_codes(net.encode(real_clip)), generator=gen)
        ctx.save_tensors("audio", {"real": real_clip.to(torch.uint8), "recon_vq": rec["vq"].to(torch.uint8),
                                   "recon_amae": rec["amae"].to(torch.uint8),
                                   "ada": wav_ada[:2, :3 * clip].to(torch.uint8),
                                   "uncond": wav_unc[:2, :3 * clip].to(torch.uint8),
                                   **{f"uncond{j}": w[:2, :3 * clip].to(torch.uint8)
                                      for j, w in enumerate(wav_uncs[:-1])},
                                   "sr": torch.tensor(sr)})
        real = heldout_crops(heldout, steps, n, ctx.generator("real_excerpts"))
        out = {"seconds_ada": t_ada, "seconds_uncond": t_unc, "uncond_info": uncond_info}
        for name, wav in (("real", real), ("ada", wav_ada), ("uncond", wav_unc),
                          *((f"uncond{j}", w) for j, w in enumerate(wav_uncs[:-1]))):
            out[name] = S.all_metrics(D.mu_law_decode(wav), sr, scfg["min_lag"], scfg["key_window"])
        return out

    lr_res = ctx.once("samples", sample_all)
    J = len(unconds)
    for name in ("real", "ada", "uncond", *(f"uncond{j}" for j in range(J - 1))):
        r = lr_res[name]
        for k in ("key_excess", "chroma_long_excess", "onset_icc", "onset_rate", "key_within"):
            metrics[f"{name}/{k}"] = r[k]
    for k in ("key_excess", "chroma_long_excess", "onset_icc", "onset_rate", "key_within"):
        metrics[f"uncond{J - 1}/{k}"] = metrics[f"uncond/{k}"]  # the sampled baseline is the last of the family
    metrics["sampling/seconds_ada"] = lr_res["seconds_ada"]
    metrics["sampling/seconds_uncond"] = lr_res["seconds_uncond"]
    metrics["sampling/audio_seconds_per_model"] = n * scfg["seconds"]
    ctx.save_json("histories", histories)
    ctx.save_json("codes", results)
    ctx.save_json("long_range", lr_res)
    ctx.save_json("config", {"data": dcfg, "model": m, "train": tcfg, "sample": scfg})
    return metrics
