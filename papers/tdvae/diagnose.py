"""Where a finished tdvae_oscillator run's rollout errors come from.

The experiment's rollouts (the paper's protocol) sample the latent from the belief and
sample every transition. This re-scores the run's checkpoint on the run's own test set with
the belief's mean and/or the transition's mean instead, and reports the median errors and
the median ratio of fitted to true amplitude. A Gaussian transition whose mean is the
conditional mean shrinks the amplitude when the phase is uncertain; its samples restore the
size on average but scatter it.

    python -m papers.tdvae.diagnose runs/tdvae_oscillator/<run> [<run> ...]
"""

from __future__ import annotations

import argparse
import json
import pathlib

import torch

from common.atomic import torch_load
from common.context import derived_seed
from papers.tdvae import data as D
from papers.tdvae.experiment import oscillator_model, rollout_errors

MODES = {"sample z, sample p_T (the paper's)": {},
         "mean z, sample p_T": {"mean_belief": True},
         "sample z, mean p_T": {"mean_transition": True},
         "mean z, mean p_T": {"mean_belief": True, "mean_transition": True}}


def diagnose(run_dir) -> list[dict]:
    """One row per (jump, mode) of median errors for the run in ``run_dir``."""
    run_dir = pathlib.Path(run_dir)
    cfg = json.loads((run_dir / "results" / "config.json").read_text())
    seed = json.loads((run_dir / "run.json").read_text())["seed"]
    state = torch_load(run_dir / "checkpoints" / "tdvae.pt")  # weights-only: no pickled code runs
    model = oscillator_model(cfg)
    model.load_state_dict(state["objects"]["model"])
    model.eval()
    test_gen = torch.Generator().manual_seed(derived_seed(seed, "test data"))
    test = D.oscillator(cfg["test_sequences"], cfg["length"], test_gen)
    rows = []
    for dt in cfg["jumps"]:
        for mode, means in MODES.items():
            gen = torch.Generator().manual_seed(derived_seed(seed, f"rollout {dt}"))
            err = rollout_errors(model, test, cfg["t1"], dt, cfg["roll"], cfg["samples"], gen, **means)
            rows.append({"dt": dt, "mode": mode, **{k: err[k].median().item()
                                                    for k in ("freq", "amp", "phase", "amp_ratio")}})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="tdvae_oscillator run folders (with checkpoints/tdvae.pt)")
    args = parser.parse_args(argv)
    for run in args.runs:
        print(run)
        print(f"{'dt':>4}  {'rollout':36s} {'freq err':>8} {'amp err':>8} {'phase':>6} {'amp ratio':>9}")
        for r in diagnose(run):
            print(f"{r['dt']:>4}  {r['mode']:36s} {r['freq']:8.3f} {r['amp']:8.3f} {r['phase']:6.2f} {r['amp_ratio']:9.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
