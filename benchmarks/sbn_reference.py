"""SBN-EM speed and agreement: papers/sbn (vectorised NumPy) vs the authors' reference code.

The reference, zcrabbit/sbn models.py, is Python 2 (dicts of bitarray strings,
one ete3 tree at a time).  This script converts it with lib2to3 at run time
(never committed here), fits SBN-SA and a fixed number of SBN-EM iterations to
one short run of DS1 with both implementations, interleaved, and prints the
time ratio and the largest difference between their tree probabilities.

    pip install --target /tmp/sbnref_pkgs ete3 bitarray six     # the reference's dependencies
    git clone https://github.com/zcrabbit/sbn /tmp/sbn          # or any copy of models.py
    PYTHONPATH=.:/tmp/sbnref_pkgs python benchmarks/sbn_reference.py \\
        --models /tmp/sbn/models.py --data-dir ../shared/data [--dataset DS1 --iters 3]
"""

from __future__ import annotations

import argparse
import sys
import time
import types
import warnings
from pathlib import Path

import numpy as np

from common.data import default_root
from papers.sbn import data as D
from papers.sbn import method as M
from papers.sbn import trees as tr


def load_reference(models_py: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from lib2to3.refactor import RefactoringTool, get_fixers_from_package

        tool = RefactoringTool(get_fixers_from_package("lib2to3.fixes"))
        source = str(tool.refactor_string(models_py.read_text(), str(models_py)))
    module = types.ModuleType("sbn_reference_models")
    exec(compile(source, str(models_py), "exec"), module.__dict__)
    return module


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", required=True, type=Path, help="zcrabbit/sbn models.py")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--dataset", default="DS1")
    ap.add_argument("--run", type=int, default=1, help="which short run (1-10)")
    ap.add_argument("--iters", type=int, default=3, help="EM iterations to time")
    args = ap.parse_args()
    from ete3 import Tree

    ref = load_reference(args.models)
    root = default_root(args.data_dir)
    path = D._find(root, "short", args.dataset, args.run)
    f = D.read_trprobs(path)
    w = f.weights / f.weights.sum()
    taxa = f.taxa
    print(f"{args.dataset} short run {args.run}: {len(w)} trees, {len(taxa)} taxa; "
          f"SBN-SA + {args.iters} EM iterations")

    # ours: parse + encode + fit (everything from the Newick strings on)
    t0 = time.process_time()
    trees = tr.Trees.from_newick(f.newick, {t: i for i, t in enumerate(taxa)}, len(taxa))
    vocab = M.Vocab(trees)
    ids = np.arange(len(w))
    model, _ = M.fit_em(vocab, ids, w, maxiter=args.iters, miniter=10**9)
    ours_p = np.exp(model.loglik(ids))
    t_ours = time.process_time() - t0

    # reference: ete3 trees, bn_em_prob (trains SA inside), then bn_estimate per tree
    ete = {f"tree_{i}": Tree(s) for i, s in enumerate(f.newick)}
    names = list(ete)
    t0 = time.process_time()
    sbn = ref.SBN(taxa)
    sbn.bn_em_prob(ete, names, list(w), maxiter=args.iters, miniter=10**9, abstol=0.0)
    ref_p = np.array([sbn.bn_estimate(ete[n]) for n in names])
    t_ref = time.process_time() - t0

    print(f"  reference (Python, dicts):  {t_ref:8.2f} s CPU")
    print(f"  papers/sbn (NumPy):         {t_ours:8.2f} s CPU  (includes parsing and encoding)")
    print(f"  speed-up: {t_ref / t_ours:.0f}x")
    print(f"  max |p_ours - p_ref| over the sample's trees: {np.abs(ours_p - ref_p).max():.2e} "
          f"(largest p {ref_p.max():.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
