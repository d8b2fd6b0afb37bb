"""pc-digits: supervised predictive coding on scikit-learn's handwritten digits, beside backprop.

The discriminative set-up of the PC literature (Whittington & Bogacz 2017; PCX benchmarks):
the image is an ``input`` column at the top, the label an ``observed`` leaf. Training clamps
both, infers the hidden columns and applies the local weight rule; testing frees the label
and reads it out after inference. A backprop MLP of the same shape, the same initial weights
and the same squared-error objective trains on the same batches in the same run.

Recorded per training step: ``cortex/free_energy`` (batch-mean F at the converged state, with its
log-normaliser), ``cortex/energy`` (the same without it, 1/2 eps^T Pi eps) and
``cortex/<node>/error_rms``; every ``trace_every`` steps ``cortex/free_energy_trace`` (F over the
inference iterations); per epoch ``metrics/*`` (accuracies of both networks, their losses). A
free energy or backprop loss that becomes non-finite or explodes stops the run (key ``lr``).

Summary figures: ``pc_test_accuracy``, ``bp_test_accuracy`` (fractions, last epoch),
``pc_seconds_per_epoch``, ``bp_seconds_per_epoch`` (wall clock of the training passes, median
over epochs).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from cortex import InferenceConfig, PCModel, chain, infer
from cortex.activations import ACTIVATIONS
from cortex.learning import learn_step
from cortex.params import check_finite, param, validate
from sims.registry import Simulation, register
from sims.runner import Context


N_DIGITS, N_CLASSES = 1797, 10  # scikit-learn's digits


@dataclass(frozen=True)
class PCDigitsConfig:
    hidden: tuple[int, ...] = param((128, 128), "widths of the hidden columns, top to bottom", ge=1)
    activation: str = param("tanh", "f of the hidden columns", choices=ACTIVATIONS)
    epochs: int = param(30, "passes over the training split", ge=1)
    batch_size: int = param(32, "samples per learning step", ge=1)
    lr: float = param(1e-3, "Adam step size on theta (both networks)", gt=0)
    inference_steps: int = param(20, "inference iterations per training batch", ge=1)
    inference_lr: float = param(0.1, "inference step size on z", gt=0)
    test_fraction: float = param(0.2, "held-out share of the 1797 digits (stratified)", gt=0, lt=1)
    trace_every: int = param(20, "record F over inference iterations every N batches", ge=1)
    drop_last: bool = param(False, "skip each epoch's last, partial batch (PCX's budget: 22 batches of 64)")
    compile: bool = param(False, "run each batch's inference and weight gradients as one torch.compile'd "
                                 "unit (the first batch of each shape compiles, for seconds)")

    def __post_init__(self) -> None:
        validate(self)
        if not self.hidden:
            raise ValueError("config key 'hidden' needs at least one hidden column width")
        n_test = math.ceil(self.test_fraction * N_DIGITS)
        if not N_CLASSES <= n_test <= N_DIGITS - N_CLASSES:
            raise ValueError(f"config key 'test_fraction' = {self.test_fraction} leaves {n_test} test and "
                             f"{N_DIGITS - n_test} training digits; a stratified split needs at least "
                             f"{N_CLASSES} in each")


def load_digits_split(test_fraction: float, seed: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """8x8 digits as standardised 64-vectors (train statistics), split stratified by ``seed``."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x_tr, x_te, y_tr, y_te = train_test_split(
        digits.data.astype(np.float32), digits.target, test_size=test_fraction,
        random_state=seed, stratify=digits.target,
    )
    standardise = standardiser(x_tr)
    return (torch.from_numpy(standardise(x_tr)), torch.from_numpy(y_tr),
            torch.from_numpy(standardise(x_te)), torch.from_numpy(y_te))


def standardiser(x_train: np.ndarray):
    """x ↦ (x − mean) / (std + 0.1) with the training images' statistics; the +0.1 keeps the
    always-blank border pixels from blowing up."""
    mean, scale = x_train.mean(0), x_train.std(0) + 0.1
    return lambda x: (x - mean) / scale


def backprop_twin(model: PCModel, names: list[str]) -> nn.Sequential:
    """An MLP computing the same feed-forward function as the PC chain, with its weights copied."""
    layers: list[nn.Module] = []
    for parent, child in zip(names[:-1], names[1:]):
        w = model.weight(parent, child).detach()
        linear = nn.Linear(w.shape[1], w.shape[0], device=w.device, dtype=w.dtype)
        k, i = model.slot[child]
        with torch.no_grad():
            linear.weight.copy_(w)
            linear.bias.copy_(model.bias[k][i])
        f = model.groups[model.slot[parent][0]].f
        if not f.is_identity:
            layers.append(_Pointwise(f.fn))
        layers.append(linear)
    return nn.Sequential(*layers)


class _Pointwise(nn.Module):
    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x)


def accuracy(scores: Tensor, labels: Tensor) -> float:
    return (scores.argmax(1) == labels).float().mean().item()


