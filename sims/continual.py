"""`continual` and `small-batch`: two claims of the source text, tested — PC against backprop.

The source text motivates predictive coding by two findings: it "alleviates catastrophic
interference to some degree" (Song et al. 2024, prospective configuration) and does better "at
small batch sizes" (Alonso et al. 2022). Both simulations train a supervised PC network (the
pc-digits set-up: image → hidden columns → label, local rule after `inference_steps` iterations)
and a backprop MLP of the same shape from the same initial weights, on scikit-learn's digits.

Splits: stratified by the run's seed into train / validation / test (`test_fraction`, then
`val_fraction` of the rest); the indices are recorded. Each network's learning rate is chosen
from `lrs` by the same sweep — the whole training protocol from the same initial weights,
scored on the validation split — and only then is the test split evaluated.

`continual`: tasks are disjoint sets of digits (`tasks`: split2 = 0–4 then 5–9; pairs5 = five
pairs), trained one after the other for `epochs_per_task` epochs each through one shared 10-way
output. After every epoch both networks are tested on every task, in two readings of the same
networks: class-incremental (argmax over all ten digits) and task-incremental (argmax over the
task's own digits, the task being known at test). The learning rate is chosen by the mean
class-incremental validation accuracy at the end. Recorded: `continual/{pc,bp}/{class_il,
task_il}/accuracy` (epoch, task), `continual/epoch_task` and the selection. Summary (class-
incremental; `_task_il` for the other reading): `{pc,bp}_final_accuracy` (mean over tasks after
the last epoch) and `{pc,bp}_forgetting` (mean over all tasks but the last of the drop from the
best accuracy reached to the final one).

`small-batch`: `shots` examples per digit from the training split, trained at each batch size of
`batch_sizes` for the same number of examples seen (`examples`); test error after it. The
learning rate is chosen per batch size with the largest shot count. Recorded:
`small_batch/{pc,bp}/test_error` (shots, batch size) and the selection; summary
`{pc,bp}_test_error` (mean over the grid) and the errors at the smallest batch and shot count.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from cortex import InferenceConfig, PCModel, chain, infer
from cortex.activations import ACTIVATIONS
from cortex.learning import learn_step
from cortex.params import param, validate
from sims.pc_digits import backprop_twin
from sims.registry import Simulation, register

TASKS = {"split2": ((0, 1, 2, 3, 4), (5, 6, 7, 8, 9)),
         "pairs5": ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9))}
NETS = ("pc", "bp")


@dataclass(frozen=True)
class Networks:
    """The two networks' shape and PC's inference (shared by both simulations)."""

    hidden: tuple[int, ...] = param((64, 64), "widths of the hidden columns / layers", ge=1)
    activation: str = param("tanh", "f of the hidden columns", choices=ACTIVATIONS)
    inference_steps: int = param(8, "PC inference iterations per training batch", ge=1)
    inference_lr: float = param(0.1, "PC inference step size on z", gt=0)
    lrs: tuple[float, ...] = param((1e-4, 3e-4, 1e-3, 3e-3), "Adam step sizes swept on the "
                                   "validation split, for each network", gt=0)
    test_fraction: float = param(0.2, "held-out test share of the 1797 digits", gt=0, lt=1)
    val_fraction: float = param(0.2, "validation share of the rest", gt=0, lt=1)

    def __post_init__(self) -> None:
        validate(self)
        if not self.hidden or not self.lrs:
            raise ValueError("config keys 'hidden' and 'lrs' need at least one value")


def digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1797 8×8 digits: X (n, 64) float32, y (n,) int64."""
    from sklearn.datasets import load_digits

    data = load_digits()
    return data.data.astype(np.float32), data.target.astype(np.int64)


def split_indices(y: np.ndarray, seed: int, test_fraction: float, val_fraction: float):
    """Stratified (train, validation, test) index arrays, disjoint, covering every sample."""
    from sklearn.model_selection import train_test_split

    rest, test = train_test_split(np.arange(len(y)), test_size=test_fraction,
                                  random_state=seed, stratify=y)
    train, val = train_test_split(rest, test_size=val_fraction, random_state=seed + 1,
                                  stratify=y[rest])
    return np.sort(train), np.sort(val), np.sort(test)


class Data:
    """The split digits, standardised by the training split's statistics, as tensors."""

    def __init__(self, cfg: Networks, seed: int):
        x, y = digits()
        self.train, self.val, self.test = split_indices(y, seed, cfg.test_fraction,
                                                        cfg.val_fraction)
        mean, scale = x[self.train].mean(0), x[self.train].std(0) + 0.1
        self.x = torch.from_numpy((x - mean) / scale)
        self.y = torch.from_numpy(y)

    def part(self, index) -> tuple[Tensor, Tensor]:
        return self.x[index], self.y[index]


