"""PGD-40 L-inf (eps 0.3, step 0.01, random start) on Madry et al.'s MNIST CNN over
1,000 test images: ``common.attacks.pgd`` vs ``torchattacks.PGD``, same model, same
images, same batches.

    python benchmarks/attacks_pgd.py [--images 1000] [--batch 200] [--repeats 3] [--width 1.0]
                                     [--clock process] [--threads 1]

The two are interleaved (ours, theirs, ours, theirs, ...) after a discarded warm-up
round so that machine noise hits both alike, and the median of the per-repeat time
ratios ours / torchattacks is printed.
Target: <= 1.0.  Before timing, both run once without a random start and their
adversarial images are compared (they must agree to float precision), so the
timed code is the same computation.  The network is Madry's architecture after
300 Adam steps on MNIST (the cost of a pass does not depend on the weights, but an
untrained network's near-zero gradients make the equality check meaningless);
``--width`` scales it (0.5 is the cpu profiles' network).
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
from common import attacks, data  # noqa: E402
from common.adversarial import MadryCNN  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=200, help="Madry's eval batch size")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--train-steps", type=int, default=300,
                        help="Adam steps of batch 50 before the attack (speed does not depend on them)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--threads", type=int, default=1)
    _bench.add_clock_argument(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    try:
        import torchattacks
    except ImportError:
        sys.exit("torchattacks is missing: .venv/bin/pip install --no-deps torchattacks")

    torch.manual_seed(0)
    test = data.load("mnist", train=False, root=args.data_dir)
    x, y = test.images[:args.images], test.labels[:args.images]
    model = MadryCNN(width=args.width)
    # a few hundred Adam steps (Madry's lr): an untrained network has near-zero input
    # gradients whose signs float rounding flips, which would spoil the equality check
    train = data.load("mnist", train=True, root=args.data_dir)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for i in range(0, 50 * args.train_steps, 50):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(train.images[i:i + 50]), train.labels[i:i + 50]).backward()
        opt.step()
    model.eval()
    eps, alpha, steps = 0.3, 0.01, args.steps
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; torchattacks "
          f"{torchattacks.__version__}; MadryCNN width {args.width} "
          f"({sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters); "
          f"{len(x)} MNIST test images in batches of {args.batch}; PGD-{steps}, eps {eps}, step {alpha}")

    def ours(random_start=True):
        return torch.cat([attacks.pgd(model, x[i:i + args.batch], y[i:i + args.batch], eps,
                                      steps=steps, step_size=alpha, random_start=random_start)
                          for i in range(0, len(x), args.batch)])

    def theirs(random_start=True):
        atk = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=random_start)
        return torch.cat([atk(x[i:i + args.batch], y[i:i + args.batch])
                          for i in range(0, len(x), args.batch)])

    n_check = min(len(x), args.batch)
    a = attacks.pgd(model, x[:n_check], y[:n_check], eps, steps=steps, step_size=alpha, random_start=False)
    b = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=False)(x[:n_check], y[:n_check])
    print(f"same computation (no random start, {n_check} images): max |ours - torchattacks| = "
          f"{(a - b).abs().max().item():.2e}")

    def report(r, name, dt, adv):
        with torch.no_grad():
            acc = 100.0 * (model(adv).argmax(1) == y).float().mean().item()
        print(f"  repeat {r + 1}: {name:12s} {dt:7.2f} s   (accuracy under attack {acc:.1f}%)")

    times = _bench.interleaved({"ours": ours, "torchattacks": theirs}, args.repeats, args.clock,
                               report=report)
    ratio, rs = _bench.ratios(times, "ours", "torchattacks")
    print(f"median time ({args.clock} clock): ours {statistics.median(times['ours']):.2f} s, "
          f"torchattacks {statistics.median(times['torchattacks']):.2f} s; ratio ours / "
          f"torchattacks = {ratio:.3f} (per repeat: {_bench.fmt_ratios(rs)}; target <= 1.0)")

if __name__ == "__main__":
    main()
