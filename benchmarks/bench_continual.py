"""PC against backprop in continual learning and at small batch sizes, ≥ 5 seeds.

    python benchmarks/bench_continual.py --seeds 0 1 2 3 4 --workers 2
    python benchmarks/bench_continual.py --report-only      # tables and figures from the runs
    python benchmarks/bench_continual.py --alignment        # PC update vs backprop gradient

Two sweeps (`sims.sweep`, the engine of `brainloop sweep`), one recording per run under
runs/bench_continual/<sim>/ with its index.csv: `continual` over tasks (split2, pairs5) ×
scenario (class_il, task_il) × PC inference steps (8, 50), and `small-batch` with its default
grid; one worker process per run with one torch thread. Prints, per condition, the mean and
95 % confidence interval (Student's t over seeds) of final accuracy and forgetting with the
paired PC − backprop difference, and of the small-batch test errors, and draws
forgetting.png and small_batch.png there — what `brainloop report runs/bench_continual/<sim>`
prints and draws.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RUNS = ROOT / "runs" / "bench_continual"
# the sweeps (sims.sweep): PC inferring for 50 steps instead of 8 moves its hidden states further
# from the feed-forward pass, toward the regime of prospective configuration
SWEEPS = {"continual": {"tasks": ["split2", "pairs5"], "scenario": ["class_il", "task_il"],
                        "networks.inference_steps": ["8", "50"]},
          "small-batch": {}}


def alignment(steps_list=(8, 50, 200)) -> None:
    """Why PC and backprop behave alike here: the cosine between PC's local weight update and
    the backprop gradient of the same weights on one batch, after 20 training batches (seed 0),
    per weight matrix, for several inference budgets."""
    import torch

    from cortex import InferenceConfig, infer
    from sims import continual
    from sims.pc_digits import backprop_twin

    torch.set_num_threads(1)
    data = continual.Data(continual.Networks(), 0)
    x, y = data.part(data.train[:32])
    target = torch.nn.functional.one_hot(y, 10).float()
    print("| inference steps | cosine per weight matrix (image→h1, h1→h2, h2→label) |\n|---|---|")
    for steps in steps_list:
        net = continual.Net("pc", continual.Networks(inference_steps=steps), 1e-3, 0)
        for i in range(20):
            net.step(*data.part(data.train[32 * i:32 * (i + 1)]))
        model = net.pc
        beliefs = infer(model, {"image": x, "label": target}, InferenceConfig(steps=steps, lr=0.1))
        for p in model.parameters():
            p.grad = None
        model.accumulate_grads(beliefs.z, beliefs.drive)
        bp = backprop_twin(model, ["image", "h1", "h2", "label"])
        (0.5 * ((bp(x) - target) ** 2).sum(1).mean()).backward()
        cosines = []
        for parent, child, layer in zip(["image", "h1", "h2"], ["h1", "h2", "label"],
                                        [m for m in bp if isinstance(m, torch.nn.Linear)]):
            group, stacked = next((eg, w) for eg, w in zip(model.edge_groups, model.weights)
                                  if eg.source == "state" and (parent, child) in eg.edges)
            pc_grad = stacked.grad[group.edges.index((parent, child))]
            cosines.append(float(torch.nn.functional.cosine_similarity(
                pc_grad.flatten(), layer.weight.grad.flatten(), dim=0)))
        print(f"| {steps} | {', '.join(f'{c:.4f}' for c in cosines)} |")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--sims", nargs="+", choices=SWEEPS, default=list(SWEEPS))
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--report-only", action="store_true", help="use the recordings there")
    parser.add_argument("--alignment", action="store_true",
                        help="only measure how PC's weight update aligns with the BP gradient")
    args = parser.parse_args(argv)
    if args.alignment:
        alignment()
        return
    from analysis.report import report_directory
    from sims.sweep import sweep

    for sim in args.sims:
        out = RUNS / sim
        if not args.report_only:
            sweep(sim, SWEEPS[sim], args.seeds, out, workers=args.workers,
                  progress=lambda r: print(f"{r.status}: {r.run.out.name} {r.error}",
                                           file=sys.stderr))
        text, written = report_directory(out)  # the same as `brainloop report runs/...`
        print(text)
        for path in written:
            print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
