"""Shared training loop vs a plain hand-written PyTorch loop, same model and data.

    python benchmarks/train_loop.py [--images 20000] [--repeats 5] [--clock process]

Times one epoch of ``common.train.train_epoch`` over ``common.train.batches``
against (a) the loop a user would write by hand over in-memory tensors and
(b) the usual ``DataLoader(TensorDataset)`` loop, interleaving the three after a
discarded warm-up round so that machine noise hits all of them alike, and prints
the median of the per-repeat ratios.  The three draw the same permutation from the
same generator, so after the epoch their weights must agree (compared and printed).
One thread unless --threads.  Target: shared / hand-written <= 1.05.
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

import _bench  # noqa: E402
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
    parser.add_argument("--threads", type=int, default=1)
    _bench.add_clock_argument(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train = data.fashion_mnist(train=True)
    x, y = train.images[:args.images], train.labels[:args.images]
    loops = {"hand-written": hand_written, "DataLoader": dataloader_loop, "shared": shared}
    finals = {}

    def side(name):
        def run():
            torch.manual_seed(0)
            model = SmallCNN()
            opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
            loops[name](model, opt, x, y, args.batch_size, torch.Generator().manual_seed(seed[0]))
            return model
        return run

    seed = [0]

    def report(rep, name, dt, model):
        finals.setdefault(rep, {})[name] = torch.cat([p.detach().flatten() for p in model.parameters()])
        if name == "shared":
            seed[0] = rep + 1  # a new permutation for the next round, the same for all three

    times = _bench.interleaved({k: side(k) for k in loops}, args.repeats, args.clock, report=report)
    diff = {k: max((f["shared"] - f[k]).abs().max().item() for f in finals.values())
            for k in ("hand-written", "DataLoader")}
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"one epoch, {args.images} Fashion-MNIST images, SmallCNN, batch {args.batch_size}, "
          f"{torch.get_num_threads()} thread(s), {args.clock} clock, median of {args.repeats} "
          f"after a warm-up round")
    for k, v in med.items():
        print(f"  {k:13s} {v:7.3f} s")
    for other in ("hand-written", "DataLoader"):
        r, rs = _bench.ratios(times, "shared", other)
        print(f"ratio shared / {other + ':':13s} {r:.3f} (repeats {_bench.fmt_ratios(rs)})"
              + ("  (target <= 1.05)" if other == "hand-written" else ""))
    print(f"weights after the epoch: max |shared - hand-written| = {diff['hand-written']:.1e} "
          f"(same batches); max |shared - DataLoader| = {diff['DataLoader']:.1e} (its iterator "
          f"draws a base seed from the generator before the permutation, so its batches differ)")


if __name__ == "__main__":
    main()
