"""Time to the first shuffled MNIST training batch: `common.data` (checksum verified
once, then read from its cache; pixels converted per batch) against torchvision's
`MNIST` + `DataLoader` (no checksum of the files at all), and the old path of this
project (hash and decompress on every load, the whole set converted to float).

    python benchmarks/data_first_batch.py [--repeats 5] [--clock process]

Each repeat loads the training set from scratch and draws one batch of 128 with
shuffling; the sides are interleaved and the median of the per-repeat ratios is
printed.  Outputs are compared: the same training image from both sides must be equal.  A fourth side
loads through `common.data` but takes the whole set as float (`split.images`) and
shuffles it, as most experiments still do.
One thread; `--clock process` measures CPU time instead of wall time (steadier on a
shared machine).  Needs $REPRO_DATA (or ../shared/data) with the MNIST .gz files.
"""

from __future__ import annotations

import argparse
import gzip
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import data  # noqa: E402


def ours(generator):
    split = data.mnist(train=True)
    return next(split.batches(128, shuffle=True, generator=generator))


def ours_all_float(generator):
    """The way most experiments use it today: ``split.images`` (the whole set as float)."""
    from common.train import batches

    split = data.mnist(train=True)
    return next(batches(split.images, split.labels, batch_size=128, shuffle=True,
                        generator=generator))


def old_path(generator):
    """What `mnist()` and `batches()` did before: md5 + gunzip on every load, float
    conversion up front, the whole set permuted before the first batch."""
    root = data.default_root() / "mnist"
    arrays = {}
    for kind in ("images-idx3", "labels-idx1"):
        raw = (root / f"train-{kind}-ubyte.gz").read_bytes()
        data.md5(raw)
        arrays[kind] = data.parse_idx(gzip.decompress(raw)).copy()
    x = torch.from_numpy(arrays["images-idx3"]).unsqueeze(1).float().div_(255)
    y = torch.from_numpy(arrays["labels-idx1"].astype("int64"))
    order = torch.randperm(len(y), generator=generator)
    x, y = x[order], y[order]
    return x[:128], y[:128]


def torchvision_side(root):
    import torchvision

    def run(generator):
        ds = torchvision.datasets.MNIST(root, train=True,
                                        transform=torchvision.transforms.ToTensor())
        loader = torch.utils.data.DataLoader(ds, batch_size=128, shuffle=True, generator=generator)
        return next(iter(loader))

    return run


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--clock", choices=("wall", "process"), default="wall")
    args = ap.parse_args()
    torch.set_num_threads(1)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    with tempfile.TemporaryDirectory() as tmp:
        raw_dir = Path(tmp) / "MNIST" / "raw"  # torchvision reads the decompressed files
        raw_dir.mkdir(parents=True)
        for f in (data.default_root() / "mnist").glob("*.gz"):
            (raw_dir / f.stem).write_bytes(gzip.decompress(f.read_bytes()))
        sides = {"common.data": ours, "torchvision": torchvision_side(tmp),
                 "common.data .images": ours_all_float, "old common.data": old_path}
        split = data.mnist(train=True)  # warm-up (and the cache's first, verifying load)
        tv = sides["torchvision"](torch.Generator().manual_seed(0))
        import torchvision

        tv_ds = torchvision.datasets.MNIST(tmp, train=True, transform=torchvision.transforms.ToTensor())
        same = all(torch.equal(tv_ds[i][0], split.images[i]) and tv_ds[i][1] == split.labels[i]
                   for i in (0, 1, 12345, 59999))
        old = old_path(torch.Generator().manual_seed(0))
        new = ours(torch.Generator().manual_seed(0))
        same_old = torch.equal(old[0], new[0]) and torch.equal(old[1], new[1])
        del tv
        times = {k: [] for k in sides}
        for _ in range(args.repeats):
            for name, fn in sides.items():
                t0 = clock()
                fn(torch.Generator().manual_seed(1))
                times[name].append(clock() - t0)
    base = times["torchvision"]
    print(f"time to the first shuffled batch of 128 ({args.clock} clock, one thread, "
          f"median of {args.repeats}):")
    for name, ts in times.items():
        ratio = statistics.median(t / b for t, b in zip(ts, base))
        print(f"  {name:20s} {statistics.median(ts) * 1000:8.1f} ms   {ratio:5.2f}x torchvision   "
              f"(repeats {', '.join(f'{t * 1000:.0f}' for t in ts)} ms)")
    print(f"outputs: torchvision's images equal ours: {same}; old path's first batch equals "
          f"the new one: {same_old}; load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
