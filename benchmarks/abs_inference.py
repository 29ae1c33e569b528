"""ABS inference: ``papers.abs.method.ABS`` (the ten decoders as one grouped network,
all images x classes x latents batched, decoded by the frozen ``InferenceDecoder``)
against two others on the same weights:

- "loop": the reference implementation's structure (bethgelab/AnalysisBySynthesis
  inference.py: a Python loop over the ten class decoders inside every Adam step, a
  loop over the classes for the bank search), written here with ten ordinary decoders
  sliced out of the same weights;
- "grouped": the hub's path before issue 27 section 1, ``ABS(fast=False,
  adam_batch=None)``: the grouped ``ClassVAEs.decode`` (nn.ConvTranspose2d, BatchNorm,
  nn.ELU) on all images at once.

It also prints the achieved GFLOP/s of "ours" (the FLOPs of the bank search, the
decoder passes and their input gradients, counted from the layer shapes) against a
dense 1024 x 1024 matmul at the same thread count, measured in the same run: the
arithmetic floor.

    python benchmarks/abs_inference.py [--images 1,10,100] [--samples 8000] [--steps 50]
                                       [--repeats 3] [--clock process]

All three compute the same scores (checked first at every size, to 1e-3 relative); the
loop's decoder weights are frozen, so that its backward pass computes the latents'
gradient only, as ours does.  At each number of images the two are interleaved after
a warm-up round and the median of the per-repeat ratios loop / ours is printed, with
images per second for each.  One thread unless --threads.  Untrained VAEs: the cost
of a pass does not depend on the weights.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _bench  # noqa: E402
from papers.abs import method as M  # noqa: E402


class LoopABS:
    """The reference's structure: per-class bank images, per-class decoder calls."""

    def __init__(self, decoders, n_samples, steps, lr=0.05, beta=1.0, radius=5.0):
        for d in decoders:  # weights frozen: backward computes the latents' gradient only
            d.requires_grad_(False)
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


def decoder_macs(vaes) -> int:
    """Multiply-adds of one latent decoded by one class's decoder."""
    K, h, total = vaes.n_classes, 1, 0
    for mod in vaes.decoder:
        if isinstance(mod, torch.nn.ConvTranspose2d):
            cin, cout, k, s = mod.in_channels // K, mod.out_channels // K, mod.kernel_size[0], mod.stride[0]
            total += h * h * cin * cout * k * k
            h = (h - 1) * s + k
    return total


def inference_flop(vaes, samples: int, steps: int) -> float:
    """FLOPs of one image's inference: bank search, steps + 1 decoder passes for every
    class, and steps input-gradient passes (as many multiply-adds as a forward pass)."""
    K = vaes.n_classes
    return 2.0 * K * (samples * M.PIXELS + decoder_macs(vaes) * (2 * steps + 1))


def matmul_gflops(clock_name: str, repeats: int = 5) -> float:
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    tick = _bench.clock(clock_name)
    best = []
    for _ in range(repeats):
        torch.mm(a, b)
        t0 = tick()
        for _ in range(5):
            torch.mm(a, b)
        best.append((tick() - t0) / 5)
    return 2 * 1024 ** 3 / statistics.median(best) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", default="1,10,100", help="comma-separated numbers of images")
    parser.add_argument("--samples", type=int, default=8000)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    _bench.add_clock_argument(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    vaes = M.ClassVAEs().eval()
    for mod in vaes.modules():  # non-trivial BatchNorm statistics, as trained VAEs have
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.2, 0.2)
            mod.running_var.uniform_(0.5, 1.5)
    ours = M.ABS(vaes, n_samples=args.samples, steps=args.steps).eval()
    grouped = M.ABS(vaes, n_samples=args.samples, steps=args.steps, fast=False, adam_batch=None).eval()
    loop = LoopABS([vaes.plain_decoder(k) for k in range(vaes.n_classes)], args.samples, args.steps)
    ours.bank(), grouped.bank()
    flop = inference_flop(vaes, args.samples, args.steps)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {args.clock} clock; "
          f"{args.samples} latents + {args.steps} Adam steps ({flop / 1e9:.2f} GFLOP per image); "
          f"median of {args.repeats} after a warm-up round")
    floor = matmul_gflops(args.clock)
    print(f"floor: a 1024 x 1024 matmul runs at {floor:.1f} GFLOP/s")
    for n in (int(v) for v in args.images.split(",")):
        x = torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(n))
        a, b, c = ours.infer(x)["scores"], loop(x), grouped.infer(x)["scores"]
        rel = max(((a - b).abs() / b.abs()).max().item(), ((a - c).abs() / c.abs()).max().item())
        if rel > 1e-3:
            sys.exit(f"the implementations disagree at {n} images ({rel:.1e})")
        times = _bench.interleaved({"ours": lambda: ours(x), "grouped": lambda: grouped(x),
                                    "loop": lambda: loop(x)}, args.repeats, args.clock)
        o = statistics.median(times["ours"])
        line = [f"{n:4d} images: ours {n / o:6.2f} images/s = {flop * n / o / 1e9:.1f} GFLOP/s "
                f"({floor * 1e9 * o / (flop * n):.2f}x the floor's time)"]
        for other in ("grouped", "loop"):
            ratio, rs = _bench.ratios(times, other, "ours")
            line.append(f"{other} / ours {ratio:.2f}x ({_bench.fmt_ratios(rs)})")
        print("; ".join(line) + f"; max relative score difference {rel:.1e}")


if __name__ == "__main__":
    main()