class Net:
    """One network (PC or its backprop twin) with its optimiser: `step(x, y)`, `scores(x)`."""

    def __init__(self, kind: str, cfg: Networks, lr: float, seed: int):
        dims = {"image": 64, **{f"h{i + 1}": h for i, h in enumerate(cfg.hidden)}, "label": 10}
        # the same seed gives both networks the same initial weights
        self.pc = PCModel(chain(dims, top_kind="input", activation=cfg.activation),
                          generator=torch.Generator().manual_seed(seed))
        self.kind = kind
        self.bp = backprop_twin(self.pc, list(dims)) if kind == "bp" else None
        params = (self.pc if kind == "pc" else self.bp).parameters()
        self.optimizer = torch.optim.Adam(params, lr=lr)
        self.train_cfg = InferenceConfig(steps=cfg.inference_steps, lr=cfg.inference_lr)

    def step(self, x: Tensor, y: Tensor) -> None:
        target = nn.functional.one_hot(y, 10).float()
        if self.kind == "pc":
            learn_step(self.pc, self.optimizer, {"image": x, "label": target}, self.train_cfg)
            return
        loss = 0.5 * ((self.bp(x) - target) ** 2).sum(1).mean()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()

    @torch.no_grad()
    def scores(self, x: Tensor) -> Tensor:
        if self.kind == "pc":
            return infer(self.pc, {"image": x}, InferenceConfig(steps=0))["label"]
        return self.bp(x)


def task_accuracy(scores: Tensor, y: Tensor, tasks) -> np.ndarray:
    """Accuracy on each task's digits, (2, n_tasks): class-incremental (argmax over all ten)
    and task-incremental (argmax over the task's digits)."""
    out = np.zeros((2, len(tasks)))
    scores = torch.nan_to_num(scores, nan=-math.inf)
    for t, digits_ in enumerate(tasks):
        mine = torch.isin(y, torch.tensor(digits_))
        s, labels = scores[mine], y[mine]
        out[0, t] = (s.argmax(1) == labels).float().mean().item()
        allowed = torch.tensor(digits_)
        out[1, t] = (allowed[s[:, allowed].argmax(1)] == labels).float().mean().item()
    return out


def train_tasks(net: Net, data: Data, tasks, epochs: int, batch: int, seed: int,
                evaluate_on) -> np.ndarray:
    """Train on the tasks in turn; after every epoch the accuracies on `evaluate_on` (an index
    array), (epochs · n_tasks, 2, n_tasks)."""
    gen = torch.Generator().manual_seed(seed)
    x_eval, y_eval = data.part(evaluate_on)
    history = []
    for digits_ in tasks:
        index = data.train[np.isin(data.y[data.train].numpy(), digits_)]
        for _ in range(epochs):
            order = torch.from_numpy(index)[torch.randperm(len(index), generator=gen)]
            for start in range(0, len(order), batch):
                net.step(*data.part(order[start:start + batch]))
            history.append(task_accuracy(net.scores(x_eval), y_eval, tasks))
    return np.stack(history)


def forgetting(accuracy: np.ndarray) -> float:
    """Mean over all tasks but the last of (best accuracy reached − final accuracy);
    accuracy: (epochs, n_tasks)."""
    return float(np.mean(accuracy[:, :-1].max(0) - accuracy[-1, :-1]))


def record_split(rec, root: str, data: Data) -> None:
    for name in ("train", "val", "test"):
        rec.write(f"{root}/split/{name}", getattr(data, name))


@dataclass(frozen=True)
class ContinualConfig:
    tasks: str = param("split2", "split2: digits 0–4 then 5–9; pairs5: five pairs in turn",
                       choices=tuple(TASKS))
    epochs_per_task: int = param(10, "epochs on each task before the next", ge=1)
    batch_size: int = param(32, "samples per learning step", ge=1)
    networks: Networks = dataclasses.field(default_factory=Networks, metadata={
        "help": "the two networks and the learning-rate sweep"})

    def __post_init__(self) -> None:
        validate(self)


def run_continual(cfg, ctx) -> dict:
    rec, seed, tasks = ctx.recorder, int(ctx.seed), TASKS[cfg.tasks]
    data = Data(cfg.networks, seed)
    record_split(rec, "continual", data)
    chosen, summary = {}, {}
    with ctx.progress(total=2 * (len(cfg.networks.lrs) + 1), desc="continual",
                      unit="training") as bar:
        for kind in NETS:
            scores = []
            for lr in cfg.networks.lrs:  # the sweep: validation split only
                history = train_tasks(Net(kind, cfg.networks, lr, seed), data, tasks,
                                      cfg.epochs_per_task, cfg.batch_size, seed, data.val)
                scores.append(history[-1, 0].mean())
                bar.update(1)
            rec.write(f"continual/lr_selection/{kind}", np.asarray(scores))
            chosen[kind] = cfg.networks.lrs[int(np.argmax(scores))]
            history = train_tasks(Net(kind, cfg.networks, chosen[kind], seed), data, tasks,
                                  cfg.epochs_per_task, cfg.batch_size, seed, data.test)
            bar.update(1)
            for s, scenario in enumerate(("class_il", "task_il")):
                rec.write(f"continual/{kind}/{scenario}/accuracy", history[:, s].astype(np.float32))
                suffix = "" if scenario == "class_il" else "_task_il"
                summary[f"{kind}_final_accuracy{suffix}"] = float(history[-1, s].mean())
                summary[f"{kind}_forgetting{suffix}"] = forgetting(history[:, s])
            summary[f"{kind}_lr"] = chosen[kind]
    rec.write("continual/epoch_task", np.repeat(np.arange(len(tasks)), cfg.epochs_per_task))
    return summary


