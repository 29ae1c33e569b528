"""music_ada: cached WaveNet generation equals the full forward pass, causality by
gradients, mu-law round trips, straight-through estimators, deterministic rendering,
the long-range metrics on signals with known structure, and resumed training."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from common import runs
from papers.music_ada import data as D
from papers.music_ada import experiment as E
from papers.music_ada import method as M
from papers.music_ada import structure as S
from registry import ReproError


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ------------------------------------------------------------------ WaveNet

@pytest.mark.parametrize("cond,scalar", [(0, False), (5, False), (0, True)])
def test_cached_generation_equals_full_forward(cond, scalar):
    """Every step's logits of the queue sampler equal the full (teacher-forced) forward
    pass over the generated sequence, and the naive sampler draws the same samples."""
    torch.manual_seed(0)
    net = M.WaveNet(classes=32, residual=8, skip=12, dilations=(1, 2, 4, 8, 1, 2, 4, 8), cond_dim=cond, hop=4,
                    scalar_input=scalar)
    c = torch.randn(3, cond, 25) if cond else None
    x, logits = net.generate(3, 97, c, generator=torch.Generator().manual_seed(1), return_logits=True)
    with torch.no_grad():
        full = net(x, c)
    assert torch.allclose(logits, full, atol=1e-5), (logits - full).abs().max()
    naive = net.generate_naive(3, 97, c, generator=torch.Generator().manual_seed(1))
    assert torch.equal(naive, x)
    assert x.unique().numel() > 5  # a real sample, not a constant


def test_generate_many_equals_each_models_forward():
    """Sampling several unconditional WaveNets with different dilations at once: each
    model's step logits equal its own full forward pass over its own samples, and a
    model sampled alone by generate_many draws what WaveNet.generate draws."""
    torch.manual_seed(0)
    dils = [(1, 2, 1, 2, 1, 2), (1, 2, 4, 8, 1, 2), (1, 2, 4, 8, 16, 32)]
    nets = [M.WaveNet(classes=24, residual=8, skip=10, dilations=d, scalar_input=True).eval() for d in dils]
    x, logits = M.generate_many(nets, 3, 90, generator=torch.Generator().manual_seed(2), return_logits=True)
    assert x.shape == (3, 3, 90) and logits.shape == (3, 3, 24, 90)
    with torch.no_grad():
        for m, net in enumerate(nets):
            full = net(x[m])
            assert torch.allclose(logits[m], full, atol=1e-5), (m, (logits[m] - full).abs().max())
            assert x[m].unique().numel() > 5
    one = M.generate_many(nets[2:], 3, 50, generator=torch.Generator().manual_seed(3))[0]
    assert torch.equal(one, nets[2].generate(3, 50, generator=torch.Generator().manual_seed(3)))


def test_wavenet_is_causal_by_gradients():
    """The gradient of the logits at t with respect to the embedded (shifted) input is
    zero at every position after t: the output at t depends on x[:t] only; and it is
    non-zero at x[t-1] and at the far end of the receptive field, zero beyond it."""
    torch.manual_seed(0)
    net = M.WaveNet(classes=16, residual=8, skip=32, dilations=(1, 2, 4, 8))
    T, t = 40, 25
    x = torch.randint(0, 16, (1, T))
    emb = net.embed_input(net.shifted(x)).detach().requires_grad_(True)  # emb[:, s] encodes x[s - 1]
    net.embed_input = lambda _: emb
    logits = net.trunk(torch.zeros(1, T, dtype=torch.long), None)
    logits[0, :, t].pow(2).sum().backward()
    g = emb.grad[0].abs().sum(1)  # per position of the shifted input
    assert g[t + 1:].max() == 0  # x[t], x[t+1], ... never reach position t
    assert g[t] > 0  # x[t-1] does
    rf = 1 + 2 + 4 + 8
    assert g[t - rf] > 0 and g[: t - rf].max() == 0  # exactly the receptive field


# ------------------------------------------------------------------ mu-law

def test_mu_law_round_trips():
    q = torch.arange(256)
    assert torch.equal(D.mu_law_encode(D.mu_law_decode(q)), q)
    assert D.mu_law_encode(torch.tensor([-1.0, 0.0, 1.0])).tolist() == [0, 128, 255]
    x = torch.linspace(-1, 1, 10001)
    y = D.mu_law_decode(D.mu_law_encode(x))
    # the closed form: F(x) = sign(x) ln(1 + 255|x|) / ln 256; quantisation error <= half a step in F
    F = lambda v: torch.sign(v) * torch.log1p(255 * v.abs()) / math.log(256)  # noqa: E731
    assert (F(y) - F(x)).abs().max() <= 1 / 255 + 1e-6
    # in x: at most that times max dx/dF = ln(256) * 256 / 255 (at |x| = 1), about 0.0218
    assert (y - x).abs().max() <= math.log(256) * 256 / 255 / 255 + 1e-6


# ------------------------------------------------------------------ quantisers

def test_vq_straight_through_and_losses():
    torch.manual_seed(0)
    vq = M.VectorQuantiser(codes=6, dim=3)
    z = torch.randn(2, 3, 5, requires_grad=True)
    q, idx, loss = vq(z)
    d = ((z.detach().transpose(1, 2)[:, :, None] - vq.codebook.detach()) ** 2).sum(-1)
    assert torch.equal(idx, d.argmin(-1))
    assert torch.allclose(q, vq.codebook[idx].transpose(1, 2), atol=1e-6)  # z + (e - z) rounds
    w = torch.randn_like(q)
    (q * w).sum().backward()
    assert torch.allclose(z.grad, w)  # straight-through: identity gradient
    assert vq.codebook.grad is None or vq.codebook.grad.abs().sum() == 0  # not through q
    z.grad = None
    loss.backward()
    assert vq.codebook.grad.abs().sum() > 0 and z.grad.abs().sum() > 0  # codebook + commitment


def test_amae_one_hot_straight_through_and_diversity():
    torch.manual_seed(0)
    K = 5
    am = M.ArgmaxQuantiser(codes=K, weight=1.0)
    z = torch.randn(2, K, 7, requires_grad=True)
    st, idx, loss = am(z)
    assert torch.equal(st.detach(), torch.nn.functional.one_hot(idx, K).transpose(1, 2).float())
    w = torch.randn_like(st)
    (st * w).sum().backward()
    r = torch.relu(z.detach()).requires_grad_(False)
    zz = z.detach().clone().requires_grad_(True)
    rr = torch.relu(zz)
    ((rr / (rr.sum(1, keepdim=True) + 1e-6)) * w).sum().backward()
    assert torch.allclose(z.grad, zz.grad)  # the gradient of the normalised query
    assert z.grad.abs().sum() > 0 and r.sum() > 0
    # diversity loss: zero for a uniform mean query, K - 1 (x weight / K) when one code takes all
    uniform = torch.ones(1, K, 4)
    assert am(uniform)[2].item() == pytest.approx(0.0, abs=1e-9)
    collapsed = torch.zeros(1, K, 4)
    collapsed[:, 2] = 1.0
    assert am(collapsed)[2].item() == pytest.approx((K - 1) ** 2 / K + (K - 1) / K, rel=1e-5)


def test_code_usage_perplexity():
    u = M.code_usage(torch.tensor([0, 1, 2, 3] * 5), 8)
    assert u["perplexity"] == pytest.approx(4.0) and u["dead"] == 4


def test_decoder_conditioning_changes_nll():
    torch.manual_seed(0)
    ada = M.ADA(256, "amae", 8, enc_channels=8, downsamples=2, residual=8, skip=8, dilations=(1, 2))
    x = torch.randint(0, 256, (2, 64))
    idx = ada.encode(x)
    assert idx.shape == (2, 16)
    other = (idx + 1) % 8
    assert not torch.allclose(ada.nll_given(x, idx), ada.nll_given(x, other))


# ------------------------------------------------------------------ data

def test_rendering_deterministic_for_a_seed(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_CACHE", str(tmp_path))
    a = D.synth_piano(1, 4.0, 8000, seed=3)
    assert len(list((tmp_path / "synthpiano").glob("*.npz"))) == 1
    monkeypatch.setenv("REPRO_CACHE", str(tmp_path / "other"))
    b = D.synth_piano(1, 4.0, 8000, seed=3)  # rendered again, not read from the cache
    c = D.synth_piano(1, 4.0, 8000, seed=4)
    assert a["renderer"] == b["renderer"]
    for x, y in zip(a["audio"], b["audio"]):
        assert np.array_equal(x, y)
    assert not np.array_equal(a["audio"][0][:20000], c["audio"][0][:20000])
    assert a["meta"] == b["meta"]
    assert np.abs(a["audio"][0]).max() == pytest.approx(0.9, abs=1e-4)


def test_fluidsynth_renders_the_notes_key():
    """A known answer for the renderer and the key estimator together: the chroma key of
    each rendered piece is its generated key (major pieces) or its relative (minor)."""
    if not D.fluidsynth_available():
        pytest.skip("FluidSynth not installed")
    rng = np.random.default_rng(0)
    hits = 0
    pieces = [D.make_piece(rng, 10.0) for _ in range(6)]
    audio = [torch.from_numpy(D.render(p, 8000, "fluidsynth")[: 8 * 8000]) for p in pieces]
    keys = S.estimate_keys(S.chroma(torch.stack(audio), 8000).mean(1))
    for p, k in zip(pieces, keys.tolist()):
        want = {p["key"] + (12 if p["minor"] else 0), (p["key"] + 3) % 12 if p["minor"] else (p["key"] + 9) % 12 + 12}
        hits += k in want
    assert hits >= 5, keys


def test_load_folder_errors_and_reads(tmp_path):
    import soundfile as sf

    with pytest.raises(ReproError, match="does not exist"):
        D.load_folder(str(tmp_path / "nope"), 8000)
    with pytest.raises(ReproError, match="no .wav or .flac"):
        D.load_folder(str(tmp_path), 8000)
    t = np.arange(16000) / 16000
    sf.write(tmp_path / "a.wav", 0.5 * np.sin(2 * np.pi * 440 * t), 16000)
    d = D.load_folder(str(tmp_path), 8000)
    assert len(d["audio"]) == 1 and len(d["audio"][0]) == 8000
    assert np.abs(d["audio"][0]).max() == pytest.approx(0.9, abs=0.01)


# ------------------------------------------------------------------ long-range metrics

def _chords(roots, sr=4000, seconds=12.0):
    """One sample per root: a major triad (sines) repeated in quavers, decaying."""
    t = np.arange(int(seconds * sr)) / sr
    env = np.exp(-8 * (t % 0.25))
    out = []
    for r in roots:
        f = [261.63 * 2 ** ((r + k) / 12) for k in (0, 4, 7)]
        out.append(sum(np.sin(2 * np.pi * fi * t) for fi in f) * env / 3)
    return torch.tensor(np.stack(out), dtype=torch.float32)


def test_structure_metrics_known_answers():
    sr = 4000
    music = _chords([0, 2, 5, 7, 9], sr)
    m = S.all_metrics(music, sr)
    assert m["key_within"] == 1.0 and m["key_excess"] > 0.7  # one key each, different keys
    assert m["chroma_long_excess"] > 0.5
    assert 3 < m["onset_rate"] < 5  # one onset per 0.25 s
    same = _chords([0, 0, 0, 0, 0], sr)  # the same key everywhere: nothing beyond chance
    assert abs(S.all_metrics(same, sr)["key_excess"]) < 1e-9
    noise = torch.randn(5, 12 * sr, generator=torch.Generator().manual_seed(0))
    mn = S.all_metrics(noise, sr)
    assert abs(mn["key_excess"]) < 0.3 and abs(mn["chroma_long_excess"]) < 0.2


# ------------------------------------------------------------------ resumable training

def test_fit_resumes_after_a_kill(tmp_path):
    def make():
        torch.manual_seed(0)
        return M.WaveNet(classes=16, residual=4, skip=4, dilations=(1, 2))

    x = torch.randint(0, 16, (200,), generator=torch.Generator().manual_seed(0))
    batch = lambda g: D.crops(x, 32, 4, g)  # noqa: E731

    def ctx(path):
        path.mkdir(parents=True, exist_ok=True)
        return runs.RunContext(experiment=None, profile="smoke", seed=0, device=torch.device("cpu"),
                               run_dir=path, config_text="cfg", quiet=True)

    ref = make()
    E.fit(ctx(tmp_path / "a"), "k", ref, E.wavenet_loss, batch, 6, 1e-2, 3)
    calls = []

    def killer(net):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return {}

    net = make()
    with pytest.raises(KeyboardInterrupt):
        E.fit(ctx(tmp_path / "b"), "k", net, E.wavenet_loss, batch, 6, 1e-2, 3, monitor=killer)
    net = make()
    hist = E.fit(ctx(tmp_path / "b"), "k", net, E.wavenet_loss, batch, 6, 1e-2, 3, monitor=lambda n: {})
    assert len(hist) == 3
    for p, q in zip(ref.parameters(), net.parameters()):
        assert torch.equal(p, q)
