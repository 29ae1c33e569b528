"""SBN-EM speed and agreement: papers/sbn (vectorised NumPy) vs the authors' reference code.

The reference, zcrabbit/sbn models.py, is Python 2 (dicts of bitarray strings,
one ete3 tree at a time).  This script converts it with lib2to3 at run time
(never committed here), fits SBN-SA and a fixed number of SBN-EM iterations to
one short run of DS1 with both implementations, interleaved over ``--repeats``
rounds after a discarded warm-up round, and prints the median of the per-repeat
time ratios (CPU time by default: ``--clock wall`` for wall time) and the largest
difference between their tree probabilities.

    pip install --target /tmp/sbnref_pkgs ete3 bitarray six     # the reference's dependencies
    git clone https://github.com/zcrabbit/sbn /tmp/sbn          # or any copy of models.py
    PYTHONPATH=.:/tmp/sbnref_pkgs python benchmarks/sbn_reference.py \\
        --models /tmp/sbn/models.py --data-dir ../shared/data [--dataset DS1 --iters 3 --repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import types
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _bench  # noqa: E402
from common.data import default_root  # noqa: E402
from papers.sbn import data as D  # noqa: E402
from papers.sbn import method as M  # noqa: E402
from papers.sbn import trees as tr  # noqa: E402


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
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--clock", choices=("wall", "process"), default="process")
    args = ap.parse_args()
    from ete3 import Tree

    ref = load_reference(args.models)
    root = default_root(args.data_dir)
    path = D._find(root, "short", args.dataset, args.run)
    f = D.read_trprobs(path)
    w = f.weights / f.weights.sum()
    taxa = f.taxa
    print(f"{args.dataset} short run {args.run}: {len(w)} trees, {len(taxa)} taxa; "
          f"SBN-SA + {args.iters} EM iterations; {args.clock} clock, median of {args.repeats} "
          f"after a warm-up round")
    ete = {f"tree_{i}": Tree(s) for i, s in enumerate(f.newick)}
    names = list(ete)

    def ours():  # parse + encode + fit (everything from the Newick strings on)
        trees = tr.Trees.from_newick(f.newick, {t: i for i, t in enumerate(taxa)}, len(taxa))
        vocab = M.Vocab(trees)
        ids = np.arange(len(w))
        model, _ = M.fit_em(vocab, ids, w, maxiter=args.iters, miniter=10**9)
        return np.exp(model.loglik(ids))

    def reference():  # ete3 trees (parsed once, outside), bn_em_prob (trains SA inside), bn_estimate
        sbn = ref.SBN(taxa)
        sbn.bn_em_prob(ete, names, list(w), maxiter=args.iters, miniter=10**9, abstol=0.0)
        return np.array([sbn.bn_estimate(ete[n]) for n in names])

    outputs = {}
    times = _bench.interleaved({"reference": reference, "ours": ours}, args.repeats, args.clock,
                               report=lambda r, name, dt, out: outputs.__setitem__(name, out))
    ratio, rs = _bench.ratios(times, "reference", "ours")
    print(f"  reference (Python, dicts):  {statistics.median(times['reference']):8.2f} s")
    print(f"  papers/sbn (NumPy):         {statistics.median(times['ours']):8.2f} s  "
          f"(includes parsing and encoding)")
    print(f"  speed-up: {ratio:.0f}x (repeats {_bench.fmt_ratios(rs)})")
    diff = np.abs(outputs["ours"] - outputs["reference"]).max()
    print(f"  max |p_ours - p_ref| over the sample's trees: {diff:.2e} "
          f"(largest p {outputs['reference'].max():.3f})")
    return 0

if __name__ == "__main__":
    sys.exit(main())
