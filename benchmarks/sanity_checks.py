"""Saliency methods per image: papers.sanity_checks.method vs captum, same model and inputs.

    python benchmarks/sanity_checks.py [--images 16] [--repeats 3]

Both sides batch over images (captum's IntegratedGradients and NoiseTunnel
also batch their steps / samples).  Ours additionally shares work between
methods: Gradient and Gradient(.)Input use one backward pass, SmoothGrad and
VarGrad one set of noisy gradients, and Guided GradCAM reuses the Guided
Backprop and GradCAM maps.  Timed on the cpu-profile CNN (conv 16-32, fc 256)
with the paper's settings (IG 50 steps, 50 noise samples), interleaved, the
median of ``--repeats``.  Prints milliseconds per image for every method and
the ratio for the full set of eight maps.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from papers.sanity_checks import method as M  # noqa: E402


def captum_maps(model, x, t):
    from captum import attr

    layer = model.conv2_act
    out = {}
    out["gradient"] = attr.Saliency(model).attribute(x, t, abs=False)
    out["grad_x_input"] = attr.InputXGradient(model).attribute(x, t)
    out["integrated_gradients"] = attr.IntegratedGradients(model).attribute(
        x, target=t, n_steps=50, method="riemann_trapezoid")
    out["guided_backprop"] = attr.GuidedBackprop(model).attribute(x, t)
    cam = attr.LayerGradCam(model, layer).attribute(x, t, relu_attributions=True)
    out["gradcam"] = attr.LayerAttribution.interpolate(cam, x.shape[-2:], "bilinear")
    out["guided_gradcam"] = attr.GuidedGradCam(model, layer).attribute(x, t,
                                                                       interpolate_mode="bilinear")
    nt = attr.NoiseTunnel(attr.Saliency(model))
    std = 0.15 * (x.max() - x.min()).item()
    out["smoothgrad"] = nt.attribute(x, nt_type="smoothgrad", nt_samples=50, stdevs=std, target=t,
                                     abs=False)
    out["vargrad"] = nt.attribute(x, nt_type="vargrad", nt_samples=50, stdevs=std, target=t,
                                  abs=False)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    torch.manual_seed(0)
    model = M.init_model(M.CNN(16, 32, 256), torch.Generator().manual_seed(0)).eval()
    x = torch.rand(args.images, 1, 28, 28)
    t = M.predicted_class(model, x)
    ours_t, theirs_t = [], []
    for _ in range(args.repeats):
        s = time.perf_counter()
        M.all_maps(model, x, t, generator=torch.Generator().manual_seed(0), batch_size=args.images)
        ours_t.append(time.perf_counter() - s)
        s = time.perf_counter()
        captum_maps(model, x, t)
        theirs_t.append(time.perf_counter() - s)
    o, c = statistics.median(ours_t), statistics.median(theirs_t)
    n = args.images
    print(f"{n} images, CNN 16-32-256, {args.threads} threads, all 8 methods:")
    print(f"  ours   {o / n * 1e3:7.1f} ms per image")
    print(f"  captum {c / n * 1e3:7.1f} ms per image")
    print(f"  ratio  {c / o:5.2f}x (captum time / ours)")


if __name__ == "__main__":
    main()
