"""What AutoAttack (common/autoattack.py) costs on the networks the robust-accuracy
papers evaluate at their cpu profiles, per component, at one thread.

The cost of the cascade depends on how many images each component still has to
attack. This script measures the worst case, where every image stays robust through
every component: the network's logits are computed in full (same arithmetic,
gradients included) and then replaced by fixed ones, so no attack ever succeeds and
every component runs its whole budget (APGD its steps, APGD-T its steps per target,
Square all its queries). A real evaluation costs less: APGD-CE runs on the correctly
classified images, the later components only on those still robust.

    python benchmarks/autoattack_cost.py --threads 1 [--images 50] [--width 0.5]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.adversarial import MadryCNN
from common.autoattack import VERSIONS, run_autoattack


class NeverFooled(torch.nn.Module):
    """The network's full forward (and backward) pass, with logits that always say
    class 0: the worst case for the cascade's cost."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        z = self.net(x)
        fixed = torch.zeros_like(z)
        fixed[:, 0] = 10.0
        return fixed + 0.0 * z


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--images", type=int, default=50)
    p.add_argument("--width", type=float, default=0.5, help="MadryCNN width (madry cpu: 0.5)")
    p.add_argument("--version", default="cpu", choices=sorted(VERSIONS))
    p.add_argument("--eps", type=float, default=0.3)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = NeverFooled(MadryCNN(width=args.width)).eval()
    x = torch.rand(args.images, 1, 28, 28)
    y = torch.zeros(args.images, dtype=torch.long)
    t0, c0 = time.perf_counter(), time.process_time()
    res = run_autoattack(model, x, y, args.eps, version=args.version)
    total, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert res.robust.all(), "the worst-case model must never be fooled"
    print(f"AutoAttack '{args.version}' on MadryCNN(width={args.width}), {args.images} images, "
          f"{args.threads} thread(s), worst case (no image ever fooled):")
    for name, opts in VERSIONS[args.version]:
        s = res.seconds[name]
        print(f"  {name:8s} {opts}: {s:7.2f} s  = {1000 * s / args.images:7.1f} s per 1,000 images")
    print(f"  total: {total:.1f} s wall = {1000 * total / args.images / 60:.1f} min per 1,000 images; "
          f"CPU time {cpu:.1f} s = {1000 * cpu / args.images / 60:.1f} min per 1,000 images")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
