"""WaveNet sampling speed: the cached (queue) sampler of ``papers.music_ada.method``
vs naive generation (a full forward pass over the receptive field at every step), on
the cpu profile's unconditional WaveNet (16 layers, 24 residual / 48 skip channels,
receptive field 1,087 samples), one thread, a batch of samples at once.

    python benchmarks/music_ada_generation.py [--steps 1600] [--batch 6] [--repeats 2]

Both draw the same samples from the same noise (checked first, bit for bit); then they
are timed interleaved after a warm-up round, and the median per-repeat ratio of
generated samples per second (cached / naive) is printed.  The naive sampler's window
grows to the receptive field over the first 1,087 steps and stays there; the default
1,600 steps include that ramp.  Random weights: the cost of a step does not depend on
them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench import add_clock_argument, fmt_ratios, interleaved, ratios  # noqa: E402

from papers.music_ada import method as M  # noqa: E402

DILATIONS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1, 2, 4, 8, 16, 32)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1600)
    ap.add_argument("--batch", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    add_clock_argument(ap)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = M.WaveNet(256, 24, 48, DILATIONS).eval()
    n, steps = args.batch, args.steps
    cached = lambda: net.generate(n, steps, generator=torch.Generator().manual_seed(1))  # noqa: E731
    naive = lambda: net.generate_naive(n, steps, generator=torch.Generator().manual_seed(1))  # noqa: E731
    same = torch.equal(cached(), naive())
    print(f"same samples: {same}")
    times = interleaved({"cached": cached, "naive": naive}, args.repeats, args.clock)
    med, rs = ratios(times, "naive", "cached")
    sps = {k: n * steps / min(v) for k, v in times.items()}
    print(f"samples/s (batch {n}, {steps} steps, receptive field {net.receptive_field}): "
          f"cached {sps['cached']:.0f}, naive {sps['naive']:.0f}")
    print(f"speed-up cached / naive: {med:.1f}x (repeats {fmt_ratios(rs)})")


if __name__ == "__main__":
    main()
