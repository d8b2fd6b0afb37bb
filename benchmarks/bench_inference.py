"""Time one inference iteration: the explicit local rule vs autograd on F vs a plain matmul.

Same model, same batch, same device, measured in one run. The local rule's cost is one
batched prediction (bmm over every edge group) plus one batched error back-projection
(bmm with W^T), elementwise work and the state update; autograd on F pays for building and
walking a graph. The "matmul" row is a single ``torch.bmm`` of the same shapes — the
forward prediction alone — so the lower bound of a local-rule iteration is about 2x it.

    python benchmarks/bench_inference.py                    # B=256, 4 levels of width 512
    python benchmarks/bench_inference.py --batch 64 --width 256 --levels 6 --device cuda
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from cortex import InferenceConfig, PCModel, chain
from cortex.inference import descend


def _time(fn, repeats: int, device: torch.device) -> float:
    """Median seconds per call over ``repeats`` calls (after warm-up)."""
    for _ in range(5):
        fn()
    samples = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def measure(batch: int, width: int, levels: int, device: torch.device, repeats: int) -> dict[str, float]:
    dims = {f"l{i}": width for i in range(levels)}
    gen = torch.Generator().manual_seed(0)
    model = PCModel(chain(dims, activation="tanh"), generator=gen).to(device)
    bottom = f"l{levels - 1}"
    data = {bottom: torch.randn(batch, width, generator=gen).to(device)}
    z = model.to_grouped({n: torch.randn(batch, width, generator=gen).to(device) for n in dims}, batch)
    z[0][-1] = data[bottom]
    free = [torch.ones(len(g.names), batch, 1, device=device) for g in model.groups]
    free[0][-1] = 0.0
    drive = model.drive(batch)
    one_step = InferenceConfig(steps=1, lr=0.01)

    def local_rule() -> None:
        descend(model, z, free, one_step, lambda state: model.evaluate(state, drive))

    def autograd_rule() -> None:
        zs = [t.detach().requires_grad_(True) for t in z]
        f = model.free_energy(zs, drive).sum()
        grads = torch.autograd.grad(f, zs)
        with torch.no_grad():
            for t, g, m in zip(z, grads, free):
                t.sub_(0.01 * g * m)

    stacked = torch.stack([model.weight(f"l{i}", f"l{i + 1}").detach() for i in range(levels - 1)])
    x = torch.randn(levels - 1, batch, width, generator=gen).to(device)

    def matmul() -> None:
        torch.bmm(x, stacked.transpose(1, 2))

    with torch.no_grad():
        # descend() evaluates F before and after its single step: two evaluations per call.
        t_local = _time(local_rule, repeats, device) / 2
        t_matmul = _time(matmul, repeats, device)
    t_auto = _time(autograd_rule, repeats, device)
    return {"local": t_local, "autograd": t_auto, "matmul": t_matmul}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--levels", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    t = measure(args.batch, args.width, args.levels, device, args.repeats)
    print(f"one inference iteration, B={args.batch}, {args.levels} levels of width {args.width}, "
          f"{device}, {args.threads} thread(s), median of {args.repeats}")
    for name in ("local", "autograd", "matmul"):
        print(f"  {name:<9} {t[name] * 1e3:9.3f} ms")
    print(f"  autograd / local = {t['autograd'] / t['local']:.2f}x  (local rule speed-up over autograd)")
    print(f"  local / matmul   = {t['local'] / t['matmul']:.2f}x  (a local iteration needs 2 such matmuls: bound ~2x)")


if __name__ == "__main__":
    main()
