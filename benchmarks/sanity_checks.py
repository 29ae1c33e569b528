"""Saliency methods per image: papers.sanity_checks.method vs captum, same model and inputs.

    python benchmarks/sanity_checks.py [--images 16] [--repeats 3] [--clock process]

Both sides batch over images (captum's IntegratedGradients and NoiseTunnel
also batch their steps / samples).  Ours additionally shares work between
methods: Gradient and Gradient(.)Input use one backward pass, SmoothGrad and
VarGrad one set of noisy gradients, and Guided GradCAM reuses the Guided
Backprop and GradCAM maps.  Timed on the cpu-profile CNN (conv 16-32, fc 256)
with the paper's settings (IG 50 steps, 50 noise samples), interleaved after a
warm-up round (captum's import and first-call costs fall outside the timing), the
median of the per-repeat ratios.  Prints the time per image, per map and per
gradient pass (passes counted by a forward hook, in image units) for both, and
compares the maps: equal to float precision for the six deterministic methods,
correlated for SmoothGrad and VarGrad (each side draws its own noise).
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

import _bench  # noqa: E402
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


def _count_rows(model):
    """A counter of the images pushed through ``model`` with gradients on: the
    gradient passes, in image units (a batch of 50 IG steps counts 50)."""
    count = [0]

    def hook(module, args):
        if torch.is_grad_enabled():
            count[0] += len(args[0])

    return count, model.register_forward_pre_hook(hook)


def compare(ours, theirs):
    """Per method: max |ours - captum| / max |captum| (deterministic methods), and the
    Pearson correlation of the maps (SmoothGrad and VarGrad draw different noise)."""
    rows = {}
    for m, a in ours.items():
        b = theirs[m].detach().sum(1)
        if m == "integrated_gradients":  # captum's trapezoid weights sum to (n-1)/n, ours to 1
            a = a * 49 / 50
        rel = ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()
        corr = torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1].item()
        rows[m] = (rel, corr)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    _bench.add_clock_argument(ap)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    torch.manual_seed(0)
    model = M.init_model(M.CNN(16, 32, 256), torch.Generator().manual_seed(0)).eval()
    x = torch.rand(args.images, 1, 28, 28)
    t = M.predicted_class(model, x)
    n = args.images

    def ours():
        return M.all_maps(model, x, t, generator=torch.Generator().manual_seed(0), batch_size=n)

    def theirs():
        return captum_maps(model, x, t)

    passes = {}
    for name, fn in (("ours", ours), ("captum", theirs)):  # outside the timing: counts, outputs
        count, handle = _count_rows(model)
        out = fn()
        handle.remove()
        passes[name] = count[0] / n
        if name == "ours":
            ours_maps = out
        else:
            captum_out = out
    times = _bench.interleaved({"ours": ours, "captum": theirs}, args.repeats, args.clock, warmup=1)
    ratio, rs = _bench.ratios(times, "captum", "ours")
    o, c = statistics.median(times["ours"]), statistics.median(times["captum"])
    print(f"{n} images, CNN 16-32-256, {args.threads} thread(s), {args.clock} clock, all 8 methods, "
          f"one warm-up round (captum imported), median of {args.repeats}:")
    print(f"  ours   {o / n * 1e3:7.1f} ms per image, {passes['ours']:.0f} gradient passes per image, "
          f"{o / n / passes['ours'] * 1e3:.2f} ms per pass, {o / n / 8 * 1e3:.1f} ms per map")
    print(f"  captum {c / n * 1e3:7.1f} ms per image, {passes['captum']:.0f} gradient passes per image, "
          f"{c / n / passes['captum'] * 1e3:.2f} ms per pass, {c / n / 8 * 1e3:.1f} ms per map")
    per_pass = ratio * passes["ours"] / passes["captum"]
    print(f"  ratio captum / ours: per map set (and per map) {ratio:.2f}x (repeats {_bench.fmt_ratios(rs)}); "
          f"per gradient pass {per_pass:.2f}x (the rest is ours sharing passes between methods)")
    print("  outputs (max |ours - captum| / max |captum|, correlation; IG: ours x 49/50, captum's "
          "trapezoid weights summing to (n-1)/n):")
    for m, (rel, corr) in compare(ours_maps, captum_out).items():
        print(f"    {m:22s} {rel:9.2e}  {corr:.4f}")


if __name__ == "__main__":
    main()
