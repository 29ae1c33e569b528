"""ABS inference: ``papers.abs.method.ABS`` (the ten decoders as one grouped network,
all images x classes x latents batched) vs the reference implementation's structure
(bethgelab/AnalysisBySynthesis inference.py: a Python loop over the ten class
decoders inside every Adam step, a loop over the classes for the bank search),
written here with ten ordinary decoders sliced out of the same weights.

    python benchmarks/abs_inference.py [--images 50] [--samples 8000] [--steps 50] [--repeats 3]

Both compute the same scores (checked first, to 1e-3 relative); the two are
interleaved and the median time ratio loop / ours is printed, with images per
second for each.  Untrained VAEs: the cost of a pass does not depend on the weights.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from papers.abs import method as M  # noqa: E402


class LoopABS:
    """The reference's structure: per-class bank images, per-class decoder calls."""

    def __init__(self, decoders, n_samples, steps, lr=0.05, beta=1.0, radius=5.0):
        self.decs, self.steps, self.lr, self.beta, self.radius = decoders, steps, lr, beta, radius
        self.bank = M.latent_bank(n_samples)
        with torch.no_grad():
            self.images = [torch.sigmoid(d(self.bank[:, :, None, None])).flatten(1) for d in decoders]

    def __call__(self, x):
        xf = x.flatten(1)
        n, K = len(xf), len(self.decs)
        with torch.no_grad():
            z0 = []
            for G in self.images:  # bank search, class by class
                s = (xf.pow(2).sum(1, keepdim=True) - 2 * xf @ G.T + G.pow(2).sum(1)[None]
                     + self.beta * 0.5 * self.bank.pow(2).sum(1)[None])
                z0.append(self.bank[s.argmin(1)])
        z = torch.stack(z0, 1).clone().requires_grad_(True)  # (n, K, d)
        opt = torch.optim.Adam([z], lr=self.lr)
        best = torch.full((n, K), float("inf"))
        for step in range(self.steps + 1):
            losses = []
            for k, dec in enumerate(self.decs):  # the reference's loop over the class decoders
                rec = torch.sigmoid(dec(z[:, k, :, None, None])).flatten(1)
                losses.append((xf - rec).pow(2).sum(1) + self.beta * 0.5 * z[:, k].pow(2).sum(1))
            loss = torch.stack(losses, 1)
            best = torch.minimum(best, loss.detach())
            if step == self.steps:
                break
            opt.zero_grad()
            loss.sum().backward()
            opt.step()
            with torch.no_grad():
                z.copy_(M.project_ball(z, self.radius))
        return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--samples", type=int, default=8000)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    vaes = M.ClassVAEs().eval()
    x = torch.rand(args.images, 1, 28, 28)
    ours = M.ABS(vaes, n_samples=args.samples, steps=args.steps).eval()
    loop = LoopABS([vaes.plain_decoder(k) for k in range(vaes.n_classes)], args.samples, args.steps)
    ours.bank()
    a, b = ours.infer(x)["scores"], loop(x)
    rel = ((a - b).abs() / b.abs()).max().item()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.images} images, "
          f"{args.samples} latents + {args.steps} Adam steps; max relative score difference {rel:.1e}")
    if rel > 1e-3:
        sys.exit("the two implementations disagree")
    times = {"ours": [], "loop": []}
    for _ in range(args.repeats):
        for name, fn in (("ours", lambda: ours(x)), ("loop", lambda: loop(x))):
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    ratios = [l / o for o, l in zip(times["ours"], times["loop"])]
    for name, ts in times.items():
        print(f"{name:5s}: median {statistics.median(ts):.2f} s = {args.images / statistics.median(ts):.1f} images/s")
    print(f"loop / ours: {statistics.median(ratios):.2f}x (repeats {', '.join(f'{r:.2f}' for r in ratios)})")


if __name__ == "__main__":
    main()
