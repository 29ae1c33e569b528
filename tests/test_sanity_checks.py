"""Sanity checks for saliency maps: attribution methods against captum and known
answers, the similarity metrics against scipy / scikit-image, randomisation."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn

from papers.sanity_checks import method as M

captum = pytest.importorskip("captum.attr")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return M.init_model(M.CNN(4, 8, 16), torch.Generator().manual_seed(0)).double().eval()


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(5, 1, 28, 28, generator=g, dtype=torch.float64)
    x.view(5, -1)[:, 0], x.view(5, -1)[:, 1] = 0.0, 1.0  # every image spans [0, 1]
    return x


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # captum's deprecation and hook warnings
        yield


def close(a, b, tol=1e-10):
    return (a - b).abs().max().item() <= tol * max(1.0, b.abs().max().item())


def test_gradient_methods_match_captum(model, images):
    t = M.predicted_class(model, images)
    assert close(M.gradient(model, images, t), captum.Saliency(model).attribute(images, t, abs=False))
    assert close(M.grad_x_input(model, images, t), captum.InputXGradient(model).attribute(images, t))
    assert close(M.guided_backprop(model, images, t),
                 captum.GuidedBackprop(model).attribute(images, t))


def test_integrated_gradients_match_captum(model, images):
    """captum's trapezoid weights sum to (n - 1) / n (step 1/n with halved ends on n
    points of linspace(0, 1, n)); ours are the exact trapezoid rule, so the two
    differ by exactly that factor."""
    t = M.predicted_class(model, images)
    n = 50
    ours = M.integrated_gradients(model, images, t, steps=n)
    ref = captum.IntegratedGradients(model).attribute(images, target=t, n_steps=n,
                                                      method="riemann_trapezoid")
    assert close(ours * (n - 1) / n, ref, tol=1e-6)  # captum's alphas are float32


def test_gradcam_and_guided_gradcam_match_captum(model, images):
    t = M.predicted_class(model, images)
    cam = captum.LayerGradCam(model, model.conv2_act).attribute(images, t, relu_attributions=True)
    up = captum.LayerAttribution.interpolate(cam, (28, 28), "bilinear")
    assert close(M.gradcam(model, images, t), up)
    ggc = captum.GuidedGradCam(model, model.conv2_act).attribute(images, t, interpolate_mode="bilinear")
    assert close(M.guided_gradcam(model, images, t), ggc)


def test_smoothgrad_and_vargrad_agree_with_captum_in_distribution(model, images):
    """Different noise draws, so compare many-sample estimates (noise std 0.15 x range)."""
    x, t = images[:2], M.predicted_class(model, images[:2])
    torch.manual_seed(0)
    ref_sg = captum.NoiseTunnel(captum.Saliency(model)).attribute(
        x, nt_type="smoothgrad", nt_samples=600, stdevs=0.15, target=t, abs=False)
    ours = M.smoothgrad(model, x, t, samples=600, generator=torch.Generator().manual_seed(1))
    assert np.corrcoef(ours.flatten(), ref_sg.flatten())[0, 1] > 0.95
    ref_vg = captum.NoiseTunnel(captum.Saliency(model)).attribute(
        x, nt_type="vargrad", nt_samples=600, stdevs=0.15, target=t, abs=False)
    ours_vg = M.vargrad(model, x, t, samples=600, generator=torch.Generator().manual_seed(1))
    assert np.corrcoef(ours_vg.flatten(), ref_vg.flatten())[0, 1] > 0.95
    # without noise SmoothGrad is the gradient and VarGrad is zero
    assert close(M.smoothgrad(model, x, t, samples=3, noise=0.0), M.gradient(model, x, t))
    assert M.vargrad(model, x, t, samples=3, noise=0.0).abs().max() == 0


def test_integrated_gradients_completeness(model, images):
    """sum of attributions -> f(x) - f(0) as the path integral is resolved; on a ReLU
    net the gradient is piecewise constant along the path, so the error is O(1/steps)."""
    t = M.predicted_class(model, images)
    with torch.no_grad():
        f = model(images).gather(1, t[:, None]).squeeze(1)
        f0 = model(torch.zeros_like(images)).gather(1, t[:, None]).squeeze(1)

    def gap(steps):
        ig = M.integrated_gradients(model, images, t, steps=steps).flatten(1).sum(1)
        return ((ig - (f - f0)).abs() / (f - f0).abs()).max().item()

    coarse, fine = gap(50), gap(1000)
    assert fine < 0.01 and fine < coarse / 10


def test_linear_model_known_answers():
    torch.manual_seed(0)
    lin = nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).double()
    x = torch.randn(4, 1, 4, 4, dtype=torch.float64)
    t = torch.tensor([0, 1, 2, 1])
    w = lin[1].weight.detach()
    assert close(M.gradient(lin, x, t), w[t].view(4, 1, 4, 4))  # the gradient is the weight row
    assert close(M.grad_x_input(lin, x, t), (w[t].view(4, 1, 4, 4) * x))
    # on a linear model IG from zero is exactly weight x input, for any number of steps
    assert close(M.integrated_gradients(lin, x, t, steps=3), w[t].view(4, 1, 4, 4) * x)
    assert close(M.guided_backprop(lin, x, t), M.gradient(lin, x, t))  # no ReLU to guide


def test_all_maps_batches_and_restores_plain_relus(model, images):
    maps = M.all_maps(model, images, ig_steps=4, noise_samples=3, batch_size=2,
                      generator=torch.Generator().manual_seed(0))
    assert set(maps) == set(M.METHODS)
    assert all(v.shape == (5, 28, 28) for v in maps.values())
    t = M.predicted_class(model, images)
    assert close(maps["gradient"], M.gradient(model, images, t).sum(1))
    assert close(maps["guided_gradcam"], M.guided_gradcam(model, images, t).sum(1))
    # the guided-backprop hooks are gone afterwards: plain gradients again
    assert not close(M.gradient(model, images, t), M.guided_backprop(model, images, t))


def test_spearman_matches_scipy_with_ties():
    from scipy.stats import spearmanr

    g = torch.Generator().manual_seed(0)
    a = torch.randn(6, 28, 28, generator=g, dtype=torch.float64)
    b = a + torch.randn(6, 28, 28, generator=g, dtype=torch.float64)
    b[:3] = b[:3].clamp(min=0)  # many ties, as ReLU'd GradCAM maps have
    a[0] = a[0].round()
    rho, undefined = M.spearman(a, b)
    ref = [spearmanr(a[i].flatten(), b[i].flatten())[0] for i in range(6)]
    assert rho.numpy() == pytest.approx(ref, abs=1e-12) and undefined == 0
    rho, undefined = M.spearman(torch.zeros(2, 5, 5), torch.rand(2, 5, 5))
    assert undefined == 2 and (rho == 0).all()


def test_ssim_and_hog_match_scikit_image():
    skm = pytest.importorskip("skimage.metrics")
    skf = pytest.importorskip("skimage.feature")
    g = torch.Generator().manual_seed(0)
    a = torch.rand(4, 28, 28, generator=g, dtype=torch.float64)
    b = (a + 0.5 * torch.rand(4, 28, 28, generator=g, dtype=torch.float64))
    ua, ub = M.to_unit(a), M.to_unit(b)
    ours = M.ssim(ua, ub)
    for i in range(4):
        ref = skm.structural_similarity(ua[i].numpy(), ub[i].numpy(), gaussian_weights=True,
                                        data_range=1.0)
        assert ours[i].item() == pytest.approx(ref, abs=1e-12)
        hog_ref = skf.hog(ua[i].numpy(), pixels_per_cell=(4, 4), cells_per_block=(2, 2))
        assert M.hog(ua[i:i + 1])[0].numpy() == pytest.approx(hog_ref, abs=1e-6)
    assert M.ssim(ua, ua).numpy() == pytest.approx(np.ones(4))


def test_similarity_of_a_map_with_itself_is_one(images):
    sims = M.similarity(images[:, 0], images[:, 0])
    for metric in M.METRICS:
        assert sims[metric].numpy() == pytest.approx(np.ones(5), abs=1e-9)


def test_randomisation_touches_only_the_named_blocks(model):
    g = torch.Generator().manual_seed(3)
    new = M.randomised(model, ("logits", "fc1"), g)
    for name, p in model.named_parameters():
        changed = not torch.equal(p, dict(new.named_parameters())[name])
        assert changed == name.startswith(("logits", "fc1")), name
    w = new.fc1.weight
    assert w.abs().max() <= 0.2 + 1e-6 and w.std().item() == pytest.approx(0.088, abs=0.01)
    assert (new.fc1.bias == 0.1).all()
    assert list(M.count_blocks(model)) == ["logits", "fc1", "conv2", "conv1"]
