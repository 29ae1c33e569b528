"""glibc malloc defaults vs ``common.allocator.keep_freed_memory`` on training steps.

Each side runs in a fresh interpreter (the allocator's state cannot be reset inside one),
with one thread, the sides interleaved after a discarded warm-up round; the child
reports its own user and system CPU time, page faults and a checksum of the trained
weights or ABS scores (the two sides must agree bit for bit: only where buffers live
changes).  ``abs_inference`` runs ABS inference (untrained VAEs, 8,000 latents) on 10
images with ``--steps`` Adam steps (after decoding the bank, not timed); the others train for ``--steps`` steps.

    .venv/bin/python benchmarks/allocator.py [--repeats 3] [--steps 60]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKLOADS = ("coordconv_painter", "deconv_painter", "madry_pgd_step", "abs_inference")


def child(workload: str, steps: int) -> dict:
    sys.path.insert(0, str(ROOT))
    from common.allocator import keep_freed_memory
    applied = keep_freed_memory()
    import torch
    torch.set_num_threads(1)
    torch.manual_seed(0)
    if workload == "abs_inference":  # ABS on 10 images, 8,000 latents, `steps` Adam steps
        from papers.abs import method as M
        abs_model = M.ABS(M.ClassVAEs().eval(), n_samples=8000, steps=steps).eval()
        x = torch.rand(10, 1, 28, 28)
        abs_model.bank()  # the decoded bank (8,000 x 10 images) is built once, not timed
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        scores = abs_model.infer(x)["scores"]
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        return {"user": r1.ru_utime - r0.ru_utime, "sys": r1.ru_stime - r0.ru_stime,
                "faults": r1.ru_minflt - r0.ru_minflt, "checksum": float(scores.double().sum()),
                "allocator": applied}
    if workload.endswith("painter"):
        from papers.coordconv import method as M
        from papers.coordconv.experiment import task_data
        inputs, targets, loss_fn = task_data("classification")
        arch, bs = ("coordconv", 16) if workload == "coordconv_painter" else ("deconv", 32)
        model = M.build("classification", arch, "uniform", 1, 3)
        batches = [torch.randint(0, len(inputs), (bs,)) for _ in range(steps)]

        def step(i):
            return loss_fn(model, inputs[batches[i]], targets[batches[i]])
    else:
        from common.adversarial import MadryCNN
        from common.attacks import pgd
        model = MadryCNN(width=0.5).eval()  # no BatchNorm or dropout: eval mode trains the same
        x, y = torch.rand(50, 1, 28, 28), torch.randint(0, 10, (50,))

        def step(i):
            adv = pgd(model, x, y, 0.3, steps=10, step_size=0.075)
            return torch.nn.functional.cross_entropy(model(adv), y)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    for i in range(steps):
        loss = step(i)
        opt.zero_grad()
        loss.backward()
        opt.step()
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    checksum = float(sum(p.double().sum() for p in model.parameters()))
    return {"user": r1.ru_utime - r0.ru_utime, "sys": r1.ru_stime - r0.ru_stime,
            "faults": r1.ru_minflt - r0.ru_minflt, "checksum": checksum, "allocator": applied}


def run_side(workload: str, steps: int, defaults: bool) -> dict:
    env = dict(os.environ, REPRO_MALLOC_DEFAULTS="1" if defaults else "0", OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, __file__, "--child", workload, "--steps", str(steps)],
                         env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=WORKLOADS)
    parser.add_argument("--child", choices=WORKLOADS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.steps)))
        return
    print(f"{args.steps} training steps per run, one thread; CPU = user + system time of the child")
    for workload in args.workloads:
        ratios, results = [], {"defaults": [], "kept": []}
        for r in range(1 + args.repeats):  # round 0: warm-up (file cache, imports), discarded
            for side in ("defaults", "kept"):
                res = run_side(workload, args.steps, side == "defaults")
                if r:
                    results[side].append(res)
            if r:
                d, k = results["defaults"][-1], results["kept"][-1]
                ratios.append((d["user"] + d["sys"]) / (k["user"] + k["sys"]))
                same = "equal" if d["checksum"] == k["checksum"] else \
                    f"DIFFER ({d['checksum']!r} vs {k['checksum']!r})"
                print(f"  {workload} repeat {r}: defaults {d['user']:.2f} user + {d['sys']:.2f} sys s, "
                      f"{d['faults']} faults | kept {k['user']:.2f} + {k['sys']:.2f} s, {k['faults']} "
                      f"faults | ratio {ratios[-1]:.2f} | weights {same}")
        print(f"{workload}: defaults / kept CPU time, median of per-repeat ratios "
              f"{statistics.median(ratios):.2f} ({', '.join(f'{x:.2f}' for x in ratios)}); "
              f"kept side: {results['kept'][0]['allocator']}")


if __name__ == "__main__":
    main()
