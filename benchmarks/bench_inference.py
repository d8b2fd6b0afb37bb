"""One inference iteration against its matmul bound, and how its cost grows with the model.

Every figure is a ratio measured in one run, the things compared timed round-robin (one call
of each in turn, medians over the rounds), so load on a shared machine hits them alike.

- **iteration** (a chain of 4 weight layers; B × width as given): what a user pays per
  iteration of ``infer`` — the time of K+10 iterations minus K, over 10 — eager and compiled
  (``InferenceConfig(compile=True)``), against

  - the **bound**: the iteration's own matmuls alone, the prediction of every edge group and
    the back-projection of its errors, each one ``torch.bmm`` into a preallocated output of
    the kernel's shapes;
  - **autograd** on F: the same iteration with ``torch.autograd.grad`` of the free energy;
  - **by hand**: a plain per-layer loop of the local rule with in-place ops, written for this
    chain alone (what the grouped kernel must not lose to).

- **scaling**: iteration cost against the number of columns (a two-level sheet of N columns
  of 64 units, fan-in 3, 1 … 4,096 columns), and against width, batch and depth of a chain;
  with the log-log slope and a figure (``--figure``).
- **sheet**: the 1,024-column sheet (64 / 192 / 768 columns of 64 units, local fan-in 3)
  as a fraction of its bound.
- **cuda**: the iteration table in fp32 and bf16 as a fraction of the device's matmul
  throughput measured in the same run, when a GPU is there; otherwise said to be skipped.

    python benchmarks/bench_inference.py                                  # all sections
    python benchmarks/bench_inference.py iteration --sizes 256x512 64x256
    python benchmarks/bench_inference.py scaling --figure benchmarks/results/inference_scaling.png
"""
from __future__ import annotations

import argparse
import math
import statistics
import time
from typing import Callable

import torch

from cortex import InferenceConfig, PCModel, chain, infer, sheet


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def round_robin(fns: dict[str, Callable[[], object]], rounds: int, device: torch.device) -> dict[str, float]:
    """Median seconds per call of each function, timed one after the other in every round."""
    for fn in fns.values():
        fn(), fn()
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            samples[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in samples.items()}


class Case:
    """A model with data clamped at its bottom (sensory) columns, and its bound."""

    def __init__(self, model: PCModel, batch: int, clamped: list[str], seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.model, self.batch = model, batch
        device, dtype = model.device, model.dtype
        self.data = {n: torch.randn(batch, model.spec.node(n).dim, generator=gen).to(device, dtype)
                     for n in clamped}
        # the bound: every state edge group's prediction, and the back-projection of those
        # whose source group holds free columns, as the kernel runs them
        active = [any(n not in self.data for n in g.names) for g in model.groups]
        self.mats = []
        for eg, w in zip(model.edge_groups, model.weights):
            if eg.source != "state":
                continue
            e, d_dst, d_src = w.shape
            w = w.detach()
            self.mats.append((torch.randn(e, batch, d_src, generator=gen).to(device, dtype), w.transpose(1, 2),
                              torch.empty(e, batch, d_dst, device=device, dtype=dtype)))
            if active[eg.src]:
                self.mats.append((torch.randn(e, batch, d_dst, generator=gen).to(device, dtype), w,
                                  torch.empty(e, batch, d_src, device=device, dtype=dtype)))

    def bound(self) -> None:
        for a, b, out in self.mats:
            torch.bmm(a, b, out=out)

    def flops(self) -> int:
        return sum(2 * a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2] for a, b, _ in self.mats)

    def infer(self, steps: int, compiled: bool = False) -> Callable[[], object]:
        config = InferenceConfig(steps=steps, lr=0.01, compile=compiled)
        return lambda: infer(self.model, self.data, config)

    def autograd_step(self) -> Callable[[], None]:
        model = self.model
        batch = self.batch
        z = model.to_grouped({n: torch.randn(batch, model.spec.node(n).dim, device=model.device, dtype=model.dtype)
                              for n in model.spec.names}, batch)
        drive = model.drive(batch)

        def step() -> None:
            zs = [t.detach().requires_grad_(True) for t in z]
            grads = torch.autograd.grad(model.free_energy(zs, drive).sum(), zs)
            with torch.no_grad():
                for t, g in zip(z, grads):
                    t.sub_(g, alpha=0.01)
        return step


