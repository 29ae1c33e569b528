"""Shared training loop vs a plain hand-written PyTorch loop, same model and data.

    python benchmarks/train_loop.py [--images 20000] [--repeats 5]

Times one epoch of ``common.train.train_epoch`` over ``common.train.batches``
against (a) the loop a user would write by hand over in-memory tensors and
(b) the usual ``DataLoader(TensorDataset)`` loop, interleaving the three so
that machine noise hits all of them alike, and prints the median ratio.
Target: shared / hand-written <= 1.05.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import data  # noqa: E402
from common.train import batches, train_epoch  # noqa: E402
from papers.gce.method import SmallCNN  # noqa: E402


def hand_written(model, opt, x, y, bs, gen):
    model.train()
    order = torch.randperm(len(x), generator=gen)
    for i in range(0, len(x), bs):
        idx = order[i:i + bs]
        opt.zero_grad()
        loss = F.cross_entropy(model(x[idx]), y[idx])
        loss.backward()
        opt.step()


def dataloader_loop(model, opt, x, y, bs, gen):
    model.train()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=bs,
                                         shuffle=True, generator=gen)
    for xb, yb in loader:
        opt.zero_grad()
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()


def shared(model, opt, x, y, bs, gen):
    train_epoch(model, batches(x, y, batch_size=bs, shuffle=True, generator=gen), opt)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    train = data.fashion_mnist(train=True)
    x, y = train.images[:args.images], train.labels[:args.images]
    loops = {"hand-written": hand_written, "DataLoader": dataloader_loop, "shared": shared}
    times = {k: [] for k in loops}
    for rep in range(args.repeats + 1):  # the first round warms up and is discarded
        for name, fn in loops.items():
            torch.manual_seed(0)
            model = SmallCNN()
            opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
            t = time.perf_counter()
            fn(model, opt, x, y, args.batch_size, torch.Generator().manual_seed(rep))
            if rep:
                times[name].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"one epoch, {args.images} Fashion-MNIST images, SmallCNN, batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads, median of {args.repeats}")
    for k, v in med.items():
        print(f"  {k:13s} {v:7.3f} s")
    print(f"ratio shared / hand-written: {med['shared'] / med['hand-written']:.3f}  (target <= 1.05)")
    print(f"ratio shared / DataLoader:   {med['shared'] / med['DataLoader']:.3f}")


if __name__ == "__main__":
    main()