def run(cfg: PCDigitsConfig, ctx: Context) -> dict:
    rec, dev = ctx.recorder, ctx.device
    x_tr, y_tr, x_te, y_te = (t.to(dev) for t in load_digits_split(cfg.test_fraction, ctx.seed))
    targets = nn.functional.one_hot(y_tr, 10).float()

    dims = {"image": 64, **{f"h{i + 1}": h for i, h in enumerate(cfg.hidden)}, "label": 10}
    model = PCModel(chain(dims, top_kind="input", activation=cfg.activation), generator=ctx.generator).to(dev)
    names = list(dims)
    bp = backprop_twin(model, names)
    # fused: one kernel for all parameters (the per-tensor loop costs more than the arithmetic
    # here); no decay, so the precisions no column learns can stay out of it
    pc_opt = torch.optim.Adam(model.learned_parameters(), lr=cfg.lr, fused=True)
    bp_opt = torch.optim.Adam(bp.parameters(), lr=cfg.lr, fused=True)
    train_cfg = InferenceConfig(steps=cfg.inference_steps, lr=cfg.inference_lr, compile=cfg.compile)
    # The label column's prediction is the feed-forward pass and every error is zero there, so
    # the read-out needs no iterations; it is still `infer` with the label free.
    test_cfg = InferenceConfig(steps=0)

    n = len(x_tr)
    step = 0
    pc_epochs, bp_epochs = [], []
    bar = ctx.progress(range(cfg.epochs), desc="pc-digits", unit="epoch")
    for epoch in bar:
        pc_time = bp_time = 0.0
        order = torch.randperm(n, generator=ctx.generator).to(dev)
        pc_energy, bp_loss = [], []
        for start in range(0, n - cfg.batch_size + 1 if cfg.drop_last else n, cfg.batch_size):
            idx = order[start:start + cfg.batch_size]
            x, y = x_tr[idx], targets[idx]

            t0 = time.perf_counter()
            beliefs = learn_step(model, pc_opt, {"image": x, "label": y}, train_cfg)
            t1 = time.perf_counter()
            loss = 0.5 * ((bp(x) - y) ** 2).sum(1).mean()
            bp_opt.zero_grad()
            loss.backward()
            bp_opt.step()
            t2 = time.perf_counter()
            pc_time, bp_time = pc_time + t1 - t0, bp_time + t2 - t1

            log_norm = model.log_normalizer()
            free_energy = beliefs.free_energy.mean()
            energy = (free_energy - log_norm).item()
            pc_energy.append(energy)
            bp_loss.append(loss.item())
            rec.append("cortex/free_energy", free_energy.item())
            rec.append("cortex/energy", energy)
            for name in names[1:]:
                rec.append(f"cortex/{name}/error_rms", beliefs.error(name).pow(2).mean().sqrt().item())
            if step % cfg.trace_every == 0:
                rec.append("cortex/free_energy_trace", beliefs.trace.cpu())
                rec.append("cortex/free_energy_trace_step", step)
            # Both networks share `lr`; a step size too large for either shows first in its loss.
            check_finite("PC free energy F", free_energy, step=step, key="lr", where="training step")
            check_finite("backprop loss", bp_loss[-1], step=step, key="lr", where="training step")
            step += 1

        with torch.no_grad():
            pc_acc = accuracy(infer(model, {"image": x_te}, test_cfg)["label"], y_te)
            pc_train_acc = accuracy(infer(model, {"image": x_tr}, test_cfg)["label"], y_tr)
            bp_acc, bp_train_acc = accuracy(bp(x_te), y_te), accuracy(bp(x_tr), y_tr)
        for key, value, units, what in (
            ("epoch", epoch + 1, "epoch", "epochs completed"),
            ("pc_test_accuracy", pc_acc, "fraction", "PC accuracy on the held-out split"),
            ("bp_test_accuracy", bp_acc, "fraction", "backprop accuracy on the held-out split"),
            ("pc_train_accuracy", pc_train_acc, "fraction", "PC accuracy on the training split"),
            ("bp_train_accuracy", bp_train_acc, "fraction", "backprop accuracy on the training split"),
            ("pc_energy", float(np.mean(pc_energy)), "nats", "PC prediction-error energy, epoch mean"),
            ("bp_loss", float(np.mean(bp_loss)), "nats", "backprop squared-error loss, epoch mean"),
        ):
            rec.append(f"metrics/{key}", value, units=units, description=what)
        bar.set_postfix(pc=f"{pc_acc:.3f}", bp=f"{bp_acc:.3f}")
        pc_epochs.append(pc_time)
        bp_epochs.append(bp_time)

    return {
        "pc_test_accuracy": pc_acc,
        "bp_test_accuracy": bp_acc,
        # the median: the first epoch may carry one-off costs (torch.compile)
        "pc_seconds_per_epoch": float(np.median(pc_epochs)),
        "bp_seconds_per_epoch": float(np.median(bp_epochs)),
    }


register(Simulation(
    name="pc-digits",
    summary="supervised predictive coding on sklearn digits, with a backprop twin (accuracy, F, errors)",
    config=PCDigitsConfig,
    run=run,
))
