"""ABS (papers/abs): the batched inference against a plain per-class loop, gradients,
a planted easy case, the lower bound's defining property, and the baselines."""

import math

import pytest
import torch
import torch.nn as nn

from common.attacks import AttackInputError
from papers.abs import method as M


def _vaes(seed=0):
    torch.manual_seed(seed)
    v = M.ClassVAEs()
    # non-trivial BatchNorm statistics, so that slicing them per class is tested too
    for mod in v.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.2, 0.2)
            mod.running_var.uniform_(0.5, 1.5)
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.1, 0.1)
    return v.eval()


def _loop_inference(vaes, x, n_samples, steps, lr=0.05, beta=1.0, radius=5.0):
    """A straightforward reference: per image and class, its own decoder and optimiser."""
    bank = M.latent_bank(n_samples)
    scores = torch.empty(len(x), vaes.n_classes)
    for k in range(vaes.n_classes):
        dec = vaes.plain_decoder(k)  # ordinary layers sliced out of the grouped ones
        G = torch.sigmoid(dec(bank[:, :, None, None])).flatten(1)
        for i in range(len(x)):
            xi = x[i].flatten()
            s0 = ((xi - G) ** 2).sum(1) + beta * 0.5 * (bank ** 2).sum(1)
            z = bank[s0.argmin()].clone().requires_grad_(True)
            opt = torch.optim.Adam([z], lr=lr)
            best = math.inf
            for step in range(steps + 1):
                rec = torch.sigmoid(dec(z[None, :, None, None])).flatten()
                loss = ((xi - rec) ** 2).sum() + beta * 0.5 * (z ** 2).sum()
                best = min(best, loss.item())
                if step == steps:
                    break
                opt.zero_grad()
                loss.backward()
                opt.step()
                with torch.no_grad():
                    z.copy_(M.project_ball(z, radius))
            scores[i, k] = best if steps else s0.min().item()
    return scores


@pytest.mark.parametrize("steps", [0, 4])
def test_batched_inference_equals_per_class_loop(steps):
    vaes = _vaes()
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    model = M.ABS(vaes, n_samples=300, steps=steps).eval()
    ours = model.infer(x)["scores"]
    ref = _loop_inference(vaes, x, 300, steps)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(model(x), -ours / 784)


def test_inference_decoder_equals_the_grouped_decoder_and_its_gradient():
    """BatchNorm folded, the first layer as a matmul, the transposed convolutions by the
    backward-data kernel, ELU by its max form: the same function of z, the same z-gradient."""
    vaes = _vaes()
    fast = M.InferenceDecoder(vaes)
    z = torch.randn(5, 10, 8, generator=torch.Generator().manual_seed(2))
    w = torch.rand(5, 10, 28, 28, generator=torch.Generator().manual_seed(3))
    outs, grads = [], []
    for decode in (vaes.decode, fast):
        zz = z.clone().requires_grad_(True)
        out = decode(zz)
        (g,) = torch.autograd.grad((out * w).sum(), zz)
        outs.append(out.detach())
        grads.append(g)
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-5)
    x = torch.linspace(-3, 3, 13, dtype=torch.float64).requires_grad_(True)
    torch.testing.assert_close(M._ELU.apply(x), torch.nn.functional.elu(x), rtol=0, atol=1e-15)
    assert torch.autograd.gradcheck(M._ELU.apply, (x[x.abs() > 1e-3].detach().requires_grad_(True),))


def test_fast_path_and_adam_batches_give_the_reference_scores():
    vaes = _vaes()
    x = torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(4))
    ref = M.ABS(vaes, n_samples=300, steps=4, fast=False, adam_batch=None).infer(x)
    for batch in (None, 2):
        ours = M.ABS(vaes, n_samples=300, steps=4, adam_batch=batch).infer(x)
        torch.testing.assert_close(ours["scores"], ref["scores"], rtol=1e-4, atol=1e-3)
        torch.testing.assert_close(ours["z"], ref["z"], rtol=1e-3, atol=1e-3)


def test_decoder_and_bank_follow_the_vaes_weights():
    """The frozen decoder and the decoded bank are rebuilt after the weights change."""
    vaes = _vaes()
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(5))
    model = M.ABS(vaes, n_samples=200, steps=2)
    before = model.infer(x)["scores"]
    with torch.no_grad():
        vaes.decoder[0].weight.mul_(1.5)
    after = model.infer(x)["scores"]
    fresh = M.ABS(vaes, n_samples=200, steps=2, fast=False).infer(x)["scores"]
    assert not torch.allclose(after, before)
    torch.testing.assert_close(after, fresh, rtol=1e-4, atol=1e-3)


