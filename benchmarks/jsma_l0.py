"""JSMA (theta +1, gamma 0.05: at most 40 of 784 pixels) on the sparse_fourier SmallCNN
trained on top-80 DCT projections of MNIST, first test images: ``common.l0_attacks.jsma``
(batched, two backward passes per iteration) vs ``torchattacks.JSMA`` (one image at a
time, the full 10-row Jacobian), same model, same images, same targets.

    python benchmarks/jsma_l0.py [--images 50] [--repeats 2] [--threads 1]

The two are interleaved (ours, theirs, ...) and the median time ratio ours /
torchattacks is printed, with how many adversarial images are bit-identical (the
cross-check; where they differ, the largest difference and the pixel counts).  The
network gets 300 Adam steps first (an untrained one has near-zero gradients).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import data, l0_attacks
from papers.sparse_fourier import method as M


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--gamma", type=float, default=0.05)
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    try:
        import torchattacks
    except ImportError:
        sys.exit("torchattacks is missing: .venv/bin/pip install --no-deps torchattacks")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    train = data.load("mnist", train=True, root=args.data_dir)
    test = data.load("mnist", train=False, root=args.data_dir)
    model = M.SmallCNN()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    xtr = M.project_topk(train.images[:64 * args.train_steps], 80)
    for i in range(0, 64 * args.train_steps, 64):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(xtr[i:i + 64]), train.labels[i:i + 64]).backward()
        opt.step()
    model.eval()
    x, y = test.images[:args.images], test.labels[:args.images]
    target = (y + 1) % 10  # torchattacks' default target
    ta = torchattacks.JSMA(model, theta=1.0, gamma=args.gamma)
    ours_t, theirs_t = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        ours = l0_attacks.jsma(model, x, target, theta=1.0, gamma=args.gamma)
        ours_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        theirs = ta(x, y)
        theirs_t.append(time.perf_counter() - t0)
    same = (ours == theirs).flatten(1).all(1)
    ratio = statistics.median(a / b for a, b in zip(ours_t, theirs_t))
    print(f"{args.images} images, {args.threads} thread(s): ours {statistics.median(ours_t):.2f} s, "
          f"torchattacks {statistics.median(theirs_t):.2f} s, ratio ours/torchattacks {ratio:.2f} "
          f"(repeats: {', '.join(f'{a / b:.2f}' for a, b in zip(ours_t, theirs_t))})")
    print(f"bit-identical adversarials: {int(same.sum())}/{len(same)}")
    if not same.all():
        d = (ours - theirs).flatten(1).abs().amax(1)
        print(f"differing images: {(~same).nonzero().flatten().tolist()}, max |difference| {d.max():.3g}; "
              f"pixels changed ours {l0_attacks.l0_norm(ours, x)[~same].tolist()}, "
              f"torchattacks {l0_attacks.l0_norm(theirs, x)[~same].tolist()}")
    with torch.no_grad():
        print(f"target reached: ours {(model(ours).argmax(1) == target).float().mean():.2f}, "
              f"torchattacks {(model(theirs).argmax(1) == target).float().mean():.2f}")


if __name__ == "__main__":
    main()
