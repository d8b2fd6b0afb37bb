"""Why the partially observed pendulum falls short: inference, the learning objective, or the
optimisation?

Three measurements on the data of ``brainloop run pendulum-model`` (same seed, same episodes),
all scored on the 10-step imagined (cos, sin) of held-out episodes against "no change":

1. **Inference.** Train the default (fully observed) world model, then filter held-out episodes
   with the velocity channel's precision set to ~0, so that only (cos, sin) inform the state.
   If imagination still beats "no change" by far, point-estimate filtering can carry the
   velocity in the hidden state once the model is right.
2. **The objective.** Continue learning that model from (cos, sin) alone (window 3, lr 3e-4;
   then window 1), with ||W_{x<-s}|| free and held at its starting value after every batch.
3. **The optimisation.** The same learning from a fresh model.

For every learning run the held-out free energy per step (minus the log-normaliser, at the
newest step, inference run 10x longer than in training) is printed before and after, both for
the window the model learned with and for filtering. Comparing a run that ends imagining well
with one that ends imagining badly tells whether the objective prefers the good model: if the
bad one reaches the lower F, no optimiser will fix the learning.

    python benchmarks/pendulum_partial.py          # about 20 min on one CPU thread
    python benchmarks/pendulum_partial.py --warm-epochs 5 --cold-epochs 8
"""
from __future__ import annotations

import argparse
import math
import time
from dataclasses import replace

import torch

from cortex import InferenceConfig, run_sequence
from sims.pendulum_model import PendulumModelConfig, imagination_errors, simulate, train_epoch, world_model


def data(cfg: PendulumModelConfig, seed: int):
    gen = torch.Generator().manual_seed(seed)
    train = simulate(cfg, cfg.train_episodes, gen)
    test = simulate(cfg, cfg.test_episodes, gen)
    return gen, train, test


def train(cfg: PendulumModelConfig, seed: int):
    """Train as the simulation does; returns the model, its inference settings and the test data."""
    torch.manual_seed(seed)
    gen, (x_tr, u_tr, _), test = data(cfg, seed)
    model = world_model(cfg, x_tr.shape[-1], gen)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    infer_cfg = InferenceConfig(steps=cfg.inference_steps, lr=cfg.inference_lr, momentum=cfg.inference_momentum)
    for _ in range(cfg.epochs):
        for _ in train_epoch(model, opt, x_tr, u_tr, cfg, infer_cfg, gen):
            pass
    return model, infer_cfg, test


def improvement(model, cfg, infer_cfg, test) -> float:
    """10-step improvement over "no change" on (cos, sin)."""
    err, still, _ = imagination_errors(model, test[0][..., :2], test[1], cfg, infer_cfg, scored=2)
    return (still[-1] / err[-1]).item()


def heldout_free_energy(model, cfg, infer_cfg, test, window: int) -> float:
    """Mean free energy of the newest step, t >= warmup, minus the log-normaliser (nats per step)."""
    long = replace(infer_cfg, steps=10 * infer_cfg.steps)
    traj = run_sequence(model, {"x": test[0][..., :model.spec.node("x").dim]}, test[1], long, window=window)
    energy = sum(traj.energy.values())[cfg.warmup:].double().mean()
    return energy.item() - model.log_normalizer().item()


def velocity_r2(model, cfg, infer_cfg, test) -> float:
    """How much of the true velocity a linear read-out of the filtered rates f(s_t) explains (R^2),
    fitted on half of the held-out episodes and scored on the other half, t in [warmup, T - horizon)."""
    x, u, state = test
    traj = run_sequence(model, {"x": x[..., :model.spec.node("x").dim]}, u, infer_cfg, window=cfg.window)
    steps = slice(cfg.warmup, x.shape[0] - cfg.horizon)
    column = model.groups[model.slot["s"][0]]
    rates = column.f.fn(traj.z["s"][steps])
    features = torch.cat([rates, torch.ones_like(rates[..., :1])], -1)
    omega = state[steps, :, 1:]
    half = x.shape[1] // 2
    fit = torch.linalg.lstsq(features[:, :half].reshape(-1, features.shape[-1]), omega[:, :half].reshape(-1, 1)).solution
    residual = features[:, half:].reshape(-1, features.shape[-1]) @ fit - omega[:, half:].reshape(-1, 1)
    return 1.0 - (residual.pow(2).mean() / omega[:, half:].var()).item()