def hand_written_chain(model: PCModel, names: list[str], batch: int) -> Callable[[], None]:
    """The local rule of the chain written out layer by layer, in place (the reference)."""
    device, dtype = model.device, model.dtype
    ws = [model.weight(p, c).detach() for p, c in zip(names, names[1:])]
    bs = [model.bias[model.slot[n][0]][model.slot[n][1]].detach() for n in names]
    z = [torch.randn(batch, model.spec.node(n).dim, device=device, dtype=dtype) for n in names]
    tanh = [model.spec.node(n).activation == "tanh" for n in names]
    eps = [torch.empty_like(t) for t in z]
    rates = [torch.empty_like(t) for t in z]

    def step() -> None:
        for i, t in enumerate(z):
            if tanh[i]:
                torch.tanh(t, out=rates[i])
            else:
                rates[i] = t
        torch.sub(z[0], bs[0], out=eps[0])
        for i in range(1, len(z)):
            torch.addmm(bs[i], rates[i - 1], ws[i - 1].t(), out=eps[i])
            torch.sub(z[i], eps[i], out=eps[i])
        for i in range(len(z) - 1):  # the bottom column is clamped
            back = eps[i + 1] @ ws[i]
            if tanh[i]:
                back.mul_(1 - rates[i] * rates[i])
            z[i].add_(eps[i], alpha=-0.01).add_(back, alpha=0.01)
    return step


def chain_case(batch: int, width: int, weight_layers: int, device, dtype=torch.float32) -> tuple[Case, list[str]]:
    dims = {f"l{i}": width for i in range(weight_layers + 1)}
    model = PCModel(chain(dims, activation="tanh"), generator=torch.Generator().manual_seed(0), dtype=dtype).to(device)
    names = list(dims)
    return Case(model, batch, [names[-1]]), names


def sheet_case(levels: tuple[int, ...], batch: int, dim: int, device, dtype=torch.float32) -> Case:
    model = PCModel(sheet(levels, dim), generator=torch.Generator().manual_seed(0), dtype=dtype).to(device)
    bottom = [n for n in model.spec.names if n.startswith(f"L{len(levels) - 1}_")]
    return Case(model, batch, bottom)


def measure(case: Case, rounds: int, device, compiled: bool, extra: dict[str, Callable] | None = None,
            steps: int = 10) -> dict[str, float]:
    fns = {"eager K": case.infer(steps), "eager K+10": case.infer(steps + 10), "bound": case.bound}
    if compiled:
        fns.update({"compiled K": case.infer(steps, True), "compiled K+10": case.infer(steps + 10, True)})
    fns.update(extra or {})
    t = round_robin(fns, rounds, device)
    out = {"bound": t["bound"], "eager": (t["eager K+10"] - t["eager K"]) / 10}
    if compiled:
        out["compiled"] = (t["compiled K+10"] - t["compiled K"]) / 10
    for name in extra or {}:
        out[name] = t[name]
    return out


def section_iteration(sizes: list[tuple[int, int]], rounds: int, device, compiled: bool) -> None:
    print("\n## One inference iteration against its matmul bound (chain of 4 weight layers, tanh)\n")
    print(f"device {device}, {torch.get_num_threads()} thread(s), {rounds} rounds, times per iteration")
    cols = ["bound", "eager"] + (["compiled"] if compiled else []) + ["by hand", "autograd on F"]
    print("| B, width | " + " | ".join(cols) + " | eager / bound | " + ("compiled / bound | " if compiled else "")
          + "by hand / bound | autograd / eager |")
    print("|---" * (len(cols) + 4 + compiled) + "|")
    for batch, width in sizes:
        case, names = chain_case(batch, width, 4, device)
        t = measure(case, rounds, device, compiled, {
            "by hand": hand_written_chain(case.model, names, batch), "autograd on F": case.autograd_step()})
        row = " | ".join(f"{t[c] * 1e3:.3f} ms" for c in cols)
        ratios = [t["eager"] / t["bound"]] + ([t["compiled"] / t["bound"]] if compiled else []) + [
            t["by hand"] / t["bound"], t["autograd on F"] / t["eager"]]
        print(f"| {batch}, 4 × {width} | {row} | " + " | ".join(f"{r:.2f}×" for r in ratios) + " |", flush=True)


def _slope(xs: list[float], ys: list[float]) -> float:
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = statistics.mean(lx), statistics.mean(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)