@dataclass(frozen=True)
class SmallBatchConfig:
    batch_sizes: tuple[int, ...] = param((1, 4, 16, 64), "batch sizes compared", ge=1)
    shots: tuple[int, ...] = param((5, 10, 30, 100), "training examples per digit", ge=1)
    examples: int = param(1000, "examples seen in every training (steps = examples / batch)",
                          ge=1)
    networks: Networks = dataclasses.field(default_factory=Networks, metadata={
        "help": "the two networks and the learning-rate sweep"})

    def __post_init__(self) -> None:
        validate(self)
        if not self.batch_sizes or not self.shots:
            raise ValueError("config keys 'batch_sizes' and 'shots' need at least one value")


def few_shot(data: Data, shots: int, seed: int) -> np.ndarray:
    """`shots` training indices per digit (all of a digit's when it has fewer)."""
    rng = np.random.default_rng([seed, shots])
    y = data.y[data.train].numpy()
    return np.sort(np.concatenate([rng.permutation(data.train[y == d])[:shots]
                                   for d in range(10)]))


def train_examples(net: Net, data: Data, index: np.ndarray, batch: int, examples: int,
                   seed: int) -> None:
    """Train on `index` in shuffled passes until `examples` examples have been seen."""
    gen = torch.Generator().manual_seed(seed)
    seen = 0
    while seen < examples:
        order = torch.from_numpy(index)[torch.randperm(len(index), generator=gen)]
        for start in range(0, len(order), batch):
            take = order[start:start + min(batch, examples - seen)]
            net.step(*data.part(take))
            seen += len(take)
            if seen >= examples:
                return


def error(net: Net, data: Data, index: np.ndarray) -> float:
    x, y = data.part(index)
    scores = torch.nan_to_num(net.scores(x), nan=-math.inf)
    return 1.0 - (scores.argmax(1) == y).float().mean().item()


def run_small_batch(cfg: SmallBatchConfig, ctx) -> dict:
    rec, seed, nets = ctx.recorder, int(ctx.seed), cfg.networks
    data = Data(nets, seed)
    record_split(rec, "small_batch", data)
    shots = [few_shot(data, k, seed) for k in cfg.shots]
    summary = {}
    grid = len(cfg.batch_sizes) * (len(nets.lrs) + len(cfg.shots))
    with ctx.progress(total=2 * grid, desc="small-batch", unit="training") as bar:
        for kind in NETS:
            selection = np.zeros((len(cfg.batch_sizes), len(nets.lrs)))
            test = np.zeros((len(cfg.shots), len(cfg.batch_sizes)))
            for b, batch in enumerate(cfg.batch_sizes):
                for j, lr in enumerate(nets.lrs):  # the sweep: most shots, validation split
                    net = Net(kind, nets, lr, seed)
                    train_examples(net, data, shots[-1], batch, cfg.examples, seed)
                    selection[b, j] = error(net, data, data.val)
                    bar.update(1)
                lr = nets.lrs[int(np.argmin(selection[b]))]
                for k, index in enumerate(shots):
                    net = Net(kind, nets, lr, seed)
                    train_examples(net, data, index, batch, cfg.examples, seed)
                    test[k, b] = error(net, data, data.test)
                    bar.update(1)
            rec.write(f"small_batch/lr_selection/{kind}", selection.astype(np.float32))
            rec.write(f"small_batch/{kind}/test_error", test.astype(np.float32))
            summary[f"{kind}_test_error"] = float(test.mean())
            summary[f"{kind}_test_error_smallest"] = float(test[0, 0])
    rec.write("small_batch/batch_sizes", np.asarray(cfg.batch_sizes))
    rec.write("small_batch/shots", np.asarray(cfg.shots))
    return summary


register(Simulation(name="continual", summary="PC vs backprop on split digits learned one task "
                    "after another: accuracy per task over time and forgetting",
                    config=ContinualConfig, run=run_continual))
register(Simulation(name="small-batch", summary="PC vs backprop at batch sizes 1-64 and 5-100 "
                    "examples per digit: test error after the same examples seen",
                    config=SmallBatchConfig, run=run_small_batch))
