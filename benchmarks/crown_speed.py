"""CROWN certification speed: ``papers.crown.method`` (images x targets in one batch)
vs the cross-check library ``bound-propagation`` 0.4.7 (its BoundSequential CROWN,
adaptive ReLU slope), single-threaded as the paper's timings are.

    python benchmarks/crown_speed.py [--hidden 100 100 100] [--images 50] [--repeats 5]

Both bound the margins f_true - f_target of all 9 other classes of MNIST-sized
inputs at a fixed L-inf eps (bound-propagation through an extra linear layer holding
the margin rows, applied per image; ours with the margin spec C): the same bound,
checked first to 1e-9 (float64) -- then both are timed in float32, interleaved, and
the median time ratio (theirs / ours) and the time per image are printed.  Random
weights: the cost of a bound does not depend on them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from papers.crown import method as M  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, nargs="+", default=[100, 100, 100])
    ap.add_argument("--images", type=int, default=50)
    ap.add_argument("--eps", type=float, default=0.01)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    import bound_propagation as bp

    torch.manual_seed(0)
    model = M.make_mlp(tuple(args.hidden), "relu").eval()
    n = args.images
    x0 = torch.rand(n, 784)
    y = torch.randint(0, 10, (n,))
    others = torch.stack([torch.tensor([j for j in range(10) if j != int(t)]) for t in y])  # (n, 9)
    C = torch.zeros(n, 9, 10)
    C[torch.arange(n)[:, None], torch.arange(9)[None], y[:, None]] = 1.0
    C.scatter_(2, others[:, :, None], -1.0, reduce="add")

    def theirs(dtype):
        out = []
        for i in range(n):  # the margin rows differ per image: one bound network per label
            spec = torch.nn.Linear(10, 9, bias=False)
            spec.weight.data = C[i].to(dtype)
            net = bp.BoundModelFactory(adaptive_relu=True).build(
                torch.nn.Sequential(*model[1:], spec).to(dtype))
            region = bp.HyperRectangle.from_eps(x0[i:i + 1].to(dtype), args.eps)
            out.append(net.crown(region, bound_upper=False).concretize().lower)
        return torch.cat(out)

    def ours(dtype):
        net = M.MLP.from_module(model, "relu", dtype)
        return M.lower_bound(net, x0.to(dtype), torch.full((n,), args.eps, dtype=dtype), C.to(dtype),
                             "linf", "crown")

    with torch.no_grad():
        a, b = theirs(torch.float64), ours(torch.float64)
        assert torch.allclose(a, b, atol=1e-9), (a - b).abs().max()
        t_ours, t_theirs = [], []
        for _ in range(args.repeats):
            t = time.perf_counter()
            ours(torch.float32)
            t_ours.append(time.perf_counter() - t)
            t = time.perf_counter()
            theirs(torch.float32)
            t_theirs.append(time.perf_counter() - t)
    mo, mt = statistics.median(t_ours), statistics.median(t_theirs)
    print(f"MLP 784-{'-'.join(map(str, args.hidden))}-10, {n} images x 9 margins, L-inf eps {args.eps}, 1 thread")
    print(f"bounds agree (float64): max |diff| {(a - b).abs().max().item():.2e}")
    print(f"ours: {1e3 * mo / n:.2f} ms/image   bound-propagation: {1e3 * mt / n:.2f} ms/image   "
          f"ratio theirs/ours: {mt / mo:.2f}x")


if __name__ == "__main__":
    main()
