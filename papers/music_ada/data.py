"""SynthPiano: the stand-in for the paper's YouTube solo-piano data (not obtainable).

A seeded symbolic generator writes pieces with *known* long-range structure -- one key
and mode per piece, a tempo, a chord progression, a motif that recurs (transposed onto
the chords, with rhythmic variation), sections A-B-A (B moves to the dominant or the
relative key and varies the motif), a dynamics curve -- and FluidSynth renders them with
the General MIDI soundfont (FluidR3_GM, acoustic grand piano) through pretty_midi.
Preferred over real recordings here because it is deterministic, cheap and its
structure is known, so long-range metrics can be checked against the truth.  If
FluidSynth or the soundfont is missing, a small additive synthesiser renders instead
and the dataset says so (``renderer = "additive"``), which the run's metrics carry.

Audio is returned as float32 in [-1, 1] and as 8-bit mu-law classes (``mu_law_encode``).
``load_folder`` reads a user's own piano recordings (WAV/FLAC) for the full profile.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np
import torch

from registry import ReproError

SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
MAJOR = (0, 2, 4, 5, 7, 9, 11)
MINOR = (0, 2, 3, 5, 7, 8, 10)
PROGRESSIONS = ((0, 3, 4, 0), (0, 5, 3, 4), (0, 3, 0, 4), (0, 4, 5, 3))  # scale degrees of chord roots


# ------------------------------------------------------------------ mu-law (WaveNet §2.2)

def mu_law_encode(x: torch.Tensor, channels: int = 256) -> torch.Tensor:
    """Float audio in [-1, 1] -> integer classes 0..channels-1."""
    mu = channels - 1
    x = x.clamp(-1, 1)
    y = torch.sign(x) * torch.log1p(mu * x.abs()) / math.log1p(mu)
    return ((y + 1) / 2 * mu + 0.5).long().clamp(0, mu)


def mu_law_decode(q: torch.Tensor, channels: int = 256) -> torch.Tensor:
    mu = channels - 1
    y = 2 * q.float() / mu - 1
    return torch.sign(y) * ((1 + mu) ** y.abs() - 1) / mu


# ------------------------------------------------------------------ symbolic generator

def make_piece(rng: np.random.Generator, seconds: float) -> dict:
    """One piece: notes as (start s, end s, midi pitch, velocity) and its ground truth
    (key, mode, tempo, section boundaries)."""
    tonic = int(rng.integers(12))
    minor = bool(rng.random() < 0.4)
    scale = MINOR if minor else MAJOR
    bpm = float(rng.uniform(84, 132))
    beat = 60.0 / bpm
    bar = 4 * beat
    prog = PROGRESSIONS[int(rng.integers(len(PROGRESSIONS)))]
    # motif: 6-8 notes (scale steps relative to the chord root, durations in beats summing to 4)
    n = int(rng.integers(6, 9))
    steps = np.cumsum(rng.choice([-2, -1, 1, 2, 3], size=n)) % 9 - 2
    cuts = np.sort(rng.choice(np.arange(1, 8), size=n - 1, replace=False))
    durs = np.diff(np.concatenate([[0], cuts, [8]])) * 0.5  # half-beat grid
    nbars = max(3, int(round(seconds / bar)))
    a_len = max(1, nbars // 3)
    # B section: dominant (major) or relative major (minor), motif inverted
    b_shift = 3 if minor else 7
    notes = []
    base = 60 + tonic if tonic < 7 else 48 + tonic
    for b in range(nbars):
        section = "B" if a_len <= b < 2 * a_len else "A"
        root_deg = prog[b % len(prog)]
        shift = b_shift if section == "B" else 0
        t0 = b * bar
        vel_curve = 70 + 20 * math.sin(2 * math.pi * b / max(nbars, 1))
        # left hand: chord root + fifth on beats 1 and 3
        root = base - 12 + scale[root_deg % 7] + shift
        for beat_i in (0, 2):
            for p in (root, root + 7):
                notes.append((t0 + beat_i * beat, t0 + (beat_i + 2) * beat * 0.95, p, int(vel_curve - 10)))
        # right hand: the motif on this chord, varied (inverted in B, a random swap of durations)
        d = durs.copy()
        if rng.random() < 0.3:
            i = int(rng.integers(len(d) - 1))
            d[i], d[i + 1] = d[i + 1], d[i]
        t = t0
        for s, dur in zip(steps, d):
            s = -s if section == "B" else s
            deg = root_deg + int(s)
            pitch = base + 12 * (deg // 7) + scale[deg % 7] + shift
            vel = int(np.clip(vel_curve + rng.normal(0, 6), 30, 120))
            notes.append((t, t + dur * beat * 0.9, int(pitch), vel))
            t += dur * beat
    return {"notes": notes, "key": tonic, "minor": minor, "bpm": bpm, "seconds": nbars * bar,
            "sections": [0.0, a_len * bar, 2 * a_len * bar, nbars * bar]}


def render_fluidsynth(piece: dict, sr: int) -> np.ndarray:
    import pretty_midi

    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program=0)
    for s, e, p, v in piece["notes"]:
        inst.notes.append(pretty_midi.Note(velocity=int(v), pitch=int(p), start=float(s), end=float(e)))
    pm.instruments.append(inst)
    rate = max(sr, 8000)  # FluidSynth's lowest sample rate; lower rates are resampled
    audio = pm.fluidsynth(fs=rate, synthesizer=SOUNDFONT)
    if rate != sr:
        from scipy.signal import resample_poly

        g = math.gcd(rate, sr)
        audio = resample_poly(audio, sr // g, rate // g)
    return audio.astype(np.float32)


def render_additive(piece: dict, sr: int) -> np.ndarray:
    """The fallback: partials with slight inharmonicity, faster decay of higher partials."""
    total = int((piece["seconds"] + 1.5) * sr)
    out = np.zeros(total, np.float32)
    for s, e, p, v in piece["notes"]:
        f0 = 440.0 * 2 ** ((p - 69) / 12)
        n = int((e - s + 1.0) * sr)
        t = np.arange(n) / sr
        tone = np.zeros(n)
        for k in range(1, 7):
            fk = k * f0 * math.sqrt(1 + 1e-4 * k * k)
            if fk < sr / 2:
                tone += np.sin(2 * math.pi * fk * t) * np.exp(-t * (1.5 + 1.2 * k)) / k
        i = int(s * sr)
        out[i:i + n] += (v / 127) * tone[: total - i].astype(np.float32)
    return out / max(1e-6, np.abs(out).max())


def fluidsynth_available() -> bool:
    try:
        import fluidsynth  # noqa: F401
    except Exception:
        return False
    return Path(SOUNDFONT).exists()


def render(piece: dict, sr: int, renderer: str) -> np.ndarray:
    audio = render_fluidsynth(piece, sr) if renderer == "fluidsynth" else render_additive(piece, sr)
    audio = audio[: int(piece["seconds"] * sr)]
    peak = np.abs(audio).max()
    return (0.9 * audio / peak).astype(np.float32) if peak > 0 else audio


def cache_root() -> Path:
    return Path(os.environ.get("REPRO_CACHE") or Path(os.environ.get("XDG_CACHE_HOME")
                or Path.home() / ".cache") / "repro") / "synthpiano"


def synth_piano(pieces: int, seconds: float, sr: int, seed: int, progress=None) -> dict:
    """``pieces`` rendered pieces (deterministic in ``seed``), cached as .npz under
    $REPRO_CACHE/synthpiano.  Returns {"audio": list of float32 arrays, "meta": list of
    ground-truth dicts, "renderer": "fluidsynth" | "additive"}."""
    renderer = "fluidsynth" if fluidsynth_available() else "additive"
    tag = hashlib.sha256(json.dumps([pieces, seconds, sr, seed, renderer, 2]).encode()).hexdigest()[:16]
    path = cache_root() / f"{tag}.npz"
    if path.exists():
        z = np.load(path, allow_pickle=False)
        meta = json.loads(str(z["meta"]))
        return {"audio": [z[f"a{i}"] for i in range(pieces)], "meta": meta, "renderer": renderer}
    rng = np.random.default_rng(seed)
    audio, meta = [], []
    it = range(pieces) if progress is None else progress(range(pieces), desc="rendering SynthPiano")
    for _ in it:
        piece = make_piece(rng, float(rng.uniform(0.8, 1.2) * seconds))
        audio.append(render(piece, sr, renderer))
        meta.append({k: v for k, v in piece.items() if k != "notes"} | {"notes": len(piece["notes"])})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, meta=json.dumps(meta), **{f"a{i}": a for i, a in enumerate(audio)})
    tmp.rename(path)
    return {"audio": audio, "meta": meta, "renderer": renderer}


def load_folder(folder: str, sr: int) -> dict:
    """A user's piano recordings (every .wav / .flac under ``folder``), mixed to mono and
    resampled to ``sr`` (scipy's polyphase resampler)."""
    import soundfile as sf
    from scipy.signal import resample_poly

    root = Path(folder) if folder else None
    if root is None or not root.is_dir():
        raise ReproError(f"music_ada: audio folder {folder!r} does not exist; pass "
                                f"--gin \"music_ada.data.folder = '/path/to/piano'\" (a folder of WAV/FLAC "
                                f"piano recordings), or --gin \"music_ada.data.source = 'synth'\" for SynthPiano")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".wav", ".flac"))
    if not files:
        raise ReproError(f"music_ada: no .wav or .flac files under {root} (the full profile "
                                f"reads piano recordings from music_ada.data.folder)")
    audio = []
    for f in files:
        x, rate = sf.read(f, dtype="float32", always_2d=True)
        x = x.mean(1)
        if rate != sr:
            g = math.gcd(rate, sr)
            x = resample_poly(x, sr // g, rate // g).astype(np.float32)
        peak = np.abs(x).max()
        audio.append(0.9 * x / peak if peak > 0 else x)
    return {"audio": audio, "meta": [{"file": str(f)} for f in files], "renderer": "recordings"}


def crops(audio: torch.Tensor, length: int, batch: int, generator: torch.Generator) -> torch.Tensor:
    """``batch`` random windows of ``length`` from a 1-D tensor (int or float)."""
    start = torch.randint(0, audio.numel() - length, (batch,), generator=generator)
    return audio[start[:, None] + torch.arange(length)]
