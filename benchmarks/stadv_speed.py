"""stAdv attack speed: ``common.attacks.stadv`` (every (image, target) pair of a batch
in one forward/backward per L-BFGS evaluation, each with its own L-BFGS) vs the
reference recipe of rakutentech/stAdv -- SciPy's ``fmin_l_bfgs_b`` on one image at a
time -- with our loss (same warp, flow loss, margin loss, tau, start, iteration cap),
single-threaded.

    python benchmarks/stadv_speed.py [--images 3] [--max-iter 100] [--train 5000] [--threads 1]

Model B of the paper (cheapest of the three), trained here one epoch on ``--train``
MNIST images (REPRO_DATA), so the attack has a real model to fool.  Prints attacks per
second for both, their ratio, and how far the two optima agree (objective values,
success); then ours with the second start the experiment uses (``warm_start=0.1``,
``--warm-iter`` iterations at tau / 10, then ``--max-iter`` at tau; per pair the lower
objective), whose cost is that of three runs.  advertorch's SpatialTransformAttack (0.2.3, the newest on PyPI) was the
planned peer but does not import with torch >= 2 (``from torch.autograd.gradcheck
import zero_gradients``), and its objective is not the paper's (flow regulariser =
sqrt of whole-image sums of squared grid differences on [-1, 1] coordinates, weight 1,
one SciPy L-BFGS-B over the concatenated batch).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import attacks as A  # noqa: E402
from common import data  # noqa: E402
from common.train import batches, cross_entropy_loss, train_epoch  # noqa: E402
from papers.stadv import method as M  # noqa: E402


def scipy_attack(model, x, t, tau, max_iter):
    """One image: fmin_l_bfgs_b (m 10, factr 10, as rakutentech) on our objective."""
    from scipy.optimize import fmin_l_bfgs_b

    h, w = x.shape[-2:]

    def fg(v):
        f = torch.tensor(v, dtype=torch.float32).view(1, 2, h, w).requires_grad_(True)
        obj = A.cw_margin_loss(model(A.flow_warp(x[None], f)), t.view(1), True) + tau * A.flow_loss(f)
        (g,) = torch.autograd.grad(obj.sum(), f)
        return float(obj.item()), g.flatten().double().numpy()

    v, fval, _ = fmin_l_bfgs_b(fg, np.zeros(2 * h * w), m=10, maxiter=max_iter, factr=10)
    flow = torch.tensor(v, dtype=torch.float32).view(1, 2, h, w)
    with torch.no_grad():
        ok = model(A.flow_warp(x[None], flow)).argmax(1).item() == int(t)
    return fval, ok


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=3, help="images (x 9 targets)")
    ap.add_argument("--max-iter", type=int, default=100)
    ap.add_argument("--tau", type=float, default=0.005)
    ap.add_argument("--train", type=int, default=5000)
    ap.add_argument("--warm-iter", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tr, te = data.load("mnist", train=True), data.load("mnist", train=False)
    model = M.make_model("B")
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    model.train()
    train_epoch(model, batches(tr.images[:args.train], tr.labels[:args.train], batch_size=64, shuffle=True,
                               generator=torch.Generator().manual_seed(0)), opt, cross_entropy_loss)
    model.eval()
    with torch.no_grad():
        pred = model(te.images[:500]).argmax(1)
    sel = (pred == te.labels[:500]).nonzero().flatten()[:args.images]
    img, tgt = M.all_pairs(te.labels[sel])
    x = te.images[sel][img]
    y = te.labels[sel][img]
    t0 = time.perf_counter()
    _, info = A.stadv(model, x, y, target=tgt, tau=args.tau, max_iter=args.max_iter, ftol=0.0,
                      return_info=True)
    ours_s = time.perf_counter() - t0
    with torch.no_grad():
        ours_f = (A.cw_margin_loss(model(A.flow_warp(x, info["flow"])), tgt, True)
                  + args.tau * A.flow_loss(info["flow"]))
    t0 = time.perf_counter()
    ref = [scipy_attack(model, x[i], tgt[i], args.tau, args.max_iter) for i in range(len(x))]
    ref_s = time.perf_counter() - t0
    ref_f = torch.tensor([r[0] for r in ref])
    ref_ok = torch.tensor([r[1] for r in ref])
    n = len(x)
    print(f"threads: {torch.get_num_threads()}; model B; {n} attacks (tau {args.tau}, <= {args.max_iter} iterations)")
    print(f"ours (batched per-sample L-BFGS): {n / ours_s:.2f} attacks/s, success {info['success'].float().mean():.3f}, "
          f"mean objective {ours_f.mean():.4f}")
    print(f"SciPy fmin_l_bfgs_b per image:    {n / ref_s:.2f} attacks/s, success {ref_ok.float().mean():.3f}, "
          f"mean objective {ref_f.mean():.4f}")
    print(f"speed ratio ours / SciPy: {ref_s / ours_s:.2f}x; success agrees on "
          f"{(info['success'] == ref_ok).float().mean():.3f} of the attacks; "
          f"median objective ratio ours/SciPy {float((ours_f / ref_f.clamp_min(1e-12)).median()):.3f}")
    t0 = time.perf_counter()
    _, two = A.stadv(model, x, y, target=tgt, tau=args.tau, max_iter=args.max_iter, ftol=0.0,
                     warm_start=0.1, warm_iter=args.warm_iter, return_info=True)
    two_s = time.perf_counter() - t0
    print(f"ours, two starts (+{args.warm_iter} at tau/10): {n / two_s:.2f} attacks/s, success "
          f"{two['success'].float().mean():.3f}, mean objective {two['objective'].mean():.4f}; "
          f"{two_s / ref_s:.2f}x the time of SciPy's single start")


if __name__ == "__main__":
    main()