def test_groups_do_not_mix():
    vaes = _vaes()
    z = torch.randn(4, 10, 8)
    out = vaes.decode(z)
    z2 = z.clone()
    z2[:, 3:] = torch.randn(4, 7, 8)  # change every class but 0-2
    torch.testing.assert_close(vaes.decode(z2)[:, :3], out[:, :3])


def test_input_gradient_is_envelope_gradient():
    """d logit_y / dx at the optimum is -2 (x - G_y(z*)) / 784 (z* does not move x's gradient)."""
    vaes = _vaes()
    model = M.ABS(vaes, n_samples=200, steps=3).eval()
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(2)).requires_grad_(True)
    out = model.infer(x)
    out["logits"][:, 4].sum().backward()
    expected = -2 * (x.detach() - out["rec"][:, 4].detach()) / 784
    assert x.grad.abs().sum() > 0
    torch.testing.assert_close(x.grad, expected, rtol=1e-4, atol=1e-7)


def test_planted_decoder_output_is_reconstructed():
    vaes = _vaes()
    z0 = torch.zeros(1, 10, 8)
    z0[0, 6] = torch.tensor([0.5, -0.3, 0.2, 0.1, -0.4, 0.0, 0.3, -0.1])
    x = vaes.decode(z0)[:, 6:7].detach()  # an image class 6's decoder can produce exactly
    model = M.ABS(vaes, n_samples=2000, steps=50).eval()
    out = model.infer(x)
    rec_err = ((x.flatten(1) - out["rec"][:, 6].flatten(1)) ** 2).sum().item() / 784
    assert rec_err < 2e-4  # near zero per pixel (a typical MNIST reconstruction: ~1e-2)
    # and the score is at most the planted latent's own score
    assert out["scores"][0, 6].item() <= 0.5 * (z0[0, 6] ** 2).sum().item() + 1e-3


def test_inference_is_deterministic_and_checks_shape():
    model = M.ABS(_vaes(), n_samples=100, steps=2).eval()
    x = torch.rand(2, 1, 28, 28)
    torch.testing.assert_close(model(x), model(x))
    with pytest.raises(AttackInputError, match="28, 28"):
        model(torch.rand(2, 784))


def test_lower_bound_holds_for_the_bank_model():
    """With no Adam steps, inference minimises exactly over the bank, so the bound is
    exact: no perturbation below it (random directions, PGD) changes the decision."""
    from common import attacks as A

    torch.manual_seed(3)
    vaes = _vaes(3)
    model = M.ABS(vaes, n_samples=500, steps=0).eval()
    x = torch.rand(6, 1, 28, 28) * 0.5
    y = model(x).argmax(1)  # the model's own decisions
    lb = M.l2_lower_bound(model, x, y)
    assert (lb > 0).all()
    for _ in range(20):
        d = torch.randn_like(x)
        d = d / d.flatten(1).norm(dim=1)[:, None, None, None] * 0.999 * lb[:, None, None, None]
        assert (model(x + d).argmax(1) == y).all()
    adv = A.pgd(model, x, y, 0.999 * lb, norm="l2", steps=20, step_size=0.25 * lb.min().item(),
                bounds=(-10.0, 10.0))
    assert (model(adv).argmax(1) == y).all()
    # above the bound the decision can change: a big enough step towards another class flips it
    assert torch.isfinite(lb).all() and (lb < 28).all()


def test_offset_softmax_formula_and_far_inputs():
    logits = torch.tensor([[-0.01, -0.05, -0.02], [-0.3, -0.31, -0.29]])
    a, eta = 440.0, 3.9e-5
    e = torch.exp(a * logits)
    ref = (e + eta) / (e.sum(1, keepdim=True) + 3 * eta)
    torch.testing.assert_close(M.offset_softmax(logits, a, eta), ref)
    # an input far from every class (scores ~0.3 per pixel) gets ~uniform probabilities
    assert M.offset_softmax(logits, a, eta)[1].max() < 0.34


def test_binarize_forward_and_surrogate_gradient():
    x = torch.tensor([0.2, 0.5, 0.7], requires_grad=True)
    b = M.binarize(x, 0.5, 10.0)
    assert b.tolist() == [0.0, 1.0, 1.0]
    b.sum().backward()
    s = torch.sigmoid(10 * (x.detach() - 0.5))
    torch.testing.assert_close(x.grad, 10 * s * (1 - s))