def section_scaling(rounds: int, device, batch: int, figure: str | None) -> None:
    print(f"\n## Cost per iteration against the size of the model (eager, B={batch} unless varied)\n")
    tables = {}
    rows = []
    for n in (2, 4, 16, 64, 256, 1024, 4096):
        top = max(1, n // 4)
        case = sheet_case((top, n - top), batch, 64, device)
        t = measure(case, max(5, rounds // (1 + n // 512)), device, False)
        edges = len(case.model.spec.edges)
        rows.append((n, edges, t["eager"], t["bound"]))
    tables["columns"] = rows
    print("| columns (64 units, 2 levels, fan-in 3) | edges | per iteration | bound | / bound |")
    print("|---|---|---|---|---|")
    for n, e, it, b in rows:
        print(f"| {n} | {e} | {it * 1e3:.3f} ms | {b * 1e3:.3f} ms | {it / b:.2f}× |")
    big = [r for r in rows if r[0] >= 64]
    print(f"\nlog-log slope of time against columns, 64 … 4,096 columns: "
          f"{_slope([r[0] for r in big], [r[2] for r in big]):.2f} (1 = linear)")
    for label, values, make in (
        ("width", (64, 128, 256, 512), lambda v: chain_case(batch, v, 4, device)[0]),
        ("batch", (16, 64, 256, 1024), lambda v: chain_case(v, 256, 4, device)[0]),
        ("weight layers", (2, 4, 8, 16), lambda v: chain_case(batch, 256, v, device)[0]),
    ):
        rows = []
        for v in values:
            t = measure(make(v), rounds, device, False)
            rows.append((v, t["eager"], t["bound"]))
        tables[label] = rows
        print(f"\n| {label} (chain" + (", width 256" if label != "width" else "") + ") | per iteration | bound | / bound |")
        print("|---|---|---|---|")
        for v, it, b in rows:
            print(f"| {v} | {it * 1e3:.3f} ms | {b * 1e3:.3f} ms | {it / b:.2f}× |")
        print(f"log-log slope against {label}: {_slope([r[0] for r in rows], [r[1] for r in rows]):.2f}")
    if figure:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, axes = plt.subplots(1, 4, figsize=(15, 3.6))
        for ax, (label, rows) in zip(axes, tables.items()):
            xs = [r[0] for r in rows]
            ax.loglog(xs, [r[-2] * 1e3 for r in rows], "o-", label="iteration (eager)")
            ax.loglog(xs, [r[-1] * 1e3 for r in rows], "s--", label="bound (its matmuls)")
            ax.set_xticks(xs, [str(x) for x in xs])
            ax.minorticks_off()
            ax.set_xlabel(label)
            ax.set_ylabel("ms per iteration")
            ax.grid(True, which="both", alpha=0.3)
        axes[0].legend()
        axes[0].set_title("sheet of 64-unit columns")
        fig.tight_layout()
        fig.savefig(figure, dpi=120)
        print(f"\nfigure: {figure}")


def section_sheet(rounds: int, device, batch: int, compiled: bool) -> None:
    levels = (64, 192, 768)
    case = sheet_case(levels, batch, 64, device)
    t = measure(case, rounds, device, compiled)
    print(f"\n## The 1,024-column sheet ({' / '.join(map(str, levels))} columns of 64 units, fan-in 3, "
          f"{len(case.model.spec.edges)} edges, bottom clamped), B={batch}\n")
    print(f"bound {t['bound'] * 1e3:.2f} ms; eager {t['eager'] * 1e3:.2f} ms ({t['eager'] / t['bound']:.2f}× the bound)"
          + (f"; compiled {t['compiled'] * 1e3:.2f} ms ({t['compiled'] / t['bound']:.2f}×)" if compiled else ""))


def section_cuda(rounds: int, sizes: list[tuple[int, int]]) -> None:
    print("\n## CUDA\n")
    if not torch.cuda.is_available():
        print("skipped: no CUDA device here")
        return
    device = torch.device("cuda")
    for dtype in (torch.float32, torch.bfloat16):
        a = torch.randn(8192, 8192, device=device, dtype=dtype)
        t = round_robin({"mm": lambda: a @ a}, 20, device)["mm"]
        peak = 2 * 8192 ** 3 / t
        print(f"\n{dtype}: device matmul throughput {peak / 1e12:.1f} TFLOP/s (8192² @ 8192²)")
        print("| B, width | eager | compiled | bound | eager / bound | compiled / bound | eager, fraction of device throughput |")
        print("|---|---|---|---|---|---|---|")
        for batch, width in sizes:
            case, _ = chain_case(batch, width, 4, device, dtype)
            r = measure(case, rounds, device, True)
            frac = case.flops() / r["eager"] / peak
            print(f"| {batch}, 4 × {width} | {r['eager'] * 1e3:.3f} ms | {r['compiled'] * 1e3:.3f} ms | "
                  f"{r['bound'] * 1e3:.3f} ms | {r['eager'] / r['bound']:.2f}× | {r['compiled'] / r['bound']:.2f}× | "
                  f"{100 * frac:.1f} % |")


SECTIONS = ("iteration", "sheet", "scaling", "cuda")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sections", nargs="*", help=f"any of {', '.join(SECTIONS)} (default: all)")
    parser.add_argument("--sizes", nargs="+", default=["256x512", "64x256", "32x128"], help="BxWIDTH")
    parser.add_argument("--batch", type=int, default=32, help="batch of the scaling and sheet sections")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled path (it compiles per shape)")
    parser.add_argument("--figure", help="save the scaling figure here (PNG)")
    args = parser.parse_args()
    for section in args.sections:
        if section not in SECTIONS:
            parser.error(f"unknown section {section!r}; choose from {', '.join(SECTIONS)}")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes]
    compiled = not args.no_compile
    for section in args.sections or SECTIONS:
        if section == "iteration":
            section_iteration(sizes, args.rounds, device, compiled)
        elif section == "sheet":
            section_sheet(args.rounds, device, args.batch, compiled)
        elif section == "scaling":
            section_scaling(args.rounds, device, args.batch, args.figure)
        else:
            section_cuda(args.rounds, sizes)


if __name__ == "__main__":
    main()