def withheld_velocity(cfg: PendulumModelConfig, seed: int):
    t0 = time.perf_counter()
    model, infer_cfg, test = train(cfg, seed)
    print(f"1. fully observed model, {cfg.epochs} epochs ({time.perf_counter() - t0:.0f} s): "
          "10-step improvement on (cos, sin)")
    k, i = model.slot["x"]
    for velocity_precision, seen in ((1.0, "seen"), (1e-8, "withheld")):
        with torch.no_grad():
            model.log_precision[k][i, 2] = math.log(velocity_precision)
        for window in (1, 3):
            err, still, _ = imagination_errors(model, test[0], test[1], replace(cfg, window=window),
                                               infer_cfg, scored=2)
            r2 = velocity_r2(model, replace(cfg, window=window), infer_cfg, test)
            print(f"   velocity {seen:8s} window {window}: {still[-1] / err[-1]:5.1f}x, "
                  f"velocity R^2 of a linear read-out of the filtered state {r2:.3f}")
    return model, test


def partial_learning(start: dict | None, epochs: int, pin: bool, seed: int, test, window: int = 3) -> None:
    """Learn from (cos, sin) from ``start`` (a fully observed model's state dict, its velocity
    row dropped) or from scratch; print the improvement per epoch and the held-out F."""
    cfg = PendulumModelConfig(partial=True, window=window, lr=3e-4, epochs=epochs)
    torch.manual_seed(seed)
    gen, (x_tr, u_tr, _), _ = data(cfg, seed)
    model = world_model(cfg, 2, gen)
    if start is not None:
        model.load_state_dict({k: v[tuple(slice(0, n) for n in model.state_dict()[k].shape)]
                               for k, v in start.items()})
    readout = model.weight("s", "x")
    norm = readout.norm().item() if start is not None else 4.0
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    infer_cfg = InferenceConfig(steps=cfg.inference_steps, lr=cfg.inference_lr)

    def hold() -> None:
        if pin:
            with torch.no_grad():
                readout.mul_(norm / readout.norm())

    def energies() -> tuple[float, float]:
        learned = 1e6 * heldout_free_energy(model, cfg, infer_cfg, test, window)
        filtering = learned if window == 1 else 1e6 * heldout_free_energy(model, cfg, infer_cfg, test, 1)
        return learned, filtering

    hold()
    f_start = energies()
    row = [f"{improvement(model, cfg, infer_cfg, test):.1f}"]
    for _ in range(epochs):
        for _ in train_epoch(model, opt, x_tr, u_tr, cfg, infer_cfg, gen):
            hold()
        row.append(f"{improvement(model, cfg, infer_cfg, test):.1f}")
    f_end = energies()
    what = "from the fully observed model" if start is not None else "from scratch"
    held = f"||W|| held at {norm:.2f}" if pin else f"||W|| free, ends at {readout.norm():.2f}"
    r2 = velocity_r2(model, cfg, infer_cfg, test)
    print(f"   window {window}, {what}, {held}: " + " ".join(row) + f"; velocity R^2 at the end {r2:.3f}\n"
          f"      held-out F (1e-6 nats/step) window {window}: {f_start[0]:.1f} -> {f_end[0]:.1f}, "
          f"filtering: {f_start[1]:.1f} -> {f_end[1]:.1f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--full-epochs", type=int, default=8)
    parser.add_argument("--warm-epochs", type=int, default=10)
    parser.add_argument("--cold-epochs", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, test = withheld_velocity(PendulumModelConfig(epochs=args.full_epochs), args.seed)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    print("2./3. learning from (cos, sin) alone: 10-step improvement at the start and after each epoch")
    for pin in (False, True):
        partial_learning(start, args.warm_epochs, pin, args.seed, test)
    partial_learning(start, args.warm_epochs, True, args.seed, test, window=1)
    for pin in (False, True):
        partial_learning(None, args.cold_epochs, pin, args.seed, test)
    partial_learning(None, args.cold_epochs, True, args.seed, test, window=1)


if __name__ == "__main__":
    main()