def test_nearest_neighbour_matches_brute_force():
    g = torch.Generator().manual_seed(4)
    bank, labels = torch.rand(50, 1, 28, 28, generator=g), torch.arange(50) % 10
    x = torch.rand(3, 1, 28, 28, generator=g, requires_grad=True)
    model = M.NearestNeighbour(bank, labels, chunk=2)
    out = model(x)
    d = torch.cdist(x.detach().flatten(1), bank.flatten(1))
    ref = torch.stack([-d[:, labels == k].min(1).values for k in range(10)], 1)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    out[:, 0].sum().backward()
    assert x.grad.abs().sum() > 0


def test_latent_descent_finds_adversarials_of_the_model_it_queries():
    vaes = _vaes(5)
    model = M.ABS(vaes, n_samples=200, steps=0).eval()
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(5))
    y = model(x).argmax(1)
    adv = M.latent_descent(model, x, y, coarse_steps=11, fine_steps=4)
    moved = (adv != x).flatten(1).any(1)
    assert moved.any()
    assert (model(adv[moved]).argmax(1) != y[moved]).all()
    assert adv.min() >= 0 and adv.max() <= 1


def test_vae_training_lowers_the_loss():
    torch.manual_seed(6)
    vaes = M.ClassVAEs()
    imgs = [torch.rand(20, 1, 28, 28) * (k / 10) for k in range(10)]
    opt = torch.optim.Adam(vaes.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    first = M.train_vaes(vaes, imgs, opt, 3, 4, g)
    later = M.train_vaes(vaes, imgs, opt, 15, 4, g)
    assert later < first
    assert not vaes.training


class _SumModel(nn.Module):
    """Two logits on (N, 1, 28, 28): class 1 wins once the pixel sum exceeds ``t``."""

    def __init__(self, t: float):
        super().__init__()
        self.t = t

    def forward(self, x):
        s = x.flatten(1).sum(1)
        return torch.stack([torch.full_like(s, self.t), s], 1)


def test_line_search_finds_the_crossing_of_the_model():
    from common.decision_attacks import line_search

    x = torch.zeros(3, 1, 28, 28)
    adv = torch.full_like(x, 0.5)  # sum 392: every row is adversarial for thresholds below
    model, y = _SumModel(100.0), torch.zeros(3, dtype=torch.long)
    adv[2] = x[2]  # a sample without adversarial stays as it is
    out = line_search(model, x, y, adv, steps=12)
    t = out[:2].flatten(1).sum(1) / 392.0
    assert (model(out[:2]).argmax(1) == 1).all()  # still adversarial
    assert torch.allclose(t, torch.full_like(t, 100.0 / 392.0), atol=2.0 ** -12 + 1e-6)
    assert torch.equal(out[2], x[2])


def test_sparsify_saturates_the_fewest_largest_pixels():
    from papers.abs.experiment import sparsify

    g = torch.Generator().manual_seed(0)
    x = torch.full((2, 1, 28, 28), 0.2)
    delta = 0.01 + 0.05 * torch.rand(x.shape, generator=g)  # all positive: saturation to 1
    adv = x + delta
    # clean sum 156.8; each saturated pixel adds 0.8: 11 pixels are needed to pass 165.2
    model, y = _SumModel(156.8 + 10.5 * 0.8), torch.zeros(2, dtype=torch.long)
    assert (model(adv).argmax(1) == 1).all()
    out = sparsify(model, x, y, adv, steps=12)
    changed = (out != x).flatten(1)
    assert (changed.sum(1) == 11).all()
    assert (model(out).argmax(1) == 1).all()
    top = delta.flatten(1).argsort(1, descending=True)[:, :11]
    for i in range(2):
        assert set(changed[i].nonzero().flatten().tolist()) == set(top[i].tolist())
        assert torch.all(out.flatten(1)[i, top[i]] == 1.0)
    # an adversarial that saturation cannot reproduce is dropped (x returned)
    none = sparsify(_SumModel(1e6), x, y, adv, steps=4)
    assert torch.equal(none, x)


def test_figure_reads_the_papers_values_from_claims():
    """The accuracy-vs-perturbation figure's stars come from claims.toml, one per model
    and norm plotted (a value typed twice could drift from the claims)."""
    from papers.abs import figures

    reported = figures.reported_accuracies()
    assert set(reported) == {"l2", "linf", "l0"}
    for norm, per_model in reported.items():
        assert set(per_model) == set(figures.NAMES), norm
    claims_ = {c.metric: c.reported for c in __import__("common.claims", fromlist=["x"]).load_claims(
        figures.Path(figures.__file__).parent / "claims.toml") if c.metric}
    assert reported["l2"]["abs"] == claims_["abs/acc_l2"]
