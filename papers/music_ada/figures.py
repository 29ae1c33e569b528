"""Figures for music_ada_synthpiano, each regenerated from a run's saved results: code
usage over training (VQ-VAE vs AMAE), spectrograms of real / reconstructed / sampled
audio (which also writes the short WAV clips beside it), the long-range chroma metric
vs time lag per model, and the training curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from common import plotting


def code_usage(record, out):
    """Code perplexity and dead codes on held-out crops over training, per quantiser."""
    hist = record.result("histories")
    fig, axes = plotting.subplots(1, 2, figsize=(9, 3.4))
    for q, label in (("vq", "VQ-VAE"), ("amae", "AMAE"), ("l2", "AMAE level 2")):
        rows = hist.get(q, [])
        if not rows or "perplexity" not in rows[0]:
            continue
        steps = [r["step"] for r in rows]
        axes[0].plot(steps, [r["perplexity"] for r in rows], marker="o", ms=3, label=label)
        axes[1].plot(steps, [r["dead"] for r in rows], marker="o", ms=3, label=label)
    axes[0].set(xlabel="update", ylabel="code perplexity exp(H)", title="codes in use (held-out)")
    axes[1].set(xlabel="update", ylabel="dead codes (never used)", title="dead codes (held-out)")
    axes[0].legend()
    return plotting.save(fig, Path(out) / "code_usage.png")


def _wav(path: Path, mu: torch.Tensor, sr: int) -> Path:
    import soundfile as sf

    from papers.music_ada.data import mu_law_decode

    x = mu_law_decode(mu.long()).numpy()
    sf.write(path, (np.clip(x, -1, 1) * 32767).astype(np.int16), sr, subtype="PCM_16")
    return path


def spectrograms(record, out):
    """Log-magnitude spectrograms (first clip of each): held-out real audio, its
    reconstructions through the VQ-VAE and AMAE level-1 ADAs (decoder samples given the
    codes), a sample of the ADA hierarchy and of the unconditional WaveNet.  The same
    clips are written as 16-bit WAV files next to the figure (samples: their first
    three clip lengths)."""
    from papers.music_ada.data import mu_law_decode

    a = record.result("audio")
    sr = int(a["sr"])
    names = [("real", "real (held-out)"), ("recon_vq", "VQ-VAE reconstruction"),
             ("recon_amae", "AMAE reconstruction"), ("ada", "ADA hierarchy sample")]
    info = record.result("long_range").get("uncond_info", [])
    for j, i in enumerate(info):  # the receptive-field family, shortest first; the last is saved as "uncond"
        k = "uncond" if j == len(info) - 1 else i["key"]
        if k in a:
            names.append((k, f"unconditional WaveNet sample (receptive field {i['receptive_field_ms']:.0f} ms)"))
    if not info:
        names.append(("uncond", "unconditional WaveNet sample"))
    fig, axes = plotting.subplots(len(names), 1, figsize=(8, 1.5 * len(names)))
    for ax, (k, title) in zip(axes, names):
        x = mu_law_decode(a[k][0].long())
        n_fft = 256
        spec = torch.stft(x, n_fft, n_fft // 2, window=torch.hann_window(n_fft), return_complex=True).abs()
        ax.imshow(torch.log(spec + 1e-4).numpy(), origin="lower", aspect="auto", cmap="magma",
                  extent=(0, len(x) / sr, 0, sr / 2), vmin=-8, vmax=3)
        ax.set(ylabel="Hz", title=title)
        ax.grid(False)
        _wav(Path(out) / f"{k}.wav", a[k][0], sr)
    axes[-1].set(xlabel="seconds")
    return plotting.save(fig, Path(out) / "spectrograms.png", dpi=48)  # noisy images compress badly


def long_range(record, out):
    """Chroma correlation within a sample minus across samples, vs time lag, for held-out
    real excerpts, ADA-hierarchy samples and the samples of each unconditional WaveNet
    (growing receptive fields, held-out NLL in the label); the key, onset-rate and
    >= 10 s chroma metrics in the legend."""
    lr = record.result("long_range")
    fig, ax = plotting.subplots(figsize=(7.5, 4.0))
    models = [("real", "real (held-out)", "-"), ("ada", "ADA hierarchy", "-")]
    info = lr.get("uncond_info", [])
    for j, i in enumerate(info):  # the family of unconditional WaveNets, shortest receptive field first
        k = "uncond" if j == len(info) - 1 else i["key"]
        models.append((k, f"WaveNet RF {i['receptive_field_ms']:.0f} ms ({i['bits']:.2f} bit)", "--"))
    if not info:
        models.append(("uncond", "unconditional WaveNet", "--"))
    for k, label, ls in models:
        r = lr[k]
        ax.plot(r["curve"]["lags"], r["curve"]["excess"], marker="o", ms=3, ls=ls,
                label=f"{label}: key exc. {r['key_excess']:.2f}, onset ICC {r['onset_icc']:.2f}, "
                      f">=10 s {r['chroma_long_excess']:.3f}")
    ax.axvline(10, color="grey", ls=":")
    ax.axhline(0, color="black", lw=0.6)
    ax.set(xlabel="lag (s)", ylabel="chroma corr. within - across samples",
           title="long-range structure (stand-in for human musicality ratings)")
    ax.legend(fontsize=7)
    return plotting.save(fig, Path(out) / "long_range.png")


def training_curves(record, out):
    """Training NLL (bits per element) per model over updates."""
    hist = record.result("histories")
    fig, ax = plotting.subplots(figsize=(7, 3.4))
    for k, rows in hist.items():
        if rows:
            ax.plot([r["step"] for r in rows], [r["nll"] / np.log(2) for r in rows], label=k)
    ax.set(xlabel="update", ylabel="train NLL (bits / element)", title="training")
    ax.legend(fontsize=7)
    return plotting.save(fig, Path(out) / "training_curves.png")
